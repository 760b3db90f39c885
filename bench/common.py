"""Helpers shared by the benchmarks (produce_bench.py, consume_bench.py,
sidecar_bench.py, report.py).

Measurement: CPU of this process, of other processes (/proc/PID/stat) and of
the whole machine (/proc/stat, for the "other load" noise indicator), memory
of a process (/proc/PID/status, with the peak reset through clear_refs),
connections to the broker (``ss`` samples, and the broker's own counters over
JMX).  Worker processes: the watch list they get (KB_WATCH_PIDS), running one
and reading its JSON line, the rotating contender order.  The producer
contenders' delivery-report counters and measured produce loops, which the
producer and the sidecar benchmarks both run.  Plus the machine/version
description, the table formatter every report uses, and the bar charts and
result files of the producer and consumer reports.  Standard library only
(matplotlib is imported by the chart helpers when called): the benchmark's
worker processes import this module too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KAFKA_VERSION = "3.9.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
POLL_EVERY = 1024  # the producer contenders poll(0) once per this many messages


# --------------------------------------------------------------------------
# CPU


def proc_cpu(pid: int) -> float:
    """utime+stime of a process in seconds (-1 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return -1.0
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime/stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_busy() -> float:
    """CPU seconds all CPUs spent not idle (from /proc/stat), steal included."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
    return (sum(vals[:8]) - vals[3] - vals[4]) / CLK_TCK


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def children_cpu() -> float:
    """CPU of this process's reaped children (RUSAGE_CHILDREN)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Phase:
    """Wall time, own CPU and watched processes' CPU over a code section."""

    def __init__(self, watch: Dict[str, int]) -> None:
        self.watch = watch

    def __enter__(self) -> "Phase":
        self.w0 = {k: proc_cpu(p) for k, p in self.watch.items()}
        self.c0 = self_cpu()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.elapsed = time.perf_counter() - self.t0
        self.cpu = self_cpu() - self.c0
        w1 = {k: proc_cpu(p) for k, p in self.watch.items()}
        self.watched = {k: (w1[k] - self.w0[k]) if w1[k] >= 0 and self.w0[k] >= 0 else -1.0 for k in self.watch}

    def result(self, **kw: Any) -> Dict[str, Any]:
        return dict(elapsed_s=self.elapsed, cpu_s=self.cpu, watch=self.watched, **kw)


class LoadMeter:
    """CPU of the watched processes over a window, and the "other load":
    busy CPU of the machine minus what the benchmark itself used (watched
    processes, this process, its reaped children, and ``extra`` CPU the
    caller accounts for, e.g. children reaped later), as a share of all CPUs.
    """

    def __init__(self, watch: Dict[str, int]) -> None:
        self.watch = {k: v for k, v in watch.items() if v}

    def start(self) -> "LoadMeter":
        self.t0 = time.monotonic()
        self.b0 = system_busy()
        self.s0 = self_cpu()
        self.ch0 = children_cpu()
        self.w0 = {k: proc_cpu(p) for k, p in self.watch.items()}
        return self

    def stop(self, extra_cpu: float = 0.0) -> Dict[str, Any]:
        wall = time.monotonic() - self.t0
        busy = system_busy() - self.b0
        own = (self_cpu() - self.s0) + (children_cpu() - self.ch0)
        w1 = {k: proc_cpu(p) for k, p in self.watch.items()}
        watched = {k: (w1[k] - self.w0[k]) if w1[k] >= 0 and self.w0[k] >= 0 else -1.0 for k in self.watch}
        other = busy - own - extra_cpu - sum(v for v in watched.values() if v > 0)
        return {
            "wall_s": wall,
            "watch": watched,
            "own_cpu_s": own,
            "other_cpu_s": max(0.0, other),
            "other_cpu_frac": max(0.0, other) / max(wall, 1e-9) / (os.cpu_count() or 1),
        }


# --------------------------------------------------------------------------
# worker processes


def parse_watch(s: str) -> Dict[str, int]:
    """A watch list "name:pid,..." (KB_WATCH_PIDS, --watch): {name: pid}."""
    out: Dict[str, int] = {}
    for item in filter(None, (s or "").split(",")):
        name, pid = item.split(":")
        out[name] = int(pid)
    return out


def watch_list(pairs: Iterable[Tuple[str, int]]) -> str:
    """The watch list "name:pid,..." of the (name, pid) pairs that have a pid."""
    return ",".join(f"{k}:{v}" for k, v in pairs if v)


def emit(res: Dict[str, Any]) -> None:
    """A worker's result: one JSON line on stdout."""
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()


def last_json(out: bytes) -> Optional[Dict[str, Any]]:
    """The last line of a worker's output that is a JSON object, None if there is none."""
    lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def run_worker(argv: List[str], env: Dict[str, str], timeout: float, cwd: Path = REPO) -> Tuple[bytes, int, Any]:
    """Runs one worker process to its end (SIGKILL after ``timeout`` s): its
    stdout, exit code and rusage (wait4: the whole process's CPU)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, cwd=str(cwd))
    killer = threading.Timer(timeout, lambda: os.kill(p.pid, signal.SIGKILL))
    killer.start()
    try:
        out = p.stdout.read() if p.stdout else b""
        _pid, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        killer.cancel()
        if p.stdout:
            p.stdout.close()
    return out, p.returncode, ru


def subcommand_cli(doc: str) -> Tuple[argparse.ArgumentParser, Any, argparse.ArgumentParser]:
    """The command line of a benchmark run by bench.sh: the parser (its help
    is ``doc``), its subcommands, and the ``topics`` one with --prefix."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("topics", help="print the topics a run needs")
    t.add_argument("--prefix", required=True)
    return ap, sub, t


def rotated(names: List[str], rep: int) -> List[str]:
    """The contenders' order in repetition ``rep``: rotated by one each time."""
    k = rep % len(names) if names else 0
    return names[k:] + names[:k]


# --------------------------------------------------------------------------
# producer contenders: delivery reports and the measured produce loops


def kafkad_outcomes() -> Tuple[List[int], List[Any], Callable[[Any], None]]:
    """([delivered], [errors], on_delivery) for the kafkad stub's report mode."""
    ok = [0]
    bad: List[Any] = []

    def on_delivery(r: Any) -> None:
        if r.error is None:
            ok[0] += 1
        else:
            bad.append(r.error)

    return ok, bad, on_delivery


def confluent_outcomes() -> Tuple[List[int], List[Any], Callable[[Any, Any], None]]:
    """([delivered], [errors], on_delivery) for a confluent-kafka Producer."""
    ok = [0]
    bad: List[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            ok[0] += 1
        else:
            bad.append(err)

    return ok, bad, on_delivery


def restart_count(ok: List[int], bad: List[Any]) -> int:
    """After the warm-up messages: the counts start again; returns the warm-up's failures."""
    warm_bad = len(bad)
    ok[0] = 0
    bad.clear()
    return warm_bad


def count_reports(reports: Iterable[Any], bad: List[Any]) -> int:
    """The delivered among the stub's ``poll_reports()``; the errors go to ``bad``."""
    n = 0
    for r in reports:
        if r.error is None:
            n += 1
        else:
            bad.append(r.error)
    return n


def produce_each(produce: Callable[..., Any], poll: Callable[..., Any], topic: str, payload: bytes,
                 count: int) -> None:
    """kafkad stub: ``count`` produce() calls, poll(0) every POLL_EVERY."""
    for i in range(count):
        produce(topic, payload)
        if not i & (POLL_EVERY - 1):
            poll(0)


def produce_each_confluent(produce: Callable[..., Any], poll: Callable[..., Any], topic: str, payload: bytes,
                           count: int) -> int:
    """confluent-kafka: ``count`` produce() calls, poll(0) every POLL_EVERY;
    a full queue is polled for 10 ms and the message produced again.
    Returns how often the queue was full."""
    queue_full = 0
    for i in range(count):
        try:
            produce(topic, payload)
        except BufferError:
            queue_full += 1
            poll(0.01)
            produce(topic, payload)
        if not i & (POLL_EVERY - 1):
            poll(0)
    return queue_full


def produce_batches(c: Any, topic: str, chunk: List[bytes], count: int, bad: List[Any]) -> int:
    """kafkad stub: ``count`` messages in produce_batch() calls of up to
    len(chunk), the reports that came meanwhile counted after each call.
    Returns how many of those were delivered; the errors go to ``bad``.  (The
    caller flushes and counts the rest.)"""
    batch = len(chunk)
    ok = 0
    sent = 0
    while sent < count:
        n = min(batch, count - sent)
        c.produce_batch(topic, chunk if n == batch else chunk[:n])
        sent += n
        ok += count_reports(c.poll_reports(), bad)
    return ok


# --------------------------------------------------------------------------
# memory


def proc_status(pid: int) -> Dict[str, int]:
    """VmRSS, VmHWM (kB), Threads and open fds of a process ({} if gone)."""
    out: Dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "VmSize", "RssAnon", "RssFile", "Threads"):
                    out[k] = int(v.split()[0])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        pass
    return out


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux >= 4.0: clear_refs 5)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """Peak VmRSS of a process, sampled (the fallback when clear_refs fails)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self._stop_ev = threading.Event()

    def run(self) -> None:
        while not self._stop_ev.is_set():
            self.peak_kb = max(self.peak_kb, proc_status(self.pid).get("VmRSS", 0))
            self._stop_ev.wait(self.interval)

    def stop(self) -> int:
        self._stop_ev.set()
        self.join()
        self.peak_kb = max(self.peak_kb, proc_status(self.pid).get("VmRSS", 0))
        return self.peak_kb


# --------------------------------------------------------------------------
# connections to the broker


_SS_PID = re.compile(r"pid=(\d+)")


def ss_broker_connections(port: int) -> List[Tuple[str, Set[int]]]:
    """Established TCP connections to 127.0.0.1:port: [(local address, owning pids)]."""
    try:
        out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{port} )"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    conns = []
    for line in out.decode("utf-8", "replace").splitlines():
        parts = line.split()
        # state filter given: Recv-Q Send-Q Local:Port Peer:Port [Process]
        if len(parts) < 4:
            continue
        conns.append((parts[2], {int(p) for p in _SS_PID.findall(line)}))
    return conns


class ConnSampler(threading.Thread):
    """Samples ``ss`` every ``interval`` s: the peak number of broker
    connections owned by the given pids (the set may grow while it runs),
    and the distinct connections seen."""

    def __init__(self, port: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.port, self.interval = port, interval
        self.pids: Set[int] = set()
        self.peak = 0
        self.peak_all = 0
        self.samples = 0
        self.seen: Set[str] = set()
        self._lock = threading.Lock()
        self._stop_ev = threading.Event()

    def sample(self) -> None:
        conns = ss_broker_connections(self.port)
        with self._lock:
            mine = [addr for addr, pids in conns if pids & self.pids]
            self.peak = max(self.peak, len(mine))
            self.peak_all = max(self.peak_all, len(conns))
            self.seen.update(mine)
            self.samples += 1

    def add_pid(self, pid: int) -> None:
        with self._lock:
            self.pids.add(pid)

    def run(self) -> None:
        while not self._stop_ev.is_set():
            self.sample()
            self._stop_ev.wait(self.interval)

    def stop(self) -> Dict[str, int]:
        self._stop_ev.set()
        self.join()
        return {"peak": self.peak, "peak_all_to_broker": self.peak_all, "distinct_seen": len(self.seen),
                "samples": self.samples}


class BrokerJmx:
    """The broker's own connection counters (kafka.server socket-server-metrics
    of the PLAINTEXT listener: connection-creation-total, connection-count),
    read over JMX with Kafka's JmxTool.  ``available`` is False when the
    broker was started without JMX (then ``read`` returns None)."""

    OBJECT = "kafka.server:type=socket-server-metrics,listener=PLAINTEXT,networkProcessor=*"

    def __init__(self, jmx_port: int, libs: Optional[str] = None) -> None:
        self.port = jmx_port
        self.libs = libs or str(REPO / ".cache" / f"kafka-{KAFKA_VERSION}" / "libs")
        self.available = bool(jmx_port)
        self.error = "" if jmx_port else "broker started without JMX"

    def read(self) -> Optional[Dict[str, float]]:
        """{'created': connections accepted since start, 'open': open now}, or None."""
        if not self.available:
            return None
        cmd = ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
               f"-Dlog4j.configuration=file:{REPO / 'tests' / 'kafka' / 'tools-log4j.properties'}",
               "-cp", self.libs + "/*", "org.apache.kafka.tools.JmxTool",
               "--jmx-url", f"service:jmx:rmi:///jndi/rmi://127.0.0.1:{self.port}/jmxrmi",
               "--object-name", self.OBJECT, "--attributes", "connection-creation-total,connection-count",
               "--one-time", "true"]
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.error = f"JmxTool: {e}"
            return None
        lines = [ln for ln in r.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
        hdr_i = next((i for i, ln in enumerate(lines) if ln.startswith('"time"')), -1)
        if r.returncode != 0 or hdr_i < 0 or hdr_i + 1 >= len(lines):
            self.error = f"JmxTool exit {r.returncode}: {' | '.join(lines[-3:])}"
            return None
        names = [h.strip('"') for h in lines[hdr_i].split('","')]
        vals = lines[hdr_i + 1].split(",")
        out = {"created": 0.0, "open": 0.0}
        for name, val in zip(names, vals):
            try:
                v = float(val)
            except ValueError:
                continue
            if name.endswith(":connection-creation-total"):
                out["created"] += v
            elif name.endswith(":connection-count"):
                out["open"] += v
        return out


# --------------------------------------------------------------------------
# statistics and output


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def quantile(xs: Iterable[float], p: float) -> float:
    """Nearest-rank quantile (p in 0..100)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))]


