#!/usr/bin/env bash
# `make bench`: every benchmark against one real Kafka 3.9.1 broker started for
# this run, then docs/BENCHMARKS.md generated from the results.
#
#   scripts/bench.sh [produce_bench.py run options ...]
#
# 1. the producer benchmark (bench/produce_bench.py): one process, async
#    throughput and sync round trip, kafkad stub vs confluent-kafka,
#    kafka-python and librdkafka from C;
# 2. the sidecar benchmarks (bench/sidecar_bench.py): cold start, short-lived
#    processes, fan-in, kafkad's footprint, the local hop's limit;
# 3. the consumer benchmark (bench/consume_bench.py): one process reading 1M
#    messages, kafkad stub vs confluent-kafka, kafka-python, PyKafka and C;
# 4. bench/report.py: docs/BENCHMARKS.md and docs/benchmarks/*.png from the
#    JSON the three wrote into docs/benchmarks/.
#
# Starts the broker (JMX on 127.0.0.1, for its connection counters), creates
# fresh topics, starts three kafkad daemons (linger.ms=5 for producer
# throughput, linger.ms=0 for round trips and one-message processes, and a
# fresh linger.ms=5 one for footprint, fan-in and local hop), compiles
# bench/rdkafka_produce.c and bench/raw_produce.c into build/bench/, runs the
# benchmarks (each prints its tables) and writes the report. Everything it
# started is stopped on exit (also on Ctrl-C or failure). About 5 minutes.
#
# Environment:
#   BENCH_SUITES      which to run (default "producer sidecar consumer"); the report is written
#                     from whatever docs/benchmarks/*.json hold afterwards
#   BENCH_OUT         where the JSON and plots go (default docs/benchmarks; the report
#                     goes to its parent directory's BENCHMARKS.md)
#   BENCH_REPS        producer benchmark: repetitions per contender (default 3)
#   BENCH_MESSAGES    producer benchmark: scenario A messages per contender (default 500000)
#   BENCH_SIDECAR_ARGS  extra options for `sidecar_bench.py run` (e.g. "--short-procs 100
#                     --fanin-reps 1"; see sidecar_bench.py run --help)
#   BENCH_DAEMON_PROPS  extra lines for the daemons' [cluster main] (librdkafka properties,
#                     e.g. "batch.num.messages = 100000"), for experiments
#   BENCH_DAEMON_NICE the kafkad daemons' nice value (default -10, as packaging/kafkad.service;
#                     needs root); a fourth daemon for the fan-in's kafkad-nice0 row stays at 0
#   BENCH_NICE        run everything (broker, daemons, clients) at this nice value, e.g. -10
#                     on a shared machine (negative values need root); default: unchanged
#   KAFKA_CLUSTER_BROKER_JVM_OPTS  broker JVM options (default "-Xmx1g -XX:+UseSerialGC":
#                     C2 JIT, unlike the tests' C1-only default); JMX options are appended
# Extra arguments go to `produce_bench.py run` (e.g. --only kafkad-produce,confluent-kafka
# --skip-b --kafka-python-messages 50000).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

PY=${PY:-$REPO/.venv/bin/python}
KAFKAD=${KAFKAD:-$REPO/build/daemon/kafkad}
CLUSTER=$REPO/tests/kafka/cluster
REPS=${BENCH_REPS:-3}
MESSAGES=${BENCH_MESSAGES:-500000}
SUITES=${BENCH_SUITES:-producer sidecar consumer}
OUT=${BENCH_OUT:-$REPO/docs/benchmarks}
PARTITIONS=6
BASE_JVM_OPTS=${KAFKA_CLUSTER_BROKER_JVM_OPTS:-"-Xmx1g -XX:+UseSerialGC"}

say() { echo "bench.sh: $*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$KAFKAD" ] || die "$KAFKAD not built (make build)"
[ -x "$PY" ] || die "$PY missing (make deps)"
"$PY" -c 'import kafkad, confluent_kafka, kafka, matplotlib' 2>/dev/null ||
    die "the venv lacks kafkad / confluent-kafka / kafka-python / matplotlib (make deps stub)"
