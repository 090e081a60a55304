"""One exception hierarchy for everything the client raises.

Every error the server returns carries, in its status details
(``grpc-status-details-bin``), a ``google.rpc.ErrorInfo`` of domain
``sheaf.v1`` whose ``reason`` is one of ``ErrorReason`` in
``proto/sheaf.proto``. The reason picks the :class:`SheafError` subclass, and
the exception carries what the error is about as attributes::

    try:
        client.dataset("sheaf://team/weather/tables/nope.parquet")
    except sheaf.NotFoundError as e:
        print(e.reason, e.package, e.path, e.server_message)

The subclasses also derive from the matching built-in exception
(``LookupError``, ``ValueError``, ``ConnectionError``, ...), so generic
handlers keep working. An error without details (a server older than the
details, or a failure before the server answered) is classified by its gRPC
status alone.
"""

from __future__ import annotations

import threading
from typing import Any

import pyarrow.flight as flight

__all__ = [
    "SheafError",
    "NotFoundError",
    "InvalidArgumentError",
    "UnavailableError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "DataLossError",
    "UnimplementedError",
    "DeadlineExceededError",
    "StalledError",
    "TensorConversionError",
    "AlreadyExistsError",
    "SessionNotFoundError",
    "SchemaMismatchError",
    "from_flight",
]

#: The ``ErrorInfo.domain`` of Sheaf's errors.
DOMAIN = "sheaf.v1"

#: The trailer holding a status's details (a serialized ``google.rpc.Status``).
DETAILS_KEY = "grpc-status-details-bin"

# What an error can be about (ErrorInfo.metadata keys), as exception attributes.
_SUBJECTS = ("package", "top_hash", "path", "column")


class SheafError(Exception):
    """Base class of every error raised by the Sheaf client.

    Attributes:
        code: the gRPC status name (``"NOT_FOUND"``, ...), or ``"CLIENT"`` for
            errors raised by the client itself.
        reason: the server's ``ErrorReason`` name (``"UNKNOWN_COLUMN"``,
            ``"LATEST_MOVED"``, ... see ``proto/sheaf.proto``); ``None`` for
            client errors and errors without details.
        package, top_hash, path, column: what the error is about, when the
            server said (``path`` is a table or an entry); else ``None``.
        server_message: the server's message, unchanged (``None`` for client
            errors).
        context: what the client was doing (``"GetFlightInfo sheaf://..."``).
    """

    code: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        server_message: str | None = None,
        context: str | None = None,
        code: str | None = None,
        reason: str | None = None,
        package: str | None = None,
        top_hash: str | None = None,
        path: str | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.server_message = server_message
        self.context = context
        if code is not None:
            self.code = code
        self.reason = reason
        self.package = package
        self.top_hash = top_hash
        self.path = path
        self.column = column

    def _fields(self) -> dict[str, Any]:
        return {
            "server_message": self.server_message,
            "context": self.context,
            "code": self.code,
            "reason": self.reason,
            "package": self.package,
            "top_hash": self.top_hash,
            "path": self.path,
            "column": self.column,
        }

    def __reduce__(self) -> tuple[Any, ...]:  # keep the attributes across processes (DataLoader workers)
        return (_rebuild, (type(self), str(self), self._fields()))


def _rebuild(cls: type[SheafError], message: str, fields: dict[str, Any]) -> SheafError:
    return cls(message, **fields)


class NotFoundError(SheafError, LookupError):
    """Unknown package, revision, tag, path or file, or one the caller may not
    read (reason ``NOT_FOUND``)."""

    code = "NOT_FOUND"

    def __str__(self) -> str:  # LookupError subclasses must not repr() their message like KeyError
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(SheafError, ValueError):
    """A bad request (reasons ``INVALID_REQUEST``, ``UNKNOWN_COLUMN``,
    ``EVALUATION_FAILED``, ``AMBIGUOUS_HASH``, ``INVALID_MANIFEST``): URI,
    parameter, column or filter; an expression failing on the data; an
    ambiguous hash prefix; a malformed manifest."""

    code = "INVALID_ARGUMENT"


class UnavailableError(SheafError, ConnectionError):
    """The server cannot be reached, its storage failed, or it is busy
    (UNAVAILABLE). Retrying later may succeed."""

    code = "UNAVAILABLE"


class UnauthenticatedError(SheafError, PermissionError):
    """The server wants valid credentials (UNAUTHENTICATED): a login with a
    wrong user name or password, or a call with no token, an unknown or
    revoked one, or an expired session token. Pass ``token=`` (or set
    ``SHEAF_TOKEN``), or ``username=`` and ``password=``, to
    :func:`sheaf.connect`."""

    code = "UNAUTHENTICATED"


