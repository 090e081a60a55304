"""PyTorch: every row once per epoch across workers and ranks, deterministic
order, epochs, equal batch counts, resuming, tensors, fork and spawn."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter

import pytest
import torch

import sheaf
import sheaf.torch

import testdata
import torchhelp

N = testdata.NUMBERS
NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"
COLUMNS = ["id", "x", "label", "flag", "vec"]


def train(client, *, columns=COLUMNS, uri=NUMBERS, **kw):
    kw.setdefault("batch_size", 256)
    return client.dataset(uri, columns=columns).to_torch(**kw)


# Workers start with forkserver unless a test is about the start method
# (fork is covered by the parametrized tests below and test_fork_guard.py).
# SHEAF_TEST_START_METHOD=fork runs every DataLoader test with fork, to stress
# the fork guard (sheaf._fork).
DEFAULT_CTX = os.environ.get("SHEAF_TEST_START_METHOD", "forkserver")


def loader(ds, workers=0, ctx=DEFAULT_CTX, **kw):
    if workers:
        kw.setdefault("multiprocessing_context", ctx)
        kw.setdefault("timeout", 120)
    return sheaf.torch.DataLoader(ds, num_workers=workers, **kw)


def id_batches(ds, workers=0, ctx=DEFAULT_CTX, **kw) -> list[list[int]]:
    return [b["id"].tolist() for b in loader(ds, workers, ctx, **kw)]


def flat(batches) -> list[int]:
    return [i for b in batches for i in b]


def assert_exactly(ids, expected):
    counts = Counter(ids)
    dups = [i for i, c in counts.items() if c > 1]
    assert not dups, f"{len(dups)} rows read more than once, e.g. {dups[:5]}"
    missing = set(expected) - set(counts)
    assert not missing, f"{len(missing)} rows never read, e.g. {sorted(missing)[:5]}"
    assert set(counts) == set(expected)


# ---------------------------------------------------------------------------
# Every row exactly once
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_every_row_exactly_once(client, workers):
    ds = train(client, seed=1)
    batches = id_batches(ds, workers)
    assert_exactly(flat(batches), range(N))
    short = [len(b) for b in batches if len(b) != 256]
    assert len(short) <= max(1, workers), f"short batches {short}"
    assert len(batches) == len(loader(ds, workers))


@pytest.mark.parametrize("workers", [0, 2])
def test_two_simulated_ranks_share_the_rows(client, workers):
    ranks = [flat(id_batches(train(client, seed=4, rank=r, world_size=2), workers)) for r in range(2)]
    assert_exactly(ranks[0] + ranks[1], range(N))
    assert abs(len(ranks[0]) - len(ranks[1])) <= N // 4


def test_fewer_endpoints_than_workers(client):
    """tiny.parquet has one row group, so one endpoint, for 2 ranks x 3 workers."""
    per_rank = []
    for rank in range(2):
        ds = train(
            client,
            uri="sheaf://test/tables:v1/tables/tiny.parquet",
            batch_size=2,
            rank=rank,
            world_size=2,
            collate=torchhelp.ids_and_pid,
        )
        assert ds.piece_rows == [testdata.TINY]
        out = list(loader(ds, 3))
        assert len({b["pid"] for b in out}) == 3, "every worker should get rows"
        per_rank.append([i for b in out for i in b["id"]])
    assert_exactly(per_rank[0] + per_rank[1], range(testdata.TINY))
    # A Parquet table planned as 2 endpoints, read by 3 workers.
    ds = train(client, partitions=2, collate=torchhelp.ids_and_pid)
    assert len(ds.piece_rows) == 2
    out = list(loader(ds, 3))
    assert len({b["pid"] for b in out}) == 3
    assert_exactly([i for b in out for i in b["id"]], range(N))
    # A CSV file: one endpoint that can only be read whole.
    csv = client.dataset("sheaf://test/tables:v1/tables/data.csv", columns=["id"]).to_torch(batch_size=64)
    assert_exactly(flat(id_batches(csv, 3)), range(500))


def test_parquet_folder(client):
    ds = client.dataset("sheaf://test/tables:v1/tables/parts", columns=["id"], partitions=5).to_torch(batch_size=64)
    assert sum(ds.piece_rows) == 2_500 and len(ds.piece_rows) == 5
    assert_exactly(flat(id_batches(ds, 2)), range(2_500))


def test_filtered_and_sampled_reads(client):
    ds = client.dataset(NUMBERS, columns=["id"], filter="label = 3", partitions=7).to_torch(batch_size=100)
    assert_exactly(flat(id_batches(ds, 2)), [i for i in range(N) if i % 7 == 3])
    sample = client.dataset(NUMBERS, columns=["id"], sample_rows=1000, seed=2)
    expected = sample.to_table().column("id").to_pylist()
    assert_exactly(flat(id_batches(sample.to_torch(batch_size=100), 3)), expected)


# ---------------------------------------------------------------------------
# Order: seed, epochs, shuffle buffer
# ---------------------------------------------------------------------------


def test_same_seed_same_order_new_epoch_new_order(client):
    a = id_batches(train(client, seed=5), 2)
    assert id_batches(train(client, seed=5), 2) == a
    other_seed = id_batches(train(client, seed=6), 2)
    assert other_seed != a and sorted(flat(other_seed)) == sorted(flat(a))
    ds = train(client, seed=5)
    ds.set_epoch(1)
    epoch1 = id_batches(ds, 2)
    assert epoch1 != a and sorted(flat(epoch1)) == list(range(N))
    ds.set_epoch(0)
    assert id_batches(ds, 2) == a
    unshuffled = id_batches(train(client, shuffle=False), 0)
    assert flat(unshuffled) == list(range(N))


def test_shuffle_buffer(client):
    a = id_batches(train(client, seed=5, shuffle_buffer=3000), 2)
    assert id_batches(train(client, seed=5, shuffle_buffer=3000), 2) == a
    assert a != id_batches(train(client, seed=5), 2)
    assert_exactly(flat(a), range(N))
    first = a[0]
    assert first != sorted(first), "rows inside a batch should be shuffled"
    assert max(first) - min(first) > len(first), "a batch should mix rows from several endpoints"


def test_set_epoch_reaches_persistent_workers(client):
    ds = train(client, seed=8)
    dl = loader(ds, 2, persistent_workers=True)
    epoch0 = [b["id"].tolist() for b in dl]
    ds.set_epoch(1)
    epoch1 = [b["id"].tolist() for b in dl]
    fresh = train(client, seed=8)
    fresh.set_epoch(1)
    assert epoch1 == id_batches(fresh, 2)
    assert epoch1 != epoch0 and sorted(flat(epoch1)) == sorted(flat(epoch0))


# ---------------------------------------------------------------------------
# Equal batch counts across ranks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_equal_batches(client, workers):
    # tiny.parquet's 10 rows for 3 ranks in batches of 2, short ones dropped: runs of 3, 3 and 4
    # rows make 1, 1 and 2 batches (with 2 workers per rank, runs of 1, 2 | 2, 1 | 2, 2 rows).
    def counts(equal):
        out = []
        for rank in range(3):
            ds = train(
                client,
                uri="sheaf://test/tables:v1/tables/tiny.parquet",
                batch_size=2,
                rank=rank,
                world_size=3,
                equal_batches=equal,
                drop_last=True,
                seed=1,
            )
            batches = id_batches(ds, workers)
            assert len(batches) == len(loader(ds, workers))
            out.append(batches)
        return out

    uneven = counts(False)
    assert [len(b) for b in uneven] == [1, 1, 2]
    even = counts(True)
    assert [len(b) for b in even] == [1, 1, 1]
    ids = [i for rank in even for i in flat(rank)]
    assert len(ids) == len(set(ids)) and set(ids) <= set(range(testdata.TINY))
    for rank in range(3):  # the batches kept are the first ones of the uneven run
        assert even[rank] == uneven[rank][: len(even[rank])]


def test_real_process_group_defaults_and_equal_batches(data, tmp_path):
    """Two processes in a gloo group: rank and world size come from
    torch.distributed, and equal batch counts keep per-batch collectives in step."""
    import torch.multiprocessing as mp

    mp.spawn(torchhelp.distributed_rank, args=(2, data.url, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["steps"] == results[1]["steps"] == results[0]["len"] == results[1]["len"]
    ids = results[0]["ids"] + results[1]["ids"]
    assert len(ids) == len(set(ids)) and len(ids) >= N // 2


def test_defaults_without_distributed(client):
    ds = train(client)
    assert (ds.rank, ds.world_size) == (0, 1)
    with pytest.raises(ValueError, match="rank"):
        train(client, rank=2, world_size=2)


# ---------------------------------------------------------------------------
# Resuming mid-epoch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers,buffer", [(0, 0), (2, 0), (2, 2500), (0, 2500)])
def test_resume_mid_epoch(client, workers, buffer):
    def fresh():
        return train(client, seed=9, batch_size=250, partitions=20, shuffle_buffer=buffer)

    full = id_batches(fresh(), workers)
    consumed, first = [], loader(fresh(), workers)
    for batch in first:
        consumed.append(batch["id"].tolist())
        if len(consumed) == 22:
            break
    state = json.loads(json.dumps(first.state_dict()))
    assert (state["epoch"], state["batches"]) == (0, 22)
    del first
    assert consumed == full[:22]

    resumed_ds = fresh()
    second = loader(resumed_ds, workers)
    second.load_state_dict(state)
    assert len(second) == len(full) - 22
    rest = [b["id"].tolist() for b in second]
    assert rest == full[22:]
    # The next epoch starts from its beginning.
    resumed_ds.set_epoch(1)
    assert sorted(flat(id_batches(resumed_ds, workers))) == list(range(N))


def rows_sent(log, start: int) -> int:
    """Rows the server sent (its DoGet log lines) since byte ``start`` of its log."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return sum(int(m) for m in re.findall(r"DoGet finished .*? rows_sent=(\d+)", text))


