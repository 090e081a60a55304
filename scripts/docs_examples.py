"""Runs the examples of Sheaf's READMEs against `sheaf serve --demo`, so the docs cannot drift.

    bash scripts/test-docs [-v] [--timeout SECONDS] [FILE.md[:LINE] ...]

Without files: README.md, clients/*/README.md and benches/README.md. FILE.md:LINE runs
only the block whose opening fence is on LINE (blocks that need files an earlier block
of the page wrote then fail).

Which fenced blocks run (the fence's info string: a language, then optional words):

- ```sh, ```bash, ```shell: one bash script per block, `set -eu -o pipefail`;
- ```console: the lines starting with "$ " are commands (a line ending in "\\" continues
  one); the other lines are output and are not compared;
- ```python, ```py: one process of the venv's python per block;
- ```java: compiled with javac and run with java against the JVM client's and Spark
  connector's classpath (clients/jvm must be built: clients/jvm/ci/test.sh). A block
  declaring a class runs that class's main(); any other block becomes the body of a
  main(), its imports kept on top;
- ```text and every other language (toml, scala, sql, ...): not run;
- `no-test` after the language (```sh no-test): not run; the text next to the block says
  why. Keep these few.

What the examples may assume, as a reader who ran the top-level README's quickstart:

- `sheaf` is on the PATH (SHEAF_BIN), and so are the venv's `python` and `pip` (the venv
  of scripts/test, where clients/python/ci/test.sh installed the Python client and
  clients/jvm/ci/test.sh installed PySpark);
- a server with the demo package (`sheaf serve --demo`, which pushes `demo/weather`)
  listens on grpc://127.0.0.1:50051. The runner starts one per Markdown file on a free
  port instead, with a fresh default registry, and rewrites `127.0.0.1:50051` and
  `localhost:50051` in the blocks to it (SHEAF_SERVER, which `sheaf get` reads, names it
  too). A block whose every command is a foreground `sheaf serve ...` starts (or
  restarts) that server with exactly that command instead of waiting for it to end;
- the current folder is the repository root: blocks run in a scratch folder holding a
  symbolic link to each top-level entry of the checkout (so `clients/jvm/...` resolves),
  where the files they write land. All blocks of one Markdown file share it, in order.

A failing block is reported as FILE:LINE (its opening fence) with the tail of its output;
line numbers inside that output (Python tracebacks, bash's "line N", javac) are lines of
the Markdown file. The exit status is 1 when a block failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILES = ["README.md", *sorted(glob.glob("clients/*/README.md", root_dir=ROOT)), "benches/README.md"]

SHELL = {"sh", "bash", "shell", "zsh"}
CONSOLE = {"console", "shell-session"}
PYTHON = {"python", "py", "python3"}
JAVA = {"java"}
NO_TEST = "no-test"
DOCS_PORT = "50051"
SERVE_RE = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*sheaf\s+serve\b(?!.*&\s*(?:#.*)?$)")
URL_RE = re.compile(r"grpc(?:\+tls)?://[^\s\"']+")
# Variables of the caller's environment that would point the examples elsewhere.
SCRUBBED = ("SHEAF_REGISTRY", "SHEAF_SERVER", "SHEAF_TOKEN", "SHEAF_AUTH", "SHEAF_LISTEN", "SHEAF_CACHE_MIB")


@dataclass
class Block:
    path: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    words: list[str]
    lines: list[str]  # content, dedented by the fence's indentation

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def commands(self) -> list[str | None]:
        """Shell lines to run, one per content line (None for console output lines)."""
        if self.lang not in CONSOLE:
            return list(self.lines)
        out: list[str | None] = []
        continued = False
        for text in self.lines:
            if continued:
                out.append(text)
            elif text.startswith("$ ") or text == "$":
                out.append(text[2:])
            else:
                out.append(None)
                continue
            continued = text.rstrip().endswith("\\")
        return out

    def serve_command(self) -> str | None:
        """The command of a server block (every command a foreground `sheaf serve`), else None."""
        if self.lang not in SHELL | CONSOLE:
            return None
        joined = "\n".join(c for c in self.commands() if c is not None)
        commands = [c.strip() for c in re.sub(r"\\\n", " ", joined).splitlines()]
        commands = [c for c in commands if c and not c.startswith("#")]
        if len(commands) == 1 and SERVE_RE.match(commands[0]):
            return commands[0]
        return None


def parse(path: str) -> list[Block]:
    """Fenced code blocks of a Markdown file (CommonMark fences: ``` or ~~~, indented or not)."""
    text = (ROOT / path).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(text):
        m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([^`]*)$", text[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).split()
        start, body = i + 1, []
        i += 1
        while i < len(text) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", text[i]):
            line = text[i]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            i += 1
        i += 1  # the closing fence
        lang = info[0].lower() if info else ""
        blocks.append(Block(path, start, lang, [w.lower() for w in info[1:]], body))
    return blocks


