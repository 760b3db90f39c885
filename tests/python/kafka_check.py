"""Helpers for the integration suites (tests/python/test_integration_*.py).

- read_all(): read a topic back with an INDEPENDENT client (confluent-kafka
  Consumer, assign() to every partition from OFFSET_BEGINNING, no group
  management) up to the high watermarks.
- check_records(): compare what was read with what was produced.
- Raw: a plain socket + msgpack connection to kafkad (no stub), for the
  protocol-level cases.
- wait_until(): poll a predicate (to wait for asynchronous counters).

Nothing here skips; failures are AssertionErrors with enough context.
"""
from __future__ import annotations

import socket
import struct
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import msgpack
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError as CKError, TopicPartition

__all__ = ["Record", "read_all", "by_value", "check_records", "Raw", "wait_until", "closed_port"]


class Record(NamedTuple):
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: List[Tuple[str, Optional[bytes]]]
    timestamp: int          # ms since epoch
    timestamp_type: int     # confluent_kafka.TIMESTAMP_CREATE_TIME (1) for producer-set times


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "kafkad-check-" + uuid.uuid4().hex[:8],   # never joined: assign() only
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 50,
        "socket.timeout.ms": 10000,
    })


def high_watermarks(bootstrap: str, topic: str) -> Dict[int, int]:
    c = _consumer(bootstrap)
    try:
        return _highs(c, topic)
    finally:
        c.close()


def _highs(c: Consumer, topic: str) -> Dict[int, int]:
    md = c.list_topics(topic, timeout=10)
    tm = md.topics.get(topic)
    assert tm is not None and tm.error is None, f"read-back: topic {topic!r} not readable: {tm and tm.error}"
    out = {}
    for p in sorted(tm.partitions):
        _lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
        out[p] = hi
    return out


def read_all(bootstrap: str, topic: str, expect: Optional[int] = None, timeout: float = 30.0) -> List[Record]:
    """Every message of ``topic`` (from offset 0 of each partition up to its
    high watermark), read by a confluent-kafka Consumer with assign().

    With ``expect``, first waits (up to ``timeout``) until the topic holds at
    least that many messages, and asserts it holds exactly that many."""
    deadline = time.monotonic() + timeout
    c = _consumer(bootstrap)
    try:
        highs = _highs(c, topic)
        while expect is not None and sum(highs.values()) < expect and time.monotonic() < deadline:
            time.sleep(0.1)
            highs = _highs(c, topic)
        if expect is not None:
            assert sum(highs.values()) == expect, (
                f"topic {topic}: {sum(highs.values())} messages in the log, expected {expect} (per partition {highs})")
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in highs])
        todo = {p for p, h in highs.items() if h > 0}
        out: List[Record] = []
        while todo and time.monotonic() < deadline:
            for m in c.consume(num_messages=10000, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == CKError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"read-back consumer error on {topic}: {err}")
                p = m.partition()
                if m.offset() >= highs[p]:
                    continue
                ts_type, ts = m.timestamp()
                out.append(Record(p, m.offset(), m.key(), m.value(), list(m.headers() or []), ts, ts_type))
                if m.offset() + 1 >= highs[p]:
                    todo.discard(p)
        assert not todo, f"read-back of {topic} timed out; partitions {sorted(todo)} incomplete (highs {highs})"
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
    finally:
        c.close()


def by_value(records: Iterable[Record]) -> Dict[bytes, Record]:
    """Index records by value, asserting values are unique (each test makes them so)."""
    out: Dict[bytes, Record] = {}
    for r in records:
        assert r.value not in out, f"value {r.value!r} read twice: {out[r.value]} and {r}"
        out[r.value] = r
    return out


def check_records(records: Sequence[Record], expected: Sequence[Dict[str, Any]]) -> Dict[bytes, Record]:
    """Assert the read-back holds exactly the expected messages.

    Each expected dict has ``value`` (unique) and any of ``key``,
    ``headers`` (list of (name, value)), ``timestamp`` (ms), ``partition``,
    ``offset``; absent fields are not compared, except that a missing key
    must read back as None and missing headers as none."""
    got = by_value(records)
    want_values = [e["value"] for e in expected]
    assert len(set(want_values)) == len(want_values), "test bug: expected values are not unique"
    want_set = set(want_values)
    missing = [v for v in want_values if v not in got]
    extra = [v for v in got if v not in want_set]
    assert not missing and not extra, (
        f"read-back mismatch: {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})")
    for e in expected:
        r = got[e["value"]]
        assert r.key == e.get("key"), f"{e['value']!r}: key {r.key!r} != {e.get('key')!r}"
        assert r.headers == [tuple(h) for h in e.get("headers") or []], (
            f"{e['value']!r}: headers {r.headers!r} != {e.get('headers')!r}")
        if "timestamp" in e:
            assert r.timestamp == e["timestamp"], f"{e['value']!r}: timestamp {r.timestamp} != {e['timestamp']}"
        if "partition" in e:
            assert r.partition == e["partition"], f"{e['value']!r}: partition {r.partition} != {e['partition']}"
        if "offset" in e:
            assert r.offset == e["offset"], f"{e['value']!r}: offset {r.offset} != {e['offset']}"
    return got


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something truthy; fail with ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def closed_port() -> int:
    """A localhost TCP port nobody listens on (bound then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Raw:
    """One plain Unix-socket connection speaking kafkad's framing by hand."""

    HDR = struct.Struct(">I")

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.timeout = timeout
        self._buf = b""
        self._next_id = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Raw":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_payload(self, payload: bytes) -> None:
        self.sock.sendall(self.HDR.pack(len(payload)) + payload)

    def send_obj(self, obj: Any) -> None:
        self.send_payload(msgpack.packb(obj, use_bin_type=True))

    def request(self, op: Any, args: Any = None, rid: Optional[int] = None) -> int:
        if rid is None:
            rid = self._next_id
            self._next_id += 1
        self.send_obj([rid, op, args])
        return rid

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise EOFError(f"EOF after {len(self._buf)} of {n} bytes")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv(self) -> Any:
        """The next frame, decoded (str stays str, bin becomes bytes)."""
        (n,) = self.HDR.unpack(self._read_exact(4))
        return msgpack.unpackb(self._read_exact(n), raw=False, strict_map_key=False)

    def recv_eof(self) -> bool:
        """True when the daemon closed the connection (nothing more to read)."""
        if self._buf:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def call(self, op: str, args: Any = None) -> Tuple[Optional[Dict[str, Any]], Any]:
        """Send one request and return (error, result) of ITS response;
        responses to other ids in between are an error here."""
        rid = self.request(op, args)
        resp = self.recv()
        assert isinstance(resp, list) and len(resp) == 3, f"not a response envelope: {resp!r}"
        assert resp[0] == rid, f"response id {resp[0]!r} != request id {rid} ({resp!r})"
        return resp[1], resp[2]

    def expect_error(self, op: str, args: Any, name: str) -> Dict[str, Any]:
        err, res = self.call(op, args)
        assert err is not None, f"{op} {args!r}: expected {name}, got result {res!r}"
        assert err.get("name") == name, f"{op} {args!r}: expected {name}, got {err!r}"
        assert res is None, f"{op}: error response with a result {res!r}"
        assert isinstance(err.get("code"), int) and isinstance(err.get("message"), str), err
        assert isinstance(err.get("retriable"), bool), err
        return err
