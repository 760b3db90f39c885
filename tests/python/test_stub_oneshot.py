"""The cold path: ``kafkad.produce_sync`` (kafkad/_oneshot.py) and the lazy
package import (no daemon needed: a scripted Unix-socket server plays it)."""

import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

_STUB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "client-stubs", "python"))
if _STUB not in sys.path:
    sys.path.insert(0, _STUB)

import msgpack  # noqa: E402

import kafkad  # noqa: E402
from kafkad import _oneshot, _session  # noqa: E402
from kafkad._oneshot import encode_produce_wait, pack, unpack  # noqa: E402
from kafkad.errors import (  # noqa: E402
    BadFrame,
    ConnectionLost,
    InvalidArgument,
    KafkaError,
    ProtocolViolation,
    TimedOut,
    TooLarge,
    UnknownCluster,
)

VECTOR_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "protocol", "vectors"))
VECTORS = sorted(glob.glob(os.path.join(VECTOR_DIR, "*.json")))


def _from_json(v):
    if isinstance(v, dict):
        if set(v) == {"$bin"}:
            return bytes.fromhex(v["$bin"])
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


# ---------------------------------------------------------------- the scripted daemon


class Script:
    """A Unix-socket server that records every frame it receives and answers
    with ``handler(conn, rid, op, args)``: a value to send as the response
    payload (msgpack), raw bytes to send as they are, or None for silence."""

    def __init__(self, handler):
        self.dir = tempfile.mkdtemp(prefix="kafkad-oneshot-")
        self.path = os.path.join(self.dir, "s.sock")
        self.handler = handler
        self.frames = []  # raw payloads, in arrival order
        self.lock = threading.Lock()
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ls.bind(self.path)
        self.ls.listen(8)
        self.ls.settimeout(0.05)
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        with c:
            while True:
                try:
                    chunk = c.recv(1 << 20)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                    n = int.from_bytes(buf[:4], "big")
                    payload, buf = buf[4 : 4 + n], buf[4 + n :]
                    with self.lock:
                        self.frames.append(payload)
                    rid, op, args = msgpack.unpackb(payload, raw=False)
                    out = self.handler(c, rid, op, args)
                    if out is None:
                        continue
                    if out == "close":
                        return
                    if not isinstance(out, bytes):
                        body = msgpack.packb(out, use_bin_type=True)
                        out = len(body).to_bytes(4, "big") + body
                    c.sendall(out)

    def close(self):
        self.stop_ev.set()
        self.ls.close()
        self.t.join(2)


HELLO_RESULT = {"version": 1, "server": "script", "max_frame": 16 << 20, "max_batch": 10000,
                "max_pending": 262144, "clusters": ["main"], "default_cluster": "main"}


def daemon_like(partition=3, offset=42, max_frame=16 << 20):
    def handler(c, rid, op, args):
        if op == "hello":
            return [rid, None, dict(HELLO_RESULT, max_frame=max_frame)]
        if op == "produce" and args.get("ack") == "wait":
            return [rid, None, {"count": len(args["messages"]),
                                "results": [[partition, offset + i, None] for i in range(len(args["messages"]))]}]
        return [rid, None, {}]

    return handler


@pytest.fixture
def script():
    made = []

    def make(handler):
        s = Script(handler)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# ---------------------------------------------------------------- msgpack subset


PACK_VALUES = [
    None, True, False, 0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1,
    -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63,
    "", "a", "x" * 31, "x" * 32, "x" * 255, "x" * 256, "x" * 65535, "x" * 65536, "é€𝄞",
    b"", b"\x00", b"y" * 255, b"y" * 256, b"y" * 65535, b"y" * 65536, bytearray(b"ba"), memoryview(b"mv"),
    [], [1, [2, [3]]], list(range(15)), list(range(16)), list(range(70000)),
    {}, {"a": 1}, {f"k{i}": i for i in range(15)}, {f"k{i}": i for i in range(16)},
    {"k": {"n": [None, b"b", "s"]}}, (1, "t"),
]


@pytest.mark.parametrize("v", PACK_VALUES, ids=range(len(PACK_VALUES)))
def test_pack_is_msgpack_with_bin_type(v):
    out = []
    pack(v, out)
    assert b"".join(out) == msgpack.packb(v, use_bin_type=True)


def test_pack_refuses_other_types():
    for v in (1.5, object(), {1, 2}, 2**64):
        with pytest.raises((TypeError, OverflowError)):
            pack(v, [])


