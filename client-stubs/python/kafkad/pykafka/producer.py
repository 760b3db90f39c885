"""PyKafka's ``Producer`` on top of a kafkad connection.

Each producer owns one :class:`kafkad.Client` (one connection to the
daemon).  Asynchronous ``produce()`` batches locally and returns the
:class:`~kafkad.pykafka.protocol.Message` at once; with
``delivery_reports=True`` every message's ``(message, exception)`` report
goes to the report queue of the thread that produced it, as in PyKafka.
``sync=True`` waits for Kafka's acknowledgement and raises on failure.

Settings that belong to librdkafka inside kafkad (``compression``,
``max_retries``, ``retry_backoff_ms``, ``required_acks``, ``ack_timeout_ms``,
``queue_empty_timeout_ms``) are validated and otherwise ignored: the
cluster's kafkad configuration decides them.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

from ..client import Client
from ..errors import KafkadError
from ..types import DeliveryReport
from .common import CompressionType
from .exceptions import (
    KafkaException,
    MessageSizeTooLarge,
    ProducerQueueFullError,
    ProducerStoppedException,
    from_kafkad,
)
from .partitioners import HashingPartitioner, RandomPartitioner, sha1_hash
from .protocol import Message

if TYPE_CHECKING:  # pragma: no cover
    from .client import Cluster
    from .topic import Topic

__all__ = ["Producer"]

log = logging.getLogger(__name__)

_ROUTE_RANDOM = 0  # kafkad's "random"
_ROUTE_HASH = 1  # kafkad's "pykafka_hashing"
_ROUTE_LOCAL = 2  # the partitioner runs here, the partition is sent explicitly
_DRAIN_EVERY = 8192


def _valid_int(param: Any, allow_zero: bool = False, allow_negative: bool = False) -> int:
    if isinstance(param, bool) or not isinstance(param, (int, float)):
        raise TypeError(f"Expected integer but found argument of type '{type(param)}'")
    if not allow_negative and param < 0:
        raise ValueError(f"Expected nonnegative number but got '{param}'")
    if not allow_zero and param == 0:
        raise ValueError(f"Expected nonzero number but got '{param}'")
    return param  # type: ignore[return-value]


def _protocol_version(broker_version: str) -> int:
    """1 (timestamps) for brokers >= 0.10.0, as PyKafka decides it."""
    parts = []
    for p in str(broker_version).split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return 1 if tuple(parts) >= (0, 10, 0) else 0


class _DeliveryReportQueue(threading.local):
    """One report queue per thread that uses the producer."""

    def __init__(self) -> None:
        self.queue: Optional["queue.Queue[Tuple[Message, Optional[Exception]]]"] = queue.Queue()


class _DeliveryReportNone:
    queue = None


def _deliver(msg: Message, report: DeliveryReport) -> None:
    """Per-message callback: fill in where it went and post the report."""
    if report.partition >= 0:
        msg.partition_id = report.partition
    if report.offset >= 0:
        msg.offset = report.offset
    exc = None
    if report.error is not None:
        exc = from_kafkad(report.error)
        log.error("Message not delivered!! %r", exc)
    q = msg.delivery_report_q
    if q is not None:
        q.put((msg, exc))


def _log_failure(report: DeliveryReport) -> None:
    log.error("Message not delivered!! %r", report.error)


class Producer:
    """Produces to one topic.  Arguments as PyKafka 2.8's ``Producer``.

    Batching maps onto kafkad's client: ``min_queued_messages`` is the batch
    size, ``linger_ms`` the longest a message waits in the local batch.
    ``max_queued_messages`` bounds the messages without an outcome yet; when
    reached, ``produce()`` blocks (or raises ``ProducerQueueFullError`` when
    ``block_on_queue_full=False``).  ``pending_timeout_ms`` bounds a sync
    ``produce()`` and ``stop()``.
    """

    def __init__(
        self,
        cluster: "Cluster",
        topic: "Topic",
        partitioner: Optional[Callable[..., Any]] = None,
        compression: int = CompressionType.NONE,
        max_retries: int = 3,
        retry_backoff_ms: int = 100,
        required_acks: int = 1,
        ack_timeout_ms: int = 10 * 1000,
        max_queued_messages: int = 100000,
        min_queued_messages: int = 70000,
        linger_ms: int = 5 * 1000,
        queue_empty_timeout_ms: int = 0,
        block_on_queue_full: bool = True,
        max_request_size: int = 1000012,
        sync: bool = False,
        delivery_reports: bool = False,
        pending_timeout_ms: int = 5 * 1000,
        auto_start: bool = True,
        serializer: Optional[Callable[[Any, Any], Tuple[Any, Any]]] = None,
    ) -> None:
        self._cluster = cluster
        self._protocol_version = _protocol_version(cluster._broker_version)
        self._topic = topic
        self._topic_name = topic.name.decode("utf-8")
        self._partitioner = partitioner if partitioner is not None else RandomPartitioner()
        self._compression = compression
        self._max_retries = _valid_int(max_retries, allow_zero=True)
        self._retry_backoff_ms = _valid_int(retry_backoff_ms)
        self._required_acks = _valid_int(required_acks, allow_zero=True, allow_negative=True)
        self._ack_timeout_ms = _valid_int(ack_timeout_ms, allow_zero=True)
        self._max_queued_messages = _valid_int(max_queued_messages, allow_zero=True)
        self._min_queued_messages = max(1, _valid_int(min_queued_messages) if not sync else 1)
        self._linger_ms = _valid_int(linger_ms, allow_zero=True)
        self._queue_empty_timeout_ms = _valid_int(queue_empty_timeout_ms, allow_zero=True, allow_negative=True)
        self._block_on_queue_full = block_on_queue_full
        self._max_request_size = _valid_int(max_request_size)
        self._synchronous = sync
        self._delivery_reports: Any = (
            _DeliveryReportQueue() if delivery_reports or sync else _DeliveryReportNone()
        )
        self._pending_timeout_ms = pending_timeout_ms
        self._auto_start = auto_start
        self._serializer = serializer
        self._running = False
        self._client: Optional[Client] = None
        self._untracked = 0
        self._state_lock = threading.Lock()

        p = self._partitioner
        if type(p) is RandomPartitioner:
            self._route = _ROUTE_RANDOM
        elif type(p) is HashingPartitioner and p.default_hash:
            self._route = _ROUTE_HASH
        else:
            self._route = _ROUTE_LOCAL
        if auto_start:
            self.start()

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:  # interpreter shutdown, half-built object
            pass

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} at {hex(id(self))}>"

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.stop()

    @property
    def _pending_timeout(self) -> Optional[float]:
        if self._pending_timeout_ms == -1:
            return None
        return self._pending_timeout_ms / 1000.0

    def start(self) -> None:
        """Open the connection to kafkad (done by ``__init__`` unless
        ``auto_start=False``)."""
        with self._state_lock:
            if self._running:
                return
            self._client = self._new_client()
            self._running = True

    def _new_client(self) -> Client:
        try:
            return Client(
                self._cluster.socket_path,
                cluster=self._cluster.cluster_name,
                timeout=self._cluster._timeout,
                batch_messages=self._min_queued_messages,
                batch_bytes=max(self._max_request_size, 1 << 16),
                linger_ms=self._linger_ms,
            )
        except KafkadError as e:
            raise from_kafkad(e) from e

    def _reconnect(self, dead: Client) -> Client:
        """Replace a dead connection (daemon restarted...).  Messages whose
        outcome the old one never learnt get their report (with
        ``SocketDisconnectedError``) first."""
        with self._state_lock:
            if self._client is dead and self._running:
                dead.poll(0)
                dead.discard_reports(_log_failure)
                log.warning("Producer reconnecting to kafkad at %s", self._cluster.socket_path)
                self._client = self._new_client()
            assert self._client is not None
            return self._client

    def stop(self) -> None:
        """Send what is queued, wait (up to ``pending_timeout_ms``) for the
        outcomes, post the remaining delivery reports and close."""
        with self._state_lock:
            if not self._running:
                return
            self._running = False
            client = self._client
        if client is None:
            return
        try:
            remaining = client.flush(self._pending_timeout)
            if remaining:
                log.warning("Producer stopped with %d message(s) still pending", remaining)
        except KafkadError as e:
            log.warning("Producer flush on stop failed: %s", e)
        finally:
            client.close()
            # messages whose outcome never came back get their report now
            client.poll(0)
            client.discard_reports(_log_failure)

    def produce(self, message: Optional[bytes], partition_key: Optional[bytes] = None, timestamp: Any = None) -> Message:
        """Produce one message; returns its :class:`Message`.

        Async (default): returns once the message is queued.  ``sync=True``:
        returns once Kafka acknowledged it (``partition_id`` and ``offset``
        set) and raises the delivery error otherwise.
        """
        if self._serializer is None:
            if partition_key is not None and type(partition_key) is not bytes:
                raise TypeError(
                    "Producer.produce accepts a bytes object as partition_key, but it got '%s'", type(partition_key)
                )
            if message is not None and type(message) is not bytes:
                raise TypeError("Producer.produce accepts a bytes object as message, but it got '%s'", type(message))
        if timestamp is not None and self._protocol_version < 1:
            raise RuntimeError("Producer.produce got a timestamp with protocol 0")
        if not self._running:
            raise ProducerStoppedException()
        if self._serializer is not None:
            message, partition_key = self._serializer(message, partition_key)

        route = self._route
        partition: Optional[int] = None
        wire_partitioner: Optional[str] = None
        if route == _ROUTE_RANDOM:
            partition_id = -1
            wire_partitioner = "random"
        elif route == _ROUTE_HASH:
            if partition_key is None:
                raise ValueError("key cannot be `None` when using hashing partitioner")
            ids = list(self._topic.partitions)
            # kafkad picks the partition; this is the same rule, to fill in
            # partition_id before the report confirms it
            partition_id = ids[sha1_hash(partition_key) % len(ids)] if ids else -1
            wire_partitioner = "pykafka_hashing"
        else:
            chosen = self._partitioner(list(self._topic.partitions.values()), partition_key)
            partition_id = chosen.id if hasattr(chosen, "id") else int(chosen)
            partition = partition_id

        msg = Message(
            value=message,
            partition_key=partition_key,
            partition_id=partition_id,
            timestamp=timestamp,
            protocol_version=self._protocol_version,
            delivery_report_q=self._delivery_reports.queue,
        )
        if len(msg) > self._max_request_size:
            exc = MessageSizeTooLarge(f"Message size larger than max_request_size: {self._max_request_size}")
            log.warning(exc)
            if self._synchronous:
                raise exc
            if msg.delivery_report_q is not None:
                msg.delivery_report_q.put((msg, exc))
            return msg
        ts = int(msg.timestamp) if msg.timestamp else None
        client = self._client
        assert client is not None
        if client.closed and self._running:
            client = self._reconnect(client)
        try:
            if self._synchronous:
                md = client.produce(
                    self._topic_name,
                    message,
                    partition_key,
                    timestamp=ts,
                    partition=partition,
                    partitioner=wire_partitioner,
                    ack="wait",
                    timeout=self._pending_timeout,
                )
                msg.partition_id = md.partition
                msg.offset = md.offset
                return msg
            if self._max_queued_messages and client.in_flight >= self._max_queued_messages:
                self._wait_for_room(client)
            if msg.delivery_report_q is not None:
                client.produce(
                    self._topic_name,
                    message,
                    partition_key,
                    timestamp=ts,
                    partition=partition,
                    partitioner=wire_partitioner,
                    on_delivery=functools.partial(_deliver, msg),
                )
            else:
                client.produce(
                    self._topic_name,
                    message,
                    partition_key,
                    timestamp=ts,
                    partition=partition,
                    partitioner=wire_partitioner,
                )
                self._untracked += 1
                if self._untracked >= _DRAIN_EVERY:
                    self._untracked = 0
                    client.discard_reports(_log_failure)
        except KafkadError as e:
            raise from_kafkad(e) from e
        return msg

    def _wait_for_room(self, client: Client) -> None:
        if not self._block_on_queue_full:
            raise ProducerQueueFullError(f"Queue full for topic {self._topic_name}")
        while client.in_flight >= self._max_queued_messages and self._running:
            client.poll(0.05)
            if self._delivery_reports.queue is None:
                client.discard_reports(_log_failure)

    def get_delivery_report(self, block: bool = True, timeout: Optional[float] = None) -> Tuple[Message, Optional[Exception]]:
        """The next ``(message, exception)`` report for a message produced by
        the calling thread; ``exception`` is None on success.  Raises
        ``queue.Empty`` when there is none (immediately with ``block=False``,
        else after ``timeout`` seconds)."""
        q = self._delivery_reports.queue
        if q is None:
            raise KafkaException("Delivery-reporting is disabled")
        try:
            return q.get_nowait()  # type: ignore[no-any-return]
        except queue.Empty:
            pass
        client = self._client
        if client is not None and not client.closed:
            client.poll(0)
        if not block:
            return q.get(False)  # type: ignore[no-any-return]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return q.get_nowait()  # type: ignore[no-any-return]
            except queue.Empty:
                pass
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise queue.Empty
            step = 0.05 if remaining is None else min(0.05, remaining)
            client = self._client
            if client is not None and not client.closed:
                client.poll(step)
            else:
                try:
                    return q.get(True, step)  # type: ignore[no-any-return]
                except queue.Empty:
                    continue
