"""What a dataset is asked as (``proto/sheaf.proto``, "The dataset request"):

- **typed**: a ``sheaf.v1.DatasetRequest``, which the client builds from
  keyword arguments, sent in a CMD descriptor packed in a
  ``google.protobuf.Any``; the server answers binary metadata;
- **text**: a dataset URI (``sheaf://OWNER/NAME[@HASH|:TAG][/PATH][?...]``)
  that the user wrote or the server answered, sent as it is: only the server
  parses it. The server answers JSON metadata. Keyword parameters given with
  a URI are appended to its query, and changing a parameter of a text
  dataset (``Dataset.replan``) sets it in the query; the server checks them.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TypeVar

import pyarrow.flight as flight
from google.protobuf import any_pb2, json_format, message, text_format

from ._proto import sheaf_pb2
from .errors import InvalidArgumentError, SheafError

__all__ = [
    "Request",
    "QUERY",
    "build",
    "pin",
    "change",
    "append",
    "given",
    "partitions",
    "descriptor",
    "describe",
    "decode",
    "sql_string",
    "as_json",
    "RowsSpec",
    "row_ranges",
    "rows_text",
    "rows_of",
    "MAX_ROW_RANGES",
    "MAX_REQUEST_BYTES",
    "MAX_TYPED_REQUEST_BYTES",
    "request_bytes",
    "max_request_bytes",
    "range_bytes",
]

#: A dataset request: typed, or a dataset URI.
Request = sheaf_pb2.DatasetRequest | str

#: The keyword parameters of a dataset: the query fields of ``DatasetRequest``.
QUERY = (
    "columns",
    "filter",
    "limit",
    "sample",
    "sample_rows",
    "seed",
    "partitions",
    "compression",
    "content",
    "rows",
)

#: The most row ranges one request may name (the server refuses more, naming
#: ``rows``); bigger random reads are split into several requests.
MAX_ROW_RANGES = 100_000

#: The largest dataset URI (text descriptor) the server accepts, in bytes;
#: random reads of a text dataset are also split to stay under it.
MAX_REQUEST_BYTES = 64 * 1024

#: What random reads of a typed dataset keep each request under (the server
#: accepts typed descriptors of up to 3 MiB: 100,000 ranges fit).
MAX_TYPED_REQUEST_BYTES = 5 * 2**19

#: Rows by position in the whole table (0-based, before filter and sample):
#: ``(start, end)`` half-open pairs, ``range`` objects (step 1), single
#: positions, or the URI text ``"0:100,250,1000:1010"``.
RowsSpec = str | Sequence[tuple[int, int] | range | int]

M = TypeVar("M", bound=message.Message)


# -- typed --------------------------------------------------------------------


def build(
    package: str,
    *,
    revision: str | None = None,
    tag: str | None = None,
    path: str = "",
    query: Mapping[str, object] | None = None,
) -> sheaf_pb2.DatasetRequest:
    """A ``DatasetRequest`` from keyword arguments (``None`` values are left out)."""
    if revision and tag:
        raise InvalidArgumentError(f"dataset({package!r}): give revision= or tag=, not both", code="CLIENT")
    request = sheaf_pb2.DatasetRequest(package=package, path=path.strip("/"))
    if revision:
        request.top_hash = revision
    elif tag:
        request.tag = tag
    return _set(request, query or {})


def _set(request: sheaf_pb2.DatasetRequest, query: Mapping[str, object]) -> sheaf_pb2.DatasetRequest:
    for name, value in query.items():
        if name not in QUERY:
            raise InvalidArgumentError(f"unknown dataset parameter {name!r} (known: {', '.join(QUERY)})", code="CLIENT")
        try:
            if name == "columns":
                del request.columns[:]
                if value is not None:
                    # A string is the URI's list ("a, b"); a sequence names
                    # columns exactly (blanks and commas included).
                    if isinstance(value, str):
                        names = [c.strip() for c in value.split(",") if c.strip()]
                    else:
                        names = [str(c) for c in value]  # type: ignore[attr-defined]
                    request.columns.extend(names)
            elif name == "rows":
                del request.rows[:]
                if value is not None:
                    for start, end in row_ranges(value):  # type: ignore[arg-type]
                        request.rows.add(start=start, end=end)
            elif value is None or value is False:
                request.ClearField(name)
            else:
                setattr(request, name, value)
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"dataset parameter {name}={value!r}: {e}", code="CLIENT") from e
    return request


def row_ranges(rows: RowsSpec) -> list[tuple[int, int]]:
    """``rows`` as half-open ``(start, end)`` pairs, in the order given
    (the server sorts and merges them). Refuses negative positions and
    ranges that end before they start, naming ``rows``."""
    out: list[tuple[int, int]] = []
    if isinstance(rows, str):
        for part in rows.split(","):
            part = part.strip()
            if not part:
                continue
            start_text, colon, end_text = part.partition(":")
            try:
                start = int(start_text)
                end = int(end_text) if colon else start + 1
            except ValueError:
                raise InvalidArgumentError(
                    f"rows: {part!r} is not ROW or START:END (positions separated by commas)", code="CLIENT"
                ) from None
            out.append((start, end))
    else:
        for item in rows:
            if isinstance(item, range):
                if item.step != 1:
                    raise InvalidArgumentError(f"rows: {item!r} must have step 1", code="CLIENT")
                out.append((item.start, item.stop))
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                out.append((int(item[0]), int(item[1])))
            elif isinstance(item, int) or hasattr(item, "__index__"):
                position = int(item)
                out.append((position, position + 1))
            else:
                raise InvalidArgumentError(
                    f"rows: {item!r} is not a position, a (start, end) pair or a range", code="CLIENT"
                )
    for start, end in out:
        if start < 0 or end < start:
            raise InvalidArgumentError(
                f"rows: range {start}:{end} is not a half-open range of non-negative positions", code="CLIENT"
            )
    return out


def rows_of(request: Request) -> list[tuple[int, int]] | None:
    """The request's ``rows`` ranges as given; ``None`` when it has none."""
    if isinstance(request, str):
        text = _param(request, "rows")
        return None if text is None else row_ranges(text)
    return [(r.start, r.end) for r in request.rows] or None


