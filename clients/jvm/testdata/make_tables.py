"""Writes the tables the JVM client and Spark connector tests read.

Usage: python make_tables.py OUT_DIR
       python make_tables.py --big OUT_DIR   (only the big table below)

Deterministic (same bytes on every run, no randomness without a seed), and
only pyarrow is needed. Writes:

  OUT_DIR/types/tables/types.parquet     20,000 rows in 8 row groups: every type
                                          Spark takes as it comes (numbers with NaN
                                          and -0.0, strings with quotes, backslashes
                                          and unicode, binary, dates, timestamps with
                                          and without a time zone, decimals, lists,
                                          structs, maps), nulls in every nullable
                                          column, and awkward column names.
  OUT_DIR/types/tables/convert.parquet    types the connector converts (unsigned
                                          integers, milli/nano-second timestamps,
                                          fixed-size binary).
  OUT_DIR/types/tables/convert.arrow      more of them that Parquet cannot hold, as an
                                          Arrow IPC file (half floats, date64, durations in
                                          ms, decimal256, timestamps in seconds, large strings).
  OUT_DIR/types/tables/reject.arrow       types Spark cannot take (time of day, a
                                          list of unsigned integers) next to a plain
                                          column, as an Arrow IPC file.
  OUT_DIR/types/tables/parts/part-N.parquet  three part files of one table.
  OUT_DIR/types/README.md
  OUT_DIR/big/big.parquet (--big)        3,000,000 rows (id int64, x float64 from a
                                          seeded generator) in 15 row groups, about
                                          44 MB: a medium table the server's default
                                          plans as one endpoint.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

ROWS = 20_000
ROW_GROUP = 2_500
STATIONS = ["oslo", "lisbon", "o'hare", "back\\slash", "ünïcødé ✓", "", "percent %41 & plus+"]


def lcg(seed: int):
    """A small deterministic generator of floats in [0, 1)."""
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        yield (state >> 11) / float(1 << 53)


def types_table() -> pa.Table:
    r = lcg(42)
    ids = list(range(ROWS))
    f64 = []
    for i in ids:
        if i % 997 == 0:
            f64.append(None)
        elif i % 1009 == 0:
            f64.append(float("nan"))
        elif i % 1013 == 0:
            f64.append(-0.0)
        elif i % 1019 == 0:
            f64.append(0.0)
        else:
            f64.append(round(next(r) * 200.0 - 100.0, 3))
    epoch = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    columns = {
        "id": pa.array(ids, pa.int64()),
        "i8": pa.array([(i % 256) - 128 for i in ids], pa.int8()),
        "i16": pa.array([None if i % 101 == 0 else (i * 7) % 65536 - 32768 for i in ids], pa.int16()),
        "i32": pa.array([(i * 7919) % 100_000 - 50_000 for i in ids], pa.int32()),
        "f32": pa.array([None if i % 89 == 0 else (i % 1000) / 8.0 - 60.0 for i in ids], pa.float32()),
        "f64": pa.array(f64, pa.float64()),
        "flag": pa.array([None if i % 31 == 0 else i % 3 == 0 for i in ids], pa.bool_()),
        "station": pa.array([None if i % 53 == 0 else STATIONS[i % len(STATIONS)] for i in ids], pa.string()),
        "blob": pa.array(
            [None if i % 47 == 0 else bytes([i % 256, (i * 7) % 256]) * (i % 4) for i in ids], pa.binary()
        ),
        "day": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=i % 2000) for i in ids], pa.date32()),
        "ts": pa.array(
            [None if i % 61 == 0 else epoch + dt.timedelta(seconds=i * 37, microseconds=i % 1_000_000) for i in ids],
            pa.timestamp("us", tz="UTC"),
        ),
        "ts_local": pa.array([dt.datetime(2026, 3, 1) + dt.timedelta(minutes=i) for i in ids], pa.timestamp("us")),
        "amount": pa.array(
            [None if i % 43 == 0 else decimal.Decimal(i * 37 % 1_000_000 - 500_000).scaleb(-3) for i in ids],
            pa.decimal128(12, 3),
        ),
        "tags": pa.array(
            [None if i % 19 == 0 else [STATIONS[(i + k) % len(STATIONS)] for k in range(i % 3)] for i in ids],
            pa.list_(pa.string()),
        ),
        "point": pa.array(
            [None if i % 23 == 0 else {"x": i / 4.0, "y": -i / 8.0} for i in ids],
            pa.struct([("x", pa.float64()), ("y", pa.float64())]),
        ),
        "attrs": pa.array(
            [None if i % 29 == 0 else [(f"k{i % 5}", i % 7)] for i in ids], pa.map_(pa.string(), pa.int32())
        ),
        'odd "name", with comma': pa.array([i % 10 for i in ids], pa.int32()),
        "CamelCase": pa.array([i % 4 for i in ids], pa.int64()),
    }
    schema = pa.schema([pa.field(k, v.type, nullable=(k != "id")) for k, v in columns.items()])
    return pa.Table.from_arrays(list(columns.values()), schema=schema)


def convert_table() -> pa.Table:
    n = 5_000
    ids = list(range(n))
    base_ns = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "u8": pa.array([i % 256 for i in ids], pa.uint8()),
            "u16": pa.array([(i * 13) % 65536 for i in ids], pa.uint16()),
            "u32": pa.array([None if i % 17 == 0 else (i * 2_654_435_761) % (1 << 32) for i in ids], pa.uint32()),
            "u64": pa.array([(i * 11_400_714_819_323_198_485) % (1 << 64) for i in ids], pa.uint64()),
            "ts_ms": pa.array(
                [None if i % 13 == 0 else base_ns // 1_000_000 + i * 1_001 for i in ids], pa.timestamp("ms", tz="UTC")
            ),
            "ts_ns": pa.array([base_ns + i * 1_000_000_007 - 500 for i in ids], pa.timestamp("ns", tz="UTC")),
            "ts_ns_local": pa.array([base_ns + i * 999 for i in ids], pa.timestamp("ns")),
            "fixed": pa.array([bytes([i % 256, (i >> 8) % 256, 7]) for i in ids], pa.binary(3)),
        }
    )


def convert_ipc_table() -> pa.Table:
    """Types Parquet cannot hold (or Spark's Parquet reader refuses), read whole by the server."""
    ids = list(range(1_000))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "half": pa.array([None if i % 9 == 0 else (i % 64) / 4.0 for i in ids], pa.float16()),
            "day_ms": pa.array([None if i % 7 == 0 else (i - 500) * 86_400_000 for i in ids], pa.date64()),
            "dur_ms": pa.array([(i - 500) * 1_001 for i in ids], pa.duration("ms")),
            "dec256": pa.array([decimal.Decimal(i * 12_345 - 6_000_000).scaleb(-2) for i in ids], pa.decimal256(30, 2)),
            "ts_s": pa.array([1_767_225_600 + i * 3_600 for i in ids], pa.timestamp("s", tz="UTC")),
            "big": pa.array([f"v{i}" for i in ids], pa.large_string()),
        }
    )