@pytest.mark.parametrize("v", PACK_VALUES, ids=range(len(PACK_VALUES)))
def test_unpack_is_msgpack_unpackb(v):
    b = msgpack.packb(v, use_bin_type=True)
    assert unpack(b) == (msgpack.unpackb(b, raw=False, strict_map_key=False), len(b))


def test_unpack_other_encodings():
    # widths msgpack-c (the daemon) may choose, floats, non-str map keys
    for v in ([1.5, -0.25], {1: "int key"}, [2**63, -1]):
        b = msgpack.packb(v, use_bin_type=True)
        assert unpack(b)[0] == msgpack.unpackb(b, raw=False, strict_map_key=False)
    assert unpack(b"\xcc\x05")[0] == 5 and unpack(b"\xd0\x05")[0] == 5 and unpack(b"\xd1\xff\xfe")[0] == -2
    assert unpack(b"\xd9\x01a")[0] == "a" and unpack(b"\xc5\x00\x01z")[0] == b"z"
    assert unpack(b"\xdc\x00\x01\x01")[0] == [1] and unpack(b"\xde\x00\x01\xa1k\xc0")[0] == {"k": None}


@pytest.mark.parametrize("bad", [b"", b"\x92\x01", b"\xa5abc", b"\xc4\x05ab", b"\xcd\x01", b"\xc1",
                                 b"\xd4\x01\x02", b"\x81\x90\x01", b"\xa2\xff\xfe"])
def test_unpack_rejects_malformed(bad):
    with pytest.raises(ValueError):
        unpack(bad)


@pytest.mark.parametrize("path", VECTORS, ids=[os.path.basename(p)[:-5] for p in VECTORS])
def test_vectors(path):
    """Every protocol vector decodes to its value; request vectors re-encode
    byte for byte."""
    with open(path) as f:
        doc = json.load(f)
    value, wire = _from_json(doc["value"]), bytes.fromhex(doc["msgpack_hex"])
    assert unpack(wire) == (value, len(wire))
    if doc["kind"] == "request":
        out = []
        pack(value, out)
        assert b"".join(out) == wire


def test_constants_match_the_full_client():
    assert _oneshot.DEFAULT_SOCKET == _session.DEFAULT_SOCKET
    assert _oneshot.CLIENT_NAME == _session.CLIENT_NAME
    assert _oneshot.PROTOCOL_VERSION == _session.PROTOCOL_VERSION


# ---------------------------------------------------------------- the request


ENCODE_CASES = [
    dict(topic="events", value=b"hello"),
    dict(topic="events", value=b"x" * 5000),
    dict(topic=b"events", value="text é"),
    dict(topic=bytearray(b"events"), value=bytearray(b"ba")),
    dict(topic="events", value=memoryview(b"mv")),
    dict(topic="events", value=None),
    dict(topic="events", value=b""),
    dict(topic="events", value=b"v", key=b"k"),
    dict(topic="events", value=b"v", key="clé"),
    dict(topic="events", value=None, key=b"k"),
    dict(topic="events", value=b"v", partition=2),
    dict(topic="events", value=b"v", partition=-1),
    dict(topic="events", value=b"v", timestamp=1700000000123),
    dict(topic="events", value=b"v", key=b"k", timestamp=5, partition=0),
    dict(topic="events", value=b"v", partitioner="murmur2"),
    dict(topic="events", value=b"v", cluster="other"),
    dict(topic="events", value=b"v", key=b"k", partitioner="random", cluster="c", partition=1, timestamp=0),
]


def _client_frames(s, **kw):
    """What a fresh kafkad.Client sends for produce(..., ack="wait")."""
    del s.frames[:]
    kw = dict(kw)
    cluster = kw.pop("cluster", None)
    c = kafkad.Client(s.path, cluster=cluster, background=False)
    try:
        c.produce(kw.pop("topic"), kw.pop("value"), kw.pop("key", None), ack="wait", **kw)
    finally:
        c.close()
    time.sleep(0.05)
    return list(s.frames)


