"""The sheaf command line: references (hash prefixes, tags), tag, delete, diff,
sub-path installs, --json output, exit codes and error messages, hash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from sheaf_testlib import (
    BIG_KEY,
    HEX64,
    MIB,
    Sheaf,
    assert_exit,
    big_bytes,
    blob_path,
    canonical,
    chunked_hash,
    describe,
    read_tree,
    write_manifest,
    write_tree,
)

HELLO = b"Hello, World!"
HELLO_CHUNKED = "BCp9ZKWB7y7pg/IQWIAcw1ZjtwXmxV9i+o4PGOzHCYk="
EMPTY_CHUNKED = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


@pytest.fixture
def two_revisions(sheaf, tmp_path):
    """o/p with two revisions: r1 (a, b, c) then r2 (a changed, c removed, d added)."""
    root = tmp_path / "t"
    write_tree(root, {"a.txt": b"a1", "b/b.txt": b"b", "c.txt": b"c"})
    r1 = sheaf.push("o/p", root, "-m", "first")["top_hash"]
    (root / "a.txt").write_bytes(b"a2")
    (root / "c.txt").unlink()
    write_tree(root, {"d/d.txt": b"d"})
    r2 = sheaf.push("o/p", root, "-m", "second")["top_hash"]
    assert r1 != r2
    return r1, r2


# ---------------------------------------------------------------------------
# hash prefixes
# ---------------------------------------------------------------------------


def _prefix_not_matching(*hashes: str) -> str:
    for candidate in ("000000", "ffffff", "abcdef", "123456"):
        if not any(h.startswith(candidate) for h in hashes):
            return candidate
    raise AssertionError("unreachable")


def test_hash_prefixes_resolve(sheaf, two_revisions):
    r1, r2 = two_revisions
    for ref in (r1[:6], r1[:7], r1[:20], r1, r1[:10].upper()):
        assert sheaf.json("browse", f"o/p@{ref}")["top_hash"] == r1, ref
    assert sheaf.json("browse", f"o/p@{r2[:6]}")["top_hash"] == r2
    assert sheaf.json("browse", "o/p")["top_hash"] == r2
    assert sheaf.json("browse", "o/p:latest")["top_hash"] == r2


@pytest.mark.parametrize("bad", ["", "a", "abcde", "g00000", "zzzzzz", "a" * 65, "12345-"])
def test_malformed_hash_prefix_is_invalid(sheaf, two_revisions, bad):
    assert_exit(sheaf("browse", f"o/p@{bad}"), 2)


def test_unknown_hash_prefix_is_not_found(sheaf, two_revisions):
    r1, r2 = two_revisions
    prefix = _prefix_not_matching(r1, r2)
    assert_exit(sheaf("browse", f"o/p@{prefix}"), 3, prefix, "o/p")
    full = prefix + "0" * 58
    assert_exit(sheaf("browse", f"o/p@{full}"), 3, full)
    assert_exit(sheaf("install", f"o/p@{prefix}", "--dest", "unused-dest"), 3, prefix)


def _colliding_messages(length: int = 7) -> tuple[str, str, str]:
    """Two commit messages whose header-only manifests (an empty folder pushed
    with -m MESSAGE) have top hashes sharing their first `length` hex digits."""
    seen: dict[str, str] = {}
    i = 0
    while True:
        message = f"m{i}"
        top = hashlib.sha256(canonical({"version": "v0", "message": message})).hexdigest()
        if top[:length] in seen:
            return seen[top[:length]], message, top[:length]
        seen[top[:length]] = message
        i += 1


def test_ambiguous_hash_prefix_lists_the_candidates(sheaf, tmp_path):
    m1, m2, shared = _colliding_messages()
    empty = tmp_path / "empty"
    empty.mkdir()
    h1 = sheaf.push("o/amb", empty, "-m", m1)["top_hash"]
    h2 = sheaf.push("o/amb", empty, "-m", m2)["top_hash"]
    assert h1[:7] == h2[:7] == shared and h1 != h2

    for prefix in (shared[:6], shared):
        r = sheaf("browse", f"o/amb@{prefix}")
        assert_exit(r, 2, prefix, h1, h2)
        r = sheaf("browse", f"o/amb@{prefix}", json_out=True)
        assert r.returncode == 2
        err = json.loads(r.stderr)["error"]
        assert err["kind"] == "ambiguous" and h1 in err["message"] and h2 in err["message"]
    # One more digit (where they differ) settles it.
    n = next(i for i in range(64) if h1[i] != h2[i]) + 1
    assert sheaf.json("browse", f"o/amb@{h1[:n]}")["top_hash"] == h1
    assert sheaf.json("browse", f"o/amb@{h2[:n]}")["top_hash"] == h2


def test_prefix_prefers_the_packages_own_revisions(sheaf, tmp_path):
    m1, m2, shared = _colliding_messages()
    empty = tmp_path / "empty"
    empty.mkdir()
    h1 = sheaf.push("o/one", empty, "-m", m1)["top_hash"]
    h2 = sheaf.push("o/two", empty, "-m", m2)["top_hash"]
    assert sheaf.json("browse", f"o/one@{shared}")["top_hash"] == h1
    assert sheaf.json("browse", f"o/two@{shared}")["top_hash"] == h2


# ---------------------------------------------------------------------------
# tags
# ---------------------------------------------------------------------------


def test_tags(sheaf, registry, two_revisions):
    r1, r2 = two_revisions
    out = sheaf.json("tag", f"o/p@{r1[:8]}", "v1")
    assert out == {"package": "o/p", "tag": "v1", "top_hash": r1}
    assert (registry / ".sheaf" / "tags" / "o" / "p" / "v1").read_text().strip() == r1
    assert sheaf.json("browse", "o/p:v1")["top_hash"] == r1
    assert sheaf.json("install", "o/p:v1", "--dest", registry.parent / "v1")["top_hash"] == r1

    # Same target again: fine. Elsewhere: a conflict naming the tag.
    sheaf.json("tag", f"o/p@{r1}", "v1")
    r = sheaf("tag", "o/p", "v1")
    assert_exit(r, 5, "v1")
    assert sheaf.json("browse", "o/p:v1")["top_hash"] == r1
    sheaf.json("tag", "o/p", "v1", "--force")
    assert sheaf.json("browse", "o/p:v1")["top_hash"] == r2

    # A tag can name a tag.
    sheaf.json("tag", "o/p:v1", "v1-copy")
    assert sheaf.json("browse", "o/p:v1-copy")["top_hash"] == r2

    log = sheaf.json("log", "o/p")
    assert log[0]["top_hash"] == r2 and set(log[0]["tags"]) == {"latest", "v1", "v1-copy"}
    assert log[1]["tags"] == []


def test_latest_and_malformed_tags_are_refused(sheaf, two_revisions):
    r1, _ = two_revisions
    assert_exit(sheaf("tag", f"o/p@{r1}", "latest"), 2, "latest")
    assert_exit(sheaf("tag", f"o/p@{r1}", "latest", "--force"), 2, "latest")
    assert sheaf.json("browse", "o/p:latest")["top_hash"] != r1
    for bad in (".hidden", "a/b", "sp ace", "", "ü"):
        assert_exit(sheaf("tag", f"o/p@{r1}", bad), 2)


def test_unknown_tag_is_not_found(sheaf, two_revisions):
    assert_exit(sheaf("browse", "o/p:nope"), 3, "nope")
    assert_exit(sheaf("tag", "o/p:nope", "other"), 3, "nope")


# ---------------------------------------------------------------------------
# delete
# ---------------------------------------------------------------------------


def test_delete_one_revision_moves_latest_back(sheaf, registry, two_revisions):
    r1, r2 = two_revisions
    sheaf.json("tag", f"o/p@{r2}", "doomed")
    sheaf.json("tag", f"o/p@{r1}", "kept")
    out = sheaf.json("delete", f"o/p@{r2[:8]}")
    assert out["latest"] == r1
    assert sheaf.json("browse", "o/p")["top_hash"] == r1
    assert [r["top_hash"] for r in sheaf.json("log", "o/p")] == [r1]
    assert_exit(sheaf("browse", "o/p:doomed"), 3, "doomed")
    assert sheaf.json("browse", "o/p:kept")["top_hash"] == r1
    assert (registry / ".quilt" / "packages" / r2).is_file(), "delete must keep manifests"
    assert {"name": "o/p", "latest": r1} in sheaf.json("list")


def test_delete_package_keeps_data(sheaf, registry, two_revisions, tmp_path):
    r1, r2 = two_revisions
    write_tree(tmp_path / "other", {"x.txt": b"x"})
    sheaf.push("o/other", tmp_path / "other")
    blobs = sorted(p.name for p in (registry / ".sheaf" / "blobs").iterdir())
    sheaf.json("delete", "o/p")
    names = [p["name"] for p in sheaf.json("list")]
    assert "o/p" not in names and "o/other" in names
    assert_exit(sheaf("browse", "o/p"), 3, "o/p")
    assert_exit(sheaf("log", "o/p"), 3, "o/p")
    assert sorted(p.name for p in (registry / ".sheaf" / "blobs").iterdir()) == blobs
    for h in (r1, r2):
        assert (registry / ".quilt" / "packages" / h).is_file()
    assert_exit(sheaf("delete", "o/p"), 3, "o/p")
    # Pushing again brings it back.
    sheaf.push("o/p", tmp_path / "other")
    assert "o/p" in [p["name"] for p in sheaf.json("list")]


def test_a_damaged_latest_is_mended_by_push_and_removed_by_delete(sheaf, registry, two_revisions, tmp_path):
    """A `latest` that holds no top hash (written by hand or cut short) names no revision: reads say so, naming
    the pointer; a push replaces it and a delete removes it (they no longer stop at it)."""
    r1, r2 = two_revisions
    latest = registry / ".quilt" / "named_packages" / "o" / "p" / "latest"
    latest.write_text("not a hash")
    assert_exit(sheaf("browse", "o/p"), 4, "latest")
    write_tree(tmp_path / "again", {"x.txt": b"again"})
    top = sheaf.push("o/p", tmp_path / "again")["top_hash"]
    assert latest.read_text().strip() == top
    latest.write_text("not a hash")
    sheaf.json("delete", "o/p")
    assert not latest.exists()
    assert "o/p" not in [p["name"] for p in sheaf.json("list")]


def test_a_folder_in_place_of_latest_is_named_and_nothing_is_written(sheaf, registry, two_revisions, tmp_path):
    """A folder where `latest` belongs read as "no latest": a push wrote its revision and then failed
    to move `latest` (exit 1), a delete said `latest` was gone and left the folder. Now every command
    names the folder before writing anything; `log` lists the revisions and warns."""
    r1, r2 = two_revisions
    named = registry / ".quilt" / "named_packages" / "o" / "p"
    latest = named / "latest"
    latest.unlink()
    latest.mkdir()
    (latest / "stray").write_text("x")
    stamps = sorted(p.name for p in named.iterdir())
    manifests = sorted(p.name for p in (registry / ".quilt" / "packages").iterdir())
    write_tree(tmp_path / "again", {"x.txt": b"again"})
    for args in (("push", "o/p", str(tmp_path / "again")), ("delete", "o/p"), ("browse", "o/p")):
        r = sheaf(*args)
        assert r.returncode == 4, describe(r)
        assert "named_packages/o/p/latest" in r.stderr and "a folder" in r.stderr, describe(r)
    assert sorted(p.name for p in named.iterdir()) == stamps and (latest / "stray").exists()
    assert sorted(p.name for p in (registry / ".quilt" / "packages").iterdir()) == manifests
    r = sheaf("log", "o/p")
    assert r.returncode == 0 and r1 in r.stdout and r2 in r.stdout, describe(r)
    assert "warning:" in r.stderr and "a folder" in r.stderr, describe(r)
    assert sheaf.json("browse", f"o/p@{r2}")["top_hash"] == r2


def test_damaged_timestamp_pointers_and_tags_hide_nothing_else(sheaf, registry, two_revisions, tmp_path):
    """A timestamp pointer or tag holding no top hash names no revision: `log` lists the others and warns
    naming it (it used to fail the whole log), resolution, `tag` and `delete` of one revision work, and
    `delete` of the package removes the damaged pointers too. A pointer to a manifest that is gone is left
    out of the log the same way."""
    r1, r2 = two_revisions
    named = registry / ".quilt" / "named_packages" / "o" / "p"
    sheaf.json("tag", f"o/p@{r1}", "v1")
    tag = registry / ".sheaf" / "tags" / "o" / "p" / "v1"
    assert tag.read_text().strip() == r1
    (stamp_r1,) = [p for p in named.iterdir() if p.name != "latest" and p.read_text().strip() == r1]
    stamp_r1.write_text("nothex")
    tag.write_text("garbage")
    r = sheaf("log", "o/p")
    assert r.returncode == 0 and r2 in r.stdout and r1 not in r.stdout, describe(r)
    for part in (f"named_packages/o/p/{stamp_r1.name} holds", "tags/o/p/v1 holds", '"garbage"', "warning:"):
        assert part in r.stderr, describe(r)
    assert [x["top_hash"] for x in sheaf.json("log", "o/p")] == [r2]
    sheaf.json("tag", f"o/p@{r2[:8]}", "v2")
    assert sheaf.json("browse", "o/p:v2")["top_hash"] == r2
    # A pointer whose manifest is gone is left out and named.
    write_tree(tmp_path / "gone", {"g.txt": b"gone"})
    gone = sheaf.push("o/p", tmp_path / "gone")["top_hash"]
    manifest = registry / ".quilt" / "packages" / gone
    manifest.rename(tmp_path / "gone.manifest")
    r = sheaf("log", "o/p")
    assert r.returncode == 0 and r2 in r.stdout and f"names manifest {gone}, which is gone" in r.stderr, describe(r)
    (tmp_path / "gone.manifest").rename(manifest)
    sheaf.json("delete", f"o/p@{gone}")
    out = sheaf.json("delete", f"o/p@{r2}")
    assert out["latest"] is None and stamp_r1.exists() and tag.exists(), out
    sheaf.json("delete", "o/p")
    assert not named.exists() and not tag.exists()
    assert "o/p" not in [p["name"] for p in sheaf.json("list")]


def test_delete_refuses_tags_and_unknown_revisions(sheaf, two_revisions):
    r1, r2 = two_revisions
    sheaf.json("tag", f"o/p@{r1}", "v1")
    assert_exit(sheaf("delete", "o/p:v1"), 2)
    prefix = _prefix_not_matching(r1, r2)
    assert_exit(sheaf("delete", f"o/p@{prefix}"), 3, prefix)
    assert sheaf.json("browse", "o/p")["top_hash"] == r2


# ---------------------------------------------------------------------------
# diff
# ---------------------------------------------------------------------------


def test_diff(sheaf, two_revisions):
    r1, r2 = two_revisions
    d = sheaf.json("diff", f"o/p@{r1}", "o/p")
    assert d == {
        "from": r1,
        "to": r2,
        "added": ["d/d.txt"],
        "removed": ["c.txt"],
        "modified": ["a.txt"],
        "header_changed": True,
    }
    human = sheaf.ok("diff", f"o/p@{r1}", "o/p").stdout.splitlines()
    assert "+ d/d.txt" in human and "- c.txt" in human and "M a.txt" in human
    back = sheaf.json("diff", "o/p", f"o/p@{r1[:6]}")
    assert back["added"] == ["c.txt"] and back["removed"] == ["d/d.txt"] and back["modified"] == ["a.txt"]
    same = sheaf.json("diff", "o/p", "o/p")
    assert same["added"] == same["removed"] == same["modified"] == [] and same["header_changed"] is False


def test_diff_of_sub_paths_compares_only_the_parts_selected(sheaf, tmp_path):
    """`diff a@A/x b@B/x` compares folder x across revisions (keys under x); two folders of one revision compare
    by their keys under each; a sub-path that selects nothing is not found (exit 3) naming it."""
    root = tmp_path / "t"
    write_tree(root, {"x/f": b"1", "x/g": b"same", "y/f": b"1", "y/g": b"same"})
    r1 = sheaf.push("o/p", root)["top_hash"]
    (root / "y" / "f").write_bytes(b"2")
    r2 = sheaf.push("o/p", root)["top_hash"]
    x = sheaf.json("diff", f"o/p@{r1}/x", f"o/p@{r2}/x")
    assert x["added"] == x["removed"] == x["modified"] == [], x
    y = sheaf.json("diff", f"o/p@{r1}/y", f"o/p@{r2}/y")
    assert y["modified"] == ["f"] and y["added"] == y["removed"] == [], y
    folders = sheaf.json("diff", f"o/p@{r2}/x", f"o/p@{r2}/y")
    assert folders["modified"] == ["f"] and folders["added"] == folders["removed"] == [], folders
    one_file = sheaf.json("diff", f"o/p@{r1}/y/f", f"o/p@{r2}/y/f")
    assert one_file["modified"] == ["f"], one_file
    assert_exit(sheaf("diff", f"o/p@{r1}/nonexistent", f"o/p@{r2}"), 3, "nonexistent")


def test_diff_across_packages_and_header_only_change(sheaf, tmp_path):
    root = tmp_path / "t"
    write_tree(root, {"x": b"x"})
    a = sheaf.push("o/a", root, "-m", "one")["top_hash"]
    b = sheaf.push("o/b", root, "-m", "two")["top_hash"]
    d = sheaf.json("diff", "o/a", "o/b")
    assert (d["from"], d["to"]) == (a, b)
    assert d["added"] == d["removed"] == d["modified"] == [] and d["header_changed"] is True
    assert_exit(sheaf("diff", "o/a", "o/missing"), 3, "o/missing")


# ---------------------------------------------------------------------------
# sub-path installs
# ---------------------------------------------------------------------------


def test_subpath_install_and_verify(sheaf, small_tree, tmp_path):
    root, files = small_tree
    top = sheaf.push("o/p", root)["top_hash"]
    dest = tmp_path / "nested"
    out = sheaf.json("install", f"o/p/nested@{top[:8]}", "--dest", dest)
    expected = {k[len("nested/") :]: v for k, v in files.items() if k.startswith("nested/")}
    assert read_tree(dest) == expected
    assert out["files"] == len(expected)
    assert sheaf.json("verify", "o/p/nested", "--dir", dest)["ok"] is True

    single = tmp_path / "single"
    sheaf.json("install", "o/p/nested/sibling.csv", "--dest", single)
    assert read_tree(single) == {"sibling.csv": files["nested/sibling.csv"]}

    uni = tmp_path / "uni"
    sheaf.json("install", "o/p/emoji 😀:latest", "--dest", uni)
    assert read_tree(uni) == {"🚀 launch.txt": files["emoji 😀/🚀 launch.txt"]}

    # A trailing slash names the same folder; a prefix of a name is not a folder.
    assert sheaf.json("install", "o/p/nested/", "--dest", tmp_path / "slash")["files"] == len(expected)
    assert_exit(sheaf("install", "o/p/nest", "--dest", tmp_path / "nest"), 3, "nest")
    assert_exit(sheaf("install", "o/p/does/not/exist", "--dest", tmp_path / "x"), 3, "does/not/exist")


def test_push_refuses_a_folder_holding_the_registry(tmp_path):
    """Pushing the folder the local registry lives in would record the registry's own files (this push's staging
    files among them): refused with exit 2 naming both, nothing written."""
    root = tmp_path / "project"
    write_tree(root, {"data.csv": b"a,b\n1,2\n"})
    registry = root / "reg"
    inside = Sheaf(str(registry))
    r = inside("push", "o/p", root)
    assert_exit(r, 2, "inside the folder", str(root))
    assert not (registry / ".quilt" / "named_packages").exists()


def test_browse_prefix(sheaf, small_tree):
    root, files = small_tree
    sheaf.push("o/p", root)
    keys = [e["logical_key"] for e in sheaf.json("browse", "o/p", "nested")["entries"]]
    assert keys == ["nested/deeper/deepest/leaf.txt", "nested/sibling.csv"]
    assert [e["logical_key"] for e in sheaf.json("browse", "o/p", "a")["entries"]] == ["a/b"]
    # A path that selects nothing is not found (as for install and verify), naming it.
    assert_exit(sheaf("browse", "o/p/nonexistent"), 3, "nonexistent")
    assert_exit(sheaf("browse", "o/p", "nonexistent"), 3, "nonexistent")


# ---------------------------------------------------------------------------
# --json output of every command, human output
# ---------------------------------------------------------------------------


def test_list_shows_every_package_when_one_latest_is_damaged(sheaf, registry, tmp_path):
    """A package whose `latest` pointer holds garbage is listed without a revision; the others are listed as
    usual (one damaged pointer used to fail the whole listing), and browsing it names the pointer at fault."""
    root = tmp_path / "t"
    write_tree(root, {"x": b"x"})
    good = sheaf.push("o/good", root)["top_hash"]
    sheaf.push("o/bad", root)
    (Path(registry) / ".quilt" / "named_packages" / "o" / "bad" / "latest").write_text("garbage\n")
    assert sorted(sheaf.json("list"), key=lambda p: p["name"]) == [
        {"name": "o/bad", "latest": None},
        {"name": "o/good", "latest": good},
    ]
    assert_exit(sheaf("browse", "o/bad"), 4, "latest")
    # A `latest` that is a symbolic link is refused (never followed) and hides nothing else either.
    latest = Path(registry) / ".quilt" / "named_packages" / "o" / "bad" / "latest"
    latest.unlink()
    (tmp_path / "elsewhere").write_text(good)
    latest.symlink_to(tmp_path / "elsewhere")
    assert {"name": "o/good", "latest": good} in sheaf.json("list")
    assert_exit(sheaf("browse", "o/bad"), 1, "latest", "symbolic link")


def test_manifest_with_a_file_that_is_also_a_folder_is_refused(sheaf, registry, tmp_path):
    """A manifest holding both `x` and `x/y` (quilt3 refuses to load it; no file system holds both) is refused as a
    damaged manifest, naming both keys, before install writes anything: in walk order and out of it."""
    root = tmp_path / "t"
    write_tree(root, {"x": b"x"})
    top = sheaf.push("o/src", root)["top_hash"]
    manifest = (Path(registry) / ".quilt" / "packages" / top).read_text().splitlines()
    line = json.loads(manifest[1])
    for order in (["a", "x", "x/y"], ["x/y", "a", "x"]):
        lines = [dict(line, logical_key=k) for k in order]
        name = "o/" + "-".join(k.replace("/", "_") for k in order)
        write_manifest(Path(registry), {"version": "v0", "message": None}, lines, name=name)
        dest = tmp_path / ("dest-" + name.replace("/", "_"))
        r = sheaf("install", name, "--dest", str(dest))
        # In walk order the keys are named; out of it (a second, fingerprinting pass) their manifest lines.
        named = '"x" is a file, but "x/y" makes it a folder' if order[0] == "a" else "line 4 is a file"
        assert r.returncode == 2 and named in r.stderr, describe(r)
        assert not dest.exists() or not any(dest.iterdir()), f"install wrote {list(dest.rglob('*'))}"
        r = sheaf("browse", name)
        assert r.returncode == 2 and "makes it a folder" in r.stderr, describe(r)


def test_text_output_escapes_control_characters(sheaf, tmp_path):
    """A newline or a terminal escape in a file name or a message cannot forge lines of text output (browse, log,
    diff, hash): control characters are shown escaped; --json keeps them as they are."""
    root = tmp_path / "t"
    write_tree(root, {"plain.txt": b"p", "evil\n0  fake  line\x1b[2J": b"e"})
    first = sheaf.push("o/esc", root, "-m", "first\nsecond")["top_hash"]
    browse = sheaf("browse", "o/esc")
    assert browse.returncode == 0, describe(browse)
    lines = browse.stdout.splitlines()
    assert len(lines) == 4, lines  # head, message, two entries
    assert "message: first\\nsecond" in lines
    assert any(line.endswith("evil\\n0  fake  line\\u{1b}[2J") for line in lines), lines
    assert "\x1b" not in browse.stdout
    log = sheaf("log", "o/esc")
    assert log.stdout.splitlines() == [log.stdout.strip()] and "first\\nsecond" in log.stdout, describe(log)
    hashed = sheaf("hash", str(root / "evil\n0  fake  line\x1b[2J"), str(root / "plain.txt"))
    assert len(hashed.stdout.splitlines()) == 2 and "\\u{1b}" in hashed.stdout, describe(hashed)
    keys = [e["logical_key"] for e in sheaf.json("browse", "o/esc")["entries"]]
    assert keys == ["evil\n0  fake  line\x1b[2J", "plain.txt"]
    for f in root.iterdir():
        if f.name != "plain.txt":
            f.unlink()
    second = sheaf.push("o/esc", root, "-m", "first\nsecond")["top_hash"]
    diff = sheaf("diff", f"o/esc@{first}", f"o/esc@{second}")
    assert diff.stdout.splitlines()[1:] == ["- evil\\n0  fake  line\\u{1b}[2J"], describe(diff)


def test_usage_errors_are_json_with_json(sheaf):
    """With --json a usage error (a missing argument, an unknown flag) is one JSON line on stderr, exit 2, like
    every other error; without it, clap's usual text."""
    for args in (["--json", "push"], ["--json", "browse", "o/p", "--no-such-flag"]):
        r = sheaf(*args)
        assert r.returncode == 2, describe(r)
        err = json.loads(r.stderr.strip().splitlines()[-1])["error"]
        assert err["kind"] == "usage" and err["message"], err
    r = sheaf("push")
    assert r.returncode == 2 and "Usage" in r.stderr, describe(r)


