"""Framework-neutral training loader: a dataset's rows in a topology-free,
seeded epoch order, shared out to distributed ranks and their workers, cut
into ``pyarrow.RecordBatch`` batches, with checkpoints that resume on any
topology. No torch import: :mod:`sheaf.torch` and the other framework
adapters wrap it.

>>> src = Loader(client.dataset("sheaf://team/clicks/train.parquet"), batch_size=512, seed=7)  # doctest: +SKIP
>>> for batch in src.stream(epoch=0, rank=0, world_size=1, worker=0, num_workers=1):  # doctest: +SKIP
...     ...

The order (see :mod:`sheaf._order`): blocks of at most ``block_rows`` rows
(whole endpoints when the dataset cannot be read by row position), permuted
from ``(seed, epoch)``, grouped into windows of at least ``shuffle_buffer``
rows, rows permuted inside each window. Global worker ``g = rank *
num_workers + worker`` reads run ``g`` of the positions still to be read,
cut into ``world_size * num_workers`` nearly equal contiguous runs.

**Reading.** A plain Parquet read (no filter, sample or limit) is read by
table position with the server's ``rows=`` parameter: each whole block of a
worker's run is one request whose ticket is the same every epoch (its plan
is kept), so the server replays it from its stream cache when the table fits
there and reads only the row groups holding it otherwise; the rows of a
window cut by the run's ends (or by a checkpoint) are read exactly, in one
request. Consecutive windows are read together, :data:`sheaf._stream.READ_ROWS`
rows first (a quick first batch), then twice as many each time up to about
:data:`sheaf._stream.READ_BYTES`; each read's rows are put in epoch order with
one ``take`` (none at all in table order), so batches are zero-copy slices.
With a client cache, blocks are read through it (a block is a cache entry
that later epochs find again). Other reads (filters, samples, CSV/JSON
tables, files) use whole endpoints as blocks and read each block's endpoint.
Each worker keeps ``prefetch`` reads in flight on threads. ``block_rows``
defaults to :func:`sheaf._stream.default_block_rows` (65,536 rows without a
shuffle buffer; smaller with one, to keep the shuffle good; fewer for wide
rows).

**State** (:meth:`WorkerStream.state_dict`, :meth:`Loader.state_dict`): a
JSON-able dict ``{"version", "format": "sheaf.loader", "epoch",
"batch_size", "drop_last", "equal_batches", "uri", "seed", "shuffle",
"block_rows", "shuffle_buffer", "rows", "consumed", "pass", "batches"}``
where ``consumed`` is the sorted ``[start, stop)`` intervals of the epoch's
global positions already consumed (for a :class:`~sheaf.mix.Mix`, the
per-dataset keys sit in ``"streams"``). ``pass`` records how the current
pass distributed the rest (``base``: what was consumed when it started,
``world_size``, ``num_workers``, ``done``: batches consumed per global
worker it covers), so a state can be resumed by the same topology without
merging. The rule: **every rank loads the merged state**
(:func:`merge_state_dicts` of all ranks' states); it resumes on any
``(world_size, num_workers)``, yielding every row the epoch has left exactly
once. A state covering only some ranks (or workers) of a bigger world
resumes only the same topology, each rank (worker) loading its own;
anything else raises ``ValueError`` asking for the merge.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from . import _order
from ._order import EpochOrder, Intervals, round_robin_prefix
from ._stream import DEFAULT_BLOCK_ROWS, DEFAULT_PARTITIONS, Rebatcher, _Rows, _Stream, default_block_rows
from .dataset import Dataset

__all__ = [
    "Loader",
    "WorkerStream",
    "merge_state_dicts",
    "shuffle_quality",
    "order_quality",
    "round_robin_prefix",
    "DEFAULT_BLOCK_ROWS",
    "DEFAULT_PARTITIONS",
    "STATE_VERSION",
    "default_block_rows",
]

STATE_VERSION = 2
FORMAT = "sheaf.loader"

_STREAM_KEYS = ("uri", "seed", "shuffle", "block_rows", "shuffle_buffer", "rows")


# ---------------------------------------------------------------------------
# Passes: who reads what of the rest of an epoch
# ---------------------------------------------------------------------------


@dataclass
class _Pass:
    """How the rest of an epoch is shared out to ``world_size * num_workers`` workers."""

    world_size: int
    num_workers: int
    base: list[Intervals]  # per stream: consumed when the pass started
    runs: list[list[Intervals]]  # [stream][global worker]
    full: list[int]  # [global worker] batches its runs make
    quota: list[int]  # [global worker] batches it yields (after equal_batches)
    done: dict[int, int]  # [global worker] batches consumed (those the state covers)

    def rows(self, g: int) -> list[int]:
        return [_order.size(runs[g]) for runs in self.runs]


def _prefix(sizes: list[int], runs: list[Intervals], rows: int) -> list[Intervals]:
    """The positions (per stream) of a worker's first ``rows`` mixed rows."""
    counts = _order.mix_counts(sizes, rows) if len(sizes) > 1 else [min(rows, sizes[0])]
    return [_order.slice_positions(run, 0, c) for run, c in zip(runs, counts, strict=True)]


