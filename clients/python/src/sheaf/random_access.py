"""Random access to a pinned table: rows by position.

- :func:`take` (``Dataset.take``, ``ds[i]``, ``ds[a:b]``): rows at any
  positions, in the order asked (duplicates allowed, negative positions count
  from the end). The positions are grouped into ranges and sent as ``rows=``
  (at most :data:`~sheaf._request.MAX_ROW_RANGES` ranges a request, and
  64 KiB for a dataset named by URI): the server reads only the pages
  holding them. Positions already in the local
  cache (an endpoint of the same dataset read before) are served from it.
- :func:`read_rows` (``Dataset.read_rows``): the rows of table ranges with the
  dataset's columns, filter and sample, cached as one block (a cached block
  needs no server call at all, not even planning).

Positions are the dataset's rows. A dataset whose rows are the table's rows,
or a ``rows=`` selection of them, or their first ``limit``, is addressable;
one with ``filter``, ``sample`` or ``sample_rows`` is not (its rows are known
only by reading it): :func:`take` refuses it naming the parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa

try:
    import numpy as np
except ImportError as e:  # pyarrow does not require numpy
    raise ImportError("random access (take, ds[i], to_torch_map) needs numpy: pip install numpy") from e

from . import _request
from ._cache import canonical_ranges, rows_key, ticket_key
from .errors import InvalidArgumentError, SheafError

if TYPE_CHECKING:
    from .dataset import Dataset, Endpoint

__all__ = ["take", "read_rows", "getitem", "length", "to_ranges", "take_sorted", "UNADDRESSABLE"]

#: Parameters under which positions do not address rows without reading.
UNADDRESSABLE = ("filter", "sample", "sample_rows")


def to_ranges(positions: np.ndarray[Any, Any]) -> list[tuple[int, int]]:
    """Sorted unique positions as half-open runs of consecutive positions."""
    if positions.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [positions.size]))
    return [(int(positions[s]), int(positions[e - 1]) + 1) for s, e in zip(starts, ends, strict=True)]


def _check_addressable(ds: Dataset, what: str) -> None:
    for name in UNADDRESSABLE:
        if ds._given(name):
            raise InvalidArgumentError(
                f"{what} on {ds.name}: positions address the table's rows, but this dataset sets {name}=, so its "
                f"rows are known only by reading it; take from ds.replan({name}=None), or from ds.to_table()",
                code="CLIENT",
            )


def _own_rows(ds: Dataset) -> list[tuple[int, int]] | None:
    """The dataset's own ``rows`` selection, canonical; ``None`` without one."""
    ranges = _request.rows_of(ds._pinned)
    return None if ranges is None else canonical_ranges(ranges)


def length(ds: Dataset) -> int:
    """Rows of an addressable dataset (exact; counted once when the plan does not say)."""
    _check_addressable(ds, "len()")
    if ds.num_rows is not None:
        return ds.num_rows
    return sum(ds.endpoint_rows())


def _out_of_range(ds: Dataset, index: Any, n: int) -> IndexError:
    return IndexError(f"{ds.name}: index {int(index)} is out of range for its {n:,} rows")


