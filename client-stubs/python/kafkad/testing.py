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
import uuid
from typing import Any, Dict, List, Optional, Set, Tuple

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
        self.attaches: List["_FAttach"] = []
        self.parked_consumes: Dict[int, Tuple[int, int, int, float]] = {}  # handle -> (rid, max, max_bytes, deadline)


# ---------------------------------------------------------------------------
# consumers: a toy model of the daemon's (SPEC 4.8): one shared consumer per
# key, partitions leased to attached connections, rewound to the last commit
# when they move away from a connection that got messages beyond it.  There
# is no Kafka group: "group" mode reads every partition of its topics, and
# so does "zookeeper" mode (no ZooKeeper either: its member is alone in its
# group; connect strings in FakeDaemon.zookeeper_unreachable time out).

_CONSUMER_OPS = ("consumer_open", "consume", "commit", "committed", "seek", "watermarks", "offsets_for_times",
                 "consumer_close")
_PARKED = object()


class _OpError(Exception):
    def __init__(self, code: int, name: str, message: str = "", retriable: bool = False) -> None:
        super().__init__(message)
        self.err = _err(code, name, message, retriable)


def _invalid(message: str) -> _OpError:
    return _OpError(4, "INVALID_ARGUMENT", message)


class _FPart:
    __slots__ = ("tidx", "partition", "holder", "pos", "commit_pos", "next_hand", "eof_sent")

    def __init__(self, tidx: int, partition: int, pos: int) -> None:
        self.tidx = tidx
        self.partition = partition
        self.holder: Optional[_FAttach] = None
        self.pos = pos
        self.commit_pos: Optional[int] = None
        self.next_hand: Optional[int] = None
        self.eof_sent = False

    @property
    def dirty(self) -> bool:
        return self.next_hand is not None and self.commit_pos is not None and self.next_hand > self.commit_pos


class _FConsumer:
    def __init__(self, key: str, mode: str, group: Optional[str], topics: List[str]) -> None:
        self.key = key
        self.mode = mode
        self.group = group
        self.topics = topics
        self.member_id: Optional[str] = None
        self.parts: List[_FPart] = []
        self.attaches: List[_FAttach] = []


class _FAttach:
    def __init__(self, handle: int, conn: _Conn, consumer: _FConsumer) -> None:
        self.handle = handle
        self.conn = conn
        self.consumer = consumer
        self.events: List[Dict[str, Any]] = []
        self.rr = 0



