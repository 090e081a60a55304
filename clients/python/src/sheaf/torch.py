"""PyTorch integration: stream a dataset's batches across DataLoader workers and
distributed ranks, every row exactly once per epoch, in an order that depends
only on ``(seed, epoch)``.

>>> ds = client.dataset("sheaf://team/clicks/train.parquet?columns=x,y")   # doctest: +SKIP
>>> train = ds.to_torch(batch_size=512, seed=7, shuffle_buffer=50_000)       # doctest: +SKIP
>>> loader = sheaf.torch.DataLoader(train, num_workers=4)                    # doctest: +SKIP
>>> for epoch in range(10):                                                  # doctest: +SKIP
...     train.set_epoch(epoch)
...     for batch in loader:           # {"x": tensor, "y": tensor}
...         ...

How rows are shared out (all of it computed identically in every process, see
``sheaf._schedule``):

- The read is planned with ``partitions=256`` unless the dataset already asks
  for a number, so there are many endpoints (at most one per Parquet row
  group). For the manifest table (files with ``content=true``), the files are
  split into up to 256 groups, each read with its own ticket.
- Global worker ``g = rank * num_workers + worker_id``. Each epoch, the
  endpoints are permuted from ``(seed, epoch)`` and dealt to the global
  workers, each to the worker with the fewest rows so far.
- With fewer endpoints (holding rows) than global workers, endpoints are cut
  into row ranges, in proportion to their rows, so no worker idles and none
  duplicates a row. The server cannot yet start an endpoint at a row offset,
  so a worker reading the second half of an endpoint reads (and drops) its
  first half: such reads cost up to about ``workers / endpoints`` times the
  data. Plan more endpoints (``partitions=``, Parquet row groups) to avoid it.
- ``shuffle_buffer=N`` shuffles rows inside windows of consecutive endpoints
  holding at least N rows, seeded from ``(seed, epoch, global worker, window)``.
- Batches are cut from each worker's stream (the last one of a worker may be
  short unless ``drop_last``). ``equal_batches=True`` trims every rank to the
  smallest rank's batch count, so DDP never waits for a rank that ran out.

Resuming: :meth:`TorchDataset.state_dict` records ``(epoch, batches consumed)``
of this rank. Because the DataLoader takes batches from its workers
round-robin, each worker can tell how many of its own batches were consumed,
and skips the endpoints (or shuffle windows) entirely behind that point
without reading them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import torch
import torch.utils.data

from . import _request, _schedule
from .dataset import Dataset, Endpoint, read_endpoint
from .errors import SheafError, TensorConversionError

if TYPE_CHECKING:
    from .client import Client

__all__ = ["TorchDataset", "DataLoader", "to_tensors", "column_to_tensor", "DEFAULT_PARTITIONS"]

#: Endpoints asked for when the dataset does not set ``partitions``.
DEFAULT_PARTITIONS = 256

STATE_VERSION = 1

# Slots of the shared state tensor (visible to every worker, also persistent ones).
_EPOCH, _RESUME_EPOCH, _RESUME_BATCHES, _RESUME_WORKERS, _SEEN_WORKERS = range(5)


# ---------------------------------------------------------------------------
# Arrow -> tensors
# ---------------------------------------------------------------------------


def _convertible(t: pa.DataType) -> bool:
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return True
    if pa.types.is_fixed_size_list(t):
        return _convertible(t.value_type) and not pa.types.is_boolean(t.value_type)
    return False


def check_schema(schema: pa.Schema, what: str) -> None:
    """Raises :class:`~sheaf.TensorConversionError` naming every column of
    ``schema`` that cannot become a tensor."""
    bad = [f"{f.name!r} ({f.type})" for f in schema if not _convertible(f.type)]
    if bad:
        raise TensorConversionError(
            f"{what}: column(s) {', '.join(bad)} cannot become tensors; only numeric and boolean columns and "
            "fixed-size lists of numbers do. Leave them out with columns=[...] or convert batches yourself "
            "with collate=(a function of a pyarrow.RecordBatch)",
            code="CLIENT",
        )


def column_to_tensor(array: pa.Array, name: str = "column", what: str = "") -> torch.Tensor:
    """A null-free column as a tensor: integers and floats share the Arrow
    buffer (no copy); booleans are copied (Arrow packs them in bits);
    fixed-size lists of numbers become ``(rows, size, ...)`` tensors over the
    flat values (no copy)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    where = f" of {what}" if what else ""
    if array.null_count:
        raise TensorConversionError(
            f"column {name!r}{where} has {array.null_count} null(s) in a batch, and tensors cannot hold nulls: "
            f'drop them with filter="{name} IS NOT NULL", or convert batches yourself with collate=',
            code="CLIENT",
        )
    t = array.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return torch.utils.dlpack.from_dlpack(array.__dlpack__(max_version=(1, 0)))
    if pa.types.is_boolean(t):
        return torch.from_numpy(array.to_numpy(zero_copy_only=False))
    if pa.types.is_fixed_size_list(t) and _convertible(t):
        inner = column_to_tensor(array.flatten(), name, what)
        return inner.reshape(len(array), t.list_size, *inner.shape[1:])
    raise TensorConversionError(
        f"column {name!r}{where} is {t}, which cannot become a tensor; leave it out with columns=[...] or convert "
        "batches yourself with collate=",
        code="CLIENT",
    )


