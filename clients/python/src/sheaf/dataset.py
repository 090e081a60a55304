"""Dataset handles: a planned read of a table (or of a package's manifest),
and the ways to read it: record batches, pyarrow tables, pandas, polars,
PyTorch."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.flight as flight

from . import _ticket, _uri
from .errors import SheafError, from_flight

if TYPE_CHECKING:
    import pandas
    import polars

    from .client import Client
    from .torch import TorchDataset

__all__ = ["Dataset", "Endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """One part of a dataset that can be read on its own (a Flight endpoint).

    ``locations`` is empty when the endpoint is read from the server that
    planned it."""

    index: int
    ticket: bytes
    locations: tuple[str, ...] = ()


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


def read_endpoint(client: Client, endpoint: Endpoint, context: str) -> Generator[pa.RecordBatch, None, None]:
    """Streams the record batches of one endpoint (from its first reachable
    location), converting Flight errors into :class:`~sheaf.SheafError`.
    Closing the generator early cancels the stream on the server."""
    locations: Sequence[str | None] = endpoint.locations or (None,)
    for attempt, location in enumerate(locations):
        where = f"{context} (endpoint {endpoint.index}" + (f" at {location})" if location else ")")
        try:
            reader = client.flight_client(location).do_get(flight.Ticket(endpoint.ticket),
                                                           client.call_options(read=True))
            reader.schema  # noqa: B018 - waits for the stream with the GIL released (apache/arrow#34731)
        except Exception as e:
            err = from_flight(e, where)
            if err.code == "UNAVAILABLE" and attempt + 1 < len(locations):
                continue
            raise err from e
        break
    done = False
    try:
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                done = True
                return
            except Exception as e:
                raise from_flight(e, where) from e
            if chunk.data is not None:
                yield chunk.data
    finally:
        if not done:
            try:
                reader.cancel()
            except Exception:  # noqa: BLE001 - the stream may already be gone
                pass


class Dataset:
    """A planned read of a table of a pinned package revision.

    Create it with :meth:`sheaf.Client.dataset`. Planning (GetFlightInfo)
    already happened: :attr:`schema`, :attr:`top_hash`, :attr:`num_rows` and
    :attr:`endpoints` are known and no data was read. Every read returns the
    same rows in the same order (the revision is pinned).
    """

    def __init__(self, client: Client, uri: str, info: flight.FlightInfo) -> None:
        self._client = client
        self._uri = uri
        try:
            meta = json.loads(bytes(info.app_metadata).decode("utf-8"))
        except ValueError as e:
            raise SheafError(f"{uri}: the server's FlightInfo.app_metadata is not JSON ({e})", code="CLIENT") from e
        self._package: str = meta["package"]
        self._top_hash: str = meta["top_hash"]
        self._path: str = meta.get("path") or ""
        self._pinned_uri: str = meta["pinned_uri"]
        self._schema: pa.Schema = info.schema
        self._num_rows = info.total_records if info.total_records >= 0 else None
        self._total_bytes = info.total_bytes if info.total_bytes >= 0 else None
        self._endpoints = tuple(
            Endpoint(i, bytes(e.ticket.ticket), tuple(str(loc.uri.decode() if isinstance(loc.uri, bytes) else loc.uri)
                                                      for loc in e.locations))
            for i, e in enumerate(info.endpoints))
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
    def plan(cls, client: Client, uri: str) -> Dataset:
        """GetFlightInfo for ``uri``."""
        try:
            info = client.flight_client().get_flight_info(flight.FlightDescriptor.for_command(uri),
                                                          client.call_options())
        except Exception as e:
            raise from_flight(e, f"planning {uri}") from e
        return cls(client, uri, info)

    # -- what was planned ----------------------------------------------------

    @property
    def client(self) -> Client:
        """The client that planned it (and reads it)."""
        return self._client

    @property
    def uri(self) -> str:
        """The URI as asked for."""
        return self._uri

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
        return self._num_rows is not None and _uri.param(self._pinned_uri, "sample") is not None

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
        rows = "unknown" if self._num_rows is None else f"{self._num_rows:,}" + (" (estimated)" if self.rows_estimated
                                                                                else "")
        size = "" if self._total_bytes is None else f", {self._total_bytes / 1e6:,.1f} MB"
        cols = ", ".join(f"{f.name}: {f.type}" for f in self._schema)
        if len(cols) > 300:
            cols = cols[:297] + "..."
        return (f"<sheaf.Dataset {self.name}: rows {rows}, {len(self._endpoints)} endpoint(s){size}\n"
                f"  schema: {cols}\n  uri: {self._pinned_uri}>")

    def replan(self, **params: Any) -> Dataset:
        """The same pinned revision and path with parameters changed (``None``
        removes one), planned again: ``ds.replan(columns=["id"], partitions=8)``."""
        return Dataset.plan(self._client, _uri.with_params(self._pinned_uri, params))

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

    def to_pandas(self, *, max_workers: int | None = None, progress: bool | None = None,
                  **to_pandas_kwargs: Any) -> pandas.DataFrame:
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

    # -- row counts ----------------------------------------------------------

    def endpoint_rows(self) -> list[int]:
        """Exact rows of each endpoint.

        Known without reading for plain Parquet reads (from the planned row
        groups) and single-endpoint reads with an exact count; otherwise
        (filters, ``sample=``, CSV/JSON/IPC tables) counted once by reading
        the narrowest column of every endpoint. Cached."""
        with self._lock:
            if self._endpoint_rows is None:
                self._endpoint_rows = self._planned_rows() or self._count_rows()
            return list(self._endpoint_rows)

    def _planned_rows(self) -> list[int] | None:
        def given(name: str) -> bool:
            return _uri.param(self._pinned_uri, name) is not None

        if self._num_rows is None or given("filter") or given("sample"):
            return None  # unknown, or an estimate
        if len(self._endpoints) == 1:
            return [self._num_rows]  # exact: a plain read, a limit or sample_rows
        if given("sample_rows") or given("limit"):
            return None
        try:
            firsts = []
            for e in self._endpoints:
                slices = _ticket.decode(e.ticket).slices
                if not slices:
                    return None
                firsts.append(slices[0].first_row)
        except ValueError:
            return None
        bounds = firsts + [self._num_rows]
        rows = [bounds[i + 1] - bounds[i] for i in range(len(firsts))]
        return rows if firsts[0] == 0 and all(r >= 0 for r in rows) else None

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
        counting = self.replan(columns=[self._narrowest_column()], content=None, compression=None)
        if len(counting.endpoints) != len(self._endpoints):
            raise SheafError(f"{self._pinned_uri}: counting rows planned {len(counting.endpoints)} endpoints "
                             f"instead of {len(self._endpoints)}", code="CLIENT")

        def count(endpoint: Endpoint) -> int:
            return sum(b.num_rows for b in read_endpoint(self._client, endpoint, f"counting rows of {self._pinned_uri}"))

        with ThreadPoolExecutor(max(1, min(8, len(self._endpoints))), thread_name_prefix="sheaf-count") as pool:
            return list(pool.map(count, counting.endpoints))

    # -- PyTorch -------------------------------------------------------------

    def to_torch(self, batch_size: int = 1024, *, seed: int = 0, shuffle: bool = True, shuffle_buffer: int = 0,
                 rank: int | None = None, world_size: int | None = None, drop_last: bool = False,
                 equal_batches: bool = False, collate: Callable[[pa.RecordBatch], Any] | None = None,
                 partitions: int | None = None) -> TorchDataset:
        """A ``torch.utils.data.IterableDataset`` of batches; see
        :class:`sheaf.torch.TorchDataset` for every option. Use it with
        ``sheaf.torch.DataLoader(ds, num_workers=...)`` (or a torch
        ``DataLoader`` with ``batch_size=None``)."""
        from .torch import TorchDataset

        return TorchDataset(self, batch_size=batch_size, seed=seed, shuffle=shuffle, shuffle_buffer=shuffle_buffer,
                            rank=rank, world_size=world_size, drop_last=drop_last, equal_batches=equal_batches,
                            collate=collate, partitions=partitions)
