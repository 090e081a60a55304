"""PyTorch integration: a dataset's batches across DataLoader workers and
distributed ranks, every row exactly once per epoch, in an order that depends
only on the pinned dataset, ``seed`` and the epoch (never on the number of
ranks or workers), with checkpoints that resume on any topology.

>>> ds = client.dataset("sheaf://team/clicks/train.parquet?columns=x,y")   # doctest: +SKIP
>>> train = ds.to_torch(batch_size=512, seed=7, shuffle_buffer=500_000)      # doctest: +SKIP
>>> loader = sheaf.torch.DataLoader(train, num_workers=4)                    # doctest: +SKIP
>>> for epoch in range(10):                                                  # doctest: +SKIP
...     train.set_epoch(epoch)
...     for batch in loader:           # {"x": tensor, "y": tensor}
...         ...

The order, the sharing out and the checkpoints are :mod:`sheaf.loader`'s
(framework-neutral; read its docstring): :class:`TorchDataset` runs a
:class:`sheaf.loader.WorkerStream` in each DataLoader worker (global worker
``rank * num_workers + worker_id``) and converts its batches to tensors.

Checkpoints:

- :class:`DataLoader` (this module's) counts the batches it hands out; the
  torch DataLoader takes them from its workers round-robin, so its
  ``state_dict()`` knows each worker's progress.
- torchdata's ``StatefulDataLoader`` calls :meth:`TorchDataset.state_dict`
  and :meth:`TorchDataset.load_state_dict` inside each worker: each worker's
  state covers that worker; restoring the same ``num_workers`` gives each
  worker its own state back.
- To resume on another topology (world size, num_workers), merge the states
  of every rank with :func:`merge_state_dicts` (it also finds the states
  inside ``StatefulDataLoader.state_dict()``), load the result with
  :meth:`TorchDataset.load_state_dict` on every rank, and iterate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import torch
import torch.utils.data

from . import _handoff
from ._request import not_null_filter
from ._stream import DEFAULT_BLOCK_ROWS, DEFAULT_PARTITIONS, Rebatcher
from .dataset import Dataset
from .errors import TensorConversionError
from .loader import STATE_VERSION, Loader, WorkerStream, _Source, merge_state_dicts, shuffle_quality
from .mix import Mix

__all__ = [
    "TorchDataset",
    "DataLoader",
    "mix",
    "merge_state_dicts",
    "shuffle_quality",
    "to_tensors",
    "column_to_tensor",
    "DEFAULT_PARTITIONS",
    "DEFAULT_BLOCK_ROWS",
    "STATE_VERSION",
]

_Rebatcher = Rebatcher  # the name benches/dataloader.py and older code use

# Slots of the shared state tensor (visible to every worker, persistent ones too).
_EPOCH, _RESUME_GEN, _WORKERS_EPOCH, _WORKERS = range(4)
_NO_EPOCH = -(2**62)


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
    ``schema`` that cannot become a tensor (its ``column`` attribute is the
    first such column)."""
    bad = [f for f in schema if not _convertible(f.type)]
    if bad:
        raise TensorConversionError(
            f"{what}: column(s) {', '.join(f'{f.name!r} ({f.type})' for f in bad)} cannot become tensors; only "
            "numeric and boolean columns and fixed-size lists of numbers do. Leave them out with columns=[...] or "
            "convert batches yourself with collate=(a function of a pyarrow.RecordBatch)",
            code="CLIENT",
            column=bad[0].name,
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
            f"drop them with {not_null_filter(name)}, or convert batches yourself with collate=",
            code="CLIENT",
            column=name,
        )
    t = array.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return torch.utils.dlpack.from_dlpack(array.__dlpack__(max_version=(1, 0)))
    if pa.types.is_boolean(t):
        return torch.from_numpy(array.to_numpy(zero_copy_only=False))
    if pa.types.is_fixed_size_list(t) and _convertible(t):
        # The slice of the flat values this (possibly sliced) array covers: zero-copy, where
        # ``flatten()`` runs a compute kernel (~50-200 us a batch, a copy for some offsets).
        size = t.list_size
        inner = column_to_tensor(array.values.slice(array.offset * size, len(array) * size), name, what)
        return inner.reshape(len(array), size, *inner.shape[1:])
    raise TensorConversionError(
        f"column {name!r}{where} is {t}, which cannot become a tensor; leave it out with columns=[...] or convert "
        "batches yourself with collate=",
        code="CLIENT",
        column=name,
    )


