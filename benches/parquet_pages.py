"""Where rows live in a Parquet file: page headers read with a small Thrift
compact-protocol decoder, so the selective-read benchmark can say how many bytes
an answer needs without trusting any reader it measures.

`needed_bytes(path, columns, lo, hi)` walks the page headers of every column
chunk of `columns` in the row groups overlapping global rows [lo, hi) and adds:
  - each data page whose rows overlap [lo, hi): its header plus its compressed
    body (exactly what the offset index's `compressed_page_size` covers),
  - the chunk's dictionary page (header and body). A reader needs it to decode a
    dictionary-encoded page and cannot tell from the page index which pages are
    (pyarrow falls back from dictionary to plain encoding within a chunk once the
    dictionary reaches 1 MiB), so it counts as needed. `strict_bytes` counts it
    only when one of the matching pages is dictionary-encoded.
It also returns the coarser figure: the whole column chunks of those row groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

# Thrift compact protocol types
T_STOP, T_TRUE, T_FALSE, T_BYTE, T_I16, T_I32, T_I64, T_DOUBLE, T_BINARY, T_LIST, T_SET, T_MAP, T_STRUCT = range(13)

DATA_PAGE, INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 1, 2, 3
DICT_ENCODINGS = {2, 8}  # PLAIN_DICTIONARY, RLE_DICTIONARY


class Compact:
    """Decodes Thrift compact-protocol structs into {field id: value}."""

    def __init__(self, buf: bytes, pos: int = 0):
        self.buf = buf
        self.pos = pos

    def byte(self) -> int:
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def value(self, t: int):
        if t == T_TRUE:
            return True
        if t == T_FALSE:
            return False
        if t == T_BYTE:
            return self.byte()
        if t in (T_I16, T_I32, T_I64):
            return self.zigzag()
        if t == T_DOUBLE:
            self.pos += 8
            return None
        if t == T_BINARY:
            n = self.varint()
            self.pos += n
            return self.buf[self.pos - n : self.pos]
        if t in (T_LIST, T_SET):
            head = self.byte()
            n, et = head >> 4, head & 0x0F
            if n == 15:
                n = self.varint()
            if et in (T_TRUE, T_FALSE):  # booleans in a list are one byte each
                return [self.byte() == 1 for _ in range(n)]
            return [self.value(et) for _ in range(n)]
        if t == T_MAP:
            n = self.varint()
            if n == 0:
                return {}
            kv = self.byte()
            return {self.value(kv >> 4): self.value(kv & 0x0F) for _ in range(n)}
        if t == T_STRUCT:
            return self.struct()
        raise ValueError(f"unknown thrift compact type {t} at {self.pos}")

    def struct(self) -> dict:
        out = {}
        last = 0
        while True:
            head = self.byte()
            t = head & 0x0F
            if t == T_STOP:
                return out
            delta = head >> 4
            fid = last + delta if delta else self.zigzag()
            out[fid] = self.value(t)
            last = fid


@dataclass
class Page:
    kind: int
    first_row: int  # within the row group (data pages)
    rows: int
    size: int  # header + compressed body
    encoding: int | None


def chunk_pages(f, col_meta) -> list[Page]:
    """Every page of one column chunk, in file order."""
    start = col_meta.data_page_offset
    if col_meta.has_dictionary_page and col_meta.dictionary_page_offset:
        start = min(start, col_meta.dictionary_page_offset)
    f.seek(start)
    buf = f.read(col_meta.total_compressed_size)
    pos, row, pages = 0, 0, []
    while pos < len(buf):
        d = Compact(buf, pos)
        header = d.struct()
        size = (d.pos - pos) + header[3]
        kind = header[1]
        if kind == DATA_PAGE:
            n, enc = header[5][1], header[5].get(2)
        elif kind == DATA_PAGE_V2:
            n, enc = header[8][3], header[8].get(4)
        else:
            n, enc = 0, None
        pages.append(Page(kind, row, n, size, enc))
        row += n
        pos += size
    return pages


@dataclass
class Needed:
    pages_bytes: int  # pages holding the rows + the dictionary pages of their chunks
    strict_bytes: int  # the same, dictionaries only where a matching page uses them
    chunk_bytes: int  # whole column chunks of the row groups holding the rows
    data_pages: int  # data pages that hold matching rows
    row_groups: int
    footer_bytes: int


def needed_bytes(path: Path, columns: list[str], lo: int, hi: int) -> Needed:
    pf = pq.ParquetFile(path)
    md = pf.metadata
    names = [md.schema.column(i).path for i in range(md.num_columns)]
    idx = [names.index(c) for c in columns]
    pages_bytes = strict_bytes = chunk_bytes = n_pages = n_groups = 0
    offset = 0
    with open(path, "rb") as f:
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            g_lo, g_hi = offset, offset + rg.num_rows
            offset = g_hi
            if g_hi <= lo or g_lo >= hi:
                continue
            n_groups += 1
            for i in idx:
                cm = rg.column(i)
                chunk_bytes += cm.total_compressed_size
                dict_size, dict_needed, matched = 0, False, False
                for p in chunk_pages(f, cm):
                    if p.kind == DICTIONARY_PAGE:
                        dict_size += p.size
                    elif p.kind in (DATA_PAGE, DATA_PAGE_V2):
                        a, b = g_lo + p.first_row, g_lo + p.first_row + p.rows
                        if a < hi and b > lo:
                            pages_bytes += p.size
                            strict_bytes += p.size
                            n_pages += 1
                            matched = True
                            dict_needed |= p.encoding in DICT_ENCODINGS
                if matched:
                    pages_bytes += dict_size
                if dict_needed:
                    strict_bytes += dict_size
    return Needed(pages_bytes, strict_bytes, chunk_bytes, n_pages, n_groups, md.serialized_size + 8)
