"""Dataset handles and reads: batches, pyarrow, pandas, polars, files."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import testdata

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"


def test_handle_shows_plan_without_reading(client, data):
    ds = client.dataset(NUMBERS, partitions=4)
    assert ds.package == "test/tables" and ds.path == "tables/numbers.parquet"
    assert ds.top_hash == data.tops["test/tables@v1"]
    assert ds.schema == data.parquet("numbers.parquet").schema.remove_metadata()
    assert ds.num_rows == testdata.NUMBERS and not ds.rows_estimated
    assert len(ds.endpoints) == 4 and ds.total_bytes > 0
    assert ds.pinned_uri.startswith(f"sheaf://test/tables@{data.tops['test/tables@v1']}/tables/numbers.parquet")
    text = repr(ds)
    for part in (
        "test/tables@" + ds.top_hash[:12],
        "tables/numbers.parquet",
        "20,000",
        "4 endpoint",
        "id: int64",
        "vec: fixed_size_list",
    ):
        assert part in text, f"{part!r} not in {text}"


def test_dataset_from_keywords_equals_uri(client, data):
    a = client.dataset(
        package="test/tables",
        tag="v1",
        path="tables/numbers.parquet",
        columns=["id", "x"],
        filter="label = 3 AND id < 1000",
        partitions=2,
    )
    b = client.dataset(NUMBERS + "?columns=id,x&filter=label%20%3D%203%20AND%20id%20%3C%201000&partitions=2")
    assert a.top_hash == b.top_hash and a.schema == b.schema
    assert a.to_table().equals(b.to_table())
    assert a.num_rows is None  # unknown under a filter


def test_revision_is_pinned(client, data):
    latest = client.dataset("sheaf://test/tables/tables/numbers.parquet", columns=["y"])
    v1 = client.dataset(
        package="test/tables", revision=data.tops["test/tables@v1"][:8], path="tables/numbers.parquet", columns=["y"]
    )
    assert latest.top_hash == data.tops["test/tables"] and v1.top_hash == data.tops["test/tables@v1"]
    assert set(latest.to_table().column("y").to_pylist()) == {-1.0}
    assert v1.to_table().column("y").equals(data.parquet("numbers.parquet").column("y"))


@pytest.mark.parametrize("partitions", [None, 1, 3, 20])
def test_to_table_equals_source_parquet(client, data, partitions):
    ds = client.dataset(NUMBERS, partitions=partitions)
    got = ds.to_table(max_workers=4, progress=False)
    assert got.equals(data.parquet("numbers.parquet").replace_schema_metadata(None))


def test_to_table_keeps_endpoint_order_when_read_in_parallel(client, data):
    ds = client.dataset(NUMBERS, columns=["id"], partitions=20)
    assert len(ds.endpoints) == 20
    ids = ds.to_table(max_workers=8).column("id").to_pylist()
    assert ids == list(range(testdata.NUMBERS))
    assert sum(ds.endpoint_rows()) == testdata.NUMBERS


def test_batches_stream_in_order(client, data):
    ds = client.dataset(NUMBERS, columns=["id"], partitions=5)
    batches = list(ds.to_batches(progress=False))
    assert len(batches) >= 5 and all(isinstance(b, pa.RecordBatch) for b in batches)
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(testdata.NUMBERS))
    reader = ds.to_reader()
    assert isinstance(reader, pa.RecordBatchReader) and reader.schema == ds.schema
    assert reader.read_all().num_rows == testdata.NUMBERS
    assert sum(b.num_rows for b in ds) == testdata.NUMBERS


def test_stopping_early_is_fine(client, data):
    ds = client.dataset(NUMBERS, partitions=4)
    it = ds.to_batches()
    first = next(it)
    it.close()  # cancels the stream
    assert first.num_rows > 0
    assert ds.to_table().num_rows == testdata.NUMBERS  # the handle still reads


def test_many_types_round_trip(client, data):
    expected = data.parquet("types.parquet").replace_schema_metadata(None)
    got = client.dataset("sheaf://test/tables:v1/tables/types.parquet").to_table()
    assert got.schema == expected.schema
    assert got.equals(expected)


def test_to_pandas_equals_source(client, data):
    import pandas

    ds = client.dataset("sheaf://test/tables:v1/tables/types.parquet")
    expected = pq.read_table(data.src / "tables" / "types.parquet").to_pandas()
    got = ds.to_pandas()
    pandas.testing.assert_frame_equal(got, expected)
    arrow_backed = ds.to_pandas(types_mapper=pandas.ArrowDtype)
    assert str(arrow_backed["amount"].dtype).startswith("decimal128")


def test_to_polars_equals_source(client, data):
    import polars
    from polars.testing import assert_frame_equal

    for name in ("types.parquet", "numbers.parquet"):
        got = client.dataset(f"sheaf://test/tables:v1/tables/{name}").to_polars()
        assert isinstance(got, polars.DataFrame)
        assert_frame_equal(got, polars.read_parquet(data.src / "tables" / name))


def test_parquet_folder_csv_and_sampling(client, data):
    parts = client.dataset("sheaf://test/tables:v1/tables/parts").to_table()
    assert parts.column("id").to_pylist() == list(range(2_500))
    csv = client.dataset("sheaf://test/tables:v1/tables/data.csv")
    assert csv.num_rows is None
    assert csv.to_table().column("id").to_pylist() == list(range(500))
    assert csv.endpoint_rows() == [500]
    sample = client.dataset(NUMBERS, columns=["id"], sample_rows=123, seed=5, partitions=7)
    assert sample.num_rows == 123 and not sample.rows_estimated
    ids = sample.to_table().column("id").to_pylist()
    assert len(ids) == 123 and ids == sorted(ids)
    assert sum(sample.endpoint_rows()) == 123
    again = client.dataset(NUMBERS, columns=["id"], sample_rows=123, seed=5, partitions=2).to_table()
    assert again.column("id").to_pylist() == ids  # same rows whatever the partitioning
    fraction = client.dataset(NUMBERS, sample=0.1, seed=1)
    assert fraction.rows_estimated and "estimated" in repr(fraction)


def test_endpoint_rows_counted_under_a_filter(client, data):
    ds = client.dataset(NUMBERS, columns=["x"], filter="label = 2", partitions=6)
    rows = ds.endpoint_rows()
    assert len(rows) == 6
    assert rows == [t.num_rows for t in (pa.Table.from_batches(list(ds.read_endpoint(i)), ds.schema) for i in range(6))]
    assert sum(rows) == sum(1 for i in range(testdata.NUMBERS) if i % 7 == 2)


def test_planned_endpoint_rows_equal_counted(client, data):
    """Plain Parquet reads know each endpoint's rows from the plan (the
    server's EndpointMetadata.rows); they must agree with counting them. Under
    a filter or a sample fraction the server states none."""
    for uri, partitions in (
        (NUMBERS, 7),
        ("sheaf://test/tables:v1/tables/parts", 4),
        ("sheaf://test/tables:v1/tables/tiny.parquet", None),
        (NUMBERS, None),
    ):
        ds = client.dataset(uri, partitions=partitions)
        assert ds._planned_rows() is not None, uri
        assert ds._planned_rows() == ds._count_rows(), uri
    limited = client.dataset(NUMBERS, limit=1234)
    assert limited.endpoint_rows() == [1234] == limited._count_rows()
    assert [e.rows for e in limited.endpoints] == [1234]
    for unknown in (dict(filter="label = 2"), dict(sample=0.5)):
        ds = client.dataset(NUMBERS, partitions=3, **unknown)
        assert len(ds.endpoints) > 1 and all(e.rows is None for e in ds.endpoints), unknown


def test_progress_bar(client, data, capsys):
    ds = client.dataset(NUMBERS, columns=["id"], partitions=3)
    ds.to_table(progress=True)
    err = capsys.readouterr().err
    assert "test/tables@" in err and "rows" in err
    ds.to_table()  # not a terminal: no bar by default
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def test_read_file(client, data):
    expected = testdata.files()
    assert client.read_file("test/files", "images/img_007.bin") == expected["images/img_007.bin"]
    assert client.read_file("test/files", "docs/it's.txt") == expected["docs/it's.txt"]
    pinned = f"test/files@{data.tops['test/files']}"
    assert client.read_file(pinned, "README.md") == b"# test/files\n"


def test_iterate_files_with_contents(client, data):
    expected = testdata.files()
    images = list(client.files("test/files", prefix="images/"))
    assert [f.logical_key for f in images] == sorted(k for k in expected if k.startswith("images/"))
    for f in images:
        assert f.content == expected[f.logical_key] and f.size == len(f.content) and f.meta == {}
    big = list(client.files("test/files", filter="size > 1500"))
    assert {f.logical_key for f in big} == {k for k, v in expected.items() if len(v) > 1500}
    chosen = list(client.files("test/files", keys=["docs/a.txt", "README.md"]))
    assert {f.logical_key: f.content for f in chosen} == {"docs/a.txt": b"document a\n", "README.md": b"# test/files\n"}


def test_manifest_table_as_a_dataset(client, data):
    ds = client.dataset(package="test/files", content=True, filter="starts_with(logical_key, 'docs/')")
    assert ds.path == "" and "content" in ds.schema.names
    table = ds.to_table()
    assert dict(zip(table.column("logical_key").to_pylist(), table.column("content").to_pylist(), strict=True)) == {
        k: v for k, v in testdata.files().items() if k.startswith("docs/")
    }


def test_column_names_with_commas_and_blanks_round_trip(tmp_path):
    """A typed request names columns exactly; its pinned URI (and keyword
    columns added to a URI) encode a comma or blank inside a name, so every
    form reads the same columns."""
    import sheaf

    from conftest import TIMEOUT, _push, start_server

    table = pa.table({"a,b": [1, 2], " c": ["x", "y"], "d": [3.0, 4.0]})
    src, registry = tmp_path / "src", tmp_path / "registry"
    src.mkdir()
    registry.mkdir()
    pq.write_table(table, src / "t.parquet")
    _push(registry, "odd/columns", src, "odd column names")
    server = start_server(registry, tmp_path / "serve.log")
    try:
        with sheaf.connect(server.url, timeout=TIMEOUT, read_timeout=TIMEOUT) as c:
            want = table.select(["a,b", " c"])
            typed = c.dataset(package="odd/columns", path="t.parquet", columns=["a,b", " c"])
            assert typed.to_table().equals(want)
            assert "columns=%22a,b%22,%22%20c%22" in typed.pinned_uri  # the names quoted: "a,b"," c"
            assert c.dataset(typed.pinned_uri).to_table().equals(want)
            assert c.dataset("sheaf://odd/columns/t.parquet", columns=["a,b", " c"]).to_table().equals(want)
            # A string is the URI's list: split at commas, blanks trimmed.
            assert c.dataset(package="odd/columns", path="t.parquet", columns=" d, ").schema.names == ["d"]
    finally:
        server.stop()
