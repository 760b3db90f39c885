"""PyKafka's consumers (``SimpleConsumer``, ``BalancedConsumer``,
``ManagedBalancedConsumer``) on kafkad's daemon-held consumers.

Each consumer owns one connection to kafkad and one daemon consumer handle
(:class:`kafkad.consumer.Consumer`).  Offsets follow PyKafka: the consumer
tracks the *last consumed* offset per partition (``held_offsets``),
``commit_offsets()`` commits last consumed + 1, ``reset_offsets()`` sets the
last consumed offset (an int, or ``OffsetType.EARLIEST``/``LATEST``, looked up
as PyKafka does) and commits, auto-commit commits what the app consumed.

A ``SimpleConsumer`` starts where PyKafka's does: with a consumer group, at
the committed offsets (partitions without one are reset to
``auto_offset_reset`` and that is committed at once); without a group, at
offset 0 of each partition (``auto_offset_reset`` applies when 0 is gone);
``reset_offset_on_start`` resets every partition first.

``ManagedBalancedConsumer`` (``get_balanced_consumer(managed=True)``) is the
daemon's Kafka-coordinated group member; the ZooKeeper ``BalancedConsumer``
(``managed=False``, PyKafka's default) is the daemon's ``zookeeper`` mode: the
daemon registers in ZooKeeper and owns partitions exactly as PyKafka's
BalancedConsumer does, so both can share a group.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import namedtuple
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from .. import errors as _kerr
from ..client import Client
from ..consumer import OFFSET_INVALID, Consumer, Event, open_args
from ..errors import KafkadError
from .common import OffsetType
from .exceptions import (
    ConsumerStoppedException,
    KafkaException,
    RequestTimedOut,
    UnicodeException,
    from_kafkad,
)
from .membershipprotocol import RangeProtocol, assignor_name, zookeeper_assignor
from .protocol import Message

if TYPE_CHECKING:  # pragma: no cover
    from .client import Cluster
    from .partition import Partition
    from .topic import Topic

__all__ = [
    "SimpleConsumer",
    "BalancedConsumer",
    "ManagedBalancedConsumer",
    "ConsumerNotSupportedError",
    "ConsumedMessage",
    "OffsetFetchPartitionResponse",
]

log = logging.getLogger(__name__)

MAGIC_OFFSETS = (OffsetType.EARLIEST, OffsetType.LATEST)
_FIRST_ASSIGNMENT_WAIT = 30.0  # seconds a balanced consumer's start() waits for partitions
_LEASE_WAIT = 5.0  # ... when other connections share the daemon's group member

OffsetFetchPartitionResponse = namedtuple("OffsetFetchPartitionResponse", ["offset", "metadata", "err"])


class ConsumerNotSupportedError(KafkaException, NotImplementedError):
    """The consumer kind is not available from kafkad (the daemon answered
    ``NOT_SUPPORTED``, e.g. a daemon older than its ZooKeeper mode)."""


def _translate(err: BaseException) -> Exception:
    """A PyKafka exception for a kafkad error on the consumer side."""
    if isinstance(err, KafkaException):
        return err
    exc: KafkaException
    if isinstance(err, (_kerr.KafkaError, _kerr.ConnectionLost, _kerr.TooLarge)):
        return from_kafkad(err)
    if isinstance(err, _kerr.NotSupported):
        exc = ConsumerNotSupportedError(err.message or str(err))
    elif isinstance(err, _kerr.TimedOut):
        exc = RequestTimedOut(err.message or str(err))
    else:
        exc = KafkaException(str(err))
    if isinstance(err, KafkadError):
        exc.kafkad_error = err
    exc.__cause__ = err
    return exc


def _valid_int(param: Any, allow_zero: bool = False, allow_negative: bool = False) -> int:
    if isinstance(param, bool) or not isinstance(param, (int, float)):
        raise TypeError(f"Expected integer but found argument of type '{type(param)}'")
    if not allow_negative and param < 0:
        raise ValueError(f"Expected nonnegative number but got '{param}'")
    if not allow_zero and param == 0:
        raise ValueError(f"Expected nonzero number but got '{param}'")
    return int(param)


def _group_name(consumer_group: Any) -> Optional[bytes]:
    if not consumer_group:
        return None
    s = consumer_group.decode("utf-8") if isinstance(consumer_group, (bytes, bytearray)) else str(consumer_group)
    try:
        return s.encode("ascii")
    except UnicodeEncodeError:
        raise UnicodeException(f"Consumer group name '{consumer_group}' contains non-ascii characters") from None


def _reset_name(auto_offset_reset: Any) -> str:
    if auto_offset_reset == OffsetType.EARLIEST:
        return "earliest"
    if auto_offset_reset == OffsetType.LATEST:
        return "latest"
    raise ValueError(f"auto_offset_reset must be OffsetType.EARLIEST or OffsetType.LATEST, not {auto_offset_reset!r}")


class ConsumedMessage(Message):
    """PyKafka's ``Message`` as a consumer returns it, plus ``headers``
    (``[[name, value], ...]`` or None; PyKafka 2.8 has no headers)."""

    __slots__ = ["headers"]
    headers: Optional[List[Any]]


def _pykafka_message(m: Any, partition: Any) -> ConsumedMessage:
    """Build the Message without running its constructor (hot path)."""
    msg = ConsumedMessage.__new__(ConsumedMessage)
    msg.compression_type = 0
    msg.partition_key = m[4]
    msg.value = m[5]
    msg.offset = m[2]
    msg.partition_id = m[1]
    msg.partition = partition
    msg.produce_attempt = 0
    msg.delivery_report_q = None
    ts = m[3]
    msg.protocol_version = 1 if ts >= 0 else 0
    msg.timestamp = ts if ts >= 0 else 0
    msg.headers = m[6]
    return msg


class _DaemonConsumer:
    """What the three consumer classes share: the kafkad connection and
    handle, PyKafka's offset bookkeeping and its consume()/iteration."""

    _mode = "simple"

    def _setup(
        self,
        topic: "Topic",
        cluster: "Cluster",
        consumer_group: Any,
        auto_commit_enable: bool,
        auto_commit_interval_ms: int,
        queued_max_messages: int,
        fetch_message_max_bytes: int,
        auto_offset_reset: Any,
        consumer_timeout_ms: int,
        reset_offset_on_start: bool,
        deserializer: Optional[Callable[[Any, Any], Tuple[Any, Any]]],
    ) -> None:
        self._cluster = cluster
        self._topic = topic
        self._topic_name = topic.name.decode("utf-8")
        self._consumer_group = _group_name(consumer_group)
        self._auto_commit_enable = bool(auto_commit_enable)
        self._auto_commit_interval_ms = _valid_int(auto_commit_interval_ms)
        self._queued_max_messages = _valid_int(queued_max_messages)
        self._fetch_message_max_bytes = _valid_int(fetch_message_max_bytes)
        self._auto_offset_reset = auto_offset_reset
        self._reset_name = _reset_name(auto_offset_reset)
        self._consumer_timeout_ms = _valid_int(consumer_timeout_ms, allow_zero=True, allow_negative=True)
        self._reset_offset_on_start = bool(reset_offset_on_start)
        self._deserializer = deserializer
        self._reset_offset_on_fetch = True
        self._running = False
        self._conn: Optional[Client] = None
        self._kc: Optional[Consumer] = None
        self._last: Dict[int, int] = {}  # partition id -> last offset consumed (PyKafka's counter)
        self._state_lock = threading.RLock()
        self._generation_id = -1
        self._consumer_id = b""

    # -- properties ------------------------------------------------------------

    @property
    def topic(self) -> "Topic":
        """The topic this consumer consumes."""
        return self._topic

    @property
    def consumer_id(self) -> bytes:
        return self._consumer_id

    @consumer_id.setter
    def consumer_id(self, value: bytes) -> None:
        self._consumer_id = value

    @property
    def generation_id(self) -> int:
        return self._generation_id

    @generation_id.setter
    def generation_id(self, value: int) -> None:
        self._generation_id = _valid_int(value, allow_zero=True, allow_negative=True)

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} at {hex(id(self))} (consumer_group={self._consumer_group!r})>"

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _held_ids(self) -> List[int]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _partition(self, pid: int) -> Any:
        return self._topic.partitions.get(pid)

    # -- connection ------------------------------------------------------------

    def _open_extra(self) -> Dict[str, Any]:
        """Mode-specific ``consumer_open`` args (keywords of ``open_args``)."""
        return {}

    def _open(self, **extra: Any) -> None:
        """Connect to kafkad and attach to the daemon consumer."""
        cl = self._cluster
        try:
            conn = Client(cl.socket_path, cluster=cl.cluster_name, timeout=cl._timeout, linger_ms=0, background=False)
        except KafkadError as e:
            raise _translate(e) from e
        try:
            args = open_args(
                self._topic_name,
                None,
                self._mode,
                self._consumer_group.decode("ascii") if self._consumer_group else None,
                extra.pop("partitions", None),
                extra.pop("offsets", None),
                self._reset_name,
                self._reset_offset_on_start,
                extra.pop("assignor", None),
                cl.cluster_name,
                **self._open_extra(),
            )
            interval = self._auto_commit_interval_ms if (self._auto_commit_enable and self._consumer_group) else 0
            self._kc = Consumer(
                conn,
                args,
                auto_commit_interval_ms=interval,
                fetch_max=max(100, min(self._queued_max_messages, 10000)),
                fetch_max_bytes=max(1 << 16, min(self._fetch_message_max_bytes * 4, 4 << 20)),
                on_event=self._on_event,
            )
        except BaseException as e:
            conn.close()
            if isinstance(e, KafkadError):
                raise _translate(e) from e
            raise
        self._conn = conn

    def _close(self) -> None:
        kc, conn = self._kc, self._conn
        self._kc = None
        self._conn = None
        try:
            if kc is not None:
                kc.close()  # commits consumed offsets first when auto-committing
        except KafkadError as e:
            log.warning("stopping %r: %s", self, e)
        finally:
            if conn is not None:
                conn.close()

    def _on_event(self, ev: Event) -> None:
        """Called while the native consumer applies a consume result."""

    def _native(self) -> Consumer:
        kc = self._kc
        if kc is None or not self._running:
            raise ConsumerStoppedException()
        return kc

    # -- consuming ---------------------------------------------------------------

    def consume(self, block: bool = True, unblock_event: Optional[threading.Event] = None) -> Optional[Message]:
        """One message, or None: when ``block=False`` and none is buffered,
        or when ``consumer_timeout_ms`` (> 0) passed without one.  Blocks
        forever otherwise."""
        kc = self._native()
        limit = self._timeout_limit()
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            if not block:
                step: Optional[float] = 0.0
            elif deadline is None:
                step = 1.0
            else:
                step = max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                m = kc.poll(step)
            except KafkadError as e:
                if not self._running:
                    raise ConsumerStoppedException() from e
                raise _translate(e) from e
            self._after_poll()
            if m is not None:
                break
            if not self._running:
                raise ConsumerStoppedException()
            if not block or (deadline is not None and time.monotonic() >= deadline):
                return None
            if unblock_event is not None and unblock_event.is_set():
                return None
        pid = m[1]
        self._last[pid] = m[2]
        msg = _pykafka_message(m, self._partition(pid))
        if self._deserializer is not None:
            msg.value, msg.partition_key = self._deserializer(msg.value, msg.partition_key)
        return msg

    def _timeout_limit(self) -> Optional[float]:
        """How long a blocking consume() waits (None: forever).  PyKafka's
        SimpleConsumer waits forever unless consumer_timeout_ms > 0."""
        return self._consumer_timeout_ms / 1000.0 if self._consumer_timeout_ms > 0 else None

    def _after_poll(self) -> None:
        """Hook: work to do outside the native consumer's lock."""

    def __del__(self) -> None:
        # as PyKafka: a dropped consumer stops (committing when auto-committing)
        try:
            if self._running:
                self.stop()
        except Exception:  # interpreter shutdown, half-built object
            pass

    def __iter__(self) -> Iterator[Message]:
        """Messages until ``consumer_timeout_ms`` passes without one (forever
        without a timeout)."""
        while True:
            message = self.consume(block=True)
            if not message:
                return
            yield message

    # -- offsets -----------------------------------------------------------------

    @property
    def held_offsets(self) -> Optional[Dict[int, int]]:
        """Partition id -> last offset consumed (``OffsetType.EARLIEST`` when
        it is -1, i.e. nothing before the start)."""
        out = {}
        for pid in self._held_ids():
            v = self._last.get(pid)
            if v is None:
                v = self._initial_last(pid)
            out[pid] = OffsetType.EARLIEST if v == -1 else v
        return out

    def _initial_last(self, pid: int) -> int:
        return -1

    def _partition_ids(self, pairs: Iterable[Tuple[Any, Any]], what: str) -> List[Tuple[int, Any]]:
        held = set(self._held_ids())
        out = []
        for p, off in pairs:
            pid = p if isinstance(p, int) else getattr(p, "id", None)
            if pid not in held or (not isinstance(p, int) and getattr(p, "topic", self._topic) is not self._topic):
                raise KafkaException(f"Unknown partition supplied to {what}\n{p!r}")
            out.append((pid, off))
        return out

    def commit_offsets(self, partition_offsets: Optional[Iterable[Tuple[Any, int]]] = None) -> None:
        """Commit the last consumed offset + 1 of each partition (or the given
        ``(partition, offset)`` pairs, committed as they are)."""
        if not self._consumer_group:
            raise Exception("consumer group must be specified to commit offsets")
        kc = self._native()
        if partition_offsets is None:
            pairs = [(pid, self._last[pid] + 1) for pid in self._held_ids() if pid in self._last]
        else:
            pairs = []
            for pid, off in self._partition_ids(partition_offsets, "commit_offsets"):
                pairs.append((pid, off if off is not None else self._last.get(pid, -1) + 1))
        if not pairs:
            return
        t = self._topic_name
        try:
            kc.commit([(t, pid, max(0, off)) for pid, off in pairs])
        except KafkadError as e:
            raise _translate(e) from e

    def reset_offsets(self, partition_offsets: Optional[Iterable[Tuple[Any, Any]]] = None) -> None:
        """Set partitions' last consumed offsets, and commit (with a group).

        Each value is an offset (the last one consumed: consuming continues
        after it) or ``OffsetType.EARLIEST``/``LATEST`` (the earliest /
        next offset, looked up).  Default: every partition to
        ``auto_offset_reset``.
        """
        kc = self._native()
        if partition_offsets is None:
            pairs = [(pid, self._auto_offset_reset) for pid in self._held_ids()]
        else:
            pairs = self._partition_ids(partition_offsets, "reset_offsets")
        log.info("Resetting offsets for %s partitions", len(pairs))
        targets: Dict[int, int] = {}
        times = {pid: off for pid, off in pairs if isinstance(off, dt.datetime)}
        if times:
            # the first record at or after the time; none that late: the end
            t = self._topic_name
            try:
                found = kc.offsets_for_times([(t, pid, ts) for pid, ts in times.items()])
                late = [(t, pid, OffsetType.LATEST) for (_t, pid), off in found.items() if off < 0]
                if late:
                    found.update(kc.offsets_for_times(late))
            except KafkadError as e:
                raise _translate(e) from e
            targets.update({pid: off - 1 for (_t, pid), off in found.items()})
        for pid, off in pairs:
            if isinstance(off, dt.datetime):
                continue
            if isinstance(off, bool) or not isinstance(off, int):
                raise ValueError(f"Invalid offset value encountered in reset_offsets:\n\tPartition {pid} got offset '{off}'.")
            if off in MAGIC_OFFSETS:
                try:
                    low, high = kc.watermarks(self._topic_name, pid)
                except KafkadError as e:
                    raise _translate(e) from e
                targets[pid] = (low if off == OffsetType.EARLIEST else high) - 1
            elif off < -2:
                raise ValueError(f"Invalid offset value encountered in reset_offsets:\n\tPartition {pid} got offset '{off}'.")
            else:
                targets[pid] = off
        if not targets:
            return
        with self._state_lock:
            try:
                kc.seek([(self._topic_name, pid, last + 1) for pid, last in sorted(targets.items())])
            except KafkadError as e:
                raise _translate(e) from e
            self._last.update(targets)
        if self._consumer_group:
            self.commit_offsets()

    def fetch_offsets(self) -> List[Tuple[int, Any]]:
        """The group's committed offsets of this consumer's partitions, as
        ``(partition id, response)`` with ``response.offset`` (-1: none).
        With ``reset_offset_on_fetch`` (the default) consuming continues from
        them, and partitions without one are reset to ``auto_offset_reset``,
        as in PyKafka."""
        return self._fetch_offsets(seek=True)

    def _fetch_offsets(self, seek: bool) -> List[Tuple[int, Any]]:
        if not self._consumer_group:
            raise Exception("consumer group must be specified to fetch offsets")
        kc = self._native()
        ids = self._held_ids()
        if not ids:
            return []
        try:
            got = kc.committed([(self._topic_name, pid) for pid in ids])
        except KafkadError as e:
            raise _translate(e) from e
        out = []
        missing = []
        found = {}
        for pid in ids:
            off = got.get((self._topic_name, pid), OFFSET_INVALID)
            if off < 0:
                missing.append((pid, self._auto_offset_reset))
                out.append((pid, OffsetFetchPartitionResponse(-1, b"", 0)))
            else:
                found[pid] = off
                out.append((pid, OffsetFetchPartitionResponse(off, b"", 0)))
        if not self._reset_offset_on_fetch:
            return out
        if found:
            with self._state_lock:
                if seek:
                    try:
                        kc.seek([(self._topic_name, pid, off) for pid, off in sorted(found.items())])
                    except KafkadError as e:
                        raise _translate(e) from e
                self._last.update({pid: off - 1 for pid, off in found.items()})
        if missing:
            self.reset_offsets(missing)
        return out