class _ConsumerOps:
    """The consumer ops of :class:`FakeDaemon` (a mixin, for readability)."""

    # provided by FakeDaemon
    topics: Dict[str, int]
    clusters: List[str]
    log: Dict[Tuple[str, int], List["StoredMessage"]]
    lock: Any
    consumer_linger: bool
    group_offsets: Dict[Tuple[str, str, int], int]
    fconsumers: Dict[str, "_FConsumer"]
    handles: Dict[int, "_FAttach"]
    _next_handle: int
    _next_private: int
    zookeeper_unreachable: Set[str]

    def _send(self, c: _Conn, value: Any) -> None:  # pragma: no cover - FakeDaemon has it
        raise NotImplementedError



    def _attach_of(self, c: _Conn, args: Dict[str, Any]) -> _FAttach:
        h = args.get("handle")
        if not isinstance(h, int) or isinstance(h, bool):
            raise _invalid("handle: required (an integer)")
        a = self.handles.get(h)
        if a is None:
            raise _OpError(13, "UNKNOWN_HANDLE", f"no open consumer has handle {h}")
        if a.conn is not c:
            raise _OpError(14, "NOT_OWNER", f"consumer handle {h} belongs to another connection")
        return a

    def _log_len(self, topic: str, partition: int) -> int:
        return len(self.log.get((topic, partition), []))

    def _op_consumer_open(self, c: _Conn, rid: int, args: Dict[str, Any]) -> Any:
        mode = args.get("mode", "simple")
        if mode not in ("simple", "group", "zookeeper"):
            raise _invalid("mode: must be \"simple\", \"group\" or \"zookeeper\"")
        group = args.get("group")
        if group is not None and (not isinstance(group, str) or not group):
            raise _invalid("group: expected a string of 1..255 bytes")
        if mode in ("group", "zookeeper") and group is None:
            raise _invalid(f"group: required in {mode} mode")
        zk = args.get("zookeeper_connect")
        if mode == "zookeeper":
            if not isinstance(zk, str) or not zk:
                raise _invalid("zookeeper_connect: required in zookeeper mode (\"host:port[,host:port][/chroot]\")")
            if args.get("assignor", "range") not in ("range", "roundrobin"):
                raise _invalid("assignor: zookeeper mode takes \"range\" or \"roundrobin\"")
            if args.get("zookeeper_owners_layout", "pykafka-py3") not in ("pykafka-py3", "topic"):
                raise _invalid("zookeeper_owners_layout: expected \"pykafka-py3\" or \"topic\"")
            for k in ("zookeeper_session_timeout_ms", "zookeeper_connection_timeout_ms", "rebalance_backoff_ms"):
                v = args.get(k)
                if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                    raise _invalid(f"{k}: expected an integer >= 0")
        elif zk is not None:
            raise _invalid("zookeeper_connect: zookeeper mode only")
        topics = args.get("topics")
        if topics is None:
            t = args.get("topic")
            if not isinstance(t, str):
                raise _invalid("topic: required (a string), or topics (a list)")
            topics = [t]
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            raise _invalid("topics: expected a list of strings")
        topics = sorted(topics)
        if len(set(topics)) != len(topics):
            raise _invalid("topics: a topic is listed twice")
        if mode == "simple" and len(topics) != 1:
            raise _invalid("topics: a simple consumer reads exactly one topic")
        if mode == "zookeeper" and len(topics) != 1:
            raise _invalid("topics: a zookeeper-balanced consumer reads exactly one topic")
        parts = args.get("partitions")
        if parts is not None and (mode != "simple" or not isinstance(parts, list) or not parts):
            raise _invalid("partitions: a list of partition ids, simple mode only")
        offsets = args.get("offsets")
        if offsets is not None and (mode != "simple" or not isinstance(offsets, list)):
            raise _invalid("offsets: a list of [partition, offset], simple mode only")
        explicit: Dict[int, int] = {}
        for i, e in enumerate(offsets or []):
            if not (isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) and e[0] >= 0 and isinstance(e[1], int) and e[1] >= -2):
                raise _invalid(f"offsets[{i}]: expected [partition, offset >= -2]")
            explicit[e[0]] = e[1]
        reset = args.get("auto_offset_reset", "latest")
        if reset not in ("earliest", "latest"):
            raise _invalid("auto_offset_reset: expected \"earliest\" or \"latest\"")
        on_start = bool(args.get("reset_offset_on_start", False))
        if mode == "zookeeper" and zk in self.zookeeper_unreachable:
            raise _OpError(7, "TIMED_OUT", f"ZooKeeper {zk} not reachable", retriable=True)
        for t in topics:
            if t not in self.topics:
                raise _OpError(KAFKA + 3, "UNKNOWN_TOPIC_OR_PART", f"topic {t}: Broker: Unknown topic or partition")
        if parts is not None:
            for p in parts:
                if not isinstance(p, int) or p < 0:
                    raise _invalid("partitions: expected partition ids >= 0")
                if p >= self.topics[topics[0]]:
                    raise _OpError(KAFKA - 190, "_UNKNOWN_PARTITION", f"topic {topics[0]} has no partition {p}")
        key = f"{args.get('cluster') or self.clusters[0]}/{mode}/{group or ''}/{','.join(topics)}"
        if parts is not None:
            key += "/" + ",".join(map(str, parts))
        if mode == "simple" and group is None:
            self._next_private += 1
            key += f"#{self._next_private}"
        fc = self.fconsumers.get(key)
        if fc is None:
            fc = _FConsumer(key, mode, group, topics)
            if mode == "zookeeper":
                fc.member_id = f"{socket.gethostname()}:{uuid.uuid4()}"
            for ti, t in enumerate(topics):
                for p in (parts if parts is not None else range(self.topics[t])):
                    end = self._log_len(t, p)
                    start = 0 if reset == "earliest" else end
                    committed = self.group_offsets.get((group, t, p)) if group is not None else None
                    if p in explicit:
                        start = {-2: 0, -1: end}.get(explicit[p], explicit[p])
                    elif committed is not None and not on_start:
                        start = committed
                    fc.parts.append(_FPart(ti, p, start))
            self.fconsumers[key] = fc
        self._next_handle += 1
        a = _FAttach(self._next_handle, c, fc)
        fc.attaches.append(a)
        c.attaches.append(a)
        self.handles[a.handle] = a
        self._rebalance(fc)
        res: Dict[str, Any] = {"handle": a.handle, "consumer": key, "attached": len(fc.attaches)}
        if fc.member_id is not None:
            res["member_id"] = fc.member_id
        return res

    def _release(self, fc: _FConsumer, p: _FPart) -> None:
        if p.holder is None:
            return
        p.holder.events.append({"type": "revoked", "topic": fc.topics[p.tidx], "partition": p.partition})
        p.holder = None
        if p.dirty:
            p.pos = p.commit_pos  # type: ignore[assignment]
        p.next_hand = None

    def _rebalance(self, fc: _FConsumer) -> None:
        n = len(fc.attaches)
        if not n:
            return
        base, extra = divmod(len(fc.parts), n)
        order = sorted(fc.attaches, key=lambda a: -sum(p.holder is a for p in fc.parts))
        quota = {a.handle: base + (1 if i < extra else 0) for i, a in enumerate(order)}
        held = {a.handle: sum(p.holder is a for p in fc.parts) for a in order}
        for dirty_pass in (False, True):
            for a in order:
                for p in fc.parts:
                    if held[a.handle] <= quota[a.handle]:
                        break
                    if p.holder is a and p.dirty == dirty_pass:
                        self._release(fc, p)
                        held[a.handle] -= 1
        for p in fc.parts:
            if p.holder is not None:
                continue
            for a in order:
                if held[a.handle] < quota[a.handle]:
                    p.holder = a
                    held[a.handle] += 1
                    a.events.append({"type": "assigned", "topic": fc.topics[p.tidx], "partition": p.partition})
                    break

    def _detach(self, a: _FAttach, leave: bool) -> None:
        fc = a.consumer
        self.handles.pop(a.handle, None)
        for p in fc.parts:
            if p.holder is a:
                self._release(fc, p)
        if a in fc.attaches:
            fc.attaches.remove(a)
        if fc.attaches:
            self._rebalance(fc)
        elif leave:
            self.fconsumers.pop(fc.key, None)

    def _has_output(self, a: _FAttach) -> bool:
        if a.events:
            return True
        fc = a.consumer
        return any(p.holder is a and p.pos < self._log_len(fc.topics[p.tidx], p.partition) for p in fc.parts)

    def _take(self, a: _FAttach, mx: int, max_bytes: int) -> Dict[str, Any]:
        fc = a.consumer
        mine = [p for p in fc.parts if p.holder is a]
        take = [0] * len(mine)
        total = nbytes = 0
        progress = True
        while progress and total < mx and nbytes < max_bytes:
            progress = False
            for j in range(len(mine)):
                if total >= mx or nbytes >= max_bytes:
                    break
                idx = (a.rr + j) % len(mine)
                p = mine[idx]
                lg = self.log.get((fc.topics[p.tidx], p.partition), [])
                if p.pos + take[idx] >= len(lg):
                    continue
                m = lg[p.pos + take[idx]]
                size = len(m.value or b"") + len(m.key or b"")
                if nbytes and nbytes + size > max_bytes:
                    nbytes = max_bytes
                    break
                nbytes += size
                take[idx] += 1
                total += 1
                progress = True
        a.rr += 1
        msgs: List[List[Any]] = []
        for idx, p in enumerate(mine):
            t = fc.topics[p.tidx]
            lg = self.log.get((t, p.partition), [])
            for m in lg[p.pos : p.pos + take[idx]]:
                ts = m.timestamp if isinstance(m.timestamp, int) else -1
                hdrs = [[h[0], h[1]] for h in m.headers] if m.headers else None
                msgs.append([p.tidx, p.partition, m.offset, ts, m.key, m.value, hdrs])
            if take[idx]:
                if p.commit_pos is None:
                    p.commit_pos = p.pos
                p.pos += take[idx]
                p.next_hand = p.pos
                p.eof_sent = False
            if p.pos >= len(lg) and not p.eof_sent and p.next_hand is not None:
                p.eof_sent = True
                a.events.append({"type": "eof", "topic": t, "partition": p.partition, "offset": p.pos})
        events, a.events = a.events, []
        return {"topics": list(fc.topics), "messages": msgs, "events": events}

    def _op_consume(self, c: _Conn, rid: int, args: Dict[str, Any]) -> Any:
        a = self._attach_of(c, args)
        mx = args.get("max", 1000)
        mb = args.get("max_bytes", 1 << 20)
        t = args.get("timeout_ms", 0)
        if not all(isinstance(v, int) for v in (mx, mb, t)) or mx < 1 or mb < 1 or t < 0:
            raise _invalid("max: 1..1000000, max_bytes: 1..max_frame/2, timeout_ms: 0..3600000")
        if a.handle in c.parked_consumes:
            raise _OpError(8, "INVALID_STATE", "a consume is already waiting on this handle")
        if t == 0 or self._has_output(a):
            return self._take(a, mx, mb)
        c.parked_consumes[a.handle] = (rid, mx, mb, time.monotonic() + t / 1000.0)
        return _PARKED

    @staticmethod
    def _tp_list(args: Dict[str, Any], key: str, with_offset: bool) -> List[List[Any]]:
        lst = args.get(key)
        if not isinstance(lst, list):
            raise _invalid(f"{key}: required (a list)")
        for i, e in enumerate(lst):
            n = 3 if with_offset else 2
            ok = isinstance(e, list) and len(e) == n and isinstance(e[0], str) and isinstance(e[1], int) and e[1] >= 0
            if ok and with_offset:
                ok = isinstance(e[2], int) and e[2] >= -2
            if not ok:
                raise _invalid(f"{key}[{i}]: expected [topic, partition{', offset' if with_offset else ''}]")
        return lst

    def _held(self, a: _FAttach, topic: str, partition: int) -> _FPart:
        fc = a.consumer
        for p in fc.parts:
            if fc.topics[p.tidx] == topic and p.partition == partition and p.holder is a:
                return p
        raise _OpError(15, "NOT_ASSIGNED", f"{topic}[{partition}] is not leased to this connection")

    def _op_commit(self, c: _Conn, rid: int, args: Dict[str, Any]) -> Any:
        a = self._attach_of(c, args)
        fc = a.consumer
        if "offsets" in args:
            lst = self._tp_list(args, "offsets", True)
            for i, e in enumerate(lst):
                if e[2] < 0:
                    raise _invalid(f"offsets[{i}]: a commit needs an offset >= 0")
        else:
            lst = [[fc.topics[p.tidx], p.partition, p.next_hand] for p in fc.parts if p.holder is a and p.next_hand is not None]
        if fc.group is None:
            raise _OpError(8, "INVALID_STATE", "this consumer has no group: nothing to commit to")
        parts = [self._held(a, t, p) for t, p, _o in lst]
        for part, (t, p, o) in zip(parts, lst):
            self.group_offsets[(fc.group, t, p)] = o
            part.commit_pos = o
        return {"offsets": [[t, p, o] for t, p, o in lst]}

    def _op_committed(self, c: _Conn, rid: int, args: Dict[str, Any]) -> Any:
        a = self._attach_of(c, args)
        fc = a.consumer
        if fc.group is None:
            raise _OpError(8, "INVALID_STATE", "this consumer has no group: nothing is committed")
        if "partitions" in args:
            tps = [(t, p) for t, p in self._tp_list(args, "partitions", False)]
        else:
            tps = [(fc.topics[p.tidx], p.partition) for p in fc.parts if p.holder is a]
        return {"offsets": [[t, p, self.group_offsets.get((fc.group, t, p), -1001)] for t, p in tps]}

    def _op_seek(self, c: _Conn, rid: int, args: Dict[str, Any]) -> Any:
        a = self._attach_of(c, args)
        lst = self._tp_list(args, "offsets", True)
        parts = [self._held(a, t, p) for t, p, _o in lst]
        for part, (t, p, o) in zip(parts, lst):
            end = self._log_len(t, p)
            part.pos = {-2: 0, -1: end}.get(o, o)
            part.commit_pos = None
            part.next_hand = None
            part.eof_sent = False
        return {}

    def _op_watermarks(self, c: _Conn, rid: int, args: Dict[str, Any]) -> Any:
        t = args.get("topic")
        p = args.get("partition")
        if not isinstance(t, str) or not t:
            raise _invalid("topic: required (a topic name)")
        if not isinstance(p, int) or p < 0:
            raise _invalid("partition: required (an integer >= 0)")
        if t not in self.topics:
            raise _OpError(KAFKA + 3, "UNKNOWN_TOPIC_OR_PART", f"watermarks of {t}[{p}]: Broker: Unknown topic or partition")
        if p >= self.topics[t]:
            raise _OpError(KAFKA - 190, "_UNKNOWN_PARTITION", f"watermarks of {t}[{p}]: Local: Unknown partition")
        return {"low": 0, "high": self._log_len(t, p)}

    def _op_offsets_for_times(self, c: _Conn, rid: int, args: Dict[str, Any]) -> Any:
        asked = args.get("timestamps")
        if not isinstance(asked, list) or not asked:
            raise _invalid("timestamps: required (a non-empty list)")
        out = []
        for i, e in enumerate(asked):
            if not (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and e[0]
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in e[1:]) and e[1] >= 0 and e[2] >= -2):
                raise _invalid(f"timestamps[{i}]: expected [topic, partition, offset (>= 0, or -2 earliest, -1 latest)]")
            t, p, ts = e
            if t not in self.topics:
                raise _OpError(KAFKA + 3, "UNKNOWN_TOPIC_OR_PART", f"offsets_for_times of {t}[{p}]: Broker: Unknown topic or partition")
            if p >= self.topics[t]:
                raise _OpError(KAFKA - 190, "_UNKNOWN_PARTITION", f"offsets_for_times of {t}[{p}]: Local: Unknown partition")
            with self.lock:
                lg = list(self.log.get((t, p), []))
            if ts < 0:
                off = 0 if ts == -2 else len(lg)
            else:  # a message without a timestamp counts as stamped 0 here
                off = next((m.offset for m in lg if (m.timestamp or 0) >= ts), -1)
            out.append([t, p, off])
        return {"offsets": out}

    def _op_consumer_close(self, c: _Conn, rid: int, args: Dict[str, Any]) -> Any:
        a = self._attach_of(c, args)
        park = c.parked_consumes.pop(a.handle, None)
        if park is not None:
            self._send(c, [park[0], None, self._take(a, park[1], park[2])])
        if a in c.attaches:
            c.attaches.remove(a)
        self._detach(a, leave=True)
        return {}

    def append(
        self,
        topic: str,
        partition: int,
        value: Optional[bytes],
        key: Optional[bytes] = None,
        headers: Optional[List[Tuple[str, Optional[bytes]]]] = None,
        timestamp: Optional[int] = None,
    ) -> int:
        """Write a message straight into a partition log (as if produced);
        returns its offset."""
        with self.lock:
            lg = self.log.setdefault((topic, partition), [])
            off = len(lg)
            lg.append(StoredMessage(topic, partition, off, value, key, headers, timestamp))
            return off