def percentiles(lat: List[float], suffix: str = "_us") -> Dict[str, float]:
    s = sorted(lat)
    n = len(s)
    return {f"p50{suffix}": quantile(s, 50), f"p90{suffix}": quantile(s, 90), f"p99{suffix}": quantile(s, 99),
            f"mean{suffix}": sum(s) / n, f"min{suffix}": s[0], f"max{suffix}": s[-1]}


def by_contender(runs: List[Dict[str, Any]], contenders: Iterable[Tuple[str, str]],
                 field: str = "contender") -> Iterable[Tuple[str, str, List[Dict[str, Any]]]]:
    """(name, description, its runs) of each contender that has runs, in the
    contenders' order; ``field`` names the contender in a run."""
    for name, desc in contenders:
        rs = [r for r in runs if r[field] == name]
        if rs:
            yield name, desc, rs


def summary_row(rs: List[Dict[str, Any]], keys: Iterable[str], **head: Any) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """One contender's summary over its repetitions ``rs``: ``head``, runs,
    failed_runs, the median of each of ``keys`` over the good runs (those
    ok; all of them when none was) and, with msgs_per_s among the keys, its
    range (msgs_per_s_min, msgs_per_s_max).  Returns the row and the good runs."""
    good = [r for r in rs if r.get("ok")] or rs
    row: Dict[str, Any] = dict(head, runs=len(rs), failed_runs=sum(1 for r in rs if not r.get("ok")))
    keys = list(keys)
    for k in keys:
        row[k] = med([r[k] for r in good])
    if "msgs_per_s" in keys:
        row["msgs_per_s_min"] = min(r["msgs_per_s"] for r in good)
        row["msgs_per_s_max"] = max(r["msgs_per_s"] for r in good)
    return row, good


