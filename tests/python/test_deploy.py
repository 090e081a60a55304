"""deploy/: the Helm chart, the compose file, the Dockerfile and the image's command line.

    bash scripts/test-deploy            # installs the tools once, then runs this module

What runs here, on a machine with no container engine and no Kubernetes cluster:

- the Helm chart (deploy/helm/sheaf): `helm lint --strict`, and renders with the least a
  working install needs (ci/minimal-values.yaml), with every optional part on
  (ci/full-values.yaml: autoscaling, ServiceMonitor, TLS, auth, storage Secret) and with
  existing Secrets, each validated with kubernetes-validate --strict against Kubernetes
  1.30 (the ServiceMonitor, a CRD without a schema there, by hand), plus the references
  between the objects; broken values files must be refused; the rendered sheaf.toml of
  the minimal and full cases starts the real server (TLS from trustme, S3 from moto);
- deploy/compose.yaml against the compose-spec schema (check-jsonschema), and its
  cross-references (depends_on, the replicas' advertise/peer/ports, Prometheus' targets);
- deploy/Dockerfile's stages, paths, ports and build context (.dockerignore);
- the image's exact command line (ENTRYPOINT + CMD) with deploy/sheaf.toml and sheaf-a's
  environment from the compose file, against moto's S3 on loopback: a Flight read,
  /metrics, /healthz, /readyz, the HEALTHCHECK, and the drain after SIGTERM.

The tools come from environment variables that scripts/test-deploy sets: SHEAF_HELM,
SHEAF_KUBERNETES_VALIDATE, SHEAF_CHECK_JSONSCHEMA, SHEAF_GRPC_HEALTH_PROBE. Without them
(a plain `pytest tests/python`, which scripts/test runs before scripts/test-deploy) the
tests that need them are skipped; the others run. The command-line tests need a sheaf
binary with `serve --config` (SHEAF_BIN) and are skipped, saying so, with an older one.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from ops_lib import http_get
from sheaf_testlib import LIVE_SERVERS, REPO, SHEAF_BIN, FlightServer, base_env, free_port, pyarrow_flight

yaml = pytest.importorskip("yaml", reason="PyYAML (installed with moto[server]) parses the chart and compose files")

DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "sheaf"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
IMAGE_CONFIG = DEPLOY / "sheaf.toml"
KUBE_VERSION = "1.30.0"
FLIGHT_SERVICE = "arrow.flight.protocol.FlightService"

# The chart's values cases: (values files under the chart, release, namespace).
CASES = {
    "minimal": (["ci/minimal-values.yaml"], "sheaf", "default"),
    "full": (["ci/full-values.yaml"], "prod", "data"),
    "existing-secrets": (["ci/existing-secrets-values.yaml"], "lake", "lake"),
}

# `sheaf serve`'s long flags as of the replica features, for the key checks when the
# binary at hand is older (the binary's own --help is used when it has --config).
SPEC_SERVE_FLAGS = frozenset(
    "config listen registry advertise peer peer-dns placement allow demo metrics-listen "
    "max-concurrent-requests cache-mib max-concurrent-scans max-open-scans stall-timeout "
    "query-timeout sql-memory-mib sql-timeout sql-max-queries drain-delay shutdown-grace "
    "log-json otlp-endpoint auth tls-cert tls-key tls-client-ca peer-ca insecure-anonymous json".split()
)


# --------------------------------------------------------------------------
# Tools and the binary
# --------------------------------------------------------------------------


def tool(var: str) -> str:
    """The tool named by `var`; skipped when unset (scripts/test-deploy sets it)."""
    path = os.environ.get(var)
    if not path:
        pytest.skip(f"{var} is not set: bash scripts/test-deploy installs the deploy tools and runs these tests")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{var}={path} is not an executable file")
    return path


def run(cmd, *, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    cmd = [str(c) for c in cmd]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        err = f"{e.stderr or ''}\ntimed out after {timeout}s"
        return subprocess.CompletedProcess(cmd, -9, str(e.stdout or ""), err)


def show(r: subprocess.CompletedProcess) -> str:
    out, err = r.stdout[-6000:], r.stderr[-6000:]
    return f"command: {shlex.join(r.args)}\nexit: {r.returncode}\nstdout:\n{out}\nstderr:\n{err}"


@cache
def serve_help() -> str:
    """`sheaf serve --help`, or "" when there is no binary."""
    if not SHEAF_BIN.is_file():
        return ""
    r = run([SHEAF_BIN, "serve", "--help"], env=base_env(), timeout=30)
    return r.stdout if r.returncode == 0 else ""


def binary_has_config() -> bool:
    return re.search(r"^\s+--config\b", serve_help(), re.M) is not None


def need_config_support():
    if not SHEAF_BIN.is_file():
        pytest.fail(f"sheaf binary not found at {SHEAF_BIN}: build it (cargo build --release) or set SHEAF_BIN")
    if not binary_has_config():
        pytest.skip(
            f"{SHEAF_BIN} has no `serve --config` (a build from before the replica features): "
            "set SHEAF_BIN to a newer build to run the image's command line"
        )


@cache
def serve_flags() -> frozenset[str]:
    """Long flags of `sheaf serve` (from its --help when it has --config)."""
    if binary_has_config():
        flags = set(re.findall(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)", serve_help(), re.M))
        return frozenset(flags - {"help"})
    return SPEC_SERVE_FLAGS


def config_keys() -> frozenset[str]:
    """Keys a --config file may hold: serve's long flags and registry (not config, help
    or the global --json)."""
    return frozenset((serve_flags() | {"registry"}) - {"config", "help", "json"})


def env_var(flag: str) -> str:
    return "SHEAF_" + flag.upper().replace("-", "_")


# --------------------------------------------------------------------------
# The Dockerfile
# --------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    env: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[str | None, list[str], str]] = field(default_factory=list)  # (--from, sources, dest)
    runs: list[str] = field(default_factory=list)
    user: str | None = None
    expose: list[str] = field(default_factory=list)
    healthcheck: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    stopsignal: str | None = None


def _exec_form(text: str, what: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        pytest.fail(f"Dockerfile: {what} must be in exec form (a JSON array), got {text!r}")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{what}: {text!r}"
    return value


@cache
def dockerfile() -> tuple[Stage, ...]:
    """The stages of deploy/Dockerfile (the instructions this test needs)."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") and not current:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    stages: list[Stage] = []
    for line in lines:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert m, f"Dockerfile: FROM {rest}"
            stages.append(Stage(base=m[1], name=m[2]))
            continue
        assert stages, f"Dockerfile: {op} before the first FROM"
        stage = stages[-1]
        if op == "ENV":
            for word in shlex.split(rest):
                key, eq, value = word.partition("=")
                assert eq, f"Dockerfile: ENV {rest!r} should use KEY=VALUE"
                stage.env[key] = value
        elif op == "COPY":
            words = shlex.split(rest)
            flags = {w.split("=", 1)[0]: w.split("=", 1)[1] if "=" in w else "" for w in words if w.startswith("--")}
            paths = [w for w in words if not w.startswith("--")]
            stage.copies.append((flags.get("--from"), paths[:-1], paths[-1]))
        elif op == "RUN":
            stage.runs.append(rest)
        elif op == "USER":
            stage.user = rest
        elif op == "EXPOSE":
            stage.expose += rest.split()
        elif op == "HEALTHCHECK":
            _, _, command = rest.partition(" CMD ")
            stage.healthcheck = _exec_form(command.strip(), "HEALTHCHECK CMD")
        elif op == "ENTRYPOINT":
            stage.entrypoint = _exec_form(rest, "ENTRYPOINT")
        elif op == "CMD":
            stage.cmd = _exec_form(rest, "CMD")
        elif op == "STOPSIGNAL":
            stage.stopsignal = rest
    return tuple(stages)


