"""Ray Data (a local cluster): one block per Flight endpoint, every row once,
the same rows as a plain read; column selections pushed down to the server."""

from __future__ import annotations

from collections import Counter

import pytest
import ray

import sheaf
import sheaf.ray

import testdata

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"


def test_one_block_per_endpoint_same_rows(ray_cluster, client):
    ds = client.dataset(NUMBERS, columns=["id", "x", "name"], partitions=5)
    assert len(ds.endpoints) == 5
    source = sheaf.ray.SheafDatasource(ds)
    tasks = source.get_read_tasks(1)
    assert len(tasks) == 5  # Ray's parallelism hint does not merge endpoints
    assert [t.metadata.num_rows for t in tasks] == ds.endpoint_rows()

    rds = sheaf.ray.read(ds).materialize()
    assert rds.num_blocks() == 5
    assert rds.count() == testdata.NUMBERS
    expected = ds.to_table()
    got = rds.to_arrow_refs()
    tables = ray.get(got)
    assert sorted(t.num_rows for t in tables) == sorted(ds.endpoint_rows())
    rows = Counter(r for t in tables for r in zip(t["id"].to_pylist(), t["name"].to_pylist(), strict=True))
    assert rows == Counter(zip(expected["id"].to_pylist(), expected["name"].to_pylist(), strict=True))
    # Each block is one endpoint's rows, in table order.
    for t in tables:
        ids = t["id"].to_pylist()
        assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_select_columns_is_read_by_the_server(ray_cluster, client):
    ds = client.dataset(NUMBERS, partitions=4)
    # Ray's projection pushdown reaches the datasource, which plans the read with columns=.
    projected = sheaf.ray.SheafDatasource(ds).apply_projection({"label": "label"})
    assert [t.schema.names for t in projected.get_read_tasks(8)] == [["label"]] * 4
    rds = sheaf.ray.read(ds).select_columns(["label"]).materialize()
    tables = ray.get(rds.to_arrow_refs())
    assert all(t.column_names == ["label"] for t in tables)
    assert Counter(v for t in tables for v in t["label"].to_pylist()) == Counter(i % 7 for i in range(testdata.NUMBERS))


def test_filtered_reads_and_files(ray_cluster, client):
    ds = client.dataset(NUMBERS, columns=["id"], filter="label = 3", partitions=3)
    tasks = sheaf.ray.SheafDatasource(ds).get_read_tasks(1)
    assert [t.metadata.num_rows for t in tasks] == [None] * 3  # unknown before reading, not guessed
    rds = sheaf.ray.read(ds)
    assert sorted(r["id"] for r in rds.take_all()) == [i for i in range(testdata.NUMBERS) if i % 7 == 3]
    # A rows= selection: the rows each endpoint keeps are known before reading.
    picked = client.dataset(NUMBERS, columns=["id"], rows=[(10, 20), (1500, 1600), 19_999])
    tasks = sheaf.ray.SheafDatasource(picked).get_read_tasks(1)
    assert sorted(t.metadata.num_rows for t in tasks) == sorted(picked.endpoint_rows())
    assert sum(t.metadata.num_rows for t in tasks) == 111
    assert sorted(r["id"] for r in sheaf.ray.read(picked).take_all()) == [*range(10, 20), *range(1500, 1600), 19_999]
    # The manifest table with file contents: every file once, bytes intact.
    files = client.dataset(package="test/files", content=True, columns=["logical_key", "content"])
    got = {r["logical_key"]: r["content"] for r in sheaf.ray.read(files).take_all()}
    assert got == testdata.files()


def test_read_errors_name_the_dataset(ray_cluster, client, data):
    ds = client.dataset(NUMBERS, columns=["id"], partitions=2)
    # A task whose server is gone fails with the Sheaf error, naming the dataset and endpoint.
    broken = sheaf.connect("grpc://127.0.0.1:1", timeout=5, read_timeout=5)
    ds._client = broken
    with pytest.raises(Exception, match=r"numbers\.parquet.*endpoint 0|endpoint 0.*numbers\.parquet"):
        sheaf.ray.read(ds).materialize()
