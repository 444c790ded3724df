"""Accounts, tokens, the audit trail and concept undo (issue 33), through the Python API and the CLI."""
from __future__ import annotations

import json
import sqlite3
import time

import pytest

from conftest import fill_store
from vidconcept import concepts
from vidconcept.api import Index
from vidconcept.cli import main
from vidconcept.errors import UnknownNameError, UsageError
from vidconcept.index import migrations
from vidconcept.index.accounts import AccountError, hash_password, verify_password
from vidconcept.index.store import Store

PASSWORD = "correct horse"


@pytest.fixture
def index(tmp_path):
    store = Store.open(tmp_path / "index")
    fill_store(store, 3, 4)
    store.close()
    with Index(tmp_path / "index") as index:
        yield index


def test_password_hash_is_salted_scrypt_and_checks():
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b and a.startswith("scrypt$") and PASSWORD not in a
    assert verify_password(PASSWORD, a) and not verify_password(PASSWORD + "!", a)
    assert not verify_password(PASSWORD, "garbage")


def test_users_roles_and_passwords(index):
    index.add_user("ana", PASSWORD, "editor")
    index.add_user("bo", PASSWORD)
    assert [(u.name, u.role) for u in index.users()] == [("ana", "editor"), ("bo", "viewer")]
    assert index.accounts.authenticate("ana", PASSWORD).role == "editor"
    assert index.accounts.authenticate("ana", "wrong password") is None
    assert index.accounts.authenticate("nobody", PASSWORD) is None
    index.set_password("ana", "another one")
    assert index.accounts.authenticate("ana", PASSWORD) is None
    assert index.set_role("bo", "admin").may("editor")
    index.remove_user("bo")
    assert [u.name for u in index.users()] == ["ana"]
    stored = index.store.db.execute("SELECT password FROM users").fetchone()[0]
    assert "another one" not in stored


@pytest.mark.parametrize("call, error", [
    (lambda i: i.add_user("ana", PASSWORD), AccountError),
    (lambda i: i.add_user("a b", PASSWORD), AccountError),
    (lambda i: i.add_user("cy", "short"), AccountError),
    (lambda i: i.add_user("cy", PASSWORD, "boss"), UnknownNameError),
    (lambda i: i.remove_user("anna"), UnknownNameError),
    (lambda i: i.revoke_token(99), AccountError),
], ids=["taken", "bad-name", "short-password", "bad-role", "unknown-user", "unknown-token"])
def test_account_errors_are_usage_errors(index, call, error):
    index.add_user("ana", PASSWORD, "editor")
    with pytest.raises(error):
        call(index)


def test_a_wrong_name_costs_what_a_wrong_password_does(index):
    index.add_user("ana", PASSWORD, "editor")

    def best(name: str) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            index.accounts.authenticate(name, "not the password")
            times.append(time.perf_counter() - t0)
        return min(times)

    index.accounts.authenticate("warm-up", "x")
    wrong_password, wrong_name = best("ana"), best("nobody")
    assert wrong_name > 0.5 * wrong_password and wrong_password > 0.005  # one scrypt each


def test_tokens_are_stored_hashed_and_revocable(index):
    index.add_user("ana", PASSWORD, "editor")
    token, secret = index.add_token("ana", "nightly")
    assert index.accounts.token_user(secret).name == "ana"
    assert secret not in json.dumps(list(index.store.db.query("SELECT * FROM tokens")))
    index.revoke_token(token.id)
    assert index.accounts.token_user(secret) is None


def test_sessions_end_with_a_new_password(index):
    index.add_user("ana", PASSWORD, "editor")
    cookie = index.accounts.start_session("ana")
    assert index.accounts.session_user(cookie).name == "ana"
    index.set_password("ana", "brand new one")
    assert index.accounts.session_user(cookie) is None


def test_concept_changes_are_audited_and_undone(index):
    concepts.add_concept(index, "mine", positive=[1, 2], negative=[3], actor="ana")
    first = dict(zip(*index.store.concept_column(concepts.get_concept(index, "mine").id)))
    concepts.refine_concept(index, "mine", positive=[5], actor="bo")
    log = index.audit(target="mine")
    assert [(e.user, e.action) for e in log] == [("bo", "concept-refine"), ("ana", "concept-add")]
    assert log[0].to_dict()["detail"] == {"positive": [5], "negative": []}  # no private keys
    restored = concepts.undo(index, "mine", actor="ana")
    assert restored.positive == [1, 2]
    assert dict(zip(*index.store.concept_column(restored.id))) == pytest.approx(first)
    concepts.remove_concept(index, "mine")
    concepts.undo(index, "mine")  # back again
    assert concepts.get_concept(index, "mine").positive == [1, 2]
    assert index.search("mine", top=1).total > 0


def test_undo_of_an_add_removes_and_nothing_to_undo_says_so(index):
    concepts.add_concept(index, "mine", positive=[1])
    assert concepts.undo(index, "mine") is None
    assert index.store.find_concept("mine") is None
    with pytest.raises(UsageError, match="no recorded change"):
        concepts.undo(index, "other")


def test_an_index_made_before_migrates_and_has_no_accounts(tmp_path):
    root = tmp_path / "old"
    store = Store.open(root)
    fill_store(store, 1, 2)
    store.close()
    conn = sqlite3.connect(root / "index.db")  # as version 3 left it
    for table in ("users", "tokens", "sessions", "audit"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with Index(root) as index:
        assert migrations.schema_version(index.store.db) == migrations.LATEST
        assert index.users() == [] and index.search("cat").total == 2


def test_cli_user_and_audit(index, capsys, monkeypatch):
    root = str(index.root)
    monkeypatch.setattr("sys.stdin", _Lines(PASSWORD))
    assert main(["user", "add", "ana", "--role", "editor", "--password-stdin", "--index", root]) == 0
    assert main(["user", "list", "--index", root, "--json"]) == 0
    assert '"role": "editor"' in capsys.readouterr().out
    assert main(["user", "token", "ana", "--label", "cron", "--index", root]) == 0
    secret = capsys.readouterr().out.split()[-1]
    assert secret.startswith("vc_") and index.accounts.token_user(secret).name == "ana"
    assert main(["user", "revoke", "1", "--index", root]) == 0
    assert main(["user", "remove", "nobody", "--index", root]) == 1
    assert "unknown user 'nobody'" in capsys.readouterr().err
    assert main(["audit", "--index", root, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in rows] == ["token-revoke", "token-add", "user-add"]
    assert main(["audit", "--index", root, "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "id,at,user,action,target,detail"


class _Lines:
    """A stdin that answers ``readline`` with one line."""

    def __init__(self, line: str):
        self.line = line + "\n"

    def readline(self) -> str:
        return self.line
