#!/usr/bin/env python3
"""Consumer benchmark: kafkad's Python stub against the in-process clients.

One topic (default 6 partitions) holds N (default 1M) messages of SIZE
(default 100) bytes, produced once before the runs.  Each contender then
reads it from the beginning, in its own fresh process, with its own
consumer (kafkad: a simple-mode consumer without a group, i.e. a private
daemon consumer; the others: an explicit assignment of every partition at
the earliest offset, no group join, no commits), and touches every message
(adds up the value lengths).  Contenders:

  kafkad-consume    stub Consumer.consume(max=BATCH)
  kafkad-poll       stub Consumer.poll(), one message a call
  confluent-consume confluent-kafka Consumer.consume(num_messages=BATCH)
  confluent-poll    confluent-kafka Consumer.poll()
  confluent-*-tuned the two above with fetch.queue.backoff.ms=10 (the default 1000 stalls them)
  kafka-python      kafka-python KafkaConsumer, iteration        (scaled: fewer messages)
  pykafka           PyKafka 2.8 SimpleConsumer.consume(), pure Python (scaled)
  librdkafka-c      bench/rdkafka_consume.c, rd_kafka_consume_batch_queue(BATCH)
  kafkad-pykafka    kafkad.pykafka SimpleConsumer.consume() (the PyKafka drop-in; extra row)

Measured per run (three snapshots: "start" just before the client/consumer
is created, "first" when the first message is in hand, "last" when the
N-th is): msgs/s from the first message to the last, and including setup
(start to last); CPU seconds per 100k messages of the client process
(getrusage RUSAGE_SELF: all of its threads) and of kafkad and the broker
(/proc/PID/stat utime+stime deltas, 10 ms ticks) over first..last; the
"other load" (busy CPU of the machine, /proc/stat, minus client, kafkad and
broker) as a share of all CPUs.  Median of the repetitions (default 3),
contender order rotating between repetitions, after a warm-up pass.

Usage:

  consume_bench.py --self-contained            # starts broker + kafkad itself, stops them after
  consume_bench.py --bootstrap HOST:PORT --daemon-socket PATH --daemon-pid PID [--broker-pid PID]
                   [--topic EXISTING]           # else a fresh topic is created and filled

Results: a markdown table on stdout, bench/results/consume-<timestamp>.md,
.json (every run's raw snapshots) and .png.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402  (bench/common.py: helpers shared by the benchmarks)
    by_contender,
    client_versions,
    cpu_bars,
    emit,
    fmt_table,
    last_json,
    log,
    machine,
    med,
    parse_watch,
    proc_cpu,
    pyplot,
    rate_bars,
    rotated,
    run_worker,
    save_results,
    self_cpu,
    summary_row,
    system_busy,
    watch_list,
    write_json,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLUSTER = REPO / "tests" / "kafka" / "cluster"
DEFAULT_JVM_OPTS = "-Xmx1g -XX:+UseSerialGC"

CONTENDERS: List[Tuple[str, str]] = [
    ("kafkad-consume", "kafkad stub: Client.consumer(mode='simple', auto_offset_reset='earliest').consume(max=BATCH, timeout=1)"),
    ("kafkad-poll", "kafkad stub: same consumer, poll(timeout=1) one message a call"),
    ("confluent-consume", "confluent-kafka Consumer: assign(all, OFFSET_BEGINNING), consume(num_messages=BATCH, timeout=1)"),
    ("confluent-poll", "confluent-kafka Consumer: assign(all, OFFSET_BEGINNING), poll(1)"),
    ("confluent-consume-tuned", "as confluent-consume, with fetch.queue.backoff.ms=10 (default 1000: see the notes)"),
    ("confluent-poll-tuned", "as confluent-poll, with fetch.queue.backoff.ms=10"),
    ("kafka-python", "kafka-python KafkaConsumer: assign(all) + seek_to_beginning(), iteration"),
    ("pykafka", "PyKafka 2.8 (pure Python, use_rdkafka=False) SimpleConsumer, no group, consume()"),
    ("librdkafka-c", "librdkafka from C (bench/rdkafka_consume.c): assign(all, BEGINNING), rd_kafka_consume_batch_queue(BATCH)"),
    ("kafkad-pykafka", "kafkad.pykafka SimpleConsumer (PyKafka drop-in over the stub), no group, consume()"),
]
NAMES = [n for n, _ in CONTENDERS]
TUNED_BACKOFF_MS = 10
STALL_S = 30.0  # a worker gives up when no message came for this long


# --------------------------------------------------------------------------
# workers (each runs in its own process)


class Meter:
    """Snapshots of wall clock, own CPU, machine busy CPU and watched processes."""

    def __init__(self, watch: Dict[str, int]) -> None:
        self.watch = watch

    def snap(self, n: int = 0) -> Dict[str, Any]:
        return {"wall": time.perf_counter(), "cpu": self_cpu(), "busy": system_busy(),
                "watch": {k: proc_cpu(p) for k, p in self.watch.items()}, "n": n}


class Check:
    """--verify: every partition's offsets must run 0, 1, 2, ... (no gap, no repeat)."""

    def __init__(self) -> None:
        self.next: Dict[int, int] = {}
        self.bad = 0

    def __call__(self, p: int, o: int) -> None:
        if self.next.get(p, 0) != o:
            self.bad += 1
        self.next[p] = o + 1


class Gaps:
    """The longest wait between two consecutive non-empty batches: a stalled
    fetch shows here (a rate alone hides whether it was slow or stopped)."""

    def __init__(self) -> None:
        self.prev: Optional[float] = None
        self.longest = 0.0

    def mark(self) -> None:
        now = time.perf_counter()
        if self.prev is not None and now - self.prev > self.longest:
            self.longest = now - self.prev
        self.prev = now