def test_resume_reads_only_the_rows_left(client, data):
    def fresh():
        return train(client, seed=9, batch_size=250, partitions=20, shuffle_buffer=3000)

    ds = fresh()
    assert ds.piece_rows == [1000] * 20
    assert ds.source.streams[0].by_rows, "a plain Parquet read is read by row position"
    it = iter(ds)
    for _ in range(22):
        next(it)
    state = ds.state_dict()
    it.close()
    assert state["batches"] == 22 and state["pass"]["num_workers"] == 1

    resumed = fresh()
    resumed.load_state_dict(state)
    start = data.server.log.stat().st_size
    remaining = sum(1 for _ in resumed)
    assert remaining == 80 - 22
    deadline = time.monotonic() + 10  # the server logs each DoGet as its stream ends
    while rows_sent(data.server.log, start) < N - 22 * 250 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rows_sent(data.server.log, start) == N - 22 * 250, "exactly the rows left are read, none consumed"


def test_resume_refuses_a_different_setup(client):
    ds = train(client, seed=9)
    it = iter(ds)
    first = next(it)["id"].tolist()
    state = ds.state_dict()
    it.close()
    with pytest.raises(ValueError, match="seed"):
        train(client, seed=10).load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size"):
        train(client, seed=9, batch_size=100).load_state_dict(state)
    # The state of a world of one rank is complete: it resumes with DataLoader workers too.
    other = train(client, seed=9)
    other.load_state_dict(state)
    assert_exactly(first + flat(id_batches(other, 2)), range(N))
    # One rank's state of a world of two resumes only the same topology, unless merged.
    rank0 = train(client, seed=9, rank=0, world_size=2)
    it = iter(rank0)
    next(it)
    part = rank0.state_dict()
    it.close()
    alone = train(client, seed=9)
    alone.load_state_dict(part)
    with pytest.raises(ValueError, match="merge_state_dicts"):
        list(alone)
    # A plain DataLoader with workers: the dataset cannot know what they yielded.
    plain = train(client, seed=9)
    dl = torch.utils.data.DataLoader(plain, batch_size=None, num_workers=1, multiprocessing_context=DEFAULT_CTX)
    next(iter(dl))
    with pytest.raises(ValueError, match="batches="):
        plain.state_dict()
    assert plain.state_dict(batches=1, num_workers=1)["batches"] == 1


