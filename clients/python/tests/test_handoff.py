"""Batches handed from DataLoader workers to the main process through reused
shared memory (sheaf._handoff): values, dtypes, shapes and order kept
exactly with every start method; slots reused; nothing left in /dev/shm
after the loader ends or a worker is killed."""

from __future__ import annotations

import gc
import os
import signal
import time

import pytest
import torch
import torch.multiprocessing
import torch.utils.data

import sheaf.torch
from sheaf import _handoff

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"
COLUMNS = ["id", "x", "label", "flag", "vec"]


def make_batch(worker: int, index: int, rows: int = 37) -> dict[str, torch.Tensor]:
    """A deterministic batch with every dtype and awkward shapes: 0-d,
    empty, 3-d, a non-contiguous view, NaN, -0.0 and infinities."""
    g = torch.Generator().manual_seed(worker * 1000 + index)
    n = rows + index % 3
    f64 = torch.randn(n, generator=g, dtype=torch.float64)
    f64[0], f64[-1] = float("nan"), -0.0
    f32 = torch.randn(n, 3, generator=g)
    f32[1, 1] = float("-inf")
    return {
        "worker": torch.tensor(worker),
        "index": torch.tensor([index], dtype=torch.int64),
        "pid": torch.tensor(os.getpid()),
        "bool": torch.rand(n, generator=g) > 0.5,
        "uint8": torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8),
        "int8": torch.randint(-128, 128, (n,), generator=g, dtype=torch.int8),
        "int16": torch.randint(-(2**15), 2**15, (n,), generator=g, dtype=torch.int16),
        "int32": torch.randint(-(2**31), 2**31 - 1, (n,), generator=g, dtype=torch.int32),
        "int64": torch.randint(-(2**62), 2**62, (n,), generator=g, dtype=torch.int64),
        "float16": torch.randn(n, generator=g).to(torch.float16),
        "bfloat16": torch.randn(n, 2, generator=g).to(torch.bfloat16),
        "float32": f32,
        "float64": f64,
        "complex64": torch.randn(n, generator=g, dtype=torch.complex64),
        "cube": torch.randn(n, 2, 2, generator=g),
        "empty": torch.empty(0, 4, dtype=torch.int32),
        "strided": torch.arange(4 * n, dtype=torch.int64).reshape(4, n).t(),  # not contiguous
    }


def expected_order(counts: list[int]) -> list[tuple[int, int]]:
    """The order a DataLoader gives batches of iterable-dataset workers:
    round-robin from worker 0, one batch each, skipping exhausted workers."""
    return [(w, r) for r in range(max(counts, default=0)) for w, c in enumerate(counts) if r < c]


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes (NaN and -0.0 included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    as_bytes = [t.reshape(-1).contiguous().view(torch.uint8) for t in (a, b)]
    return torch.equal(*as_bytes)


def assert_batches(got: list[dict], counts: list[int], rows: int = 37, prefix: bool = False) -> None:
    order = [(int(b["worker"]), int(b["index"][0])) for b in got]
    want = expected_order(counts)
    assert order == (want[: len(order)] if prefix else want)
    for batch in got:
        want = make_batch(int(batch["worker"]), int(batch["index"][0]), rows)
        assert list(batch) == list(want)
        for key in want:
            if key == "pid":
                continue
            assert same(batch[key], want[key]), f"{key}: {batch[key]!r} != {want[key]!r}"


class Synthetic(torch.utils.data.IterableDataset):
    """Worker w yields counts[w] batches, make_batch(w, 0), make_batch(w, 1)...;
    ``die_after``: worker 0 kills itself (SIGKILL) after that many batches."""

    def __init__(self, counts, *, handoff=True, rows=37, die_after=None):
        self.counts, self.handoff, self.rows, self.die_after = counts, handoff, rows, die_after

    def batches(self, worker):
        for i in range(self.counts[worker]):
            if self.die_after is not None and worker == 0 and i == self.die_after:
                time.sleep(0.3)  # let the batches already handed over arrive
                os.kill(os.getpid(), signal.SIGKILL)
            yield make_batch(worker, i, self.rows)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        stream = self.batches(info.id if info is not None else 0)
        return _handoff.worker_stream(stream) if self.handoff else stream


def bundled(dataset, workers, ctx, **kw):
    """What sheaf.torch.DataLoader does: bundles from the workers, dealt out in order."""
    if workers:
        kw.setdefault("timeout", 120)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        multiprocessing_context=ctx,
        worker_init_fn=_handoff.WorkerInit(),
        **kw,
    )
    return _handoff.main_stream(loader, workers)