def _result(o: argparse.Namespace, start: Dict[str, Any], first: Optional[Dict[str, Any]], last: Dict[str, Any],
            n: int, nbytes: int, chk: Optional[Check], errors: int = 0, first_error: str = "",
            **extra: Any) -> Dict[str, Any]:
    return dict(received=n, value_bytes=nbytes, bad_order=chk.bad if chk else -1, errors=errors,
                first_error=first_error, start=start, first=first or last, last=last, **extra)


def w_kafkad_consume(o: argparse.Namespace, m: Meter) -> Dict[str, Any]:
    import kafkad

    N, B = o.count, o.batch
    chk = Check() if o.verify else None
    n = nbytes = 0
    first = None
    start = m.snap()
    with kafkad.Client(o.socket, timeout=60) as c:
        con = c.consumer(o.topic, mode="simple", auto_offset_reset="earliest")
        consume = con.consume
        idle = time.monotonic()
        gap = Gaps()
        while n < N:
            batch = consume(min(B, N - n), 1.0)
            if not batch:
                if time.monotonic() - idle > STALL_S:
                    break
                continue
            gap.mark()
            if first is None:
                first = m.snap(len(batch))
            for msg in batch:
                nbytes += len(msg.value)
            if chk:
                for msg in batch:
                    chk(msg.partition, msg.offset)
            n += len(batch)
            idle = time.monotonic()
        last = m.snap(n)
        stub = {"fetch_max": con._core.fetch_max, "fetch_max_bytes": con._core.fetch_bytes}
        con.close()
    return _result(o, start, first, last, n, nbytes, chk, stub=stub, max_wait_s=gap.longest)


def w_kafkad_poll(o: argparse.Namespace, m: Meter) -> Dict[str, Any]:
    import kafkad

    N = o.count
    chk = Check() if o.verify else None
    verify = chk is not None
    n = nbytes = 0
    first = None
    start = m.snap()
    with kafkad.Client(o.socket, timeout=60) as c:
        con = c.consumer(o.topic, mode="simple", auto_offset_reset="earliest")
        poll = con.poll
        idle = time.monotonic()
        msg = None
        while msg is None and time.monotonic() - idle < STALL_S:
            msg = poll(1.0)
        if msg is not None:
            first = m.snap(1)
            n, nbytes = 1, len(msg.value)
            if chk:
                chk(msg.partition, msg.offset)
        seen = n
        while n < N:
            msg = poll(1.0)
            if msg is None:  # only here: the stall check costs nothing per message
                if n != seen:
                    seen, idle = n, time.monotonic()
                elif time.monotonic() - idle > STALL_S:
                    break
                continue
            nbytes += len(msg.value)
            n += 1
            if verify:
                chk(msg.partition, msg.offset)  # type: ignore[misc]
        last = m.snap(n)
        con.close()
    return _result(o, start, first, last, n, nbytes, chk)


