#!/usr/bin/env bash
# Go clients benchmark: the kafkad Go stub vs confluent-kafka-go (bundled
# librdkafka) vs franz-go, on one Kafka broker started for this run.
#
#   bench/go/run.sh [kafkad-bench options ...]   e.g. -n 200000 -reps 1 -contenders kafkad,confluent
#
# Builds bench/go (into build/bench/kafkad-bench) and build/daemon/kafkad if
# missing, starts one Kafka 3.9.1 broker (tests/kafka/cluster) and one kafkad
# daemon on it, runs the benchmark (which prints a markdown table and writes
# bench/results/go-<timestamp>.json), and stops everything it started, also
# on Ctrl-C or failure. About 2-3 minutes; hard limit GOBENCH_TIMEOUT
# seconds (default 280) for the benchmark itself.
#
# Environment:
#   KAFKA_CLUSTER_BROKER_JVM_OPTS  broker JVM options (default "-Xmx1g -XX:+UseSerialGC")
#   GOBENCH_TIMEOUT                seconds the benchmark may take (default 280)
#   GOBENCH_PROFILE                directory: Go CPU profiles of every measured phase
#                                  (go tool pprof build/bench/kafkad-bench FILE)
#   GOBENCH_DAEMON_CONF            extra lines for the daemon's [cluster main] section
#                                  (librdkafka properties, e.g. "queued.min.messages = 1000000")
#   GOBENCH_NICE                   run everything (broker, daemon, clients) at this nice
#                                  value, e.g. -10 on a shared machine (negative needs root)
#   KAFKAD                         the daemon binary (default build/daemon/kafkad)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CLUSTER=$REPO/tests/kafka/cluster
KAFKAD=${KAFKAD:-$REPO/build/daemon/kafkad}
BIN=$REPO/build/bench/kafkad-bench
TIMEOUT=${GOBENCH_TIMEOUT:-280}
export KAFKA_CLUSTER_BROKER_JVM_OPTS=${KAFKA_CLUSTER_BROKER_JVM_OPTS:-"-Xmx1g -XX:+UseSerialGC"}

say() { echo "run.sh: $*" >&2; }
die() { say "$*"; exit 1; }

if [ -n "${GOBENCH_NICE:-}" ]; then
    # inherited by the broker's JVM, the daemon and every benchmark process
    renice -n "$GOBENCH_NICE" -p $$ >/dev/null || say "cannot renice to $GOBENCH_NICE; running at $(nice)"
fi

# --- build ---------------------------------------------------------------------
if [ ! -x "$KAFKAD" ]; then
    say "building kafkad (ninja -C build)"
    ninja -C build >/dev/null || die "ninja -C build failed (configure build/ first: make build)"
fi
if [ "$KAFKAD" = "$REPO/build/daemon/kafkad" ] && ! ninja -C build -n 2>/dev/null | grep -q "no work to do"; then
    say "warning: $KAFKAD is older than its sources (ninja -C build)"
fi
say "building $BIN"
mkdir -p "$(dirname "$BIN")"
(cd bench/go && go build -o "$BIN" .) || die "go build failed"

# --- cleanup: everything started below, by pid ---------------------------------
RUN=$(mktemp -d /tmp/kafkad-gobench.XXXXXX)
DAEMON_PID=
BENCH_PID=
BROKER_STARTED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        # its children die with it (PR_SET_PDEATHSIG)
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        sleep 0.5
        kill -KILL "$BENCH_PID" 2>/dev/null || true
    fi
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if [ "$BROKER_STARTED" = 1 ]; then
        "$CLUSTER" stop --dir "$RUN/kafka" >/dev/null 2>&1 || say "broker stop failed (see $RUN/kafka)"
    fi
    if [ "$rc" = 0 ]; then
        rm -rf "$RUN"
    else
        say "failed (exit $rc); logs kept in $RUN"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- broker ----------------------------------------------------------------------
say "starting the Kafka broker (JVM: $KAFKA_CLUSTER_BROKER_JVM_OPTS)"
BROKER_STARTED=1
"$CLUSTER" start --dir "$RUN/kafka" --partitions 6 >"$RUN/cluster-start.out" 2>"$RUN/cluster-start.err" ||
    { cat "$RUN/cluster-start.err" >&2; die "the broker did not start"; }
BOOTSTRAP=$(sed -n 's/^BOOTSTRAP=//p' "$RUN/kafka/env")
BROKER_PID=$(cat "$RUN/kafka/broker.pid")
[ -n "$BOOTSTRAP" ] || die "no BOOTSTRAP in $RUN/kafka/env"
say "broker at $BOOTSTRAP (pid $BROKER_PID)"

# --- kafkad ----------------------------------------------------------------------
cat >"$RUN/kafkad.conf" <<EOF
[daemon]
socket = $RUN/k.sock
[cluster main]
bootstrap.servers = $BOOTSTRAP
EOF
[ -z "${GOBENCH_DAEMON_CONF:-}" ] || printf '%b\n' "$GOBENCH_DAEMON_CONF" >>"$RUN/kafkad.conf"
"$KAFKAD" -c "$RUN/kafkad.conf" >"$RUN/kafkad.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do
    [ -S "$RUN/k.sock" ] && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$RUN/kafkad.log" >&2; die "kafkad exited"; }
    sleep 0.1
done
[ -S "$RUN/k.sock" ] || die "kafkad did not create its socket"
say "kafkad pid $DAEMON_PID"

# --- the benchmark -----------------------------------------------------------------
KAFKAD_VERSION="$("$KAFKAD" -V 2>/dev/null | awk '{print $2}') (git $(git describe --always --dirty 2>/dev/null || echo '?'), binary of $(date -r "$KAFKAD" '+%F %T'))"
RDK_LIB=$(ldd "$KAFKAD" 2>/dev/null | awk '/librdkafka/ {print $3}')
RDK_VERSION="$(pkg-config --modversion rdkafka 2>/dev/null || echo '?') ($RDK_LIB)"
PROFILE_ARGS=()
[ -z "${GOBENCH_PROFILE:-}" ] || PROFILE_ARGS=(-cpuprofile "$GOBENCH_PROFILE")
set +e
timeout -s TERM "$TIMEOUT" "$BIN" \
    -bootstrap "$BOOTSTRAP" -socket "$RUN/k.sock" -daemon-pid "$DAEMON_PID" -broker-pid "$BROKER_PID" \
    -results "$REPO/bench/results" -deadline "$((TIMEOUT - 40))s" \
    -kafkad-version "$KAFKAD_VERSION" -daemon-librdkafka "$RDK_VERSION" -kafka-version 3.9.1 \
    -broker-jvm-opts "$KAFKA_CLUSTER_BROKER_JVM_OPTS" -daemon-config "$RUN/kafkad.conf" \
    -note "nice $(nice)" \
    "${PROFILE_ARGS[@]}" "$@" &
BENCH_PID=$!
wait "$BENCH_PID"
rc=$?
BENCH_PID=
set -e
kill -0 "$DAEMON_PID" 2>/dev/null || { say "kafkad died during the run (log: $RUN/kafkad.log)"; rc=1; }
exit $rc
