"""Protocol-level conformance: raw frames (plain socket + msgpack, no stub)
for every op and every error code of protocol/ops.json, pipelining, and
64-bit request ids.

The tables and checks live in protocol_suite.py (OP_CASES, ERROR_CASES,
NOT_EMITTED); this module provides the environment and parametrizes over
them.  To check another implementation: set KAFKAD_PROTOCOL_SOCKET to its
socket (it must have a cluster on $KAFKAD_TEST_BOOTSTRAP), and/or replace
protocol_suite.make_request with another encoder (e.g. from a pytest
plugin: ``pytest -p myhook`` where myhook.py assigns
``protocol_suite.make_request``); the cases that need a daemon in a special
configuration (max_connections, SIGTERM, unreachable broker) start
$KAFKAD_BIN.

Known failure: test_error[INTERNAL-max_connections] -- the daemon refuses a
connection over max_connections with retriable=true, but SPEC.md section 3
marks only TIMED_OUT and SHUTTING_DOWN retriable (and daemon/errors.c says
false for INTERNAL).
"""
from __future__ import annotations

import random
import time
from typing import Any, Dict, Iterator, List

import pytest
from confluent_kafka import Producer

import protocol_suite as ps
from kafka_check import closed_port

pytestmark = pytest.mark.integration

EXTERNAL_SOCKET = ps.SOCKET_PATH   # from KAFKAD_PROTOCOL_SOCKET, read at import
U64_MAX = 2**64 - 1


# ------------------------------------------------------------- environment

def _prefill(bootstrap: str, topic: str) -> List[Dict[str, Any]]:
    """3 messages per partition written by an independent client (not the
    daemon under test): keys, headers (one with a nil value), a nil value,
    explicit timestamps (recent ones: the broker's time-based retention of
    7 days would delete older messages while the suite runs)."""
    want: List[Dict[str, Any]] = []
    base = int(time.time() * 1000) - 60000
    for p in range(4):
        for i in range(3):
            n = p * 3 + i
            want.append({
                "partition": p,
                "key": None if i == 1 else b"key-%d" % n,
                "value": None if (p, i) == (3, 2) else b"value-%d" % n,
                "headers": [("h", b"%d" % n), ("nil", None)] if i == 0 else [],
                "timestamp": base + n,
            })
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True})
    delivered: Dict[int, Any] = {}

    def cb(idx: int) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            delivered[idx] = (err, msg.partition(), msg.offset())
        return on_delivery

    for idx, m in enumerate(want):
        prod.produce(topic, value=m["value"], key=m["key"], partition=m["partition"],
                     headers=m["headers"] or None, timestamp=m["timestamp"], on_delivery=cb(idx))
        prod.flush(30)   # one at a time: offsets 0, 1, 2 per partition in order
    assert prod.flush(30) == 0
    for idx, m in enumerate(want):
        err, part, off = delivered[idx]
        assert err is None and part == m["partition"], delivered[idx]
        m["offset"] = off
    assert sorted((m["partition"], m["offset"]) for m in want) == [(p, i) for p in range(4) for i in range(3)]
    return want


@pytest.fixture(scope="module")
def suite_topics(kafka_cluster) -> Dict[str, Any]:
    topic = kafka_cluster.new_topic("proto-read", partitions=4)
    return {
        "topic": topic,
        "prefill": _prefill(kafka_cluster.bootstrap, topic),
        "produce_topic": kafka_cluster.new_topic("proto-write", partitions=4),
    }


def _accepting(path: str) -> str:
    """The fixture's daemon is "started" once its socket file exists, but
    kafkad creates the file (bind) before it listens: until then a connect
    is refused.  Wait for a connection that is served."""
    def attempt() -> bool:
        try:
            ps.connect_and_ping(path).close()
            return True
        except ConnectionRefusedError:
            return False
    ps.wait_for(attempt, f"{path} to accept connections")
    return path