def _positions(ds: Dataset, indices: Any, n: int) -> np.ndarray[Any, Any]:
    """``indices`` as non-negative int64 dataset positions, checked against
    ``n`` before any conversion (an index too large for int64, such as a
    uint64 or a Python int, is out of range as given, never wrapped). A
    boolean mask is refused (``TypeError``: its values would read as
    positions 0 and 1), and so are indices of more than one dimension
    (``ValueError``)."""
    if hasattr(indices, "numpy") and callable(indices.numpy) and not isinstance(indices, np.ndarray):
        indices = indices.numpy()  # a torch tensor
    if isinstance(indices, range):
        if len(indices):
            for end in (indices[0], indices[-1]):  # a range's extremes are its ends
                if not -n <= end < n:
                    raise _out_of_range(ds, end, n)
        asked = np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
    else:
        asked = np.asarray(indices)
        if asked.dtype.kind == "b":
            raise TypeError(
                f"take() on {ds.name}: indices are booleans (a mask?), not positions; "
                "take the positions of a mask's True values with numpy.flatnonzero(mask)"
            )
        if asked.ndim > 1:
            raise ValueError(
                f"take() on {ds.name}: indices must be one-dimensional, not of shape {asked.shape}; "
                "flatten them first (indices.reshape(-1))"
            )
        if asked.dtype.kind == "f" and asked.size and not isinstance(indices, np.ndarray):
            # numpy makes floats of Python ints mixing negatives and ones past int64: keep them ints
            exact = np.asarray(indices, dtype=object)
            if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in exact.reshape(-1)):
                asked = exact
        if asked.dtype == object and asked.size:
            # Python ints beyond int64 (numpy keeps them as objects), maybe among smaller ones.
            flat = asked.reshape(-1)
            for value in flat:
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise TypeError(f"take() on {ds.name}: indices must be integers, not {type(value).__name__}")
                if not -n <= int(value) < n:
                    raise _out_of_range(ds, value, n)
            asked = np.array([int(v) for v in flat], dtype=np.int64)
        elif asked.dtype == object or asked.dtype.kind not in "iu":
            if asked.size == 0:
                asked = asked.astype(np.int64)
            else:
                raise TypeError(f"take() on {ds.name}: indices must be integers, not {asked.dtype}")
        asked = asked.reshape(-1)
        if asked.dtype.kind == "u":
            big = np.flatnonzero(asked >= np.uint64(n))
            if big.size:
                raise _out_of_range(ds, asked[big[0]], n)
        asked = asked.astype(np.int64, copy=False)
    pos = np.where(asked < 0, asked + n, asked)
    bad = np.flatnonzero((pos < 0) | (pos >= n))
    if bad.size:
        raise _out_of_range(ds, asked[bad[0]], n)
    return pos


