#!/usr/bin/env python3
"""The "why run a sidecar" benchmarks: kafkad against in-process clients.

Run through ``scripts/bench.sh`` (``make bench``), which starts the broker
(with JMX on loopback, for its connection counters) and the kafkad daemons,
then calls ``sidecar_bench.py run ...``.  Subcommands:

``topics``  print the names of the topics a run needs (bench.sh creates them)
``run``     run the scenarios, print a table after each, write the JSON
``worker``  one client process of a scenario (internal: ``run`` spawns these)

Scenarios (each its own function below; the report explains them):

1. cold start: a fresh Python process imports its client, produces one
   message and waits for its delivery (bench/oneshot.py); kafkad stub vs a
   raw-socket kafkad client vs confluent-kafka vs kafka-python.
2. short-lived processes: N such processes one after another; wall time,
   CPU, and the broker connections they opened (the broker's own
   connection-creation-total over JMX).
3. fan-in: P concurrent processes each producing M messages; aggregate
   msgs/s, CPU, sum of max RSS, broker connections (ss samples + JMX).
4. footprint: kafkad's RSS idle, with C idle connections, peak in scenario 3;
   its CPU per million messages.
5. local hop: a C client speaking the protocol (bench/raw_produce.c) with
   pipelined ack="none" batches, next to the stub.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import (  # noqa: E402
    BrokerJmx,
    ConnSampler,
    LoadMeter,
    Phase,
    by_contender,
    confluent_outcomes,
    count_reports,
    emit,
    kafkad_outcomes,
    last_json,
    log,
    med,
    parse_watch,
    proc_cpu,
    proc_status,
    produce_batches,
    produce_each,
    produce_each_confluent,
    quantile,
    reset_peak_rss,
    restart_count,
    rotated,
    self_cpu,
    summary_row,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ONESHOT = HERE / "oneshot.py"
PRODUCE_BENCH = HERE / "produce_bench.py"

COLD_KINDS = [
    ("kafkad", "kafkad stub, one-shot call: from kafkad import produce_sync; produce_sync(topic, value)"),
    ("kafkad-client", "kafkad stub, client object: import kafkad; Client(socket).produce(ack='wait')"),
    ("kafkad-raw", "kafkad protocol by hand: socket + msgpack, one produce request with ack 'wait'"),
    ("confluent-kafka", "confluent-kafka: Producer(conf).produce() + flush()"),
    ("kafka-python", "kafka-python: KafkaProducer().send().get(), close()"),
]
SHORT_KINDS = ["kafkad", "confluent-kafka"]
FANIN_KINDS = [
    ("kafkad", "each process: kafkad stub Client, produce() in report mode + on_delivery, poll(0)/1024, flush()"),
    ("kafkad-batch", "each process: kafkad stub Client, produce_batch() of 10k in report mode + poll_reports(), "
                     "flush()"),
    ("confluent-kafka", "each process: its own confluent-kafka Producer, produce() + on_delivery, poll(0)/1024, flush()"),
    ("kafkad-nice0", "as kafkad, through a daemon whose threads run at nice 0, the clients' priority"),
]
HOP_KINDS = [
    ("raw-c", "bench/raw_produce.c: protocol by hand, produce requests of 10k bare values, ack 'none', "
              "64 requests in flight"),
    ("stub-batch-none", "stub: Client.produce_batch(10k, ack='none'), then one more produce request (its "
                        "answer = all accepted), flush()"),
    ("stub-batch-report", "stub: Client.produce_batch(10k) + poll_reports() (report mode), flush()"),
    ("stub-produce-report", "stub: Client.produce() per message + on_delivery, poll(0)/1024, flush()"),
]
HOP_BATCH = 10000


# --------------------------------------------------------------------------
# workers (their own processes)


def _ready() -> None:
    """Tell the parent we are connected, wait for its go."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go from the parent")


def _peak_rss_kb() -> int:
    """VmHWM of this process (wait4's maxrss would include the parent's RSS:
    vfork + exec carries the parent's high-water mark over)."""
    return proc_status(os.getpid()).get("VmHWM", 0)


def w_fanin_kafkad(o: argparse.Namespace) -> None:
    import kafkad

    ok, bad, on_delivery = kafkad_outcomes()
    payload = b"x" * o.size
    topic = o.topic
    with kafkad.Client(o.socket, on_delivery=on_delivery, timeout=120) as c:
        c.produce(topic, payload, ack="wait")  # connected, metadata known: setup done
        _ready()
        c0, t0 = self_cpu(), time.perf_counter()
        produce_each(c.produce, c.poll, topic, payload, o.count)
        remaining = c.flush(300)
        t1, c1 = time.perf_counter(), self_cpu()
    emit({"t0": t0, "t1": t1, "cpu0_s": c0, "cpu_s": c1 - c0, "delivered": ok[0], "failed": len(bad),
          "remaining": remaining, "first_error": str(bad[0]) if bad else "", "maxrss_kb": _peak_rss_kb()})


