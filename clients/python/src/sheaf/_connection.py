"""A connection to a Sheaf server: its settings (:class:`ConnectionSpec`),
:func:`connect`, and the plumbing under every :class:`~sheaf.Client` call:
the Flight client of each location in this process (reopened after a fork),
the login handshake, call options and DoAction calls (JSON and typed).

Credentials: an API token (``token=``, else ``$SHEAF_TOKEN``), or a user
name and password exchanged once, in :func:`connect`, for a session token
(the Flight handshake); only that token is kept and handed to other
processes. TLS: ``grpc+tls://`` with ``tls_root_certs``, and ``cert_chain``
with ``private_key`` for mutual TLS.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow.flight as flight
from google.protobuf import any_pb2, message

from . import _fork, _request
from ._cache import CacheSetting, make_cache
from .errors import (
    DeadlineExceededError,
    DetailsMiddleware,
    InvalidArgumentError,
    SheafError,
    UnauthenticatedError,
    UnavailableError,
    from_flight,
)

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "connect",
    "Connection",
    "ConnectionSpec",
    "TOKEN_ENV",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_STALL_TIMEOUT",
    "Pem",
    "keepalive_options",
]

R = TypeVar("R", bound=message.Message)

# Clients inherited from a parent process: never used nor destroyed in the
# child (gRPC state does not survive fork; destroying it may block).
_INHERITED: list[Any] = []


#: The environment variable :func:`connect` reads a token from when it is
#: given neither ``token`` nor ``username``.
TOKEN_ENV = "SHEAF_TOKEN"

#: :func:`connect`'s default ``stall_timeout`` (seconds an endpoint stream may
#: wait for the server's next message before its location counts as failed):
#: none. Keepalive (below) detects a frozen or unreachable server.
DEFAULT_STALL_TIMEOUT: float | None = None

#: :func:`connect`'s default ``keepalive``: while calls are open, the client
#: pings each connection after this many seconds without hearing from the
#: server, and drops the connection (UNAVAILABLE: the read moves on to the
#: endpoint's next location) when a ping is not answered within twice as many.
#: The same as the Rust client's (10 s, 20 s).
DEFAULT_KEEPALIVE = 10.0


def keepalive_options(seconds: float | None) -> list[tuple[str, int]]:
    """gRPC channel arguments (``FlightClient(generic_options=...)``) for
    HTTP/2 keepalive: a ping after ``seconds`` without a frame from the
    server, while calls are open, failing the connection when unanswered
    for ``2 * seconds``; none for ``None``. A live server answers pings even
    while it computes for long before its first batch; a frozen one (SIGSTOP,
    a hung host) or a dead path does not.

    ``grpc.http2.max_pings_without_data=0`` lifts gRPC core's limit of 2 pings
    until the client sends data (a DoGet sends none after its ticket), and
    ``grpc.http2.ping_timeout_ms`` bounds every ping, not only keepalive's:
    a frozen server that stopped in the middle of a stream usually leaves a
    flow-control (BDP) ping unanswered, which gRPC otherwise waits 60 s for."""
    if seconds is None:
        return []
    interval = max(1, round(seconds * 1000))
    return [
        ("grpc.keepalive_time_ms", interval),
        ("grpc.keepalive_timeout_ms", 2 * interval),
        ("grpc.http2.ping_timeout_ms", 2 * interval),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 0),
    ]


#: PEM text (``bytes`` or ``str``) or the path of a PEM file.
Pem = bytes | str | os.PathLike[str]


@dataclass(frozen=True)
class ConnectionSpec:
    """Everything needed to open a connection again in another process.

    It is pickled into DataLoader workers, so it holds no password: after a
    login, ``token`` is the session token the server answered. The token
    and the private key are left out of its ``repr``.
    """

    url: str
    token: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    read_timeout: float | None = None
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT
    keepalive: float | None = DEFAULT_KEEPALIVE
    tls_root_certs: bytes | None = None
    disable_server_verification: bool = False
    middleware: tuple[Any, ...] = ()
    cert_chain: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)

    def call_headers(self) -> list[tuple[bytes, bytes]]:
        """gRPC headers for every call: the extra headers and the bearer token."""
        out = [(k.lower().encode(), v.encode()) for k, v in self.headers]
        if self.token:
            out.append((b"authorization", f"Bearer {self.token}".encode()))
        return out


def _pem(value: Pem | None, name: str) -> bytes | None:
    """PEM bytes from PEM text or a file's path; a string that is not PEM
    (most likely a path given as ``str``) is refused rather than handed to
    gRPC, whose error would not say which argument was wrong."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        try:
            return Path(value).read_bytes()
        except OSError as e:
            raise InvalidArgumentError(
                f"{name}: cannot read {os.fspath(value)!r}: {e.strerror or e}", code="CLIENT"
            ) from e
    data = value.encode() if isinstance(value, str) else bytes(value)
    if b"-----BEGIN " not in data:
        raise InvalidArgumentError(
            f"{name}: expected PEM text (bytes or str starting with '-----BEGIN') or a pathlib.Path of a PEM file",
            code="CLIENT",
        )
    return data


