"""A local cache of pinned reads: Arrow IPC files on disk, memory-mapped on read.

A pinned revision never changes, so an entry is never stale: what a Flight
ticket (or a row range of a pinned dataset) returned once, it returns
forever. Enable it per client::

    client = sheaf.connect(url, cache=True, max_cache_bytes=20 * 2**30)
    client.dataset("sheaf://team/data/train.parquet").to_table()   # from the server, stored
    client.dataset("sheaf://team/data/train.parquet").to_table()   # from disk, zero-copy

Every reader (``to_table``, ``to_batches``, PyTorch, random access) goes
through :func:`sheaf.dataset.read_endpoint`, which looks here first.
Command line: ``python -m sheaf.cache [--dir DIR] [--json] info|list|prune --max-bytes N|clear``.
The on-disk layout (shared with the Rust ``sheaf cache`` command) is
described in :mod:`sheaf._cache`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ._cache import (
    DEFAULT_MAX_BYTES,
    DIR_ENV,
    MAGIC,
    MAX_BYTES_ENV,
    STALE_TMP_SECONDS,
    TRAILER,
    VERIFY_ENV,
    VERSION,
    Cache,
    CacheEntry,
    CacheInfo,
    CacheSetting,
    CacheStats,
    EntryWriter,
    canonical_ranges,
    clear,
    default_dir,
    default_max_bytes,
    info,
    make_cache,
    prune,
    rows_key,
    ticket_key,
)

__all__ = [
    "Cache",
    "CacheEntry",
    "CacheInfo",
    "CacheSetting",
    "CacheStats",
    "EntryWriter",
    "make_cache",
    "default_dir",
    "default_max_bytes",
    "ticket_key",
    "rows_key",
    "canonical_ranges",
    "info",
    "prune",
    "clear",
    "DIR_ENV",
    "MAX_BYTES_ENV",
    "VERIFY_ENV",
    "DEFAULT_MAX_BYTES",
    "VERSION",
    "TRAILER",
    "MAGIC",
    "STALE_TMP_SECONDS",
]


# -- command line ----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sheaf.cache [--dir DIR] info|list|prune --max-bytes N|clear``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m sheaf.cache", description="Sheaf's local cache of pinned reads.")
    parser.add_argument("--dir", help=f"the cache folder (default: ${DIR_ENV}, else {default_dir()})")
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="entries and bytes stored")
    sub.add_parser("list", help="every entry, least recently used first")
    p = sub.add_parser("prune", help="remove least recently used entries beyond a size")
    p.add_argument("--max-bytes", type=int, required=True)
    sub.add_parser("clear", help="remove every entry")
    args = parser.parse_args(argv)
    cache = Cache(args.dir)
    if args.command == "info":
        i = cache.info()
        if args.json:
            print(json.dumps({"path": str(i.path), "entries": i.entries, "bytes": i.bytes}))
        else:
            print(f"{i.path}: {i.entries} entries, {i.bytes:,} bytes")
    elif args.command == "list":
        entries = cache.entries()
        if args.json:
            print(json.dumps([{"key": e.key, "bytes": e.bytes, "last_used": e.last_used} for e in entries]))
        else:
            for e in entries:
                print(f"{e.key}  {e.bytes:>14,}  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.last_used))}")
    else:
        removed = cache.prune(args.max_bytes) if args.command == "prune" else cache.clear()
        if args.json:
            print(json.dumps({"removed_bytes": removed}))
        else:
            print(f"removed {removed:,} bytes from {cache.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
