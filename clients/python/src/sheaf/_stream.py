"""A training loader's reads of one dataset: its pieces (endpoints with exact
row counts, or groups of files), its epoch orders (:mod:`sheaf._order`), and
reads of global positions, a window at a time, ``prefetch`` windows ahead.
See :mod:`sheaf.loader`."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from . import _order, _request
from ._order import Array, EpochOrder, Intervals
from .dataset import Dataset, Endpoint, read_endpoint
from .errors import SheafError
from .random_access import _chunks

if TYPE_CHECKING:
    from .client import Client

#: Endpoints asked for when the dataset does not set ``partitions``.
DEFAULT_PARTITIONS = 256

#: Rows per block of reads by position when ``block_rows`` is not given and
#: there is no shuffle buffer (and rows are at most ``BLOCK_BYTES / 65,536``
#: bytes): see :func:`default_block_rows`. A whole block is read with a request
#: of its own whose ticket is the same every epoch (kept, not planned again), so
#: the server replays it from its stream cache when it fits; bigger blocks mean
#: fewer requests, and fewer passes over a row group when it does not fit.
#: Measured (2M rows of benches/dataloader.py's data: 80-byte rows, row groups
#: of 100k rows; 2 cores shared with the server; one in-process epoch): blocks of
#: 2,048 rows 1.6-1.9 M rows/s, 65,536: 3.7-4.4 M, table order 5.9-7.9 M. Without
#: a shuffle buffer a block is also the window, and the shuffle is poor at any
#: block size (:func:`sheaf.loader.shuffle_quality` 850 at 2,048 rows, 1,018 at
#: 65,536, for batches of 1,024 rows; table order is about 1,024), so big blocks
#: cost nothing there; with a buffer, smaller blocks shuffle better.
DEFAULT_BLOCK_ROWS = 65_536

#: The smallest default block (with a small shuffle buffer).
MIN_BLOCK_ROWS = 2_048

#: A default block holds at most about this many bytes (wide rows: fewer rows).
BLOCK_BYTES = 16 << 20


def default_block_rows(shuffle_buffer: int, row_bytes: float | None) -> int:
    """``block_rows`` when not given: :data:`DEFAULT_BLOCK_ROWS`; with a
    shuffle buffer at most ``shuffle_buffer / 256`` rows (at least
    :data:`MIN_BLOCK_ROWS`), so :func:`sheaf.loader.shuffle_quality` stays near
    ``1 + batch_size / 256`` (it is about ``1 + batch_size * block_rows /
    shuffle_buffer``); at most :data:`BLOCK_BYTES` of rows (at least 64 rows);
    rounded down to a power of two. A function of the pinned dataset and the
    shuffle buffer only, so every process computes the same blocks."""
    rows = DEFAULT_BLOCK_ROWS
    if shuffle_buffer > 0:
        rows = min(rows, max(MIN_BLOCK_ROWS, shuffle_buffer // 256))
    if row_bytes:
        rows = min(rows, max(64, int(BLOCK_BYTES / row_bytes)))
    return 1 << (rows.bit_length() - 1)


#: Rows a worker asks for in its first read at least (consecutive windows of
#: its run together), so that the first batch comes quickly.
READ_ROWS = 65_536

#: About how many bytes one read (a group of consecutive windows, its blocks
#: fetched :data:`READ_THREADS` at a time) holds once a worker ramped up (reads
#: double from :data:`READ_ROWS` rows). Bigger reads keep more blocks in flight
#: and pass over a row group fewer times when ranges are read (windows cut by a
#: run's end or a checkpoint): e.g. blocks of 2,048 rows read as ranges, 2M
#: rows, server CPU per epoch 5 s with reads of 64k rows, 4.3 s at 8 MiB, 2.4 s
#: at 32 MiB, 1.9 s at 128 MiB. Memory: about ``(prefetch + 2) * READ_BYTES`` per
#: worker (reads in flight, the one being cut, its reordered copy).
READ_BYTES = 32 << 20

#: Endpoints (blocks) of one read request fetched at the same time.
READ_THREADS = 4

#: Block plans (tickets) a stream keeps, so later epochs read blocks without planning.
MAX_PLANS = 100_000


# ---------------------------------------------------------------------------
# Pieces: the readable parts of a dataset, with exact row counts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A readable part of a dataset with its exact row count (and its first
    table row when the dataset can be read by position). Its endpoint's
    ``rows`` is that count, so every read of it checks it
    (:func:`sheaf.dataset.read_endpoint`)."""

    endpoint: Endpoint
    rows: int
    first_row: int | None = None