def _confluent(o: argparse.Namespace) -> Any:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    conf = {"bootstrap.servers": o.bootstrap, "group.id": f"consume-bench-cc-{os.getpid()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    if o.name.endswith("-tuned"):
        # librdkafka >= 2.3 postpones a partition's next fetch by this much once its
        # local queue is past queued.min.messages (100000); 1 s stalls otherwise
        conf["fetch.queue.backoff.ms"] = TUNED_BACKOFF_MS
    c = Consumer(conf)
    c.assign([TopicPartition(o.topic, p, OFFSET_BEGINNING) for p in range(o.partitions)])
    return c


def w_confluent_consume(o: argparse.Namespace, m: Meter) -> Dict[str, Any]:
    N, B = o.count, o.batch
    chk = Check() if o.verify else None
    n = nbytes = errors = 0
    first_error = ""
    first = None
    start = m.snap()
    c = _confluent(o)
    consume = c.consume
    idle = time.monotonic()
    gap = Gaps()
    while n < N:
        msgs = consume(num_messages=min(B, N - n), timeout=1.0)
        if not msgs:
            if time.monotonic() - idle > STALL_S:
                break
            continue
        gap.mark()
        k = len(msgs)
        for msg in msgs:
            if msg.error():
                k -= 1
                errors += 1
                first_error = first_error or str(msg.error())
            else:
                nbytes += len(msg.value())
        if chk:
            for msg in msgs:
                if not msg.error():
                    chk(msg.partition(), msg.offset())
        if first is None and k:
            first = m.snap(k)
        n += k
        idle = time.monotonic()
    last = m.snap(n)
    c.close()
    return _result(o, start, first, last, n, nbytes, chk, errors, first_error, max_wait_s=gap.longest)


def w_confluent_poll(o: argparse.Namespace, m: Meter) -> Dict[str, Any]:
    N = o.count
    chk = Check() if o.verify else None
    verify = chk is not None
    n = nbytes = errors = 0
    first_error = ""
    first = None
    start = m.snap()
    c = _confluent(o)
    poll = c.poll
    idle = time.monotonic()
    while first is None and time.monotonic() - idle < STALL_S:
        msg = poll(1.0)
        if msg is None:
            continue
        if msg.error():
            errors += 1
            first_error = first_error or str(msg.error())
            continue
        first = m.snap(1)
        n, nbytes = 1, len(msg.value())
        if chk:
            chk(msg.partition(), msg.offset())
    seen = n
    while n < N:
        msg = poll(1.0)
        if msg is None:
            if n != seen:
                seen, idle = n, time.monotonic()
            elif time.monotonic() - idle > STALL_S:
                break
            continue
        if msg.error():
            errors += 1
            first_error = first_error or str(msg.error())
            continue
        nbytes += len(msg.value())
        n += 1
        if verify:
            chk(msg.partition(), msg.offset())  # type: ignore[misc]
    last = m.snap(n)
    c.close()
    return _result(o, start, first, last, n, nbytes, chk, errors, first_error)


def w_kafka_python(o: argparse.Namespace, m: Meter) -> Dict[str, Any]:
    import logging

    from kafka import KafkaConsumer, TopicPartition

    logging.getLogger("kafka").setLevel(logging.ERROR)
    N = o.count
    chk = Check() if o.verify else None
    verify = chk is not None
    n = nbytes = 0
    first = None
    start = m.snap()
    # consumer_timeout_ms ends the iteration when nothing comes (a stall)
    c = KafkaConsumer(bootstrap_servers=o.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=int(STALL_S * 1000))
    c.assign([TopicPartition(o.topic, p) for p in range(o.partitions)])
    c.seek_to_beginning()
    it = iter(c)
    msg = next(it, None)
    if msg is not None:
        first = m.snap(1)
        n, nbytes = 1, len(msg.value)
        if chk:
            chk(msg.partition, msg.offset)
        if n < N:
            for msg in it:
                nbytes += len(msg.value)
                n += 1
                if verify:
                    chk(msg.partition, msg.offset)  # type: ignore[misc]
                if n >= N:
                    break
    last = m.snap(n)
    c.close()
    return _result(o, start, first, last, n, nbytes, chk)


def _pykafka_loop(o: argparse.Namespace, m: Meter, start: Dict[str, Any], consumer: Any) -> Dict[str, Any]:
    N = o.count
    chk = Check() if o.verify else None
    verify = chk is not None
    n = nbytes = 0
    first = None
    consume = consumer.consume
    msg = consume()  # None after consumer_timeout_ms (a stall)
    if msg is not None:
        first = m.snap(1)
        n, nbytes = 1, len(msg.value)
        if chk:
            chk(msg.partition_id, msg.offset)
        while n < N:
            msg = consume()
            if msg is None:
                break
            nbytes += len(msg.value)
            n += 1
            if verify:
                chk(msg.partition_id, msg.offset)  # type: ignore[misc]
    last = m.snap(n)
    consumer.stop()
    return _result(o, start, first, last, n, nbytes, chk)


def w_pykafka(o: argparse.Namespace, m: Meter) -> Dict[str, Any]:
    import logging

    from pykafka import KafkaClient
    from pykafka.common import OffsetType

    logging.getLogger("pykafka").setLevel(logging.ERROR)
    start = m.snap()
    client = KafkaClient(hosts=o.bootstrap)  # broker_version: PyKafka's default ("0.9.0")
    topic = client.topics[o.topic.encode()]
    consumer = topic.get_simple_consumer(auto_offset_reset=OffsetType.EARLIEST, use_rdkafka=False,
                                         consumer_timeout_ms=int(STALL_S * 1000))
    return _pykafka_loop(o, m, start, consumer)


def w_kafkad_pykafka(o: argparse.Namespace, m: Meter) -> Dict[str, Any]:
    from kafkad.pykafka import KafkaClient
    from kafkad.pykafka.common import OffsetType

    start = m.snap()
    client = KafkaClient(hosts=o.bootstrap, socket_path=o.socket)
    topic = client.topics[o.topic.encode()]
    consumer = topic.get_simple_consumer(auto_offset_reset=OffsetType.EARLIEST,
                                         consumer_timeout_ms=int(STALL_S * 1000))
    res = _pykafka_loop(o, m, start, consumer)
    client.close()
    return res


WORKERS: Dict[str, Callable[[argparse.Namespace, Meter], Dict[str, Any]]] = {
    "kafkad-consume": w_kafkad_consume,
    "kafkad-poll": w_kafkad_poll,
    "confluent-consume": w_confluent_consume,
    "confluent-poll": w_confluent_poll,
    "confluent-consume-tuned": w_confluent_consume,
    "confluent-poll-tuned": w_confluent_poll,
    "kafka-python": w_kafka_python,
    "pykafka": w_pykafka,
    "kafkad-pykafka": w_kafkad_pykafka,
}


def cmd_worker(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="consume_bench.py _worker")
    ap.add_argument("name", choices=sorted(WORKERS))
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--bootstrap", default="")
    ap.add_argument("--socket", default="")
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--profile", default="", help="write a cProfile of the worker here")
    o = ap.parse_args(argv)
    meter = Meter(parse_watch(os.environ.get("KB_WATCH_PIDS", "")))
    if o.profile:
        import cProfile

        prof = cProfile.Profile()
        res = prof.runcall(WORKERS[o.name], o, meter)
        prof.dump_stats(o.profile)
    else:
        res = WORKERS[o.name](o, meter)
    emit(res)
    return 0 if res["received"] == o.count and res["bad_order"] <= 0 else 3


# --------------------------------------------------------------------------
# filling the topic (a child process: confluent-kafka, explicit partition i % P)


def cmd_fill(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="consume_bench.py _fill")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--partitions", type=int, required=True)
    o = ap.parse_args(argv)
    from confluent_kafka import Consumer, Producer, TopicPartition

    def total() -> Tuple[int, int]:
        c = Consumer({"bootstrap.servers": o.bootstrap, "group.id": "consume-bench-fill"})
        lo = hi = 0
        for p in range(o.partitions):
            a, b = c.get_watermark_offsets(TopicPartition(o.topic, p), timeout=10)
            lo += a
            hi += b
        c.close()
        return lo, hi

    lo, hi = total()
    if hi - lo >= o.count and lo == 0:
        print(json.dumps({"produced": 0, "present": hi, "s": 0.0}))
        return 0
    if hi:
        log(f"topic {o.topic} holds {hi - lo} messages (low {lo}), not {o.count} from offset 0: use a fresh topic")
        return 1
    t0 = time.monotonic()
    p = Producer({"bootstrap.servers": o.bootstrap, "acks": "all", "linger.ms": 20, "compression.type": "none",
                  "batch.size": 1000000, "queue.buffering.max.messages": 1000000,
                  "queue.buffering.max.kbytes": 1048576})
    failed = [0]

    def dr(err: Any, _msg: Any) -> None:
        if err is not None:
            failed[0] += 1

    produce, topic, size, parts = p.produce, o.topic, o.size, o.partitions
    for i in range(o.count):
        v = (b"%010d" % i).ljust(size, b".")[:size]
        while True:
            try:
                produce(topic, v, partition=i % parts, on_delivery=dr)
                break
            except BufferError:
                p.poll(0.05)
        if not i & 0xFFFF:
            p.poll(0)
    left = p.flush(120)
    s = time.monotonic() - t0
    lo, hi = total()
    print(json.dumps({"produced": o.count, "failed": failed[0], "left": left, "present": hi - lo, "s": s}))
    return 0 if not failed[0] and not left and hi - lo == o.count else 1


# --------------------------------------------------------------------------
# orchestration


class Env:
    """Broker, daemon and topic: given (external mode) or started here."""

    def __init__(self, o: argparse.Namespace) -> None:
        self.o = o
        self.run_dir: Optional[Path] = None
        self.daemon: Optional[subprocess.Popen] = None
        self.broker_started = False
        self.bootstrap = o.bootstrap
        self.socket = o.daemon_socket
        self.daemon_pid = o.daemon_pid
        self.broker_pid = o.broker_pid
        self.kafkad_bin = o.kafkad_bin
        self.timings: Dict[str, float] = {}
        self.ok = False

    def cluster(self, *args: str, timeout: float = 180) -> str:
        r = subprocess.run([sys.executable, str(CLUSTER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"tests/kafka/cluster {args[0]} failed: {r.stderr.strip()[-800:]}")
        return r.stdout

    def start(self) -> None:
        o = self.o
        if o.self_contained:
            self.run_dir = Path(tempfile.mkdtemp(prefix="kafkad-consume-bench."))
            os.environ.setdefault("KAFKA_CLUSTER_BROKER_JVM_OPTS", DEFAULT_JVM_OPTS)
            t0 = time.monotonic()
            log(f"starting the Kafka broker in {self.run_dir} (JVM: {os.environ['KAFKA_CLUSTER_BROKER_JVM_OPTS']})")
            self.broker_started = True
            self.cluster("start", "--dir", str(self.run_dir / "kafka"), "--partitions", str(o.partitions))
            env = dict(line.split("=", 1) for line in (self.run_dir / "kafka" / "env").read_text().splitlines()
                       if "=" in line and not line.startswith("#"))
            self.bootstrap = env["BOOTSTRAP"]
            self.broker_pid = int((self.run_dir / "kafka" / "broker.pid").read_text().strip())
            self.timings["broker_start_s"] = time.monotonic() - t0
            log(f"broker at {self.bootstrap} (pid {self.broker_pid}), {self.timings['broker_start_s']:.1f} s")
        topic = o.topic or f"consume-bench-{_dt.datetime.now():%H%M%S}-{os.getpid()}"
        if not o.topic:
            self.cluster("create-topic", "--bootstrap", self.bootstrap, topic, "--partitions", str(o.partitions))
        self.topic = topic
        t0 = time.monotonic()
        log(f"filling {topic}: {o.messages:,} x {o.size} B over {o.partitions} partitions (confluent-kafka)")
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_fill", "--bootstrap", self.bootstrap,
                            "--topic", topic, "--count", str(o.messages), "--size", str(o.size),
                            "--partitions", str(o.partitions)], stdout=subprocess.PIPE, timeout=300, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"filling {topic} failed: {r.stdout.strip()}")
        self.fill = json.loads(r.stdout.strip().splitlines()[-1])
        self.timings["fill_s"] = time.monotonic() - t0
        log(f"topic ready ({self.fill}), {self.timings['fill_s']:.1f} s")
        if o.self_contained:
            assert self.run_dir is not None
            sock = self.run_dir / "kafkad.sock"
            conf = self.run_dir / "kafkad.conf"
            conf.write_text(f"# generated by bench/consume_bench.py\n[daemon]\nsocket = {sock}\nsocket_mode = 0600\n"
                            f"log_level = warn\n\n[cluster main]\nbootstrap.servers = {self.bootstrap}\n")
            logf = open(self.run_dir / "kafkad.log", "wb")
            self.daemon = subprocess.Popen([self.kafkad_bin, "-c", str(conf)], stdout=logf, stderr=subprocess.STDOUT)
            logf.close()
            for _ in range(100):
                if sock.exists():
                    break
                if self.daemon.poll() is not None:
                    raise RuntimeError(f"kafkad exited: {(self.run_dir / 'kafkad.log').read_text()[-800:]}")
                time.sleep(0.1)
            else:
                raise RuntimeError("kafkad did not create its socket")
            self.socket, self.daemon_pid = str(sock), self.daemon.pid
            log(f"kafkad pid {self.daemon_pid} at {sock}")
        else:
            try:
                self.kafkad_bin = os.readlink(f"/proc/{self.daemon_pid}/exe")
            except OSError:
                pass

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.broker_started and self.run_dir is not None:
            try:
                self.cluster("stop", "--dir", str(self.run_dir / "kafka"), timeout=120)
            except Exception as e:
                log(f"broker stop failed ({e}); see {self.run_dir}")
                return
        if self.run_dir is not None:
            if self.ok:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            else:
                log(f"logs kept in {self.run_dir}")

    def kafkad_version(self) -> str:
        try:
            v = subprocess.run([self.kafkad_bin, "-V"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               timeout=10).stdout.split()
            ver = v[1] if len(v) > 1 else "?"
        except (OSError, subprocess.TimeoutExpired):
            ver = "?"
        try:
            git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=str(REPO), stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            git = "?"
        return f"{ver} (git {git or '?'})"

    def kafkad_librdkafka(self) -> str:
        """The version of the librdkafka the daemon binary links (ldd + rd_kafka_version_str)."""
        try:
            out = subprocess.run(["ldd", self.kafkad_bin], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, timeout=10).stdout
            for line in out.splitlines():
                if "librdkafka" in line and "=>" in line:
                    import ctypes

                    lib = ctypes.CDLL(line.split("=>")[1].split("(")[0].strip())
                    lib.rd_kafka_version_str.restype = ctypes.c_char_p
                    return lib.rd_kafka_version_str().decode()
        except (OSError, subprocess.TimeoutExpired, AttributeError):
            pass
        return "?"


def build_rdkafka(path: str) -> None:
    src = HERE / "rdkafka_consume.c"
    newest = max(src.stat().st_mtime, (HERE / "rdkafka_common.h").stat().st_mtime)  # the source and its header
    if os.path.exists(path) and os.path.getmtime(path) >= newest:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "rdkafka"], stdout=subprocess.PIPE, text=True,
                           check=True).stdout.split()
    log(f"compiling {path}")
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-o", path, str(src), *flags], check=True)


