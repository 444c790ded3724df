"""Serving a team (issue 33): roles per endpoint, sign-in, tokens, Host and Origin checks, body and rate limits."""
from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from conftest import fill_store, write_keyframes
from vidconcept.api import Index
from vidconcept.errors import UsageError
from vidconcept.index.store import Store
from vidconcept.web import create_app
from vidconcept.web.api import MAX_UPLOAD_BYTES
from vidconcept.web.security import Guard, Limit

PASSWORD = "correct horse"
ROLES = ["anonymous", "viewer", "editor", "admin"]


@pytest.fixture
def index_dir(tmp_path):
    root = tmp_path / "index"
    store = Store.open(root)
    fill_store(store, 2, 4)
    write_keyframes(store, (200, 80, 40))
    video = tmp_path / "v0.mp4"
    video.write_bytes(bytes(range(256)) * 4)
    store.touch_video(1, path=str(video))
    store.close()
    with Index(root) as index:
        for role in ROLES[1:]:
            index.add_user(role, PASSWORD, role)
    return root


def _client(app, role: str | None = None, **kwargs) -> TestClient:
    client = TestClient(app, base_url="http://localhost", **kwargs)
    client.__enter__()
    if role and role != "anonymous":
        r = client.post("/api/session", json={"user": role, "password": PASSWORD})
        assert r.status_code == 200, r.text
    return client


@pytest.fixture
def app(index_dir):
    return create_app(index_dir, load_model=False, limits={k: Limit(1000, 1000, 8) for k in
                                                           ("image", "suggest", "retrain", "sign-in")})


@pytest.fixture
def clients(app):
    made = {role: _client(app, role) for role in ROLES}
    yield made
    for c in made.values():
        c.__exit__(None, None, None)


# (method, path, json body) of every write endpoint, and the least role it needs
WRITES = [
    ("POST", "/api/concepts", {"name": "mine", "positive": [1, 2]}, "editor"),
    ("POST", "/api/concepts/seeded/labels", {"positive": [3]}, "editor"),
    ("POST", "/api/concepts/seeded/undo", None, "editor"),
    ("DELETE", "/api/concepts/seeded", None, "editor"),
    ("POST", "/api/users", {"name": "new", "password": PASSWORD, "role": "viewer"}, "admin"),
    ("DELETE", "/api/users/viewer", None, "admin"),
]
READS = ["/api/search?q=cat", "/api/similar?shot=1", "/api/concepts", "/api/shots/1", "/api/videos", "/api/stats",
         "/keyframes/1.jpg", "/videos/1", "/api/concepts/seeded", "/api/concepts/seeded/suggest"]


def _expected(role: str, needs: str) -> int | None:
    """401 without a sign-in, 403 below the role, else ``None`` (a 2xx)."""
    if role == "anonymous":
        return 401
    return None if ROLES.index(role) >= ROLES.index(needs) else 403


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method, path, body, needs", WRITES, ids=[f"{m} {p}" for m, p, _, _ in WRITES])
def test_every_write_endpoint_checks_the_role(index_dir, clients, role, method, path, body, needs):
    with Index(index_dir) as index:
        from vidconcept.concepts import add_concept
        add_concept(index, "seeded", positive=[1])
    r = clients[role].request(method, path, json=body)
    want = _expected(role, needs)
    if want is None:
        assert 200 <= r.status_code < 300, r.text
    else:
        assert r.status_code == want, r.text
        with Index(index_dir) as index:  # nothing changed
            assert index.store.find_concept("mine") is None and len(index.users()) == 3


@pytest.mark.parametrize("role", ROLES)
def test_reads_need_a_sign_in(index_dir, clients, role):
    with Index(index_dir) as index:
        from vidconcept.concepts import add_concept
        add_concept(index, "seeded", positive=[1])
    for path in READS:
        status = clients[role].get(path).status_code
        assert status == (401 if role == "anonymous" else 200), (path, status)
    assert clients[role].get("/").status_code == 200  # the page and the sign-in form are public
    assert clients[role].get("/signin").status_code == 200


def test_audit_log_readable_by_editors(clients):
    assert clients["editor"].post("/api/concepts", json={"name": "mine", "positive": [1]}).status_code == 201
    rows = clients["editor"].get("/api/audit").json()
    assert [(r["user"], r["action"], r["target"]) for r in rows[:2]] == [("editor", "concept-add", "mine"),
                                                                        ("admin", "sign-in", "admin")]
    assert rows[0]["detail"] == {"positive": [1], "negative": [], "images": 0}
    assert clients["viewer"].get("/api/audit").status_code == 403