class FakeDaemon(_ConsumerOps):
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
        consumer_linger: bool = False,
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
        # consumers (SPEC 4.8-4.15)
        self.consumer_linger = consumer_linger
        self.group_offsets: Dict[Tuple[str, str, int], int] = {}  # (group, topic, partition) -> committed
        self.fconsumers: Dict[str, _FConsumer] = {}
        self.handles: Dict[int, _FAttach] = {}
        self._next_handle = 0
        self._next_private = 0
        self.zookeeper_unreachable: Set[str] = set()  # zookeeper_connect strings that time out

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
                for a in list(c.attaches):
                    self._detach(a, leave=not self.consumer_linger)
                c.attaches = []
                c.parked_consumes = {}
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
        for h, (rid, mx, mb, deadline) in list(c.parked_consumes.items()):
            a = self.handles.get(h)
            if a is None:
                del c.parked_consumes[h]
                continue
            if self._has_output(a) or now >= deadline:
                del c.parked_consumes[h]
                self._send(c, [rid, None, self._take(a, mx, mb)])
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
        elif op in _CONSUMER_OPS:
            try:
                res = getattr(self, "_op_" + op)(c, rid, args)
            except _OpError as e:
                self._send(c, [rid, e.err, None])
                return
            if res is not _PARKED:
                self._send(c, [rid, None, res])
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

