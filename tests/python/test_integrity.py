"""Integrity under failure and attack: crashes mid-push, concurrent writers,
hostile manifests, symlinks in the install folder, corrupted blobs, and
`verify` catching local changes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from sheaf_testlib import (
    BIG_KEY,
    HEX64,
    MIB,
    SHEAF_BIN,
    assert_exit,
    base_env,
    big_bytes,
    blob_path,
    chunked_hash,
    describe,
    read_tree,
    top_hash_of,
    write_manifest,
    write_tree,
)

# ---------------------------------------------------------------------------
# registry invariants
# ---------------------------------------------------------------------------

_verified_blobs: set[tuple[str, str]] = set()


def check_registry(registry: Path, *, hash_blobs: bool = True) -> dict:
    """Asserts what must hold in a local registry whatever happened to the
    writers: everything under `.quilt/` (which quilt3 reads and lists) is a
    complete manifest named by its top hash or a pointer naming an existing
    manifest; every entry's data exists with the recorded size (and, for blobs,
    hash). Returns some counts."""
    problems = []
    mdir = registry / ".quilt" / "packages"
    manifests = {}
    for p in sorted(mdir.iterdir()) if mdir.exists() else []:
        if not HEX64.match(p.name):
            problems.append(f"stray file in .quilt/packages (quilt3 would list it as a manifest): {p.name}")
            continue
        try:
            lines = [json.loads(ln) for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            problems.append(f"manifest {p.name} does not parse: {e}")
            continue
        if not lines or "logical_key" in lines[0]:
            problems.append(f"manifest {p.name} has no header")
            continue
        entries = [rec for rec in lines[1:] if "physical_keys" in rec]
        if top_hash_of(lines[0], entries) != p.name:
            problems.append(f"manifest {p.name} content hashes to {top_hash_of(lines[0], entries)}")
        manifests[p.name] = entries
        for e in entries:
            url = e["physical_keys"][0]
            assert url.startswith("file://"), url
            data_path = Path(unquote(urlparse(url).path))
            if not data_path.is_file():
                problems.append(f"manifest {p.name}: {e['logical_key']} -> missing {data_path}")
            elif data_path.stat().st_size != e["size"]:
                problems.append(
                    f"manifest {p.name}: {e['logical_key']} -> {data_path} has size "
                    f"{data_path.stat().st_size}, expected {e['size']}"
                )
            elif hash_blobs and (str(data_path), e["hash"]["value"]) not in _verified_blobs:
                if chunked_hash(data_path.read_bytes()) != e["hash"]["value"]:
                    problems.append(f"manifest {p.name}: {e['logical_key']} -> {data_path} has the wrong hash")
                else:
                    _verified_blobs.add((str(data_path), e["hash"]["value"]))
    pointers = 0
    for pointer_root in [registry / ".quilt" / "named_packages", registry / ".sheaf" / "tags"]:
        if not pointer_root.exists():
            continue
        for p in sorted(pointer_root.rglob("*")):
            if p.is_dir():
                continue
            rel = p.relative_to(registry)
            if pointer_root.name == "named_packages" and not (p.name == "latest" or p.name.isdigit()):
                problems.append(f"stray file among pointers (quilt3 lists every file there): {rel}")
                continue
            value = p.read_text()
            if not HEX64.match(value.strip()):
                problems.append(f"pointer {rel} holds {value!r}")
            elif value.strip() not in manifests:
                problems.append(f"pointer {rel} names missing manifest {value.strip()}")
            pointers += 1
    assert not problems, "registry invariants broken:\n" + "\n".join(problems)
    staging = (
        [p.name for p in (registry / ".sheaf" / "blobs").glob("*#*")]
        if (registry / ".sheaf" / "blobs").exists()
        else []
    )
    return {"manifests": len(manifests), "pointers": pointers, "staging_leftovers": staging}


# ---------------------------------------------------------------------------
# crash consistency
# ---------------------------------------------------------------------------

CRASH_SIZES = [5 * MIB + 1, 7 * MIB + 333, 12 * MIB, 17 * MIB + 5, 20 * MIB - 7]  # two go multipart (>16 MiB)


def _crash_tree(root: Path, iteration: int) -> None:
    """Several 5-20 MB files; every iteration changes every file so that each
    push has all of its data to upload."""
    files = {f"part{i}/file{i}.bin": big_bytes(size, seed=100 + i) for i, size in enumerate(CRASH_SIZES)}
    files["small/notes.txt"] = b"notes\n"
    if not root.exists():
        write_tree(root, files)
    stamp = f"iteration {iteration:04d}".encode()
    for key in files:
        p = root.joinpath(*key.split("/"))
        with open(p, "r+b") as f:
            f.write(stamp)


def test_sigkill_during_push_never_breaks_the_registry(sheaf, registry, tmp_path, quilt3):
    seed = int(os.environ.get("SHEAF_CRASH_SEED", "20240601"))
    rng = random.Random(seed)
    root = tmp_path / "tree"
    pkg = "crash/pkg"
    env = base_env()
    push_time = 0.4  # refined from the real pushes below
    history = []
    pushed = []
    for iteration in range(8):
        _crash_tree(root, iteration)
        delay = rng.uniform(0.0, push_time * 1.2)
        proc = subprocess.Popen(
            [str(SHEAF_BIN), "--registry", str(registry), "push", pkg, str(root), "-m", f"killed {iteration}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        history.append(f"iteration {iteration}: SIGKILL after {delay:.3f}s (exit {proc.returncode})")
        try:
            info = check_registry(registry)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}\n" + "\n".join(history) + f"\n{e}") from None

        start = time.monotonic()
        r = sheaf("push", pkg, root, "-m", f"normal {iteration}", json_out=True)
        push_time = max(0.05, time.monotonic() - start)
        assert r.returncode == 0, "\n".join(history) + "\n" + describe(r)
        report = json.loads(r.stdout)
        pushed.append(report["top_hash"])
        assert sheaf.json("browse", pkg)["top_hash"] == report["top_hash"]
        check_registry(registry)

    # Killed uploads may leave staging files (`<blob>#N`) in .sheaf/blobs: hidden
    # from every reader, so only reported.
    if info["staging_leftovers"]:
        print(f"{len(info['staging_leftovers'])} staging leftovers in .sheaf/blobs after the kills")
    log = {r["top_hash"] for r in sheaf.json("log", pkg)}
    assert set(pushed) <= log
    dest = tmp_path / "dest"
    sheaf.json("install", pkg, "--dest", dest)
    assert sheaf.json("verify", pkg, "--dir", dest)["ok"] is True
    # quilt3 reads what the kills left behind as well.
    assert quilt3.Package.browse(pkg, registry=registry.as_uri()).top_hash == pushed[-1]


# ---------------------------------------------------------------------------
# concurrent writers
# ---------------------------------------------------------------------------


def test_concurrent_pushes_to_one_package(sheaf, registry, tmp_path):
    pkg = "race/pkg"
    for round_no in range(5):
        roots = []
        for side in "ab":
            root = tmp_path / f"round{round_no}-{side}"
            write_tree(
                root,
                {
                    "who.txt": f"{side}{round_no}".encode(),
                    "common/shared.bin": big_bytes(2 * MIB, seed=5),
                    f"only-{side}.txt": side.encode(),
                },
            )
            roots.append(root)
        procs = [
            subprocess.Popen(
                [
                    str(SHEAF_BIN),
                    "--registry",
                    str(registry),
                    "--json",
                    "push",
                    pkg,
                    str(r),
                    "-m",
                    f"round {round_no} {r.name}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=base_env(),
            )
            for r in roots
        ]
        outs = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
        for out, err, code in outs:
            assert code == 0, f"round {round_no}: exit {code}\nstdout:{out}\nstderr:{err}"
        hashes = {json.loads(out)["top_hash"] for out, _, _ in outs}
        assert len(hashes) == 2
        log = sheaf.json("log", pkg)
        logged = [r["top_hash"] for r in log]
        assert hashes <= set(logged), f"round {round_no}: {hashes - set(logged)} missing from the log"
        assert len(logged) == len(set(logged)) == 2 * (round_no + 1)
        latest = sheaf.json("browse", pkg)["top_hash"]
        assert latest in hashes
        assert [r["top_hash"] for r in log if "latest" in r["tags"]] == [latest]
    check_registry(registry)


def test_quick_pushes_record_every_revision_in_order(sheaf, registry, tmp_path):
    """Pushes back to back (as a script makes them): each gets a timestamp pointer of its own, in order, and going
    back to an earlier revision is recorded as the newest."""
    pkg = "quick/pkg"
    trees = {}
    for name in "abc":
        trees[name] = tmp_path / name
        write_tree(trees[name], {"which.txt": name.encode()})
    order = ["a", "b", "c", "a", "a"]
    hashes = [sheaf.json("push", pkg, trees[name])["top_hash"] for name in order]
    log = sheaf.json("log", pkg)
    # The second push of a in a row changes nothing and adds no revision.
    assert [r["top_hash"] for r in log] == hashes[3::-1]
    assert "latest" in log[0]["tags"]
    stamps = [r["timestamp"] for r in log]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == 4


def test_install_into_a_fresh_folder_creates_shared_parent_folders(sheaf, tmp_path):
    """Files are installed concurrently; several of them share new parent
    folders, which must be created once without failing the install."""
    files = {f"{d}/{s}/f{i}.txt": f"{d}{s}{i}".encode() for d in "abc" for s in "xy" for i in range(4)}
    root = tmp_path / "t"
    write_tree(root, files)
    sheaf.push("o/dirs", root)
    failures = []
    for attempt in range(10):
        dest = tmp_path / f"dest{attempt}"
        r = sheaf("install", "o/dirs", "--dest", dest)
        if r.returncode != 0:
            failures.append(r.stderr.strip())
        else:
            assert read_tree(dest) == files
    assert not failures, f"{len(failures)} of 10 installs into a fresh folder failed:\n" + "\n".join(failures)


# ---------------------------------------------------------------------------
# hostile manifests
# ---------------------------------------------------------------------------


def _snapshot(root: Path, exclude: Path) -> dict[str, tuple]:
    out = {}
    for p in root.rglob("*"):
        if p == exclude or exclude in p.parents:
            continue
        st = p.lstat()
        out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize(
    "bad_key",
    ["../evil.txt", "/abs/evil.txt", "a\\b", "sub/../../evil.txt", "./evil.txt", "a//evil.txt", "sub/..", "evil.txt/"],
)
def test_install_refuses_logical_keys_that_escape_dest(sheaf, registry, tmp_path, bad_key):
    source = tmp_path / "source.txt"
    source.write_bytes(b"evil payload")
    entry = {
        "logical_key": bad_key,
        "physical_keys": [source.as_uri()],
        "size": 12,
        "hash": {"type": "sha2-256-chunked", "value": chunked_hash(b"evil payload")},
        "meta": {},
    }
    good = {
        "logical_key": "good.txt",
        "physical_keys": [source.as_uri()],
        "size": 12,
        "hash": {"type": "sha2-256-chunked", "value": chunked_hash(b"evil payload")},
        "meta": {},
    }
    top = write_manifest(registry, {"version": "v0", "message": "evil"}, [good, entry], name="evil/pkg")
    work = tmp_path / "work"
    dest = work / "dest"
    dest.mkdir(parents=True)
    before = _snapshot(tmp_path, dest)

    r = sheaf("install", "evil/pkg", "--dest", dest)
    assert_exit(r, 2, top)
    assert bad_key.replace("\\", "\\\\") in r.stderr or bad_key in r.stderr, describe(r)
    assert _snapshot(tmp_path, dest) == before, "install wrote outside dest"
    assert not Path("/abs/evil.txt").exists()
    assert list(dest.rglob("*")) == [], "a refused manifest must not install anything"

    assert_exit(sheaf("verify", "evil/pkg", "--dir", dest), 2)
    assert_exit(sheaf("browse", "evil/pkg"), 2)


def test_subpath_argument_cannot_escape(sheaf, small_tree, tmp_path):
    root, _ = small_tree
    sheaf.push("o/p", root)
    for ref in ["o/p/../../x", "o/p/a/../../..", "o/p//abs", "o/p/a\\b"]:
        assert_exit(sheaf("install", ref, "--dest", tmp_path / "d"), 2)
    assert not (tmp_path / "d").exists() or list((tmp_path / "d").iterdir()) == []


# ---------------------------------------------------------------------------
# symlinks in the install folder
# ---------------------------------------------------------------------------


def test_install_does_not_follow_a_symlinked_folder_in_dest(sheaf, small_tree, tmp_path):
    root, files = small_tree
    sheaf.push("o/p", root)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "nested").symlink_to(outside, target_is_directory=True)
    r = sheaf("install", "o/p", "--dest", dest)
    assert r.returncode != 0, describe(r)
    assert "nested" in r.stderr, describe(r)
    assert list(outside.rglob("*")) == [], "install wrote through a symlink to outside dest"
    assert (dest / "nested").is_symlink()


def test_install_does_not_write_through_a_symlinked_file_in_dest(sheaf, small_tree, tmp_path):
    """A symlink where a file goes must not be written through. (Sheaf replaces
    the link with the real file; refusing would be fine too.)"""
    root, files = small_tree
    sheaf.push("o/p", root)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "b.txt").symlink_to(victim)
    r = sheaf("install", "o/p", "--dest", dest)
    assert victim.read_bytes() == b"precious", "install wrote through a symlink to outside dest"
    if r.returncode == 0:
        assert not (dest / "b.txt").is_symlink()
        assert read_tree(dest) == files
    else:
        assert r.returncode in (1, 2), describe(r)


def test_install_does_not_follow_a_symlink_at_the_temporary_download_path(sheaf, small_tree, tmp_path):
    """Install downloads into `.<name>.sheaf-partial-<pid>` next to the target.
    That name is predictable, so a symlink planted there (by whoever can write to
    the install folder) must not be followed either."""
    root, files = small_tree
    sheaf.push("o/p", root)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    # The shell plants the link using its own pid, then execs sheaf, which keeps that pid.
    script = (
        'ln -s "$VICTIM" "$DEST/.b.txt.sheaf-partial-$$" && exec "$SHEAF" --registry "$REG" install o/p --dest "$DEST"'
    )
    env = {**base_env(), "VICTIM": str(victim), "DEST": str(dest), "SHEAF": str(SHEAF_BIN), "REG": sheaf.registry}
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert victim.read_bytes() == b"precious", (
        "install followed a symlink planted at its temporary download path and overwrote a file outside dest\n"
        + describe(r)
    )
    if r.returncode == 0:
        assert not (dest / "b.txt").is_symlink(), "b.txt was installed as a symlink to outside dest"
        assert (dest / "b.txt").read_bytes() == files["b.txt"]


# ---------------------------------------------------------------------------
# corrupted data
# ---------------------------------------------------------------------------


def _flip_byte(path: Path, offset: int) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def _partials(dest: Path) -> list[str]:
    return [str(p.relative_to(dest)) for p in dest.rglob("*") if "sheaf-partial" in p.name]


@pytest.mark.parametrize("victim", [BIG_KEY, "ünïcödé/naïve café.txt"])
def test_corrupted_blob_fails_install_and_leaves_no_partial_file(sheaf, registry, tree, tmp_path, victim):
    root, files = tree
    push = sheaf.push("o/p", root)
    entry = next(e for e in sheaf.json("browse", "o/p")["entries"] if e["logical_key"] == victim)
    blob = blob_path(registry, entry["hash"]["value"])
    assert blob.is_file()
    _flip_byte(blob, len(files[victim]) // 2)

    dest = tmp_path / "dest"
    r = sheaf("install", "o/p", "--dest", dest)
    assert_exit(r, 4, victim)
    assert not dest.joinpath(*victim.split("/")).exists(), "the corrupted file was installed"
    assert _partials(dest) == [], "partial downloads left behind"
    # Anything that was installed is complete and correct.
    for key, data in read_tree(dest).items():
        assert data == files[key], key

    # verify of a healthy copy still passes; the registry's manifest is fine.
    good = tmp_path / "good"
    write_tree(good, files)
    assert sheaf.json("verify", f"o/p@{push['top_hash']}", "--dir", good)["ok"] is True


def test_corrupted_blob_while_other_downloads_are_in_flight_leaves_no_partial_files(sheaf, registry, tmp_path):
    """The corrupted entry fails fast while large files are still downloading;
    none of their temporary files may stay behind."""
    files = {f"big{i}.bin": big_bytes(24 * MIB + i, seed=40 + i) for i in range(3)}
    files["zz-small.txt"] = b"small and corrupt"
    root = tmp_path / "t"
    write_tree(root, files)
    sheaf.push("o/inflight", root)
    entry = next(e for e in sheaf.json("browse", "o/inflight")["entries"] if e["logical_key"] == "zz-small.txt")
    _flip_byte(blob_path(registry, entry["hash"]["value"]), 0)
    dest = tmp_path / "dest"
    r = sheaf("install", "o/inflight", "--dest", dest)
    assert_exit(r, 4, "zz-small.txt")
    assert _partials(dest) == [], "partial downloads left behind"
    for key, data in read_tree(dest).items():
        assert data == files[key], key


def test_truncated_blob_is_an_integrity_error(sheaf, registry, small_tree, tmp_path):
    root, files = small_tree
    sheaf.push("o/p", root)
    entry = next(e for e in sheaf.json("browse", "o/p")["entries"] if e["logical_key"] == "nested/sibling.csv")
    blob = blob_path(registry, entry["hash"]["value"])
    os.chmod(blob, 0o644)
    blob.write_bytes(files["nested/sibling.csv"][:-1])
    r = sheaf("install", "o/p", "--dest", tmp_path / "dest")
    assert_exit(r, 4, "nested/sibling.csv")


def test_push_stores_again_a_damaged_blob_it_finds(sheaf, registry, small_tree, tmp_path):
    """A blob truncated in the registry is not taken for its content by the next push holding that content: the
    push stores it again (content-addressed blobs never change size), and the new revision installs and verifies."""
    root, files = small_tree
    sheaf.push("o/p", root)
    entry = next(e for e in sheaf.json("browse", "o/p")["entries"] if e["logical_key"] == "nested/sibling.csv")
    blob = blob_path(registry, entry["hash"]["value"])
    os.chmod(blob, 0o644)
    blob.write_bytes(b"")
    (root / "new.txt").write_bytes(b"a change, so the push makes a new revision")
    report = sheaf.json("push", "o/p", root)
    assert report["uploaded_files"] >= 2, report
    assert blob.read_bytes() == files["nested/sibling.csv"]
    dest = tmp_path / "dest"
    sheaf.json("install", "o/p", "--dest", dest)
    assert (dest / "nested" / "sibling.csv").read_bytes() == files["nested/sibling.csv"]
    assert sheaf.json("verify", "o/p", "--dir", dest)["ok"] is True


def test_missing_blob_is_not_found(sheaf, registry, small_tree, tmp_path):
    root, _ = small_tree
    sheaf.push("o/p", root)
    entry = next(e for e in sheaf.json("browse", "o/p")["entries"] if e["logical_key"] == "a/b")
    blob_path(registry, entry["hash"]["value"]).unlink()
    r = sheaf("install", "o/p", "--dest", tmp_path / "dest")
    assert_exit(r, 3, "a/b")


def test_a_fifo_in_place_of_a_blob_fails_install_and_never_hangs(sheaf, registry, small_tree, tmp_path):
    """Opening a FIFO for reading waits for a writer: a registry holding one
    under a blob's name must fail the install, naming the entry, not hang."""
    root, _ = small_tree
    sheaf.push("o/p", root)
    entry = next(e for e in sheaf.json("browse", "o/p")["entries"] if e["logical_key"] == "a/b")
    blob = blob_path(registry, entry["hash"]["value"])
    blob.unlink()
    os.mkfifo(blob)
    dest = tmp_path / "dest"
    r = sheaf("install", "o/p", "--dest", dest, timeout=60)
    assert r.returncode != 0 and "a/b" in r.stderr, describe(r)
    assert not (dest / "a" / "b").exists() and _partials(dest) == []


