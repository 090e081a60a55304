"""The same registry operations against S3 (a moto server), where pointers move
by conditional puts instead of file locks and blobs are objects."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading

import pytest
from sheaf_testlib import (
    BIG_KEY,
    BUCKET,
    HEX64,
    MIB,
    QUILT_ENV,
    Sheaf,
    assert_exit,
    base_env,
    big_bytes,
    chunked_hash,
    describe,
    make_tree,
    read_tree,
    write_tree,
)

PREFIX = "some/prefix"
REGISTRY = f"s3://{BUCKET}/{PREFIX}"


def _keys(client, prefix):
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _get(client, key) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def s3(moto):
    """sheaf against s3://sheaf-test/some/prefix."""
    return Sheaf(REGISTRY, moto["env"])


@pytest.fixture(scope="module")
def pushed(s3, moto, tmp_path_factory):
    """The standard tree pushed once as s3/pkg."""
    root = tmp_path_factory.mktemp("s3tree") / "tree"
    files = make_tree(root)
    report = s3.push("s3/pkg", root, "-m", "first on s3", "--meta", '{"where": "moto", "f": 1e16}')
    return {"root": root, "files": files, "report": report, "top": report["top_hash"]}


def test_push_writes_the_quilt_layout_under_the_prefix(pushed, moto):
    client, top, files = moto["client"], pushed["top"], pushed["files"]
    report = pushed["report"]
    assert HEX64.match(top)
    assert report["files"] == len(files)
    assert report["bytes"] == sum(map(len, files.values()))
    assert report["uploaded_files"] == len(set(files.values()))
    assert report["unchanged"] is False and report["previous"] is None

    keys = _keys(client, "")
    assert all(k.startswith(PREFIX + "/") for k in keys), [k for k in keys if not k.startswith(PREFIX + "/")]
    assert f"{PREFIX}/.quilt/packages/{top}" in keys
    assert _get(client, f"{PREFIX}/.quilt/named_packages/s3/pkg/latest").decode() == top
    stamps = [
        k for k in keys if k.startswith(f"{PREFIX}/.quilt/named_packages/s3/pkg/") and k.rsplit("/", 1)[1].isdigit()
    ]
    assert [_get(client, k).decode() for k in stamps] == [top]

    manifest = [json.loads(ln) for ln in _get(client, f"{PREFIX}/.quilt/packages/{top}").decode().splitlines()]
    assert manifest[0]["message"] == "first on s3"
    for entry in manifest[1:]:
        hexdigest = base64.b64decode(entry["hash"]["value"]).hex()
        assert entry["physical_keys"] == [f"s3://{BUCKET}/{PREFIX}/.sheaf/blobs/{hexdigest}"]
        assert f"{PREFIX}/.sheaf/blobs/{hexdigest}" in keys
        assert entry["hash"]["value"] == chunked_hash(files[entry["logical_key"]])


def test_browse_and_list(pushed, s3):
    out = s3.json("browse", "s3/pkg")
    assert out["top_hash"] == pushed["top"]
    assert out["message"] == "first on s3"
    assert out["user_meta"] == {"where": "moto", "f": 1e16}
    assert sorted(e["logical_key"] for e in out["entries"]) == sorted(pushed["files"])
    sub = s3.json("browse", f"s3/pkg@{pushed['top'][:8]}", "nested")
    assert {e["logical_key"] for e in sub["entries"]} == {k for k in pushed["files"] if k.startswith("nested/")}
    assert {"name": "s3/pkg", "latest": pushed["top"]} in s3.json("list")