def w_fanin_kafkad_batch(o: argparse.Namespace) -> None:
    import kafkad

    bad: List[Any] = []
    payload = b"x" * o.size
    topic = o.topic
    chunk = [payload] * HOP_BATCH
    with kafkad.Client(o.socket, timeout=120) as c:
        c.produce(topic, payload, ack="wait")
        _ready()
        c0, t0 = self_cpu(), time.perf_counter()
        ok = produce_batches(c, topic, chunk, o.count, bad)
        remaining = c.flush(300)
        ok += count_reports(c.poll_reports(1 << 30), bad)
        t1, c1 = time.perf_counter(), self_cpu()
    emit({"t0": t0, "t1": t1, "cpu0_s": c0, "cpu_s": c1 - c0, "delivered": ok, "failed": len(bad),
          "remaining": remaining, "first_error": str(bad[0]) if bad else "", "maxrss_kb": _peak_rss_kb()})


def w_fanin_confluent(o: argparse.Namespace) -> None:
    import confluent_kafka

    ok, bad, on_delivery = confluent_outcomes()
    conf = common.confluent_conf(o.bootstrap, 5)
    conf["on_delivery"] = on_delivery
    p = confluent_kafka.Producer(conf)
    payload = b"x" * o.size
    topic = o.topic
    p.produce(topic, payload)  # connected, metadata known: setup done
    p.flush(60)
    warm_bad = restart_count(ok, bad)
    _ready()
    c0, t0 = self_cpu(), time.perf_counter()
    queue_full = produce_each_confluent(p.produce, p.poll, topic, payload, o.count)
    remaining = p.flush(300)
    t1, c1 = time.perf_counter(), self_cpu()
    emit({"t0": t0, "t1": t1, "cpu0_s": c0, "cpu_s": c1 - c0, "delivered": ok[0], "failed": len(bad),
          "remaining": remaining, "warmup_failed": warm_bad, "queue_full": queue_full,
          "first_error": str(bad[0]) if bad else "", "maxrss_kb": _peak_rss_kb()})


def w_hop_stub_none(o: argparse.Namespace) -> None:
    import kafkad

    watch = parse_watch(o.watch)
    payload = b"x" * o.size
    chunk = [payload] * HOP_BATCH
    with kafkad.Client(o.socket, timeout=120) as c:
        c.produce_batch(o.topic, [payload] * 1000, ack="none")
        c.flush(60)
        with Phase(watch) as ph:
            sent = 0
            while sent < o.count:
                n = min(HOP_BATCH, o.count - sent)
                c.produce_batch(o.topic, chunk if n == HOP_BATCH else chunk[:n], ack="none")
                sent += n
            handed = time.perf_counter() - ph.t0
            # one more produce request, answered once kafkad has enqueued it: a connection's
            # produce requests run in order, so every message before it is in librdkafka's queue
            c.call("produce", {"topic": o.topic, "ack": "none", "messages": [payload]})
            accepted = time.perf_counter() - ph.t0
            remaining = c.flush(120)
    emit(ph.result(delivered=o.count - remaining, failed=0, remaining=remaining, handed_s=handed,
                   accept_s=accepted))


WORKERS = {
    "fanin-kafkad": w_fanin_kafkad,
    "fanin-kafkad-batch": w_fanin_kafkad_batch,
    "fanin-confluent-kafka": w_fanin_confluent,
    "hop-stub-batch-none": w_hop_stub_none,
}


def cmd_worker(o: argparse.Namespace) -> int:
    WORKERS[o.name](o)
    return 0


# --------------------------------------------------------------------------
# orchestration


def topic_names(prefix: str, fanin_reps: int, hop_reps: int) -> List[str]:
    names = [f"{prefix}-cold-{k}" for k, _ in COLD_KINDS]
    names += [f"{prefix}-short-{k}" for k in SHORT_KINDS]
    names += [f"{prefix}-fanin-{k}-{r}" for k, _ in FANIN_KINDS for r in list(range(fanin_reps)) + ["warmup"]]
    names += [f"{prefix}-hop-{k}-{r}" for k, _ in HOP_KINDS for r in range(hop_reps)]
    return names


def cmd_topics(o: argparse.Namespace) -> int:
    print("\n".join(topic_names(o.prefix, o.fanin_reps, o.hop_reps)))
    return 0


