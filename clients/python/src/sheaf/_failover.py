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
- a replica failure is what :func:`is_replica_failure` says: UNAVAILABLE
  (a frozen or unreachable replica included: below), a transport failure
  pyarrow reports as INTERNAL, or a stall (below). Sheaf's own errors
  (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, DATA_LOSS,
  DEADLINE_EXCEEDED, ...) are raised at once, not retried;
- each location is tried at most once per endpoint read, in the order given;
  when every one failed, one :class:`~sheaf.UnavailableError` names the
  endpoint and each location tried with its failure (an endpoint with one
  location raises that location's error as it is; when every location
  stalled, a :class:`~sheaf.StalledError`). Each move to another location is
  logged (logger ``sheaf``, INFO);
- a frozen replica (SIGSTOP, a hung host) keeps its connection open and
  answers nothing: HTTP/2 keepalive finds it. Every connection pings the
  server after ``keepalive`` seconds (:func:`sheaf.connect`, default 10)
  without a frame from it while calls are open, and gRPC fails the calls
  as UNAVAILABLE ("Stream removed (ping timeout)") when a ping goes
  unanswered for twice as long (:func:`sheaf._connection.keepalive_options`).
  A live server answers pings however long it computes before its first
  batch, so that is never taken for a failure;
- a stall: the server sent nothing for the client's ``stall_timeout``
  (:func:`sheaf.connect`, default none) while the read waited for it: for the
  stream's opening (DoGet returns once the server sent the schema), or for
  the next batch. Only time spent waiting for the server counts, never the
  time the caller holds a batch. It bounds a live server that stops sending
  (it still answers pings). A waiting ``read_chunk`` is cancelled by a watchdog thread
  (one per process); a DoGet that does not return in time is left to finish
  on its own thread (its stream is cancelled when it does);
- the stream must match its plan: its schema is the dataset's (checked when
  it opens), and an endpoint whose exact row count the server's plan states
  (``EndpointMetadata.rows``, kept as ``Endpoint.rows``) must hold that many
  rows: a stream that ends short (cleanly) or holds more raises
  :class:`~sheaf.DataLossError` naming the dataset, the endpoint and the rows
  planned and received (not retried). Without ``rows`` (a filter, a sample
  fraction: only reading tells) the count is not checked.

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
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.flight as flight

from .errors import DataLossError, SheafError, StalledError, UnavailableError, from_flight

if TYPE_CHECKING:
    from .client import Client
    from .dataset import Endpoint

__all__ = ["REUSE_CONNECTION", "EndpointStream", "is_replica_failure", "schema_difference"]

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
    said it: the transport, a busy server, its storage), a stall
    (:class:`~sheaf.StalledError`: nothing received for ``stall_timeout``),
    or an INTERNAL / UNKNOWN status without Sheaf's error details whose text
    is one of gRPC's transport failures. An error the server classified
    itself (a ``reason`` other than ``UNAVAILABLE``) never is."""
    if isinstance(err, StalledError):
        return True
    if err.code == "UNAVAILABLE":
        return True
    if err.reason is not None or err.code not in ("INTERNAL", "UNKNOWN"):
        return False
    text = str(err).lower()
    return any(phrase in text for phrase in _TRANSPORT_PHRASES)


def schema_difference(planned: pa.Schema, got: pa.Schema) -> str:
    """How ``got`` differs from ``planned`` (metadata aside), for messages."""
    if planned.names != got.names:
        return f"columns {got.names} instead of {planned.names}"
    for want, have in zip(planned, got, strict=True):
        if not want.type.equals(have.type):
            return f"column {want.name!r} is {have.type} instead of {want.type}"
        if want.nullable != have.nullable:
            return f"column {want.name!r} is {'' if have.nullable else 'not '}nullable, unlike the plan's"
    return f"{got} instead of {planned}"


# ---------------------------------------------------------------------------
# Stalls
# ---------------------------------------------------------------------------


class _Watch:
    """The stall guard of one stream: :meth:`call` runs a blocking read of it
    with the watchdog armed; a read waiting past the deadline is cancelled
    (``reader.cancel()``) and ``stalled`` set, for good."""

    __slots__ = ("reader", "seconds", "stalled")

    def __init__(self, reader: flight.FlightStreamReader, seconds: float) -> None:
        self.reader = reader
        self.seconds = seconds
        self.stalled = False

    def call(self, read: Callable[[], Any]) -> Any:
        watchdog = _watchdog()
        watchdog.arm(self, time.monotonic() + self.seconds)
        try:
            return read()
        finally:
            watchdog.disarm(self)


class _Watchdog:
    """One thread per process (started on first use) cancelling the streams
    whose read waits past its deadline. Arming and disarming cost a lock and
    a dict update; the thread sleeps until the earliest deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[_Watch, float] = {}
        self._wake: float | None = None  # when the thread wakes next; None: idle (waits for an arm)
        self._thread: threading.Thread | None = None

    def arm(self, watch: _Watch, deadline: float) -> None:
        with self._cond:
            self._armed[watch] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sheaf-stall-watchdog", daemon=True)
                self._thread.start()
            elif self._wake is None or deadline < self._wake:
                self._cond.notify()

    def disarm(self, watch: _Watch) -> None:
        with self._cond:
            self._armed.pop(watch, None)

    def _run(self) -> None:
        while True:
            self._cancel_due()

    def _cancel_due(self) -> None:
        """Waits until a deadline passes, then cancels the streams past theirs.
        A function of its own, so that no reference to them outlives it: a
        stream (and its gRPC call) kept alive here would keep gRPC from
        shutting down before a fork (:mod:`sheaf._fork`)."""
        with self._cond:
            now = time.monotonic()
            due = [w for w, deadline in self._armed.items() if deadline <= now]
            if not due:
                self._wake = min(self._armed.values(), default=None)
                self._cond.wait(None if self._wake is None else self._wake - now)
                return
            for w in due:
                del self._armed[w]
                w.stalled = True
            self._wake = now  # busy: no need to wake the thread
        for w in due:
            _cancel(w.reader)