class SimpleConsumer(_DaemonConsumer):
    """PyKafka's non-balancing consumer: the given partitions (default all)
    of one topic.  Arguments as PyKafka 2.8; the fetching ones
    (``num_consumer_fetchers``, ``fetch_min_bytes``, ``fetch_wait_max_ms``,
    ``fetch_error_backoff_ms``, ``offsets_channel_backoff_ms``,
    ``offsets_commit_max_retries``, ``compacted_topic``) are accepted: the
    daemon's librdkafka consumer does that work.
    """

    _mode = "simple"

    def __init__(
        self,
        topic: "Topic",
        cluster: "Cluster",
        consumer_group: Any = None,
        partitions: Optional[Iterable[Any]] = None,
        fetch_message_max_bytes: int = 1024 * 1024,
        num_consumer_fetchers: int = 1,
        auto_commit_enable: bool = False,
        auto_commit_interval_ms: int = 60 * 1000,
        queued_max_messages: int = 2000,
        fetch_min_bytes: int = 1,
        fetch_error_backoff_ms: int = 500,
        fetch_wait_max_ms: int = 100,
        offsets_channel_backoff_ms: int = 1000,
        offsets_commit_max_retries: int = 5,
        auto_offset_reset: int = OffsetType.EARLIEST,
        consumer_timeout_ms: int = -1,
        auto_start: bool = True,
        reset_offset_on_start: bool = False,
        compacted_topic: bool = False,
        generation_id: int = -1,
        consumer_id: bytes = b"",
        deserializer: Optional[Callable[[Any, Any], Tuple[Any, Any]]] = None,
        reset_offset_on_fetch: bool = True,
    ) -> None:
        self._setup(
            topic, cluster, consumer_group, auto_commit_enable, auto_commit_interval_ms, queued_max_messages,
            fetch_message_max_bytes, auto_offset_reset, consumer_timeout_ms, reset_offset_on_start, deserializer,
        )
        _valid_int(num_consumer_fetchers)
        _valid_int(fetch_min_bytes)
        _valid_int(fetch_wait_max_ms, allow_zero=True)
        _valid_int(offsets_channel_backoff_ms)
        _valid_int(offsets_commit_max_retries, allow_zero=True)
        self._reset_offset_on_fetch = reset_offset_on_fetch
        self._explicit_partitions = partitions is not None
        if partitions is None:
            ids = sorted(topic.partitions)
        else:
            ids = []
            for p in partitions:
                pid = p if isinstance(p, int) else p.id
                if pid not in topic.partitions:
                    raise KafkaException(f"Unknown partition {p!r} of topic {topic.name!r}")
                if pid not in ids:
                    ids.append(pid)
        self._ids = ids
        if auto_start:
            self.start()

    @property
    def partitions(self) -> Dict[int, "Partition"]:
        """Partition id -> Partition this consumer reads."""
        return {pid: self._topic.partitions[pid] for pid in self._ids if pid in self._topic.partitions}

    def _held_ids(self) -> List[int]:
        return list(self._ids)

    def start(self) -> None:
        """Attach to kafkad and position every partition as PyKafka does."""
        with self._state_lock:
            if self._running:
                return
            self._last = {pid: -1 for pid in self._ids}
            extra: Dict[str, Any] = {}
            if self._explicit_partitions:
                extra["partitions"] = list(self._ids)
            from_zero = not self._consumer_group or not self._reset_offset_on_fetch
            if from_zero and not self._reset_offset_on_start:
                # PyKafka without a group (or not taking its offsets) fetches
                # from offset 0, resetting to auto_offset_reset only when 0 is
                # out of range
                extra["offsets"] = [(pid, 0) for pid in self._ids]
            self._open(**extra)
            self._running = True
            try:
                if self._reset_offset_on_start:
                    self.reset_offsets()
                elif self._consumer_group is not None:
                    # the daemon consumer starts at the committed offsets already
                    self._fetch_offsets(seek=False)
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop consuming (committing first when auto-committing) and detach."""
        with self._state_lock:
            was = self._running
            self._running = False
            if was or self._kc is not None:
                self._close()

    def cleanup(self) -> None:
        pass


class _BalancedBase(_DaemonConsumer):
    """Shared by the balanced consumers: partitions come and go as the
    daemon's group membership (and its per-connection leases) decide."""

    def _init_balanced(
        self,
        topic: "Topic",
        cluster: "Cluster",
        consumer_group: Any,
        fetch_message_max_bytes: int,
        num_consumer_fetchers: int,
        auto_commit_enable: bool,
        auto_commit_interval_ms: int,
        queued_max_messages: int,
        auto_offset_reset: int,
        consumer_timeout_ms: int,
        rebalance_max_retries: int,
        rebalance_backoff_ms: int,
        reset_offset_on_start: bool,
        post_rebalance_callback: Optional[Callable[..., Any]],
        membership_protocol: Any,
        deserializer: Optional[Callable[[Any, Any], Tuple[Any, Any]]],
    ) -> None:
        if not consumer_group:
            raise ValueError("a balanced consumer needs a consumer_group")
        self._setup(
            topic, cluster, consumer_group, auto_commit_enable, auto_commit_interval_ms, queued_max_messages,
            fetch_message_max_bytes, auto_offset_reset, consumer_timeout_ms, reset_offset_on_start, deserializer,
        )
        _valid_int(num_consumer_fetchers)
        _valid_int(rebalance_max_retries, allow_zero=True)
        _valid_int(rebalance_backoff_ms)
        self._membership_protocol = membership_protocol
        self._assignor = assignor_name(membership_protocol)
        self._post_rebalance_callback = post_rebalance_callback
        self._held: Set[int] = set()
        self._rebalanced = False
        self._old_offsets: Dict[int, int] = {}
        self._initial: Dict[int, int] = {}
        self._reset_ids: Set[int] = set()
        self._assigned_once = False

    def _held_ids(self) -> List[int]:
        return sorted(self._held)

    def _timeout_limit(self) -> Optional[float]:
        # PyKafka's balanced consumers: only -1 waits forever (0: no wait)
        return None if self._consumer_timeout_ms == -1 else max(0, self._consumer_timeout_ms) / 1000.0

    @property
    def partitions(self) -> Dict[int, "Partition"]:
        """Partition id -> Partition currently assigned to this consumer."""
        return {pid: self._topic.partitions[pid] for pid in sorted(self._held) if pid in self._topic.partitions}

    @property
    def held_offsets(self) -> Optional[Dict[int, int]]:
        if self._kc is None:
            return None
        return super().held_offsets

    def _on_event(self, ev: Event) -> None:
        if ev.topic != self._topic_name or ev.type == "eof":
            return
        if not self._rebalanced:
            self._old_offsets = {pid: self._last.get(pid, -1) for pid in self._held}
        if ev.type == "assigned":
            if self._reset_offset_on_start and not self._assigned_once:
                # the daemon resets the first assignment's partitions
                self._reset_ids.add(ev.partition)
            self._held.add(ev.partition)
            self._last.pop(ev.partition, None)
            self._initial.pop(ev.partition, None)
        else:
            self._held.discard(ev.partition)
            self._last.pop(ev.partition, None)
        self._rebalanced = True

    def _initial_last(self, pid: int) -> int:
        """Before anything is consumed from a newly assigned partition: the
        committed offset - 1, else the auto_offset_reset position - 1."""
        if pid in self._initial:
            return self._initial[pid]
        kc = self._kc
        v = -1
        if kc is not None:
            try:
                off = kc.committed([(self._topic_name, pid)]).get((self._topic_name, pid), OFFSET_INVALID)
                if off < 0 or pid in self._reset_ids:
                    low, high = kc.watermarks(self._topic_name, pid)
                    off = low if self._reset_name == "earliest" else high
                v = off - 1
            except KafkadError as e:
                log.warning("held_offsets of partition %s: %s", pid, e)
                return -1
        self._initial[pid] = v
        return v

    def _after_poll(self) -> None:
        if not self._rebalanced:
            return
        self._rebalanced = False
        if self._held:
            self._assigned_once = True
        cb = self._post_rebalance_callback
        if cb is None:
            return
        old = {pid: (OffsetType.EARLIEST if v == -1 else v) for pid, v in self._old_offsets.items()}
        new = self.held_offsets or {}
        try:
            reset = cb(self, old, new)
        except Exception:
            log.exception("post rebalance callback threw an exception")
            raise
        if reset:
            self.reset_offsets([(self._topic.partitions[pid], off) for pid, off in reset.items()])

    def start(self) -> None:
        """Join the group (through kafkad)."""
        with self._state_lock:
            if self._running:
                return
            self._held = set()
            self._last = {}
            self._initial = {}
            self._open(assignor=self._assignor)
            self._running = True
            # PyKafka's start() returns once the group assigned partitions
            kc = self._kc
            assert kc is not None
            # joining takes a while for a new group member; another connection
            # attached to the daemon's member already leases partitions to
            # this one (or none: more consumers than partitions) right away
            try:
                if kc.attached <= 1:
                    kc.wait_assignment(self._first_assignment_wait())
                else:
                    core = kc._core
                    kc._wait_state(lambda: bool(core.assignment) or core.responses > 0, _LEASE_WAIT)
            except KafkadError as e:
                self.stop()
                raise _translate(e) from e
            self._after_poll()

    def _first_assignment_wait(self) -> float:
        """How long start() waits for the first partitions when this is the
        daemon member's only connection."""
        return _FIRST_ASSIGNMENT_WAIT

    def stop(self) -> None:
        """Leave the group (committing first when auto-committing)."""
        with self._state_lock:
            was = self._running
            self._running = False
            if was or self._kc is not None:
                self._close()
            self._held = set()

    def commit_offsets(self, partition_offsets: Optional[Iterable[Tuple[Any, int]]] = None) -> None:
        if self._kc is None:
            raise KafkaException("Cannot commit offsets - consumer not started")
        super().commit_offsets(partition_offsets)

    def reset_offsets(self, partition_offsets: Optional[Iterable[Tuple[Any, Any]]] = None) -> None:
        if self._kc is None:
            raise ConsumerStoppedException("Internal consumer is stopped")
        super().reset_offsets(partition_offsets)