def to_tensors(batch: pa.RecordBatch, what: str = "") -> dict[str, torch.Tensor]:
    """``{column: tensor}`` for a record batch (see :func:`column_to_tensor`)."""
    return {
        name: column_to_tensor(col, name, what) for name, col in zip(batch.schema.names, batch.columns, strict=True)
    }


# ---------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------


def _topology(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        import torch.distributed as dist

        initialized = dist.is_available() and dist.is_initialized()
        if world_size is None:
            world_size = dist.get_world_size() if initialized else 1
        if rank is None:
            rank = dist.get_rank() if initialized else 0
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), not {rank}")
    return rank, world_size


class TorchDataset(torch.utils.data.IterableDataset[Any]):
    """Batches of a Sheaf dataset (or of a :class:`sheaf.mix.Mix`) for
    PyTorch; create it with :meth:`sheaf.Dataset.to_torch` or :func:`mix`.

    Args:
        dataset: the planned read, or a :class:`sheaf.loader.Loader` /
            :class:`sheaf.mix.Mix` (whose options then apply: the batching
            and order arguments below are ignored).
        batch_size: rows per batch.
        seed: seeds the block order and the row shuffles.
        shuffle: ``False`` reads in table order (still shared out).
        block_rows: rows per block of reads by position (default
            :func:`sheaf.loader.default_block_rows`: 65,536 rows without a
            shuffle buffer, about ``shuffle_buffer / 256`` (at least 2,048)
            with one; plain Parquet reads only: other reads use whole
            endpoints as blocks).
        shuffle_buffer: shuffle rows inside windows of at least this many
            rows (whole blocks, at least one); memory holds about one window
            per worker. See :func:`shuffle_quality`.
        rank, world_size: this process's place among distributed ranks;
            default to ``torch.distributed``'s when it is initialized, else a
            single process.
        drop_last: drop each worker's last short batch.
        equal_batches: give every rank the same number of batches (the
            smallest rank's count; the batches cut are the last ones), so
            DistributedDataParallel never hangs.
        collate: a function of a ``pyarrow.RecordBatch`` returning what each
            batch should be; default: ``{column: tensor}`` (:func:`to_tensors`).
        partitions: endpoints to plan (default: the dataset's own
            ``partitions`` parameter, else 256; at most one per row group).
        prefetch: read requests each worker keeps in flight (threads; 0 or more).

    Iterate it through :class:`sheaf.torch.DataLoader` (which tracks the
    position for :meth:`DataLoader.state_dict`), torchdata's
    ``StatefulDataLoader``, or a torch ``DataLoader`` with
    ``batch_size=None``. Each worker opens its own Flight connection.
    """

    def __init__(
        self,
        dataset: Dataset | _Source,
        *,
        batch_size: int = 1024,
        seed: int = 0,
        shuffle: bool = True,
        block_rows: int | None = None,
        shuffle_buffer: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        equal_batches: bool = False,
        collate: Callable[[pa.RecordBatch], Any] | None = None,
        partitions: int | None = None,
        prefetch: int = 2,
    ) -> None:
        super().__init__()
        self.rank, self.world_size = _topology(rank, world_size)
        if isinstance(dataset, _Source):
            source = dataset
        else:
            if collate is None:
                check_schema(dataset.schema, dataset.name)
            source = Loader(
                dataset,
                batch_size=batch_size,
                seed=seed,
                shuffle=shuffle,
                block_rows=block_rows,
                shuffle_buffer=shuffle_buffer,
                drop_last=drop_last,
                equal_batches=equal_batches,
                partitions=partitions,
                prefetch=prefetch,
            )
        if collate is None:
            check_schema(source.schema, source.name)
        self.source: _Source = source
        self.collate = collate
        self._name = source.name
        self._state = torch.tensor([0, 0, _NO_EPOCH, 0], dtype=torch.int64).share_memory_()  # type: ignore[no-untyped-call]
        self._resume: dict[str, Any] | None = None  # loaded state, active while its generation is current
        self._resume_gen = 0
        self._local: dict[str, Any] | None = None  # a state loaded inside a worker (StatefulDataLoader)
        self._live: WorkerStream | None = None  # what this process is iterating

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_live"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"<sheaf.torch.TorchDataset {self._name}: {self.num_rows:,} rows, batch_size={self.batch_size}, "
            f"epoch={self.epoch}, rank {self.rank} of {self.world_size}>"
        )

    # -- what it reads ---------------------------------------------------------

    @property
    def dataset(self) -> Dataset:
        """The (first) dataset, as planned for training."""
        return self.source.streams[0].dataset

    @property
    def batch_size(self) -> int:
        return self.source.batch_size

    @property
    def seed(self) -> int:
        return self.source.seed

    @property
    def num_rows(self) -> int:
        """Rows per epoch over all ranks (before ``drop_last``/``equal_batches``)."""
        return self.source.num_rows

    @property
    def piece_rows(self) -> list[int]:
        """Exact rows of each piece (endpoint, or group of files) of the (first) dataset."""
        return [p.rows for p in self.source.streams[0].pieces]

    @property
    def epoch(self) -> int:
        """The epoch the next iteration follows (see :meth:`set_epoch`)."""
        return int(self._state[_EPOCH])

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order the next iteration follows; it reaches
        DataLoader workers, persistent ones included (the value lives in
        shared memory)."""
        self._state[_EPOCH] = int(epoch)

    def num_batches(self, num_workers: int = 0) -> int:
        """Batches this rank yields in the current epoch with ``num_workers``
        DataLoader workers (what is left of it when resuming)."""
        epoch = self.epoch
        return self.source.num_batches(
            epoch=epoch,
            rank=self.rank,
            world_size=self.world_size,
            num_workers=max(1, num_workers),
            state=self._resume_for(epoch),
        )

    # -- iteration -------------------------------------------------------------

    def _resume_for(self, epoch: int) -> dict[str, Any] | None:
        state = self._resume
        if state is None or int(self._state[_RESUME_GEN]) != self._resume_gen or int(state["epoch"]) != epoch:
            return None
        return state

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        if self._local is not None:  # loaded in this worker (torchdata): once, for this iteration
            state: dict[str, Any] | None = self._local
            epoch = int(self._local["epoch"])
            self._local = None
        else:
            epoch = self.epoch
            state = self._resume_for(epoch)
        if info is not None:
            self._state[_WORKERS_EPOCH] = epoch
            self._state[_WORKERS] = workers
        stream = self.source.stream(
            epoch=epoch, rank=self.rank, world_size=self.world_size, worker=worker, num_workers=workers, state=state
        )
        self._live = stream
        batches = _Batches(self, stream, in_process=info is None)
        # In a worker, batches cross to the main process through reused shared memory (sheaf._handoff).
        return batches if info is None else _handoff.worker_stream(batches)

    def _convert(self, batch: pa.RecordBatch) -> Any:
        if self.collate is not None:
            return self.collate(batch)
        return to_tensors(batch, self._name)

    # -- resuming --------------------------------------------------------------

    def state_dict(self, batches: int | None = None, num_workers: int | None = None) -> dict[str, Any]:
        """Where this rank (inside a DataLoader worker: this worker) is in the
        current epoch, as a JSON-able dict (see :mod:`sheaf.loader`).

        In-process iteration and torchdata's ``StatefulDataLoader`` (which
        calls it inside each worker) need no argument;
        :class:`sheaf.torch.DataLoader` computes it (call its
        ``state_dict()``). With a plain torch DataLoader and workers, pass
        the batches this rank consumed and ``num_workers``."""
        epoch = self.epoch
        start = self._resume_for(epoch)
        if batches is not None:
            return self.source.state_dict(
                epoch=epoch,
                rank=self.rank,
                world_size=self.world_size,
                num_workers=max(1, num_workers or 1),
                batches=batches,
                state=start,
            )
        live = self._live
        in_worker = torch.utils.data.get_worker_info() is not None
        if live is not None and (in_worker or live.epoch == epoch):
            return live.state_dict()
        if not in_worker and int(self._state[_WORKERS_EPOCH]) == epoch:
            raise ValueError(
                f"{self._name}: DataLoader workers iterate epoch {epoch}, so state_dict() here cannot know "
                "what they yielded: use sheaf.torch.DataLoader (its state_dict()) or torchdata's "
                "StatefulDataLoader, or pass batches= and num_workers="
            )
        if start is not None:
            return copy.deepcopy(start)
        return self.source.state_dict(
            epoch=epoch, rank=self.rank, world_size=self.world_size, num_workers=1, batches=0, state=None
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from ``state`` (a state of this rank on the same
        topology, or a merged state on any topology): the next iteration of
        its epoch yields the rows it has left, reading none of the consumed
        ones. Inside a DataLoader worker (torchdata's ``StatefulDataLoader``
        does that) it applies to that worker's next iteration only."""
        self.source._check_state(state)
        state = copy.deepcopy(state)
        self._live = None
        if torch.utils.data.get_worker_info() is not None:
            self._local = state
            return
        self._resume = state
        self._resume_gen = int(self._state[_RESUME_GEN]) + 1
        self._state[_RESUME_GEN] = self._resume_gen
        self._state[_EPOCH] = int(state["epoch"])

    def _finish_resume(self, epoch: int) -> None:
        """The resumed epoch ended: its next iteration starts from its beginning."""
        if self._resume is not None and int(self._resume["epoch"]) == epoch:
            self._state[_RESUME_GEN] = int(self._state[_RESUME_GEN]) + 1
            self._resume = None


