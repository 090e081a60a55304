"""Credentials and TLS (issue 11) against the real `sheaf serve --auth`:

- a login with user name and password (the Flight handshake) keeps only the
  session token the server answers, and reads with it;
- a wrong password or an unknown user raises sheaf.UnauthenticatedError
  without quoting the password; calls without (valid) credentials too;
- packages the caller may not read answer NOT_FOUND, like missing ones;
- SHEAF_TOKEN is used when connect() is given no credentials;
- DataLoader workers (forkserver) read over TLS with an API token, and after
  a login with the session token alone: what they receive holds no password;
- mutual TLS with cert_chain / private_key.

The servers serve the shared test registry (conftest's `data`); the API
token and password hash come from `sheaf auth`, the certificates from
trustme.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

import sheaf

import testdata
from conftest import TIMEOUT, Server, child_env, free_port, sheaf_bin, start_server

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"
# Short deadline for calls expected to fail at the connection (TLS refused).
SHORT = 8.0

# Servers started here: their stderr is printed when a test fails.
SERVERS: list[Server] = []


def sheaf_auth(*args: str, input: str | None = None) -> dict:
    """`sheaf --json auth ARGS` (JSON output), asserting success."""
    cmd = [str(sheaf_bin()), "--json", "auth", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, input=input, env=child_env(), timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads(r.stdout)


@dataclass
class Creds:
    key: str
    user: str
    password: str
    token: str  # API token of `job` (group ml)
    outsider: str  # API token of `outsider` (no grant)
    cfg: Path


@dataclass
class Pki:
    ca_pem: bytes
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert_pem: bytes
    client_key_pem: bytes
    other_cert_pem: bytes  # a client certificate from a CA the server does not trust
    other_key_pem: bytes


def toml(v) -> str:
    return json.dumps(v)  # JSON strings and lists of strings are valid TOML


@pytest.fixture(scope="module")
def creds(tmp_path_factory) -> Creds:
    root = tmp_path_factory.mktemp("auth")
    password = "pw-" + secrets.token_hex(8)
    phc = sheaf_auth("hash-password", input=password + "\n")["password"]
    assert phc.startswith("$argon2id$") and password not in phc
    job, outsider = sheaf_auth("new-token", "job"), sheaf_auth("new-token", "outsider")
    assert job["name"] == "job" and len(job["sha256"]) == 64
    key = secrets.token_hex(24)
    cfg = root / "auth.toml"
    cfg.write_text(f"""[server]
key = {toml(key)}

[[user]]
name = "alice"
password = {toml(phc)}
groups = ["ml"]

[[token]]
name = "job"
sha256 = {toml(job["sha256"])}
groups = ["ml"]

[[token]]
name = "outsider"
sha256 = {toml(outsider["sha256"])}
groups = []

