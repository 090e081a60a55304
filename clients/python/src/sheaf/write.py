"""Writing tables: write sessions (``proto/sheaf.proto``, "Writes") and lineage.

One revision is built from any number of parts, each streamed to the server
as it is produced:

1. action ``begin_write`` opens a session on a package (with the commit
   message, metadata, write mode, lineage inputs and an idempotency key);
2. every part is a DoPut whose typed ``DatasetRequest`` names the session and
   the table (a ``.parquet`` file, or a folder of part files); the batches
   are sent as they come, never gathered in memory;
3. action ``commit_write`` creates the revision from the parts this client
   uploaded (listed by id), or ``abort_write`` drops the session.

:meth:`sheaf.Client.write` does the three steps for one table;
:meth:`sheaf.Client.writer` returns a :class:`Writer` for several. What a
write is given (target, options, data) is checked and turned into record
batches before any call, in :mod:`sheaf._write_data`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, Union

import pyarrow as pa
from google.protobuf import message

from . import _request
from ._proto import sheaf_pb2
from ._version import __version__
from ._write_data import MODES, WriteData, as_stream, as_table, metadata_text, mode_of, split_package
from .errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    SessionNotFoundError,
    SheafError,
    UnavailableError,
    from_flight,
)

if TYPE_CHECKING:
    from .client import Client
    from .dataset import Dataset

__all__ = [
    "WriteResult",
    "Part",
    "Writer",
    "LineageInput",
    "LineageNode",
    "LineageTracker",
    "MODES",
    "TOOL",
    "WriteData",
    "DerivedFrom",
]

M = TypeVar("M", bound=message.Message)

#: What writes record as the program that wrote (``LineageNode.tool``).
TOOL = f"sheaf-python {__version__}"

#: What ``derived_from=`` accepts: a :class:`~sheaf.Dataset`, a dataset URI or
#: package reference (``str``), a :class:`LineageInput`, or an iterable of them.
DerivedFrom = Union["Dataset", str, "LineageInput", Iterable[Union["Dataset", str, "LineageInput"]]]

# A commit (or begin/abort) that fails with UNAVAILABLE, a lost connection or
# a deadline is retried this many times in all, with these pauses (seconds)
# in between: the session and its idempotency key make a retry safe.
ATTEMPTS = 6
BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class LineageInput:
    """A dataset a revision was derived from: ``owner/name``, the full top
    hash that was read, and the dataset URI it was read with (pinned to that
    hash; empty when unknown)."""

    package: str
    top_hash: str
    uri: str = ""

    def _proto(self) -> sheaf_pb2.LineageInput:
        return sheaf_pb2.LineageInput(package=self.package, top_hash=self.top_hash, uri=self.uri)

    @classmethod
    def _of(cls, m: sheaf_pb2.LineageInput) -> LineageInput:
        return cls(m.package, m.top_hash, m.uri)


@dataclass(frozen=True)
class LineageNode:
    """One revision of a lineage walk (:meth:`sheaf.Client.lineage`).

    ``depth`` is its distance from the revision asked about (0 for that
    one); ``principal`` and ``tool`` say who wrote it and with what (empty
    for revisions written without a session, such as ``sheaf push``);
    ``inputs`` are the datasets it was derived from; ``missing`` says why its
    own inputs could not be followed (deleted, or not readable by the
    caller), empty when they were."""

    package: str
    top_hash: str
    depth: int
    message: str | None
    principal: str
    tool: str
    inputs: tuple[LineageInput, ...]
    missing: str = ""

    @property
    def ref(self) -> str:
        """``owner/name@top_hash``."""
        return f"{self.package}@{self.top_hash}"


class LineageTracker:
    """What :meth:`sheaf.Client.track_lineage` records: every dataset the
    client planned while it was active, each once, in the order first read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inputs: dict[LineageInput, None] = {}

    def record(self, item: LineageInput) -> None:
        """Adds a dataset (ignored when already recorded)."""
        with self._lock:
            self._inputs.setdefault(item, None)

    @property
    def inputs(self) -> tuple[LineageInput, ...]:
        """The datasets read so far."""
        with self._lock:
            return tuple(self._inputs)

    def __repr__(self) -> str:
        return f"<sheaf.LineageTracker {len(self.inputs)} input(s)>"