def create_topics(o: argparse.Namespace, names: List[str]) -> None:
    """Fresh topics through tests/kafka/cluster (CreateTopics on the wire; waits for leaders)."""
    log(f"creating {len(names)} topics ({o.partitions} partitions each)")
    for t in names:
        r = subprocess.run([sys.executable, str(REPO / "tests" / "kafka" / "cluster"), "create-topic",
                            "--bootstrap", o.bootstrap, t, "--partitions", str(o.partitions)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        if r.returncode != 0:
            raise Failed(f"create-topic {t}: {r.stderr.decode('utf-8', 'replace').strip()[-300:]}")


class Failed(Exception):
    pass


class Bench:
    def __init__(self, o: argparse.Namespace) -> None:
        self.o = o
        self.port = int(o.bootstrap.rsplit(":", 1)[1])
        self.jmx = BrokerJmx(o.jmx_port)
        self.live: Dict[int, subprocess.Popen] = {}  # children still to reap (killed on the way out)
        env = dict(os.environ)
        # Bytecode cached for every contender, as an installed package would be
        # (this environment sets PYTHONDONTWRITEBYTECODE, and the editable stub has
        # no __pycache__): a cache of our own, filled by the warm-up runs.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = o.pycache
        self.env = env
        self.errors: List[str] = []
        self.errfile = tempfile.TemporaryFile()  # stderr of the one-shot processes

    # -- process helpers ------------------------------------------------------

    def popen(self, argv: List[str], **kw: Any) -> subprocess.Popen:
        p = subprocess.Popen(argv, env=self.env, cwd=str(REPO), **kw)
        self.live[p.pid] = p
        return p

    def reap(self, p: subprocess.Popen) -> Any:
        """wait4 the child: (exit code, rusage)."""
        _pid, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        self.live.pop(p.pid, None)
        return p.returncode, ru

    def kill_all(self) -> None:
        for pid, p in list(self.live.items()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.live.pop(pid, None)

    def watchdog(self, seconds: float, what: str) -> threading.Timer:
        def fire() -> None:
            log(f"{what}: still running after {seconds:.0f} s; killing its processes")
            for pid in list(self.live):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        t = threading.Timer(seconds, fire)
        t.daemon = True
        t.start()
        return t

    def where(self, kind: str) -> str:
        return self.o.socket0 if kind.startswith("kafkad") else self.o.bootstrap

    def oneshot(self, kind: str, topic: str) -> Dict[str, Any]:
        """One short-lived producer process, timed from the parent."""
        argv = [sys.executable, str(ONESHOT), kind, topic, self.where(kind), str(self.o.size)]
        self.errfile.seek(0)
        self.errfile.truncate()
        t0 = time.perf_counter()
        p = self.popen(argv, stdout=subprocess.PIPE, stderr=self.errfile)
        assert p.stdout is not None
        out = p.stdout.read()  # to EOF; the child is reaped by wait4 (its rusage), not by Popen
        p.stdout.close()
        rc, ru = self.reap(p)
        t1 = time.perf_counter()
        self.errfile.seek(0)
        err = self.errfile.read()
        r: Dict[str, Any] = {"kind": kind, "exit": rc, "total_ms": (t1 - t0) * 1e3,
                             "cpu_ms": (ru.ru_utime + ru.ru_stime) * 1e3}
        fields = out.split()
        if rc != 0 or len(fields) != 6:
            r["ok"] = False
            r["error"] = (err.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1][:300]
            return r
        c0, c_imp, c_del = (float(x) for x in fields[:3])
        r.update(ok=True, start_to_delivery_ms=(c_del - t0) * 1e3, after_start_ms=(c_del - c0) * 1e3,
                 import_ms=(c_imp - c0) * 1e3, deliver_ms=(c_del - c_imp) * 1e3,
                 interpreter_ms=(c0 - t0) * 1e3, partition=int(fields[3]), offset=int(fields[4]),
                 maxrss_kb=int(fields[5]))
        return r

    def stats(self, sock: str) -> Dict[str, Any]:
        import kafkad

        with kafkad.Client(sock, timeout=30) as c:
            return c.stats()["daemon"]

    # -- 4a. footprint before anything else touches the fresh daemon -------------

    def footprint_idle(self) -> Dict[str, Any]:
        o = self.o
        pid = o.side_pid
        res: Dict[str, Any] = {"daemon_uptime_s": None}
        st0 = self.stats(o.socket_side)
        res["daemon_uptime_s"] = st0["uptime_ms"] / 1000
        res["idle"] = proc_status(pid)
        # idle CPU over a few seconds
        c0 = proc_cpu(pid)
        time.sleep(o.idle_window)
        res["idle_cpu_pct"] = (proc_cpu(pid) - c0) / o.idle_window * 100
        # C idle connections, each said hello (the daemon has set up its session)
        n = o.idle_conns
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = n + 256
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want,
                                                        hard))
        import msgpack

        body = msgpack.packb([1, "hello", {"version": 1, "client": "bench idle"}], use_bin_type=True)
        frame = struct.pack(">I", len(body)) + body
        socks: List[socket.socket] = []
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(30)
                s.connect(o.socket_side)
                s.sendall(frame)
                socks.append(s)
            for s in socks:
                buf = b""
                while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">I", buf)[0]:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise Failed("kafkad closed an idle connection")
                    buf += chunk
                rid, err, _ = msgpack.unpackb(buf[4:], raw=False)
                if err is not None:
                    raise Failed(f"hello failed: {err}")
            res["connect_s"] = time.perf_counter() - t0
            time.sleep(1.0)
            st = self.stats(o.socket_side)
            res["connections_reported"] = st["connections"] - 1  # minus the stats connection
            res["with_conns"] = proc_status(pid)
            c0 = proc_cpu(pid)
            time.sleep(o.idle_window)
            res["with_conns_cpu_pct"] = (proc_cpu(pid) - c0) / o.idle_window * 100
        finally:
            for s in socks:
                s.close()
        time.sleep(1.0)
        res["after_close"] = proc_status(pid)
        res["idle_conns"] = n
        log(f"footprint: idle RSS {res['idle'].get('VmRSS', 0) / 1024:.1f} MB; with {n} idle connections "
            f"{res['with_conns'].get('VmRSS', 0) / 1024:.1f} MB ({res['connections_reported']} reported by stats)")
        return res

    # -- 1. cold start -----------------------------------------------------------

    def cold_start(self) -> Dict[str, Any]:
        o = self.o
        kinds = [k for k, _ in COLD_KINDS]
        log(f"cold start: {o.cold_warmup} warm-up + {o.cold_runs} runs of each of {', '.join(kinds)}")
        for k in kinds:  # fill the bytecode cache, the page cache, the broker's code paths
            for _ in range(o.cold_warmup):
                r = self.oneshot(k, f"{o.prefix}-cold-{k}")
                if not r["ok"]:
                    raise Failed(f"cold start warm-up {k}: {r.get('error')}")
        # what the two stub rows import before their clocks' "imported" mark
        profiles = [self.import_profile("from kafkad import produce_sync", "kafkad"),
                    self.import_profile("from kafkad import Client", "kafkad")]
        lm = LoadMeter({"kafkad0": o.daemon0_pid, "broker": o.broker_pid}).start()
        runs = []
        for i in range(o.cold_runs):
            for k in rotated(kinds, i):
                r = self.oneshot(k, f"{o.prefix}-cold-{k}")
                r["run"] = i
                runs.append(r)
        load = lm.stop()
        summary = []
        for k, desc in COLD_KINDS:
            rs = [r for r in runs if r["kind"] == k and r["ok"]]
            row: Dict[str, Any] = {"kind": k, "description": desc, "runs": len(rs),
                                   "failed": sum(1 for r in runs if r["kind"] == k and not r["ok"])}
            for key in ("start_to_delivery_ms", "after_start_ms", "import_ms", "deliver_ms", "interpreter_ms",
                        "total_ms", "cpu_ms"):
                vals = [r[key] for r in rs]
                row[key] = med(vals)
                row[key.replace("_ms", "_p90_ms")] = quantile(vals, 90)
            row["maxrss_kb"] = med([r["maxrss_kb"] for r in rs])
            summary.append(row)
            log(f"cold start {k:16s} start→delivery p50 {row['start_to_delivery_ms']:7.1f} ms  after interpreter "
                f"start p50 {row['after_start_ms']:7.1f} ms (import {row['import_ms']:.1f})")
        return {"runs": runs, "summary": summary, "load": load, "import_profiles": profiles,
                "errors": [r.get("error") for r in runs if not r["ok"]][:5]}

    def import_profile(self, statement: str, package: str) -> Dict[str, Any]:
        """Where STATEMENT spends its time (python -X importtime, bytecode cached): the modules it
        pulls in with the largest own (self) times, and its total."""
        rows: List[Any] = []
        for _ in range(3):  # the last of three: caches warm
            r = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], env=self.env,
                               cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
            rows = []
            for line in r.stderr.decode("utf-8", "replace").splitlines():
                if not line.startswith("import time:") or "self [us]" in line:
                    continue
                selfus, cum, name = line[len("import time:"):].split("|", 2)
                rows.append((name.rstrip(), int(selfus), int(cum)))
        # the modules of this import: those after the interpreter's own start-up (site)
        names = [n.strip() for n, _, _ in rows]
        start = names.index("site") + 1 if "site" in names else 0
        mine = rows[start:]
        # importtime indents a name by 2 per level after one space: top-level imports have 1
        total = sum(c for n, _, c in mine if not n.startswith("  "))
        top = sorted(mine, key=lambda t: -t[1])[:10]
        groups: Dict[str, int] = {}
        for n, self_us, _ in mine:
            root = n.strip().split(".")[0]
            g = root if root in (package, "msgpack") else "other (standard library)"
            groups[g] = groups.get(g, 0) + self_us
        return {"statement": statement, "module": package, "total_us": total, "modules": len(mine),
                "self_by_group_us": groups,
                "top_self": [{"name": n.strip(), "self_us": s_, "cumulative_us": c} for n, s_, c in top],
                "direct": [{"name": n.strip(), "cumulative_us": c} for n, _, c in mine
                           if n.startswith("   ") and not n.startswith("    ")],
                # interpreter start-up, for reference: site (with the venv's .pth files, among them
                # the editable stub's import finder, which every interpreter in this venv loads)
                "site_us": next((c for n, _, c in rows if n.strip() == "site"), 0),
                "editable_finder_us": sum(c for n, _, c in rows[:start] if "__editable__" in n)}

    # -- 2. short-lived processes ------------------------------------------------

    def short_lived(self) -> Dict[str, Any]:
        o = self.o
        out: Dict[str, Any] = {"summary": [], "jmx_error": ""}
        for k in SHORT_KINDS:
            n = o.short_procs if k == "kafkad" else o.short_procs_confluent
            topic = f"{o.prefix}-short-{k}"
            log(f"short-lived: {n} sequential {k} processes")
            j0 = self.jmx.read()
            lm = LoadMeter({"kafkad0": o.daemon0_pid, "broker": o.broker_pid}).start()
            t0 = time.perf_counter()
            runs = [self.oneshot(k, topic) for _ in range(n)]
            wall = time.perf_counter() - t0
            load = lm.stop()
            j1 = self.jmx.read()
            ok = [r for r in runs if r["ok"]]
            row: Dict[str, Any] = {
                "kind": k, "processes": n, "failed": n - len(ok), "wall_s": wall,
                "wall_500_s": wall * 500 / n, "per_process_ms": med([r["total_ms"] for r in ok]),
                "per_process_p90_ms": quantile([r["total_ms"] for r in ok], 90),
                "client_cpu_s": sum(r["cpu_ms"] for r in runs) / 1e3,
                "kafkad_cpu_s": max(0.0, load["watch"].get("kafkad0", 0.0)) if k == "kafkad" else 0.0,
                "broker_cpu_s": max(0.0, load["watch"].get("broker", 0.0)),
                "other_load": load["other_cpu_frac"],
                "errors": [r.get("error") for r in runs if not r["ok"]][:3],
            }
            row["total_cpu_s"] = row["client_cpu_s"] + row["kafkad_cpu_s"]
            if j0 is not None and j1 is not None:
                row["broker_connections_opened"] = int(j1["created"] - j0["created"])
            else:
                row["broker_connections_opened"] = None
                out["jmx_error"] = self.jmx.error
            out["summary"].append(row)
            log(f"short-lived {k:16s} {n} processes in {wall:.1f} s, broker connections opened: "
                f"{row['broker_connections_opened']}, other load {load['other_cpu_frac']:.0%}")
        return out

    # -- 3. fan-in -------------------------------------------------------------

    def fanin_rep(self, kind: str, rep: Any) -> Dict[str, Any]:
        o = self.o
        topic = f"{o.prefix}-fanin-{kind}-{rep}"
        # kafkad-nice0: the kafkad row's processes, through the daemon that
        # runs at the clients' priority
        worker = "fanin-kafkad" if kind == "kafkad-nice0" else f"fanin-{kind}"
        if kind == "kafkad-nice0":
            side_socket, side_pid = o.socket_side0, o.side0_pid
        else:
            side_socket, side_pid = o.socket_side, o.side_pid
        argv = [sys.executable, str(Path(__file__).resolve()), "worker", worker, "--topic", topic,
                "--count", str(o.fanin_messages), "--size", str(o.size)]
        via_kafkad = kind.startswith("kafkad")
        argv += ["--socket", side_socket] if via_kafkad else ["--bootstrap", o.bootstrap]
        j0 = self.jmx.read()
        sampler = ConnSampler(self.port, o.ss_interval)
        if via_kafkad:
            sampler.add_pid(side_pid)
        hwm_reset = reset_peak_rss(side_pid) if via_kafkad else False
        rss_sampler = common.RssSampler(side_pid) if via_kafkad and not hwm_reset else None
        if rss_sampler:
            rss_sampler.start()
        sampler.start()
        procs: List[subprocess.Popen] = []
        dog = self.watchdog(o.fanin_timeout, f"fan-in {kind} rep {rep}")
        kafkad_cpu0 = proc_cpu(side_pid)
        try:
            t_spawn = time.perf_counter()
            for _ in range(o.fanin_procs):
                p = self.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                procs.append(p)
                sampler.add_pid(p.pid)
            for p in procs:
                assert p.stdout is not None
                if p.stdout.readline().strip() != b"ready":
                    raise Failed(f"fan-in {kind}: a worker did not get ready (exit {p.poll()})")
            setup_s = time.perf_counter() - t_spawn
            sampler.sample()  # every process connected, none started: the steady state
            lm = LoadMeter({"kafkad": side_pid if via_kafkad else 0, "broker": o.broker_pid}).start()
            t_go = time.perf_counter()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(b"go\n")
                p.stdin.close()
            results: List[Dict[str, Any]] = []
            for p in procs:
                assert p.stdout is not None
                res_p = last_json(p.stdout.read())
                p.stdout.close()
                results.append(res_p if res_p is not None else {"error": "no result"})
            whole = []
            for p, r in zip(procs, results):
                rc, ru = self.reap(p)
                r.update(exit=rc, whole_cpu_s=ru.ru_utime + ru.ru_stime)
                r.setdefault("maxrss_kb", 0)
                whole.append(r)
            # children's CPU after their go is in RUSAGE_CHILDREN now; their setup is not part of the phase
            load = lm.stop(extra_cpu=-sum(r.get("cpu0_s", 0.0) for r in results))
            kafkad_cpu_whole = proc_cpu(side_pid) - kafkad_cpu0 if via_kafkad else 0.0
        finally:
            dog.cancel()
            conns = sampler.stop()
            peak_rss_kb = rss_sampler.stop() if rss_sampler else proc_status(side_pid).get("VmHWM", 0)
            for p in procs:
                if p.pid in self.live:
                    try:
                        p.kill()
                    except OSError:
                        pass
                    self.reap(p)
        j1 = self.jmx.read()
        good = [r for r in results if r.get("exit") == 0 and r.get("delivered") == o.fanin_messages]
        msgs = sum(r.get("delivered", 0) for r in results)
        end = max((r["t1"] for r in results if "t1" in r), default=t_go)
        res: Dict[str, Any] = {
            "kind": kind, "rep": rep, "topic": topic, "processes": o.fanin_procs, "messages": msgs,
            "ok": len(good) == o.fanin_procs,
            "failed_processes": o.fanin_procs - len(good),
            "first_error": next((r.get("first_error") or r.get("error") for r in results
                                 if r.get("first_error") or r.get("error")), ""),
            "setup_s": setup_s, "elapsed_s": end - t_go, "msgs_per_s": msgs / max(end - t_go, 1e-9),
            "client_cpu_s": sum(r.get("cpu_s", 0.0) for r in results),
            "client_cpu_whole_s": sum(r["whole_cpu_s"] for r in whole),
            "kafkad_cpu_s": max(0.0, load["watch"].get("kafkad", 0.0)),
            "broker_cpu_s": max(0.0, load["watch"].get("broker", 0.0)),
            "other_load": load["other_cpu_frac"],
            "clients_rss_kb": sum(r["maxrss_kb"] for r in whole),
            "daemon_peak_rss_kb": peak_rss_kb if via_kafkad else 0,
            "daemon_rss_after_kb": proc_status(side_pid).get("VmRSS", 0) if via_kafkad else 0,
            "daemon_peak_method": ("VmHWM after clear_refs" if hwm_reset else "sampled VmRSS") if via_kafkad
            else "",
            "connections": conns,
            "queue_full": sum(r.get("queue_full", 0) for r in results),
        }
        res["total_cpu_s"] = res["client_cpu_s"] + res["kafkad_cpu_s"]
        res["kafkad_cpu_whole_s"] = max(0.0, kafkad_cpu_whole)
        res["total_cpu_whole_s"] = res["client_cpu_whole_s"] + res["kafkad_cpu_whole_s"]
        res["total_rss_kb"] = res["clients_rss_kb"] + res["daemon_peak_rss_kb"]
        res["broker_connections_opened"] = int(j1["created"] - j0["created"]) if j0 and j1 else None
        log(f"fan-in rep {rep} {kind:16s} {res['msgs_per_s']:>10,.0f} msgs/s  CPU {res['total_cpu_s']:.2f} s "
            f"(client {res['client_cpu_s']:.2f} + kafkad {res['kafkad_cpu_s']:.2f})  RSS "
            f"{res['total_rss_kb'] / 1024:.0f} MB  connections peak {conns['peak']} opened "
            f"{res['broker_connections_opened']}  other load {res['other_load']:.0%}"
            f"{'' if res['ok'] else '  FAILED: ' + str(res['first_error'])}")
        return res

    def repeat(self, kinds: List[Any], reps: int, run: Any) -> List[Dict[str, Any]]:
        """run(kind, rep) for every kind in every repetition, the order rotating."""
        names = [k for k, _ in kinds]
        return [run(k, rep) for rep in range(reps) for k in rotated(names, rep)]

    def fan_in(self) -> Dict[str, Any]:
        o = self.o
        log(f"fan-in: {o.fanin_procs} processes × {o.fanin_messages:,} messages, a warm-up round, then "
            f"{o.fanin_reps} reps each")
        # Not measured: each contender's first run pays for what later runs
        # find in place (kafkad's heap growing to hold a burst, the broker's
        # JIT for the request mix, page cache), as a long-running daemon and
        # broker would have it.
        warmup = [self.fanin_rep(k, "warmup") for k, _ in FANIN_KINDS]
        runs = self.repeat(FANIN_KINDS, o.fanin_reps, self.fanin_rep)
        summary = []
        for k, desc, rs in by_contender(runs, FANIN_KINDS, "kind"):
            row, good = summary_row(
                rs,
                ("msgs_per_s", "elapsed_s", "setup_s", "client_cpu_s", "client_cpu_whole_s", "kafkad_cpu_s",
                 "total_cpu_s", "kafkad_cpu_whole_s", "total_cpu_whole_s", "broker_cpu_s", "clients_rss_kb",
                 "daemon_peak_rss_kb", "total_rss_kb", "other_load"),
                kind=k, description=desc)
            row["connections_peak"] = max(r["connections"]["peak"] for r in good)
            opened = [r["broker_connections_opened"] for r in good if r["broker_connections_opened"] is not None]
            row["broker_connections_opened"] = med(opened) if opened else None
            row["daemon_peak_rss_kb_max"] = max(r["daemon_peak_rss_kb"] for r in good)
            row["daemon_rss_after_kb"] = med([r["daemon_rss_after_kb"] for r in good])
            row["messages"] = good[0]["messages"]
            summary.append(row)
        return {"runs": runs, "summary": summary, "warmup": warmup}

    # -- 5. local hop -------------------------------------------------------------

    def hop_run(self, kind: str, rep: int) -> Dict[str, Any]:
        o = self.o
        topic = f"{o.prefix}-hop-{kind}-{rep}"
        n = o.hop_messages
        watch = f"kafkad:{o.side_pid},broker:{o.broker_pid}"
        s0 = self.stats(o.socket_side)
        lm = LoadMeter({"kafkad": o.side_pid, "broker": o.broker_pid}).start()
        if kind == "raw-c":
            argv = [o.raw_bin, o.socket_side, topic, str(n), str(HOP_BATCH), str(o.size), str(o.hop_window)]
        elif kind == "stub-batch-none":
            argv = [sys.executable, str(Path(__file__).resolve()), "worker", "hop-stub-batch-none", "--topic", topic,
                    "--count", str(n), "--size", str(o.size), "--socket", o.socket_side, "--watch", watch]
        else:
            name = {"stub-batch-report": "a:kafkad-batch", "stub-produce-report": "a:kafkad-produce"}[kind]
            argv = [sys.executable, str(PRODUCE_BENCH), "worker", name, "--topic", topic, "--count", str(n),
                    "--size", str(o.size), "--warmup", "1000", "--socket", o.socket_side]
        self.env["KB_WATCH_PIDS"] = watch  # produce_bench workers read their watch list here
        dog = self.watchdog(o.hop_timeout, f"local hop {kind}")
        try:
            p = self.popen(argv, stdout=subprocess.PIPE)
            assert p.stdout is not None
            out = p.stdout.read()
            p.stdout.close()
            rc, ru = self.reap(p)
        finally:
            dog.cancel()
            self.env.pop("KB_WATCH_PIDS", None)
        load = lm.stop()
        s1 = self.stats(o.socket_side)
        r: Dict[str, Any] = last_json(out) or {}
        res: Dict[str, Any] = {"kind": kind, "rep": rep, "topic": topic, "messages": n, "exit": rc,
                               "client_cpu_process_s": ru.ru_utime + ru.ru_stime, "other_load": load["other_cpu_frac"]}
        if kind == "raw-c":
            res.update(elapsed_s=r.get("flush_s", float("nan")), accept_s=r.get("accept_s", float("nan")),
                       frame_bytes=r.get("frame_bytes", 0), client_cpu_s=r.get("cpu_s", 0.0),
                       kafkad_cpu_s=max(0.0, load["watch"].get("kafkad", 0.0)),
                       broker_cpu_s=max(0.0, load["watch"].get("broker", 0.0)),
                       ok=rc == 0 and r.get("remaining") == 0 and r.get("produced") == n)
        else:
            w = r.get("watch", {})
            res.update(elapsed_s=r.get("elapsed_s", float("nan")), client_cpu_s=r.get("cpu_s", 0.0),
                       kafkad_cpu_s=max(0.0, w.get("kafkad", 0.0)), broker_cpu_s=max(0.0, w.get("broker", 0.0)),
                       handed_s=r.get("handed_s"),
                       **({"accept_s": r["accept_s"]} if "accept_s" in r else {}),
                       ok=rc == 0 and not r.get("failed") and r.get("remaining", 1) == 0
                       and r.get("delivered") == n)
        # the daemon's own counters must show every message delivered, none failed
        res["daemon_delivered"] = s1["delivered"] - s0["delivered"]
        res["daemon_failed"] = s1["delivery_failed"] - s0["delivery_failed"]
        if res["daemon_delivered"] < n or res["daemon_failed"]:
            res["ok"] = False
        res["msgs_per_s"] = n / res["elapsed_s"] if res["elapsed_s"] == res["elapsed_s"] else 0.0
        if "accept_s" in res:
            res["accept_msgs_per_s"] = n / res["accept_s"]
            if res.get("frame_bytes"):
                res["accept_wire_mb_s"] = res["frame_bytes"] / res["accept_s"] / 1e6
        log(f"local hop rep {rep} {kind:20s} {res['msgs_per_s']:>10,.0f} msgs/s end to end"
            + (f", {res['accept_msgs_per_s']:,.0f} msgs/s accepted" if "accept_msgs_per_s" in res else "")
            + f"  client CPU {res['client_cpu_s']:.2f} s  kafkad {res['kafkad_cpu_s']:.2f} s"
            f"  other load {res['other_load']:.0%}{'' if res['ok'] else '  FAILED'}")
        return res

    def local_hop(self) -> Dict[str, Any]:
        o = self.o
        log(f"local hop: {o.hop_messages:,} messages per run, {o.hop_reps} reps each")
        runs = self.repeat(HOP_KINDS, o.hop_reps, self.hop_run)
        summary = []
        for k, desc, rs in by_contender(runs, HOP_KINDS, "kind"):
            row, good = summary_row(rs,
                                    ("msgs_per_s", "client_cpu_s", "kafkad_cpu_s", "broker_cpu_s", "other_load"),
                                    kind=k, description=desc, messages=o.hop_messages)
            for key in ("accept_msgs_per_s", "accept_wire_mb_s"):
                if all(key in r for r in good):
                    row[key] = med([r[key] for r in good])
            summary.append(row)
        return {"runs": runs, "summary": summary}


