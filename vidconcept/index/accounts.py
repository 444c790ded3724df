"""Accounts, API tokens, sign-in sessions and the audit trail of an index (issue 33).

Why in the index folder: a team serves one archive, and who may change it and who did
belongs with it (a backup of the folder keeps both). Nothing secret is stored in clear:
passwords as salted scrypt hashes (RFC 7914; ``hashlib.scrypt``, no extra dependency),
token and session secrets as SHA-256 digests (they are 256-bit random, so a plain hash
cannot be brute-forced and lets a request be looked up by its digest).

Example::

    accounts = Accounts(store)
    accounts.add_user("ana", "correct horse battery", "editor")
    accounts.authenticate("ana", "correct horse battery")   # Account(name='ana', role='editor', …)
    token, secret = accounts.add_token("ana", "nightly script")
    accounts.record("ana", "concept-refine", "forest", {"positive": [12]})
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from ..errors import UsageError, unknown
from .store import Store, now_iso

#: Roles in increasing power: each may do what the ones before it may.
ROLES = ("viewer", "editor", "admin")
Role = str
USER_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_PASSWORD = 8
#: scrypt cost: 16 MiB and ~50 ms a guess on one core (OWASP's minimum is N=2^17 with r=8 for a
#: fast server; 2^14 keeps a sign-in quick on a busy 2-core box and the sign-in rate is limited).
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
SESSION_TTL_S = 7 * 24 * 3600
TOKEN_PREFIX = "vc_"
#: A hash checked for unknown user names, so a wrong name costs what a wrong password does.
_DUMMY = None


class AccountError(UsageError):
    """An account, password or token that cannot be used as given."""


class AccountExistsError(AccountError):
    """A new account's name is taken (HTTP 409)."""


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    created_at: str
    updated_at: str | None = None

    def may(self, role: Role) -> bool:
        """Whether this account has ``role`` or a more powerful one."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Token:
    id: int
    user: str
    label: str | None
    created_at: str
    last_used_at: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    user: str
    action: str
    target: str | None
    detail: dict

    def to_dict(self) -> dict:
        """The public view: ``detail`` without its private keys (``_before``: what an undo restores)."""
        return asdict(self) | {"detail": {k: v for k, v in self.detail.items() if not k.startswith("_")}}


def local_actor() -> str:
    """Who acts when no account is signed in (CLI, Python API, a localhost server without accounts)."""
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (containers)
        return "local"


# ---- secrets --------------------------------------------------------------------------------------
def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of a password with a fresh 16-byte salt."""
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_LEN)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (constant-time compare)."""
    try:
        _, n, r, p, salt, key = stored.split("$")
        want = base64.b64decode(key)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want))
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def _dummy_hash() -> str:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = hash_password(secrets.token_hex(16))
    return _DUMMY


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise unknown("role", role, ROLES)
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    return password


# ---- the store side -------------------------------------------------------------------------------
class Accounts:
    """Accounts, tokens, sessions and audit rows of one index's database."""

    def __init__(self, store: Store):
        self.store = store
        self.db = store.db

    # ---- accounts ---------------------------------------------------------
    def users(self) -> list[Account]:
        return [Account(**r) for r in self.db.query(
            "SELECT name, role, created_at, updated_at FROM users ORDER BY name")]

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM users").fetchone()[0]

    def user(self, name: str) -> Account:
        row = self.db.execute("SELECT name, role, created_at, updated_at FROM users WHERE name = ?",
                              [name]).fetchone()
        if row is None:
            raise unknown("user", name, [u.name for u in self.users()])
        return Account(*row)

    def add_user(self, name: str, password: str, role: Role = "viewer") -> Account:
        if not isinstance(name, str) or not USER_PATTERN.fullmatch(name):
            raise AccountError(f"user name {name!r} is not allowed: use 1-64 letters, digits, '_', '.', '@' or '-'")
        check_role(role), check_password(password)
        with self.db.atomic():
            if self.db.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
                raise AccountExistsError(f"user {name!r} exists: `vidconcept user passwd` changes the password")
            self.db.execute("INSERT INTO users (name, role, password, created_at) VALUES (?, ?, ?, ?)",
                            [name, role, hash_password(password), now_iso()])
        return self.user(name)

    def remove_user(self, name: str) -> None:
        """Delete an account with its tokens and sessions (signed-in browsers are signed out)."""
        self.user(name)
        with self.db.atomic():
            for table in ("tokens", "sessions"):
                self.db.execute(f"DELETE FROM {table} WHERE user = ?", [name])
            self.db.execute("DELETE FROM users WHERE name = ?", [name])

    def update_user(self, name: str, password: str | None = None, role: Role | None = None) -> Account:
        """A new password (which signs out the user's browsers) and/or a new role."""
        self.user(name)
        with self.db.atomic():
            if password is not None:
                self.db.execute("UPDATE users SET password = ? WHERE name = ?",
                                [hash_password(check_password(password)), name])
                self.db.execute("DELETE FROM sessions WHERE user = ?", [name])
            if role is not None:
                self.db.execute("UPDATE users SET role = ? WHERE name = ?", [check_role(role), name])
            self.db.execute("UPDATE users SET updated_at = ? WHERE name = ?", [now_iso(), name])
        return self.user(name)

    def authenticate(self, name: str, password: str) -> Account | None:
        """The account if the password is right, else ``None``; one scrypt either way, so an
        unknown name answers as slowly as a wrong password."""
        row = self.db.execute("SELECT password FROM users WHERE name = ?", [name]).fetchone()
        ok = verify_password(password, row[0] if row else _dummy_hash())
        return self.user(name) if ok and row else None

    # ---- tokens -----------------------------------------------------------
    def add_token(self, user: str, label: str | None = None) -> tuple[Token, str]:
        """A new API token for ``user``: the record and its secret (shown once, stored hashed)."""
        self.user(user)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.atomic():
            cur = self.db.execute("INSERT INTO tokens (user, digest, label, created_at) VALUES (?, ?, ?, ?)",
                                  [user, digest(secret), label, now_iso()])
        return self.token(cur.lastrowid), secret

    def token(self, token_id: int) -> Token:
        row = self.db.execute("SELECT id, user, label, created_at, last_used_at FROM tokens WHERE id = ?",
                              [token_id]).fetchone()
        if row is None:
            raise AccountError(f"no token with id {token_id} (see `vidconcept user tokens`)")
        return Token(*row)

    def tokens(self, user: str | None = None) -> list[Token]:
        where, args = ("WHERE user = ?", [user]) if user else ("", [])
        return [Token(*r) for r in self.db.execute(
            f"SELECT id, user, label, created_at, last_used_at FROM tokens {where} ORDER BY id", args)]

    def revoke_token(self, token_id: int) -> Token:
        token = self.token(token_id)
        with self.db.atomic():
            self.db.execute("DELETE FROM tokens WHERE id = ?", [token_id])
        return token

    def token_user(self, secret: str) -> Account | None:
        row = self.db.execute("SELECT id, user FROM tokens WHERE digest = ?", [digest(secret)]).fetchone()
        return self.user(row[1]) if row else None

    # ---- sessions ---------------------------------------------------------
    def start_session(self, user: str, ttl_s: float = SESSION_TTL_S) -> str:
        """A new sign-in session's secret (the cookie's value); expired ones are dropped."""
        secret = secrets.token_urlsafe(32)
        with self.db.atomic():
            self.db.execute("DELETE FROM sessions WHERE expires < ?", [time.time()])
            self.db.execute("INSERT INTO sessions (digest, user, created_at, expires) VALUES (?, ?, ?, ?)",
                            [digest(secret), user, now_iso(), time.time() + ttl_s])
        return secret

    def session_user(self, secret: str) -> Account | None:
        row = self.db.execute("SELECT user FROM sessions WHERE digest = ? AND expires >= ?",
                              [digest(secret), time.time()]).fetchone()
        return self.user(row[0]) if row else None

    def end_session(self, secret: str) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM sessions WHERE digest = ?", [digest(secret)])

    # ---- audit ------------------------------------------------------------
    def record(self, user: str, action: str, target: str | None = None, detail: dict | None = None) -> None:
        """Append one audit row: who, when (UTC), what."""
        with self.db.atomic():
            self.db.execute("INSERT INTO audit (at, user, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                            [now_iso(), user, action, target, json.dumps(detail or {})])

    def audit(self, limit: int | None = None, target: str | None = None, user: str | None = None,
              action_prefix: str | None = None) -> Iterator[AuditEntry]:
        """Audit rows, newest first, optionally of one target, user or kind of action."""
        where, args = [], []
        for clause, value in (("target = ?", target), ("user = ?", user), ("action LIKE ?", action_prefix)):
            if value is not None:
                where.append(clause)
                args.append(value + "%" if clause.startswith("action") else value)
        sql = "SELECT id, at, user, action, target, detail FROM audit"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for row in self.db.execute(sql, args).fetchall():
            yield AuditEntry(*row[:5], json.loads(row[5] or "{}"))


__all__ = ["Account", "AccountError", "AccountExistsError", "Accounts", "AuditEntry", "ROLES", "Token", "hash_password", "local_actor",
           "verify_password"]