# ---------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------


def test_tensors_match_the_source(client, data):
    source = data.parquet("numbers.parquet")
    ds = train(client, batch_size=1000, shuffle=False)
    it = iter(ds)
    batch = next(it)
    it.close()
    assert set(batch) == set(COLUMNS)
    assert batch["id"].dtype == torch.int64 and batch["x"].dtype == torch.float32
    assert batch["label"].dtype == torch.int32 and batch["flag"].dtype == torch.bool
    assert batch["vec"].dtype == torch.float32 and batch["vec"].shape == (1000, 3)
    ids = batch["id"].tolist()
    rows = source.take(ids)
    assert batch["x"].tolist() == rows.column("x").to_pylist()
    assert batch["label"].tolist() == rows.column("label").to_pylist()
    assert batch["flag"].tolist() == rows.column("flag").to_pylist()
    assert batch["vec"].tolist() == rows.column("vec").to_pylist()


def test_numeric_columns_are_not_copied(client):
    ds = client.dataset(NUMBERS, columns=["id", "x", "vec"], partitions=1)
    batch = next(ds.to_batches())
    tensors = sheaf.torch.to_tensors(batch)
    for name, width in (("id", 8), ("x", 4)):
        array = batch.column(name)
        assert tensors[name].data_ptr() == array.buffers()[1].address + array.offset * width
    values = batch.column("vec").values
    assert tensors["vec"].data_ptr() == values.buffers()[1].address
    # Batches cut from inside one Flight batch are slices of it, not copies.
    rebatcher = sheaf.torch._Rebatcher(100)
    first, second = list(rebatcher.push(batch))[:2]
    assert (
        sheaf.torch.to_tensors(second)["id"].data_ptr()
        == batch.column("id").buffers()[1].address + (batch.column("id").offset + 100) * 8
    )
    assert first.num_rows == second.num_rows == 100


