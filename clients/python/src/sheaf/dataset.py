"""Dataset handles: a planned read of a table (or of a package's manifest),
and the ways to read it: record batches, pyarrow tables, pandas, polars,
PyTorch."""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.flight as flight

from . import _request
from ._cache import ticket_key
from ._failover import EndpointStream
from ._proto import sheaf_pb2
from ._request import Request
from .errors import InvalidArgumentError, SheafError, from_flight

if TYPE_CHECKING:
    import datasets
    import pandas
    import polars
    import ray.data

    from ._cache import CacheSetting
    from .arrays import NumpyBatches
    from .client import Client
    from .tf import TensorFlowLoader
    from .torch import TorchDataset
    from .torch_map import MapDataset

__all__ = ["Dataset", "Endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """One part of a dataset that can be read on its own (a Flight endpoint).

    ``locations`` are where it can be read, tried in order; empty when it is
    read from the server that planned it. ``first_row`` and ``table_rows``
    are the table rows it covers (before filters and sampling), from the
    server's endpoint metadata; ``None`` for tables read whole.

    ``rows`` and ``schema`` are what its stream must hold, when the plan
    says: every read checks them (:func:`read_endpoint`)."""

    index: int
    ticket: bytes
    locations: tuple[str, ...] = ()
    first_row: int | None = None
    table_rows: int | None = None
    #: Under a ``rows=`` selection: how many of its table rows the selection
    #: keeps (before filter and sampling); ``None`` without ``rows``.
    selected_rows: int | None = None
    #: The exact rows its stream returns, when the server's plan states them
    #: (``EndpointMetadata.rows``: a read without filter or ``sample=``;
    #: :meth:`Dataset.endpoint_rows` without counting); ``None`` when only
    #: reading tells, and then nothing checks the stream's row count.
    rows: int | None = None
    #: The dataset's planned schema, which its stream must have.
    schema: pa.Schema | None = field(default=None, repr=False, compare=False)


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(enabled: bool | None, total: int | None, desc: str) -> Any:
    """A tqdm bar counting rows when ``enabled`` (``None``: only when stderr
    is a terminal), else an object that ignores updates."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=" rows", unit_scale=True, leave=False)


def read_endpoint(
    client: Client, endpoint: Endpoint, context: str, *, cache: bool = True
) -> Generator[pa.RecordBatch, None, None]:
    """Streams the record batches of one endpoint, converting Flight errors
    into :class:`~sheaf.SheafError`. Closing the generator early cancels the
    stream on the server. Every read of an endpoint's rows goes through here.

    The stream must match its plan: a schema other than ``endpoint.schema``,
    or (when the plan gives it, ``endpoint.rows``) another number of rows —
    a stream that ends early, or holds more — raises
    :class:`~sheaf.DataLossError` naming the endpoint; nothing is cached.
    A frozen or unreachable server (found by ``keepalive``), or with a
    ``stall_timeout`` (:func:`sheaf.connect`) one that sends nothing for that
    long while the read waits for it, counts as a failed replica
    (:class:`~sheaf.StalledError` for a stall when no location is left).

    With a client cache (``sheaf.connect(..., cache=True)``) and ``cache``,
    an endpoint read before is served from the local cache (memory-mapped,
    no server call), and one read to its end is stored there
    (:mod:`sheaf.cache`; the key is the ticket).

    The endpoint policy (the same in every Sheaf client; see
    :mod:`sheaf._failover`): its locations are tried in order; no location,
    or ``arrow-flight-reuse-connection://?``, means the client's own server.
    When a location cannot be connected to or its replica fails (UNAVAILABLE,
    or a broken connection), before the first batch or in the middle of the
    stream, the same ticket is read at the next location from the first row
    not yielded yet: no row is lost or repeated. Sheaf's own errors are
    raised, not retried; each location is tried once. Every location's
    connection is opened once and reused (:meth:`~sheaf.Client.flight_client`)."""
    store = client.cache if cache else None
    key = ticket_key(endpoint.ticket) if store is not None else None
    if store is not None and key is not None:
        table = store.get(key)
        if table is not None:
            if _holds(endpoint, table):
                yield from table.to_batches()
                return
            store.discard(key)  # not what the plan says: read it again
    stream = EndpointStream(client, endpoint, context)
    schema = stream.open()
    writer = None
    if store is not None and key is not None:
        try:
            writer = store.writer(key, schema)
        except OSError:
            writer = None  # an unwritable cache folder: read without it
    try:
        # The stream yields each row once, in order, whatever replica it came
        # from: what the writer stores is the endpoint's whole table.
        for batch in stream:
            if writer is not None:
                try:
                    writer.write(batch)
                except OSError:
                    writer.abort()
                    writer = None
            yield batch
        if writer is not None:
            try:
                writer.commit()
            except OSError:
                pass  # a full disk: the rows were read all the same
            writer = None
    finally:
        if writer is not None:
            writer.abort()  # not read to its end (an error, or closed early): nothing stored
        stream.close()


def _holds(endpoint: Endpoint, table: pa.Table) -> bool:
    """Whether ``table`` (a cache entry) has the endpoint's planned rows and schema."""
    if endpoint.rows is not None and table.num_rows != endpoint.rows:
        return False
    return endpoint.schema is None or table.schema.equals(endpoint.schema)


def max_workers_of(max_workers: int | None, what: str) -> int | None:
    """``max_workers`` checked: ``None`` (the default) or a positive int."""
    if max_workers is None:
        return None
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidArgumentError(
            f"{what}(max_workers={max_workers!r}): give a positive number of threads, or None for the default",
            code="CLIENT",
        )
    return max_workers


class Dataset:
    """A planned read of a table of a pinned package revision.

    Create it with :meth:`sheaf.Client.dataset`. Planning (GetFlightInfo)
    already happened: :attr:`schema`, :attr:`top_hash`, :attr:`num_rows` and
    :attr:`endpoints` are known and no data was read. Every read returns the
    same rows in the same order (the revision is pinned).
    """

    def __init__(self, client: Client, request: Request, info: flight.FlightInfo) -> None:
        self._client = client
        self._request = request
        typed = not isinstance(request, str)
        what = f"planning {_request.describe(request)}"
        meta = _request.decode(
            bytes(info.app_metadata),
            sheaf_pb2.FlightInfoMetadata(),
            typed=typed,
            what=f"{what}: FlightInfo.app_metadata",
        )
        self._package: str = meta.package
        self._top_hash: str = meta.top_hash
        self._path: str = meta.path
        self._pinned_uri: str = meta.pinned_uri
        # What replan() and the row counts start from: the request pinned to top_hash.
        self._pinned: Request = _request.pin(request, meta.top_hash, meta.pinned_uri)
        self._schema: pa.Schema = info.schema
        self._num_rows = info.total_records if info.total_records >= 0 else None
        self._total_bytes = info.total_bytes if info.total_bytes >= 0 else None
        endpoints = []
        for i, e in enumerate(info.endpoints):
            first_row = table_rows = selected = exact = None
            if e.app_metadata:
                rows = _request.decode(
                    bytes(e.app_metadata),
                    sheaf_pb2.EndpointMetadata(),
                    typed=typed,
                    what=f"{what}: FlightEndpoint.app_metadata of endpoint {i}",
                )
                first_row, table_rows = rows.first_row, rows.table_rows
                selected = rows.selected_rows if rows.HasField("selected_rows") else None
                # The server's word on the rows the stream returns: every read checks it.
                exact = rows.rows if rows.HasField("rows") else None
            locations = tuple(loc.uri.decode() if isinstance(loc.uri, bytes) else str(loc.uri) for loc in e.locations)
            endpoints.append(
                Endpoint(
                    i, bytes(e.ticket.ticket), locations, first_row, table_rows, selected, exact, schema=self._schema
                )
            )
        self._endpoints = tuple(endpoints)
        self._endpoint_rows: list[int] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @classmethod
    def plan(cls, client: Client, request: Request, *, record: bool = True) -> Dataset:
        """GetFlightInfo for ``request`` (a ``sheaf.v1.DatasetRequest`` or a dataset URI).

        With ``record`` (the default), the dataset is recorded by the client's
        active lineage trackers (:meth:`sheaf.Client.track_lineage`)."""
        try:
            info = client.flight_client().get_flight_info(_request.descriptor(request), client.call_options())
        except Exception as e:
            raise from_flight(e, f"planning {_request.describe(request)}") from e
        dataset = cls(client, request, info)
        if record:
            client._record_read(dataset)
        return dataset

    # -- what was planned ----------------------------------------------------

    @property
    def client(self) -> Client:
        """The client that planned it (and reads it)."""
        return self._client

    @property
    def uri(self) -> str:
        """The dataset URI as asked for; for a dataset built from keyword
        arguments (sent as a typed request), the server's :attr:`pinned_uri`."""
        return self._request if isinstance(self._request, str) else self._pinned_uri

    @property
    def request(self) -> sheaf_pb2.DatasetRequest | str:
        """What was sent: the ``sheaf.v1.DatasetRequest`` built from keyword
        arguments, or the URI's text."""
        return self._request

    @property
    def pinned_uri(self) -> str:
        """The URI with the revision pinned to the full top hash: record it to
        read exactly the same rows later."""
        return self._pinned_uri

    @property
    def package(self) -> str:
        """``owner/name``."""
        return self._package

    @property
    def top_hash(self) -> str:
        """The full top hash of the revision read."""
        return self._top_hash

    @property
    def path(self) -> str:
        """The table's path in the package; ``""`` for the manifest table."""
        return self._path

    @property
    def schema(self) -> pa.Schema:
        """The schema of the rows the read returns (after ``columns=``)."""
        return self._schema

    @property
    def num_rows(self) -> int | None:
        """Rows the read returns: exact for plain reads and ``sample_rows``,
        an estimate under ``sample=``, ``None`` when unknown before reading
        (under a filter, or for CSV/JSON/IPC files)."""
        return self._num_rows

    @property
    def rows_estimated(self) -> bool:
        """Whether :attr:`num_rows` is an estimate (``sample=`` fractions)."""
        return self._num_rows is not None and _request.given(self._pinned, "sample")

    @property
    def total_bytes(self) -> int | None:
        """Uncompressed bytes of the table's data, when known."""
        return self._total_bytes

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The parts the server planned, in order (their union, in order, is the read)."""
        return self._endpoints

    @property
    def name(self) -> str:
        """``owner/name@short_hash[/path]``, for messages."""
        return f"{self._package}@{self._top_hash[:12]}" + (f"/{self._path}" if self._path else " (manifest)")

    def __repr__(self) -> str:
        rows = (
            "unknown"
            if self._num_rows is None
            else f"{self._num_rows:,}" + (" (estimated)" if self.rows_estimated else "")
        )
        size = "" if self._total_bytes is None else f", {self._total_bytes / 1e6:,.1f} MB"
        cols = ", ".join(f"{f.name}: {f.type}" for f in self._schema)
        if len(cols) > 300:
            cols = cols[:297] + "..."
        return (
            f"<sheaf.Dataset {self.name}: rows {rows}, {len(self._endpoints)} endpoint(s){size}\n"
            f"  schema: {cols}\n  uri: {self._pinned_uri}>"
        )

    def replan(self, **params: Any) -> Dataset:
        """The same pinned revision and path with parameters changed (``None``
        removes one), planned again: ``ds.replan(columns=["id"], partitions=8)``."""
        return self._replan(params, record=True)

    def _replan(self, params: dict[str, Any], *, record: bool) -> Dataset:
        return Dataset.plan(self._client, _request.change(self._pinned, params), record=record)

    # -- reading -------------------------------------------------------------

    def read_endpoint(self, index: int) -> Iterator[pa.RecordBatch]:
        """Streams the record batches of one endpoint."""
        return read_endpoint(self._client, self._endpoints[index], f"reading {self._pinned_uri}")

    def to_batches(self, *, progress: bool | None = None) -> Iterator[pa.RecordBatch]:
        """Streams record batches in order, one endpoint after the other;
        memory holds one batch at a time."""
        bar = progress_bar(progress, self._num_rows, self.name)
        try:
            for endpoint in self._endpoints:
                for batch in read_endpoint(self._client, endpoint, f"reading {self._pinned_uri}"):
                    bar.update(batch.num_rows)
                    yield batch
        finally:
            bar.close()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self.to_batches()

    def to_reader(self, *, progress: bool | None = None) -> pa.RecordBatchReader:
        """A streaming ``pyarrow.RecordBatchReader`` over :meth:`to_batches`."""
        return pa.RecordBatchReader.from_batches(self._schema, self.to_batches(progress=progress))

    def to_table(self, *, max_workers: int | None = None, progress: bool | None = None) -> pa.Table:
        """Reads every endpoint, ``max_workers`` at a time (default: up to 8),
        into one table whose rows are in endpoint order."""
        max_workers_of(max_workers, "to_table")
        if not self._endpoints:
            return self._schema.empty_table()
        bar = progress_bar(progress, self._num_rows, self.name)
        lock = threading.Lock()

        def read(endpoint: Endpoint) -> list[pa.RecordBatch]:
            out = []
            for batch in read_endpoint(self._client, endpoint, f"reading {self._pinned_uri}"):
                out.append(batch)
                with lock:
                    bar.update(batch.num_rows)
            return out

        workers = max(1, min(max_workers or 8, len(self._endpoints)))
        try:
            if workers == 1:
                parts = [read(e) for e in self._endpoints]
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="sheaf-read") as pool:
                    parts = list(pool.map(read, self._endpoints))
        finally:
            bar.close()
        return pa.Table.from_batches([b for part in parts for b in part], schema=self._schema)

    def to_pandas(
        self, *, max_workers: int | None = None, progress: bool | None = None, **to_pandas_kwargs: Any
    ) -> pandas.DataFrame:
        """:meth:`to_table`, then ``pyarrow.Table.to_pandas(**to_pandas_kwargs)``
        (``types_mapper=pandas.ArrowDtype`` keeps Arrow types). Needs the
        ``pandas`` extra."""
        try:
            import pandas  # noqa: F401
        except ImportError as e:
            raise ImportError("to_pandas() needs pandas: pip install 'sheaf[pandas]'") from e
        return self.to_table(max_workers=max_workers, progress=progress).to_pandas(**to_pandas_kwargs)

    def to_polars(self, *, max_workers: int | None = None, progress: bool | None = None) -> polars.DataFrame:
        """:meth:`to_table` as a polars DataFrame. Needs the ``polars`` extra."""
        try:
            import polars as pl
        except ImportError as e:
            raise ImportError("to_polars() needs polars: pip install 'sheaf[polars]'") from e
        frame = pl.from_arrow(self.to_table(max_workers=max_workers, progress=progress))
        assert isinstance(frame, pl.DataFrame)
        return frame

    # -- random access, cache -------------------------------------------------

    def take(self, indices: Any, *, fill_cache: bool = False, max_workers: int | None = None) -> pa.Table:
        """Rows at positions ``indices`` (a one-dimensional sequence, numpy
        array, tensor or ``range`` of integers, not a boolean mask: take
        ``numpy.flatnonzero(mask)``; any order, duplicates allowed, negative
        from the end), in that order; ``IndexError`` names the dataset and
        the index out of range. Only the pages holding them are read (``rows=`` requests of
        at most 100,000 ranges, 64 KiB for a URI); rows of endpoints stored in the client's
        cache are taken locally (``fill_cache``: store the endpoints holding
        them first). Positions are the dataset's rows: a dataset with
        ``filter``, ``sample`` or ``sample_rows`` refuses
        (:class:`~sheaf.InvalidArgumentError` naming it); see
        :mod:`sheaf.random_access`."""
        from .random_access import take

        return take(self, indices, fill_cache=fill_cache, max_workers=max_workers)

    def __getitem__(self, item: int | slice) -> Any:
        """``ds[i]``: row ``i`` as a dict; ``ds[a:b]`` (any step): a ``pyarrow.Table`` (:meth:`take`)."""
        from .random_access import getitem

        return getitem(self, item)

    def read_rows(self, ranges: _request.RowsSpec, *, cache: bool = True, max_workers: int | None = None) -> pa.Table:
        """The rows at table positions in ``ranges`` (``[(start, end), ...]``),
        in table order, with this dataset's columns, filter and sample (its
        own ``rows`` and ``limit`` replaced). With a client cache the block
        is looked up first (no server call at all when stored) and stored
        after; see :func:`sheaf.random_access.read_rows`."""
        from .random_access import read_rows

        return read_rows(self, ranges, cache=cache, max_workers=max_workers)

    def with_cache(self, cache: CacheSetting = True, max_cache_bytes: int | None = None) -> Dataset:
        """This dataset read through another local cache setting (as
        :func:`sheaf.connect`'s ``cache``; ``False``: no cache); no new planning."""
        client = self._client.with_cache(cache, max_cache_bytes)
        if client is self._client:
            return self
        twin = copy.copy(self)
        twin._client = client
        twin.__dict__.pop("_cache_plan", None)  # random access's plan for the cache: made again through `client`
        return twin

    def to_torch_map(self, *, collate: Callable[[pa.Table], Any] | None = None, fill_cache: bool = False) -> MapDataset:
        """A map-style ``torch.utils.data.Dataset`` over this dataset's rows
        (any sampler; a DataLoader batch is one request); see
        :class:`sheaf.torch_map.MapDataset`."""
        from .torch_map import MapDataset

        return MapDataset(self, collate=collate, fill_cache=fill_cache)

    # -- row counts ----------------------------------------------------------

    def endpoint_rows(self) -> list[int]:
        """Exact rows of each endpoint.

        Known without reading when the server's plan states every
        endpoint's rows (``Endpoint.rows``: plain reads, ``rows=``
        selections, single-endpoint reads with an exact count); otherwise
        (filters, ``sample=``, tables of unknown length) counted once by
        reading the narrowest column of every endpoint. Cached."""
        with self._lock:
            if self._endpoint_rows is None:
                self._endpoint_rows = self._planned_rows() or self._count_rows()
            return list(self._endpoint_rows)

    def _given(self, name: str) -> bool:
        """Whether the (pinned) request sets parameter ``name``."""
        return _request.given(self._pinned, name)

    def _asked_partitions(self) -> int | None:
        return _request.partitions(self._pinned)

    def _planned_rows(self) -> list[int] | None:
        """Each endpoint's rows as the server's plan states them
        (``EndpointMetadata.rows``), when it states them for every endpoint;
        else ``None``."""
        rows = [e.rows for e in self._endpoints if e.rows is not None]
        return rows if len(rows) == len(self._endpoints) else None

    def _narrowest_column(self) -> str:
        best, width = self._schema.field(0).name, None
        for f in self._schema:
            try:
                w = f.type.bit_width
            except ValueError:
                continue
            if width is None or w < width:
                best, width = f.name, w
        return str(best)

    def _count_rows(self) -> list[int]:
        # The client's own read of the same rows: not a lineage input of its own.
        counting = self._replan(
            {"columns": [self._narrowest_column()], "content": None, "compression": None}, record=False
        )
        if len(counting.endpoints) != len(self._endpoints):
            raise SheafError(
                f"{self._pinned_uri}: counting rows planned {len(counting.endpoints)} endpoints "
                f"instead of {len(self._endpoints)}",
                code="CLIENT",
            )

        def count(endpoint: Endpoint) -> int:
            return sum(
                b.num_rows for b in read_endpoint(self._client, endpoint, f"counting rows of {self._pinned_uri}")
            )

        with ThreadPoolExecutor(max(1, min(8, len(self._endpoints))), thread_name_prefix="sheaf-count") as pool:
            return list(pool.map(count, counting.endpoints))

    # -- other frameworks ------------------------------------------------------

    def to_numpy_batches(self, batch_size: int = 1024, **options: Any) -> NumpyBatches:
        """Batches as ``{column: numpy.ndarray}`` (zero-copy where Arrow allows; ``jax.numpy.asarray``
        takes them), in the order of :meth:`to_torch`; see :class:`sheaf.arrays.NumpyBatches`."""
        from .arrays import NumpyBatches

        return NumpyBatches(self, batch_size, **options)

    def to_tensorflow(self, batch_size: int = 1024, **options: Any) -> TensorFlowLoader:
        """A TensorFlow loader (its ``.dataset`` is the ``tf.data.Dataset``), in the order of
        :meth:`to_torch`; see :class:`sheaf.tf.TensorFlowLoader`. Needs TensorFlow."""
        from .tf import TensorFlowLoader

        return TensorFlowLoader(self, batch_size, **options)

    def to_huggingface(self, **options: Any) -> datasets.IterableDataset:
        """A Hugging Face ``datasets.IterableDataset`` in the epoch order of :meth:`to_torch`; see
        :func:`sheaf.huggingface.iterable_dataset`. Needs ``datasets``."""
        from .huggingface import iterable_dataset

        return iterable_dataset(self, **options)

    def to_ray(self, **read_args: Any) -> ray.data.Dataset:
        """A ``ray.data.Dataset`` with one read task (block) per endpoint; see
        :func:`sheaf.ray.read`. Needs ``ray[data]``."""
        from .ray import read

        return read(self, **read_args)

    # -- PyTorch -------------------------------------------------------------

    def to_torch(self, batch_size: int = 1024, **options: Any) -> TorchDataset:
        """A ``torch.utils.data.IterableDataset`` of batches; every keyword
        (``seed``, ``shuffle``, ``shuffle_buffer``, ``rank``, ``world_size``,
        ``drop_last``, ``equal_batches``, ``collate``, ``partitions``, ...)
        goes to :class:`sheaf.torch.TorchDataset`, which documents them. Use
        it with ``sheaf.torch.DataLoader(ds, num_workers=...)`` (or a torch
        ``DataLoader`` with ``batch_size=None``)."""
        from .torch import TorchDataset

        return TorchDataset(self, batch_size=batch_size, **options)
