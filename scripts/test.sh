#!/usr/bin/env bash
# `make test`: one real Kafka broker for the whole run, then every suite:
# Check (C), pytest (Python), go test (Go, once the module exists), and the C
# and Python integration suites again with the daemon built under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KDIR=$(mktemp -d "${TMPDIR:-/tmp}/kafkad-test.XXXXXX")
ZKDIR=$(mktemp -d "${TMPDIR:-/tmp}/kafkad-test-zk.XXXXXX")
cleanup() {
    tests/kafka/cluster stop --dir "$KDIR" >/dev/null 2>&1 || true
    tests/kafka/cluster stop --dir "$ZKDIR" >/dev/null 2>&1 || true
    rm -rf "$KDIR" "$ZKDIR"
}
trap cleanup EXIT INT TERM

step() { printf '\n=== %s\n' "$*"; }

step "starting Apache Kafka (KRaft) for this run"
tests/kafka/cluster start --dir "$KDIR"
# shellcheck disable=SC1091
. "$KDIR/env"
export KAFKAD_TEST_BOOTSTRAP="$BOOTSTRAP" KAFKAD_TEST_KAFKA_DIR="$KDIR"

# the ZooKeeper-balanced consumer's suite (PyKafka's BalancedConsumer interop)
# needs ZooKeeper and a ZK-mode broker: one more cluster, also for the whole run
step "starting Apache Kafka (ZooKeeper mode) for this run"
tests/kafka/cluster start --mode zk --dir "$ZKDIR"
# shellcheck disable=SC1091
ZK_BOOTSTRAP=$(. "$ZKDIR/env" && echo "$BOOTSTRAP")
# shellcheck disable=SC1091
ZK_CONNECT=$(. "$ZKDIR/env" && echo "$ZOOKEEPER")
export KAFKAD_TEST_ZK_BOOTSTRAP="$ZK_BOOTSTRAP" KAFKAD_TEST_ZK_CONNECT="$ZK_CONNECT" KAFKAD_TEST_ZK_DIR="$ZKDIR"

export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
PYTEST=("$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider)

step "C suites (Check)"
meson test -C build --print-errorlogs

step "Python stub type check (mypy --strict, as its pyproject.toml says)"
(cd client-stubs/python && "$ROOT/.venv/bin/python" -m mypy --cache-dir "$KDIR/mypy-cache" kafkad)

step "Python suites (pytest) against $BOOTSTRAP"
KAFKAD_BIN="$ROOT/build/daemon/kafkad" "${PYTEST[@]}" tests/python

if [ -f client-stubs/go/go.mod ]; then
    step "Go suites (go vet, go test -race)"
    unformatted=$(cd client-stubs/go && gofmt -l .)
    [ -z "$unformatted" ] || { echo "gofmt would change: $unformatted" >&2; exit 1; }
    (cd client-stubs/go && go vet ./... && KAFKAD_BIN="$ROOT/build/daemon/kafkad" go test -race -count=1 ./...)
fi

step "C suites under ASan+UBSan"
meson test -C build-asan --print-errorlogs

step "Python integration suites against the ASan+UBSan daemon"
KAFKAD_BIN="$ROOT/build-asan/daemon/kafkad" "${PYTEST[@]}" -m integration tests/python

if [ -f client-stubs/go/go.mod ]; then
    step "Go integration suite against the ASan+UBSan daemon"
    (cd client-stubs/go && KAFKAD_BIN="$ROOT/build-asan/daemon/kafkad" go test -race -count=1 ./...)
fi

step "all suites passed"
