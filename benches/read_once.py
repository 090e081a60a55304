#!/usr/bin/env python3
"""Full reads of a Flight target by a client process of their own.

`read_once.py URL TARGET` connects to URL (no call before the read, so the read
is the server's first request on this connection), reads TARGET whole as
harness.read_all does (GetFlightInfo, then every endpoint's DoGet in order) and
prints one JSON line: seconds, rows, batches (chunks of the first column) and
the client's CPU-seconds and minor page faults for the read.

`read_once.py --repeat URL TARGET [PARALLEL]` keeps one connection and reads
once per line on standard input ("read"), answering each with such a JSON line;
PARALLEL endpoints at a time (default 1).

Scenario 1 gives every reader its own client process (a fresh one per cold
read, a long-lived one per hot reader): within one client the allocator's state
left by the previous read, whatever server it came from, decides how many fresh
pages the next read touches.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import json  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import pyarrow.flight as flight  # noqa: E402


def read(client: flight.FlightClient, target: str, parallel: int) -> dict:
    return h.timed_read(lambda: h.read_all(client, target, parallel=parallel))


def main() -> None:
    args = sys.argv[1:]
    repeat = args[:1] == ["--repeat"]
    if repeat:
        args = args[1:]
    url, target = args[0], args[1]
    parallel = int(args[2]) if len(args) > 2 else 1
    client = flight.FlightClient(url)
    if not repeat:
        print(json.dumps(read(client, target, parallel)), flush=True)
        return
    for line in sys.stdin:
        if line.strip() == "read":
            print(json.dumps(read(client, target, parallel)), flush=True)


if __name__ == "__main__":
    main()
