"""Copy-on-write push (README "Push speed"): on a file system whose files can
share blocks (XFS with reflink, here a real XFS image loop-mounted), `sheaf
push` to a local registry on the same file system stores each new blob as a
clone of its source (FICLONE): nothing is written, the source is read once to
hash it, and a later change to the source does not reach the blob. Elsewhere
(another file system, SHEAF_PUSH_REFLINK=0) every byte is copied as before.

Needs root, mkfs.xfs (xfsprogs; scripts/test installs it) and loop devices; a
machine without them skips with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from sheaf_testlib import Sheaf, read_tree, write_tree

MIB = 1024 * 1024


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def xfs(tmp_path_factory):
    """A fresh XFS file system with reflink, mounted on a folder."""
    if os.geteuid() != 0:
        pytest.skip("loop-mounting an XFS image needs root")
    if not shutil.which("mkfs.xfs"):
        pytest.skip("mkfs.xfs not installed (xfsprogs; scripts/test installs it)")
    root = tmp_path_factory.mktemp("xfs")
    image, mount = root / "fs.img", root / "mnt"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(512 * MIB)  # sparse
    made = _run("mkfs.xfs", "-q", "-m", "reflink=1", str(image))
    assert made.returncode == 0, made.stderr
    mounted = _run("mount", "-o", "loop", str(image), str(mount))
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an XFS image here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        _run("umount", "-l", str(mount))


def _used(path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _files() -> dict[str, bytes]:
    return {
        "big.bin": os.urandom(24 * MIB + 123),
        "sub/mid.bin": os.urandom(300_000),
        "sub/small.txt": b"small\n",
        "empty.txt": b"",
    }


def _push(xfs, src, registry, package: str, env: dict[str, str] | None = None):
    """Writes the test files to `src`, pushes them to `registry` and installs
    them back: the push report, the files, their bytes and how much the XFS
    file system grew."""
    files = write_tree(src, _files())
    before = _used(xfs)
    report = Sheaf(str(registry), env=env).push(package, src)
    grown = _used(xfs) - before
    dest = src.parent / f"{src.name}-installed"
    Sheaf(str(registry)).ok("install", package, "--dest", dest)
    assert read_tree(dest) == files
    return report, files, sum(len(v) for v in files.values()), grown


def test_push_on_the_same_file_system_clones_instead_of_copying(xfs, tmp_path):
    src, registry = xfs / "src-same", xfs / "reg-same"
    report, files, data, grown = _push(xfs, src, registry, "t/cow")
    assert report["uploaded_files"] == 4
    # Every new blob with data is a clone; the empty one has nothing to share.
    assert report["cloned_files"] == 3, report
    assert grown < data // 10, f"the registry took {grown} bytes for {data} bytes of clones"
    # The blobs hold the bytes hashed: installed (and verified) as pushed (in _push).
    # A change to a source after the push does not reach its blob (copy on write).
    with open(src / "big.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"changed")
    again = tmp_path / "again"
    Sheaf(str(registry)).ok("install", "t/cow", "--dest", again)
    assert read_tree(again) == files
    r = Sheaf(str(registry))("verify", "t/cow", "--dir", src)
    assert r.returncode != 0 and "big.bin" in r.stdout + r.stderr


def test_push_from_another_file_system_copies(xfs, tmp_path):
    report, _, data, grown = _push(xfs, tmp_path / "src", xfs / "reg-other", "t/copied")
    assert report["cloned_files"] == 0 and report["uploaded_files"] == 4, report
    assert grown >= data


def test_reflink_can_be_turned_off(xfs, tmp_path):
    report, _, data, grown = _push(xfs, xfs / "src-off", xfs / "reg-off", "t/off", {"SHEAF_PUSH_REFLINK": "0"})
    assert report["cloned_files"] == 0, report
    assert grown >= data
