"""Who reads what in an epoch: the pure arithmetic behind :mod:`sheaf.torch`.

Nothing here does I/O or imports torch, so every process (the trainer, each
DataLoader worker, each distributed rank) computes the same answer from the
same inputs:

- **Pieces** are the readable parts of a dataset with exact row counts (one
  per Flight endpoint; for the manifest table, one per group of files).
- **Units** are row ranges of pieces. When there are fewer pieces than global
  workers (``world_size * num_workers``), pieces are cut into row ranges (in
  proportion to their rows) so that no worker idles.
- Every epoch, units are permuted from ``(seed, epoch)`` and dealt to global
  workers (``rank * num_workers + worker_id``) greedily by rows, so every row
  belongs to exactly one worker.
- Each worker groups its units into **windows** of at least
  ``shuffle_buffer`` rows (whole units), optionally shuffles rows inside a
  window, and cuts the stream into batches.
- A DataLoader takes batches from its workers round-robin (worker 0, 1, ...,
  skipping workers that are done), which is what :func:`round_robin_prefix`
  models; it gives equal batch counts across ranks and resumption.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

_M64 = (1 << 64) - 1


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


@dataclass(frozen=True)
class Unit:
    """Rows ``[start, stop)`` of piece ``piece``."""

    piece: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def make_units(piece_rows: Sequence[int], global_workers: int) -> list[Unit]:
    """The units of an epoch: whole pieces when at least ``global_workers``
    pieces hold rows; else each piece cut into balanced row ranges, in
    proportion to its rows, so that there are at least as many units as
    workers (or one per row when there are fewer rows). Empty pieces are
    left out."""
    full = [(i, n) for i, n in enumerate(piece_rows) if n > 0]
    if len(full) >= global_workers:
        return [Unit(i, 0, n) for i, n in full]
    total = sum(n for _, n in full)
    units: list[Unit] = []
    for i, n in full:
        k = min(n, -(-global_workers * n // total))
        units.extend(Unit(i, j * n // k, (j + 1) * n // k) for j in range(k))
    return units


def permutation(n: int, seed: int, epoch: int) -> list[int]:
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)``."""
    order = list(range(n))
    random.Random(mix(seed, epoch)).shuffle(order)
    return order


def deal(units: Sequence[Unit], order: Sequence[int], workers: int) -> list[list[Unit]]:
    """Units in ``order``, each to the worker with the fewest rows so far (the
    lowest id on ties): every unit to exactly one worker, rows balanced."""
    out: list[list[Unit]] = [[] for _ in range(workers)]
    load = [0] * workers
    for i in order:
        w = min(range(workers), key=lambda k: (load[k], k))
        out[w].append(units[i])
        load[w] += units[i].rows
    return out


def windows(units: Sequence[Unit], shuffle_buffer: int) -> list[list[Unit]]:
    """Consecutive units grouped so that each group holds at least
    ``shuffle_buffer`` rows (the last may hold fewer); one unit per group
    when ``shuffle_buffer`` is 0."""
    out: list[list[Unit]] = []
    current: list[Unit] = []
    rows = 0
    for u in units:
        current.append(u)
        rows += u.rows
        if rows >= max(shuffle_buffer, 1):
            out.append(current)
            current, rows = [], 0
    if current:
        out.append(current)
    return out


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


@dataclass(frozen=True)
class EpochPlan:
    """What every global worker reads in one epoch, and how many batches it yields.

    ``units[g]`` are the units of global worker ``g = rank * num_workers + worker``;
    ``batches[rank][worker]`` is how many batches that worker yields (after
    the equal-batches cut), ``full[rank][worker]`` how many its rows make.
    """

    units: list[list[Unit]]
    batches: list[list[int]]
    full: list[list[int]]

    def rank_batches(self, rank: int) -> int:
        """Batches rank ``rank`` yields in the epoch."""
        return sum(self.batches[rank])


def plan_epoch(
    piece_rows: Sequence[int],
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    world_size: int,
    num_workers: int,
    batch_size: int,
    drop_last: bool,
    equal_batches: bool,
) -> EpochPlan:
    """The plan of one epoch (see the module docstring)."""
    g = world_size * num_workers
    units = make_units(piece_rows, g)
    order = permutation(len(units), seed, epoch) if shuffle else list(range(len(units)))
    dealt = deal(units, order, g)
    full = [
        [
            batch_count(sum(u.rows for u in dealt[r * num_workers + w]), batch_size, drop_last)
            for w in range(num_workers)
        ]
        for r in range(world_size)
    ]
    if equal_batches:
        target = min(sum(row) for row in full)
        batches = [round_robin_prefix(row, target) for row in full]
    else:
        batches = [list(row) for row in full]
    return EpochPlan(units=dealt, batches=batches, full=full)