def connect(
    url: str = "grpc://127.0.0.1:50051",
    token: str | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    headers: dict[str, str] | Sequence[tuple[str, str]] | None = None,
    timeout: float | None = 60.0,
    read_timeout: float | None = None,
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
    keepalive: float | None = DEFAULT_KEEPALIVE,
    tls_root_certs: Pem | None = None,
    cert_chain: Pem | None = None,
    private_key: Pem | None = None,
    disable_server_verification: bool = False,
    middleware: Sequence[flight.ClientMiddlewareFactory] = (),
    cache: CacheSetting = None,
    max_cache_bytes: int | None = None,
) -> Client:
    """Connects to a Sheaf server.

    Args:
        url: ``grpc://host:port`` or ``grpc+tls://host:port``. A URL with
            credentials (``grpc://user:password@host:port``) is refused:
            give them as ``username``/``password`` or ``token``.
        token: an API token (``sheaf auth new-token``), sent as
            ``authorization: Bearer <token>`` on every call. Without
            ``token`` and ``username``, ``$SHEAF_TOKEN`` when it is set.
        username, password: log in once, here, with the Flight handshake
            (HTTP Basic, as ``pyarrow``'s ``authenticate_basic_token``); the
            server answers a session token, which is then sent like
            ``token``. The password is not kept: neither the client nor
            what it hands to DataLoader workers holds it. Session tokens
            expire (12 h unless the server says otherwise): give long jobs
            an API token. A refused login raises
            :class:`~sheaf.UnauthenticatedError`.
        headers: extra gRPC headers sent on every call.
        timeout: seconds for each metadata call (login, actions, planning);
            ``None`` waits forever.
        read_timeout: seconds for each endpoint stream (DoGet) as a whole,
            ``None`` (the default) for no limit, since a large endpoint takes
            a while.
        stall_timeout: seconds a read may wait for the server's next message
            (the stream's opening, then each batch) before the location
            counts as failed; ``None`` (the default) waits as long as the
            server is alive (``keepalive`` detects a frozen or unreachable
            one). Set it to bound a live server that stops sending (a hung
            handler that still answers pings). The read then moves on to the
            endpoint's next location, skipping the rows already delivered;
            with none left it raises :class:`~sheaf.StalledError` (a
            :class:`~sheaf.DeadlineExceededError`) naming the endpoint, the
            locations and the timeout. Only time spent waiting for the server
            counts: a caller slow to ask for the next batch never stalls a
            stream. A server that computes long before its first batch (a
            filter matching few rows of a large table) needs a larger one.
        keepalive: seconds (default 10) after which the client pings a
            connection with calls open that it heard nothing on; a ping
            unanswered for twice as long fails the connection's calls as
            UNAVAILABLE, so a read leaves a frozen replica (a stopped
            process, a hung host, a dead network path) for the endpoint's
            next location. A live server answers pings while it computes, so
            a slow first batch is not mistaken for a dead server. ``None``
            turns pings off. (A server built on gRPC core, as pyarrow's
            ``FlightServerBase``, answers pings more frequent than every 5
            minutes on a call it sends nothing on with GOAWAY
            ``too_many_pings`` by default, which fails the call; Sheaf's
            server answers them all.)
        tls_root_certs: root certificates trusted for ``grpc+tls`` besides
            the system's (PEM text, or a ``pathlib.Path``).
        cert_chain, private_key: a client certificate and its key for mutual
            TLS (PEM text, or ``pathlib.Path``); both or neither.
        disable_server_verification: skip TLS verification (insecure).
        middleware: ``pyarrow.flight.ClientMiddlewareFactory`` objects given
            to every connection (tracing, metrics); they must be picklable
            to reach spawned DataLoader workers.
        cache: a local cache of pinned reads (:mod:`sheaf.cache`): ``True``
            for the default folder (``$SHEAF_CACHE_DIR``, else the user's
            cache folder's ``sheaf-client``), a folder path, or a
            :class:`sheaf.cache.Cache`; ``None``/``False`` (default): none.
            Every endpoint read is looked up there first and stored after.
        max_cache_bytes: the cache's bound (default 10 GiB, or
            ``$SHEAF_CACHE_MAX_BYTES``); least recently used entries go first.

    The connection is opened lazily (at once for a login) and again in every
    process that uses the client (a forked DataLoader worker gets its own),
    so a client is safe to hand to other processes: they get the token, the
    certificates and the key, never a password.
    """
    _refuse_credentials_in(url)
    if stall_timeout is not None and not stall_timeout > 0:
        raise InvalidArgumentError(
            f"connect(): stall_timeout={stall_timeout!r} must be a positive number of seconds, or None (no limit)",
            code="CLIENT",
        )
    if keepalive is not None and (
        isinstance(keepalive, bool) or not isinstance(keepalive, (int, float)) or not 0.001 <= keepalive < 2**30 / 1000
    ):
        raise InvalidArgumentError(
            f"connect(): keepalive={keepalive!r} must be a number of seconds (at least 0.001), or None (no pings)",
            code="CLIENT",
        )
    if isinstance(headers, dict):
        headers = list(headers.items())
    if (username is None) != (password is None):
        raise InvalidArgumentError("connect(): give username= and password= together", code="CLIENT")
    if username is not None and token is not None:
        raise InvalidArgumentError("connect(): give token= or username=/password=, not both", code="CLIENT")
    if (cert_chain is None) != (private_key is None):
        raise InvalidArgumentError("connect(): mutual TLS needs cert_chain= and private_key= together", code="CLIENT")
    tls = {"tls_root_certs": tls_root_certs, "cert_chain": cert_chain, "private_key": private_key}
    if not url.startswith("grpc+tls://") and any(v is not None for v in tls.values()):
        given = ", ".join(k for k, v in tls.items() if v is not None)
        raise InvalidArgumentError(f"connect({url!r}): {given} need a grpc+tls:// URL", code="CLIENT")
    if token is None and username is None:
        token = os.environ.get(TOKEN_ENV) or None
    spec = ConnectionSpec(
        url=url,
        token=token,
        headers=tuple((str(k), str(v)) for k, v in headers or ()),
        timeout=timeout,
        read_timeout=read_timeout,
        stall_timeout=None if stall_timeout is None else float(stall_timeout),
        keepalive=None if keepalive is None else float(keepalive),
        tls_root_certs=_pem(tls_root_certs, "tls_root_certs"),
        disable_server_verification=disable_server_verification,
        middleware=tuple(middleware),
        cert_chain=_pem(cert_chain, "cert_chain"),
        private_key=_pem(private_key, "private_key"),
    )
    from .client import Client  # imported here: client.py imports this module

    client = Client(spec, cache=make_cache(cache, max_cache_bytes))
    if username is not None and password is not None:
        try:
            client._login(username, password)
        except BaseException:
            client.close()
            raise
    return client


