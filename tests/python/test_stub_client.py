"""The Python stub's Client against kafkad.testing.FakeDaemon (no real daemon)."""

import os
import socket
import sys
import tempfile
import threading
import time

import pytest

_STUB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "client-stubs", "python"))
if _STUB not in sys.path:
    sys.path.insert(0, _STUB)

import kafkad  # noqa: E402
from kafkad import errors as E  # noqa: E402
from kafkad._codec import FrameDecoder, encode_frame  # noqa: E402
from kafkad.testing import FakeDaemon  # noqa: E402


@pytest.fixture
def fake():
    f = FakeDaemon(topics={"t": 3, "u": 1}).start()
    yield f
    f.stop()


def produce_requests(fake):
    return [a for (_i, op, a) in fake.requests if op == "produce"]


def eventually(fn, expected, timeout=3.0):
    """fn() once it equals expected (the fake reads requests on its own thread)."""
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got == expected or time.time() > deadline:
            return got
        time.sleep(0.005)


def test_socket_path_resolution(monkeypatch):
    monkeypatch.delenv("KAFKAD_SOCKET", raising=False)
    assert kafkad.default_socket_path() == "/run/kafkad/kafkad.sock"
    monkeypatch.setenv("KAFKAD_SOCKET", "/tmp/x.sock")
    assert kafkad.default_socket_path() == "/tmp/x.sock"
    assert kafkad.default_socket_path("/a") == "/a"


def test_connect_failure_is_connection_lost(tmp_path):
    with pytest.raises(E.ConnectionLost):
        kafkad.Client(str(tmp_path / "nope.sock"))


def test_hello_limits_ping_metadata_stats(fake):
    with kafkad.Client(fake.socket_path) as c:
        assert c.hello.max_batch == 10000 and c.hello.default_cluster == "main"
        assert fake.requests[0][1] == "hello" and fake.requests[0][2]["version"] == 1
        assert c.ping() > 0
        md = c.metadata()
        assert sorted(md.topics) == ["t", "u"] and [p.id for p in md.topics["t"].partitions] == [0, 1, 2]
        md = c.metadata([b"t", "missing"])
        assert md.topics["missing"].error.name == "UNKNOWN_TOPIC_OR_PART"
        st = c.stats()
        assert "daemon" in st and "main" in st["clusters"]


def test_async_produce_is_batched_in_compact_form(fake):
    with kafkad.Client(fake.socket_path, linger_ms=10000) as c:
        seqs = [c.produce("t", b"v%d" % i) for i in range(25)]
        assert seqs == list(range(1, 26))
        assert produce_requests(fake) == []  # nothing sent yet: batched
        assert c.flush() == 0
        reqs = produce_requests(fake)
        assert len(reqs) == 1 and reqs[0]["messages"] == [b"v%d" % i for i in range(25)]
        assert reqs[0]["ack"] == "report" and "cluster" not in reqs[0]
        reps = c.poll_reports()
        assert sorted(r.seq for r in reps) == seqs and all(r.error is None for r in reps)
        by_part = {}
        for r in reps:
            by_part.setdefault(r.partition, []).append(r.offset)
        for offs in by_part.values():
            assert offs == list(range(len(offs)))
    assert len(fake.messages("t")) == 25


def test_batch_size_triggers_send(fake):
    with kafkad.Client(fake.socket_path, batch_messages=10, linger_ms=10000) as c:
        for i in range(35):
            c.produce("t", b"x")
        assert eventually(lambda: [len(a["messages"]) for a in produce_requests(fake)], [10, 10, 10]) == [10, 10, 10]
        c.flush()
        assert [len(a["messages"]) for a in produce_requests(fake)] == [10, 10, 10, 5]


def test_batch_bytes_trigger(fake):
    with kafkad.Client(fake.socket_path, batch_bytes=1000, linger_ms=10000) as c:
        for i in range(5):
            c.produce("t", b"x" * 400)
        assert eventually(lambda: [len(a["messages"]) for a in produce_requests(fake)], [3]) == [3]


def test_linger_sends_without_any_call(fake):
    with kafkad.Client(fake.socket_path, linger_ms=20) as c:
        c.produce("t", b"lonely")
        deadline = time.time() + 2
        while not produce_requests(fake) and time.time() < deadline:
            time.sleep(0.01)
        assert produce_requests(fake)[0]["messages"] == [b"lonely"]


