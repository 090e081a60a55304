#!/usr/bin/env bash
# CI step of the JVM client and Spark connector (clients/jvm):
#   1. Maven build of sheaf-client, sheaf-spark and sheaf-jdbc-tests: the formatting check
#      (Spotless with google-java-format; `mvn spotless:apply` fixes it), Java generated from
#      proto/sheaf.proto (protoc from Maven), their JUnit tests against the real server
#      ($SHEAF_BIN, required; sheaf-jdbc-tests drives Flight SQL through the stock Arrow Flight
#      SQL JDBC driver over TLS with a login), then the shaded connector jar;
#   2. the stock-Spark smoke test: PySpark from PyPI (pinned) with only that jar in spark.jars
#      (with a binary whose `serve` takes --peer, it also kills a replica in the middle of a job).
#
#   SHEAF_BIN=/path/to/sheaf bash clients/jvm/ci/test.sh
#
# Needs Java 17+, Maven 3.8+, and a Python with pyarrow and trustme ($SHEAF_PYTHON, default
# $SHEAF_CACHE/venv/bin/python, which scripts/test creates); PySpark is installed into that
# Python if missing. Maven's repository lives in $SHEAF_CACHE/m2 (default ~/.cache/sheaf/m2)
# so later runs are fast; an empty cache works (it downloads from Maven Central).
set -euo pipefail
jvm="$(cd "$(dirname "$0")/.." && pwd)"
cache="${SHEAF_CACHE:-$HOME/.cache/sheaf}"
python="${SHEAF_PYTHON:-$cache/venv/bin/python}"
pyspark_version="4.3.0"

fail() { echo "clients/jvm/ci/test.sh: $*" >&2; exit 2; }

[ -n "${SHEAF_BIN:-}" ] || fail "SHEAF_BIN must point at the sheaf binary (cargo build --release)"
[ -x "$SHEAF_BIN" ] || fail "SHEAF_BIN=$SHEAF_BIN is not an executable file"
SHEAF_BIN="$(cd "$(dirname "$SHEAF_BIN")" && pwd)/$(basename "$SHEAF_BIN")"
export SHEAF_BIN
command -v java >/dev/null || fail "java is not installed (Java 17+ is needed)"
command -v mvn >/dev/null || fail "mvn is not installed (Maven 3.8+ is needed)"
java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
[ "${java_major%%.*}" -ge 17 ] 2>/dev/null || fail "Java 17+ is needed, found ${java_major:-unknown}"
[ -x "$python" ] || fail "no Python at $python: run scripts/test once (it creates the venv) or set SHEAF_PYTHON"
"$python" -c "import pyarrow" 2>/dev/null || fail "$python has no pyarrow (tests generate their tables with it)"
"$python" -c "import trustme" 2>/dev/null || fail "$python has no trustme (the TLS tests make their certificates with it): pip install -r tests/python/requirements.txt"
export SHEAF_PYTHON="$python"
mkdir -p "$cache/m2"

echo "== Maven: formatting check, build, JUnit tests against $SHEAF_BIN, shaded connector jar"
mvn -B -ntp -Dmaven.repo.local="$cache/m2" -f "$jvm/pom.xml" clean install

jar="$(ls "$jvm"/sheaf-spark/target/sheaf-spark-*.jar | grep -v -E '/(original-)[^/]*$|-(sources|javadoc|tests)\.jar$' | head -n 1)"
[ -f "$jar" ] || fail "the build made no connector jar in $jvm/sheaf-spark/target"
echo "connector jar: $jar ($(du -h "$jar" | cut -f1))"

echo "== PySpark $pyspark_version (stock Spark 4) with the shaded jar"
if ! "$python" -c "import sys, pyspark; sys.exit(pyspark.__version__ != '$pyspark_version')" 2>/dev/null; then
  "$python" -m pip install --quiet --disable-pip-version-check "pyspark==$pyspark_version"
fi
"$python" "$jvm/ci/smoke_pyspark.py" --jar "$jar"
