"""Random access (Dataset.take, ds[i], ds[a:b], read_rows) and the map-style
torch dataset (sheaf.torch_map), against the real server and the same Parquet file."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import sheaf
from sheaf import _request
from sheaf._proto import sheaf_pb2

import testdata
from conftest import TIMEOUT

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"
START_METHOD = os.environ.get("SHEAF_TEST_START_METHOD", "forkserver")


def metrics(client) -> sheaf_pb2.MetricsResponse:
    return client._call("metrics", sheaf_pb2.MetricsRequest(), sheaf_pb2.MetricsResponse)


@pytest.fixture(scope="module")
def source(data) -> pa.Table:
    return data.parquet("numbers.parquet").replace_schema_metadata(None)


def test_take_equals_the_table_in_the_order_asked(client, source):
    ds = client.dataset(NUMBERS, partitions=4)
    rng = np.random.default_rng(1)
    idx = rng.integers(-testdata.NUMBERS, testdata.NUMBERS, 500)
    idx = np.concatenate([idx, idx[:50], [0, testdata.NUMBERS - 1, -1, 999, 1000, 1001]])  # duplicates, edges
    got = ds.take(idx)
    want = source.take(pa.array(np.where(idx < 0, idx + testdata.NUMBERS, idx)))
    assert got.schema == ds.schema and got.equals(want)
    assert ds.take([]).num_rows == 0 and ds.take([]).schema == ds.schema
    assert ds.take(range(5, 9)).equals(source.slice(5, 4))


def test_take_reads_only_what_it_needs(client, source):
    ds = client.dataset(NUMBERS)
    before = metrics(client)
    got = ds.take([5, 17_003, 17_004, 3])
    after = metrics(client)
    assert got.column("id").to_pylist() == [5, 17_003, 17_004, 3]
    # Two row groups hold the rows: nothing else is scanned.
    assert after.rows_scanned - before.rows_scanned <= 2 * testdata.NUMBERS_GROUP
    assert after.rows_sent - before.rows_sent == 4  # 3, 5, 17_003, 17_004


def test_indexing_and_slices(client, source):
    ds = client.dataset(NUMBERS, columns=["id", "x", "name"])
    cols = source.select(["id", "x", "name"])
    assert ds[7] == cols.slice(7, 1).to_pylist()[0]
    assert ds[-1] == cols.slice(testdata.NUMBERS - 1, 1).to_pylist()[0]
    assert ds[100:250].equals(cols.slice(100, 150))
    assert ds[19_990:].equals(cols.slice(19_990))
    assert ds[10:40:7].equals(cols.take(pa.array(range(10, 40, 7))))
    with pytest.raises(IndexError, match=r"test/tables@.*numbers\.parquet.*index 20000 is out of range"):
        ds.take([1, 20_000])
    with pytest.raises(IndexError, match="index -20001"):
        ds[-20_001]
    with pytest.raises(TypeError):
        ds["id"]


@pytest.mark.parametrize("param", [{"filter": "label = 3"}, {"sample": 0.5}, {"sample_rows": 100}])
def test_take_refuses_datasets_without_positions(client, param):
    ds = client.dataset(NUMBERS, **param)
    name = next(iter(param))
    with pytest.raises(sheaf.InvalidArgumentError, match=rf"{name}="):
        ds.take([1])


def test_positions_are_the_datasets_rows(client, source):
    """A dataset with its own rows= or a limit: positions count its rows."""
    ds = client.dataset(NUMBERS, rows=[(5000, 5010), (100, 110), 19_999])
    assert ds.num_rows == 21
    mine = np.concatenate([np.arange(100, 110), np.arange(5000, 5010), [19_999]])
    assert ds.to_table().equals(source.take(pa.array(mine)))
    assert ds.take([0, 20, 10, -1]).equals(source.take(pa.array(mine[[0, 20, 10, -1]])))
    with pytest.raises(IndexError):
        ds.take([21])
    limited = client.dataset(NUMBERS, limit=50, columns=["id"])
    assert limited.take([49, 0]).column("id").to_pylist() == [49, 0]
    with pytest.raises(IndexError):
        limited[50]
    text = client.dataset(NUMBERS + "?rows=10:20,30")
    assert text.take([10, 0]).column("id").to_pylist() == [30, 10]


def test_big_takes_are_split_into_requests(client, source, monkeypatch):
    monkeypatch.setattr(_request, "MAX_ROW_RANGES", 3)
    ds = client.dataset(NUMBERS, columns=["id", "y"])
    idx = np.arange(0, 2000, 3)[::-1]  # 667 ranges: 223 requests
    before = metrics(client).do_get
    assert ds.take(idx).equals(source.select(["id", "y"]).take(pa.array(idx)))
    assert metrics(client).do_get - before >= 223


def test_takes_bigger_than_a_uri_are_split(client, source):
    """6,667 scattered positions: one typed request (up to 3 MiB), but more than
    a 64 KiB URI holds, so a dataset named by URI sends several, transparently."""
    ds = client.dataset(package="test/tables", tag="v1", path="tables/numbers.parquet", columns=["id", "x"])
    idx = np.arange(testdata.NUMBERS - 1, -1, -3)
    assert ds.take(idx).equals(source.select(["id", "x"]).take(pa.array(idx)))
    text = client.dataset(NUMBERS + "?columns=id")
    assert len(_request.rows_text(_request.row_ranges([(int(i), int(i) + 1) for i in idx]))) > 64 * 1024
    assert text.take(idx).column("id").to_pylist() == idx.tolist()


def test_take_from_the_cache(data, tmp_path, source):
    with sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=tmp_path / "c") as client:
        ds = client.dataset(NUMBERS, partitions=4)
        assert ds.take([3, 19_000], fill_cache=True).equals(source.take(pa.array([3, 19_000])))
        assert client.cache.info().entries == 2  # the endpoints holding them
        before = metrics(client).do_get
        idx = np.random.default_rng(2).integers(0, 5000, 300)  # all in the first endpoint
        assert ds.take(idx).equals(source.take(pa.array(idx)))
        assert metrics(client).do_get == before
        # Rows of endpoints not stored come from the server, in the same result.
        mixed = [19_999, 4, 7_000, 4]
        assert ds.take(mixed).equals(source.take(pa.array(mixed)))


def test_read_rows_blocks_are_cached(data, tmp_path, source):
    with sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=tmp_path / "c") as client:
        ds = client.dataset(NUMBERS, columns=["id", "label"], filter="label = 2")
        sub = source.select(["id", "label"]).slice(1000, 3000)
        want = sub.filter(pc.equal(sub["label"], 2))
        block = ds.read_rows([(1000, 4000)])
        assert block.equals(want)
        before = metrics(client).do_get
        assert ds.read_rows([(1000, 2500), (2500, 4000)]).equals(want)  # the same rows, canonically
        assert metrics(client).do_get == before
        # Another client on the same folder: from disk, no server call.
        with sheaf.connect(data.url, timeout=TIMEOUT, cache=tmp_path / "c") as other:
            again = other.dataset(NUMBERS, columns=["id", "label"], filter="label = 2")
            assert again.read_rows([(1000, 4000)]).equals(want)
            assert metrics(other).do_get == before


def _ids(batch) -> list[int]:
    return batch["id"].tolist()


def test_map_dataset_with_distributed_sampler_is_exact(client, source):
    import torch.utils.data

    mds = client.dataset(NUMBERS, columns=["id", "x", "label"]).to_torch_map()
    assert len(mds) == testdata.NUMBERS
    seen: list[int] = []
    for rank in (0, 1):
        sampler = torch.utils.data.DistributedSampler(mds, num_replicas=2, rank=rank, shuffle=True, seed=11)
        sampler.set_epoch(3)
        order = list(sampler)
        loader = torch.utils.data.DataLoader(mds, batch_size=512, sampler=sampler, collate_fn=mds.collate)
        got = []
        for batch in loader:
            assert set(batch) == {"id", "x", "label"}
            ids = _ids(batch)
            assert batch["x"].tolist() == source["x"].take(pa.array(ids)).to_pylist()
            got.extend(ids)
        assert got == order, f"rank {rank} did not get its sampler's order"
        seen.extend(got)
    assert sorted(seen) == list(range(testdata.NUMBERS))


def test_map_dataset_with_workers_custom_sampler_and_default_collate(client, source):
    import torch
    import torch.utils.data

    mds = client.dataset(NUMBERS, columns=["id", "vec"]).to_torch_map()
    wanted = [5, 19_999, 5, 42, 0, 777, 12_345, 8, 9, 10]
    loader = torch.utils.data.DataLoader(
        mds,
        batch_size=4,
        sampler=wanted,  # any iterable of indices is a sampler
        collate_fn=mds.collate,
        num_workers=2,
        multiprocessing_context=START_METHOD,
    )
    got = [i for batch in loader for i in _ids(batch)]
    assert got == wanted
    plain = torch.utils.data.DataLoader(mds, batch_size=3, sampler=[1, 2, 3])  # torch's default_collate
    (batch,) = list(plain)
    assert batch["id"].tolist() == [1, 2, 3]
    assert batch["vec"].shape == (3, 3) and batch["vec"][2].tolist() == [3.0, 3.5, -3.0]
    one = mds[7]
    assert one["id"].item() == 7 and one["vec"].tolist() == [7.0, 7.5, -7.0]


def test_map_dataset_refuses_strings_and_filters(client):
    with pytest.raises(sheaf.TensorConversionError, match="name"):
        client.dataset(NUMBERS).to_torch_map()
    assert len(client.dataset(NUMBERS).to_torch_map(collate=lambda t: t.column("name").to_pylist())) > 0
    with pytest.raises(sheaf.InvalidArgumentError, match="filter="):
        client.dataset(NUMBERS, columns=["id"], filter="id < 10").to_torch_map()


def test_take_other_formats_and_types(client, data):
    """Every column type (nulls, strings, lists, structs, decimals), and a CSV table (no row count in the plan)."""
    types = data.parquet("types.parquet").replace_schema_metadata(None)
    ds = client.dataset("sheaf://test/tables:v1/tables/types.parquet")
    idx = np.random.default_rng(4).integers(0, types.num_rows, 200)
    assert ds.take(idx).equals(types.take(pa.array(idx)))
    csv = client.dataset("sheaf://test/tables:v1/tables/data.csv")
    whole = csv.to_table()
    assert whole.num_rows == 500
    assert csv.take([499, 0, 250, 250]).equals(whole.take(pa.array([499, 0, 250, 250])))
    with pytest.raises(IndexError, match="500"):
        csv[500]


def test_take_refuses_boolean_masks_and_arrays_of_several_dimensions(client):
    import torch

    ds = client.dataset(NUMBERS, columns=["id"])
    mask = np.zeros(ds.num_rows, dtype=bool)
    mask[[5, 9]] = True
    for indices in (mask, torch.from_numpy(mask), [True, False], np.array([], dtype=bool)):
        with pytest.raises(TypeError, match=r"booleans.*numpy\.flatnonzero\(mask\)"):
            ds.take(indices)
    assert ds.take(np.flatnonzero(mask)).column("id").to_pylist() == [5, 9]
    for indices in (
        np.array([[1, 2], [3, 4]]),
        torch.tensor([[1, 2], [3, 4]]),
        [[1, 2], [3, 4]],
        np.zeros((0, 2), int),
    ):
        with pytest.raises(ValueError, match=r"one-dimensional, not of shape \((2, 2|0, 2)\)"):
            ds.take(indices)
    assert ds.take(np.array([[1, 2], [3, 4]]).reshape(-1)).column("id").to_pylist() == [1, 2, 3, 4]


@pytest.mark.parametrize("form", ["typed", "text"])
def test_rows_dataset_counts_come_from_the_plan(client, form):
    """EndpointMetadata.selected_rows: a rows= dataset's endpoint counts need no counting read."""
    if form == "typed":
        ds = client.dataset(NUMBERS, rows=[(10, 20), (5000, 5003)], partitions=4)
    else:
        ds = client.dataset(NUMBERS + "?rows=10:20,5000:5003&partitions=4")
    assert [e.selected_rows is not None for e in ds.endpoints] == [True] * len(ds.endpoints)
    before = metrics(client).do_get
    assert sum(ds.endpoint_rows()) == 13 == ds.num_rows
    assert metrics(client).do_get == before
    assert client.dataset(NUMBERS).endpoints[0].selected_rows is None
