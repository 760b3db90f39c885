"""Error paths against the real broker: per-message Kafka errors, request
errors, raw-socket protocol abuse (plain socket + msgpack, not the stub),
a client SIGKILLed with its reports unread, and 1000 concurrent
connections."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest

from kafka_check import Raw, check_records, read_all, wait_until
from kafkad import Client, KafkaError
from kafkad.errors import InvalidArgument, UnknownCluster, error_from_map

pytestmark = pytest.mark.integration

FAST = "message.timeout.ms = 4000\n"
STUB = str(Path(__file__).resolve().parents[2] / "client-stubs" / "python")
UNKNOWN_TOPIC = ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC")


@pytest.fixture
def kd(daemon_factory):
    return daemon_factory(extra=FAST)


def _stats(sock):
    with Raw(sock) as r:
        err, res = r.call("stats")
        assert err is None, err
        return res["daemon"]


# --- per-message Kafka errors -------------------------------------------------

def _missing_topic_outcomes(d, topic):
    """Produce to a missing topic in wait mode (single and batch) and report
    mode, all pipelined on one connection; returns the 5 errors."""
    with Raw(d.socket, timeout=30) as r:
        w1 = r.request("produce", {"topic": topic, "ack": "wait", "value": b"to nowhere"})
        w2 = r.request("produce", {"topic": topic, "ack": "wait", "messages": [b"m1", b"m2", {"value": b"m3"}]})
        rp = r.request("produce", {"topic": topic, "value": b"reported"})
        fl = r.request("flush", {"timeout_ms": 20000})
        got = {}
        while len(got) < 4:
            resp = r.recv()
            got[resp[0]] = resp
        assert all(resp[1] is None for resp in got.values()), got   # no request error: per-message outcomes
        assert got[fl][2] == {"remaining": 0}
        results = got[w1][2]["results"] + got[w2][2]["results"]
        assert len(results) == 4
        for part, off, err in results:
            assert err is not None and off == -1, results
        err, res = r.call("poll_reports")
        assert err is None
        runs = got[rp][2]["reports"] + res["reports"]
        assert len(runs) == 1 and runs[0][:2] == [got[rp][2]["seq"], 1], runs
        assert runs[0][2] == -1 and runs[0][3] == -1 and runs[0][4] is not None, runs
        # the daemon's metadata says so too
        err, md = r.call("metadata", {"topics": [topic]})
        assert err is None and md["topics"][0]["error"]["name"] == "UNKNOWN_TOPIC_OR_PART", md
    return [error_from_map(x[2]) for x in results] + [error_from_map(runs[0][4])]


def test_missing_topic_is_a_clear_per_message_error(kafka_cluster, daemon_factory):
    """With the test config (message.timeout.ms = 4000) and kafkad's own
    defaults otherwise, a message to a topic that does not exist (auto-create
    is off on the test broker) must fail as an unknown topic, not as a
    generic _MSG_TIMED_OUT."""
    d = daemon_factory(extra=FAST)
    errs = _missing_topic_outcomes(d, "missing-topic-%d" % os.getpid())
    for e in errs:
        assert isinstance(e, KafkaError)
        assert e.name in UNKNOWN_TOPIC, (
            f"unknown topic reported as {e.name} ({e.message}): kafkad's default "
            f"topic.metadata.propagation.max.ms (5000) is not below message.timeout.ms (4000)")
    assert kafka_cluster.metadata()  # the broker is fine; the topic just does not exist


def test_missing_topic_with_short_propagation(kafka_cluster, daemon_factory):
    d = daemon_factory(extra=FAST + "topic.metadata.propagation.max.ms = 1000\n")
    errs = _missing_topic_outcomes(d, "missing-topic-p-%d" % os.getpid())
    for e in errs:
        assert isinstance(e, KafkaError) and e.name in UNKNOWN_TOPIC, e
        assert e.code == 10000 + e.kafka_code and e.kafka_code in (3, -188)
        assert e.retriable is False
    st = _stats(d.socket)
    assert st["delivery_failed"] == 5 and st["delivered"] == 0, st


def test_unknown_cluster(kd):
    with Client(kd.socket, cluster="no-such-cluster") as c:
        with pytest.raises(UnknownCluster) as ei:
            c.produce("sometopic", b"x", ack="wait")
        assert ei.value.code == 5 and ei.value.name == "UNKNOWN_CLUSTER"
        assert "no-such-cluster" in ei.value.message
        with pytest.raises(UnknownCluster):
            c.metadata()
        # report mode: the rejected request gives every message an error report
        seq = c.produce("sometopic", b"y")
        c.flush(5)
        reps = c.poll_reports()
        assert [(r.seq, type(r.error)) for r in reps] == [(seq, UnknownCluster)]
    with Raw(kd.socket) as r:
        r.expect_error("stats", {"cluster": "nope"}, "UNKNOWN_CLUSTER")
        r.expect_error("metadata", {"cluster": "nope"}, "UNKNOWN_CLUSTER")
        r.expect_error("produce", {"cluster": "nope", "topic": "t", "value": b"v"}, "UNKNOWN_CLUSTER")
    assert _stats(kd.socket)["produced"] == 0


@pytest.mark.parametrize("name", ["bad topic", "a" * 250, "", "slash/topic", "t\u00fcmlaut", "new\nline", "x:y"])
def test_invalid_topic_name(kd, name):
    with Client(kd.socket) as c:
        with pytest.raises(InvalidArgument) as ei:
            c.produce(name, b"x", ack="wait")
        assert "topic" in ei.value.message
        assert c.ping() >= 0
    assert _stats(kd.socket)["produced"] == 0


# --- raw-socket protocol cases --------------------------------------------------

def _assert_bad_frame_then_eof(r):
    resp = r.recv()
    assert isinstance(resp, list) and len(resp) == 3, resp
    assert resp[0] is None and resp[2] is None, resp
    assert resp[1]["code"] == 1 and resp[1]["name"] == "BAD_FRAME", resp
    assert r.recv_eof(), "connection not closed after BAD_FRAME"


def test_raw_protocol_abuse(kafka_cluster, kd):
    sock = kd.socket
    with Raw(sock) as r:
        err, hello = r.call("hello", {"version": 1, "client": "abuse-test"})
        assert err is None
        max_frame, max_batch = hello["max_frame"], hello["max_batch"]

    # garbage bytes: an HTTP request read as a length prefix is far too long
    with Raw(sock) as r:
        r.send_bytes(b"GET / HTTP/1.1\r\nHost: kafkad\r\n\r\n")
        _assert_bad_frame_then_eof(r)
    # oversize and zero length
    for n in (max_frame + 1, 0xFFFFFFFF, 0):
        with Raw(sock) as r:
            r.send_bytes(n.to_bytes(4, "big") + b"\x90")
            _assert_bad_frame_then_eof(r)
    # non-msgpack payloads / more or less than exactly one value
    for payload in (b"\xc1", b"\xc1\xc1\xc1\xc1", b"\x93\x01", b"\x01\x02", b"\x93\x01\xa4ping\xc0\xc0",
                    b"\xda\xff\xff"):
        with Raw(sock) as r:
            r.send_payload(payload)
            _assert_bad_frame_then_eof(r)
    # valid frames first, then a bad one: the good ones are answered first
    with Raw(sock) as r:
        r.request("ping", None, rid=1)
        r.send_payload(b"\xc1")
        assert r.recv() == [1, None, {}]
        _assert_bad_frame_then_eof(r)
    # a truncated frame, then close: discarded, nothing happens
    with Raw(sock) as r:
        payload = msgpack.packb([1, "produce", {"topic": "t", "value": b"x" * 100}])
        r.send_bytes(len(payload).to_bytes(4, "big") + payload[:20])
    with Raw(sock) as r:
        r.send_bytes(b"\x00\x00")          # half a length prefix

    with Raw(sock) as r:
        # wrong envelopes -> BAD_REQUEST (id when readable), connection stays usable
        cases = [
            (42, None), ("ping", None), ({"id": 1, "op": "ping"}, None), ([], None),
            ([1, "ping"], (1, None)), ([1, "ping", {}, 4], (1, None)), ([-1, "ping", {}], None),
            (["1", "ping", {}], None), ([1.5, "ping", {}], None), ([None, "ping", {}], None),
            ([5, 7, {}], 5), ([5, b"ping", {}], 5), ([5, None, {}], 5),
            ([6, "ping", "args"], 6), ([6, "ping", [1, 2]], 6), ([6, "ping", 3], 6),
        ]
        for env, want_id in cases:
            r.send_obj(env)
            resp = r.recv()
            assert isinstance(resp, list) and len(resp) == 3, (env, resp)
            rid, err, res = resp
            assert err is not None and err["name"] == "BAD_REQUEST" and err["code"] == 2, (env, resp)
            assert res is None
            allowed = want_id if isinstance(want_id, tuple) else (want_id,)
            assert rid in allowed, f"{env!r}: BAD_REQUEST with id {rid!r}, expected {want_id!r}"
            assert r.call("ping") == (None, {}), f"connection unusable after {env!r}"
        # nil args mean {}; unknown args keys are ignored
        assert r.call("ping", None) == (None, {})
        assert r.call("ping", {"unknown": [1, {"x": b"y"}]}) == (None, {})
        # huge request ids (any uint64) are echoed
        for rid in (0, 2**32 + 5, 2**64 - 1):
            assert r.request("ping", {}, rid=rid) == rid
            assert r.recv() == [rid, None, {}]
        # unknown ops
        for op in ("nope", "PING", "ping ", "", "produce\x00", "consume_everything"):
            r.expect_error(op, {}, "UNKNOWN_OP")
            assert r.call("ping") == (None, {})
        # hello asking for version 0
        r.expect_error("hello", {"version": 0}, "UNSUPPORTED_VERSION")

    topic = kafka_cluster.new_topic("abuse", partitions=2)
    # wrong argument types for every op -> INVALID_ARGUMENT naming the field
    bad_args = [
        ("hello", {"version": "1"}, "version"),
        ("hello", {"version": 1.0}, "version"),
        ("hello", {"version": 1, "client": 5}, "client"),
        ("metadata", {"cluster": 5}, "cluster"),
        ("metadata", {"topics": "t"}, "topics"),
        ("metadata", {"topics": [topic, 5]}, "topics"),
        ("metadata", {"timeout_ms": "soon"}, "timeout_ms"),
        ("metadata", {"timeout_ms": -1}, "timeout_ms"),
        ("produce", {"value": b"v"}, "topic"),                       # missing topic
        ("produce", {"topic": None, "value": b"v"}, "topic"),
        ("produce", {"topic": 5, "value": b"v"}, "topic"),
        ("produce", {"topic": [topic], "value": b"v"}, "topic"),
        ("produce", {"topic": topic, "cluster": 5, "value": b"v"}, "cluster"),
        ("produce", {"topic": topic, "ack": 1, "value": b"v"}, "ack"),
        ("produce", {"topic": topic, "ack": "all", "value": b"v"}, "ack"),
        ("produce", {"topic": topic, "partitioner": 2, "value": b"v"}, "partitioner"),
        ("produce", {"topic": topic, "partitioner": "sha256", "value": b"v"}, "partitioner"),
        ("produce", {"topic": topic, "value": 5}, "value"),
        ("produce", {"topic": topic, "value": [b"v"]}, "value"),
        ("produce", {"topic": topic, "value": b"v", "key": 5}, "key"),
        ("produce", {"topic": topic, "value": b"v", "timestamp": "now"}, "timestamp"),
        ("produce", {"topic": topic, "value": b"v", "timestamp": -5}, "timestamp"),
        ("produce", {"topic": topic, "value": b"v", "partition": "0"}, "partition"),
        ("produce", {"topic": topic, "value": b"v", "partition": -2}, "partition"),
        ("produce", {"topic": topic, "value": b"v", "headers": "h"}, "headers"),
        ("produce", {"topic": topic, "value": b"v", "headers": [["a"]]}, "headers"),
        ("produce", {"topic": topic, "value": b"v", "headers": [[5, b"x"]]}, "headers"),
        ("produce", {"topic": topic, "value": b"v", "headers": [["a", 5]]}, "headers"),
        ("produce", {"topic": topic, "value": b"v", "headers": {"a": b"x"}}, "headers"),
        ("produce", {"topic": topic, "messages": b"v"}, "messages"),
        ("produce", {"topic": topic, "messages": [b"ok", 5]}, "messages[1]"),
        ("produce", {"topic": topic, "messages": [b"ok", None]}, "messages[1]"),
        ("produce", {"topic": topic, "messages": [{"value": 5}]}, "messages[0].value"),
        ("produce", {"topic": topic, "messages": [b"ok", {"value": b"v", "key": 1}]}, "messages[1].key"),
        ("produce", {"topic": topic, "messages": [{"value": b"v", "partition": 1.5}]}, "messages[0].partition"),
        ("produce", {"topic": topic, "messages": [{"value": b"v", "headers": [["h", 1]]}]}, "messages[0].headers"),
        ("poll_reports", {"max": "all"}, "max"),
        ("poll_reports", {"max": -1}, "max"),
        ("poll_reports", {"timeout_ms": "x"}, "timeout_ms"),
        ("poll_reports", {"timeout_ms": -1}, "timeout_ms"),
        ("flush", {"timeout_ms": "x"}, "timeout_ms"),
        ("flush", {"timeout_ms": -1}, "timeout_ms"),
        ("stats", {"cluster": 5}, "cluster"),
        ("stats", {"cluster": ["main"]}, "cluster"),
    ]
    failures = []
    with Raw(sock) as r:
        for op, args, field in bad_args:
            err, res = r.call(op, args)
            if err is None or err.get("name") != "INVALID_ARGUMENT" or field not in err.get("message", ""):
                failures.append(f"{op} {args!r}: expected INVALID_ARGUMENT naming {field!r}, got {err or res!r}")
            assert r.call("ping") == (None, {}), f"connection unusable after {op} {args!r}"

        # a batch longer than max_batch -> TOO_LARGE, nothing enqueued
        big = [b""] * (max_batch + 1)
        r.expect_error("produce", {"topic": topic, "messages": big, "ack": "wait"}, "TOO_LARGE")
        r.expect_error("produce", {"topic": topic, "messages": big, "ack": "none"}, "TOO_LARGE")
        # exactly max_batch is fine
        err, res = r.call("produce", {"topic": topic, "messages": [b"edge"] * max_batch, "ack": "none"})
        assert err is None and res == {"count": max_batch}, err

        # two concurrent poll_reports -> INVALID_STATE for the second
        p1 = r.request("poll_reports", {"timeout_ms": 20000})
        p2 = r.request("poll_reports", {"timeout_ms": 0})
        resp = r.recv()
        assert resp[0] == p2 and resp[1]["name"] == "INVALID_STATE" and resp[1]["code"] == 8, resp
        # the same for flush: park one (a message is still in flight), the second is refused
        pr = r.request("produce", {"topic": topic, "value": b"wake the poll", "partition": 0})
        f1 = r.request("flush", {"timeout_ms": 20000})
        f2 = r.request("flush", {"timeout_ms": 20000})
        got = {}
        while len(got) < 4:
            resp = r.recv()
            got[resp[0]] = resp
        assert set(got) == {p1, pr, f1, f2}, got
        assert got[f2][1]["name"] == "INVALID_STATE", got[f2]
        assert got[pr][1] is None and got[pr][2]["count"] == 1
        assert got[f1][1] is None and got[f1][2] == {"remaining": 0}, got[f1]
        # the parked poll was answered by the report (from poll or piggybacked on produce)
        runs = got[p1][2]["reports"] + got[pr][2]["reports"]
        assert got[p1][1] is None and len(runs) == 1 and runs[0][1] == 1 and runs[0][2] == 0, got
        seq = got[pr][2]["seq"]
        assert runs[0][0] == seq and runs[0][4] is None

    # the daemon survived all of it; a separate, fresh client works
    assert kd.alive()
    with Client(kd.socket) as c:
        md = c.produce(topic, b"after the abuse", b"k", ack="wait")
        st = c.stats()["daemon"]
    assert st["bad_frames"] >= 11, st
    assert st["errors"] >= len(bad_args) + 20, st
    assert st["produced"] == max_batch + 2, st            # nothing of the rejected requests
    recs = read_all(kafka_cluster.bootstrap, topic, expect=max_batch + 2)
    want = {b"after the abuse": (b"k", md.partition, md.offset), b"wake the poll": (None, 0, runs[0][3])}
    for rec in recs:
        if rec.value in want:
            assert (rec.key, rec.partition, rec.offset) == want.pop(rec.value), rec
        else:
            assert rec.value == b"edge" and rec.key is None
    assert not want
    assert not failures, "\n".join(failures)      # checked last: the rest ran regardless


# --- a client killed with its reports unread -----------------------------------

KILLED_CLIENT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {stub!r})
    from kafkad import Client
    n = {n}
    c = Client({sock!r}, background=False, batch_messages=n, batch_bytes=1 << 30)
    res = c.produce_batch({topic!r}, [b"orphan-%06d" % i for i in range(n)])
    assert res.count == n and c.in_flight == n
    print("sent", res.seq, flush=True)
    time.sleep(120)
""")


