#!/usr/bin/env python3
"""Writes docs/BENCHMARKS.md and its plots from the results of ``make bench``.

    python bench/report.py [--data docs/benchmarks] [--out docs/BENCHMARKS.md] [--no-plots]

Inputs (written by the benchmark run, committed beside the report):
``docs/benchmarks/producer.json`` (bench/produce_bench.py) and
``docs/benchmarks/sidecar.json`` (bench/sidecar_bench.py).  Outputs: the
markdown report and ``docs/benchmarks/*.png``.  Every number in the report
comes from those two files, so the report can be regenerated (e.g. after a
change to this script) without running the benchmarks again.

``render_section`` is also what sidecar_bench.py prints after each scenario.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_table, med, pyplot  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO / "docs" / "benchmarks"
OUT = REPO / "docs" / "BENCHMARKS.md"

COLD_TARGET = 1 / 20  # kafkad / confluent-kafka, after interpreter start
FANIN_CONN_TARGET = 1 / 10


def _f(x: Any, fmt: str = ",.0f", none: str = "n/a") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return none
    return format(x, fmt)


def _mb(kb: Any) -> str:
    return _f(None if kb is None else kb / 1024, ",.1f")


def _pct(x: Any) -> str:
    return _f(None if x is None else x * 100, ".0f") + " %"


def _by(rows: List[Dict[str, Any]], key: str = "kind") -> Dict[str, Dict[str, Any]]:
    return {r[key]: r for r in rows}


def _met(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


# --------------------------------------------------------------------------
# sections (sidecar_bench.py prints these as it goes)


def sec_footprint_idle(d: Dict[str, Any]) -> str:
    f = d["footprint_idle"]
    n = f["idle_conns"]
    idle, conns, after = f["idle"], f["with_conns"], f["after_close"]
    per = (conns.get("VmRSS", 0) - idle.get("VmRSS", 0)) / max(n, 1)
    rows = [
        ["idle, no client yet", f"{f['daemon_uptime_s']:.0f} s", _mb(idle.get("VmRSS")), str(idle.get("Threads", "?")),
         str(idle.get("fds", "?")), f"{f['idle_cpu_pct']:.2f} %"],
        [f"{n} idle connections (hello done)", "", _mb(conns.get("VmRSS")), str(conns.get("Threads", "?")),
         str(conns.get("fds", "?")), f"{f['with_conns_cpu_pct']:.2f} %"],
        ["after closing them", "", _mb(after.get("VmRSS")), str(after.get("Threads", "?")), str(after.get("fds", "?")),
         ""],
    ]
    return "\n".join([
        "### kafkad at rest",
        "",
        fmt_table(["state", "uptime", "RSS MB", "threads", "fds", "CPU"], rows, "lrrrrr"),
        "",
        f"{f['connections_reported']} connections reported by `stats`; {per:.1f} KB of RSS per idle connection; "
        f"{n} connections opened in {f['connect_s'] * 1000:.0f} ms.",
    ])


def sec_cold_start(d: Dict[str, Any]) -> str:
    c = d["cold_start"]
    s = d["meta"]["settings"]
    rows = []
    for r in c["summary"]:
        rows.append([
            r["kind"], str(r["runs"]),
            _f(r["start_to_delivery_ms"], ".1f"), _f(r["start_to_delivery_p90_ms"], ".1f"),
            _f(r["after_start_ms"], ".1f"), _f(r["after_start_p90_ms"], ".1f"),
            _f(r["interpreter_ms"], ".1f"), _f(r["import_ms"], ".1f"), _f(r["deliver_ms"], ".1f"),
            _f(r["total_ms"], ".1f"), _f(r["cpu_ms"], ".0f"), _mb(r["maxrss_kb"]),
            "" if not r["failed"] else f"{r['failed']} failed",
        ])
    out = [
        f"One fresh Python process per run: import the client, produce one {s['size']}-byte message, wait for its "
        f"delivery (acks=all), exit. {s['cold_runs']} runs per client in rotating order after "
        f"{s['cold_warmup']} warm-up runs each; median (p50) and p90.",
        "",
        fmt_table(["client", "runs", "start→delivery p50 ms", "p90", "after interpreter start p50 ms", "p90",
                   "interpreter start ms", "import ms", "connect+produce+ack ms", "process total ms",
                   "CPU ms", "max RSS MB", ""], rows, "lrrrrrrrrrrrl"),
        "",
    ]
    for r in c["summary"]:
        out.append(f"- {r['kind']}: {r['description']}")
    out += [
        "",
        "What each side does: the kafkad rows connect to a running daemon (its linger.ms=0 instance; a daemon "
        "with linger.ms > 0 sends a waiting caller's message at once too) that already has its broker "
        "connection and the topic's metadata; `kafkad` is the stub's one-shot call `kafkad.produce_sync()` "
        "(imports only the package and `_socket`, one `produce` request with ack \"wait\"), `kafkad-client` "
        "the stub's `Client` (msgpack, threads, `hello`, then `produce(ack=\"wait\")`). confluent-kafka and "
        "kafka-python connect to the broker themselves: bootstrap, ApiVersions, Metadata, then Produce; "
        "confluent-kafka gets acks=all, linger.ms=0 and no compression (its defaults but linger.ms, which "
        "its `flush()` ignores anyway), kafka-python the same plus enable_idempotence=False. Everything "
        "waits for the broker's acknowledgement (acks=all) of the one message.",
    ]
    by = _by(c["summary"])
    if "kafkad" in by and "confluent-kafka" in by:
        k, cf = by["kafkad"], by["confluent-kafka"]
        ratio = k["after_start_ms"] / cf["after_start_ms"]
        out += ["", f"After interpreter start, kafkad stub (`produce_sync`) / confluent-kafka = {ratio:.3f} (p50 "
                    f"{k['after_start_ms']:.1f} vs {cf['after_start_ms']:.1f} ms; target ≤ {COLD_TARGET:.2f}: "
                    f"{_met(ratio <= COLD_TARGET)}); p90 / p90 {k['after_start_p90_ms'] / cf['after_start_p90_ms']:.3f}; "
                    f"from process start {k['start_to_delivery_ms'] / cf['start_to_delivery_ms']:.2f}."]
        if "kafkad-client" in by:
            kc = by["kafkad-client"]
            out.append(f"With a `Client` object instead (kafkad-client): "
                       f"{kc['after_start_ms'] / cf['after_start_ms']:.2f} ({kc['after_start_ms']:.1f} ms).")
        if "kafkad-raw" in by:
            rr = by["kafkad-raw"]["after_start_ms"] / cf["after_start_ms"]
            out.append(f"The protocol by hand with msgpack (kafkad-raw) / confluent-kafka = {rr:.2f} after "
                       f"interpreter start.")
    profs = c.get("import_profiles") or ([c["import_profile"]] if c.get("import_profile") else [])
    for prof in profs:
        if not prof.get("top_self"):
            continue
        groups = prof.get("self_by_group_us", {})
        stmt = prof.get("statement") or f"import {prof['module']}"
        out += ["", f"Where `{stmt}` goes: {prof['modules']} modules, {prof['total_us'] / 1000:.1f} ms "
                    f"under `python -X importtime` (which inflates it; bytecode cached): "
                    + ", ".join(f"{g} {us / 1000:.1f} ms" for g, us in sorted(groups.items(), key=lambda t: -t[1]))
                    + "; largest own times: "
                    + ", ".join(f"{m['name']} {m['self_us'] / 1000:.1f}" for m in prof["top_self"][:8]) + " ms."]
    if profs and profs[0].get("editable_finder_us"):
        prof = profs[0]
        out.append(f"Interpreter start includes site {prof['site_us'] / 1000:.1f} ms, of which "
                   f"{prof['editable_finder_us'] / 1000:.1f} ms is the editable stub install's import finder "
                   f"(a .pth file every interpreter in this venv runs, whichever client it uses).")
    out += ["", f"Other load during the runs: {_pct(c['load']['other_cpu_frac'])} of the CPUs."]
    return "\n".join(out)


def sec_short_lived(d: Dict[str, Any]) -> str:
    sl = d["short_lived"]
    rows = []
    for r in sl["summary"]:
        opened = r["broker_connections_opened"]
        rows.append([
            r["kind"], f"{r['processes']:,}", _f(r["wall_s"], ".1f"), _f(r["wall_500_s"], ".1f"),
            _f(r["per_process_ms"], ".1f"), _f(r["per_process_p90_ms"], ".1f"),
            _f(opened, ",d") if opened is not None else "n/a",
            _f(opened / r["processes"], ".2f") if opened is not None else "n/a",
            _f(r["client_cpu_s"], ".1f"), _f(r["kafkad_cpu_s"], ".2f"), _f(r["broker_cpu_s"], ".2f"),
            _f((r["total_cpu_s"]) / r["processes"] * 1000, ".0f"), _pct(r["other_load"]),
            "" if not r["failed"] else f"{r['failed']} failed",
        ])
    out = [
        "Processes run one after another, each producing one message and waiting for its delivery "
        "(bench/oneshot.py, as in the cold start: the cron/CGI/hook pattern).",
        "",
        fmt_table(["client", "processes", "wall s", "wall s per 500", "per process p50 ms", "p90",
                   "broker connections opened", "per process", "client CPU s", "kafkad CPU s", "broker CPU s",
                   "client+kafkad CPU ms/process", "other load", ""], rows, "lrrrrrrrrrrrrl"),
        "",
        "Broker connections opened: the broker's own `connection-creation-total` (socket-server-metrics of the "
        "PLAINTEXT listener, summed over its network threads), read over JMX with Kafka's JmxTool before and "
        "after the processes ran; nothing else connects to this broker meanwhile (the daemons keep theirs open).",
    ]
    if sl.get("jmx_error"):
        out.append(f"JMX was not available: {sl['jmx_error']}")
    by = _by(sl["summary"])
    if "kafkad" in by and "confluent-kafka" in by:
        k, cf = by["kafkad"], by["confluent-kafka"]
        out += ["", f"kafkad takes {k['wall_500_s'] / cf['wall_500_s']:.2f}× confluent-kafka's wall time per 500 "
                    f"processes and {(k['total_cpu_s'] / k['processes']) / (cf['total_cpu_s'] / cf['processes']):.2f}× "
                    f"its CPU per process."]
        if cf["processes"] != k["processes"]:
            out.append(f"(confluent-kafka ran {cf['processes']} processes; its wall time is scaled to 500.)")
    return "\n".join(out)


def fanin_rounds(fi: Dict[str, Any], name: str, base: str = "confluent-kafka") -> List[float]:
    """Per repetition, name's throughput / base's. A repetition runs every
    contender back to back, so these pairs share the machine's state of the
    moment (other load, the broker's JIT and page cache): the paired ratios
    are steadier than a ratio of medians."""
    by_rep: Dict[Any, Dict[str, float]] = {}
    for r in fi.get("runs", []):
        if r.get("ok"):
            by_rep.setdefault(r["rep"], {})[r["kind"]] = r["msgs_per_s"]
    return [v[name] / v[base] for _, v in sorted(by_rep.items()) if name in v and base in v and v[base] > 0]


def fanin_faster(fi: Dict[str, Any], name: str) -> bool:
    """The throughput target, judged on the paired repetitions: the median
    per-repetition ratio above 1 and name faster in at least two thirds of
    them (a ratio of medians alone can come out above 1 at parity)."""
    rounds = fanin_rounds(fi, name)
    if not rounds:
        return False
    return med(rounds) > 1 and sum(1 for x in rounds if x > 1) * 3 >= len(rounds) * 2


def sec_fan_in(d: Dict[str, Any]) -> str:
    fi = d["fan_in"]
    s = d["meta"]["settings"]
    rows = []
    for r in fi["summary"]:
        rows.append([
            r["kind"], f"{r['messages']:,}", _f(r["msgs_per_s"]),
            f"{_f(r['msgs_per_s_min'])}–{_f(r['msgs_per_s_max'])}",
            _f(r["total_cpu_s"], ".2f"), _f(r["client_cpu_s"], ".2f"), _f(r["kafkad_cpu_s"], ".2f"),
            _f(r["total_cpu_whole_s"], ".2f"), _f(r["broker_cpu_s"], ".2f"),
            _f(r["total_rss_kb"] / 1024, ",.0f"), _mb(r["daemon_peak_rss_kb"]) if r["kind"].startswith("kafkad") else "–",
            str(r["connections_peak"]), _f(r["broker_connections_opened"], ".0f"),
            _pct(r["other_load"]), "" if not r["failed_runs"] else f"{r['failed_runs']} failed",
        ])
    out = [
        f"{s['fanin_procs']} processes at once, each producing {s['fanin_messages']:,} × {s['size']} B with a "
        f"delivery report per message. Each process connects and gets one message acknowledged, then all start "
        f"together; msgs/s = all messages / (last process done − start). {s['fanin_reps']} repetitions in "
        f"rotating order, median.",
        "",
        fmt_table(["client", "msgs", "aggregate msgs/s", "range", "total CPU s", "clients CPU s", "kafkad CPU s",
                   "total CPU s, whole processes", "broker CPU s", "total RSS MB", "kafkad peak RSS MB",
                   "broker connections (peak)", "opened", "other load", ""], rows, "lrrrrrrrrrrrrrl"),
        "",
    ]
    for r in fi["summary"]:
        out.append(f"- {r['kind']}: {r['description']}")
    out += [
        "",
        "total CPU = the processes' CPU from start signal to done (getrusage in each) + kafkad's over the same "
        "span (/proc); \"whole processes\": from spawn to exit (wait4), so with interpreter start, imports and "
        "connecting, + kafkad's over that span. total RSS = sum of "
        "every process's peak RSS (its VmHWM, read as it ends) + kafkad's peak RSS during the run (VmHWM, reset "
        "before it). Broker "
        "connections: peak of `ss -tnp` samples (every "
        f"{s['ss_interval']} s) of established connections to the broker owned by the processes (and kafkad); "
        "opened = the broker's connection-creation-total over the run (JMX).",
    ]
    by = _by(fi["summary"])
    if "confluent-kafka" in by:
        cf = by["confluent-kafka"]
        out.append("")
        for name in ("kafkad", "kafkad-batch", "kafkad-nice0"):
            if name not in by:
                continue
            k = by[name]
            tr = k["msgs_per_s"] / cf["msgs_per_s"]
            cr = k["total_cpu_s"] / cf["total_cpu_s"]
            cw = k["total_cpu_whole_s"] / cf["total_cpu_whole_s"]
            conn = k["connections_peak"] / max(cf["connections_peak"], 1)
            rounds = fanin_rounds(fi, name)
            paired = (f" (medians; per repetition {', '.join(f'{x:.2f}' for x in rounds)}: median "
                      f"{med(rounds):.2f}×, faster in {sum(1 for x in rounds if x > 1)} of {len(rounds)})"
                      if rounds else "")
            out.append(f"{'Targets, ' if name == 'kafkad' else ''}{name} / confluent-kafka: throughput {tr:.2f}×"
                       f"{paired} (target > 1, judged per repetition: median above 1 and faster in at least two thirds: "
                       f"{_met(fanin_faster(fi, name))}), total CPU {cr:.2f}× while producing (target < 1: "
                       f"{_met(cr < 1)}) and {cw:.2f}× for the whole processes ({_met(cw < 1)}), broker connections "
                       f"{k['connections_peak']} vs {cf['connections_peak']} = {conn:.3f} (target ≤ "
                       f"{FANIN_CONN_TARGET:.1f}: {_met(conn <= FANIN_CONN_TARGET)}), total RSS "
                       f"{k['total_rss_kb'] / cf['total_rss_kb']:.2f}×.")
            out.append("")
        out.append("(The targets are the per-message `produce()` row's; kafkad-batch shows the same processes "
                   "with the stub's batch call, kafkad-nice0 the kafkad row's processes through a daemon left at "
                   "their own priority.)")
        if "kafkad" in by:
            k = by["kafkad"]
            out += ["", f"Where the CPU goes: the stub's per-message `produce()` costs the processes "
                        f"{k['client_cpu_s']:.2f} s per {k['messages']:,} messages, "
                        f"{k['client_cpu_s'] / cf['client_cpu_s']:.2f}× what confluent-kafka's whole "
                        f"in-process producer costs ({cf['client_cpu_s']:.2f} s), and kafkad's "
                        f"{k['kafkad_cpu_s']:.2f} s come on top"
                        + (f"; with `produce_batch()` the processes need {by['kafkad-batch']['client_cpu_s']:.2f} s"
                           if "kafkad-batch" in by else "")
                        + f". Per process, peak RSS is {k['clients_rss_kb'] / s['fanin_procs'] / 1024:.1f} MB "
                          f"with the stub and {cf['clients_rss_kb'] / s['fanin_procs'] / 1024:.1f} MB with "
                          f"confluent-kafka."]
    return "\n".join(out)


def sec_local_hop(d: Dict[str, Any]) -> str:
    lh = d["local_hop"]
    size = d["meta"]["settings"]["size"]
    rows = []
    for r in lh["summary"]:
        per = 1e6 / r["messages"]
        rows.append([
            r["kind"], f"{r['messages']:,}", _f(r["msgs_per_s"]), f"{_f(r['msgs_per_s_min'])}–{_f(r['msgs_per_s_max'])}",
            _f(r["msgs_per_s"] * size / 1e6, ".0f"),
            _f(r.get("accept_msgs_per_s")) if "accept_msgs_per_s" in r else "–",
            _f(r.get("accept_wire_mb_s"), ".0f") if "accept_wire_mb_s" in r else "–",
            _f(r["client_cpu_s"] * per, ".2f"), _f(r["kafkad_cpu_s"] * per, ".2f"), _f(r["broker_cpu_s"] * per, ".2f"),
            _pct(r["other_load"]), "" if not r["failed_runs"] else f"{r['failed_runs']} failed",
        ])
    out = [
        f"Everything through the fresh kafkad (linger.ms=5) to Kafka; each run ends when a `flush` says every "
        f"message has an outcome, and the daemon's `stats` must count all of them delivered. "
        f"{d['meta']['settings']['hop_reps']} repetitions, median.",
        "",
        fmt_table(["client", "msgs", "msgs/s (to Kafka)", "range", "payload MB/s", "accepted msgs/s",
                   "wire MB/s", "client CPU s/1M", "kafkad CPU s/1M", "broker CPU s/1M", "other load", ""],
                  rows, "lrrrrrrrrrrl"),
        "",
    ]
    for r in lh["summary"]:
        out.append(f"- {r['kind']}: {r['description']}")
    out += ["", "accepted = until the last produce response: kafkad has taken every message into its librdkafka "
                "queue (the local hop alone); msgs/s (to Kafka) = until the flush answered."]
    by = _by(lh["summary"])
    if "raw-c" in by:
        raw = by["raw-c"]
        stubs = [r for r in lh["summary"] if r["kind"].startswith("stub")]
        if stubs:
            best = max(stubs, key=lambda r: r["msgs_per_s"])
            out += ["", f"To Kafka, the stub's best ({best['kind']}, {best['msgs_per_s']:,.0f} msgs/s) is "
                        f"{best['msgs_per_s'] / raw['msgs_per_s']:.0%} of the raw C client's "
                        f"{raw['msgs_per_s']:,.0f} msgs/s."]
            acc = [r for r in stubs if "accept_msgs_per_s" in r]
            if acc and "accept_msgs_per_s" in raw:
                a = max(acc, key=lambda r: r["accept_msgs_per_s"])
                out.append(f"Accepted by kafkad, {a['kind']} reaches {a['accept_msgs_per_s']:,.0f} msgs/s, "
                           f"{a['accept_msgs_per_s'] / raw['accept_msgs_per_s']:.0%} of the raw client's "
                           f"{raw['accept_msgs_per_s']:,.0f} msgs/s ({raw['accept_msgs_per_s'] * size / 1e6:.0f} MB/s "
                           f"of payload, {raw.get('accept_wire_mb_s', 0):.0f} MB/s on the socket).")
        out.append(f"kafkad spends {raw['kafkad_cpu_s'] / raw['messages'] * 1e6:.2f} CPU s per million messages "
                   f"here (its event loop decoding and enqueueing, plus librdkafka's threads sending), the raw "
                   f"client {raw['client_cpu_s'] / raw['messages'] * 1e6:.2f} s: what bounds the hop is the "
                   f"daemon's per-message work on two cores shared with the broker, not the client or the socket.")
    return "\n".join(out)


def sec_footprint(d: Dict[str, Any], producer: Optional[Dict[str, Any]] = None) -> str:
    f = d.get("footprint_idle", {})
    fi = d.get("fan_in", {})
    lh = d.get("local_hop", {})
    cs = d.get("cold_start", {})
    rows = []
    if "idle" in f:
        n = f["idle_conns"]
        idle_kb, conn_kb = f["idle"].get("VmRSS", 0), f["with_conns"].get("VmRSS", 0)
        rows.append(["RSS idle (no client yet, after start)", f"{idle_kb / 1024:.1f} MB"])
        rows.append([f"RSS with {n:,} idle connections", f"{conn_kb / 1024:.1f} MB "
                     f"(+{(conn_kb - idle_kb) / max(n, 1):.1f} KB per connection)"])
        rows.append([f"CPU idle / with {n:,} idle connections",
                     f"{f['idle_cpu_pct']:.2f} % / {f['with_conns_cpu_pct']:.2f} % of one CPU"])
    first = next((r for r in fi.get("warmup", []) + fi.get("runs", []) if r["kind"].startswith("kafkad")), None)
    if first and "after_close" in f:
        before = f["after_close"].get("VmRSS", 0)
        rows.append([f"RSS growth in the first fan-in run ({first['kind']}, {first['messages']:,} messages "
                     f"produced in {first['elapsed_s']:.1f} s)",
                     f"{before / 1024:.1f} → {first['daemon_peak_rss_kb'] / 1024:.1f} MB "
                     f"(≈{(first['daemon_peak_rss_kb'] - before) * 1024 / max(first['messages'], 1):.0f} B per message)"])
    for fk in fi.get("summary", []):
        if not fk["kind"].startswith("kafkad"):
            continue
        rows.append([f"RSS peak during fan-in {fk['kind']} (max over repetitions) / after it",
                     f"{fk['daemon_peak_rss_kb_max'] / 1024:.1f} MB / {fk.get('daemon_rss_after_kb', 0) / 1024:.1f} MB"])
        rows.append([f"kafkad CPU per million messages, fan-in {fk['kind']}",
                     f"{fk['kafkad_cpu_s'] / fk['messages'] * 1e6:.2f} s"])
    for r in lh.get("summary", []):
        rows.append([f"kafkad CPU per million messages, local hop {r['kind']}",
                     f"{r['kafkad_cpu_s'] / r['messages'] * 1e6:.2f} s"])
    if producer:
        for r in producer.get("scenario_a", {}).get("summary", []):
            if r["contender"].startswith("kafkad"):
                rows.append([f"kafkad CPU per million messages, producer benchmark {r['contender']}",
                             f"{r['kafkad_cpu_100k'] * 10:.2f} s"])
    csb = _by(cs.get("summary", []))
    for k in ("kafkad", "confluent-kafka", "kafka-python"):
        if k in csb:
            rows.append([f"for scale: max RSS of one cold-start {k} process", f"{csb[k]['maxrss_kb'] / 1024:.1f} MB"])
    after = [r["daemon_rss_after_kb"] for r in fi.get("runs", []) if r["kind"].startswith("kafkad")]
    notes = ["", "The peak holds what the processes handed over faster than Kafka acknowledged it (librdkafka's "
                 "queue, bounded by queue.buffering.max.messages / .kbytes). kafkad's RSS does not drop back after "
                 + (f"a burst ({min(after) / 1024:.0f}–{max(after) / 1024:.0f} MB after the fan-in runs): "
                    if after else "a burst: ")
                 + "freed memory stays in the malloc heap (kafkad raises glibc's trim threshold to 64 MB on "
                   "purpose, daemon/daemon.c) and is reused by the next burst."]
    return "\n".join([fmt_table(["kafkad", "value"], rows, "ll")] + (notes if first else []))


SECTIONS = {
    "footprint_idle": sec_footprint_idle,
    "cold_start": sec_cold_start,
    "short_lived": sec_short_lived,
    "fan_in": sec_fan_in,
    "local_hop": sec_local_hop,
}


def render_section(name: str, d: Dict[str, Any]) -> str:
    if name == "footprint":
        return "\n## Footprint\n\n" + sec_footprint(d) + "\n"
    return f"\n## {name}\n\n" + SECTIONS[name](d) + "\n"


# --------------------------------------------------------------------------
# plots


def _plt() -> Any:
    return pyplot()


def plot_cold_start(d: Dict[str, Any], path: Path) -> None:
    plt = _plt()
    c = d["cold_start"]
    kinds = [r["kind"] for r in c["summary"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, key, title in ((axes[0], "start_to_delivery_ms", "from process start (parent's clock)"),
                           (axes[1], "after_start_ms", "after interpreter start (child's first line)")):
        data = [[r[key] for r in c["runs"] if r["kind"] == k and r["ok"]] for k in kinds]
        ax.boxplot(data, whis=(10, 90), showfliers=False)
        for i, vals in enumerate(data):
            xs = [i + 1 + (j % 7 - 3) * 0.03 for j in range(len(vals))]
            ax.scatter(xs, vals, s=10, alpha=0.6, color="#4c72b0", zorder=3)
        ax.set_xticks(range(1, len(kinds) + 1))
        ax.set_xticklabels(kinds, rotation=15)
        ax.set_yscale("log")
        from matplotlib.ticker import ScalarFormatter

        for axis_fmt in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            f = ScalarFormatter()
            f.set_scientific(False)
            axis_fmt(f)
        ax.set_ylabel("ms to delivery (log scale)")
        ax.set_title(f"Cold start: {title}\nbox p25–p75, whiskers p10–p90, every run a dot")
        ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bars(ax: Any, names: List[str], vals: List[float], title: str, fmt: str, color: str = "#4c72b0") -> None:
    ax.bar(names, vals, color=color)
    for i, v in enumerate(vals):
        ax.text(i, v, format(v, fmt), ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(vals + [1e-9]) * 1.15)
    ax.set_title(title, fontsize=10)


def plot_short_lived(d: Dict[str, Any], path: Path) -> None:
    plt = _plt()
    sl = d["short_lived"]["summary"]
    names = [r["kind"] for r in sl]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    _bars(axes[0], names, [r["wall_500_s"] for r in sl], "wall seconds per 500 processes", ".1f")
    _bars(axes[1], names, [r["total_cpu_s"] / r["processes"] * 1000 for r in sl],
          "CPU ms per process (client + kafkad)", ".0f", "#55a868")
    _bars(axes[2], names, [r["broker_connections_opened"] or 0 for r in sl],
          f"broker connections opened (JMX), {' / '.join(str(r['processes']) for r in sl)} processes", ",d",
          "#dd8452")
    fig.suptitle("Short-lived processes: one message each, one after another")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_fan_in(d: Dict[str, Any], path: Path) -> None:
    plt = _plt()
    fi = d["fan_in"]["summary"]
    names = [r["kind"] for r in fi]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.8))
    _bars(axes[0], names, [r["msgs_per_s"] / 1000 for r in fi], "aggregate k msgs/s (bars: median, dots: each run)",
          ",.0f")
    top_run = 0.0
    for i, name in enumerate(names):
        ys = [r["msgs_per_s"] / 1000 for r in d["fan_in"].get("runs", []) if r.get("ok") and r["kind"] == name]
        axes[0].scatter([i] * len(ys), ys, color="black", s=10, zorder=3)
        top_run = max([top_run] + ys)
    axes[0].set_ylim(0, max(axes[0].get_ylim()[1], top_run * 1.1))
    ax = axes[1]
    x = list(range(len(names)))
    top = 0.0
    for off, (ck, kk, label) in ((-0.2, ("client_cpu_s", "kafkad_cpu_s", "while producing")),
                                 (0.2, ("client_cpu_whole_s", "kafkad_cpu_whole_s", "whole processes"))):
        cl = [r[ck] for r in fi]
        kd = [r.get(kk, 0.0) for r in fi]
        ax.bar([i + off for i in x], cl, width=0.4, color="#55a868" if off < 0 else "#8fd19e")
        ax.bar([i + off for i in x], kd, width=0.4, bottom=cl, color="#c44e52")
        for i, (a, b) in enumerate(zip(cl, kd)):
            ax.text(i + off, a + b, f"{a + b:.2f}\n{label}", ha="center", va="bottom", fontsize=6)
            top = max(top, a + b)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylim(0, top * 1.25)
    ax.set_title("CPU seconds: clients (green) + kafkad (red)", fontsize=10)
    ax = axes[2]
    cr = [r["clients_rss_kb"] / 1024 for r in fi]
    dr = [r["daemon_peak_rss_kb"] / 1024 for r in fi]
    ax.bar(names, cr, label="processes (Σ peak RSS)", color="#8172b3")
    ax.bar(names, dr, bottom=cr, label="kafkad peak", color="#c44e52")
    for i, (a, b) in enumerate(zip(cr, dr)):
        ax.text(i, a + b, f"{a + b:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(a + b for a, b in zip(cr, dr)) * 1.3)
    ax.set_title("total RSS MB", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    _bars(axes[3], names, [r["connections_peak"] for r in fi], "broker connections (peak of ss samples)", "d",
          "#dd8452")
    s = d["meta"]["settings"]
    fig.suptitle(f"Fan-in: {s['fanin_procs']} processes × {s['fanin_messages']:,} messages at once")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_local_hop(d: Dict[str, Any], path: Path) -> None:
    plt = _plt()
    lh = d["local_hop"]["summary"]
    fig, ax = plt.subplots(figsize=(10, 5))
    names = [r["kind"] for r in lh]
    vals = [r["msgs_per_s"] / 1000 for r in lh]
    err = [[(r["msgs_per_s"] - r["msgs_per_s_min"]) / 1000 for r in lh],
           [(r["msgs_per_s_max"] - r["msgs_per_s"]) / 1000 for r in lh]]
    ax.bar(names, vals, yerr=err, capsize=4, color="#4c72b0", label="to Kafka (until flush)")
    labelled = False
    for i, r in enumerate(lh):
        if "accept_msgs_per_s" in r:
            ax.scatter([i], [r["accept_msgs_per_s"] / 1000], marker="_", s=900, color="#c44e52", zorder=3,
                       label=None if labelled else "accepted by kafkad (median)")
            labelled = True
        ax.text(i, vals[i] / 2, f"{vals[i]:,.0f}", ha="center", va="center", fontsize=9, color="white")
    ax.set_ylabel("k msgs/s (100 B)")
    ax.set_title("Local hop: raw protocol client vs the Python stub (median, min–max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------
# the document


def _broker_data(path: str) -> str:
    if path.startswith("/dev/shm"):
        return (f"data on tmpfs ({path}): a run writes gigabytes, and their writeback to this VM's disk took "
                "CPU from the benchmark in bursts that came and went (in earlier runs on disk, confluent-kafka's "
                "fan-in CPU per message varied by 40% between runs with it); the broker's disk is not what is "
                "compared")
    return f"data under {path or '/tmp'}"


def conditions(d: Dict[str, Any], producer: Optional[Dict[str, Any]]) -> List[str]:
    m = d["meta"]["machine"]
    v = d["meta"]["versions"]
    out = [
        f"- machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}; loopback only: broker, "
        f"daemons and every client share the {m['cpus']} CPUs; load average before the run {m['load_before']}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- broker: Apache Kafka {v.get('kafka broker', '?')}, started for the run by scripts/bench.sh; JVM "
        f"`{d['meta']['broker_jvm_opts']}`; num.network.threads 2, num.io.threads 4, "
        f"{_broker_data(d['meta'].get('broker_data', ''))}; every "
        "topic fresh, 6 partitions, RF 1; JMX on 127.0.0.1 only (for its connection counters)",
        "- kafkad: a meson debugoptimized build of the commit under versions (scripts/bench.sh's $KAFKAD, "
        "default build/daemon/kafkad), three daemons on the same broker: linger.ms=5 "
        "(producer benchmark A), linger.ms=0 (producer benchmark B, cold start, short-lived processes) and a "
        "fresh linger.ms=5 one (footprint, fan-in, local hop); all acks=all, compression none, "
        "queue.buffering.max.messages=1000000, queue.buffering.max.kbytes=1048576, log_level warn; kafkad's "
        "own defaults apply otherwise: socket.nagle.disable=true (librdkafka's default from 2.10 on, so "
        "confluent-kafka's too), a request whose caller waits (ack \"wait\", `flush`) is sent at once rather "
        "than after linger.ms, runs of bare values go to librdkafka with rd_kafka_produce_batch",
        "- clients: acks=all and no compression everywhere; linger 0 for one-message processes (nothing to "
        "batch), 5 ms for streams; confluent-kafka gets kafkad's queue bounds; kafka-python "
        "enable_idempotence=False (librdkafka's default)",
        f"- every benchmark process at nice {d['meta']['nice']}, but the kafkad daemons at nice "
        f"{d['meta'].get('daemon_nice', d['meta']['nice'])}"
        + (" as packaging/kafkad.service runs kafkad (it carries every process's traffic; at the clients' "
           "priority 50 busy producers leave it 1/51 of the CPU), except the daemon of the fan-in's kafkad-nice0 "
           f"row, at {d['meta']['nice']}"
           if d['meta'].get('daemon_nice', d['meta']['nice']) != d['meta']['nice'] else ""),
        "- Python client processes run with a bytecode cache of their own (PYTHONPYCACHEPREFIX, filled by the "
        "warm-up runs), as installed packages would have; the stub is installed editable in the venv, whose "
        ".pth finder every interpreter start in this venv pays for (all clients alike)",
        "- other load: CPU used meanwhile by processes outside the benchmark (other people's tests on this "
        "shared machine), as a share of all CPUs: /proc/stat busy time minus the benchmark's own processes. "
        "Non-zero values mean the numbers are disturbed",
    ]
    if producer:
        out.append(f"- producer benchmark started {producer['meta']['started']}, the sidecar benchmarks "
                   f"{d['meta']['started']} (same broker and daemons, one `make bench`)")
    return out


def summary_lines(d: Dict[str, Any], producer: Optional[Dict[str, Any]]) -> List[str]:
    out = []
    cs = _by(d.get("cold_start", {}).get("summary", []))
    if "kafkad" in cs and "confluent-kafka" in cs:
        k, c = cs["kafkad"], cs["confluent-kafka"]
        r = k["after_start_ms"] / c["after_start_ms"]
        raw = cs.get("kafkad-raw")
        out.append(f"- **Cold start** (one message, fresh process): kafkad stub {k['start_to_delivery_ms']:.0f} ms "
                   f"from process start, {k['after_start_ms']:.1f} ms after interpreter start, vs confluent-kafka "
                   f"{c['start_to_delivery_ms']:.0f} / {c['after_start_ms']:.1f} ms"
                   + (f" and kafka-python {cs['kafka-python']['start_to_delivery_ms']:.0f} / "
                      f"{cs['kafka-python']['after_start_ms']:.0f} ms" if "kafka-python" in cs else "")
                   + f". Ratio after interpreter start {r:.3f}; target ≤ 0.05 {_met(r <= COLD_TARGET)} "
                     f"(stub: `kafkad.produce_sync()`, {k['import_ms']:.1f} ms of it importing"
                   + (f"; with a `Client` object {cs['kafkad-client']['after_start_ms']:.1f} ms"
                      if "kafkad-client" in cs else "")
                   + (f"; the protocol by hand with msgpack {raw['after_start_ms']:.1f} ms" if raw else "")
                   + ").")
    sl = _by(d.get("short_lived", {}).get("summary", []))
    if "kafkad" in sl and "confluent-kafka" in sl:
        k, c = sl["kafkad"], sl["confluent-kafka"]
        out.append(f"- **Short-lived processes**: 500 processes take {k['wall_500_s']:.1f} s through kafkad vs "
                   f"{c['wall_500_s']:.1f} s with confluent-kafka; broker connections opened "
                   f"{_f(k['broker_connections_opened'], ',d') if k['broker_connections_opened'] is not None else 'n/a'}"
                   f" vs {_f(c['broker_connections_opened'], ',d') if c['broker_connections_opened'] is not None else 'n/a'}"
                   f" (for {k['processes']} / {c['processes']} processes).")
    fi = _by(d.get("fan_in", {}).get("summary", []))
    if "kafkad" in fi and "confluent-kafka" in fi:
        k, c = fi["kafkad"], fi["confluent-kafka"]
        tr, cr = k["msgs_per_s"] / c["msgs_per_s"], k["total_cpu_s"] / c["total_cpu_s"]
        cw = k["total_cpu_whole_s"] / c["total_cpu_whole_s"]
        conn = k["connections_peak"] / max(1, c["connections_peak"])
        kb = fi.get("kafkad-batch")
        batch_note = (f" With `produce_batch()` in each process: {kb['msgs_per_s']:,.0f} msgs/s, "
                      f"{kb['total_cpu_s']:.2f} s CPU while producing." if kb else "")
        k0 = fi.get("kafkad-nice0")
        if k0:
            r0 = fanin_rounds(d.get("fan_in", {}), "kafkad-nice0")
            batch_note += (f" With the daemon at the clients' priority (nice {d['meta']['nice']}, kafkad-nice0): "
                           f"{k0['msgs_per_s']:,.0f} msgs/s"
                           + (f", per repetition {med(r0):.2f}× confluent-kafka, faster in "
                              f"{sum(1 for x in r0 if x > 1)} of {len(r0)}" if r0 else "") + ".")
        rounds = fanin_rounds(d.get("fan_in", {}), "kafkad")
        paired = (f"; per repetition {med(rounds):.2f}× median, faster in {sum(1 for x in rounds if x > 1)} of "
                  f"{len(rounds)}" if rounds else "")
        out.append(f"- **Fan-in** ({d['meta']['settings']['fanin_procs']} processes, per-message `produce()`): "
                   f"{k['msgs_per_s']:,.0f} vs "
                   f"{c['msgs_per_s']:,.0f} msgs/s ({tr:.2f}×{paired}: "
                   f"{_met(fanin_faster(d.get('fan_in', {}), 'kafkad'))}), total CPU while producing "
                   f"{k['total_cpu_s']:.2f} vs {c['total_cpu_s']:.2f} s ({cr:.2f}×, {_met(cr < 1)}), for the whole "
                   f"processes {k['total_cpu_whole_s']:.2f} vs {c['total_cpu_whole_s']:.2f} s ({cw:.2f}×, "
                   f"{_met(cw < 1)}), broker connections "
                   f"{k['connections_peak']} vs {c['connections_peak']} ({_met(conn <= FANIN_CONN_TARGET)}), total RSS "
                   f"{k['total_rss_kb'] / 1024:,.0f} vs {c['total_rss_kb'] / 1024:,.0f} MB." + batch_note)
    f = d.get("footprint_idle", {})
    if "idle" in f and "kafkad" in fi:
        out.append(f"- **Footprint**: kafkad {f['idle']['VmRSS'] / 1024:.1f} MB idle, "
                   f"{f['with_conns']['VmRSS'] / 1024:.1f} MB with {f['idle_conns']:,} idle connections, "
                   f"{fi['kafkad']['daemon_peak_rss_kb_max'] / 1024:.1f} MB peak in the fan-in; "
                   f"{fi['kafkad']['kafkad_cpu_s'] / fi['kafkad']['messages'] * 1e6:.2f} CPU s per million messages "
                   f"relayed there.")
    lh = _by(d.get("local_hop", {}).get("summary", []))
    if "raw-c" in lh:
        raw = lh["raw-c"]
        size = d["meta"]["settings"]["size"]
        stubs = [r for r in lh.values() if r["kind"].startswith("stub")]
        best = max(stubs, key=lambda r: r["msgs_per_s"]) if stubs else None
        sn = lh.get("stub-batch-none", {})
        out.append(f"- **Local hop**: kafkad accepts {raw.get('accept_msgs_per_s', 0):,.0f} msgs/s "
                   f"({raw.get('accept_msgs_per_s', 0) * size / 1e6:.0f} MB/s of payload) from a C client speaking "
                   f"the protocol"
                   + (f", {sn['accept_msgs_per_s']:,.0f} from the stub's `produce_batch(ack=\"none\")` "
                      f"({sn['accept_msgs_per_s'] / raw['accept_msgs_per_s']:.0%})" if "accept_msgs_per_s" in sn
                      and "accept_msgs_per_s" in raw else "")
                   + f"; to Kafka {raw['msgs_per_s']:,.0f} msgs/s"
                   + (f" vs the stub's best {best['msgs_per_s']:,.0f} ({best['kind']}, "
                      f"{best['msgs_per_s'] / raw['msgs_per_s']:.0%})" if best else "")
                   + f". The bound is kafkad's per-message work ({raw['kafkad_cpu_s'] / raw['messages'] * 1e6:.2f} "
                     f"CPU s per million messages; the raw client needs {raw['client_cpu_s'] / raw['messages'] * 1e6:.2f}).")
    if producer:
        a = {r["contender"]: r for r in producer.get("scenario_a", {}).get("summary", [])}
        if "kafkad-produce" in a and "confluent-kafka" in a:
            out.append(f"- **Producer benchmark**: kafkad-produce {a['kafkad-produce']['msgs_per_s']:,.0f} msgs/s, "
                       + (f"kafkad-batch {a['kafkad-batch']['msgs_per_s']:,.0f}, " if "kafkad-batch" in a else "")
                       + f"confluent-kafka {a['confluent-kafka']['msgs_per_s']:,.0f} (single process, async).")
    return out


def _nested(text: str) -> str:
    """A benchmark's own report as a section of this one: its title dropped
    (ours replaces it), its ## headings one level down."""
    return "\n".join("#" + ln if ln.startswith("## ") else ln for ln in text.splitlines()[1:]).strip()


def producer_section(p: Dict[str, Any]) -> str:
    import produce_bench

    s = p["meta"]["settings"]
    o = argparse.Namespace(**{k: s[k] for k in ("messages", "kafka_python_messages", "size", "reps", "partitions",
                                                 "latency_count")})
    return _nested(produce_bench.render(o, p["meta"], p["scenario_a"]["summary"], p["scenario_b"]["summary"]))


def consumer_section(cdata: Dict[str, Any]) -> str:
    import consume_bench

    s = cdata["meta"]["settings"]
    o = argparse.Namespace(**{k: s.get(k) for k in ("messages", "size", "partitions", "batch", "reps", "verify",
                                                     "budget")}, self_contained=bool(s.get("self_contained")))
    return _nested(consume_bench.render(o, cdata["meta"], cdata["summary"], cdata["meta"].get("skipped", [])))


def consumer_summary(cdata: Optional[Dict[str, Any]]) -> List[str]:
    if not cdata:
        return []
    r = {x["contender"]: x for x in cdata["summary"] if "msgs_per_s" in x}
    names = [n for n in ("kafkad-consume", "confluent-consume", "confluent-consume-tuned", "librdkafka-c") if n in r]
    if "kafkad-consume" not in r:
        return []
    return ["- **Consumer benchmark** (one process reading 1M messages): "
            + ", ".join(f"{n} {r[n]['msgs_per_s']:,.0f} msgs/s" for n in names) + "."]


def render_doc(d: Dict[str, Any], producer: Optional[Dict[str, Any]], plots: Dict[str, str],
               cdata: Optional[Dict[str, Any]] = None) -> str:
    out = [
        "# kafkad benchmarks",
        "",
        f"<!-- generated by bench/report.py from docs/benchmarks/*.json; do not edit: run `make bench`, or "
        f"`python bench/report.py` to regenerate from the data -->",
        "",
        f"Measured by `make bench` on {d['meta']['started'][:10]} (scripts/bench.sh: one real Kafka broker, the "
        f"kafkad daemons and every client on one machine; {d['meta'].get('duration_s', 0):.0f} s for the sidecar "
        f"scenarios{', ' + str(producer['meta'].get('duration_s')) + ' s for the producer benchmark' if producer else ''})."
        " Why run a sidecar: what kafkad changes for processes that are short-lived, many, or both.",
        "",
        "## Results at a glance",
        "",
        *summary_lines(d, producer),
        *consumer_summary(cdata),
        "",
        "## Conditions",
        "",
        *conditions(d, producer),
        "",
    ]
    num = 1
    titles = [("cold_start", "Cold start"), ("short_lived", "Short-lived processes"), ("fan_in", "Fan-in")]
    for key, title in titles:
        out.append(f"## {num}. {title}")
        out.append("")
        if key in d and "error" not in d[key]:
            out.append(SECTIONS[key](d))
            if key in plots:
                out += ["", f"![{title}]({plots[key]})"]
        else:
            out.append(f"Not measured: {d.get(key, {}).get('error', 'not run')}")
        out.append("")
        num += 1
    out.append(f"## {num}. Footprint")
    out.append("")
    if "footprint_idle" in d and "error" not in d["footprint_idle"]:
        out.append(sec_footprint(d, producer))
        out.append("")
        out.append(sec_footprint_idle(d))
    else:
        out.append(f"Not measured: {d.get('footprint_idle', {}).get('error', 'not run')}")
    out.append("")
    num += 1
    out.append(f"## {num}. The local hop's limit")
    out.append("")
    if "local_hop" in d and "error" not in d["local_hop"]:
        out.append(sec_local_hop(d))
        if "local_hop" in plots:
            out += ["", f"![Local hop]({plots['local_hop']})"]
    else:
        out.append(f"Not measured: {d.get('local_hop', {}).get('error', 'not run')}")
    out.append("")
    benches: List[Tuple[str, str, str, Optional[Dict[str, Any]], Callable[[Dict[str, Any]], str]]] = [
        ("producer", "Producer benchmark", "one process, async throughput and sync round trip", producer,
         producer_section),
        ("consumer", "Consumer benchmark", "one process reading from the beginning", cdata, consumer_section),
    ]
    for key, title, what, data, section in benches:
        num += 1
        out += [f"## {num}. {title} ({what})", ""]
        if data:
            out.append(section(data))
            if key in plots:
                out += ["", f"![{title}]({plots[key]})"]
        else:
            out.append(f"Not run (docs/benchmarks/{key}.json missing).")
        out.append("")
    out += ["## Not measured, and caveats", ""]
    out += caveats(d, producer)
    out += ["", "## Data", "",
            "- `docs/benchmarks/sidecar.json`: every run of scenarios 1–5 (bench/sidecar_bench.py)",
            "- `docs/benchmarks/producer.json`: every run of the producer benchmark (bench/produce_bench.py)",
            "- `docs/benchmarks/consumer.json`: every run of the consumer benchmark (bench/consume_bench.py)",
            "- plots: " + ", ".join(f"`{v}`" for v in plots.values()) + " (paths relative to this file)",
            "- how the benchmarks work: bench/README.md", ""]
    return "\n".join(out)


def caveats(d: Dict[str, Any], producer: Optional[Dict[str, Any]]) -> List[str]:
    out = [
        "- Two CPUs run the broker, the daemons and all clients: the fan-in and throughput numbers are CPU-bound "
        "and include the broker's share; on a real deployment the broker is elsewhere.",
        "- Loopback only: no network latency, which flatters the in-process clients' connection setup "
        "(each of their processes pays a TCP handshake, ApiVersions and Metadata round trips per broker).",
        "- Broker connections of the short-lived processes are counted by the broker (JMX); ss sampling would "
        "miss connections that live a few milliseconds. The fan-in peak is from ss samples, which can miss a "
        "short peak between samples; the JMX count of connections opened backs it up.",
        "- RSS sums count shared pages (the Python interpreter, libraries) once per process, as max RSS does; "
        "PSS would be lower for both sides alike.",
        "- kafkad's CPU in a run is read from /proc in 10 ms clock ticks.",
    ]
    kv = d["meta"].get("versions", {}).get("kafkad", "")
    if "dirty" in kv:
        out.append(f"- kafkad was built from a working tree with uncommitted changes ({kv}): other work in "
                   "progress on the machine; the commit named is the base.")
    out.append("- Not compared: kafka-python in the short-lived and fan-in scenarios (its cold start is in "
               "scenario 1), other languages' clients, TLS/SASL (loopback plaintext only), and PSS instead of RSS.")
    errs = d["meta"].get("errors") or []
    for e in errs:
        out.append(f"- A scenario failed in this run: {e}")
    if not d["meta"].get("jmx"):
        out.append("- The broker had no JMX in this run: broker connections opened were not counted.")
    sl = _by(d.get("short_lived", {}).get("summary", []))
    for r in sl.values():
        if r["processes"] < 500:
            out.append(f"- short-lived {r['kind']}: {r['processes']} processes, scaled to 500.")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--no-plots", action="store_true")
    o = ap.parse_args(argv)
    data = Path(o.data)
    side_p, prod_p = data / "sidecar.json", data / "producer.json"
    if not side_p.exists():
        print(f"report: {side_p} missing (run make bench)", file=sys.stderr)
        return 1
    d = json.loads(side_p.read_text())
    producer = json.loads(prod_p.read_text()) if prod_p.exists() else None
    cons_p = data / "consumer.json"
    cdata = json.loads(cons_p.read_text()) if cons_p.exists() else None
    out = Path(o.out)
    rel = data.relative_to(out.parent) if data.is_relative_to(out.parent) else data
    plots: Dict[str, str] = {}
    if not o.no_plots:
        jobs = []
        if "cold_start" in d and "error" not in d["cold_start"]:
            jobs.append(("cold_start", "cold_start.png", lambda p: plot_cold_start(d, p)))
        if "short_lived" in d and "error" not in d["short_lived"]:
            jobs.append(("short_lived", "short_lived.png", lambda p: plot_short_lived(d, p)))
        if "fan_in" in d and "error" not in d["fan_in"]:
            jobs.append(("fan_in", "fan_in.png", lambda p: plot_fan_in(d, p)))
        if "local_hop" in d and "error" not in d["local_hop"]:
            jobs.append(("local_hop", "local_hop.png", lambda p: plot_local_hop(d, p)))
        if producer:
            import produce_bench

            jobs.append(("producer", "producer.png", lambda p: produce_bench.chart(
                p, producer["scenario_a"]["summary"], producer["scenario_b"]["summary"],
                f"kafkad producer benchmark {producer['meta']['started']}")))
        if cdata:
            import consume_bench

            jobs.append(("consumer", "consumer.png", lambda p: consume_bench.chart(
                p, cdata["summary"], f"kafkad consumer benchmark {cdata['meta']['started']}")))
        for key, name, fn in jobs:
            try:
                fn(data / name)
                plots[key] = f"{rel}/{name}"
            except Exception as e:  # the tables matter more than the pictures
                print(f"report: plot {name} failed: {e!r}", file=sys.stderr)
    out.write_text(render_doc(d, producer, plots, cdata))
    print(f"report: wrote {out}" + (f" and {len(plots)} plots in {data}" if plots else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