@pytest.mark.parametrize("case", ENCODE_CASES, ids=range(len(ENCODE_CASES)))
def test_request_is_byte_identical_to_the_client(script, case):
    s = script(daemon_like())
    hello, produce = _client_frames(s, **case)
    assert msgpack.unpackb(hello)[1] == "hello"
    assert encode_produce_wait(case["topic"], case["value"], case.get("key"), case.get("timestamp"),
                               case.get("partition"), case.get("partitioner"), case.get("cluster")) == produce
    # and on the wire: the one request (after the same hello when it is over 1024 bytes)
    del s.frames[:]
    kw = {k: v for k, v in case.items() if k not in ("topic", "value")}
    assert kafkad.produce_sync(case["topic"], case["value"], socket_path=s.path, **kw) == (3, 42)
    time.sleep(0.05)
    assert s.frames == ([hello, produce] if len(produce) + 4 > 1024 else [produce])


@pytest.mark.parametrize("kw", [
    dict(timestamp=1.5), dict(partition=True), dict(partition="1"), dict(key=1), dict(partitioner=1),
])
def test_what_the_fast_path_leaves_to_the_client(kw):
    assert encode_produce_wait("t", b"v", kw.get("key"), kw.get("timestamp"), kw.get("partition"),
                               kw.get("partitioner")) is None


def test_headers_and_datetimes_go_through_the_client(script):
    import datetime

    s = script(daemon_like(partition=1, offset=7))
    ts = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    md = kafkad.produce_sync("t", b"v", b"k", headers={"h": b"1"}, timestamp=ts, socket_path=s.path)
    assert md == (1, 7) and type(md) is tuple
    time.sleep(0.05)
    ops = [msgpack.unpackb(f, raw=False) for f in s.frames]
    assert [o[1] for o in ops] == ["hello", "produce"]
    m = ops[1][2]["messages"][0]
    assert m["headers"] == [["h", b"1"]] and m["timestamp"] == 1704164645000 and m["key"] == b"k"


def test_bad_types_raise_typeerror_before_connecting(tmp_path):
    nowhere = str(tmp_path / "none.sock")
    for args, kw in [(("t", 1), {}), ((1, b"v"), {}), (("t", b"v"), {"partition": "x"}),
                     (("t", b"v"), {"headers": 5})]:
        with pytest.raises(TypeError):
            kafkad.produce_sync(*args, socket_path=nowhere, **kw)
    with pytest.raises(ValueError):
        kafkad.produce_sync("t", b"v", socket_path=nowhere, timeout=0)


# ---------------------------------------------------------------- outcomes and errors


def test_socket_from_environment(script, monkeypatch):
    s = script(daemon_like(partition=0, offset=1))
    monkeypatch.setenv("KAFKAD_SOCKET", s.path)
    assert kafkad.produce_sync("t", b"v") == (0, 1)


def test_daemon_not_running(tmp_path):
    with pytest.raises(ConnectionLost, match="cannot connect to kafkad at"):
        kafkad.produce_sync("t", b"v", socket_path=str(tmp_path / "kafkad.sock"))


def _answer(value):
    return lambda c, rid, op, args: [rid] + value


@pytest.mark.parametrize("err,cls", [
    ({"code": 4, "name": "INVALID_ARGUMENT", "message": "topic: bad", "retriable": False}, InvalidArgument),
    ({"code": 5, "name": "UNKNOWN_CLUSTER", "message": "no cluster named 'x'", "retriable": False}, UnknownCluster),
])
def test_request_errors(script, err, cls):
    s = script(_answer([err, None]))
    with pytest.raises(cls) as ei:
        kafkad.produce_sync("t", b"v", socket_path=s.path)
    assert ei.value.code == err["code"] and ei.value.message == err["message"]


def test_message_error_is_a_kafka_error(script):
    e = {"code": 10003, "name": "UNKNOWN_TOPIC_OR_PART", "message": "Broker: Unknown topic", "retriable": False}
    s = script(_answer([None, {"count": 1, "results": [[-1, -1, e]]}]))
    with pytest.raises(KafkaError) as ei:
        kafkad.produce_sync("t", b"v", socket_path=s.path)
    assert ei.value.name == "UNKNOWN_TOPIC_OR_PART" and ei.value.kafka_code == 3


def test_nil_id_error_frame(script):
    bad = {"code": 1, "name": "BAD_FRAME", "message": "frame length 0 outside 1..16777216", "retriable": False}
    s = script(lambda c, rid, op, args: [None, bad, None])
    with pytest.raises(BadFrame):
        kafkad.produce_sync("t", b"v", socket_path=s.path)


