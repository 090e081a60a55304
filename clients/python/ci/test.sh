#!/usr/bin/env bash
# CI for the Python client: installs its pinned test dependencies into a venv
# (only when requirements-test.txt changed), lints it (ruff), installs it
# from this checkout with its extras (the build generates its protobuf code
# from proto/sheaf.proto), type-checks it (mypy --strict) and runs its pytest
# suite against the real server binary on loopback.
#
#   SHEAF_BIN=/path/to/sheaf [SHEAF_VENV=/path/to/venv] bash clients/python/ci/test.sh [PYTEST ARGS...]
#
# SHEAF_BIN: the server binary (default: $CARGO_TARGET_DIR/release/sheaf).
# SHEAF_VENV: the venv (default: ${SHEAF_CACHE:-~/.cache/sheaf}/venv; created
# with python3 -m venv when missing). Any failure fails the script.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${SHEAF_CACHE:-$HOME/.cache/sheaf}"
venv="${SHEAF_VENV:-$cache/venv}"
if [ -z "${SHEAF_BIN:-}" ]; then
  SHEAF_BIN="${CARGO_TARGET_DIR:-$here/../../target}/release/sheaf"
fi
if [ ! -x "$SHEAF_BIN" ]; then
  echo "clients/python/ci/test.sh: no sheaf binary at $SHEAF_BIN; build it (cargo build --release) or set SHEAF_BIN" >&2
  exit 2
fi
export SHEAF_BIN

step() { printf '\n== %s\n' "$*"; }

step "Python venv ($venv)"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
stamp="$venv/.sheaf-python-client-requirements.sha256"
want="$(sha256sum "$here/requirements-test.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "${pip[@]}" install --quiet -r "$here/requirements-test.txt"
  echo "$want" > "$stamp"
fi

step "ruff check, ruff format --check"
"$venv/bin/ruff" check --config "$here/pyproject.toml" "$here"
"$venv/bin/ruff" format --check --config "$here/pyproject.toml" "$here"

step "install the client from $here"
# Built from a clean copy of the checkout, as an sdist would hold it (with
# proto/sheaf.proto beside the sources), so no stale build/ folder or
# generated module can leak into the wheel; reinstalled every run (a few seconds).
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cp -R "$here/pyproject.toml" "$here/setup.py" "$here/build_proto.py" "$here/MANIFEST.in" "$here/README.md" \
  "$here/src" "$build/"
rm -f "$build"/src/sheaf/_proto/*_pb2.py "$build"/src/sheaf/_proto/*_pb2.pyi
mkdir "$build/proto"
cp "$here/../../proto/sheaf.proto" "$build/proto/"
"${pip[@]}" install --quiet --no-build-isolation --force-reinstall --no-deps "$build"
# The extras must be satisfied by the pinned test dependencies (installs nothing when they are).
"${pip[@]}" install --quiet --no-build-isolation "$build[pandas,polars,torch]"

step "mypy --strict src/sheaf"
# Checks the copy, with the generated modules (and their .pyi stubs) in place.
"$venv/bin/python" "$build/build_proto.py" "$build/src" >/dev/null
"$venv/bin/python" -m mypy --config-file "$here/pyproject.toml" --cache-dir "$venv/.sheaf-client-mypy-cache" "$build/src/sheaf"

step "pytest clients/python/tests (server: $SHEAF_BIN)"
# Run from the tests folder: the installed package is imported, never src/
# (conftest.py also checks that it matches the checkout file by file).
cd "$here/tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider -c "$here/pyproject.toml" --rootdir "$here" "$here/tests" "$@"