def rows_text(rows: RowsSpec) -> str:
    """``rows`` in the URI grammar: ``START:END`` pairs separated by commas."""
    return ",".join(f"{s}:{e}" for s, e in row_ranges(rows))


def pin(request: Request, top_hash: str, pinned_uri: str) -> Request:
    """The request pinned to the revision it resolved to: a typed request with
    ``top_hash`` set, or the server's pinned URI."""
    if isinstance(request, str):
        return pinned_uri
    pinned = sheaf_pb2.DatasetRequest()
    pinned.CopyFrom(request)
    pinned.top_hash = top_hash
    return pinned


def change(request: Request, params: Mapping[str, object]) -> Request:
    """``request`` with parameters set (``None`` removes one)."""
    if isinstance(request, str):
        return _with_params(request, params)
    changed = sheaf_pb2.DatasetRequest()
    changed.CopyFrom(request)
    return _set(changed, params)


def given(request: Request, name: str) -> bool:
    """Whether the request sets parameter ``name``."""
    if isinstance(request, str):
        return _param(request, name) is not None
    field = request.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:
        return len(getattr(request, name)) > 0
    if field.has_presence:
        return request.HasField(name)
    return bool(getattr(request, name))


def partitions(request: Request) -> int | None:
    """The endpoints the request asks for, if it says."""
    if isinstance(request, str):
        value = _param(request, "partitions")
        return int(value) if value is not None and value.isdigit() else None
    return request.partitions if request.HasField("partitions") else None


def descriptor(request: Request) -> flight.FlightDescriptor:
    """The CMD descriptor of a request: the URI's text, or the typed request
    packed in a ``google.protobuf.Any``."""
    if isinstance(request, str):
        return flight.FlightDescriptor.for_command(request.encode("utf-8"))
    packed = any_pb2.Any()
    packed.Pack(request)
    return flight.FlightDescriptor.for_command(packed.SerializeToString())


def describe(request: Request, limit: int = 600) -> str:
    """The request, for messages (clipped to about ``limit`` characters: a
    request naming thousands of ``rows`` ranges stays readable)."""
    if isinstance(request, str):
        text = request
    else:
        text = "DatasetRequest {" + text_format.MessageToString(request, as_one_line=True) + "}"
    if len(text) > limit:
        text = f"{text[: limit - 100]}...{text[-60:]} ({len(text):,} characters)"
    return text


