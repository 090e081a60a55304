"""Writes against the real server, what they write: `client.write` of every
kind of data (tables, batches, readers, iterables, pandas and polars), what
the client and the server refuse, write modes (and `base=`), and the profile
each table gets in its manifest entry.

Write sessions, commit retries, lineage and quilt3 reading what was written:
test_write_sessions.py.

Every test writes packages of its own (`w/<test>...`) into the shared test
server's registry."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import sheaf

import testdata
from conftest import hashes, read
from testdata import features

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def plain(table: pa.Table) -> pa.Table:
    """A table without schema metadata (the server does not serve it back)."""
    return table.replace_schema_metadata(None)


# ---------------------------------------------------------------------------
# client.write: every kind of data round-trips
# ---------------------------------------------------------------------------


def test_write_a_table_returns_the_new_revision(client, data):
    table = testdata.types_table()
    result = client.write("sheaf://w/table/tables/types.parquet", table, message="types", metadata={"team": "ml"})
    assert isinstance(result, str) and isinstance(result, sheaf.WriteResult)
    assert result == result.top_hash == client.resolve("w/table")
    assert result.package == "w/table" and result.previous is None
    assert result.uri.startswith(f"sheaf://w/table@{result.top_hash}/tables/types.parquet")
    assert result.uris == (result.uri,) and result.rows == table.num_rows and result.bytes > 0
    assert result.ref == f"w/table@{result.top_hash}" and result.top_hash in repr(result)
    got = read(client, result.uri)
    assert got.schema == plain(table).schema
    assert got.equals(plain(table))
    rev = client.browse(result.ref)
    assert rev.message == "types" and rev.user_meta["team"] == "ml"
    assert [e.logical_key for e in rev.entries] == ["tables/types.parquet"]
    (latest,) = client.list_revisions("w/table")
    assert latest.top_hash == result and latest.message == "types"


def test_write_without_scheme_and_of_a_record_batch(client, data):
    batch = features(1_000).to_batches()[0]
    result = client.write("w/batch/one.parquet", batch)
    assert read(client, "sheaf://w/batch/one.parquet").equals(pa.Table.from_batches([batch]))
    assert result.previous is None


def test_write_pandas_round_trips(client, data):
    import pandas

    df = pandas.DataFrame(
        {
            "id": np.arange(500, dtype=np.int64),
            "score": [None if i % 7 == 0 else i * 0.5 for i in range(500)],
            "name": [None if i % 5 == 0 else f"row {i} é" for i in range(500)],
            "flag": [i % 3 == 0 for i in range(500)],
            "day": pandas.date_range("2026-01-01", periods=500, freq="h"),
            "cat": pandas.Categorical([["a", "b", "c"][i % 3] for i in range(500)]),
        }
    )
    result = client.write("sheaf://w/pandas/frame.parquet", df)
    got = client.dataset(result.uri).to_pandas()
    # The server serves dictionary columns decoded: a categorical comes back as its values.
    assert got["cat"].tolist() == df["cat"].tolist()
    got["cat"] = got["cat"].astype(df["cat"].dtype)
    pandas.testing.assert_frame_equal(got, df)


def test_write_polars_round_trips(client, data):
    import polars
    from polars.testing import assert_frame_equal

    df = polars.DataFrame(
        {
            "id": list(range(400)),
            "x": [None if i % 9 == 0 else i / 3 for i in range(400)],
            "s": [f"s{i}" if i % 4 else None for i in range(400)],
            "tags": [[i, i + 1][: i % 3] for i in range(400)],
        }
    )
    result = client.write("sheaf://w/polars/frame.parquet", df)
    assert_frame_equal(client.dataset(result.uri).to_polars(), df)


def test_write_an_iterable_of_batches_into_a_folder(client, data):
    tables = [features(700, start=700 * i, seed=i) for i in range(5)]
    result = client.write("sheaf://w/iterable/events", (t.to_batches()[0] for t in tables))
    got = read(client, "sheaf://w/iterable/events")
    assert got.equals(pa.concat_tables(tables))
    (key,) = result.keys
    assert key.startswith("events/part-") and key.endswith(".parquet")
    assert [e.logical_key for e in client.browse("w/iterable").entries] == [key]


def test_a_reader_of_many_batches_is_streamed_not_gathered(client, data):
    """A RecordBatchReader of 40 batches of 4 MB: the batches go to the
    server as they are made, so Arrow memory never holds more than a few."""
    rows, batches = 125_000, 40
    base = pa.array(np.arange(rows, dtype=np.int64))
    batch_bytes = 4 * rows * 8
    start = pa.total_allocated_bytes()
    peak = [0]
    made = [0]

    def generate():
        for i in range(batches):
            # Allocated in Arrow's pool (pa.total_allocated_bytes counts it).
            cols = [pc.add(base, i * rows), pc.multiply(base, 2), pc.add(base, 7), pc.subtract(base, i)]
            batch = pa.RecordBatch.from_arrays(cols, names=["id", "a", "b", "c"])
            del cols
            peak[0] = max(peak[0], pa.total_allocated_bytes() - start)
            made[0] += 1
            yield batch

    schema = pa.schema([("id", pa.int64()), ("a", pa.int64()), ("b", pa.int64()), ("c", pa.int64())])
    result = client.write("sheaf://w/stream/big", pa.RecordBatchReader.from_batches(schema, generate()))
    assert made[0] == batches and result.rows == rows * batches
    assert peak[0] < 6 * batch_bytes, f"Arrow memory grew by {peak[0]:,} B writing {batches * batch_bytes:,} B"
    got = client.dataset("sheaf://w/stream/big", columns=["id"]).to_table().column("id")
    assert got.to_numpy().tolist() == list(range(rows * batches))


def test_a_failing_data_source_leaves_no_revision(client, data):
    client.write("w/fails/t.parquet", features(10))
    before = hashes(client, "w/fails")

    def broken():
        yield features(10).to_batches()[0]
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        client.write("w/fails/t.parquet", broken())
    with pytest.raises(RuntimeError, match="source broke"):
        client.write("w/fails/new", broken())
    assert hashes(client, "w/fails") == before


@pytest.mark.parametrize(
    "target,data_,match",
    [
        ("w/bad", features(3), "names no table"),
        ("sheaf://w/bad/", features(3), "names no table"),
        ("s3://w/bad/t.parquet", features(3), "no other scheme"),
        ("sheaf://w/bad/t.parquet?columns=a", features(3), "no query"),
        ("w//t.parquet", features(3), "owner/name"),
        ("bad/t.parquet", features(3), "names no table"),
        ("w/bad/t.parquet", "not data", "cannot write a builtins.str"),
        ("w/bad/t.parquet", {"a": [1]}, "cannot write a builtins.dict"),
        ("w/bad/t.parquet", iter([]), "no record batch"),
        ("w/bad/t.parquet", [features(3).to_batches()[0], features(3).select(["id", "k"]).to_batches()[0]], "'x'"),
        ("w/bad/t.parquet", [1, 2], "not a pyarrow.RecordBatch"),
    ],
)
def test_bad_writes_are_refused_by_the_client(client, data, target, data_, match):
    with pytest.raises(sheaf.InvalidArgumentError, match=match) as e:
        client.write(target, data_)
    assert e.value.code == "CLIENT"
    assert hashes(client, "w/bad") == []


def test_a_dataframe_arrow_cannot_hold_is_refused_naming_the_column(client, data):
    import pandas

    df = pandas.DataFrame({"id": [1, 2], "mixed": [1, "two"]})
    with pytest.raises(sheaf.InvalidArgumentError, match="mixed") as e:
        client.write("w/bad/t.parquet", df)
    assert e.value.code == "CLIENT" and hashes(client, "w/bad") == []


def test_bad_options_are_refused(client, data):
    with pytest.raises(sheaf.InvalidArgumentError, match="mode='upsert'"):
        client.write("w/bad/t.parquet", features(3), mode="upsert")
    with pytest.raises(sheaf.InvalidArgumentError, match="metadata= must be a dict"):
        client.write("w/bad/t.parquet", features(3), metadata=["x"])
    with pytest.raises(sheaf.InvalidArgumentError, match="not JSON"):
        client.write("w/bad/t.parquet", features(3), metadata={"x": float("nan")})
    with pytest.raises(sheaf.InvalidArgumentError, match="derived_from"):
        client.write("w/bad/t.parquet", features(3), derived_from=[42])
    assert hashes(client, "w/bad") == []


def test_a_column_parquet_cannot_store_is_refused_by_the_server(client, data):
    interval = pa.array([(1, 2, 3), None], pa.month_day_nano_interval())
    table = pa.table({"id": [1, 2], "span": interval})
    with pytest.raises(sheaf.InvalidArgumentError) as e:
        client.write("w/badcol/t.parquet", table)
    assert e.value.code == "INVALID_ARGUMENT" and e.value.reason == "INVALID_REQUEST"
    assert e.value.column == "span" and "span" in e.value.server_message
    assert hashes(client, "w/badcol") == []


# ---------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------


def test_mode_error_refuses_an_existing_table(client, data):
    first = client.write("w/modes-error/t.parquet", features(10), mode="error")
    client.write("w/modes-error/f", features(10), mode="error")
    for target in ("w/modes-error/t.parquet", "w/modes-error/f"):
        with pytest.raises(sheaf.AlreadyExistsError) as e:
            client.write(target, features(3), mode="error")
        assert e.value.reason == "ALREADY_EXISTS" and isinstance(e.value, FileExistsError)
        assert e.value.path == target.split("/", 2)[2] and e.value.package == "w/modes-error"
    assert len(hashes(client, "w/modes-error")) == 2 and first in hashes(client, "w/modes-error")
    client.write("w/modes-error/other.parquet", features(3), mode="error")  # a new table is fine


def test_mode_append_and_overwrite(client, data):
    a, b, c = features(100, seed=1), features(50, start=100, seed=2), features(7, start=500, seed=3)
    client.write("w/modes/f", a)
    client.write("w/modes/f", b)  # append is the default
    assert read(client, "sheaf://w/modes/f").equals(pa.concat_tables([a, b]))
    assert len(client.browse("w/modes", prefix="f/").entries) == 2
    client.write("w/modes/f", c, mode="overwrite")
    assert read(client, "sheaf://w/modes/f").equals(c)
    assert len(client.browse("w/modes", prefix="f/").entries) == 1
    client.write("w/modes/t.parquet", a)
    client.write("w/modes/t.parquet", c, mode="append")  # a file is replaced
    assert read(client, "sheaf://w/modes/t.parquet").equals(c)
    client.write("w/modes/t.parquet", b, mode="overwrite")
    assert read(client, "sheaf://w/modes/t.parquet").equals(b)
    assert len(client.list_revisions("w/modes")) == 6


def test_append_with_another_schema_names_the_column(client, data):
    client.write("w/schema/f", features(10))
    before = hashes(client, "w/schema")
    other = features(10).set_column(1, "x", pa.array([str(i) for i in range(10)]))
    with pytest.raises(sheaf.SchemaMismatchError) as e:
        client.write("w/schema/f", other)
    assert e.value.reason == "SCHEMA_MISMATCH" and e.value.column == "x" and isinstance(e.value, ValueError)
    assert "x" in e.value.server_message
    with pytest.raises(sheaf.SchemaMismatchError) as e:
        client.write("w/schema/f", features(10).append_column("extra", pa.array(range(10))))
    assert e.value.column == "extra" and e.value.path == "f"
    assert hashes(client, "w/schema") == before
    client.write("w/schema/f", other, mode="overwrite")  # replacing the table is fine
    assert read(client, "sheaf://w/schema/f").schema == other.schema


def test_base_must_still_be_latest(client, data):
    first = client.write("w/base/t.parquet", features(3))
    second = client.write(f"w/base@{first[:10]}/t.parquet", features(4))  # first is latest: fine
    with pytest.raises(sheaf.SheafError) as e:
        client.write("w/base/u.parquet", features(5), base=first)
    assert e.value.reason == "LATEST_MOVED"
    assert hashes(client, "w/base") == [second, first]


# ---------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------


def profile_table(n: int = 20_000) -> pa.Table:
    rng = np.random.default_rng(11)
    return pa.table(
        {
            "i": pa.array(rng.integers(-1000, 1000, n), pa.int64()),
            "f": pa.array([None if i % 13 == 0 else v for i, v in enumerate(rng.normal(5, 2, n))], pa.float64()),
            "s": pa.array([None if i % 17 == 0 else f"w{v}" for i, v in enumerate(rng.integers(0, 3000, n))]),
            "u": pa.array(rng.integers(0, 100, n).astype(np.uint8)),
        }
    )


def test_every_written_table_has_a_profile_matching_pandas(client, data):
    table = profile_table()
    result = client.write("w/profile/t.parquet", table)
    (entry,) = client.browse(result.ref).entries
    profile = entry.profile
    assert profile is not None and profile == entry.meta["sheaf"]["profile"]
    df = table.to_pandas()
    assert profile["rows"] == len(df)
    columns = {c["name"]: c for c in profile["columns"]}
    assert list(columns) == list(df.columns)
    nulls = df.isna().sum()
    described = df.describe()
    for name in df.columns:
        col = columns[name]
        assert col["nulls"] == nulls[name], name
        assert abs(col["distinct"] - df[name].nunique()) <= 0.03 * df[name].nunique() + 1, (name, col["distinct"])
        if name == "s":
            assert col["min"] == df[name].min() and col["max"] == df[name].max()
            continue
        assert col["min"] == described[name]["min"] and col["max"] == described[name]["max"], name
        assert math.isclose(col["mean"], described[name]["mean"], rel_tol=1e-9), name
        assert math.isclose(col["std"], described[name]["std"], rel_tol=1e-9), name  # sample std (ddof=1)
        quantiles = col["quantiles"]  # from a sample: approximate, in order, within [min, max]
        assert len(quantiles) == 21 and quantiles == sorted(quantiles), name
        assert quantiles[0] >= col["min"] and quantiles[-1] <= col["max"], name
        assert abs(quantiles[10] - df[name].median()) <= 0.1 * described[name]["std"] + 1, name
