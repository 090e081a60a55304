"""The epoch order of a training loader: pure arithmetic (no I/O, no torch),
computed identically in every process.

**Blocks.** A dataset's *pieces* (its Flight endpoints with exact row counts;
for the manifest table, groups of files) are cut into *blocks* of at most
``block_rows`` rows. When the dataset cannot be read by row position (a
filter, a sample, a non-Parquet table, the manifest), a block is a whole
piece (``block_rows`` is ignored): reading part of a piece would read all of
it. Blocks never depend on the topology.

**Global order.** Each epoch, the blocks are permuted from ``(seed, epoch)``;
consecutive permuted blocks are grouped into *windows* of at least
``max(shuffle_buffer, 1)`` rows (whole blocks; the last window may hold
fewer); the rows of each window are permuted from ``(seed, epoch, window)``.
This maps every global position ``p`` in ``[0, N)`` to one row ``(piece,
row)``, as a function of (pinned dataset, seed, epoch, block_rows,
shuffle_buffer) only. ``shuffle=False`` is the identity (table order).

**Distribution.** The positions of an epoch still to be read (all of
``[0, N)`` at first; what a checkpoint did not consume when resuming) are cut
into ``G = world_size * num_workers`` contiguous *runs* of nearly equal rows
(:func:`cut`); global worker ``g = rank * num_workers + worker`` reads run
``g`` in position order, cutting it into batches. A worker whose run covers
part of a window reads only the rows of the window it needs.

**Consumption.** A DataLoader takes batches from its workers round-robin
(:func:`round_robin_prefix`), so the batches a rank consumed tell how many of
each worker's batches were consumed, hence a prefix of each run. The set of
consumed positions (sorted ``[start, stop)`` intervals) is topology-free: a
union over ranks resumes on any topology.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import InvalidArgumentError

_M64 = (1 << 64) - 1


def seed_of(seed: Any, what: str = "seed") -> int:
    """``seed`` checked as the dataset's ``seed=`` is (a ``uint64``): an int
    from 0 to 2**64 - 1, else :class:`~sheaf.InvalidArgumentError` naming it
    (an order's seed is never silently wrapped or cut to 64 bits)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= _M64:
        raise InvalidArgumentError(
            f"{what}={seed!r}: expected an integer from 0 to 2**64 - 1 (as a dataset's seed=)", code="CLIENT"
        )
    return int(seed)


Array = np.ndarray[Any, np.dtype[np.int64]]

Intervals = list[tuple[int, int]]


def splitmix64(x: int) -> int:
    """The splitmix64 finalizer (the same mixer the server samples with)."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def mix(*values: int) -> int:
    """A 64-bit seed derived from several integers (order matters)."""
    h = 0x5EAF
    for v in values:
        h = splitmix64(h ^ splitmix64(v & _M64))
    return h


def _splitmix64_array(x: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: np.ndarray[Any, np.dtype[np.uint64]] = z ^ (z >> np.uint64(31))
    return out


def permutation(n: int, *seed: int) -> Array:
    """A permutation of ``range(n)`` that depends only on ``seed`` (not on
    numpy's generators, whose streams may change between versions): the
    order of the splitmix64 hashes of ``i ^ mix(seed)``, a bijection of the
    64-bit integers, so there are no ties."""
    keys = _splitmix64_array(np.arange(n, dtype=np.uint64) ^ np.uint64(mix(*seed)))
    # The keys are distinct, so any sort gives the same order: numpy's default (SIMD) sort
    # is ~5x faster than a stable one (1.2 ms against 6.5 ms for 65,536 rows).
    return np.argsort(keys).astype(np.int64, copy=False)


# ---------------------------------------------------------------------------
# Interval sets: sorted, disjoint, non-empty half-open [start, stop) pairs
# ---------------------------------------------------------------------------


def normalize(intervals: Iterable[Sequence[int]]) -> Intervals:
    """Sorted, merged, non-empty intervals."""
    out: Intervals = []
    for start, stop in sorted((int(a), int(b)) for a, b in intervals):
        if stop <= start:
            continue
        if out and start <= out[-1][1]:
            if stop > out[-1][1]:
                out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
    return out


def union(*sets: Iterable[Sequence[int]]) -> Intervals:
    """The union of interval sets."""
    return normalize(iv for s in sets for iv in s)


def size(intervals: Iterable[Sequence[int]]) -> int:
    """Positions in an interval set."""
    return sum(b - a for a, b in intervals)


def complement(intervals: Intervals, n: int) -> Intervals:
    """``[0, n)`` minus ``intervals``."""
    out: Intervals = []
    at = 0
    for a, b in intervals:
        a, b = max(a, 0), min(b, n)
        if a > at:
            out.append((at, a))
        at = max(at, b)
    if at < n:
        out.append((at, n))
    return out


def slice_positions(intervals: Intervals, start: int, stop: int) -> Intervals:
    """The positions of ranks ``[start, stop)`` in the sequence ``intervals``
    enumerates (``start``-th smallest position on), as intervals."""
    out: Intervals = []
    seen = 0
    for a, b in intervals:
        n = b - a
        lo, hi = max(start - seen, 0), min(stop - seen, n)
        if hi > lo:
            out.append((a + lo, a + hi))
        seen += n
        if seen >= stop:
            break
    return out


def cut(intervals: Intervals, parts: int) -> list[Intervals]:
    """``intervals`` cut into ``parts`` contiguous runs; run ``g`` holds the
    positions of ranks ``[g * T // parts, (g + 1) * T // parts)`` (``T`` the
    set's size), so runs differ by at most one row."""
    total = size(intervals)
    return [slice_positions(intervals, g * total // parts, (g + 1) * total // parts) for g in range(parts)]


def intersect(a: Intervals, lo: int, hi: int) -> Intervals:
    """``a`` restricted to ``[lo, hi)``."""
    out = []
    i = bisect.bisect_right(a, (lo, _M64)) - 1
    for start, stop in a[max(i, 0) :]:
        if start >= hi:
            break
        s, e = max(start, lo), min(stop, hi)
        if e > s:
            out.append((s, e))
    return out


# ---------------------------------------------------------------------------
# Blocks, windows, the order of an epoch
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """Rows ``[start, stop)`` of piece ``piece``."""

    piece: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def make_blocks(piece_rows: Sequence[int], block_rows: int | None) -> list[Block]:
    """Pieces cut into blocks of at most ``block_rows`` rows (``None``: whole
    pieces), in table order; empty pieces make no block."""
    out: list[Block] = []
    for p, n in enumerate(piece_rows):
        step = n if block_rows is None else block_rows
        out.extend(Block(p, s, min(s + step, n)) for s in range(0, n, max(step, 1)))
    return out


@dataclass
class Window:
    """Positions ``[start, stop)`` of an epoch: the rows of ``blocks`` (in
    that order), permuted when ``shuffled``."""

    index: int
    start: int
    stop: int
    blocks: list[Block]
    shuffled: bool
    seed: tuple[int, ...]

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def perm(self) -> Array:
        """Row ``i`` of the window (position ``start + i``) is row
        ``perm()[i]`` of its blocks' concatenation."""
        return permutation(self.rows, *self.seed) if self.shuffled else np.arange(self.rows, dtype=np.int64)

    def rows_at(self, offsets: Array) -> tuple[Array, Array]:
        """``(pieces, rows)`` of the window's rows at ``offsets`` (from ``start``)."""
        c = self.perm()[offsets] if self.shuffled else np.asarray(offsets, dtype=np.int64)
        sizes = np.array([b.rows for b in self.blocks], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        j = np.searchsorted(starts, c, side="right") - 1
        pieces = np.array([b.piece for b in self.blocks], dtype=np.int64)[j]
        firsts = np.array([b.start for b in self.blocks], dtype=np.int64)[j]
        return pieces, firsts + c - starts[j]


class EpochOrder:
    """The global order of one epoch (see the module docstring)."""

    def __init__(
        self,
        piece_rows: Sequence[int],
        *,
        seed: int,
        epoch: int,
        shuffle: bool = True,
        block_rows: int | None,
        shuffle_buffer: int = 0,
    ) -> None:
        blocks = make_blocks(piece_rows, block_rows)
        order = permutation(len(blocks), seed, epoch).tolist() if shuffle else list(range(len(blocks)))
        self.num_rows = sum(b.rows for b in blocks)
        self.windows: list[Window] = []
        current: list[Block] = []
        rows = start = 0
        for i in order:
            current.append(blocks[i])
            rows += blocks[i].rows
            if rows >= max(shuffle_buffer, 1):
                self._close(current, start, rows, shuffle, seed, epoch)
                start += rows
                current, rows = [], 0
        if current:
            self._close(current, start, rows, shuffle, seed, epoch)
        self._starts = [w.start for w in self.windows]

    def _close(self, blocks: list[Block], start: int, rows: int, shuffle: bool, seed: int, epoch: int) -> None:
        index = len(self.windows)
        self.windows.append(Window(index, start, start + rows, blocks, shuffle, (seed, epoch, index, 0x51F7)))

    def window_at(self, position: int) -> Window:
        """The window holding ``position``."""
        return self.windows[bisect.bisect_right(self._starts, position) - 1]

    def windows_of(self, intervals: Intervals) -> list[tuple[Window, Array]]:
        """The windows ``intervals`` touch, in order, each with the offsets
        (from its start) of the positions of ``intervals`` inside it."""
        return list(self.iter_windows(intervals))

    def iter_windows(self, intervals: Intervals) -> Iterator[tuple[Window, Array]]:
        """:meth:`windows_of`, one window at a time (a whole epoch's offsets
        are never held at once)."""
        held: tuple[Window, list[Array]] | None = None
        for a, b in intervals:
            p = a
            while p < b:
                w = self.window_at(p)
                e = min(b, w.stop)
                offsets = np.arange(p - w.start, e - w.start, dtype=np.int64)
                if held is not None and held[0] is w:
                    held[1].append(offsets)
                else:
                    if held is not None:
                        yield held[0], held[1][0] if len(held[1]) == 1 else np.concatenate(held[1])
                    held = (w, [offsets])
                p = e
        if held is not None:
            yield held[0], held[1][0] if len(held[1]) == 1 else np.concatenate(held[1])

    def rows_at(self, intervals: Intervals) -> tuple[Array, Array]:
        """``(pieces, rows)`` at every position of ``intervals``, in order."""
        parts = [w.rows_at(offsets) for w, offsets in self.windows_of(intervals)]
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate([p for p, _ in parts]), np.concatenate([r for _, r in parts])


# ---------------------------------------------------------------------------
# Batches, DataLoader round-robin, mixing proportions
# ---------------------------------------------------------------------------


def batch_count(rows: int, batch_size: int, drop_last: bool) -> int:
    """Batches ``rows`` rows make."""
    return rows // batch_size if drop_last else -(-rows // batch_size)


def round_robin_prefix(counts: Sequence[int], n: int) -> list[int]:
    """How many batches each worker contributed to the first ``n`` batches a
    DataLoader yields, when worker ``w`` yields ``counts[w]`` batches and the
    loader takes one from each worker in turn, skipping finished workers."""
    n = min(n, sum(counts))
    lo, hi = 0, max(counts, default=0)
    # The largest number of full rounds t with sum(min(c, t)) <= n.
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(c, mid) for c in counts) <= n:
            lo = mid
        else:
            hi = mid - 1
    taken = [min(c, lo) for c in counts]
    left = n - sum(taken)
    for w, c in enumerate(counts):
        if left == 0:
            break
        if c > lo:
            taken[w] += 1
            left -= 1
    return taken


def _due_count(rows: Sequence[int], t: Fraction) -> int:
    # Row i of stream s is due at (2i + 1) / (2 rows[s]); rows due at or before t.
    return sum(min(r, max(0, int(t * r + Fraction(1, 2)))) for r in rows)


def mix_counts(rows: Sequence[int], k: int) -> list[int]:
    """How many of the first ``k`` rows of a mixed stream come from each
    source, when source ``s`` holds ``rows[s]`` rows: row ``i`` of source
    ``s`` is due at ``(2i + 1) / (2 rows[s])`` and rows are taken by due time
    (ties: lower source first). Monotone in ``k``, proportional all along,
    and exactly ``rows`` at ``k = sum(rows)``."""
    total = sum(rows)
    k = max(0, min(k, total))
    if k == 0:
        return [0] * len(rows)
    if k == total:
        return list(rows)
    # The due time of the k-th row: the smallest event time t with count(t) >= k.
    best: Fraction | None = None
    for r in rows:
        if r == 0:
            continue
        lo, hi = 0, r - 1
        if _due_count(rows, Fraction(2 * hi + 1, 2 * r)) < k:
            continue
        while lo < hi:
            mid = (lo + hi) // 2
            if _due_count(rows, Fraction(2 * mid + 1, 2 * r)) >= k:
                hi = mid
            else:
                lo = mid + 1
        t = Fraction(2 * lo + 1, 2 * r)
        if best is None or t < best:
            best = t
    assert best is not None
    out = []
    for r in rows:  # rows due strictly before best
        c = min(r, max(0, int(best * r + Fraction(1, 2)))) if r else 0
        if r and c and Fraction(2 * (c - 1) + 1, 2 * r) == best:
            c -= 1
        out.append(c)
    left = k - sum(out)
    for s, r in enumerate(rows):  # rows due exactly at best, lower source first
        if left == 0:
            break
        if r and out[s] < r and Fraction(2 * out[s] + 1, 2 * r) == best:
            out[s] += 1
            left -= 1
    assert left == 0
    return out
