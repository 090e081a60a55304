"""Helpers for the authentication and TLS suite (test_auth.py): running
`sheaf auth hash-password` and `sheaf auth new-token`, writing auth files,
logging in with pyarrow, calling every Flight RPC with given credentials,
classifying the outcome, and test certificates (trustme).

gRPC codes are read from pyarrow's error text (hostile_lib.code_of):
UNAUTHENTICATED arrives as flight.FlightUnauthenticatedError ("returned
unauthenticated error"), PERMISSION_DENIED as FlightUnauthorizedError,
NOT_FOUND as ArrowKeyError."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import select
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import hostile_lib
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from hostile_lib import Outcome, server_message
from sheaf_testlib import SHEAF_BIN, Sheaf, base_env, describe

TIMEOUT = 30.0
OPTIONS = flight.FlightCallOptions(timeout=TIMEOUT)
# Calls that are expected to fail at the connection (TLS refused): short.
SHORT = flight.FlightCallOptions(timeout=8.0)

PHC = re.compile(r"^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")

# Every secret a test hands to a server (passwords, API tokens, session
# tokens, Basic credentials); test_no_secret_in_any_server_log checks that
# none of them appears in any server's stderr.
SECRETS: set[str] = set()


def remember(secret: str) -> str:
    SECRETS.add(secret)
    return secret


# Flight's own exception classes, for when pyarrow's text has no code phrase.
_BY_TYPE = [
    (flight.FlightUnauthenticatedError, "UNAUTHENTICATED"),
    (flight.FlightUnauthorizedError, "PERMISSION_DENIED"),
    (flight.FlightUnavailableError, "UNAVAILABLE"),
    (flight.FlightTimedOutError, "DEADLINE_EXCEEDED"),
    (flight.FlightCancelledError, "CANCELLED"),
    (flight.FlightInternalError, "INTERNAL"),
    (pa.ArrowKeyError, "NOT_FOUND"),
]


def code_of(e: BaseException) -> str:
    """The gRPC code of a pyarrow error: from pyarrow's phrase
    (hostile_lib.code_of), else from the exception's class."""
    code = hostile_lib.code_of(e)
    if code.startswith("OTHER("):
        for cls, name in _BY_TYPE:
            if isinstance(e, cls):
                return name
    return code


def attempt(fn) -> Outcome:
    try:
        return Outcome(value=fn())
    except (pa.ArrowException, OSError, flight.FlightError) as e:
        return Outcome(code=code_of(e), message=server_message(e), error=e)


# --------------------------------------------------------------------------
# `sheaf auth`
# --------------------------------------------------------------------------

_PHC_CACHE: dict[str, str] = {}


def hash_password(password: str, *, cached: bool = True) -> str:
    """`sheaf auth hash-password` with the password on stdin (followed by a
    newline, as `echo pw |` or a terminal sends it); returns the PHC string."""
    remember(password)
    if cached and password in _PHC_CACHE:
        return _PHC_CACHE[password]
    r = Sheaf(None)("auth", "hash-password", input=password + "\n", timeout=60)
    assert r.returncode == 0, describe(r)
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"hash-password should print one PHC string:\n{describe(r)}"
    phc = lines[0]
    assert PHC.match(phc), f"not an argon2id PHC string: {phc!r}\n{describe(r)}"
    assert password not in r.stdout and password not in r.stderr, "hash-password echoed the password"
    _PHC_CACHE[password] = phc
    return phc


@dataclass
class Token:
    name: str
    token: str
    sha256: str
    block: dict


def new_token(name: str) -> Token:
    """`sheaf auth new-token NAME`: the token on the first line, a TOML
    `[[token]]` block after it."""
    r = Sheaf(None)("auth", "new-token", name, timeout=60)
    assert r.returncode == 0, describe(r)
    lines = r.stdout.splitlines()
    assert lines, describe(r)
    token = lines[0].strip()
    assert token and not re.search(r"\s", token), f"first line should be the token alone:\n{describe(r)}"
    try:
        doc = tomllib.loads("\n".join(lines[1:]))
    except tomllib.TOMLDecodeError as e:
        pytest.fail(f"the lines after the token are not TOML ({e}):\n{describe(r)}")
    blocks = doc.get("token")
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one [[token]] block:\n{describe(r)}"
    block = blocks[0]
    assert block.get("name") == name, f"[[token]] name should be {name!r}:\n{describe(r)}"
    assert block.get("sha256") == hashlib.sha256(token.encode()).hexdigest(), (
        f"sha256 should be the hex SHA-256 of the token:\n{describe(r)}"
    )
    assert token not in r.stderr
    remember(token)
    return Token(name=name, token=token, sha256=block["sha256"], block=block)


