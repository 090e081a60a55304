"""A map-style PyTorch dataset over a pinned table (random access by index).

>>> mds = client.dataset(uri, columns=["x", "label"]).to_torch_map()          # doctest: +SKIP
>>> sampler = torch.utils.data.DistributedSampler(mds, num_replicas=2, rank=0)  # doctest: +SKIP
>>> loader = torch.utils.data.DataLoader(mds, batch_size=256, sampler=sampler,  # doctest: +SKIP
...                                      collate_fn=mds.collate, num_workers=2)

Any sampler works (``RandomSampler``, ``DistributedSampler``, weighted or
custom ones). A DataLoader batch is fetched with one ``take`` (``__getitems__``:
one request reading only the pages holding the batch's rows), and
:meth:`MapDataset.collate` turns it into ``{column: tensor}`` without going
through per-row Python objects. The default ``collate_fn`` also works (it
stacks the rows). With a client cache, ``fill_cache=True`` stores each
endpoint the first time a batch touches it, so later epochs need no server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import torch
import torch.utils.data

from .random_access import length, take

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["MapDataset", "RowBatch", "table_to_tensors"]


def table_to_tensors(table: pa.Table, what: str = "") -> dict[str, torch.Tensor]:
    """``{column: tensor}`` of a table (see :func:`sheaf.torch.column_to_tensor`)."""
    from .torch import check_schema, column_to_tensor

    check_schema(table.schema, what)
    return {name: column_to_tensor(table.column(name), name, what) for name in table.schema.names}


class RowBatch(Sequence[Any]):
    """The rows of one DataLoader batch (what :meth:`MapDataset.__getitems__`
    returns): a sequence of per-row samples, holding the fetched
    ``pyarrow.Table`` as :attr:`table` so :meth:`MapDataset.collate` converts
    it column by column."""

    def __init__(self, table: pa.Table, convert: Callable[[pa.Table], Any]) -> None:
        self.table = table
        self._convert = convert
        self._columns: dict[str, torch.Tensor] | None = None

    def collated(self) -> Any:
        """The whole batch converted (``collate`` of the dataset, else ``{column: tensor}``)."""
        return self._convert(self.table)

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self._columns is None:
            self._columns = table_to_tensors(self.table)
        return {k: v[i] for k, v in self._columns.items()}

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))


class MapDataset(torch.utils.data.Dataset[Any]):
    """``torch.utils.data.Dataset`` over the rows of a pinned
    :class:`~sheaf.Dataset` (``ds.to_torch_map()``).

    - ``len(mds)``: the dataset's rows; ``mds[i]``: row ``i`` as
      ``{column: tensor}`` (``collate`` given: ``collate`` of the one-row table);
    - ``mds.__getitems__(indices)``: a :class:`RowBatch` from one
      :meth:`~sheaf.Dataset.take` (DataLoader calls it with each batch's indices);
    - ``mds.collate``: the ``collate_fn`` to pass to the DataLoader.

    ``collate``: a function of the batch's ``pyarrow.Table`` (default:
    ``{column: tensor}``, numeric and fixed-size-list columns only).
    Positions are the dataset's rows (no ``filter``/``sample``; see
    :mod:`sheaf.random_access`). Picklable: each DataLoader worker opens its
    own connection.
    """

    def __init__(
        self, dataset: Dataset, *, collate: Callable[[pa.Table], Any] | None = None, fill_cache: bool = False
    ) -> None:
        self.dataset = dataset
        self._user_collate = collate
        self.fill_cache = fill_cache
        self._len = length(dataset)
        if collate is None:
            from .torch import check_schema

            check_schema(dataset.schema, f"to_torch_map() on {dataset.name}")

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"<sheaf.torch_map.MapDataset {self.dataset.name}: {self._len:,} rows>"

    def _convert(self, table: pa.Table) -> Any:
        if self._user_collate is not None:
            return self._user_collate(table)
        return table_to_tensors(table, self.dataset.name)

    def _take(self, indices: Any) -> pa.Table:
        return take(self.dataset, indices, fill_cache=self.fill_cache)

    def __getitem__(self, index: int) -> Any:
        table = self._take([index])
        if self._user_collate is not None:
            return self._user_collate(table)
        return {k: v[0] for k, v in table_to_tensors(table, self.dataset.name).items()}

    def __getitems__(self, indices: Sequence[int]) -> RowBatch:
        return RowBatch(self._take(list(indices)), self._convert)

    def collate(self, batch: Any) -> Any:
        """A DataLoader ``collate_fn``: a :class:`RowBatch` converted as a
        whole; anything else (rows from ``__getitem__``) through
        ``torch.utils.data.default_collate``."""
        if isinstance(batch, RowBatch):
            return batch.collated()
        return torch.utils.data.default_collate(batch)
