"""The local cache of pinned reads (the implementation behind :mod:`sheaf.cache`):
Arrow IPC files on disk, memory-mapped on read.

A pinned revision never changes, so an entry is never stale: what a Flight
ticket (or a row range of a pinned dataset) returned once, it returns
forever. Enable it per client::

    client = sheaf.connect(url, cache=True, max_cache_bytes=20 * 2**30)
    client.dataset("sheaf://team/data/train.parquet").to_table()   # from the server, stored
    client.dataset("sheaf://team/data/train.parquet").to_table()   # from disk, zero-copy

Every reader (``to_table``, ``to_batches``, PyTorch) goes through
:func:`sheaf.dataset.read_endpoint`, which looks here first. Command line:
``python -m sheaf.cache info|prune --max-bytes N|clear [--dir DIR]``.

On-disk layout (the Rust ``sheaf cache`` command reads the same):

- root: ``$SHEAF_CACHE_DIR``, else ``$XDG_CACHE_HOME/sheaf-client``
  (``~/.cache/sheaf-client``; macOS ``~/Library/Caches/sheaf-client``,
  Windows ``%LOCALAPPDATA%\\sheaf-client``); everything lives in ``<root>/v1``;
- entries: ``v1/entries/<kk>/<key>.arrow``, ``key`` 64 lowercase hex
  characters (a SHA-256), ``kk`` its first two;
- an entry is an Arrow IPC *file* followed by a 24-byte trailer:
  ``u64 ipc_length | u32 crc32 | u32 flags (0) | b"SHEAFCv1"`` (little
  endian), ``crc32`` the zlib CRC-32 of the ``ipc_length`` IPC bytes and
  ``ipc_length + 24`` the file's size;
- an entry is bound to its key: the IPC file's footer metadata holds
  ``sheaf.cache.key`` = the key (64 hex characters, covered by the CRC). An
  entry whose footer names another key (a file copied or restored over
  another entry) or none (written before the binding) is not trusted: it is
  dropped and read from the server again;
- recency: an entry's modification time is its last use (a read sets it);
  eviction removes the oldest first;
- writes: ``v1/tmp/<key>.<pid>.<random>.tmp``, then an atomic rename onto the
  entry (no lock: two writers of one key write the same bytes);
- ``v1/lock``: an exclusive ``flock`` held while evicting, pruning or clearing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import mmap
import os
import secrets
import struct
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._proto import sheaf_pb2

__all__ = [
    "Cache",
    "CacheSetting",
    "make_cache",
    "CacheEntry",
    "CacheInfo",
    "default_dir",
    "ticket_key",
    "rows_key",
    "canonical_ranges",
    "info",
    "prune",
    "clear",
]

#: The environment variable naming the cache's root folder.
DIR_ENV = "SHEAF_CACHE_DIR"
#: The environment variable giving the default size bound, in bytes.
MAX_BYTES_ENV = "SHEAF_CACHE_MAX_BYTES"
#: The environment variable giving the default check: ``full`` or ``structure``.
VERIFY_ENV = "SHEAF_CACHE_VERIFY"
#: The default size bound: 10 GiB.
DEFAULT_MAX_BYTES = 10 * 2**30
#: The layout version: the subfolder of the root holding everything.
VERSION = "v1"
#: The IPC file footer's metadata key holding the entry's own key.
KEY_METADATA = b"sheaf.cache.key"
#: The trailer after each entry's IPC bytes.
TRAILER = struct.Struct("<QII8s")
MAGIC = b"SHEAFCv1"
#: Temporary files older than this are debris of a crashed writer.
STALE_TMP_SECONDS = 3600.0
#: A process storing entries rescans the folder's size at least this often
#: (other processes store too).
RESCAN_SECONDS = 30.0
#: Entries opened for shared reads (``Cache.get(key, shared=True)``) kept per
#: process (memory-mapped: they hold no heap memory).
OPEN_ENTRIES = 256


def default_dir() -> Path:
    """The cache root: ``$SHEAF_CACHE_DIR``, else the user's cache folder's
    ``sheaf-client`` (never ``~/.cache/sheaf``, which is the build cache)."""
    env = os.environ.get(DIR_ENV)
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    return base / "sheaf-client"


def default_max_bytes() -> int:
    """``$SHEAF_CACHE_MAX_BYTES``, else :data:`DEFAULT_MAX_BYTES`; a value
    that is not a whole number of bytes, 0 or more, raises ``ValueError``
    naming the variable."""
    env = os.environ.get(MAX_BYTES_ENV)
    if not env:
        return DEFAULT_MAX_BYTES
    try:
        value = int(env)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f"${MAX_BYTES_ENV}={env!r}: the cache's bound must be a whole number of bytes, 0 or more "
            f"(e.g. {DEFAULT_MAX_BYTES} for 10 GiB)"
        )
    return value


# -- keys ---------------------------------------------------------------------


def ticket_key(ticket: bytes) -> str | None:
    """The cache key of a Sheaf Flight ticket: SHA-256 of the ticket with its
    signature, endpoint index and wire compression cleared, serialized
    deterministically (what the rows depend on: package, top hash, path,
    query, slices). ``None`` for a ticket that is not a Sheaf ticket of a
    pinned revision (not cacheable)."""
    t = sheaf_pb2.Ticket()
    try:
        t.ParseFromString(ticket)
    except Exception:  # noqa: BLE001 - not ours: not cached
        return None
    if not t.package or len(t.top_hash) < 64:
        return None
    t.ClearField("signature")
    t.partition = 0
    if t.HasField("query"):
        t.query.compression = ""
    return hashlib.sha256(b"sheaf-cache/v1 ticket\0" + t.SerializeToString(deterministic=True)).hexdigest()


def canonical_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open ranges sorted, merged and without empty ones (the server's canonical order)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges if int(s) < int(e)):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


_DROPPED = ("partitions", "compression", "rows")


def _canonical_uri(pinned_uri: str) -> str:
    base, _, query = pinned_uri.partition("?")
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0] not in _DROPPED]
    return base + ("?" + "&".join(kept) if kept else "")


def rows_key(pinned_uri: str, ranges: Iterable[tuple[int, int]]) -> str:
    """The cache key of the rows ``ranges`` (table positions) of a pinned
    dataset: SHA-256 of its pinned URI (the server's canonical text, without
    ``partitions``, ``compression`` and ``rows``) and the canonical ranges.
    Computed without any server call."""
    text = ",".join(f"{s}:{e}" for s, e in canonical_ranges(ranges))
    return hashlib.sha256(f"sheaf-cache/v1 rows\0{_canonical_uri(pinned_uri)}\0{text}".encode()).hexdigest()


# -- the cache ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One stored read."""

    key: str
    path: Path
    bytes: int
    last_used: float


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """What a cache holds."""

    path: Path
    entries: int
    bytes: int
    max_bytes: int