def fmt_table(headers: List[str], rows: List[List[str]], align: str) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: List[str]) -> str:
        parts = []
        for i, c in enumerate(cells):
            parts.append(c.rjust(widths[i]) if align[i] == "r" else c.ljust(widths[i]))
        return "| " + " | ".join(parts) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def write_json(path: Any, data: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def save_results(out_dir: str, base_name: str, text: str, data: Any, chart: Callable[[Path], None]) -> Path:
    """OUT_DIR/BASE_NAME.md (the report's text), .json (``data``) and .png
    (drawn by ``chart``: a failure there is logged, the tables matter more
    than the picture).  Returns OUT_DIR/BASE_NAME."""
    base = Path(out_dir) / base_name
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".md").write_text(text + "\n")
    write_json(base.with_suffix(".json"), data)
    try:
        chart(base.with_suffix(".png"))
    except Exception as e:
        log(f"chart failed: {e}")
    return base


def pyplot() -> Any:
    """matplotlib.pyplot, drawing to files only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rate_bars(ax: Any, names: List[str], rows: List[Dict[str, Any]], color: Any, unit: str = "") -> None:
    """Bars of k msgs/s (median) with the min–max range as error bars, each labelled."""
    vals = [r["msgs_per_s"] / 1000 for r in rows]
    err = [[(r["msgs_per_s"] - r["msgs_per_s_min"]) / 1000 for r in rows],
           [(r["msgs_per_s_max"] - r["msgs_per_s"]) / 1000 for r in rows]]
    ax.bar(names, vals, yerr=err, capsize=4, color=color)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:,.0f}{unit}", ha="center", va="bottom", fontsize=8)


def cpu_bars(ax: Any, names: List[str], rows: List[Dict[str, Any]], top_of: Callable[[List[float]], float]) -> None:
    """Stacked bars of CPU s per 100k messages, client + kafkad, each labelled
    with its total; the axis ends at top_of(totals) (the far-off pure-Python
    clients are clipped)."""
    cl = [r["client_cpu_100k"] for r in rows]
    kd = [r["kafkad_cpu_100k"] for r in rows]
    tot = [a + b for a, b in zip(cl, kd)]
    top = top_of(tot)
    ax.bar(names, cl, label="client", color="#55a868")
    ax.bar(names, kd, bottom=cl, label="kafkad", color="#c44e52")
    ax.set_ylim(0, top)
    for i, v in enumerate(tot):
        ax.text(i, min(v, top * 0.93), f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.legend(loc="upper left")


# --------------------------------------------------------------------------
# conditions


def machine() -> Dict[str, str]:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": str(os.cpu_count()), "cpu": cpu, "memory": f"{mem:.0f} GiB", "kernel": platform.release(),
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def client_versions() -> Dict[str, str]:
    """Versions of the Python side: interpreter and client libraries."""
    v: Dict[str, str] = {"python": platform.python_version()}
    try:
        import confluent_kafka

        cv = confluent_kafka.version()
        v["confluent-kafka"] = cv[0] if isinstance(cv, tuple) else str(cv)
        v["confluent-kafka librdkafka"] = confluent_kafka.libversion()[0]
    except Exception as e:  # pragma: no cover
        v["confluent-kafka"] = f"unavailable: {e}"
    try:
        import kafka

        v["kafka-python"] = kafka.__version__
    except Exception as e:  # pragma: no cover
        v["kafka-python"] = f"unavailable: {e}"
    try:
        import msgpack

        v["msgpack (stub)"] = ".".join(map(str, msgpack.version))
    except Exception:
        pass
    return v


def versions(librdkafka_version: str, kafkad_version: str) -> Dict[str, str]:
    v = client_versions()
    v["librdkafka (kafkad, C)"] = librdkafka_version
    v["kafkad"] = kafkad_version
    v["kafka broker"] = f"{KAFKA_VERSION} (KRaft, 1 broker, tests/kafka/cluster)"
    return v


def run_meta(started: Any, librdkafka_version: str, kafkad_version: str, broker_jvm_opts: str) -> Dict[str, Any]:
    """The head of a run's "meta": when, the machine, the versions, the broker's JVM, the nice value."""
    return {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(librdkafka_version, kafkad_version),
        "broker_jvm_opts": broker_jvm_opts,
        "nice": os.nice(0),
    }


def confluent_conf(bootstrap: str, linger_ms: int) -> Dict[str, Any]:
    """The confluent-kafka producer settings every benchmark uses."""
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": linger_ms,
        "compression.type": "none",
        # kafkad's own librdkafka defaults, so that the queue bound is the same
        "queue.buffering.max.messages": 1000000,
        "queue.buffering.max.kbytes": 1048576,
    }
