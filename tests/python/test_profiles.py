"""Data profiles and drift: every table the server writes carries a profile in
its manifest entry (`meta.sheaf.profile`) whose statistics equal pandas' own
on the same data, the same data always gets the same profile bytes, and
`sheaf diff A B --profile` flags a shifted column and not a resampled one
(text, --json and a self-contained --html report)."""

from __future__ import annotations

import datetime as dt
import json

import flight_testlib as fl
import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from flight_testlib import OPTIONS
from sheaf_testlib import Sheaf

QUANTILES = [i / 20 for i in range(21)]


@pytest.fixture
def server(registry, flight_server):
    return flight_server(registry)


def put(client, target: str, table: pa.Table, chunk: int = 1000) -> dict:
    """A single-shot DoPut of `table` to `sheaf://OWNER/NAME/PATH`."""
    writer, reader = client.do_put(flight.FlightDescriptor.for_command(target), table.schema, OPTIONS)
    writer.write_table(table, max_chunksize=chunk)
    writer.done_writing()
    result = reader.read()
    writer.close()
    return json.loads(result.to_pybytes())


def entries(client, ref: str) -> dict[str, dict]:
    """`browse`: logical key -> entry metadata (parsed)."""
    listing = fl.action(client, "browse", {"ref": ref})
    metas = {e["logical_key"]: e.get("meta") for e in listing["entries"]}
    # The JSON answer holds the metadata as an object (protobuf: as JSON text).
    return {k: json.loads(m) if isinstance(m, str) else m for k, m in metas.items()}


def profile_of(client, ref: str, key: str) -> dict:
    meta = entries(client, ref)[key]
    assert meta and "profile" in meta.get("sheaf", {}), f"{ref} {key}: no sheaf.profile in {meta}"
    return meta["sheaf"]["profile"]


def column(profile: dict, name: str) -> dict:
    found = [c for c in profile["columns"] if c["name"] == name]
    assert len(found) == 1, f"{name} not in {[c['name'] for c in profile['columns']]}"
    return found[0]


def sample_table(n: int = 4000, seed: int = 1) -> pa.Table:
    """Mixed types with nulls; string counts are all different so that
    pandas' value_counts order is unambiguous."""
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 3.0, n)
    x_mask = rng.random(n) < 0.05
    i = rng.integers(-1000, 1000, n)
    i_mask = rng.random(n) < 0.1
    # Word k (of 40) occurs 2 (k + 1) times, the other rows are null: all
    # counts differ, so value_counts' order is unambiguous.
    words = [f"word{k:02d}" for k in range(40) for _ in range(2 * (k + 1))]
    s = [None if j >= len(words) else words[j] for j in rng.permutation(n)]
    start = dt.date(2024, 1, 1)
    return pa.table(
        {
            "x": pa.array(x, pa.float64(), mask=x_mask),
            "i": pa.array(i, pa.int64(), mask=i_mask),
            "s": pa.array(s, pa.string()),
            "b": pa.array([bool(v) for v in rng.random(n) < 0.3], pa.bool_()),
            "d": pa.array([start + dt.timedelta(days=int(v)) for v in rng.integers(0, 365, n)], pa.date32()),
            "ts": pa.array(
                [dt.datetime(2024, 1, 1) + dt.timedelta(seconds=int(v)) for v in rng.integers(0, 10**7, n)],
                pa.timestamp("us"),
            ),
            "tags": pa.array([[j % 3] if j % 4 else None for j in range(n)], pa.list_(pa.int64())),
        }
    )


