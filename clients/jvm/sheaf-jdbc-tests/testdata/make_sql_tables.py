"""Writes the two packages the Flight SQL JDBC tests query.

Usage: python make_sql_tables.py OUT_DIR

Deterministic (same bytes on every run), only pyarrow is needed. Writes:

  OUT_DIR/sales/tables/sales.parquet    1,000 rows, 4 row groups:
      id int64 (0..999), store_id int32 (id % 5 + 1), item string (apple, pear, fig, "o'range"
      by id % 4), qty int32 (id % 7 + 1), price float64 ((id % 13) * 0.5 + 1.25),
      sold_on date32 (2026-01-01 plus id % 31 days)
  OUT_DIR/stores/tables/stores.parquet  5 rows: store_id int32 (1..5), city string, opened date32

The JDBC tests compute the values they expect from the same formulas (SqlFixture in Java).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SALES_ROWS = 1_000
ITEMS = ["apple", "pear", "fig", "o'range"]
CITIES = ["oslo", "lisbon", "o'hare", "ünïcødé", "paris"]
EPOCH = dt.date(2026, 1, 1)


def sales() -> pa.Table:
    """The sales table (formulas in the module docstring)."""
    ids = list(range(SALES_ROWS))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "store_id": pa.array([i % 5 + 1 for i in ids], pa.int32()),
            "item": pa.array([ITEMS[i % 4] for i in ids], pa.string()),
            "qty": pa.array([i % 7 + 1 for i in ids], pa.int32()),
            "price": pa.array([(i % 13) * 0.5 + 1.25 for i in ids], pa.float64()),
            "sold_on": pa.array([EPOCH + dt.timedelta(days=i % 31) for i in ids], pa.date32()),
        }
    )


def stores() -> pa.Table:
    """The stores table: one row per store of the sales table."""
    return pa.table(
        {
            "store_id": pa.array(range(1, 6), pa.int32()),
            "city": pa.array(CITIES, pa.string()),
            "opened": pa.array([dt.date(2020 + i, 1 + i, 1 + i) for i in range(5)], pa.date32()),
        }
    )


def main(out: Path) -> None:
    """Writes both packages under ``out``."""
    for name, table, rows_per_group in (("sales", sales(), 250), ("stores", stores(), 5)):
        folder = out / name / "tables"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"{name}.parquet", row_group_size=rows_per_group)
        (out / name / "README.md").write_text(f"JDBC test package {name}.\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