def request_bytes(request: Request) -> int:
    """The size of the request's Flight descriptor."""
    if isinstance(request, str):
        return len(request.encode("utf-8"))
    return request.ByteSize() + 64  # the google.protobuf.Any around it


def max_request_bytes(request: Request) -> int:
    """The descriptor size requests of this form are kept under:
    :data:`MAX_REQUEST_BYTES` for a URI, :data:`MAX_TYPED_REQUEST_BYTES` typed."""
    return MAX_REQUEST_BYTES if isinstance(request, str) else MAX_TYPED_REQUEST_BYTES


def range_bytes(start: int, end: int) -> int:
    """An upper bound of what one ``rows`` range adds to a request, in either
    form (``START%3AEND%2C`` in a URI; a typed ``RowRange`` is never longer)."""
    return len(str(start)) + len(str(end)) + 6


def decode(raw: bytes, into: M, *, typed: bool, what: str) -> M:
    """Metadata the server answered: the binary message for a typed request,
    its JSON form for a text one."""
    try:
        if typed:
            into.ParseFromString(raw)
        else:
            json_format.Parse(raw.decode("utf-8"), into, ignore_unknown_fields=True)
    except (message.DecodeError, json_format.ParseError, UnicodeDecodeError) as e:
        form = "binary" if typed else "JSON"
        raise SheafError(f"{what}: not a {form} {into.DESCRIPTOR.full_name} ({e})", code="CLIENT") from e
    return into


def sql_string(value: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


_PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def sql_identifier(name: str) -> str:
    """A column name as a SQL identifier: as is when plain (lower-case
    letters, digits and ``_``, not starting with a digit: DataFusion
    lower-cases unquoted names), else in double quotes (inner ones doubled)."""
    if _PLAIN_IDENTIFIER.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def not_null_filter(name: str) -> str:
    """``filter=...`` (as Python would write the argument) dropping the rows
    where column ``name`` is null, for error messages."""
    return f"filter={sql_identifier(name) + ' IS NOT NULL'!r}"


# -- text: the query of a URI, split off and edited, never interpreted ---------


def _encode(value: object, name: str = "") -> str:
    """A parameter value as the URI grammar wants it: percent-encoded, so `+`,
    `&`, `=`, spaces and quotes survive."""
    if name == "columns" and isinstance(value, (list, tuple)):
        # The URI's list: a name holding a comma or a quote, or blanks at its
        # edges, in double quotes (SQL's way), so it reads back exactly.
        value = ",".join(_listed_column(str(c)) for c in value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif name == "rows":
        value = rows_text(value)  # type: ignore[arg-type]
    elif isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return urllib.parse.quote(str(value), safe="")


def _listed_column(name: str) -> str:
    """A column name as a URI's ``columns=`` lists it (quoted when needed)."""
    if name and "," not in name and '"' not in name and name.strip() == name:
        return name
    return '"' + name.replace('"', '""') + '"'


def _split(uri: str) -> tuple[str, dict[str, str]]:
    base, _, query = uri.partition("?")
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            params[key] = value
    return base, params


def _param(uri: str, name: str) -> str | None:
    raw = _split(uri)[1].get(name)
    return None if raw is None else urllib.parse.unquote(raw)


def _with_params(uri: str, params: Mapping[str, object]) -> str:
    base, current = _split(uri)
    for key, value in params.items():
        if value is None or (key == "content" and value is False):
            current.pop(key, None)
        else:
            current[key] = _encode(value, key)
    return base + ("?" + "&".join(f"{k}={v}" for k, v in current.items()) if current else "")


def append(uri: str, params: Mapping[str, object]) -> str:
    """``uri`` with ``params`` added after its own query (``None`` values left
    out); a parameter given both ways reaches the server twice, which refuses it."""
    pairs = [f"{k}={_encode(v, k)}" for k, v in params.items() if v is not None]
    if not pairs:
        return uri
    return uri + ("&" if "?" in uri else "?") + "&".join(pairs)


def as_json(request: message.Message) -> str:
    """A message's JSON form (field names as in the proto), for messages."""
    return json.dumps(json_format.MessageToDict(request, preserving_proto_field_name=True))
