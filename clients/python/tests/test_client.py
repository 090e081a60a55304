"""Package verbs over DoAction, the bearer token, and the error hierarchy."""

from __future__ import annotations

import pickle
import threading

import pyarrow.flight as flight
import pytest
from google.protobuf import any_pb2

import sheaf
from sheaf._proto import sheaf_pb2


def test_list_packages(client, data):
    packages = {p.name: p.latest for p in client.list_packages("test/*")}
    assert packages == {"test/tables": data.tops["test/tables"], "test/files": data.tops["test/files"]}
    assert "demo/weather" in {p.name for p in client.list_packages()}
    assert [p.name for p in client.list_packages("test/f*")] == ["test/files"]
    assert client.list_packages("nobody/*") == []


def test_list_revisions_newest_first(client, data):
    revs = client.list_revisions("test/tables")
    assert [r.top_hash for r in revs] == [data.tops["test/tables"], data.tops["test/tables@v1"]]
    assert revs[0].message == "second" and revs[1].message == "first"
    assert "v1" in revs[1].tags and "latest" in revs[0].tags
    assert revs[0].time >= revs[1].time and revs[0].time.tzinfo is not None


def test_resolve(client, data):
    v1, latest = data.tops["test/tables@v1"], data.tops["test/tables"]
    assert client.resolve("test/tables") == latest
    assert client.resolve("test/tables:v1") == v1
    assert client.resolve(f"test/tables@{v1[:10]}") == v1
    assert client.resolve(f"test/tables@{latest}") == latest


def test_browse(client, data):
    rev = client.browse("test/files")
    assert rev.package == "test/files" and rev.top_hash == data.tops["test/files"] and rev.message == "files"
    import testdata

    expected = testdata.files()
    assert {e.logical_key: e.size for e in rev.entries} == {k: len(v) for k, v in expected.items()}
    assert all(e.hash_type == "sha2-256-chunked" and e.hash for e in rev.entries)
    docs = client.browse("test/files", prefix="docs")
    assert sorted(e.logical_key for e in docs.entries) == ["docs/a.txt", "docs/it's.txt"]


def test_list_tables(client, data):
    tables = {t.path: t for t in client.list_tables("test/tables:v1")}
    assert {"", "tables/numbers.parquet", "tables/types.parquet", "tables/parts", "tables/data.csv"} <= set(tables)
    assert tables["tables/numbers.parquet"].format == "parquet"
    assert data.tops["test/tables@v1"] in tables["tables/numbers.parquet"].uri
    # The URIs the server lists can be read as they are.
    ds = client.dataset(tables["tables/numbers.parquet"].uri)
    assert ds.top_hash == data.tops["test/tables@v1"]


def test_client_pickles_and_reconnects(client, data):
    copy = pickle.loads(pickle.dumps(client))
    assert copy.url == client.url
    assert copy.resolve("test/files") == data.tops["test/files"]


def test_client_is_thread_safe(client, data):
    errors, results = [], []

    def work():
        try:
            for _ in range(5):
                results.append(client.resolve("test/files"))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [data.tops["test/files"]] * 20


# ---------------------------------------------------------------------------
# Errors: each carries the server's message and names what was wrong
# ---------------------------------------------------------------------------


def test_not_found_package(client):
    with pytest.raises(sheaf.NotFoundError) as e:
        client.resolve("nobody/nothing")
    assert e.value.code == "NOT_FOUND" and e.value.reason == "NOT_FOUND" and e.value.package == "nobody/nothing"
    assert "nobody/nothing" in e.value.server_message and "nobody/nothing" in str(e.value)
    assert isinstance(e.value, LookupError) and isinstance(e.value, sheaf.SheafError)


def test_not_found_revision_tag_path(client):
    with pytest.raises(sheaf.NotFoundError, match="000000"):
        client.dataset(package="test/tables", revision="000000", path="tables/numbers.parquet")
    with pytest.raises(sheaf.NotFoundError, match="nope"):
        client.dataset(package="test/tables", tag="nope", path="tables/numbers.parquet")
    with pytest.raises(sheaf.NotFoundError, match="tables/missing.parquet"):
        client.dataset("sheaf://test/tables/tables/missing.parquet")


def test_not_found_file(client):
    with pytest.raises(sheaf.NotFoundError, match="images/none.bin"):
        client.read_file("test/files", "images/none.bin")