@pytest.mark.parametrize("victim", ["a/b", BIG_KEY])
def test_install_does_not_read_a_blob_replaced_by_a_symlink(sheaf, registry, tree, tmp_path, victim):
    """A registry is a folder anyone may have copied or untarred: a blob that
    is a symlink is refused, even when the file it points at holds exactly the
    right bytes (so a hash check alone would pass). Small entries are copied in
    one blocking step and large ones streamed; both paths refuse it."""
    root, files = tree
    sheaf.push("o/p", root)
    entry = next(e for e in sheaf.json("browse", "o/p")["entries"] if e["logical_key"] == victim)
    blob = blob_path(registry, entry["hash"]["value"])
    outside = tmp_path / "outside.bin"
    outside.write_bytes(files[victim])
    blob.unlink()
    blob.symlink_to(outside)
    dest = tmp_path / "dest"
    r = sheaf("install", "o/p", "--dest", dest)
    assert r.returncode != 0, f"install read through a symlinked blob\n{describe(r)}"
    assert "sheaf: error:" in r.stderr and victim in r.stderr, describe(r)
    assert not dest.joinpath(*victim.split("/")).exists(), "the entry was installed through the symlink"
    assert _partials(dest) == [], "partial downloads left behind"


@pytest.mark.parametrize("subpath", ["", "/nested"])
def test_a_manifest_edited_after_its_first_lines_installs_nothing(sheaf, registry, small_tree, tmp_path, subpath):
    """install streams the manifest and spools what it selects: nothing may be
    written before the whole manifest matched its top hash, even when the edit
    is on the last line, after every selected entry was read."""
    root, _ = small_tree
    top = sheaf.push("o/p", root)["top_hash"]
    manifest = registry / ".quilt" / "packages" / top
    os.chmod(manifest, 0o644)
    lines = manifest.read_text().splitlines()
    last = json.loads(lines[-1])
    last["meta"] = {"edited": True}
    lines[-1] = json.dumps(last)
    manifest.write_text("\n".join(lines) + "\n")
    dest = tmp_path / "dest"
    r = sheaf("install", f"o/p{subpath}@{top}", "--dest", dest)
    assert_exit(r, 4, top)
    assert not dest.exists() or not any(dest.rglob("*")), sorted(dest.rglob("*"))
    # browse streams too, and prints nothing of a manifest that does not match.
    for json_flag in ([], ["--json"]):
        r = sheaf(*json_flag, "browse", f"o/p@{top}", *([subpath.strip("/")] if subpath else []))
        assert_exit(r, 4, top)
        assert r.stdout == "", describe(r)


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------