class Runner:
    def __init__(self, o: argparse.Namespace, env: Env) -> None:
        self.o = o
        self.env = env
        self.watch_env = watch_list((("kafkad", env.daemon_pid), ("broker", env.broker_pid)))

    def count(self, name: str) -> int:
        o = self.o
        if name == "kafka-python":
            return min(o.messages, o.kafka_python_messages)
        if name == "pykafka":
            return min(o.messages, o.pykafka_messages)
        if name == "kafkad-pykafka":
            return min(o.messages, o.kafkad_pykafka_messages)
        return o.messages

    def argv(self, name: str, count: int, profile: str = "") -> List[str]:
        o, env = self.o, self.env
        if name == "librdkafka-c":
            return [o.rdkafka_bin, "batch", env.bootstrap, env.topic, str(o.partitions), str(count), str(o.batch)]
        argv = [sys.executable, str(Path(__file__).resolve()), "_worker", name, "--topic", env.topic,
                "--count", str(count), "--batch", str(o.batch), "--partitions", str(o.partitions),
                "--bootstrap", env.bootstrap, "--socket", env.socket]
        if o.verify:
            argv.append("--verify")
        if profile:
            argv += ["--profile", profile]
        return argv

    def spawn(self, argv: List[str], timeout: float) -> Tuple[Dict[str, Any], float, float]:
        """One worker process: its JSON, its whole-process CPU (wait4) and wall time."""
        env = dict(os.environ, KB_WATCH_PIDS=self.watch_env)
        t0 = time.monotonic()
        out, rc, ru = run_worker(argv, env, timeout)
        res = last_json(out)
        if res is None:
            raise RuntimeError(f"{' '.join(argv[:5])} exited with {rc} and no result")
        res["exit"] = rc
        return res, ru.ru_utime + ru.ru_stime, time.monotonic() - t0

    def one(self, name: str, rep: int, count: int) -> Dict[str, Any]:
        prof = ""
        if self.o.profile_dir and name != "librdkafka-c" and rep >= 0:
            os.makedirs(self.o.profile_dir, exist_ok=True)
            prof = os.path.join(self.o.profile_dir, f"{name}-rep{rep}.prof")
        res, whole, wall = self.spawn(self.argv(name, count, prof), self.o.timeout)
        res.update(derive(res, count))
        res.update(contender=name, rep=rep, count=count, process_cpu_s=whole, process_wall_s=wall)
        return res

    def warmup(self) -> None:
        # warm the broker's fetch path (JIT, page cache) and the daemon, so that
        # the first contender of the first repetition is not penalised
        o = self.o
        for name, count in (("librdkafka-c", o.messages), ("kafkad-consume", min(o.messages, 200000))):
            if name == "librdkafka-c" or "kafkad-consume" in o.only_set:
                r = self.one(name, -1, count)
                log(f"warm-up {name:16s} {r['msgs_per_s']:>10,.0f} msgs/s ({count:,} messages)")

    def run(self, deadline: float) -> Tuple[List[Dict[str, Any]], List[str]]:
        o = self.o
        names = [n for n in NAMES if n in o.only_set]
        runs: List[Dict[str, Any]] = []
        skipped: List[str] = []
        for rep in range(o.reps):
            for name in rotated(names, rep):
                if time.monotonic() > deadline:
                    skipped.append(f"{name} rep {rep}")
                    continue
                count = self.count(name)
                try:
                    r = self.one(name, rep, count)
                except Exception as e:  # a broken contender must not lose the others' results
                    log(f"rep {rep} {name}: {e}")
                    r = {"contender": name, "rep": rep, "count": count, "ok": False, "first_error": str(e)}
                    runs.append(r)
                    continue
                runs.append(r)
                log(f"rep {rep} {name:17s} {r['msgs_per_s']:>10,.0f} msgs/s ({r['msgs_per_s_setup']:>9,.0f} incl. "
                    f"{r['setup_s']:.2f} s setup)  client {r['client_cpu_100k']:.3f}  kafkad {r['kafkad_cpu_100k']:.3f}"
                    f"  broker {r['broker_cpu_100k']:.3f} s/100k  other load {r['other_load']:.0%}"
                    f"{'' if r['ok'] else '  FAILED: ' + _failure(r)}")
        return runs, skipped


