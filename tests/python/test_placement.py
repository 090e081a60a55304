"""Placement across replicas: three `sheaf serve` processes over one registry,
each advertising itself and naming the others as peers. With rendezvous
placement (the default) every replica plans the same first location for a
ticket, so repeated reads meet that replica's stream cache; with round-robin
they wander and miss. Cache hits are read from each replica's /metrics."""

from __future__ import annotations

import time

import flight_testlib as fl
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from ops_lib import scrape, value, wait_ready
from sheaf_testlib import free_port

PARTS = 6


@pytest.fixture
def table_registry(tmp_path, registry, sheaf):
    src = tmp_path / "src"
    table = pa.table({"id": pa.array(range(60_000), pa.int64()), "x": pa.array([i / 3 for i in range(60_000)])})
    fl.write_parquet(src / "t.parquet", table, row_group_size=10_000)
    sheaf.push("o/p", src)
    return registry, table


def start_replicas(flight_server, registry, placement: str):
    ports = [free_port() for _ in range(3)]
    metrics = [free_port() for _ in range(3)]
    urls = [f"grpc://127.0.0.1:{p}" for p in ports]
    servers = []
    for i, port in enumerate(ports):
        peers = [a for u in urls if u != urls[i] for a in ("--peer", u)]
        servers.append(
            flight_server(
                registry,
                "--advertise",
                urls[i],
                *peers,
                "--placement",
                placement,
                "--metrics-listen",
                f"127.0.0.1:{metrics[i]}",
                listen=f"127.0.0.1:{port}",
            )
        )
    bases = [f"http://127.0.0.1:{m}" for m in metrics]
    for base in bases:
        wait_ready(base)
    return urls, servers, bases


def wait_all_listed(client, urls, timeout=20):
    """Until the planning replica lists all three (its peers passed a check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fi = fl.info(client, fl.uri("o/p", "t.parquet", partitions=PARTS))
        if all(len(ep.locations) == 3 for ep in fi.endpoints):
            return
        time.sleep(0.3)
    pytest.fail("peers never all healthy")


def read_passes(urls, servers, passes: int) -> pa.Table:
    """Plans at a different replica each pass and reads every endpoint at
    its first location."""
    clients = {u: flight.FlightClient(u) for u in urls}
    tables = []
    try:
        for n in range(passes):
            planner = clients[urls[n % 3]]
            fi = fl.info(planner, fl.uri("o/p", "t.parquet", partitions=PARTS))
            assert len(fi.endpoints) == PARTS
            parts = []
            for ep in fi.endpoints:
                first = ep.locations[0].uri.decode()
                parts.append(clients[first].do_get(ep.ticket).read_all())
            tables.append(pa.concat_tables(parts))
    finally:
        for c in clients.values():
            c.close()
    return tables


def hits(bases) -> list[float]:
    return [value(scrape(b), "sheaf_cache_hits_total") for b in bases]


@pytest.mark.parametrize("placement", ["rendezvous", "round-robin"])
def test_affinity_meets_the_cache(table_registry, flight_server, placement):
    registry, table = table_registry
    urls, servers, bases = start_replicas(flight_server, registry, placement)
    wait_all_listed(servers[0].client, urls)
    wait_all_listed(servers[1].client, urls)
    wait_all_listed(servers[2].client, urls)
    # Two passes: a ticket is kept from its second read on.
    first = read_passes(urls, servers, 2)
    before = hits(bases)
    again = read_passes(urls, servers, 3)
    after = hits(bases)
    for t in first + again:
        assert t.equals(table)
    gained = [a - b for a, b in zip(after, before, strict=True)]
    if placement == "rendezvous":
        # Every repeated read met the cache of the replica that read it first,
        # whichever replica planned it; the tickets are spread over replicas.
        assert sum(gained) == 3 * PARTS, gained
        assert sum(1 for g in gained if g > 0) >= 2, gained
    else:
        # Round-robin sends repeated reads elsewhere: fewer hits.
        assert sum(gained) < 3 * PARTS, gained
