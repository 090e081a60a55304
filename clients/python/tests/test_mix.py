"""Weighted mixing of datasets (sheaf.mix.Mix, sheaf.torch.mix): deterministic,
proportional in every batch, a down-weighted dataset goes through all its
rows over successive epochs, and checkpoints resume on another topology."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import sheaf
import sheaf.torch
from sheaf.loader import Loader, merge_state_dicts
from sheaf.mix import Mix

from conftest import TIMEOUT

PARTS = "sheaf://test/tables:v1/tables/parts"  # ids 0..2499, read by position
NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"
LOW = range(2_500)
HIGH = range(2_500, 20_000)


def mixed(client, **kw):
    a = Loader(client.dataset(PARTS, columns=["id"]), seed=1, block_rows=100, shuffle_buffer=500)
    # A filtered read (whole endpoints as blocks): ids 2500..19999, disjoint from a's.
    b = Loader(client.dataset(NUMBERS, columns=["id"], filter="id >= 2500"), seed=2)
    kw.setdefault("batch_size", 100)
    return Mix([a, b], weights=[0.5, 0.5], seed=3, **kw)


def id_batches(stream):
    return [b.column("id").to_pylist() for b in stream]


def test_mix_is_deterministic_and_proportional(client):
    src = mixed(client)
    assert src.epoch_rows == [2_500, 2_500]  # the largest epoch taking at most all rows of each dataset
    batches = id_batches(src.stream(epoch=0))
    assert batches == id_batches(src.stream(epoch=0))
    assert len(batches) == 50 and all(len(b) == 100 for b in batches)
    for b in batches:
        low = sum(1 for i in b if i < 2_500)
        assert abs(low - 50) <= 1, "every batch holds the datasets in proportion"
    flat = [i for b in batches for i in b]
    assert Counter(i for i in flat if i < 2_500) == Counter(LOW)
    assert batches != id_batches(src.stream(epoch=1))
    with pytest.raises(sheaf.SheafError, match="columns"):
        Mix([Loader(client.dataset(PARTS)), Loader(client.dataset(NUMBERS, columns=["id"]))], weights=[1, 1])


def test_a_down_weighted_dataset_goes_through_all_its_rows(client):
    src = mixed(client, batch_size=500)
    seen_high = []
    for epoch in range(7):  # 17,500 rows, 2,500 per epoch
        flat = [i for b in id_batches(src.stream(epoch=epoch, world_size=2, rank=epoch % 2)) for i in b]
        flat += [i for b in id_batches(src.stream(epoch=epoch, world_size=2, rank=1 - epoch % 2)) for i in b]
        assert Counter(i for i in flat if i < 2_500) == Counter(LOW)
        seen_high += [i for i in flat if i >= 2_500]
    assert Counter(seen_high) == Counter(HIGH)


def test_mix_resumes_on_another_topology(client):
    src = mixed(client)
    first, states = [], []
    for rank in range(2):
        streams = [src.stream(epoch=0, rank=rank, world_size=2, worker=w, num_workers=2) for w in range(2)]
        for _ in range(4):  # round-robin: 4 batches from each worker
            for s in streams:
                first += next(s).column("id").to_pylist()
        states.append(src.state_dict(epoch=0, rank=rank, world_size=2, num_workers=2, batches=8))
    merged = json.loads(json.dumps(merge_state_dicts(states)))
    assert [len(s["consumed"]) > 0 for s in merged["streams"]] == [True, True]
    rest = []
    for worker in range(3):
        rest += [i for b in id_batches(src.stream(epoch=0, worker=worker, num_workers=3, state=merged)) for i in b]
    counts = Counter(first + rest)
    assert max(counts.values()) == 1
    assert {i for i in counts if i < 2_500} == set(LOW) and sum(1 for i in counts if i >= 2_500) == 2_500


def test_torch_mix(client):
    a = client.dataset(PARTS, columns=["id"])
    b = client.dataset(NUMBERS, columns=["id"], filter="id >= 2500")
    ds = sheaf.torch.mix([a, b], weights=[0.25, 0.75], batch_size=200, seeds=[4, 5])
    assert ds.source.epoch_rows == [2_500, 7_500]
    dl = sheaf.torch.DataLoader(ds, num_workers=2, multiprocessing_context="forkserver", timeout=120)
    ids = [i for batch in dl for i in batch["id"].tolist()]
    assert len(ids) == 10_000 and Counter(i for i in ids if i < 2_500) == Counter(LOW)
    again = sheaf.torch.mix([a, b], weights=[0.25, 0.75], batch_size=200, seeds=[4, 5])
    assert [i for batch in again for i in batch["id"].tolist()] != ids  # one worker: another interleaving
    assert sorted(i for batch in again for i in batch["id"].tolist()) == sorted(ids)  # the same rows


def sequence_ids(loader: Loader, start: int, stop: int) -> list[int]:
    """The ids (table rows of PARTS) at positions ``[start, stop)`` of a
    loader's endless sequence (position ``q`` is position ``q % N`` of its
    epoch ``q // N``), from its documented order alone."""
    st, n, out = loader.streams[0], loader.streams[0].num_rows, []
    firsts = np.array([p.first_row for p in st.pieces], dtype=np.int64)
    while start < stop:
        e, off = divmod(start, n)
        end = min(stop, (e + 1) * n)
        pieces, rows = st.order(e).rows_at([(off, end - e * n)])
        out += (firsts[pieces] + rows).tolist()
        start = end
    return out