def _failure(r: Dict[str, Any]) -> str:
    return (f"received {r.get('received')}/{r.get('count')}, bad_order {r.get('bad_order')}, exit {r.get('exit')}, "
            f"{r.get('first_error', '')}")


def derive(res: Dict[str, Any], count: int) -> Dict[str, Any]:
    """Rates and CPU per 100k messages from a worker's three snapshots."""
    s, f, la = res["start"], res["first"], res["last"]
    n = res["received"]
    span = max(la["wall"] - f["wall"], 1e-9)
    n_span = max(n - f.get("n", 0), 1)  # messages that arrived after the first snapshot

    def w(a: Dict[str, Any], b: Dict[str, Any], k: str) -> float:
        x, y = a["watch"].get(k, -1.0), b["watch"].get(k, -1.0)
        return max(0.0, y - x) if x >= 0 and y >= 0 else 0.0

    client = la["cpu"] - f["cpu"]
    kafkad = w(f, la, "kafkad")
    broker = w(f, la, "broker")
    other = max(0.0, (la["busy"] - f["busy"]) - client - kafkad - broker)
    per = 100000.0 / n_span
    per_all = 100000.0 / max(n, 1)
    client_all = la["cpu"] - s["cpu"]
    kafkad_all = w(s, la, "kafkad")
    ok = (res.get("exit") == 0 and n == count and res.get("value_bytes", 0) > 0 and res.get("bad_order", 0) <= 0
          and not res.get("errors"))
    return {
        "ok": ok,
        "span_s": span,
        "setup_s": f["wall"] - s["wall"],
        "total_s": la["wall"] - s["wall"],
        "msgs_per_s": n_span / span,
        "msgs_per_s_setup": n / max(la["wall"] - s["wall"], 1e-9),
        "client_cpu_100k": client * per,
        "kafkad_cpu_100k": kafkad * per,
        "broker_cpu_100k": broker * per,
        "total_cpu_100k": (client + kafkad) * per,
        "client_cpu_100k_setup": client_all * per_all,
        "kafkad_cpu_100k_setup": kafkad_all * per_all,
        "other_load": other / span / (os.cpu_count() or 1),
        "client_cores": client / span,
        "kafkad_cores": kafkad / span,
        "broker_cores": broker / span,
        "max_wait_s": res.get("max_wait_s", -1.0),
    }


