"""One exception hierarchy for everything the client raises.

Every error the server returns arrives as a :class:`SheafError` subclass chosen by
its gRPC status code, carrying the server's own message (which names the
package, revision, path, column or filter at fault) in ``server_message``, and
prefixed with what the client was doing::

    try:
        client.dataset("sheaf://team/weather/tables/nope.parquet")
    except sheaf.NotFoundError as e:
        print(e.code, e.server_message)

The subclasses also derive from the matching built-in exception
(``LookupError``, ``ValueError``, ``ConnectionError``, ...), so generic
handlers keep working.
"""

from __future__ import annotations

import re
from typing import Any

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
    "TensorConversionError",
    "from_flight",
]


class SheafError(Exception):
    """Base class of every error raised by the Sheaf client.

    Attributes:
        code: the gRPC status name (``"NOT_FOUND"``, ...), or ``"CLIENT"`` for
            errors raised by the client itself.
        server_message: the server's message, unchanged (``None`` for client
            errors).
        context: what the client was doing (``"GetFlightInfo sheaf://..."``).
    """

    code: str = "UNKNOWN"

    def __init__(self, message: str, *, server_message: str | None = None, context: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.server_message = server_message
        self.context = context
        if code is not None:
            self.code = code

    def __reduce__(self) -> tuple[Any, ...]:  # keep the attributes across processes (DataLoader workers)
        return (_rebuild, (type(self), str(self), self.server_message, self.context, self.code))


def _rebuild(cls: type[SheafError], message: str, server_message: str | None, context: str | None,
             code: str) -> SheafError:
    return cls(message, server_message=server_message, context=context, code=code)


class NotFoundError(SheafError, LookupError):
    """Unknown package, revision, tag, path or file, or missing data (NOT_FOUND)."""

    code = "NOT_FOUND"

    def __str__(self) -> str:  # LookupError subclasses must not repr() their message like KeyError
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(SheafError, ValueError):
    """Bad URI, parameter, column or filter; ambiguous hash prefix; a file that
    is not the format its name says (INVALID_ARGUMENT)."""

    code = "INVALID_ARGUMENT"


class UnavailableError(SheafError, ConnectionError):
    """The server cannot be reached, its storage failed, or it is at its
    concurrency limit (UNAVAILABLE). Retrying later may succeed."""

    code = "UNAVAILABLE"


class UnauthenticatedError(SheafError, PermissionError):
    """The server wants valid credentials (UNAUTHENTICATED): a login with a
    wrong user name or password, or a call with no token, an unknown or
    revoked one, or an expired session token. Pass ``token=`` (or set
    ``SHEAF_TOKEN``), or ``username=`` and ``password=``, to
    :func:`sheaf.connect`."""

    code = "UNAUTHENTICATED"


class PermissionDeniedError(SheafError, PermissionError):
    """The server refused to read something, such as a physical key outside
    the locations it may read (PERMISSION_DENIED)."""

    code = "PERMISSION_DENIED"


class DataLossError(SheafError):
    """Stored data does not match its hash (DATA_LOSS)."""

    code = "DATA_LOSS"


class UnimplementedError(SheafError, NotImplementedError):
    """The server does not implement this call (UNIMPLEMENTED)."""

    code = "UNIMPLEMENTED"


class DeadlineExceededError(SheafError, TimeoutError):
    """A call did not finish within the ``timeout`` given to :func:`sheaf.connect`."""

    code = "DEADLINE_EXCEEDED"


class TensorConversionError(SheafError, TypeError):
    """A column cannot become a tensor (wrong type, or nulls); raised by
    :mod:`sheaf.torch`. Drop the column with ``columns=`` or convert it
    yourself with ``collate=``."""

    code = "CLIENT"


# pyarrow renders a gRPC status as "Flight returned <phrase> error, with
# message: <server message>" (optionally followed by gRPC debug context).
_FLIGHT_MESSAGE = re.compile(r"^(?:Flight|gRPC) returned (?P<phrase>[a-z ]+?) error, with message: (?P<message>.*)$",
                             re.DOTALL)
_DEBUG_TAIL = re.compile(r"\. (?:gRPC client debug context|Client context|Detail): .*$", re.DOTALL)

_BY_PHRASE: dict[str, type[SheafError]] = {
    "not found": NotFoundError,
    "invalid argument": InvalidArgumentError,
    "unavailable": UnavailableError,
    "unauthenticated": UnauthenticatedError,
    "unauthorized": PermissionDeniedError,
    "permission denied": PermissionDeniedError,
    "data loss": DataLossError,
    "not implemented": UnimplementedError,
    "unimplemented": UnimplementedError,
    "timed out": DeadlineExceededError,
    "deadline exceeded": DeadlineExceededError,
}


def _by_type(exc: BaseException) -> type[SheafError] | None:
    import pyarrow as pa
    import pyarrow.flight as flight

    table: list[tuple[type[BaseException], type[SheafError]]] = [
        (flight.FlightUnauthenticatedError, UnauthenticatedError),
        (flight.FlightUnauthorizedError, PermissionDeniedError),
        (flight.FlightUnavailableError, UnavailableError),
        (flight.FlightTimedOutError, DeadlineExceededError),
        (pa.ArrowKeyError, NotFoundError),
        (pa.ArrowInvalid, InvalidArgumentError),
        (pa.ArrowNotImplementedError, UnimplementedError),
    ]
    for pa_type, ours in table:
        if isinstance(exc, pa_type):
            return ours
    return None


def from_flight(exc: BaseException, context: str) -> SheafError:
    """The :class:`SheafError` for an exception raised by ``pyarrow.flight``
    while doing ``context`` (a short description naming the call and the
    dataset, package or server)."""
    if isinstance(exc, SheafError):
        return exc
    text = str(exc)
    match = _FLIGHT_MESSAGE.match(text.strip())
    server_message = None
    cls: type[SheafError] | None = None
    if match:
        server_message = _DEBUG_TAIL.sub("", match["message"]).strip()
        cls = _BY_PHRASE.get(match["phrase"])
    cls = cls or _by_type(exc) or SheafError
    if server_message is None:
        server_message = _DEBUG_TAIL.sub("", text).strip()
    err = cls(f"{context}: {server_message}", server_message=server_message, context=context)
    if cls is SheafError:
        err.code = match["phrase"].upper().replace(" ", "_") if match else type(exc).__name__
    return err
