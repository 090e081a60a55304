"""Topology-free order and checkpoints (real server): the epoch order is the
same whatever the number of ranks and workers, and a checkpoint taken with
one topology, merged over its ranks, resumes with another, every row of the
epoch read exactly once."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import sheaf
import sheaf.torch
from sheaf import _order
from sheaf.loader import Loader, merge_state_dicts

import testdata

N = testdata.NUMBERS
NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"


def source(client, **kw):
    kw.setdefault("batch_size", 128)
    kw.setdefault("seed", 5)
    kw.setdefault("block_rows", 300)
    kw.setdefault("shuffle_buffer", 1500)
    return Loader(client.dataset(NUMBERS, columns=["id"]), **kw)


def ids(batches):
    return [i for b in batches for i in b.column("id").to_pylist()]


def assert_exactly(got, expected):
    counts = Counter(got)
    dups = [i for i, c in counts.items() if c > 1]
    assert not dups, f"{len(dups)} rows read more than once, e.g. {dups[:5]}"
    assert set(counts) == set(expected), f"{len(set(expected) - set(counts))} rows never read"


def rank_run(src, *, epoch=0, rank=0, world=1, workers=1, state=None, stop=None):
    """The batches one rank's DataLoader yields (its workers taken in turn,
    finished ones skipped, as torch does), the first ``stop`` of them."""
    streams = [
        src.stream(epoch=epoch, rank=rank, world_size=world, worker=w, num_workers=workers, state=state)
        for w in range(workers)
    ]
    out, active = [], list(range(workers))
    while active and (stop is None or len(out) < stop):
        for w in list(active):
            if stop is not None and len(out) >= stop:
                break
            try:
                out.append(next(streams[w]))
            except StopIteration:
                active.remove(w)
    for s in streams:
        s.close()
    return out


def global_order(src, epoch=0):
    """The id at every global position (ids are table rows)."""
    firsts = [sum(src.piece_rows[:p]) for p in range(len(src.piece_rows))]
    return [firsts[p] + r for p, r in src.positions(epoch, [(0, src.num_rows)])]


@pytest.mark.parametrize("world,workers", [(1, 1), (2, 3), (3, 1), (1, 4)])
def test_the_order_does_not_depend_on_the_topology(client, world, workers):
    src = source(client)
    expected = global_order(src)
    assert sorted(expected) == list(range(N)) and expected != list(range(N))
    runs = []
    for g in range(world * workers):
        rank, worker = divmod(g, workers)
        runs.extend(ids(src.stream(epoch=0, rank=rank, world_size=world, worker=worker, num_workers=workers)))
    assert runs == expected  # run g follows run g - 1: the global order, cut into contiguous runs
    assert global_order(src, 1) != expected


@pytest.mark.parametrize("fraction", [0.1, 0.55, 0.95])
@pytest.mark.parametrize("before,after", [((1, 1), (2, 2)), ((2, 2), (1, 1)), ((4, 1), (2, 3)), ((2, 3), (3, 2))])
def test_resume_on_another_topology(client, before, after, fraction):
    src = source(client)
    expected = global_order(src)
    (w1, k1), (w2, k2) = before, after
    first, states = [], []
    for rank in range(w1):
        n = int(fraction * src.num_batches(epoch=0, rank=rank, world_size=w1, num_workers=k1))
        first += ids(rank_run(src, rank=rank, world=w1, workers=k1, stop=n))
        states.append(src.state_dict(epoch=0, rank=rank, world_size=w1, num_workers=k1, batches=n))
    merged = json.loads(json.dumps(merge_state_dicts(states)))
    consumed = _order.normalize(merged["consumed"])
    assert sorted(first) == sorted(expected[p] for a, b in consumed for p in range(a, b))
    with pytest.raises(ValueError, match="merge"):
        if w1 > 1:  # one rank's state alone cannot move to another topology
            src.stream(epoch=0, rank=0, world_size=w2, worker=0, num_workers=k2, state=states[0])
        else:
            raise ValueError("merge")
    rest = []
    for g in range(w2 * k2):
        rank, worker = divmod(g, k2)
        stream = src.stream(epoch=0, rank=rank, world_size=w2, worker=worker, num_workers=k2, state=merged)
        rest += ids(stream)
    assert_exactly(first + rest, range(N))
    # The rest keeps the global order: the remaining positions, in order, cut into runs.
    remaining = _order.complement(consumed, N)
    assert rest == [expected[p] for a, b in remaining for p in range(a, b)]


def test_each_rank_its_own_state_on_the_same_topology(client):
    src = source(client, batch_size=100)
    world, workers = 2, 2
    full = [ids(rank_run(src, rank=r, world=world, workers=workers)) for r in range(world)]
    states, first = [], []
    for rank, n in ((0, 13), (1, 7)):
        first.append(ids(rank_run(src, rank=rank, world=world, workers=workers, stop=n)))
        states.append(src.state_dict(epoch=0, rank=rank, world_size=world, num_workers=workers, batches=n))
    for rank in range(world):
        rest = ids(rank_run(src, rank=rank, world=world, workers=workers, state=states[rank]))
        # Each worker skips the batches of its own that were consumed: the same rows, in the same runs.
        assert sorted(first[rank] + rest) == sorted(full[rank])
    assert src.num_batches(epoch=0, rank=0, world_size=2, num_workers=2, state=states[0]) == (
        src.num_batches(epoch=0, rank=0, world_size=2, num_workers=2) - 13
    )


def test_a_state_of_another_run_is_refused(client):
    src = source(client)
    state = src.state_dict(epoch=0, batches=3)
    for other, key in ((source(client, seed=6), "seed"), (source(client, block_rows=200), "block_rows")):
        with pytest.raises(ValueError, match=key):
            other.stream(epoch=0, state=state)
    with pytest.raises(ValueError, match="batch_size"):
        source(client, batch_size=64).stream(epoch=0, state=state)
    with pytest.raises(ValueError, match="differ in seed"):
        merge_state_dicts([state, source(client, seed=6).state_dict(epoch=0, batches=1)])
    # Another epoch ignores it: the epoch starts from its beginning.
    assert_exactly(ids(src.stream(epoch=1, state=state)), range(N))


def loader(ds, workers, **kw):
    if workers:
        kw.setdefault("multiprocessing_context", "forkserver")
        kw.setdefault("timeout", 120)
    return sheaf.torch.DataLoader(ds, num_workers=workers, **kw)


def torch_ids(batches):
    return [i for b in batches for i in b["id"].tolist()]


def test_torch_checkpoint_moves_between_topologies(client):
    """(1 rank, in-process) -> (2 ranks x 2 workers) -> (1 rank x 1 worker),
    ranks simulated by TorchDatasets given rank and world_size."""

    def make(rank=0, world=1):
        return client.dataset(NUMBERS, columns=["id"]).to_torch(
            batch_size=200, seed=8, shuffle_buffer=3000, rank=rank, world_size=world
        )

    dl = loader(make(), 0)
    seen = []
    for i, batch in enumerate(dl):
        seen += batch["id"].tolist()
        if i == 29:
            break
    state = json.loads(json.dumps(dl.state_dict()))
    assert state["batches"] == 30 and len(_order.normalize(state["consumed"])) >= 1
    merged = merge_state_dicts([state])  # one rank of a world of one: complete already
    states = []
    for rank in range(2):
        ds = make(rank, 2)
        dl = loader(ds, 2)
        dl.load_state_dict(merged)
        left = len(dl)
        for i, batch in enumerate(dl):
            seen += batch["id"].tolist()
            if i == 9:
                break
        assert left > 10
        states.append(dl.state_dict())
        del dl
    last = make()
    last.load_state_dict(merge_state_dicts(states))
    seen += torch_ids(loader(last, 1))
    assert_exactly(seen, range(N))


def test_torch_state_follows_the_epoch(client):
    ds = client.dataset(NUMBERS, columns=["id"]).to_torch(batch_size=5000, seed=1)
    assert sum(1 for _ in ds) == 4
    done = ds.state_dict()
    assert done["epoch"] == 0 and done["consumed"] == [[0, N]]
    ds.set_epoch(1)
    fresh = ds.state_dict()
    assert fresh["epoch"] == 1 and fresh["consumed"] == [] and fresh["batches"] == 0
    ds.load_state_dict(done)  # epoch 0, all consumed: nothing left
    assert ds.epoch == 0 and list(ds) == []
    assert sum(1 for _ in ds) == 4, "once the resumed epoch ended, it starts again from its beginning"