@dataclasses.dataclass
class CacheStats:
    """This process's counters of a :class:`Cache`."""

    hits: int = 0
    misses: int = 0
    stored: int = 0
    corrupt: int = 0
    evicted: int = 0


class CorruptEntry(Exception):
    """An entry failed its integrity check (internal: the entry is dropped and read again)."""


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (no lock where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: eviction races only cost a re-read
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class Cache:
    """A cache folder (see the module's doc for the layout), bounded by
    ``max_bytes`` with least-recently-used eviction. Safe for many threads
    and processes at once. Picklable (the folder and bound travel).

    ``verify``: ``"full"`` (default, or ``$SHEAF_CACHE_VERIFY``) checks an
    entry's CRC-32 the first time this process opens it (about 1.5-3 GB/s
    here), and its structure (size, trailer, Arrow footer) every time;
    ``"structure"`` skips the CRC (a truncated entry is still caught; a
    flipped bit in the data is not). Every open also checks that the entry
    is bound to its key (the key in the IPC footer: see the module's doc). A
    failed check drops the entry: the read goes to the server and stores it
    again."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, max_bytes: int | None = None, *, verify: str | None = None
    ) -> None:
        if verify is None:
            verify = os.environ.get(VERIFY_ENV) or "full"
        if verify not in ("full", "structure"):
            raise ValueError(f"Cache(verify={verify!r}): 'full' or 'structure'")
        self.path = Path(path).expanduser() if path is not None else default_dir()
        self.max_bytes = int(max_bytes) if max_bytes is not None else default_max_bytes()
        if self.max_bytes < 0:
            raise ValueError(f"Cache(max_bytes={max_bytes}): must be >= 0")
        self.verify = verify
        self._init_process_state()

    def _init_process_state(self) -> None:
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._open: OrderedDict[str, tuple[pa.Table, tuple[int, int, int]]] = OrderedDict()
        self._verified: set[tuple[int, int, int]] = set()
        self._made = False
        # Bytes stored as of the last scan plus what this process stored since:
        # a full scan (and eviction) only when over the bound or stale.
        self._total: int | None = None
        self._scanned_at = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "max_bytes": self.max_bytes, "verify": self.verify}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.max_bytes, self.verify = state["path"], state["max_bytes"], state["verify"]
        self._init_process_state()

    def __repr__(self) -> str:
        return f"<sheaf.cache.Cache {self.path} max {self.max_bytes:,} bytes>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cache) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((self.path, self.max_bytes, self.verify))

    # -- paths ----------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The folder of this layout version (``<path>/v1``)."""
        return self.path / VERSION

    def entry_path(self, key: str) -> Path:
        """Where entry ``key`` lives."""
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache key {key!r}: expected 64 lowercase hex characters")
        return self.root / "entries" / key[:2] / f"{key}.arrow"

    def _ensure_dirs(self) -> None:
        if not self._made:
            (self.root / "entries").mkdir(parents=True, exist_ok=True)
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
            self._made = True

    # -- reading ----------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return self.entry_path(key).is_file()

    def get(self, key: str, *, shared: bool = False) -> pa.Table | None:
        """The table stored under ``key``, memory-mapped (zero-copy), or
        ``None`` (not stored, or it failed its check and was dropped).
        Marks the entry as just used.

        Entries are mapped copy-on-write: a write to the table's buffers (an
        in-place edit of a tensor over them) goes to pages private to its
        mapping, never to the file. Each call maps the entry anew, so such a
        write never reaches another read of it, unless ``shared``: then the
        table is the one this process keeps for the entry (opened once; up
        to :data:`OPEN_ENTRIES` kept), for callers that copy what they take
        from it and hand none of its buffers out."""
        path = self.entry_path(key)
        try:
            st = os.stat(path)
        except OSError:
            with self._lock:
                self._open.pop(key, None)
                self.stats.misses += 1
            return None
        ident = (st.st_dev, st.st_ino, st.st_size)
        if shared:
            with self._lock:
                held = self._open.get(key)
                if held is not None and held[1] == ident:
                    self._open.move_to_end(key)
                    self.stats.hits += 1
            if held is not None and held[1] == ident:
                _touch(path)
                return held[0]
        try:
            table = self._load(
                path, st.st_size, check_crc=self.verify == "full" and ident not in self._verified, key=key
            )
        except FileNotFoundError:
            with self._lock:
                self.stats.misses += 1
            return None
        except CorruptEntry:
            with self._lock:
                self.stats.corrupt += 1
                self.stats.misses += 1
                self._open.pop(key, None)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        _touch(path)
        with self._lock:
            self._verified.add(ident)
            if shared:
                self._open[key] = (table, ident)
                while len(self._open) > OPEN_ENTRIES:
                    self._open.popitem(last=False)
            self.stats.hits += 1
        return table

    @staticmethod
    def _load(path: Path, size: int, *, check_crc: bool, key: str) -> pa.Table:
        if size < TRAILER.size:
            raise CorruptEntry(f"{path}: {size} bytes, shorter than the trailer")
        try:
            with open(path, "rb") as f:
                # Copy-on-write (private): reads share the page cache, writes stay in this mapping.
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as e:  # ValueError: an empty file (truncated since the stat)
            raise CorruptEntry(f"{path}: {e}") from e
        buf = pa.py_buffer(mapped)
        if buf.size != size:
            raise CorruptEntry(f"{path}: changed while opened")
        ipc_length, crc, _flags, magic = TRAILER.unpack(buf.slice(size - TRAILER.size).to_pybytes())
        if magic != MAGIC or ipc_length + TRAILER.size != size:
            raise CorruptEntry(f"{path}: bad trailer (truncated or not a cache entry)")
        body = buf.slice(0, ipc_length)
        if check_crc and zlib.crc32(memoryview(body)) != crc:
            raise CorruptEntry(f"{path}: CRC-32 mismatch")
        try:
            reader = pa.ipc.open_file(body)
            bound = (reader.metadata or {}).get(KEY_METADATA)
            if bound != key.encode():
                what = "no key (written before entries were bound to them)" if bound is None else "another key's"
                raise CorruptEntry(f"{path}: the entry holds {what}")
            table = reader.read_all()
        except (pa.ArrowException, OSError, ValueError) as e:
            raise CorruptEntry(f"{path}: not an Arrow IPC file ({e})") from e
        return table

    # -- writing ----------------------------------------------------------------

    def writer(self, key: str, schema: pa.Schema) -> EntryWriter:
        """A writer of entry ``key``: :meth:`EntryWriter.write` batches, then
        :meth:`EntryWriter.commit` (an atomic rename); :meth:`EntryWriter.abort`
        (or garbage collection) drops it."""
        self._ensure_dirs()
        return EntryWriter(self, key, schema)

    def put(self, key: str, data: pa.Table | Sequence[pa.RecordBatch], schema: pa.Schema | None = None) -> bool:
        """Stores ``data`` (a table, or batches with their ``schema``) under
        ``key``; ``False`` when it is larger than the bound (not stored)."""
        if isinstance(data, pa.Table):
            schema, batches = data.schema, data.to_batches()
        else:
            if schema is None:
                if not data:
                    raise ValueError("Cache.put: give the schema of an empty list of batches")
                schema = data[0].schema
            batches = list(data)
        w = self.writer(key, schema)
        try:
            for b in batches:
                w.write(b)
        except BaseException:
            w.abort()
            raise
        return w.commit()

    def discard(self, key: str) -> None:
        """Removes entry ``key`` if stored."""
        with self._lock:
            self._open.pop(key, None)
        with contextlib.suppress(OSError):
            os.unlink(self.entry_path(key))

    # -- listing, eviction --------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """Every entry, least recently used first."""
        out = []
        base = self.root / "entries"
        try:
            fans = list(os.scandir(base))
        except OSError:
            return []
        for fan in fans:
            if not fan.is_dir():
                continue
            try:
                items = list(os.scandir(fan.path))
            except OSError:
                continue
            for item in items:
                if not item.name.endswith(".arrow"):
                    continue
                try:
                    st = item.stat()
                except OSError:
                    continue
                out.append(CacheEntry(item.name[: -len(".arrow")], Path(item.path), st.st_size, st.st_mtime))
        out.sort(key=lambda e: (e.last_used, e.key))
        return out

    def info(self) -> CacheInfo:
        """Entries and bytes stored."""
        entries = self.entries()
        return CacheInfo(self.path, len(entries), sum(e.bytes for e in entries), self.max_bytes)

    def prune(self, max_bytes: int | None = None) -> int:
        """Removes least recently used entries until at most ``max_bytes``
        (default: the cache's bound) are stored, and stale temporary files;
        returns the bytes removed."""
        limit = self.max_bytes if max_bytes is None else int(max_bytes)
        if not self.root.is_dir():
            return 0
        self._ensure_dirs()
        with _flock(self.root / "lock"):
            removed = self._remove_stale_tmp()
            entries = self.entries()
            total = sum(e.bytes for e in entries)
            for e in entries:
                if total <= limit:
                    break
                try:
                    os.unlink(e.path)
                except FileNotFoundError:
                    pass
                except OSError:
                    continue
                total -= e.bytes
                removed += e.bytes
                with self._lock:
                    self._open.pop(e.key, None)
                    self.stats.evicted += 1
            with self._lock:
                self._total, self._scanned_at = total, time.monotonic()
        return removed

    def _stored(self, size: int) -> None:
        """After this process stored ``size`` bytes: evicts beyond the bound
        (a scan of the folder when the running total passes the bound, or
        when the last scan is older than :data:`RESCAN_SECONDS`, since other
        processes store too)."""
        with self._lock:
            if self._total is not None:
                self._total += size
            due = (
                self._total is None
                or self._total > self.max_bytes
                or time.monotonic() - self._scanned_at > RESCAN_SECONDS
            )
        if due:
            self.prune()

    def clear(self) -> int:
        """Removes every entry (and temporary file); returns the bytes removed."""
        return self.prune(0)

    def _remove_stale_tmp(self, older_than: float = STALE_TMP_SECONDS) -> int:
        removed = 0
        now = time.time()
        with contextlib.suppress(OSError):
            for item in os.scandir(self.root / "tmp"):
                with contextlib.suppress(OSError):
                    st = item.stat()
                    if now - st.st_mtime > older_than:
                        os.unlink(item.path)
                        removed += st.st_size
        return removed


#: What ``cache=`` accepts: ``True`` (the default folder), a folder, a
#: :class:`Cache`, or ``None``/``False`` (no cache).
CacheSetting = bool | str | os.PathLike[str] | Cache | None


def make_cache(setting: CacheSetting, max_bytes: int | None = None) -> Cache | None:
    """The :class:`Cache` a ``cache=`` setting means (``None`` for none)."""
    if setting is None or setting is False:
        return None
    if isinstance(setting, Cache):
        if max_bytes is not None and max_bytes != setting.max_bytes:
            return Cache(setting.path, max_bytes, verify=setting.verify)
        return setting
    if setting is True:
        return Cache(None, max_bytes)
    if isinstance(setting, (str, os.PathLike)):
        return Cache(setting, max_bytes)
    raise TypeError(f"cache={setting!r}: True, a folder path or a sheaf.cache.Cache")


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


class EntryWriter:
    """Writes one entry to a temporary file; :meth:`commit` renames it into place."""

    def __init__(self, cache: Cache, key: str, schema: pa.Schema) -> None:
        self._cache = cache
        self._key = key
        self._final = cache.entry_path(key)
        self._tmp = cache.root / "tmp" / f"{key}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        self._sink: Any = pa.OSFile(str(self._tmp), "wb")
        self._writer: Any = pa.ipc.new_file(self._sink, schema, metadata={KEY_METADATA: key.encode()})
        self._done = False
        self.too_big = False

    def write(self, batch: pa.RecordBatch) -> None:
        """Appends a batch (dropped silently once the entry outgrows the cache's bound)."""
        if self.too_big or self._done:
            return
        self._writer.write_batch(batch)
        if self._sink.tell() > self._cache.max_bytes:
            self.too_big = True

    def commit(self) -> bool:
        """Finishes the file and renames it onto the entry; evicts least
        recently used entries beyond the bound. ``False`` if the entry was
        larger than the bound (nothing stored)."""
        if self._done:
            return False
        try:
            self._writer.close()
            ipc_length = self._sink.tell()
            self._sink.close()
            if self.too_big or ipc_length + TRAILER.size > self._cache.max_bytes:
                self.abort()
                return False
            with pa.memory_map(str(self._tmp), "r") as source:
                crc = zlib.crc32(memoryview(source.read_buffer()))
            with open(self._tmp, "ab") as f:
                f.write(TRAILER.pack(ipc_length, crc, 0, MAGIC))
            self._final.parent.mkdir(parents=True, exist_ok=True)
            st = os.stat(self._tmp)
            os.replace(self._tmp, self._final)
        except BaseException:
            self.abort()
            raise
        self._done = True
        with self._cache._lock:
            self._cache.stats.stored += 1
            self._cache._verified.add((st.st_dev, st.st_ino, st.st_size))  # its CRC was just computed from the file
        self._cache._stored(st.st_size)
        return True

    def abort(self) -> None:
        """Drops the temporary file."""
        self._done = True
        for close in (self._writer.close, self._sink.close):
            with contextlib.suppress(Exception):
                close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


# -- module-level API over the default cache ------------------------------------


def _cache(path: str | os.PathLike[str] | None) -> Cache:
    return Cache(path)


def info(path: str | os.PathLike[str] | None = None) -> CacheInfo:
    """Entries and bytes of the cache at ``path`` (default: :func:`default_dir`)."""
    return _cache(path).info()


def prune(max_bytes: int, path: str | os.PathLike[str] | None = None) -> int:
    """Removes least recently used entries of the cache at ``path`` until at
    most ``max_bytes`` remain; returns the bytes removed."""
    return _cache(path).prune(max_bytes)


def clear(path: str | os.PathLike[str] | None = None) -> int:
    """Removes every entry of the cache at ``path``; returns the bytes removed."""
    return _cache(path).clear()