class ManagedBalancedConsumer(_BalancedBase):
    """PyKafka's Kafka-coordinated balanced consumer: kafkad's group mode.

    The daemon is one member of ``consumer_group`` per host (however many
    connections attach) and spreads its partitions over the attached
    consumers.  ``membership_protocol`` picks the assignor (``RangeProtocol``
    -> range, ``RoundRobinProtocol`` -> roundrobin).  Heartbeats and session
    timeouts are the daemon's librdkafka settings.
    """

    _mode = "group"

    def __init__(
        self,
        topic: "Topic",
        cluster: "Cluster",
        consumer_group: Any,
        fetch_message_max_bytes: int = 1024 * 1024,
        num_consumer_fetchers: int = 1,
        auto_commit_enable: bool = False,
        auto_commit_interval_ms: int = 60 * 1000,
        queued_max_messages: int = 2000,
        fetch_min_bytes: int = 1,
        fetch_error_backoff_ms: int = 500,
        fetch_wait_max_ms: int = 100,
        offsets_channel_backoff_ms: int = 1000,
        offsets_commit_max_retries: int = 5,
        auto_offset_reset: int = OffsetType.EARLIEST,
        consumer_timeout_ms: int = -1,
        rebalance_max_retries: int = 5,
        rebalance_backoff_ms: int = 2 * 1000,
        auto_start: bool = True,
        reset_offset_on_start: bool = False,
        post_rebalance_callback: Optional[Callable[..., Any]] = None,
        use_rdkafka: bool = False,
        compacted_topic: bool = True,
        heartbeat_interval_ms: int = 3000,
        membership_protocol: Any = RangeProtocol,
        deserializer: Optional[Callable[[Any, Any], Tuple[Any, Any]]] = None,
        reset_offset_on_fetch: bool = True,
    ) -> None:
        self._init_balanced(
            topic, cluster, consumer_group, fetch_message_max_bytes, num_consumer_fetchers, auto_commit_enable,
            auto_commit_interval_ms, queued_max_messages, auto_offset_reset, consumer_timeout_ms,
            rebalance_max_retries, rebalance_backoff_ms, reset_offset_on_start, post_rebalance_callback,
            membership_protocol, deserializer,
        )
        self._reset_offset_on_fetch = reset_offset_on_fetch
        _valid_int(heartbeat_interval_ms)
        if auto_start:
            self.start()


