"""The arithmetic of sheaf.torch (no server): units, dealing, windows, the
DataLoader's round-robin order, equal batch counts."""

from __future__ import annotations

import itertools
import random

import pytest

from sheaf import _schedule as s


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
        assert s.round_robin_prefix(counts, n) == expected


def test_units_cover_every_row_once():
    rng = random.Random(0)
    for _ in range(200):
        rows = [rng.randrange(0, 50) for _ in range(rng.randrange(1, 6))]
        workers = rng.randrange(1, 12)
        units = s.make_units(rows, workers)
        covered = sorted((u.piece, r) for u in units for r in range(u.start, u.stop))
        assert covered == [(p, r) for p, n in enumerate(rows) for r in range(n)]
        assert len(units) >= min(workers, sum(rows))
        assert all(u.rows > 0 for u in units)


def test_deal_gives_every_unit_to_one_worker_balanced():
    units = s.make_units([100] * 10, 4)
    dealt = s.deal(units, s.permutation(len(units), 1, 0), 4)

    def key(u):
        return u.piece, u.start

    assert sorted((u for w in dealt for u in w), key=key) == sorted(units, key=key)
    loads = [sum(u.rows for u in w) for w in dealt]
    assert max(loads) - min(loads) <= 100


def test_permutation_depends_on_seed_and_epoch_only():
    a = s.permutation(50, 7, 0)
    assert a == s.permutation(50, 7, 0) and sorted(a) == list(range(50))
    assert a != s.permutation(50, 7, 1) and a != s.permutation(50, 8, 0)


def test_windows():
    units = [s.Unit(i, 0, 10) for i in range(7)]
    assert [len(w) for w in s.windows(units, 0)] == [1] * 7
    assert [len(w) for w in s.windows(units, 25)] == [3, 3, 1]
    assert [len(w) for w in s.windows(units, 1000)] == [7]


@pytest.mark.parametrize(
    "world,workers,equal,drop_last", list(itertools.product([1, 2, 3], [1, 2, 4], [False, True], [False, True]))
)
def test_plan_epoch(world, workers, equal, drop_last):
    rows = [1000, 999, 10, 0, 2500, 7]
    plan = s.plan_epoch(
        rows,
        seed=3,
        epoch=1,
        shuffle=True,
        world_size=world,
        num_workers=workers,
        batch_size=64,
        drop_last=drop_last,
        equal_batches=equal,
    )
    covered = sorted((u.piece, r) for g in plan.units for u in g for r in range(u.start, u.stop))
    assert covered == [(p, r) for p, n in enumerate(rows) for r in range(n)]
    for rank in range(world):
        for w in range(workers):
            assert plan.batches[rank][w] <= plan.full[rank][w]
    totals = [plan.rank_batches(r) for r in range(world)]
    if equal:
        assert len(set(totals)) == 1 and totals[0] == min(sum(f) for f in plan.full)
    else:
        assert plan.batches == plan.full
