"""The arithmetic of the training loader (no server): interval sets, blocks,
the topology-free epoch order, runs, the DataLoader's round-robin order,
mixing proportions."""

from __future__ import annotations

import heapq
import random

import numpy as np
import pytest

from sheaf import _order as o


def simulate_round_robin(counts: list[int]) -> list[int]:
    """Which worker each batch a DataLoader yields comes from: one from each
    worker in turn, skipping workers that are done."""
    left, order = list(counts), []
    while any(left):
        for w in range(len(left)):
            if left[w]:
                order.append(w)
                left[w] -= 1
    return order


@pytest.mark.parametrize("counts", [[3, 3, 3], [5, 0, 2], [1, 4, 4, 2], [0, 0], [7], [2, 9, 1, 0, 3]])
def test_round_robin_prefix_matches_the_loader_order(counts):
    order = simulate_round_robin(counts)
    for n in range(len(order) + 2):
        expected = [order[:n].count(w) for w in range(len(counts))]
        assert o.round_robin_prefix(counts, n) == expected


def pairs(located):
    pieces, rows = located
    return list(zip(pieces.tolist(), rows.tolist(), strict=True))


def positions(intervals):
    return [p for a, b in intervals for p in range(a, b)]


def test_interval_sets():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randrange(1, 200)
        raw = [(a, a + rng.randrange(0, 20)) for a in (rng.randrange(0, n) for _ in range(rng.randrange(0, 8)))]
        s = o.normalize(raw)
        assert positions(s) == sorted({p for a, b in raw for p in range(a, b)})
        rest = o.complement(s, n)
        assert sorted(positions(rest) + [p for p in positions(s) if p < n]) == list(range(n))
        parts = rng.randrange(1, 9)
        runs = o.cut(rest, parts)
        assert [p for r in runs for p in positions(r)] == positions(rest)
        sizes = [o.size(r) for r in runs]
        assert max(sizes) - min(sizes) <= 1
        k = rng.randrange(0, o.size(rest) + 2)
        assert positions(o.slice_positions(rest, 0, k)) == positions(rest)[:k]


def test_blocks_cover_every_row_once():
    rows = [1000, 0, 999, 10, 2500]
    blocks = o.make_blocks(rows, 300)
    assert all(0 < b.rows <= 300 for b in blocks)
    assert sorted((b.piece, r) for b in blocks for r in range(b.start, b.stop)) == [
        (p, r) for p, n in enumerate(rows) for r in range(n)
    ]
    assert [b.piece for b in o.make_blocks(rows, None)] == [0, 2, 3, 4]


@pytest.mark.parametrize("block_rows,buffer", [(None, 0), (300, 0), (300, 1000), (64, 5000), (1, 0)])
def test_epoch_order_is_a_bijection_of_its_parameters_only(block_rows, buffer):
    rows = [1000, 999, 10, 0, 2500, 7]
    every = [(p, r) for p, n in enumerate(rows) for r in range(n)]
    kw = dict(seed=3, block_rows=block_rows, shuffle_buffer=buffer)
    order = o.EpochOrder(rows, epoch=1, **kw)
    got = pairs(order.rows_at([(0, order.num_rows)]))
    assert sorted(got) == every
    assert got == pairs(o.EpochOrder(rows, epoch=1, **kw).rows_at([(0, order.num_rows)]))
    assert got != pairs(o.EpochOrder(rows, epoch=2, **kw).rows_at([(0, order.num_rows)]))
    assert got != pairs(o.EpochOrder(rows, epoch=1, **{**kw, "seed": 4}).rows_at([(0, order.num_rows)]))
    # Any cut of the positions reads the same rows at the same positions.
    cuts = [(0, 17), (17, 1500), (1500, 1501), (1501, order.num_rows)]
    assert [r for c in cuts for r in pairs(order.rows_at([c]))] == got
    assert all(w.rows >= max(buffer, 1) for w in order.windows[:-1])
    unshuffled = o.EpochOrder(rows, epoch=1, shuffle=False, **kw)
    assert pairs(unshuffled.rows_at([(0, order.num_rows)])) == every


def test_windows_group_whole_blocks():
    order = o.EpochOrder([100] * 10, seed=1, epoch=0, block_rows=25, shuffle_buffer=60)
    assert [w.rows for w in order.windows] == [75] * 13 + [25]
    for w in order.windows:
        rows = set(pairs(w.rows_at(np.arange(w.rows))))
        assert rows == {(b.piece, r) for b in w.blocks for r in range(b.start, b.stop)}


def test_mix_counts_follow_due_times():
    """mix_counts(rows, k) is the per-source count of the k first rows when
    rows are merged by due time (2i + 1) / (2 rows[s]), lower source first."""
    rng = random.Random(5)
    for _ in range(60):
        rows = [rng.randrange(0, 40) for _ in range(rng.randrange(1, 5))]
        events = [((2 * i + 1) / (2 * r), s) for s, r in enumerate(rows) for i in range(r)]
        heapq.heapify(events)
        counts = [0] * len(rows)
        for k in range(sum(rows) + 1):
            assert o.mix_counts(rows, k) == counts
            if events:
                _, s = heapq.heappop(events)
                counts[s] += 1
        for k in range(0, sum(rows) + 1, 7):  # proportional all along
            for s, c in enumerate(o.mix_counts(rows, k)):
                assert abs(c - k * rows[s] / sum(rows)) <= 1


def test_mix_counts_of_big_streams():
    rows = [7_000_001, 3_000_000, 11]
    total = sum(rows)
    prev = [0, 0, 0]
    for k in (0, 1, 1024, 5_000_000, total - 1, total):
        c = o.mix_counts(rows, k)
        assert sum(c) == k and all(a >= b for a, b in zip(c, prev, strict=True))
        prev = c
    assert prev == rows


def test_permutations_are_fixed():
    """The order must not change between versions (of Sheaf or numpy): a
    checkpoint resumes the same order. These values are the contract."""
    assert o.permutation(10, 1, 2).tolist() == [9, 1, 4, 0, 3, 7, 5, 2, 6, 8]
    assert sorted(o.permutation(1000, 7).tolist()) == list(range(1000))
    assert o.permutation(1000, 7).tolist() != o.permutation(1000, 8).tolist()