def test_json_outputs(sheaf, registry, tree, tmp_path):
    root, files = tree
    first = sheaf.push("o/p", root, "-m", "msg", "--meta", '{"k": [1, 2.5]}')
    assert set(first) == {
        "package",
        "top_hash",
        "files",
        "bytes",
        "uploaded_files",
        "uploaded_bytes",
        "cloned_files",
        "unchanged",
        "previous",
    }
    assert first["package"] == "o/p" and HEX64.match(first["top_hash"])
    assert first["files"] == len(files) and first["bytes"] == sum(map(len, files.values()))
    assert first["uploaded_files"] == len(set(files.values()))  # duplicate contents are stored once
    assert first["unchanged"] is False and first["previous"] is None
    assert 0 <= first["cloned_files"] <= first["uploaded_files"]  # clones where blocks are shared: test_reflink.py
    top = first["top_hash"]

    again = sheaf.push("o/p", root, "-m", "msg", "--meta", '{"k": [1, 2.5]}')
    assert again["unchanged"] is True and again["uploaded_files"] == 0 and again["previous"] == top

    assert sheaf.json("list") == [{"name": "o/p", "latest": top}]
    log = sheaf.json("log", "o/p")
    assert len(log) == 1 and set(log[0]) == {"top_hash", "timestamp", "message", "tags", "derived"}
    assert log[0]["top_hash"] == top and log[0]["message"] == "msg" and isinstance(log[0]["timestamp"], int)

    b = sheaf.json("browse", "o/p")
    assert set(b) == {"top_hash", "message", "user_meta", "entries"}
    assert b["user_meta"] == {"k": [1, 2.5]}
    for e in b["entries"]:
        assert set(e) == {"logical_key", "size", "hash", "meta", "physical_keys"}
        assert e["hash"] == {"type": "sha2-256-chunked", "value": chunked_hash(files[e["logical_key"]])}
        assert e["physical_keys"] == [blob_path(registry, e["hash"]["value"]).as_uri()]
        assert blob_path(registry, e["hash"]["value"]).is_file()

    dest = tmp_path / "dest"
    inst = sheaf.json("install", "o/p", "--dest", dest)
    assert inst == {
        "top_hash": top,
        "files": len(files),
        "bytes": first["bytes"],
        "downloaded_files": len(files),
        "downloaded_bytes": first["bytes"],
        "skipped_files": 0,
    }
    inst2 = sheaf.json("install", "o/p", "--dest", dest)
    assert inst2["downloaded_files"] == 0 and inst2["downloaded_bytes"] == 0 and inst2["skipped_files"] == len(files)

    v = sheaf.json("verify", "o/p", "--dir", dest)
    assert set(v) == {"top_hash", "checked", "missing", "modified", "extra", "unverifiable", "ok"}

    t = sheaf.json("tag", "o/p", "t1")
    assert t == {"package": "o/p", "tag": "t1", "top_hash": top}
    d = sheaf.json("diff", "o/p", "o/p:t1")
    assert set(d) == {"from", "to", "added", "removed", "modified", "header_changed"}

    h = sheaf.json("hash", root / BIG_KEY)
    assert h == [
        {
            "path": str(root / BIG_KEY),
            "size": len(files[BIG_KEY]),
            "hash": {"type": "sha2-256-chunked", "value": chunked_hash(files[BIG_KEY])},
        }
    ]

    dl = sheaf.json("delete", "o/p")
    assert set(dl) == {"removed_pointers", "latest"} and dl["latest"] is None and dl["removed_pointers"] >= 2