def runtime_stage() -> Stage:
    return dockerfile()[-1]


def image_path_map() -> dict[str, Path]:
    """The runtime image's files that this machine has: the sheaf binary, the config
    file copied from the checkout and (when installed) grpc-health-probe."""
    out: dict[str, Path] = {}
    for source, paths, dest in runtime_stage().copies:
        if source is None:
            assert len(paths) == 1, paths
            out[dest] = REPO / paths[0]
        elif paths[-1].endswith("/sheaf"):
            out[dest] = SHEAF_BIN
        elif paths[-1].endswith("/grpc-health-probe") and os.environ.get("SHEAF_GRPC_HEALTH_PROBE"):
            out[dest] = Path(os.environ["SHEAF_GRPC_HEALTH_PROBE"])
    return out


def image_config() -> dict:
    return tomllib.loads(IMAGE_CONFIG.read_text())


def port_of(addr: str) -> int:
    m = re.search(r":(\d+)/?$", addr)
    assert m, f"no port in {addr!r}"
    return int(m[1])


def duration_s(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    assert m, f"not a simple duration: {text!r}"
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]


class DockerIgnore:
    """.dockerignore as Docker reads it: the last pattern matching a path or one of
    its parent folders decides, `!` re-includes."""

    def __init__(self, text: str):
        self.rules = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            regex = "".join(
                ".*" if part == "**" else re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
                for part in re.split(r"(\*\*)", pattern)
            )
            self.rules.append((re.compile(regex.replace(".*/", "(.*/)?") + "$"), negate))

    def excluded(self, path: str) -> bool:
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        state = False
        for regex, negate in self.rules:
            if any(regex.match(c) for c in candidates):
                state = not negate
        return state


def test_dockerfile_stages_paths_and_ports():
    stages = dockerfile()
    names = {s.name for s in stages if s.name}
    runtime = runtime_stage()
    assert runtime.base.startswith("gcr.io/distroless/cc-debian12") and runtime.base.endswith(":nonroot"), runtime.base
    assert runtime.user and runtime.user.split(":")[0] in ("nonroot", "65532"), runtime.user
    assert runtime.entrypoint == ["/usr/local/bin/sheaf", "serve"], runtime.entrypoint
    assert runtime.cmd is not None and runtime.cmd[0] == "--config", runtime.cmd
    assert runtime.stopsignal in (None, "SIGTERM")

    # Every COPY --from names an earlier stage; the image's files are where the
    # ENTRYPOINT, CMD and HEALTHCHECK expect them.
    dests = {}
    for source, paths, dest in runtime.copies:
        if source is not None:
            assert source in names, f"COPY --from={source}: no such stage ({names})"
        else:
            for p in paths:
                assert (REPO / p).exists(), f"COPY {p}: not in the checkout"
        dests[dest] = (source, paths)
    assert runtime.entrypoint[0] in dests, f"{runtime.entrypoint[0]} is not copied into the image"
    assert runtime.cmd[1] in dests and dests[runtime.cmd[1]] == (None, ["deploy/sheaf.toml"]), dests
    assert runtime.healthcheck and runtime.healthcheck[0] in dests, runtime.healthcheck

    # The builder: the pinned toolchain's release build of the one binary, with the
    # image-only profile overrides; the probe: static, pinned.
    build = next(s for s in stages if any("cargo build" in r for r in s.runs))
    cargo = next(r for r in build.runs if "cargo build" in r)
    for flag in ("--release", "--locked", "--bin sheaf"):
        assert flag in cargo, f"{flag} missing from {cargo!r}"
    assert build.env.get("CARGO_PROFILE_RELEASE_STRIP") == "symbols"
    assert build.env.get("CARGO_PROFILE_RELEASE_LTO") == "thin"
    assert build.env.get("CARGO_PROFILE_RELEASE_CODEGEN_UNITS") == "1"
    assert build.base.startswith("rust:") and "bookworm" in build.base, "the builder must match the runtime's glibc"
    probe = next(s for s in stages if any("grpc-health-probe" in r for r in s.runs))
    assert probe.env.get("CGO_ENABLED") == "0", "the probe must be static: the runtime image has no Go"
    assert any("github.com/grpc-ecosystem/grpc-health-probe@v0.4.63" in r for r in probe.runs)

    # Ports: EXPOSE and HEALTHCHECK agree with deploy/sheaf.toml.
    conf = image_config()
    assert {int(p.split("/")[0]) for p in runtime.expose} == {port_of(conf["listen"]), port_of(conf["metrics-listen"])}
    addr = next(a for a in runtime.healthcheck if a.startswith("-addr="))
    assert port_of(addr) == port_of(conf["listen"]), runtime.healthcheck
    assert set(conf) <= config_keys(), f"deploy/sheaf.toml: unknown keys {set(conf) - config_keys()}"