def test_map_form_key_headers_timestamp_partition(fake):
    with kafkad.Client(fake.socket_path, linger_ms=10000) as c:
        c.produce("t", b"a", b"k", headers=[("h", b"1"), ("n", None)], timestamp=1700000000000, partition=2)
        c.produce("t", b"b")
        c.produce("t", None, key=b"gone")
        c.produce("t", "text", headers={"x": "y"})
        c.flush()
        msgs = produce_requests(fake)[0]["messages"]
        assert msgs[0] == {"value": b"a", "key": b"k", "headers": [["h", b"1"], ["n", None]], "timestamp": 1700000000000, "partition": 2}
        assert msgs[1] == b"b"
        assert msgs[2] == {"value": None, "key": b"gone"}
        assert msgs[3] == {"value": b"text", "headers": [["x", b"y"]]}
        stored = fake.messages("t", 2)
        assert stored[0].key == b"k" and stored[0].timestamp == 1700000000000


def test_topic_or_mode_change_keeps_order(fake):
    with kafkad.Client(fake.socket_path, linger_ms=10000) as c:
        c.produce("t", b"1", partition=0)
        c.produce("u", b"2")
        c.produce("t", b"3", partition=0, ack="none")
        md = c.produce("t", b"4", partition=0, ack="wait")
        assert md == kafkad.RecordMetadata(0, 2)
        reqs = produce_requests(fake)
        assert [(a["topic"], a["ack"]) for a in reqs] == [("t", "report"), ("u", "report"), ("t", "none"), ("t", "wait")]
        assert [m.value for m in fake.messages("t", 0)] == [b"1", b"3", b"4"]


def test_sync_produce_raises_kafka_error(fake):
    with kafkad.Client(fake.socket_path) as c:
        with pytest.raises(E.KafkaError) as ei:
            c.produce("nope", b"x", ack="wait")
        assert ei.value.name == "UNKNOWN_TOPIC_OR_PART" and ei.value.kafka_code == 3


def test_produce_batch_forms(fake):
    with kafkad.Client(fake.socket_path) as c:
        res = c.produce_batch("t", [b"a", {"value": b"b", "key": b"k"}, (b"c", b"k2"), "d"])
        assert res.count == 4 and res.seq == 1
        res = c.produce_batch("t", [b"x", (b"y", None, None, None, 1)], ack="wait")
        assert [type(r) for r in res.results] == [kafkad.RecordMetadata] * 2 and res.results[1].partition == 1
        res = c.produce_batch("nope", [b"x"], ack="wait")
        assert isinstance(res.results[0], E.KafkaError) and res.errors
        c.flush()
        assert len(c.poll_reports()) == 4
        with pytest.raises(TypeError):
            c.produce_batch("t", [{"valu": b"typo"}])


def test_seq_translation_when_daemon_counts_wait_messages(fake):
    # the fake gives wait-mode messages sequence numbers too; client seqs must not shift
    with kafkad.Client(fake.socket_path, linger_ms=10000) as c:
        a = c.produce("t", b"a")
        c.produce("t", b"w", ack="wait")
        b = [c.produce("t", b"b%d" % i) for i in range(5)]
        c.flush()
        reps = {r.seq: r for r in c.poll_reports()}
        assert sorted(reps) == [a] + b == [1, 2, 3, 4, 5, 6]


def test_rejected_request_gives_error_reports(fake):
    fake.reject_topics.add("bad")
    with kafkad.Client(fake.socket_path, linger_ms=10000) as c:
        s1 = c.produce("bad", b"x")
        s2 = c.produce("bad", b"y")
        s3 = c.produce("t", b"z")
        c.flush()
        reps = {r.seq: r for r in c.poll_reports()}
        assert isinstance(reps[s1].error, E.InvalidArgument) and reps[s2].error is reps[s1].error
        assert reps[s3].error is None and reps[s3].partition >= 0