def test_human_output(sheaf, small_tree, tmp_path):
    root, files = small_tree
    r = sheaf.ok("push", "o/p", root, "-m", "hello")
    top = r.stdout.strip()
    assert HEX64.match(top), describe(r)
    r = sheaf.ok("push", "o/p", root, "-m", "hello")
    assert top in r.stdout and "unchanged" in r.stdout
    assert top[:12] in sheaf.ok("list").stdout
    log = sheaf.ok("log", "o/p").stdout
    assert top in log and "hello" in log
    browse = sheaf.ok("browse", "o/p").stdout
    assert top in browse and "nested/sibling.csv" in browse and "emoji 😀/🚀 launch.txt" in browse


def test_errors_as_json(sheaf):
    r = sheaf("browse", "nobody/nothing", json_out=True)
    assert r.returncode == 3 and r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert err["kind"] == "not_found" and "nobody/nothing" in err["message"]
    r = sheaf("browse", "bad name", json_out=True)
    assert r.returncode == 2 and json.loads(r.stderr)["error"]["kind"] == "invalid"


# ---------------------------------------------------------------------------
# exit codes and messages
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["browse", "nobody/nothing"],
        ["log", "nobody/nothing"],
        ["install", "nobody/nothing", "--dest", "DEST"],
        ["verify", "nobody/nothing", "--dir", "DEST"],
        ["tag", "nobody/nothing", "v1"],
        ["delete", "nobody/nothing"],
        ["diff", "nobody/nothing", "nobody/nothing"],
    ],
)
def test_unknown_package_is_not_found_and_named(sheaf, tmp_path, args):
    (tmp_path / "DEST").mkdir()
    args = [str(tmp_path / "DEST") if a == "DEST" else a for a in args]
    assert_exit(sheaf(*args), 3, "nobody/nothing")
    assert list((tmp_path / "DEST").iterdir()) == []