def serve_refusing(registry, *args, timeout: float = 15) -> subprocess.CompletedProcess:
    """Runs `sheaf --registry REGISTRY serve ARGS...`, which should exit
    before listening. If it prints its listening line instead it is killed at
    once (returncode -9, "[test harness] it started listening" on stderr), so
    a server that wrongly starts fails the test without waiting."""
    if not SHEAF_BIN.is_file():
        pytest.fail(f"sheaf binary not found at {SHEAF_BIN}")
    cmd = [str(SHEAF_BIN), "--registry", str(registry), "serve", *map(str, args)]
    env = base_env()
    env["NO_COLOR"] = "1"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = b""
    note = ""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            note = f"\n[test harness] still running after {timeout}s"
            break
        ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 0.2))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break  # stdout closed: the process is exiting
            out += chunk
            if b"\n" in out:
                note = "\n[test harness] it started listening"
                break
        elif proc.poll() is not None:
            break
    if note:
        proc.kill()
    try:
        rest, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, err = proc.communicate()
    code = -9 if note else proc.returncode
    return subprocess.CompletedProcess(
        cmd, code, (out + rest).decode(errors="replace"), err.decode(errors="replace") + note
    )


# --------------------------------------------------------------------------
# Auth files
# --------------------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def render(
    server: dict | None, users: list[dict] = (), tokens: list[dict] = (), grants: list[dict] = (), extra: str = ""
) -> str:
    """An auth file from plain dicts (the order of keys is kept)."""
    out = []
    if server is not None:
        out.append("[server]")
        out += [f"{k} = {_toml_value(v)}" for k, v in server.items()]
        out.append("")
    for table, items in (("user", users), ("token", tokens), ("grant", grants)):
        for item in items:
            out.append(f"[[{table}]]")
            out += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
            out.append("")
    out.append(extra)
    return "\n".join(out)


@dataclass
class User:
    name: str
    password: str
    groups: list[str] = field(default_factory=list)

    def entry(self) -> dict:
        return {"name": self.name, "password": hash_password(self.password), "groups": self.groups}


