"""Daemon-held consumers (protocol SPEC 4.8-4.16) for :class:`kafkad.Client`.

kafkad, not the app, is the Kafka consumer: :meth:`kafkad.Client.consumer`
attaches this connection to a consumer the daemon holds (creating it on
first use) and gets a handle.  The daemon leases each partition to one
attached connection at a time; a partition that moves away from a
connection which received messages beyond the last commit is rewound to the
committed offset first (at-least-once).

>>> with client.consumer("events", group="audit", auto_offset_reset="earliest") as c:
...     for batch in iter(lambda: c.consume(1000, timeout=1.0), []):
...         handle(batch)                   # Message(topic, partition, offset, ...)
...         c.commit()                      # what consume() returned so far

How the messages get here cheaply:

* One ``consume`` request returns up to ``fetch_max`` messages as msgpack
  arrays; the C unpacker builds the lists and each becomes a
  :class:`Message` (a tuple subclass) in one pass.
* Prefetch: whenever the local buffer holds no whole batch besides the one
  being handed out, the next ``consume`` request is already on its way (it
  waits at the daemon, ``timeout_ms``, until messages arrive), so the socket
  round trip overlaps with the app's processing of the current batch.
* :meth:`Consumer.poll` hands out one message from the local batch without
  any lock, I/O or bookkeeping; consumed positions (for :meth:`commit`) are
  folded in once per batch.

Commits are explicit and cover what the app *consumed* (returned by
``consume``/``poll``), never what is merely prefetched, so a crash between
prefetch and processing redelivers instead of losing.  ``auto_commit_interval_ms``
is therefore done here (a timer thread commits consumed positions), not by
the daemon's auto-commit, which commits everything handed out.

Rebalances: ``assigned`` / ``revoked`` / ``eof`` events arrive with consume
results (:attr:`Consumer.events`, or ``on_event``).  When a partition is
revoked, its messages still buffered here are dropped (the daemon rewinds it
for the next holder) and it can no longer be committed from here.
"""

from __future__ import annotations

import collections
import gc
import logging
import threading
import time
import weakref
from functools import partial
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Set,
    Tuple,
    Union,
)

from ._session import Req, ms
from .errors import ConnectionLost, KafkadError, NotAssigned, ProtocolViolation, UnknownHandle, error_from_map

if TYPE_CHECKING:  # pragma: no cover
    from .aio import AsyncClient
    from .client import Client

__all__ = [
    "Message",
    "Event",
    "Consumer",
    "AsyncConsumer",
    "OFFSET_BEGINNING",
    "OFFSET_END",
    "OFFSET_INVALID",
    "TopicPartition",
]

log = logging.getLogger("kafkad")

OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_INVALID = -1001  # "nothing committed" in committed() results

TopicPartition = Tuple[str, int]
OffsetsArg = Union[Mapping[TopicPartition, int], Iterable[Any], None]

PARK_MS = 5000  # how long a prefetch request may wait at the daemon
_CHECK_EVERY = 255  # poll() looks at the socket every 256 messages of a batch
DEFAULT_FETCH_MAX = 1000
DEFAULT_FETCH_BYTES = 4 << 20
_WIRE_OVERHEAD = 64  # generous per-message bytes in a consume result, beyond key+value

_RESP = 0
_SEEK = 1