def summarise(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for name, desc, rs in by_contender(runs, CONTENDERS):
        # medians only over the runs that succeeded (none: the row says how many failed)
        ok = any(r.get("ok") for r in rs)
        row, good = summary_row(
            rs, ("msgs_per_s", "msgs_per_s_setup", "setup_s", "client_cpu_100k", "kafkad_cpu_100k",
                 "broker_cpu_100k", "total_cpu_100k", "client_cpu_100k_setup", "kafkad_cpu_100k_setup",
                 "other_load", "client_cores", "kafkad_cores", "broker_cores", "max_wait_s") if ok else (),
            contender=name, description=desc, messages=rs[0]["count"])
        if ok:
            row["process_cpu_100k"] = med([r["process_cpu_s"] * 100000.0 / r["count"] for r in good])
        out.append(row)
    return out


# --------------------------------------------------------------------------
# report


def render(o: argparse.Namespace, meta: Dict[str, Any], summary: List[Dict[str, Any]], skipped: List[str]) -> str:
    L = [f"# kafkad consumer benchmark — {meta['started']}", "", "## Conditions", ""]
    m = meta["machine"]
    L.append(f"- machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}, loopback only; broker, "
             f"kafkad and the client share the CPUs (load average before: {m['load_before']})")
    L.append("- " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    L.append(f"- broker: {meta['broker']}; {'started by this run' if o.self_contained else 'given'}; "
             f"benchmark processes at nice {meta['nice']}")
    L.append(f"- data: {o.messages:,} messages of {o.size} B (value only, no key/headers, no compression), produced "
             f"once by confluent-kafka round-robin over {o.partitions} partitions of one topic; every contender reads "
             "it from offset 0")
    L.append("- consumers: every contender in its own fresh process with its own consumer and partition "
             "assignment, no group join, no commits. kafkad: `Client.consumer(topic, mode='simple', "
             "auto_offset_reset='earliest')` (a private daemon-held consumer; the daemon's librdkafka consumer has "
             "queued.min.messages=1000000, queued.max.messages.kbytes=65536, enable.partition.eof=true, "
             "otherwise librdkafka defaults); "
             f"stub `consume(max={o.batch})` (fetch_max follows max) / `poll()`. confluent-kafka and C: a private "
             "group.id, assign() of every partition at OFFSET_BEGINNING, enable.auto.commit=false, librdkafka "
             f"defaults otherwise (fetch sizes included); `consume(num_messages={o.batch})` / `poll()`; C: "
             f"rd_kafka_consume_batch_queue(…, {o.batch}). kafka-python: KafkaConsumer(group_id=None), assign() + "
             "seek_to_beginning(), defaults otherwise. PyKafka: pure Python (use_rdkafka=False), "
             "SimpleConsumer without a group (starts at offset 0), PyKafka defaults (broker_version 0.9.0: the "
             "broker down-converts to message format v1 for its Fetch v0/v1)")
    L.append("- every contender touches each message: adds up len(value) (confluent-kafka: also checks "
             "msg.error()); counts and byte totals are checked" + (" and, with --verify, every partition's "
             "offsets run 0, 1, 2, … without gaps or repeats" if o.verify else "") +
             "; the C contender always checks the offsets")
    L.append(f"- msgs/s: from the first message in hand to the last one (messages after the first batch / that "
             f"time); 'incl. setup': all messages / time from creating the client to the last message; median of "
             f"{o.reps} repetitions in rotating order, after a warm-up pass (C, and kafkad-consume on 200k); "
             "'longest wait s': the longest time between two consecutive batches in hand (median over the "
             "repetitions; batch contenders only): a fetch that stopped shows here as a wait of ~1 s")
    L.append("- CPU per 100k messages over the same first→last window: client = getrusage(RUSAGE_SELF) of the "
             "client process (all threads, librdkafka's included); kafkad / broker = /proc/PID/stat utime+stime "
             "deltas (10 ms ticks; for the non-kafkad contenders the daemon is idle). total = client + kafkad. "
             "other load: machine busy CPU (/proc/stat) minus client, kafkad and broker, as a share of all CPUs "
             "(other users of the machine; non-zero means disturbed numbers)")
    L.append("")
    scaled = [r for r in summary if r["messages"] != o.messages]
    L.append(f"## Consume {o.messages:,} × {o.size} B from the beginning"
             + (" (" + ", ".join(f"{r['contender']} {r['messages']:,}" for r in scaled) + ": scaled, fewer messages)"
                if scaled else ""))
    L.append("")
    rows = []
    for r in summary:
        if "msgs_per_s" not in r:
            rows.append([r["contender"], f"{r['messages']:,}"] + ["–"] * 10 + [f"{r['failed_runs']} failed"])
            continue
        rows.append([
            r["contender"], f"{r['messages']:,}", f"{r['msgs_per_s']:,.0f}",
            f"{r['msgs_per_s_min']:,.0f}–{r['msgs_per_s_max']:,.0f}", f"{r['msgs_per_s_setup']:,.0f}",
            f"{r['setup_s']:.2f}", f"{r['client_cpu_100k']:.3f}", f"{r['kafkad_cpu_100k']:.3f}",
            f"{r['total_cpu_100k']:.3f}", f"{r['broker_cpu_100k']:.3f}", f"{r['other_load']:.0%}",
            f"{r['max_wait_s']:.2f}" if r.get("max_wait_s", -1.0) >= 0 else "–",
            "" if not r["failed_runs"] else f"{r['failed_runs']} failed",
        ])
    L.append(fmt_table(["contender", "msgs", "msgs/s (median)", "range", "msgs/s incl. setup", "setup s",
                        "client CPU s/100k", "kafkad CPU s/100k", "total CPU s/100k", "broker CPU s/100k",
                        "other load", "longest wait s", ""], rows, "lrrrrrrrrrrrl"))
    L.append("")
    for r in summary:
        L.append(f"- {r['contender']}: {r['description'].replace('BATCH', str(o.batch))}")
    ref = {r["contender"]: r for r in summary if "msgs_per_s" in r}
    L.append("")
    k = ref.get("kafkad-consume")
    if k:
        if "confluent-consume" in ref:
            x = k["msgs_per_s"] / ref["confluent-consume"]["msgs_per_s"]
            L.append(f"- kafkad-consume / confluent-consume msgs/s: {x:.2f} (target ≥ 1.00: "
                     f"{'met' if x >= 1.0 else 'NOT met'})")
        if "kafka-python" in ref:
            x = k["msgs_per_s"] / ref["kafka-python"]["msgs_per_s"]
            L.append(f"- kafkad-consume / kafka-python msgs/s: {x:.1f} (target ≥ 5: {'met' if x >= 5 else 'NOT met'})")
        if "pykafka" in ref:
            L.append(f"- kafkad-consume / pykafka msgs/s: {k['msgs_per_s'] / ref['pykafka']['msgs_per_s']:.1f}")
        if "confluent-consume-tuned" in ref:
            L.append(f"- kafkad-consume / confluent-consume-tuned msgs/s: "
                     f"{k['msgs_per_s'] / ref['confluent-consume-tuned']['msgs_per_s']:.2f}")
        if "confluent-consume" in ref:
            c = ref["confluent-consume"]
            L.append(f"- total CPU per 100k, kafkad-consume (client + kafkad) / confluent-consume: "
                     f"{k['total_cpu_100k']:.3f} / {c['total_cpu_100k']:.3f} s")
    for a, b in (("kafkad-poll", "confluent-poll"), ("kafkad-poll", "confluent-poll-tuned")):
        if a in ref and b in ref:
            L.append(f"- {a} / {b} msgs/s: {ref[a]['msgs_per_s'] / ref[b]['msgs_per_s']:.2f}")
    if any(n.startswith("confluent") for n in ref):
        L.append("")
        L.append("Note on confluent-kafka's defaults: its bundled librdkafka (>= 2.3) postpones a partition's next "
                 "fetch by fetch.queue.backoff.ms (default 1000 ms) whenever that partition's prefetch queue is "
                 "past queued.min.messages (100000) or queued.max.messages.kbytes; a Python loop that drains "
                 "slower than the broker delivers hits that several times per run, i.e. ~1 s pauses with nothing "
                 f"to consume. The -tuned rows set fetch.queue.backoff.ms={TUNED_BACKOFF_MS}. kafkad (librdkafka "
                 f"{meta['versions'].get('librdkafka (kafkad)', '?')}) has the same trap without the setting "
                 "(a partition past those marks is not fetched until the broker thread next wakes, up to ~1 s "
                 "later): one fetch response can hold ~50k messages, so two of them waiting for the daemon's "
                 "loop passed queued.min.messages. Its consumers set queued.min.messages=1000000 and "
                 "queued.max.messages.kbytes=65536; the daemon moves messages into its own per-partition "
                 "buffers (bounded, paused when full) at once, so those marks only catch bursts.")
    if skipped:
        L.append(f"- skipped (time budget {o.budget:.0f} s reached): {', '.join(skipped)}")
    L.append("")
    return "\n".join(L)


def chart(path: Path, summary: List[Dict[str, Any]], title: str) -> None:
    plt = pyplot()
    rs = [r for r in summary if "msgs_per_s" in r]
    names = [r["contender"] for r in rs]
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5))
    ax = axes[0]
    rate_bars(ax, names, rs, ["#c44e52" if n.startswith("kafkad") else "#4c72b0" for n in names], "k")
    ax.set_yscale("log")
    ax.set_title("consume from the beginning: k msgs/s (median, min–max; log scale)\nfirst message to last")
    ax.tick_params(axis="x", rotation=30)
    ax = axes[1]
    # the pure-Python clients are far off: clip
    cpu_bars(ax, names, rs, lambda tot: sorted(tot)[-3] * 1.8 if len(tot) > 3 else max(tot) * 1.2)
    ax.set_title("CPU seconds per 100k messages (client + kafkad; axis clipped)")
    ax.tick_params(axis="x", rotation=30)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_run(o: argparse.Namespace) -> int:
    o.only_set = set(filter(None, (o.only or "").split(","))) or set(NAMES)
    o.only_set -= set(filter(None, (o.skip or "").split(",")))
    unknown = o.only_set - set(NAMES)
    if unknown:
        raise SystemExit(f"unknown contenders: {', '.join(sorted(unknown))} (known: {', '.join(NAMES)})")
    if not o.self_contained and not (o.bootstrap and o.daemon_socket and o.daemon_pid):
        raise SystemExit("give --self-contained, or --bootstrap, --daemon-socket and --daemon-pid")
    t_begin = time.monotonic()
    if o.nice is not None:
        # children inherit it (self-contained: the broker and the daemon too); on a
        # shared machine where others run at a raised priority, match theirs
        try:
            os.nice(o.nice - os.nice(0))
        except OSError as e:
            log(f"cannot set nice {o.nice} ({e}); running at {os.nice(0)}")
    build_rdkafka(o.rdkafka_bin)
    started = _dt.datetime.now()
    env = Env(o)
    rc = 1
    try:
        env.start()
        runner = Runner(o, env)
        t_meas = time.monotonic()
        # the budget bounds the whole run (self-contained: broker start included)
        deadline = t_begin + o.budget if o.self_contained else t_meas + o.budget
        if not o.no_warmup:
            runner.warmup()
        runs, skipped = runner.run(deadline)
        meta: Dict[str, Any] = {
            "started": started.isoformat(timespec="seconds"),
            "machine": machine(),
            "versions": versions(env),
            "broker": f"Kafka 3.9.1 (KRaft, 1 broker, tests/kafka/cluster), JVM "
                      f"{os.environ.get('KAFKA_CLUSTER_BROKER_JVM_OPTS', '(as started)' if not o.self_contained else DEFAULT_JVM_OPTS)}",
            "nice": os.nice(0),
            "topic": env.topic,
            "fill": env.fill,
            "timings": env.timings,
            "measure_s": round(time.monotonic() - t_meas, 1),
            "settings": {k: getattr(o, k) for k in ("messages", "size", "partitions", "batch", "reps",
                                                     "kafka_python_messages", "pykafka_messages",
                                                     "kafkad_pykafka_messages", "verify", "budget",
                                                     "self_contained")},
            "skipped": skipped,
        }
        summary = summarise(runs)
        text = render(o, meta, summary, skipped)
        print(text)
        base = save_results(o.out_dir, f"consume-{started:%Y%m%d-%H%M%S}", text,
                            {"meta": meta, "summary": summary, "runs": runs},
                            lambda png: chart(png, summary, f"kafkad consumer benchmark {meta['started']}"))
        meta["total_s"] = round(time.monotonic() - t_begin, 1)
        log(f"wrote {base}.md, .json, .png ({meta['total_s']} s in all)")
        if o.json_out:
            write_json(o.json_out, {"meta": meta, "summary": summary, "runs": runs})
            log(f"wrote {o.json_out}")
        failed = [r for r in runs if not r.get("ok")]
        for r in failed:
            log(f"FAILED: {r['contender']} rep {r['rep']}: {_failure(r)}")
        env.ok = not failed
        rc = 1 if failed else 0
    finally:
        env.stop()
    return rc