[[grant]]
to = "group:ml"
packages = "test/tables"
access = "read"
""")
    return Creds(key, "alice", password, job["token"], outsider["token"], cfg)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    import trustme

    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    (root / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (root / "server.pem").write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    (root / "server.key").write_bytes(server.private_key_pem.bytes())
    client_ca = trustme.CA()
    client = client_ca.issue_cert(common_name="ci-job")
    (root / "client-ca.pem").write_bytes(client_ca.cert_pem.bytes())
    other = trustme.CA().issue_cert(common_name="ci-job")
    return Pki(
        ca_pem=ca.cert_pem.bytes(),
        ca_file=root / "ca.pem",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        client_ca=root / "client-ca.pem",
        client_cert_pem=b"".join(b.bytes() for b in client.cert_chain_pems),
        client_key_pem=client.private_key_pem.bytes(),
        other_cert_pem=b"".join(b.bytes() for b in other.cert_chain_pems),
        other_key_pem=other.private_key_pem.bytes(),
    )


def _serve(data, creds: Creds, name: str, *extra: str | Path) -> Server:
    server = start_server(data.registry, creds.cfg.parent / f"{name}.log", "--auth", str(creds.cfg), *map(str, extra))
    SERVERS.append(server)
    return server


@pytest.fixture(scope="module")
def plain(data, creds):
    """`sheaf serve --auth` on plaintext loopback."""
    server = _serve(data, creds, "plain")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls(data, creds, pki):
    """`sheaf serve --auth --tls-cert --tls-key`."""
    server = _serve(data, creds, "tls", "--tls-cert", pki.server_cert, "--tls-key", pki.server_key)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls(data, creds, pki):
    """`sheaf serve --auth` with mutual TLS (--tls-client-ca)."""
    server = _serve(
        data,
        creds,
        "mtls",
        "--tls-cert",
        pki.server_cert,
        "--tls-key",
        pki.server_key,
        "--tls-client-ca",
        pki.client_ca,
    )
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _auth_server_logs_on_failure(request):
    starts = {id(s): s.log.stat().st_size if s.log.exists() else 0 for s in SERVERS}
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed:
        return
    for s in SERVERS:
        if s.log.exists():
            with open(s.log, "rb") as f:
                f.seek(starts.get(id(s), 0))
                logged = f.read().decode(errors="replace")
            if logged.strip():
                print(f"\n----- {s.log.name} ({s.url}) during this test -----\n{logged[-10000:]}")


def connect(url: str, **kw) -> sheaf.Client:
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("read_timeout", TIMEOUT)
    return sheaf.connect(url, **kw)


def assert_no_secret(blob: bytes | str, *secrets_: str, what: str) -> None:
    text = blob if isinstance(blob, str) else blob.decode("latin-1")
    for s in secrets_:
        assert s not in text, f"{what} holds a secret"


# ---------------------------------------------------------------------------
# Logging in
# ---------------------------------------------------------------------------


def test_login_then_read(plain, creds):
    assert plain.url.startswith("grpc://")
    with connect(plain.url, username=creds.user, password=creds.password) as c:
        session = c.spec.token
        assert session and session != creds.password and session != creds.token
        table = c.dataset(NUMBERS, columns=["id"]).to_table()
        assert table.num_rows == testdata.NUMBERS
        assert sorted(table.column("id").to_pylist()) == list(range(testdata.NUMBERS))
        assert [p.name for p in c.list_packages()] == ["test/tables"]  # only what alice may read
        # What the client keeps and hands on holds the session token, never the password.
        blob = pickle.dumps(c)
        assert session.encode() in blob
        assert_no_secret(blob, creds.password, what="the pickled client")
        assert_no_secret(repr(vars(c)), creds.password, what="the client's attributes")
        assert_no_secret(repr(c.spec), creds.password, session, what="repr(spec)")
        # A copy in this process (no new login) reads with the session token.
        again = pickle.loads(blob)
        assert again.spec.token == session and again.resolve("test/tables:v1")


def test_unreadable_package_is_not_found(plain, creds):
    with connect(plain.url, token=creds.token) as c:
        with pytest.raises(sheaf.NotFoundError) as hidden:
            c.resolve("test/files")
        with pytest.raises(sheaf.NotFoundError) as missing:
            c.resolve("test/none")
        assert hidden.value.server_message.replace("test/files", "<p>") == missing.value.server_message.replace(
            "test/none", "<p>"
        )
        with pytest.raises(sheaf.NotFoundError):
            c.dataset("sheaf://test/files")
    with connect(plain.url, token=creds.outsider) as c:
        assert c.list_packages() == []
        with pytest.raises(sheaf.NotFoundError):
            c.dataset(NUMBERS)


def test_wrong_password_raises_unauthenticated(data, creds):
    # Its own server: failed logins are rate-limited per peer, which must not slow the other tests.
    server = _serve(data, creds, "bad-logins")
    try:
        wrong = "wrong-" + secrets.token_hex(8)
        with pytest.raises(sheaf.UnauthenticatedError) as e:
            connect(server.url, username=creds.user, password=wrong)
        err = e.value
        assert err.code == "UNAUTHENTICATED" and isinstance(err, PermissionError)
        assert "logging in as 'alice'" in str(err) and server.url in str(err)
        assert_no_secret(str(err), wrong, creds.password, what="the error")
        assert_no_secret(repr(err.server_message), wrong, what="the server's message")
        with pytest.raises(sheaf.UnauthenticatedError) as e:
            connect(server.url, username="mallory", password=creds.password)
        assert_no_secret(str(e.value), creds.password, what="the error")
        assert_no_secret(server.stderr(), wrong, creds.password, what="the server's log")
    finally:
        server.stop()


def test_calls_without_valid_credentials_are_unauthenticated(plain, creds):
    for token in (None, "not-a-token", creds.token + "x"):
        with connect(plain.url, token=token) as c:
            with pytest.raises(sheaf.UnauthenticatedError) as e:
                c.list_packages()
            assert e.value.code == "UNAUTHENTICATED"
            with pytest.raises(sheaf.UnauthenticatedError):
                c.dataset(NUMBERS)


def test_sheaf_token_from_the_environment(plain, creds, monkeypatch):
    monkeypatch.setenv("SHEAF_TOKEN", creds.token)
    with connect(plain.url) as c:
        assert c.spec.token == creds.token
        assert c.dataset(NUMBERS, columns=["id"]).num_rows == testdata.NUMBERS
    # Explicit credentials win over the environment.
    with connect(plain.url, token=creds.outsider) as c:
        assert c.list_packages() == []
    monkeypatch.setenv("SHEAF_TOKEN", "not-a-token")
    with connect(plain.url, username=creds.user, password=creds.password) as c:
        assert c.spec.token != "not-a-token"
        assert [p.name for p in c.list_packages()] == ["test/tables"]
    with connect(plain.url) as c, pytest.raises(sheaf.UnauthenticatedError):
        c.list_packages()
    monkeypatch.setenv("SHEAF_TOKEN", "")
    assert connect(plain.url).spec.token is None


def test_login_to_a_server_without_auth(data, creds):
    """The shared test server runs without --auth: it answers the handshake
    UNIMPLEMENTED, and connect() says so instead of going on anonymously."""
    with pytest.raises(sheaf.UnimplementedError) as e:
        connect(data.url, username=creds.user, password=creds.password)
    assert_no_secret(str(e.value), creds.password, what="the error")
    assert "logging in as 'alice'" in str(e.value)


def test_connect_checks_its_arguments(tmp_path, pki):
    url = "grpc+tls://127.0.0.1:1"
    bad = [
        dict(username="alice"),
        dict(password="hunter2-xyz"),
        dict(token="t", username="alice", password="hunter2-xyz"),
        dict(cert_chain=pki.client_cert_pem),
        dict(private_key=pki.client_key_pem),
        dict(tls_root_certs=str(pki.ca_file)),  # a path given as str: not PEM
        dict(tls_root_certs=tmp_path / "missing.pem"),
    ]
    for kw in bad:
        with pytest.raises(sheaf.InvalidArgumentError) as e:
            sheaf.connect(url, **kw)
        assert e.value.code == "CLIENT"
        assert "hunter2-xyz" not in str(e.value)
    with pytest.raises(sheaf.InvalidArgumentError, match="grpc\\+tls"):
        sheaf.connect("grpc://127.0.0.1:1", tls_root_certs=pki.ca_pem)
    c = sheaf.connect(
        url,
        token="t0ken",
        tls_root_certs=pki.ca_file,
        cert_chain=pki.client_cert_pem.decode(),
        private_key=pki.client_key_pem,
    )
    assert c.spec.tls_root_certs == pki.ca_pem and c.spec.cert_chain == pki.client_cert_pem
    assert_no_secret(repr(c.spec), "t0ken", pki.client_key_pem.decode(), what="repr(spec)")


# ---------------------------------------------------------------------------
# TLS, and DataLoader workers
# ---------------------------------------------------------------------------


def assert_exactly(ids, n):
    counts = Counter(ids)
    assert not [i for i, c in counts.items() if c > 1], "rows read more than once"
    assert set(counts) == set(range(n))


def _loader(ds):
    import sheaf.torch

    # forkserver, as test_torch.py (which SHEAF_TEST_START_METHOD=fork switches to fork)
    ctx = os.environ.get("SHEAF_TEST_START_METHOD", "forkserver")
    return sheaf.torch.DataLoader(ds, num_workers=2, multiprocessing_context=ctx, timeout=120)


def test_tls_refuses_untrusted_and_plaintext(tls, creds, pki):
    assert tls.url.startswith("grpc+tls://"), tls.url
    with connect(tls.url, token=creds.token, timeout=SHORT) as c:  # the system's roots only
        with pytest.raises(sheaf.SheafError):
            c.list_packages()
    with connect(tls.url, token=creds.token, tls_root_certs=pki.other_cert_pem, timeout=SHORT) as c:
        with pytest.raises(sheaf.SheafError):
            c.list_packages()
    with connect(tls.url.replace("grpc+tls://", "grpc://"), token=creds.token, timeout=SHORT) as c:
        with pytest.raises(sheaf.SheafError):
            c.list_packages()


def test_dataloader_workers_over_tls_with_a_token(tls, creds, pki):
    import torchhelp

    with connect(tls.url, token=creds.token, tls_root_certs=pki.ca_pem) as c:
        ds = c.dataset(NUMBERS, columns=["id"], partitions=8).to_torch(
            batch_size=1000, seed=3, collate=torchhelp.ids_and_pid
        )
        out = list(_loader(ds))
    assert len({b["pid"] for b in out}) == 2 and os.getpid() not in {b["pid"] for b in out}
    assert_exactly([i for b in out for i in b["id"]], testdata.NUMBERS)


def test_dataloader_workers_get_the_session_token_not_the_password(tls, creds, pki):
    import torchhelp

    with connect(tls.url, username=creds.user, password=creds.password, tls_root_certs=pki.ca_file) as c:
        session = c.spec.token
        assert session and session != creds.password
        ds = c.dataset(NUMBERS, columns=["id"], partitions=8).to_torch(
            batch_size=1000, seed=4, collate=torchhelp.ids_and_credentials
        )
        # What the DataLoader pickles for its workers.
        sent = pickle.dumps(ds)
        assert session.encode() in sent
        assert_no_secret(sent, creds.password, what="the dataset pickled for the workers")
        out = list(_loader(ds))
    assert len({b["pid"] for b in out}) == 2
    assert {b["token"] for b in out} == {session}, "every worker should send the session token"
    for b in out:
        assert_no_secret(b["held"], creds.password, what=f"what worker {b['pid']} holds")
    assert_exactly([i for b in out for i in b["id"]], testdata.NUMBERS)


# ---------------------------------------------------------------------------
# Mutual TLS
# ---------------------------------------------------------------------------


def test_mutual_tls(mtls, creds, pki):
    assert mtls.url.startswith("grpc+tls://"), mtls.url
    with connect(
        mtls.url,
        token=creds.token,
        tls_root_certs=pki.ca_pem,
        cert_chain=pki.client_cert_pem,
        private_key=pki.client_key_pem,
    ) as c:
        assert c.dataset(NUMBERS, columns=["id"]).to_table().num_rows == testdata.NUMBERS
        # A copy (as another process gets it) connects with the same certificate.
        copy = pickle.loads(pickle.dumps(c))
        assert copy.spec.cert_chain == pki.client_cert_pem and copy.resolve("test/tables:v1")
        copy.close()
    with connect(
        mtls.url,
        username=creds.user,
        password=creds.password,
        tls_root_certs=pki.ca_pem,
        cert_chain=pki.client_cert_pem.decode(),
        private_key=pki.client_key_pem.decode(),
    ) as c:
        assert [p.name for p in c.list_packages()] == ["test/tables"]
    # No client certificate, or one from a CA the server does not trust: no connection.
    with connect(mtls.url, token=creds.token, tls_root_certs=pki.ca_pem, timeout=SHORT) as c:
        with pytest.raises(sheaf.SheafError):
            c.list_packages()
    with connect(
        mtls.url,
        token=creds.token,
        tls_root_certs=pki.ca_pem,
        cert_chain=pki.other_cert_pem,
        private_key=pki.other_key_pem,
        timeout=SHORT,
    ) as c:
        with pytest.raises(sheaf.SheafError):
            c.list_packages()


# ---------------------------------------------------------------------------
# The README's examples
# ---------------------------------------------------------------------------

README_URL = "grpc+tls://sheaf.example.com:50051"


def test_readme_credentials_examples_run(tls, mtls, creds, pki, tmp_path, monkeypatch, capsys):
    """README.md's "Credentials and TLS" blocks (fenced ```py no-test, which
    test_readme.py and scripts/test-docs leave out), against the TLS servers: the files they name
    in the working directory, the token in SHEAF_TOKEN, the password typed."""
    import getpass
    import re

    from conftest import CLIENT_DIR

    text = (CLIENT_DIR / "README.md").read_text(encoding="utf-8")
    section = text.split("## Credentials and TLS", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```py no-test\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 3 and all(README_URL in b for b in blocks)
    (tmp_path / "ca.pem").write_bytes(pki.ca_pem)
    (tmp_path / "client.pem").write_bytes(pki.client_cert_pem)
    (tmp_path / "client.key").write_bytes(pki.client_key_pem)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHEAF_TOKEN", creds.token)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="Password: ": creds.password)
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        url = mtls.url if "cert_chain" in block else tls.url
        try:
            exec(compile(block.replace(README_URL, url), f"README.md py block {i + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"README.md py block {i + 1} failed: {type(e).__name__}: {e}\n{block}") from e
        namespace["client"].close()
    assert capsys.readouterr().out.splitlines() == ["['test/tables']"] * 3


def test_unreachable_login_is_unavailable(tls, creds, pki):
    url = f"grpc://127.0.0.1:{free_port()}"
    with pytest.raises(sheaf.UnavailableError) as e:
        connect(url, username=creds.user, password=creds.password, timeout=SHORT)
    assert f"logging in as 'alice' to {url}" in str(e.value)
    # A TLS server whose certificate is not trusted cannot be reached either.
    with pytest.raises((sheaf.UnavailableError, sheaf.DeadlineExceededError)):
        connect(tls.url, username=creds.user, password=creds.password, timeout=SHORT)