def test_build_context_holds_what_the_build_needs():
    """The root .dockerignore (the context is the checkout) lets in every file the
    Dockerfile copies and the Cargo workspace needs, and keeps build output out."""
    ignore = DockerIgnore((REPO / ".dockerignore").read_text())
    copied = [p for s in dockerfile() for source, paths, _ in s.copies if source is None for p in paths]
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    members = [m for m in cargo["workspace"]["members"] if m != "."]
    for member in members:
        assert any(member == p or member.startswith(p.rstrip("/") + "/") for p in copied), (
            f"workspace member {member} is not copied into the builder"
        )
    # clients/rust's build script compiles ../../proto/sheaf.proto.
    assert any(p.rstrip("/") == "proto" for p in copied), "proto/ is not copied into the builder"
    for top in copied:
        root = REPO / top
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        files = [f for f in files if "target" not in f.parts and "__pycache__" not in f.parts]
        assert files, f"{top}: nothing to copy"
        for f in files:
            rel = f.relative_to(REPO).as_posix()
            assert not ignore.excluded(rel), f".dockerignore excludes {rel}, which the Dockerfile copies"
    for junk in ("target/release/sheaf", ".git/HEAD", "clients/jvm/target/x.jar", "clients/rust/target/debug/x"):
        assert ignore.excluded(junk), f".dockerignore lets {junk} into the build context"


# --------------------------------------------------------------------------
# The compose file
# --------------------------------------------------------------------------


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def replicas() -> dict[str, dict]:
    """The compose services running the image of deploy/Dockerfile."""
    out = {}
    for name, svc in compose()["services"].items():
        build = svc.get("build") or {}
        if isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile":
            out[name] = svc
    return out


def service_env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def replica_setting(svc: dict, key: str):
    """A replica's effective setting: its SHEAF_* variable, else the image's sheaf.toml."""
    env = service_env(svc)
    return env.get(env_var(key), image_config().get(key))


def test_compose_file_matches_the_compose_spec(tmp_path):
    checker = tool("SHEAF_CHECK_JSONSCHEMA")
    r = run([checker, "--builtin-schema", "vendor.compose-spec", COMPOSE])
    assert r.returncode == 0, show(r)
    # The schema does catch mistakes (a misspelt healthcheck key, an unknown condition).
    mistakes = (
        ("      interval: 5s\n", "      intervl: 5s\n"),
        ("condition: service_completed_successfully", "condition: service_finished"),
    )
    for old, new in mistakes:
        text = COMPOSE.read_text()
        assert old in text
        bad = tmp_path / "compose-bad.yaml"
        bad.write_text(text.replace(old, new, 1))
        r = run([checker, "--builtin-schema", "vendor.compose-spec", bad])
        assert r.returncode != 0, f"a broken compose file passed:\n{show(r)}"