class PermissionDeniedError(SheafError, PermissionError):
    """The server refused: the caller may not do this, or the data is outside
    the locations the server may read (reasons ``PERMISSION_DENIED``,
    ``FORBIDDEN_LOCATION``)."""

    code = "PERMISSION_DENIED"


class DataLossError(SheafError):
    """Stored data does not match its hash (reason ``INTEGRITY``); or, raised
    by the client (``code`` ``"CLIENT"``, no ``reason``), an endpoint's stream
    that contradicts its plan: it ended with fewer rows than the plan says
    the endpoint holds (or held more), or its schema is not the dataset's.
    The message names the dataset, the endpoint, and the rows planned and
    received (or the schema difference); nothing of such a stream is cached."""

    code = "DATA_LOSS"


class UnimplementedError(SheafError, NotImplementedError):
    """The server does not implement this call (UNIMPLEMENTED)."""

    code = "UNIMPLEMENTED"


class DeadlineExceededError(SheafError, TimeoutError):
    """A call did not finish within the ``timeout`` given to
    :func:`sheaf.connect`, or within the server's own limit."""

    code = "DEADLINE_EXCEEDED"


class StalledError(DeadlineExceededError):
    """A server sent nothing for ``stall_timeout`` seconds (an option of
    :func:`sheaf.connect`, off by default) while a read waited for it: a
    hung or overloaded replica (a frozen one is found by keepalive, as
    UNAVAILABLE). Raised by the client (``code`` ``"CLIENT"``). A
    stalled location is a replica failure: the read moves on to the
    endpoint's next location, and this is raised when none is left (naming
    the endpoint, each location and the timeout)."""


class AlreadyExistsError(SheafError, FileExistsError):
    """A write in mode ``"error"`` whose table already exists (reason
    ``ALREADY_EXISTS``); ``path`` names the table. Nothing was committed."""

    code = "ALREADY_EXISTS"


class SessionNotFoundError(NotFoundError):
    """A write session that does not exist, expired, was aborted, or belongs
    to another package (reason ``SESSION_NOT_FOUND``). Nothing of it will be
    committed: write the data again in a new session."""


class SchemaMismatchError(InvalidArgumentError):
    """Data appended to a folder table whose schema differs from the table's
    (reason ``SCHEMA_MISMATCH``); ``column`` names the first column that
    differs, ``path`` the table. Write with ``mode="overwrite"`` to replace
    the table, or cast the data to the table's schema."""


class TensorConversionError(SheafError, TypeError):
    """A column cannot become a tensor or array (wrong type, or nulls);
    raised by :mod:`sheaf.torch`, :mod:`sheaf.arrays` and :mod:`sheaf.tf`.
    Drop the column with ``columns=`` or convert it yourself with
    ``collate=``."""

    code = "CLIENT"


# ErrorReason (proto/sheaf.proto) -> exception class; the other reasons
# (CONFLICT, LATEST_MOVED, RESOURCE_EXHAUSTED, CANCELLED, INTERNAL) are plain
# SheafErrors, told apart by `reason`.
_BY_REASON: dict[str, type[SheafError]] = {
    "INVALID_REQUEST": InvalidArgumentError,
    "UNKNOWN_COLUMN": InvalidArgumentError,
    "EVALUATION_FAILED": InvalidArgumentError,
    "AMBIGUOUS_HASH": InvalidArgumentError,
    "INVALID_MANIFEST": InvalidArgumentError,
    "NOT_FOUND": NotFoundError,
    "UNAUTHENTICATED": UnauthenticatedError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "FORBIDDEN_LOCATION": PermissionDeniedError,
    "INTEGRITY": DataLossError,
    "UNAVAILABLE": UnavailableError,
    "UNIMPLEMENTED": UnimplementedError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "ALREADY_EXISTS": AlreadyExistsError,
    "SESSION_NOT_FOUND": SessionNotFoundError,
    "SCHEMA_MISMATCH": SchemaMismatchError,
}

# gRPC code name -> exception class, for errors without details.
_BY_CODE: dict[str, type[SheafError]] = {
    cls.code: cls
    for cls in (
        NotFoundError,
        InvalidArgumentError,
        UnavailableError,
        UnauthenticatedError,
        PermissionDeniedError,
        DataLossError,
        UnimplementedError,
        DeadlineExceededError,
    )
}
# (AlreadyExistsError is not among them: CONFLICT is answered with the gRPC
# code ALREADY_EXISTS too, so only the reason tells them apart.)

# The status details of the last Flight call each thread completed (set by
# DetailsMiddleware): pyarrow hands a server's `grpc-status-details-bin` to
# the exception it raises (`FlightError.extra_info`) only when the server also
# sent Arrow's own status trailer.
_last = threading.local()