@dataclass
class Config:
    """An auth file: server key, users, tokens (Token, groups) and grants."""

    key: str
    users: list[User] = field(default_factory=list)
    tokens: list[tuple[Token, list[str]]] = field(default_factory=list)
    grants: list[dict] = field(default_factory=list)
    session_ttl: str | None = None
    extra: str = ""  # more TOML, appended as is (a [jwt] section)

    def text(self) -> str:
        server = {"key": self.key}
        if self.session_ttl is not None:
            server["session_ttl"] = self.session_ttl
        return render(
            server,
            [u.entry() for u in self.users],
            [{"name": t.name, "sha256": t.sha256, "groups": g} for t, g in self.tokens],
            self.grants,
            self.extra,
        )

    def write(self, path: Path) -> Path:
        """Writes atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.text())
        os.replace(tmp, path)
        return path


def grant(to: str, packages: str, access: str) -> dict:
    return {"to": to, "packages": packages, "access": access}


# --------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------


def with_header(value: bytes | str | None, timeout: float = TIMEOUT) -> flight.FlightCallOptions:
    """Call options carrying `authorization: VALUE` (none if VALUE is None)."""
    if value is None:
        return flight.FlightCallOptions(timeout=timeout)
    if isinstance(value, str):
        value = value.encode()
    return flight.FlightCallOptions(timeout=timeout, headers=[(b"authorization", value)])


def bearer(token: str, timeout: float = TIMEOUT) -> flight.FlightCallOptions:
    return with_header("Bearer " + token, timeout)


def login(client, user: str, password: str) -> str:
    """The handshake as pyarrow does it (Basic); returns the session token,
    checking the header pair pyarrow hands back."""
    remember(password)
    remember(base64.b64encode(f"{user}:{password}".encode()).decode())
    pair = client.authenticate_basic_token(user, password, OPTIONS)
    assert isinstance(pair, tuple) and len(pair) == 2, f"authenticate_basic_token returned {pair!r}"
    name, value = pair
    assert name.lower() == b"authorization", f"the handshake answered header {name!r}, expected authorization"
    assert value.startswith(b"Bearer "), f"the handshake answered {value[:20]!r}..., expected 'Bearer <token>'"
    token = value[len(b"Bearer ") :].decode()
    assert token and " " not in token
    return remember(token)


def login_attempt(client, user: str, password: str) -> Outcome:
    remember(password)
    remember(base64.b64encode(f"{user}:{password}".encode()).decode())
    return attempt(lambda: client.authenticate_basic_token(user, password, OPTIONS))


# --------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------


def cmd(u: str) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(u)


def info(client, u: str, opts) -> flight.FlightInfo:
    return client.get_flight_info(cmd(u), opts)


def app_metadata(fi: flight.FlightInfo) -> dict:
    return json.loads(bytes(fi.app_metadata).decode("utf-8"))


def read(client, u: str, opts) -> pa.Table:
    fi = info(client, u, opts)
    parts = [client.do_get(ep.ticket, opts).read_all() for ep in fi.endpoints]
    return pa.concat_tables(parts) if parts else fi.schema.empty_table()


def action(client, name: str, body: dict | None, opts):
    payload = json.dumps(body if body is not None else {}).encode()
    results = list(client.do_action(flight.Action(name, payload), opts))
    assert len(results) == 1, f"{name}: expected one result, got {len(results)}"
    return json.loads(results[0].body.to_pybytes().decode("utf-8"))


def put(client, target: str, table: pa.Table, opts) -> dict:
    """DoPut; a refusal surfaces from wherever pyarrow reports it (write,
    done_writing, read or close), with the server's status."""
    writer, reader = client.do_put(cmd(target), table.schema, opts)
    try:
        writer.write_table(table)
        writer.done_writing()
        buf = reader.read()
    except Exception as first:
        try:
            writer.close()  # the status the server sent, when the write failed first
        except Exception as e:
            raise e from first
        raise
    writer.close()
    assert buf is not None, "DoPut returned no result"
    return json.loads(buf.to_pybytes())


def list_packages(infos) -> set[str]:
    return {app_metadata(i)["package"] for i in infos}


def every_rpc(client, opts, *, read_uri: str, ticket: flight.Ticket, put_uri: str) -> dict[str, Outcome]:
    """Each of the seven RPCs once with `opts`: name -> Outcome."""
    small = pa.table({"x": pa.array([1, 2, 3], pa.int64())})
    calls = {
        "GetFlightInfo": lambda: client.get_flight_info(cmd(read_uri), opts),
        "GetSchema": lambda: client.get_schema(cmd(read_uri), opts),
        "DoGet": lambda: client.do_get(ticket, opts).read_all(),
        "DoPut": lambda: put(client, put_uri, small, opts),
        "DoAction": lambda: list(client.do_action(flight.Action("list_packages", b"{}"), opts)),
        "ListFlights": lambda: list(client.list_flights(b"", opts)),
        "ListActions": lambda: list(client.list_actions(opts)),
    }
    return {name: attempt(fn) for name, fn in calls.items()}


def assert_refused(outcomes: dict[str, Outcome], codes: tuple[str, ...], what: str, *, not_in_message=()):
    bad = {n: o.describe() for n, o in outcomes.items() if o.ok or o.code not in codes}
    assert not bad, f"{what}: expected {' or '.join(codes)} from every RPC, got {bad}"
    for n, o in outcomes.items():
        for s in not_in_message:
            assert s not in str(o.error), f"{what}: {n}'s error quotes a secret: {o.message}"


def same_shape(a: str, name_a: str, b: str, name_b: str) -> tuple[str, str]:
    """Both messages with their package name replaced by <pkg>."""
    return a.replace(name_a, "<pkg>"), b.replace(name_b, "<pkg>")


# --------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------


@dataclass
class Pki:
    """A server CA and certificate (127.0.0.1, localhost), a client CA with a
    client certificate, and an unrelated CA with its own certificates."""

    dir: Path
    ca_pem: bytes
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert_pem: bytes
    client_key_pem: bytes
    other_ca_pem: bytes
    other_client_cert_pem: bytes
    other_client_key_pem: bytes
    intruder_cert_pem: bytes  # from the client CA, CN=intruder
    intruder_key_pem: bytes


