"""Entries hashed with CRC64NVME, unknown hash types and legacy manifest headers,
checked against real quilt3 (8.0.0).

quilt3 (7.2 and later) verifies entries whose hash is `CRC64NVME`: standard
base64 of the 8-byte big-endian CRC-64/NVME of the whole file (quilt3
computes it per 8 MiB part and combines the parts). quilt3 writes such entries
when its checksum type is CRC64NVME (`quilt3.checksums.DEFAULT_HASH`, also
taken from S3's own checksums on push); here the tests set it for a local
`build`, so quilt3 itself computes every value.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from pathlib import Path

import pytest
from sheaf_testlib import (
    BIG_KEY,
    MIB,
    assert_exit,
    chunked_hash,
    describe,
    file_url,
    read_tree,
    top_hash_of,
    write_manifest,
    write_tree,
)

# README, "Exit codes".
INVALID = 2
DATA_LOSS = 4  # integrity: data does not match its hash, or `verify` found differences

CRC64NVME = "CRC64NVME"
SMALL_VICTIM = "ünïcödé/naïve café.txt"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x9A6C9329AC4BC9B5 if c & 1 else c >> 1  # reflected 0xad93d23594c93659
        table.append(c)
    return table


_TABLE = _crc_table()


def crc64nvme(data: bytes) -> str:
    """CRC-64/NVME as quilt3 encodes it, computed here independently of both
    quilt3 (awscrt) and Sheaf. Slow: for small data only."""
    crc = 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return base64.b64encode((crc ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")).decode()


def quilt3_crc(quilt3, data: bytes) -> str:
    """quilt3's own CRC64NVME value for `data`."""
    import quilt3.checksums as checksums

    return checksums.calculate_multipart_checksum_bytes(data, checksum_type=CRC64NVME)


@pytest.fixture
def crc_quilt3(quilt3, monkeypatch):
    """quilt3, building packages with CRC64NVME entries for this test."""
    import quilt3.checksums as checksums

    assert CRC64NVME in quilt3.packages.SUPPORTED_HASH_TYPES
    monkeypatch.setattr(checksums, "DEFAULT_HASH", checksums.CRC64NVME_HASH_NAME)
    return quilt3


def _build_crc_package(quilt3, registry: Path, root: Path, name: str = "q/crc") -> str:
    top = quilt3.Package().set_dir("/", str(root)).build(name, registry=file_url(registry), message="crc64nvme")
    lines = [json.loads(ln) for ln in (registry / ".quilt" / "packages" / top).read_text(encoding="utf-8").splitlines()]
    kinds = {rec["hash"]["type"] for rec in lines[1:] if "hash" in rec}
    assert kinds == {CRC64NVME}, f"quilt3 wrote {kinds}, not only CRC64NVME entries"
    return top


