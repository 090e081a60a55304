"""Shuffle quality (sheaf.loader.order_quality): how much more batch means of
the table position vary than under a full shuffle. Blocks alone are poor;
blocks with a shuffle buffer of 2 * batch_size * block_rows rows come within
2x of a full shuffle (the measure is about 1 + batch_size * block_rows /
shuffle_buffer)."""

from __future__ import annotations

import random

import pytest

from sheaf import _order
from sheaf.loader import Loader, order_quality, shuffle_quality

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"


def quality(rows, batch_size, **kw):
    order = _order.EpochOrder(rows, seed=11, epoch=0, **kw)
    firsts = [sum(rows[:p]) for p in range(len(rows))]
    pieces, rows_ = order.rows_at([(0, order.num_rows)])
    return order_quality([firsts[p] + r for p, r in zip(pieces.tolist(), rows_.tolist(), strict=True)], batch_size)


def test_the_measure_at_its_ends():
    n, b = 50_000, 64
    assert order_quality(list(range(n)), b) == pytest.approx(b, rel=0.05)  # table order
    full = list(range(n))
    random.Random(1).shuffle(full)
    assert 0.7 < order_quality(full, b) < 1.4  # a full shuffle


def test_block_shuffle_with_a_buffer_is_close_to_a_full_shuffle():
    rows = [1000] * 100  # 100 endpoints of 1000 rows
    b, block = 64, 64
    blocks_only = quality(rows, b, block_rows=block, shuffle_buffer=0)
    assert blocks_only > 20, "rows of a batch from one block: far from a full shuffle"
    buffered = quality(rows, b, block_rows=block, shuffle_buffer=2 * b * block)
    assert buffered < 2.0, f"shuffle_buffer = 2 * batch_size * block_rows: within 2x of a full shuffle ({buffered:.2f})"
    # About 1 + batch_size * block_rows / shuffle_buffer.
    quarter = quality(rows, b, block_rows=block, shuffle_buffer=b * block // 4)
    assert 3.0 < quarter < 8.0


def test_shuffle_quality_of_a_loader(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    good = shuffle_quality(Loader(ds, batch_size=32, block_rows=100, shuffle_buffer=6400))
    poor = shuffle_quality(Loader(ds, batch_size=32, block_rows=100))
    assert good < 2.0 < 10 < poor
    assert shuffle_quality(Loader(ds, batch_size=32, shuffle=False)) == pytest.approx(32, rel=0.05)