def test_killed_client_messages_are_still_delivered(kafka_cluster, kd):
    topic = kafka_cluster.new_topic("orphans", partitions=4)
    n = 50000
    code = KILLED_CLIENT.format(stub=STUB, n=n, sock=kd.socket, topic=topic)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line.startswith(b"sent 1"), (line, proc.stderr.read() if proc.poll() is not None else b"")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    st = wait_until(lambda: (lambda s: s if s["orphan_delivered"] + s["orphan_failed"] >= n else None)(
        _stats(kd.socket)), 30, "the orphaned messages' outcomes")
    assert st["orphan_delivered"] == n and st["orphan_failed"] == 0, st
    assert st["produced"] == n and st["delivered"] == n, st
    check_records(read_all(kafka_cluster.bootstrap, topic, expect=n), [{"value": b"orphan-%06d" % i} for i in range(n)])
    wait_until(lambda: _stats(kd.socket)["connections"] == 1, 10, "the killed connection to be gone")


# --- 1000 concurrent connections ---------------------------------------------

def test_1000_concurrent_connections(kafka_cluster, kd):
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want, "cannot raise RLIMIT_NOFILE for 1000 sockets"
    topic = kafka_cluster.new_topic("conns", partitions=4)
    conns = []
    try:
        for i in range(n):
            conns.append(Raw(kd.socket, timeout=30))
        # pipelined hello + ping on every connection, then the answers
        for i, r in enumerate(conns):
            r.send_bytes(b"".join(
                len(p).to_bytes(4, "big") + p for p in (
                    msgpack.packb([1, "hello", {"version": 1, "client": "conn-%d" % i}]),
                    msgpack.packb([2, "ping", None]))))
        for r in conns:
            a, b = r.recv(), r.recv()
            assert sorted([a[0], b[0]]) == [1, 2] and a[1] is None and b[1] is None, (a, b)
            hello = a[2] if a[0] == 1 else b[2]
            assert hello["version"] == 1
        err, st = conns[0].call("stats")
        assert err is None
        assert st["daemon"]["connections"] == n, st["daemon"]
        assert st["daemon"]["connections_total"] >= n
        # one produce on each of a sample of them
        sample = list(range(0, n, 37))
        sent = []
        for i in sample:
            conns[i].request("produce", {"topic": topic, "ack": "wait", "key": b"conn-%d" % i,
                                         "value": b"from connection %d" % i}, rid=3)
        for i in sample:
            resp = conns[i].recv()
            assert resp[0] == 3 and resp[1] is None, resp
            part, off, perr = resp[2]["results"][0]
            assert perr is None
            sent.append({"value": b"from connection %d" % i, "key": b"conn-%d" % i, "partition": part, "offset": off})
        # every connection is still served
        for r in conns:
            assert r.call("ping") == (None, {})
    finally:
        for r in conns:
            r.close()
    check_records(read_all(kafka_cluster.bootstrap, topic, expect=len(sent)), sent)
    wait_until(lambda: _stats(kd.socket)["connections"] == 1, 20, "the 1000 connections to be closed")
    assert kd.alive()