def _sorted_unique(values: Array) -> Array:
    """The distinct values, sorted (by sorting: faster than numpy's hashing ``unique`` here)."""
    s = np.sort(values)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _runs(sorted_positions: Array) -> list[tuple[int, int]]:
    """Sorted unique positions as half-open ranges of consecutive ones."""
    if len(sorted_positions) == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_positions) != 1)
    starts = np.concatenate([[sorted_positions[0]], sorted_positions[breaks + 1]])
    ends = np.concatenate([sorted_positions[breaks], [sorted_positions[-1]]]) + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _disjoint(starts: Array, sizes: Array, held: Array) -> tuple[Array, Array]:
    """Ranges ``[starts, starts + sizes)``, held from row ``held`` of a table
    on, as disjoint ranges sorted by start covering the same positions:
    ``(starts, held)``, the last range starting at or before a position holds
    it. Ranges may repeat or overlap (a block read whole for one pass over
    the dataset and rows of it read for the next, in one group); each keeps
    the part no range before it (by start) holds."""
    if len(starts) < 2:
        return starts, held
    if bool(np.any(np.diff(starts) < 0)):  # blocks in window order: sort to search
        by_start = np.argsort(starts, kind="stable")
        starts, sizes, held = starts[by_start], sizes[by_start], held[by_start]
    ends = starts + sizes
    covered = np.maximum.accumulate(ends)  # the end of what ranges up to each one hold
    firsts = np.maximum(starts, np.concatenate([starts[:1], covered[:-1]]))
    keep = firsts < ends
    return firsts[keep], (held + firsts - starts)[keep]