def per_batch(dataset, workers, ctx, **kw):
    """A plain torch DataLoader: each batch through its own slot hand-off."""
    if workers:
        kw.setdefault("timeout", 120)
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers, multiprocessing_context=ctx, **kw)


# ---------------------------------------------------------------------------
# Values, dtypes, order
# ---------------------------------------------------------------------------


def test_the_reference_order_is_torchs():
    counts = [3, 0, 5]
    got = list(per_batch(Synthetic(counts, handoff=False), 3, "fork"))
    assert_batches(got, counts)


@pytest.mark.parametrize("ctx", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("how", [bundled, per_batch])
def test_values_dtypes_and_order_are_kept(ctx, how):
    counts = [6, 0, 9]  # uneven, and a worker with nothing to yield
    assert_batches(list(how(Synthetic(counts), 3, ctx)), counts)


@pytest.mark.parametrize("how", [bundled, per_batch])
def test_in_process_batches_are_untouched(how):
    batches = list(Synthetic([4]))
    assert all(type(b) is dict for b in batches)
    got = list(bundled(Synthetic([4]), 0, None) if how is bundled else per_batch(Synthetic([4]), 0, None))
    assert_batches(got, [4])


def test_batches_kept_by_the_caller_stay_intact():
    """The caller holds every batch: past MAX_SLOTS busy slots, hand-offs get segments of their own."""
    counts = [_handoff.MAX_SLOTS * 3]
    for how in (bundled, per_batch):
        assert_batches(list(how(Synthetic(counts), 1, "fork")), counts)


def collate_to_objects(batch):
    return {"ids": batch["index"].tolist(), "note": f"worker {int(batch['worker'])}", "x": batch["float32"][:2]}


def test_other_objects_travel_as_they_are():
    loader = torch.utils.data.DataLoader(
        Synthetic([3, 2]),
        batch_size=None,
        num_workers=2,
        multiprocessing_context="fork",
        collate_fn=collate_to_objects,
    )
    got = list(loader)
    assert [(g["note"], g["ids"]) for g in got] == [(f"worker {w}", [i]) for w, i in expected_order([3, 2])]
    for g, (w, i) in zip(got, expected_order([3, 2]), strict=True):
        assert same(g["x"], make_batch(w, i)["float32"][:2])


# ---------------------------------------------------------------------------
# Slots
# ---------------------------------------------------------------------------


def worker_segments() -> list[int]:
    with _handoff._SOURCES_LOCK:
        return [len(s.segments) for s in _handoff._SOURCES.values()]


@pytest.mark.parametrize("how", [bundled, per_batch])
def test_slots_are_reused(how):
    _handoff._SOURCES.clear()
    rows = 20_000  # about 1 MB a batch: bundles of one
    seen = 0
    for batch in how(Synthetic([40], rows=rows), 1, "fork", persistent_workers=True):
        seen += 1
        del batch
    assert seen == 40
    # Slots in use at once: the prefetched hand-offs, the one being read, a spare.
    assert worker_segments() and max(worker_segments()) <= 6


# ---------------------------------------------------------------------------
# Shared memory left behind
# ---------------------------------------------------------------------------


def shm_of(pids: set[int]) -> list[str]:
    """Entries of /dev/shm made by torch in these processes (torch names them torch_<pid>_...)."""
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        pytest.skip("no /dev/shm")
    return sorted(n for n in names if any(n.startswith(f"torch_{p}_") for p in pids))


@pytest.fixture(params=["file_descriptor", "file_system"])
def strategy(request):
    before = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy(request.param)
    yield request.param
    torch.multiprocessing.set_sharing_strategy(before)


def settle(pids: set[int], deadline: float = 10.0) -> list[str]:
    gc.collect()
    _handoff.forget_ended_workers()
    gc.collect()
    end = time.monotonic() + deadline
    while shm_of(pids) and time.monotonic() < end:  # torch_shm_manager cleans up asynchronously
        time.sleep(0.1)
    return shm_of(pids)


@pytest.mark.parametrize("how", [bundled, per_batch])
def test_nothing_left_in_dev_shm(strategy, how):
    pids = {os.getpid()}
    it = iter(how(Synthetic([30, 30]), 2, "fork"))
    for _ in range(5):  # stopped early
        pids.add(int(next(it)["pid"]))
    del it
    for batch in how(Synthetic([12, 12]), 2, "fork"):
        pids.add(int(batch["pid"]))
    del batch
    assert len(pids) >= 3
    assert settle(pids) == []


@pytest.mark.parametrize("how", [bundled, per_batch])
def test_a_killed_worker_leaves_nothing(strategy, how):
    pids = {os.getpid()}
    got = []
    with pytest.raises(RuntimeError, match="DataLoader worker .* exited unexpectedly|killed by signal"):
        for batch in how(Synthetic([10, 10], die_after=4), 2, "fork", timeout=30):
            got.append(batch)
            pids.add(int(batch["pid"]))
    assert got, "batches arrived before the worker died"
    assert_batches(got, [10, 10], prefix=True)
    del got, batch
    assert settle(pids) == []


# ---------------------------------------------------------------------------
# Batches read from the server
# ---------------------------------------------------------------------------


class Endpoints(torch.utils.data.IterableDataset):
    """Worker w reads endpoints w, w + W, ... of a planned dataset, as
    {column: tensor} batches, through the hand-off."""

    def __init__(self, ds):
        self.ds = ds

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info is not None else (0, 1)

        def batches():
            for index in range(w, len(self.ds.endpoints), n):
                for batch in self.ds.read_endpoint(index):
                    yield sheaf.torch.to_tensors(batch)

        return _handoff.worker_stream(batches())


@pytest.mark.parametrize("how", [bundled, per_batch])
def test_server_batches_arrive_exactly(client, how):
    ds = client.dataset(NUMBERS, columns=COLUMNS, partitions=5)
    table = ds.to_table()
    want = sheaf.torch.to_tensors(table.combine_chunks().to_batches()[0])
    got = list(how(Endpoints(ds), 2, "forkserver"))
    assert got and all(list(b) == COLUMNS for b in got)
    merged = {k: torch.cat([b[k] for b in got]) for k in COLUMNS}
    order = torch.argsort(merged["id"])
    assert torch.equal(merged["id"][order], want["id"])
    for k in COLUMNS:
        assert same(merged[k][order], want[k]), k


def slot_states() -> list[int]:
    with _handoff._SOURCES_LOCK:
        return [int(seg.state[0]) for s in _handoff._SOURCES.values() for seg in s.segments.values()]


def test_a_slot_is_freed_only_by_the_receiver():
    """A process forked from the main process holds copies of its batches:
    dropping them there must not free the slots under the main process."""
    _handoff._SOURCES.clear()
    it = iter(per_batch(Synthetic([8]), 1, "fork"))
    batch = next(it)
    want = make_batch(0, 0)
    assert slot_states().count(_handoff._BUSY) >= 1
    child = os.fork()
    if child == 0:  # drop the batch here, collect, and leave without atexit (the loader is left alone)
        del batch
        gc.collect()
        os._exit(0)
    os.waitpid(child, 0)
    assert slot_states().count(_handoff._BUSY) >= 1
    assert all(same(batch[k], want[k]) for k in want if k != "pid")
    rest = list(it)
    assert len(rest) == 7
    del batch, rest
    gc.collect()
    assert slot_states().count(_handoff._BUSY) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs an accelerator")
def test_pin_memory():
    got = list(bundled(Synthetic([3, 2]), 2, "fork", pin_memory=True))
    assert all(t.is_pinned() for b in got for t in b.values())
    assert_batches(got, [3, 2])
