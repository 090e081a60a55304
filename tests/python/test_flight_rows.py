"""Random access over Flight (`rows=START:END,ROW,...`): the rows at those
table positions (before filter and sample), in table order, read from the
row groups and pages that hold them."""

from __future__ import annotations

import json
import random

import flight_testlib as fl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest
from flight_testlib import assert_same, sample_positions, uri

READINGS = ("demo/weather", "tables/readings.parquet")
T = "t/tables"


def positions(ranges: list[tuple[int, int]], n: int) -> list[int]:
    """The sorted distinct positions below `n` that `ranges` name."""
    return sorted({p for s, e in ranges for p in range(s, min(e, n))})


def text(ranges: list[tuple[int, int]]) -> str:
    return ",".join(f"{s}:{e}" if e != s + 1 else str(s) for s, e in ranges)


def endpoint_meta(fi: flight.FlightInfo) -> list[dict]:
    return [json.loads(bytes(e.app_metadata)) for e in fi.endpoints]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_ranges_equal_the_table_at_those_positions(flight_data, seed):
    c = flight_data.client
    readings = flight_data.readings()
    n = readings.num_rows
    rng = random.Random(seed)
    ranges = []
    for _ in range(rng.randint(1, 40)):
        s = rng.randrange(0, n + 50)
        ranges.append((s, s + rng.randint(1, 300)))
    ranges += [(p, p + 1) for p in rng.sample(range(n), 25)]
    rng.shuffle(ranges)
    u = uri(*READINGS, rows=text(ranges))
    fi = fl.info(c, u)
    want = positions(ranges, n)
    assert fi.total_records == len(want)
    assert_same(fl.read(c, u), readings.take(want), f"rows={text(ranges)[:80]}")


def test_pinned_uri_is_canonical(flight_data):
    c = flight_data.client
    fi = fl.info(c, uri(*READINGS, rows="90:100,5,0:3,2:4,6"))
    pinned = fl.app_metadata(fi)["pinned_uri"]
    assert pinned.endswith("?rows=0:4,5:7,90:100"), pinned
    assert fl.read(c, pinned).column("id").to_pylist() == [0, 1, 2, 3, 5, 6, *range(90, 100)]


def test_only_row_groups_holding_selected_rows_are_planned(flight_data):
    """The parts folder: 3 files of 400-row groups. Endpoints cover only the
    row groups holding selected rows; their metadata say how many each selects."""
    c = flight_data.client
    parts = fl.read(c, uri(T, "parts"))
    ranges = [(10, 20), (1990, 2010), (3199, 3300)]
    u = uri(T, "parts", rows=text(ranges), partitions=8)
    fi = fl.info(c, u)
    metas = endpoint_meta(fi)
    covered = sum(m["table_rows"] for m in metas)
    assert covered <= 4 * 400, metas  # row groups [0,400), [1600,2000), [2000,2400), [2800,3200) at most
    assert sum(m["selected_rows"] for m in metas) == 31
    assert all(m["selected_rows"] > 0 for m in metas)
    got = pa.concat_tables(fl.read_endpoints(c, fi))
    assert_same(got, parts.take(positions(ranges, parts.num_rows)))


def test_without_rows_endpoint_metadata_has_no_selected_rows(flight_data):
    fi = fl.info(flight_data.client, uri(T, "parts", partitions=2))
    assert all("selected_rows" not in m for m in endpoint_meta(fi))


def test_rows_compose_with_sample_filter_limit_and_columns(flight_data):
    """Positions first (rows and sample, both by table position), then the
    filter, then the limit, then the columns."""
    c = flight_data.client
    readings = flight_data.readings()
    ranges = [(1000, 30_000), (60_000, 61_000)]
    sampled = set(sample_positions(readings.num_rows, 0.3, 9))
    keep = [p for p in positions(ranges, readings.num_rows) if p in sampled]
    expected = readings.take(keep).filter(pc.field("station") == "lima").slice(0, 500).select(["id", "temp_c"])
    params = {"sample": 0.3, "seed": 9, "filter": "station = 'lima'", "limit": 500, "columns": "id,temp_c"}
    got = fl.read(c, uri(*READINGS, rows=text(ranges), **params))
    assert_same(got, expected)