def test_compose_cross_references():
    doc = compose()
    services = doc["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        deps = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        for dep, how in deps.items():
            assert dep in services, f"{name} depends on {dep}, which is not a service"
            condition = how.get("condition", "service_started")
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is a one-shot job: restart must be no"
        build = svc.get("build")
        if isinstance(build, dict):
            context = (COMPOSE.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"{name}: no {build['dockerfile']} in {context}"
        for volume in svc.get("volumes") or []:
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (COMPOSE.parent / host).exists(), f"{name} mounts {host}, which does not exist"
    published = [p.rsplit(":", 1)[0] for svc in services.values() for p in svc.get("ports") or []]
    assert len(published) == len(set(published)), f"a host port is published twice: {published}"

    # The replicas: each advertises its own service name on its listen port (also its
    # published port, so `127.0.0.1 sheaf-a sheaf-b` in /etc/hosts works from the host),
    # lists every other replica as a peer, and all serve one registry.
    reps = replicas()
    assert len(reps) >= 2, f"compose.yaml should run at least two replicas, found {sorted(reps)}"
    advertised = {}
    for name, svc in reps.items():
        listen = port_of(replica_setting(svc, "listen"))
        url = replica_setting(svc, "advertise")
        assert url == f"grpc://{name}:{listen}", f"{name} advertises {url}"
        advertised[name] = url
        assert f"127.0.0.1:{listen}:{listen}" in svc.get("ports", []), f"{name}: publish {listen} as itself"
        probe = svc["healthcheck"]["test"]
        assert probe[0] == "CMD" and probe[1] == runtime_stage().healthcheck[0], probe
        assert f"-addr=127.0.0.1:{listen}" in probe, f"{name}'s healthcheck probes another port: {probe}"
        env = service_env(svc)
        for key in env:
            if key.startswith("SHEAF_"):
                assert key in {env_var(f) for f in config_keys()}, f"{name}: {key} is not a `sheaf serve` variable"
        grace = duration_s(replica_setting(svc, "drain-delay")) + duration_s(replica_setting(svc, "shutdown-grace"))
        assert duration_s(svc["stop_grace_period"]) > grace, f"{name}: stop_grace_period must exceed {grace}s"
        # A non-loopback address without --auth needs --insecure-anonymous.
        assert replica_setting(svc, "auth") or replica_setting(svc, "insecure-anonymous") in ("true", True)
    for name, svc in reps.items():
        peers = set(replica_setting(svc, "peer").split(","))
        assert peers == {u for n, u in advertised.items() if n != name}, f"{name}'s peers: {peers}"
    registries = {replica_setting(svc, "registry") for svc in reps.values()}
    assert len(registries) == 1, f"the replicas serve different registries: {registries}"
    registry = registries.pop()
    m = re.fullmatch(r"s3://([^/]+)(/.*)?", registry)
    assert m, registry

    # S3: the endpoint is the moto service; the bucket job makes the registry's bucket.
    buckets = [svc for svc in services.values() if service_env(svc).get("BUCKET")]
    assert [service_env(b)["BUCKET"] for b in buckets] == [m[1]], "one job must create the registry's bucket"
    for svc in [*reps.values(), *buckets]:
        endpoint = service_env(svc)["AWS_ENDPOINT_URL"]
        host = re.fullmatch(r"http://([^:/]+):(\d+)", endpoint)
        assert host and host[1] in services, f"AWS_ENDPOINT_URL {endpoint} is not a service"
        assert service_env(svc).get("AWS_ALLOW_HTTP") == "true"
        assert any(p.endswith(f":{host[2]}") for p in services[host[1]].get("ports", [])), "moto listens on 5000"

    # Prometheus scrapes every replica's metrics port, with the config file it mounts.
    prom = next(s for s in services.values() if str(s.get("image", "")).startswith("prom/prometheus"))
    assert any(v.split(":")[1] == "/etc/prometheus/prometheus.yml" for v in prom["volumes"]), prom["volumes"]
    prom_file = next(v.split(":")[0] for v in prom["volumes"] if v.split(":")[1] == "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load((COMPOSE.parent / prom_file).read_text())
    targets = {
        t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc.get("targets", [])
    }
    paths = {job.get("metrics_path", "/metrics") for job in config["scrape_configs"]}
    assert paths == {"/metrics"}, paths
    want = {f"{name}:{port_of(replica_setting(svc, 'metrics-listen'))}" for name, svc in reps.items()}
    assert targets == want, f"Prometheus scrapes {targets}, the replicas' metrics are at {want}"


# --------------------------------------------------------------------------
# The Helm chart
# --------------------------------------------------------------------------


def helm_cmd(*args) -> list[str]:
    return [tool("SHEAF_HELM"), *map(str, args)]


def values_args(files) -> list[str]:
    return [a for f in files for a in ("-f", str(CHART / f if not Path(f).is_absolute() else f))]


def template(files, release="sheaf", namespace="default", *extra, chart=CHART) -> subprocess.CompletedProcess:
    return run(
        helm_cmd(
            "template", release, chart, "--namespace", namespace, "--kube-version", KUBE_VERSION, *values_args(files)
        )
        + [str(e) for e in extra]
    )


_RENDERS: dict[str, list[dict]] = {}


def rendered(case: str) -> list[dict]:
    if case not in _RENDERS:
        files, release, namespace = CASES[case]
        r = template(files, release, namespace)
        assert r.returncode == 0, show(r)
        _RENDERS[case] = [d for d in yaml.safe_load_all(r.stdout) if d]
    return _RENDERS[case]


def one(docs, kind, name=None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def values_of(case: str) -> dict:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in CASES[case][0]:
        values = merge(values, yaml.safe_load((CHART / f).read_text()))
    return values


def merge(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a.get(k), v) if k in a else v
        return out
    return b


def test_helm_lint_strict():
    for files in [[], *(CASES[c][0] for c in CASES)]:
        r = run(helm_cmd("lint", "--strict", CHART, *values_args(files)))
        assert r.returncode == 0 and "0 chart(s) failed" in r.stdout, show(r)


def test_chart_packages_and_its_notes_render(tmp_path):
    r = run(helm_cmd("package", CHART, "-d", tmp_path / "out"))
    assert r.returncode == 0, show(r)
    (tarball,) = (tmp_path / "out").glob("sheaf-*.tgz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "sheaf/values.schema.json" in names and "sheaf/templates/NOTES.txt" in names, names
    assert not [n for n in names if n.startswith("sheaf/ci/")], "ci/ (test values) should not be packaged"

    # `helm template` leaves NOTES.txt out: render it as a ConfigMap of a copy of the chart.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = chart / "templates" / "NOTES.txt"
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "notes.test" -}}\n' + notes.read_text() + "{{- end }}\n"
    )
    notes.unlink()
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "notes.test" . | toJson }}\n'
    )
    for case, (files, release, namespace) in CASES.items():
        values = values_of(case)
        r = template(files, release, namespace, "--show-only", "templates/notes.yaml", chart=chart)
        assert r.returncode == 0, show(r)
        text = yaml.safe_load(r.stdout)["data"]["notes"]
        scheme = "grpc+tls" if values["tls"]["enabled"] else "grpc"
        assert values["registry"] in text and f"{scheme}://" in text, text
        assert ("WARNING" in text) == values["insecureAnonymous"], text


@pytest.mark.parametrize("case", list(CASES))
def test_rendered_chart_passes_kubernetes_schemas(case, tmp_path):
    docs = rendered(case)
    out = tmp_path / f"{case}.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    r = run([tool("SHEAF_KUBERNETES_VALIDATE"), "--strict", "-k", KUBE_VERSION, out])
    assert r.returncode == 0, show(r)
    text = r.stdout + r.stderr
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind == "ServiceMonitor":
            continue  # a CRD: kubernetes-validate has no schema (checked by hand below)
        assert f"passed for resource {kind.lower()}/{name} " in text, f"{kind}/{name} was not validated:\n{text}"
    warnings = [ln for ln in text.splitlines() if ln.startswith("WARN") and "kind ServiceMonitor" not in ln]
    assert not warnings, warnings
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Service", "ConfigMap"} <= kinds
    if case == "full":
        assert {"HorizontalPodAutoscaler", "ServiceMonitor", "PodDisruptionBudget", "Secret"} <= kinds


def test_schema_validator_catches_broken_manifests(tmp_path):
    """kubernetes-validate --strict does reject what the API server would."""
    sts = copy.deepcopy(one(rendered("minimal"), "StatefulSet"))
    container = sts["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpc"]["servce"] = container["readinessProbe"]["grpc"].pop("service")
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(sts))
    sts2 = copy.deepcopy(one(rendered("minimal"), "StatefulSet"))
    sts2["spec"]["replicas"] = "three"
    wrong_type = tmp_path / "type.yaml"
    wrong_type.write_text(yaml.safe_dump(sts2))
    for bad, word in ((typo, "servce"), (wrong_type, "three")):
        r = run([tool("SHEAF_KUBERNETES_VALIDATE"), "--strict", "-k", KUBE_VERSION, bad])
        assert r.returncode != 0 and word in r.stdout + r.stderr, show(r)


