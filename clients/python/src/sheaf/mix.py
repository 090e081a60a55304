"""Weighted mixing of several datasets in one training loader (as MosaicML
Streaming's streams), deterministic and resumable on any topology.

>>> a = Loader(client.dataset("sheaf://team/web/train.parquet"), seed=1)     # doctest: +SKIP
>>> b = Loader(client.dataset("sheaf://team/code/train.parquet"), seed=2)    # doctest: +SKIP
>>> mixed = Mix([a, b], weights=[0.7, 0.3], batch_size=1024, seed=0)        # doctest: +SKIP

How (everything else as :class:`sheaf.loader.Loader`):

- Each dataset keeps its own order (its own ``seed``, ``block_rows``,
  ``shuffle_buffer``): an endless sequence of its epochs.
- A mixed epoch holds ``epoch_rows`` rows (default: the most with no
  dataset contributing more rows than it has, ``min(rows[s] / share[s])``);
  dataset ``s`` contributes ``rows_s = floor(epoch_rows * share[s])`` rows,
  the next ones of its sequence: mixed epoch ``e`` reads positions
  ``[e * rows_s, (e + 1) * rows_s)`` of it, so a down-weighted dataset goes
  through all its rows over successive mixed epochs and an up-weighted one
  repeats (``epoch_rows`` larger than the default), each stream epoch in a
  new order. Mixed epoch 0 reads no row twice by default; a later one may
  cross into a dataset's next stream epoch, and then holds the end of one
  of its passes and the start of the next (another order), which can share
  rows.
- Each dataset's rows still to be read are cut into the global workers' runs
  as for one dataset; a worker interleaves its runs in proportion to their
  sizes (:func:`sheaf._order.mix_counts`: the same shares in every batch, up
  to rounding), and shuffles the rows inside each batch from ``(seed, epoch,
  worker, batch)``.
- The state holds each dataset's consumed positions (of its rows in the
  mixed epoch): topology-free, merged and resumed as one dataset's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pyarrow as pa

from .errors import SheafError
from .loader import Loader, _Source

__all__ = ["Mix"]


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


class Mix(_Source):
    """Several :class:`~sheaf.loader.Loader` s mixed with ``weights``.

    Args:
        sources: the datasets' loaders (their ``batch_size``, ``drop_last``
            and ``equal_batches`` are ignored: the mix's apply). The batches'
            schema is the first's; every dataset must have the same columns
            and types (select them with ``columns=``).
        weights: each dataset's share of the rows (normalized).
        batch_size, drop_last, equal_batches: as :class:`~sheaf.loader.Loader`.
        seed: seeds the row order inside mixed batches.
        epoch_rows: rows per mixed epoch (see the module docstring).
    """

    def __init__(
        self,
        sources: Sequence[Loader],
        weights: Sequence[float],
        *,
        batch_size: int = 1024,
        seed: int = 0,
        drop_last: bool = False,
        equal_batches: bool = False,
        epoch_rows: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, drop_last=drop_last, equal_batches=equal_batches, seed=seed)
        if not sources or len(sources) != len(weights):
            raise ValueError(f"Mix needs one weight per source: {len(sources)} source(s), {len(weights)} weight(s)")
        if any(not (w > 0 and math.isfinite(w)) for w in weights):
            raise ValueError(f"Mix weights must be positive numbers, not {list(weights)}")
        self.streams = [s for src in sources for s in src.streams]
        first = self.streams[0]
        for st in self.streams[1:]:
            a, b = st.dataset.schema, first.dataset.schema
            if a.names != b.names or a.types != b.types:
                raise SheafError(
                    f"Mix: {st.name} has columns {_columns(a)} but {first.name} has "
                    f"{_columns(b)}; select the same columns (and types) with columns=",
                    code="CLIENT",
                )
        # Columns nullable in any dataset are nullable in the batches.
        fields = first.dataset.schema
        self._schema = pa.schema(
            [
                f.with_nullable(any(st.dataset.schema.field(i).nullable for st in self.streams))
                for i, f in enumerate(fields)
            ],
            metadata=fields.metadata,
        )
        if any(st.num_rows == 0 for st in self.streams):
            empty = [st.name for st in self.streams if st.num_rows == 0]
            raise SheafError(f"Mix: {', '.join(empty)} has no rows", code="CLIENT")
        shares = [Fraction(w).limit_denominator(10**9) for w in weights]
        for st, w, sh in zip(self.streams, weights, shares, strict=True):
            if sh == 0:
                raise ValueError(
                    f"Mix: weight {w!r} (of {st.name}) is too small relative to the weights {list(weights)}: "
                    "weights are rounded to fractions of denominator at most 1e9, and it rounds to 0; "
                    "scale the weights up"
                )
        total = sum(shares)
        shares = [s / total for s in shares]
        self.weights = [float(s) for s in shares]
        if epoch_rows is None:
            epoch_rows = min(math.floor(st.num_rows / sh) for st, sh in zip(self.streams, shares, strict=True))
        if epoch_rows < 1:
            raise ValueError(f"epoch_rows must be at least 1, not {epoch_rows}")
        self.total_rows = int(epoch_rows)
        self.epoch_rows = [math.floor(epoch_rows * sh) for sh in shares]
        for st, w, rows in zip(self.streams, weights, self.epoch_rows, strict=True):
            if rows == 0:
                raise ValueError(
                    f"Mix: {st.name} (weight {w!r} of {list(weights)}) gets 0 of the epoch's {self.total_rows:,} "
                    "rows: raise its weight or epoch_rows"
                )

    @property
    def schema(self) -> pa.Schema:
        """The schema of the batches (a column nullable in any dataset is nullable)."""
        return self._schema

    def _mix_identity(self) -> dict[str, Any]:
        return {"seed": self.seed, "weights": self.weights, "epoch_rows": self.epoch_rows}

    def __repr__(self) -> str:
        parts = ", ".join(f"{st.name} x{r:,}" for st, r in zip(self.streams, self.epoch_rows, strict=True))
        return f"<sheaf.mix.Mix of {parts} per epoch, batch_size={self.batch_size}, seed={self.seed}>"
