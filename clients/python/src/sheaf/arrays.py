"""numpy (and JAX) batches: a dataset's epochs as ``{column: numpy.ndarray}``
dicts, in the same order, sharding and resume state as :mod:`sheaf.torch`
(both follow :class:`sheaf.loader.Loader`).

>>> train = ds.to_numpy_batches(batch_size=512, seed=7)     # doctest: +SKIP
>>> for epoch in range(3):                                   # doctest: +SKIP
...     train.set_epoch(epoch)
...     for batch in train:                 # {"x": ndarray, "y": ndarray}
...         step(jax.numpy.asarray(batch["x"]), ...)
...     checkpoint = train.state_dict()     # where this rank is (see load_state_dict)

Arrays share Arrow's buffers where Arrow allows (integers, floats, and
fixed-size lists of them; read-only views), booleans are copied (Arrow packs
them in bits). ``jax.numpy.asarray(array)`` puts an array on the device. On
several JAX hosts, pass ``rank=jax.process_index(),
world_size=jax.process_count()``. Needs only numpy (a dependency of the
client; ``pip install 'sheaf[jax]'`` adds JAX).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sheaf._request import not_null_filter
from sheaf.errors import TensorConversionError

if TYPE_CHECKING:
    import numpy

    from sheaf.dataset import Dataset
    from sheaf.loader import Loader

__all__ = [
    "NumpyBatches",
    "column_to_numpy",
    "to_numpy",
    "check_schema",
    "convertible",
]


def convertible(t: pa.DataType, *, strings: bool = False) -> bool:
    """Whether a null-free column of type ``t`` becomes a dense array:
    integers, floats, booleans, fixed-size lists of numbers (nested too);
    with ``strings``, also strings and binaries (object arrays of ``str`` or
    ``bytes``, for ``tf.string``)."""
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return True
    if strings and (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
    ):
        return True
    if pa.types.is_fixed_size_list(t):
        return convertible(t.value_type) and not pa.types.is_boolean(t.value_type)
    return False


def check_schema(schema: pa.Schema, what: str, *, strings: bool = False, target: str = "arrays") -> None:
    """Raises :class:`~sheaf.TensorConversionError` naming every column of
    ``schema`` that cannot become one of ``target`` (its ``column`` attribute
    is the first such column)."""
    bad = [f for f in schema if not convertible(f.type, strings=strings)]
    if bad:
        kinds = "numeric and boolean columns, fixed-size lists of numbers" + (
            ", strings and binaries" if strings else ""
        )
        raise TensorConversionError(
            f"{what}: column(s) {', '.join(f'{f.name!r} ({f.type})' for f in bad)} cannot become {target}; only "
            f"{kinds} can. Leave them out with columns=[...] or convert batches yourself with collate=(a function "
            "of a pyarrow.RecordBatch)",
            code="CLIENT",
            column=bad[0].name,
        )


def column_to_numpy(array: pa.Array | pa.ChunkedArray, name: str = "column", what: str = "") -> numpy.ndarray:
    """A null-free column as a numpy array: integers and floats are read-only
    views of the Arrow buffer (no copy); booleans are copied; fixed-size lists
    become ``(rows, size, ...)`` arrays over the flat values (no copy);
    strings and binaries become object arrays of ``str``/``bytes``."""
    import numpy as np

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    where = f" of {what}" if what else ""
    if array.null_count:
        raise TensorConversionError(
            f"column {name!r}{where} has {array.null_count} null(s) in a batch, and arrays cannot hold nulls: drop "
            f"them with {not_null_filter(name)}, or convert batches yourself with collate=",
            code="CLIENT",
            column=name,
        )
    t = array.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        # Booleans are unpacked from bits (a copy); numbers are views.
        out: numpy.ndarray = array.to_numpy(zero_copy_only=not pa.types.is_boolean(t))
        return out
    if pa.types.is_fixed_size_list(t) and convertible(t):
        # The slice of the flat values this (possibly sliced) array covers: zero-copy, where
        # ``flatten()`` runs a compute kernel (as sheaf.torch.column_to_tensor does).
        size = t.list_size
        inner = column_to_numpy(array.values.slice(array.offset * size, len(array) * size), name, what)
        return inner.reshape(len(array), size, *inner.shape[1:])
    if convertible(t, strings=True):
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=object)
    raise TensorConversionError(
        f"column {name!r}{where} is {t}, which cannot become an array; leave it out with columns=[...] or convert "
        "batches yourself with collate=",
        code="CLIENT",
        column=name,
    )


def to_numpy(batch: pa.RecordBatch, what: str = "") -> dict[str, numpy.ndarray]:
    """``{column: array}`` for a record batch (see :func:`column_to_numpy`)."""
    return {name: column_to_numpy(col, name, what) for name, col in zip(batch.schema.names, batch.columns, strict=True)}


class EpochAdapter:
    """What the adapters that drive :class:`sheaf.loader.Loader` from one
    process share (:class:`NumpyBatches`, :class:`sheaf.tf.TensorFlowLoader`):
    this rank's core loader, the epoch the next pass follows, the state it
    resumes from, and the current pass."""

    def __init__(
        self, dataset: Dataset, batch_size: int, rank: int, world_size: int, num_workers: int, options: dict[str, Any]
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, not {num_workers}")
        self._source, self.rank, self.world_size = _loader(dataset, batch_size, rank, world_size, options)
        self.num_workers = num_workers
        self._name = dataset.name
        self._epoch = 0
        self._resume: dict[str, Any] | None = None  # the state the next pass starts from
        self._pass: _Pass | None = None  # the current or last pass

    @property
    def loader(self) -> Loader:
        """The framework-neutral core that decides the order (:class:`sheaf.loader.Loader`)."""
        return self._source

    @property
    def epoch(self) -> int:
        """The epoch the next pass follows."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order the next pass follows."""
        if epoch != self._epoch:
            self._epoch, self._pass = int(epoch), None
            if self._resume is not None and self._resume.get("epoch") != epoch:
                self._resume = None

    def __len__(self) -> int:
        """Batches the next pass yields (after a resume: those left)."""
        return int(
            self._source.num_batches(
                epoch=self._epoch,
                rank=self.rank,
                world_size=self.world_size,
                num_workers=self.num_workers,
                state=self._resume,
            )
        )

    def _state(self, batches: int | None = None) -> dict[str, Any]:
        """The rank-level state after ``batches`` batches of the current pass
        (default: those it counted), taken round-robin from its workers."""
        current = self._pass
        if current is not None and current.epoch == self._epoch:
            start, counted = current.start, current.batches
        else:
            start, counted = self._resume, 0
        n = counted if batches is None else int(batches)
        return dict(
            self._source.state_dict(
                epoch=self._epoch,
                rank=self.rank,
                world_size=self.world_size,
                num_workers=self.num_workers,
                batches=n,
                state=start,
            )
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from ``state``: selects its epoch, and the next pass
        yields only the rows it has not consumed."""
        self._epoch = int(state["epoch"])
        self._resume = dict(state)
        self._pass = None


class NumpyBatches(EpochAdapter):
    """One rank's batches of a dataset as ``{column: numpy.ndarray}`` (or
    what ``collate`` makes of each ``pyarrow.RecordBatch``). Create it with
    :meth:`sheaf.Dataset.to_numpy_batches`.

    The order, sharding and batches are :class:`sheaf.loader.Loader`'s for
    ``(seed, epoch)``: the same rows in the same order as
    :meth:`sheaf.Dataset.to_torch` with the same options, one worker per
    rank. Iterating reads the epoch chosen with :meth:`set_epoch`; an
    iteration after :meth:`load_state_dict` yields only what the state has
    not consumed. Options are :class:`~sheaf.loader.Loader`'s; ``rank`` and
    ``world_size`` place this process among several.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1024,
        *,
        rank: int = 0,
        world_size: int = 1,
        collate: Callable[[pa.RecordBatch], Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(dataset, batch_size, rank, world_size, 1, options)
        self.collate = collate
        if collate is None:
            check_schema(self._source.schema, self._name)

    def __repr__(self) -> str:
        return (
            f"<sheaf.arrays.NumpyBatches {self._name}: {self._source.num_rows:,} rows, epoch={self._epoch}, "
            f"rank {self.rank} of {self.world_size}>"
        )

    def __iter__(self) -> Iterator[Any]:
        epoch, start = self._epoch, self._resume
        self._resume = None  # a later pass starts the epoch afresh (unless a state is loaded)
        stream = self._source.stream(
            epoch=epoch, rank=self.rank, world_size=self.world_size, worker=0, num_workers=1, state=start
        )
        self._pass = _Pass(epoch, start)
        try:
            for batch in stream:
                out = self.collate(batch) if self.collate is not None else to_numpy(batch, self._name)
                self._pass.batches += 1
                yield out
        finally:
            stream.close()

    def state_dict(self) -> dict[str, Any]:
        """Where this rank is in the current epoch: the batches handed out so
        far (a plain, JSON-able dict; see :class:`sheaf.loader.Loader`). With
        several ranks, merge every rank's state with
        :func:`sheaf.loader.merge_state_dicts` before resuming on another
        topology."""
        return self._state()


@dataclass
class _Pass:
    """One iteration over an epoch: where it started, the batches it handed
    out, and how many of its workers are done."""

    epoch: int
    start: dict[str, Any] | None
    batches: int = 0
    finished: int = 0


def _loader(
    dataset: Dataset, batch_size: int, rank: int, world_size: int, options: dict[str, Any]
) -> tuple[Loader, int, int]:
    """The :class:`~sheaf.loader.Loader` for the adapters, with the rank checked."""
    from sheaf.loader import Loader

    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), not {rank}")
    return Loader(dataset, batch_size=batch_size, **options), rank, world_size