def versions(env: Env) -> Dict[str, str]:
    v = client_versions()
    try:
        import pykafka

        v["pykafka"] = pykafka.__version__
    except Exception as e:  # pragma: no cover
        v["pykafka"] = f"unavailable: {e}"
    try:
        out = subprocess.run(["pkg-config", "--modversion", "rdkafka"], stdout=subprocess.PIPE, text=True).stdout
        v["librdkafka (C contender)"] = out.strip()
    except OSError:
        pass
    v["librdkafka (kafkad)"] = env.kafkad_librdkafka()
    v["kafkad"] = env.kafkad_version()
    return v


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return cmd_worker(argv[1:])
    if argv[:1] == ["_fill"]:
        return cmd_fill(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--self-contained", action="store_true",
                    help="start a broker (tests/kafka/cluster) and a kafkad daemon, stop them afterwards")
    ap.add_argument("--bootstrap", default="", help="broker address (external mode)")
    ap.add_argument("--daemon-socket", default="", help="kafkad socket (external mode)")
    ap.add_argument("--daemon-pid", type=int, default=0, help="kafkad pid, for its CPU (external mode)")
    ap.add_argument("--broker-pid", type=int, default=0, help="broker pid, for its CPU (optional)")
    ap.add_argument("--kafkad-bin", default=str(REPO / "build" / "daemon" / "kafkad"))
    ap.add_argument("--rdkafka-bin", default=str(REPO / "build" / "bench" / "rdkafka_consume"))
    ap.add_argument("--topic", default="", help="an existing topic holding exactly --messages messages from offset 0 "
                                                "(default: create and fill a fresh one)")
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--batch", type=int, default=1000, help="consume(max=...) / num_messages / C batch")
    ap.add_argument("--kafka-python-messages", type=int, default=200000)
    ap.add_argument("--pykafka-messages", type=int, default=100000)
    ap.add_argument("--kafkad-pykafka-messages", type=int, default=1000000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated contenders (" + ",".join(NAMES) + ")")
    ap.add_argument("--skip", default="", help="comma-separated contenders to leave out")
    ap.add_argument("--verify", action="store_true", help="Python contenders check every partition's offsets too")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--nice", type=int, default=None,
                    help="run at this nice value (e.g. -10 as root when others run at -10); inherited by the "
                         "workers and, self-contained, by the broker and kafkad")
    ap.add_argument("--timeout", type=float, default=120.0, help="kill a worker after this many seconds")
    ap.add_argument("--budget", type=float, default=280.0,
                    help="seconds for the whole run (self-contained) / the measurements; later runs are skipped")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--json-out", default="",
                    help="also write the results here (make bench: docs/benchmarks/consumer.json, for the report)")
    ap.add_argument("--profile-dir", default="",
                    help="cProfile every Python worker into DIR/<contender>-rep<N>.prof (the profiler's overhead "
                         "distorts the numbers of such a run)")
    o = ap.parse_args(argv)
    return cmd_run(o)


if __name__ == "__main__":
    sys.exit(main())