def test_per_message_failure_reports(fake):
    with kafkad.Client(fake.socket_path) as c:
        s = c.produce("nope", b"x")
        c.produce("t", b"ok")
        c.flush()
        reps = {r.seq: r for r in c.poll_reports()}
        assert reps[s].error.name == "UNKNOWN_TOPIC_OR_PART" and reps[s].offset == -1


def test_on_delivery_callbacks_via_poll_and_flush(fake):
    got = []
    per = []
    c = kafkad.Client(fake.socket_path, on_delivery=got.append)
    for i in range(10):
        c.produce("t", b"x")
    c.produce("t", b"y", on_delivery=per.append)
    assert c.flush() == 0
    assert len(got) == 10 and len(per) == 1 and per[0].seq == 11
    assert c.poll_reports() == []  # consumed by the callbacks
    c.close()


def test_flush_calls_back_as_reports_arrive(fake):
    # like confluent-kafka's flush: the client-wide callback runs for reports
    # that arrive while flush still waits for others, not only at its end
    fake.auto_deliver = False
    got = []
    c = kafkad.Client(fake.socket_path, on_delivery=got.append, linger_ms=1)
    first = c.produce("t", b"a")
    c.poll(0.05)
    assert fake.wait_produced(1)
    fake.deliver()
    c.produce("t", b"b")
    result = []
    t = threading.Thread(target=lambda: result.append(c.flush(10)))
    t.start()
    t0 = time.time()
    while not got and time.time() - t0 < 3:
        time.sleep(0.01)
    assert [r.seq for r in got] == [first]
    assert t.is_alive() and not result  # still waiting for "b"
    assert fake.wait_produced(2)
    fake.deliver()
    t.join(5)
    assert result == [0] and len(got) == 2 and all(r.error is None for r in got)
    c.close()


def test_poll_waits_for_reports(fake):
    fake.auto_deliver = False
    got = []
    with kafkad.Client(fake.socket_path, on_delivery=got.append, linger_ms=1) as c:
        c.produce("t", b"x")
        assert c.poll(0.05) == 0
        assert fake.wait_produced(1)
        threading.Timer(0.1, fake.deliver).start()
        t0 = time.time()
        n = 0
        while n == 0 and time.time() - t0 < 3:
            n += c.poll(0.5)
        assert n == 1 and got[0].error is None


def test_poll_reports_timeout_and_pending(fake):
    fake.auto_deliver = False
    with kafkad.Client(fake.socket_path) as c:
        c.produce("t", b"x")
        t0 = time.time()
        assert c.poll_reports(timeout=0.1) == []
        assert 0.09 <= time.time() - t0 < 2
        assert c.in_flight == 1
        assert fake.wait_produced(1)
        fake.fail_pending()
        reps = c.poll_reports(timeout=2)
        assert len(reps) == 1 and reps[0].error.name == "_MSG_TIMED_OUT" and reps[0].error.retriable
        assert c.in_flight == 0


def test_flush_timeout_returns_remaining(fake):
    fake.auto_deliver = False
    c = kafkad.Client(fake.socket_path)
    c.produce("t", b"x")
    c.produce("t", b"y")
    assert c.flush(0.1) == 2
    fake.deliver()
    assert c.flush(2) == 0
    c.close()


def test_max_pending_is_respected():
    # the fake stops reading a connection that exceeds max_pending; the client
    # must collect reports before sending more
    with FakeDaemon(topics={"t": 2}, max_pending=50, piggyback=False) as f:
        with kafkad.Client(f.socket_path, batch_messages=20, linger_ms=10000) as c:
            assert c._batch_n == 20
            for i in range(500):
                c.produce("t", b"x")
            assert c.flush(5) == 0
            assert len(c.poll_reports(max=1000)) == 500
        assert len(f.messages("t")) == 500


def test_concurrent_sync_produce_from_threads(fake):
    c = kafkad.Client(fake.socket_path)
    results = {}
    errors = []

    def worker(n):
        try:
            for i in range(20):
                md = c.produce("t", b"%d-%d" % (n, i), ack="wait", partition=n % 3)
                results[(n, i)] = md
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(results) == 160
    for (n, _i), md in results.items():
        assert md.partition == n % 3
    offsets = {}
    for (n, i), md in results.items():
        offsets.setdefault(md.partition, set()).add(md.offset)
    assert all(len(v) == len([k for k in results if k[0] % 3 == p]) for p, v in offsets.items())
    c.close()


