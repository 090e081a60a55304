"""The fork guard (sheaf._fork): what it waits for before a fork, and the
watchdog a forked child opens its first connection under. DataLoader workers
started with fork are in test_torch.py."""

from __future__ import annotations

import os
import threading

import pytest

import sheaf
from sheaf import _fork


def test_gRPC_threads_end_when_the_clients_close_for_fork(client):
    assert client.list_packages("test/*")
    assert _fork.grpc_threads() > 0
    before = set(_fork._threads())
    closed = [c._close_for_fork() for c in list(_fork._LIVE)]  # every client, as a fork does
    assert any(closed)
    assert _fork._settle(before)
    assert _fork.grpc_threads() == 0
    assert client.list_packages("test/*")  # reconnects on next use


def test_settle_waits_for_a_thread_started_after_the_close():
    before = set(_fork._threads())
    release = threading.Event()
    # An unnamed thread started while closing: gRPC's shutdown thread looks
    # like this until it names itself.
    t = threading.Thread(target=release.wait, daemon=True)
    t.start()
    ended: list[bool] = []
    threading.Timer(0.3, lambda: (ended.append(True), release.set())).start()
    assert _fork._settle(before)
    assert ended and not t.is_alive(), "the fork went ahead while the new thread was running"


def test_settle_gives_up_after_the_deadline(monkeypatch):
    monkeypatch.setattr(_fork, "WAIT_SECONDS", 0.2)
    before = set(_fork._threads())
    release = threading.Event()
    t = threading.Thread(target=release.wait, daemon=True)
    t.start()
    try:
        assert not _fork._settle(before)
    finally:
        release.set()
        t.join()


def test_a_forked_child_fails_loudly_when_gRPC_does_not_start(monkeypatch):
    monkeypatch.setattr(_fork, "_forked_child", True)
    monkeypatch.setattr(_fork, "CHILD_OPEN_SECONDS", 0.2)
    stuck = threading.Event()
    with pytest.raises(
        sheaf.UnavailableError, match=rf"connecting to grpc://x:1 in forked process {os.getpid()}.*forkserver"
    ):
        _fork.open_connection(stuck.wait, "grpc://x:1")
    stuck.set()
    assert _fork._forked_child  # still guarded: nothing opened


def test_a_forked_child_opens_normally_and_then_without_the_watchdog(monkeypatch):
    monkeypatch.setattr(_fork, "_forked_child", True)
    assert _fork.open_connection(threading.current_thread, "grpc://x:1") is not threading.current_thread()
    assert not _fork._forked_child
    assert _fork.open_connection(threading.current_thread, "grpc://x:1") is threading.current_thread()


def test_errors_of_the_open_reach_the_caller(monkeypatch):
    monkeypatch.setattr(_fork, "_forked_child", True)

    def bad() -> None:
        raise ValueError("bad URL")

    with pytest.raises(ValueError, match="bad URL"):
        _fork.open_connection(bad, "grpc://x:1")


def test_forked_child_reads(client, data):
    """A plain os.fork() child (no DataLoader) reads after the parent did."""
    assert client.list_packages("test/*")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if {p.name for p in client.list_packages("test/*")} == {"test/tables", "test/files"} else 3
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    try:
        got = os.read(r, 1)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert got == b"\x00"
    assert client.list_packages("test/*")  # the parent reconnects
