"""Blocking, thread-safe client for the kafkad daemon.

One :class:`Client` is one Unix-socket connection.  Requests are pipelined:
every request gets an id, responses are matched to it whenever they arrive.

Report-mode produce (the default) never waits for the daemon: messages are
appended to a local batch, which becomes one ``produce`` request when it
holds ``batch_messages`` messages or ``batch_bytes`` bytes, when it is
``linger_ms`` old (a small background thread sees to that), or when
``flush``/``poll``/a sync call needs it out.  Responses are read whenever the
socket has some, without blocking.  Delivery reports come back as compact
runs, piggybacked on produce results or answering a ``poll_reports`` request
that the client keeps parked at the daemon while it has messages without a
report; they are expanded into :class:`DeliveryReport` objects only when the
application asks for them.

Locking: one lock guards all state and all socket reads and writes.  A thread
that must wait for a response releases it while it sleeps in ``poll(2)``;
only one thread at a time sleeps on the socket and the others wait on a
condition, so concurrent synchronous calls from many threads share the
connection and their responses reach the right caller.
"""

from __future__ import annotations

# What this module imports is paid by every process that uses a Client,
# short-lived ones included, at start and again at exit: the standard
# library's thin C modules (_socket rather than socket, whose enums cost more
# than the rest of the import; _weakref rather than weakref) and no typing.
import _socket
import gc
import os
import select
import threading
import time
from _weakref import ref as _weakref_ref
from collections.abc import Mapping

from ._codec import GC_PAUSE_BYTES, HEADER
from ._messages import batch_elements, message_element
from ._session import (
    ACKS,
    CLIENT_NAME,
    DEFAULT,
    DEFAULT_SOCKET,
    NONE,
    PROTOCOL_VERSION,
    REPORT,
    WAIT,
    Req,
    Session,
    default_socket_path,
    ms,
    times_args,
    times_result,
)
from .errors import ConnectionLost, InvalidArgument, KafkadError, ProtocolViolation, TimedOut, TooLarge
from .types import ClusterMetadata, DeliveryReport, ProduceResult, RecordMetadata

# typing.TYPE_CHECKING without importing typing (mypy treats the name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Union, overload
    from weakref import ReferenceType

    from ._messages import BytesLike, Headers, MessageLike
    from ._session import DeliveryCallback
    from .consumer import Consumer
else:

    def __getattr__(name: str) -> object:
        # DeliveryCallback (a typing alias, made on first use: see _session)
        if name == "DeliveryCallback":
            from . import _session

            return _session.DeliveryCallback
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Client", "DEFAULT_SOCKET", "default_socket_path", "DeliveryCallback"]

from ._log import log  # noqa: E402

# receive buffer: small at first (a producer's responses are small, and a
# zeroed 1 MiB buffer costs a short-lived process ~0.3 ms of page faults),
# _RBUF once a read fills it
_RBUF_FIRST = 64 << 10
_RBUF = 1 << 20
_READ_BUDGET = 8 << 20
_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL


class Client(Session):
    """A connection to kafkad.

    :param socket_path: the daemon's socket; default ``$KAFKAD_SOCKET`` or
        ``/run/kafkad/kafkad.sock``.
    :param cluster: cluster name sent with every request (default: the
        daemon's ``default_cluster``).
    :param timeout: seconds to wait for the response to a synchronous call
        (``None``: forever).
    :param on_delivery: called with each :class:`DeliveryReport`, from
        :meth:`poll` and :meth:`flush`, in the calling thread.
    :param batch_messages: / :param batch_bytes: send the local batch when it
        holds this many messages / bytes (both capped by the daemon's limits).
    :param linger_ms: send a batch at the latest this long after its first
        message.  ``background=False`` leaves that to the next ``poll``,
        ``flush`` or produce call instead of a helper thread.
    """

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
        background: bool = True,
        client_name: str = CLIENT_NAME,
    ) -> None:
        self._init_session(cluster, on_delivery, batch_messages, batch_bytes, linger_ms)
        self.socket_path = default_socket_path(socket_path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._reader = False
        self._close_deferred = False
        self._rbuf = bytearray(_RBUF_FIRST)
        self._rview = memoryview(self._rbuf)
        self._last_read = 0.0
        self._linger_ev: Optional[threading.Event] = None
        self._connect(client_name)
        if background and self._linger > 0:
            ev = threading.Event()
            self._linger_ev = ev
            # the thread holds a weak reference whose callback wakes it when
            # the client is collected (a weakref.finalize would also import
            # weakref and atexit and keep a registry alive until exit)
            threading.Thread(
                target=_linger_main,
                args=(_weakref_ref(self, lambda _r: ev.set()), ev, self._linger),
                name="kafkad-linger",
                daemon=True,
            ).start()

    # ------------------------------------------------------------------
    # connection

    def _connect(self, client_name: str) -> None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            raise ConnectionLost(f"cannot connect to kafkad at {self.socket_path}: {e}") from e
        for opt in (_socket.SO_SNDBUF, _socket.SO_RCVBUF):
            try:
                sock.setsockopt(_socket.SOL_SOCKET, opt, 4 << 20)
            except OSError:
                pass
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._p_in = select.poll()
        self._p_in.register(self._fd, select.POLLIN)
        self._p_inout = select.poll()
        self._p_inout.register(self._fd, select.POLLIN | select.POLLOUT)
        self._p_wait = select.poll()
        self._p_wait.register(self._fd, select.POLLIN)
        self._p_wait.register(self._wake_r, select.POLLIN)
        self._closed = False
        try:
            res = self._call("hello", {"version": PROTOCOL_VERSION, "client": client_name}, self.timeout)
        except BaseException:
            self.close()
            raise
        self._hello_done(res)

    def close(self) -> None:
        """Send what is still batched and close (without waiting for outcomes).

        Report-mode messages whose outcome is not known yet get a
        :class:`ConnectionLost` report (they may still be delivered: the
        daemon delivers everything it received), so every message still gets
        exactly one report.  Use :meth:`flush` first, or the context manager,
        to wait for the outcomes.
        """
        with self._lock:
            if self._closed:
                return
            try:
                self._send_buffer()
            except KafkadError:
                pass
            self._fail(ConnectionLost("client closed"))
        if self._linger_ev is not None:
            self._linger_ev.set()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if not self._closed:
                self.flush(self.timeout)
        finally:
            self.close()

    def _fail(self, exc: KafkadError) -> None:
        """Mark the connection dead (lock held)."""
        if self._closed:
            return
        self._fail_state(exc)
        try:
            self._sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        self._cond.notify_all()
        if self._reader:
            # a waiting thread sleeps on these fds: it closes them when it wakes
            self._wake()
            self._close_deferred = True
        else:
            self._close_fds()

    def _close_fds(self) -> None:
        self._close_deferred = False
        try:
            self._sock.close()
        except OSError:
            pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    def _poll_backoff(self, exc: KafkadError) -> None:
        self._poll_retry_at = time.monotonic() + (0.5 if exc.retriable else 0.1)

    # ------------------------------------------------------------------
    # low-level I/O (all with the lock held)

    def _send_payload(self, *parts: Union[bytes, memoryview]) -> None:
        """Send one frame whose payload is the concatenation of ``parts``."""
        size = sum(map(len, parts))
        if size > self._max_payload:
            raise TooLarge(f"request of {size} bytes exceeds max_frame {self._max_payload}")
        hdr = HEADER.pack(size)
        self._sending = True
        try:
            try:
                n = self._sock.sendmsg((hdr,) + parts)
            except BlockingIOError:
                n = 0
            if n < size + 4:
                self._send_rest(memoryview(b"".join((hdr,) + parts))[n:])
        except OSError as e:
            self._fail(ConnectionLost(f"send failed: {e}"))
            raise self._close_exc from e
        finally:
            self._sending = False

    def _send_rest(self, data: memoryview) -> None:
        # The socket is full: keep reading while waiting, so that the daemon,
        # which may itself be waiting for us to read, can make progress.
        while data:
            if self._closed:
                raise self._close_exc
            mask = 0
            for _fd, m in self._p_inout.poll(1000):
                mask |= m
            if mask & _IN:
                self._recv_nb()
                if self._closed:
                    raise self._close_exc
            if mask & select.POLLOUT:
                try:
                    k = self._sock.send(data)
                except BlockingIOError:
                    k = 0
                data = data[k:]

    def _recv_nb(self) -> bool:
        """Read and dispatch whatever is available without blocking."""
        if self._closed:
            return False
        got = False
        total = 0
        sock = self._sock
        rbuf = self._rbuf
        size = len(rbuf)
        dec = self._decoder
        while True:
            try:
                n = sock.recv_into(rbuf)
            except BlockingIOError:
                break
            except OSError as e:
                self._fail(ConnectionLost(f"receive failed: {e}"))
                break
            if n == 0:
                self._fail(ConnectionLost("kafkad closed the connection"))
                break
            dec.feed(self._rview[:n])
            # decoding a large frame (a consume result) allocates one list per
            # message; the cyclic GC would scan them over and over meanwhile
            nogc = dec.buffered >= GC_PAUSE_BYTES and gc.isenabled()
            if nogc:
                gc.disable()
            try:
                frames = dec.frames()
            except KafkadError as e:
                self._fail(e)
                break
            finally:
                if nogc:
                    gc.enable()
            for f in frames:
                fatal = self._dispatch(f)
                got = True
                if fatal is not None:
                    self._fail(fatal)
                    break
            total += n
            if n < size or total >= _READ_BUDGET or self._closed:
                break
            if size < _RBUF:  # the daemon sends more than fits: read in bigger pieces
                rbuf = self._rbuf = bytearray(_RBUF)
                self._rview = memoryview(rbuf)
                size = _RBUF
        self._last_read = time.monotonic()
        if got:
            self._cond.notify_all()
            if self._reader:
                self._wake()
        return got

    def _maybe_arm(self) -> None:
        """Keep one poll_reports parked while report-mode messages are out."""
        if self._needs_poll():
            if self._poll_retry_at and time.monotonic() < self._poll_retry_at:
                return
            self._send_payload(self._encode_poll())

    def _wait_for(self, pred: Callable[[], bool], deadline: Optional[float]) -> bool:
        """Wait (lock held on entry and exit, released meanwhile) until pred()."""
        while not pred():
            if self._closed:
                return pred()
            if deadline is None:
                remaining: Optional[float] = None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
            if self._reader:
                self._cond.wait(remaining)
                continue
            if self._recv_nb():
                self._maybe_arm()
                continue
            self._maybe_arm()
            if self._needs_poll():  # backing off after a poll_reports error: wake up to retry
                retry = max(0.001, self._poll_retry_at - time.monotonic())
                remaining = retry if remaining is None else min(remaining, retry)
            self._reader = True
            self._lock.release()
            try:
                ev = self._p_wait.poll(-1 if remaining is None else max(1, int(remaining * 1000 + 0.999)))
            finally:
                self._lock.acquire()
                self._reader = False
            if self._close_deferred:
                self._close_fds()
            elif any(fd == self._wake_r for fd, _m in ev):
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
            self._cond.notify_all()
        return True

    def _wait_room(self, n: int) -> None:
        """Block (lock held) until n more report-mode messages fit max_pending."""
        limit = self._max_pending
        while self._sent_rep - self._collected + n > limit and self._sent_rep > self._collected:
            if self._closed:
                raise self._close_exc
            self._maybe_arm()
            if not self._recv_nb() and not self._closed:
                self._p_in.poll(200)

    def _call(self, op: str, args: Optional[Mapping[str, Any]], timeout: Optional[float]) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._check_open()
            # requests go out in call order: a batch produced before this
            # call is sent first (a produce then a ping means the daemon has
            # the produce once the ping is answered)
            if self._buf:
                self._send_buffer()
            rid, req, payload = self._encode_call(op, args)
            self._send_payload(payload)
            # (_wait_for reads what is there before it sleeps)
            if not self._wait_for(lambda: req.done, deadline):
                self._pending.pop(rid, None)
                raise TimedOut(f"no response to {op} within {timeout}s")
        return req.outcome()

    # ------------------------------------------------------------------
    # batching

    def _new_batch(self, topic: Any, ack: str, partitioner: Optional[str], cluster: Optional[str]) -> None:
        self._check_open()
        if self._buf:
            self._send_buffer()
        self._set_batch_key(topic, ack, partitioner, cluster)

    def _send_buffer(self) -> None:
        d = self._detach()
        if d is None:
            return
        msgs, cstart, ack = d
        for payload, first, n in self._encode_produce(msgs, cstart, ack):
            if ack is REPORT:
                self._wait_room(n)
            self._send_payload(*self._register_produce(payload, first, n, ack))
            self._recv_nb()
        self._maybe_arm()

    def _linger_tick(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._buf:
                    if time.monotonic() - self._bt0 >= self._linger * 0.9:
                        self._send_buffer()
                    elif self._linger_ev is not None:
                        self._linger_ev.set()
                self._recv_nb()
                self._maybe_arm()
            except KafkadError as e:
                log.warning("kafkad: background send failed: %s", e)

    # ------------------------------------------------------------------
    # produce

    if TYPE_CHECKING:  # (typing.overload is not imported at run time)

        @overload
        def produce(
            self,
            topic: Union[str, bytes],
            value: Optional[BytesLike],
            key: Optional[BytesLike] = ...,
            *,
            headers: Optional[Headers] = ...,
            timestamp: Any = ...,
            partition: Optional[int] = ...,
            partitioner: Optional[str] = ...,
            ack: Literal["report", "none"] = ...,
            on_delivery: Optional[DeliveryCallback] = ...,
            cluster: Optional[str] = ...,
            timeout: Optional[float] = ...,
        ) -> int: ...

        @overload
        def produce(
            self,
            topic: Union[str, bytes],
            value: Optional[BytesLike],
            key: Optional[BytesLike] = ...,
            *,
            headers: Optional[Headers] = ...,
            timestamp: Any = ...,
            partition: Optional[int] = ...,
            partitioner: Optional[str] = ...,
            ack: Literal["wait"],
            on_delivery: Optional[DeliveryCallback] = ...,
            cluster: Optional[str] = ...,
            timeout: Optional[float] = ...,
        ) -> RecordMetadata: ...

    def produce(
        self,
        topic: Union[str, bytes],
        value: Optional[BytesLike],
        key: Optional[BytesLike] = None,
        **kw: Any,
    ) -> Union[int, RecordMetadata]:
        """Produce one message.

        Keyword options: ``headers``, ``timestamp``, ``partition``,
        ``partitioner``, ``ack``, ``on_delivery``, ``cluster``, ``timeout``
        (typed in the overloads above).

        ``ack="report"`` (default): batched locally, returns the message's
        sequence number at once; its :class:`DeliveryReport` (same ``seq``)
        comes from :meth:`poll` / :meth:`poll_reports` / :meth:`flush`, and
        ``on_delivery`` (if given) is called with it.  ``ack="none"``: batched,
        no report, returns 0.  ``ack="wait"``: returns
        :class:`RecordMetadata` once Kafka acknowledged the message, or raises
        its :class:`~kafkad.errors.KafkaError`.

        ``timestamp`` is ms since the epoch (int) or a datetime; ``partition``
        forces a partition; ``partitioner`` names a daemon partitioner
        (``random``, ``murmur2``, ``pykafka_hashing``, ...).
        """
        if kw:
            return self._produce(topic, value, key, **kw)
        # The common call, produce(topic, value[, key]) in report mode, costs
        # per message what a streaming producer pays millions of times: the
        # keyword-only options above would cost CPython a dict lookup each
        # on every call, so they travel in **kw and this path needs none
        # (and acquire/release cost less than a with block).
        lock = self._lock
        lock.acquire()
        try:
            # the batch key in one comparison (Session._fast_key); a closed
            # client has CLOSED there, which nothing equals: _new_batch raises
            if topic != self._fast_key:
                self._new_batch(topic, REPORT, None, None)
            buf = self._buf
            if key is None and type(value) is bytes:
                buf.append(value)
                self._bbytes += len(value)
            else:
                elem, size = message_element(value, key)
                buf.append(elem)
                self._bbytes += size
            seq = self._next_seq
            self._next_seq = seq + 1
            n = len(buf)
            if n >= self._batch_n or self._bbytes >= self._batch_bytes:
                self._send_buffer()
            elif n == 1:
                self._bt0 = time.monotonic()
                if self._linger_ev is not None:
                    self._linger_ev.set()
                elif not self._linger:
                    self._send_buffer()
            return seq
        finally:
            lock.release()

    def _produce(
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
        """produce() with keyword options."""
        if ack is not REPORT and ack != REPORT:
            if ack == WAIT:
                elem, _size = message_element(value, key, headers, timestamp, partition)
                r = self._produce_wait([elem], topic, partitioner, cluster, timeout).results[0]
                if isinstance(r, KafkadError):
                    raise r
                return r
            if ack != NONE:
                raise ValueError(f"ack must be 'report', 'none' or 'wait', not {ack!r}")
        with self._lock:
            # a closed client has a batch key nothing equals, so this also checks for that
            if topic != self._btopic or ack != self._back or partitioner != self._bpart or cluster != self._bcluster:
                self._new_batch(topic, ack, partitioner, cluster)
            buf = self._buf
            if key is None and headers is None and timestamp is None and partition is None and type(value) is bytes:
                buf.append(value)
                self._bbytes += len(value)
            else:
                elem, size = message_element(value, key, headers, timestamp, partition)
                buf.append(elem)
                self._bbytes += size
            if self._back is REPORT:
                seq = self._next_seq
                self._next_seq = seq + 1
                if on_delivery is not None:
                    self._callbacks[seq] = on_delivery
            else:
                seq = 0
            n = len(buf)
            if n >= self._batch_n or self._bbytes >= self._batch_bytes:
                self._send_buffer()
            elif n == 1:
                self._bt0 = time.monotonic()
                if self._linger_ev is not None:
                    self._linger_ev.set()
                elif not self._linger:
                    self._send_buffer()
            return seq

    def _produce_wait(
        self,
        elems: List[Any],
        topic: Any,
        partitioner: Optional[str],
        cluster: Optional[str],
        timeout: Optional[float],
    ) -> ProduceResult:
        if isinstance(topic, (bytes, bytearray)):
            topic = bytes(topic).decode("utf-8")
        if timeout is not None and timeout < 0:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        step = max(1, self.hello.max_batch)
        reqs: List[Req] = []
        with self._lock:
            self._check_open()
            self._send_buffer()
            for i in range(0, len(elems), step):
                req, payload = self._encode_wait(topic, elems[i : i + step], partitioner, cluster)
                reqs.append(req)
                self._send_payload(payload)
            # (_wait_for reads what is there before it sleeps)
            if not self._wait_for(lambda: all(r.done for r in reqs), deadline):
                for rid in [k for k, v in self._pending.items() if v in reqs]:
                    del self._pending[rid]
                raise TimedOut(f"no acknowledgement within {timeout}s (the messages may still be delivered)")
        return self._wait_results(reqs, len(elems))

    def produce_batch(
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
        """Produce many messages at once.

        Each message is bytes (the value), a dict with any of ``value``,
        ``key``, ``headers``, ``timestamp``, ``partition``, or a tuple
        ``(value, key, headers, timestamp, partition)`` cut short anywhere
        after the value.  Report mode: returns the first sequence number
        (``seq .. seq+count-1``).  Wait mode: returns per-message results
        (:class:`RecordMetadata` or the error), raising only for errors of
        whole requests.
        """
        ack = ACKS.get(ack, "")
        if not ack:
            raise ValueError("ack must be 'report', 'none' or 'wait'")
        if all(type(m) is bytes for m in messages):
            elems: List[Any] = list(messages)
            size = sum(map(len, elems)) + 16 * len(elems)
        else:
            elems, size = batch_elements(messages)
        if ack is WAIT:
            return self._produce_wait(elems, topic, partitioner, cluster, timeout)
        with self._lock:
            if topic != self._btopic or ack != self._back or partitioner != self._bpart or cluster != self._bcluster:
                self._new_batch(topic, ack, partitioner, cluster)
            report = ack is REPORT
            first = self._next_seq if report else 0
            if report and on_delivery is not None:
                for s in range(first, first + len(elems)):
                    self._callbacks[s] = on_delivery
            per = size / max(1, len(elems))
            i = 0
            while i < len(elems):
                chunk = elems[i : i + self._batch_n - len(self._buf)]
                if not self._buf:
                    self._bt0 = time.monotonic()
                self._buf.extend(chunk)
                if report:  # the batch's seqs end at _next_seq - 1 (see Session._detach)
                    self._next_seq += len(chunk)
                self._bbytes += int(per * len(chunk))
                i += len(chunk)
                if len(self._buf) >= self._batch_n or self._bbytes >= self._batch_bytes:
                    self._send_buffer()
            if self._buf and self._linger_ev is not None:
                self._linger_ev.set()
            return ProduceResult(len(elems), first)

    # ------------------------------------------------------------------
    # reports

    def _service(self, timeout: float) -> None:
        """Send a due batch, read what is there, keep the report poll parked."""
        if self._buf and (timeout > 0 or time.monotonic() - self._bt0 >= self._linger):
            self._send_buffer()
        self._recv_nb()
        self._maybe_arm()

    def poll(self, timeout: float = 0.0) -> int:
        """Process responses and call the delivery callbacks (confluent-style).

        Waits up to ``timeout`` seconds for at least one report when there is
        none yet.  Returns the number of callbacks called.  Reports for which
        no callback applies stay queued for :meth:`poll_reports`.
        """
        if timeout <= 0:
            # cheap exit for poll(0) after every produce(): read recently, no
            # batch overdue, no report a callback wants (unlocked reads are a hint)
            now = time.monotonic()
            if (
                now - self._last_read < 0.001
                and not (self._buf and now - self._bt0 >= self._linger)
                and (not self._runs or (self.on_delivery is None and not self._callbacks))
            ):
                return 0
        with self._lock:
            if not self._closed:
                now = time.monotonic()
                if timeout > 0 or now - self._last_read >= 0.001 or (self._buf and now - self._bt0 >= self._linger):
                    self._service(timeout)
                if timeout > 0 and not self._runs and self._sent_rep > self._collected:
                    self._wait_for(lambda: bool(self._runs), now + timeout)
            cbs = self._take_for_callbacks()
        self._run_callbacks(cbs)
        return len(cbs)

    def poll_reports(self, max: int = 65536, timeout: float = 0.0) -> List[DeliveryReport]:
        """Up to ``max`` delivery reports, waiting up to ``timeout`` s for one.

        Per-message ``on_delivery`` callbacks of the returned reports are
        called too (the client-wide ``on_delivery`` is not: the reports are
        yours).
        """
        with self._lock:
            if not self._closed:
                now = time.monotonic()
                self._service(timeout)
                if timeout > 0 and not self._runs and self._sent_rep > self._collected:
                    self._wait_for(lambda: bool(self._runs), now + timeout)
            reports, cbs = self._take_with_own_callbacks(max)
        self._run_callbacks(cbs)
        return reports

    def discard_reports(self, on_error: Optional[DeliveryCallback] = None) -> int:
        """Drop the reports that arrived so far, without expanding the
        successful ones; failed ones are passed to ``on_error`` first, and
        per-message callbacks still get theirs.  Returns how many were dropped.

        For producers that do not look at reports but must not let them pile
        up locally (``ack="none"`` avoids reports altogether, but also gives
        up failure notices).
        """
        with self._lock:
            if not self._closed:
                self._recv_nb()
                self._maybe_arm()
            n, cbs = self._take_discard(on_error)
        self._run_callbacks(cbs)
        return n

    def flush(self, timeout: Optional[float] = 10.0) -> int:
        """Send everything and wait until each message has an outcome.

        Also collects the delivery reports and calls the callbacks: with a
        client-wide ``on_delivery``, as the reports arrive (as
        confluent-kafka's ``flush`` does), not all at the end.
        Returns how many messages still have no outcome (0 on success).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        remaining = 0
        self._lock.acquire()
        try:
            self._check_open()
            self._send_buffer()
            rid, req, payload = self._encode_call("flush", {"timeout_ms": ms(timeout)})
            self._send_payload(payload)
            self._recv_nb()
            grace = None if deadline is None else deadline + 5.0
            # With a client-wide callback every report is one to call back
            # (_take_for_callbacks empties the runs), so waking for them
            # cannot spin; per-message callbacks alone wait for the end.
            progressive = self.on_delivery is not None
            while True:
                if not self._wait_for(lambda: req.done or (progressive and bool(self._runs)), grace):
                    self._pending.pop(rid, None)
                    remaining = max(0, self._sent_rep - self._collected)
                    break
                if req.done:
                    res = req.outcome()
                    r = res.get("remaining") if isinstance(res, Mapping) else None
                    remaining = r if isinstance(r, int) else 0
                    target = self._sent_rep - remaining
                    self._maybe_arm()
                    collect_deadline = time.monotonic() + 5.0
                    if deadline is not None:
                        collect_deadline = max(deadline, time.monotonic() + 1.0)
                    self._wait_for(lambda: self._collected >= target, collect_deadline)
                    break
                cbs = self._take_for_callbacks()
                self._lock.release()
                try:
                    self._run_callbacks(cbs)
                finally:
                    self._lock.acquire()
            cbs = self._take_for_callbacks()
        finally:
            self._lock.release()
        self._run_callbacks(cbs)
        return remaining

    # ------------------------------------------------------------------
    # other ops

    def ping(self) -> float:
        """Round trip to the daemon, in seconds."""
        t0 = time.perf_counter()
        self._call("ping", {}, self.timeout)
        return time.perf_counter() - t0

    def metadata(
        self,
        topics: Optional[Iterable[Union[str, bytes]]] = None,
        timeout: float = 5.0,
        *,
        cluster: Optional[str] = None,
    ) -> ClusterMetadata:
        """Brokers and topics (all topics when ``topics`` is None)."""
        args = self._args(cluster)
        args["timeout_ms"] = ms(timeout)
        if topics is not None:
            args["topics"] = [t.decode("utf-8") if isinstance(t, (bytes, bytearray)) else t for t in topics]
        wait = None if self.timeout is None else timeout + max(5.0, self.timeout)
        res = self._call("metadata", args, wait)
        if not isinstance(res, Mapping):
            raise ProtocolViolation("metadata result is not a map")
        return ClusterMetadata.from_result(res)

    def stats(self, cluster: Optional[str] = None) -> Dict[str, Any]:
        """The daemon's counters (``daemon``) and per-cluster stats (``clusters``)."""
        args = {"cluster": cluster} if cluster is not None else {}
        res = self._call("stats", args, self.timeout)
        if not isinstance(res, dict):
            raise ProtocolViolation("stats result is not a map")
        return res

    # ------------------------------------------------------------------
    # consumers (kafkad.consumer)

    def consumer(
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
    ) -> "Consumer":
        """Attach to a daemon-held consumer (``consumer_open``): see
        :class:`kafkad.consumer.Consumer`.

        ``mode``: ``"simple"`` (this topic's partitions, or ``partitions``;
        ``group`` only for commits) or ``"group"`` (Kafka-coordinated group
        ``group`` over ``topics``; ``assignor`` ``range``/``roundrobin``/
        ``cooperative-sticky``).  ``offsets``: simple mode start offsets,
        {partition: offset} or pairs.  ``auto_commit_interval_ms``: commit
        what was consumed on this interval (here, not in the daemon).
        ``fetch_max``/``fetch_max_bytes``: size of each consume request.
        ``on_event``: called with each assigned/revoked/eof
        :class:`~kafkad.consumer.Event` instead of queueing it in ``events``.
        ``mode="zookeeper"``: PyKafka's ZooKeeper-balanced group ``group`` on
        one topic (``zookeeper_connect`` required; ``assignor`` ``range``/
        ``roundrobin``; ``zookeeper_session_timeout_ms``,
        ``zookeeper_connection_timeout_ms``, ``rebalance_backoff_ms``,
        ``zookeeper_owners_layout`` as SPEC 4.9); the consumer's
        ``member_id`` is the daemon's id in ZooKeeper.
        """
        from .consumer import Consumer, open_args

        args = open_args(
            topic, topics, mode, group, partitions, offsets, auto_offset_reset, reset_offset_on_start, assignor,
            cluster if cluster is not None else self.cluster,
            zookeeper_connect=zookeeper_connect,
            zookeeper_session_timeout_ms=zookeeper_session_timeout_ms,
            zookeeper_connection_timeout_ms=zookeeper_connection_timeout_ms,
            rebalance_backoff_ms=rebalance_backoff_ms,
            zookeeper_owners_layout=zookeeper_owners_layout,
        )
        return Consumer(
            self,
            args,
            auto_commit_interval_ms=auto_commit_interval_ms,
            fetch_max=fetch_max,
            fetch_max_bytes=fetch_max_bytes,
            on_event=on_event,
        )

    def watermarks(
        self, topic: Union[str, bytes], partition: int, timeout: float = 5.0, *, cluster: Optional[str] = None
    ) -> Tuple[int, int]:
        """``(low, high)`` offsets of a partition (high: the next offset to be written)."""
        args = self._args(cluster)
        args["topic"] = topic.decode("utf-8") if isinstance(topic, (bytes, bytearray)) else topic
        args["partition"] = int(partition)
        args["timeout_ms"] = max(1, ms(timeout))
        wait = None if self.timeout is None else timeout + max(5.0, self.timeout)
        res = self._call("watermarks", args, wait)
        if not isinstance(res, Mapping) or not isinstance(res.get("low"), int) or not isinstance(res.get("high"), int):
            raise ProtocolViolation("watermarks result without low/high")
        return res["low"], res["high"]

    def offsets_for_times(
        self, timestamps: Any, timeout: float = 5.0, *, cluster: Optional[str] = None
    ) -> Dict[Tuple[str, int], int]:
        """For each partition, the earliest offset whose record timestamp is
        at or after the given one; -1 where every record is older.

        ``timestamps``: ``{(topic, partition): ts}`` or ``(topic, partition,
        ts)`` triples; ``ts`` in ms since the epoch or a ``datetime`` (naive:
        UTC), or -2 / -1 for the low / high watermark.  Returns
        ``{(topic, partition): offset}``.  Seek a consumer there to read from
        a point in time (confluent-kafka's ``offsets_for_times``).
        """
        args = self._args(cluster)
        args["timestamps"] = times_args(timestamps)
        args["timeout_ms"] = max(1, ms(timeout))
        wait = None if self.timeout is None else timeout + max(5.0, self.timeout)
        return times_result(self._call("offsets_for_times", args, wait))

    def call(self, op: str, args: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = DEFAULT) -> Any:
        """Send any op and return its raw result (for ops newer than this stub)."""
        if not isinstance(op, str) or not op:
            raise InvalidArgument("op must be a non-empty str")
        return self._call(op, dict(args or {}), self.timeout if timeout is not None and timeout < 0 else timeout)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<kafkad.Client {self.socket_path!r} {state} in_flight={self.in_flight}>"


def _linger_main(ref: "ReferenceType[Client]", ev: threading.Event, delay: float) -> None:
    while True:
        ev.wait()
        c = ref()
        if c is None or c._closed:
            return
        ev.clear()
        del c
        time.sleep(delay)
        c = ref()
        if c is None:
            return
        c._linger_tick()
        del c