class _Batches(Iterator[Any]):
    """A worker's converted batches; in-process, the end of a resumed epoch
    clears the resume point."""

    def __init__(self, owner: TorchDataset, stream: WorkerStream, in_process: bool) -> None:
        self._owner = owner
        self._stream = stream
        self._in_process = in_process

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            batch = next(self._stream)
        except StopIteration:
            if self._in_process:
                self._owner._finish_resume(self._stream.epoch)
            raise
        return self._owner._convert(batch)

    def close(self) -> None:
        """Stops reading (cancels the reads in flight)."""
        self._stream.close()

    def __del__(self) -> None:
        self._stream.close()


def mix(
    datasets: Sequence[Dataset],
    weights: Sequence[float],
    *,
    batch_size: int = 1024,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    shuffle: bool = True,
    block_rows: int | None = None,
    shuffle_buffer: int = 0,
    epoch_rows: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    drop_last: bool = False,
    equal_batches: bool = False,
    collate: Callable[[pa.RecordBatch], Any] | None = None,
    partitions: int | None = None,
    prefetch: int = 2,
) -> TorchDataset:
    """Several datasets mixed with ``weights`` in one :class:`TorchDataset`
    (see :mod:`sheaf.mix`): each keeps its own order (``seeds[i]``, default
    ``seed + i``), batches hold their rows in proportion, and the state
    resumes on any topology."""
    if seeds is None:
        seeds = [seed + i for i in range(len(datasets))]
    if len(seeds) != len(datasets):
        raise ValueError(f"mix: {len(datasets)} dataset(s) but {len(seeds)} seed(s)")
    loaders = [
        Loader(
            ds,
            batch_size=batch_size,
            seed=s,
            shuffle=shuffle,
            block_rows=block_rows,
            shuffle_buffer=shuffle_buffer,
            partitions=partitions,
            prefetch=prefetch,
        )
        for ds, s in zip(datasets, seeds, strict=True)
    ]
    source = Mix(
        loaders,
        weights,
        batch_size=batch_size,
        seed=seed,
        drop_last=drop_last,
        equal_batches=equal_batches,
        epoch_rows=epoch_rows,
    )
    return TorchDataset(source, rank=rank, world_size=world_size, collate=collate)