class Message(NamedTuple):
    """One consumed message.

    ``timestamp`` is ms since the epoch (-1 when the broker has none);
    ``key``/``value`` are bytes or None; ``headers`` is None or a list of
    ``[name, value]`` pairs as sent by the daemon.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Optional[List[Any]]


class Event(NamedTuple):
    """A lease change or end of partition: ``type`` is ``"assigned"``,
    ``"revoked"`` or ``"eof"``; ``offset`` is the end offset for ``eof``,
    else -1."""

    type: str
    topic: str
    partition: int
    offset: int


_new_message = partial(tuple.__new__, Message)


def _topic_name(t: Any) -> str:
    if isinstance(t, (bytes, bytearray)):
        return bytes(t).decode("utf-8")
    if isinstance(t, str):
        return t
    raise TypeError(f"topic must be str or bytes, not {type(t).__name__}")


def _offset_value(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"an offset must be an int, not {type(v).__name__}")
    return v


def open_args(
    topic: Any,
    topics: Any,
    mode: str,
    group: Any,
    partitions: Optional[Iterable[int]],
    offsets: Any,
    auto_offset_reset: Any,
    reset_offset_on_start: bool,
    assignor: Optional[str],
    cluster: Optional[str],
    *,
    zookeeper_connect: Optional[str] = None,
    zookeeper_session_timeout_ms: Optional[int] = None,
    zookeeper_connection_timeout_ms: Optional[int] = None,
    rebalance_backoff_ms: Optional[int] = None,
    zookeeper_owners_layout: Optional[str] = None,
) -> Dict[str, Any]:
    """The ``consumer_open`` args for :meth:`kafkad.Client.consumer`'s arguments
    (the ``zookeeper_*``/``rebalance_backoff_ms`` ones are sent when given;
    the daemon checks them against the mode)."""
    if (topic is None) == (topics is None):
        raise ValueError("give exactly one of topic= or topics=")
    names = [_topic_name(topic)] if topic is not None else [_topic_name(t) for t in topics]
    if not names:
        raise ValueError("topics must not be empty")
    if mode not in ("simple", "group", "zookeeper"):
        raise ValueError(f"mode must be 'simple', 'group' or 'zookeeper', not {mode!r}")
    args: Dict[str, Any] = {"mode": mode}
    if len(names) == 1:
        args["topic"] = names[0]
    else:
        args["topics"] = names
    if group is not None:
        args["group"] = _topic_name(group)
    if partitions is not None:
        args["partitions"] = [int(p) for p in partitions]
    if offsets is not None:
        pairs = offsets.items() if isinstance(offsets, Mapping) else offsets
        args["offsets"] = [[int(p), _offset_value(o)] for p, o in pairs]
    if auto_offset_reset in ("earliest", "smallest", "beginning", OFFSET_BEGINNING):
        args["auto_offset_reset"] = "earliest"
    elif auto_offset_reset in ("latest", "largest", "end", OFFSET_END):
        args["auto_offset_reset"] = "latest"
    else:
        raise ValueError(f"auto_offset_reset must be 'earliest' or 'latest', not {auto_offset_reset!r}")
    if reset_offset_on_start:
        args["reset_offset_on_start"] = True
    if assignor is not None:
        args["assignor"] = assignor
    if cluster is not None:
        args["cluster"] = cluster
    if zookeeper_connect is not None:
        if isinstance(zookeeper_connect, (bytes, bytearray)):
            zookeeper_connect = zookeeper_connect.decode("utf-8")
        args["zookeeper_connect"] = str(zookeeper_connect)
    if zookeeper_owners_layout is not None:
        args["zookeeper_owners_layout"] = str(zookeeper_owners_layout)
    for name, v in (
        ("zookeeper_session_timeout_ms", zookeeper_session_timeout_ms),
        ("zookeeper_connection_timeout_ms", zookeeper_connection_timeout_ms),
        ("rebalance_backoff_ms", rebalance_backoff_ms),
    ):
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
            args[name] = v
    return args


def tp_offsets(offsets: Any, what: str) -> List[List[Any]]:
    """``[[topic, partition, offset], ...]`` from a dict {(topic, partition):
    offset}, an iterable of (topic, partition, offset) triples, or Messages
    (meaning "after this message")."""
    if isinstance(offsets, Message):
        offsets = [offsets]
    pairs: Iterable[Any] = (
        ((k[0], k[1], v) for k, v in offsets.items()) if isinstance(offsets, Mapping) else offsets
    )
    out: List[List[Any]] = []
    for e in pairs:
        if isinstance(e, Message):
            out.append([e.topic, e.partition, e.offset + 1])
            continue
        try:
            t, p, o = e
        except (TypeError, ValueError):
            raise TypeError(f"{what}: expected (topic, partition, offset) items, got {e!r}") from None
        out.append([_topic_name(t), int(p), _offset_value(o)])
    return out


class _Core:
    """I/O-free consumer state: the local buffer, events, consumed positions.

    Responses reach it through request hooks, in the order the daemon sent
    them (``inbox``); the owning thread applies them (:meth:`process`).
    """

    def __init__(self, fetch_max: int, fetch_bytes: int, on_event: Optional[Callable[[Event], Any]]) -> None:
        self.handle = 0
        self.key = ""
        self.attached = 0
        self.member_id: Optional[str] = None
        self.topics: List[str] = []
        self.group: Optional[str] = None
        self.fetch_max = max(1, int(fetch_max))
        self.fetch_bytes = max(1, int(fetch_bytes))
        self.on_event = on_event
        self.events: Deque[Event] = collections.deque(maxlen=100000)
        self.inbox: Deque[Tuple[int, Any]] = collections.deque()
        self.batches: Deque[List[Message]] = collections.deque()
        self.cur: List[Message] = []
        self.i = 0  # next index of cur to hand out
        self.folded = 0  # cur[:folded] is in pos
        self.pos: Dict[TopicPartition, int] = {}  # consumed: next offset per partition
        self.cpos: Dict[TopicPartition, int] = {}  # last committed from here
        self.assignment: Set[TopicPartition] = set()
        self.inflight: Optional[Req] = None
        self.error: Optional[KafkadError] = None
        self.closed = False
        self.track = False
        self.responses = 0  # consume results applied

    # -- hooks (called in dispatch order, client lock held) ------------------

    def on_consume(self, req: Req) -> None:
        if self.inflight is req:
            self.inflight = None
        self.inbox.append((_RESP, req))

    def on_seek(self, tps: Set[TopicPartition], req: Req) -> None:
        if req.error is None and req.exc is None:
            self.inbox.append((_SEEK, tps))

    # -- applying responses (owning thread, consumer lock held) --------------

    def process(self) -> None:
        inbox = self.inbox
        while inbox:
            kind, x = inbox.popleft()
            if kind == _SEEK:
                self._forget(x)
                continue
            req: Req = x
            if req.exc is not None or req.error is not None:
                if not self.closed:
                    exc = req.exc if req.exc is not None else error_from_map(req.error)
                    if self.error is None:
                        self.error = exc
                continue
            res = req.result
            self.responses += 1
            if not isinstance(res, dict):
                self.error = ProtocolViolation("consume result is not a map")
                continue
            evs = res.get("events")
            if evs:
                self._events(evs)
            msgs = res.get("messages")
            if msgs:
                topics = res.get("topics") or self.topics
                nogc = len(msgs) >= 1000 and gc.isenabled()
                if nogc:
                    gc.disable()  # one object per message: see Client._recv_nb
                try:
                    if len(topics) == 1:
                        t0 = topics[0]
                        for m in msgs:
                            m[0] = t0
                    else:
                        for m in msgs:
                            m[0] = topics[m[0]]
                    self.batches.append(list(map(_new_message, msgs)))
                except (TypeError, IndexError) as e:
                    self.error = ProtocolViolation(f"malformed consume result: {e}")
                finally:
                    if nogc:
                        gc.enable()

    def _events(self, evs: List[Any]) -> None:
        for e in evs:
            if not isinstance(e, dict):
                continue
            typ = str(e.get("type"))
            topic = e.get("topic")
            part = e.get("partition")
            if not isinstance(topic, str) or not isinstance(part, int):
                continue
            tp = (topic, part)
            if typ == "assigned":
                self.assignment.add(tp)
            elif typ == "revoked":
                self.assignment.discard(tp)
                # what is buffered of it was handed out under the old lease:
                # the daemon rewinds it for the next holder
                self._forget({tp})
            off = e.get("offset", -1)
            ev = Event(typ, topic, part, off if isinstance(off, int) else -1)
            if self.on_event is not None:
                try:
                    self.on_event(ev)
                except Exception:  # a callback must not break consuming
                    log.exception("kafkad: consumer on_event callback failed")
            else:
                self.events.append(ev)

    def _forget(self, tps: Set[TopicPartition]) -> None:
        """Drop buffered messages and consumed positions of these partitions
        (revoked, or seeked: what is buffered is stale)."""
        self.fold()
        if self.i < len(self.cur):
            rest = [m for m in self.cur[self.i :] if (m[0], m[1]) not in tps]
        else:
            rest = []
        self.cur = rest
        self.i = self.folded = 0
        if self.batches:
            kept = [[m for m in b if (m[0], m[1]) not in tps] for b in self.batches]
            self.batches = collections.deque(b for b in kept if b)
        for tp in tps:
            self.pos.pop(tp, None)
            self.cpos.pop(tp, None)

    # -- handing out ---------------------------------------------------------

    def fold(self) -> None:
        """Record the positions of what was handed out of the current batch."""
        cur = self.cur
        a, b = self.folded, self.i
        if b <= a:
            return
        self.folded = b
        if not self.track:
            return
        pos = self.pos
        if len(self.topics) == 1:
            t0 = self.topics[0]
            for p, o in {m[1]: m[2] for m in (cur if a == 0 and b == len(cur) else cur[a:b])}.items():
                pos[(t0, p)] = o + 1
        else:
            for k, o in {(m[0], m[1]): m[2] for m in cur[a:b]}.items():
                pos[k] = o + 1

    def next_batch(self) -> bool:
        """Make the next buffered batch current (the old one is all handed out)."""
        self.fold()
        if not self.batches:
            if self.i >= len(self.cur):
                self.cur = []
                self.i = self.folded = 0
            return False
        self.cur = self.batches.popleft()
        self.i = self.folded = 0
        return True

    def take(self, limit: int) -> List[Message]:
        """Up to ``limit`` buffered messages (possibly from several batches)."""
        out: List[Message] = []
        while len(out) < limit:
            cur, i = self.cur, self.i
            n = len(cur) - i
            if n <= 0:
                if not self.next_batch():
                    break
                continue
            room = limit - len(out)
            if i == 0 and n <= room and not out:
                out = cur
                self.i = len(cur)
            else:
                k = min(n, room)
                out.extend(cur[i : i + k])
                self.i = i + k
        if self.i >= len(self.cur):
            self.next_batch()
        return out

    def buffered(self) -> int:
        return len(self.cur) - self.i + sum(map(len, self.batches))

    def want_fetch(self) -> bool:
        """Send a consume request now?  One ahead: none in flight and no
        whole batch waiting besides the one being handed out."""
        return self.inflight is None and not self.batches and not self.closed and self.error is None

    def want(self, n: int, cap: int) -> None:
        """Fetch at least ``n`` messages per request from now on (bounded)."""
        if n > self.fetch_max:
            self.fetch_max = max(1, min(n, cap))

    def consume_args(self, timeout_ms: int) -> Dict[str, Any]:
        return {"handle": self.handle, "max": self.fetch_max, "max_bytes": self.fetch_bytes, "timeout_ms": timeout_ms}

    def raise_error(self) -> None:
        e = self.error
        if e is not None:
            self.error = None
            raise e

    def commit_list(self) -> List[List[Any]]:
        """Consumed positions not committed from here yet (held partitions)."""
        self.fold()
        out = []
        for tp, off in self.pos.items():
            if self.cpos.get(tp) != off and tp in self.assignment:
                out.append([tp[0], tp[1], off])
        return out

    def committed_from(self, res: Any, sent: List[List[Any]]) -> List[Tuple[str, int, int]]:
        offs = res.get("offsets") if isinstance(res, Mapping) else None
        if not isinstance(offs, list):
            offs = sent
        out = []
        for t, p, o in offs:
            self.cpos[(t, p)] = o
            out.append((t, p, o))
        return out

    def opened(self, res: Any, open_args: Mapping[str, Any]) -> None:
        if not isinstance(res, Mapping) or not isinstance(res.get("handle"), int):
            raise ProtocolViolation(f"consumer_open result without a handle: {res!r:.200}")
        self.handle = res["handle"]
        self.key = str(res.get("consumer", ""))
        self.attached = int(res.get("attached", 1) or 1)
        mid = res.get("member_id")
        self.member_id = mid if isinstance(mid, str) else None
        t = open_args.get("topics") or [open_args["topic"]]
        self.topics = sorted(t)
        self.group = open_args.get("group")
        self.track = self.group is not None


def _fetch_limits(client: Any, fetch_max: int, fetch_bytes: int) -> Tuple[int, int]:
    mf = client.hello.max_frame
    fb = max(1, min(fetch_bytes, mf // 4))
    fm = max(1, min(fetch_max, 1000000, (mf - fb) // _WIRE_OVERHEAD))
    return fm, fb


class Consumer:
    """A handle on a daemon-held consumer (from :meth:`kafkad.Client.consumer`).

    Not meant for concurrent use from several threads (one consuming thread;
    the auto-commit timer is handled internally).
    """

    def __init__(
        self,
        client: "Client",
        args: Dict[str, Any],
        *,
        auto_commit_interval_ms: int = 0,
        fetch_max: int = DEFAULT_FETCH_MAX,
        fetch_max_bytes: int = DEFAULT_FETCH_BYTES,
        on_event: Optional[Callable[[Event], Any]] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self._client = client
        fm, fb = _fetch_limits(client, fetch_max, fetch_max_bytes)
        self._cap = _fetch_limits(client, 1000000, fetch_max_bytes)[0]
        self._core = core = _Core(fm, fb, on_event)
        self._lock = threading.RLock()
        self._args = args
        self._timeout = client.timeout if timeout is None else timeout
        self.auto_commit_interval_ms = int(auto_commit_interval_ms or 0)
        if self.auto_commit_interval_ms < 0:
            raise ValueError("auto_commit_interval_ms must be >= 0")
        if self.auto_commit_interval_ms and args.get("group") is None:
            raise ValueError("auto_commit_interval_ms needs a group to commit to")
        # opening waits for metadata at the daemon; give it room
        wait = None if self._timeout is None else max(self._timeout, 15.0)
        res = client._call("consumer_open", args, wait)
        core.opened(res, args)
        self.last_commit_error: Optional[KafkadError] = None
        self._timer: Optional[threading.Event] = None
        if self.auto_commit_interval_ms:
            ev = threading.Event()
            self._timer = ev
            threading.Thread(
                target=_autocommit_main,
                args=(weakref.ref(self), ev, self.auto_commit_interval_ms / 1000.0),
                name="kafkad-autocommit",
                daemon=True,
            ).start()
            weakref.finalize(self, ev.set)
        with client._lock:
            self._fetch_locked(0)  # the first result brings the leases at once

    # -- properties ------------------------------------------------------------

    @property
    def handle(self) -> int:
        return self._core.handle

    @property
    def key(self) -> str:
        """The daemon's key of the shared consumer (cluster/mode/group/topics)."""
        return self._core.key

    @property
    def attached(self) -> int:
        """Connections attached to the shared consumer when this one attached."""
        return self._core.attached

    @property
    def member_id(self) -> Optional[str]:
        """The group member id the daemon registered (``zookeeper`` mode: the
        consumer id under ``/consumers/<group>/ids``), else None."""
        return self._core.member_id

    @property
    def topics(self) -> List[str]:
        return list(self._core.topics)

    @property
    def group(self) -> Optional[str]:
        return self._core.group

    @property
    def events(self) -> Deque[Event]:
        """Events not taken yet (when no ``on_event`` callback is set): pop
        them from the left, or ``clear()``."""
        return self._core.events

    @property
    def assignment(self) -> Set[TopicPartition]:
        """The partitions leased to this connection, as far as the events
        received so far tell."""
        return set(self._core.assignment)

    @property
    def closed(self) -> bool:
        return self._core.closed

    def positions(self) -> Dict[TopicPartition, int]:
        """Next offset per partition after what was consumed here (group
        consumers only: without a group nothing can be committed, and
        nothing is tracked)."""
        with self._lock:
            self._core.fold()
            return dict(self._core.pos)

    def __repr__(self) -> str:
        state = "closed" if self._core.closed else "open"
        return f"<kafkad.Consumer {self._core.key!r} handle={self._core.handle} {state}>"

    # -- I/O helpers -------------------------------------------------------------

    def _fetch_locked(self, park_ms: int = PARK_MS) -> None:
        """Send the next consume request if one is due (client lock held)."""
        core = self._core
        c = self._client
        if not core.want_fetch() or c._closed:
            return
        rid, req, payload = c._encode_call("consume", core.consume_args(park_ms))
        req.hook = core.on_consume
        core.inflight = req
        c._send_payload(payload)

    def _check(self) -> None:
        core = self._core
        if core.closed:
            raise UnknownHandle(f"consumer handle {core.handle} is closed")
        core.raise_error()

    def _recv_inflight(self) -> None:
        """Take in a response that may have arrived (a prefetched batch,
        lease events), without waiting."""
        if self._core.inflight is not None:
            c = self._client
            with c._lock:
                c._recv_nb()

    # -- consuming -------------------------------------------------------------

    def consume(self, max: int = 1000, timeout: Optional[float] = None) -> List[Message]:
        """Up to ``max`` messages; waits up to ``timeout`` seconds (None or
        negative: forever, 0: not at all) for at least one.  Returns ``[]``
        when none came in time."""
        if max < 1:
            raise ValueError("max must be >= 1")
        core = self._core
        core.want(max, self._cap)
        with self._lock:
            self._check()
            self._recv_inflight()
            core.process()
            out = core.take(max)
            if out:
                if core.want_fetch():
                    with self._client._lock:
                        self._fetch_locked()
                return out
        return self._wait_take(max, timeout)

    def poll(self, timeout: Optional[float] = None) -> Optional[Message]:
        """One message (from the local batch: cheap), or None after
        ``timeout`` seconds (None or negative: wait forever; 0: do not
        wait)."""
        core = self._core
        cur = core.cur
        i = core.i
        if i < len(cur) and i & _CHECK_EVERY:
            core.i = i + 1
            return cur[i]
        # now and then (and when the batch is used up): read what arrived, so
        # that a revoked partition's buffered messages are dropped early
        with self._lock:
            self._check()
            self._recv_inflight()
            core.process()
            out = core.take(1)
            if out:
                if core.want_fetch():
                    with self._client._lock:
                        self._fetch_locked()
                return out[0]
        got = self._wait_take(1, timeout)
        return got[0] if got else None

    def _wait_take(self, max: int, timeout: Optional[float]) -> List[Message]:
        """Wait for messages; the consumer lock is not held while sleeping
        (the auto-commit timer and other threads' commits go on)."""
        core = self._core
        c = self._client
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        step = PARK_MS / 1000.0
        while True:
            with c._lock:
                if not c._closed:
                    self._fetch_locked()
                    c._recv_nb()
                if not core.inbox and not c._closed:
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        return []
                    # wake up now and then: a prefetch request may need re-arming
                    c._wait_for(lambda: bool(core.inbox), now + step if deadline is None else min(deadline, now + step))
            with self._lock:
                if core.closed:
                    return []  # closed by another thread meanwhile
                core.process()
                out = core.take(max)
                if out:
                    if core.want_fetch():
                        with c._lock:
                            self._fetch_locked()
                    return out
                core.raise_error()
                if c._closed:
                    raise c._close_exc
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def wait_assignment(self, timeout: Optional[float] = None) -> Set[TopicPartition]:
        """Wait until some partition is leased here (up to ``timeout``
        seconds; None: forever) without handing out messages (they stay
        buffered); returns :attr:`assignment`."""
        core = self._core
        self._wait_state(lambda: bool(core.assignment), timeout)
        return set(core.assignment)

    def _wait_state(self, pred: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Apply consume results (buffering messages) until pred() or timeout."""
        core = self._core
        c = self._client
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while True:
            with self._lock:
                self._check()
                core.process()
                core.raise_error()
                if pred():
                    return True
            with c._lock:
                if c._closed:
                    raise c._close_exc
                self._fetch_locked()
                c._recv_nb()
                now = time.monotonic()
                if not core.inbox:
                    if deadline is not None and now >= deadline:
                        return False
                    until = now + PARK_MS / 1000.0
                    c._wait_for(lambda: bool(core.inbox), until if deadline is None else min(deadline, until))

    def __iter__(self) -> Iterator[Message]:
        """Messages, one by one, until the consumer is closed."""
        while not self._core.closed:
            m = self.poll(None)
            if m is not None:
                yield m

    # -- offsets ---------------------------------------------------------------

    def commit(self, offsets: OffsetsArg = None, *, asynchronous: bool = False) -> List[Tuple[str, int, int]]:
        """Commit offsets to the group; returns what was committed as
        ``(topic, partition, offset)`` triples.

        Default: the positions after everything consume()/poll() returned
        (partitions still leased here).  ``offsets``: a dict
        {(topic, partition): offset}, (topic, partition, offset) triples, or
        Messages (commits the offset after each).  A committed offset is the
        next one to read.  ``asynchronous=True`` does not wait (errors go to
        ``last_commit_error`` and the log).
        """
        core = self._core
        with self._lock:
            self._check()
            core.process()
            explicit = offsets is not None
            lst = tp_offsets(offsets, "offsets") if explicit else core.commit_list()
            if not lst:
                return []
            if asynchronous:
                self._send_commit(lst, wait=False)
                return [(t, p, o) for t, p, o in lst]
            try:
                return self._send_commit(lst, wait=True)
            except NotAssigned:
                if explicit:
                    raise
                # the lease of some partition moved and the revocation is not
                # here yet: commit the others one by one
                out: List[Tuple[str, int, int]] = []
                for e in lst:
                    try:
                        out.extend(self._send_commit([e], wait=True))
                    except NotAssigned:
                        core.pos.pop((e[0], e[1]), None)
                return out

    def _send_commit(self, lst: List[List[Any]], wait: bool) -> List[Tuple[str, int, int]]:
        core = self._core
        c = self._client
        args = {"handle": core.handle, "offsets": lst}
        if not wait:
            with c._lock:
                c._check_open()
                rid, req, payload = c._encode_call("commit", args)
                req.hook = partial(self._commit_done, lst)
                c._send_payload(payload)
                c._recv_nb()
            return []
        res = c._call("commit", args, self._timeout)
        return core.committed_from(res, lst)

    def _commit_done(self, lst: List[List[Any]], req: Req) -> None:
        if req.exc is not None or req.error is not None:
            exc = req.exc if req.exc is not None else error_from_map(req.error)
            self.last_commit_error = exc
            log.warning("kafkad: asynchronous commit failed: %s", exc)
            return
        self._core.committed_from(req.result, lst)

    def committed(self, partitions: Optional[Iterable[TopicPartition]] = None, timeout: float = 5.0) -> Dict[TopicPartition, int]:
        """The group's committed offsets ({(topic, partition): offset};
        ``OFFSET_INVALID`` (-1001) where nothing is committed).  Default:
        the partitions leased here."""
        args: Dict[str, Any] = {"handle": self._core.handle, "timeout_ms": max(1, ms(timeout))}
        if partitions is not None:
            args["partitions"] = [[_topic_name(t), int(p)] for t, p in partitions]
        self._check()
        wait = None if self._timeout is None else timeout + self._timeout
        res = self._client._call("committed", args, wait)
        offs = res.get("offsets") if isinstance(res, Mapping) else None
        if not isinstance(offs, list):
            raise ProtocolViolation("committed result without offsets")
        return {(t, p): o for t, p, o in offs}

    def seek(self, offsets: OffsetsArg) -> None:
        """Continue these partitions (leased here) at these offsets
        (``OFFSET_BEGINNING`` -2, ``OFFSET_END`` -1, or an offset): what is
        buffered of them is dropped.  Same argument shapes as :meth:`commit`
        (a Message means "after it")."""
        lst = tp_offsets(offsets, "offsets")
        if not lst:
            return
        core = self._core
        c = self._client
        tps = {(t, p) for t, p, _o in lst}
        with self._lock:
            self._check()
            deadline = None if self._timeout is None else time.monotonic() + self._timeout
            with c._lock:
                c._check_open()
                rid, req, payload = c._encode_call("seek", {"handle": core.handle, "offsets": lst})
                req.hook = partial(core.on_seek, tps)
                c._send_payload(payload)
                c._recv_nb()
                if not c._wait_for(lambda: req.done, deadline):
                    c._pending.pop(rid, None)
                    raise _timeout_exc("seek", self._timeout)
            req.outcome()
            core.process()

    def watermarks(self, topic: Union[str, bytes], partition: int, timeout: float = 5.0) -> Tuple[int, int]:
        """(low, high) offsets of a partition; high is the next offset to be written."""
        return self._client.watermarks(topic, partition, timeout, cluster=self._args.get("cluster"))

    def offsets_for_times(self, timestamps: Any, timeout: float = 5.0) -> Dict[TopicPartition, int]:
        """As :meth:`kafkad.Client.offsets_for_times`, on this consumer's
        cluster: seek to the result to read from a point in time."""
        return self._client.offsets_for_times(timestamps, timeout, cluster=self._args.get("cluster"))

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Commit consumed positions when auto-committing, then detach
        (``consumer_close``).  The partitions move to the other attached
        connections, rewound to the last commit; the last detach makes the
        daemon leave the group (unless the consumer is declared in its
        config)."""
        core = self._core
        with self._lock:
            if core.closed:
                return
            if self._timer is not None:
                self._timer.set()
            c = self._client
            if not c._closed:
                try:
                    if self.auto_commit_interval_ms:
                        self.commit()
                except KafkadError as e:
                    log.warning("kafkad: final commit failed: %s", e)
                core.closed = True
                try:
                    c._call("consumer_close", {"handle": core.handle}, self._timeout)
                except UnknownHandle:
                    pass
                except ConnectionLost:
                    pass
            core.closed = True
            core.batches.clear()
            core.cur = []
            core.i = core.folded = 0

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _auto_commit(self) -> None:
        if self._core.closed or self._client._closed:
            return
        with self._lock:
            try:
                # no inbox processing here: that belongs to the consuming thread
                lst = self._core.commit_list()
                if not lst:
                    return
                try:
                    self._send_commit(lst, wait=True)
                except NotAssigned:
                    for e in lst:
                        try:
                            self._send_commit([e], wait=True)
                        except NotAssigned:
                            pass
            except KafkadError as e:
                self.last_commit_error = e
                log.warning("kafkad: auto-commit failed: %s", e)