def _flip_byte(path: Path, offset: int) -> None:
    """Changes one byte in place: same size, different content."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def _partials(dest: Path) -> list[str]:
    return [str(p.relative_to(dest)) for p in dest.rglob("*") if "sheaf-partial" in p.name] if dest.exists() else []


# ---------------------------------------------------------------------------
# the vectors
# ---------------------------------------------------------------------------


def test_crc64nvme_encoding_matches_quilt3(quilt3):
    """The encoding the Rust unit tests assume: base64 of the big-endian CRC;
    an empty file is all zeros; quilt3's per-part combination over 8 MiB
    equals one CRC of the whole."""
    assert quilt3_crc(quilt3, b"Hello, World!") == crc64nvme(b"Hello, World!") == "1Km+Qyat0k0="
    assert quilt3_crc(quilt3, b"") == crc64nvme(b"") == "AAAAAAAAAAA="
    assert base64.b64decode(quilt3_crc(quilt3, b"123456789")).hex() == "ae8b14860a799888"  # the catalogue's check
    data = bytes(i * 31 % 251 for i in range(2 * 8 * MIB + 12345))
    assert quilt3_crc(quilt3, data) == "qut3kQvtw0A="  # src/manifest/hash.rs uses this value


# ---------------------------------------------------------------------------
# a package quilt3 built with CRC64NVME entries
# ---------------------------------------------------------------------------


def test_quilt3_crc64nvme_package_is_installed_and_verified_by_sheaf(
    crc_quilt3, quilt3_cli, sheaf, registry, tree, tmp_path
):
    quilt3 = crc_quilt3
    root, files = tree
    assert len(files[BIG_KEY]) > 8 * MIB  # quilt3 combines the CRCs of two parts
    top = _build_crc_package(quilt3, registry, root)

    out = sheaf.json("browse", "q/crc")
    assert out["top_hash"] == top
    for e in out["entries"]:
        data = files[e["logical_key"]]
        assert e["hash"] == {"type": CRC64NVME, "value": quilt3_crc(quilt3, data)}, e["logical_key"]
        if len(data) < 64 * 1024:
            assert e["hash"]["value"] == crc64nvme(data), e["logical_key"]

    dest = tmp_path / "dest"
    inst = sheaf.json("install", "q/crc", "--dest", dest)
    assert inst["top_hash"] == top and inst["downloaded_files"] == len(files), inst
    assert read_tree(dest) == files

    ver = sheaf.json("verify", "q/crc", "--dir", dest)
    assert ver == {
        "top_hash": top,
        "checked": len(files),
        "missing": [],
        "modified": [],
        "extra": [],
        "unverifiable": [],
        "ok": True,
    }
    r = quilt3_cli("verify", "--registry", file_url(registry), "--top-hash", top, "--dir", dest, "q/crc")
    assert r.returncode == 0, describe(r)

    # A second install finds every file present with the right CRC.
    again = sheaf.json("install", "q/crc", "--dest", dest)
    assert again["skipped_files"] == len(files) and again["downloaded_files"] == 0, again

    # One byte changed in the second 8 MiB part of the big file, same size.
    _flip_byte(dest / BIG_KEY, 9 * MIB)
    r = sheaf("verify", "q/crc", "--dir", dest, json_out=True)
    assert r.returncode == DATA_LOSS, describe(r)
    report = json.loads(r.stdout)
    assert report["modified"] == [BIG_KEY] and report["ok"] is False, report
    human = sheaf("verify", "q/crc", "--dir", dest)
    assert human.returncode == DATA_LOSS and BIG_KEY in human.stdout, describe(human)
    # quilt3 agrees that the folder no longer matches.
    r = quilt3_cli("verify", "--registry", file_url(registry), "--top-hash", top, "--dir", dest, "q/crc")
    assert r.returncode != 0, describe(r)

    # install does not take the altered file as present: it downloads it again.
    repaired = sheaf.json("install", "q/crc", "--dest", dest)
    assert repaired["downloaded_files"] == 1 and repaired["skipped_files"] == len(files) - 1, repaired
    assert read_tree(dest) == files
    assert sheaf.json("verify", "q/crc", "--dir", dest)["ok"] is True


@pytest.mark.parametrize("victim", [BIG_KEY, SMALL_VICTIM])
def test_altered_crc64nvme_data_fails_install_with_the_data_loss_exit_code(
    crc_quilt3, quilt3_cli, sheaf, registry, tree, tmp_path, victim
):
    """quilt3 build leaves physical keys pointing at the built files. One of
    them altered afterwards (same size) must fail `sheaf install`, as it fails
    quilt3's verify, and nothing unverified may be left in the destination."""
    root, files = tree
    top = _build_crc_package(crc_quilt3, registry, root)
    _flip_byte(root.joinpath(*victim.split("/")), len(files[victim]) // 2 + 1)
    r = quilt3_cli("verify", "--registry", file_url(registry), "--top-hash", top, "--dir", root, "q/crc")
    assert r.returncode != 0, "quilt3 itself should reject the altered file\n" + describe(r)

    dest = tmp_path / "dest"
    r = sheaf("install", "q/crc", "--dest", dest)
    assert_exit(r, DATA_LOSS, victim, CRC64NVME)
    assert not dest.joinpath(*victim.split("/")).exists(), "the altered file was installed"
    assert _partials(dest) == [], "partial downloads left behind"
    for key, data in read_tree(dest).items():
        assert data == files[key], key

    # Installing only the sub-path holding the victim fails the same way.
    sub = victim.rsplit("/", 1)[0]
    assert_exit(sheaf("install", f"q/crc/{sub}", "--dest", tmp_path / "sub"), DATA_LOSS, victim)

    # verify of the altered source folder reports exactly that file.
    r = sheaf("verify", "q/crc", "--dir", root, json_out=True)
    assert r.returncode == DATA_LOSS, describe(r)
    assert json.loads(r.stdout)["modified"] == [victim]


# ---------------------------------------------------------------------------
# hash types Sheaf cannot verify
# ---------------------------------------------------------------------------


def test_unknown_hash_type_fails_install_and_verify_with_a_clear_message(sheaf, registry, tmp_path):
    src = tmp_path / "src"
    write_tree(src, {"good.txt": b"good\n", "odd.bin": b"odd data"})
    lines = [
        {
            "logical_key": "good/a.txt",
            "physical_keys": [file_url(src / "good.txt")],
            "size": 5,
            "hash": {"type": "sha2-256-chunked", "value": chunked_hash(b"good\n")},
            "meta": {},
        },
        {
            "logical_key": "odd/x.bin",
            "physical_keys": [file_url(src / "odd.bin")],
            "size": 8,
            "hash": {"type": "BLAKE3-future", "value": "anything"},
            "meta": {},
        },
    ]
    top = write_manifest(registry, {"version": "v0", "message": "future"}, lines, name="f/pkg")

    # Reading the manifest is fine: the entry and its hash type are shown.
    entries = sheaf.json("browse", "f/pkg")["entries"]
    assert [e["hash"]["type"] for e in entries] == ["sha2-256-chunked", "BLAKE3-future"]

    dest = tmp_path / "dest"
    r = sheaf("install", "f/pkg", "--dest", dest)
    assert_exit(r, INVALID, top, "odd/x.bin", "BLAKE3-future", "cannot verify")
    assert not dest.exists() or list(dest.rglob("*")) == [], "nothing may be installed from such a selection"

    # verify refuses too, rather than passing a file it could not check.
    write_tree(tmp_path / "copy", {"good/a.txt": b"good\n", "odd/x.bin": b"odd data"})
    r = sheaf("verify", "f/pkg", "--dir", tmp_path / "copy")
    assert_exit(r, INVALID, "odd/x.bin", "BLAKE3-future")
    r = sheaf("verify", "f/pkg", "--dir", tmp_path / "copy", json_out=True)
    assert r.returncode == INVALID and "odd/x.bin" in r.stderr, describe(r)

    # A selection without that entry installs and verifies normally.
    sheaf.json("install", "f/pkg/good", "--dest", tmp_path / "good")
    assert read_tree(tmp_path / "good") == {"a.txt": b"good\n"}
    assert sheaf.json("verify", "f/pkg/good", "--dir", tmp_path / "good")["ok"] is True


# ---------------------------------------------------------------------------
# legacy manifests with an obsolete `top_hash` header key
# ---------------------------------------------------------------------------


def test_legacy_manifest_with_top_hash_header_key_loads_with_quilt3s_top_hash(
    quilt3, quilt3_cli, sheaf, registry, tmp_path
):
    src = tmp_path / "src"
    files = write_tree(src, {"a.txt": b"Hello, World!", "d/b.csv": b"x,y\n1,2\n"})
    header = {"version": "v0", "top_hash": {"alg": "v0", "value": "0" * 64}, "message": "legacy", "user_meta": {"k": 1}}
    entries = [
        {
            "logical_key": "a.txt",
            "physical_keys": [file_url(src / "a.txt")],
            "size": 13,
            "hash": {"type": "SHA256", "value": "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f"},
            "meta": {},
        },
        {
            "logical_key": "d/b.csv",
            "physical_keys": [file_url(src / "d" / "b.csv")],
            "size": 8,
            "hash": {"type": "sha2-256-chunked", "value": chunked_hash(files["d/b.csv"])},
            "meta": {},
        },
    ]
    text = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in [header, *entries])

    qtop = quilt3.Package.load(io.StringIO(text)).top_hash
    without = {k: v for k, v in header.items() if k != "top_hash"}
    assert qtop == top_hash_of(without, entries) != top_hash_of(header, entries)

    # Laid out as quilt3 names it: by the top hash quilt3 computes.
    manifest = registry / ".quilt" / "packages" / qtop
    manifest.parent.mkdir(parents=True)
    manifest.write_text(text, encoding="utf-8")
    named = registry / ".quilt" / "named_packages" / "old" / "legacy"
    named.mkdir(parents=True)
    (named / str(int(time.time()))).write_text(qtop)
    (named / "latest").write_text(qtop)
    assert quilt3.Package.browse("old/legacy", registry=file_url(registry)).top_hash == qtop

    out = sheaf.json("browse", "old/legacy")
    assert out["top_hash"] == qtop and out["message"] == "legacy"
    assert sheaf.json("browse", f"old/legacy@{qtop[:8]}")["top_hash"] == qtop
    assert [r["top_hash"] for r in sheaf.json("log", "old/legacy")] == [qtop]
    dest = tmp_path / "dest"
    assert sheaf.json("install", "old/legacy", "--dest", dest)["top_hash"] == qtop
    assert read_tree(dest) == files
    assert sheaf.json("verify", "old/legacy", "--dir", dest)["ok"] is True
    r = quilt3_cli("verify", "--registry", file_url(registry), "--top-hash", qtop, "--dir", dest, "old/legacy")
    assert r.returncode == 0, describe(r)
    assert manifest.read_text(encoding="utf-8") == text, "sheaf rewrote a manifest it only read"

    # Any other content under that name is still refused as corrupt.
    manifest.write_text(text.replace('"k": 1', '"k": 2'), encoding="utf-8")
    assert_exit(sheaf("browse", "old/legacy"), DATA_LOSS, qtop)
