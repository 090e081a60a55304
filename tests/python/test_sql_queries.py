"""Flight SQL answers equal DuckDB's: each query runs through the ADBC Flight SQL driver against `sheaf serve` and
through DuckDB over the very same local Parquet files (sql_lib.duck_connection mirrors Sheaf's names as DuckDB
schemas and views, so most statements run unchanged on both engines), and the results are compared with
sql_lib.assert_same_result (type-tolerant: see sql_lib.normalize_value).

Run from the repository root:

    SHEAF_BIN=/path/to/sheaf python -m pytest -q tests/python/test_sql_queries.py

Where the dialects differ legitimately the DuckDB statement is written out (third element of Q) and a comment says
why. The table function `sheaf('sheaf://...')` with `sample=` is compared with a plain Flight DoGet of the same URI.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import flight_testlib as fl
import pytest
import sql_lib as sl

ORD = '"sql/sales"."tables/orders.parquet"'
ITM = '"sql/sales"."tables/items"'
STO = '"sql/stores"."tables/stores.parquet"'  # latest = v2
STO1 = '"sql/stores@{v1}"."tables/stores.parquet"'
STO2 = '"sql/stores@{v2}"."tables/stores.parquet"'
MAN = '"sql/sales"."_manifest"'
ORDERS_URI = "sheaf://sql/sales/tables/orders.parquet"


@dataclass
class Q:
    """A query: its Sheaf SQL (a template: {v1}, {v2}, ... from SqlData.placeholders), and the DuckDB SQL giving
    the same answer (None: the same statement). `ordered`: compare row order too (the query's ORDER BY keys are
    unique)."""

    name: str
    sql: str
    duckdb: str | None = None
    ordered: bool = False


def _enc(v: str) -> str:
    return urllib.parse.quote(v, safe="")


QUERIES = [
    # ---- filters
    Q("filter_count", f"SELECT count(*) AS n FROM {ORD} WHERE quantity > 10 AND category = 'toys'"),
    Q("filter_rows", f"SELECT order_id, product, unit_price, order_ts FROM {ORD} WHERE unit_price BETWEEN 100 AND 101"),
    Q(
        "filter_in_like",
        f"SELECT order_id, product, store_id FROM {ORD} "
        "WHERE (product IN ('Café crème', '日本茶') AND order_id < 3000) OR (product LIKE 'prod-1%' AND store_id = 7 "
        "AND quantity = 3)",
    ),
    Q("filter_ilike", f"SELECT count(*) AS n FROM {ORD} WHERE product ILIKE 'PROD-0%' AND note LIKE 'note 1%'"),
    Q("filter_bool", f"SELECT count(*) AS n, sum(quantity) AS q FROM {ORD} WHERE is_returned AND NOT (store_id > 30)"),
    # ---- aggregates
    Q(
        "agg_global",
        f"SELECT count(*) AS n, count(quantity) AS nq, sum(quantity) AS sq, min(unit_price) AS lo, "
        f"max(unit_price) AS hi, avg(unit_price) AS mean, min(order_date) AS first_day, max(order_ts) AS last_ts "
        f"FROM {ORD}",
    ),
    Q(
        "group_by_category",
        f"SELECT category, count(*) AS n, sum(quantity) AS q, avg(unit_price) AS p FROM {ORD} GROUP BY category",
    ),
    Q(
        "group_by_having",
        f"SELECT store_id, count(*) AS n FROM {ORD} GROUP BY store_id HAVING count(*) > 2000 ORDER BY store_id",
        ordered=True,
    ),
    Q(
        "group_by_two_keys",
        f"SELECT category, is_returned, count(*) AS n, sum(unit_price * quantity) AS revenue FROM {ORD} "
        "GROUP BY category, is_returned",
    ),
    Q(
        "count_distinct",
        f"SELECT store_id, count(DISTINCT customer_id) AS customers, count(DISTINCT product) AS products "
        f"FROM {ORD} GROUP BY store_id",
    ),
    Q(
        "stddev_var",
        f"SELECT category, stddev_samp(unit_price) AS sd, var_pop(unit_price) AS vp FROM {ORD} GROUP BY category",
    ),
    Q(
        "bool_aggregates",
        f"SELECT store_id, bool_or(is_returned) AS any_ret, bool_and(is_returned) AS all_ret, "
        f"sum(CASE WHEN is_returned THEN 1 ELSE 0 END) AS n_ret FROM {ORD} GROUP BY store_id",
    ),
    Q(
        "rollup",
        f"SELECT category, is_returned, count(*) AS n FROM {ORD} GROUP BY ROLLUP (category, is_returned)",
    ),
    # ---- joins (across packages, folder table, semi/anti)
    Q(
        "join_across_packages",
        f"SELECT s.city, count(*) AS n, sum(o.quantity) AS q FROM {ORD} o JOIN {STO} s ON o.store_id = s.store_id "
        "GROUP BY s.city",
    ),
    Q(
        "left_join_unmatched",
        f"SELECT o.store_id, count(*) AS n FROM {ORD} o LEFT JOIN {STO} s ON o.store_id = s.store_id "
        "WHERE s.store_id IS NULL GROUP BY o.store_id",
    ),
    Q(
        "join_folder_table",
        f"SELECT o.category, count(*) AS lines, sum(i.qty) AS units FROM {ITM} i JOIN {ORD} o USING (order_id) "
        "GROUP BY o.category",
    ),
    Q(
        "anti_join_not_exists",
        f"SELECT count(*) AS n FROM {ITM} i WHERE NOT EXISTS (SELECT 1 FROM {ORD} o WHERE o.order_id = i.order_id)",
    ),
    Q(
        "semi_join_in",
        f"SELECT count(*) AS n, sum(qty) AS q FROM {ITM} WHERE order_id IN "
        f"(SELECT order_id FROM {ORD} WHERE category = 'food' AND quantity >= 15)",
    ),
    # ---- two revisions of one table: what changed
    # `x IS [NOT] DISTINCT FROM y` is parenthesized: DataFusion's parser (sqlparser) binds it looser than AND/OR
    # ("a IS DISTINCT FROM b OR c" is read as "a IS DISTINCT FROM (b OR c)": "Cannot infer common argument type for
    # logical boolean operation Utf8 OR Boolean"; upstream apache/datafusion#23692, datafusion-sqlparser-rs#2436), while
    # DuckDB binds it as PostgreSQL does.
    Q(
        "revisions_added",
        f"SELECT b.store_id, b.name FROM {STO2} b LEFT JOIN {STO1} a ON a.store_id = b.store_id "
        "WHERE a.store_id IS NULL",
    ),
    Q(
        "revisions_removed_by_tag",
        'SELECT a.store_id, a.name FROM "sql/stores:v1"."tables/stores.parquet" a '
        'LEFT JOIN "sql/stores:v2"."tables/stores.parquet" b ON a.store_id = b.store_id WHERE b.store_id IS NULL',
    ),
    Q(
        "revisions_changed",
        f"SELECT a.store_id, a.name AS old_name, b.name AS new_name, a.city AS old_city, b.city AS new_city, "
        f"a.sq_m AS old_sq_m, b.sq_m AS new_sq_m FROM {STO1} a JOIN {STO2} b USING (store_id) "
        "WHERE (a.name IS DISTINCT FROM b.name) OR (a.city IS DISTINCT FROM b.city) "
        "OR (a.sq_m IS DISTINCT FROM b.sq_m)",
    ),
    Q(
        "revisions_summary_full_hash_vs_latest",
        "SELECT CASE WHEN a.store_id IS NULL THEN 'added' WHEN b.store_id IS NULL THEN 'removed' "
        "WHEN a.name = b.name AND a.city = b.city AND (a.region IS NOT DISTINCT FROM b.region) "
        "AND (a.sq_m IS NOT DISTINCT FROM b.sq_m) THEN 'same' ELSE 'changed' END AS change, count(*) AS n "
        f'FROM "sql/stores@{{v1full}}"."tables/stores.parquet" a FULL OUTER JOIN {STO} b '
        "ON a.store_id = b.store_id GROUP BY 1",
    ),
    Q(
        "revisions_order_impact",
        f"SELECT o.store_id, count(*) AS n FROM {ORD} o JOIN {STO1} a ON a.store_id = o.store_id "
        f"LEFT JOIN {STO2} b ON b.store_id = o.store_id WHERE b.store_id IS NULL GROUP BY o.store_id",
    ),
    # ---- window functions
    Q(
        "window_row_number",
        "SELECT store_id, order_id, unit_price, rn FROM (SELECT store_id, order_id, unit_price, "
        f"row_number() OVER (PARTITION BY store_id ORDER BY unit_price DESC, order_id) AS rn FROM {ORD}) t "
        "WHERE rn <= 3",
    ),
    Q(
        "window_running_sum_lag_rank",
        f"WITH daily AS (SELECT order_date, sum(quantity) AS q FROM {ORD} GROUP BY order_date) "
        "SELECT order_date, q, sum(q) OVER (ORDER BY order_date) AS running, "
        "lag(q) OVER (ORDER BY order_date) AS prev, rank() OVER (ORDER BY q DESC) AS r FROM daily ORDER BY order_date",
        ordered=True,
    ),
    Q(
        "window_moving_avg",
        f"WITH daily AS (SELECT order_date, count(*) AS n FROM {ORD} GROUP BY order_date) "
        "SELECT order_date, avg(n) OVER (ORDER BY order_date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS week_avg, "
        "lead(n, 7) OVER (ORDER BY order_date) AS next_week FROM daily",
    ),
    # ---- string functions
    Q(
        "string_functions",
        "SELECT order_id, upper(product) AS up, lower(product) AS low, length(product) AS len, "
        "substr(product, 1, 4) AS head, replace(product, '-', '_') AS rep, "
        "concat(product, '/', coalesce(category, '?')) AS cc, product || '!' AS bang "
        f"FROM {ORD} WHERE order_id <= 500",
    ),
    Q(
        "string_functions_more",
        "SELECT DISTINCT product, split_part(product, '-', 2) AS num, starts_with(product, 'prod') AS is_prod, "
        "strpos(product, 'e') AS pos_e, lpad(CAST(store_id AS VARCHAR), 3, '0') AS padded, "
        f"trim('  ' || product || ' ') AS trimmed, reverse(product) AS rev FROM {ORD} WHERE order_id <= 2000",
    ),
    # ---- dates and timestamps
    Q(
        "extract_year_month",
        f"SELECT extract(year FROM order_date) AS y, extract(month FROM order_date) AS m, count(*) AS n FROM {ORD} "
        "GROUP BY 1, 2",
    ),
    Q(
        "date_trunc_month",
        f"SELECT date_trunc('month', order_ts) AS month, count(*) AS n, min(order_ts) AS first_ts, "
        f"max(order_ts) AS last_ts FROM {ORD} GROUP BY 1",
    ),
    Q(
        "date_arithmetic",
        "SELECT order_id, order_date, CAST(order_ts AS DATE) AS d2, order_date + INTERVAL '7 days' AS week_later, "
        f"date_part('dow', order_date) AS dow FROM {ORD} "
        "WHERE order_date BETWEEN DATE '2024-02-27' AND DATE '2024-03-02' AND store_id = 11",
    ),
    Q(
        "timestamp_with_time_zone",
        f"SELECT date_trunc('day', shipped_at) AS day, extract(hour FROM shipped_at) AS h, count(*) AS n FROM {ORD} "
        "WHERE shipped_at >= TIMESTAMP '2024-12-20 00:00:00' GROUP BY 1, 2",
    ),
    # ---- NULL handling
    Q(
        "null_counts",
        f"SELECT count(*) AS all_rows, count(category) AS with_cat, count(*) - count(discount) AS no_discount, "
        f"sum(CASE WHEN note IS NULL THEN 1 ELSE 0 END) AS no_note, count(shipped_at) AS shipped, "
        f"count(is_returned) AS known_ret FROM {ORD}",
    ),
    Q(
        "coalesce_nullif",
        f"SELECT coalesce(category, 'unknown') AS cat, sum(coalesce(discount, 0.0) * unit_price) AS disc_total, "
        f"count(nullif(quantity, 1)) AS q_not_one FROM {ORD} GROUP BY 1",
    ),
    Q("is_null_rows", f"SELECT order_id, category, quantity FROM {ORD} WHERE category IS NULL AND quantity IS NULL"),
    # ---- ORDER BY / LIMIT / DISTINCT
    Q(
        "order_by_limit",
        f"SELECT order_id, unit_price, quantity FROM {ORD} WHERE quantity IS NOT NULL "
        "ORDER BY unit_price DESC, order_id LIMIT 25",
        ordered=True,
    ),
    Q(
        "order_by_nulls_first",
        f"SELECT order_id, discount FROM {ORD} WHERE store_id = 2 AND customer_id < 300 "
        "ORDER BY discount NULLS FIRST, order_id",
        ordered=True,
    ),
    Q(
        "limit_offset",
        f"SELECT order_id, product FROM {ORD} ORDER BY order_id LIMIT 10 OFFSET 100000",
        ordered=True,
    ),
    Q("distinct", f"SELECT DISTINCT category, is_returned FROM {ORD}"),
    # The largest LIMIT (BI tools send it to mean "all") with an OFFSET: pushed down as one beyond i64.
    Q(
        "huge_limit_offset",
        f"SELECT count(*) AS n FROM (SELECT logical_key FROM {MAN} LIMIT 9223372036854775807 OFFSET 1)",
    ),
    # ---- subqueries, CTEs, CASE, set operations
    Q(
        "cte_top_customers",
        f"WITH spent AS (SELECT customer_id, sum(unit_price * quantity) AS spent FROM {ORD} GROUP BY customer_id), "
        "ranked AS (SELECT customer_id, spent, rank() OVER (ORDER BY spent DESC) AS r FROM spent) "
        "SELECT customer_id, spent, r FROM ranked WHERE r <= 10 ORDER BY r, customer_id",
        ordered=True,
    ),
    Q(
        "scalar_subquery",
        f"SELECT store_id, count(*) AS n FROM {ORD} WHERE unit_price > (SELECT avg(unit_price) FROM {ORD}) "
        "GROUP BY store_id",
    ),
    Q(
        "correlated_subquery",
        f"SELECT s.store_id, s.name, (SELECT count(*) FROM {ORD} o WHERE o.store_id = s.store_id) AS n FROM {STO} s",
    ),
    Q(
        "case_bands",
        "SELECT CASE WHEN unit_price < 10 THEN 'cheap' WHEN unit_price < 100 THEN 'mid' ELSE 'dear' END AS band, "
        f"count(*) AS n, sum(CASE WHEN is_returned THEN 1 ELSE 0 END) AS returned FROM {ORD} GROUP BY 1",
    ),
    Q(
        "set_operations",
        f"SELECT 'gone' AS kind, store_id FROM (SELECT store_id FROM {STO1} EXCEPT SELECT store_id FROM {STO2}) x "
        f"UNION ALL SELECT 'kept' AS kind, store_id FROM (SELECT store_id FROM {STO1} INTERSECT "
        f"SELECT store_id FROM {STO2}) y",
    ),
    # Integer division differs between the engines (DataFusion: 7 / 2 = 3, DuckDB: 3.5), so the division is
    # written on a DOUBLE; % (modulo) agrees. A DOUBLE cast to BIGINT truncates in DataFusion and rounds in DuckDB,
    # so the cast is of floor(...).
    Q(
        "arithmetic",
        "SELECT order_id, CAST(quantity AS DOUBLE) / 4 AS quarter, quantity % 3 AS m3, abs(unit_price - 250) AS dist, "
        "round(unit_price * 1.1, 2) AS r, floor(unit_price) AS f, ceil(unit_price) AS c, "
        f"CAST(floor(unit_price) AS BIGINT) AS i FROM {ORD} WHERE order_id <= 300",
    ),
    # ---- the folder table, the manifest table, qualified names and pinned revisions
    Q(
        "folder_table_group_by",
        f"SELECT sku, count(*) AS n, sum(qty) AS units, avg(weight_kg) AS w, count(weight_kg) AS nw FROM {ITM} "
        "GROUP BY sku HAVING count(*) > 120",
    ),
    Q("folder_table_rows", f"SELECT * FROM {ITM} WHERE item_id % 997 = 0"),
    Q("manifest_keys_sizes", f"SELECT logical_key, size FROM {MAN}"),
    Q(
        "manifest_filter",
        f"SELECT count(*) AS n, sum(size) AS bytes FROM {MAN} WHERE logical_key LIKE 'tables/%'",
    ),
    Q(
        "fully_qualified_name",
        'SELECT count(*) AS n FROM sheaf."sql/sales"."tables/orders.parquet" WHERE is_returned',
    ),
    Q(
        "pinned_hash_and_tag",
        "SELECT a.n AS by_hash, b.n AS by_tag FROM "
        '(SELECT count(*) AS n FROM "sql/sales@{sales}"."tables/orders.parquet") a '
        'CROSS JOIN (SELECT count(*) AS n FROM "sql/sales:release"."tables/orders.parquet" WHERE quantity > 5) b',
    ),
    # ---- the table function (DuckDB reads the same file; `filter=`/`columns=` become WHERE and a projection)
    Q(
        "table_function_whole",
        f"SELECT count(*) AS n, sum(quantity) AS q, count(note) AS notes FROM sheaf('{ORDERS_URI}')",
        f"SELECT count(*) AS n, sum(quantity) AS q, count(note) AS notes FROM {ORD}",
    ),
    Q(
        "table_function_params",
        f"SELECT * FROM sheaf('{ORDERS_URI}?columns=order_id,unit_price"
        f"&filter={_enc('store_id = 7 AND quantity > 18')}')",
        f"SELECT order_id, unit_price FROM {ORD} WHERE store_id = 7 AND quantity > 18",
    ),
    Q(
        "table_function_revision",
        "SELECT store_id, name, sq_m FROM sheaf('sheaf://sql/stores:v1/tables/stores.parquet') WHERE active",
        'SELECT store_id, name, sq_m FROM "sql/stores:v1"."tables/stores.parquet" WHERE active',
    ),
    Q(
        "table_function_join",
        "SELECT s.region, count(*) AS n FROM sheaf('sheaf://sql/sales/tables/items') i "
        f"JOIN {ORD} o USING (order_id) JOIN {STO} s ON s.store_id = o.store_id GROUP BY s.region",
        f"SELECT s.region, count(*) AS n FROM {ITM} i JOIN {ORD} o USING (order_id) "
        f"JOIN {STO} s ON s.store_id = o.store_id GROUP BY s.region",
    ),
]


def test_enough_queries():
    assert len(QUERIES) >= 30
    assert len({q.name for q in QUERIES}) == len(QUERIES)


@pytest.mark.parametrize("q", QUERIES, ids=[q.name for q in QUERIES])
def test_query_equals_duckdb(q: Q, data, conn, duck):
    p = data.placeholders()
    sheaf_sql = q.sql.format(**p)
    duck_sql = (q.duckdb or q.sql).format(**p)
    expected = sl.duck(duck, duck_sql)
    got = sl.query(conn, sheaf_sql)
    sl.assert_same_result(got, expected, ordered=q.ordered, what=f"{q.name}: {sheaf_sql}")


# --------------------------------------------------------------------------
# The table function with sampling: exactly the rows a plain Flight read of the URI returns
# --------------------------------------------------------------------------


URIS = {
    "sample": ORDERS_URI + "?sample=0.1&seed=7",
    "sample_columns": ORDERS_URI + "?sample=0.02&seed=123&columns=order_id,product,unit_price",
    "folder_sample_filter": "sheaf://sql/sales/tables/items?sample=0.05&seed=9&filter=" + _enc("qty >= 3"),
    "sample_rows": ORDERS_URI + "?sample_rows=1000&seed=5",
    "rows": ORDERS_URI + "?rows=0:100,5000,119990:120000",
    "limit": ORDERS_URI + "?limit=77&columns=order_id,note",
    "manifest": "sheaf://sql/sales",
    "tag_sample": "sheaf://sql/stores:v1/tables/stores.parquet?sample=0.5&seed=1",
}


@pytest.mark.parametrize("uri", URIS.values(), ids=URIS.keys())
def test_table_function_equals_flight_read(uri, server, conn):
    """sheaf('URI') holds exactly the rows a Flight DoGet of URI returns (sampled, random access, limited, the
    manifest, a tagged revision)."""
    expected = sl.flight_uri(server.client, uri)
    assert 0 < expected.num_rows < 120_000, f"{uri}: should keep some rows, not all"
    got = sl.query(conn, f"SELECT * FROM sheaf('{uri}')")
    assert got.column_names == expected.column_names
    key = expected.column_names[0]
    sl.assert_same_result(
        got.sort_by(key), expected.sort_by(key), ordered=True, what=f"sheaf('{uri}') vs Flight DoGet of {uri}"
    )


def test_table_function_sample_is_the_documented_rows(server, conn):
    """sample=F&seed=S keeps the rows at the positions the README's formula selects (computed here
    independently), so a sampled SQL aggregate is reproducible."""
    positions = fl.sample_positions(sl.ORDERS_ROWS, 0.01, 11)
    got = sl.query(conn, f"SELECT order_id FROM sheaf('{ORDERS_URI}?sample=0.01&seed=11') ORDER BY order_id")
    # order_id is position + 1 in the generated table.
    assert got.column("order_id").to_pylist() == [p + 1 for p in positions]


def test_sampled_aggregate_is_reproducible(conn):
    sql = (
        f"SELECT category, count(*) AS n, avg(unit_price) AS p FROM sheaf('{ORDERS_URI}?sample=0.2&seed=42') "
        "GROUP BY category ORDER BY category NULLS LAST"
    )
    first = sl.query(conn, sql)
    again = sl.query(conn, sql)
    sl.assert_same_result(again, first, ordered=True, what=sql)
    other_seed = sl.query(conn, sql.replace("seed=42", "seed=43"))
    assert other_seed.column("n").to_pylist() != first.column("n").to_pylist()


def test_manifest_table_equals_flight_read(server, conn):
    """ "_manifest" is the table a Flight read of sheaf://owner/name returns (every column: hashes, metadata)."""
    expected = sl.flight_uri(server.client, "sheaf://sql/sales").sort_by("logical_key")
    got = sl.query(conn, 'SELECT * FROM "sql/sales"."_manifest" ORDER BY logical_key')
    assert got.column_names == expected.column_names
    sl.assert_same_result(got, expected, ordered=True, what="_manifest")
    pinned = sl.query(conn, 'SELECT logical_key FROM "sql/stores:v1"."_manifest" ORDER BY logical_key')
    assert pinned.column("logical_key").to_pylist() == ["README.md", "tables/stores.parquet"]


def test_where_is_evaluated_once_in_the_parquet_decoder(conn):
    """DataFusion's physical optimizer pushes a WHERE on a Parquet table into the scan: no FilterExec stays above it,
    and the scan's predicate holds each condition once (the table does not add the filters it is offered a second
    time)."""
    cur = conn.cursor()
    cur.execute(f"EXPLAIN SELECT order_id FROM {ORD} WHERE quantity > 10 AND store_id = 7")
    physical = "\n".join(str(plan) for kind, plan in cur.fetchall() if kind == "physical_plan")
    cur.close()
    assert physical, "EXPLAIN gave no physical plan"
    assert "FilterExec" not in physical, physical
    scan = next(line for line in physical.splitlines() if "DataSourceExec" in line)
    predicate = scan.split(" predicate=", 1)[1].split(", pruning_predicate=", 1)[0]
    assert predicate.count("quantity@") == 1 and predicate.count("store_id@") == 1, scan