def test_invalid_column_names_it(client):
    with pytest.raises(sheaf.InvalidArgumentError) as e:
        client.dataset("sheaf://test/tables/tables/numbers.parquet", columns=["id", "nope"])
    assert e.value.code == "INVALID_ARGUMENT" and isinstance(e.value, ValueError)
    assert "nope" in e.value.server_message and "tables/numbers.parquet" in e.value.server_message
    # What the error is about comes from its details, not its text.
    assert e.value.reason == "UNKNOWN_COLUMN" and e.value.column == "nope"
    assert (e.value.package, e.value.path) == ("test/tables", "tables/numbers.parquet")


def test_errors_of_a_typed_request_and_of_a_stream(client, data):
    with pytest.raises(sheaf.InvalidArgumentError) as e:
        client.dataset(package="test/tables", tag="v1", path="tables/numbers.parquet", columns=["nope"])
    assert e.value.reason == "UNKNOWN_COLUMN" and e.value.column == "nope"
    with pytest.raises(sheaf.NotFoundError) as e:
        client.dataset(package="test/tables", path="tables/missing.parquet")
    assert e.value.reason == "NOT_FOUND" and e.value.package == "test/tables"
    # An expression failing on the data fails the stream (DoGet), not the plan.
    ds = client.dataset(package="test/tables", tag="v1", path="tables/numbers.parquet", filter="id / 0 > 1")
    with pytest.raises(sheaf.InvalidArgumentError) as e:
        ds.to_table()
    assert e.value.reason == "EVALUATION_FAILED" and e.value.top_hash == data.tops["test/tables@v1"]


def test_invalid_filter_and_parameters(client):
    with pytest.raises(sheaf.InvalidArgumentError, match="filter|nope"):
        client.dataset("sheaf://test/tables/tables/numbers.parquet", filter="nope > 3")
    with pytest.raises(sheaf.InvalidArgumentError, match="sample"):
        client.dataset("sheaf://test/tables/tables/numbers.parquet", sample=2.0)
    with pytest.raises(sheaf.InvalidArgumentError, match="limit"):
        client.dataset("sheaf://test/tables/tables/numbers.parquet?limit=3", limit=4)
    with pytest.raises(sheaf.InvalidArgumentError, match="unknown action"):
        client.action("no_such_action")


def test_unavailable(data):
    from conftest import free_port

    c = sheaf.connect(f"grpc://127.0.0.1:{free_port()}", timeout=10)
    with pytest.raises(sheaf.UnavailableError) as e:
        c.list_packages()
    assert isinstance(e.value, ConnectionError) and "127.0.0.1" in str(e.value)


def test_errors_survive_pickling(client):
    with pytest.raises(sheaf.NotFoundError) as e:
        client.resolve("nobody/nothing")
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is sheaf.NotFoundError and str(again) == str(e.value)
    assert again.server_message == e.value.server_message and again.code == "NOT_FOUND"
    assert again.reason == "NOT_FOUND" and again.package == "nobody/nothing"


# ---------------------------------------------------------------------------
# The token: a pyarrow Flight server on loopback records the headers it gets
# and refuses calls without one (tests/test_auth.py uses `sheaf serve --auth`).
# ---------------------------------------------------------------------------


class _Headers(flight.ServerMiddlewareFactory):
    def __init__(self):
        self.seen = []

    def start_call(self, info, headers):
        auth = headers.get("authorization", [])
        self.seen.append((info.method, auth, headers.get("x-team", [])))
        if auth != ["Bearer s3cret"]:
            raise flight.FlightUnauthenticatedError("a bearer token is required")
        return None


class _AuthServer(flight.FlightServerBase):
    """Answers every action with a typed ResolveResponse (the resolve the tests call)."""

    def do_action(self, context, action):
        packed = any_pb2.Any()
        packed.Pack(sheaf_pb2.ResolveResponse(package="a/b", top_hash="0" * 64))
        yield flight.Result(packed.SerializeToString())


@pytest.fixture
def auth_server():
    headers = _Headers()
    server = _AuthServer("grpc://127.0.0.1:0", middleware={"headers": headers})
    try:
        yield f"grpc://127.0.0.1:{server.port}", headers
    finally:
        server.shutdown()


