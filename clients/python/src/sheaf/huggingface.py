"""Hugging Face ``datasets`` integration: a dataset's epochs as a
``datasets.IterableDataset`` of Arrow-backed examples, in the order of
:class:`sheaf.loader.Loader` (the order :mod:`sheaf.torch` follows).

>>> hf = ds.to_huggingface(seed=7, num_shards=8)                     # doctest: +SKIP
>>> hf = datasets.distributed.split_dataset_by_node(hf, rank=r, world_size=w)  # doctest: +SKIP
>>> for epoch in range(3):                                           # doctest: +SKIP
...     hf.set_epoch(epoch)
...     for example in hf.with_format("numpy"):
...         ...

How it maps onto ``datasets``:

- The epoch's global order (positions ``0..N``, a function of ``seed`` and the
  epoch only) is cut into ``num_shards`` contiguous runs, one per shard, so
  iterating all the shards in order yields exactly the order of
  ``Loader.stream(epoch, world_size=1, num_workers=1)``.
- ``set_epoch(e)`` selects epoch ``e``'s order (``datasets``' own shuffling
  of shards between epochs is replaced by it). Call it on the dataset you
  iterate: ``split_dataset_by_node`` returns a dataset at epoch 0.
- ``split_dataset_by_node`` and DataLoader workers share the shards out
  (``num_shards``, default 64, should be a multiple of ``world_size``, and
  of ``world_size * num_workers`` to keep every worker busy; otherwise
  ``datasets`` makes every node read everything and keep one example in
  ``world_size``). Every row is read exactly once per epoch.
- ``state_dict()``/``load_state_dict()`` are ``datasets``' own (shard and
  example positions): resuming reads again only the start of the shard it
  stopped in. ``.shuffle(buffer_size=...)`` adds ``datasets``' buffer shuffle.

Needs ``datasets`` (``pip install 'sheaf[huggingface]'``).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

try:
    import datasets
    from datasets.iterable_dataset import ArrowExamplesIterable
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("sheaf.huggingface needs Hugging Face datasets: pip install 'sheaf[huggingface]'") from e

from sheaf.errors import TensorConversionError

if TYPE_CHECKING:
    from sheaf.dataset import Dataset
    from sheaf.loader import Loader

__all__ = ["SheafExamples", "iterable_dataset", "features", "DEFAULT_SHARDS"]

#: Rows per Arrow table handed to ``datasets`` (it re-batches them as asked).
CHUNK_ROWS = 1024

#: Shards by default: a multiple of every power-of-two world size and worker
#: count up to 64, so ``split_dataset_by_node`` and DataLoader workers share
#: shards out instead of having every node read everything.
DEFAULT_SHARDS = 64


def features(schema: pa.Schema, what: str = "dataset") -> datasets.Features:
    """``datasets.Features`` of ``schema``; a column ``datasets`` cannot
    represent raises :class:`~sheaf.TensorConversionError` naming it."""
    try:
        return datasets.Features.from_arrow_schema(schema)
    except Exception as e:  # noqa: BLE001 - find which column it was
        for field in schema:
            try:
                datasets.Features.from_arrow_schema(pa.schema([field]))
            except Exception as inner:  # noqa: BLE001
                raise TensorConversionError(
                    f"{what}: column {field.name!r} ({field.type}) has no Hugging Face datasets feature type "
                    f"({inner}); leave it out with columns=[...]",
                    code="CLIENT",
                    column=field.name,
                ) from e
        raise


def _tables(source: Loader, num_shards: int, shard: list[int], epoch: int) -> Iterator[tuple[str, pa.Table]]:
    """The Arrow tables of ``shard`` (runs of ``epoch``'s order), for ``datasets``."""
    for s in shard:
        stream = source.stream(epoch=epoch, rank=0, world_size=1, worker=s, num_workers=num_shards)
        try:
            for i, batch in enumerate(stream):
                yield f"{epoch}_{s}_{i}", pa.Table.from_batches([batch])
        finally:
            stream.close()


class SheafExamples(ArrowExamplesIterable):
    """The ``datasets`` examples iterable of a :class:`sheaf.loader.Loader`:
    shards are runs of the epoch's order; the epoch arrives through
    ``datasets``' per-epoch RNG shift (``IterableDataset.set_epoch``), and
    the shards keep their order (the epoch order already shuffles)."""

    def __init__(
        self, source: Loader, num_shards: int, shard: list[int], epoch: int = 0, sharded: bool = False
    ) -> None:
        super().__init__(functools.partial(_tables, source, num_shards), {"shard": list(shard), "epoch": int(epoch)})
        self.source = source
        self.total_shards = num_shards
        self.sharded = sharded

    def _with(self, shard: list[int], epoch: int, sharded: bool) -> SheafExamples:
        return SheafExamples(self.source, self.total_shards, shard, epoch, sharded)

    @property
    def epoch(self) -> int:
        """The epoch whose order this iterable reads."""
        return int(self.kwargs["epoch"])

    def shift_rngs(self, value: int) -> SheafExamples:
        """``datasets`` shifts RNGs by the epoch before sharding (and by the
        worker id after): the former selects the epoch's order."""
        if self.sharded:
            return self
        return self._with(self.kwargs["shard"], int(value), False)

    def shuffle_data_sources(self, generator: Any) -> SheafExamples:
        """The shard order is the epoch order's: kept."""
        return self

    def shard_data_sources(self, num_shards: int, index: int, contiguous: bool = True) -> SheafExamples:
        """Keeps the shards of node or worker ``index`` of ``num_shards``."""
        mine = self.split_shard_indices_by_worker(num_shards, index, contiguous=contiguous)
        shards = self.kwargs["shard"]
        return self._with([shards[i] for i in mine], self.epoch, True)

    def reshard_data_sources(self) -> SheafExamples:
        """Already as many shards as asked (``num_shards=``)."""
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SheafExamples:
        out = copy.copy(self)
        out.kwargs = copy.deepcopy(self.kwargs, memo)
        out._state_dict = copy.deepcopy(self._state_dict, memo)
        return out


def iterable_dataset(
    dataset: Dataset,
    *,
    num_shards: int = DEFAULT_SHARDS,
    seed: int = 0,
    shuffle: bool = True,
    shuffle_buffer: int = 0,
    block_rows: int | None = None,
    partitions: int | None = None,
    prefetch: int = 2,
    split: str | None = None,
) -> datasets.IterableDataset:
    """A ``datasets.IterableDataset`` of ``dataset``'s rows in the epoch
    order of :class:`sheaf.loader.Loader` (same ``seed``, ``shuffle``,
    ``shuffle_buffer``, ``block_rows``, ``partitions`` as the torch loader),
    cut into ``num_shards`` shards (see the module's doc). Its features come
    from the Arrow schema."""
    from sheaf.loader import Loader

    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, not {num_shards}")
    feats = features(dataset.schema, dataset.name)
    source = Loader(
        dataset,
        batch_size=CHUNK_ROWS,
        seed=seed,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        block_rows=block_rows,
        partitions=partitions,
        prefetch=prefetch,
    )
    info = datasets.DatasetInfo(features=feats, description=f"sheaf: {source.dataset.pinned_uri}")
    examples = SheafExamples(source, num_shards, list(range(num_shards)))
    return datasets.IterableDataset(examples, info=info, split=datasets.NamedSplit(split) if split else None)