pkg-config --exists rdkafka || die "librdkafka development files missing (pkg-config rdkafka)"

if [ -n "${BENCH_NICE:-}" ]; then
    # children inherit it: the broker's JVM threads, both daemons and every client
    renice -n "$BENCH_NICE" -p $$ >/dev/null || say "cannot renice to $BENCH_NICE; running at $(nice)"
fi

suite() { case " $SUITES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# --- the C programs -----------------------------------------------------------
RDK_BIN=$REPO/build/bench/rdkafka_produce
RAW_BIN=$REPO/build/bench/raw_produce
mkdir -p "$(dirname "$RDK_BIN")"
if [ ! -x "$RDK_BIN" ] || [ bench/rdkafka_produce.c -nt "$RDK_BIN" ] || [ bench/rdkafka_common.h -nt "$RDK_BIN" ]; then
    say "compiling $RDK_BIN"
    # shellcheck disable=SC2046
    cc -O2 -Wall -Wextra -o "$RDK_BIN" bench/rdkafka_produce.c $(pkg-config --cflags --libs rdkafka)
fi
if suite sidecar && { [ ! -x "$RAW_BIN" ] || [ bench/raw_produce.c -nt "$RAW_BIN" ]; }; then
    pkg-config --exists msgpack || die "msgpack-c development files missing (pkg-config msgpack)"
    say "compiling $RAW_BIN"
    # shellcheck disable=SC2046
    cc -O2 -Wall -Wextra -o "$RAW_BIN" bench/raw_produce.c $(pkg-config --cflags --libs msgpack)
fi

# --- cleanup: everything started below, by pid ------------------------------
RUN=$(mktemp -d /tmp/kafkad-bench.XXXXXX)
# The broker's data: on tmpfs when there is room. A full run writes several
# GB, and their writeback to this VM's disk takes CPU from the benchmark in
# bursts (seen: confluent-kafka's fan-in CPU per message 40% higher in runs
# with it); the broker's disk is not what is compared. BENCH_BROKER_DATA
# overrides (a directory to create the broker's directory in).
KDIR_PARENT=${BENCH_BROKER_DATA:-}
if [ -z "$KDIR_PARENT" ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
    [ "$(df -Pk /dev/shm | awk 'NR == 2 {print $4}')" -gt $((12 * 1024 * 1024)) ]; then
    KDIR_PARENT=/dev/shm
fi
KDIR=$(mktemp -d "${KDIR_PARENT:-$RUN}/kafkad-bench-kafka.XXXXXX")
DAEMON_PIDS=()
BROKER_STARTED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    unset KAFKAD_BENCH_RUN
    # the benchmark processes and whatever they started carry KAFKAD_BENCH_RUN=$RUN in
    # their environment: normally gone already, but not after a kill or a crash
    local p
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" != $$ ] || continue
        if { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "KAFKAD_BENCH_RUN=$RUN"; then
            say "killing leftover benchmark process ${p#/proc/}"
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
    for pid in "${DAEMON_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${DAEMON_PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$BROKER_STARTED" = 1 ]; then
        "$CLUSTER" stop --dir "$KDIR" >/dev/null 2>&1 || say "broker stop failed (see $KDIR)"
    fi
    case $KDIR in
    "$RUN"/*) ;;
    *) # gigabytes, maybe in RAM: never kept (its logs are)
        cp "$KDIR"/*.log "$KDIR"/*.out "$RUN"/ 2>/dev/null || true
        rm -rf "$KDIR" ;;
    esac
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

# --- broker ------------------------------------------------------------------
# JMX on loopback: the sidecar benchmarks read the broker's own count of the
# connections it accepted (socket-server-metrics connection-creation-total).
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
BROKER_STARTED=1
for attempt in 1 2 3; do
    JMX_PORT=$(free_port)
    export KAFKA_CLUSTER_BROKER_JVM_OPTS="$BASE_JVM_OPTS -Dcom.sun.management.jmxremote \
-Dcom.sun.management.jmxremote.port=$JMX_PORT -Dcom.sun.management.jmxremote.rmi.port=$JMX_PORT \
-Dcom.sun.management.jmxremote.host=127.0.0.1 -Djava.rmi.server.hostname=127.0.0.1 \
-Dcom.sun.management.jmxremote.local.only=true -Dcom.sun.management.jmxremote.authenticate=false \
-Dcom.sun.management.jmxremote.ssl=false"
    say "starting the Kafka broker (JVM: $BASE_JVM_OPTS, JMX on 127.0.0.1:$JMX_PORT)"
    if "$CLUSTER" start --dir "$KDIR" --partitions "$PARTITIONS" >"$RUN/cluster-start.out" 2>"$RUN/cluster-start.err"; then
        break
    fi
    [ "$attempt" -lt 3 ] || { cat "$RUN/cluster-start.err" >&2; die "the broker did not start"; }
    say "broker start failed (JMX port taken?); again with another port"
    "$CLUSTER" stop --dir "$KDIR" >/dev/null 2>&1 || true
done
BOOTSTRAP=$(sed -n 's/^BOOTSTRAP=//p' "$KDIR/env")
BROKER_PID=$(cat "$KDIR/broker.pid")
[ -n "$BOOTSTRAP" ] || die "no BOOTSTRAP in $KDIR/env"
say "broker at $BOOTSTRAP (pid $BROKER_PID)"

PREFIX=bench$(date +%H%M%S)
if suite producer; then
    # (sidecar_bench.py creates its own)
    TOPICS=$("$PY" bench/produce_bench.py topics --prefix "$PREFIX" --reps "$REPS")
    say "creating $(echo "$TOPICS" | wc -l) topics ($PARTITIONS partitions each)"
    for t in $TOPICS; do
        "$CLUSTER" create-topic --dir "$KDIR" "$t" --partitions "$PARTITIONS" >/dev/null
    done
fi

# --- two kafkad daemons --------------------------------------------------------
start_daemon() { # name linger_ms -> sets DAEMON_PID, writes $RUN/<name>.conf
    local name=$1 linger=$2
    cat >"$RUN/$name.conf" <<EOF
# generated by scripts/bench.sh
[daemon]
socket = $RUN/$name.sock
socket_mode = 0600
log_level = warn

[cluster main]
bootstrap.servers = $BOOTSTRAP
acks = all
linger.ms = $linger
compression.type = none
queue.buffering.max.messages = 1000000
queue.buffering.max.kbytes = 1048576
${BENCH_DAEMON_PROPS:-}
EOF
    "$KAFKAD" -c "$RUN/$name.conf" >"$RUN/$name.log" 2>&1 &
    DAEMON_PID=$!
    DAEMON_PIDS+=("$DAEMON_PID")
    for _ in $(seq 100); do
        [ -S "$RUN/$name.sock" ] && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$RUN/$name.log" >&2; die "kafkad ($name) exited"; }
        sleep 0.1
    done
    die "kafkad ($name) did not create its socket"
}
start_daemon kafkad 5
PID5=$DAEMON_PID
start_daemon kafkad0 0
PID0=$DAEMON_PID
start_daemon kafkad-side 5
PIDS=$DAEMON_PID
start_daemon kafkad-side0 5
PIDS0=$DAEMON_PID
say "kafkad pids $PID5 (linger.ms=5), $PID0 (linger.ms=0), $PIDS (linger.ms=5, sidecar scenarios), $PIDS0 (the same at nice 0)"
# The daemons run at nice -10, as packaging/kafkad.service runs kafkad: it
# carries the traffic of every process on the host, and at their priority 50
# busy producers leave it 1/51 of the CPU (see bench/README.md). One more
# daemon stays at the clients' nice 0, for the fan-in row that shows what
# that costs. Needs root (CAP_SYS_NICE); otherwise everything stays at 0.
DAEMON_NICE=${BENCH_DAEMON_NICE:--10}
for pid in "$PID5" "$PID0" "$PIDS"; do
    for t in /proc/"$pid"/task/*; do  # every thread, librdkafka's included
        renice -n "$DAEMON_NICE" -p "${t##*/}" >/dev/null 2>&1 || {
            say "cannot renice kafkad to $DAEMON_NICE (not root?): the daemons stay at nice $(nice)"
            DAEMON_NICE=$(nice)
            break 2
        }
    done
