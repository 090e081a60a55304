"""Deterministic test data for the client's tests (written to folders that
conftest.py pushes as packages), and the tables the write tests write."""

from __future__ import annotations

import decimal
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# tables/numbers.parquet: NUMBERS rows in row groups of NUMBERS_GROUP rows.
NUMBERS = 20_000
NUMBERS_GROUP = 1_000
TINY = 10
FILES = 40


def numbers_table(n: int = NUMBERS) -> pa.Table:
    """Numeric, null-free columns (tensor-friendly) plus one string column."""
    ids = list(range(n))
    rng = random.Random(3)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "x": pa.array([rng.random() for _ in ids], pa.float32()),
            "y": pa.array([i * 0.5 for i in ids], pa.float64()),
            "label": pa.array([i % 7 for i in ids], pa.int32()),
            "flag": pa.array([i % 3 == 0 for i in ids], pa.bool_()),
            "vec": pa.array([[i, i + 0.5, -i] for i in ids], pa.list_(pa.float32(), 3)),
            "name": pa.array([f"n{i}" for i in ids], pa.string()),
        }
    )


def types_table(n: int = 3_000) -> pa.Table:
    """Many column types, with nulls, for round trips."""
    rng = random.Random(1)
    ids = list(range(n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([None if i % 7 == 0 else f"name-{i}-{'é' * (i % 3)}" for i in ids], pa.string()),
            "score": pa.array([None if i % 11 == 0 else i * 0.125 - 100 for i in ids], pa.float64()),
            "ratio": pa.array([i / 3 for i in ids], pa.float32()),
            "flag": pa.array([None if i % 5 == 0 else i % 3 == 0 for i in ids], pa.bool_()),
            "small": pa.array([(i * 7919) % 60000 - 30000 for i in ids], pa.int32()),
            "tiny": pa.array([i % 100 - 50 for i in ids], pa.int8()),
            "u16": pa.array([i % 65536 for i in ids], pa.uint16()),
            "ts": pa.array([1_700_000_000_000_000 + i * 1_000_003 for i in ids], pa.timestamp("us", tz="UTC")),
            "day": pa.array([19000 + i % 400 for i in ids], pa.date32()),
            "tags": pa.array([[i, i + 1][: i % 3] if i % 5 else None for i in ids], pa.list_(pa.int64())),
            "raw": pa.array([rng.randbytes(i % 17) for i in ids], pa.binary()),
            "amount": pa.array(
                [None if i % 13 == 0 else decimal.Decimal(i * 37) / 100 for i in ids], pa.decimal128(12, 2)
            ),
            "point": pa.array(
                [{"x": i, "label": f"p{i % 4}"} for i in ids], pa.struct([("x", pa.int64()), ("label", pa.string())])
            ),
        }
    )


def nulls_table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(100), pa.int64()),
            "v": pa.array([None if i % 10 == 3 else float(i) for i in range(100)], pa.float64()),
        }
    )


def parts() -> dict[str, pa.Table]:
    """A folder of Parquet parts with one schema; ids continue across parts."""
    out, start = {}, 0
    for key, rows in (("parts/a.parquet", 1_200), ("parts/b.parquet", 800), ("parts/c/d.parquet", 500)):
        ids = list(range(start, start + rows))
        out[key] = pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array([i * 2.0 for i in ids], pa.float64())})
        start += rows
    return out


def csv_text(n: int = 500) -> str:
    return "id,x\n" + "".join(f"{i},{i * 0.25}\n" for i in range(n))


def features(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    """A table for the write tests: ids from ``start``, a float, a small int and a string."""
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "x": rng.standard_normal(n),
            "k": rng.integers(0, 50, n).astype(np.int32),
            "name": pa.array([f"n{i % 97}" for i in ids], pa.string()),
        }
    )


def write_tables(root: Path, revision: int = 1) -> None:
    """The test/tables package. Revision 2 changes numbers.parquet's first row
    group (so a pinned v1 read is distinguishable) and adds a file."""
    tables = root / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    numbers = numbers_table()
    if revision == 2:
        numbers = numbers.set_column(2, "y", pa.array([-1.0] * NUMBERS, pa.float64()))
        (root / "CHANGES.md").write_text("revision 2\n")
    pq.write_table(numbers, tables / "numbers.parquet", row_group_size=NUMBERS_GROUP)
    pq.write_table(types_table(), tables / "types.parquet", row_group_size=1_000)
    pq.write_table(numbers_table(TINY).drop_columns(["name"]), tables / "tiny.parquet")
    pq.write_table(nulls_table(), tables / "nulls.parquet")
    for key, table in parts().items():
        path = tables / key
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, row_group_size=300)
    (tables / "data.csv").write_text(csv_text())


def file_bytes(i: int) -> bytes:
    return random.Random(100 + i).randbytes(200 + 37 * i)


def files() -> dict[str, bytes]:
    out = {f"images/img_{i:03}.bin": file_bytes(i) for i in range(FILES)}
    out["docs/a.txt"] = b"document a\n"
    out["docs/it's.txt"] = b"a quote in the name\n"
    out["README.md"] = b"# test/files\n"
    return out


def write_files(root: Path) -> None:
    for key, content in files().items():
        path = root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
