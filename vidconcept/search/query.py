"""The concept query language: a parser from text to a small AST.

Grammar (operators case-insensitive; juxtaposition means AND)::

    query   := or
    or      := and ("OR" and)*
    and     := sum (["AND"] sum)*
    sum     := unary ("+" unary)*
    unary   := "NOT" unary | [NUMBER "*"] atom
    atom    := CONCEPT | '"' any text '"' | "(" query ")"

Scores combine as fuzzy logic over concept scores in [0, 1] (Zadeh): ``A AND B`` is
``min``, ``A OR B`` is ``max``, ``NOT A`` is ``1 - A``; a weighted sum
``2*dog + grass`` is the weighted arithmetic mean ``(2*dog + 1*grass) / 3``. So
``dog AND outdoor NOT night`` scores a shot by its weakest required evidence.

Example::

    >>> parse("dog AND (grass OR 2*beach + sand) NOT night")
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import QueryError

MAX_QUERY_LENGTH = 2000
MAX_DEPTH = 50


@dataclass(frozen=True)
class Concept:
    name: str


@dataclass(frozen=True)
class Not:
    child: "Node"


@dataclass(frozen=True)
class And:
    children: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    children: tuple["Node", ...]


@dataclass(frozen=True)
class Weighted:
    terms: tuple[tuple[float, "Node"], ...]


Node = Concept | Not | And | Or | Weighted

_TOKEN = re.compile(
    r'\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<plus>\+)|(?P<star>\*)|"(?P<quoted>[^"]*)"'
    r"|(?P<number>\d+(?:\.\d*)?|\.\d+)(?![\w\-.'])|(?P<word>[^\s()+*\"]+))"
)
OPERATORS = {"AND", "OR", "NOT"}


@dataclass(frozen=True)
class Token:
    kind: str  # lp rp plus star concept number AND OR NOT
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"query is too long ({len(text)} characters; at most {MAX_QUERY_LENGTH})")
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"unexpected character {text[pos]!r} at position {pos} (an unclosed quote?)")
        group = m.lastgroup
        kind, value, start = group, m.group(group), m.start(group)
        if kind == "word" and value.upper() in OPERATORS:
            kind, value = value.upper(), value.upper()
        elif kind in ("word", "quoted"):
            kind, value = "concept", value.strip()
            if not value:
                raise QueryError(f"empty concept name at position {start}")
        tokens.append(Token(kind, value, start))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None) -> Token:
        tok = self.peek()
        if tok is None:
            raise QueryError(f"query ends too early: expected {kind or 'a concept'}")
        if kind and tok.kind != kind:
            raise QueryError(f"expected {kind!s} at position {tok.pos}, found {tok.text!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        if not self.tokens:
            raise QueryError("empty query: give at least one concept name (see `vidconcept concepts`)")
        node = self.or_()
        tok = self.peek()
        if tok is not None:
            raise QueryError(f"unexpected {tok.text!r} at position {tok.pos}")
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while (tok := self.peek()) and tok.kind == "OR":
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Node:
        items = [self.sum_()]
        while (tok := self.peek()) and tok.kind in ("AND", "NOT", "concept", "lp", "number"):
            if tok.kind == "AND":
                self.take()
            items.append(self.sum_())
        return items[0] if len(items) == 1 else And(tuple(items))

    def sum_(self) -> Node:
        terms = [self.weighted()]
        while (tok := self.peek()) and tok.kind == "plus":
            self.take()
            terms.append(self.weighted())
        if len(terms) == 1 and terms[0][0] == 1.0:
            return terms[0][1]
        return Weighted(tuple(terms))

    def weighted(self) -> tuple[float, Node]:
        tok = self.peek()
        if tok is not None and tok.kind == "number":
            self.take()
            self.take("star")
            weight = float(tok.text)
            if weight <= 0:
                raise QueryError(f"weight {tok.text} at position {tok.pos} must be positive")
            return weight, self.unary()
        return 1.0, self.unary()

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok.kind == "NOT":
            self.take()
            return Not(self.unary())
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "concept":
            return Concept(tok.text)
        if tok.kind == "lp":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryError(f"query nests parentheses deeper than {MAX_DEPTH}")
            node = self.or_()
            self.take("rp")
            self.depth -= 1
            return node
        raise QueryError(f"expected a concept name at position {tok.pos}, found {tok.text!r}")


def parse(text: str) -> Node:
    """Parse a query string into an AST; raise :class:`QueryError` with the position on error."""
    if not isinstance(text, str):
        raise QueryError("query must be a string")
    return _Parser(text).parse()


def concepts_of(node: Node) -> list[str]:
    """Concept names used by a query, in order of first use."""
    out: list[str] = []

    def walk(n: Node) -> None:
        if isinstance(n, Concept):
            if n.name not in out:
                out.append(n.name)
        elif isinstance(n, Not):
            walk(n.child)
        elif isinstance(n, (And, Or)):
            for c in n.children:
                walk(c)
        else:
            for _, c in n.terms:
                walk(c)

    walk(node)
    return out
