#!/usr/bin/env bash
# CI for the Python client's framework adapters (sheaf.tf, sheaf.arrays,
# sheaf.huggingface, sheaf.ray): installs TensorFlow, Hugging Face datasets,
# Ray Data and JAX (pinned in requirements-frameworks.txt) into a venv of
# their own, only when that file changed (they are too heavy for the main
# venv, ~2.7 GB), installs the client from this checkout, type-checks the
# adapters against the frameworks' types (mypy --strict) and runs
# clients/python/tests_frameworks against the real server binary. ruff (and
# mypy with the frameworks absent) run in ci/test.sh with the rest of the package.
#
#   SHEAF_BIN=/path/to/sheaf [SHEAF_FRAMEWORKS_VENV=/path/to/venv] bash clients/python/ci/test-frameworks.sh [PYTEST ARGS...]
#
# SHEAF_BIN: the server binary (default: $CARGO_TARGET_DIR/release/sheaf).
# SHEAF_FRAMEWORKS_VENV: the venv (default: ${SHEAF_CACHE:-~/.cache/sheaf}/venv-frameworks;
# created with python3 -m venv when missing). Any failure fails the script.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${SHEAF_CACHE:-$HOME/.cache/sheaf}"
venv="${SHEAF_FRAMEWORKS_VENV:-$cache/venv-frameworks}"
if [ -z "${SHEAF_BIN:-}" ]; then
  SHEAF_BIN="${CARGO_TARGET_DIR:-$here/../../target}/release/sheaf"
fi
if [ ! -x "$SHEAF_BIN" ]; then
  echo "clients/python/ci/test-frameworks.sh: no sheaf binary at $SHEAF_BIN; build it (cargo build --release) or set SHEAF_BIN" >&2
  exit 2
fi
export SHEAF_BIN

step() { printf '\n== %s\n' "$*"; }

step "Python venv for the frameworks ($venv)"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
stamp="$venv/.sheaf-frameworks-requirements.sha256"
want="$(sha256sum "$here/requirements-frameworks.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "${pip[@]}" install --quiet -r "$here/requirements-frameworks.txt"
  echo "$want" > "$stamp"
fi

step "install the client from $here"
# From a clean copy of the checkout, as ci/test.sh does (no stale build/ or generated module leaks in).
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cp -R "$here/pyproject.toml" "$here/setup.py" "$here/build_proto.py" "$here/MANIFEST.in" "$here/README.md" \
  "$here/src" "$build/"
rm -f "$build"/src/sheaf/_proto/*_pb2.py "$build"/src/sheaf/_proto/*_pb2.pyi
mkdir "$build/proto"
cp "$here/../../proto/sheaf.proto" "$build/proto/"
"${pip[@]}" install --quiet --no-build-isolation --force-reinstall --no-deps "$build"
# The extras must be satisfied by the pinned requirements (installs nothing when they are); not
# [tensorflow], which names the full tensorflow wheel where the suite pins the smaller tensorflow-cpu.
"${pip[@]}" install --quiet --no-build-isolation "$build[huggingface,ray,jax]"

step "mypy --strict of the adapters, against the frameworks' own types"
# (ci/test.sh checks the whole package where these frameworks are absent, i.e. untyped.)
"$venv/bin/python" "$build/build_proto.py" "$build/src" >/dev/null
"$venv/bin/python" -m mypy --config-file "$here/pyproject.toml" --follow-imports=silent \
  --cache-dir "$venv/.sheaf-frameworks-mypy-cache" \
  "$build/src/sheaf/arrays.py" "$build/src/sheaf/tf.py" "$build/src/sheaf/huggingface.py" "$build/src/sheaf/ray.py"

step "pytest clients/python/tests_frameworks (server: $SHEAF_BIN)"
# From the suite's folder: the installed package is imported, never src/
# (the main conftest, loaded by tests_frameworks/conftest.py, checks it matches the checkout).
cd "$here/tests_frameworks"
# TensorFlow's C++ logging and oneDNN notices are noise in CI logs.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}" TF_ENABLE_ONEDNN_OPTS="${TF_ENABLE_ONEDNN_OPTS:-0}"
# Ray: no usage reporting, no dashboard; its local cluster lives for one module.
export RAY_USAGE_STATS_ENABLED=0 RAY_DISABLE_DOCKER_CPU_WARNING=1
"$venv/bin/python" -m pytest -q -p no:cacheprovider -c "$here/pyproject.toml" --rootdir "$here" "$here/tests_frameworks" "$@"
