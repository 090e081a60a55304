"""`sheaf gc`: leftovers of killed uploads and staging writes are listed (dry run by
default) and removed with --delete, after a grace period; referenced blobs, every
revision and everything outside `.sheaf/` survive; the same on S3 (moto)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sheaf_testlib import (
    BUCKET,
    MIB,
    QUILT_ENV,
    SHEAF_BIN,
    Sheaf,
    assert_exit,
    base_env,
    big_bytes,
    blob_path,
    chunked_hash,
    describe,
    file_url,
    read_tree,
    write_manifest,
    write_tree,
)

HOUR = 3600
OLD = 3 * HOUR  # older than the default grace period (1h)


def _age(path: Path, seconds: float):
    t = time.time() - seconds
    os.utime(path, (t, t))


def _leftover(registry: Path, rel: str, data: bytes, age: float | None = OLD) -> str:
    p = registry.joinpath(*rel.split("/"))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    if age:
        _age(p, age)
    return rel


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file (and symlink) under root: relative path -> (bytes, mtime ns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = (os.readlink(p).encode(), 0)
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def _actions(report: dict) -> dict[str, str]:
    return {lo["path"]: lo["action"] for lo in report["leftovers"]}


def _hex(data: bytes) -> str:
    return blob_path(Path("."), chunked_hash(data)).name


FILES_1 = {"a.txt": b"first a", "keep.txt": b"kept in both", "big.bin": big_bytes(9 * MIB, seed=3)}
FILES_2 = {"a.txt": b"second a", "keep.txt": b"kept in both", "new/n.txt": b"new"}


@pytest.fixture
def messy(sheaf, registry, tmp_path):
    """o/p with two revisions, a deleted package d/gone, and leftovers of every kind."""
    src1, src2, src3 = tmp_path / "r1", tmp_path / "r2", tmp_path / "r3"
    write_tree(src1, FILES_1)
    write_tree(src2, FILES_2)
    write_tree(src3, {"only-in-deleted.txt": b"deleted package data"})
    r1 = sheaf.push("o/p", src1, "-m", "one")["top_hash"]
    r2 = sheaf.push("o/p", src2, "-m", "two")["top_hash"]
    gone = sheaf.push("d/gone", src3)["top_hash"]
    sheaf.ok("delete", "d/gone")  # pointers go, the manifest stays: its blob is still referenced

    # Every referenced blob is old too: age alone must never make one garbage.
    for p in (registry / ".sheaf" / "blobs").iterdir():
        _age(p, 10 * HOUR)

    big_hex = _hex(FILES_1["big.bin"])
    never = "5" * 64  # a blob whose upload never completed
    garbage = {
        # killed uploads: object_store's local staging files (<target>#N)
        _leftover(registry, f".sheaf/blobs/{big_hex}#1", b"x" * 4096): "partial_upload",
        _leftover(registry, f".sheaf/blobs/{never}#1", b"half"): "partial_upload",
        _leftover(registry, f".sheaf/blobs/{never}#2", b"half again"): "partial_upload",
        # a manifest/pointer/tag write killed between staging and linking
        _leftover(registry, ".sheaf/tmp/424242-7", r2.encode()): "staging",
    }
    fresh = _leftover(registry, f".sheaf/blobs/{never}#3", b"a push running right now", age=None)
    orphan = _leftover(registry, f".sheaf/blobs/{'e' * 64}", b"uploaded by a push killed before its manifest")
    untouchable = [
        _leftover(registry, ".sheaf/locks/o/old.lock", b""),  # lock files: never
        _leftover(registry, ".sheaf/blobs/NOTES.txt", b"not a blob"),  # unknown names: never
        _leftover(registry, "outside/file#1", b"not in .sheaf"),  # outside .sheaf: never
        _leftover(registry, "stray.tmp", b"not in .sheaf"),
    ]
    # A quilt3-style manifest may point anywhere, even into .sheaf/tmp: that file is referenced.
    used = _leftover(registry, ".sheaf/tmp/referenced-by-a-manifest", b"quilt3 data")
    hand = write_manifest(
        registry,
        {"version": "v0", "message": "hand-made"},
        [
            {
                "logical_key": "odd.txt",
                "physical_keys": [file_url(registry / ".sheaf" / "tmp" / "referenced-by-a-manifest")],
                "size": 11,
                "hash": {"type": "sha2-256-chunked", "value": chunked_hash(b"quilt3 data")},
                "meta": {},
            }
        ],
        name="q/hand",
    )
    return {
        "r1": r1,
        "r2": r2,
        "gone": gone,
        "hand": hand,
        "garbage": garbage,
        "fresh": fresh,
        "orphan": orphan,
        "untouchable": untouchable,
        "used": used,
        "src1": src1,
        "src2": src2,
        "src3": src3,
    }


def _check_every_revision(sheaf, m, tmp_path, tag):
    """Every revision (pointed to or not) still installs and verifies."""
    for top, files in (
        (m["r1"], FILES_1),
        (m["r2"], FILES_2),
        (m["gone"], {"only-in-deleted.txt": b"deleted package data"}),
        (m["hand"], {"odd.txt": b"quilt3 data"}),
    ):
        pkg = "d/gone" if top == m["gone"] else ("q/hand" if top == m["hand"] else "o/p")
        dest = tmp_path / f"{tag}-{top[:8]}"
        sheaf.json("install", f"{pkg}@{top}", "--dest", dest)
        assert read_tree(dest) == files, pkg
        assert sheaf.json("verify", f"{pkg}@{top}", "--dir", dest)["ok"] is True


def test_dry_run_lists_the_leftovers_and_removes_nothing(sheaf, registry, messy):
    before = _snapshot(registry)
    report = sheaf.json("gc")
    assert _snapshot(registry) == before, "a dry run changed the registry"
    assert report["dry_run"] is True and report["unreferenced"] is False
    assert report["older_than_secs"] == HOUR
    assert report["manifests"] == 4
    actions = _actions(report)
    assert {p: a for p, a in actions.items() if a == "would_remove"} == {p: "would_remove" for p in messy["garbage"]}
    assert actions[messy["fresh"]] == "kept"
    assert actions[messy["used"]] == "kept"
    assert set(actions) == set(messy["garbage"]) | {messy["fresh"], messy["used"]}, actions
    by_path = {lo["path"]: lo for lo in report["leftovers"]}
    for path, kind in messy["garbage"].items():
        lo = by_path[path]
        assert lo["kind"] == kind and lo["why"]
        assert lo["size"] == (registry / path).stat().st_size
        assert OLD - 60 <= lo["age_secs"] <= OLD + 600
    assert "younger than 1h" in by_path[messy["fresh"]]["detail"]
    assert "referenced by a manifest" in by_path[messy["used"]]["detail"]
    assert report["garbage_files"] == len(messy["garbage"])
    assert report["garbage_bytes"] == sum((registry / p).stat().st_size for p in messy["garbage"])
    assert report["removed_files"] == 0 and report["failed_files"] == 0 and report["kept_files"] == 2

    # The human form names every path, its size and why, and says nothing was removed.
    r = sheaf.ok("gc")
    for path in messy["garbage"]:
        assert path in r.stdout
    assert "dry run" in r.stdout and "nothing was removed" in r.stdout and "--delete" in r.stdout
    assert "partial upload" in r.stdout and "kept" in r.stdout
    assert _snapshot(registry) == before

    # --unreferenced adds the orphan blob, and only it.
    report = sheaf.json("gc", "--unreferenced")
    added = {p for p, a in _actions(report).items() if a == "would_remove"} - set(messy["garbage"])
    assert added == {messy["orphan"]}
    assert _snapshot(registry) == before


def test_delete_removes_exactly_the_garbage_and_every_revision_survives(sheaf, registry, messy, tmp_path, quilt3):
    before = _snapshot(registry)
    report = sheaf.json("gc", "--delete")
    assert report["dry_run"] is False and report["failed_files"] == 0
    assert {p for p, a in _actions(report).items() if a == "removed"} == set(messy["garbage"])
    assert report["removed_files"] == len(messy["garbage"])
    assert report["removed_bytes"] == sum(len(before[p][0]) for p in messy["garbage"])
    after = _snapshot(registry)
    assert after == {p: v for p, v in before.items() if p not in messy["garbage"]}
    for keep in [messy["fresh"], messy["orphan"], messy["used"], *messy["untouchable"]]:
        assert keep in after, keep
    _check_every_revision(sheaf, messy, tmp_path, "after-gc")

    # Now the unreferenced blob; every blob of every revision (of deleted
    # packages too) stays.
    report = sheaf.json("gc", "--delete", "--unreferenced")
    assert {p for p, a in _actions(report).items() if a == "removed"} == {messy["orphan"]}
    assert _snapshot(registry) == {p: v for p, v in after.items() if p != messy["orphan"]}
    _check_every_revision(sheaf, messy, tmp_path, "after-unreferenced")
    assert sheaf.json("log", "o/p")[0]["top_hash"] == messy["r2"]

    # Nothing left to do; the fresh leftover is still kept.
    again = sheaf.json("gc", "--delete", "--unreferenced")
    assert again["garbage_files"] == 0 and _actions(again)[messy["fresh"]] == "kept"
    r = sheaf.ok("gc")
    assert "no leftovers older than 1h" in r.stdout

    # quilt3 still reads and installs the registry.
    url = file_url(registry)
    assert quilt3.Package.browse("o/p", registry=url).top_hash == messy["r2"]
    assert quilt3.Package.browse("o/p", registry=url, top_hash=messy["r1"]).top_hash == messy["r1"]
    qdest = tmp_path / "quilt3"
    quilt3.Package.install("o/p", registry=url, dest=str(qdest), top_hash=messy["r1"])
    assert read_tree(qdest) == FILES_1


def test_the_grace_period_is_a_flag(sheaf, registry, messy):
    longer = sheaf.json("gc", "--older-than", "4h")
    assert longer["garbage_files"] == 0 and longer["older_than_secs"] == 4 * HOUR
    everything = sheaf.json("gc", "--older-than", "0s")
    assert _actions(everything)[messy["fresh"]] == "would_remove"
    for bad in ("soon", "-1h", "1 parsec"):
        r = sheaf("gc", "--older-than", bad)
        assert r.returncode == 2, describe(r)


def test_an_unreadable_manifest_stops_gc_before_it_removes_anything(sheaf, registry, messy):
    bad = registry / ".quilt" / "packages" / ("0" * 64)
    bad.write_text('{"version": "v0"}\n{"logical_key": "x", "physical_keys": [truncated\n')
    before = _snapshot(registry)
    r = sheaf("gc", "--delete")
    assert_exit(r, 2, "0" * 64)
    assert _snapshot(registry) == before
    r = sheaf("gc", "--delete", json_out=True)
    assert r.returncode == 2 and json.loads(r.stderr)["error"]["kind"] == "bad_manifest", describe(r)


def test_symlinks_in_the_staging_area_are_not_followed_nor_removed(sheaf, registry, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data#1").write_bytes(b"precious")
    _age(outside / "data#1", OLD)
    tmp = registry / ".sheaf" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / "link").symlink_to(outside / "data#1")
    (tmp / "dirlink").symlink_to(outside)
    (registry / ".sheaf" / "blobs").mkdir()
    (registry / ".sheaf" / "blobs" / "x#1").symlink_to(outside / "data#1")
    report = sheaf.json("gc", "--delete", "--older-than", "0s", "--unreferenced")
    assert report["removed_files"] == 0 and report["failed_files"] == 0
    assert all(lo["action"] == "kept" and "symbolic link" in lo["detail"] for lo in report["leftovers"]), report
    assert (outside / "data#1").read_bytes() == b"precious"
    assert (tmp / "link").is_symlink() and (tmp / "dirlink").is_symlink()


def _undeletable(path: Path):
    """Makes `path` impossible to remove; returns a function undoing it."""
    if os.geteuid() != 0:
        path.parent.chmod(0o555)
        return lambda: path.parent.chmod(0o755)
    chattr = shutil.which("chattr")
    if not chattr:
        pytest.skip("running as root without chattr: no way to make a file undeletable")
    r = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"running as root and chattr +i is not supported here: {r.stderr.strip()}")
    return lambda: subprocess.run([chattr, "-i", str(path)], check=True)


def test_a_failed_removal_is_named_and_the_rest_are_removed(sheaf, registry):
    stuck = _leftover(registry, ".sheaf/tmp/stuck/1-1", b"cannot go")
    others = [
        _leftover(registry, ".sheaf/tmp/2-2", b"goes"),
        _leftover(registry, f".sheaf/blobs/{'7' * 64}#1", b"goes"),
    ]
    undo = _undeletable(registry / stuck)
    try:
        r = sheaf("gc", "--delete", json_out=True)
        assert r.returncode == 1, describe(r)
        report = json.loads(r.stdout)
        actions = _actions(report)
        assert actions == {stuck: "failed", **{p: "removed" for p in others}}
        failed = next(lo for lo in report["leftovers"] if lo["action"] == "failed")
        assert "stuck/1-1" in failed["detail"]
        assert report["failed_files"] == 1 and report["removed_files"] == 2

        human = sheaf("gc", "--delete")
        assert_exit(human, 1, "stuck/1-1")
        assert "FAILED" in human.stdout and "could not be removed" in human.stdout
    finally:
        undo()
    assert (registry / stuck).exists()
    assert not any((registry / p).exists() for p in others)
    assert sheaf.json("gc", "--delete")["removed_files"] == 1


def test_gc_during_a_push_does_not_hurt_it(sheaf, registry, tmp_path):
    """A push uploading a large file in parts (a `#N` staging file growing on
    disk) while gc --delete runs over and over with the default grace period."""
    src = tmp_path / "src"
    write_tree(src, {"big.bin": big_bytes(96 * MIB, seed=11), "small.txt": b"small"})
    results = {}

    def push():
        results["push"] = sheaf("push", "o/busy", src, json_out=True, timeout=300)

    t = threading.Thread(target=push)
    t.start()
    runs = 0
    while t.is_alive() or runs == 0:
        report = sheaf.json("gc", "--delete", "--unreferenced")
        assert report["removed_files"] == 0 and report["failed_files"] == 0, report
        runs += 1
    t.join()
    assert results["push"].returncode == 0, describe(results["push"])
    top = json.loads(results["push"].stdout)["top_hash"]
    dest = tmp_path / "dest"
    sheaf.json("install", f"o/busy@{top}", "--dest", dest)
    assert sheaf.json("verify", f"o/busy@{top}", "--dir", dest)["ok"] is True


def test_a_killed_push_leaves_only_complete_blobs_and_what_gc_removes(sheaf, registry, tmp_path):
    """A local push hashes each file while writing it to `.sheaf/tmp/` and links
    it into `.sheaf/blobs/` when complete. Killed at any moment, it leaves
    complete blobs (named by their content's hash) and staging files that
    `sheaf gc` removes; the next push goes through."""
    src = tmp_path / "src"
    files = {f"part{i}/f{i}.bin": big_bytes(12 * MIB + 4097 * i, seed=40 + i) for i in range(6)}
    files.update({f"small/s{i}.txt": f"small {i}".encode() for i in range(50)})
    write_tree(src, files)
    start = time.monotonic()
    sheaf("push", "o/warm", src, json_out=True, timeout=300)
    push_time = time.monotonic() - start
    shutil.rmtree(registry)
    registry.mkdir()
    for i, delay in enumerate([0.0, 0.05, 0.15, 0.3, 0.6, 0.9]):
        proc = subprocess.Popen(
            [str(SHEAF_BIN), "--registry", str(registry), "push", "o/killed", str(src)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=base_env(),
        )
        time.sleep(delay * push_time)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        for p in sorted((registry / ".sheaf").rglob("*")) if (registry / ".sheaf").exists() else []:
            rel = p.relative_to(registry).as_posix()
            if p.is_dir() or rel.startswith((".sheaf/tmp/", ".sheaf/locks/")):
                continue
            assert rel.startswith(".sheaf/blobs/") and "#" not in p.name, rel
            assert blob_path(registry, chunked_hash(p.read_bytes())) == p, f"{rel} is not complete"
        report = sheaf.json("gc", "--older-than", "0s", "--delete")
        assert {lo["kind"] for lo in report["leftovers"]} <= {"staging"}, report
        assert report["failed_files"] == 0, report
        tmp = registry / ".sheaf" / "tmp"
        assert not (tmp.exists() and any(tmp.iterdir())), f"kill {i}: gc left {list(tmp.iterdir())}"
    r = sheaf("push", "o/killed", src, json_out=True, timeout=300)
    assert r.returncode == 0, describe(r)
    top = json.loads(r.stdout)["top_hash"]
    dest = tmp_path / "dest"
    sheaf.json("install", f"o/killed@{top}", "--dest", dest)
    assert read_tree(dest) == files
    assert not list((registry / ".sheaf" / "tmp").iterdir())


# ---------------------------------------------------------------------------
# S3 (moto): the same through object-store listings and deletes. Objects there
# cannot be back-dated, so the grace period is tested with --older-than 0s.
# ---------------------------------------------------------------------------

S3_PREFIX = "gc/prefix"
S3_REGISTRY = f"s3://{BUCKET}/{S3_PREFIX}"


def _keys(client, prefix=""):
    keys = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return keys


@pytest.fixture
def s3_bucket_left_clean(moto):
    """The moto bucket is shared by the whole session (test_s3.py checks its
    whole listing): remove what the gc test wrote, whatever the outcome."""
    yield moto
    client = moto["client"]
    for prefix in (S3_PREFIX + "/", "elsewhere/"):
        for key in _keys(client, prefix):
            client.delete_object(Bucket=BUCKET, Key=key)


def test_gc_on_an_s3_registry(s3_bucket_left_clean, tmp_path):
    moto = s3_bucket_left_clean
    s3 = Sheaf(S3_REGISTRY, moto["env"])
    client = moto["client"]
    src1, src2 = tmp_path / "r1", tmp_path / "r2"
    write_tree(src1, {"a.txt": b"s3 one", "same.txt": b"same"})
    write_tree(src2, {"a.txt": b"s3 two", "same.txt": b"same"})
    r1 = s3.push("s3/gc", src1)["top_hash"]
    r2 = s3.push("s3/gc", src2)["top_hash"]

    p = S3_PREFIX + "/"
    garbage = {
        f".sheaf/blobs/{_hex(b's3 one')}#1": b"partial",  # e.g. a local registry copied to S3
        f".sheaf/blobs/{'9' * 64}#2": b"partial too",
        ".sheaf/tmp/77-1": r1.encode(),
    }
    orphan = f".sheaf/blobs/{'c' * 64}"
    for rel, data in {**garbage, orphan: b"orphan"}.items():
        client.put_object(Bucket=BUCKET, Key=p + rel, Body=data)
    # Not Sheaf's garbage: outside .sheaf/ in the registry, and outside the registry's prefix.
    client.put_object(Bucket=BUCKET, Key=p + "other/thing#1", Body=b"x")
    client.put_object(Bucket=BUCKET, Key="elsewhere/.sheaf/tmp/1-1", Body=b"x")
    before = _keys(client)

    # Just written: the default grace period keeps everything.
    young = s3.json("gc", "--delete", "--unreferenced")
    assert young["garbage_files"] == 0 and young["removed_files"] == 0
    assert set(_actions(young)) == set(garbage) | {orphan} and set(_actions(young).values()) == {"kept"}
    assert _keys(client) == before

    dry = s3.json("gc", "--older-than", "0s")
    assert dry["registry"] == S3_REGISTRY and dry["manifests"] == 2
    assert _actions(dry) == {rel: "would_remove" for rel in garbage}
    assert {lo["path"]: lo["size"] for lo in dry["leftovers"]} == {rel: len(d) for rel, d in garbage.items()}
    assert _keys(client) == before

    done = s3.json("gc", "--delete", "--older-than", "0s")
    assert _actions(done) == {rel: "removed" for rel in garbage} and done["failed_files"] == 0
    assert _keys(client) == {k: v for k, v in before.items() if k not in {p + rel for rel in garbage}}

    done = s3.json("gc", "--delete", "--older-than", "0s", "--unreferenced")
    assert _actions(done) == {orphan: "removed"}
    after = _keys(client)
    assert p + orphan not in after and p + "other/thing#1" in after and "elsewhere/.sheaf/tmp/1-1" in after

    for top, files in (
        (r1, {"a.txt": b"s3 one", "same.txt": b"same"}),
        (r2, {"a.txt": b"s3 two", "same.txt": b"same"}),
    ):
        dest = tmp_path / f"dest-{top[:8]}"
        s3.json("install", f"s3/gc@{top}", "--dest", dest)
        assert read_tree(dest) == files
        assert s3.json("verify", f"s3/gc@{top}", "--dir", dest)["ok"] is True

    # quilt3 (through boto3, pointed at moto) still reads both revisions.
    code = (
        "import json, quilt3\n"
        f"reg = 's3://{BUCKET}/{S3_PREFIX}'\n"
        "print(json.dumps([quilt3.Package.browse('s3/gc', registry=reg).top_hash,\n"
        f"                  quilt3.Package.browse('s3/gc', registry=reg, top_hash='{r1}').top_hash]))\n"
    )
    env = {**base_env(), **QUILT_ENV, **moto["env"], "AWS_DEFAULT_REGION": "us-east-1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, describe(r)
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [r2, r1]