_WATCHDOG: _Watchdog | None = None
_WATCHDOG_LOCK = threading.Lock()


def _watchdog() -> _Watchdog:
    global _WATCHDOG
    if _WATCHDOG is not None:  # the usual case (once per batch): no lock
        return _WATCHDOG
    with _WATCHDOG_LOCK:
        if _WATCHDOG is None:
            _WATCHDOG = _Watchdog()
        return _WATCHDOG


def _forget_watchdog() -> None:  # in a forked child: the parent's thread is not there
    global _WATCHDOG, _WATCHDOG_LOCK
    _WATCHDOG, _WATCHDOG_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_watchdog)


class _Opening:
    """A DoGet (which returns once the server sent the stream's schema) run
    on a thread of its own, so that the caller can give up on it after the
    stall timeout. A stream that opens after it was given up on is
    cancelled. Errors are converted on that thread (the status details the
    middleware keeps are per thread)."""

    def __init__(self, open_stream: Callable[[], flight.FlightStreamReader], where: str) -> None:
        self._open: Callable[[], flight.FlightStreamReader] | None = open_stream
        self._where = where
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._given_up = False
        self.reader: flight.FlightStreamReader | None = None
        self.schema: pa.Schema | None = None
        self.error: SheafError | None = None
        self.cause: BaseException | None = None

    def run(self) -> None:
        reader = schema = error = cause = None
        open_stream, self._open = self._open, None
        assert open_stream is not None, "run once"
        try:
            reader = open_stream()
            schema = reader.schema
        except Exception as e:
            # Without its traceback (whose frame holds it): no reference cycle keeps the
            # connection, and so gRPC, alive after this (sheaf._fork waits for gRPC to stop).
            error, cause = from_flight(e, self._where), e.with_traceback(None)
        del open_stream  # the call holds the connection: dropped as soon as it is done
        with self._lock:
            self.reader, self.schema, self.error, self.cause = reader, schema, error, cause
            late = self._given_up
            self._done.set()
        if late and reader is not None:
            _cancel(reader)
            self.reader = None  # given up on: nothing keeps its gRPC call alive

    def wait(self, seconds: float) -> bool:
        """Whether the DoGet finished within ``seconds``; if not, it is given up on."""
        if self._done.wait(seconds):
            return True
        with self._lock:
            if self._done.is_set():
                return True
            self._given_up = True
            return False


# ---------------------------------------------------------------------------
# Reading one endpoint
# ---------------------------------------------------------------------------