class Failure(Exception):
    pass


def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stops a process and everything it started (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children it left in the group may remain.
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


class Page:
    """One Markdown file's run: its scratch folder, environment and server."""

    def __init__(self, path: str, args: argparse.Namespace, java: Java):
        self.path, self.args, self.java = path, args, java
        self.scratch = Path(tempfile.mkdtemp(prefix="sheaf-docs-"))
        for entry in ROOT.iterdir():
            if entry.name not in (".git", "target"):
                (self.scratch / entry.name).symlink_to(entry)
        self.hidden = self.scratch / ".sheaf-docs"
        (self.hidden / "bin").mkdir(parents=True)
        (self.hidden / "bin" / "sheaf").symlink_to(args.sheaf)
        venv_bin = str(Path(args.python).parent)
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        env.update(
            PATH=os.pathsep.join([str(self.hidden / "bin"), venv_bin, os.environ.get("PATH", "")]),
            VIRTUAL_ENV=str(Path(venv_bin).parent),
            XDG_DATA_HOME=str(self.hidden / "data"),  # the default registry: fresh for each page
            SHEAF_BIN=args.sheaf,
            PYTHONUNBUFFERED="1",
        )
        self.env = env
        self.server: subprocess.Popen | None = None
        self.port: str | None = None

    def close(self) -> None:
        self.stop_server()
        if self.args.keep:
            print(f"   scratch folder kept: {self.scratch}")
        else:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # The server

    def start_server(self, command: str, where: str) -> None:
        self.stop_server()
        command = command.replace(f"127.0.0.1:{DOCS_PORT}", "127.0.0.1:0").replace(
            f"localhost:{DOCS_PORT}", "127.0.0.1:0"
        )
        n = len(list(self.hidden.glob("server-*.out")))
        out, err = self.hidden / f"server-{n}.out", self.hidden / f"server-{n}.log"
        env = {**self.env, "SHEAF_LISTEN": "127.0.0.1:0"}
        with open(out, "wb") as o, open(err, "wb") as e:
            self.server = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            m = URL_RE.search(out.read_text(errors="replace"))
            if m:
                url = m.group(0)
                self.port = url.rsplit(":", 1)[1].rstrip("/")
                self.env["SHEAF_SERVER"] = url
                return
            if self.server.poll() is not None:
                break
            time.sleep(0.1)
        code = self.server.poll()
        self.stop_server()
        log = tail(out.read_text(errors="replace") + err.read_text(errors="replace"))
        state = f"exited with {code}" if code is not None else f"printed no URL in {self.args.timeout:.0f}s"
        raise Failure(f"{where}: `{command}` {state}\n{log}")

    def stop_server(self) -> None:
        if self.server is not None:
            kill_group(self.server, grace=30)
            self.server = None
            self.port = None
            self.env.pop("SHEAF_SERVER", None)

    # Blocks

    def source(self, block: Block, commands: list[str | None] | None = None) -> list[str]:
        """The block's lines with the docs' server address pointed at this page's server."""
        lines = [c if c is not None else "" for c in commands] if commands is not None else block.lines
        if self.port is None:
            return list(lines)
        return [
            ln.replace(f"127.0.0.1:{DOCS_PORT}", f"127.0.0.1:{self.port}").replace(
                f"localhost:{DOCS_PORT}", f"localhost:{self.port}"
            )
            for ln in lines
        ]

    def run(self, block: Block) -> None:
        serve = block.serve_command()
        if serve is not None:
            self.start_server(serve, block.where)
            return
        if self.server is None:
            self.start_server("sheaf serve --demo", f"{block.where} (starting the page's demo server)")
        stem = f"{Path(block.path).as_posix().replace('/', '_')}-L{block.line}"
        pad = [""] * block.line  # so that line N of the script is line N of the Markdown file
        if block.lang in PYTHON:
            script = self.hidden / f"{stem}.py"
            script.write_text("\n".join(pad + self.source(block)) + "\n")
            self.execute(block, [self.args.python, str(script)], script)
        elif block.lang in SHELL | CONSOLE:
            script = self.hidden / f"{stem}.sh"
            trap = "trap 'echo \"failed: line $LINENO: $BASH_COMMAND\" >&2' ERR"
            script.write_text("\n".join([trap] + pad[1:] + self.source(block, block.commands())) + "\n")
            self.execute(block, ["bash", "-eu", "-o", "pipefail", str(script)], script)
        elif block.lang in JAVA:
            self.run_java(block, stem, pad)

    def run_java(self, block: Block, stem: str, pad: list[str]) -> None:
        classpath, flags = self.java.setup()
        lines = self.source(block)
        folder = self.hidden / stem
        (folder / "classes").mkdir(parents=True)
        declared = re.search(r"^\s*(?:public\s+)?(?:final\s+)?class\s+(\w+)", "\n".join(lines), re.M)
        if declared:
            main = declared.group(1)
            body = pad + lines
        else:
            # The body of a main(): its imports and the class's head go on the fence's line,
            # so that every other line keeps its number.
            main = "Example"
            imports = {i for i, ln in enumerate(lines) if re.match(r"^\s*import\s+[\w.*\s]+;\s*$", ln)}
            head = " ".join([*(lines[i].strip() for i in sorted(imports)), f"public class {main} {{"])
            head += " public static void main(String[] args) throws Exception {"
            body = pad[:-1] + [head] + ["" if i in imports else ln for i, ln in enumerate(lines)] + ["}}"]
        source = folder / f"{main}.java"
        source.write_text("\n".join(body) + "\n")
        self.execute(
            block,
            ["javac", "-nowarn", "-d", str(folder / "classes"), "-cp", classpath, str(source)],
            source,
            what="javac",
        )
        cp = os.pathsep.join([str(folder / "classes"), classpath])
        self.execute(block, ["java", *flags, "-cp", cp, main], source)

    def execute(self, block: Block, argv: list[str], script: Path, what: str = "") -> None:
        proc = subprocess.Popen(
            argv,
            cwd=self.scratch,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=self.args.timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            kill_group(proc)
            output, _ = proc.communicate()
            code = None
        finally:
            kill_group(proc)  # whatever the block left running in the background
        text = output.decode(errors="replace").replace(str(script), block.path)
        if self.args.verbose and text.strip():
            print(indent(text))
        if code != 0:
            state = f"timed out after {self.args.timeout:.0f}s" if code is None else f"exit status {code}"
            step = f" ({what})" if what else ""
            raise Failure(
                f"{block.where}: {block.lang} block failed{step}: {state}"
                f" (line numbers below are lines of {block.path})\n{tail(text)}"
            )


class Java:
    """The JVM client's classpath (asked of Maven once) and the JVM flags of clients/jvm/pom.xml."""

    def __init__(self, m2: Path):
        self.m2 = m2
        self.result: tuple[str, list[str]] | Failure | None = None

    def setup(self) -> tuple[str, list[str]]:
        if self.result is None:
            try:
                self.result = self._setup()
            except Failure as e:
                self.result = e
        if isinstance(self.result, Failure):
            raise self.result
        return self.result

    def _setup(self) -> tuple[str, list[str]]:
        jvm = ROOT / "clients" / "jvm"
        for tool in ("javac", "java", "mvn"):
            if shutil.which(tool) is None:
                raise Failure(f"{tool} is not on the PATH (Java 17 and Maven are needed for the java examples)")
        modules = [m for m in ("sheaf-client", "sheaf-spark") if (jvm / m / "pom.xml").is_file()]
        entries: list[str] = [str(jvm / m / "target" / "classes") for m in modules]
        missing = [e for e in entries if not Path(e).is_dir()]
        if missing:
            raise Failure(f"clients/jvm is not built ({missing[0]} is missing): run bash clients/jvm/ci/test.sh first")
        with tempfile.TemporaryDirectory() as tmp:
            for m in modules:
                out = Path(tmp) / f"{m}.classpath"
                base = ["mvn", "-q", "-B", f"-Dmaven.repo.local={self.m2}", "-f", str(jvm / m / "pom.xml")]
                goal = ["dependency:build-classpath", f"-Dmdep.outputFile={out}"]
                # Offline first (CI's JVM step has just filled the repository), then online.
                for extra in (["-o"], []):
                    proc = subprocess.run(base + extra + goal, capture_output=True, text=True)
                    if proc.returncode == 0:
                        break
                else:
                    raise Failure(f"mvn dependency:build-classpath failed in clients/jvm/{m}\n{tail(proc.stdout)}")
                entries += [e for e in out.read_text().strip().split(os.pathsep) if e and e not in entries]
        pom = (jvm / "pom.xml").read_text()
        m = re.search(r"<sheaf\.test\.jvm\.flags>(.*?)</sheaf\.test\.jvm\.flags>", pom, re.S)
        flags = m.group(1).split() if m else ["--add-opens=java.base/java.nio=ALL-UNNAMED"]
        return os.pathsep.join(entries), flags


def tail(text: str, n: int = 60) -> str:
    lines = text.rstrip().splitlines()
    cut = [f"[... {len(lines) - n} earlier lines ...]"] if len(lines) > n else []
    return indent("\n".join(cut + lines[-n:]))


def indent(text: str) -> str:
    return "\n".join("   | " + ln for ln in text.rstrip().splitlines())


def main() -> int:
    cache = Path(os.environ.get("SHEAF_CACHE", Path.home() / ".cache" / "sheaf"))
    target = Path(os.environ.get("CARGO_TARGET_DIR", cache / "target"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", metavar="FILE.md[:LINE]", help="default: " + " ".join(DEFAULT_FILES))
    ap.add_argument("-v", "--verbose", action="store_true", help="show every block's output")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one block may take (default 900)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    ap.add_argument("--sheaf", default=os.environ.get("SHEAF_BIN") or str(target / "release" / "sheaf"))
    ap.add_argument("--python", default=os.environ.get("SHEAF_PYTHON") or str(cache / "venv" / "bin" / "python"))
    args = ap.parse_args()
    # Stopped from outside: unwind, so that the servers and blocks started here are stopped too.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    args.sheaf = os.path.abspath(args.sheaf)
    if not os.access(args.sheaf, os.X_OK):
        print(f"test-docs: no sheaf binary at {args.sheaf} (set SHEAF_BIN)", file=sys.stderr)
        return 2
    if not os.access(args.python, os.X_OK):
        print(f"test-docs: no Python at {args.python} (run scripts/test once, or set SHEAF_PYTHON)", file=sys.stderr)
        return 2
    args.python = os.path.abspath(args.python)

    selected: list[tuple[str, int | None]] = []
    for spec in args.files or DEFAULT_FILES:
        name, _, line = spec.partition(":")
        # Relative to the current folder, else to the repository root (the defaults are).
        found = name if os.path.exists(name) else str(ROOT / name)
        rel = os.path.relpath(os.path.abspath(found), ROOT)
        if not (ROOT / rel).is_file():
            print(f"test-docs: no such file: {name}", file=sys.stderr)
            return 2
        selected.append((rel, int(line) if line else None))

    java = Java(cache / "m2")
    failures: list[str] = []
    ran = skipped = 0
    not_run: dict[str, int] = {}
    for path, only in selected:
        blocks = [b for b in parse(path) if only is None or b.line == only]
        if only is not None and not blocks:
            print(f"test-docs: no fenced block opens on {path}:{only}", file=sys.stderr)
            return 2
        runnable = [b for b in blocks if b.lang in SHELL | CONSOLE | PYTHON | JAVA and NO_TEST not in b.words]
        print(f"== {path}: {len(runnable)} of {len(blocks)} blocks to run")
        page = Page(path, args, java) if runnable else None
        try:
            for b in blocks:
                if b.lang not in SHELL | CONSOLE | PYTHON | JAVA:
                    if b.lang not in ("", "text", "txt", "output"):
                        not_run[b.lang] = not_run.get(b.lang, 0) + 1
                    continue
                if NO_TEST in b.words:
                    print(f"   skip {b.where} {b.lang} ({NO_TEST})")
                    skipped += 1
                    continue
                assert page is not None
                t0 = time.monotonic()
                ran += 1
                if args.verbose:
                    print(f"   run  {b.where} {b.lang}")
                try:
                    page.run(b)
                except Failure as e:
                    print(f"   FAIL {e}")
                    failures.append(b.where)
                    continue
                kind = " (server: " + str(page.env.get("SHEAF_SERVER")) + ")" if b.serve_command() else ""
                print(f"   ok   {b.where} {b.lang}{kind} {time.monotonic() - t0:.1f}s")
        finally:
            if page is not None:
                page.close()

    others = ", ".join(f"{lang} {n}" for lang, n in sorted(not_run.items()))
    print(
        f"\ntest-docs: {ran} blocks ran, {len(failures)} failed, {skipped} marked {NO_TEST}"
        + (f"; not runnable here: {others}" if others else "")
    )
    for where in failures:
        print(f"FAILED: {where}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