@pytest.mark.parametrize(
    "name", ["noslash", "a/b/c", "/name", "owner/", "", ".hidden/x", "o/.x", "o/n n", "o/ná", "o/n:x:y", "o\\n/x"]
)
def test_bad_package_names_are_invalid(sheaf, small_tree, name):
    root, _ = small_tree
    assert_exit(sheaf("push", name, root), 2)
    assert not (Path(sheaf.registry) / ".quilt").exists()


def test_bad_push_inputs(sheaf, registry, tmp_path):
    root = tmp_path / "t"
    write_tree(root, {"x": b"x"})
    assert_exit(sheaf("push", "o/p", root, "--meta", "{not json"), 2)
    assert_exit(sheaf("push", "o/p", root, "--meta", "[1, 2]"), 2)
    assert_exit(sheaf("push", "o/p", root, "--meta", '"text"'), 2)
    assert_exit(sheaf("push", "o/p", root / "x"), 2, "x")  # a file, not a folder
    assert not (registry / ".quilt").exists()
    assert_exit(sheaf("list", registry="ftp://example.com/x"), 2, "ftp")


def test_push_of_a_missing_folder_is_not_found(sheaf, tmp_path):
    missing = tmp_path / "no-such-folder"
    assert_exit(sheaf("push", "o/p", missing), 3, str(missing))