def test_install_verify_and_second_install_downloads_nothing(pushed, s3, tmp_path):
    files, dest = pushed["files"], tmp_path / "dest"
    first = s3.json("install", "s3/pkg", "--dest", dest)
    assert first["top_hash"] == pushed["top"]
    assert first["downloaded_files"] == len(files) and first["skipped_files"] == 0
    assert first["downloaded_bytes"] == sum(map(len, files.values()))
    assert read_tree(dest) == files

    second = s3.json("install", f"s3/pkg@{pushed['top']}", "--dest", dest)
    assert second["downloaded_files"] == 0 and second["downloaded_bytes"] == 0
    assert second["skipped_files"] == len(files)

    assert s3.json("verify", "s3/pkg", "--dir", dest)["ok"] is True
    (dest / "nested" / "sibling.csv").write_bytes(b"changed")
    r = s3("verify", "s3/pkg", "--dir", dest, json_out=True)
    assert r.returncode == 4, describe(r)
    assert json.loads(r.stdout)["modified"] == ["nested/sibling.csv"]

    # A re-install repairs just the changed file.
    third = s3.json("install", "s3/pkg", "--dest", dest)
    assert third["downloaded_files"] == 1 and third["skipped_files"] == len(files) - 1
    assert read_tree(dest) == files


def test_subpath_install(pushed, s3, tmp_path):
    dest = tmp_path / "sub"
    s3.json("install", "s3/pkg/nested/deeper", "--dest", dest)
    assert read_tree(dest) == {"deepest/leaf.txt": pushed["files"]["nested/deeper/deepest/leaf.txt"]}


def test_unchanged_push_uploads_nothing_and_log_tags(pushed, s3):
    again = s3.push("s3/pkg", pushed["root"], "-m", "first on s3", "--meta", '{"where": "moto", "f": 1e16}')
    assert again["top_hash"] == pushed["top"]
    assert again["unchanged"] is True and again["uploaded_files"] == 0 and again["uploaded_bytes"] == 0

    log = s3.json("log", "s3/pkg")
    assert [r["top_hash"] for r in log] == [pushed["top"]]
    assert log[0]["message"] == "first on s3" and "latest" in log[0]["tags"]

    s3.json("tag", f"s3/pkg@{pushed['top'][:7]}", "v1")
    assert s3.json("browse", "s3/pkg:v1")["top_hash"] == pushed["top"]
    assert "v1" in s3.json("log", "s3/pkg")[0]["tags"]


def test_new_revision_tags_and_delete(s3, moto, tmp_path):
    pkg = "s3/revs"
    root = tmp_path / "t"
    write_tree(root, {"a.txt": b"one", "keep.txt": b"same"})
    first = s3.push(pkg, root, "-m", "one")
    (root / "a.txt").write_bytes(b"two")
    (root / "new.txt").write_bytes(b"new")
    second = s3.push(pkg, root, "-m", "two")
    assert second["previous"] == first["top_hash"]
    assert second["uploaded_files"] == 2  # keep.txt's blob is already there

    log = s3.json("log", pkg)
    assert [r["top_hash"] for r in log] == [second["top_hash"], first["top_hash"]]
    assert [r["message"] for r in log] == ["two", "one"]

    diff = s3.json("diff", f"{pkg}@{first['top_hash'][:8]}", pkg)
    assert diff["added"] == ["new.txt"] and diff["modified"] == ["a.txt"] and diff["removed"] == []

    s3.json("tag", f"{pkg}@{first['top_hash']}", "stable")
    assert_exit(s3("tag", pkg, "stable"), 5, "stable")
    s3.json("tag", pkg, "stable", "--force")
    assert s3.json("browse", f"{pkg}:stable")["top_hash"] == second["top_hash"]

    s3.json("delete", f"{pkg}@{second['top_hash']}")
    assert s3.json("browse", pkg)["top_hash"] == first["top_hash"]
    s3.json("delete", pkg)
    assert pkg not in [p["name"] for p in s3.json("list")]
    assert_exit(s3("browse", pkg), 3, pkg)
    # Pointers only: manifests stay.
    keys = _keys(moto["client"], PREFIX)
    assert f"{PREFIX}/.quilt/packages/{first['top_hash']}" in keys
    assert f"{PREFIX}/.quilt/packages/{second['top_hash']}" in keys


