"""torchdata's StatefulDataLoader: it calls the dataset's state_dict() and
load_state_dict() inside each worker; a checkpoint resumes the same
num_workers exactly where it stopped, and merged with merge_state_dicts it
resumes any other topology. Workers started by fork, forkserver and spawn."""

from __future__ import annotations

import copy
from collections import Counter

import pytest

import sheaf.torch

import testdata

torchdata = pytest.importorskip("torchdata.stateful_dataloader")
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")  # torchdata 0.11 on torch 2.15

N = testdata.NUMBERS
NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"


def make(client, **kw):
    return client.dataset(NUMBERS, columns=["id"]).to_torch(batch_size=500, seed=3, shuffle_buffer=2000, **kw)


def stateful(ds, ctx, workers=2):
    kw = {"multiprocessing_context": ctx, "timeout": 120} if workers else {}
    return torchdata.StatefulDataLoader(ds, batch_size=None, num_workers=workers, **kw)


def ids(batch):
    return batch["id"].tolist()


@pytest.mark.parametrize("ctx", ["fork", "forkserver", "spawn"])
def test_checkpoint_and_resume(client, ctx):
    full = [ids(b) for b in stateful(make(client), ctx)]
    assert sorted(i for b in full for i in b) == list(range(N))
    first = stateful(make(client), ctx)
    seen = []
    for batch in first:
        seen.append(ids(batch))
        if len(seen) == 13:  # an odd count: the next batch comes from worker 1
            break
    state = copy.deepcopy(first.state_dict())
    del first
    assert seen == full[:13]
    resumed = stateful(make(client), ctx)
    resumed.load_state_dict(state)
    rest = [ids(b) for b in resumed]
    assert rest == full[13:], "the same batches, in the same order, as without the interruption"

    # The workers' states merged resume with another number of workers (here sheaf's own DataLoader).
    merged = sheaf.torch.merge_state_dicts([state])
    assert merged["batches"] == 13
    moved = make(client)
    moved.load_state_dict(merged)
    dl = sheaf.torch.DataLoader(moved, num_workers=3, multiprocessing_context=ctx, timeout=120)
    assert len(dl) == len(full) - 13
    after = [i for b in dl for i in b["id"].tolist()]
    counts = Counter([i for b in seen for i in b] + after)
    assert set(counts) == set(range(N)) and max(counts.values()) == 1


def test_in_process_and_two_ranks(client):
    """num_workers=0 (the dataset's state_dict() is called in the main
    process); two simulated ranks whose StatefulDataLoader states are merged
    and resumed by one rank with one worker."""
    seen, states = [], []
    for rank in range(2):
        dl = stateful(make(client, rank=rank, world_size=2), "forkserver", workers=0)
        for i, batch in enumerate(dl):
            seen += ids(batch)
            if i == 4:
                break
        states.append(copy.deepcopy(dl.state_dict()))
    with pytest.raises(ValueError, match="merge"):  # one rank's state alone, on another topology
        one = make(client)
        one.load_state_dict(sheaf.torch.merge_state_dicts([states[1]]))
        next(iter(one))
    last = make(client)
    last.load_state_dict(sheaf.torch.merge_state_dicts(states))
    seen += [i for b in stateful(last, "forkserver", workers=1) for i in ids(b)]
    counts = Counter(seen)
    assert set(counts) == set(range(N)) and max(counts.values()) == 1