def test_verify_reports_modified_missing_and_extra_files(sheaf, tree, tmp_path):
    root, files = tree
    sheaf.push("o/p", root)
    dest = tmp_path / "dest"
    sheaf.json("install", "o/p", "--dest", dest)
    assert sheaf.json("verify", "o/p", "--dir", dest) == {
        "top_hash": sheaf.json("browse", "o/p")["top_hash"],
        "checked": len(files),
        "missing": [],
        "modified": [],
        "extra": [],
        "unverifiable": [],
        "ok": True,
    }

    # Same size, one byte different, deep inside the big file's second chunk.
    _flip_byte(dest / "data" / "large.bin", 9 * MIB)
    r = sheaf("verify", "o/p", "--dir", dest, json_out=True)
    assert r.returncode == 4, describe(r)
    report = json.loads(r.stdout)
    assert report["modified"] == [BIG_KEY] and report["ok"] is False
    human = sheaf("verify", "o/p", "--dir", dest)
    assert human.returncode == 4 and BIG_KEY in human.stdout, describe(human)

    sheaf.json("install", "o/p", "--dest", dest)  # repair
    (dest / "empty.bin").unlink()
    report = json.loads(sheaf("verify", "o/p", "--dir", dest, json_out=True).stdout)
    assert report["missing"] == ["empty.bin"] and report["ok"] is False

    sheaf.json("install", "o/p", "--dest", dest)
    (dest / "nested" / "stray.txt").write_bytes(b"not in the package")
    r = sheaf("verify", "o/p", "--dir", dest, json_out=True)
    assert r.returncode == 4, describe(r)
    assert json.loads(r.stdout)["extra"] == ["nested/stray.txt"]
    ok = sheaf.json("verify", "o/p", "--dir", dest, "--extra-files-ok")
    assert ok["ok"] is True and ok["extra"] == ["nested/stray.txt"]

    # Still, --extra-files-ok does not excuse a modification.
    (dest / "b.txt").write_bytes(b"B dot txt\n")
    r = sheaf("verify", "o/p", "--dir", dest, "--extra-files-ok", json_out=True)
    assert r.returncode == 4 and json.loads(r.stdout)["modified"] == ["b.txt"], describe(r)


def test_verify_of_a_missing_directory_is_not_found(sheaf, small_tree, tmp_path):
    root, _ = small_tree
    sheaf.push("o/p", root)
    assert_exit(sheaf("verify", "o/p", "--dir", tmp_path / "nope"), 3, "nope")