def test_sign_in_cookie_flags_and_sign_out(app):
    client = _client(app)
    r = client.post("/api/session", json={"user": "editor", "password": PASSWORD})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert client.get("/api/me").json()["role"] == "editor"
    client.delete("/api/session")
    assert client.get("/api/me").status_code == 401
    behind_tls = client.post("/api/session", json={"user": "editor", "password": PASSWORD},
                             headers={"x-forwarded-proto": "https"})
    assert "secure" in behind_tls.headers["set-cookie"].lower()


@pytest.mark.parametrize("user, password", [("editor", "wrong password"), ("nobody", PASSWORD)],
                         ids=["wrong-password", "unknown-user"])
def test_wrong_sign_in_is_401_and_audited(app, index_dir, user, password):
    r = _client(app).post("/api/session", json={"user": user, "password": password})
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert r.json()["detail"] == "wrong user name or password"  # the same words either way
    with Index(index_dir) as index:
        assert index.audit(limit=1)[0].action == "sign-in-failed"


def test_bearer_tokens_and_revocation(app, clients):
    made = clients["editor"].post("/api/tokens", json={"label": "script"}).json()
    secret, token_id = made["secret"], made["id"]
    script = _client(app, headers={"authorization": f"Bearer {secret}"})
    assert script.get("/api/me").json()["user"] == "editor"
    assert script.post("/api/concepts", json={"name": "scripted", "positive": [2]}).status_code == 201
    assert clients["viewer"].delete(f"/api/tokens/{token_id}").status_code == 404  # not the viewer's
    assert clients["editor"].delete(f"/api/tokens/{token_id}").status_code == 200
    assert script.get("/api/me").status_code == 401
    assert _client(app, headers={"authorization": "Bearer vc_forged"}).get("/api/videos").status_code == 401


def test_answers_the_server_holds_still_need_a_principal_and_a_served_host(clients, app):
    """Keyframes and result pages are answered from memory once a viewer fetched them
    (:mod:`vidconcept.web.fastpath`): never to a request without a valid credential or with a foreign Host."""
    cached = ["/keyframes/1.jpg", "/api/search?q=cat&top=5", "/api/similar?shot=1&top=5"]
    for path in cached:
        assert clients["viewer"].get(path).status_code == 200
        assert clients["viewer"].get(path).status_code == 200  # from memory now
        assert clients["anonymous"].get(path).status_code == 401
        assert clients["anonymous"].get(path, headers={"if-none-match": "*"}).status_code == 401
        forged = _client(app, headers={"authorization": "Bearer vc_forged"})
        assert forged.get(path).status_code == 401
        forged.cookies.set("vidconcept_session", "forged")
        assert forged.get(path).status_code == 401
        assert clients["viewer"].get(path, headers={"host": "attacker.example"}).status_code == 421
    assert clients["viewer"].get("/api/search?q=cat&top=500").status_code == 422  # the route still validates
    assert clients["viewer"].get("/api/search?q=cat&top=5&min_score=2").status_code == 422


def test_revocation_elsewhere_is_honoured_at_once(app, index_dir, clients):
    """The server remembers who a token or cookie is (hashed, for a moment), but a commit by any
    connection (the CLI in another process here) drops that: revocation, removal and expiry count
    from the next request, and a lower role has no effect it should not."""
    with Index(index_dir) as index:
        token, secret = index.add_token("viewer", "script")
    script = _client(app, headers={"authorization": f"Bearer {secret}"})
    for _ in range(3):
        assert script.get("/keyframes/1.jpg").status_code == 200
        assert script.get("/api/search", params={"q": "cat"}).status_code == 200
    with Index(index_dir) as index:
        index.revoke_token(token.id)
    assert script.get("/keyframes/1.jpg").status_code == 401
    assert script.get("/keyframes/1.jpg", headers={"if-none-match": "*"}).status_code == 401
    assert script.get("/api/search", params={"q": "cat"}).status_code == 401
    assert clients["editor"].get("/api/audit").status_code == 200
    with Index(index_dir) as index:
        index.store.db.execute("UPDATE sessions SET expires = 0 WHERE user = 'editor'")
        index.store.db.conn.commit()
    assert clients["editor"].get("/api/audit").status_code == 401
    assert clients["admin"].get("/api/users").status_code == 200
    with Index(index_dir) as index:
        index.set_role("admin", "viewer")
    assert clients["admin"].get("/api/users").status_code == 403


@pytest.mark.parametrize("host, status", [
    ("attacker.example", 421), ("localhost:8000", 200), ("127.0.0.1:8000", 200), ("[::1]:8000", 200),
    ("archive.example.org", 200),
], ids=["rebinding", "localhost", "ipv4", "ipv6", "allowed-host"])
def test_foreign_host_is_refused(index_dir, host, status):
    app = create_app(index_dir, load_model=False, allowed_hosts=["archive.example.org"])
    client = _client(app, "viewer")
    assert client.get("/api/videos", headers={"host": host}).status_code == status


