"""What a write is given, checked and made ready to send before any call to
the server: the target (``owner/name[@HASH|:TAG]/path``), the ``mode=`` and
``metadata=`` options, and the data, turned into a stream of Arrow record
batches of one schema and bounded size (:func:`as_stream`), which
:class:`sheaf.Writer` uploads (:mod:`sheaf.write`).
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pyarrow as pa

from ._proto import sheaf_pb2
from .errors import InvalidArgumentError

__all__ = [
    "MODES",
    "WriteData",
    "split_package",
    "split_target",
    "mode_of",
    "metadata_text",
    "as_table",
    "as_stream",
]

#: ``mode=`` values and the ``WriteMode`` each one sends.
MODES: dict[str, int] = {
    "append": sheaf_pb2.WRITE_MODE_APPEND,
    "overwrite": sheaf_pb2.WRITE_MODE_OVERWRITE,
    "error": sheaf_pb2.WRITE_MODE_ERROR_IF_EXISTS,
}

#: What :meth:`sheaf.Writer.write` accepts: a ``pyarrow.Table``, ``RecordBatch`` or
#: ``RecordBatchReader``, an iterable of record batches, a pandas or polars
#: DataFrame, or any object exporting an Arrow C stream (``__arrow_c_stream__``).
WriteData = Any

# One uploaded record batch holds at most this many rows and about this many
# bytes (larger ones are sliced, without copying): each batch is one gRPC
# message, and the server accepts at most 2^24 rows per batch and 256 MiB per message.
MAX_BATCH_ROWS = 1 << 20
MAX_BATCH_BYTES = 32 << 20


# -- targets --------------------------------------------------------------------


def split_package(ref: str, what: str) -> tuple[str, str | None]:
    """``(owner/name, base)`` of ``owner/name[@HASH|:TAG]`` (``sheaf://`` optional)."""
    text = ref[len("sheaf://") :] if ref.startswith("sheaf://") else ref
    package, base = text, None
    for sep in ("@", ":"):
        if sep in text:
            package, base = text.split(sep, 1)
            break
    if ("://" in ref and not ref.startswith("sheaf://")) or package.count("/") != 1 or "?" in text:
        raise InvalidArgumentError(f"{what}: expected a package as owner/name[@HASH|:TAG], got {ref!r}", code="CLIENT")
    owner, name = package.split("/")
    if not owner or not name or base == "":
        raise InvalidArgumentError(f"{what}: expected a package as owner/name[@HASH|:TAG], got {ref!r}", code="CLIENT")
    return package, base


def split_target(target: str) -> tuple[str, str, str | None]:
    """``(owner/name, path, base)`` of a write target, ``sheaf://OWNER/NAME[@HASH|:TAG]/PATH``
    or ``OWNER/NAME[@HASH|:TAG]/PATH``."""
    what = f"write({target!r})"
    if not isinstance(target, str):
        raise InvalidArgumentError(f"write(): the target must be a str, got {type(target).__name__}", code="CLIENT")
    text = target[len("sheaf://") :] if target.startswith("sheaf://") else target
    if "://" in text or "?" in text or "#" in text:
        raise InvalidArgumentError(
            f"{what}: a write target is sheaf://OWNER/NAME/PATH or OWNER/NAME/PATH (no other scheme, no query)",
            code="CLIENT",
        )
    pieces = text.split("/", 2)
    path = urllib.parse.unquote(pieces[2]).strip("/") if len(pieces) == 3 else ""
    if not path:
        raise InvalidArgumentError(
            f"{what}: the target names no table: sheaf://OWNER/NAME/PATH, PATH a file (x.parquet) or a folder",
            code="CLIENT",
        )
    package, base = split_package("/".join(pieces[:2]), what)
    return package, path, base


def mode_of(mode: str, what: str) -> int:
    """The ``WriteMode`` of ``mode=``."""
    try:
        return MODES[mode]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"{what}: mode={mode!r}; expected one of {', '.join(map(repr, MODES))}", code="CLIENT"
        ) from None