def test_profile_equals_pandas_statistics(server):
    c = server.client
    table = sample_table()
    put(c, "sheaf://prof/stats/t.parquet", table)
    profile = profile_of(c, "prof/stats", "t.parquet")
    df = table.to_pandas()
    assert profile["rows"] == len(df)
    assert [col["name"] for col in profile["columns"]] == table.column_names

    for name in ("x", "i"):
        col, series = column(profile, name), df[name]
        assert col["kind"] == "number"
        assert profile["rows"] - col["nulls"] - col.get("nan", 0) == series.count(), name
        assert col["nulls"] == series.isna().sum(), name
        assert col["min"] == series.min() and col["max"] == series.max(), name
        assert col["mean"] == pytest.approx(series.mean(), rel=1e-12), name
        assert col["std"] == pytest.approx(series.std(ddof=1), rel=1e-12), name
        assert abs(col["distinct"] - series.nunique()) <= 0.05 * series.nunique(), name
        # Fewer rows than the sample holds: the quantiles are exact.
        assert col["quantiles"] == pytest.approx(series.quantile(QUANTILES).tolist(), rel=1e-12), name
    assert isinstance(column(profile, "i")["min"], int)

    s, series = column(profile, "s"), df["s"]
    assert (s["kind"], s["nulls"]) == ("string", series.isna().sum())
    assert (s["min"], s["max"]) == (series.min(), series.max())
    assert abs(s["distinct"] - series.nunique()) <= 0.05 * series.nunique()
    counts = series.value_counts()
    assert len(set(counts.head(11).tolist())) == 11, "test data: the top counts must differ"
    assert [(t["value"], t["count"]) for t in s["top"]] == list(counts.head(10).items())

    b = column(profile, "b")
    counts = df["b"].value_counts()
    assert (b["true"], b["false"]) == (counts[True], counts[False])
    assert [(t["value"], t["count"]) for t in b["top"]] == list(counts.items())

    d = column(profile, "d")
    assert (d["kind"], d["min"], d["max"]) == ("temporal", str(df["d"].min()), str(df["d"].max()))
    ts = column(profile, "ts")
    assert (ts["min"], ts["max"]) == (df["ts"].min().isoformat(), df["ts"].max().isoformat())
    assert abs(ts["distinct"] - df["ts"].nunique()) <= 0.05 * df["ts"].nunique()

    tags = column(profile, "tags")
    assert (tags["kind"], tags["nulls"]) == ("other", df["tags"].isna().sum())
    assert set(tags) == {"name", "type", "kind", "nulls"}


def test_nan_and_infinity_are_never_written(server, registry):
    c = server.client
    table = pa.table({"f": pa.array([1.0, float("nan"), float("inf"), None, -2.0], pa.float64())})
    put(c, "sheaf://prof/odd/t.parquet", table)
    f = column(profile_of(c, "prof/odd", "t.parquet"), "f")
    assert (f["nulls"], f["nan"], f["min"]) == (1, 1, -2.0)
    # JSON cannot hold an infinite max or mean: left out rather than written.
    assert "max" not in f and "mean" not in f and "std" not in f
    manifests = list((registry / ".quilt" / "packages").iterdir())
    for m in manifests:
        text = m.read_text()
        assert "NaN" not in text and "Infinity" not in text, m


