"""numpy/JAX batches (sheaf.arrays): the loader core's order, sharding and
resume state, as dicts of numpy arrays (zero-copy where Arrow allows), and
clear errors for columns that cannot become arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sheaf
from sheaf.arrays import NumpyBatches
from sheaf.loader import Loader, merge_state_dicts

import testdata

N = testdata.NUMBERS
NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"
COLUMNS = ["id", "x", "label", "flag", "vec"]


def core_ids(ds, epoch=0, rank=0, world_size=1, **kw):
    """The ids the loader core yields for one rank (one worker), batch by batch."""
    src = Loader(ds, **kw)
    return [b.column("id").to_pylist() for b in src.stream(epoch=epoch, rank=rank, world_size=world_size)]


def test_same_batches_as_the_core(client):
    ds = client.dataset(NUMBERS, columns=COLUMNS)
    train = NumpyBatches(ds, batch_size=700, seed=5)
    assert len(train) == -(-N // 700)
    got = [b["id"].tolist() for b in train]
    assert got == core_ids(ds, batch_size=700, seed=5)
    assert sorted(i for b in got for i in b) == list(range(N))
    assert got[0] != list(range(700))  # shuffled
    train.set_epoch(1)
    again = [b["id"].tolist() for b in train]
    assert again == core_ids(ds, epoch=1, batch_size=700, seed=5) and again != got


def test_arrays_types_and_zero_copy(client):
    import jax.numpy as jnp

    table = testdata.numbers_table()
    ds = client.dataset(NUMBERS, columns=COLUMNS)
    batch = next(iter(NumpyBatches(ds, batch_size=256, shuffle=False)))
    assert batch["id"].tolist() == list(range(256))
    assert batch["id"].dtype == np.int64 and batch["x"].dtype == np.float32 and batch["label"].dtype == np.int32
    assert batch["flag"].dtype == np.bool_ and batch["flag"].tolist() == [i % 3 == 0 for i in range(256)]
    assert batch["vec"].shape == (256, 3) and batch["vec"].dtype == np.float32
    assert batch["vec"][5].tolist() == [5.0, 5.5, -5.0]
    np.testing.assert_array_equal(batch["x"], table.column("x").to_numpy()[:256])
    # Numbers (and fixed-size lists of them) are views of Arrow's buffers: read-only, not copies.
    for name in ("id", "x", "label", "vec"):
        assert not batch[name].flags.owndata and not batch[name].flags.writeable, name
    on_device = jnp.asarray(batch["vec"])
    assert on_device.shape == (256, 3) and float(on_device[5, 1]) == 5.5


def test_ranks_share_the_epoch_and_resume_on_another_topology(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    ranks = [NumpyBatches(ds, batch_size=500, seed=9, rank=r, world_size=2) for r in range(2)]
    seen = []
    states = []
    for r, train in enumerate(ranks):
        ids = []
        for i, b in enumerate(train):
            ids.append(b["id"].tolist())
            if i == 3:
                states.append(json.loads(json.dumps(train.state_dict())))  # plain JSON
        assert ids == core_ids(ds, rank=r, world_size=2, batch_size=500, seed=9)
        seen.append([i for b in ids[:4] for i in b])
    everything = [i for s in seen for i in s]
    assert len(everything) == len(set(everything)) == 4000
    # Both ranks' states merged resume on one rank: the rest of the epoch, every row once.
    single = NumpyBatches(ds, batch_size=500, seed=9)
    single.load_state_dict(merge_state_dicts(states))
    rest = [i for b in single for i in b["id"].tolist()]
    assert sorted(rest + everything) == list(range(N))
    # The resumed pass is done: the next pass reads the whole epoch again.
    assert sum(len(b["id"]) for b in single) == N


def test_resume_in_process(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    train = NumpyBatches(ds, batch_size=1000, seed=2)
    full = core_ids(ds, batch_size=1000, seed=2)
    it = iter(train)
    first = [next(it)["id"].tolist() for _ in range(7)]
    state = train.state_dict()
    assert state["epoch"] == 0
    again = NumpyBatches(ds, batch_size=1000, seed=2)
    again.load_state_dict(state)
    assert len(again) == len(full) - 7
    assert first + [b["id"].tolist() for b in again] == full


def test_columns_that_cannot_become_arrays(client):
    ds = client.dataset(NUMBERS, columns=["id", "name"])
    with pytest.raises(sheaf.TensorConversionError, match=r"'name' \(string\).*columns=") as e:
        NumpyBatches(
            ds,
        )
    assert e.value.column == "name"
    # collate= converts batches itself.
    names = NumpyBatches(ds, batch_size=4, shuffle=False, collate=lambda b: b.column("name").to_pylist())
    assert next(iter(names)) == ["n0", "n1", "n2", "n3"]
    # Nulls are found while reading, naming the column.
    nulls = client.dataset("sheaf://test/tables:v1/tables/nulls.parquet")
    with pytest.raises(sheaf.TensorConversionError, match=r"column 'v'.*null") as e:
        list(NumpyBatches(nulls, batch_size=50))
    assert e.value.column == "v"
