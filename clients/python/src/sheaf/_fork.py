"""Keeping Flight usable across ``fork`` (DataLoader workers with the fork
start method).

A forked child inherits gRPC's state but not its threads: if gRPC was
running, or still shutting down, when the process forked, the child's first
Flight call waits forever on a lock no thread of the child will release
(pyarrow 26's bundled gRPC has no fork support). gRPC shuts down when its
last channel is gone and starts afresh in the child. So before every fork,
the clients of this process close their connections (they reopen on their
next call) and the fork waits until gRPC has settled:

- no thread carries a gRPC name (``event_engine``, ``grpc_*``, ``lifeguard``);
- no thread has appeared since the clients were closed (gRPC's shutdown may
  run on a thread it starts then, which keeps its creator's name until it
  names itself);
- the set of threads has not changed for :data:`QUIET_SECONDS` (some gRPC
  threads carry no name of their own and end during shutdown).

Measured here under CPU load: with the name check alone, a forked DataLoader
worker hung about once in 100 to 200 forks, caught forking while gRPC's
``grpc_shutdown`` thread (started after the check) held its init lock.

As a last line of defence, a forked child opens its first Flight connection
under a watchdog (:data:`CHILD_OPEN_SECONDS`) and raises
:class:`~sheaf.UnavailableError` naming the cause instead of hanging.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .errors import UnavailableError

if TYPE_CHECKING:
    from ._connection import Connection

T = TypeVar("T")

# Every connection (Client) of this process.
_LIVE: weakref.WeakSet[Connection] = weakref.WeakSet()

#: How long a fork waits for gRPC to settle once Sheaf's connections are closed.
#: gRPC may keep a poller thread for up to 10 s after its last channel closes.
WAIT_SECONDS = 15.0

#: How long the set of threads must stay unchanged before a fork goes ahead.
QUIET_SECONDS = 0.02

#: How long a forked child waits for its first Flight connection to open.
CHILD_OPEN_SECONDS = 30.0

_GRPC_NAMES = ("event_engine", "grpc", "lifeguard")

# Set while a close for fork has not been seen to settle, so the next fork
# (a DataLoader forks its workers one after another) waits too.
_settling = False
# Set in a child forked from this process; cleared once a connection opened.
_forked_child = False


def _threads() -> dict[str, str]:
    """This process's threads (Linux): thread id -> name. Empty elsewhere."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return {}
    out = {}
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                out[task] = f.read().strip()
        except OSError:
            continue  # ended while listing
    return out


def grpc_threads() -> int:
    """Threads named by gRPC's runtime in this process (Linux; 0 elsewhere)."""
    return sum(name.startswith(_GRPC_NAMES) for name in _threads().values())


def track(client: Connection) -> None:
    """Closes ``client``'s connections before each fork of this process."""
    _LIVE.add(client)


def _settle(before: set[str]) -> bool:
    """Waits until gRPC has settled (see the module's doc); False on timeout."""
    deadline = time.monotonic() + WAIT_SECONDS
    last: dict[str, str] | None = None
    quiet_since = time.monotonic()
    while True:
        now = _threads()
        busy = any(name.startswith(_GRPC_NAMES) or tid not in before for tid, name in now.items())
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif not busy and time.monotonic() - quiet_since >= QUIET_SECONDS:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


def _before_fork() -> None:
    global _settling
    before = set(_threads())
    closed = False
    for client in list(_LIVE):
        closed = client._close_for_fork() or closed
    if not (closed or _settling):
        return
    _settling = True
    if _settle(before):
        _settling = False
        return
    warnings.warn(
        "sheaf: gRPC is still running at fork (other pyarrow.flight clients or unfinished reads "
        "are open in this process); Flight calls in the child may fail. Close them first, or use "
        "multiprocessing_context='spawn' or 'forkserver'.",
        RuntimeWarning,
        stacklevel=2,
    )


def _after_fork_in_child() -> None:
    global _settling, _forked_child
    _settling, _forked_child = False, True
    for client in list(_LIVE):
        client._lock = threading.Lock()  # another thread of the parent may have held it


def open_connection(open_: Callable[[], T], url: str) -> T:
    """Runs ``open_`` (which creates a Flight client and so starts gRPC): at
    once, or, for the first connection of a forked child, on a helper thread
    with a deadline, so a gRPC state inherited mid-shutdown fails loudly."""
    global _forked_child
    if not _forked_child:
        return open_()
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(open_())
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            error.append(e)

    helper = threading.Thread(target=run, name="sheaf-connect", daemon=True)
    helper.start()
    helper.join(CHILD_OPEN_SECONDS)
    if helper.is_alive():
        raise UnavailableError(
            f"connecting to {url} in forked process {os.getpid()}: gRPC did not start within "
            f"{CHILD_OPEN_SECONDS:.0f} s; the parent forked while gRPC was running (another pyarrow.flight "
            "client or an unfinished read was open). Use multiprocessing_context='forkserver' or 'spawn'."
        )
    if error:
        raise error[0]
    _forked_child = False
    return result[0]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