def test_token_is_sent_as_bearer_header_on_every_call(auth_server):
    url, headers = auth_server
    c = sheaf.connect(url, token="s3cret", headers={"x-team": "ml"}, timeout=10)
    assert c.resolve("a/b") == "0" * 64
    assert c.resolve("a/b") == "0" * 64
    assert len(headers.seen) == 2
    assert all(auth == ["Bearer s3cret"] and team == ["ml"] for _, auth, team in headers.seen)


def test_unauthenticated(auth_server):
    url, _ = auth_server
    for token in (None, "wrong"):
        with pytest.raises(sheaf.UnauthenticatedError) as e:
            sheaf.connect(url, token=token, timeout=10).resolve("a/b")
        assert "bearer token is required" in e.value.server_message
        assert isinstance(e.value, PermissionError)


# ---------------------------------------------------------------------------
# Logging in: a pyarrow Flight server on loopback answers the Basic handshake
# with a session token, as `sheaf serve --auth` does (tests/test_auth.py
# tests the real server).
# ---------------------------------------------------------------------------


class _Session(flight.ServerMiddleware):
    def __init__(self, answer):
        self.answer = answer

    def sending_headers(self):
        return {"authorization": self.answer} if self.answer else {}


class _BasicLogin(flight.ServerMiddlewareFactory):
    def __init__(self, answer="Bearer sess-1"):
        self.answer = answer
        self.seen = []

    def start_call(self, info, headers):
        import base64

        auth = (headers.get("authorization") or [""])[0]
        self.seen.append((info.method, auth))
        if info.method == flight.FlightMethod.HANDSHAKE:
            if auth != "Basic " + base64.b64encode(b"alice:pw-1").decode():
                raise flight.FlightUnauthenticatedError("invalid user name or password")
            return _Session(self.answer)
        if auth != "Bearer sess-1":
            raise flight.FlightUnauthenticatedError("a bearer token is required")
        return None


class _NoAuthHandler(flight.ServerAuthHandler):
    """Leaves the handshake to the middleware (pyarrow's servers answer
    UNIMPLEMENTED to a handshake without an auth handler)."""

    def authenticate(self, outgoing, incoming):
        pass

    def is_valid(self, token):
        return ""


@pytest.fixture
def login_server(request):
    answer = getattr(request, "param", "Bearer sess-1")
    login = _BasicLogin(answer)
    server = _AuthServer("grpc://127.0.0.1:0", auth_handler=_NoAuthHandler(), middleware={"login": login})
    try:
        yield f"grpc://127.0.0.1:{server.port}", login
    finally:
        server.shutdown()


def test_login_keeps_only_the_session_token(login_server):
    url, login = login_server
    c = sheaf.connect(url, username="alice", password="pw-1", timeout=10)
    assert c.spec.token == "sess-1"
    assert c.resolve("a/b") == "0" * 64
    copy = pickle.loads(pickle.dumps(c))
    assert copy.resolve("a/b") == "0" * 64
    assert b"pw-1" not in pickle.dumps(c) and "pw-1" not in repr(vars(c)) and "sess-1" not in repr(c.spec)
    methods = [m for m, _ in login.seen]
    assert methods.count(flight.FlightMethod.HANDSHAKE) == 1, "one login, then the session token"
    assert all(auth == "Bearer sess-1" for m, auth in login.seen if m != flight.FlightMethod.HANDSHAKE)


def test_failed_login(login_server):
    url, _ = login_server
    with pytest.raises(sheaf.UnauthenticatedError) as e:
        sheaf.connect(url, username="alice", password="wrong-pw", timeout=10)
    assert "logging in as 'alice'" in str(e.value) and "wrong-pw" not in str(e.value)
    assert e.value.server_message == "invalid user name or password"


@pytest.mark.parametrize("login_server", [None, "Basic xyz"], indirect=True)
def test_login_answered_without_a_session_token(login_server):
    url, _ = login_server
    with pytest.raises(sheaf.UnauthenticatedError, match="no session token"):
        sheaf.connect(url, username="alice", password="pw-1", timeout=10)


def test_sheaf_token_environment_variable(auth_server, monkeypatch):
    url, headers = auth_server
    monkeypatch.setenv("SHEAF_TOKEN", "s3cret")
    assert sheaf.connect(url, timeout=10).resolve("a/b") == "0" * 64
    with pytest.raises(sheaf.UnauthenticatedError):
        sheaf.connect(url, token="other", timeout=10).resolve("a/b")
