"""Reading one endpoint at its locations, failing over between replicas.

The endpoint policy every Sheaf client follows (Python, JVM/Spark, Rust):

- an endpoint's locations are tried in order; no location, or
  ``arrow-flight-reuse-connection://?``, is the server the client is
  connected to;
- when a location cannot be connected to, or its replica fails (before the
  first batch or in the middle of the stream), the same ticket is read at the
  next location, skipping the rows already delivered to the caller (slicing
  the first batch when the cut falls inside it): no row is lost or repeated.
  A ticket returns the same rows in the same order on every replica (its
  revision is pinned), so the resumed stream continues where the failed one
  stopped;
- a replica failure is what :func:`is_replica_failure` says: UNAVAILABLE, or
  a transport failure pyarrow reports as INTERNAL. Sheaf's own errors
  (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, DATA_LOSS,
  DEADLINE_EXCEEDED, ...) are raised at once, not retried;
- each location is tried at most once per endpoint read, in the order given;
  when every one failed, one :class:`~sheaf.UnavailableError` names the
  endpoint and each location tried with its failure (an endpoint with one
  location raises that location's error as it is). Each move to another
  location is logged (logger ``sheaf``, INFO).

What pyarrow raises when a replica dies: a server process killed (SIGKILL) or
stopped (SIGTERM past its grace) in the middle of a DoGet surfaces from
``FlightStreamReader.read_chunk`` as ``FlightUnavailableError`` ("Stream
removed (Socket closed)", "Stream removed (recvmsg:Connection reset by
peer)", "Stream removed (Socket closed (GOAWAY received ...))"); a new call to
it as ``FlightUnavailableError`` ("failed to connect to all addresses ...
Connection refused"). Both without status details.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.flight as flight

from .errors import SheafError, UnavailableError, from_flight

if TYPE_CHECKING:
    from .client import Client
    from .dataset import Endpoint

__all__ = ["REUSE_CONNECTION", "EndpointStream", "is_replica_failure"]

_log = logging.getLogger("sheaf")

#: A location meaning "the server this endpoint came from" (Arrow Flight's
#: convention), like no location at all.
REUSE_CONNECTION = "arrow-flight-reuse-connection:"

# What gRPC's own transport says when a connection or stream broke (lower
# case), for the failures it reports as INTERNAL (or pyarrow as UNKNOWN):
# e.g. "Received RST_STREAM with error code 2" from a proxy, "Received
# unexpected EOS on DATA frame from server".
_TRANSPORT_PHRASES = (
    "rst_stream",
    "stream removed",
    "socket closed",
    "connection reset",
    "connection refused",
    "broken pipe",
    "goaway",
    "unexpected eos",
    "failed to connect",
    "keepalive watchdog timeout",
)


def is_replica_failure(err: SheafError) -> bool:
    """Whether ``err`` means the replica (or the way to it) failed, so that
    the same ticket may be read at another location: UNAVAILABLE (whatever
    said it: the transport, a busy server, its storage), or an INTERNAL /
    UNKNOWN status without Sheaf's error details whose text is one of gRPC's
    transport failures. An error the server classified itself (a ``reason``
    other than ``UNAVAILABLE``) never is."""
    if err.code == "UNAVAILABLE":
        return True
    if err.reason is not None or err.code not in ("INTERNAL", "UNKNOWN"):
        return False
    text = str(err).lower()
    return any(phrase in text for phrase in _TRANSPORT_PHRASES)


class EndpointStream:
    """The record batches of one endpoint, read at its locations in turn.

    :meth:`open` opens the ticket at the first location that answers (the
    schema is then known); iterating yields the endpoint's batches, moving to
    the next location when a replica fails (see the module's docstring);
    :meth:`close` cancels the stream being read. ``delivered`` counts the rows
    yielded so far."""

    def __init__(self, client: Client, endpoint: Endpoint, context: str) -> None:
        self._client = client
        self._endpoint = endpoint
        self._context = context
        own = client.url
        # Each location once, in order; "this server" (none, or reuse-connection) is the client's URL.
        self._pending: list[str] = []
        for location in endpoint.locations or (own,):
            url = own if location.startswith(REUSE_CONNECTION) else location
            if url not in self._pending:
                self._pending.append(url)
        self._many = len(self._pending) > 1
        self._location: str | None = None  # where the open stream is read
        self._reader: flight.FlightStreamReader | None = None
        self._skip = 0  # rows of the open stream that were delivered from an earlier location
        self._failures: list[tuple[str, SheafError, int]] = []  # (location, error, rows delivered then)
        self._finished = False  # read to its end
        self.schema: pa.Schema | None = None
        self.delivered = 0

    def _where(self, location: str) -> str:
        """What a failure at ``location`` was about, for its message."""
        here = location == self._client.url and not self._endpoint.locations
        return f"{self._context} (endpoint {self._endpoint.index}" + (")" if here else f" at {location})")

    def open(self) -> pa.Schema:
        """Opens the stream at the next location that answers; returns its schema."""
        if self._reader is None:
            self._open_next()
        assert self.schema is not None
        return self.schema

    def _open_next(self) -> None:
        """Opens the ticket at the next untried location that answers, set to
        skip the rows already delivered; raises when none is left."""
        while self._pending:
            location = self._pending.pop(0)
            try:
                connection = self._client.flight_client(location)
            except SheafError as bad:  # a URL or TLS setting it cannot be opened with
                self._failed(location, bad)
                continue
            try:
                reader = connection.do_get(flight.Ticket(self._endpoint.ticket), self._client.call_options(read=True))
                schema = reader.schema  # waits for the stream with the GIL released (apache/arrow#34731)
            except Exception as e:
                err = from_flight(e, self._where(location))
                if not is_replica_failure(err):
                    raise err from e
                self._failed(location, err)
                continue
            if self.schema is None:
                self.schema = schema
            elif not schema.equals(self.schema):
                _cancel(reader)
                raise SheafError(
                    f"{self._where(location)}: the stream resumed there has another schema than the one read at "
                    f"{self._failures[-1][0]} ({schema} instead of {self.schema})",
                    context=self._context,
                    code="CLIENT",
                )
            self._location, self._reader, self._skip = location, reader, self.delivered
            return
        raise self._every_location_failed()

    def _failed(self, location: str, err: SheafError) -> None:
        """Records that ``location`` failed; with no other location, raises its error as it is."""
        self._failures.append((location, err, self.delivered))
        if not self._many:
            raise err
        if self._pending:
            _log.info(
                "%s (endpoint %d): %s failed after %d rows (%s); reading on at %s",
                self._context,
                self._endpoint.index,
                location,
                self.delivered,
                err.server_message or err,
                self._pending[0],
            )

    def _every_location_failed(self) -> SheafError:
        tried = "; ".join(
            f"{location}: {err.server_message or err}" + (f" (after {rows:,} rows)" if rows else "")
            for location, err, rows in self._failures
        )
        return UnavailableError(
            f"{self._context} (endpoint {self._endpoint.index}): every location failed: {tried}",
            context=self._context,
            server_message=self._failures[-1][1].server_message if self._failures else None,
        )

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self._finished:
            return
        self.open()
        while True:
            assert self._reader is not None and self._location is not None
            try:
                chunk = self._reader.read_chunk()
            except StopIteration:
                if self._skip:
                    raise SheafError(
                        f"{self._where(self._location)}: the stream resumed there ended {self._skip:,} rows short "
                        f"of the {self.delivered:,} already read at {self._failures[-1][0]}; the replicas disagree "
                        "about a pinned ticket",
                        context=self._context,
                        code="CLIENT",
                    ) from None
                self._reader, self._finished = None, True
                return
            except Exception as e:
                err = from_flight(e, self._where(self._location))
                if not is_replica_failure(err):
                    raise err from e
                self.close()
                self._failed(self._location, err)
                self._open_next()
                continue
            batch = chunk.data
            if batch is None:
                continue
            if self._skip:  # rows delivered before the failover: drop them
                if batch.num_rows <= self._skip:
                    self._skip -= batch.num_rows
                    continue
                batch = batch.slice(self._skip)
                self._skip = 0
            self.delivered += batch.num_rows
            yield batch

    def close(self) -> None:
        """Cancels the open stream (on the server too), if any."""
        reader, self._reader = self._reader, None
        if reader is not None:
            _cancel(reader)


def _cancel(reader: flight.FlightStreamReader) -> None:
    try:
        reader.cancel()
    except Exception:  # noqa: BLE001 - the stream may already be gone
        pass