@pytest.mark.parametrize("headers, status", [
    ({"origin": "http://attacker.example"}, 403),
    ({"origin": "null"}, 403),
    ({"sec-fetch-site": "cross-site"}, 403),
    ({"origin": "http://localhost"}, 201),
    ({"sec-fetch-site": "same-origin"}, 201),
    ({}, 201),  # a script: no Origin, its token or cookie decides
], ids=["cross-origin", "null-origin", "fetch-cross-site", "same-origin", "fetch-same-origin", "no-origin"])
def test_cross_site_writes_are_refused(clients, index_dir, headers, status):
    r = clients["editor"].post("/api/concepts", json={"name": "mine", "positive": [1]}, headers=headers)
    assert r.status_code == status, r.text
    with Index(index_dir) as index:
        assert (index.store.find_concept("mine") is not None) == (status == 201)


def test_a_localhost_server_without_accounts_refuses_rebinding_and_cross_site(tmp_path):
    store = Store.open(tmp_path / "open")
    fill_store(store, 1, 2)
    store.close()
    client = _client(create_app(tmp_path / "open", load_model=False))
    assert client.get("/api/me").json() | {"user": None} == {"user": None, "role": "admin", "open": True,
                                                               "read_only": False, "local": True}
    assert client.get("/api/videos", headers={"host": "attacker.example"}).status_code == 421
    r = client.post("/api/concepts", json={"name": "x", "positive": [1]}, headers={"origin": "http://attacker.example"})
    assert r.status_code == 403


def test_another_address_needs_accounts_or_read_only(tmp_path, index_dir):
    store = Store.open(tmp_path / "open")
    fill_store(store, 1, 2)
    store.close()
    with pytest.raises(UsageError, match="vidconcept user add"):
        create_app(tmp_path / "open", load_model=False, host="0.0.0.0")
    client = _client(create_app(tmp_path / "open", load_model=False, host="0.0.0.0", read_only=True))
    assert client.get("/api/me").json()["role"] == "viewer"
    assert client.get("/api/search", params={"q": "cat"}).status_code == 200
    assert client.post("/api/concepts", json={"name": "x", "positive": [1]}).status_code == 405
    assert "/api/concepts/{name}/labels" not in client.get("/openapi.json").json()["paths"]
    create_app(index_dir, load_model=False, host="0.0.0.0")  # accounts: fine


def test_expensive_endpoints_are_rate_limited_per_client(index_dir):
    app = create_app(index_dir, load_model=False, limits={"image": Limit(per_minute=1, burst=2),
                                                          "suggest": Limit(1, 1), "retrain": Limit(1, 1),
                                                          "sign-in": Limit(60, 10, 2)})
    viewer, editor = _client(app, "viewer"), _client(app, "editor")
    post = lambda c: c.post("/api/similar", files={"image": ("x.jpg", b"not an image", "image/jpeg")})  # noqa: E731
    assert [post(viewer).status_code for _ in range(3)] == [400, 400, 429]
    assert "retry-after" in post(viewer).headers
    assert post(editor).status_code == 400  # another client has its own budget


def _run_guard(chunks: int, chunk_size: int, limit: int, content_length: int | None = None) -> tuple[int, int]:
    """Drive :class:`Guard` with a chunked body; the status it answered and how many chunks it read."""
    read, sent = 0, []

    async def receive():
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"x" * chunk_size, "more_body": read < chunks}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):  # reads the whole body, like a form parser
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    headers = [(b"host", b"localhost")] + ([(b"content-length", str(content_length).encode())] if content_length else [])
    scope = {"type": "http", "method": "POST", "path": "/api/similar", "headers": headers}
    guard = Guard(app, frozenset({"localhost"}), body_limits={"/api/similar": limit})

    async def run():
        try:
            await guard(scope, receive, send)
        except Exception as exc:  # the HTTPException FastAPI turns into a 413
            return getattr(exc, "status_code", 500)
        return sent[0]["status"]

    return asyncio.run(run()), read


def test_an_oversized_chunked_upload_is_refused_while_streaming():
    status, read = _run_guard(chunks=1000, chunk_size=64 * 1024, limit=MAX_UPLOAD_BYTES)
    assert status == 413 and read == MAX_UPLOAD_BYTES // (64 * 1024) + 1  # stopped at the limit, not at 62 MiB
    assert _run_guard(chunks=3, chunk_size=1024, limit=MAX_UPLOAD_BYTES)[0] == 200
    status, read = _run_guard(chunks=1000, chunk_size=1024, limit=1024, content_length=1024 * 1000)
    assert status == 413 and read == 0  # a declared length over the limit: refused before reading


def test_an_oversized_chunked_upload_answers_413_through_the_app(clients):
    def body():
        for _ in range(200):
            yield b"\xff" * (128 * 1024)  # 25 MiB, no Content-Length: chunked

    r = clients["viewer"].post("/api/similar", content=body(),
                               headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
