"""Connecting to a Sheaf server, package verbs (DoAction) and files.

>>> import sheaf
>>> client = sheaf.connect("grpc://127.0.0.1:50051")        # doctest: +SKIP
>>> [p.name for p in client.list_packages()]                 # doctest: +SKIP
['demo/weather']
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow.flight as flight

from . import _fork, _uri
from .errors import InvalidArgumentError, NotFoundError, SheafError, from_flight

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["connect", "Client", "PackageInfo", "RevisionInfo", "Entry", "RevisionContents", "TableInfo", "File"]

# Clients inherited from a parent process: never used nor destroyed in the
# child (gRPC state does not survive fork; destroying it may block).
_INHERITED: list[Any] = []


@dataclass(frozen=True)
class ConnectionSpec:
    """Everything needed to open a connection again in another process."""

    url: str
    token: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    read_timeout: float | None = None
    tls_root_certs: bytes | None = None
    disable_server_verification: bool = False
    middleware: tuple[Any, ...] = ()

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


def _file_rows(batches: Iterator[Any]) -> Iterator[File]:
    for batch in batches:
        cols = batch.to_pydict()
        for i in range(batch.num_rows):
            meta = cols["meta"][i]
            yield File(cols["logical_key"][i], int(cols["size"][i]), cols["hash_type"][i], cols["hash"][i],
                       json.loads(meta) if meta else {}, cols["content"][i])


def connect(url: str = "grpc://127.0.0.1:50051", token: str | None = None, *,
            headers: dict[str, str] | Sequence[tuple[str, str]] | None = None, timeout: float | None = 60.0,
            read_timeout: float | None = None, tls_root_certs: bytes | None = None,
            disable_server_verification: bool = False,
            middleware: Sequence[flight.ClientMiddlewareFactory] = ()) -> Client:
    """Connects to a Sheaf server.

    Args:
        url: ``grpc://host:port`` or ``grpc+tls://host:port``.
        token: sent as ``authorization: Bearer <token>`` on every call.
        headers: extra gRPC headers sent on every call.
        timeout: seconds for each metadata call (actions, planning); ``None``
            waits forever.
        read_timeout: seconds for each endpoint stream (DoGet), ``None`` (the
            default) for no limit, since a large endpoint takes a while.
        tls_root_certs: PEM root certificates for ``grpc+tls``.
        disable_server_verification: skip TLS verification (insecure).
        middleware: ``pyarrow.flight.ClientMiddlewareFactory`` objects given
            to every connection (tracing, metrics); they must be picklable
            to reach spawned DataLoader workers.

    The connection is opened lazily and again in every process that uses
    the client (a forked DataLoader worker gets its own), so a client is safe
    to hand to other processes.
    """
    if isinstance(headers, dict):
        headers = list(headers.items())
    spec = ConnectionSpec(url=url, token=token, headers=tuple((str(k), str(v)) for k, v in headers or ()),
                          timeout=timeout, read_timeout=read_timeout, tls_root_certs=tls_root_certs,
                          disable_server_verification=disable_server_verification, middleware=tuple(middleware))
    return Client(spec)


def _location_url(location: Any) -> str:
    uri = location.uri if hasattr(location, "uri") else location
    return uri.decode() if isinstance(uri, bytes) else str(uri)


class Client:
    """A connection to a Sheaf server. Create it with :func:`connect`.

    Thread-safe; picklable (the connection is re-opened where it is used).
    """

    def __init__(self, spec: ConnectionSpec) -> None:
        self._spec = spec
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._flights: dict[str, flight.FlightClient] = {}
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

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self._spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<sheaf.Client {self._spec.url}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        (default: the server's URL), opened on first use."""
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
                    client = _fork.open_connection(lambda: flight.FlightClient(
                        url, tls_root_certs=spec.tls_root_certs,
                        disable_server_verification=spec.disable_server_verification or None,
                        middleware=list(spec.middleware) or None), url)
                except SheafError:
                    raise
                except Exception as e:  # bad URL or TLS settings
                    raise from_flight(e, f"connecting to {url}") from e
                self._flights[url] = client
            return client

    def call_options(self, *, read: bool = False) -> flight.FlightCallOptions:
        """Headers (token) and the timeout for one call."""
        timeout = self._spec.read_timeout if read else self._spec.timeout
        return flight.FlightCallOptions(timeout=timeout, headers=self._spec.call_headers())

    # -- actions -------------------------------------------------------------

    def action(self, name: str, body: dict[str, Any] | None = None) -> Any:
        """Runs a DoAction with a JSON body and returns its JSON result."""
        payload = json.dumps(body or {}).encode()
        what = f"{name} {json.dumps(body or {})} on {self._spec.url}"
        try:
            results = list(self.flight_client().do_action(flight.Action(name, payload), self.call_options()))
        except Exception as e:
            raise from_flight(e, what) from e
        if len(results) != 1:
            raise SheafError(f"{what}: expected one result, got {len(results)}", code="CLIENT")
        return json.loads(results[0].body.to_pybytes().decode("utf-8"))

    def list_packages(self, pattern: str | None = None) -> list[PackageInfo]:
        """Packages and their latest top hash; ``pattern`` is a glob over names (``"team/*"``)."""
        body = {"pattern": pattern} if pattern else {}
        return [PackageInfo(p["name"], p.get("latest")) for p in self.action("list_packages", body)]

    def list_revisions(self, package: str) -> list[RevisionInfo]:
        """A package's revisions, newest first."""
        return [RevisionInfo(r["top_hash"], int(r.get("timestamp", 0)), r.get("message"), tuple(r.get("tags") or ()))
                for r in self.action("list_revisions", {"package": package})]

    def browse(self, ref: str, prefix: str | None = None) -> RevisionContents:
        """A revision's message, metadata and entries (under ``prefix`` if given).
        ``ref`` is ``owner/name[@hash|:tag][/subpath]``."""
        body: dict[str, str] = {"ref": ref}
        if prefix:
            body["prefix"] = prefix
        r = self.action("browse", body)
        entries = tuple(Entry(e["logical_key"], int(e["size"]), e["hash"]["type"], e["hash"]["value"], e.get("meta") or {})
                        for e in r["entries"])
        return RevisionContents(r["package"], r["top_hash"], r.get("message"), r.get("user_meta"), entries)

    def resolve(self, ref: str) -> str:
        """The full top hash ``owner/name[@hash_prefix|:tag]`` names (latest without a revision)."""
        return str(self.action("resolve", {"ref": ref})["top_hash"])

    def list_tables(self, ref: str) -> list[TableInfo]:
        """The tables of a revision (path ``""`` is the manifest table), with pinned URIs."""
        return [TableInfo(t["path"], t["format"], t["uri"]) for t in self.action("list_tables", {"ref": ref})["tables"]]

    # -- datasets ------------------------------------------------------------

    def dataset(self, uri: str | None = None, *, package: str | None = None, revision: str | None = None,
                tag: str | None = None, path: str = "", columns: Sequence[str] | None = None,
                filter: str | None = None, limit: int | None = None, sample: float | None = None,
                sample_rows: int | None = None, seed: int | None = None, partitions: int | None = None,
                content: bool | None = None, compression: str | None = None) -> Dataset:
        """Plans a read (GetFlightInfo) and returns a :class:`~sheaf.Dataset` handle.

        Either a dataset URI (``sheaf://owner/name[@hash|:tag][/path][?...]``),
        or ``package=`` with ``revision=`` (hash prefix) or ``tag=`` and
        ``path=``. Keyword parameters are added to the URI's own:

        - ``columns``: projection, in that order;
        - ``filter``: a SQL expression over the table's columns;
        - ``limit``; ``sample`` (fraction) or ``sample_rows`` (exact count),
          with ``seed``; ``partitions`` (endpoints wanted);
        - ``content=True``: for the manifest table (no path), the files' bytes;
        - ``compression``: ``"zstd"`` or ``"lz4"`` on the wire.

        Nothing is read yet; the handle shows schema, pinned top hash, row
        count and endpoints. The revision is pinned: every read of the
        handle returns the same rows even if the package moves on.
        """
        from .dataset import Dataset

        params = {"columns": list(columns) if columns is not None else None, "filter": filter, "limit": limit,
                  "sample": sample, "sample_rows": sample_rows, "seed": seed, "partitions": partitions,
                  "compression": compression, "content": content or None}
        params = {k: v for k, v in params.items() if v is not None}
        if uri is None:
            if not package:
                raise InvalidArgumentError("dataset() needs a URI or package=", code="CLIENT")
            uri = _uri.build(package, revision=revision, tag=tag, path=path, params=params)
        else:
            if package or revision or tag or path:
                raise InvalidArgumentError(f"dataset({uri!r}): give a URI or package=/revision=/tag=/path=, not both",
                                           code="CLIENT")
            if not uri.startswith(_uri.SCHEME):
                uri = _uri.SCHEME + uri
            base, existing = _uri.split(uri)
            clash = [k for k in params if k in existing]
            if clash:
                raise InvalidArgumentError(f"dataset({uri!r}): {', '.join(clash)} given both in the URI and as "
                                           "keyword arguments", code="CLIENT")
            uri = _uri.with_params(uri, params)
        return Dataset.plan(self, uri)

    # -- files ---------------------------------------------------------------

    def files(self, ref: str, *, prefix: str | None = None, filter: str | None = None,
              keys: Sequence[str] | None = None) -> Iterator[File]:
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
        clauses = []
        if filter:
            clauses.append(f"({filter})")
        if prefix:
            clauses.append(f"starts_with(logical_key, {_uri.sql_string(prefix)})")
        if keys is not None:
            if not keys:
                return iter(())
            clauses.append("logical_key IN (" + ", ".join(_uri.sql_string(k) for k in keys) + ")")
        uri = _uri.with_params(_uri.SCHEME + ref, {"content": True, "filter": " AND ".join(clauses) or None})
        return _file_rows(self.dataset(uri).to_batches(progress=False))

    def read_file(self, ref: str, logical_key: str) -> bytes:
        """The bytes of one file of a revision (``ref``: ``owner/name[@hash|:tag]``)."""
        for f in self._files(ref, prefix=None, filter=None, keys=[logical_key]):
            return f.content
        raise NotFoundError(f"file {logical_key!r} not found in {ref}", code="CLIENT", context=f"read_file {ref}")