def _kazoo_connect_string(zk: Any) -> str:
    """The connect string of a ``kazoo.client.KazooClient`` (its ``hosts``
    (host, port) pairs and ``chroot``), for the daemon's own ZooKeeper
    session; ValueError when it cannot be read."""
    hosts = getattr(zk, "hosts", None)
    if isinstance(hosts, str) and hosts:
        return hosts
    parts: List[str] = []
    if isinstance(hosts, (list, tuple)):
        for h in hosts:
            if isinstance(h, (list, tuple)) and len(h) == 2 and isinstance(h[0], str) and isinstance(h[1], int):
                parts.append(f"[{h[0]}]:{h[1]}" if ":" in h[0] else f"{h[0]}:{h[1]}")
            elif isinstance(h, str) and h:
                parts.append(h)
            else:
                parts = []
                break
    if not parts:
        raise ValueError(
            f"zookeeper={zk!r}: kafkad cannot use a client's ZooKeeper session (the daemon is the group "
            "member and opens its own), and the hosts of this object cannot be read; pass "
            "zookeeper_connect='host:port[,host:port][/chroot]' instead"
        )
    chroot = getattr(zk, "chroot", None)
    return ",".join(parts) + (chroot if isinstance(chroot, str) and chroot.startswith("/") else "")