class DataLoader(torch.utils.data.DataLoader[Any]):
    """A ``torch.utils.data.DataLoader`` for a :class:`TorchDataset` that
    counts the batches it hands out, for :meth:`state_dict`.

    Batching is the dataset's (``batch_size`` here must stay ``None``); every
    other DataLoader argument works as usual (``num_workers``,
    ``multiprocessing_context``, ``persistent_workers``, ``pin_memory``,
    ``prefetch_factor``, ``timeout``...). Keep the default in-order delivery
    (``in_order=True``): the position follows the order in which workers'
    batches are handed out.

    With workers, each worker hands its batches to this process several at
    a time (up to about 1 MiB) through shared memory it reuses (see
    :mod:`sheaf._handoff`), in the same order as one by one; ``timeout``
    applies to such a hand-off.
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
        # Bundles need the DataLoader's default collate (batch_size=None: default_convert); a caller's
        # collate_fn would receive a Bundle. Without bundles, batches still use the reused slots.
        bundled = kwargs.get("num_workers", 0) > 0 and kwargs.get("collate_fn") is None
        if bundled:
            kwargs["worker_init_fn"] = _handoff.WorkerInit(kwargs.get("worker_init_fn"))
        super().__init__(dataset, **kwargs)
        self._bundled = bundled
        self._position: tuple[int, int, dict[str, Any] | None] | None = None

    def _ds(self) -> TorchDataset:
        dataset: TorchDataset = self.dataset  # type: ignore[assignment]
        return dataset

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        dataset = self._ds()
        epoch = dataset.epoch
        start = dataset._resume_for(epoch)
        self._position = (epoch, 0, start)
        try:
            for batch in _handoff.main_stream(super().__iter__(), self.num_workers if self._bundled else 0):
                self._position = (epoch, self._position[1] + 1, start)
                yield batch
        finally:
            _handoff.forget_ended_workers()
        dataset._finish_resume(epoch)

    def __len__(self) -> int:
        return self._ds().num_batches(self.num_workers)

    def state_dict(self) -> dict[str, Any]:
        """The state at the last batch this loader handed out (this rank's;
        see :mod:`sheaf.loader` for merging ranks)."""
        dataset = self._ds()
        epoch = dataset.epoch
        if self._position is not None and self._position[0] == epoch:
            _, batches, start = self._position
        else:
            batches, start = 0, dataset._resume_for(epoch)
        if start is None and batches == 0 and dataset._resume_for(epoch) is not None:
            start = dataset._resume_for(epoch)
        return dataset.source.state_dict(
            epoch=epoch,
            rank=dataset.rank,
            world_size=dataset.world_size,
            num_workers=max(1, self.num_workers),
            batches=batches,
            state=start,
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes from a state saved by :meth:`state_dict` (same topology)
        or merged by :func:`merge_state_dicts` (any topology)."""
        iterator = getattr(self, "_iterator", None)
        if iterator is not None:  # persistent workers hold the old state: start new ones
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self._iterator = None
        self._ds().load_state_dict(state)
        self._position = None