def cmd_run(o: argparse.Namespace) -> int:
    only = set(filter(None, (o.only or "").split(",")))
    started = _dt.datetime.now()
    meta: Dict[str, Any] = {
        **common.run_meta(started, o.librdkafka_version, o.kafkad_version, o.broker_jvm_opts),
        "settings": {k: getattr(o, k) for k in (
            "size", "cold_runs", "cold_warmup", "short_procs", "short_procs_confluent", "fanin_procs",
            "fanin_messages", "fanin_reps", "idle_conns", "idle_window", "hop_messages", "hop_reps", "hop_window",
            "ss_interval", "partitions")},
        "jmx": bool(o.jmx_port),
        "broker_data": o.broker_data,
        "daemon_nice": o.daemon_nice,
    }
    b = Bench(o)
    data: Dict[str, Any] = {"meta": meta}
    t0 = time.monotonic()
    from report import render_section  # the same tables as docs/BENCHMARKS.md

    def step(name: str, fn: Any) -> None:
        if only and name not in only:
            return
        try:
            data[name] = fn()
        except Exception as e:  # keep what the other scenarios measured
            log(f"{name} failed: {e!r}")
            b.errors.append(f"{name}: {e!r}")
            data[name] = {"error": repr(e)}
        finally:
            b.kill_all()
        if "error" not in data[name]:
            print(render_section(name, data), flush=True)

    try:
        create_topics(o, topic_names(o.prefix, o.fanin_reps, o.hop_reps))
        step("footprint_idle", b.footprint_idle)  # first: the daemon must be untouched
        step("cold_start", b.cold_start)
        step("short_lived", b.short_lived)
        step("fan_in", b.fan_in)
        step("local_hop", b.local_hop)
    finally:
        b.kill_all()
    if "footprint_idle" in data and "fan_in" in data:
        print(render_section("footprint", data), flush=True)
    meta["duration_s"] = round(time.monotonic() - t0, 1)
    meta["errors"] = b.errors
    if o.json_out:
        common.write_json(o.json_out, data)
        log(f"wrote {o.json_out} ({meta['duration_s']} s)")
    failed = b.errors or any(
        not r.get("ok", True) for sec in ("cold_start", "fan_in", "local_hop") for r in data.get(sec, {}).get("runs", []))
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    ap, sub, t = common.subcommand_cli(__doc__)
    t.add_argument("--fanin-reps", type=int, default=9)
    t.add_argument("--hop-reps", type=int, default=5)
    r = sub.add_parser("run", help="run the scenarios")
    r.add_argument("--bootstrap", required=True)
    r.add_argument("--broker-pid", type=int, default=0)
    r.add_argument("--jmx-port", type=int, default=0, help="the broker's JMX port (0: no broker-side counts)")
    r.add_argument("--socket0", required=True, help="kafkad with linger.ms=0 (cold start, short-lived)")
    r.add_argument("--daemon0-pid", type=int, default=0)
    r.add_argument("--socket-side", required=True, help="fresh kafkad with linger.ms=5 (footprint, fan-in, hop)")
    r.add_argument("--side-pid", type=int, required=True)
    r.add_argument("--socket-side0", required=True, help="a daemon like --socket-side, at nice 0 (fan-in)")
    r.add_argument("--side0-pid", type=int, required=True)
    r.add_argument("--daemon-nice", type=int, default=0, help="the nice value of the other daemons (report)")
    r.add_argument("--raw-bin", required=True, help="bench/raw_produce.c, compiled")
    r.add_argument("--prefix", required=True)
    r.add_argument("--pycache", required=True, help="PYTHONPYCACHEPREFIX for the client processes")
    r.add_argument("--size", type=int, default=100)
    r.add_argument("--partitions", type=int, default=6)
    r.add_argument("--cold-runs", type=int, default=20)
    r.add_argument("--cold-warmup", type=int, default=2)
    r.add_argument("--short-procs", type=int, default=500)
    r.add_argument("--short-procs-confluent", type=int, default=500)
    r.add_argument("--fanin-procs", type=int, default=50)
    r.add_argument("--fanin-messages", type=int, default=20000)
    r.add_argument("--fanin-reps", type=int, default=9)
    r.add_argument("--fanin-timeout", type=float, default=240.0)
    r.add_argument("--idle-conns", type=int, default=1000)
    r.add_argument("--idle-window", type=float, default=3.0)
    r.add_argument("--hop-messages", type=int, default=1000000)
    r.add_argument("--hop-reps", type=int, default=5)
    r.add_argument("--hop-window", type=int, default=64)
    r.add_argument("--hop-timeout", type=float, default=180.0)
    r.add_argument("--ss-interval", type=float, default=0.2)
    r.add_argument("--only", default="", help="comma-separated: footprint_idle,cold_start,short_lived,fan_in,local_hop")
    r.add_argument("--json-out", default="")
    r.add_argument("--librdkafka-version", default="?")
    r.add_argument("--kafkad-version", default="?")
    r.add_argument("--broker-jvm-opts", default="?")
    r.add_argument("--broker-data", default="", help="where the broker keeps its logs (for the report)")
    w = sub.add_parser("worker", help="(internal) one client process")
    w.add_argument("name", choices=sorted(WORKERS))
    w.add_argument("--topic", required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--size", type=int, default=100)
    w.add_argument("--bootstrap", default="")
    w.add_argument("--socket", default="")
    w.add_argument("--watch", default="")
    o = ap.parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    return {"topics": cmd_topics, "run": cmd_run, "worker": cmd_worker}[o.cmd](o)


if __name__ == "__main__":
    sys.exit(main())