class EndpointStream:
    """The record batches of one endpoint, read at its locations in turn.

    :meth:`open` opens the ticket at the first location that answers (the
    schema is then known); iterating yields the endpoint's batches, moving to
    the next location when a replica fails or stalls (see the module's
    docstring); :meth:`close` cancels the stream being read. ``delivered``
    counts the rows yielded so far.

    The stream must hold ``endpoint.rows`` rows when that is set (the
    server's ``EndpointMetadata.rows``, or a training loader's count of its
    piece) and have ``schema`` (default ``endpoint.schema``, the planned
    schema); a stream contradicting either raises
    :class:`~sheaf.DataLossError`."""

    def __init__(
        self,
        client: Client,
        endpoint: Endpoint,
        context: str,
        *,
        schema: pa.Schema | None = None,
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        self._context = context
        self._rows = endpoint.rows
        self._planned = endpoint.schema if schema is None else schema
        self._stall = client.spec.stall_timeout
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
        self._watch: _Watch | None = None  # the open stream's stall guard
        self._skip = 0  # rows of the open stream that were delivered from an earlier location
        self._failures: list[tuple[str, SheafError, int]] = []  # (location, error, rows delivered then)
        self._finished = False  # read to its end
        self.schema: pa.Schema | None = None
        self.delivered = 0

    def _where(self, location: str) -> str:
        """What a failure at ``location`` was about, for its message."""
        here = location == self._client.url and not self._endpoint.locations
        return f"{self._context} (endpoint {self._endpoint.index}" + (")" if here else f" at {location})")

    def _stalled(self, location: str, waiting_for: str) -> StalledError:
        seconds = self._stall
        assert seconds is not None
        return StalledError(
            f"{self._context} (endpoint {self._endpoint.index} at {location}): {location} sent nothing for "
            f"{seconds:g} s while waiting for {waiting_for} (stall_timeout={seconds:g}; sheaf.connect(..., "
            "stall_timeout=) raises it, None turns it off)",
            server_message=f"stalled: nothing received for {seconds:g} s",
            context=self._context,
            code="CLIENT",
        )

    def _mismatch(self, location: str, what: str) -> DataLossError:
        return DataLossError(
            f"{self._where(location)}: {what}; the server's stream contradicts its plan (nothing of it is cached)",
            context=self._context,
            code="CLIENT",
        )

    def open(self) -> pa.Schema:
        """Opens the stream at the next location that answers; returns its schema."""
        if self._reader is None:
            self._open_next()
        assert self.schema is not None
        return self.schema

    def _open_at(self, connection: flight.FlightClient, location: str) -> tuple[flight.FlightStreamReader, pa.Schema]:
        """DoGet of the ticket at ``location``, waiting at most ``stall_timeout``
        for the stream's schema; raises a :class:`~sheaf.SheafError`."""
        ticket = flight.Ticket(self._endpoint.ticket)
        options = self._client.call_options(read=True)
        opening = _Opening(lambda: connection.do_get(ticket, options), self._where(location))
        if self._stall is None:
            opening.run()
        else:
            threading.Thread(target=opening.run, name="sheaf-open", daemon=True).start()
            if not opening.wait(self._stall):
                raise self._stalled(location, "the stream to open")
        if opening.error is not None:
            raise opening.error from opening.cause
        assert opening.reader is not None and opening.schema is not None
        return opening.reader, opening.schema

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
                reader, schema = self._open_at(connection, location)
            except SheafError as err:
                if not is_replica_failure(err):
                    raise
                # Kept without its traceback, whose frame (this one) will hold the next
                # location's stream: a reference cycle would keep gRPC alive (sheaf._fork).
                self._failed(location, err.with_traceback(None))
                continue
            if self._planned is not None and not schema.equals(self._planned):
                _cancel(reader)
                raise self._mismatch(
                    location, f"the stream's schema is not the dataset's: {schema_difference(self._planned, schema)}"
                )
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
            self._watch = None if self._stall is None else _Watch(reader, self._stall)
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
        message = f"{self._context} (endpoint {self._endpoint.index}): every location failed: {tried}"
        last = self._failures[-1][1].server_message if self._failures else None
        if self._failures and all(isinstance(err, StalledError) for _, err, _ in self._failures):
            return StalledError(
                f"{message} (stall_timeout={self._stall or 0:g} s)",
                context=self._context,
                server_message=last,
                code="CLIENT",
            )
        return UnavailableError(message, context=self._context, server_message=last)

    def _read_chunk(self) -> flight.FlightStreamChunk:
        assert self._reader is not None
        if self._watch is None:
            return self._reader.read_chunk()
        return self._watch.call(self._reader.read_chunk)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self._finished:
            return
        self.open()
        while True:
            assert self._reader is not None and self._location is not None
            stalled = False
            try:
                chunk = self._read_chunk()
            except StopIteration:
                if self._watch is not None and self._watch.stalled:  # cancelled by the watchdog
                    stalled = True
                else:
                    self._ended(self._location)
                    return
            except Exception as e:
                if self._watch is None or not self._watch.stalled:
                    err = from_flight(e, self._where(self._location))
                    if not is_replica_failure(err):
                        raise err from e
                    self.close()
                    self._failed(self._location, err)
                    self._open_next()
                    continue
                stalled = True
            if stalled:
                self.close()
                self._failed(self._location, self._stalled(self._location, "the next batch"))
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
            if self._rows is not None and self.delivered + batch.num_rows > self._rows:
                location = self._location
                self.close()
                raise self._mismatch(
                    location,
                    f"the stream holds more than the {self._rows:,} rows planned for the endpoint "
                    f"({self.delivered + batch.num_rows:,} received so far)",
                )
            self.delivered += batch.num_rows
            yield batch

    def _ended(self, location: str) -> None:
        """The stream at ``location`` ended cleanly: checks it is whole."""
        if self._skip:
            raise SheafError(
                f"{self._where(location)}: the stream resumed there ended {self._skip:,} rows short "
                f"of the {self.delivered:,} already read at {self._failures[-1][0]}; the replicas disagree "
                "about a pinned ticket",
                context=self._context,
                code="CLIENT",
            )
        self._reader, self._watch = None, None
        if self._rows is not None and self.delivered != self._rows:
            raise self._mismatch(
                location,
                f"the stream ended after {self.delivered:,} rows, but the plan says the endpoint holds {self._rows:,}",
            )
        self._finished = True

    def close(self) -> None:
        """Cancels the open stream (on the server too), if any."""
        reader, self._reader, self._watch = self._reader, None, None
        if reader is not None:
            _cancel(reader)


def _cancel(reader: flight.FlightStreamReader) -> None:
    try:
        reader.cancel()
    except Exception:  # noqa: BLE001 - the stream may already be gone
        pass