def test_blobs_dedupe_across_packages(pushed, s3, moto, tmp_path):
    client = moto["client"]
    blobs_before = set(_keys(client, f"{PREFIX}/.sheaf/blobs/"))
    copy = s3.push("s3/copy", pushed["root"], "-m", "first on s3", "--meta", '{"where": "moto", "f": 1e16}')
    assert copy["top_hash"] == pushed["top"]
    assert copy["unchanged"] is False and copy["previous"] is None
    assert copy["uploaded_files"] == 0 and copy["uploaded_bytes"] == 0, copy
    assert set(_keys(client, f"{PREFIX}/.sheaf/blobs/")) == blobs_before

    # Different header and one new file: only that file's blob is uploaded.
    root = tmp_path / "variant"
    make_tree(root, extra={"extra/new.txt": b"brand new content"})
    variant = s3.push("s3/variant", root, "-m", "variant")
    assert variant["top_hash"] != pushed["top"]
    assert variant["uploaded_files"] == 1 and variant["uploaded_bytes"] == len(b"brand new content")
    assert len(set(_keys(client, f"{PREFIX}/.sheaf/blobs/"))) == len(blobs_before) + 1


def test_multipart_upload_of_a_file_over_16_mib(s3, tmp_path):
    data = big_bytes(17 * MIB + 3, seed=17)
    root = tmp_path / "huge"
    write_tree(root, {"huge.bin": data, "small.txt": b"s"})
    report = s3.push("s3/huge", root)
    assert report["uploaded_bytes"] == len(data) + 1
    dest = tmp_path / "dest"
    s3.json("install", "s3/huge", "--dest", dest)
    assert (dest / "huge.bin").read_bytes() == data
    browse = s3.json("browse", "s3/huge", "huge.bin")
    assert browse["entries"][0]["hash"]["value"] == chunked_hash(data)


def test_concurrent_pushes_to_one_package_keep_both_revisions(s3, tmp_path):
    """Two writers race for `latest` (conditional puts on S3): neither revision
    is lost from the log and latest is one of them."""
    pkg = "s3/race"
    for round_no in range(3):
        roots = []
        for side in "ab":
            root = tmp_path / f"r{round_no}{side}"
            write_tree(root, {"who.txt": f"{side} round {round_no}".encode(), "shared.txt": b"shared"})
            roots.append(root)
        results = [None, None]

        def run(i, results=results, roots=roots, round_no=round_no):
            results[i] = s3("push", pkg, roots[i], "-m", f"round {round_no} side {i}", json_out=True)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            assert r.returncode == 0, describe(r)
        hashes = {json.loads(r.stdout)["top_hash"] for r in results}
        assert len(hashes) == 2
        logged = {r["top_hash"] for r in s3.json("log", pkg)}
        assert hashes <= logged, f"round {round_no}: a pushed revision is missing from the log"
        assert s3.json("browse", pkg)["top_hash"] in hashes


def test_unknown_package_on_s3(s3):
    assert_exit(s3("browse", "nobody/nothing"), 3, "nobody/nothing")
    assert_exit(s3("log", "nobody/nothing"), 3, "nobody/nothing")


def test_quilt3_reads_the_s3_registry(pushed, moto):
    """quilt3 (through boto3, pointed at moto by AWS_ENDPOINT_URL) sees the same top hash."""
    code = (
        "import json, sys, quilt3\n"
        f"p = quilt3.Package.browse('s3/pkg', registry='s3://{BUCKET}/{PREFIX}')\n"
        "print(json.dumps({'top_hash': p.top_hash, 'keys': [k for k, _ in p.walk()]}))\n"
    )
    env = {**base_env(), **QUILT_ENV, **moto["env"], "AWS_DEFAULT_REGION": "us-east-1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, describe(r)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["top_hash"] == pushed["top"]
    assert sorted(out["keys"]) == sorted(pushed["files"])
    assert BIG_KEY in out["keys"]
