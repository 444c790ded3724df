"""The documentation keeps up with the CLI (sqlite-utils' ``tests/test_docs.py`` habit).

* README opens with the two set-up commands and stays a newcomer's page (≤ 10 KB).
* Every command has a section in ``docs/cli.md`` naming each of its options.
* Every ``vidconcept …`` command in a shell block of README or ``docs/`` parses with the
  CLI's own parser (nothing is run), so an example cannot name a removed option.
* Every relative link in README and ``docs/`` points at a file that exists.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from vidconcept.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
CLI_PAGE = ROOT / "docs" / "cli.md"
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console|cron)?\n(.*?)^```", re.S | re.M)
REDIRECTS = {">", ">>", "<", ">&", "&>", "2>", "2>>"}
SEPARATORS = {"&&", "||", "|", ";", "&"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """The long form of every option (the short one where there is no long one), nested actions included."""
    names = set()
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            longs = [o for o in action.option_strings if o.startswith("--")]
            names.add(longs[0] if longs else action.option_strings[0])
    for child in _subparsers(parser).values():
        names |= _options(child)
    return names


COMMANDS = _subparsers(build_parser())


def _section(text: str, command: str) -> str:
    match = re.search(rf"^## vidconcept {re.escape(command)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/cli.md has no section '## vidconcept {command}'"
    return match.group(1)


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_readme_opens_with_demo_and_test():
    head = "\n".join(README.read_text().splitlines()[:8])
    assert "make demo" in head and "make test" in head


def test_readme_is_short():
    assert README.stat().st_size <= 10_000, "README.md is for newcomers: move detail to a docs/ page"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_in_the_readme(command):
    assert f"vidconcept {command}" in README.read_text(), f"README.md's table lacks `vidconcept {command}`"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_documented(command):
    section = _section(CLI_PAGE.read_text(), command)
    missing = sorted(o for o in _options(COMMANDS[command]) if not _mentions(section, o))
    assert not missing, f"docs/cli.md's `vidconcept {command}` section does not mention {missing}"


def test_global_options_are_documented():
    top = [a.option_strings for a in build_parser()._actions if not isinstance(a, argparse._HelpAction)]
    missing = [o for options in top for o in options if not _mentions(CLI_PAGE.read_text(), o)]
    assert not missing, f"docs/cli.md does not mention the global options {missing}"


def _shell_commands(text: str) -> list[str]:
    """Command lines of a page's shell blocks, continuation lines joined."""
    lines = []
    for block in SHELL_BLOCK.findall(text):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


def _vidconcept_argv(line: str) -> list[str] | None:
    """The arguments after ``vidconcept`` (or ``python -m vidconcept``) in a shell line, or None."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    for i, token in enumerate(tokens):
        script_arg = any(t.endswith(".py") for t in tokens[:i])  # `benchmarks/x.py --detectors vidconcept`
        is_cli = (token == "vidconcept" or token.endswith("/vidconcept")) and (i == 0 or tokens[i - 1] != "cd") \
            and not script_arg
        is_module = token == "vidconcept" and i > 0 and tokens[i - 1] == "-m"
        if is_cli or is_module:
            argv = []
            for t in tokens[i + 1 :]:
                if t in SEPARATORS or t in REDIRECTS:
                    break
                argv.append(t)
            return argv
    return None


EXAMPLES = [(page.relative_to(ROOT).as_posix(), line.strip())
            for page in PAGES for line in _shell_commands(page.read_text())
            if _vidconcept_argv(line) is not None]


def test_pages_have_examples():
    assert len({page for page, _ in EXAMPLES}) >= 5 and len(EXAMPLES) >= 30


@pytest.mark.parametrize("page,line", EXAMPLES, ids=[f"{p}:{i}" for i, (p, _) in enumerate(EXAMPLES)])
def test_example_parses(page, line):
    argv = _vidconcept_argv(line)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            assert exc.code == 0, f"{page}: `{line}` does not parse: {err.getvalue().strip()}"


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    broken = [target for target in LINK.findall(page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert not broken, f"{page.name} links to missing files: {broken}"


def test_every_page_is_linked():
    """A newcomer reaches every docs/ page from the README, directly or through another page."""
    linked = {(page.parent / target).resolve() for page in PAGES for target in LINK.findall(page.read_text())}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs/ pages no page links to: {orphans}"