@pytest.fixture
def env(kafka_cluster, daemon_factory, suite_topics) -> Iterator[ps.Env]:
    ps.SOCKET_PATH = EXTERNAL_SOCKET or _accepting(daemon_factory(extra="message.timeout.ms = 20000\n").socket)

    def start_daemon(extra: str = "", bootstrap: Any = None) -> ps.DaemonHandle:
        d = daemon_factory(extra=extra, bootstrap=bootstrap)
        _accepting(d.socket)
        return ps.DaemonHandle(socket=d.socket, signal=d.proc.send_signal)

    yield ps.Env(
        topic=suite_topics["topic"], partitions=4, prefill=suite_topics["prefill"],
        produce_topic=suite_topics["produce_topic"],
        start_daemon=start_daemon,
        unreachable_bootstrap=lambda: "127.0.0.1:%d" % closed_port(),
    )
    ps.SOCKET_PATH = EXTERNAL_SOCKET


# ------------------------------------------------------- the tables' coverage

def test_tables_cover_every_op_and_error_code():
    """Every op of ops.json has a case; every daemon error code has a
    trigger or is listed in NOT_EMITTED (never both); SPEC.md section 3
    and ops.json agree on codes and names."""
    ops_with_case = {c.op for c in ps.OP_CASES}
    assert ops_with_case == set(ps.OPS), (
        f"ops without a case: {sorted(set(ps.OPS) - ops_with_case)}; "
        f"cases for unknown ops: {sorted(ops_with_case - set(ps.OPS))}")
    assert len({c.id for c in ps.OP_CASES}) == len(ps.OP_CASES)
    assert len({c.id for c in ps.ERROR_CASES}) == len(ps.ERROR_CASES)
    triggered = {c.name for c in ps.ERROR_CASES if c.name in ps.ERRORS}
    for name in ps.ERRORS:
        assert (name in triggered) != (name in ps.NOT_EMITTED), (
            f"{name}: must have a trigger in ERROR_CASES xor be listed in NOT_EMITTED")
    for c in ps.ERROR_CASES:
        if c.name not in ps.ERRORS:   # a Kafka error: name(s) from librdkafka, retriable given
            assert c.retriable is not None, c.id
            assert all(n in ps.KAFKA_NAMES for n in c.name.split("|")), c.id
    assert any(c.name not in ps.ERRORS for c in ps.ERROR_CASES), "no Kafka error case"
    assert {n: code for n, (code, _r) in ps.SPEC_ERRORS.items()} == ps.ERRORS, "SPEC.md section 3 != ops.json errors"
    assert {n for n, (_c, r) in ps.SPEC_ERRORS.items() if r} == {"TIMED_OUT", "SHUTTING_DOWN"}


@pytest.mark.parametrize("name", sorted(ps.NOT_EMITTED))
def test_error_code_not_emitted_by_this_daemon(name):
    """A code of ops.json this daemon never sends: stated explicitly, with
    the reason, instead of a trigger (see NOT_EMITTED)."""
    assert name in ps.ERRORS
    assert ps.NOT_EMITTED[name].startswith("not emitted by this daemon"), ps.NOT_EMITTED[name]
    assert all(c.name != name for c in ps.ERROR_CASES)


# ---------------------------------------------------------------- every op

@pytest.mark.parametrize("case", ps.OP_CASES, ids=[c.id for c in ps.OP_CASES])
def test_op(env, case):
    ps.run_op_case(case, env)


# -------------------------------------------------------- every error code

@pytest.mark.parametrize("case", ps.ERROR_CASES, ids=[c.id for c in ps.ERROR_CASES])
def test_error(env, case):
    ps.run_error_case(case, env)


# -------------------------------------------------------------- pipelining

