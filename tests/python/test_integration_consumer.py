"""Daemon-held consumers (SPEC 4.8-4.15) through the Python stub, against the
real Kafka broker: simple and group mode, leases over several connections
and processes, rebalances across daemons and with a confluent-kafka member,
at-least-once after a kill -9, declared consumers across a daemon restart,
and bad input.  Test data is produced through kafkad (ack="wait").

The worker processes are this file run as a script (``python FILE worker
ARGS``): they print one JSON line per event / message / commit.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

if __name__ != "__main__":
    import pytest

    import confluent_kafka

    from kafkad import Client
    from kafkad import errors as E
    from kafkad.consumer import OFFSET_INVALID, Consumer

    pytestmark = pytest.mark.integration

# librdkafka group timings for quick rebalances (the cluster section's
# properties reach the daemon's consumers; its producer ignores them)
GROUP_PROPS = "heartbeat.interval.ms = 300\nsession.timeout.ms = 6000\nmessage.timeout.ms = 10000\n"

WAIT = 60.0  # upper bound for anything that must eventually happen (never asserted on)


# --------------------------------------------------------------------- helpers


def produce(sock: str, topic: str, n: int, partitions: int, prefix: str = "v", start: int = 0) -> List[Tuple[int, bytes]]:
    """n messages, round-robin over the partitions, keys/headers on some;
    returns [(partition, value)] in order."""
    out = []
    msgs = []
    for i in range(start, start + n):
        p = i % partitions
        v = f"{prefix}-{i}".encode()
        m: Dict[str, Any] = {"value": v, "partition": p}
        if i % 3 == 0:
            m["key"] = f"k{i}".encode()
        if i % 5 == 0:
            m["headers"] = [("h", f"{i}".encode()), ("empty", None)]
        msgs.append(m)
        out.append((p, v))
    with Client(sock) as c:
        res = c.produce_batch(topic, msgs, ack="wait", timeout=60)
        assert not res.errors, res.errors[:3]
    return out


def drain(con: Consumer, want: int, timeout: float = WAIT, max: int = 100) -> List[Any]:
    """Consume until `want` messages arrived (or timeout: the caller asserts)."""
    got: List[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got.extend(con.consume(max, timeout=0.5))
    return got


def settle(cons: List[Consumer], nparts: int, topic: str, timeout: float = WAIT) -> List[Set[int]]:
    """Drive consumers (no messages expected) until their partitions of
    `topic` are disjoint, each non-empty, and cover all `nparts`."""
    deadline = time.monotonic() + timeout
    while True:
        for c in cons:
            got = c.consume(100, timeout=0.2)
            assert not got, f"unexpected messages while settling: {got[:3]}"
        sets = [{p for t, p in c.assignment if t == topic} for c in cons]
        union: Set[int] = set().union(*sets)
        if all(sets) and sum(map(len, sets)) == nparts and union == set(range(nparts)):
            return sets
        assert time.monotonic() < deadline, f"assignments never settled: {sets}"


class Worker:
    """A consuming process (this file as a script) reporting JSON lines."""

    def __init__(self, sock: str, **kw: Any) -> None:
        args = dict(kw, socket=sock)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "worker", json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: List[Dict[str, Any]] = []
        self.cond = threading.Condition()
        self.assignment: Set[int] = set()
        self.messages: List[Tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.committed: Dict[int, int] = {}
        self.ready = False
        self.err = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            d = json.loads(raw)
            with self.cond:
                self.lines.append(d)
                k = d["k"]
                if k == "ready":
                    self.ready = True
                elif k == "ev" and d["type"] == "assigned":
                    self.assignment.add(d["partition"])
                elif k == "ev" and d["type"] == "revoked":
                    self.assignment.discard(d["partition"])
                elif k == "msg":
                    self.messages.append((d["p"], d["o"], d["v"].encode()))
                elif k == "committed":
                    for _t, p, o in d["offsets"]:
                        self.committed[p] = o
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.err = self.proc.stderr.read()

    def wait(self, pred: Any, what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                if self.proc.poll() is not None:
                    time.sleep(0.2)
                    raise AssertionError(f"worker exited ({self.proc.returncode}) waiting for {what}: {self.err.decode()[-3000:]}")
                left = deadline - time.monotonic()
                assert left > 0, f"worker: no {what} within {timeout}s; last lines {self.lines[-5:]}"
                self.cond.wait(min(left, 0.5))

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.send("stop")
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
            assert rc == 0, self.err.decode()[-3000:]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def worker_main(args: Dict[str, Any]) -> None:
    """Consume and report; commands on stdin: stop, nocommit."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "client-stubs" / "python"))
    from kafkad import Client as C

    out_lock = threading.Lock()

    def emit(**d: Any) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(d) + "\n")
            sys.stdout.flush()

    cmds: "queue.Queue[str]" = queue.Queue()

    def stdin_reader() -> None:
        for line in sys.stdin:
            cmds.put(line.strip())
        cmds.put("stop")

    threading.Thread(target=stdin_reader, daemon=True).start()
    client = C(args["socket"])
    con = client.consumer(
        args["topic"],
        mode=args.get("mode", "group"),
        group=args.get("group"),
        auto_offset_reset="earliest",
        fetch_max=args.get("fetch_max", 1000),
        on_event=lambda e: emit(k="ev", type=e.type, topic=e.topic, partition=e.partition, offset=e.offset),
    )
    emit(k="ready", handle=con.handle, key=con.key)
    commit = args.get("commit", True)
    commit_limit = args.get("commit_limit")  # stop committing after this many committed messages
    batch = args.get("batch", 50)
    pause = args.get("pause", 0.0)
    n_committed = 0
    while True:
        try:
            cmd = cmds.get_nowait()
        except queue.Empty:
            cmd = ""
        if cmd == "stop":
            break
        if cmd == "nocommit":
            commit = False
        msgs = con.consume(batch, timeout=0.2)
        for m in msgs:
            emit(k="msg", p=m.partition, o=m.offset, v=m.value.decode())
        if msgs and commit:
            if commit_limit is not None and n_committed >= commit_limit:
                commit = False
            else:
                try:
                    offs = con.commit()
                except E.KafkadError as e:  # a rebalance in between: the next commit covers it
                    emit(k="commit_error", error=str(e))
                else:
                    n_committed += len(msgs)
                    emit(k="committed", offsets=[list(x) for x in offs])
        if msgs and pause:
            time.sleep(pause)
    con.close()
    client.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "client-stubs" / "python"))
        from kafkad import errors as E  # noqa: F811

        worker_main(json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit("usage: test_integration_consumer.py worker JSON")


# ---------------------------------------------------------- simple consumers


def test_simple_consumer_all_partitions_fields_and_eof(kafka_cluster, daemon):
    topic = kafka_cluster.new_topic("csimple", partitions=4)
    sent = produce(daemon.socket, topic, 200, 4)
    with Client(daemon.socket) as c:
        with c.consumer(topic, auto_offset_reset="earliest") as con:
            assert con.handle > 0 and con.attached == 1 and con.key.startswith("main/simple//" + topic)
            got = drain(con, 200)
            # nothing more arrives: each message exactly once
            assert con.consume(100, timeout=0.5) == []
            assert sorted(m.value for m in got) == sorted(v for _p, v in sent)
            assert con.assignment == {(topic, p) for p in range(4)}
            evs = list(con.events)
            assert {(e.type, e.partition) for e in evs if e.type == "assigned"} == {("assigned", p) for p in range(4)}
            by_value = {m.value: m for m in got}
            now_ms = int(time.time() * 1000)
            for i, (p, v) in enumerate(sent):
                m = by_value[v]
                assert m.topic == topic and m.partition == p
                assert m.key == (f"k{i}".encode() if i % 3 == 0 else None)
                assert m.headers == ([["h", f"{i}".encode()], ["empty", None]] if i % 5 == 0 else None)
                assert 0 < m.timestamp <= now_ms + 60000
            for p in range(4):
                offs = [m.offset for m in got if m.partition == p]
                assert offs == list(range(50)), f"partition {p}: per-partition order and offsets"
            # end of partition events (eventually, after everything was read)
            deadline = time.monotonic() + WAIT
            while {e.partition for e in con.events if e.type == "eof"} != set(range(4)):
                assert time.monotonic() < deadline, f"no eof for every partition: {list(con.events)}"
                assert con.consume(10, timeout=0.3) == []
            eof = {e.partition: e.offset for e in con.events if e.type == "eof"}
            assert eof == {p: 50 for p in range(4)}
            assert [c.watermarks(topic, p) for p in range(4)] == [(0, 50)] * 4
            assert con.watermarks(topic, 1) == (0, 50)
            # a partition the topic lacks, and a topic that does not exist
            with pytest.raises(E.KafkaError) as ei:
                c.watermarks(topic, 9)
            assert ei.value.name == "_UNKNOWN_PARTITION", ei.value
            missing = "no-such-topic-" + uuid.uuid4().hex[:8]
            with pytest.raises(E.KafkaError) as ei:
                c.watermarks(missing, 0)
            assert ei.value.name == "UNKNOWN_TOPIC_OR_PART" and ei.value.code == 10003, ei.value
            assert missing not in c.metadata().topics, "asking must not create the topic"


def test_simple_explicit_partitions_split(kafka_cluster, daemon):
    topic = kafka_cluster.new_topic("cparts", partitions=4)
    sent = produce(daemon.socket, topic, 120, 4)
    with Client(daemon.socket) as c1, Client(daemon.socket) as c2:
        a = c1.consumer(topic, partitions=[0, 2], auto_offset_reset="earliest")
        b = c2.consumer(topic, partitions=[1, 3], auto_offset_reset="earliest")
        ga, gb = drain(a, 60), drain(b, 60)
        assert a.consume(100, timeout=0.3) == [] and b.consume(100, timeout=0.3) == []
        assert {m.partition for m in ga} == {0, 2} and {m.partition for m in gb} == {1, 3}
        assert sorted(m.value for m in ga + gb) == sorted(v for _p, v in sent)
        assert a.assignment == {(topic, 0), (topic, 2)} and b.assignment == {(topic, 1), (topic, 3)}
        # explicit start offsets, and poll() one by one from the local batch
        with c1.consumer(topic, partitions=[3], offsets={3: 25}) as d:
            first = d.poll(WAIT)
            assert first is not None and (first.partition, first.offset) == (3, 25)
            rest = [d.poll(WAIT) for _ in range(4)]
            assert [m.offset for m in rest if m is not None] == [26, 27, 28, 29]


def test_group_offsets_resume_after_close_with_auto_commit(kafka_cluster, daemon):
    topic = kafka_cluster.new_topic("cresume", partitions=3)
    group = "g-" + uuid.uuid4().hex[:8]
    sent = produce(daemon.socket, topic, 90, 3)
    with Client(daemon.socket) as c:
        con = c.consumer(topic, group=group, auto_offset_reset="earliest", auto_commit_interval_ms=100)
        first = []
        while len(first) < 40:
            first.extend(con.consume(40 - len(first), timeout=WAIT))
        positions = con.positions()
        assert positions == {(topic, p): max(m.offset for m in first if m.partition == p) + 1
                             for p in {m.partition for m in first}}
        con.close()  # commits what was consumed (auto-commit), then detaches
        with c.consumer(topic, group=group, auto_offset_reset="earliest") as con2:
            committed = con2.committed()
            assert {tp: o for tp, o in committed.items() if o != OFFSET_INVALID} == positions
            rest = drain(con2, 50)
            assert con2.consume(100, timeout=0.5) == []
            # continues right after the committed offsets: no gap, no repeat
            assert sorted(m.value for m in first + rest) == sorted(v for _p, v in sent)
            for (t, p), off in positions.items():
                assert [m.offset for m in rest if m.partition == p] == list(range(off, 30))
            # manual commit of everything consumed, and explicit offsets
            assert sorted(con2.commit()) == [(topic, p, 30) for p in sorted({m.partition for m in rest})]
            assert con2.commit() == []  # nothing new
            assert con2.commit({(topic, 0): 7}) == [(topic, 0, 7)]
            assert con2.committed([(topic, 0)]) == {(topic, 0): 7}


def test_reset_earliest_latest_and_reset_on_start(kafka_cluster, daemon):
    topic = kafka_cluster.new_topic("creset", partitions=2)
    group = "g-" + uuid.uuid4().hex[:8]
    old = produce(daemon.socket, topic, 20, 2, prefix="old")
    with Client(daemon.socket) as c:
        # latest: only what is produced once the consumer is at the end
        with c.consumer(topic, group=group, auto_offset_reset="latest") as con:
            deadline = time.monotonic() + WAIT
            while {e.partition for e in con.events if e.type == "eof"} != {0, 1}:
                assert time.monotonic() < deadline, f"no eof at the end: {list(con.events)}"
                assert con.consume(10, timeout=0.3) == []
            new = produce(daemon.socket, topic, 10, 2, prefix="new")
            got = drain(con, 10)
            assert sorted(m.value for m in got) == sorted(v for _p, v in new)
            assert sorted(con.commit()) == [(topic, 0, 15), (topic, 1, 15)]
        # a committed group resumes there, whatever auto_offset_reset says
        with c.consumer(topic, group=group, auto_offset_reset="earliest") as con:
            assert con.consume(100, timeout=1.0) == []
        # reset_offset_on_start: back to earliest despite the commits
        with c.consumer(topic, group=group, auto_offset_reset="earliest", reset_offset_on_start=True) as con:
            got = drain(con, 30)
            assert sorted(m.value for m in got) == sorted(v for _p, v in old + new)
        # earliest without a group; seek back and to the end
        with c.consumer(topic, auto_offset_reset="earliest") as con:
            got = drain(con, 30)
            assert len(got) == 30
            con.seek({(topic, 0): 3, (topic, 1): -2})
            again = drain(con, 12 + 15)
            assert sorted((m.partition, m.offset) for m in again) == [(0, o) for o in range(3, 15)] + [(1, o) for o in range(15)]
            con.seek([(topic, 0, -1), (topic, 1, -1)])
            assert con.consume(100, timeout=0.5) == []


def test_consume_timeouts_and_idle_consumer(kafka_cluster, daemon):
    topic = kafka_cluster.new_topic("cidle", partitions=1)
    with Client(daemon.socket) as c:
        with c.consumer(topic, auto_offset_reset="earliest") as con:
            # nothing there: every flavour of waiting returns empty-handed
            assert con.consume(10, timeout=0.3) == []
            assert con.poll(0.2) is None
            assert con.poll(0) is None
            assert con.consume(10, timeout=0) == []
            assert con.wait_assignment(WAIT) == {(topic, 0)}
            sent = produce(daemon.socket, topic, 3, 1)
            got = [con.poll(WAIT) for _ in range(3)]
            assert [m.value for m in got if m is not None] == [v for _p, v in sent]
            assert con.poll(0.3) is None


# ----------------------------------------------------------------- group mode


def test_group_two_processes_one_daemon_split_without_overlap(kafka_cluster, daemon_factory):
    d = daemon_factory(extra=GROUP_PROPS)
    topic = kafka_cluster.new_topic("cgproc", partitions=4)
    group = "g-" + uuid.uuid4().hex[:8]
    a = Worker(d.socket, topic=topic, group=group)
    try:
        a.wait(lambda: a.assignment == {0, 1, 2, 3}, "all partitions for the first process")
        b = Worker(d.socket, topic=topic, group=group)
        try:
            a.wait(lambda: b.ready and len(a.assignment) == 2 and len(b.assignment) == 2 and not a.assignment & b.assignment,
                   "the leases split over both processes")
            assert a.lines[0]["key"] == b.lines[0]["key"] == f"main/group/{group}/{topic}"
            sent = produce(d.socket, topic, 400, 4)
            a.wait(lambda: len(a.messages) + len(b.messages) >= 400, "all messages")
            time.sleep(1.0)  # let any duplicate show up
            va = [v for _p, _o, v in a.messages]
            vb = [v for _p, _o, v in b.messages]
            assert sorted(va + vb) == sorted(v for _p, v in sent), "every message exactly once"
            assert {p for p, _o, _v in a.messages} == a.assignment
            assert {p for p, _o, _v in b.messages} == b.assignment
        finally:
            b.stop()
    finally:
        a.stop()


def test_group_two_daemons_rebalance_on_stop_and_return(kafka_cluster, daemon_factory):
    topic = kafka_cluster.new_topic("cg2d", partitions=4)
    group = "g-" + uuid.uuid4().hex[:8]
    d1 = daemon_factory(extra=GROUP_PROPS)
    d2 = daemon_factory(extra=GROUP_PROPS)
    c1, c2 = Client(d1.socket), Client(d2.socket)
    k1 = c1.consumer(topic, mode="group", group=group, auto_offset_reset="earliest")
    k2 = c2.consumer(topic, mode="group", group=group, auto_offset_reset="earliest")
    s1, s2 = settle([k1, k2], 4, topic)
    assert s1 | s2 == {0, 1, 2, 3} and not s1 & s2

    def collect(cons: List[Consumer], want: Set[bytes]) -> Dict[bytes, int]:
        seen: Dict[bytes, int] = {}
        deadline = time.monotonic() + WAIT
        while not want <= set(seen):
            assert time.monotonic() < deadline, f"missing {len(want - set(seen))} messages"
            for k in cons:
                for m in k.consume(200, timeout=0.2):
                    seen[m.value] = seen.get(m.value, 0) + 1
                try:
                    k.commit()
                except (E.NotAssigned, E.KafkaError):
                    pass  # a rebalance in between; at-least-once covers it
        return seen

    batch1 = {v for _p, v in produce(d1.socket, topic, 100, 4, prefix="b1")}
    assert set(collect([k1, k2], batch1)) >= batch1

    # one host goes away: its partitions move to the other daemon
    c2.close()
    assert d2.stop() == 0
    deadline = time.monotonic() + WAIT
    while {p for t, p in k1.assignment if t == topic} != {0, 1, 2, 3}:
        assert time.monotonic() < deadline, f"daemon 1 never got every partition: {k1.assignment}"
        assert not [m for m in k1.consume(100, timeout=0.3) if m.value not in batch1]
    batch2 = {v for _p, v in produce(d1.socket, topic, 100, 4, prefix="b2")}
    seen = collect([k1], batch2)
    assert set(seen) >= batch2

    # it comes back: the partitions are split again
    d2.start()
    c2 = Client(d2.socket)
    k2 = c2.consumer(topic, mode="group", group=group, auto_offset_reset="earliest")
    deadline = time.monotonic() + WAIT
    while True:
        for k in (k1, k2):
            for m in k.consume(100, timeout=0.2):
                assert m.value in batch1 | batch2  # only redeliveries of uncommitted ones
        s1 = {p for t, p in k1.assignment if t == topic}
        s2 = {p for t, p in k2.assignment if t == topic}
        if s1 and s2 and not s1 & s2 and s1 | s2 == {0, 1, 2, 3}:
            break
        assert time.monotonic() < deadline, f"no split after the return: {s1} {s2}"
    batch3 = {v for _p, v in produce(d1.socket, topic, 100, 4, prefix="b3")}
    seen = collect([k1, k2], batch3)
    assert set(seen) >= batch3
    k1.close()
    k2.close()
    c1.close()
    c2.close()


def test_group_consumer_close_by_last_user_leaves_the_group_at_once(kafka_cluster, daemon_factory):
    topic = kafka_cluster.new_topic("cgleave", partitions=2)
    group = "g-" + uuid.uuid4().hex[:8]
    d1 = daemon_factory(extra=GROUP_PROPS)
    d2 = daemon_factory(extra=GROUP_PROPS + "[daemon]\nconsumer_linger_ms = 600000\n")
    with Client(d1.socket) as c1, Client(d2.socket) as c2:
        k1 = c1.consumer(topic, mode="group", group=group)
        k2 = c2.consumer(topic, mode="group", group=group)
        settle([k1, k2], 2, topic)
        k2.close()  # its last user: the daemon leaves the group despite the long linger
        deadline = time.monotonic() + WAIT
        while k1.assignment != {(topic, 0), (topic, 1)}:
            assert time.monotonic() < deadline, f"daemon 1 never got both partitions: {k1.assignment}"
            assert k1.consume(10, timeout=0.3) == []
        k1.close()


def test_group_shared_with_confluent_kafka_member(kafka_cluster, daemon_factory):
    d = daemon_factory(extra=GROUP_PROPS)
    topic = kafka_cluster.new_topic("cgck", partitions=4)
    group = "g-" + uuid.uuid4().hex[:8]
    c = Client(d.socket)
    k = c.consumer(topic, mode="group", group=group, auto_offset_reset="earliest", assignor="range")

    ck_msgs: List[Tuple[int, int, bytes]] = []
    ck_assign: Set[int] = set()
    stop = threading.Event()
    errors: List[Any] = []

    def run_ck() -> None:
        cons = confluent_kafka.Consumer({
            "bootstrap.servers": kafka_cluster.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "range",
            "heartbeat.interval.ms": 300,
            "session.timeout.ms": 6000,
        })

        def on_assign(_c: Any, parts: Any) -> None:
            ck_assign.clear()
            ck_assign.update(p.partition for p in parts)

        def on_revoke(_c: Any, parts: Any) -> None:
            ck_assign.difference_update(p.partition for p in parts)

        cons.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        try:
            while not stop.is_set():
                m = cons.poll(0.1)
                if m is None:
                    continue
                if m.error():
                    errors.append(m.error())
                    continue
                ck_msgs.append((m.partition(), m.offset(), m.value()))
                cons.commit(m, asynchronous=False)
        finally:
            cons.close()

    t = threading.Thread(target=run_ck, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + WAIT
        while True:
            assert not k.consume(100, timeout=0.2)
            mine = {p for tp, p in k.assignment if tp == topic}
            if mine and ck_assign and not mine & ck_assign and mine | ck_assign == {0, 1, 2, 3}:
                break
            assert time.monotonic() < deadline, f"no stable split: kafkad {mine} confluent {ck_assign}"
        sent = produce(d.socket, topic, 400, 4)
        got: List[Any] = []
        deadline = time.monotonic() + WAIT
        while len(got) + len(ck_msgs) < 400:
            assert time.monotonic() < deadline, f"{len(got)} + {len(ck_msgs)} of 400"
            got.extend(k.consume(200, timeout=0.2))
            k.commit()
        time.sleep(1.0)  # any duplicate would show up now
        got.extend(k.consume(200, timeout=0.5))
        values = [m.value for m in got] + [v for _p, _o, v in ck_msgs]
        assert sorted(values) == sorted(v for _p, v in sent), "exactly once: no overlap, no gap"
        assert {m.partition for m in got} == mine
        assert {p for p, _o, _v in ck_msgs} == ck_assign
        assert not errors
    finally:
        stop.set()
        t.join(30)
        k.close()
        c.close()


# -------------------------------------------------------------- at-least-once


def test_kill9_before_commit_redelivers_uncommitted_to_other_process(kafka_cluster, daemon_factory):
    d = daemon_factory(extra=GROUP_PROPS)
    topic = kafka_cluster.new_topic("ckill", partitions=2)
    group = "g-" + uuid.uuid4().hex[:8]
    # A commits its first 30 messages, then keeps consuming without committing
    a = Worker(d.socket, topic=topic, group=group, batch=10, commit_limit=30, pause=0.05)
    a.wait(lambda: a.assignment == {0, 1}, "both partitions for A")
    b = Worker(d.socket, topic=topic, group=group, batch=10)
    a.wait(lambda: b.ready and len(a.assignment) == 1 and len(b.assignment) == 1, "one partition each")
    pa = next(iter(a.assignment))
    sent = produce(d.socket, topic, 400, 2)
    a.wait(lambda: len(a.committed) == 1 and len([m for m in a.messages if m[1] >= a.committed.get(pa, 10**9)]) >= 40,
           "A consuming beyond its last commit")
    with a.cond:
        a_committed = a.committed[pa]
    a.kill9()
    a_msgs = list(a.messages)
    uncommitted = {v for p, o, v in a_msgs if o >= a_committed}
    assert uncommitted, "A had uncommitted messages"
    try:
        b.wait(lambda: {v for _p, _o, v in b.messages} | {v for _p, _o, v in a_msgs} >= {v for _p, v in sent},
               "every message delivered to B or A")
        b.wait(lambda: pa in b.assignment, "A's partition leased to B")
        got_b = {v for _p, _o, v in b.messages}
        # every uncommitted message of A came again to B ...
        assert uncommitted <= got_b
        # ... B started A's partition exactly at A's commit: duplicates only from the window
        b_on_pa = [o for p, o, _v in b.messages if p == pa]
        assert min(b_on_pa) == a_committed
        dups = {v for _p, _o, v in a_msgs} & got_b
        assert dups <= uncommitted
        # B's own partition was never redelivered
        pb = 1 - pa
        b_pb = [o for p, o, _v in b.messages if p == pb]
        assert sorted(b_pb) == sorted(set(b_pb)) == list(range(200))
    finally:
        b.stop()


def test_dropped_connection_rewinds_for_the_next_attach_within_linger(kafka_cluster, daemon):
    """The only attached connection goes away without committing or closing:
    the daemon keeps the consumer for consumer_linger_ms and a connection
    attaching meanwhile continues from the last commit."""
    topic = kafka_cluster.new_topic("clinger", partitions=2)
    group = "g-" + uuid.uuid4().hex[:8]
    sent = produce(daemon.socket, topic, 100, 2)
    c1 = Client(daemon.socket)
    con = c1.consumer(topic, group=group, auto_offset_reset="earliest")
    first = con.consume(20, timeout=WAIT)
    done = dict(((t, p), o) for t, p, o in con.commit())
    later = drain(con, 30, max=30)  # consumed, never committed
    assert later
    c1.close()  # no consumer_close: the daemon sees the connection drop
    with Client(daemon.socket) as c2:
        with c2.consumer(topic, group=group, auto_offset_reset="earliest") as again:
            assert again.attached == 1
            rest = drain(again, 100 - len(first))
            assert again.consume(100, timeout=0.5) == []
            assert sorted(m.value for m in first + rest) == sorted(v for _p, v in sent)
            for p in range(2):
                assert min(m.offset for m in rest if m.partition == p) == done.get((topic, p), 0)
            assert {m.value for m in later} <= {m.value for m in rest}


# ------------------------------------------------------- declared consumers


def test_declared_consumer_resumes_after_daemon_restart(kafka_cluster, daemon_factory):
    topic = kafka_cluster.new_topic("cdecl", partitions=3)
    group = "g-" + uuid.uuid4().hex[:8]
    d = daemon_factory(extra=GROUP_PROPS + f"[consumer audit]\ngroup = {group}\ntopics = {topic}\n"
                       "auto_offset_reset = earliest\n")
    sent = produce(d.socket, topic, 90, 3)
    with Client(d.socket) as c:
        con = c.consumer(topic, mode="group", group=group)
        assert con.key == f"main/group/{group}/{topic}" and con.attached == 1
        first: List[Any] = []
        deadline = time.monotonic() + WAIT
        while len(first) < 50:
            assert time.monotonic() < deadline
            first.extend(con.consume(50 - len(first), timeout=0.5))
        committed = dict(((t, p), o) for t, p, o in con.commit())
        con.close()  # the declared consumer stays in its group
        # attach again while the daemon still holds it: same place
        con = c.consumer(topic, mode="group", group=group)
        now = con.committed([tp for tp in committed])
        assert now == committed
        con.close()
    assert d.stop() == 0
    d.start()
    with Client(d.socket) as c:
        with c.consumer(topic, mode="group", group=group) as con:
            rest = drain(con, 40)
            assert con.consume(100, timeout=0.5) == []
            assert sorted(m.value for m in first + rest) == sorted(v for _p, v in sent)
            for (t, p), off in committed.items():
                assert [m.offset for m in rest if m.partition == p] == list(range(off, 30))


# ------------------------------------------------------------------ bad input


def test_bad_input_gives_clear_errors_and_connection_stays_usable(kafka_cluster, daemon):
    topic = kafka_cluster.new_topic("cbad", partitions=2)
    with Client(daemon.socket) as c, Client(daemon.socket) as other:
        con = c.consumer(topic, group="g-" + uuid.uuid4().hex[:8])
        h = con.handle

        def bad(exc: Any, op: str, args: Dict[str, Any], client: Client = c) -> Any:
            with pytest.raises(exc) as ei:
                client.call(op, args)
            assert client.ping() >= 0  # still usable
            return ei.value

        e = bad(E.UnknownHandle, "consume", {"handle": 987654321})
        assert e.code == 13 and "987654321" in e.message
        bad(E.UnknownHandle, "commit", {"handle": 987654321})
        bad(E.UnknownHandle, "seek", {"handle": 987654321, "offsets": [[topic, 0, 0]]})
        bad(E.InvalidArgument, "consume", {})
        e = bad(E.NotOwner, "consume", {"handle": h}, client=other)
        assert e.code == 14
        bad(E.NotOwner, "commit", {"handle": h}, client=other)
        bad(E.NotOwner, "consumer_close", {"handle": h}, client=other)
        # unknown topic (the test broker does not auto-create)
        with pytest.raises(E.KafkaError) as ei:
            c.consumer("no-such-topic-" + uuid.uuid4().hex[:8])
        assert ei.value.name == "UNKNOWN_TOPIC_OR_PART" and ei.value.code == 10003
        # invalid offsets and arguments
        bad(E.InvalidArgument, "commit", {"handle": h, "offsets": [[topic, 0, -5]]})
        bad(E.InvalidArgument, "seek", {"handle": h, "offsets": [[topic, 0, -3]]})
        bad(E.InvalidArgument, "seek", {"handle": h, "offsets": [[topic, 0]]})
        bad(E.InvalidArgument, "consumer_open", {"topic": topic, "offsets": [[0, -7]]})
        bad(E.InvalidArgument, "consumer_open", {"topic": topic, "mode": "group"})
        bad(E.InvalidArgument, "consumer_open", {"topic": topic, "auto_offset_reset": "sideways"})
        e = bad(E.InvalidArgument, "consumer_open", {"topic": topic, "mode": "zookeeper", "group": "g"})
        assert "zookeeper_connect" in e.message
        e = bad(E.InvalidArgument, "consumer_open", {"topic": topic, "mode": "group", "group": "g",
                                                     "zookeeper_connect": "127.0.0.1:1"})
        assert "zookeeper_connect" in e.message
        with pytest.raises(E.KafkaError):
            c.consumer(topic, partitions=[7])
        e = bad(E.NotAssigned, "seek", {"handle": h, "offsets": [[topic, 9, 0]]})
        assert e.code == 15
        with pytest.raises(E.NotAssigned):
            con.seek({(topic, 9): 0})
        with pytest.raises(E.NotAssigned):
            con.commit({(topic, 9): 1})
        with pytest.raises(E.InvalidState):
            c.consumer(topic).commit({(topic, 0): 1})  # no group to commit to
        # a second consume while the stub's prefetch waits at the daemon
        assert con.consume(10, timeout=0.3) == []
        bad(E.InvalidState, "consume", {"handle": h, "timeout_ms": 0})
        # after consumer_close the handle is gone
        con.close()
        bad(E.UnknownHandle, "consume", {"handle": h})
        bad(E.UnknownHandle, "consumer_close", {"handle": h})
        with pytest.raises(E.UnknownHandle):
            con.consume(1, timeout=0)
        with pytest.raises(E.UnknownHandle):
            con.commit()
        # and the connection still works for a new consumer
        produce(daemon.socket, topic, 4, 2)
        with c.consumer(topic, auto_offset_reset="earliest") as ok:
            assert len(drain(ok, 4)) == 4


# ------------------------------------------------------------ daemon limits


def test_consume_result_never_exceeds_max_frame(kafka_cluster, daemon_factory):
    """SPEC 1: no frame in either direction exceeds max_frame.  A consume
    result's size is bounded by `max` messages and `max_bytes` of payload,
    but each message also costs ~17+ bytes of framing: many small (here
    empty) messages must still come in results that fit max_frame."""
    d = daemon_factory(extra="[daemon]\nmax_frame = 262144\n")
    topic = kafka_cluster.new_topic("cframe", partitions=4)
    with Client(d.socket) as c:
        assert c.hello.max_frame == 262144
        for _ in range(4):
            res = c.produce_batch(topic, [{"value": b"", "partition": p} for p in range(4) for _ in range(2500)],
                                  ack="wait", timeout=60)
            assert not res.errors
        h = c.call("consumer_open", {"topic": topic, "auto_offset_reset": "earliest"})["handle"]
        time.sleep(2.0)  # let the daemon buffer what it fetched (up to 8192 per partition)
        got = 0
        deadline = time.monotonic() + WAIT
        while got < 40000:
            assert time.monotonic() < deadline, f"{got} of 40000"
            res = c.call("consume", {"handle": h, "max": 100000, "max_bytes": 1, "timeout_ms": 1000})
            got += len(res["messages"])
        assert c.ping() >= 0


def test_eof_is_reported_once_the_buffered_messages_are_taken(kafka_cluster, daemon):
    """SPEC 4.10: "eof" when the connection has read to the end of a
    partition.  The daemon learns the end from librdkafka while it may
    still buffer messages of the partition; the event must come once those
    are handed out, not be lost."""
    topic = kafka_cluster.new_topic("ceof", partitions=1)
    produce(daemon.socket, topic, 100, 1)
    with Client(daemon.socket) as c:
        h = c.call("consumer_open", {"topic": topic, "auto_offset_reset": "earliest"})["handle"]
        time.sleep(2.0)  # everything fetched (and the end seen) before anything is taken
        got = 0
        events: List[Dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(e["type"] == "eof" for e in events):
            res = c.call("consume", {"handle": h, "max": 1000, "timeout_ms": 500})
            got += len(res["messages"])
            events += res["events"]
        assert got == 100
        assert [(e["partition"], e["offset"]) for e in events if e["type"] == "eof"] == [(0, 100)]


def vanish_mid_open(sock: str, args: Dict[str, Any], op: str = "consumer_open") -> None:
    """Sends consumer_open (or op) on a fresh connection and closes it at
    once, before the answer (the request runs on the daemon's thread pool)."""
    import socket as _socket

    import msgpack

    payload = msgpack.packb([1, op, args], use_bin_type=True)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(len(payload).to_bytes(4, "big") + payload)
    s.close()


def test_client_vanishing_mid_consumer_open_leaves_nothing_behind(kafka_cluster, daemon_factory):
    """Connections that send consumer_open and go away before the answer:
    the consumer prepared for them off the loop is dropped (or, if it was
    attached first, closed as its last user left); the daemon serves on,
    lists none of them, and exits cleanly (the ASan run checks for leaks)."""
    d = daemon_factory(extra=GROUP_PROPS + "[daemon]\nconsumer_linger_ms = 0\n")
    topic = kafka_cluster.new_topic("cvanish", partitions=2)
    groups = [f"vanish-{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
    for i, g in enumerate(groups):
        vanish_mid_open(d.socket, {"topic": topic, "mode": "group" if i % 2 else "simple", "group": g})
    with Client(d.socket) as c:
        assert c.ping() >= 0

        def leftovers() -> List[str]:
            return [e["consumer"] for e in c.stats()["consumers"] if any(g in e["consumer"] for g in groups)]

        deadline = time.monotonic() + WAIT
        while leftovers():
            assert time.monotonic() < deadline, f"consumers of vanished connections still open: {leftovers()}"
            time.sleep(0.1)
        # the daemon still opens and serves consumers
        with c.consumer(topic, group=groups[0], auto_offset_reset="earliest") as con:
            assert con.consume(10, timeout=0.2) == []
    assert d.stop() == 0


def test_offsets_for_times_matches_confluent_kafka_and_seeks_to_a_time(kafka_cluster, daemon):
    """offsets_for_times (SPEC 4.16) answers what confluent-kafka's
    Consumer.offsets_for_times answers on the same partitions, and a seek
    there reads from that point in time on."""
    import datetime as dt

    topic = kafka_cluster.new_topic("ctimes", partitions=2)
    base = int(time.time() * 1000) - 600_000
    # partition p, i-th record: stamped base + 1000 * i (+ p), so there are gaps to land in
    with Client(daemon.socket) as c:
        res = c.produce_batch(topic, [{"value": b"t%d-%d" % (p, i), "partition": p, "timestamp": base + 1000 * i + p}
                                      for i in range(10) for p in range(2)], ack="wait")
        assert not res.errors, res
        asks = {(topic, 0): base + 3000,            # exactly record 3
                (topic, 1): base + 4500}            # between records 4 and 5 -> 5
        got = c.offsets_for_times(asks)
        assert got == {(topic, 0): 3, (topic, 1): 5}, got
        late = c.offsets_for_times([(topic, 0, base + 99_000), (topic, 1, -2)])
        assert late == {(topic, 0): -1, (topic, 1): 0}, late
        # datetime, naive = UTC (PyKafka's convention), and aware
        when = dt.datetime.fromtimestamp((base + 7000) / 1000, dt.timezone.utc)
        assert c.offsets_for_times({(topic, 0): when, (topic, 1): when.replace(tzinfo=None)}) == \
            {(topic, 0): 7, (topic, 1): 7}

        ck = confluent_kafka.Consumer({"bootstrap.servers": kafka_cluster.bootstrap, "group.id": "ck-times"})
        try:
            for ts in (base - 5000, base, base + 1, base + 4500, base + 9001, base + 99_000):
                theirs = ck.offsets_for_times([confluent_kafka.TopicPartition(topic, p, ts) for p in range(2)], 30)
                ours = c.offsets_for_times([(topic, p, ts) for p in range(2)])
                assert ours == {(tp.topic, tp.partition): tp.offset for tp in theirs}, (ts, ours, theirs)
        finally:
            ck.close()

        # seek a consumer to a point in time
        with c.consumer(topic, auto_offset_reset="earliest") as con:
            drain(con, 20)
            con.seek([(t, p, o) for (t, p), o in c.offsets_for_times([(topic, p, base + 8000) for p in range(2)]).items()])
            again = drain(con, 4)
            assert sorted((m.partition, m.offset) for m in again) == [(0, 8), (0, 9), (1, 8), (1, 9)]
            assert all(m.timestamp >= base + 8000 for m in again)

        with pytest.raises(E.KafkaError) as ei:
            c.offsets_for_times([("no-such-topic-" + uuid.uuid4().hex[:8], 0, base)], timeout=3)
        assert ei.value.name == "UNKNOWN_TOPIC_OR_PART", ei.value
        with pytest.raises(E.KafkaError) as ei:
            c.offsets_for_times([(topic, 7, base)], timeout=3)
        assert ei.value.name in ("_UNKNOWN_PARTITION", "UNKNOWN_TOPIC_OR_PART"), ei.value
        with pytest.raises(E.InvalidArgument):
            c.offsets_for_times([(topic, 0, "yesterday")])
        # the connection stays usable after the errors
        assert c.offsets_for_times([(topic, 1, base)]) == {(topic, 1): 0}


def backlog(c: Client, topic: str, total: int, size: int = 200) -> None:
    """total messages of size bytes, produced in requests of 50k (a frame's worth)."""
    for i in range(0, total, 50_000):
        res = c.produce_batch(topic, [b"x" * size] * min(50_000, total - i), ack="wait", timeout=120)
        assert not res.errors, res.errors[:3]


def test_memory_a_consumer_buffered_goes_back_to_the_system_after_it_closed(kafka_cluster, daemon_factory):
    """librdkafka allocates fetched messages in its threads' malloc arenas;
    the daemon frees them on its loop, and glibc kept those pages resident:
    after reading a backlog the daemon stayed at its peak. Now it trims
    after a consumer closed (and every 30 s): most of the growth goes back."""
    kd = daemon_factory()
    topic = kafka_cluster.new_topic("cmem", partitions=4)
    total = 400_000
    with Client(kd.socket) as c:
        backlog(c, topic, total)

        def mem() -> Dict[str, int]:
            return c.stats()["daemon"]

        base = mem()["rss_bytes"]
        got = 0
        deadline = time.monotonic() + 2 * WAIT
        with c.consumer(topic, auto_offset_reset="earliest") as con:
            # read slowly at first, so that the daemon holds much of the backlog at once
            while mem()["rss_bytes"] < base + (60 << 20) and time.monotonic() < deadline:
                got += len(con.consume(10, timeout=0.2))
            while got < total:
                got += len(con.consume(10_000, timeout=1.0))
                assert time.monotonic() < deadline, f"consumed {got} of {total}"
            trims = mem()["memory_trims"]
        assert got == total
        peak = mem()["rss_peak_bytes"]
        assert peak - base > (60 << 20), (base, peak)  # the backlog was held
        deadline = time.monotonic() + WAIT
        while mem()["memory_trims"] <= trims:  # the trim that follows the close
            assert time.monotonic() < deadline, f"no trim after the consumer closed: {mem()}"
            time.sleep(0.1)
        if _sanitizer_allocator():
            return  # ASan's allocator keeps its own quarantine: malloc_trim gives nothing back there
        while mem()["rss_bytes"] - base > (peak - base) / 2:
            assert time.monotonic() < deadline, f"rss stayed near the peak {peak} (base {base}): {mem()}"
            time.sleep(0.2)


def _sanitizer_allocator() -> bool:
    """Whether the daemon under test is built with AddressSanitizer (whose
    allocator replaces glibc's)."""
    from conftest import kafkad_bin

    return b"__asan_init" in Path(kafkad_bin()).read_bytes()


def test_fetching_ahead_stops_at_consumer_buffer_bytes_and_loses_nothing(kafka_cluster, daemon_factory):
    """A reader that does not keep up: the daemon fetches ahead only up to
    consumer_buffer_bytes (each partition pauses past its share; without the
    budget it held the whole 100 MB backlog), and once the reader catches
    up every message arrives exactly once, in order."""
    budget = 8 << 20
    kd = daemon_factory(extra=f"[daemon]\nconsumer_buffer_bytes = {budget}\n")
    topic = kafka_cluster.new_topic("cbudget", partitions=4)
    total = 200_000
    with Client(kd.socket) as c:
        backlog(c, topic, total)

        def held() -> Dict[str, Any]:
            return next(e for e in c.stats()["consumers"] if topic in e["consumer"])

        with c.consumer(topic, auto_offset_reset="earliest") as con:
            got = con.consume(1, timeout=WAIT)
            assert len(got) == 1
            seen = []
            for _ in range(30):  # watch the buffer for 3 s while nobody reads
                seen.append(held()["buffered_bytes"])
                time.sleep(0.1)
            assert max(seen) > budget / 2, seen               # it did fetch ahead ...
            assert max(seen) < budget + (32 << 20), seen      # ... but not the 100 MB backlog
            assert held()["buffered"] < total // 2, held()
            deadline = time.monotonic() + 2 * WAIT
            while len(got) < total:
                got.extend(con.consume(10_000, timeout=1.0))
                assert time.monotonic() < deadline, f"consumed {len(got)} of {total}"
            assert con.consume(100, timeout=0.5) == []
        offsets: Dict[int, List[int]] = {p: [] for p in range(4)}
        for m in got:
            offsets[m.partition].append(m.offset)
        for p, offs in offsets.items():   # every offset once, in order, up to the partition's end
            assert offs == list(range(c.watermarks(topic, p)[1])), f"partition {p}: {len(offs)} messages"
    assert len(got) == total


def test_offsets_for_times_with_the_broker_down_and_a_vanished_client(kafka_cluster, daemon_factory):
    """A broker that cannot be reached: a clear, retriable Kafka error within
    the caller's timeout. Clients that go away while their lookup waits on
    the pool: the daemon drops the answers, serves on and exits cleanly (the
    ASan run checks for leaks)."""
    from kafka_check import closed_port

    down = daemon_factory(bootstrap=f"127.0.0.1:{closed_port()}")
    with Client(down.socket) as c:
        t0 = time.monotonic()
        with pytest.raises(E.KafkaError) as ei:
            c.offsets_for_times([("any-topic", 0, 0)], timeout=1.0)
        assert ei.value.retriable and ei.value.name in ("_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN"), ei.value
        assert time.monotonic() - t0 < WAIT
        for i in range(4):
            vanish_mid_open(down.socket, {"timestamps": [["any-topic", i, 0]], "timeout_ms": 500},
                            op="offsets_for_times")
        assert c.ping() >= 0
    topic = kafka_cluster.new_topic("ctimesv", partitions=2)
    up = daemon_factory()
    for i in range(4):
        vanish_mid_open(up.socket, {"timestamps": [[topic, i % 2, 0]]}, op="offsets_for_times")
    with Client(up.socket) as c:
        assert c.offsets_for_times([(topic, 0, -1), (topic, 1, -2)]) == {(topic, 0): 0, (topic, 1): 0}
    assert down.stop() == 0 and up.stop() == 0