def make_pki(root: Path) -> Pki:
    try:
        import trustme
    except ImportError as e:  # pragma: no cover - environment problem
        pytest.fail(
            f"trustme is required for the TLS tests: {e}. "
            "Install it with `pip install -r tests/python/requirements.txt`."
        )
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server_cert = root / "server.pem"
    server_key = root / "server.key"
    server_cert.write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    server_key.write_bytes(server.private_key_pem.bytes())

    client_ca = trustme.CA()
    client = client_ca.issue_cert(common_name="ci-job")
    intruder = client_ca.issue_cert(common_name="intruder")
    (root / "client-ca.pem").write_bytes(client_ca.cert_pem.bytes())

    other = trustme.CA()
    other_client = other.issue_cert(common_name="ci-job")
    return Pki(
        dir=root,
        ca_pem=ca.cert_pem.bytes(),
        server_cert=server_cert,
        server_key=server_key,
        client_ca=root / "client-ca.pem",
        client_cert_pem=b"".join(b.bytes() for b in client.cert_chain_pems),
        client_key_pem=client.private_key_pem.bytes(),
        other_ca_pem=other.cert_pem.bytes(),
        other_client_cert_pem=b"".join(b.bytes() for b in other_client.cert_chain_pems),
        other_client_key_pem=other_client.private_key_pem.bytes(),
        intruder_cert_pem=b"".join(b.bytes() for b in intruder.cert_chain_pems),
        intruder_key_pem=intruder.private_key_pem.bytes(),
    )


def port_of(url: str) -> int:
    m = re.search(r":(\d+)/?$", url)
    assert m, f"no port in {url!r}"
    return int(m.group(1))


# --------------------------------------------------------------------------
# JWTs (signed here with `cryptography`, which trustme brings)
# --------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(n: int) -> str:
    return _b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class SigningKey:
    """A private key an identity provider would sign with, and its JWK."""

    alg: str  # RS256, ES256 or HS256
    kid: str | None
    private: object  # a cryptography private key, or bytes for HS256

    def jwk(self) -> dict:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        pub = self.private.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            n = pub.public_numbers()
            jwk = {"kty": "RSA", "n": _int_b64(n.n), "e": _int_b64(n.e), "alg": self.alg, "use": "sig"}
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            n = pub.public_numbers()
            size = (pub.curve.key_size + 7) // 8
            jwk = {
                "kty": "EC",
                "crv": "P-256",
                "x": _b64url(n.x.to_bytes(size, "big")),
                "y": _b64url(n.y.to_bytes(size, "big")),
                "alg": self.alg,
                "use": "sig",
            }
        else:
            raise TypeError(type(pub))
        if self.kid:
            jwk["kid"] = self.kid
        return jwk


def rsa_key(kid: str | None = "rsa-1") -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return SigningKey("RS256", kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str | None = "ec-1") -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return SigningKey("ES256", kid, ec.generate_private_key(ec.SECP256R1()))


def hs_key(secret: bytes) -> SigningKey:
    return SigningKey("HS256", None, secret)


def make_jwt(
    key: SigningKey, claims: dict, *, alg: str | None = None, kid: str | None = None, hmac_secret: bytes | None = None
) -> str:
    """A compact JWT of `claims` signed with `key` (header `alg` as given,
    to forge tokens that lie about it; `hmac_secret` signs with HMAC instead,
    whatever `alg` says)."""
    import hashlib as _h
    import hmac as _hmac

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    header = {"alg": alg or key.alg, "typ": "JWT"}
    if kid or key.kid:
        header["kid"] = kid or key.kid
    signing_input = (_b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())).encode()
    if hmac_secret is not None or key.alg == "HS256":
        sig = _hmac.new(hmac_secret if hmac_secret is not None else key.private, signing_input, _h.sha256).digest()
    elif key.alg == "RS256":
        sig = key.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return remember(signing_input.decode() + "." + _b64url(sig))


def jwt_claims(sub: str, *, groups=None, iss: str = "https://idp.test", aud="sheaf", ttl: int = 600, **extra) -> dict:
    now = int(time.time())
    claims = {"sub": sub, "iss": iss, "aud": aud, "iat": now, "exp": now + ttl}
    if groups is not None:
        claims["groups"] = groups
    claims.update(extra)
    return claims