def test_same_data_gets_the_same_profile_in_every_process(server, registry, tmp_path, flight_server):
    """The profile is part of the top hash: the same rows, sent in other
    batch sizes to another server process, give the same profile bytes."""
    table = sample_table(n=9000, seed=3)  # beyond the quantile sample: estimates
    put(server.client, "sheaf://prof/same/t.parquet", table, chunk=1000)
    other_registry = tmp_path / "other"
    other_registry.mkdir()
    other = flight_server(other_registry)
    put(other.client, "sheaf://prof/same/t.parquet", table, chunk=777)
    first = profile_of(server.client, "prof/same", "t.parquet")
    second = profile_of(other.client, "prof/same", "t.parquet")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def drift_table(n: int, seed: int, shift: float, extra: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns = {
        "shifted": pa.array(rng.normal(shift, 1.0, n)),
        "stable": pa.array(rng.normal(0.0, 1.0, n)),
        "city": pa.array(rng.choice(["paris", "lyon", "nice", "lille"], n, p=[0.4, 0.3, 0.2, 0.1])),
    }
    if extra:
        columns["added"] = pa.array(np.arange(n))
    return pa.table(columns)


def test_diff_profile_flags_a_shifted_column_and_not_a_stable_one(server, registry, tmp_path):
    c = server.client
    put(c, "sheaf://prof/drift/same.parquet", drift_table(1000, 9, 0.0))
    first = put(c, "sheaf://prof/drift/t.parquet", drift_table(5000, 1, 0.0))["top_hash"]
    second = put(c, "sheaf://prof/drift/t.parquet", drift_table(5000, 2, 1.0, extra=True))["top_hash"]
    sheaf = Sheaf(str(registry))
    a, b = f"prof/drift@{first}", f"prof/drift@{second}"

    report = sheaf.json("diff", a, b, "--profile")
    assert report["modified"] == ["t.parquet"]
    [t] = report["profile"]["tables"]
    assert report["profile"]["unchanged"] == ["same.parquet"] and report["profile"]["unprofiled"] == []
    assert t["path"] == "t.parquet" and t["rows"] == [5000, 5000] and t["parts"] == [1, 1]
    assert t["drifted"] == ["shifted"]
    assert t["schema"] == [{"change": "added", "column": "added", "type": "Int64"}]
    by_name = {col["column"]: col for col in t["columns"]}
    assert by_name["shifted"]["psi"] > 0.2 and by_name["shifted"]["ks"] > 0.2
    assert by_name["stable"]["psi"] < 0.1 and not by_name["stable"]["drifted"]
    assert by_name["city"]["psi"] < 0.1 and not by_name["city"]["drifted"]

    text = sheaf.ok("diff", a, b, "--profile").stdout
    assert "profile t.parquet: rows 5000 -> 5000, 1 drifted: shifted" in text
    assert "  + added (Int64)" in text and "profile unchanged: same.parquet" in text
    assert any(line.startswith("  ! shifted") for line in text.splitlines()), text
    assert any(line.startswith("    stable") for line in text.splitlines()), text

    # Without --profile the diff is what it always was.
    assert "profile" not in sheaf.json("diff", a, b)

    page = tmp_path / "drift.html"
    written = sheaf.json("diff", a, b, "--html", str(page))
    assert written["html"] == str(page) and written["profile"]["tables"][0]["drifted"] == ["shifted"]
    html = page.read_text()
    assert html.count("<svg") == 1 and "shifted" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_diff_profile_merges_folder_parts(server, registry):
    """A folder table written in parts by a write session is one table: its
    parts' profiles are merged (rows summed) and compared as a whole."""
    c = server.client

    def write(seed: int, shift: float) -> str:
        session = fl.action(c, "begin_write", {"package": "prof/parts", "mode": "overwrite"})["session"]
        for part in range(3):
            target = f"sheaf://prof/parts/features?session={session}&part={part}"
            put(c, target, drift_table(2000, seed * 10 + part, shift))
        return fl.action(c, "commit_write", {"session": session, "parts": []})["top_hash"]

    first, second = write(1, 0.0), write(2, 2.0)
    parts = [k for k in entries(c, f"prof/parts@{second}") if k.startswith("features/")]
    assert len(parts) == 3
    report = Sheaf(str(registry)).json("diff", f"prof/parts@{first}", f"prof/parts@{second}", "--profile")
    [t] = report["profile"]["tables"]
    assert (t["path"], t["parts"], t["rows"]) == ("features", [3, 3], [6000, 6000])
    assert t["drifted"] == ["shifted"] and t["schema"] == []


def test_push_profiles_parquet_and_csv(sheaf, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    table = drift_table(300, 5, 0.0)
    pq.write_table(table, src / "t.parquet")
    table.to_pandas().to_csv(src / "t.csv", index=False)
    (src / "notes.txt").write_text("not a table")
    sheaf.push("prof/pushed", src)
    listing = {e["logical_key"]: e["meta"] for e in sheaf.json("browse", "prof/pushed")["entries"]}
    df = table.to_pandas()
    for key in ("t.parquet", "t.csv"):
        profile = listing[key]["sheaf"]["profile"]
        assert profile["rows"] == 300, key
        stable = column(profile, "stable")
        assert stable["mean"] == pytest.approx(df["stable"].mean(), rel=1e-9), key
        assert stable["std"] == pytest.approx(df["stable"].std(), rel=1e-9), key
    assert "sheaf" not in (listing["notes.txt"] or {})


def test_tables_without_a_profile_are_named_not_compared(sheaf, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(drift_table(200, 1, 0.0), src / "t.parquet")
    first = sheaf.push("prof/old", src, "--no-profile")["top_hash"]
    pq.write_table(drift_table(200, 2, 3.0), src / "t.parquet")
    second = sheaf.push("prof/old", src)["top_hash"]
    a, b = f"prof/old@{first}", f"prof/old@{second}"
    report = sheaf.json("diff", a, b, "--profile")["profile"]
    assert (report["tables"], report["unchanged"], report["unprofiled"]) == ([], [], ["t.parquet"])
    assert "profile t.parquet: no stored profile, not compared" in sheaf.ok("diff", a, b, "--profile").stdout