class WriteResult(str):
    """What a write committed: the new revision's top hash, as a ``str``.

    It is the top hash itself (``client.write(...)`` can be used wherever a
    hash is), with what else the server answered as attributes, the way
    ``huggingface_hub``'s ``CommitInfo`` is the commit URL with attributes:

    - ``top_hash``: the new revision's full top hash (the string itself);
    - ``package``: ``owner/name``;
    - ``uri``: the pinned dataset URI of the table written (the first one,
      for a commit of several), to read exactly these rows again;
    - ``uris``: the pinned URIs of every table the commit wrote;
    - ``previous``: the revision ``latest`` pointed at before (``None`` for
      a new package);
    - ``keys``: the logical keys added; ``rows`` and ``bytes`` written.
    """

    top_hash: str
    package: str
    uri: str
    uris: tuple[str, ...]
    previous: str | None
    keys: tuple[str, ...]
    rows: int
    bytes: int

    def __new__(
        cls,
        top_hash: str,
        *,
        package: str = "",
        uris: Iterable[str] = (),
        previous: str | None = None,
        keys: Iterable[str] = (),
        rows: int = 0,
        bytes: int = 0,
    ) -> WriteResult:
        self = super().__new__(cls, top_hash)
        self.top_hash = top_hash
        self.package = package
        self.uris = tuple(uris)
        self.uri = self.uris[0] if self.uris else ""
        self.previous = previous
        self.keys = tuple(keys)
        self.rows = rows
        self.bytes = bytes
        return self

    @classmethod
    def _of(cls, r: sheaf_pb2.CommitWriteResponse) -> WriteResult:
        return cls(
            r.top_hash,
            package=r.package,
            uris=r.uris,
            previous=r.previous if r.HasField("previous") else None,
            keys=r.keys,
            rows=r.rows,
            bytes=r.bytes,
        )

    @property
    def ref(self) -> str:
        """``owner/name@top_hash``: the revision, for :meth:`sheaf.Client.browse` and friends."""
        return f"{self.package}@{self.top_hash}"

    def __repr__(self) -> str:
        return (
            f"WriteResult({str.__repr__(self)}, package={self.package!r}, uri={self.uri!r}, "
            f"rows={self.rows}, bytes={self.bytes})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_result, (str(self), dict(vars(self))))


def _rebuild_result(top_hash: str, state: dict[str, Any]) -> WriteResult:
    result = WriteResult(top_hash)
    result.__dict__.update(state)
    return result


@dataclass(frozen=True)
class Part:
    """One uploaded part of a write session (:meth:`Writer.write`): the
    table it belongs to (``path``), the server's id for it, its rows and
    Parquet bytes, the logical key it will have (``key``: the file itself,
    or ``path/part-NNNNN-ID.parquet`` in a folder) and its ``part`` position."""

    path: str
    part_id: str
    rows: int
    bytes: int
    key: str = ""
    part: int | None = None


# -- lineage inputs ---------------------------------------------------------------


def resolve_inputs(client: Client, derived_from: DerivedFrom | None, what: str) -> list[LineageInput]:
    """Each of ``derived_from`` as ``package@top_hash`` with its pinned URI: a
    :class:`~sheaf.Dataset` is pinned already; a URI or reference is planned
    (GetFlightInfo) by the server, which resolves it."""
    from .dataset import Dataset

    if derived_from is None:
        return []
    items: Iterable[Any] = [derived_from] if isinstance(derived_from, (str, Dataset, LineageInput)) else derived_from
    out: list[LineageInput] = []
    for item in items:
        if isinstance(item, LineageInput):
            out.append(item)
        elif isinstance(item, Dataset):
            out.append(LineageInput(item.package, item.top_hash, item.pinned_uri))
        elif isinstance(item, str):
            uri = item if item.startswith("sheaf://") else "sheaf://" + item
            ds = Dataset.plan(client, uri, record=False)
            out.append(LineageInput(ds.package, ds.top_hash, ds.pinned_uri))
        else:
            raise InvalidArgumentError(
                f"{what}: derived_from= holds a {type(item).__name__}; expected sheaf.Dataset objects, "
                "dataset URIs or package references (str), or sheaf.LineageInput",
                code="CLIENT",
            )
    return out


# -- the session ------------------------------------------------------------------


def _retryable(err: SheafError) -> bool:
    """Whether a failed call may have been lost on the way (UNAVAILABLE: the
    connection dropped or the server is busy; a deadline) rather than refused."""
    return isinstance(err, (UnavailableError, DeadlineExceededError))


class Writer:
    """A write session: several parts, one revision. Create it with
    :meth:`sheaf.Client.writer`; use it as a context manager::

        with client.writer("team/features", message="daily features") as w:
            w.write("train.parquet", train_table)
            w.write("events", batches)          # a folder table, streamed
        print(w.top_hash)

    Leaving the block normally commits (one new revision holding every part
    written); an exception inside it aborts the session (no revision) and is
    raised again. :meth:`commit` and :meth:`abort` do the same explicitly.

    The session opens (action ``begin_write``) with the first :meth:`write`
    (or :meth:`commit`): its lineage inputs are ``derived_from=`` and the
    datasets recorded by :meth:`sheaf.Client.track_lineage` trackers active
    at that moment. Parts may be written from several threads at once.
    """

    def __init__(
        self,
        client: Client,
        package: str,
        *,
        message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        derived_from: DerivedFrom | None = None,
        mode: str = "append",
        base: str | None = None,
        ttl_seconds: int | None = None,
    ) -> None:
        what = f"writer({package!r})"
        self._package, base_in_ref = split_package(package, what)
        if base_in_ref and base and base_in_ref != base:
            raise InvalidArgumentError(f"{what}: base={base!r} and {package!r} name two revisions", code="CLIENT")
        self._client = client
        self._message = message
        self._metadata = metadata_text(metadata, what)
        self._mode_name = mode
        self._mode = mode_of(mode, what)
        self._base = base or base_in_ref
        self._derived_from = derived_from
        self._ttl = ttl_seconds
        self._key = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._session: str | None = None
        self._inputs: tuple[LineageInput, ...] = ()
        self._parts: list[Part] = []
        self._failed = 0
        self._result: WriteResult | None = None
        self._aborted = False

    # -- what it is ------------------------------------------------------------

    @property
    def package(self) -> str:
        """``owner/name``."""
        return self._package

    @property
    def mode(self) -> str:
        """``"append"``, ``"overwrite"`` or ``"error"``."""
        return self._mode_name

    @property
    def session(self) -> str | None:
        """The server's session id, once the session is open."""
        return self._session

    @property
    def idempotency_key(self) -> str:
        """The key ``begin_write`` carries: a retried begin answers the same session."""
        return self._key

    @property
    def inputs(self) -> tuple[LineageInput, ...]:
        """The lineage inputs sent with ``begin_write`` (once the session is open)."""
        return self._inputs

    @property
    def parts(self) -> tuple[Part, ...]:
        """The parts uploaded so far, in upload order."""
        with self._lock:
            return tuple(self._parts)

    @property
    def result(self) -> WriteResult | None:
        """What the commit answered; ``None`` before it."""
        return self._result

    @property
    def top_hash(self) -> str | None:
        """The new revision's top hash, once committed."""
        return self._result.top_hash if self._result is not None else None

    @property
    def state(self) -> str:
        """``"new"`` (no session yet), ``"open"``, ``"committed"`` or ``"aborted"``."""
        if self._result is not None:
            return "committed"
        if self._aborted:
            return "aborted"
        return "open" if self._session else "new"

    def __repr__(self) -> str:
        return f"<sheaf.Writer {self._package} {self.state}, {len(self._parts)} part(s)>"

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            if self.state in ("new", "open"):
                try:
                    self.commit()
                except SheafError as e:
                    if not _retryable(e) and self._result is None:
                        # Refused (the table exists, another schema, latest moved...):
                        # drop the staged parts now rather than when the session expires.
                        try:
                            self.abort()
                        except Exception:  # noqa: BLE001 - the commit's error is the one to raise
                            pass
                    raise
            return
        if self.state in ("new", "open"):
            try:
                self.abort()
            except Exception as e:  # noqa: BLE001 - the block's exception is the one to raise
                note = getattr(exc, "add_note", None)  # Python >= 3.11
                if note is not None:
                    note(f"sheaf: aborting the write session of {self._package} failed too: {e}")

    # -- the calls ----------------------------------------------------------------

    def _call(self, name: str, request: message.Message, response: type[M]) -> M:
        """A typed action, retried while it fails in a way that may have lost it."""
        for attempt in range(ATTEMPTS):
            try:
                return self._client._call(name, request, response)
            except SheafError as e:
                if not _retryable(e) or attempt + 1 == ATTEMPTS:
                    raise
                time.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
        raise AssertionError("unreachable")

    def _open(self) -> str:
        with self._lock:
            if self._result is not None:
                raise SheafError(f"{self._package}: this write session was committed already", code="CLIENT")
            if self._aborted:
                raise SheafError(f"{self._package}: this write session was aborted", code="CLIENT")
            if self._session is not None:
                return self._session
            what = f"begin_write on {self._package}"
            inputs: dict[LineageInput, None] = {}
            for item in resolve_inputs(self._client, self._derived_from, what):
                inputs.setdefault(item, None)
            for item in self._client._tracked_inputs():
                inputs.setdefault(item, None)
            request = sheaf_pb2.BeginWriteRequest(
                package=self._package,
                mode=self._mode,  # type: ignore[arg-type]
                inputs=[i._proto() for i in inputs],
                tool=TOOL,
                idempotency_key=self._key,
            )
            if self._base is not None:
                request.base = self._base
            if self._message is not None:
                request.message = self._message
            if self._metadata is not None:
                request.metadata = self._metadata
            if self._ttl is not None:
                request.ttl_seconds = self._ttl
            answer = self._call("begin_write", request, sheaf_pb2.BeginWriteResponse)
            if not answer.session:
                raise SheafError(f"{what}: the server answered no session", code="CLIENT")
            self._session = answer.session
            self._inputs = tuple(inputs)
            return answer.session

    def write(self, path: str, data: WriteData, *, part: int | None = None) -> Part:
        """Uploads ``data`` as a part of table ``path`` (one DoPut), streaming it.

        ``path`` is a file table (``"train.parquet"``), which one part fills,
        or a folder table (``"events"``), whose parts become
        ``events/part-NNNNN-ID.parquet`` files, ordered by ``part`` (a
        position, such as a Spark partition index) and then by upload.
        ``data``: a ``pyarrow.Table``, ``RecordBatch`` or
        ``RecordBatchReader``, an iterable of ``RecordBatch``, a pandas or
        polars DataFrame. Readers and iterables are sent batch by batch as
        they produce them (never held whole in memory); every batch must have
        the first one's schema.

        Nothing is visible to readers until :meth:`commit`. An upload that
        fails is not part of the commit; an exception raised by ``data``
        itself is raised as it is. Data held in memory (a Table, RecordBatch
        or DataFrame) is sent again when the upload fails with UNAVAILABLE or
        a lost connection; a reader or iterable is sent once.
        """
        target = path.strip("/") if isinstance(path, str) else ""
        what = f"writing {self._package}/{target}"
        if not target:
            raise InvalidArgumentError(
                f"write to {self._package}: the table path is empty (a file, x.parquet, or a folder)", code="CLIENT"
            )
        if part is not None and not (isinstance(part, int) and 0 <= part < 2**32):
            raise InvalidArgumentError(f"{what}: part={part!r} is not a position (0 <= part < 2^32)", code="CLIENT")
        # Data held in memory can be sent again: its upload is retried when
        # the connection drops (the commit lists part ids, so a part the
        # server staged from a broken upload is never committed).
        replayable = as_table(data, what)
        schema, batches = as_stream(data if replayable is None else replayable, what)
        session = self._open()
        request = sheaf_pb2.DatasetRequest(package=self._package, path=target, session=session)
        if part is not None:
            request.part = part
        what = f"DoPut {self._package}/{target} (write session {session})"
        attempt = 0
        while True:
            try:
                answer = self._put(request, schema, batches, what)
                break
            except SheafError as e:
                attempt += 1
                if replayable is None or not _retryable(e) or attempt == ATTEMPTS:
                    with self._lock:
                        self._failed += 1
                    raise
                time.sleep(BACKOFF[min(attempt - 1, len(BACKOFF) - 1)])
                schema, batches = as_stream(replayable, what)
            except BaseException:
                with self._lock:
                    self._failed += 1
                raise
        uploaded = Part(target, answer.part_id, answer.rows, answer.bytes, answer.path or target, part)
        with self._lock:
            self._parts.append(uploaded)
        return uploaded

    def _put(
        self, request: sheaf_pb2.DatasetRequest, schema: pa.Schema, batches: Iterator[pa.RecordBatch], what: str
    ) -> sheaf_pb2.PutResponse:
        client = self._client
        try:
            writer, reader = client.flight_client().do_put(
                _request.descriptor(request), schema, client.call_options(read=True)
            )
        except Exception as e:
            raise from_flight(e, what) from e
        finished = False
        try:
            for batch in batches:  # the caller's code runs here: its exceptions pass as they are
                try:
                    writer.write_batch(batch)
                except Exception as e:
                    raise from_flight(e, what) from e
            try:
                writer.done_writing()
                raw = reader.read()
                writer.close()
                finished = True
            except Exception as e:
                raise from_flight(e, what) from e
        finally:
            if not finished:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - the first error is the one to raise
                    pass
        if raw is None:
            raise SheafError(f"{what}: the server answered no PutResult", code="CLIENT")
        answer = _request.decode(bytes(raw), sheaf_pb2.PutResponse(), typed=True, what=f"{what}: PutResult")
        if not answer.part_id:
            raise SheafError(f"{what}: the PutResult names no part (part_id)", code="CLIENT")
        return answer

    def commit(self) -> WriteResult:
        """Commits the parts this writer uploaded as one new revision and
        returns it (calling it again returns the same result).

        A commit that fails with UNAVAILABLE, a lost connection or a deadline
        is retried in the same session: the server answers a retried commit
        with the revision it already made, so a retry never makes a second
        one. Errors: :class:`~sheaf.AlreadyExistsError` (mode ``"error"`` and
        a table that exists), :class:`~sheaf.SchemaMismatchError` (an append
        with another schema), :class:`~sheaf.SessionNotFoundError` (expired or
        aborted), ``LATEST_MOVED`` (``base=`` is no longer latest)."""
        if self._result is not None:
            return self._result
        session = self._open()
        with self._lock:
            parts = [p.part_id for p in self._parts]
            if not parts and self._failed:
                raise SheafError(
                    f"commit of {self._package}: every part upload of this session failed; nothing to commit",
                    code="CLIENT",
                )
        answer = self._call(
            "commit_write", sheaf_pb2.CommitWriteRequest(session=session, parts=parts), sheaf_pb2.CommitWriteResponse
        )
        result = WriteResult._of(answer)
        with self._lock:
            self._result = result
        return result

    def abort(self) -> None:
        """Drops the session and its uploaded parts: no revision is made.
        Nothing to do before the session opened, or after an abort."""
        with self._lock:
            if self._result is not None:
                raise SheafError(f"abort of {self._package}: the session was committed already", code="CLIENT")
            if self._aborted:
                return
            self._aborted = True
            session = self._session
        if session is not None:
            try:
                self._call("abort_write", sheaf_pb2.AbortWriteRequest(session=session), sheaf_pb2.AbortWriteResponse)
            except SessionNotFoundError:
                pass  # gone already (expired, or a retried abort whose first answer was lost)


def lineage_nodes(response: sheaf_pb2.LineageResponse) -> list[LineageNode]:
    """The nodes of a ``LineageResponse``."""
    return [
        LineageNode(
            n.package,
            n.top_hash,
            n.depth,
            n.message if n.HasField("message") else None,
            n.principal,
            n.tool,
            tuple(LineageInput._of(i) for i in n.inputs),
            n.missing,
        )
        for n in response.nodes
    ]