def _refuse_credentials_in(url: str) -> None:
    """Refuses a URL with a user name or password in it (``grpc://user:pw@host``):
    they would not be sent, and the URL is shown in messages. The error
    repeats neither."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return  # not a URL at all: the Flight client says what is wrong with it
    if "@" not in parts.netloc:
        return
    where = f"{parts.scheme}://...@{parts.netloc.rpartition('@')[2]}"
    raise InvalidArgumentError(
        f"connect({where!r}): the URL holds credentials (USER:PASSWORD@ or TOKEN@), which are not sent that way; "
        "give the URL without them and the credentials as username= and password= (a login), or token= "
        f"(or ${TOKEN_ENV})",
        code="CLIENT",
    )


class Connection:
    """What a :class:`~sheaf.Client` is built on: its connection settings,
    the Flight clients of this process (one per location, opened on first
    use; closed before a fork, see :mod:`sheaf._fork`), the login and the
    DoAction calls. Thread-safe.
    """

    def __init__(self, spec: ConnectionSpec) -> None:
        self._spec = spec
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._flights: dict[str, flight.FlightClient] = {}
        _fork.track(self)

    @property
    def url(self) -> str:
        """The server's URL."""
        return self._spec.url

    @property
    def spec(self) -> ConnectionSpec:
        """How to connect (used to reconnect in other processes)."""
        return self._spec

    def close(self) -> None:
        """Closes this process's connections (they reopen on next use)."""
        with self._lock:
            clients, self._flights = self._flights, {}
            if self._pid != os.getpid():
                _INHERITED.extend(clients.values())
                return
        for c in clients.values():
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def _close_for_fork(self) -> bool:
        with self._lock:
            if self._pid != os.getpid() or not self._flights:
                return False
            clients, self._flights = self._flights, {}
        while clients:  # drop every reference: gRPC stops when the last channel is destroyed
            _, c = clients.popitem()
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
            del c
        return True

    def flight_client(self, location: str | None = None) -> flight.FlightClient:
        """The ``pyarrow.flight.FlightClient`` of this process for ``location``
        (default, and for ``arrow-flight-reuse-connection://?``: the server's
        URL), opened on first use and reused until :meth:`close`: one
        connection per location."""
        url = location or self._spec.url
        if url.startswith("arrow-flight-reuse-connection:"):
            url = self._spec.url
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's clients are unusable here
                _INHERITED.extend(self._flights.values())
                self._flights = {}
                self._pid = os.getpid()
            client = self._flights.get(url)
            if client is None:
                spec = self._spec
                try:
                    client = _fork.open_connection(
                        lambda: flight.FlightClient(
                            url,
                            tls_root_certs=spec.tls_root_certs,
                            cert_chain=spec.cert_chain,
                            private_key=spec.private_key,
                            disable_server_verification=spec.disable_server_verification or None,
                            middleware=[*spec.middleware, DetailsMiddleware()],
                            generic_options=keepalive_options(spec.keepalive),
                        ),
                        url,
                    )
                except SheafError:
                    raise
                except Exception as e:  # bad URL or TLS settings
                    raise from_flight(e, f"connecting to {url}") from e
                self._flights[url] = client
            return client

    def _login(self, username: str, password: str) -> None:
        """The Flight handshake with HTTP Basic credentials; keeps only the
        session token the server answers (in the spec, so other processes
        reuse it). The password is never stored."""
        what = f"logging in as {username!r} to {self._spec.url}"
        try:
            name, value = self.flight_client().authenticate_basic_token(username, password, self.call_options())
        except Exception as e:
            err = from_flight(e, what)
            if type(err) is SheafError:
                # pyarrow hides why a handshake stream failed: an unreachable
                # server or a refused TLS connection reads "Could not finish
                # writing before closing". A plain call tells which.
                self._raise_if_unreachable(what, e)
            raise err from e
        name = name.decode("latin-1") if isinstance(name, bytes) else str(name or "")
        value = value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
        scheme, _, session = value.partition(" ")
        session = session.strip()
        if name.lower() != "authorization" or scheme.lower() != "bearer" or not session:
            raise UnauthenticatedError(
                f"{what}: the server accepted the handshake but answered no session token "
                "(`authorization: Bearer ...`); is it running with --auth?",
                code="CLIENT",
                context=what,
            )
        self._spec = replace(self._spec, token=session)

    def _raise_if_unreachable(self, what: str, cause: BaseException) -> None:
        """Raises :class:`~sheaf.UnavailableError` (or a timeout) when a
        ListActions call cannot reach the server; returns otherwise."""
        try:
            list(self.flight_client().list_actions(self.call_options()))
        except Exception as probe:
            err = from_flight(probe, what)
            if isinstance(err, (UnavailableError, DeadlineExceededError)):
                raise err from cause
        return None

    def call_options(self, *, read: bool = False) -> flight.FlightCallOptions:
        """Headers (token) and the timeout for one call."""
        timeout = self._spec.read_timeout if read else self._spec.timeout
        return flight.FlightCallOptions(timeout=timeout, headers=self._spec.call_headers())

    # -- actions -------------------------------------------------------------

    def _do_action(self, name: str, body: bytes, what: str) -> bytes:
        try:
            results = list(self.flight_client().do_action(flight.Action(name, body), self.call_options()))
        except Exception as e:
            raise from_flight(e, what) from e
        if len(results) != 1:
            raise SheafError(f"{what}: expected one result, got {len(results)}", code="CLIENT")
        return bytes(results[0].body.to_pybytes())

    def action(self, name: str, body: dict[str, Any] | None = None) -> Any:
        """Runs a DoAction with a JSON body (the JSON form of the action's
        request message in ``proto/sheaf.proto``) and returns its JSON result."""
        what = f"{name} {json.dumps(body or {})} on {self._spec.url}"
        return json.loads(self._do_action(name, json.dumps(body or {}).encode(), what).decode("utf-8"))

    def _call(self, name: str, request: message.Message, response: type[R]) -> R:
        """Runs action ``name`` in its typed form: ``request`` packed in a
        ``google.protobuf.Any``, answered by an Any packing ``response``."""
        what = f"{name} {_request.as_json(request)} on {self._spec.url}"
        packed = any_pb2.Any()
        packed.Pack(request)
        answer = any_pb2.Any()
        out = response()
        try:
            answer.ParseFromString(self._do_action(name, packed.SerializeToString(), what))
        except message.DecodeError as e:
            raise SheafError(f"{what}: the answer is not a google.protobuf.Any ({e})", code="CLIENT") from e
        if not answer.Unpack(out):
            raise SheafError(
                f"{what}: expected a {out.DESCRIPTOR.full_name}, got {answer.type_url or 'nothing'}", code="CLIENT"
            )
        return out