def test_columns_that_cannot_become_tensors(client):
    with pytest.raises(sheaf.TensorConversionError) as e:
        client.dataset(NUMBERS, columns=["id", "name"]).to_torch()
    assert "'name' (string)" in str(e.value) and "test/tables@" in str(e.value) and "collate=" in str(e.value)
    assert e.value.column == "name"
    with pytest.raises(sheaf.TensorConversionError, match="'ts'") as e:
        client.dataset("sheaf://test/tables:v1/tables/types.parquet", columns=["id", "ts"]).to_torch()
    assert e.value.column == "ts"
    nulls = client.dataset("sheaf://test/tables:v1/tables/nulls.parquet").to_torch(batch_size=50)
    with pytest.raises(
        sheaf.TensorConversionError,
        match=r"column 'v' of test/tables@\w+/tables/nulls.parquet has.*filter='v IS NOT NULL'",
    ) as e:
        list(nulls)
    assert e.value.column == "v"
    # The same error crosses the process boundary from a DataLoader worker.
    with pytest.raises(sheaf.TensorConversionError, match="null"):
        list(loader(nulls, 1))


def test_a_negative_prefetch_is_refused(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    with pytest.raises(ValueError, match="prefetch must be 0 or more, not -1"):
        ds.to_torch(prefetch=-1)
    with pytest.raises(ValueError, match="prefetch must be 0 or more, not -1"):
        sheaf.loader.Loader(ds, prefetch=-1)
    assert len(list(ds.to_torch(batch_size=5_000, prefetch=0))) == 4


def test_collate_hook(client):
    ds = client.dataset(NUMBERS, columns=["id", "name"]).to_torch(batch_size=300, collate=torchhelp.names)
    names = [n for batch in loader(ds, 2) for n in batch]
    assert sorted(names) == sorted(f"n{i}" for i in range(N))


# ---------------------------------------------------------------------------
# Processes: each worker opens its own connection, after fork or spawn
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_workers_open_their_own_connection(client, ctx):
    ds = client.dataset(NUMBERS, columns=["id"])
    assert ds.to_table().num_rows == N  # the parent has a live connection when the workers start
    train_ds = ds.to_torch(batch_size=1000, seed=3, collate=torchhelp.ids_and_pid)
    dl = loader(train_ds, 2, ctx, persistent_workers=True)
    epochs = []
    for e in range(2):
        train_ds.set_epoch(e)  # reaches the persistent workers (shared memory), spawned ones too
        out = list(dl)
        pids = {b["pid"] for b in out}
        assert len(pids) == 2 and os.getpid() not in pids
        assert_exactly([i for b in out for i in b["id"]], range(N))
        epochs.append([b["id"] for b in out])
    reference = client.dataset(NUMBERS, columns=["id"]).to_torch(batch_size=1000, seed=3)
    reference.set_epoch(1)
    assert epochs[1] == id_batches(reference, 2) and epochs[0] != epochs[1]
    assert ds.to_table().num_rows == N  # and the parent still reads afterwards


def test_files_dataset(client):
    ds = client.dataset(package="test/files", content=True, filter="starts_with(logical_key, 'images/')")
    train_ds = ds.to_torch(batch_size=3, collate=torchhelp.files, seed=2)
    assert len(train_ds.piece_rows) > 3 and sum(train_ds.piece_rows) == testdata.FILES
    got = [f for batch in loader(train_ds, 3) for f in batch]
    expected = {k: v for k, v in testdata.files().items() if k.startswith("images/")}
    assert len(got) == len(expected) and dict(got) == expected
