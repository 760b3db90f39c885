"""An in-process stand-in for kafkad that speaks protocol v1, for tests.

It is not a Kafka client: "producing" appends to in-memory partition logs.
It does model what the stubs depend on: pipelining, sequence numbers, report
runs (piggybacked and via parked ``poll_reports``), wait-mode results,
``flush``, ``max_pending`` back-pressure (it stops reading the connection),
per-message failures, whole-request errors and ``BAD_FRAME``.

>>> fake = FakeDaemon(topics={"t": 3}).start()
>>> client = kafkad.Client(fake.socket_path)
...
>>> fake.stop()
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import socket
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import msgpack

from ._codec import HEADER, FrameDecoder

__all__ = ["FakeDaemon", "StoredMessage"]

KAFKA = 10000
ERR_UNKNOWN_TOPIC = (KAFKA + 3, "UNKNOWN_TOPIC_OR_PART", False)
ERR_MSG_TIMED_OUT = (KAFKA - 192, "_MSG_TIMED_OUT", True)
ERR_UNKNOWN_PARTITION = (KAFKA - 190, "_UNKNOWN_PARTITION", False)
ERR_MSG_SIZE_TOO_LARGE = (KAFKA + 10, "MSG_SIZE_TOO_LARGE", False)


def _err(code: int, name: str, message: str = "", retriable: bool = False) -> Dict[str, Any]:
    return {"code": code, "name": name, "message": message, "retriable": retriable}


class StoredMessage:
    __slots__ = ("topic", "partition", "offset", "value", "key", "headers", "timestamp")

    def __init__(self, topic: str, partition: int, offset: int, value: Any, key: Any, headers: Any, timestamp: Any):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.value = value
        self.key = key
        self.headers = headers
        self.timestamp = timestamp

    def __repr__(self) -> str:
        return f"StoredMessage({self.topic}/{self.partition}@{self.offset} key={self.key!r} value={self.value!r:.40})"


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.dec = FrameDecoder()
        self.next_seq = 1
        self.ready: List[List[Any]] = []  # runs not yet collected
        self.pending = 0  # report-mode messages without an outcome or not collected
        self.undelivered: List[Tuple[Any, ...]] = []  # (ack, seq, topic, partition, msg, waiter)
        self.parked_poll: Optional[Tuple[int, int, float]] = None
        self.parked_flush: Optional[Tuple[int, float]] = None
        self.waiters: List[Dict[str, Any]] = []
        self.held: Optional[Tuple[int, Dict[str, Any]]] = None
        self.requests: List[Tuple[Any, str, Any]] = []
        self.wlock = threading.Lock()


class FakeDaemon:
    """A toy kafkad.

    :param topics: topic name -> partition count (other topics are unknown:
        their messages fail with ``UNKNOWN_TOPIC_OR_PART``).
    :param auto_deliver: deliver every message as soon as it is enqueued;
        when False, messages wait for :meth:`deliver` / :meth:`fail_pending`.
    :param share_seq_with_wait: wait-mode messages also consume sequence
        numbers (as one daemon implementation does; clients must cope).
    :param reject_topics: produce requests for these topics fail as a whole
        with ``INVALID_ARGUMENT``.
    """

    def __init__(
        self,
        topics: Optional[Dict[str, int]] = None,
        *,
        socket_path: Optional[str] = None,
        max_batch: int = 10000,
        max_pending: int = 100000,
        max_frame: int = 16 * 1024 * 1024,
        auto_deliver: bool = True,
        share_seq_with_wait: bool = True,
        reject_topics: Tuple[str, ...] = (),
        clusters: Tuple[str, ...] = ("main",),
        bootstrap: Optional[Dict[str, str]] = None,
        piggyback: bool = True,
    ) -> None:
        self.topics: Dict[str, int] = dict(topics or {"test": 4})
        if socket_path is None:
            self._tmpdir: Optional[str] = tempfile.mkdtemp(prefix="kafkad-fake-")
            socket_path = os.path.join(self._tmpdir, "kafkad.sock")
        else:
            self._tmpdir = None
        self.socket_path = socket_path
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.max_frame = max_frame
        self.auto_deliver = auto_deliver
        self.share_seq_with_wait = share_seq_with_wait
        self.reject_topics = set(reject_topics)
        self.clusters = list(clusters)
        self.bootstrap = dict(bootstrap or {c: "mock" for c in clusters})
        self.piggyback = piggyback
        self.log: Dict[Tuple[str, int], List[StoredMessage]] = {}
        self.lock = threading.RLock()
        self.conns: List[_Conn] = []
        self.requests: List[Tuple[Any, str, Any]] = []  # every request seen (id, op, args)
        self.counters = {"produced": 0, "delivered": 0, "delivery_failed": 0, "requests": 0, "bad_frames": 0}
        self._rr: Dict[str, int] = {}
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._listener: Optional[socket.socket] = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "FakeDaemon":
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(self.socket_path)
        ls.listen(64)
        ls.settimeout(0.05)
        self._listener = ls
        t = threading.Thread(target=self._accept_loop, name="fake-kafkad-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        if self._listener is not None:
            self._listener.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.sock.close()
                except OSError:
                    pass
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        if self._tmpdir:
            try:
                os.rmdir(self._tmpdir)
            except OSError:
                pass

    def __enter__(self) -> "FakeDaemon":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- test controls -----------------------------------------------------

    def messages(self, topic: str, partition: Optional[int] = None) -> List[StoredMessage]:
        with self.lock:
            if partition is not None:
                return list(self.log.get((topic, partition), []))
            out: List[StoredMessage] = []
            for (t, _p), msgs in sorted(self.log.items()):
                if t == topic:
                    out.extend(msgs)
            return out

    def wait_produced(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until the fake has received ``n`` messages in total (it reads
        requests on its own threads, so a client's send is not yet a receipt)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.counters["produced"] >= n:
                    return True
            time.sleep(0.002)
        return False

    def deliver(self) -> None:
        """Deliver every undelivered message."""
        with self.lock:
            for c in self.conns:
                self._deliver_conn(c, None)

    def fail_pending(self, code: int = ERR_MSG_TIMED_OUT[0], name: str = ERR_MSG_TIMED_OUT[1]) -> None:
        """Fail every undelivered message with a Kafka error."""
        with self.lock:
            for c in self.conns:
                self._deliver_conn(c, _err(code, name, "failed by the fake", True))

    def kill_connections(self) -> None:
        with self.lock:
            for c in self.conns:
                try:
                    c.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    # -- internals ---------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                s, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c = _Conn(s)
            with self.lock:
                self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), name="fake-kafkad-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _send(self, c: _Conn, value: Any) -> None:
        payload = msgpack.packb(value, use_bin_type=True)
        with c.wlock:
            try:
                c.sock.sendall(HEADER.pack(len(payload)) + payload)
            except OSError:
                pass

    def _serve(self, c: _Conn) -> None:
        c.sock.settimeout(None)
        try:
            while not self._stop.is_set():
                with self.lock:
                    self._housekeeping(c)
                    can_read = c.held is None
                if not can_read:
                    time.sleep(0.002)
                    continue
                r, _, _ = select.select([c.sock], [], [], 0.005)
                if not r:
                    continue
                try:
                    data = c.sock.recv(1 << 20)
                except OSError:
                    return
                if not data:
                    return
                c.dec.feed(data)
                try:
                    frames = c.dec.frames()
                except Exception as e:  # framing error
                    self.counters["bad_frames"] += 1
                    self._send(c, [None, _err(1, "BAD_FRAME", str(e)), None])
                    return
                for f in frames:
                    with self.lock:
                        self._request(c, f)
                    if c.held is not None:
                        # stop reading: the rest of the bytes stay buffered in the decoder
                        break
        finally:
            with self.lock:
                if c in self.conns:
                    self.conns.remove(c)
            try:
                c.sock.close()
            except OSError:
                pass

    def _housekeeping(self, c: _Conn) -> None:
        now = time.monotonic()
        if c.held is not None:
            rid, args = c.held
            n = len(args.get("messages") or [])
            if c.pending + n <= self.max_pending:
                c.held = None
                self._produce(c, rid, args)
                # frames that arrived behind the held one
                for f in c.dec.frames():
                    self._request(c, f)
                    if c.held is not None:
                        break
        if c.parked_poll is not None:
            rid, mx, deadline = c.parked_poll
            if c.ready or now >= deadline:
                c.parked_poll = None
                self._send(c, [rid, None, self._collect(c, mx)])
        if c.parked_flush is not None:
            rid, deadline = c.parked_flush
            if not c.undelivered or now >= deadline:
                c.parked_flush = None
                self._send(c, [rid, None, {"remaining": len(c.undelivered)}])

    def _collect(self, c: _Conn, mx: int) -> Dict[str, Any]:
        out: List[List[Any]] = []
        n = 0
        while c.ready and n < mx:
            run = c.ready[0]
            if n + run[1] > mx:
                k = mx - n
                out.append([run[0], k, run[2], run[3], run[4]])
                c.ready[0] = [run[0] + k, run[1] - k, run[2], run[3] + k if run[3] >= 0 else -1, run[4]]
                n += k
                break
            out.append(c.ready.pop(0))
            n += run[1]
        c.pending -= n
        return {"reports": out, "pending": len([u for u in c.undelivered if u[0] == "report"])}

    def _request(self, c: _Conn, f: Any) -> None:
        self.counters["requests"] += 1
        if type(f) is not list or len(f) != 3 or not isinstance(f[1], str):
            rid = f[0] if type(f) is list and f and isinstance(f[0], int) else None
            self._send(c, [rid, _err(2, "BAD_REQUEST", "envelope"), None])
            return
        rid, op, args = f
        args = args or {}
        self.requests.append((rid, op, args))
        c.requests.append((rid, op, args))
        cl = args.get("cluster")
        if cl is not None and cl not in self.clusters:
            self._send(c, [rid, _err(5, "UNKNOWN_CLUSTER", f"no cluster {cl}"), None])
            return
        if op == "hello":
            if not isinstance(args.get("version"), int) or args["version"] < 1:
                self._send(c, [rid, _err(6, "UNSUPPORTED_VERSION", "need version >= 1"), None])
                return
            self._send(
                c,
                [
                    rid,
                    None,
                    {
                        "version": 1,
                        "server": "fake-kafkad/0",
                        "max_frame": self.max_frame,
                        "max_batch": self.max_batch,
                        "max_pending": self.max_pending,
                        "clusters": self.clusters,
                        "default_cluster": self.clusters[0],
                    },
                ],
            )
        elif op == "ping":
            self._send(c, [rid, None, {}])
        elif op == "metadata":
            self._send(c, [rid, None, self._metadata(args)])
        elif op == "produce":
            msgs = args.get("messages")
            n = len(msgs) if isinstance(msgs, list) else 1
            if args.get("ack", "report") == "report" and c.pending + n > self.max_pending and n <= self.max_pending:
                c.held = (rid, args)
                return
            self._produce(c, rid, args)
        elif op == "poll_reports":
            mx = args.get("max", 65536)
            t = args.get("timeout_ms", 0)
            if c.ready or not t:
                self._send(c, [rid, None, self._collect(c, mx)])
            elif c.parked_poll is not None:
                self._send(c, [rid, _err(8, "INVALID_STATE", "a poll_reports is already parked"), None])
            else:
                c.parked_poll = (rid, mx, time.monotonic() + t / 1000.0)
        elif op == "flush":
            t = args.get("timeout_ms", 10000)
            if not c.undelivered:
                self._send(c, [rid, None, {"remaining": 0}])
            else:
                c.parked_flush = (rid, time.monotonic() + t / 1000.0)
        elif op == "stats":
            self._send(
                c,
                [
                    rid,
                    None,
                    {
                        "daemon": dict(self.counters, connections=len(self.conns)),
                        "clusters": {
                            name: {"bootstrap": self.bootstrap.get(name, ""), "outq_len": 0, "librdkafka": None}
                            for name in self.clusters
                            if args.get("cluster") in (None, name)
                        },
                    },
                ],
            )
        else:
            self._send(c, [rid, _err(3, "UNKNOWN_OP", op), None])

    def _metadata(self, args: Dict[str, Any]) -> Dict[str, Any]:
        names = args.get("topics")
        if names is None:
            names = sorted(self.topics)
        topics = []
        for name in names:
            if name in self.topics:
                parts = [
                    {"id": p, "leader": 1 + p % 3, "replicas": [1 + p % 3], "isrs": [1 + p % 3], "error": None}
                    for p in range(self.topics[name])
                ]
                topics.append({"name": name, "error": None, "partitions": parts})
            else:
                topics.append(
                    {"name": name, "error": _err(*ERR_UNKNOWN_TOPIC[:2], "unknown topic"), "partitions": []}
                )
        return {
            "cluster": args.get("cluster") or self.clusters[0],
            "brokers": [{"id": i, "host": "127.0.0.1", "port": 9091 + i} for i in (1, 2, 3)],
            "topics": topics,
        }

    def _partition(self, topic: str, m: Dict[str, Any], partitioner: str) -> int:
        n = self.topics[topic]
        if m.get("partition") is not None:
            return int(m["partition"])
        key = m.get("key")
        if partitioner == "pykafka_hashing" and key is not None:
            return int(hashlib.sha1(key).hexdigest(), 16) % n
        if partitioner in ("consistent", "murmur2", "fnv1a") or (key is not None and partitioner.endswith("_random")):
            return int(hashlib.md5(key or b"").hexdigest(), 16) % n
        if partitioner == "random" or key is None:
            return random.randrange(n)
        return int(hashlib.md5(key).hexdigest(), 16) % n

    def _produce(self, c: _Conn, rid: int, args: Dict[str, Any]) -> None:
        topic = args.get("topic")
        ack = args.get("ack", "report")
        if not isinstance(topic, str) or ack not in ("report", "none", "wait"):
            self._send(c, [rid, _err(4, "INVALID_ARGUMENT", "topic/ack"), None])
            return
        if topic in self.reject_topics:
            self._send(c, [rid, _err(4, "INVALID_ARGUMENT", f"topic {topic} rejected by the fake"), None])
            return
        msgs = args.get("messages")
        if msgs is None:
            msgs = [args]
        if not isinstance(msgs, list):
            self._send(c, [rid, _err(4, "INVALID_ARGUMENT", "messages"), None])
            return
        if len(msgs) > self.max_batch:
            self._send(c, [rid, _err(12, "TOO_LARGE", "batch too long"), None])
            return
        norm = []
        for m in msgs:
            if isinstance(m, (bytes, str)):
                m = {"value": m.encode() if isinstance(m, str) else m}
            elif not isinstance(m, dict):
                self._send(c, [rid, _err(4, "INVALID_ARGUMENT", "message element"), None])
                return
            norm.append(m)
        partitioner = args.get("partitioner") or "consistent_random"
        first = c.next_seq
        if ack == "report" or (ack == "wait" and self.share_seq_with_wait):
            c.next_seq += len(norm)
        waiter = None
        if ack == "wait":
            waiter = {"rid": rid, "results": [None] * len(norm), "left": len(norm)}
            c.waiters.append(waiter)
        for i, m in enumerate(norm):
            self.counters["produced"] += 1
            if topic in self.topics:
                part = self._partition(topic, m, partitioner)
            else:
                part = -1
            entry = (ack, first + i, topic, part, m, waiter, i)
            c.undelivered.append(entry)
            if ack == "report":
                c.pending += 1
        if ack == "report":
            res: Dict[str, Any] = {"count": len(norm), "seq": first, "reports": []}
        elif ack == "none":
            res = {"count": len(norm)}
        else:
            res = {}
        if self.auto_deliver:
            self._deliver_conn(c, None, send_waiters=False)
        if ack == "report":
            if self.piggyback:
                res["reports"] = self._collect(c, 1 << 30)["reports"]
            self._send(c, [rid, None, res])
        elif ack == "none":
            self._send(c, [rid, None, res])
        self._flush_waiters(c)

    def _deliver_conn(self, c: _Conn, error: Optional[Dict[str, Any]], send_waiters: bool = True) -> None:
        for ack, seq, topic, part, m, waiter, idx in c.undelivered:
            err = error
            off = -1
            if err is None:
                if topic not in self.topics:
                    err = _err(*ERR_UNKNOWN_TOPIC[:2], "unknown topic")
                elif not 0 <= part < self.topics[topic]:
                    err = _err(*ERR_UNKNOWN_PARTITION[:2], "unknown partition")
                else:
                    lg = self.log.setdefault((topic, part), [])
                    off = len(lg)
                    lg.append(StoredMessage(topic, part, off, m.get("value"), m.get("key"), m.get("headers"), m.get("timestamp")))
            if err is None:
                self.counters["delivered"] += 1
            else:
                self.counters["delivery_failed"] += 1
                part = part if part >= 0 else -1
            if ack == "report":
                r = c.ready[-1] if c.ready else None
                if (
                    r is not None
                    and r[0] + r[1] == seq
                    and r[2] == part
                    and r[4] == err
                    and ((r[3] < 0 and off < 0) or (r[3] >= 0 and r[3] + r[1] == off))
                ):
                    r[1] += 1
                else:
                    c.ready.append([seq, 1, part, off, err])
            elif ack == "wait":
                waiter["results"][idx] = [part, off, err]
                waiter["left"] -= 1
        c.undelivered = []
        if send_waiters:
            self._flush_waiters(c)

    def _flush_waiters(self, c: _Conn) -> None:
        # a waiter's response goes out once all its messages have an outcome
        done = [w for w in c.waiters if w["left"] == 0]
        c.waiters = [w for w in c.waiters if w["left"] > 0]
        for w in done:
            self._send(c, [w["rid"], None, {"count": len(w["results"]), "results": w["results"]}])
