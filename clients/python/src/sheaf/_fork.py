"""Keeping Flight usable across ``fork`` (DataLoader workers with the fork
start method).

A forked child inherits gRPC's state but not its threads (event engine,
timers): a Flight call in the child then waits forever on the inherited state
(seen with pyarrow 26, whose bundled gRPC has no fork support: DataLoader
workers hung on their first call whenever the parent had a live connection).
gRPC shuts down when its last channel is gone and starts afresh in the child.
So before every fork, the clients of this process close their connections
(they reopen on their next call) and the fork waits until gRPC's threads
have stopped.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import Client

# Every Client of this process.
_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()

#: How long a fork waits for gRPC's threads to stop once Sheaf's connections are closed.
WAIT_SECONDS = 5.0


def track(client: Client) -> None:
    """Closes ``client``'s connections before each fork of this process."""
    _LIVE.add(client)


def grpc_threads() -> int:
    """Threads of gRPC's runtime in this process (Linux; 0 elsewhere)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    n = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith(("event_engine", "grpc", "lifeguard")):
            n += 1
    return n


def _before_fork() -> None:
    closed = False
    for client in list(_LIVE):
        closed = client._close_for_fork() or closed
    if not closed:
        return
    deadline = time.monotonic() + WAIT_SECONDS
    while grpc_threads():
        if time.monotonic() > deadline:
            warnings.warn("sheaf: gRPC is still running at fork (other pyarrow.flight clients or unfinished reads "
                          "are open in this process); Flight calls in the child may hang. Close them first, or use "
                          "multiprocessing_context='spawn' or 'forkserver'.", RuntimeWarning, stacklevel=2)
            return
        time.sleep(0.002)


def _after_fork_in_child() -> None:
    for client in list(_LIVE):
        client._lock = threading.Lock()  # another thread of the parent may have held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