def test_file_names_that_cannot_be_logical_keys_are_refused(sheaf, registry, tmp_path):
    root = tmp_path / "t"
    write_tree(root, {"ok.txt": b"ok"})
    (root / "back\\slash.txt").write_bytes(b"x")
    assert_exit(sheaf("push", "o/p", root), 2, "back\\slash.txt")
    (root / "back\\slash.txt").unlink()
    os.mkdir(bytes(root) + b"/not-utf8-\xff")
    (Path(os.fsdecode(bytes(root) + b"/not-utf8-\xff")) / "f.txt").write_bytes(b"x")
    assert_exit(sheaf("push", "o/p", root), 2, "UTF-8")
    assert not (registry / ".quilt" / "packages").exists() or list((registry / ".quilt" / "packages").iterdir()) == []


def test_empty_folder_pushes_a_header_only_manifest(sheaf, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = sheaf.push("o/empty", empty)
    # quilt-format.md: the header-only manifest {"message": null, "version": "v0"}.
    assert out["top_hash"] == "2a5a67156ca9238c14d12042db51c5b52260fdd5511b61ea89b58929d6e1769b"
    assert out["files"] == 0
    assert sheaf.json("install", "o/empty", "--dest", tmp_path / "d")["files"] == 0


def test_log_is_newest_first(sheaf, tmp_path):
    root = tmp_path / "t"
    hashes = []
    for i in range(4):
        write_tree(root, {"n.txt": str(i).encode()})
        hashes.append(sheaf.push("o/p", root, "-m", f"rev {i}")["top_hash"])
    log = sheaf.json("log", "o/p")
    assert [r["top_hash"] for r in log] == hashes[::-1]
    assert [r["message"] for r in log] == [f"rev {i}" for i in range(3, -1, -1)]
    assert [r["timestamp"] for r in log] == sorted((r["timestamp"] for r in log), reverse=True)
    assert log[0]["tags"] == ["latest"]


def test_registry_from_environment_and_file_url(sheaf, registry, small_tree):
    root, _ = small_tree
    top = sheaf.push("o/p", root)["top_hash"]
    assert sheaf.json("browse", "o/p", registry=registry.as_uri())["top_hash"] == top
    assert sheaf.json("browse", "o/p", registry=str(registry) + "/")["top_hash"] == top
    no_flag = Sheaf(None, {"SHEAF_REGISTRY": str(registry)})
    assert no_flag.json("browse", "o/p")["top_hash"] == top


# ---------------------------------------------------------------------------
# hash
# ---------------------------------------------------------------------------


def test_hash_matches_the_quilt_vectors(sheaf, tmp_path):
    hello = tmp_path / "hello.txt"
    hello.write_bytes(HELLO)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sheaf.ok("hash", hello).stdout.split() == [HELLO_CHUNKED, str(hello)]
    assert sheaf.ok("hash", empty).stdout.split() == [EMPTY_CHUNKED, str(empty)]
    assert chunked_hash(HELLO) == HELLO_CHUNKED and chunked_hash(b"") == EMPTY_CHUNKED

    # Chunk boundaries: exactly one chunk, one byte over, several chunks.
    sizes = {"one_chunk": 8 * MIB, "one_over": 8 * MIB + 1, "several": 17 * MIB + 3}
    paths = []
    for name, size in sizes.items():
        p = tmp_path / name
        p.write_bytes(big_bytes(size, seed=3))
        paths.append(p)
    out = sheaf.json("hash", *paths)
    for p, item in zip(paths, out, strict=False):
        assert item["path"] == str(p) and item["size"] == p.stat().st_size
        assert item["hash"]["value"] == chunked_hash(p.read_bytes()), p.name


def test_hash_of_a_missing_file_is_not_found(sheaf, tmp_path):
    assert_exit(sheaf("hash", tmp_path / "missing.bin"), 3, "missing.bin")


@pytest.mark.parametrize(
    "url",
    ["s3://AKIAEXAMPLEKEY:SuperSecretValue123@bucket/prefix", "gs://user:SuperSecretValue123@bucket/reg"],
)
def test_a_registry_url_with_credentials_is_refused_without_echoing_them(sheaf, url):
    """No store reads credentials from the registry URL (S3 takes them from AWS_* or its profile), and a URL is
    printed and logged wherever the registry is named: refused (exit 2) before anything starts, the secret masked."""
    for args in (("list",), ("serve", "--listen", "127.0.0.1:0")):
        r = sheaf(*args, registry=url)
        assert_exit(r, 2, "credentials")
        assert "SuperSecretValue123" not in r.stderr + r.stdout, describe(r)