done
say "kafkad daemons at nice $DAEMON_NICE (pid $PIDS0 at $(nice))"

# --- the benchmarks -----------------------------------------------------------------
KAFKAD_VERSION="$("$KAFKAD" -V 2>/dev/null | awk '{print $2}') (git $(git describe --always --dirty 2>/dev/null || echo '?'))"
LIBRDKAFKA_VERSION=$(pkg-config --modversion rdkafka)
mkdir -p "$OUT"
export KAFKAD_BENCH_RUN=$RUN  # tags the benchmark's processes for cleanup()
rc=0
set +e
if suite producer; then
    say "producer benchmark"
    "$PY" bench/produce_bench.py run \
        --bootstrap "$BOOTSTRAP" --broker-pid "$BROKER_PID" \
        --socket "$RUN/kafkad.sock" --daemon-pid "$PID5" \
        --socket0 "$RUN/kafkad0.sock" --daemon0-pid "$PID0" \
        --rdkafka-bin "$RDK_BIN" --prefix "$PREFIX" --reps "$REPS" --messages "$MESSAGES" \
        --partitions "$PARTITIONS" --daemon-nice "$DAEMON_NICE" \
        --librdkafka-version "$LIBRDKAFKA_VERSION" --kafkad-version "$KAFKAD_VERSION" \
        --broker-jvm-opts "$BASE_JVM_OPTS" --json-out "$OUT/producer.json" \
        "$@" || rc=1
