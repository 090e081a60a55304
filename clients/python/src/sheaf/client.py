"""The client's API: package verbs (list, browse, resolve, lineage), the
files of a revision, datasets (planned reads) and writes, and the records
they answer (:class:`PackageInfo`, :class:`RevisionInfo`, :class:`Entry`,
:class:`RevisionContents`, :class:`TableInfo`, :class:`File`).

>>> import sheaf
>>> client = sheaf.connect("grpc://127.0.0.1:50051")        # doctest: +SKIP
>>> [p.name for p in client.list_packages()]                 # doctest: +SKIP
['demo/weather']

:func:`connect` and the connection under a :class:`Client` (its settings,
credentials and TLS, its Flight clients and DoAction calls) are in
:mod:`sheaf._connection`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _request
from ._cache import Cache, CacheSetting, make_cache

# connect() and the connection's settings live in _connection; `X as X` keeps them names of sheaf.client.
from ._connection import TOKEN_ENV as TOKEN_ENV
from ._connection import Connection, connect
from ._connection import ConnectionSpec as ConnectionSpec
from ._connection import Pem as Pem
from ._proto import sheaf_pb2
from ._write_data import WriteData, split_target
from .errors import InvalidArgumentError, NotFoundError
from .write import DerivedFrom, LineageInput, LineageNode, LineageTracker, Writer, WriteResult, lineage_nodes

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["connect", "Client", "PackageInfo", "RevisionInfo", "Entry", "RevisionContents", "TableInfo", "File"]


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


class Client(Connection):
    """A connection to a Sheaf server. Create it with :func:`connect`.

    Thread-safe; picklable (the connection is re-opened where it is used).
    """

    def __init__(self, spec: ConnectionSpec, cache: Cache | None = None) -> None:
        super().__init__(spec)
        self._cache = cache
        self._variants: dict[Cache | None, Client] = {}
        self._trackers: list[LineageTracker] = []

    # -- cache, pickling, closing ----------------------------------------------

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
        """Closes this process's connections, and those of the clients
        :meth:`with_cache` made (they reopen on next use)."""
        for variant in list(self._variants.values()):
            variant.close()
        super().close()

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

    # -- package verbs ---------------------------------------------------------

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

        - ``columns``: projection, in that order (a list of exact names, or a string split at commas);
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
            "columns": columns if columns is None or isinstance(columns, str) else list(columns),
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