def test_pipelined_50_mixed_requests(env):
    """50 mixed requests in one write, nothing read in between; then 50
    responses, matched by id (any order), each exactly once, each of the
    right kind.  Produce requests keep their send order."""
    reqs = ps.pipeline_requests(env, 50)
    rng = random.Random(20240517)
    id_set = {U64_MAX}
    while len(id_set) < len(reqs):
        id_set.add(rng.randrange(1, U64_MAX))
    ids = sorted(id_set)
    rng.shuffle(ids)
    with ps.Conn(env.socket) as c:
        blob = b"".join(c.frame(op, args, rid)[1] for rid, (op, args, _chk) in zip(ids, reqs))
        c.send_bytes(blob)
        got: Dict[int, list] = {}
        order = []
        for _ in reqs:
            resp = c.recv()
            assert resp[0] in ids, f"response to an id never sent: {resp!r}"
            assert resp[0] not in got, f"two responses for id {resp[0]}"
            got[resp[0]] = resp
            order.append(resp[0])
        failures = []
        for rid, (op, args, chk) in zip(ids, reqs):
            try:
                chk(got[rid][1], got[rid][2])
            except AssertionError as e:
                failures.append(f"{op} {ps.short(args)} (id {rid}): {e}")
        assert not failures, "\n".join(failures)
        # order of execution: report/wait produce requests to partition 0 in send order
        runs: List[list] = []
        for rid, (op, args, _chk) in zip(ids, reqs):
            res = got[rid][2]
            if got[rid][1] is None and isinstance(res, dict) and "reports" in res:
                runs += res["reports"]
        final = c.ok("poll_reports", {"timeout_ms": 0})
        assert final["pending"] == 0, final
        by_seq = ps.runs_by_seq(runs + final["reports"])
        offsets, seqs = [], []
        for rid, (op, args, _chk) in zip(ids, reqs):
            res = got[rid][2]
            if op != "produce" or got[rid][1] is not None:
                continue
            if "results" in res:
                offsets.append(res["results"][0][1])
            elif "seq" in res:
                seqs.append(res["seq"])
                part, off, err = by_seq[res["seq"]]
                assert err is None and part == 0, by_seq[res["seq"]]
                offsets.append(off)
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"seqs in send order: {seqs}"
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), (
            f"partition 0 offsets of the produce requests in send order: {offsets}")
        c.assert_usable()


def test_max_request_id_is_echoed_on_every_path(env):
    """Request id 2^64-1 comes back exactly, whichever way the response is
    produced: at once, from the thread pool, from a delivery, from a timer
    (parked poll_reports / consume), from a commit callback, and on errors."""
    def one(c: ps.Conn, op: str, args: Any) -> list:
        c.send(op, args, rid=U64_MAX)
        resp = c.response(U64_MAX)
        assert resp[0] == U64_MAX and type(resp[0]) is int, resp
        return resp

    with ps.Conn(env.socket) as c:
        seen = {}
        for op, args in [
            ("hello", {"version": 1}), ("ping", None), ("metadata", {"topics": [env.topic]}),
            ("produce", {"topic": env.produce_topic, "ack": "wait", "value": b"max-id"}),
            ("produce", {"topic": env.produce_topic, "value": b"max-id-report"}),
            ("produce", {"topic": env.produce_topic, "ack": "none", "value": b"max-id-none"}),
            ("flush", {"timeout_ms": 30000}),
            ("poll_reports", {"timeout_ms": 0}),                # takes the report
            ("poll_reports", {"timeout_ms": 20}),               # parked, answered by its timer
            ("stats", None), ("watermarks", {"topic": env.topic, "partition": 0}),
            ("no_such_op", {}), ("produce", {"value": b"no topic"}), ("hello", {"version": 0}),
        ]:
            resp = one(c, op, args)
            seen[op + ("!" if resp[1] else "")] = resp
        assert seen["flush"][2] == {"remaining": 0}
        h = one(c, "consumer_open", {"topic": env.topic, "group": ps.unique("proto-g"),
                                     "auto_offset_reset": "earliest"})[2]["handle"]
        ps.consume_until(c, h, ps.all_prefill(env), "the prefilled messages")
        resp = one(c, "consume", {"handle": h, "timeout_ms": 20})   # nothing left: parked, timer answers
        assert resp[1] is None and resp[2]["messages"] == [], resp
        assert one(c, "commit", {"handle": h})[1] is None             # answered from the commit callback
        assert one(c, "committed", {"handle": h})[1] is None
        assert one(c, "seek", {"handle": h, "offsets": [[env.topic, 0, -2]]})[1] is None
        assert one(c, "consumer_close", {"handle": h})[1] is None
        assert one(c, "consume", {"handle": h})[1]["name"] == "UNKNOWN_HANDLE"
        # id 0 too
        c.send("ping", None, rid=0)
        assert c.response(0) == [0, None, {}]
        # an id echoed through BAD_REQUEST (args not a map)
        c.send_bytes(ps.raw_frame([U64_MAX, "ping", 5]))
        resp = c.response(U64_MAX)
        assert resp[1]["name"] == "BAD_REQUEST", resp
        c.assert_usable()