def test_concurrent_async_produce_from_threads(fake):
    c = kafkad.Client(fake.socket_path, batch_messages=100)
    seqs = []
    lock = threading.Lock()

    def worker():
        mine = [c.produce("t", b"x") for _ in range(1000)]
        with lock:
            seqs.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(seqs) == list(range(1, 4001))
    assert c.flush() == 0
    assert sorted(r.seq for r in c.poll_reports(max=10000)) == list(range(1, 4001))
    c.close()


def test_connection_loss(fake):
    c = kafkad.Client(fake.socket_path, linger_ms=10000)
    fake.auto_deliver = False
    s = c.produce("t", b"x", ack="report")
    c.produce("t", b"y")  # still in the local batch
    c._lock.acquire()
    c._send_buffer()
    c._lock.release()
    fake.kill_connections()
    with pytest.raises(E.ConnectionLost):
        for _ in range(100):
            c.ping()
            time.sleep(0.01)
    with pytest.raises(E.ConnectionLost):
        c.produce("t", b"z")
    reps = c.poll_reports()
    assert {r.seq for r in reps} == {s, s + 1}
    assert all(isinstance(r.error, E.ConnectionLost) for r in reps)
    c.close()


def test_close_is_idempotent_and_context_manager_flushes(fake):
    with kafkad.Client(fake.socket_path, linger_ms=10000) as c:
        c.produce("t", b"x")
    assert c.closed and len(fake.messages("t")) == 1
    c.close()
    with pytest.raises(E.ConnectionLost):
        c.ping()


def test_unknown_cluster_and_raw_call(fake):
    with kafkad.Client(fake.socket_path, cluster="nope") as c:
        with pytest.raises(E.UnknownCluster):
            c.metadata()
        with pytest.raises(E.UnknownOp):
            c.call("frobnicate", {"cluster": "main"})
        s = c.produce("t", b"x")
        c.flush()
        (r,) = c.poll_reports()
        assert r.seq == s and isinstance(r.error, E.UnknownCluster)


def test_ack_validation(fake):
    with kafkad.Client(fake.socket_path) as c:
        with pytest.raises(ValueError):
            c.produce("t", b"x", ack="maybe")
        with pytest.raises(TypeError):
            c.produce("t", 12345)


class _OneShotServer:
    """Answers hello, then sends whatever frames the test wants."""

    def __init__(self, after_hello):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "s.sock")
        self.ls = socket.socket(socket.AF_UNIX)
        self.ls.bind(self.path)
        self.ls.listen(1)
        self.after_hello = after_hello
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        s, _ = self.ls.accept()
        dec = FrameDecoder()
        while True:
            data = s.recv(65536)
            if not data:
                return
            dec.feed(data)
            for f in dec.frames():
                if f[1] == "hello":
                    s.sendall(encode_frame([f[0], None, {"version": 1, "max_pending": 1000}]))
                    for out in self.after_hello(f):
                        s.sendall(out)
                else:
                    s.sendall(encode_frame([f[0], None, {}]))

    def close(self):
        self.ls.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def test_bad_frame_from_daemon_closes_the_client():
    srv = _OneShotServer(lambda f: [encode_frame([None, {"code": 1, "name": "BAD_FRAME", "message": "m", "retriable": False}, None])])
    try:
        c = kafkad.Client(srv.path)
        with pytest.raises(E.KafkadError) as ei:
            for _ in range(50):
                c.ping()
                time.sleep(0.01)
        assert isinstance(ei.value, E.BadFrame)
        assert c.closed
    finally:
        srv.close()