class BalancedConsumer(_BalancedBase):
    """PyKafka's ZooKeeper-balanced consumer: kafkad's ``zookeeper`` mode.

    The daemon (not this process) is the group member: it registers
    ``/consumers/<group>/ids/<hostname>:<uuid4>`` in ZooKeeper, takes the
    owner nodes of its share of the partitions (``membership_protocol``:
    ``RangeProtocol`` or ``RoundRobinProtocol``, decided exactly as PyKafka
    2.8 does, so kafkad and PyKafka members share a group) and leases them to
    the attached connections like its other consumers.  Offsets are
    committed to Kafka under ``consumer_group``, as PyKafka does.

    ZooKeeper: ``zookeeper_connect``, else ``zookeeper_hosts``, else the
    ``KafkaClient``'s ``zookeeper_hosts``, else ``127.0.0.1:2181``
    (PyKafka's default).  A ``zookeeper=`` KazooClient only gives its hosts:
    the daemon opens its own session.  ``zookeeper_connection_timeout_ms``
    bounds the daemon's connecting (``TIMED_OUT`` -> ``RequestTimedOut``);
    ``zookeeper_session_timeout_ms`` (kafkad's addition) its session;
    ``zookeeper_owners_layout`` (kafkad's addition): where owner nodes go,
    ``"pykafka-py3"`` (the daemon's default: ``owners/b'<topic>'``, where
    PyKafka on Python 3 has them) or ``"topic"`` (PyKafka on Python 2).
    ``rebalance_max_retries`` is accepted: the daemon retries taking owner
    nodes (every ``rebalance_backoff_ms``) until it gets them.
    ``consumer_id`` / ``member_id`` is the daemon's id in ZooKeeper.
    """

    _mode = "zookeeper"

    def __init__(
        self,
        topic: "Topic",
        cluster: "Cluster",
        consumer_group: Any,
        fetch_message_max_bytes: int = 1024 * 1024,
        num_consumer_fetchers: int = 1,
        auto_commit_enable: bool = False,
        auto_commit_interval_ms: int = 60 * 1000,
        queued_max_messages: int = 2000,
        fetch_min_bytes: int = 1,
        fetch_error_backoff_ms: int = 500,
        fetch_wait_max_ms: int = 100,
        offsets_channel_backoff_ms: int = 1000,
        offsets_commit_max_retries: int = 5,
        auto_offset_reset: int = OffsetType.EARLIEST,
        consumer_timeout_ms: int = -1,
        rebalance_max_retries: int = 5,
        rebalance_backoff_ms: int = 2 * 1000,
        zookeeper_connection_timeout_ms: int = 6 * 1000,
        zookeeper_connect: Optional[str] = None,
        zookeeper_hosts: Optional[str] = None,
        zookeeper: Any = None,
        auto_start: bool = True,
        reset_offset_on_start: bool = False,
        post_rebalance_callback: Optional[Callable[..., Any]] = None,
        use_rdkafka: bool = False,
        compacted_topic: bool = False,
        membership_protocol: Any = RangeProtocol,
        deserializer: Optional[Callable[[Any, Any], Tuple[Any, Any]]] = None,
        reset_offset_on_fetch: bool = True,
        zookeeper_session_timeout_ms: Optional[int] = None,
        zookeeper_owners_layout: Optional[str] = None,
    ) -> None:
        self._init_balanced(
            topic, cluster, consumer_group, fetch_message_max_bytes, num_consumer_fetchers, auto_commit_enable,
            auto_commit_interval_ms, queued_max_messages, auto_offset_reset, consumer_timeout_ms,
            rebalance_max_retries, rebalance_backoff_ms, reset_offset_on_start, post_rebalance_callback,
            membership_protocol, deserializer,
        )
        self._assignor = zookeeper_assignor(membership_protocol)
        self._reset_offset_on_fetch = reset_offset_on_fetch
        self._rebalance_backoff_ms = _valid_int(rebalance_backoff_ms)
        self._zookeeper_connection_timeout_ms = _valid_int(zookeeper_connection_timeout_ms, allow_zero=True)
        self._zookeeper_session_timeout_ms = (
            None if zookeeper_session_timeout_ms is None else _valid_int(zookeeper_session_timeout_ms)
        )
        connect: Any = zookeeper_connect or zookeeper_hosts or getattr(cluster, "_zookeeper_connect", None)
        if zookeeper is not None:
            # as PyKafka: a given KazooClient wins over zookeeper_connect
            connect = _kazoo_connect_string(zookeeper)
            if self._zookeeper_session_timeout_ms is None:
                st = getattr(zookeeper, "_session_timeout", None)
                if isinstance(st, int) and not isinstance(st, bool) and st > 0:
                    self._zookeeper_session_timeout_ms = st
        self._zookeeper_owners_layout = zookeeper_owners_layout
        if isinstance(connect, (bytes, bytearray)):
            connect = connect.decode("utf-8")
        self._zookeeper_connect: str = str(connect) if connect else "127.0.0.1:2181"
        if auto_start:
            self.start()

    @property
    def member_id(self) -> Optional[str]:
        """The daemon's consumer id in ZooKeeper (``<hostname>:<uuid4>``),
        once started."""
        kc = self._kc
        mid = kc.member_id if kc is not None else None
        return mid if mid is not None else (self._consumer_id.decode("utf-8") or None)

    @property
    def zookeeper_connect(self) -> str:
        return self._zookeeper_connect

    def _open_extra(self) -> Dict[str, Any]:
        extra: Dict[str, Any] = {
            "zookeeper_connect": self._zookeeper_connect,
            "zookeeper_connection_timeout_ms": self._zookeeper_connection_timeout_ms,
            "rebalance_backoff_ms": self._rebalance_backoff_ms,
        }
        if self._zookeeper_session_timeout_ms is not None:
            extra["zookeeper_session_timeout_ms"] = self._zookeeper_session_timeout_ms
        if self._zookeeper_owners_layout is not None:
            extra["zookeeper_owners_layout"] = self._zookeeper_owners_layout
        return extra

    def _open(self, **extra: Any) -> None:
        # the daemon registers in ZooKeeper (unless it is a member of this
        # group and topic already) and this connection attaches to it
        super()._open(**extra)
        kc = self._kc
        if kc is not None and kc.member_id:
            self._consumer_id = kc.member_id.encode("utf-8")
