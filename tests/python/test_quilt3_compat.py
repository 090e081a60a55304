"""Sheaf and quilt3 (8.0.0) read and write the same registry: same top hashes,
same entries, each installs and verifies what the other wrote."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from sheaf_testlib import (
    BIG_KEY,
    HEX64,
    assert_exit,
    chunked_hash,
    describe,
    file_url,
    make_tree,
    read_tree,
    top_hash_of,
    write_manifest,
    write_tree,
)

# Package metadata exercising everything where JSON encoders disagree: float
# repr (1e+16, 1e-05, 1.0, -0.0), non-ASCII and astral characters (escaped as
# surrogate pairs in the top hash), control characters, DEL, key order, nesting.
TRICKY_META = {
    "big": 1e16,
    "x": 1.5,
    "tenth": 0.1,
    "small": 1e-05,
    "one": 1.0,
    "neg_zero": -0.0,
    "sum": 0.1 + 0.2,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "fixed": 123456789.125,
    "int": 42,
    "neg": -7,
    "u64_max": 18446744073709551615,
    "i64_min": -9223372036854775808,
    "unicode": "crème brûlée, ключ, 日本語",
    "emoji": "🚀😀 astral",
    "ctrl": 'tab\tnewline\nquote"backslash\\slash/del\x7f bell\x07',
    "ключ": "значение",
    "😀key": "emoji key",
    "Zed": "upper case sorts first",
    "nested": {"arr": [1, 2.5, {"deep": [None, True, False]}], "empty": {}, "empty_arr": [], "f": 1e22},
    "null": None,
}


def _quilt_entries(pkg):
    return [(lk, e) for lk, e in pkg.walk()]


def _assert_same_json(a, b):
    """Equality that also tells -0.0 from 0.0 and 1 from 1.0."""
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _registry_url(registry):
    return file_url(registry)


# ---------------------------------------------------------------------------
# (a) a package built by quilt3, read by sheaf
# ---------------------------------------------------------------------------


def test_quilt3_built_package_is_browsed_installed_and_verified_by_sheaf(quilt3, sheaf, registry, tree, tmp_path):
    root, files = tree
    meta = {"source": "quilt3", "n": 3, "f": 0.1}
    pkg = quilt3.Package().set_dir("/", str(root), meta=meta)
    top = pkg.build("q/pkg", registry=_registry_url(registry), message="built by quilt3")
    assert HEX64.match(top)

    out = sheaf.json("browse", "q/pkg")
    assert out["top_hash"] == top
    assert out["message"] == "built by quilt3"
    _assert_same_json(out["user_meta"], meta)
    q_entries = _quilt_entries(pkg)
    assert [e["logical_key"] for e in out["entries"]] == [lk for lk, _ in q_entries]
    assert sorted(files) == sorted(lk for lk, _ in q_entries)
    for mine, (lk, qe) in zip(out["entries"], q_entries, strict=False):
        assert mine["size"] == qe.size == len(files[lk])
        assert mine["hash"] == qe.hash
        assert mine["hash"] == {"type": "sha2-256-chunked", "value": chunked_hash(files[lk])}, lk
        # quilt3 build leaves the data where it is: physical keys name the source files.
        assert mine["physical_keys"] == [str(qe.physical_key)]
        assert mine["physical_keys"][0].startswith("file://")

    # The big file really spans several 8 MiB chunks.
    assert len(files[BIG_KEY]) > 8 * 1024 * 1024

    dest = tmp_path / "installed"
    inst = sheaf.json("install", "q/pkg", "--dest", dest)
    assert inst["top_hash"] == top
    assert inst["files"] == len(files) and inst["downloaded_files"] == len(files)
    assert read_tree(dest) == files

    ver = sheaf.json("verify", "q/pkg", "--dir", dest)
    assert ver["ok"] is True and ver["checked"] == len(files), ver
    assert ver["missing"] == ver["modified"] == ver["extra"] == []

    # Hashing the same folder with the same header gives quilt3's top hash.
    # Without profiles (entry metadata quilt3 does not compute), the same top hash.
    push = sheaf.push("s/pkg", root, "-m", "built by quilt3", "--meta", json.dumps(meta), "--no-profile")
    assert push["top_hash"] == top


def test_sheaf_push_of_content_quilt3_already_built_is_installable_from_the_registry(quilt3, sheaf, registry, tmp_path):
    """quilt3 build references data where it lies. When sheaf then pushes the same
    content (same top hash) it uploads blobs; the revision it reports must be
    installable from the registry alone, even once the source folder is gone."""
    root = tmp_path / "src"
    files = make_tree(root, big=False)
    top = (
        quilt3.Package()
        .set_dir("/", str(root), meta={"k": 1})
        .build("q/pkg", registry=_registry_url(registry), message="m")
    )
    push = sheaf.push("s/pkg", root, "-m", "m", "--meta", '{"k": 1}', "--no-profile")
    assert push["top_hash"] == top
    assert push["uploaded_files"] == len(set(files.values())), push
    shutil.rmtree(root)
    dest = tmp_path / "dest"
    r = sheaf("install", "s/pkg", "--dest", dest)
    assert r.returncode == 0, (
        "sheaf push uploaded every blob and reported success, but the revision is not installable "
        "once the pushed folder is removed\n" + describe(r)
    )
    assert read_tree(dest) == files


# ---------------------------------------------------------------------------
# (b) a package pushed by sheaf, read by quilt3
# ---------------------------------------------------------------------------


def test_sheaf_pushed_package_is_read_installed_and_verified_by_quilt3(quilt3, quilt3_cli, sheaf, tmp_path, tree):
    root, files = tree
    # A registry path that needs percent-encoding in file:// URLs.
    registry = tmp_path / "régistry with space #1"
    registry.mkdir()
    url = _registry_url(registry)
    push = sheaf.push(
        "o/p", root, "-m", "pushed by sheaf ✓", "--meta", json.dumps(TRICKY_META, ensure_ascii=False), registry=registry
    )
    top = push["top_hash"]
    assert HEX64.match(top)
    assert push["files"] == len(files) and push["bytes"] == sum(map(len, files.values()))

    qpkg = quilt3.Package.browse("o/p", registry=url)
    assert qpkg.top_hash == top
    assert quilt3.Package.browse("o/p", registry=url, top_hash=top).top_hash == top
    _assert_same_json(qpkg.meta, TRICKY_META)
    assert math.copysign(1.0, qpkg.meta["neg_zero"]) == -1.0
    assert [lk for lk, _ in qpkg.walk()] == [
        e["logical_key"] for e in sheaf.json("browse", "o/p", registry=registry)["entries"]
    ]
    for lk, e in qpkg.walk():
        assert e.hash == {"type": "sha2-256-chunked", "value": chunked_hash(files[lk])}, lk
        assert e.size == len(files[lk])

    dest = tmp_path / "sheaf-dest"
    sheaf.json("install", f"o/p@{top}", "--dest", dest, registry=registry)
    assert read_tree(dest) == files
    r = quilt3_cli("verify", "--registry", url, "--top-hash", top, "--dir", dest, "o/p")
    assert r.returncode == 0, describe(r)

    # quilt3's verify really looks at the data: a changed byte fails it.
    victim = dest / "nested" / "sibling.csv"
    victim.write_bytes(b"x,y\n1,2\n3,5\n")
    r = quilt3_cli("verify", "--registry", url, "--top-hash", top, "--dir", dest, "o/p")
    assert r.returncode != 0, describe(r)

    qdest = tmp_path / "quilt3-dest"
    quilt3.Package.install("o/p", registry=url, dest=str(qdest))
    assert read_tree(qdest) == files


# Integers beyond 64 bits: Sheaf hashes them exactly as written (so it reads,
# verifies and serves quilt3 packages holding them), writes `--meta` holding
# them as written, and keeps the lines holding them as written in a new
# revision on top of such a package (README "Known limitations": its metadata
# values show them as the nearest float).
BIG_INTEGERS = ['{"n": 18446744073709551616}', '{"n": -9223372036854775809}', '{"n": 123456789012345678901234567890}']


META_NUMBERS = [
    '{"n": 9223372036854775807, "m": -9223372036854775808, "u": 18446744073709551615}',
    '{"e": 1E2, "f": 0.1e1, "g": 1.0e-7, "h": 12345678901234567890.0}',
    # Ordinary doubles with 17 significant digits (random.random() values):
    # each must be parsed to the nearest double, as Python does.
    '{"accuracy": 0.15838287025480557, "loss": 0.9948195629497427, "r": 0.18184349682314438}',
    '{"tiny": 2.7715077941825975e-163, "huge": 2.2790121708605243e+274}',
    '{"z": -0}',
    *BIG_INTEGERS,
]


# quilt3 writes -0 back as 0, so only big integers trouble the reading side.
@pytest.mark.parametrize("meta_text", META_NUMBERS)
def test_sheaf_reads_quilt3_packages_with_any_number_in_metadata(quilt3, sheaf, registry, tmp_path, meta_text):
    """quilt3 (Python) keeps integers of any size and parses floats to the
    nearest double; sheaf must hash the numbers exactly as quilt3 does."""
    empty = tmp_path / "empty"
    empty.mkdir()
    qtop = (
        quilt3.Package()
        .set_dir("/", str(empty), meta=json.loads(meta_text))
        .build("q/num", registry=_registry_url(registry), message="n")
    )
    r = sheaf("browse", "q/num", json_out=True)
    assert r.returncode == 0, describe(r)
    assert json.loads(r.stdout)["top_hash"] == qtop


@pytest.mark.parametrize("meta_text", META_NUMBERS)
def test_meta_numbers_are_kept_exactly_and_hash_like_quilt3(quilt3, sheaf, registry, tmp_path, meta_text):
    """The same --meta text must give quilt3's top hash for json.loads(text):
    integers stay integers whatever their size, -0 is the integer 0."""
    empty = tmp_path / "empty"
    empty.mkdir()
    meta = json.loads(meta_text)
    qtop = (
        quilt3.Package()
        .set_dir("/", str(empty), meta=meta)
        .build("q/num", registry=_registry_url(registry), message="n")
    )
    push = sheaf.push("s/num", empty, "-m", "n", "--meta", meta_text)
    header = json.loads((registry / ".quilt/packages" / push["top_hash"]).read_text().splitlines()[0])
    assert json.dumps(header["user_meta"], sort_keys=True) == json.dumps(meta, sort_keys=True), (
        f"sheaf stored {header['user_meta']!r} for --meta {meta_text}"
    )
    assert push["top_hash"] == qtop


def test_quilt3_package_with_big_integers_installs_verifies_and_takes_a_new_revision_exactly(
    quilt3, sheaf, registry, tmp_path
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    meta = {"n": 2**70, "z": 0}
    entry_meta = {"big": -(2**80), "list": [2**65, 1, -0.0], "s": "x"}
    pkg = quilt3.Package().set_dir("/", str(src), meta=meta)
    pkg.set("b/c.txt", str(src / "a.txt"), meta=entry_meta)
    url = _registry_url(registry)
    qtop = pkg.build("q/big", registry=url, message="big")
    browsed = sheaf.json("browse", "q/big")
    assert browsed["top_hash"] == qtop
    # browse shows every number as written, in JSON and in text.
    assert browsed["user_meta"] == meta, browsed["user_meta"]
    # quilt3 keeps an entry's own metadata under "user_meta" in its meta.
    assert {e["logical_key"]: e["meta"] for e in browsed["entries"]}["b/c.txt"]["user_meta"] == entry_meta
    text = sheaf("browse", "q/big").stdout
    assert str(2**70) in text and str(-(2**80)) in text and str(2**65) in text, text
    dest = tmp_path / "dest"
    installed = sheaf.json("install", "q/big", "--dest", dest)
    assert installed["top_hash"] == qtop and (dest / "a.txt").read_text() == "hello"
    assert sheaf("verify", "q/big", "--dir", dest).returncode == 0
    # A new revision on top of it (DoPut adds a table) keeps every number as
    # written: quilt3 loads it with the same top hash and the same metadata.
    import pyarrow as pa
    import pyarrow.flight as flight
    from sheaf_testlib import start_server

    old_lines = (registry / ".quilt/packages" / qtop).read_text().splitlines()
    server = start_server(registry)
    try:
        table = pa.table({"x": [1, 2, 3]})
        writer, reader = server.client.do_put(
            flight.FlightDescriptor.for_command("sheaf://q/big/t.parquet"), table.schema
        )
        writer.write_table(table)
        writer.done_writing()
        reader.read()
        writer.close()
    finally:
        server.stop()
    new_top = sheaf.json("browse", "q/big")["top_hash"]
    assert new_top != qtop
    new_lines = (registry / ".quilt/packages" / new_top).read_text().splitlines()
    kept = [line for line in old_lines[1:] if json.loads(line)["logical_key"] in ("a.txt", "b/c.txt")]
    assert len(kept) == 2 and all(line in new_lines for line in kept), new_lines
    loaded = quilt3.Package.browse("q/big", registry=url, top_hash=new_top)
    assert loaded.top_hash == new_top
    assert loaded.meta == meta and loaded["b/c.txt"].meta == entry_meta
    assert "t.parquet" in loaded


# ---------------------------------------------------------------------------
# (c) null, empty and textual messages
# ---------------------------------------------------------------------------


def test_set_dir_without_metadata_matches_push_with_meta_null(quilt3, sheaf, registry, tmp_path):
    """quilt3's usual `Package().set_dir('/', DIR).build(...)` writes `user_meta: null`; `sheaf push --meta null
    --no-profile` gives the same folder the same top hash (and without --meta, no user_meta: another hash)."""
    root = tmp_path / "t"
    make_tree(root, big=False)
    qtop = quilt3.Package().set_dir("/", str(root)).build("q/nometa", registry=_registry_url(registry))
    assert sheaf.push("s/nometa", root, "--meta", "null", "--no-profile")["top_hash"] == qtop
    assert sheaf.push("s/absent", root, "--no-profile")["top_hash"] != qtop
    assert sheaf.json("browse", "s/nometa")["user_meta"] is None


QUILTIGNORE_CASES = {
    # name: (.quiltignore text, or None for no file)
    "patterns": "*.log\nbuild/\ncache\n\ndata/raw*\nx[0-9].bin\n[!a]?.tmp\nbad *\n",
    "ignores_itself": ".quiltignore\n*.tmp\n",
    # Patterns match absolute paths: one naming the folder pushed leaves everything out.
    "names_the_pushed_folder": "t/*\n",
    "no_file": None,
}


@pytest.mark.parametrize("text", QUILTIGNORE_CASES.values(), ids=QUILTIGNORE_CASES.keys())
def test_quiltignore_symlinks_and_dangling_links_as_quilt3_set_dir(quilt3, sheaf, registry, tmp_path, text):
    """`sheaf push` takes a folder's files exactly as quilt3's `set_dir` does: what `.quiltignore` names (matched as
    fnmatch patterns against absolute paths) is left out, a link to a file is that file, links to folders and links
    to nothing are skipped. Same top hash, same keys."""
    root = tmp_path / "t"
    write_tree(
        root,
        {
            "keep.txt": b"k",
            "a.log": b"log",
            "sub/deep/b.log": b"log",
            "build/out.bin": b"o",
            "src/build/x.c": b"c",
            "cache": b"file named cache",
            "lib/cache/c.bin": b"c",
            "data/raw1.csv": b"r",
            "data/rawer/z.csv": b"r",
            "data/clean.csv": b"c",
            "x1.bin": b"1",
            "x10.bin": b"10",
            "ab.tmp": b"t",
            "bb.tmp": b"t",
            "bad name\\x": b"ignored names are never checked",
        },
    )
    outside = tmp_path / "outside"
    write_tree(outside, {"o.txt": b"outside", "f.txt": b"linked file"})
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)
    (root / "linked-file.txt").symlink_to(outside / "f.txt")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    if text is not None:
        (root / ".quiltignore").write_text(text)
    if text is None or "bad *" not in text:
        (root / "bad name\\x").unlink()  # a name that cannot be a key: pushed only where a pattern leaves it out
    qpkg = quilt3.Package().set_dir("/", str(root))
    qkeys = sorted(k for k, _ in qpkg.walk())
    qtop = qpkg.build("q/ignore", registry=_registry_url(registry))
    report = sheaf.push("s/ignore", root, "--meta", "null", "--no-profile")
    skeys = sorted(e["logical_key"] for e in sheaf.json("browse", "s/ignore")["entries"])
    assert skeys == qkeys
    assert report["top_hash"] == qtop
    assert not any(k.startswith("linked-folder") or k == "dangling" for k in skeys)
    assert ("linked-file.txt" in skeys) == (text != QUILTIGNORE_CASES["names_the_pushed_folder"])


def test_null_empty_and_text_messages_hash_differently_and_identically_in_both_tools(quilt3, sheaf, registry, tmp_path):
    root = tmp_path / "t"
    make_tree(root, big=False)
    meta = {"same": "meta"}
    url = _registry_url(registry)
    variants = {"null": [], "empty": ["-m", ""], "text": ["-m", "text"]}
    quilt_messages = {"null": None, "empty": "", "text": "text"}
    sheaf_hashes = {}
    for label, flags in variants.items():
        sheaf_hashes[label] = sheaf.push(f"s/{label}", root, *flags, "--meta", json.dumps(meta), "--no-profile")[
            "top_hash"
        ]
    assert len(set(sheaf_hashes.values())) == 3, sheaf_hashes

    for label, message in quilt_messages.items():
        qtop = quilt3.Package().set_dir("/", str(root), meta=meta).build(f"q/{label}", registry=url, message=message)
        assert qtop == sheaf_hashes[label], label
        assert quilt3.Package.browse(f"s/{label}", registry=url).top_hash == sheaf_hashes[label]
        browse = sheaf.json("browse", f"q/{label}")
        assert browse["top_hash"] == qtop
        assert browse["message"] == message

    # How each is stored: null, "" and "text" (never confused).
    for label, message in quilt_messages.items():
        header = json.loads((registry / ".quilt/packages" / sheaf_hashes[label]).read_text().splitlines()[0])
        assert "message" in header and header["message"] == message
    logs = {label: sheaf.json("log", f"s/{label}")[0] for label in variants}
    assert logs["null"]["message"] is None
    assert logs["empty"]["message"] == ""
    assert logs["text"]["message"] == "text"


def test_header_without_message_key_keeps_its_own_top_hash(sheaf, registry):
    """The third variant, an absent `message`, only comes from other writers."""
    header_only = {"version": "v0", "message": None}
    assert top_hash_of(header_only, []) == "2a5a67156ca9238c14d12042db51c5b52260fdd5511b61ea89b58929d6e1769b"
    absent = write_manifest(registry, {"version": "v0"}, [], name="h/absent")
    null = write_manifest(registry, header_only, [], name="h/null")
    assert absent != null
    assert sheaf.json("browse", "h/absent")["top_hash"] == absent
    assert sheaf.json("browse", "h/null")["top_hash"] == null


# ---------------------------------------------------------------------------
# (d) folder metadata lines
# ---------------------------------------------------------------------------


def test_quilt3_folder_metadata_survives_sheaf(quilt3, quilt3_cli, sheaf, registry, tmp_path):
    root = tmp_path / "t"
    files = make_tree(root, big=False)
    url = _registry_url(registry)
    pkg = quilt3.Package().set_dir("/", str(root), meta={"top": True})
    pkg["nested"].set_meta({"folder": "nested", "n": 1.5, "ü": "😀"})
    pkg["nested/deeper"].set_meta({"folder": "deeper"})
    pkg.set("nested/sibling.csv", str(root / "nested" / "sibling.csv"), meta={"entry": "meta", "f": 1e16})
    top = pkg.build("q/dirs", registry=url, message="with folder metadata")
    manifest_path = registry / ".quilt" / "packages" / top
    original = manifest_path.read_bytes()
    lines = [json.loads(ln) for ln in original.decode().splitlines()]
    dir_lines = [rec for rec in lines[1:] if "physical_keys" not in rec]
    assert {rec["logical_key"] for rec in dir_lines} == {"nested/", "nested/deeper/"}, "quilt3 wrote no folder lines?"

    out = sheaf.json("browse", "q/dirs")
    assert out["top_hash"] == top
    by_key = {e["logical_key"]: e for e in out["entries"]}
    assert set(by_key) == set(files)  # folder lines are not entries
    _assert_same_json(by_key["nested/sibling.csv"]["meta"], {"user_meta": {"entry": "meta", "f": 1e16}})

    dest = tmp_path / "dest"
    sheaf.json("install", "q/dirs", "--dest", dest)
    assert read_tree(dest) == files
    assert sheaf.json("verify", "q/dirs", "--dir", dest)["ok"] is True
    sheaf.json("tag", f"q/dirs@{top[:10]}", "v1")
    assert sheaf.json("browse", "q/dirs:v1")["top_hash"] == top
    diff = sheaf.json("diff", "q/dirs", f"q/dirs@{top}")
    assert diff["added"] == diff["removed"] == diff["modified"] == [] and not diff["header_changed"]

    # Sheaf never rewrites the manifest; quilt3 still sees the folder metadata.
    assert manifest_path.read_bytes() == original
    again = quilt3.Package.browse("q/dirs", registry=url, top_hash=top)
    assert again.top_hash == top
    assert again["nested"].meta == {"folder": "nested", "n": 1.5, "ü": "😀"}
    r = quilt3_cli("verify", "--registry", url, "--top-hash", top, "--dir", dest, "q/dirs")
    assert r.returncode == 0, describe(r)


# ---------------------------------------------------------------------------
# sub-path installs strip the prefix exactly like quilt3
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["nested", "nested/deeper", "emoji 😀", "nested/sibling.csv"])
def test_subpath_install_matches_quilt3(quilt3, sheaf, registry, small_tree, tmp_path, path):
    root, _ = small_tree
    top = sheaf.push("o/sub", root, "-m", "x")["top_hash"]
    qdest, sdest = tmp_path / "q", tmp_path / "s"
    quilt3.Package.install("o/sub", registry=_registry_url(registry), dest=str(qdest), path=path)
    sheaf.json("install", f"o/sub/{path}@{top}", "--dest", sdest)
    assert read_tree(sdest) == read_tree(qdest)
    assert read_tree(sdest), "nothing installed"


def test_sheaf_refuses_a_manifest_whose_content_does_not_match_its_name(quilt3, sheaf, registry, small_tree):
    root, _ = small_tree
    top = (
        quilt3.Package()
        .set_dir("/", str(root), meta={"a": 1})
        .build("q/pkg", registry=_registry_url(registry), message="m")
    )
    path = registry / ".quilt" / "packages" / top
    path.write_text(path.read_text().replace('"a": 1', '"a": 2', 1))
    r = sheaf("browse", "q/pkg")
    assert_exit(r, 4, top)


def test_packages_deleted_by_sheaf_disappear_for_quilt3(quilt3, sheaf, registry, small_tree):
    root, _ = small_tree
    sheaf.push("o/gone", root)
    sheaf.push("o/kept", root)
    url = _registry_url(registry)
    assert sorted(quilt3.list_packages(url)) == ["o/gone", "o/kept"]
    sheaf.json("delete", "o/gone")
    assert sorted(quilt3.list_packages(url)) == ["o/kept"]


def test_legacy_and_foreign_hash_types(quilt3_cli, sheaf, registry, tmp_path):
    """Entries hashed with SHA256 (hex, legacy) and CRC64NVME are checked on
    install and verify (test_crc64nvme.py has quilt3-built CRC64NVME packages
    and hash types Sheaf cannot verify)."""
    src = tmp_path / "src"
    write_tree(src, {"hello.txt": b"Hello, World!", "other.txt": b"other"})
    lines = [
        {
            "logical_key": "hello.txt",
            "physical_keys": [(src / "hello.txt").as_uri()],
            "size": 13,
            "hash": {"type": "SHA256", "value": "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f"},
            "meta": {},
        },
        {
            "logical_key": "crc.txt",
            "physical_keys": [(src / "hello.txt").as_uri()],
            "size": 13,
            "hash": {"type": "CRC64NVME", "value": "1Km+Qyat0k0="},
            "meta": {},
        },
    ]
    top = write_manifest(registry, {"version": "v0", "message": "legacy"}, lines, name="old/pkg")
    dest = tmp_path / "dest"
    inst = sheaf.json("install", "old/pkg", "--dest", dest)
    assert inst["top_hash"] == top and inst["files"] == 2
    assert read_tree(dest) == {"hello.txt": b"Hello, World!", "crc.txt": b"Hello, World!"}
    ver = sheaf.json("verify", "old/pkg", "--dir", dest)
    assert ver["ok"] is True and ver["unverifiable"] == [] and ver["modified"] == []
    r = quilt3_cli("verify", "--registry", file_url(registry), "--top-hash", top, "--dir", dest, "old/pkg")
    assert r.returncode == 0, describe(r)

    (dest / "hello.txt").write_bytes(b"Hello, World?")
    (dest / "crc.txt").write_bytes(b"Hello, World?")
    r = sheaf("verify", "old/pkg", "--dir", dest, json_out=True)
    assert r.returncode == 4 and json.loads(r.stdout)["modified"] == ["crc.txt", "hello.txt"], describe(r)

    # A SHA256 entry whose data does not match fails the install.
    bad = [dict(lines[0], physical_keys=[(src / "other.txt").as_uri()], size=5)]
    write_manifest(registry, {"version": "v0", "message": "bad"}, bad, name="old/bad")
    assert_exit(sheaf("install", "old/bad", "--dest", tmp_path / "bad"), 4, "hello.txt")
    assert not (tmp_path / "bad" / "hello.txt").exists()
