"""Connecting to a Sheaf server, package verbs (DoAction) and files.

>>> import sheaf
>>> client = sheaf.connect("grpc://127.0.0.1:50051")        # doctest: +SKIP
>>> [p.name for p in client.list_packages()]                 # doctest: +SKIP
['demo/weather']

Credentials: an API token (``token=``, else ``$SHEAF_TOKEN``), or a user
name and password exchanged once, in :func:`connect`, for a session token
(the Flight handshake); only that token is kept and handed to other
processes. TLS: ``grpc+tls://`` with ``tls_root_certs``, and ``cert_chain``
with ``private_key`` for mutual TLS.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow.flight as flight
from google.protobuf import any_pb2, message

from . import _fork, _request
from ._cache import Cache, CacheSetting, make_cache
from ._proto import sheaf_pb2
from .errors import (
    DeadlineExceededError,
    DetailsMiddleware,
    InvalidArgumentError,
    NotFoundError,
    SheafError,
    UnauthenticatedError,
    UnavailableError,
    from_flight,
)
from .write import (
    DerivedFrom,
    LineageInput,
    LineageNode,
    LineageTracker,
    WriteData,
    Writer,
    WriteResult,
    lineage_nodes,
    split_target,
)

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["connect", "Client", "PackageInfo", "RevisionInfo", "Entry", "RevisionContents", "TableInfo", "File"]

R = TypeVar("R", bound=message.Message)

# Clients inherited from a parent process: never used nor destroyed in the
# child (gRPC state does not survive fork; destroying it may block).
_INHERITED: list[Any] = []


#: The environment variable :func:`connect` reads a token from when it is
#: given neither ``token`` nor ``username``.
TOKEN_ENV = "SHEAF_TOKEN"

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


@dataclass(frozen=True)
class PackageInfo:
    """A package and its latest top hash (``None`` when it has no ``latest``)."""

    name: str
    latest: str | None


@dataclass(frozen=True)
class RevisionInfo:
    """One revision of a package."""

    top_hash: str
    timestamp: int
    message: str | None
    tags: tuple[str, ...]

    @property
    def time(self) -> _dt.datetime:
        """When it was pushed (UTC)."""
        return _dt.datetime.fromtimestamp(self.timestamp, tz=_dt.timezone.utc)


@dataclass(frozen=True)
class Entry:
    """One file of a revision."""

    logical_key: str
    size: int
    hash_type: str
    hash: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def profile(self) -> dict[str, Any] | None:
        """The profile of a table written through Sheaf (``meta["sheaf"]["profile"]``:
        rows, and per column nulls, min/max, distinct estimate, mean/std,
        quantiles, most frequent values); ``None`` for other files."""
        sheaf_meta = self.meta.get("sheaf") if isinstance(self.meta, dict) else None
        profile = sheaf_meta.get("profile") if isinstance(sheaf_meta, dict) else None
        return profile if isinstance(profile, dict) else None


@dataclass(frozen=True)
class RevisionContents:
    """A revision's metadata and entries (:meth:`Client.browse`)."""

    package: str
    top_hash: str
    message: str | None
    user_meta: Any
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class TableInfo:
    """A table of a revision: its path, format and pinned dataset URI."""

    path: str
    format: str
    uri: str


@dataclass(frozen=True)
class File:
    """A file of a revision with its bytes (:meth:`Client.files`)."""

    logical_key: str
    size: int
    hash_type: str
    hash: str
    meta: dict[str, Any]
    content: bytes


def _uri_path(uri: str) -> str:
    """The table path of a dataset URI (``sheaf://owner/name@hash/PATH?...``), for matching."""
    text = uri.split("?", 1)[0]
    if text.startswith("sheaf://"):
        text = text[len("sheaf://") :]
    pieces = text.split("/", 2)
    return urllib.parse.unquote(pieces[2]).strip("/") if len(pieces) == 3 else ""