def sheaf_toml(docs) -> dict:
    cm = one(docs, "ConfigMap")
    return tomllib.loads(cm["data"]["sheaf.toml"])


@pytest.mark.parametrize("case", list(CASES))
def test_chart_objects_reference_each_other(case):
    docs = rendered(case)
    values = values_of(case)
    _, release, namespace = CASES[case]
    sts = one(docs, "StatefulSet")
    name = sts["metadata"]["name"]
    pod = sts["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": values["ports"]["grpc"], "metrics": values["ports"]["metrics"]}

    def selects(selector: dict) -> bool:
        return all(pod_labels.get(k) == v for k, v in selector.items())

    assert selects(sts["spec"]["selector"]["matchLabels"])
    services = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Service"}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    client = services[name]
    for svc in (headless, client):
        assert selects(svc["spec"]["selector"]), svc["metadata"]["name"]
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, p
    assert sts["spec"]["podManagementPolicy"] == "Parallel"

    # sheaf.toml: keys `sheaf serve` knows; every pod that may exist is a peer; the
    # advertised address is the pod's stable name on the headless service.
    conf = sheaf_toml(docs)
    assert set(conf) <= config_keys(), f"sheaf.toml: unknown keys {set(conf) - config_keys()}"
    assert conf["registry"] == values["registry"]
    assert port_of(conf["listen"]) == ports["grpc"] and port_of(conf["metrics-listen"]) == ports["metrics"]
    tls = values["tls"]["enabled"]
    scheme = "grpc+tls" if tls else "grpc"
    domain = f"{headless['metadata']['name']}.{namespace}.svc.cluster.local"
    count = values["autoscaling"]["maxReplicas"] if values["autoscaling"]["enabled"] else values["replicaCount"]
    assert conf["peer"] == [f"{scheme}://{name}-{i}.{domain}:{ports['grpc']}" for i in range(count)]
    env = container["env"]
    names = [e["name"] for e in env]
    assert names.index("POD_NAME") < names.index("SHEAF_ADVERTISE"), "$(POD_NAME) must be defined first"
    assert env[names.index("POD_NAME")]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env[names.index("SHEAF_ADVERTISE")]["value"] == f"{scheme}://$(POD_NAME).{domain}:{ports['grpc']}"
    assert conf["drain-delay"] == f"{values['drainDelaySeconds']}s"
    assert conf["shutdown-grace"] == f"{values['shutdownGraceSeconds']}s"
    assert spec["terminationGracePeriodSeconds"] > values["drainDelaySeconds"] + values["shutdownGraceSeconds"]

    # Probes: gRPC readiness of the Flight service (HTTP /readyz with TLS, which
    # Kubernetes' gRPC probes cannot speak); liveness on the metrics listener.
    ready = container["readinessProbe"]
    if tls:
        assert ready["httpGet"] == {"path": "/readyz", "port": "metrics"}
    else:
        assert ready["grpc"] == {"port": ports["grpc"], "service": FLIGHT_SERVICE}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}

    # Security: non-root, read-only root filesystem, /tmp an emptyDir.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The image reads /etc/sheaf/sheaf.toml (its CMD): the ConfigMap is mounted there.
    config_path = Path(runtime_stage().cmd[1])
    assert volumes[mounts[str(config_path.parent)]]["configMap"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]
    assert config_path.name in one(docs, "ConfigMap")["data"]

    # Files the config names are mounted; Secrets are rendered or named by values.
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}

    def mounted_secret(path: str) -> str:
        folder = str(Path(path).parent)
        assert folder in mounts, f"{path} is not in a mounted folder ({sorted(mounts)})"
        return volumes[mounts[folder]]["secret"]["secretName"]

    if values["auth"]["enabled"]:
        secret = mounted_secret(conf["auth"])
        assert Path(conf["auth"]).name == values["auth"]["key"]
        if values["auth"]["config"]:
            assert values["auth"]["key"] in secrets[secret]["data"]
        else:
            assert secret == values["auth"]["existingSecret"] and secret not in secrets
        assert "insecure-anonymous" not in conf
    else:
        assert conf["insecure-anonymous"] is True
    if tls:
        for key in ("tls-cert", "tls-key"):
            assert mounted_secret(conf[key]) == values["tls"]["secretName"]
        assert Path(conf["tls-cert"]).name == "tls.crt" and Path(conf["tls-key"]).name == "tls.key"
        assert ("peer-ca" in conf) == values["tls"]["peerCa"]
        assert ("tls-client-ca" in conf) == values["tls"]["clientAuth"]
    else:
        assert not {"tls-cert", "tls-key", "tls-client-ca", "peer-ca"} & set(conf)
    storage = values["storage"]
    env_from = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
    if storage["secretEnv"]:
        (secret,) = env_from
        assert set(secrets[secret]["data"]) == set(storage["secretEnv"])
    elif storage["existingSecret"]:
        assert env_from == [storage["existingSecret"]]
    for key, value in storage["env"].items():
        assert {"name": key, "value": str(value)} in env
    account = spec["serviceAccountName"]
    if values["serviceAccount"]["create"]:
        assert one(docs, "ServiceAccount", account)

    # Optional parts.
    if values["podDisruptionBudget"]["enabled"]:
        assert selects(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    if values["autoscaling"]["enabled"]:
        hpa = one(docs, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name}
        assert "replicas" not in sts["spec"], "with autoscaling the HPA owns the replica count"
    else:
        assert sts["spec"]["replicas"] == values["replicaCount"]
    if values["serviceMonitor"]["enabled"]:
        check_service_monitor(one(docs, "ServiceMonitor"), services, namespace)
    else:
        assert not [d for d in docs if d["kind"] == "ServiceMonitor"]


# prometheus-operator's Duration pattern (monitoring.coreos.com/v1 CRD).
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
SERVICE_MONITOR_SPEC = {
    "endpoints", "selector", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels", "sampleLimit",
    "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit", "attachMetadata",
    "scrapeProtocols", "fallbackScrapeProtocol", "keepDroppedTargets", "scrapeClass", "bodySizeLimit",
    "selectorMechanism", "serviceDiscoveryRole", "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor",
    "scrapeClassicHistograms", "convertClassicHistogramsToNHCB",
}  # fmt: skip
SERVICE_MONITOR_ENDPOINT = {
    "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "tlsConfig", "bearerTokenFile",
    "bearerTokenSecret", "authorization", "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "basicAuth",
    "oauth2", "metricRelabelings", "relabelings", "proxyUrl", "followRedirects", "enableHttp2", "filterRunning",
    "noProxy", "proxyFromEnvironment", "proxyConnectHeader",
}  # fmt: skip


def check_service_monitor(sm: dict, services: dict[str, dict], namespace: str):
    """The ServiceMonitor by hand (kubernetes-validate has no schema for the CRD):
    known fields with the CRD's types, and it selects the service with the metrics port."""
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm) == {"apiVersion", "kind", "metadata", "spec"}, set(sm)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", sm["metadata"]["name"])
    assert all(isinstance(v, str) for v in sm["metadata"]["labels"].values())
    spec = sm["spec"]
    assert set(spec) <= SERVICE_MONITOR_SPEC, set(spec) - SERVICE_MONITOR_SPEC
    assert spec["namespaceSelector"] == {"matchNames": [namespace]}
    assert set(spec["selector"]) <= {"matchLabels", "matchExpressions"}
    match = spec["selector"]["matchLabels"]
    chosen = [s for s in services.values() if all(s["metadata"]["labels"].get(k) == v for k, v in match.items())]
    assert len(chosen) == 1, f"the ServiceMonitor selects {[s['metadata']['name'] for s in chosen]}"
    port_names = {p["name"] for p in chosen[0]["spec"]["ports"]}
    assert isinstance(spec["endpoints"], list) and spec["endpoints"]
    for ep in spec["endpoints"]:
        assert set(ep) <= SERVICE_MONITOR_ENDPOINT, set(ep) - SERVICE_MONITOR_ENDPOINT
        assert ep["port"] == "metrics" and ep["port"] in port_names
        assert ep.get("path", "/metrics") == "/metrics" and ep.get("scheme", "http") in ("http", "https")
        for key in ("interval", "scrapeTimeout"):
            if key in ep:
                assert isinstance(ep[key], str) and DURATION.match(ep[key]), f"{key}: {ep[key]!r}"