def metadata_text(metadata: Mapping[str, Any] | None, what: str) -> str | None:
    """The revision's user metadata as JSON text (``None`` keeps the base revision's)."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError(
            f"{what}: metadata= must be a dict (a JSON object), got {type(metadata).__name__}", code="CLIENT"
        )
    try:
        return json.dumps(dict(metadata), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{what}: metadata= is not JSON: {e}", code="CLIENT") from e


# -- data -----------------------------------------------------------------------


def _bounded(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """``batch`` sliced (without copying) into batches of at most
    MAX_BATCH_ROWS rows and about MAX_BATCH_BYTES bytes."""
    rows = batch.num_rows
    if rows == 0:
        return
    size = batch.nbytes
    step = min(rows, MAX_BATCH_ROWS)
    if size > MAX_BATCH_BYTES:
        step = min(step, max(1, rows * MAX_BATCH_BYTES // size))
    if step >= rows:
        yield batch
        return
    for start in range(0, rows, step):
        yield batch.slice(start, step)


def _mismatch(expected: pa.Schema, got: pa.Schema) -> str:
    """Which column differs between two schemas, for messages."""
    for i in range(max(len(expected), len(got))):
        if i >= len(expected):
            return f"extra column {got.field(i).name!r} ({got.field(i).type})"
        if i >= len(got):
            return f"column {expected.field(i).name!r} ({expected.field(i).type}) is missing"
        a, b = expected.field(i), got.field(i)
        if a.name != b.name:
            return f"column {i} is {b.name!r} instead of {a.name!r}"
        if not a.equals(b):
            return f"column {a.name!r} is {b.type}{'' if b.nullable else ' not null'} instead of {a.type}"
    return "metadata differs"


def _checked(schema: pa.Schema, batches: Iterator[Any], what: str) -> Iterator[pa.RecordBatch]:
    """The batches of an iterable, each checked against the first's schema
    and sliced by :func:`_bounded`."""
    for i, item in enumerate(batches):
        if isinstance(item, pa.Table):
            parts: Iterable[pa.RecordBatch] = item.to_batches()
            got = item.schema
        elif isinstance(item, pa.RecordBatch):
            parts, got = (item,), item.schema
        else:
            raise InvalidArgumentError(
                f"{what}: item {i} of the iterable is a {type(item).__name__}, not a pyarrow.RecordBatch", code="CLIENT"
            )
        if not got.equals(schema, check_metadata=False):
            raise InvalidArgumentError(
                f"{what}: batch {i} has another schema than the first: {_mismatch(schema, got)}", code="CLIENT"
            )
        for batch in parts:
            yield from _bounded(batch)


def _is(data: object, module: str, name: str) -> bool:
    """``isinstance(data, module.name)`` when that module was imported (never imports it)."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return isinstance(cls, type) and isinstance(data, cls)


def as_table(data: WriteData, what: str) -> pa.Table | None:
    """``data`` as a ``pyarrow.Table`` when it is held in memory (a Table,
    RecordBatch, pandas or polars DataFrame), so it can be sent again; ``None``
    for streams (readers, iterables, Arrow C streams), which are sent once."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if _is(data, "pandas", "DataFrame"):
        # As DataFrame.to_parquet stores it: a RangeIndex as metadata, any
        # other index as columns (reset_index() or drop it to choose).
        try:
            return pa.Table.from_pandas(data)
        # pyarrow's message names the column it could not convert.
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            raise InvalidArgumentError(f"{what}: the DataFrame cannot become an Arrow table: {e}", code="CLIENT") from e
    if _is(data, "polars", "DataFrame"):
        table = data.to_arrow()
        assert isinstance(table, pa.Table)
        return table
    return None


def as_stream(data: WriteData, what: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """``(schema, batches)`` of anything :meth:`sheaf.Writer.write` accepts. Readers
    and iterables are consumed lazily, batch by batch, as the upload sends them."""
    if isinstance(data, pa.Table):
        return data.schema, (b for batch in data.to_batches() for b in _bounded(batch))
    if isinstance(data, pa.RecordBatch):
        return data.schema, _bounded(data)
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, (b for batch in data for b in _bounded(batch))
    if _is(data, "pandas", "DataFrame") or _is(data, "polars", "DataFrame"):
        table = as_table(data, what)
        assert table is not None
        return as_stream(table, what)
    if _is(data, "polars", "LazyFrame"):
        raise InvalidArgumentError(f"{what}: a polars LazyFrame: collect() it first", code="CLIENT")
    if hasattr(data, "__arrow_c_stream__"):
        return as_stream(pa.RecordBatchReader.from_stream(data), what)
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise InvalidArgumentError(
            f"{what}: cannot write a {type(data).__module__}.{type(data).__name__}; expected a pyarrow Table, "
            "RecordBatch or RecordBatchReader, an iterable of RecordBatches, or a pandas or polars DataFrame",
            code="CLIENT",
        )
    items = iter(data)
    try:
        first = next(items)
    except StopIteration:
        raise InvalidArgumentError(
            f"{what}: the iterable holds no record batch, so the table has no schema; "
            "write an empty pyarrow.Table (schema.empty_table()) instead",
            code="CLIENT",
        ) from None
    if not isinstance(first, (pa.RecordBatch, pa.Table)):
        raise InvalidArgumentError(
            f"{what}: item 0 of the iterable is a {type(first).__name__}, not a pyarrow.RecordBatch", code="CLIENT"
        )

    def chained() -> Iterator[Any]:
        yield first
        yield from items

    return first.schema, _checked(first.schema, chained(), what)