def test_out_of_order_responses_and_unknown_ids():
    # responds to request ids in reverse order, plus a stray id
    pending = []

    class Srv(_OneShotServer):
        def run(self):
            s, _ = self.ls.accept()
            dec = FrameDecoder()
            while True:
                data = s.recv(65536)
                if not data:
                    return
                dec.feed(data)
                for f in dec.frames():
                    if f[1] == "hello":
                        s.sendall(encode_frame([f[0], None, {"version": 1}]))
                        continue
                    pending.append(f)
                    if len(pending) == 3:
                        s.sendall(encode_frame([99999, None, {}]))
                        for g in reversed(pending):
                            s.sendall(encode_frame([g[0], None, {"op": g[1], "n": g[2]["n"]}]))
                        pending.clear()

    srv = Srv(None)
    try:
        c = kafkad.Client(srv.path)
        out = {}

        def call(n):
            out[n] = c.call("echo", {"n": n})

        ts = [threading.Thread(target=call, args=(n,)) for n in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(5)
        assert out == {n: {"op": "echo", "n": n} for n in range(3)}
        c.close()
    finally:
        srv.close()


def test_poll_reports_error_is_retried(fake):
    # a second parked poll_reports gets INVALID_STATE from the daemon; the
    # client must back off and re-arm, not stall until its deadline
    fake.auto_deliver = False
    with kafkad.Client(fake.socket_path) as c:
        c.produce("t", b"x")
        c.poll_reports(timeout=0.05)  # sends the batch, parks a poll at the fake
        assert fake.wait_produced(1)
        with c._lock:
            c._poll_req = None  # forget it: the next arm collides with the parked one
            c._maybe_arm()
        t0 = time.time()
        threading.Timer(0.2, fake.deliver).start()
        reps = c.poll_reports(timeout=3)
        assert len(reps) == 1 and time.time() - t0 < 2


def test_produce_batch_spanning_several_batches_keeps_seqs(fake):
    # regression: a produce_batch larger than the batch size, mixed with
    # produce(), must still give every seq exactly one report, for its message
    with kafkad.Client(fake.socket_path, batch_messages=100, linger_ms=10000) as c:
        seq_value = {}
        for b in range(0, 1000, 250):
            res = c.produce_batch("t", [{"value": b"%d" % i, "key": b"k%d" % (i % 7)} for i in range(b, b + 250)])
            for j in range(250):
                seq_value[res.seq + j] = b"%d" % (b + j)
            seq_value[c.produce("t", b"single-%d" % b)] = b"single-%d" % b
        assert c.flush() == 0
        reps = c.poll_reports(max=10000)
    assert sorted(r.seq for r in reps) == sorted(seq_value)
    stored = {(m.partition, m.offset): m.value for m in fake.messages("t")}
    for r in reps:
        assert stored[(r.partition, r.offset)] == seq_value[r.seq]


def test_receive_buffer_grows_for_large_responses():
    # the client reads into a small buffer first and a large one once a read
    # fills it; a response (~1 MB) spread over both must arrive intact
    with FakeDaemon(topics={"big": 20000}) as f, kafkad.Client(f.socket_path, background=False) as c:
        small = len(c._rbuf)
        with c._lock:  # send the request without reading, so that the whole answer waits in the socket
            _rid, req, payload = c._encode_call("metadata", {"timeout_ms": 1000})
            c._send_payload(payload)
        time.sleep(0.3)
        assert c.ping() > 0  # reads everything
        assert len(c._rbuf) > small
        md = kafkad.types.ClusterMetadata.from_result(req.outcome())
        assert [p.id for p in md.topics["big"].partitions] == list(range(20000))
        md = c.metadata(["big"])
        assert len(md.topics["big"].partitions) == 20000


def test_dropped_client_stops_its_linger_thread(fake):
    import gc
    import weakref

    before = {t for t in threading.enumerate() if t.name == "kafkad-linger"}
    c = kafkad.Client(fake.socket_path, linger_ms=50)  # its thread waits for a first message
    (thread,) = [t for t in threading.enumerate() if t.name == "kafkad-linger" and t not in before]
    ref = weakref.ref(c)
    del c
    gc.collect()
    assert ref() is None
    thread.join(5)
    assert not thread.is_alive()


def test_client_import_and_use_load_nothing_heavy(fake):
    # what a short-lived producer pays for at start and again at exit
    import subprocess

    heavy = ("typing", "dataclasses", "inspect", "ast", "socket", "selectors", "weakref", "atexit", "logging")
    code = (
        "import sys; before = set(sys.modules)\n"
        "from kafkad import Client\n"
        f"c = Client({fake.socket_path!r}); c.produce('t', b'x'); c.flush(); c.poll_reports(); c.close()\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules and m not in before))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=_STUB))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