@pytest.mark.parametrize(
    "path,reader",
    [
        ("csv/data.csv", lambda p: fl.read_csv(p)),
        ("json/data.jsonl", fl.read_jsonl),
        ("ipc/data.arrow", lambda p: fl.hydrate(fl.read_ipc_file(p))),
    ],
)
def test_rows_of_file_tables(flight_data, path, reader):
    table = reader(flight_data.src / path)
    ranges = [(3, 9), (table.num_rows - 2, table.num_rows + 10), (100, 101)]
    got = fl.read(flight_data.client, uri(T, path, rows=text(ranges)))
    assert_same(got, table.take(positions(ranges, table.num_rows)), path)


@pytest.mark.parametrize("partitions", [None, 3])
def test_rows_of_the_manifest_table(flight_data, partitions):
    """Also over several runs of entries, where some runs hold no selected row."""
    c = flight_data.client
    full = fl.read(c, uri(T))
    params = {"partitions": partitions} if partitions else {}
    assert_same(fl.read(c, uri(T, rows="1,3:5", **params)), full.take([1, 3, 4]))
    assert_same(fl.read(c, uri(T, rows="1", **params)), full.take([1]))


def test_positions_past_the_end_select_nothing(flight_data):
    c = flight_data.client
    u = uri(*READINGS, rows="100000:200000")
    assert fl.info(c, u).total_records == 0
    assert fl.read(c, u).num_rows == 0


def test_a_few_rows_read_a_fraction_of_the_bytes(flight_data):
    """Page-index row selection: ten rows cost far fewer storage bytes than
    the whole table (compared in one test run, not against a time)."""
    c = flight_data.client

    def bytes_read(u: str) -> int:
        before = fl.action(c, "metrics")["bytes_read"]
        fl.read(c, u)
        return fl.action(c, "metrics")["bytes_read"] - before

    # Seeds no other test uses: tickets the server's stream cache has not seen.
    whole = bytes_read(uri(*READINGS, seed=918273645))
    few = bytes_read(uri(*READINGS, rows="50000:50010", seed=918273645))
    assert few * 5 < whole, (few, whole)


@pytest.mark.parametrize(
    "rows,needle",
    [("5:3", "5:3"), ("abc", "abc"), ("", "rows must be"), ("1:", "rows must be")],
)
def test_bad_rows_are_refused_naming_them(flight_data, rows, needle):
    """INVALID_ARGUMENT (pyarrow raises ArrowInvalid), naming the range."""
    with pytest.raises(pa.ArrowInvalid) as e:
        fl.info(flight_data.client, uri(*READINGS, rows=rows))
    assert needle in str(e.value), str(e.value)


def test_each_ticket_carries_only_its_own_ranges(flight_data):
    """3,000 scattered ranges over 8 endpoints: the tickets together are about
    the size of the request, not 8 times it."""
    c = flight_data.client
    readings = flight_data.readings()
    ranges = [(p, p + 3) for p in range(0, 99_000, 33)]
    u = uri(*READINGS, rows=text(ranges), partitions=8)
    fi = fl.info(c, u)
    assert len(fi.endpoints) == 8
    assert sum(len(e.ticket.ticket) for e in fi.endpoints) < 2 * len(u)
    assert_same(pa.concat_tables(fl.read_endpoints(c, fi)), readings.take(positions(ranges, readings.num_rows)))


@pytest.mark.parametrize("partitions", [1, 2, 4])
def test_endpoints_over_row_groups_far_apart_lose_no_row(flight_data, partitions):
    """One endpoint may read row groups with unselected ones between them: its
    region is the whole span, and every selected row comes back."""
    c = flight_data.client
    parts = fl.read(c, uri(T, "parts"))
    ranges = [(5, 6), (1500, 1510), (3199, 3200)]
    fi = fl.info(c, uri(T, "parts", rows=text(ranges), partitions=partitions))
    metas = endpoint_meta(fi)
    assert sum(m["selected_rows"] for m in metas) == 12
    spans = [(m["first_row"], m["first_row"] + m["table_rows"]) for m in metas]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans
    assert_same(pa.concat_tables(fl.read_endpoints(c, fi)), parts.take(positions(ranges, parts.num_rows)))