@pytest.mark.parametrize(
    ("shuffle", "shuffle_buffer", "start", "stop"),
    [
        (False, 2_500, 0, 2_550),  # a whole window of pass 0, then rows of it cut in pass 1
        (True, 2_500, 2_400, 2_600),  # rows of one window cut in pass 0 and in pass 1 (overlapping)
        (True, 0, 1_000, 6_000),  # two passes over windows of one block each
    ],
)
def test_a_read_across_passes_holds_rows_twice(client, shuffle, shuffle_buffer, start, stop):
    loader = Loader(
        client.dataset(PARTS, columns=["id"]), seed=5, shuffle=shuffle, block_rows=100, shuffle_buffer=shuffle_buffer
    )
    st = loader.streams[0]
    assert st.by_rows and st.num_rows == 2_500
    ids = [i for b in st.read(0, [(start, stop)]) for i in b.column("id").to_pylist()]
    assert ids == sequence_ids(loader, start, stop)


def mix_wrapping(client):
    """PARTS is 90%: its 2,499 rows of a mixed epoch (of 2,777) cross into its next pass from epoch 1 on."""
    a, b = client.dataset(PARTS, columns=["id"]), client.dataset(NUMBERS, columns=["id"])
    return sheaf.torch.mix([a, b], weights=[0.9, 0.1], batch_size=97, seeds=[1, 2])


@pytest.mark.parametrize("workers", [0, 2])
def test_mix_epochs_crossing_a_datasets_end(data, client, tmp_path, workers):
    mixed = mix_wrapping(client)
    assert mixed.source.epoch_rows == [2_499, 277]
    with sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=tmp_path / "c") as cached_client:
        cached = mix_wrapping(cached_client)
        parts = Loader(client.dataset(PARTS, columns=["id"]), seed=1)  # PARTS's own order in the mix
        for epoch in range(4):
            got = []
            for ds in (mixed, cached):
                ds.set_epoch(epoch)
                kw = {"multiprocessing_context": "forkserver", "timeout": 120} if workers else {}
                dl = sheaf.torch.DataLoader(ds, num_workers=workers, **kw)
                got.append([batch["id"].tolist() for batch in dl])
            assert got[0] == got[1], "the cached path reads the same batches"
            ids = [i for batch in got[0] for i in batch]
            assert len(ids) == 2_776
            low = Counter(i for i in ids if i < 2_500)
            assert low == Counter(sequence_ids(parts, epoch * 2_499, (epoch + 1) * 2_499))


def test_mix_refuses_a_weight_that_rounds_to_zero(client):
    a, b = Loader(client.dataset(PARTS, columns=["id"])), Loader(client.dataset(NUMBERS, columns=["id"]))
    for weights in ([1, 1e-10], [1e-10, 1e-10]):
        with pytest.raises(ValueError, match=r"weight 1e-10 \(of test/tables@\S+\) is too small relative to the"):
            Mix([a, b], weights=weights)
    # The smallest share kept, given an epoch long enough for it to get a row; else refused, naming it.
    assert Mix([a, b], weights=[1, 1e-9], epoch_rows=2 * 10**9).epoch_rows[1] == 1  # 2e9 / (1e9 + 1)
    refused = r"Mix: test/tables@\S+ \(weight 1e-09 of \[1, 1e-09\]\) gets 0 of the epoch's"
    with pytest.raises(ValueError, match=refused):
        Mix([a, b], weights=[1, 1e-9])
