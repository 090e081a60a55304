#!/usr/bin/env python3
"""Scenario 9: packages of many small files (issue 12), Sheaf against quilt3 on the
same tree, side by side in one run.

For each size of a ladder of trees (tiny files of a few bytes, 1000 per folder,
nested two levels deep: `pNN/sNN/NNNNNNN.txt`), one process per measured step
and tool, each timed and its peak RSS read from the kernel (`ru_maxrss` of
that very process, through `/usr/bin/time -f %M`):

  push           `sheaf push` to a fresh local registry (hash + copy every blob)
                 vs quilt3 `Package().set_dir("/", src).build(...)` to a fresh
                 local registry (hash only; quilt3 references the files in place,
                 and its `push` refuses local registries)
  install        `sheaf install REF --dest D` vs quilt3 `Package.install(..., dest=D)`
  install folder `sheaf install REF/pNN/sNN --dest D` (1000 files) vs
                 `Package.install(..., dest=D, path="pNN/sNN")`
  browse folder  `sheaf browse REF pNN/sNN` (1000 lines to a file) vs
                 `Package.browse(...)` then the folder's entries (size, hash, key) to a file
  manifest load  `sheaf browse REF none/` (loads and checks the whole manifest, finds
                 nothing under none/: exit 3, path not found) vs
                 `Package.browse(...)`
  manifest table the manifest's entries as an Arrow table in a file: `sheaf get
                 sheaf://REF --out F.arrow` from a fresh `sheaf serve` (so its first
                 read indexes the manifest) vs `Package.browse(...)`, a walk of
                 every entry into a pyarrow table (key, size, hash) and
                 `feather.write_feather`. Sheaf's time is the `sheaf get` process;
                 its peak RSS is the server's (VmHWM: what holding a revision
                 costs it; the client streams to the file)

quilt3 runs in its own interpreter per step with fresh XDG folders (no cache
shared between steps or rounds), QUILT_MINIMIZE_STDOUT and telemetry off; its
time is measured inside the process around the call (interpreter start and
`import quilt3`, about 1 s, are left out, in quilt3's favour), Sheaf's is the
whole process. Peak RSS is the whole process for both (quilt3's includes the
interpreter and `import quilt3`, reported apart as its baseline). Memory growth
per entry is the slope of peak RSS between sizes, which cancels those constants.

A quilt3 step whose time, extrapolated linearly from the previous size, would
exceed --step-limit is not run at that size (and is stopped if it runs over
1.5x the limit); when quilt3's build did not run at a size, its read steps read
the package Sheaf pushed (quilt3 reads Sheaf's packages, README "quilt3
compatibility").

Trees are cached in $SHEAF_CACHE/bench-data/scale-v1-N/. Usage:

    python benches/scale.py --quick                 # CI: 2,000 and 5,000 files
    python benches/scale.py                         # 10k, 100k, 1M files
    python benches/scale.py --sizes 10000,100000    # any ladder
    python benches/scale.py --steps table --merge benches/results/scale.json
                                                    # some steps again, the others kept
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402

TREE_VERSION = 1
PER_FOLDER = 1000
PKG_SHEAF = "bench/s"
PKG_QUILT = "bench/q"

STEPS = [
    ("push", "push / build", "`sheaf push` (hash + copy) vs quilt3 `build` (hash only)"),
    ("install", "install whole package", "`sheaf install` vs quilt3 `Package.install`"),
    (
        "install_folder",
        "install one folder (1000 files)",
        "`sheaf install REF/FOLDER` vs `Package.install(path=FOLDER)`",
    ),
    (
        "browse_folder",
        "browse one folder (1000 entries)",
        "`sheaf browse REF FOLDER` vs `Package.browse` + folder walk",
    ),
    ("browse", "browse whole package", "`sheaf browse REF` vs `Package.browse` + walk, a line per entry"),
    ("load", "manifest load", "`sheaf browse REF none/` vs `Package.browse`"),
    (
        "table",
        "manifest as a table",
        "`sheaf get` of the manifest table from a fresh server vs `Package.browse` + walk into an Arrow file",
    ),
]
READ_STEPS = ("install", "install_folder", "browse_folder", "browse", "load", "table")
STEP_TITLE = {k: t for k, t, _ in STEPS}
TIME = "/usr/bin/time"  # GNU time, for each step's peak RSS (see measure)
# Where GNU time is missing: a small Python process that spawns the command and
# writes its ru_maxrss (KiB), the same reading (its own ~10 MB is the floor).
LAUNCHER = r"""
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(ru.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""
TIME_GOAL = 10.0  # issue 12: 10x faster than quilt3
SLOPE_GOAL = 8.0  # bytes per entry: "memory bounded by a constant" (8 MB per million entries)

QUILT3 = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import quilt3
t_import = time.perf_counter() - t0
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
op, name, reg, arg, folder = sys.argv[1], sys.argv[2], "file://" + sys.argv[3], sys.argv[4], sys.argv[5]
count = None
t = time.perf_counter()
if op == "push":
    quilt3.Package().set_dir("/", arg).build(name, registry=reg)
elif op == "install":
    quilt3.Package.install(name, registry=reg, dest=arg)
elif op == "install_folder":
    quilt3.Package.install(name, registry=reg, dest=arg, path=folder)
elif op == "browse_folder":
    pkg = quilt3.Package.browse(name, registry=reg)
    count = 0
    with open(arg, "w") as out:
        for key, entry in pkg[folder].walk():
            out.write(f"{entry.size:>12}  {entry.hash['value']}  {folder}/{key}\n")
            count += 1
elif op == "browse":
    pkg = quilt3.Package.browse(name, registry=reg)
    count = 0
    with open(arg, "w") as out:
        for key, entry in pkg.walk():
            out.write(f"{entry.size:>12}  {entry.hash['value']}  {key}\n")
            count += 1
elif op == "load":
    pkg = quilt3.Package.browse(name, registry=reg)
    count = len(pkg.keys())
elif op == "table":
    import pyarrow as pa
    import pyarrow.feather as feather
    pkg = quilt3.Package.browse(name, registry=reg)
    keys, sizes, hashes = [], [], []
    for key, entry in pkg.walk():
        keys.append(key)
        sizes.append(entry.size)
        hashes.append(entry.hash["value"])
    feather.write_feather(pa.table({"logical_key": keys, "size": sizes, "hash": hashes}), arg)
    count = len(keys)
secs = time.perf_counter() - t
print(json.dumps({"seconds": secs, "import_seconds": t_import, "baseline_rss": base, "count": count}))
"""


# --------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------


def key_of(i: int) -> str:
    return f"p{i // (100 * PER_FOLDER):02}/s{(i // PER_FOLDER) % 100:02}/{i:07}.txt"


def folder_of(n: int) -> str:
    """The folder the single-folder steps use: the middle one (1000 files)."""
    idx = (n // PER_FOLDER) // 2
    return f"p{idx // 100:02}/s{idx % 100:02}"


def tree(n: int) -> Path:
    """The cached tree of `n` files (made once; a half-made one is remade)."""
    h.DATA_CACHE.mkdir(parents=True, exist_ok=True)
    path = h.DATA_CACHE / f"scale-v{TREE_VERSION}-{n}"
    if path.is_dir():
        return path
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
    h.progress(f"generating {n:,} files -> {path}")
    t = time.perf_counter()
    made = set()
    for i in range(n):
        k = key_of(i)
        d = k.rsplit("/", 1)[0]
        if d not in made:
            (tmp / d).mkdir(parents=True, exist_ok=True)
            made.add(d)
        fd = os.open(tmp / k, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, f"{i}\n".encode())
        os.close(fd)
    tmp.rename(path)
    h.progress(f"generated in {time.perf_counter() - t:.0f} s")
    return path


def warm(path: Path) -> float:
    """Reads every file once (page cache and dentries warm for whichever tool goes first)."""
    t = time.perf_counter()
    subprocess.run(f"find {str(path)!r} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True)
    return time.perf_counter() - t


# When the last tree was deleted (monotonic seconds), for `settle`.
last_rm = 0.0

# ext4 without a journal (this VM's root file system) does not reuse an inode
# freed in the last 60 s (300 s more while its inode table block is dirty,
# hence the sync first): every file created in that window searches past the
# freed ones. Right after a tree of 100,000 files was deleted, the same binary
# installed 100,000 files in 35 s instead of 3.8 s (22 s after a 36 s wait). A
# step that follows a deletion of that size waits the window out, so neither
# tool pays for the tree the other one left.
INODE_REUSE_WAIT = 62.0
SETTLE_FROM_FILES = 50_000


def rm(path: Path, files: int = 0) -> None:
    """Deletes `path`; `files` (about how many it holds) from
    `SETTLE_FROM_FILES` on makes the next `settle` wait."""
    global last_rm
    if path.exists():
        subprocess.run(["rm", "-rf", str(path)], check=True)
        if files >= SETTLE_FROM_FILES:
            last_rm = time.monotonic()


def settle() -> None:
    """Between measured steps: write back what the last one left dirty (tens of
    thousands of small files), so the next step does not pay for it; after a
    large deletion, wait until the inodes it freed can be reused
    (`INODE_REUSE_WAIT`)."""
    subprocess.run(["sync"], check=False)
    if last_rm:
        time.sleep(max(0.0, last_rm + INODE_REUSE_WAIT - time.monotonic()))


def count_files(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


# --------------------------------------------------------------------------
# One measured process
# --------------------------------------------------------------------------


def measure(cmd: list[str], env: dict, timeout: float, out: Path) -> dict:
    """Runs `cmd` (stdout to `out`), returns wall seconds, peak RSS (bytes) of
    that process, exit code, and the tail of stderr. Killed after `timeout`.

    Peak RSS comes from GNU time (`/usr/bin/time -f %M`, the child's
    `ru_maxrss`): a process forked straight from this Python process would start
    with this process's resident size as its high-water mark (Linux copies it at
    fork and keeps it across exec), so `wait4` here would floor every figure at
    the benchmark's own ~80 MB. `time` is small, so its child's mark starts
    near 1 MB (LAUNCHER instead where GNU time is missing)."""
    rss_file = out.with_suffix(".rss")
    with open(out, "wb") as so, tempfile.TemporaryFile() as se:
        t0 = time.perf_counter()
        if os.access(TIME, os.X_OK):
            wrap = [TIME, "-f", "%M", "-o", str(rss_file)]
        else:
            wrap = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(rss_file)]
        p = subprocess.Popen(
            [*wrap, *cmd], stdout=so, stderr=se, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        killed = threading.Event()

        def kill():
            killed.set()
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        se.seek(0)
        err = se.read().decode(errors="replace")[-2000:]
    rss = None
    try:
        rss = int(rss_file.read_text().split()[-1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    rss_file.unlink(missing_ok=True)
    return {
        "wall": wall,
        "rss": rss,
        "exit": p.returncode,
        "timed_out": killed.is_set(),
        "stderr": err,
        "cpu": ru.ru_utime + ru.ru_stime,
        "loadavg": h.loadavg(),
    }


class Bench:
    def __init__(self, scratch: Path, step_limit: float):
        self.scratch = scratch
        self.step_limit = step_limit
        self.sheaf = str(h.sheaf_bin())
        self.env = h.server_env()
        self.n = 0

    def fresh(self, name: str) -> Path:
        self.n += 1
        return self.scratch / f"{name}-{self.n}"

    def sheaf_run(self, args: list[str], out: Path, ok_exits: tuple[int, ...] = (0,)) -> dict:
        r = measure([self.sheaf, *args], self.env, self.step_limit * 1.5, out)
        r["seconds"] = r["wall"]
        if r["exit"] not in ok_exits and not r["timed_out"]:
            raise RuntimeError(f"sheaf {' '.join(args)} failed (exit {r['exit']}): {r['stderr']}")
        return r

    def quilt3_run(self, op: str, name: str, reg: Path, arg: str, folder: str, out: Path) -> dict:
        home = self.fresh("q3home")
        env = dict(
            self.env,
            XDG_CACHE_HOME=str(home / "cache"),
            XDG_DATA_HOME=str(home / "data"),
            XDG_CONFIG_HOME=str(home / "config"),
            QUILT_DISABLE_USAGE_METRICS="true",
            QUILT_MINIMIZE_STDOUT="true",
        )
        r = measure([sys.executable, "-c", QUILT3, op, name, str(reg), arg, folder], env, self.step_limit * 1.5, out)
        rm(home)
        if r["timed_out"]:
            r["seconds"] = r["wall"]
            return r
        if r["exit"] != 0:
            raise RuntimeError(f"quilt3 {op} failed (exit {r['exit']}): {r['stderr']}")
        info = json.loads(out.read_text().strip().splitlines()[-1])
        r.update(
            seconds=info["seconds"],
            import_seconds=info["import_seconds"],
            baseline_rss=info["baseline_rss"],
            count=info["count"],
        )
        return r


# --------------------------------------------------------------------------
# One size
# --------------------------------------------------------------------------


def run_size(b: Bench, n: int, rounds: int, prev: dict | None, skip_quilt3: bool, wanted: tuple[str, ...] = ()) -> dict:
    """Measures the steps of `wanted` (every step when empty) at `n` files.
    Sheaf's push always runs (the read steps read what it pushed)."""
    src = tree(n)
    folder = folder_of(n)
    settle()  # after the previous size's trees were deleted
    res: dict = {"files": n, "folder": folder, "rounds": rounds, "steps": {}, "loadavg_start": h.loadavg()}
    res["warm_seconds"] = round(warm(src), 1)
    steps = res["steps"]

    def plan(step: str, tool: str) -> str | None:
        """None to run, else why not."""
        if tool == "quilt3" and skip_quilt3:
            return "not run (--quilt3-max-files)"
        if wanted and step not in wanted and not (step == "push" and tool == "sheaf"):
            return "not run (--steps)"
        if steps.get(step, {}).get(tool, {}).get("timed_out"):
            return "stopped at the limit in an earlier round"
        p = ((prev or {}).get("steps", {}).get(step, {}).get(tool)) or {}
        if p.get("skipped") or p.get("timed_out"):
            return f"not run (already over the limit at {prev['files']:,} files)"
        if p.get("seconds"):
            est = p["seconds"] * n / prev["files"]
            if est > b.step_limit:
                return f"not run: ~{est / 60:.0f} min expected (linear from {prev['files']:,} files)"
        return None

    def record(step: str, tool: str, r: dict | None, why: str | None = None) -> None:
        s = steps.setdefault(step, {}).setdefault(tool, {"samples": []})
        if why:
            s["skipped"] = why
            return
        r = {k: v for k, v in r.items() if k != "stderr"}
        s["samples"].append(r)
        if r.get("timed_out"):
            s["timed_out"] = True

    def finish(step: str) -> None:
        for s in steps.get(step, {}).values():
            ok = [x for x in s["samples"] if not x.get("timed_out")]
            if ok:

                def med(key, ok=ok):
                    vals = sorted(x[key] for x in ok if x.get(key) is not None)
                    return vals[len(vals) // 2] if vals else None

                s.update(
                    seconds=med("seconds"),
                    wall=med("wall"),
                    rss=med("rss"),
                    cpu=med("cpu"),
                    seconds_min=min(x["seconds"] for x in ok),
                    seconds_max=max(x["seconds"] for x in ok),
                    rss_max=max(x["rss"] for x in ok),
                    baseline_rss=med("baseline_rss"),
                )
            elif s.get("timed_out"):
                s["skipped"] = f"stopped after {b.step_limit * 1.5 / 60:.0f} min"

    # push / build: fresh registries each round, the last one kept for the read steps.
    s_reg = q_reg = None
    order = ["sheaf", "quilt3"]
    # Under --steps without push, one push makes the registry the steps read.
    for rnd in range(rounds if not wanted or "push" in wanted else 1):
        for tool in order if rnd % 2 == 0 else order[::-1]:
            why = plan("push", tool)
            if why:
                if rnd == 0:
                    record("push", tool, None, why)
                continue
            reg = b.fresh(f"{tool}-reg")
            h.progress(f"{n:,} files: push, {tool}, round {rnd + 1}/{rounds}")
            if tool == "sheaf":
                r = b.sheaf_run(["--registry", str(reg), "push", PKG_SHEAF, str(src)], b.fresh("out"))
                if s_reg:
                    rm(s_reg, n)
                s_reg = reg
            else:
                r = b.quilt3_run("push", PKG_QUILT, reg, str(src), "", b.fresh("out"))
                if q_reg:
                    rm(q_reg, n)
                q_reg = None if r.get("timed_out") else reg
                if r.get("timed_out"):
                    rm(reg, n)
            record("push", tool, r)
            settle()
            h.progress(f"  {r['seconds']:.2f} s, peak RSS {h.fmt_bytes(r['rss'])}")
    finish("push")
    if not wanted or {"push", "install"} & set(wanted):
        # A floor for writing a file per file: `cp -r` of the tree (no hashing,
        # no manifest), once per size.
        dest = b.fresh("cp")
        h.progress(f"{n:,} files: cp -r of the tree (reference)")
        t = time.perf_counter()
        subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
        res["cp_seconds"] = round(time.perf_counter() - t, 2)
        h.progress(f"  {res['cp_seconds']:.2f} s")
        rm(dest, n)
        settle()
    if s_reg is None:
        raise RuntimeError("sheaf push did not run")
    manifests = list((s_reg / ".quilt" / "packages").iterdir())
    res["manifest_bytes"] = manifests[0].stat().st_size
    res["registry_files"] = count_files(s_reg)
    # quilt3 reads its own package when it built one at this size, else Sheaf's.
    q_src = (q_reg, PKG_QUILT) if q_reg else (s_reg, PKG_SHEAF)
    res["quilt3_reads"] = "its own build" if q_reg else "the package Sheaf pushed"

    for step in READ_STEPS:
        for rnd in range(rounds):
            for tool in order if rnd % 2 == 0 else order[::-1]:
                why = plan(step, tool)
                if why:
                    if rnd == 0:
                        record(step, tool, None, why)
                    continue
                h.progress(f"{n:,} files: {step}, {tool}, round {rnd + 1}/{rounds}")
                out = b.fresh("out")
                dest = b.fresh("dest")
                if tool == "sheaf" and step == "table":
                    r = sheaf_table(b, s_reg, out)
                elif tool == "sheaf":
                    ref = PKG_SHEAF + (f"/{folder}" if step == "install_folder" else "")
                    args = {
                        "install": ["install", ref, "--dest", str(dest)],
                        "install_folder": ["install", ref, "--dest", str(dest)],
                        "browse_folder": ["browse", ref, folder],
                        "browse": ["browse", ref],
                        "load": ["browse", ref, "none/"],
                    }[step]
                    # The manifest load browses a prefix that selects nothing: not found (3).
                    ok_exits = (0, 3) if step == "load" else (0,)
                    r = b.sheaf_run(["--registry", str(s_reg), *args], out, ok_exits)
                    if step == "browse_folder":
                        r["count"] = sum(1 for line in out.read_text().splitlines() if f" {folder}/" in line)
                    elif step == "browse":
                        # Entry lines start with the right-aligned size.
                        with out.open() as f:
                            r["count"] = sum(1 for line in f if line[:12].strip().isdigit())
                    elif step == "load":
                        r["count"] = None
                else:
                    arg = {
                        "browse_folder": str(out.with_suffix(".list")),
                        "browse": str(out.with_suffix(".list")),
                        "table": str(out.with_suffix(".arrow")),
                    }
                    r = b.quilt3_run(step, q_src[1], q_src[0], arg.get(step, str(dest)), folder, out)
                    if step == "table" and not r.get("timed_out"):
                        r["count"] = pa_rows(out.with_suffix(".arrow"))
                if step.startswith("install") and not r.get("timed_out"):
                    r["count"] = count_files(dest)
                want = {
                    "install": n,
                    "install_folder": PER_FOLDER,
                    "browse_folder": PER_FOLDER,
                    "browse": n,
                    "table": n,
                }
                want = want.get(step)
                if want is not None and not r.get("timed_out") and r.get("count") != want:
                    raise RuntimeError(f"{tool} {step} at {n} files: {r.get('count')} files/entries, expected {want}")
                rm(dest, r.get("count") or 0)
                rm(out.with_suffix(".list"))
                rm(out.with_suffix(".arrow"))
                record(step, tool, r)
                settle()
                h.progress(f"  {r['seconds']:.2f} s, peak RSS {h.fmt_bytes(r['rss'])}")
        finish(step)

    if s_reg:
        rm(s_reg, n)
    if q_reg:
        rm(q_reg, n)
    res["loadavg_end"] = h.loadavg()
    return res


def pa_rows(path: Path) -> int:
    import pyarrow as pa

    with pa.memory_map(str(path)) as f:
        return pa.ipc.open_file(f).read_all().num_rows


def sheaf_table(b: Bench, registry: Path, out: Path) -> dict:
    """`sheaf get` of the manifest table from a fresh server over `registry`:
    the client process timed, the server's peak RSS reported."""
    server = h.start_sheaf(registry, b.fresh("serve-logs"))
    try:
        arrow = out.with_suffix(".arrow")
        r = b.sheaf_run(["get", f"sheaf://{PKG_SHEAF}", "--server", server.url, "--out", str(arrow)], out)
        r["client_rss"] = r["rss"]
        r["rss"] = server.hwm()
        if not r.get("timed_out"):
            r["count"] = pa_rows(arrow)
    finally:
        server.stop()
    return r


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def fmt_s(s: dict | None) -> str:
    if not s:
        return "n/a"
    if s.get("skipped"):
        return s["skipped"]
    if s["seconds_min"] != s["seconds_max"]:
        return f"{s['seconds']:.2f} ({s['seconds_min']:.2f}-{s['seconds_max']:.2f})"
    return f"{s['seconds']:.2f}"


def ok(s: dict | None) -> bool:
    return bool(s) and not s.get("skipped") and s.get("seconds") is not None


def slope(sizes: list[dict], step: str, tool: str) -> list[tuple[int, int, float]]:
    """(n1, n2, bytes per entry) of peak RSS between consecutive measured sizes."""
    pts = [(r["files"], r["steps"][step][tool]["rss"]) for r in sizes if ok(r["steps"].get(step, {}).get(tool))]
    return [(a[0], b[0], (b[1] - a[1]) / (b[0] - a[0])) for a, b in zip(pts, pts[1:], strict=False)]


def fmt_per_entry(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v / 1000:+.1f} kB/entry"
    return f"{v:+.0f} B/entry"


def short_n(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def report(opts, sizes: list[dict], params: dict) -> h.Result:
    res = h.Result("9", "scale", "Packages of many small files: Sheaf vs quilt3", opts.quick)
    res.params = params
    for r in sizes:
        # A step added after a size was measured has no figures there.
        for key, _, _ in STEPS:
            r["steps"].setdefault(key, {})
    for key, title, how in STEPS:
        # The largest size where both tools measured this step.
        both = [r for r in sizes if ok(r["steps"][key].get("sheaf")) and ok(r["steps"][key].get("quilt3"))]
        largest = sizes[-1]
        if both:
            r = both[-1]
            s, q = r["steps"][key]["sheaf"], r["steps"][key]["quilt3"]
            ratio = q["seconds"] / s["seconds"]
            extra = ""
            if r is not largest and ok(largest["steps"][key].get("sheaf")):
                extra = f"; Sheaf at {short_n(largest['files'])}: {largest['steps'][key]['sheaf']['seconds']:.2f} s"
            res.rows.append(
                h.Row(
                    f"{title[0].upper()}{title[1:]}, {short_n(r['files'])} files: {how}, s",
                    f"{s['seconds']:.2f}{extra}",
                    f"{q['seconds']:.2f} quilt3",
                    h.fmt_ratio(ratio),
                    f">= {TIME_GOAL:.0f}x",
                    "met" if ratio >= TIME_GOAL else "short",
                )
            )
        else:
            res.rows.append(h.Row(f"{title[0].upper()}{title[1:]}: {how}, s", "n/a", "quilt3 not measured", "n/a"))
    for key, title, _ in STEPS:
        both = [r for r in sizes if ok(r["steps"][key].get("sheaf")) and ok(r["steps"][key].get("quilt3"))]
        if not both:
            continue
        r = both[-1]
        s, q = r["steps"][key]["sheaf"], r["steps"][key]["quilt3"]
        ss, qs = slope(sizes, key, "sheaf"), slope(sizes, key, "quilt3")
        s_txt = h.fmt_bytes(s["rss"]) + (
            f" ({fmt_per_entry(ss[-1][2])} from {short_n(ss[-1][0])} to {short_n(ss[-1][1])})" if ss else ""
        )
        q_txt = (
            h.fmt_bytes(q["rss"])
            + (f" ({fmt_per_entry(qs[-1][2])} from {short_n(qs[-1][0])} to {short_n(qs[-1][1])})" if qs else "")
            + " quilt3"
        )
        res.rows.append(
            h.Row(
                f"Peak RSS, {title}, {short_n(r['files'])} files (growth per entry)",
                s_txt,
                q_txt,
                h.fmt_ratio(q["rss"] / s["rss"]),
            )
        )
    # One goal row: Sheaf's memory growth per entry, worst step, between its two largest sizes.
    worst = None
    for key, _title, _ in STEPS:
        ss = slope(sizes, key, "sheaf")
        if ss and (worst is None or ss[-1][2] > worst[1][2]):
            worst = (key, ss[-1])
    if worst:
        key, (n1, n2, v) = worst
        s1 = next(r for r in sizes if r["files"] == n1)["steps"][key]["sheaf"]["rss"]
        s2 = next(r for r in sizes if r["files"] == n2)["steps"][key]["sheaf"]["rss"]
        res.rows.append(
            h.Row(
                f"Sheaf peak RSS growth per entry, {short_n(n1)} -> {short_n(n2)} files, steepest step "
                f"({STEP_TITLE[key]})",
                f"{fmt_per_entry(v)} ({h.fmt_bytes(s1)} -> {h.fmt_bytes(s2)})",
                "constant memory",
                "-",
                f"<= {SLOPE_GOAL:.0f} B/entry",
                "met" if v <= SLOPE_GOAL else "short",
            )
        )

    # Detail tables.
    d = res.detail
    d += [
        f"Trees of tiny files ({PER_FOLDER} per folder, `pNN/sNN/NNNNNNN.txt`, content `i\\n`, 2-8 bytes), "
        f"cached in `$SHEAF_CACHE/bench-data/scale-v{TREE_VERSION}-N/`; page cache warm (every file read once "
        f"before each size). One process per step and tool; median of the rounds (min-max) where more than one. "
        f"quilt3 seconds are measured inside its process (interpreter start and `import quilt3` left out, "
        f"in quilt3's favour; the whole process is the column `quilt3 process s`); Sheaf's are the whole "
        f"`sheaf` process. Peak RSS is `ru_maxrss` of that process "
        f"(quilt3's includes Python and `import quilt3`: "
        f"{h.fmt_bytes(params.get('quilt3_import_rss'))} on its own), except Sheaf's in the manifest table "
        f"step: the server's (VmHWM), whose first read of a revision indexes its manifest. Ratios: quilt3 / Sheaf.",
        "",
    ]
    rows = []
    for r in sizes:
        for key, title, _ in STEPS:
            s, q = r["steps"][key].get("sheaf"), r["steps"][key].get("quilt3")
            tr = h.fmt_ratio(q["seconds"] / s["seconds"]) if ok(s) and ok(q) else "-"
            mr = h.fmt_ratio(q["rss"] / s["rss"]) if ok(s) and ok(q) else "-"
            rows.append(
                [
                    f"{r['files']:,}",
                    title,
                    fmt_s(s),
                    f"{s['cpu']:.1f}" if ok(s) else "-",
                    h.fmt_bytes(s["rss"]) if ok(s) else "-",
                    fmt_s(q),
                    f"{q['wall']:.2f}" if ok(q) else "-",
                    f"{q['cpu']:.1f}" if ok(q) else "-",
                    h.fmt_bytes(q["rss"]) if ok(q) else "-",
                    tr,
                    mr,
                ]
            )
    d += h.md_table(
        [
            "files",
            "step",
            "Sheaf s",
            "Sheaf CPU-s",
            "Sheaf peak RSS",
            "quilt3 s",
            "quilt3 process s",
            "quilt3 CPU-s",
            "quilt3 peak RSS",
            "time ratio",
            "memory ratio",
        ],
        rows,
    )
    d += [
        "",
        "Peak RSS growth per entry between sizes (slope of peak RSS; the constant part, such as the "
        "interpreter, cancels out):",
        "",
    ]
    rows = []
    for key, title, _ in STEPS:
        for tool in ("sheaf", "quilt3"):
            for n1, n2, v in slope(sizes, key, tool):
                rows.append([title, tool, f"{short_n(n1)} -> {short_n(n2)}", fmt_per_entry(v)])
    d += h.md_table(["step", "tool", "sizes", "peak RSS growth"], rows) if rows else ["(one size only)"]
    d += ["", "Per size:", ""]
    for r in sizes:
        d.append(
            f"- {r['files']:,} files: manifest {h.fmt_bytes(r['manifest_bytes'])} "
            f"({r['manifest_bytes'] / r['files']:.0f} B/entry); Sheaf's registry {r['registry_files']:,} files; "
            f"folder `{r['folder']}`; {r['rounds']} round(s); quilt3 read {r['quilt3_reads']}; "
            f"load average {r['loadavg_start']} -> {r['loadavg_end']}."
        )
    skipped = [
        (r["files"], key, tool, r["steps"][key][tool]["skipped"])
        for r in sizes
        for key, _, _ in STEPS
        for tool in ("sheaf", "quilt3")
        if (r["steps"][key].get(tool) or {}).get("skipped") not in (None, "not run (--steps)")
    ]
    if skipped:
        d += ["", f"Not measured (step limit {params['step_limit_s'] / 60:.0f} min):", ""]
        d += [f"- {tool} {STEP_TITLE[key]} at {n:,} files: {why}." for n, key, tool, why in skipped]
    spread = []
    for r in sizes:
        for key, title, _ in STEPS:
            for tool in ("sheaf", "quilt3"):
                smp = [x for x in (r["steps"][key].get(tool) or {}).get("samples", []) if not x.get("timed_out")]
                top = max((x["seconds"] for x in smp), default=0)
                if len(smp) > 1 and top >= 1 and top > 1.5 * min(x["seconds"] for x in smp):
                    spread.append(
                        f"{tool} {title} at {short_n(r['files'])}: "
                        + ", ".join(
                            f"{x['seconds']:.1f} s ({x['cpu']:.0f} CPU-s, load {x['loadavg'].split()[0]})" for x in smp
                        )
                    )
    res.notes = [
        *([f"Merged report: {params['merged']}."] if params.get("merged") else []),
        "`sheaf push` copies every file into the registry (content-addressed blobs) and writes the manifest; "
        "quilt3 `build` only hashes and writes the manifest (its `push` needs S3), so the push row gives Sheaf "
        "more work.",
        "`sheaf install` verifies every file's hash while copying; quilt3 `install` does not, and also writes "
        "the manifest into its local registry.",
        "The machine has 2 cores shared with other builds (load average per size above); absolute times drift "
        "about 20% between runs.",
        f"After a tree of {SETTLE_FROM_FILES:,} files or more was deleted, the next step starts "
        f"{INODE_REUSE_WAIT:.0f} s after the deletion: this VM's ext4 (no journal) skips inodes freed in the last "
        "60 s, so a step right after one (as measured before this wait) was up to 9x slower for whichever tool "
        "came second.",
    ]
    if params.get("scratch_fs"):
        res.notes.append(
            f"Registries and install folders were on `{params['scratch_fs']}` (set with `SHEAF_SCALE_SCRATCH`)"
            + (f" for the steps measured {params['scratch_when']}" if params.get("scratch_when") else "")
            + "."
        )
    cp = [f"{short_n(r['files'])} {r['cp_seconds']:.1f} s" for r in sizes if r.get("cp_seconds")]
    if cp:
        res.notes.append(
            "For scale, `cp -r` of the same tree (no hashing, no manifest; a floor for any tool that writes a "
            "file per file, as push and install do): " + ", ".join(cp) + "."
        )
    if spread:
        res.notes.append(
            "Rounds more than 1.5x apart (the noise of a shared machine; CPU-s is the process's user + "
            "system time): " + "; ".join(spread) + "."
        )
    res.plot = {
        "sizes": [
            {
                "files": r["files"],
                **{
                    k: {
                        t: ({"seconds": v.get("seconds"), "rss": v.get("rss")} if ok(v) else None)
                        for t, v in r["steps"][k].items()
                    }
                    for k, _, _ in STEPS
                },
            }
            for r in sizes
        ]
    }
    return res


def quilt3_import_rss(b: Bench) -> int | None:
    out = b.fresh("out")
    r = measure([sys.executable, "-c", "import quilt3"], dict(b.env, QUILT_DISABLE_USAGE_METRICS="true"), 120, out)
    return r["rss"] if r["exit"] == 0 else None


def main() -> None:
    ap = h.common_args(__doc__)
    ap.add_argument("--sizes", help="comma-separated file counts (default: 2000,5000 quick; 10000,100000,1000000 full)")
    ap.add_argument(
        "--rounds", type=int, help="rounds at sizes up to 100k (default 1 quick, 3 full); larger sizes run once"
    )
    ap.add_argument("--step-limit", type=float, default=900, help="seconds one quilt3 step may take (default 900)")
    ap.add_argument("--quilt3-max-files", type=int, default=0, help="run quilt3 only up to this size (0: no limit)")
    ap.add_argument("--from-json", help="write the report again from a previous run's .json (no measuring)")
    ap.add_argument(
        "--steps", help=f"comma-separated steps to measure (default: all of {', '.join(k for k, _, _ in STEPS)})"
    )
    ap.add_argument(
        "--merge", help="a previous run's .json: the steps measured now replace its figures, the others are kept"
    )
    opts = ap.parse_args()
    if opts.from_json:
        prev = json.loads(Path(opts.from_json).read_text())
        # The report names the machine and binary of the run, not of this re-rendering.
        h.machine = lambda: prev["machine"]
        h.binary_facts = lambda: prev["binary"]
        report(opts, prev["params"]["results"], prev["params"]).write(opts.out)
        return
    h.check_sheaf_binary()
    sizes = [int(x) for x in (opts.sizes or ("2000,5000" if opts.quick else "10000,100000,1000000")).split(",")]
    wanted = tuple(x for x in (opts.steps or "").split(",") if x)
    unknown = set(wanted) - set(STEP_TITLE)
    if unknown:
        ap.error(f"unknown steps {', '.join(sorted(unknown))}; steps are {', '.join(STEP_TITLE)}")
    base_rounds = opts.rounds or (1 if opts.quick else 3)
    scratch = Path(tempfile.mkdtemp(prefix="sheaf-bench-scale-", dir=os.environ.get("SHEAF_SCALE_SCRATCH")))
    b = Bench(scratch, opts.step_limit)
    t0 = time.monotonic()
    results: list[dict] = []
    try:
        import_rss = quilt3_import_rss(b)
        for n in sizes:
            free = shutil.disk_usage(scratch).free
            need = n * 4096 * 3 + (0 if (h.DATA_CACHE / f"scale-v{TREE_VERSION}-{n}").is_dir() else n * 4096)
            if free < need * 1.2:
                h.progress(f"skipping {n:,} files: {free / 1e9:.0f} GB free, about {need / 1e9:.0f} GB needed")
                continue
            rounds = base_rounds if n <= 100_000 else 1
            skip_q = bool(opts.quilt3_max_files) and n > opts.quilt3_max_files
            results.append(run_size(b, n, rounds, results[-1] if results else None, skip_q, wanted))
    finally:
        if opts.keep:
            h.progress(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    findmnt = ["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", str(scratch.parent)]
    fs = subprocess.run(findmnt, capture_output=True)
    params = {
        "scratch_fs": fs.stdout.decode().strip() or None,
        "sizes": sizes,
        "per_folder": PER_FOLDER,
        "step_limit_s": opts.step_limit,
        "quilt3_import_rss": import_rss,
        "seconds": round(time.monotonic() - t0, 1),
        "results": results,
    }
    if opts.merge:
        results, params = merged(json.loads(Path(opts.merge).read_text()), results, params, wanted)
    report(opts, results, params).write(opts.out)


def merged(prev: dict, results: list[dict], params: dict, wanted: tuple[str, ...]) -> tuple[list[dict], dict]:
    """The previous run's results with the steps measured now (`wanted`)
    replaced, at the sizes both runs have; the sizes only this run has are
    added. `params["step_dates"]` says when (and by which commit) each step
    was measured, carried over from merge to merge; the notes show it."""
    old = {r["files"]: r for r in prev["params"]["results"]}
    for r in results:
        if r["files"] in old:
            for step in wanted or STEP_TITLE:
                old[r["files"]]["steps"][step] = r["steps"][step]
            if "cp_seconds" in r:
                old[r["files"]]["cp_seconds"] = r["cp_seconds"]
        else:
            old[r["files"]] = r
    out = [old[n] for n in sorted(old)]
    then = f"{prev['machine']['date']} ({prev['binary']['commit']})"
    dates = dict(prev["params"].get("step_dates") or {k: then for k in STEP_TITLE})
    binary = h.binary_facts()
    for k in wanted or STEP_TITLE:
        dates[k] = f"{time.strftime('%Y-%m-%d %H:%M')} ({binary['commit']})"
    params = dict(prev["params"], results=out, sizes=sorted(old), step_dates=dates, scratch_fs=params.get("scratch_fs"))
    params["scratch_when"] = f"{time.strftime('%Y-%m-%d %H:%M')} ({', '.join(wanted or STEP_TITLE)})"
    by_date: dict[str, list[str]] = {}
    for k, when in dates.items():
        by_date.setdefault(when, []).append(STEP_TITLE.get(k, k))
    params["merged"] = "; ".join(f"{', '.join(v)} measured {when}" for when, v in sorted(by_date.items()))
    return out, params


if __name__ == "__main__":
    main()