def to_tensors(batch: pa.RecordBatch, what: str = "") -> dict[str, torch.Tensor]:
    """``{column: tensor}`` for a record batch (see :func:`column_to_tensor`)."""
    return {
        name: column_to_tensor(col, name, what) for name, col in zip(batch.schema.names, batch.columns, strict=True)
    }


# ---------------------------------------------------------------------------
# Pieces: the readable parts of a dataset, with exact row counts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A readable part of a dataset with its exact row count."""

    endpoint: Endpoint
    rows: int


def _file_pieces(ds: Dataset, parts: int) -> list[Piece]:
    """The manifest table cut into groups of files, each planned with its own
    ticket (``logical_key IN (...)``), so workers download only their files."""
    # The client's own plans of the rows the dataset names: no lineage inputs of their own.
    listing = ds._replan(
        {"columns": ["logical_key"], "content": None, "partitions": None, "compression": None}, record=False
    )
    keys = listing.to_table(progress=False).column(0).to_pylist()
    n = len(keys)
    count = min(parts, n)
    groups = [keys[i * n // count : (i + 1) * n // count] for i in range(count)]
    dropped = {"limit": None, "sample": None, "sample_rows": None, "seed": None}

    def plan(group: list[str]) -> Piece:
        in_list = "logical_key IN (" + ", ".join(_request.sql_string(k) for k in group) + ")"
        # One endpoint per group: the server would split a group holding
        # more than its endpoint size of file contents.
        sub = ds._replan({"filter": in_list, "partitions": 1, **dropped}, record=False)
        if len(sub.endpoints) != 1:
            raise SheafError(
                f"{ds.name}: a group of files was planned as {len(sub.endpoints)} endpoints", code="CLIENT"
            )
        return Piece(sub.endpoints[0], len(group))

    with ThreadPoolExecutor(4, thread_name_prefix="sheaf-plan") as pool:
        return list(pool.map(plan, groups))


def _pieces(ds: Dataset, partitions: int | None) -> tuple[Dataset, list[Piece]]:
    asked = ds._asked_partitions()
    if ds.path == "":
        parts = partitions or asked or DEFAULT_PARTITIONS
        return ds, _file_pieces(ds, parts)
    if partitions is not None and partitions != asked:
        ds = ds._replan({"partitions": partitions}, record=False)
    elif asked is None and not ds._given("limit"):
        ds = ds._replan({"partitions": DEFAULT_PARTITIONS}, record=False)
    return ds, [Piece(e, n) for e, n in zip(ds.endpoints, ds.endpoint_rows(), strict=True)]


# ---------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------


class _Rebatcher:
    """Cuts a stream of record batches into batches of exactly ``size`` rows;
    a batch inside one incoming batch is a zero-copy slice of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.parts: list[pa.RecordBatch] = []
        self.rows = 0

    def push(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """The full batches completed by ``batch``."""
        offset = 0
        while offset < batch.num_rows:
            take = min(self.size - self.rows, batch.num_rows - offset)
            part = batch.slice(offset, take)
            offset += take
            if not self.parts and take == self.size:
                yield part
                continue
            self.parts.append(part)
            self.rows += take
            if self.rows == self.size:
                yield self._take()

    def _take(self) -> pa.RecordBatch:
        out = self.parts[0] if len(self.parts) == 1 else pa.concat_batches(self.parts)
        self.parts, self.rows = [], 0
        return out

    def flush(self) -> pa.RecordBatch | None:
        """The last, short batch (``None`` when nothing is left)."""
        return self._take() if self.parts else None


# ---------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------


class TorchDataset(torch.utils.data.IterableDataset[Any]):
    """Batches of a Sheaf dataset for PyTorch (create it with
    :meth:`sheaf.Dataset.to_torch`).

    Args:
        dataset: the planned read.
        batch_size: rows per batch.
        seed: seeds the endpoint order and the shuffle buffer.
        shuffle: permute the endpoint order every epoch (``False`` reads them
            in table order, still split across workers).
        shuffle_buffer: also shuffle rows inside windows of at least this many
            rows (whole endpoints; memory holds one window). 0 turns it off.
        rank, world_size: this process's place among distributed ranks;
            default to ``torch.distributed``'s when it is initialized, else a
            single process.
        drop_last: drop each worker's last short batch.
        equal_batches: give every rank the same number of batches (the
            smallest rank's count; the batches cut are the last ones), so
            DistributedDataParallel never hangs.
        collate: a function of a ``pyarrow.RecordBatch`` returning what each
            batch should be; default: ``{column: tensor}`` (see
            :func:`to_tensors`).
        partitions: endpoints to plan (default: the dataset's own
            ``partitions`` parameter, else 256; at most one per row group).

    Iterate it through :class:`sheaf.torch.DataLoader` (which also tracks
    the position for :meth:`state_dict`) or a torch ``DataLoader`` with
    ``batch_size=None``. Each worker opens its own Flight connection.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int = 1024,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        equal_batches: bool = False,
        collate: Callable[[pa.RecordBatch], Any] | None = None,
        partitions: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be 0 or more, not {shuffle_buffer}")
        if rank is None or world_size is None:
            import torch.distributed as dist

            initialized = dist.is_available() and dist.is_initialized()
            if world_size is None:
                world_size = dist.get_world_size() if initialized else 1
            if rank is None:
                rank = dist.get_rank() if initialized else 0
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), not {rank}")
        if collate is None:
            check_schema(dataset.schema, dataset.name)
        planned, pieces = _pieces(dataset, partitions)
        self.dataset = planned
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.equal_batches = equal_batches
        self.collate = collate
        self._client: Client = planned.client
        self._pieces = pieces
        self._name = planned.name
        self._uri = planned.pinned_uri
        self._state = torch.tensor([0, -1, 0, 0, 0], dtype=torch.int64).share_memory_()  # type: ignore[no-untyped-call]
        self._plans: dict[tuple[int, int], _schedule.EpochPlan] = {}
        self._in_process: tuple[int, int] | None = None  # (epoch, batches) yielded without workers

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_plans"] = {}
        return state

    def __repr__(self) -> str:
        return (
            f"<sheaf.torch.TorchDataset {self._name}: {self.num_rows:,} rows in {len(self._pieces)} piece(s), "
            f"batch_size={self.batch_size}, seed={self.seed}, epoch={self.epoch}, rank {self.rank} of "
            f"{self.world_size}>"
        )

    # -- epochs and plans ----------------------------------------------------

    @property
    def num_rows(self) -> int:
        """Rows per epoch over all ranks (before ``drop_last``/``equal_batches``)."""
        return sum(p.rows for p in self._pieces)

    @property
    def piece_rows(self) -> list[int]:
        """Exact rows of each piece (endpoint, or group of files)."""
        return [p.rows for p in self._pieces]

    @property
    def epoch(self) -> int:
        """The epoch the next iteration follows (see :meth:`set_epoch`)."""
        return int(self._state[_EPOCH])

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order the next iteration follows; it reaches
        DataLoader workers, persistent ones included (the value lives in
        shared memory)."""
        self._state[_EPOCH] = int(epoch)

    def plan(self, num_workers: int, epoch: int | None = None) -> _schedule.EpochPlan:
        """Who reads what in ``epoch`` (default: the current one) with
        ``num_workers`` DataLoader workers per rank (0 means in-process)."""
        workers = max(1, num_workers)
        epoch = self.epoch if epoch is None else epoch
        key = (epoch, workers)
        if key not in self._plans:
            if len(self._plans) >= 8:
                self._plans.clear()
            self._plans[key] = _schedule.plan_epoch(
                self.piece_rows,
                seed=self.seed,
                epoch=epoch,
                shuffle=self.shuffle,
                world_size=self.world_size,
                num_workers=workers,
                batch_size=self.batch_size,
                drop_last=self.drop_last,
                equal_batches=self.equal_batches,
            )
        return self._plans[key]

    def num_batches(self, num_workers: int = 0) -> int:
        """Batches this rank yields in the current epoch with ``num_workers``
        DataLoader workers, from its start (a resumed epoch yields fewer)."""
        return self.plan(num_workers).rank_batches(self.rank)

    # -- iteration -----------------------------------------------------------

    def _resume_point(self, epoch: int) -> int:
        if int(self._state[_RESUME_EPOCH]) != epoch:
            return 0
        return int(self._state[_RESUME_BATCHES])

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        self._state[_SEEN_WORKERS] = workers
        epoch = self.epoch
        resume = self._resume_point(epoch)
        saved_workers = int(self._state[_RESUME_WORKERS])
        if resume and saved_workers != workers:
            raise ValueError(
                f"{self._name}: the state being resumed was saved with {saved_workers} DataLoader "
                f"worker(s) per rank (0 and 1 are alike) but this loader has {workers}; resume with the "
                "same num_workers"
            )
        plan = self.plan(workers, epoch)
        quotas = plan.batches[self.rank]
        skip = _schedule.round_robin_prefix(quotas, resume)[worker] if resume else 0
        units = plan.units[self.rank * workers + worker]
        stream = self._worker_batches(units, quotas[worker], skip, epoch, self.rank * workers + worker)
        if info is not None:
            return stream
        return self._counted(stream, epoch, resume)

    def _counted(self, stream: Iterator[Any], epoch: int, start: int) -> Iterator[Any]:
        self._in_process = (epoch, start)
        for batch in stream:
            self._in_process = (epoch, self._in_process[1] + 1)
            yield batch

    def _convert(self, batch: pa.RecordBatch) -> Any:
        if self.collate is not None:
            return self.collate(batch)
        return to_tensors(batch, self._name)

    def _worker_batches(
        self, units: list[_schedule.Unit], quota: int, skip: int, epoch: int, worker: int
    ) -> Iterator[Any]:
        if skip >= quota:
            return
        skip_rows = skip * self.batch_size
        emitted = skip
        batcher = _Rebatcher(self.batch_size)
        position = 0  # rows of this worker's stream before the current window
        for index, window in enumerate(_schedule.windows(units, self.shuffle_buffer)):
            rows = sum(u.rows for u in window)
            if position + rows <= skip_rows:  # consumed before the resumed state: not read at all
                position += rows
                continue
            drop = max(0, skip_rows - position)
            position += rows
            for batch in self._window(window, epoch, worker, index):
                if drop:
                    if drop >= batch.num_rows:
                        drop -= batch.num_rows
                        continue
                    batch, drop = batch.slice(drop), 0
                for out in batcher.push(batch):
                    yield self._convert(out)
                    emitted += 1
                    if emitted >= quota:
                        return
        last = batcher.flush()
        if last is not None and not self.drop_last and emitted < quota:
            yield self._convert(last)

    def _window(self, window: list[_schedule.Unit], epoch: int, worker: int, index: int) -> Iterator[pa.RecordBatch]:
        if not self.shuffle_buffer:
            for unit in window:
                yield from self._unit(unit)
            return
        batches = [b for unit in window for b in self._unit(unit)]
        table = pa.Table.from_batches(batches, schema=self.dataset.schema)
        order = list(range(table.num_rows))
        random.Random(_schedule.mix(self.seed, epoch, worker, index)).shuffle(order)
        yield from table.take(pa.array(order, pa.int64())).to_batches()

    def _unit(self, unit: _schedule.Unit) -> Iterator[pa.RecordBatch]:
        """Rows ``[start, stop)`` of a piece; the stream is cancelled once
        ``stop`` is reached, and the row count is checked against the plan."""
        piece = self._pieces[unit.piece]
        context = f"reading {self._uri}"
        offset = 0
        stream = read_endpoint(self._client, piece.endpoint, context)
        try:
            for batch in stream:
                begin, end = offset, offset + batch.num_rows
                offset = end
                lo, hi = max(begin, unit.start), min(end, unit.stop)
                if hi > lo:
                    yield batch.slice(lo - begin, hi - lo) if (lo, hi) != (begin, end) else batch
                if offset >= unit.stop and unit.stop < piece.rows:
                    return
        finally:
            stream.close()
        if offset != piece.rows:
            raise SheafError(
                f"{context}: endpoint {piece.endpoint.index} returned {offset} rows, but {piece.rows} "
                "were planned; the table changed under a pinned revision, or the server "
                "partitions differently than it reported",
                code="CLIENT",
            )

    # -- resuming ------------------------------------------------------------

    def state_dict(self, batches: int | None = None, num_workers: int | None = None) -> dict[str, Any]:
        """Where this rank is: ``{"epoch", "batches", ...}``.

        ``batches`` is how many batches this rank consumed in the current
        epoch. :class:`sheaf.torch.DataLoader` counts them (call its
        ``state_dict()``); when iterating the dataset in-process it counts
        them itself; with a plain torch DataLoader and workers, pass it (and
        ``num_workers``)."""
        epoch = self.epoch
        if batches is None:
            if self._in_process is None or self._in_process[0] != epoch:
                raise ValueError(
                    f"{self._name}: state_dict() cannot know how many batches of epoch {epoch} were "
                    "consumed: use sheaf.torch.DataLoader, or pass batches= and num_workers="
                )
            batches, num_workers = self._in_process[1], 0
        if num_workers is None:
            num_workers = int(self._state[_SEEN_WORKERS])
        return {
            "version": STATE_VERSION,
            "uri": self._uri,
            "epoch": epoch,
            "batches": int(batches),
            "num_workers": max(1, int(num_workers)),
            "rank": self.rank,
            "world_size": self.world_size,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "shuffle_buffer": self.shuffle_buffer,
            "drop_last": self.drop_last,
            "equal_batches": self.equal_batches,
            "pieces": len(self._pieces),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from ``state``: the next iteration of its epoch skips the
        batches already consumed (reading only from the endpoint, or shuffle
        window, where it stopped). The dataset, seed, batching and topology
        must be the same as when it was saved."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{self._name}: unknown state version {state.get('version')!r}")
        mine = self.state_dict(batches=0, num_workers=state.get("num_workers", 1))
        for key in (
            "uri",
            "rank",
            "world_size",
            "seed",
            "batch_size",
            "shuffle",
            "shuffle_buffer",
            "drop_last",
            "equal_batches",
            "pieces",
        ):
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"{self._name}: cannot resume: the state was saved with {key}={state.get(key)!r} "
                    f"but this dataset has {key}={mine[key]!r}"
                )
        self._state[_EPOCH] = int(state["epoch"])
        self._state[_RESUME_EPOCH] = int(state["epoch"])
        self._state[_RESUME_BATCHES] = int(state["batches"])
        self._state[_RESUME_WORKERS] = int(state["num_workers"])
        self._in_process = None

    def _finish_resume(self, epoch: int) -> None:
        if int(self._state[_RESUME_EPOCH]) == epoch:
            self._state[_RESUME_EPOCH] = -1
            self._state[_RESUME_BATCHES] = 0


class DataLoader(torch.utils.data.DataLoader[Any]):
    """A ``torch.utils.data.DataLoader`` for a :class:`TorchDataset` that
    counts the batches it hands out, for :meth:`state_dict`.

    Batching is the dataset's (``batch_size`` here must stay ``None``); every
    other DataLoader argument works as usual (``num_workers``,
    ``multiprocessing_context``, ``persistent_workers``, ``pin_memory``,
    ``prefetch_factor``, ``timeout``...). Keep the default in-order delivery
    (``in_order=True``): resuming relies on it.
    """

    def __init__(self, dataset: TorchDataset, **kwargs: Any) -> None:
        if not isinstance(dataset, TorchDataset):
            raise TypeError(f"sheaf.torch.DataLoader takes a sheaf TorchDataset, not {type(dataset).__name__}")
        if kwargs.get("batch_size") is not None:
            raise ValueError("the dataset makes the batches (to_torch(batch_size=...)); leave batch_size out here")
        if kwargs.get("in_order") is False:
            raise ValueError(
                "sheaf.torch.DataLoader needs in_order=True (the default): positions for resuming "
                "follow the order in which workers' batches are handed out"
            )
        kwargs["batch_size"] = None
        super().__init__(dataset, **kwargs)
        self._position: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        dataset: TorchDataset = self.dataset  # type: ignore[assignment]
        epoch = dataset.epoch
        self._position = (epoch, dataset._resume_point(epoch))
        for batch in super().__iter__():
            self._position = (epoch, self._position[1] + 1)
            yield batch
        dataset._finish_resume(epoch)

    def __len__(self) -> int:
        dataset: TorchDataset = self.dataset  # type: ignore[assignment]
        return dataset.num_batches(self.num_workers) - dataset._resume_point(dataset.epoch)

    def state_dict(self) -> dict[str, Any]:
        """The dataset's state at the last batch this loader handed out."""
        dataset: TorchDataset = self.dataset  # type: ignore[assignment]
        epoch = dataset.epoch
        batches = self._position[1] if self._position and self._position[0] == epoch else dataset._resume_point(epoch)
        return dataset.state_dict(batches=batches, num_workers=self.num_workers)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes from a state saved by :meth:`state_dict` (same num_workers)."""
        self.dataset.load_state_dict(state)  # type: ignore[attr-defined]
        self._position = None