fi
if suite sidecar; then
    say "sidecar benchmarks"
    # shellcheck disable=SC2086
    "$PY" bench/sidecar_bench.py run \
        --bootstrap "$BOOTSTRAP" --broker-pid "$BROKER_PID" --jmx-port "$JMX_PORT" \
        --socket0 "$RUN/kafkad0.sock" --daemon0-pid "$PID0" \
        --socket-side "$RUN/kafkad-side.sock" --side-pid "$PIDS" \
        --socket-side0 "$RUN/kafkad-side0.sock" --side0-pid "$PIDS0" --daemon-nice "$DAEMON_NICE" \
        --raw-bin "$RAW_BIN" --prefix "$PREFIX" --partitions "$PARTITIONS" \
        --pycache "$REPO/build/bench/pycache" \
        --librdkafka-version "$LIBRDKAFKA_VERSION" --kafkad-version "$KAFKAD_VERSION" \
        --broker-jvm-opts "$BASE_JVM_OPTS" --broker-data "$KDIR" --json-out "$OUT/sidecar.json" \
        ${BENCH_SIDECAR_ARGS:-} || rc=1
fi
if suite consumer; then
    say "consumer benchmark"
    "$PY" bench/consume_bench.py \
        --bootstrap "$BOOTSTRAP" --broker-pid "$BROKER_PID" \
        --daemon-socket "$RUN/kafkad.sock" --daemon-pid "$PID5" \
        --kafkad-bin "$KAFKAD" --reps "$REPS" --out-dir "$REPO/bench/results" \
        --json-out "$OUT/consumer.json" || rc=1
fi
unset KAFKAD_BENCH_RUN
for pid in "$PID5" "$PID0" "$PIDS" "$PIDS0"; do
    kill -0 "$pid" 2>/dev/null || { say "kafkad pid $pid died during the run"; rc=1; }
done
if [ -f "$OUT/sidecar.json" ]; then
    "$PY" bench/report.py --data "$OUT" --out "$(dirname "$OUT")/BENCHMARKS.md" || rc=1
fi
set -e
exit $rc