def _capture(details: bytes | None) -> None:
    _last.details = details


def _captured() -> bytes | None:
    details: bytes | None = getattr(_last, "details", None)
    return details


class _DetailsCall(flight.ClientMiddleware):  # type: ignore[misc]
    def __init__(self) -> None:
        self.details: bytes | None = None

    def received_headers(self, headers: dict[str, list[Any]]) -> None:
        # Called with the trailers when the server sent no headers first (an
        # error before any response, the usual case).
        for value in headers.get(DETAILS_KEY) or ():
            self.details = value if isinstance(value, bytes) else str(value).encode("latin-1")

    def call_completed(self, exception: BaseException | None) -> None:
        _capture(self.details if exception is not None else None)


class DetailsMiddleware(flight.ClientMiddlewareFactory):  # type: ignore[misc]
    """Keeps the status details of each failed call for :func:`from_flight`
    (given to every Flight client the Sheaf client opens)."""

    def start_call(self, info: Any) -> _DetailsCall:
        return _DetailsCall()


def _grpc_code(exc: BaseException) -> str:
    """The gRPC status of a ``pyarrow.flight`` exception without details, from
    its class (pyarrow folds a few codes together: RESOURCE_EXHAUSTED reads as
    INVALID_ARGUMENT, DATA_LOSS as INTERNAL)."""
    import pyarrow as pa

    table: list[tuple[type[BaseException], str]] = [
        (flight.FlightUnauthenticatedError, "UNAUTHENTICATED"),
        (flight.FlightUnauthorizedError, "PERMISSION_DENIED"),
        (flight.FlightUnavailableError, "UNAVAILABLE"),
        (flight.FlightTimedOutError, "DEADLINE_EXCEEDED"),
        (flight.FlightCancelledError, "CANCELLED"),
        (flight.FlightInternalError, "INTERNAL"),
        (pa.ArrowKeyError, "NOT_FOUND"),
        (pa.ArrowInvalid, "INVALID_ARGUMENT"),
        (pa.ArrowNotImplementedError, "UNIMPLEMENTED"),
        (pa.ArrowCancelled, "CANCELLED"),
        (flight.FlightError, "UNKNOWN"),
        (pa.ArrowException, "UNKNOWN"),
    ]
    for pa_type, code in table:
        if isinstance(exc, pa_type):
            return code
    return type(exc).__name__


def _plain_message(text: str) -> str:
    """The server's message inside pyarrow's rendering of a status ("Flight
    returned not found error, with message: <message>. gRPC client debug
    context: ..."), for errors without details."""
    _, marker, rest = text.partition(", with message: ")
    message = rest if marker else text
    for tail in (". gRPC client debug context: ", ". Client context: ", ". Detail: "):
        message = message.split(tail, 1)[0]
    return message.strip()


def _status(details: bytes) -> tuple[str | None, str | None, dict[str, str], str] | None:
    """``(reason, gRPC code name, metadata, message)`` of a ``google.rpc.Status``
    holding a Sheaf ``ErrorInfo``; ``None`` when the bytes hold no such thing."""
    from google.protobuf.message import DecodeError
    from google.rpc import code_pb2, error_details_pb2, status_pb2

    status = status_pb2.Status()
    try:
        status.ParseFromString(details)
    except DecodeError:
        return None
    try:
        code = code_pb2.Code.Name(status.code) if status.code else None
    except ValueError:  # a number google.rpc.Code does not name
        code = None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == DOMAIN:
            return info.reason or None, code, dict(info.metadata), status.message
    return None


def from_flight(exc: BaseException, context: str) -> SheafError:
    """The :class:`SheafError` for an exception raised by ``pyarrow.flight``
    while doing ``context`` (a short description naming the call and the
    dataset, package or server)."""
    if isinstance(exc, SheafError):
        return exc
    parsed = None
    for details in (getattr(exc, "extra_info", None), _captured()):
        if details:
            parsed = _status(bytes(details))
            if parsed is not None:
                break
    _capture(None)
    text = _plain_message(str(exc))
    if parsed is None:
        code = _grpc_code(exc)
        cls = _BY_CODE.get(code, SheafError)
        return cls(f"{context}: {text}", server_message=text, context=context, code=code)
    reason, detail_code, metadata, message = parsed
    code = detail_code or _grpc_code(exc)
    cls = _BY_REASON.get(reason or "", _BY_CODE.get(code, SheafError))
    message = message or text
    subjects = {key: metadata.get(key) for key in _SUBJECTS}
    return cls(f"{context}: {message}", server_message=message, context=context, code=code, reason=reason, **subjects)