def _table_positions(ds: Dataset, pos: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Dataset positions as table positions (through the dataset's own ``rows``)."""
    own = _own_rows(ds)
    if not own:
        return pos
    starts = np.array([s for s, _ in own], dtype=np.int64)
    lengths = np.array([e - s for s, e in own], dtype=np.int64)
    before = np.concatenate(([0], np.cumsum(lengths)))
    k = np.searchsorted(before[1:], pos, side="right")
    return np.asarray(starts[k] + (pos - before[k]), dtype=np.int64)


def take(ds: Dataset, indices: Any, *, fill_cache: bool = False, max_workers: int | None = None) -> pa.Table:
    """The dataset's rows at ``indices`` (any order, duplicates allowed,
    negative from the end), in that order, as a table with the dataset's
    schema. An index out of range raises ``IndexError`` naming the dataset.

    With a client cache, rows of endpoints of ``ds`` stored there are taken
    locally; ``fill_cache`` first reads (and stores) every endpoint holding
    asked rows that is not stored yet, so later takes need no server.
    ``max_workers``: a positive int (threads reading at once), or ``None``."""
    from .dataset import max_workers_of

    max_workers_of(max_workers, "take")
    _check_addressable(ds, "take()")
    n = length(ds)
    pos = _positions(ds, indices, n)
    if pos.size == 0:
        return ds.schema.empty_table()
    table_pos = _table_positions(ds, pos)
    uniq, inverse = np.unique(table_pos, return_inverse=True)
    pieces: list[tuple[np.ndarray[Any, Any], pa.Table]] = []  # (indices into uniq, their rows in that order)
    remote = np.ones(uniq.size, dtype=bool)
    if ds.client.cache is not None and _own_rows(ds) is None and not ds._given("limit"):
        for where, rows in _from_cache(ds, uniq, fill_cache=fill_cache):
            pieces.append((where, rows))
            remote[where] = False
    wanted = np.flatnonzero(remote)
    if wanted.size:
        ranges = to_ranges(uniq[wanted])
        got = _fetch(ds, ranges, max_workers=max_workers, cache=False)
        if got.num_rows != wanted.size:
            raise SheafError(
                f"take() on {ds.name}: asked {wanted.size} rows with rows=, the server answered {got.num_rows}",
                code="CLIENT",
            )
        pieces.append((wanted, got))
    order = np.concatenate([w for w, _ in pieces])
    table = _concat(ds, [t for _, t in pieces])
    slot = np.empty(uniq.size, dtype=np.int64)
    slot[order] = np.arange(order.size, dtype=np.int64)
    return table.take(pa.array(slot[inverse.reshape(-1)]))


def _concat(ds: Dataset, tables: Sequence[pa.Table]) -> pa.Table:
    schema = ds.schema
    fixed = [t if t.schema.equals(schema) else t.cast(schema) for t in tables]
    return pa.concat_tables(fixed) if len(fixed) > 1 else fixed[0]


#: Endpoints planned for the cache's view of a dataset that does not ask for
#: a number itself (so an entry is a few row groups, not the whole table).
CACHE_PARTITIONS = 256


def _cache_plan(ds: Dataset) -> tuple[Dataset, set[int]]:
    """The plan whose endpoints are the dataset's cache entries (``ds``
    itself when it asks for ``partitions``, else ``ds`` planned with
    :data:`CACHE_PARTITIONS`, once per handle), and the endpoints found too
    big to store (filled once, never again)."""
    with ds._lock:
        held: tuple[Dataset, set[int]] | None = ds.__dict__.get("_cache_plan")
        if held is None:
            plan = ds if ds._asked_partitions() else ds._replan({"partitions": CACHE_PARTITIONS}, record=False)
            held = (plan, set())
            ds.__dict__["_cache_plan"] = held
        return held


def _from_cache(
    ds: Dataset, uniq: np.ndarray[Any, Any], *, fill_cache: bool
) -> Iterable[tuple[np.ndarray[Any, Any], pa.Table]]:
    """Rows of ``uniq`` (sorted table positions) that cache entries of ``ds``
    hold: (indices into ``uniq``, those rows)."""
    from .dataset import read_endpoint

    cache = ds.client.cache
    plan, unstorable = _cache_plan(ds)
    endpoints = [e for e in plan.endpoints if e.first_row is not None and e.table_rows is not None]
    if cache is None or not endpoints or len(endpoints) != len(plan.endpoints):
        return
    endpoints.sort(key=lambda e: e.first_row or 0)
    firsts = np.array([e.first_row for e in endpoints], dtype=np.int64)
    which = np.searchsorted(firsts, uniq, side="right") - 1
    for k in np.unique(which):
        if k < 0:
            continue
        e: Endpoint = endpoints[int(k)]
        assert e.first_row is not None and e.table_rows is not None
        where = np.flatnonzero(which == k)
        inside = uniq[where] - e.first_row
        where, inside = where[inside < e.table_rows], inside[inside < e.table_rows]
        key = ticket_key(e.ticket)
        if key is None or where.size == 0:
            continue
        stored = cache.get(key, shared=True)  # take_sorted copies the rows
        if stored is None and fill_cache and e.index not in unstorable:
            for _ in read_endpoint(ds.client, e, f"filling the cache from {ds.pinned_uri}"):
                pass
            stored = cache.get(key, shared=True)
            if stored is None:
                unstorable.add(e.index)  # larger than the cache's bound: take its rows with rows=
        if stored is None or stored.num_rows != e.table_rows:
            continue
        yield where, take_sorted(stored, inside)


def take_sorted(table: pa.Table, positions: np.ndarray[Any, Any]) -> pa.Table:
    """``table.take(positions)`` for ascending positions, batch by batch
    (``Table.take`` concatenates a many-chunk table first: a copy of all of it)."""
    batches = table.to_batches()
    if len(batches) <= 1:
        return table.take(pa.array(positions))
    ends = np.cumsum([b.num_rows for b in batches])
    which = np.searchsorted(ends, positions, side="right")
    out = []
    for k in np.unique(which):
        mine = positions[which == k]
        start = int(ends[k - 1]) if k > 0 else 0
        out.append(batches[int(k)].take(pa.array(mine - start)))
    return pa.Table.from_batches(out, schema=table.schema)


def _chunks(ds: Dataset, ranges: list[tuple[int, int]]) -> Iterator[list[tuple[int, int]]]:
    """Canonical ranges cut into requests the server accepts: at most
    ``MAX_ROW_RANGES`` ranges, and 64 KiB for a URI (a typed request may be
    bigger: ``MAX_TYPED_REQUEST_BYTES``)."""
    base = _request.request_bytes(ds._pinned) + 256  # and the partitions= the read adds
    budget = max(1024, _request.max_request_bytes(ds._pinned) - base)
    chunk: list[tuple[int, int]] = []
    size = 0
    for start, end in ranges:
        cost = _request.range_bytes(start, end)
        if chunk and (len(chunk) >= _request.MAX_ROW_RANGES or size + cost > budget):
            yield chunk
            chunk, size = [], 0
        chunk.append((start, end))
        size += cost
    if chunk:
        yield chunk


def _fetch(
    ds: Dataset, ranges: list[tuple[int, int]], *, max_workers: int | None = None, cache: bool = False
) -> pa.Table:
    """The rows of canonical table ranges, read from the server in requests
    it accepts (:func:`_chunks`); the dataset's own ``rows`` and ``limit``
    are replaced."""
    tables = []
    for chunk in _chunks(ds, ranges):
        # A few endpoints, read in parallel (not one per row group holding a row).
        sub = ds._replan({"rows": chunk, "limit": None, "partitions": max_workers or 8}, record=False)
        tables.append(_read_table(sub, max_workers=max_workers, cache=cache))
    if not tables:
        return ds.schema.empty_table()
    return _concat(ds, tables)


def _read_table(ds: Dataset, *, max_workers: int | None, cache: bool) -> pa.Table:
    from .dataset import read_endpoint

    if not ds.endpoints:
        return ds.schema.empty_table()
    context = f"reading {ds.pinned_uri}"

    def read(endpoint: Endpoint) -> list[pa.RecordBatch]:
        return list(read_endpoint(ds.client, endpoint, context, cache=cache))

    workers = max(1, min(max_workers or 8, len(ds.endpoints)))
    if workers == 1:
        parts = [read(e) for e in ds.endpoints]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="sheaf-take") as pool:
            parts = list(pool.map(read, ds.endpoints))
    return pa.Table.from_batches([b for p in parts for b in p], schema=ds.schema)


def read_rows(
    ds: Dataset, ranges: _request.RowsSpec, *, cache: bool = True, max_workers: int | None = None
) -> pa.Table:
    """The rows of ``ds`` at table positions in ``ranges`` (the dataset's own
    ``rows`` and ``limit`` replaced; its columns, filter and sample applied),
    in table order.

    With a client cache (and ``cache``), the block is looked up under
    :func:`sheaf.cache.rows_key` first — a stored block costs no server call,
    not even planning — and stored after reading."""
    from .dataset import max_workers_of

    max_workers_of(max_workers, "read_rows")
    canon = canonical_ranges(_request.row_ranges(ranges))
    store = ds.client.cache if cache else None
    key = rows_key(ds.pinned_uri, canon) if store is not None else None
    if store is not None and key is not None:
        table = store.get(key)
        if table is not None:
            return table
    if not canon:
        return ds.schema.empty_table()
    table = _fetch(ds, canon, max_workers=max_workers, cache=False)
    if store is not None and key is not None:
        try:
            store.put(key, table)
        except OSError:
            pass  # an unwritable cache: the rows were read all the same
    return table


def getitem(ds: Dataset, item: Any) -> Any:
    """``ds[i]``: one row as a dict; ``ds[a:b]`` (any step): a table."""
    if isinstance(item, slice):
        n = length(ds)
        return take(ds, range(*item.indices(n)))
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        rows: list[dict[str, Any]] = take(ds, [int(item)]).to_pylist()
        return rows[0]
    raise TypeError(f"{ds.name}[{item!r}]: index with an int or a slice (or use take() for many rows)")