def test_other_ids_are_skipped(script):
    def handler(c, rid, op, args):
        junk = msgpack.packb([rid + 100, None, {}])
        ok = msgpack.packb([rid, None, {"count": 1, "results": [[5, 6, None]]}])
        return b"".join(len(b).to_bytes(4, "big") + b for b in (junk, ok))

    s = script(handler)
    assert kafkad.produce_sync("t", b"v", socket_path=s.path) == (5, 6)


def test_response_in_pieces(script):
    def handler(c, rid, op, args):
        body = msgpack.packb([rid, None, {"count": 1, "results": [[1, 2, None]]}])
        frame = len(body).to_bytes(4, "big") + body
        for i in range(len(frame)):
            c.sendall(frame[i : i + 1])
            time.sleep(0.001)
        return None

    s = script(handler)
    assert kafkad.produce_sync("t", b"v", socket_path=s.path) == (1, 2)


@pytest.mark.parametrize("raw,cls", [
    (b"\x00\x00\x00\x02\x93\x02", ProtocolViolation),              # truncated payload
    (b"\x00\x00\x00\x01\xc1", ProtocolViolation),                  # not msgpack
    (b"\x00\x00\x00\x02\x01\x02", ProtocolViolation),              # two values
    (b"\x00\x00\x00\x02\x92\x02", ProtocolViolation),              # not [id, error, result]
    (b"\x00\x00\x00\x00", BadFrame),                               # length 0
    (b"\x00\x00\x00\x04\x93\x02\xc0\x80", ProtocolViolation),      # no results
])
def test_malformed_responses(script, raw, cls):
    s = script(lambda c, rid, op, args: raw)
    with pytest.raises(cls):
        kafkad.produce_sync("t", b"v", socket_path=s.path, timeout=2)


def test_daemon_closes_the_connection(script):
    s = script(lambda c, rid, op, args: "close")
    with pytest.raises(ConnectionLost, match="closed the connection"):
        kafkad.produce_sync("t", b"v", socket_path=s.path)


def test_timeout(script):
    s = script(lambda c, rid, op, args: None)
    t0 = time.monotonic()
    with pytest.raises(TimedOut, match="may still be delivered"):
        kafkad.produce_sync("t", b"v", socket_path=s.path, timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 2


def test_large_request_asks_for_max_frame_first(script):
    s = script(daemon_like(max_frame=2048))
    assert kafkad.produce_sync("t", b"x" * 1500, socket_path=s.path) == (3, 42)
    with pytest.raises(TooLarge, match="exceeds max_frame 2048"):
        kafkad.produce_sync("t", b"x" * 3000, socket_path=s.path)
    time.sleep(0.05)
    ops = [msgpack.unpackb(f, raw=False)[1] for f in s.frames]
    assert ops == ["hello", "produce", "hello"]


# ---------------------------------------------------------------- the lazy package


def _fresh(code, env=None):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=_STUB, **(env or {})))
    assert r.returncode == 0, r.stderr
    return r.stdout


HEAVY = ("msgpack", "socket", "threading", "typing", "dataclasses", "asyncio", "select", "kafkad.client",
         "kafkad.errors", "kafkad.types")


def test_import_kafkad_loads_nothing_heavy():
    out = _fresh("import sys, kafkad; print(' '.join(sorted(m for m in sys.modules if m.startswith('kafkad'))))"
                 f"; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert out.split("\n")[0] == "kafkad"
    assert out.split("\n")[1] == "[]"


def test_produce_sync_loads_nothing_heavy(script):
    s = script(daemon_like())
    out = _fresh(f"import sys, kafkad; print(kafkad.produce_sync('t', b'v', socket_path={s.path!r})); "
                 f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert out.split("\n")[:2] == ["(3, 42)", "[]"]


def test_lazy_names():
    for name in kafkad.__all__:
        assert getattr(kafkad, name) is not None
    assert kafkad.Client is kafkad.client.Client
    assert kafkad.RecordMetadata is kafkad.types.RecordMetadata
    assert kafkad.OFFSET_BEGINNING == kafkad.consumer.OFFSET_BEGINNING
    assert kafkad.errors.KafkadError is kafkad.KafkadError
    from kafkad import Client, produce_sync  # noqa: F401

    assert {"Client", "produce_sync", "errors", "types"} <= set(dir(kafkad))
    with pytest.raises(AttributeError):
        kafkad.no_such_name  # noqa: B018