class _Source:
    """What :class:`Loader` and :class:`~sheaf.mix.Mix` share: streams, their
    rows per epoch, batching, passes, states."""

    streams: list[_Stream]
    epoch_rows: list[int]  # rows each stream contributes to an epoch

    def __init__(self, *, batch_size: int, drop_last: bool, equal_batches: bool, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.equal_batches = equal_batches
        self.seed = _order.seed_of(seed)

    # -- what is read ----------------------------------------------------------

    @property
    def num_rows(self) -> int:
        """Rows per epoch over all ranks (before ``drop_last``/``equal_batches``)."""
        return sum(self.epoch_rows)

    @property
    def schema(self) -> pa.Schema:
        """The schema of the batches."""
        return self.streams[0].dataset.schema

    @property
    def name(self) -> str:
        return " + ".join(s.name for s in self.streams)

    def _check_topology(self, rank: int, world_size: int, worker: int, num_workers: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), not {rank}")
        if num_workers < 1 or not 0 <= worker < num_workers:
            raise ValueError(f"worker must be in [0, num_workers={num_workers}), not {worker}")

    # -- states ------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "equal_batches": self.equal_batches,
        }
        if len(self.streams) == 1:
            out.update(self.streams[0].identity())
        else:
            out["mix"] = self._mix_identity()
            out["streams"] = [s.identity() for s in self.streams]
        return out

    def _mix_identity(self) -> dict[str, Any]:
        return {}

    def _check_state(self, state: dict[str, Any]) -> None:
        if state.get("format") != FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"{self.name}: not a sheaf loader state (format {state.get('format')!r}, version "
                f"{state.get('version')!r}; this client reads version {STATE_VERSION})"
            )
        mine = self._identity()
        for key, value in mine.items():
            if key == "streams":
                for i, (a, b) in enumerate(zip(state.get("streams", []), value, strict=False)):
                    for k in b:
                        if a.get(k) != b[k]:
                            raise ValueError(
                                f"{self.name}: cannot resume: stream {i} of the state was saved with "
                                f"{k}={a.get(k)!r} but this loader has {k}={b[k]!r}"
                            )
                if len(state.get("streams", [])) != len(value):
                    raise ValueError(f"{self.name}: cannot resume: the state mixes a different number of datasets")
            elif state.get(key) != value:
                raise ValueError(
                    f"{self.name}: cannot resume: the state was saved with {key}={state.get(key)!r} "
                    f"but this loader has {key}={value!r}"
                )

    def _consumed(self, state: dict[str, Any]) -> list[Intervals]:
        if len(self.streams) == 1:
            return [_order.normalize(state.get("consumed", []))]
        return [_order.normalize(s.get("consumed", [])) for s in state["streams"]]

    def _export(
        self, epoch: int, consumed: list[Intervals], plan: _Pass | None, done: dict[int, int], batches: int
    ) -> dict[str, Any]:
        state: dict[str, Any] = {"version": STATE_VERSION, "format": FORMAT, "epoch": epoch}
        state.update(copy.deepcopy(self._identity()))
        lists = [[[a, b] for a, b in c] for c in consumed]
        if len(self.streams) == 1:
            state["consumed"] = lists[0]
        else:
            for s, c in zip(state["streams"], lists, strict=True):
                s["consumed"] = c
        if plan is not None:
            state["pass"] = {
                "world_size": plan.world_size,
                "num_workers": plan.num_workers,
                "base": [[[a, b] for a, b in c] for c in plan.base],
                "done": {str(g): n for g, n in sorted(done.items())},
            }
        state["batches"] = batches
        return state

    def plan(self, epoch: int, world_size: int, num_workers: int, state: dict[str, Any] | None = None) -> _Pass:
        """How the rest of ``epoch`` is shared out (see the module docstring);
        ``state`` (of the same epoch) is what was consumed."""
        g_count = world_size * num_workers
        base: list[Intervals] = [[] for _ in self.streams]
        done: dict[int, int] = {}
        if state is not None and int(state["epoch"]) == epoch:
            self._check_state(state)
            p = state.get("pass")
            if p is not None and p["world_size"] == world_size and p["num_workers"] == num_workers:
                base = [_order.normalize(c) for c in p["base"]]
                done = {int(g): int(n) for g, n in p["done"].items()}
            elif _complete(state):
                base = self._consumed(state)
            else:
                raise ValueError(
                    f"{self.name}: the state covers only some of the ranks/workers of a world of "
                    f"{p['world_size'] if p else '?'} rank(s) x {p['num_workers'] if p else '?'} worker(s); "
                    f"to resume with world_size={world_size}, num_workers={num_workers}, merge the states "
                    "of every rank with merge_state_dicts(...) and load the merged state on every rank"
                )
        runs = [_order.cut(_order.complement(b, n), g_count) for b, n in zip(base, self.epoch_rows, strict=True)]
        full = [
            _order.batch_count(sum(_order.size(r[g]) for r in runs), self.batch_size, self.drop_last)
            for g in range(g_count)
        ]
        if self.equal_batches:
            target = min(sum(full[r * num_workers : (r + 1) * num_workers]) for r in range(world_size))
            quota = []
            for r in range(world_size):
                quota.extend(round_robin_prefix(full[r * num_workers : (r + 1) * num_workers], target))
        else:
            quota = list(full)
        return _Pass(world_size, num_workers, base, runs, full, quota, done)

    def _consumed_by(self, plan: _Pass, done: dict[int, int]) -> list[Intervals]:
        sets: list[list[Intervals]] = [[b] for b in plan.base]
        for g, n in done.items():
            rows = min(n * self.batch_size, sum(plan.rows(g)))
            for s, part in enumerate(_prefix(plan.rows(g), [r[g] for r in plan.runs], rows)):
                sets[s].append(part)
        return [_order.union(*parts) for parts in sets]

    def num_batches(
        self,
        *,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 1,
        state: dict[str, Any] | None = None,
    ) -> int:
        """Batches rank ``rank`` yields in ``epoch`` (what is left of it when
        resuming from ``state``)."""
        plan = self.plan(epoch, world_size, max(1, num_workers), state)
        k = max(1, num_workers)
        return sum(max(0, plan.quota[g] - plan.done.get(g, 0)) for g in range(rank * k, (rank + 1) * k))

    def state_dict(
        self,
        *,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 1,
        batches: int | Sequence[int],
        state: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The state of rank ``rank`` after it consumed ``batches`` batches of
        this pass (since the iteration started, from ``state`` when it
        resumed): an int when they were taken round-robin from its workers
        (as torch's DataLoader and tf.data's interleave do), else the count
        per worker."""
        k = max(1, num_workers)
        plan = self.plan(epoch, world_size, k, state)
        mine = range(rank * k, (rank + 1) * k)
        skip = [plan.done.get(g, 0) for g in mine]
        left = [max(0, plan.quota[g] - s) for g, s in zip(mine, skip, strict=True)]
        taken = round_robin_prefix(left, batches) if isinstance(batches, int) else list(batches)
        done = dict(plan.done)
        for g, s, t in zip(mine, skip, taken, strict=True):
            done[g] = s + t
        prior = int(state.get("batches", 0)) if state is not None and int(state["epoch"]) == epoch else 0
        return self._export(epoch, self._consumed_by(plan, done), plan, done, prior + sum(taken))

    def stream(
        self,
        *,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        worker: int = 0,
        num_workers: int = 1,
        state: dict[str, Any] | None = None,
    ) -> WorkerStream:
        """The batches global worker ``rank * num_workers + worker`` yields in
        ``epoch`` (the rest of it, when resuming from ``state``)."""
        self._check_topology(rank, world_size, worker, num_workers)
        plan = self.plan(epoch, world_size, num_workers, state)
        prior = int(state.get("batches", 0)) if state is not None and int(state["epoch"]) == epoch else 0
        return WorkerStream(self, epoch, plan, rank * num_workers + worker, prior)

    def _mixed_epoch_start(self, s: int, epoch: int) -> tuple[int, int]:
        """(stream epoch, offset) where stream ``s``'s rows of ``epoch`` start."""
        return divmod(epoch * self.epoch_rows[s], self.streams[s].num_rows)


def _complete(state: dict[str, Any]) -> bool:
    """Whether a state covers every worker of its pass (or has no pass: merged)."""
    p = state.get("pass")
    if p is None:
        return True
    return len(p["done"]) >= int(p["world_size"]) * int(p["num_workers"])


class WorkerStream(Iterator[pa.RecordBatch]):
    """The batches one global worker yields in an epoch (create it with
    :meth:`Loader.stream`); :meth:`state_dict` covers this worker's progress."""

    def __init__(self, source: _Source, epoch: int, plan: _Pass, g: int, prior: int) -> None:
        self.source = source
        self.epoch = epoch
        self.plan = plan
        self.global_worker = g
        self.quota = plan.quota[g]
        self.skip = min(plan.done.get(g, 0), self.quota)
        #: Batches of this worker's run consumed so far in this pass (skipped ones included).
        self.batches = self.skip
        self._prior = prior
        self._it: Iterator[pa.RecordBatch] | None = None
        self._readers: list[_Rows] = []

    def __iter__(self) -> WorkerStream:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self._it is None:
            self._it = self._batches()
        batch = next(self._it)
        self.batches += 1
        return batch

    def __len__(self) -> int:
        return self.quota - self.skip

    def close(self) -> None:
        """Stops reading (cancels the reads in flight)."""
        if self._it is not None:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()
        for r in self._readers:
            r.close()

    def state_dict(self) -> dict[str, Any]:
        """The state after the batches this worker yielded (partial: it covers
        this worker only, plus what was consumed before the pass)."""
        src, plan, g = self.source, self.plan, self.global_worker
        done = {g: self.batches}
        return src._export(self.epoch, src._consumed_by(plan, done), plan, done, self._prior + self.batches - self.skip)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        src, plan, g = self.source, self.plan, self.global_worker
        b = src.batch_size
        if self.skip >= self.quota:
            return
        sizes = plan.rows(g)
        total = sum(sizes)
        start_rows = self.skip * b
        skipped = _prefix(sizes, [r[g] for r in plan.runs], start_rows)
        self._readers = []
        for s, stream in enumerate(src.streams):
            rest = _order.slice_positions(plan.runs[s][g], _order.size(skipped[s]), sizes[s])
            e0, off = src._mixed_epoch_start(s, self.epoch)
            seq = [(a + off, b_ + off) for a, b_ in rest]
            self._readers.append(_Rows(stream.read(e0, seq)))
        if len(sizes) == 1:
            batcher = Rebatcher(b)
            emitted = self.skip
            reader = self._readers[0]
            while emitted < self.quota:
                parts = reader.take(b)
                if not parts:
                    break
                for part in parts:
                    for out in batcher.push(part):
                        yield out
                        emitted += 1
                        if emitted >= self.quota:
                            return
            last = batcher.flush()
            if last is not None and not src.drop_last and emitted < self.quota:
                yield last
            return
        yield from self._mixed(sizes, total)

    def _mixed(self, sizes: list[int], total: int) -> Iterator[pa.RecordBatch]:
        src, b = self.source, self.source.batch_size
        j = self.skip
        before = _order.mix_counts(sizes, j * b)
        while j < self.quota:
            k1 = min((j + 1) * b, total)
            if k1 - j * b < b and src.drop_last:
                return
            after = _order.mix_counts(sizes, k1)
            parts = []
            for s, reader in enumerate(self._readers):
                parts.extend(reader.take(after[s] - before[s]))
            if not parts:
                return
            batch = pa.concat_batches([p.cast(src.schema) if p.schema != src.schema else p for p in parts])
            if any(st.shuffle for st in src.streams) and batch.num_rows > 1:
                order = _order.permutation(batch.num_rows, src.seed, self.epoch, self.global_worker, j, 0x313)
                batch = batch.take(pa.array(order, pa.int64()))
            yield batch
            before = after
            j += 1


# ---------------------------------------------------------------------------
# One dataset
# ---------------------------------------------------------------------------


class Loader(_Source):
    """A dataset's batches for training, framework-neutral.

    Args:
        dataset: the planned read.
        batch_size: rows per batch.
        seed: seeds the block order and the row shuffles.
        shuffle: ``False`` reads in table order (still shared out).
        block_rows: rows per block (default:
            :func:`sheaf._stream.default_block_rows`: :data:`DEFAULT_BLOCK_ROWS`
            without a shuffle buffer, about ``shuffle_buffer / 256`` (at least
            2,048) with one, fewer for wide rows); only for reads by position
            (plain Parquet), else blocks are endpoints.
        shuffle_buffer: rows are shuffled inside windows of at least this
            many rows (whole blocks; at least one block). Memory holds about
            one window per worker (its own rows of it).
        drop_last: drop each worker's last short batch.
        equal_batches: every rank yields the smallest rank's batch count (its
            last batches are cut), so collectives never wait for a rank.
        partitions: endpoints to plan (default: the dataset's own, else 256).
        prefetch: read requests each worker keeps in flight (on threads),
            besides the one it is cutting into batches (0 or more; 0 acts
            as 1).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int = 1024,
        seed: int = 0,
        shuffle: bool = True,
        block_rows: int | None = None,
        shuffle_buffer: int = 0,
        drop_last: bool = False,
        equal_batches: bool = False,
        partitions: int | None = None,
        prefetch: int = 2,
    ) -> None:
        super().__init__(batch_size=batch_size, drop_last=drop_last, equal_batches=equal_batches, seed=seed)
        self.streams = [
            _Stream(
                dataset,
                seed=seed,
                shuffle=shuffle,
                block_rows=block_rows,
                shuffle_buffer=shuffle_buffer,
                partitions=partitions,
                prefetch=prefetch,
            )
        ]
        self.epoch_rows = [self.streams[0].num_rows]

    @property
    def dataset(self) -> Dataset:
        """The dataset as planned for training."""
        return self.streams[0].dataset

    @property
    def piece_rows(self) -> list[int]:
        """Exact rows of each piece (endpoint, or group of files)."""
        return [p.rows for p in self.streams[0].pieces]

    @property
    def block_rows(self) -> int | None:
        """Rows per block (``None``: blocks are whole pieces)."""
        return self.streams[0].block_rows

    @property
    def shuffle_buffer(self) -> int:
        return self.streams[0].shuffle_buffer

    @property
    def shuffle(self) -> bool:
        return self.streams[0].shuffle

    def order(self, epoch: int) -> EpochOrder:
        """The global order of ``epoch``."""
        return self.streams[0].order(epoch)

    def positions(self, epoch: int, intervals: Intervals) -> list[tuple[int, int]]:
        """``(piece, row)`` at the global positions ``intervals`` of ``epoch``."""
        pieces, rows = self.order(epoch).rows_at(intervals)
        return list(zip(pieces.tolist(), rows.tolist(), strict=True))

    def __repr__(self) -> str:
        st = self.streams[0]
        return (
            f"<sheaf.loader.Loader {st.name}: {self.num_rows:,} rows in {len(st.pieces)} piece(s), "
            f"block_rows={st.block_rows}, shuffle_buffer={st.shuffle_buffer}, batch_size={self.batch_size}, "
            f"seed={self.seed}, reads {'by position' if st.by_rows else 'whole endpoints'}>"
        )


# ---------------------------------------------------------------------------
# Merging states, shuffle quality
# ---------------------------------------------------------------------------


def _find_states(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        if obj.get("format") == FORMAT:
            yield obj
            return
        for v in obj.values():
            yield from _find_states(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _find_states(v)


def merge_state_dicts(states: Iterable[Any]) -> dict[str, Any]:
    """One state from the states of every rank (or worker): the union of
    what they consumed. Sheaf states are also found inside other dicts (a
    ``torchdata`` ``StatefulDataLoader.state_dict()`` holds one per worker).
    Load the result on every rank; it resumes on any topology."""
    found = [s for st in states for s in _find_states(st)]
    if not found:
        raise ValueError("merge_state_dicts: no sheaf loader state found")
    first = found[0]

    def identity(state: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in state.items() if k not in ("consumed", "pass", "batches", "streams")}
        if "streams" in state:
            out["streams"] = [{k: v for k, v in st.items() if k != "consumed"} for st in state["streams"]]
        return out

    ident = identity(first)
    for s in found[1:]:
        other = identity(s)
        if other != ident:
            diff = sorted(k for k in set(ident) | set(other) if ident.get(k) != other.get(k))
            raise ValueError(f"merge_state_dicts: the states differ in {', '.join(diff)}; they are not of one run")
    streams = first.get("streams")
    out = copy.deepcopy(first)
    if streams is None:
        out["consumed"] = [[a, b] for a, b in _order.union(*(s.get("consumed", []) for s in found))]
    else:
        for i, st in enumerate(out["streams"]):
            st["consumed"] = [[a, b] for a, b in _order.union(*(s["streams"][i].get("consumed", []) for s in found))]
    # Group by pass (topology and base): within one pass, the workers' progress adds up.
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in found:
        p = s.get("pass")
        key = "" if p is None else repr((p["world_size"], p["num_workers"], p["base"]))
        groups.setdefault(key, []).append(s)
    passes = []
    for key, members in groups.items():
        if key == "":
            continue
        p = copy.deepcopy(members[0]["pass"])
        for m in members[1:]:
            for g, n in m["pass"]["done"].items():
                p["done"][g] = max(int(n), int(p["done"].get(g, 0)))
        passes.append(p)
    out.pop("pass", None)
    complete = [p for p in passes if len(p["done"]) >= p["world_size"] * p["num_workers"]]
    if len(passes) == 1 and "" not in groups:
        out["pass"] = passes[0]
    elif len(complete) != len(passes):
        raise ValueError(
            "merge_state_dicts: the states come from different passes and some pass misses ranks/workers; "
            "merge the states of every rank saved at the same step"
        )
    out["batches"] = sum(int(s.get("batches", 0)) for s in found)
    return out


def order_quality(table_rows: Sequence[int] | np.ndarray[Any, Any], batch_size: int) -> float:
    """How much more the mean table position of a batch varies across
    batches than under a uniform random shuffle: ``var(batch means) /
    (var(rows) / batch_size * (N - batch_size) / (N - 1))`` over the full
    batches of ``table_rows`` (the table row at each global position). 1.0
    is a full shuffle; reading in table order gives about ``batch_size``.

    It is the noise a table sorted by some quantity (time, label, user)
    would put into batch statistics, relative to a full shuffle."""
    t = np.asarray(table_rows, dtype=np.float64)
    n = len(t)
    batches = n // batch_size if batch_size > 0 else 0
    if batches < 2 or n < 2:
        raise ValueError("order_quality needs at least two full batches")
    var = float(t.var())
    means = t[: batches * batch_size].reshape(batches, batch_size).mean(axis=1)
    observed = float(((means - t.mean()) ** 2).mean())
    expected = var / batch_size * (n - batch_size) / (n - 1)
    return observed / expected if expected else math.inf


def shuffle_quality(source: Loader, *, epoch: int = 0, batch_size: int | None = None) -> float:
    """:func:`order_quality` of ``source``'s global order in ``epoch`` (its
    positions read in order, as one worker reads them): 1.0 is as good as a
    full shuffle. No data is read."""
    order = source.order(epoch)
    firsts = np.concatenate([[0], np.cumsum(source.piece_rows)[:-1]]).astype(np.int64)
    pieces, rows = order.rows_at([(0, order.num_rows)])
    return order_quality(firsts[pieces] + rows, batch_size or source.batch_size)