def _timeout_exc(op: str, timeout: Optional[float]) -> KafkadError:
    from .errors import TimedOut

    return TimedOut(f"no response to {op} within {timeout}s")


def _autocommit_main(ref: "weakref.ref[Consumer]", ev: threading.Event, interval: float) -> None:
    while not ev.wait(interval):
        c = ref()
        if c is None or c._core.closed:
            return
        try:
            c._auto_commit()
        except Exception:  # never let the timer thread die noisily
            log.exception("kafkad: auto-commit")
        del c


class AsyncConsumer:
    """The asyncio flavour of :class:`Consumer` (from
    ``await AsyncClient.consumer(...)``); same methods, as coroutines.
    ``auto_commit_interval_ms`` commits from ``consume``/``poll`` calls."""

    def __init__(
        self,
        client: "AsyncClient",
        args: Dict[str, Any],
        *,
        auto_commit_interval_ms: int = 0,
        fetch_max: int = DEFAULT_FETCH_MAX,
        fetch_max_bytes: int = DEFAULT_FETCH_BYTES,
        on_event: Optional[Callable[[Event], Any]] = None,
    ) -> None:
        self._client = client
        fm, fb = _fetch_limits(client, fetch_max, fetch_max_bytes)
        self._cap = _fetch_limits(client, 1000000, fetch_max_bytes)[0]
        self._core = _Core(fm, fb, on_event)
        self._args = args
        self.auto_commit_interval_ms = int(auto_commit_interval_ms or 0)
        if self.auto_commit_interval_ms and args.get("group") is None:
            raise ValueError("auto_commit_interval_ms needs a group to commit to")
        self._next_commit = 0.0
        self.last_commit_error: Optional[KafkadError] = None

    async def _open(self) -> "AsyncConsumer":
        t = self._client.timeout
        res = await self._client._call("consumer_open", self._args, None if t is None else max(t, 15.0))
        self._core.opened(res, self._args)
        self._next_commit = time.monotonic() + self.auto_commit_interval_ms / 1000.0
        self._fetch()
        return self

    handle = Consumer.handle
    key = Consumer.key
    member_id = Consumer.member_id
    topics = Consumer.topics
    group = Consumer.group
    events = Consumer.events
    assignment = Consumer.assignment
    closed = Consumer.closed

    def positions(self) -> Dict[TopicPartition, int]:
        self._core.fold()
        return dict(self._core.pos)

    def _fetch(self) -> None:
        core = self._core
        c = self._client
        if not core.want_fetch() or c._closed:
            return
        rid, req, payload = c._encode_call("consume", core.consume_args(PARK_MS))
        req.hook = core.on_consume
        core.inflight = req
        c._write(payload)

    def _check(self) -> None:
        core = self._core
        if core.closed:
            raise UnknownHandle(f"consumer handle {core.handle} is closed")
        core.raise_error()

    async def _maybe_autocommit(self) -> None:
        if self.auto_commit_interval_ms and time.monotonic() >= self._next_commit:
            self._next_commit = time.monotonic() + self.auto_commit_interval_ms / 1000.0
            try:
                await self.commit()
            except KafkadError as e:
                self.last_commit_error = e
                log.warning("kafkad: auto-commit failed: %s", e)

    async def consume(self, max: int = 1000, timeout: Optional[float] = None) -> List[Message]:
        """As :meth:`Consumer.consume`."""
        if max < 1:
            raise ValueError("max must be >= 1")
        core = self._core
        c = self._client
        core.want(max, self._cap)
        self._check()
        await self._maybe_autocommit()
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while True:
            core.process()
            out = core.take(max)
            if out:
                self._fetch()
                return out
            core.raise_error()
            if c._closed:
                raise c._close_exc
            self._fetch()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            step = PARK_MS / 1000.0
            await c._wait_until(lambda: bool(core.inbox) or c._closed, step if remaining is None else min(step, remaining))

    async def poll(self, timeout: Optional[float] = None) -> Optional[Message]:
        """As :meth:`Consumer.poll`."""
        core = self._core
        cur, i = core.cur, core.i
        if i < len(cur):
            core.i = i + 1
            return cur[i]
        got = await self.consume(1, timeout)
        return got[0] if got else None

    async def wait_assignment(self, timeout: Optional[float] = None) -> Set[TopicPartition]:
        """As :meth:`Consumer.wait_assignment`."""
        core = self._core
        c = self._client
        self._check()
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        core.process()
        while not core.assignment:
            if c._closed:
                raise c._close_exc
            self._fetch()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            step = PARK_MS / 1000.0
            await c._wait_until(lambda: bool(core.inbox) or c._closed, step if remaining is None else min(step, remaining))
            core.process()
            core.raise_error()
        return set(core.assignment)

    def __aiter__(self) -> "AsyncConsumer":
        return self

    async def __anext__(self) -> Message:
        while not self._core.closed:
            m = await self.poll(None)
            if m is not None:
                return m
        raise StopAsyncIteration

    async def commit(self, offsets: OffsetsArg = None) -> List[Tuple[str, int, int]]:
        """As :meth:`Consumer.commit` (always waits)."""
        core = self._core
        self._check()
        core.process()
        explicit = offsets is not None
        lst = tp_offsets(offsets, "offsets") if explicit else core.commit_list()
        if not lst:
            return []
        c = self._client
        try:
            res = await c._call("commit", {"handle": core.handle, "offsets": lst}, c.timeout)
            return core.committed_from(res, lst)
        except NotAssigned:
            if explicit:
                raise
            out: List[Tuple[str, int, int]] = []
            for e in lst:
                try:
                    res = await c._call("commit", {"handle": core.handle, "offsets": [e]}, c.timeout)
                    out.extend(core.committed_from(res, [e]))
                except NotAssigned:
                    core.pos.pop((e[0], e[1]), None)
            return out

    async def committed(
        self, partitions: Optional[Iterable[TopicPartition]] = None, timeout: float = 5.0
    ) -> Dict[TopicPartition, int]:
        """As :meth:`Consumer.committed`."""
        args: Dict[str, Any] = {"handle": self._core.handle, "timeout_ms": max(1, ms(timeout))}
        if partitions is not None:
            args["partitions"] = [[_topic_name(t), int(p)] for t, p in partitions]
        self._check()
        t = self._client.timeout
        res = await self._client._call("committed", args, None if t is None else timeout + t)
        offs = res.get("offsets") if isinstance(res, Mapping) else None
        if not isinstance(offs, list):
            raise ProtocolViolation("committed result without offsets")
        return {(tp, p): o for tp, p, o in offs}

    async def seek(self, offsets: OffsetsArg) -> None:
        """As :meth:`Consumer.seek`."""
        import asyncio

        lst = tp_offsets(offsets, "offsets")
        if not lst:
            return
        core = self._core
        c = self._client
        self._check()
        c._check_open()
        rid, req, payload = c._encode_call("seek", {"handle": core.handle, "offsets": lst})
        req.hook = partial(core.on_seek, {(t, p) for t, p, _o in lst})
        req.fut = asyncio.get_running_loop().create_future()
        c._write(payload)
        try:
            await asyncio.wait_for(asyncio.shield(req.fut), c.timeout)
        except asyncio.TimeoutError:
            c._pending.pop(rid, None)
            raise _timeout_exc("seek", c.timeout) from None
        req.outcome()
        core.process()

    async def watermarks(self, topic: Union[str, bytes], partition: int, timeout: float = 5.0) -> Tuple[int, int]:
        return await self._client.watermarks(topic, partition, timeout, cluster=self._args.get("cluster"))

    async def offsets_for_times(self, timestamps: Any, timeout: float = 5.0) -> Dict[TopicPartition, int]:
        return await self._client.offsets_for_times(timestamps, timeout, cluster=self._args.get("cluster"))

    async def close(self) -> None:
        """As :meth:`Consumer.close`."""
        core = self._core
        if core.closed:
            return
        c = self._client
        if not c._closed:
            if self.auto_commit_interval_ms:
                try:
                    await self.commit()
                except KafkadError as e:
                    log.warning("kafkad: final commit failed: %s", e)
            core.closed = True
            try:
                await c._call("consumer_close", {"handle": core.handle}, c.timeout)
            except (UnknownHandle, ConnectionLost):
                pass
        core.closed = True
        core.batches.clear()
        core.cur = []
        core.i = core.folded = 0

    async def __aenter__(self) -> "AsyncConsumer":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