def reject_table() -> pa.Table:
    ids = list(range(100))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "clock": pa.array([dt.time(i % 24, i % 60) for i in ids], pa.time64("us")),
            "counts": pa.array([[i, i + 1] for i in ids], pa.list_(pa.uint32())),
        }
    )


def main(out: Path) -> None:
    tables = out / "types" / "tables"
    (tables / "parts").mkdir(parents=True, exist_ok=True)
    t = types_table()
    pq.write_table(t, tables / "types.parquet", row_group_size=ROW_GROUP, compression="snappy")
    pq.write_table(
        convert_table(),
        tables / "convert.parquet",
        row_group_size=1_000,
        coerce_timestamps=None,
        allow_truncated_timestamps=False,
    )
    for name, table in [("reject.arrow", reject_table()), ("convert.arrow", convert_ipc_table())]:
        with ipc.new_file(tables / name, table.schema) as w:
            w.write_table(table)
    part = t.select(["id", "i32", "station"])
    for k in range(3):
        pq.write_table(part.slice(k * 1000, 1000), tables / "parts" / f"part-{k}.parquet", row_group_size=250)
    (out / "types" / "README.md").write_text("Test tables of the Sheaf JVM client and Spark connector.\n")


def big(out: Path) -> None:
    import pyarrow.compute as pc

    rows, groups = 3_000_000, 15
    (out / "big").mkdir(parents=True, exist_ok=True)
    t = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "x": pc.random(rows, initializer=7),
        }
    )
    pq.write_table(t, out / "big" / "big.parquet", row_group_size=rows // groups, compression="snappy")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--big":
        big(Path(sys.argv[2]))
    elif len(sys.argv) == 2:
        main(Path(sys.argv[1]))
    else:
        sys.exit("usage: make_tables.py [--big] OUT_DIR")