OK = "registry: s3://b/r\ninsecureAnonymous: true\n"
BROKEN_VALUES = [
    # (id, values file, a word the error must contain, caught by values.schema.json)
    ("type", OK + "replicaCount: three\n", "/replicaCount", True),
    ("typo", OK + "replicaCont: 3\n", "replicaCont", True),
    ("registry-url", "registry: http://example.com/r\ninsecureAnonymous: true\n", "/registry", True),
    ("port", OK + "ports: {grpc: 70000, metrics: 9090}\n", "/ports/grpc", True),
    ("duration", OK + "serviceMonitor: {enabled: true, interval: thirty}\n", "interval", True),
    ("no-registry", "insecureAnonymous: true\n", "registry", False),
    ("no-access-choice", "registry: s3://b/r\n", "insecureAnonymous", False),
    ("auth-without-file", "registry: s3://b/r\nauth: {enabled: true}\n", "auth.existingSecret", False),
    ("tls-without-secret", OK + "tls: {enabled: true}\n", "tls.secretName", False),
    ("managed-key", OK + "config: {listen: '0.0.0.0:1'}\n", "config.listen", False),
    ("hpa-bounds", OK + "autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}\n", "minReplicas", False),
]


@pytest.mark.parametrize("text,word,schema", [b[1:] for b in BROKEN_VALUES], ids=[b[0] for b in BROKEN_VALUES])
def test_broken_values_files_are_refused(text, word, schema, tmp_path):
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(text)
    r = template([bad])
    assert r.returncode != 0, f"helm template accepted:\n{text}\n{show(r)}"
    assert word in r.stderr, show(r)
    if schema:
        # Schema errors fail `helm lint` too (it reports failed checks of the templates only as INFO).
        r = run(helm_cmd("lint", "--strict", CHART, "-f", bad))
        assert r.returncode != 0, show(r)


# --------------------------------------------------------------------------
# Running the image's command line (no container engine: the binary on this machine)
# --------------------------------------------------------------------------


def wait_http(url: str, status: int, timeout: float = 60) -> tuple[int, str, str]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = http_get(url)
            if last[0] == status:
                return last
        except OSError as e:
            last = e
        time.sleep(0.2)
    pytest.fail(f"GET {url} did not answer {status} within {timeout}s (last: {last!r})")


def start(argv: list[str], env: dict[str, str], log_dir: Path, registry: str, timeout: float = 90) -> FlightServer:
    """Starts a server with exactly `argv` and `env`; waits for its listening line."""
    log_dir.mkdir(parents=True, exist_ok=True)
    fd, log_name = tempfile.mkstemp(prefix="serve-", suffix=".stderr", dir=log_dir)
    os.close(fd)
    log = Path(log_name)
    with open(log, "wb") as logf:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=logf, env=env, cwd=log_dir)
    out = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in out:
        remaining = deadline - time.monotonic()
        ready = select.select([proc.stdout], [], [], max(0, min(remaining, 0.5)))[0] if remaining > 0 else []
        chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
        out += chunk
        if not chunk and (remaining <= 0 or proc.poll() is not None or ready):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            pytest.fail(
                f"`{shlex.join(argv)}` printed no listening line (exit {proc.returncode}); stdout {out!r}; stderr:\n"
                f"{log.read_text(errors='replace')[-10000:]}"
            )
    line = out.split(b"\n", 1)[0].decode()
    m = re.fullmatch(r"sheaf: serving (\S+) on (grpc(?:\+tls)?://\S+)", line.strip())
    if not m:
        proc.kill()
        proc.wait()
        pytest.fail(f"unexpected first line {line!r}; stderr:\n{log.read_text(errors='replace')[-10000:]}")
    server = FlightServer(proc, m[2], line, log, registry)
    LIVE_SERVERS.append(server)
    return server


