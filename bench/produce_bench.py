#!/usr/bin/env python3
"""Producer benchmark: kafkad's Python stub against the in-process clients.

Run through ``scripts/bench.sh`` (``make bench``), which starts the broker and
two kafkad daemons and then calls ``produce_bench.py run ...``.  Subcommands:

``topics``  print the names of the topics a run needs (bench.sh creates them)
``run``     run every contender, print the tables, write bench/results/
``worker``  one contender in its own process (internal: ``run`` spawns these)

Scenario A: async produce of N messages of SIZE bytes with delivery reports
(every message's outcome is collected and checked), one fresh topic per
contender and repetition, each contender in its own process; the order of
contenders rotates between repetitions.  Reported per contender: the median
over the repetitions of msgs/s, of client CPU, of kafkad CPU and of their
sum, per 100k messages.

Scenario B: sync round trip: COUNT sequential single-message produces, each
waiting for its acknowledgement (kafkad: ``ack="wait"``; librdkafka /
confluent-kafka: produce one, poll until its delivery report), with
linger.ms=0 everywhere, plus the bare kafkad ``ping``.

CPU accounting.  Client: getrusage(RUSAGE_SELF) of the worker process (all
of its threads, librdkafka's included) over the measured phase only (imports,
connecting and a warm-up batch are outside it); the whole-process figure
from wait4() is kept in the JSON too.  kafkad / broker: the utime+stime delta
of /proc/PID/stat over the same phase, read by the worker itself (10 ms
clock-tick resolution).  kafkad CPU is reported for every contender; for the
in-process clients it is the idle daemon's (≈ 0).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/common.py: helpers shared with the other benchmarks)
from common import (  # noqa: E402
    POLL_EVERY,
    Phase,
    by_contender,
    confluent_outcomes,
    count_reports,
    emit,
    fmt_table,
    kafkad_outcomes,
    last_json,
    log,
    med,
    parse_watch,
    percentiles,
    pyplot,
    rate_bars,
    save_results,
    write_json,
    proc_cpu,
    cpu_bars,
    produce_batches,
    produce_each,
    produce_each_confluent,
    restart_count,
    rotated,
    run_worker,
    self_cpu,
    summary_row,
    system_busy,
    watch_list,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Scenario A contenders, in the table's order.
A_CONTENDERS = [
    ("kafkad-produce", "kafkad stub: Client.produce() + on_delivery, poll(0)/1024 msgs"),
    ("kafkad-batch", "kafkad stub: Client.produce_batch(10k) + poll_reports()"),
    ("confluent-kafka", "confluent-kafka Producer.produce() + on_delivery, poll(0)/1024 msgs"),
    ("kafka-python", "kafka-python KafkaProducer.send() + future callbacks"),
    ("librdkafka-c", "librdkafka from C: rd_kafka_produce() + dr_msg_cb, poll(0)/1024 msgs"),
]
# Scenario B contenders.
B_CONTENDERS = [
    ("kafkad-wait", "kafkad stub: Client.produce(ack='wait')"),
    ("librdkafka-c", "librdkafka from C: produce 1, poll until its dr_msg_cb"),
    ("confluent-kafka", "confluent-kafka: produce 1, poll until its on_delivery"),
    ("kafkad-ping", "kafkad stub: Client.ping() (no Kafka involved)"),
]

THROUGHPUT_WARMUP = 1000  # messages produced and acknowledged before the clock starts
LATENCY_WARMUP = 100
BATCH = 10000  # produce_batch chunk


# --------------------------------------------------------------------------
# scenario A workers


def a_kafkad_produce(o: argparse.Namespace, watch: Dict[str, int]) -> Dict[str, Any]:
    import kafkad

    ok, bad, on_delivery = kafkad_outcomes()
    payload = b"x" * o.size
    topic = o.topic
    with kafkad.Client(o.socket, on_delivery=on_delivery, timeout=60) as c:
        for _ in range(o.warmup):
            c.produce(topic, payload)
        c.flush(60)
        warm_bad = restart_count(ok, bad)
        with Phase(watch) as ph:
            produce_each(c.produce, c.poll, topic, payload, o.count)
            remaining = c.flush(120)
        stub = dict(batch_messages=c._batch_n, linger_ms=c._linger * 1000, max_pending=c.hello.max_pending)
    return ph.result(delivered=ok[0], failed=len(bad), remaining=remaining, warmup_failed=warm_bad,
                     first_error=str(bad[0]) if bad else "", stub=stub)


def a_kafkad_batch(o: argparse.Namespace, watch: Dict[str, int]) -> Dict[str, Any]:
    import kafkad

    payload = b"x" * o.size
    topic = o.topic
    chunk = [payload] * BATCH
    bad: List[Any] = []
    with kafkad.Client(o.socket, timeout=60) as c:
        c.produce_batch(topic, [payload] * o.warmup)
        c.flush(60)
        warm = c.poll_reports(1 << 30)
        warm_bad = sum(1 for r in warm if r.error is not None)
        with Phase(watch) as ph:
            ok = produce_batches(c, topic, chunk, o.count, bad)
            remaining = c.flush(120)
            ok += count_reports(c.poll_reports(1 << 30), bad)
    return ph.result(delivered=ok, failed=len(bad), remaining=remaining, warmup_failed=warm_bad,
                     first_error=str(bad[0]) if bad else "")


def confluent_conf(o: argparse.Namespace, linger_ms: int) -> Dict[str, Any]:
    return common.confluent_conf(o.bootstrap, linger_ms)


def a_confluent(o: argparse.Namespace, watch: Dict[str, int]) -> Dict[str, Any]:
    import confluent_kafka

    ok, bad, on_delivery = confluent_outcomes()
    conf = confluent_conf(o, 5)
    conf["on_delivery"] = on_delivery
    p = confluent_kafka.Producer(conf)
    payload = b"x" * o.size
    topic = o.topic
    for _ in range(o.warmup):
        p.produce(topic, payload)
    p.flush(60)
    warm_bad = restart_count(ok, bad)
    with Phase(watch) as ph:
        queue_full = produce_each_confluent(p.produce, p.poll, topic, payload, o.count)
        remaining = p.flush(120)
    return ph.result(delivered=ok[0], failed=len(bad), remaining=remaining, warmup_failed=warm_bad,
                     queue_full=queue_full, first_error=str(bad[0]) if bad else "")


# batch_size as librdkafka's batch.size; idempotence off as in librdkafka's default
KAFKA_PYTHON_CONF = dict(acks="all", linger_ms=5, compression_type=None, batch_size=1000000,
                         enable_idempotence=False)


def a_kafka_python(o: argparse.Namespace, watch: Dict[str, int]) -> Dict[str, Any]:
    import logging

    from kafka import KafkaProducer

    logging.getLogger("kafka").setLevel(logging.ERROR)
    ok = [0]
    bad: List[Any] = []

    def on_ok(_md: Any) -> None:
        ok[0] += 1

    def on_err(e: Any) -> None:
        bad.append(e)

    p = KafkaProducer(bootstrap_servers=o.bootstrap, **KAFKA_PYTHON_CONF)
    payload = b"x" * o.size
    topic = o.topic
    for _ in range(o.warmup):
        p.send(topic, payload).add_callback(on_ok).add_errback(on_err)
    p.flush(60)
    warm_bad = restart_count(ok, bad)
    send = p.send
    with Phase(watch) as ph:
        for _ in range(o.count):
            send(topic, payload).add_callback(on_ok).add_errback(on_err)
        p.flush(300)
    p.close(10)
    return ph.result(delivered=ok[0], failed=len(bad), remaining=o.count - ok[0] - len(bad),
                     warmup_failed=warm_bad, first_error=str(bad[0]) if bad else "")


# --------------------------------------------------------------------------
# scenario B workers


def b_kafkad_wait(o: argparse.Namespace, watch: Dict[str, int]) -> Dict[str, Any]:
    import kafkad

    payload = b"x" * o.size
    lat: List[float] = []
    clock = time.perf_counter
    with kafkad.Client(o.socket, timeout=60) as c:
        for _ in range(o.warmup):
            c.produce(o.topic, payload, ack="wait")
        produce = c.produce
        topic = o.topic
        with Phase(watch) as ph:
            for _ in range(o.count):
                t0 = clock()
                produce(topic, payload, ack="wait")  # raises on a failed delivery
                lat.append((clock() - t0) * 1e6)
    return ph.result(delivered=o.count, failed=0, lat_us=lat)


def b_kafkad_ping(o: argparse.Namespace, watch: Dict[str, int]) -> Dict[str, Any]:
    import kafkad

    lat: List[float] = []
    clock = time.perf_counter
    with kafkad.Client(o.socket, timeout=60) as c:
        for _ in range(o.warmup):
            c.ping()
        ping = c.ping
        with Phase(watch) as ph:
            for _ in range(o.count):
                t0 = clock()
                ping()
                lat.append((clock() - t0) * 1e6)
    return ph.result(delivered=o.count, failed=0, lat_us=lat)


def b_confluent(o: argparse.Namespace, watch: Dict[str, int]) -> Dict[str, Any]:
    import confluent_kafka

    done = [0]
    bad: List[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        done[0] += 1
        if err is not None:
            bad.append(err)

    conf = confluent_conf(o, 0)
    conf["on_delivery"] = on_delivery
    p = confluent_kafka.Producer(conf)
    payload = b"x" * o.size
    topic = o.topic
    clock = time.perf_counter
    lat: List[float] = []

    def one() -> None:
        want = done[0] + 1
        p.produce(topic, payload)
        while done[0] < want:
            p.poll(1.0)

    for _ in range(o.warmup):
        one()
    bad.clear()
    with Phase(watch) as ph:
        for _ in range(o.count):
            t0 = clock()
            one()
            lat.append((clock() - t0) * 1e6)
    p.flush(10)
    return ph.result(delivered=o.count - len(bad), failed=len(bad), lat_us=lat,
                     first_error=str(bad[0]) if bad else "")


WORKERS: Dict[str, Callable[[argparse.Namespace, Dict[str, int]], Dict[str, Any]]] = {
    "a:kafkad-produce": a_kafkad_produce,
    "a:kafkad-batch": a_kafkad_batch,
    "a:confluent-kafka": a_confluent,
    "a:kafka-python": a_kafka_python,
    "b:kafkad-wait": b_kafkad_wait,
    "b:kafkad-ping": b_kafkad_ping,
    "b:confluent-kafka": b_confluent,
}


def cmd_worker(o: argparse.Namespace) -> int:
    watch = parse_watch(os.environ.get("KB_WATCH_PIDS", ""))
    emit(WORKERS[o.name](o, watch))
    return 0


# --------------------------------------------------------------------------
# orchestration


def topic_names(prefix: str, reps: int) -> List[str]:
    names = [f"{prefix}-warmup"]
    for name, _ in A_CONTENDERS:
        names += [f"{prefix}-a-{name}-{r}" for r in range(reps)]
    for name, _ in B_CONTENDERS:
        if name != "kafkad-ping":
            names += [f"{prefix}-b-{name}-{r}" for r in range(reps)]
    return names


def cmd_topics(o: argparse.Namespace) -> int:
    print("\n".join(topic_names(o.prefix, o.reps)))
    return 0


class Runner:
    def __init__(self, o: argparse.Namespace) -> None:
        self.o = o
        self.watch_env = watch_list((("kafkad", o.daemon_pid), ("kafkad0", o.daemon0_pid), ("broker", o.broker_pid)))

    def spawn(self, argv: List[str], timeout: float) -> Tuple[Dict[str, Any], float]:
        """Run one worker process; returns its JSON and its whole-process CPU."""
        env = dict(os.environ, KB_WATCH_PIDS=self.watch_env)
        ours = [pid for pid in (self.o.daemon_pid, self.o.daemon0_pid, self.o.broker_pid) if pid]
        b0, o0, s0, t0 = system_busy(), sum(map(proc_cpu, ours)), self_cpu(), time.monotonic()
        out, rc, ru = run_worker(argv, env, timeout)
        wall = time.monotonic() - t0
        whole = ru.ru_utime + ru.ru_stime
        # CPU used meanwhile by processes that are not part of the benchmark
        # (other users of the machine): a noise indicator
        other = system_busy() - b0 - (sum(map(proc_cpu, ours)) - o0) - (self_cpu() - s0) - whole
        res = last_json(out)
        if res is None:
            raise RuntimeError(f"{argv[:4]} exited with {rc}")
        res["exit"] = rc
        res["process_wall_s"] = wall
        res["other_cpu_s"] = max(0.0, other)
        res["other_cpu_frac"] = max(0.0, other) / wall / (os.cpu_count() or 1)
        return res, whole

    def py_worker(self, name: str, topic: str, count: int, warmup: int, socket: str = "") -> List[str]:
        o = self.o
        return [sys.executable, str(Path(__file__).resolve()), "worker", name, "--topic", topic, "--count", str(count),
                "--size", str(o.size), "--warmup", str(warmup), "--bootstrap", o.bootstrap,
                "--socket", socket or o.socket]

    def c_worker(self, mode: str, topic: str, count: int, warmup: int, linger: int) -> List[str]:
        o = self.o
        return [o.rdkafka_bin, mode, o.bootstrap, topic, str(count), str(o.size), str(warmup),
                "acks=all", f"linger.ms={linger}", "compression.type=none",
                "queue.buffering.max.messages=1000000", "queue.buffering.max.kbytes=1048576"]

    def a_argv(self, name: str, topic: str, count: int) -> List[str]:
        if name == "librdkafka-c":
            return self.c_worker("throughput", topic, count, THROUGHPUT_WARMUP, 5)
        return self.py_worker("a:" + name, topic, count, THROUGHPUT_WARMUP)

    def a_count(self, name: str) -> int:
        return self.o.kafka_python_messages if name == "kafka-python" else self.o.messages

    def scenario_a(self) -> List[Dict[str, Any]]:
        o = self.o
        names = [n for n, _ in A_CONTENDERS if not o.only or n in o.only]
        runs = []
        for rep in range(o.reps):
            for name in rotated(names, rep):
                topic = f"{o.prefix}-a-{name}-{rep}"
                count = self.a_count(name)
                res, whole = self.spawn(self.a_argv(name, topic, count), o.timeout)
                res.update(contender=name, rep=rep, topic=topic, count=count, client_cpu_process_s=whole)
                ok = res.get("delivered") == count and not res.get("failed") and res["exit"] == 0
                res["ok"] = ok
                res["msgs_per_s"] = count / res["elapsed_s"]
                w = res.get("watch", {})
                per = 100000.0 / count
                res["client_cpu_100k"] = res["cpu_s"] * per
                res["kafkad_cpu_100k"] = max(0.0, w.get("kafkad", 0.0)) * per
                res["broker_cpu_100k"] = max(0.0, w.get("broker", 0.0)) * per
                res["total_cpu_100k"] = res["client_cpu_100k"] + res["kafkad_cpu_100k"]
                runs.append(res)
                log(f"A rep {rep} {name:16s} {res['msgs_per_s']:>10,.0f} msgs/s  client {res['client_cpu_100k']:.3f}"
                    f"  kafkad {res['kafkad_cpu_100k']:.3f}  broker {res['broker_cpu_100k']:.3f} s/100k"
                    f"  other load {res['other_cpu_frac']:.0%}  delivered {res.get('delivered')}/{count}{'' if ok else '  FAILED: ' + str(res.get('first_error'))}")
        return runs

    def scenario_b(self) -> List[Dict[str, Any]]:
        o = self.o
        names = [n for n, _ in B_CONTENDERS if not o.only or n in o.only]
        # single-message produces take another path through the broker: warm it too
        log(f"warm-up: librdkafka-c, {o.latency_count} sync produces")
        self.spawn(self.c_worker("latency", f"{o.prefix}-warmup", o.latency_count, 0, 0), 120)
        runs = []
        for rep in range(o.reps):
            for name in rotated(names, rep):
                topic = f"{o.prefix}-b-{name}-{rep}"
                if name == "librdkafka-c":
                    argv = self.c_worker("latency", topic, o.latency_count, LATENCY_WARMUP, 0)
                elif name == "confluent-kafka":
                    argv = self.py_worker("b:confluent-kafka", topic, o.latency_count, LATENCY_WARMUP)
                else:
                    argv = self.py_worker("b:" + name, topic, o.latency_count, LATENCY_WARMUP, o.socket0)
                res, whole = self.spawn(argv, o.timeout)
                lat = res.pop("lat_us")
                res.update(contender=name, rep=rep, topic=topic, client_cpu_process_s=whole, lat_us=lat,
                           ok=res["exit"] == 0 and not res.get("failed") and len(lat) == o.latency_count)
                res.update(percentiles(lat))
                runs.append(res)
                log(f"B rep {rep} {name:16s} p50 {res['p50_us']:8.1f} us  p99 {res['p99_us']:8.1f} us"
                    f"  other load {res['other_cpu_frac']:.0%}")
        return runs


def summarise_a(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for name, desc, rs in by_contender(runs, A_CONTENDERS):
        row, good = summary_row(rs, ("msgs_per_s", "client_cpu_100k", "kafkad_cpu_100k", "total_cpu_100k",
                                     "broker_cpu_100k"),
                                contender=name, description=desc, messages=rs[0]["count"])
        row["client_cpu_process_100k"] = med([r["client_cpu_process_s"] * 100000.0 / r["count"] for r in good])
        row["other_load"] = med([r["other_cpu_frac"] for r in rs])
        out.append(row)
    return out


def summarise_b(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for name, desc, rs in by_contender(runs, B_CONTENDERS):
        row, good = summary_row(rs, ("p50_us", "p90_us", "p99_us", "mean_us"), contender=name, description=desc)
        row["other_load"] = med([r["other_cpu_frac"] for r in rs])
        row["client_cpu_per_op_us"] = med([r["cpu_s"] / len(r["lat_us"]) * 1e6 for r in good])
        row["kafkad_cpu_per_op_us"] = med([max(0.0, r["watch"].get("kafkad0", 0.0)) / len(r["lat_us"]) * 1e6
                                           for r in good])
        out.append(row)
    return out


# --------------------------------------------------------------------------
# report


def render(o: argparse.Namespace, meta: Dict[str, Any], sa: List[Dict[str, Any]], sb: List[Dict[str, Any]]) -> str:
    lines = [f"# kafkad producer benchmark — {meta['started']}", ""]
    lines.append("## Conditions")
    lines.append("")
    m = meta["machine"]
    lines.append(f"- machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}, loopback only; "
                 f"broker, kafkad and the client share the CPUs (load before the run: {m['load_before']})")
    lines.append("- " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    dn = meta.get("daemon_nice", meta["nice"])
    lines.append(f"- broker JVM: {meta['broker_jvm_opts']}; every benchmark process at nice {meta['nice']}"
                 + (f", the kafkad daemons at nice {dn} (as packaging/kafkad.service runs kafkad)"
                    if dn != meta["nice"] else ""))
    lines.append(f"- message: {o.size}-byte value, no key, no headers; every topic fresh, "
                 f"{o.partitions} partitions, RF 1")
    lines.append("- producer settings, all contenders: acks=all, compression none, linger.ms=5 (A) / 0 (B); "
                 "librdkafka-based ones (kafkad's, confluent-kafka, C) queue.buffering.max.messages=1000000, "
                 "queue.buffering.max.kbytes=1048576, other librdkafka defaults (batch.size 1 MB, "
                 "batch.num.messages 10000, idempotence off); kafka-python batch_size=1000000, "
                 "enable_idempotence=False, otherwise defaults")
    if meta.get("stub"):
        s = meta["stub"]
        lines.append(f"- kafkad stub: Client defaults (batch_messages → {s['batch_messages']} per request, "
                     f"linger_ms {s['linger_ms']:g}, background linger thread); daemon max_pending {s['max_pending']}")
    lines.append(f"- each contender: its own process; {THROUGHPUT_WARMUP} (A) / {LATENCY_WARMUP} (B) warm-up "
                 f"messages acknowledged before the clock starts; {o.reps} repetitions in rotating order, "
                 "median reported; a warm-up run before everything")
    lines.append("- other load: CPU used during a run by processes outside the benchmark (other users of the "
                 "machine; /proc/stat busy time minus client, kafkad and broker), as a share of all CPUs — "
                 "non-zero values mean the numbers are disturbed")
    lines.append("- CPU: client = getrusage(RUSAGE_SELF) over the measured phase (all threads); kafkad/broker = "
                 "/proc/PID/stat utime+stime delta over the same phase (10 ms ticks)")
    lines.append("")
    if sa:
        lines.append(f"## Scenario A: async produce with delivery reports "
                     f"({o.messages:,} × {o.size} B; kafka-python {o.kafka_python_messages:,}, scaled)")
        lines.append("")
        rows = []
        for r in sa:
            rows.append([
                r["contender"], f"{r['messages']:,}", f"{r['msgs_per_s']:,.0f}",
                f"{r['msgs_per_s_min']:,.0f}–{r['msgs_per_s_max']:,.0f}",
                f"{r['client_cpu_100k']:.3f}", f"{r['kafkad_cpu_100k']:.3f}", f"{r['total_cpu_100k']:.3f}",
                f"{r['broker_cpu_100k']:.3f}", f"{r['other_load']:.0%}",
                "" if not r["failed_runs"] else f"{r['failed_runs']} failed",
            ])
        lines.append(fmt_table(
            ["contender", "msgs", "msgs/s (median)", "range", "client CPU s/100k", "kafkad CPU s/100k",
             "total CPU s/100k", "broker CPU s/100k", "other load", ""],
            rows, "lrrrrrrrrl"))
        lines.append("")
        for r in sa:
            lines.append(f"- {r['contender']}: {r['description']}")
        ref = {r["contender"]: r for r in sa}
        if "kafkad-produce" in ref and "confluent-kafka" in ref:
            k, c = ref["kafkad-produce"], ref["confluent-kafka"]
            lines.append("")
            lines.append(f"kafkad-produce / confluent-kafka msgs/s: {k['msgs_per_s'] / c['msgs_per_s']:.2f} "
                         f"(target ≥ 1.00)")
            if "kafkad-batch" in ref:
                lines.append(f"kafkad-batch / confluent-kafka msgs/s: "
                             f"{ref['kafkad-batch']['msgs_per_s'] / c['msgs_per_s']:.2f}")
        lines.append("")
    if sb:
        lines.append(f"## Scenario B: sync produce round trip ({o.latency_count:,} sequential produces, "
                     f"each waited for; linger.ms=0)")
        lines.append("")
        rows = []
        for r in sb:
            rows.append([r["contender"], f"{r['p50_us']:.0f}", f"{r['p90_us']:.0f}", f"{r['p99_us']:.0f}",
                         f"{r['mean_us']:.0f}", f"{r['client_cpu_per_op_us']:.0f}", f"{r['kafkad_cpu_per_op_us']:.0f}",
                         f"{r['other_load']:.0%}", "" if not r["failed_runs"] else f"{r['failed_runs']} failed"])
        lines.append(fmt_table(["contender", "p50 µs", "p90 µs", "p99 µs", "mean µs", "client CPU µs/op",
                                "kafkad CPU µs/op", "other load", ""], rows, "lrrrrrrrl"))
        lines.append("")
        for r in sb:
            lines.append(f"- {r['contender']}: {r['description']}")
        ref = {r["contender"]: r for r in sb}
        if "kafkad-wait" in ref and "librdkafka-c" in ref:
            d50 = ref["kafkad-wait"]["p50_us"] - ref["librdkafka-c"]["p50_us"]
            d99 = ref["kafkad-wait"]["p99_us"] - ref["librdkafka-c"]["p99_us"]
            lines.append("")
            lines.append(f"kafkad adds {d50:+.0f} µs at p50 (target ≤ 100 µs: {'met' if d50 <= 100 else 'NOT met'}),"
                         f" {d99:+.0f} µs at p99, over librdkafka from C")
        lines.append("")
    return "\n".join(lines)


def chart(path: Path, sa: List[Dict[str, Any]], sb: List[Dict[str, Any]], title: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5))
    if sa:
        names = [r["contender"] for r in sa]
        ax = axes[0]
        rate_bars(ax, names, sa, "#4c72b0")
        ax.set_title("A: async produce + delivery reports\n(k msgs/s, median, min–max)")
        ax.tick_params(axis="x", rotation=25)
        ax = axes[1]
        # kafka-python is ~20x the others: clip the axis and print the values
        cpu_bars(ax, names, sa, lambda tot: sorted(tot)[-2] * 1.6 if len(tot) > 1 else max(tot) * 1.2)
        ax.set_title("A: CPU seconds per 100k messages (client + kafkad)")
        ax.tick_params(axis="x", rotation=25)
    if sb:
        ax = axes[2]
        names = [r["contender"] for r in sb]
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [r["p50_us"] for r in sb], width=0.4, label="p50", color="#4c72b0")
        ax.bar([i + 0.2 for i in x], [r["p99_us"] for r in sb], width=0.4, label="p99", color="#dd8452")
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=25)
        ax.set_yscale("log")
        ax.set_title("B: sync round trip (µs, log scale)")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_run(o: argparse.Namespace) -> int:
    o.only = set(filter(None, (o.only or "").split(",")))
    started = _dt.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    meta: Dict[str, Any] = {
        **common.run_meta(started, o.librdkafka_version, o.kafkad_version, o.broker_jvm_opts),
        "daemon_nice": o.daemon_nice,
        "settings": {
            "messages": o.messages, "kafka_python_messages": o.kafka_python_messages, "size": o.size,
            "reps": o.reps, "partitions": o.partitions, "latency_count": o.latency_count,
            "throughput_warmup": THROUGHPUT_WARMUP, "latency_warmup": LATENCY_WARMUP,
            "poll_every": POLL_EVERY, "produce_batch_chunk": BATCH,
            "kafka_python": {k: v for k, v in KAFKA_PYTHON_CONF.items()},
        },
    }
    runner = Runner(o)
    t0 = time.monotonic()
    # warm the broker (JIT, page cache) so that the first contender is not penalised
    log(f"warm-up: librdkafka-c, {o.warmup_messages} messages")
    runner.spawn(runner.c_worker("throughput", f"{o.prefix}-warmup", o.warmup_messages, 0, 5), 120)
    runs_a = runner.scenario_a() if not o.skip_a else []
    runs_b = runner.scenario_b() if not o.skip_b else []
    meta["duration_s"] = round(time.monotonic() - t0, 1)
    stub = next((r.get("stub") for r in runs_a if r.get("stub")), None)
    if stub:
        meta["stub"] = stub
    sa, sb = summarise_a(runs_a), summarise_b(runs_b)
    text = render(o, meta, sa, sb)
    print(text)
    base = save_results(o.out_dir, f"produce-{stamp}", text,
                        {"meta": meta, "scenario_a": {"summary": sa, "runs": runs_a},
                         "scenario_b": {"summary": sb, "runs": runs_b}},
                        lambda png: chart(png, sa, sb, f"kafkad producer benchmark {meta['started']}"))
    log(f"wrote {base}.md, .json, .png ({meta['duration_s']} s of measurements)")
    if o.json_out:
        # the copy docs/BENCHMARKS.md is generated from (bench/report.py): summaries
        # and runs, latency samples rounded to 0.1 µs to keep the committed file small
        for r in runs_b:
            r["lat_us"] = [round(x, 1) for x in r["lat_us"]]
        write_json(o.json_out, {"meta": meta, "scenario_a": {"summary": sa, "runs": runs_a},
                                "scenario_b": {"summary": sb, "runs": runs_b}})
        log(f"wrote {o.json_out}")
    failed = [r for r in runs_a + runs_b if not r["ok"]]
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    ap, sub, t = common.subcommand_cli(__doc__)
    t.add_argument("--reps", type=int, default=3)
    r = sub.add_parser("run", help="run the benchmark")
    r.add_argument("--bootstrap", required=True)
    r.add_argument("--socket", required=True, help="kafkad socket (linger.ms=5 daemon, scenario A)")
    r.add_argument("--socket0", required=True, help="kafkad socket (linger.ms=0 daemon, scenario B)")
    r.add_argument("--daemon-pid", type=int, default=0)
    r.add_argument("--daemon0-pid", type=int, default=0)
    r.add_argument("--broker-pid", type=int, default=0)
    r.add_argument("--rdkafka-bin", required=True)
    r.add_argument("--prefix", required=True)
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--messages", type=int, default=500000)
    r.add_argument("--kafka-python-messages", type=int, default=100000)
    r.add_argument("--warmup-messages", type=int, default=300000)
    r.add_argument("--size", type=int, default=100)
    r.add_argument("--partitions", type=int, default=6)
    r.add_argument("--latency-count", type=int, default=2000)
    r.add_argument("--timeout", type=float, default=240.0, help="kill a worker after this many seconds")
    r.add_argument("--only", default="", help="comma-separated contender names")
    r.add_argument("--skip-a", action="store_true")
    r.add_argument("--skip-b", action="store_true")
    r.add_argument("--out-dir", default=str(HERE / "results"))
    r.add_argument("--json-out", default="", help="also write the results JSON here (for bench/report.py)")
    r.add_argument("--librdkafka-version", default="?")
    r.add_argument("--kafkad-version", default="?")
    r.add_argument("--broker-jvm-opts", default="?")
    r.add_argument("--daemon-nice", type=int, default=0, help="the kafkad daemons' nice value (for the report)")
    w = sub.add_parser("worker", help="(internal) one contender")
    w.add_argument("name", choices=sorted(WORKERS))
    w.add_argument("--topic", required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--size", type=int, default=100)
    w.add_argument("--warmup", type=int, default=0)
    w.add_argument("--bootstrap", default="")
    w.add_argument("--socket", default="")
    o = ap.parse_args(argv)
    return {"topics": cmd_topics, "run": cmd_run, "worker": cmd_worker}[o.cmd](o)


if __name__ == "__main__":
    sys.exit(main())
