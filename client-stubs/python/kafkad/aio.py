"""asyncio client for kafkad: the same operations as :class:`kafkad.Client`,
as coroutines, over ``asyncio.open_unix_connection``.

>>> async with await AsyncClient.connect() as c:
...     seq = await c.produce("events", b"hello")     # batched, no round trip
...     md = await c.produce("events", b"x", ack="wait")
...     await c.flush()
...     reports = await c.poll_reports()

Batching, sequence numbers and report runs work as in the blocking client
(both share :mod:`kafkad._session`).  A reader task consumes responses as
they arrive; a timer sends a batch ``linger_ms`` after its first message.
Use it from one event loop.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._codec import GC_PAUSE_BYTES, HEADER
from ._messages import BytesLike, Headers, MessageLike, batch_elements, message_element
from ._session import (
    ACKS,
    CLIENT_NAME,
    DEFAULT,
    NONE,
    PROTOCOL_VERSION,
    REPORT,
    WAIT,
    DeliveryCallback,
    Req,
    Session,
    default_socket_path,
    ms,
    times_args,
    times_result,
)
from .errors import ConnectionLost, KafkadError, ProtocolViolation, TimedOut, TooLarge
from .types import ClusterMetadata, DeliveryReport, ProduceResult, RecordMetadata

if TYPE_CHECKING:  # pragma: no cover
    from .consumer import AsyncConsumer

__all__ = ["AsyncClient"]

_HIGH_WATER = 4 << 20


class AsyncClient(Session):
    """A kafkad connection for asyncio code.  Create it with
    ``await AsyncClient.connect(...)`` (same arguments as
    :class:`kafkad.Client`, minus ``background``)."""

    def __init__(
        self,
        socket_path: Optional[str] = None,
        *,
        cluster: Optional[str] = None,
        timeout: Optional[float] = 30.0,
        on_delivery: Optional[DeliveryCallback] = None,
        batch_messages: int = 10000,
        batch_bytes: int = 1 << 20,
        linger_ms: float = 5.0,
    ) -> None:
        self._init_session(cluster, on_delivery, batch_messages, batch_bytes, linger_ms)
        self.socket_path = default_socket_path(socket_path)
        self.timeout = timeout
        self._waiters: List["asyncio.Future[None]"] = []
        self._send_lock: Optional[asyncio.Lock] = None
        self._reader_task: Optional["asyncio.Task[None]"] = None
        self._linger_handle: Optional[asyncio.TimerHandle] = None
        self._writer: Optional[asyncio.StreamWriter] = None

    @classmethod
    async def connect(cls, socket_path: Optional[str] = None, **kwargs: Any) -> "AsyncClient":
        self = cls(socket_path, **kwargs)
        await self.open()
        return self

    async def open(self, client_name: str = CLIENT_NAME) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.socket_path, limit=1 << 20), self.timeout
            )
        except (OSError, asyncio.TimeoutError) as e:
            raise ConnectionLost(f"cannot connect to kafkad at {self.socket_path}: {e}") from e
        self._writer = writer
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop(reader))
        try:
            res = await self._call("hello", {"version": PROTOCOL_VERSION, "client": client_name}, self.timeout)
        except BaseException:
            await self.close()
            raise
        self._hello_done(res)

    async def __aenter__(self) -> "AsyncClient":
        if self._writer is None:
            await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if not self._closed:
                await self.flush(self.timeout)
        finally:
            await self.close()

    async def close(self) -> None:
        """Send what is batched and close; see :meth:`kafkad.Client.close`."""
        if self._closed:
            return
        try:
            await self._send_buffer()
        except KafkadError:
            pass
        self._fail(ConnectionLost("client closed"))
        if self._reader_task is not None and self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
            try:
                await self._reader_task
            except (asyncio.CancelledError, Exception):
                pass

    # ------------------------------------------------------------------
    # I/O

    def _fail(self, exc: KafkadError) -> None:
        if self._closed:
            return
        self._fail_state(exc)
        if self._linger_handle is not None:
            self._linger_handle.cancel()
        if self._writer is not None:
            self._writer.close()
        self._wake()

    def _complete(self, req: Req) -> None:
        fut = req.fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _poll_backoff(self, exc: KafkadError) -> None:
        self._poll_retry_at = time.monotonic() + (0.5 if exc.retriable else 0.1)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    self._fail(ConnectionLost("kafkad closed the connection"))
                    return
                self._decoder.feed(data)
                nogc = self._decoder.buffered >= GC_PAUSE_BYTES and gc.isenabled()
                if nogc:
                    gc.disable()  # see Client._recv_nb
                try:
                    frames = self._decoder.frames()
                finally:
                    if nogc:
                        gc.enable()
                for f in frames:
                    fatal = self._dispatch(f)
                    if fatal is not None:
                        self._fail(fatal)
                        return
                if frames:
                    self._maybe_arm()
                    self._wake()
        except KafkadError as e:
            self._fail(e)
        except (OSError, asyncio.IncompleteReadError) as e:
            self._fail(ConnectionLost(f"receive failed: {e}"))

    def _write(self, *parts: Union[bytes, memoryview]) -> None:
        size = sum(map(len, parts))
        if size > self._max_payload:
            raise TooLarge(f"request of {size} bytes exceeds max_frame {self._max_payload}")
        assert self._writer is not None
        self._writer.writelines((HEADER.pack(size),) + parts)

    async def _drain(self) -> None:
        w = self._writer
        if w is not None and w.transport.get_write_buffer_size() > _HIGH_WATER:
            try:
                await w.drain()
            except (OSError, ConnectionError) as e:
                self._fail(ConnectionLost(f"send failed: {e}"))
        self._check_open()

    def _maybe_arm(self) -> None:
        if self._needs_poll() and not (self._poll_retry_at and time.monotonic() < self._poll_retry_at):
            self._write(self._encode_poll())

    async def _wait_until(self, pred: Callable[[], bool], timeout: Optional[float]) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not pred():
            if self._closed:
                return pred()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            fut: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                return pred()
        return True

    async def _call(self, op: str, args: Optional[Mapping[str, Any]], timeout: Optional[float]) -> Any:
        self._check_open()
        rid, req, payload = self._encode_call(op, args)
        req.fut = asyncio.get_running_loop().create_future()
        self._write(payload)
        await self._drain()
        try:
            await asyncio.wait_for(asyncio.shield(req.fut), timeout)
        except asyncio.TimeoutError:
            self._pending.pop(rid, None)
            raise TimedOut(f"no response to {op} within {timeout}s") from None
        return req.outcome()

    # ------------------------------------------------------------------
    # batching

    async def _send_buffer(self) -> None:
        d = self._detach()
        if self._linger_handle is not None:
            self._linger_handle.cancel()
            self._linger_handle = None
        if d is None:
            return
        msgs, cstart, ack = d
        pieces = self._encode_produce(msgs, cstart, ack)
        assert self._send_lock is not None
        async with self._send_lock:  # FIFO: batches go out in the order they were cut
            for payload, first, n in pieces:
                if ack is REPORT:
                    limit = self._max_pending
                    while self._sent_rep - self._collected + n > limit and self._sent_rep > self._collected:
                        self._check_open()
                        self._maybe_arm()
                        await self._wait_until(lambda: self._sent_rep - self._collected + n <= limit, 1.0)
                self._check_open()
                self._write(*self._register_produce(payload, first, n, ack))
                await self._drain()
            self._maybe_arm()

    def _linger_fire(self) -> None:
        self._linger_handle = None
        if self._buf and not self._closed:
            asyncio.get_running_loop().create_task(self._send_buffer_logged())

    async def _send_buffer_logged(self) -> None:
        try:
            await self._send_buffer()
        except KafkadError:
            pass

    async def _new_batch(self, topic: Any, ack: str, partitioner: Optional[str], cluster: Optional[str]) -> None:
        self._check_open()
        if self._buf:
            await self._send_buffer()
        self._set_batch_key(topic, ack, partitioner, cluster)

    def _started(self) -> None:
        self._bt0 = time.monotonic()
        if self._linger_handle is None:
            self._linger_handle = asyncio.get_running_loop().call_later(self._linger, self._linger_fire)

    # ------------------------------------------------------------------
    # public API

    async def produce(
        self,
        topic: Union[str, bytes],
        value: Optional[BytesLike],
        key: Optional[BytesLike] = None,
        *,
        headers: Optional[Headers] = None,
        timestamp: Any = None,
        partition: Optional[int] = None,
        partitioner: Optional[str] = None,
        ack: str = "report",
        on_delivery: Optional[DeliveryCallback] = None,
        cluster: Optional[str] = None,
        timeout: Optional[float] = DEFAULT,
    ) -> Union[int, RecordMetadata]:
        """As :meth:`kafkad.Client.produce`."""
        if ack != REPORT:
            if ack == WAIT:
                elem, _ = message_element(value, key, headers, timestamp, partition)
                r = (await self._produce_wait([elem], topic, partitioner, cluster, timeout)).results[0]
                if isinstance(r, KafkadError):
                    raise r
                return r
            if ack != NONE:
                raise ValueError(f"ack must be 'report', 'none' or 'wait', not {ack!r}")
        if topic != self._btopic or ack != self._back or partitioner != self._bpart or cluster != self._bcluster:
            await self._new_batch(topic, ack, partitioner, cluster)
        if key is None and headers is None and timestamp is None and partition is None and type(value) is bytes:
            self._buf.append(value)
            self._bbytes += len(value)
        else:
            elem, size = message_element(value, key, headers, timestamp, partition)
            self._buf.append(elem)
            self._bbytes += size
        if self._back is REPORT:
            seq = self._next_seq
            self._next_seq = seq + 1
            if on_delivery is not None:
                self._callbacks[seq] = on_delivery
        else:
            seq = 0
        n = len(self._buf)
        if n >= self._batch_n or self._bbytes >= self._batch_bytes or not self._linger:
            await self._send_buffer()
        elif n == 1:
            self._started()
        return seq

    async def _produce_wait(
        self, elems: List[Any], topic: Any, partitioner: Optional[str], cluster: Optional[str], timeout: Optional[float]
    ) -> ProduceResult:
        if isinstance(topic, (bytes, bytearray)):
            topic = bytes(topic).decode("utf-8")
        if timeout is not None and timeout < 0:
            timeout = self.timeout
        self._check_open()
        await self._send_buffer()
        reqs: List[Req] = []
        step = max(1, self.hello.max_batch)
        assert self._send_lock is not None
        async with self._send_lock:
            for i in range(0, len(elems), step):
                req, payload = self._encode_wait(topic, elems[i : i + step], partitioner, cluster)
                reqs.append(req)
                self._write(payload)
                await self._drain()
        if not await self._wait_until(lambda: all(r.done for r in reqs), timeout):
            for rid in [k for k, v in self._pending.items() if v in reqs]:
                del self._pending[rid]
            raise TimedOut(f"no acknowledgement within {timeout}s (the messages may still be delivered)")
        return self._wait_results(reqs, len(elems))

    async def produce_batch(
        self,
        topic: Union[str, bytes],
        messages: Sequence[MessageLike],
        *,
        ack: str = "report",
        partitioner: Optional[str] = None,
        on_delivery: Optional[DeliveryCallback] = None,
        cluster: Optional[str] = None,
        timeout: Optional[float] = DEFAULT,
    ) -> ProduceResult:
        """As :meth:`kafkad.Client.produce_batch`."""
        ack = ACKS.get(ack, "")
        if not ack:
            raise ValueError("ack must be 'report', 'none' or 'wait'")
        elems, _size = batch_elements(messages)
        if ack is WAIT:
            return await self._produce_wait(elems, topic, partitioner, cluster, timeout)
        if topic != self._btopic or ack != self._back or partitioner != self._bpart or cluster != self._bcluster:
            await self._new_batch(topic, ack, partitioner, cluster)
        report = ack is REPORT
        first = self._next_seq if report else 0
        if report and on_delivery is not None:
            for s in range(first, first + len(elems)):
                self._callbacks[s] = on_delivery
        i = 0
        while i < len(elems):
            chunk = elems[i : i + self._batch_n - len(self._buf)]
            self._buf.extend(chunk)
            if report:  # the batch's seqs end at _next_seq - 1 (see Session._detach)
                self._next_seq += len(chunk)
            i += len(chunk)
            if len(self._buf) >= self._batch_n:
                await self._send_buffer()
        if self._buf:
            self._started()
        return ProduceResult(len(elems), first)

    async def poll(self, timeout: float = 0.0) -> int:
        """Call delivery callbacks for the reports received (waiting up to
        ``timeout`` s for one); returns how many were called."""
        if not self._closed:
            if self._buf and (timeout > 0 or time.monotonic() - self._bt0 >= self._linger):
                await self._send_buffer()
            self._maybe_arm()
            if timeout > 0 and not self._runs and self._sent_rep > self._collected:
                await self._wait_until(lambda: bool(self._runs), timeout)
        cbs = self._take_for_callbacks()
        self._run_callbacks(cbs)
        return len(cbs)

    async def poll_reports(self, max: int = 65536, timeout: float = 0.0) -> List[DeliveryReport]:
        """As :meth:`kafkad.Client.poll_reports`."""
        if not self._closed:
            if self._buf and (timeout > 0 or time.monotonic() - self._bt0 >= self._linger):
                await self._send_buffer()
            self._maybe_arm()
            if timeout > 0 and not self._runs and self._sent_rep > self._collected:
                await self._wait_until(lambda: bool(self._runs), timeout)
            else:
                await asyncio.sleep(0)  # let the reader task run
        reports, cbs = self._take_with_own_callbacks(max)
        self._run_callbacks(cbs)
        return reports

    async def discard_reports(self, on_error: Optional[DeliveryCallback] = None) -> int:
        """As :meth:`kafkad.Client.discard_reports`."""
        n, cbs = self._take_discard(on_error)
        self._run_callbacks(cbs)
        return n

    async def flush(self, timeout: Optional[float] = 10.0) -> int:
        """As :meth:`kafkad.Client.flush` (a client-wide ``on_delivery`` is
        called as reports arrive, not only at the end)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._check_open()
        await self._send_buffer()
        call = asyncio.ensure_future(
            self._call("flush", {"timeout_ms": ms(timeout)}, None if timeout is None else timeout + 5.0))
        try:
            if self.on_delivery is not None:
                call.add_done_callback(lambda _f: self._wake())
                while not call.done() and not self._closed:
                    await self._wait_until(lambda: call.done() or bool(self._runs), None)
                    self._run_callbacks(self._take_for_callbacks())
            res = await call
        finally:
            if not call.done():
                call.cancel()
        r = res.get("remaining") if isinstance(res, Mapping) else None
        remaining = r if isinstance(r, int) else 0
        target = self._sent_rep - remaining
        self._maybe_arm()
        collect = 5.0 if deadline is None else max(deadline - time.monotonic(), 1.0)
        await self._wait_until(lambda: self._collected >= target, collect)
        cbs = self._take_for_callbacks()
        self._run_callbacks(cbs)
        return remaining

    async def ping(self) -> float:
        t0 = time.perf_counter()
        await self._call("ping", {}, self.timeout)
        return time.perf_counter() - t0

    async def metadata(
        self,
        topics: Optional[Iterable[Union[str, bytes]]] = None,
        timeout: float = 5.0,
        *,
        cluster: Optional[str] = None,
    ) -> ClusterMetadata:
        args = self._args(cluster)
        args["timeout_ms"] = ms(timeout)
        if topics is not None:
            args["topics"] = [t.decode("utf-8") if isinstance(t, (bytes, bytearray)) else t for t in topics]
        res = await self._call("metadata", args, None if self.timeout is None else timeout + max(5.0, self.timeout))
        if not isinstance(res, Mapping):
            raise ProtocolViolation("metadata result is not a map")
        return ClusterMetadata.from_result(res)

    async def stats(self, cluster: Optional[str] = None) -> Dict[str, Any]:
        res = await self._call("stats", {"cluster": cluster} if cluster is not None else {}, self.timeout)
        if not isinstance(res, dict):
            raise ProtocolViolation("stats result is not a map")
        return res

    async def consumer(
        self,
        topic: Union[str, bytes, None] = None,
        topics: Optional[Iterable[Union[str, bytes]]] = None,
        *,
        mode: str = "simple",
        group: Union[str, bytes, None] = None,
        partitions: Optional[Iterable[int]] = None,
        offsets: Any = None,
        auto_offset_reset: Any = "latest",
        reset_offset_on_start: bool = False,
        assignor: Optional[str] = None,
        auto_commit_interval_ms: int = 0,
        cluster: Optional[str] = None,
        fetch_max: int = 1000,
        fetch_max_bytes: int = 4 << 20,
        on_event: Optional[Callable[..., Any]] = None,
        zookeeper_connect: Optional[str] = None,
        zookeeper_session_timeout_ms: Optional[int] = None,
        zookeeper_connection_timeout_ms: Optional[int] = None,
        rebalance_backoff_ms: Optional[int] = None,
        zookeeper_owners_layout: Optional[str] = None,
    ) -> "AsyncConsumer":
        """As :meth:`kafkad.Client.consumer`; returns an
        :class:`~kafkad.consumer.AsyncConsumer`."""
        from .consumer import AsyncConsumer, open_args

        args = open_args(
            topic, topics, mode, group, partitions, offsets, auto_offset_reset, reset_offset_on_start, assignor,
            cluster if cluster is not None else self.cluster,
            zookeeper_connect=zookeeper_connect,
            zookeeper_session_timeout_ms=zookeeper_session_timeout_ms,
            zookeeper_connection_timeout_ms=zookeeper_connection_timeout_ms,
            rebalance_backoff_ms=rebalance_backoff_ms,
            zookeeper_owners_layout=zookeeper_owners_layout,
        )
        c = AsyncConsumer(
            self,
            args,
            auto_commit_interval_ms=auto_commit_interval_ms,
            fetch_max=fetch_max,
            fetch_max_bytes=fetch_max_bytes,
            on_event=on_event,
        )
        return await c._open()

    async def watermarks(
        self, topic: Union[str, bytes], partition: int, timeout: float = 5.0, *, cluster: Optional[str] = None
    ) -> Tuple[int, int]:
        """As :meth:`kafkad.Client.watermarks`."""
        args = self._args(cluster)
        args["topic"] = topic.decode("utf-8") if isinstance(topic, (bytes, bytearray)) else topic
        args["partition"] = int(partition)
        args["timeout_ms"] = max(1, ms(timeout))
        res = await self._call("watermarks", args, None if self.timeout is None else timeout + max(5.0, self.timeout))
        if not isinstance(res, Mapping) or not isinstance(res.get("low"), int) or not isinstance(res.get("high"), int):
            raise ProtocolViolation("watermarks result without low/high")
        return res["low"], res["high"]

    async def offsets_for_times(
        self, timestamps: Any, timeout: float = 5.0, *, cluster: Optional[str] = None
    ) -> Dict[Tuple[str, int], int]:
        """As :meth:`kafkad.Client.offsets_for_times`."""
        args = self._args(cluster)
        args["timestamps"] = times_args(timestamps)
        args["timeout_ms"] = max(1, ms(timeout))
        wait = None if self.timeout is None else timeout + max(5.0, self.timeout)
        return times_result(await self._call("offsets_for_times", args, wait))

    async def call(self, op: str, args: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = DEFAULT) -> Any:
        return await self._call(op, dict(args or {}), self.timeout if timeout is not None and timeout < 0 else timeout)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<kafkad.aio.AsyncClient {self.socket_path!r} {state} in_flight={self.in_flight}>"