def assert_json_logs(server: FlightServer):
    lines = [ln for ln in server.stderr().splitlines() if ln.strip()]
    assert lines, "the server logged nothing"
    for ln in lines:
        try:
            assert isinstance(json.loads(ln), dict)
        except (json.JSONDecodeError, AssertionError):
            pytest.fail(f"log-json = true in the config, but stderr has a line that is not a JSON object: {ln!r}")


PROM_LINE = re.compile(
    r"^(#.*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+]?([0-9.eE+-]+|NaN|[+-]?Inf)( [0-9]+(\.[0-9]+)?)?)$"
)


def assert_metrics(base: str) -> dict[str, float]:
    """GET /metrics: Prometheus text or OpenMetrics (parsed by the Prometheus project's
    parser when prometheus_client is installed). Returns {sample with labels: value}."""
    status, ctype, body = http_get(f"{base}/metrics")
    assert status == 200, (status, body[:500])
    assert ctype.startswith(("text/plain", "application/openmetrics-text")), ctype
    lines = [ln for ln in body.splitlines() if ln]
    bad = [ln for ln in lines if not PROM_LINE.match(ln)]
    assert not bad, f"not Prometheus exposition: {bad[:5]}"
    samples = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines if not ln.startswith("#")}
    assert samples, "no samples in /metrics"
    if ctype.startswith("application/openmetrics-text"):
        assert lines[-1] == "# EOF", "OpenMetrics must end with # EOF"
        try:
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
        except ImportError:
            return samples
        families = list(text_string_to_metric_families(body))
        assert families, body[:500]
    return samples


def health_probe(command: list[str], port: int) -> subprocess.CompletedProcess | None:
    """A HEALTHCHECK's probe command (image paths mapped) against 127.0.0.1:`port`."""
    paths = image_path_map()
    if command[0] not in paths:
        return None  # no grpc-health-probe here (a plain pytest run)
    argv = [str(paths[command[0]])] + [f"-addr=127.0.0.1:{port}" if a.startswith("-addr=") else a for a in command[1:]]
    return run(argv, timeout=30)


def test_image_command_line_with_compose_environment(moto, tmp_path):
    """`sheaf serve --config /etc/sheaf/sheaf.toml` as the image runs it, with sheaf-a's
    environment from compose.yaml (S3 pointed at moto on loopback, the ports at free
    loopback ports: environment variables win over the file)."""
    need_config_support()
    runtime = runtime_stage()
    paths = image_path_map()
    argv = [str(paths.get(a, a)) for a in runtime.entrypoint + runtime.cmd]
    assert argv[0] == str(SHEAF_BIN) and argv[-1] == str(IMAGE_CONFIG), argv
    services = compose()["services"]
    name, svc = next(iter(replicas().items()))  # sheaf-a: it pushes the demo package
    grpc_port, metrics_port = free_port(), free_port()
    rewrites = {
        "AWS_ENDPOINT_URL": moto["endpoint"],
        "SHEAF_LISTEN": f"127.0.0.1:{grpc_port}",
        "SHEAF_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
    }

    # The compose job that creates the bucket, run with this venv's Python.
    job = next(s for s in services.values() if service_env(s).get("BUCKET"))
    assert job["entrypoint"][:2] == ["python3", "-c"], job["entrypoint"]
    job_env = base_env() | service_env(job) | {"AWS_ENDPOINT_URL": moto["endpoint"], "NO_PROXY": "127.0.0.1"}
    for _ in range(2):  # idempotent: compose may run it again against a live moto
        r = run([sys.executable, "-c", job["entrypoint"][2]], env=job_env)
        assert r.returncode == 0, show(r)
    bucket = service_env(job)["BUCKET"]
    assert bucket in [b["Name"] for b in moto["client"].list_buckets()["Buckets"]]

    env = base_env() | runtime.env | service_env(svc) | rewrites
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    registry = env["SHEAF_REGISTRY"]
    server = start(argv, env, tmp_path / "logs", registry)
    try:
        assert server.url == f"grpc://127.0.0.1:{grpc_port}", "SHEAF_LISTEN should win over the file's listen"
        assert registry.rstrip("/") in server.first_line
        metrics = f"http://127.0.0.1:{metrics_port}"
        assert http_get(f"{metrics}/healthz")[0] == 200
        wait_http(f"{metrics}/readyz", 200)

        # A Flight read: the demo package sheaf-a pushed (SHEAF_DEMO) into moto's S3.
        flight = pyarrow_flight()
        options = flight.FlightCallOptions(timeout=60)
        infos = list(server.client.list_flights(b"demo/*", options))
        assert infos, "no demo/* flights: SHEAF_DEMO=true should have pushed demo/weather"
        info = infos[0]
        rows = 0
        own = env["SHEAF_ADVERTISE"]
        peers = set(env["SHEAF_PEER"].split(","))
        for endpoint in info.endpoints:
            locations = [loc.uri.decode() for loc in endpoint.locations]
            assert own in locations, f"endpoints should name {name}'s advertised address {own}: {locations}"
            assert set(locations) <= {own} | peers, locations
            rows += server.client.do_get(endpoint.ticket, options).read_all().num_rows
        assert rows > 0 and (info.total_records < 0 or rows == info.total_records), (rows, info.total_records)
        assert moto["client"].list_objects_v2(Bucket=bucket).get("KeyCount", 0) > 0

        samples = assert_metrics(metrics)
        assert any(s.startswith("sheaf_") for s in samples), list(samples)[:20]
        sent = [v for k, v in samples.items() if k.startswith("sheaf_rows_sent")]
        assert not sent or max(sent) >= rows, f"sheaf_rows_sent {sent} after {rows} rows were read"
        assert_json_logs(server)

        # The image's HEALTHCHECK and the compose healthcheck of this replica.
        for command in (runtime.healthcheck, svc["healthcheck"]["test"][1:]):
            r = health_probe(command, grpc_port)
            if r is not None:
                assert r.returncode == 0 and "SERVING" in r.stdout + r.stderr, show(r)
        if shutil.which("curl"):
            test = list(services["s3"]["healthcheck"]["test"][1:])
            test[-1] = re.sub(r"http://127\.0\.0\.1:\d+", moto["endpoint"], test[-1])
            r = run(test, env=base_env() | {"NO_PROXY": "127.0.0.1"})
            assert r.returncode == 0, f"moto's compose healthcheck fails against moto:\n{show(r)}"

        # SIGTERM: unready at once, still accepting for drain-delay (from the file), then exit 0.
        drain = duration_s(image_config()["drain-delay"])
        grace = duration_s(image_config()["shutdown-grace"])
        stopped = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        if drain >= 2:
            wait_http(f"{metrics}/readyz", 503, timeout=1.5)
            fresh = server.connect()
            assert list(fresh.list_flights(b"demo/*", options)), "new requests are served during the drain delay"
            r = health_probe(
                [runtime.healthcheck[0], "-addr=x", f"-service={FLIGHT_SERVICE}", "-connect-timeout=2s"], grpc_port
            )
            if r is not None:
                assert r.returncode == 4 and "NOT_SERVING" in r.stdout + r.stderr, show(r)
        code = server.proc.wait(timeout=drain + grace + 10)
        assert code == 0, f"exit {code}:\n{server.stderr()[-5000:]}"
        assert time.monotonic() - stopped >= drain - 0.5, "the server stopped before its drain delay"
    finally:
        server.stop()


