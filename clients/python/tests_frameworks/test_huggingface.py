"""Hugging Face datasets (sheaf.huggingface): an IterableDataset whose rows
follow the loader core's epoch order; set_epoch, split_dataset_by_node and
datasets' own state_dict/load_state_dict."""

from __future__ import annotations

import datasets
import pytest
from datasets.distributed import split_dataset_by_node

import sheaf
from sheaf.huggingface import iterable_dataset
from sheaf.loader import Loader

import testdata

N = testdata.NUMBERS
NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"


def core_order(ds, epoch=0, **kw):
    """Every id of the epoch in the core's global order (one rank, one worker)."""
    return [i for b in Loader(ds, **kw).stream(epoch=epoch) for i in b.column("id").to_pylist()]


def test_rows_in_the_core_order_and_epochs(client):
    ds = client.dataset(NUMBERS, columns=["id", "x", "vec", "name"])
    hf = iterable_dataset(ds, seed=6)
    assert isinstance(hf, datasets.IterableDataset)
    assert hf.num_shards == 64
    assert hf.features["vec"] == datasets.List(datasets.Value("float32"), length=3)
    rows = list(hf)
    assert [r["id"] for r in rows] == core_order(ds, seed=6)
    r = rows[10]
    assert r["name"] == f"n{r['id']}" and r["vec"] == [r["id"], r["id"] + 0.5, -r["id"]]
    hf.set_epoch(3)
    assert [r["id"] for r in hf] == core_order(ds, epoch=3, seed=6)
    # Formatted and batched access go through Arrow.
    batch = next(iter(hf.with_format("numpy").iter(batch_size=64)))
    assert batch["vec"].shape == (64, 3)


def test_split_dataset_by_node(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    hf = iterable_dataset(ds, seed=2, num_shards=6)
    parts = []
    for rank in range(3):
        node = split_dataset_by_node(hf, rank=rank, world_size=3)
        node.set_epoch(1)  # datasets' split starts at epoch 0: set the epoch of the dataset iterated
        parts.append([r["id"] for r in node])
    assert all(len(p) > N // 4 for p in parts)  # shards shared out, not every row read by every node
    assert sorted(i for p in parts for i in p) == list(range(N))
    # Each node reads its shards (runs of the epoch order: the core's 6 workers) in order.
    src = Loader(ds, seed=2)
    runs = [
        [i for b in src.stream(epoch=1, worker=w, num_workers=6) for i in b.column("id").to_pylist()] for w in range(6)
    ]
    assert [i for r in runs for i in r] == core_order(ds, epoch=1, seed=2)
    assert parts[1] == runs[1] + runs[4]


def test_pickles_for_dataloader_workers(client):
    import pickle

    ds = client.dataset(NUMBERS, columns=["id"])
    hf = iterable_dataset(ds, seed=4, num_shards=2)
    hf.set_epoch(2)
    copy = pickle.loads(pickle.dumps(hf))  # what a DataLoader worker receives
    assert [r["id"] for r in copy] == core_order(ds, epoch=2, seed=4)


def test_state_dict_resumes(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    hf = iterable_dataset(ds, seed=3, num_shards=4)
    first = []
    for i, r in enumerate(hf):
        first.append(r["id"])
        if i == 7_777:
            break
    state = hf.state_dict()
    again = iterable_dataset(ds, seed=3, num_shards=4)
    again.load_state_dict(state)
    rest = [r["id"] for r in again]
    assert first + rest == core_order(ds, seed=3)


def test_unsupported_columns(client):
    # Every column type of the test tables has a datasets feature (nested ones, decimals and
    # timestamps included); a type datasets has none for is named.
    import pyarrow as pa

    from sheaf.huggingface import features

    types = client.dataset("sheaf://test/tables:v1/tables/types.parquet")
    assert list(features(types.schema)) == types.schema.names
    with pytest.raises(sheaf.TensorConversionError, match=r"t: column 'odd' \(map<string, int64>\)") as e:
        features(pa.schema([("id", pa.int64()), ("odd", pa.map_(pa.string(), pa.int64()))]), "t")
    assert e.value.column == "odd"