def _file_pieces(ds: Dataset, parts: int) -> list[Piece]:
    """The manifest table cut into groups of files, each planned with its own
    ticket (``logical_key IN (...)``), so workers download only their files."""
    listing = ds._replan(
        {"columns": ["logical_key"], "content": None, "partitions": None, "compression": None}, record=False
    )
    keys = listing.to_table(progress=False).column(0).to_pylist()
    n = len(keys)
    count = min(parts, n)
    groups = [keys[i * n // count : (i + 1) * n // count] for i in range(count)]
    dropped = {"limit": None, "sample": None, "sample_rows": None, "seed": None}

    def plan(group: list[str]) -> Piece:
        in_list = "logical_key IN (" + ", ".join(_request.sql_string(k) for k in group) + ")"
        sub = ds._replan({"filter": in_list, "partitions": 1, **dropped}, record=False)
        if len(sub.endpoints) != 1:
            raise SheafError(
                f"{ds.name}: a group of files was planned as {len(sub.endpoints)} endpoints", code="CLIENT"
            )
        return Piece(replace(sub.endpoints[0], rows=len(group)), len(group))

    with ThreadPoolExecutor(4, thread_name_prefix="sheaf-plan") as pool:
        return list(pool.map(plan, groups))


def plan_pieces(ds: Dataset, partitions: int | None) -> tuple[Dataset, list[Piece]]:
    """The dataset planned for training (``partitions``, default 256) and its pieces."""
    asked = ds._asked_partitions()
    if ds.path == "":
        return ds, _file_pieces(ds, partitions or asked or DEFAULT_PARTITIONS)
    if partitions is not None and partitions != asked:
        ds = ds._replan({"partitions": partitions}, record=False)
    elif asked is None and not ds._given("limit"):
        ds = ds._replan({"partitions": DEFAULT_PARTITIONS}, record=False)
    rows = ds.endpoint_rows()
    positional = not any(ds._given(k) for k in ("filter", "sample", "sample_rows", "limit", "rows"))
    pieces = []
    for e, n in zip(ds.endpoints, rows, strict=True):
        exact = positional and e.first_row is not None and e.table_rows == n
        pieces.append(Piece(replace(e, rows=n), n, e.first_row if exact else None))
    if not all(p.first_row is not None for p in pieces):
        pieces = [Piece(p.endpoint, p.rows) for p in pieces]
    return ds, pieces


# ---------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------


class Rebatcher:
    """Cuts a stream of record batches into batches of exactly ``size`` rows;
    a batch inside one incoming batch is a zero-copy slice of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.parts: list[pa.RecordBatch] = []
        self.rows = 0

    def push(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """The full batches completed by ``batch``."""
        offset = 0
        while offset < batch.num_rows:
            take = min(self.size - self.rows, batch.num_rows - offset)
            part = batch.slice(offset, take)
            offset += take
            if not self.parts and take == self.size:
                yield part
                continue
            self.parts.append(part)
            self.rows += take
            if self.rows == self.size:
                yield self._take()

    def _take(self) -> pa.RecordBatch:
        out = self.parts[0] if len(self.parts) == 1 else pa.concat_batches(self.parts)
        self.parts, self.rows = [], 0
        return out

    def flush(self) -> pa.RecordBatch | None:
        """The last, short batch (``None`` when nothing is left)."""
        return self._take() if self.parts else None


class _Rows:
    """Pops exactly ``n`` rows at a time from a stream of record batches."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._it = batches
        self._head: pa.RecordBatch | None = None

    def take(self, n: int) -> list[pa.RecordBatch]:
        out = []
        while n > 0:
            if self._head is None or self._head.num_rows == 0:
                self._head = next(self._it, None)
                if self._head is None:
                    break
                continue
            part = self._head.slice(0, n)
            self._head = self._head.slice(part.num_rows)
            out.append(part)
            n -= part.num_rows
        return out

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


# ---------------------------------------------------------------------------
# One dataset's order and reads
# ---------------------------------------------------------------------------


class _Stream:
    """One dataset: its pieces, its epoch orders, and reads of positions."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        seed: int,
        shuffle: bool,
        block_rows: int | None,
        shuffle_buffer: int,
        partitions: int | None,
        prefetch: int,
    ) -> None:
        if block_rows is not None and block_rows < 1:
            raise ValueError(f"block_rows must be at least 1, not {block_rows}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be 0 or more, not {shuffle_buffer}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be 0 or more, not {prefetch}")
        seed = _order.seed_of(seed)
        planned, pieces = plan_pieces(dataset, partitions)
        self.dataset = planned
        self.pieces = pieces
        self.positional = bool(pieces) and all(p.first_row is not None for p in pieces)
        self.num_rows = sum(p.rows for p in pieces)
        if not self.positional:
            self.block_rows: int | None = None
        elif block_rows is not None:
            self.block_rows = block_rows
        else:
            total = planned.total_bytes
            row_bytes = total / self.num_rows if total and self.num_rows else None
            self.block_rows = default_block_rows(shuffle_buffer, row_bytes)
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.prefetch = max(1, prefetch)
        self.name = planned.name
        self.uri = planned.pinned_uri
        self.by_rows = self.positional and self._probe_rows()
        self._orders: dict[int, EpochOrder] = {}
        self._plans: dict[tuple[int, int], tuple[Endpoint, ...]] = {}  # block -> its planned endpoints

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_orders"] = {}
        state["_plans"] = {}
        return state

    def _probe_rows(self) -> bool:
        """Whether the server reads by position (``rows=``): one tiny plan."""
        first = self.pieces[0].first_row or 0
        try:
            sub = self.dataset._replan({"rows": [(first, first + 1)], "partitions": None}, record=False)
        except SheafError:
            return False
        return sub.num_rows == 1

    @property
    def client(self) -> Client:
        return self.dataset.client

    def identity(self) -> dict[str, Any]:
        """What a state must match to be resumed by this stream."""
        return {
            "uri": self.uri,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "block_rows": self.block_rows,
            "shuffle_buffer": self.shuffle_buffer,
            "rows": self.num_rows,
        }

    def order(self, epoch: int) -> EpochOrder:
        """The order of stream epoch ``epoch`` (cached)."""
        order = self._orders.get(epoch)
        if order is None:
            if len(self._orders) >= 4:
                self._orders.clear()
            order = self._orders[epoch] = EpochOrder(
                [p.rows for p in self.pieces],
                seed=self.seed,
                epoch=epoch,
                shuffle=self.shuffle,
                block_rows=self.block_rows,
                shuffle_buffer=self.shuffle_buffer,
            )
        return order

    def _jobs(self, start_epoch: int, intervals: Intervals) -> Iterator[tuple[_order.Window, Array]]:
        """``(window, offsets)`` of the sequence positions ``intervals``, in order (lazily)."""
        n = self.num_rows
        for a, b in intervals:
            while a < b:
                e, off = divmod(a, n)
                stop = min(b, (e + 1) * n)
                yield from self.order(start_epoch + e).iter_windows([(off, stop - e * n)])
                a = stop

    def read(self, start_epoch: int, intervals: Intervals) -> Iterator[pa.RecordBatch]:
        """The rows at sequence positions ``intervals`` (position ``q`` is
        position ``q % N`` of stream epoch ``start_epoch + q // N``), in
        order. Consecutive windows are fetched together: the first request
        asks for at least :data:`READ_ROWS` rows (a quick first batch), each
        next one for twice as many, up to about :data:`READ_BYTES` (rows
        sized from what was read so far); ``prefetch`` requests are read
        ahead on threads."""
        jobs = self._jobs(start_epoch, intervals)
        target = READ_ROWS
        cap = READ_ROWS  # rows of READ_BYTES, known once something was read

        def group() -> list[tuple[_order.Window, Array]]:
            out: list[tuple[_order.Window, Array]] = []
            rows = 0
            while rows < target:
                job = next(jobs, None)
                if job is None:
                    break
                out.append(job)
                rows += len(job[1])
            return out

        pool: ThreadPoolExecutor | None = None
        pending: deque[Future[list[pa.Table]]] = deque()
        try:
            while True:
                while len(pending) <= self.prefetch:
                    jobs_now = group()
                    if not jobs_now:
                        break
                    if pool is None:
                        pool = ThreadPoolExecutor(self.prefetch, thread_name_prefix="sheaf-window")
                    pending.append(pool.submit(self._read_group, jobs_now))
                    target = min(2 * target, cap)
                if not pending:
                    return
                tables = pending.popleft().result()
                rows = sum(t.num_rows for t in tables)
                if rows:
                    per_row = max(1, sum(t.nbytes for t in tables) // rows)
                    cap = max(READ_ROWS, READ_BYTES // per_row)
                for table in tables:
                    yield from table.to_batches()
        finally:
            for f in pending:
                f.cancel()
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _read_group(self, jobs: list[tuple[_order.Window, Array]]) -> list[pa.Table]:
        """The rows of every ``(window, offsets)`` of ``jobs``, in that order,
        as one table: the blocks (or pieces, or exact rows of cut windows)
        read, then ONE ``take`` of all the group's rows from the reads
        combined into one chunk (a ``take`` per window from a many-chunk
        table copied all of it each time), or a zero-copy slice when the
        reads are already in order (``shuffle=False``)."""
        located = [w.rows_at(offsets) for w, offsets in jobs]
        if self.by_rows:
            firsts = np.array([p.first_row or 0 for p in self.pieces], dtype=np.int64)
            positions = [firsts[pieces] + rows for pieces, rows in located]
            spans: list[tuple[int, int]] = []
            if self.client.cache is not None:
                # Whole blocks, one read each: a client cache stores them as blocks, which every
                # epoch reads again (blocks never change).
                step = self.block_rows or 1
                keys = _sorted_unique(np.concatenate([p * (1 << 40) + r // step * step for p, r in located]))
                for key in keys.tolist():
                    piece, start = divmod(key, 1 << 40)
                    first, end = int(firsts[piece]), min(start + step, self.pieces[piece].rows)
                    spans.append((first + start, first + end))
                table = self._read_blocks(spans)
            else:
                # A whole window is its blocks, each read alone with the same ticket every epoch (the
                # server replays a ticket it streamed before from its cache); of a window cut by the
                # run's ends (or by a checkpoint), exactly the rows needed, in one request.
                cut: list[Array] = []
                for (w, offsets), pos in zip(jobs, positions, strict=True):
                    if len(offsets) == w.rows:
                        spans.extend((int(firsts[b.piece]) + b.start, int(firsts[b.piece]) + b.stop) for b in w.blocks)
                    else:
                        cut.append(pos)
                tables = [self._read_whole_blocks(spans)] if spans else []
                if cut:
                    # Distinct positions (a group may hold the same position of two passes over the
                    # dataset): a row needed twice is read once and taken twice below.
                    part, got = self._read_spans(_runs(_sorted_unique(np.concatenate(cut))))
                    tables.append(part)
                    spans.extend(got)
                table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            starts = np.array([a for a, _ in spans], dtype=np.int64)
            sizes = np.array([b - a for a, b in spans], dtype=np.int64)
            held = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            starts, held = _disjoint(starts, sizes, held)
            if table.num_rows != int(sizes.sum()):
                raise SheafError(
                    f"reading {self.uri}: {len(spans)} row range(s) holding {int(sizes.sum())} rows returned "
                    f"{table.num_rows} rows; the table changed under a pinned revision",
                    code="CLIENT",
                )
            pos = positions[0] if len(positions) == 1 else np.concatenate(positions)
            i = np.searchsorted(starts, pos, side="right") - 1
            take = held[i] + pos - starts[i]
        else:
            needed = _sorted_unique(np.concatenate([pieces for pieces, _ in located])).tolist()
            tables = self._read_pieces(needed)
            piece_at = np.zeros(len(self.pieces), dtype=np.int64)
            at = 0
            for p, t in zip(needed, tables, strict=True):
                piece_at[p] = at
                at += t.num_rows
            table = pa.concat_tables(tables) if len(tables) != 1 else tables[0]
            take = np.concatenate([piece_at[pieces] + rows for pieces, rows in located])
        if len(take) == 0:
            return []
        if take[-1] - take[0] == len(take) - 1 and bool(np.all(np.diff(take) == 1)):
            return [table.slice(int(take[0]), len(take))]  # in order already: the read's own batches, no copy
        return [table.combine_chunks().take(pa.array(take, pa.int64()))]

    def _read_whole_blocks(self, blocks: list[tuple[int, int]]) -> pa.Table:
        """Table ranges (each a block), one request each, in that order, at
        most :data:`READ_THREADS` at a time. A block's plan is kept (up to
        :data:`MAX_PLANS` of them), so a later epoch reads the same ticket
        without planning again, and the server may replay it from its cache."""
        context = f"reading {self.uri}"

        def read(span: tuple[int, int]) -> pa.Table:
            endpoints = self._plans.get(span)
            if endpoints is None:
                sub = self.dataset._replan({"rows": [span], "limit": None, "partitions": 1}, record=False)
                endpoints = tuple(sub.endpoints)
                if len(self._plans) >= MAX_PLANS:
                    self._plans.clear()
                self._plans[span] = endpoints
            batches = [b for e in endpoints for b in read_endpoint(self.client, e, context, cache=False)]
            return pa.Table.from_batches(batches, schema=self.dataset.schema)

        if len(blocks) == 1:
            return read(blocks[0])
        with ThreadPoolExecutor(min(READ_THREADS, len(blocks)), thread_name_prefix="sheaf-block") as pool:
            return pa.concat_tables(list(pool.map(read, blocks)))

    def _read_spans(self, spans: list[tuple[int, int]]) -> tuple[pa.Table, list[tuple[int, int]]]:
        """Table ranges (canonical) read with ``rows=``: one plan per at most
        :data:`~sheaf._request.MAX_ROW_RANGES` ranges (one endpoint per piece
        touched at most), its endpoints read in parallel (at most
        :data:`READ_THREADS`). Returns the rows and the ranges they hold, in
        that order (the caller checks the row count against the ranges)."""
        firsts = np.array([p.first_row or 0 for p in self.pieces], dtype=np.int64)
        tables: list[pa.Table] = []
        context = f"reading {self.uri}"

        def read(e: Endpoint) -> list[pa.RecordBatch]:
            return list(read_endpoint(self.client, e, context, cache=False))

        pending = spans
        while pending:
            chunk = next(_chunks(self.dataset, pending))  # what one request may hold
            pending = pending[len(chunk) :]
            starts = np.array([a for a, _ in chunk], dtype=np.int64)
            touched = len(_sorted_unique(np.searchsorted(firsts, starts, side="right") - 1))
            sub = self.dataset._replan({"rows": chunk, "limit": None, "partitions": max(1, touched)}, record=False)
            if len(sub.endpoints) <= 1:
                parts = [read(e) for e in sub.endpoints]
            else:
                with ThreadPoolExecutor(min(READ_THREADS, len(sub.endpoints)), thread_name_prefix="sheaf-rows") as pool:
                    parts = list(pool.map(read, sub.endpoints))
            tables.append(pa.Table.from_batches([b for p in parts for b in p], schema=self.dataset.schema))
        if not tables:
            return self.dataset.schema.empty_table(), []
        return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)), list(spans)

    def _read_blocks(self, ranges: list[tuple[int, int]]) -> pa.Table:
        """Table ranges read one request each (so each is a cache entry), in order."""
        if len(ranges) == 1:
            return self.dataset.read_rows(ranges)
        with ThreadPoolExecutor(min(4, len(ranges)), thread_name_prefix="sheaf-block") as pool:
            tables = list(pool.map(lambda r: self.dataset.read_rows([r]), ranges))
        return pa.concat_tables(tables)

    def _read_pieces(self, pieces: list[int]) -> list[pa.Table]:
        def read(p: int) -> pa.Table:
            piece = self.pieces[p]
            # read_endpoint checks the piece's rows (its endpoint's `rows`).
            batches = list(read_endpoint(self.client, piece.endpoint, f"reading {self.uri}"))
            return pa.Table.from_batches(batches, schema=self.dataset.schema)

        if len(pieces) == 1:
            return [read(pieces[0])]
        with ThreadPoolExecutor(min(4, len(pieces)), thread_name_prefix="sheaf-read") as pool:
            return list(pool.map(read, pieces))