@pytest.mark.parametrize("case", ["minimal", "full"])
def test_rendered_chart_config_starts_the_server(case, moto, tmp_path):
    """The chart's rendered sheaf.toml and the pod's environment (for pod -0), with the
    mounted files' paths pointed at local copies, start the real server."""
    need_config_support()
    docs = rendered(case)
    values = values_of(case)
    sts = one(docs, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    text = one(docs, "ConfigMap")["data"]["sheaf.toml"]
    folder = tmp_path / "mounts"
    folder.mkdir()
    if values["tls"]["enabled"]:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        tls_dir = folder / "tls"
        tls_dir.mkdir()
        (tls_dir / "tls.crt").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        (tls_dir / "tls.key").write_bytes(cert.private_key_pem.bytes())
        (tls_dir / "ca.crt").write_bytes(ca.cert_pem.bytes())
        text = text.replace('"/etc/sheaf-tls/', f'"{tls_dir}/')
    if values["auth"]["enabled"]:
        auth_dir = folder / "auth"
        auth_dir.mkdir()
        (auth_dir / values["auth"]["key"]).write_text(values["auth"]["config"])
        text = text.replace('"/etc/sheaf-auth/', f'"{auth_dir}/')
    assert "/etc/" not in text, f"a mounted path was not rewritten:\n{text}"
    config = folder / "sheaf.toml"
    config.write_text(text)

    # The pod's environment: its own variables, $(POD_NAME) expanded, and the Secret's;
    # moto's credentials stand in for workload identity where the values give none.
    pod_name = f"{sts['metadata']['name']}-0"
    env = base_env()
    for e in container["env"]:
        env[e["name"]] = pod_name if "valueFrom" in e else e["value"].replace("$(POD_NAME)", pod_name)
    for ref in container.get("envFrom", []):
        secret = one(docs, "Secret", ref["secretRef"]["name"])
        env |= {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    for key, value in moto["env"].items():
        env.setdefault(key, value)
    grpc_port, metrics_port = free_port(), free_port()
    env |= {
        "AWS_ENDPOINT_URL": moto["endpoint"],
        "AWS_ALLOW_HTTP": "true",
        "SHEAF_LISTEN": f"127.0.0.1:{grpc_port}",
        "SHEAF_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "SHEAF_DRAIN_DELAY": "0s",  # no need to wait for the drain here
    }
    bucket = re.fullmatch(r"s3://([^/]+).*", values["registry"])[1]
    if bucket not in [b["Name"] for b in moto["client"].list_buckets()["Buckets"]]:
        region = env["AWS_REGION"]
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        moto["client"].create_bucket(Bucket=bucket, **where)
    runtime = runtime_stage()
    argv = [str(SHEAF_BIN), *runtime.entrypoint[1:], "--config", str(config)]
    server = start(argv, env, tmp_path / "logs", values["registry"])
    try:
        scheme = "grpc+tls" if values["tls"]["enabled"] else "grpc"
        assert server.url == f"{scheme}://127.0.0.1:{grpc_port}"
        assert values["registry"] in server.first_line
        metrics = f"http://127.0.0.1:{metrics_port}"
        wait_http(f"{metrics}/readyz", 200)
        assert http_get(f"{metrics}/healthz")[0] == 200
        assert_metrics(metrics)
        assert_json_logs(server)
        if scheme == "grpc":
            r = health_probe([runtime.healthcheck[0], "-addr=x", f"-service={FLIGHT_SERVICE}"], grpc_port)
            if r is not None:
                assert r.returncode == 0, show(r)
            flight = pyarrow_flight()
            assert list(server.client.list_flights(b"", flight.FlightCallOptions(timeout=30))) is not None
        else:
            probe = [runtime.healthcheck[0], "-addr=x", "-tls", f"-tls-ca-cert={tls_dir / 'ca.crt'}"]
            if values["tls"]["clientAuth"]:
                probe += [f"-tls-client-cert={tls_dir / 'tls.crt'}", f"-tls-client-key={tls_dir / 'tls.key'}"]
            r = health_probe(probe, grpc_port)
            if r is not None:
                assert r.returncode == 0, show(r)
        code = server.stop(timeout=values["shutdownGraceSeconds"] + 10)
        assert code == 0, f"exit {code} after SIGTERM:\n{server.stderr()[-5000:]}"
    finally:
        server.stop()
