"""Reads the few fields of a Sheaf ticket the client uses (``proto/sheaf.proto``,
message ``sheaf.v1.Ticket``) with a minimal protobuf decoder, so the client
needs no generated code. Only used to derive exact per-endpoint row counts of
plain Parquet reads; every count is checked against the rows actually read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Slice:
    logical_key: str
    row_group_start: int
    row_group_end: int
    first_row: int


@dataclass(frozen=True)
class TicketInfo:
    package: str
    top_hash: str
    path: str
    slices: tuple[Slice, ...]
    partition: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field: ints for varints, bytes
    for length-delimited fields; fixed-width fields are skipped."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated field")
            yield number, wire, buf[pos:pos + size]
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def decode(ticket: bytes) -> TicketInfo:
    """The package, revision, path, slices and partition of a ticket; raises
    ``ValueError`` when the bytes are not a Sheaf ticket."""
    package = top_hash = path = ""
    slices = []
    partition = 0
    for number, wire, value in _fields(ticket):
        if number == 1 and wire == 2:
            package = value.decode()
        elif number == 2 and wire == 2:
            top_hash = value.decode()
        elif number == 3 and wire == 2:
            path = value.decode()
        elif number == 5 and wire == 2:
            key, start, end, first = "", 0, 0, 0
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    key = v.decode()
                elif n == 2 and w == 0:
                    start = v
                elif n == 3 and w == 0:
                    end = v
                elif n == 4 and w == 0:
                    first = v
            slices.append(Slice(key, start, end, first))
        elif number == 6 and wire == 0:
            partition = value
    if len(top_hash) != 64:
        raise ValueError("not a Sheaf ticket (no top hash)")
    return TicketInfo(package, top_hash, path, tuple(slices), partition)