def _file_rows(batches: Iterator[Any]) -> Iterator[File]:
    for batch in batches:
        cols = batch.to_pydict()
        for i in range(batch.num_rows):
            meta = cols["meta"][i]
            yield File(
                cols["logical_key"][i],
                int(cols["size"][i]),
                cols["hash_type"][i],
                cols["hash"][i],
                json.loads(meta) if meta else {},
                cols["content"][i],
            )


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
        url: ``grpc://host:port`` or ``grpc+tls://host:port``.
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
        read_timeout: seconds for each endpoint stream (DoGet), ``None`` (the
            default) for no limit, since a large endpoint takes a while.
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
        tls_root_certs=_pem(tls_root_certs, "tls_root_certs"),
        disable_server_verification=disable_server_verification,
        middleware=tuple(middleware),
        cert_chain=_pem(cert_chain, "cert_chain"),
        private_key=_pem(private_key, "private_key"),
    )
    client = Client(spec, cache=make_cache(cache, max_cache_bytes))
    if username is not None and password is not None:
        try:
            client._login(username, password)
        except BaseException:
            client.close()
            raise
    return client


class Client:
    """A connection to a Sheaf server. Create it with :func:`connect`.

    Thread-safe; picklable (the connection is re-opened where it is used).
    """

    def __init__(self, spec: ConnectionSpec, cache: Cache | None = None) -> None:
        self._spec = spec
        self._cache = cache
        self._variants: dict[Cache | None, Client] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._flights: dict[str, flight.FlightClient] = {}
        self._trackers: list[LineageTracker] = []
        _fork.track(self)

    # -- connection ----------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's URL."""
        return self._spec.url

    @property
    def spec(self) -> ConnectionSpec:
        """How to connect (used to reconnect in other processes)."""
        return self._spec

    @property
    def cache(self) -> Cache | None:
        """The local cache of pinned reads this client uses, if any."""
        return self._cache

    def with_cache(self, cache: CacheSetting = True, max_cache_bytes: int | None = None) -> Client:
        """A client with the same connection settings and another cache
        setting (as :func:`connect`'s ``cache``); ``self`` when it is the same.
        Made once per setting and reused."""
        wanted = make_cache(cache, max_cache_bytes)
        if wanted == self._cache:
            return self
        with self._lock:
            variant = self._variants.get(wanted)
            if variant is None:
                variant = self._variants[wanted] = Client(self._spec, cache=wanted)
                variant._trackers = self._trackers  # what it plans is this client's lineage too
            return variant

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self._spec, "cache": self._cache}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state.get("cache"))  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<sheaf.Client {self._spec.url}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes this process's connections (they reopen on next use)."""
        for variant in list(self._variants.values()):
            variant.close()
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

    # -- lineage tracking -------------------------------------------------------

    def _record_read(self, dataset: Dataset) -> None:
        """Called by every dataset this client plans: the active trackers record it."""
        with self._lock:
            trackers = list(self._trackers)
        if trackers:
            item = LineageInput(dataset.package, dataset.top_hash, dataset.pinned_uri)
            for tracker in trackers:
                tracker.record(item)

    def _tracked_inputs(self) -> list[LineageInput]:
        """What the active trackers recorded, each once."""
        with self._lock:
            trackers = list(self._trackers)
        seen: dict[LineageInput, None] = {}
        for tracker in trackers:
            for item in tracker.inputs:
                seen.setdefault(item, None)
        return list(seen)

    @contextlib.contextmanager
    def track_lineage(self) -> Iterator[LineageTracker]:
        """Records, while the block runs, every dataset this client reads
        (each one planned: :meth:`dataset`, :meth:`files`, :meth:`read_file`,
        :meth:`Dataset.replan`), pinned, and adds them as lineage inputs to
        the writes that open their session meanwhile (:meth:`write`,
        :meth:`writer`), besides their ``derived_from=``::

            with client.track_lineage() as tracked:
                raw = client.dataset("sheaf://team/raw/events.parquet").to_pandas()
                client.write("sheaf://team/clean/events.parquet", clean(raw))
            print(tracked.inputs)  # (LineageInput(package='team/raw', top_hash=..., uri=...),)

        Trackers nest (a write gets what every active one recorded); they are
        per client and per process (DataLoader workers record nothing)."""
        tracker = LineageTracker()
        with self._lock:
            self._trackers.append(tracker)
        try:
            yield tracker
        finally:
            with self._lock:
                self._trackers.remove(tracker)

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

    def list_packages(self, pattern: str | None = None) -> list[PackageInfo]:
        """Packages and their latest top hash; ``pattern`` is a glob over names (``"team/*"``)."""
        r = self._call(
            "list_packages", sheaf_pb2.ListPackagesRequest(pattern=pattern or ""), sheaf_pb2.ListPackagesResponse
        )
        return [PackageInfo(p.name, p.latest if p.HasField("latest") else None) for p in r.packages]

    def list_revisions(self, package: str) -> list[RevisionInfo]:
        """A package's revisions, newest first."""
        r = self._call(
            "list_revisions", sheaf_pb2.ListRevisionsRequest(package=package), sheaf_pb2.ListRevisionsResponse
        )
        return [
            RevisionInfo(v.top_hash, v.timestamp, v.message if v.HasField("message") else None, tuple(v.tags))
            for v in r.revisions
        ]

    def browse(self, ref: str, prefix: str | None = None) -> RevisionContents:
        """A revision's message, metadata and entries (under ``prefix`` if given).
        ``ref`` is ``owner/name[@hash|:tag][/subpath]``."""
        r = self._call("browse", sheaf_pb2.BrowseRequest(ref=ref, prefix=prefix or ""), sheaf_pb2.BrowseResponse)
        entries = tuple(
            Entry(
                e.logical_key,
                e.size,
                e.hash.type,
                e.hash.value,
                (json.loads(e.meta) if e.HasField("meta") else None) or {},
            )
            for e in r.entries
        )
        return RevisionContents(
            r.package,
            r.top_hash,
            r.message if r.HasField("message") else None,
            json.loads(r.user_meta) if r.HasField("user_meta") else None,
            entries,
        )

    def _resolve(self, ref: str) -> sheaf_pb2.ResolveResponse:
        return self._call("resolve", sheaf_pb2.ResolveRequest(ref=ref), sheaf_pb2.ResolveResponse)

    def resolve(self, ref: str) -> str:
        """The full top hash ``owner/name[@hash_prefix|:tag]`` names (latest without a revision)."""
        return self._resolve(ref).top_hash

    def list_tables(self, ref: str) -> list[TableInfo]:
        """The tables of a revision (path ``""`` is the manifest table), with pinned URIs."""
        r = self._call("list_tables", sheaf_pb2.ListTablesRequest(ref=ref), sheaf_pb2.ListTablesResponse)
        return [TableInfo(t.path, t.format, t.uri) for t in r.tables]

    def lineage(self, ref: str, *, depth: int | None = None) -> list[LineageNode]:
        """Where a revision's data came from: the revision ``ref``
        (``owner/name[@hash|:tag]``, latest without one) first, then every
        input reached through the inputs recorded by writes, transitively and
        each once (breadth first), ``depth`` levels at most (server default 16)."""
        request = sheaf_pb2.LineageRequest(ref=ref)
        if depth is not None:
            request.depth = depth
        return lineage_nodes(self._call("lineage", request, sheaf_pb2.LineageResponse))

    # -- writes --------------------------------------------------------------

    def writer(
        self,
        package: str,
        *,
        message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        derived_from: DerivedFrom | None = None,
        mode: str = "append",
        base: str | None = None,
        ttl_seconds: int | None = None,
    ) -> Writer:
        """A write session on ``package`` (``owner/name``, or
        ``owner/name@HASH`` / ``:TAG`` for ``base``) that commits any number
        of tables as one new revision; see :class:`~sheaf.Writer`::

            with client.writer("team/features", message="daily") as w:
                w.write("train.parquet", train_df)
                w.write("events", reader)     # a folder table, streamed
            print(w.top_hash)

        - ``message``: the commit message.
        - ``metadata``: the new revision's user metadata (a JSON object);
          ``None`` keeps the base revision's.
        - ``derived_from``: the datasets the data came from, recorded as
          lineage: :class:`~sheaf.Dataset` handles, dataset URIs or package
          references (each resolved to ``package@top_hash`` with its pinned
          URI), or :class:`~sheaf.LineageInput`; datasets recorded by an
          active :meth:`track_lineage` are added.
        - ``mode``, per table written: ``"append"`` (default: a folder's
          parts join its files, with the same schema, else
          :class:`~sheaf.SchemaMismatchError`; a file is replaced),
          ``"overwrite"`` (the table is replaced) or ``"error"``
          (:class:`~sheaf.AlreadyExistsError` if it exists).
        - ``base``: the revision the commit must build on (hash, prefix or
          tag); if ``latest`` moved meanwhile the commit fails with reason
          ``LATEST_MOVED``. Default: whatever is latest at the commit.
        - ``ttl_seconds``: how long the server keeps the uncommitted session
          (default one day).
        """
        return Writer(
            self,
            package,
            message=message,
            metadata=metadata,
            derived_from=derived_from,
            mode=mode,
            base=base,
            ttl_seconds=ttl_seconds,
        )

    def write(
        self,
        target: str,
        data: WriteData,
        *,
        message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        derived_from: DerivedFrom | None = None,
        mode: str = "append",
        base: str | None = None,
    ) -> WriteResult:
        """Writes one table as a new revision and returns its top hash (a
        :class:`~sheaf.WriteResult`: a ``str`` with ``.uri``, the table's
        pinned URI, and what else the commit answered).

        ``target``: ``sheaf://OWNER/NAME/PATH`` or ``OWNER/NAME/PATH``, where
        ``PATH`` is a file table (``x.parquet``) or a folder table
        (``features``, whose parts are ``features/part-NNNNN-ID.parquet``);
        ``OWNER/NAME@HASH`` or ``:TAG`` sets ``base``. ``data``: a
        ``pyarrow.Table``, ``RecordBatch`` or ``RecordBatchReader``, an
        iterable of ``RecordBatch``, a pandas or a polars DataFrame; readers
        and iterables are streamed batch by batch, never held whole.
        ``message``, ``metadata``, ``derived_from``, ``mode`` and ``base``:
        as for :meth:`writer`.

        One write session (``begin_write``, one DoPut, ``commit_write``): if
        anything fails, no revision is made (the session is aborted).
        """
        package, path, base_in_target = split_target(target)
        if base_in_target and base and base_in_target != base:
            raise InvalidArgumentError(f"write({target!r}): base={base!r} names another revision", code="CLIENT")
        with self.writer(
            package,
            message=message,
            metadata=metadata,
            derived_from=derived_from,
            mode=mode,
            base=base or base_in_target,
        ) as w:
            w.write(path, data)
        result = w.commit()
        mine = [u for u in result.uris if _uri_path(u) == path]
        if mine and result.uri != mine[0]:
            result.uri = mine[0]
        return result

    # -- datasets ------------------------------------------------------------

    def dataset(
        self,
        uri: str | None = None,
        *,
        package: str | None = None,
        revision: str | None = None,
        tag: str | None = None,
        path: str = "",
        columns: Sequence[str] | None = None,
        filter: str | None = None,
        limit: int | None = None,
        sample: float | None = None,
        sample_rows: int | None = None,
        seed: int | None = None,
        partitions: int | None = None,
        content: bool | None = None,
        compression: str | None = None,
        rows: _request.RowsSpec | None = None,
        cache: CacheSetting = None,
    ) -> Dataset:
        """Plans a read (GetFlightInfo) and returns a :class:`~sheaf.Dataset` handle.

        Either a dataset URI (``sheaf://owner/name[@hash|:tag][/path][?...]``),
        sent as it is (the server parses it; keyword parameters are appended
        to its query, and one given both ways is refused), or ``package=``
        (``owner/name``) with ``revision=`` (hash prefix) or ``tag=`` and
        ``path=``, sent as a typed ``sheaf.v1.DatasetRequest``. Parameters:

        - ``columns``: projection, in that order;
        - ``filter``: a SQL expression over the table's columns;
        - ``limit``; ``sample`` (fraction) or ``sample_rows`` (exact count),
          with ``seed``; ``partitions`` (endpoints wanted);
        - ``content=True``: for the manifest table (no path), the files' bytes;
        - ``compression``: ``"zstd"`` or ``"lz4"`` on the wire;
        - ``rows``: only these rows of the table, by position before filter
          and sample (``[(start, end), ...]`` half-open, ``range`` objects,
          single positions, or ``"0:100,250"``); the server reads only the
          pages holding them. At most 100,000 ranges (:meth:`Dataset.take`
          splits bigger reads);
        - ``cache``: this dataset's local cache setting (as :func:`connect`'s),
          instead of the client's; ``False`` reads it without the cache.

        Nothing is read yet; the handle shows schema, pinned top hash, row
        count and endpoints. The revision is pinned: every read of the
        handle returns the same rows even if the package moves on.
        """
        from .dataset import Dataset

        query = {
            "columns": list(columns) if columns is not None else None,
            "filter": filter,
            "limit": limit,
            "sample": sample,
            "sample_rows": sample_rows,
            "seed": seed,
            "partitions": partitions,
            "compression": compression,
            "content": content or None,
            "rows": rows,
        }
        request: _request.Request
        if uri is None:
            if not package:
                raise InvalidArgumentError("dataset() needs a URI or package=", code="CLIENT")
            request = _request.build(package, revision=revision, tag=tag, path=path, query=query)
        else:
            if package or revision or tag or path:
                raise InvalidArgumentError(
                    f"dataset({uri!r}): give a URI or package=/revision=/tag=/path=, not both", code="CLIENT"
                )
            request = _request.append(uri, query)
        client = self if cache is None else self.with_cache(cache)
        return Dataset.plan(client, request)

    # -- files ---------------------------------------------------------------

    def files(
        self, ref: str, *, prefix: str | None = None, filter: str | None = None, keys: Sequence[str] | None = None
    ) -> Iterator[File]:
        """Streams files of a revision with their bytes, in manifest order.

        ``ref`` is ``owner/name[@hash|:tag]``. Select with ``prefix`` (logical
        keys starting with it), ``keys`` (exact logical keys) and/or
        ``filter`` (SQL over ``logical_key``, ``size``, ``hash_type``,
        ``hash``, ``meta``); only the selected files are downloaded. Memory
        holds one Flight batch of files at a time.
        """
        return self._files(ref, prefix=prefix, filter=filter, keys=keys)

    def _files(self, ref: str, *, prefix: str | None, filter: str | None, keys: Sequence[str] | None) -> Iterator[File]:
        # Plans now (errors surface here), streams later.
        from .dataset import Dataset

        clauses = []
        if filter:
            clauses.append(f"({filter})")
        if prefix:
            clauses.append(f"starts_with(logical_key, {_request.sql_string(prefix)})")
        if keys is not None:
            if not keys:
                return iter(())
            clauses.append("logical_key IN (" + ", ".join(_request.sql_string(k) for k in keys) + ")")
        revision = self._resolve(ref)  # the ref is the server's to read: it names the revision
        request = sheaf_pb2.DatasetRequest(
            package=revision.package, top_hash=revision.top_hash, content=True, filter=" AND ".join(clauses)
        )
        return _file_rows(Dataset.plan(self, request).to_batches(progress=False))

    def read_file(self, ref: str, logical_key: str) -> bytes:
        """The bytes of one file of a revision (``ref``: ``owner/name[@hash|:tag]``)."""
        for f in self._files(ref, prefix=None, filter=None, keys=[logical_key]):
            return f.content
        raise NotFoundError(f"file {logical_key!r} not found in {ref}", code="CLIENT", context=f"read_file {ref}")
