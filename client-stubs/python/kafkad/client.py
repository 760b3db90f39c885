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

import collections
import logging
import os
import select
import socket
import threading
import time
import weakref
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

from typing import Literal

from ._codec import HEADER, FrameDecoder, new_packer
from ._messages import BytesLike, Headers, MessageLike, batch_elements, message_element
from ._reports import SeqMap, compress_reports, expand_run
from .errors import (
    BadFrame,
    ConnectionLost,
    InvalidArgument,
    KafkadError,
    ProtocolViolation,
    TimedOut,
    TooLarge,
    error_from_map,
)
from .types import ClusterMetadata, DeliveryReport, HelloInfo, ProduceResult, RecordMetadata

__all__ = ["Client", "DEFAULT_SOCKET", "default_socket_path", "DeliveryCallback"]

log = logging.getLogger("kafkad")

DEFAULT_SOCKET = "/run/kafkad/kafkad.sock"
PROTOCOL_VERSION = 1
CLIENT_NAME = "kafkad-python/0.1"

DeliveryCallback = Callable[[DeliveryReport], Any]

_REPORT = "report"
_NONE = "none"
_WAIT = "wait"
_ACKS = {_REPORT: _REPORT, _NONE: _NONE, _WAIT: _WAIT}

_K_CALL = 0  # a caller waits for the response
_K_BATCH = 1  # async produce batch (report / none)
_K_POLL = 2  # the parked poll_reports

_DEFAULT = -1.0  # "use the client's timeout"
_CLOSED = object()  # batch key of a closed client: equal to no topic
_FOREVER_MS = 0x7FFFFFFF
_POLL_PARK_MS = 5000
_RBUF = 1 << 20
_READ_BUDGET = 8 << 20
_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL


def default_socket_path(socket_path: Optional[str] = None) -> str:
    """``socket_path`` if given, else ``$KAFKAD_SOCKET``, else the default."""
    return socket_path or os.environ.get("KAFKAD_SOCKET") or DEFAULT_SOCKET


class _Req:
    __slots__ = ("kind", "done", "result", "error", "exc", "cstart", "count", "ack", "op")

    def __init__(self, kind: int, op: str, cstart: int = 0, count: int = 0, ack: str = _REPORT) -> None:
        self.kind = kind
        self.op = op
        self.done = False
        self.result: Any = None
        self.error: Any = None
        self.exc: Optional[KafkadError] = None
        self.cstart = cstart
        self.count = count
        self.ack = ack


def _ms(timeout: Optional[float]) -> int:
    if timeout is None:
        return _FOREVER_MS
    return max(0, min(_FOREVER_MS, int(timeout * 1000)))


class Client:
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
        self.socket_path = default_socket_path(socket_path)
        self.cluster = cluster
        self.timeout = timeout
        self.on_delivery = on_delivery
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = True
        self._close_exc: KafkadError = ConnectionLost("not connected")
        self._reader = False
        self._close_deferred = False
        self._pending: Dict[int, _Req] = {}
        self._next_id = 0
        self._packer = new_packer()
        self._decoder = FrameDecoder()
        self._rbuf = bytearray(_RBUF)
        self._rview = memoryview(self._rbuf)
        self._last_read = 0.0
        self._sending = False
        # the open local batch and what it is for
        self._buf: List[Any] = []
        self._bbytes = 0
        self._bt0 = 0.0
        self._btopic: Any = None
        self._bname = ""
        self._back = _REPORT
        self._bpart: Optional[str] = None
        self._bcluster: Optional[str] = None
        # report-mode bookkeeping (client numbering, see _reports.py)
        self._next_seq = 1
        self._sent_rep = 0
        self._collected = 0
        self._seqmap = SeqMap()
        self._runs: Deque[List[Any]] = collections.deque()
        self._callbacks: Dict[int, DeliveryCallback] = {}
        self._poll_req: Optional[_Req] = None
        self._poll_retry_at = 0.0
        self.daemon_pending = 0
        self.async_errors = 0
        self.last_async_error: Optional[KafkadError] = None
        self._want_batch = max(1, int(batch_messages))
        self._want_bytes = max(1, int(batch_bytes))
        self._linger = max(0.0, float(linger_ms)) / 1000.0
        self._linger_ev: Optional[threading.Event] = None
        self._linger_thread: Optional[threading.Thread] = None

        self.hello = HelloInfo()
        self._apply_limits()
        self._connect(client_name)
        if background and self._linger > 0:
            ev = threading.Event()
            self._linger_ev = ev
            t = threading.Thread(
                target=_linger_main,
                args=(weakref.ref(self), ev, self._linger),
                name="kafkad-linger",
                daemon=True,
            )
            self._linger_thread = t
            t.start()
            weakref.finalize(self, ev.set)

    # ------------------------------------------------------------------
    # connection

    def _connect(self, client_name: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            raise ConnectionLost(f"cannot connect to kafkad at {self.socket_path}: {e}") from e
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
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
        self.hello = HelloInfo.from_result(res if isinstance(res, Mapping) else {})
        self._apply_limits()

    def _apply_limits(self) -> None:
        h = self.hello
        self._decoder.max_frame = max(h.max_frame, 1 << 16)
        self._max_payload = h.max_frame
        self._max_pending = max(1, h.max_pending)
        self._poll_max = max(65536, self._max_pending)
        # a batch must fit in max_batch and leave room under max_pending for pipelining
        self._batch_n = max(1, min(self._want_batch, h.max_batch, max(1, self._max_pending // 2)))
        self._batch_bytes = max(1, min(self._want_bytes, h.max_frame // 2))

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Send what is still batched and close (without waiting for outcomes).

        Report-mode messages whose outcome is not known yet get a
        :class:`ConnectionLost` report (they may still be delivered: the
        daemon delivers everything it received), so every message still gets
        exactly one report.  Use :meth:`flush` first, or
        the context manager, to wait for them.
        """
        with self._lock:
            if self._closed:
                return
            try:
                if self._buf:
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

    def _check_open(self) -> None:
        if self._closed:
            raise self._close_exc

    def _fail(self, exc: KafkadError) -> None:
        """Mark the connection dead (lock held): fail waiters, report unknowns."""
        if self._closed:
            return
        self._closed = True
        self._close_exc = exc
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        lost = exc if isinstance(exc, ConnectionLost) else ConnectionLost(str(exc))
        lost.__cause__ = exc if lost is not exc else None
        covered: List[Tuple[int, int]] = []
        runs: List[List[Any]] = []
        for req in self._pending.values():
            if req.kind == _K_CALL:
                req.exc = exc
                req.done = True
            elif req.kind == _K_BATCH and req.ack is _REPORT and req.count:
                runs.append([req.cstart, req.count, -1, -1, lost])
                covered.append((req.cstart, req.cstart + req.count))
        self._pending.clear()
        self._poll_req = None
        # accepted requests whose messages have no outcome yet
        for cstart, count in self._seqmap.unreported():
            runs.append([cstart, count, -1, -1, lost])
            covered.append((cstart, cstart + count))
        self._seqmap.clear()
        if self._buf and self._back is _REPORT:
            n = len(self._buf)
            runs.append([self._next_seq - n, n, -1, -1, lost])
            covered.append((self._next_seq - n, self._next_seq))
        self._buf = []
        self._bbytes = 0
        self._btopic = _CLOSED
        # per-message callbacks get exactly one report even for messages
        # whose request was accepted but whose outcome never came back
        if self._callbacks:
            spans = sorted(covered + [(r[0], r[0] + r[1]) for r in self._runs])
            j = 0
            for seq in sorted(self._callbacks):
                while j < len(spans) and spans[j][1] <= seq:
                    j += 1
                if j < len(spans) and spans[j][0] <= seq:
                    continue
                runs.append([seq, 1, -1, -1, lost])
        runs.sort(key=lambda r: r[0])
        self._runs.extend(runs)
        self._cond.notify_all()
        if self._reader:
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

    # ------------------------------------------------------------------
    # low-level I/O (all with the lock held)

    def _send_payload(self, payload: bytes) -> None:
        if len(payload) > self._max_payload:
            raise TooLarge(f"request of {len(payload)} bytes exceeds max_frame {self._max_payload}")
        hdr = HEADER.pack(len(payload))
        self._sending = True
        try:
            try:
                n = self._sock.sendmsg((hdr, payload))
            except BlockingIOError:
                n = 0
            if n < len(payload) + 4:
                self._send_rest(memoryview(hdr + payload)[n:])
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
            try:
                frames = dec.frames()
            except KafkadError as e:
                self._fail(e)
                break
            for f in frames:
                self._dispatch(f)
                got = True
                if self._closed:
                    break
            total += n
            if n < size or total >= _READ_BUDGET or self._closed:
                break
        self._last_read = time.monotonic()
        if got:
            self._cond.notify_all()
            if self._reader:
                self._wake()
        return got

    def _dispatch(self, frame: Any) -> None:
        if type(frame) is not list or len(frame) != 3:
            self._fail(ProtocolViolation(f"response is not [id, error, result]: {frame!r:.200}"))
            return
        rid, err, res = frame
        if rid is None:
            exc = error_from_map(err) if isinstance(err, Mapping) else ProtocolViolation("nil id without error")
            if isinstance(exc, BadFrame):
                self._fail(exc)
            else:
                log.warning("kafkad: error without request id: %s", exc)
            return
        req = self._pending.pop(rid, None)
        if req is None:
            log.debug("kafkad: response to unknown or abandoned request %r", rid)
            return
        kind = req.kind
        if kind == _K_BATCH:
            self._batch_done(req, err, res)
        elif kind == _K_POLL:
            self._poll_done(req, err, res)
        else:
            req.error = err
            req.result = res
            req.done = True

    def _batch_done(self, req: _Req, err: Any, res: Any) -> None:
        if err is not None:
            exc = error_from_map(err)
            if req.ack is _REPORT:
                self._runs.append([req.cstart, req.count, -1, -1, exc])
                self._collected += req.count
            else:
                self.async_errors += 1
                self.last_async_error = exc
            log.warning("kafkad: produce of %d message(s) rejected: %s", req.count, exc)
            return
        if not isinstance(res, Mapping):
            return
        if req.ack is _REPORT:
            seq = res.get("seq")
            out: List[List[Any]] = []
            self._seqmap.add(seq if isinstance(seq, int) else req.cstart, req.count, req.cstart, out)
            if out:
                self._runs.extend(out)
        reps = res.get("reports")
        if reps:
            self._on_runs(reps)

    def _poll_done(self, req: _Req, err: Any, res: Any) -> None:
        if self._poll_req is req:
            self._poll_req = None
        if err is not None:
            exc = error_from_map(err)
            log.debug("kafkad: poll_reports failed: %s", exc)
            self._poll_retry_at = time.monotonic() + (0.5 if exc.retriable else 0.1)
            return
        if isinstance(res, Mapping):
            reps = res.get("reports")
            if reps:
                self._on_runs(reps)
            p = res.get("pending")
            if isinstance(p, int):
                self.daemon_pending = p

    def _on_runs(self, runs: Iterable[Any]) -> None:
        out: List[List[Any]] = []
        translate = self._seqmap.translate
        collected = 0
        for r in runs:
            if type(r) is not list or len(r) != 5:
                log.warning("kafkad: malformed report run %r", r)
                continue
            collected += r[1]
            if r[4] is not None:
                r[4] = error_from_map(r[4])
            translate(r, out)
        self._collected += collected
        if out:
            self._runs.extend(out)

    def _maybe_arm(self) -> None:
        """Keep one poll_reports parked while report-mode messages are out."""
        if (
            self._poll_req is None
            and not self._sending
            and not self._closed
            and self._sent_rep > self._collected
        ):
            if self._poll_retry_at and time.monotonic() < self._poll_retry_at:
                return
            req = _Req(_K_POLL, "poll_reports")
            self._next_id += 1
            rid = self._next_id
            self._pending[rid] = req
            self._poll_req = req
            self._send_payload(
                self._packer.pack([rid, "poll_reports", {"max": self._poll_max, "timeout_ms": _POLL_PARK_MS}])
            )

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
            req = _Req(_K_CALL, op)
            self._next_id += 1
            rid = self._next_id
            self._pending[rid] = req
            self._send_payload(self._packer.pack([rid, op, args if args is not None else {}]))
            self._recv_nb()
            if not self._wait_for(lambda: req.done, deadline):
                self._pending.pop(rid, None)
                raise TimedOut(f"no response to {op} within {timeout}s")
            if not req.done:
                raise self._close_exc
        if req.exc is not None:
            raise req.exc
        if req.error is not None:
            raise error_from_map(req.error)
        return req.result

    def _args(self, cluster: Optional[str]) -> Dict[str, Any]:
        c = cluster if cluster is not None else self.cluster
        return {"cluster": c} if c is not None else {}

    # ------------------------------------------------------------------
    # batching

    def _new_batch(self, topic: str, ack: str, partitioner: Optional[str], cluster: Optional[str]) -> None:
        self._check_open()
        if isinstance(topic, str):
            name = topic
        elif isinstance(topic, bytes):
            name = topic.decode("utf-8")
        else:
            raise TypeError("topic must be str or bytes")
        if partitioner is not None and not isinstance(partitioner, str):
            raise TypeError("partitioner must be a str (a name from the protocol)")
        if ack not in _ACKS:
            raise ValueError(f"ack must be 'report', 'none' or 'wait', not {ack!r}")
        if self._buf:
            self._send_buffer()
        self._btopic = topic  # compared as given: bytes and str keys both stay cheap
        self._bname = name
        self._back = _ACKS[ack]
        self._bpart = partitioner
        self._bcluster = cluster

    def _send_buffer(self) -> None:
        buf = self._buf
        if not buf:
            return
        n = len(buf)
        self._buf = []
        self._bbytes = 0
        ack = self._back
        cstart = self._next_seq - n if ack is _REPORT else 0
        self._send_messages(buf, cstart, ack, self._bname, self._bpart, self._bcluster)

    def _send_messages(
        self,
        msgs: List[Any],
        cstart: int,
        ack: str,
        topic: str,
        partitioner: Optional[str],
        cluster: Optional[str],
    ) -> None:
        args = self._args(cluster)
        args["topic"] = topic
        args["ack"] = ack
        if partitioner is not None:
            args["partitioner"] = partitioner
        args["messages"] = msgs
        n = len(msgs)
        if ack is _REPORT:
            self._wait_room(n)
        self._next_id += 1
        rid = self._next_id
        payload = self._packer.pack([rid, "produce", args])
        if len(payload) > self._max_payload:
            if n == 1:
                exc = TooLarge(f"message of {len(payload)} bytes does not fit max_frame {self._max_payload}")
                if ack is _REPORT:
                    self._runs.append([cstart, 1, -1, -1, exc])
                    self._sent_rep += 1
                    self._collected += 1
                else:
                    self.async_errors += 1
                    self.last_async_error = exc
                return
            h = n // 2
            self._send_messages(msgs[:h], cstart, ack, topic, partitioner, cluster)
            self._send_messages(msgs[h:], cstart + h if ack is _REPORT else 0, ack, topic, partitioner, cluster)
            return
        self._pending[rid] = _Req(_K_BATCH, "produce", cstart, n, ack)
        if ack is _REPORT:
            self._sent_rep += n
        self._send_payload(payload)
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

    @overload
    def produce(
        self,
        topic: str,
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
        topic: str,
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
        topic: str,
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
        timeout: Optional[float] = _DEFAULT,
    ) -> Union[int, RecordMetadata]:
        """Produce one message.

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
        if ack is not _REPORT and ack != _REPORT:
            if ack == _WAIT:
                return self._produce_wait(topic, value, key, headers, timestamp, partition, partitioner, cluster, timeout)
            if ack != _NONE:
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
            if self._back is _REPORT:
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
        topic: str,
        value: Any,
        key: Any,
        headers: Any,
        timestamp: Any,
        partition: Optional[int],
        partitioner: Optional[str],
        cluster: Optional[str],
        timeout: Optional[float],
    ) -> RecordMetadata:
        elem, _size = message_element(value, key, headers, timestamp, partition)
        res = self._produce_wait_batch(topic, [elem], partitioner, cluster, timeout)
        r = res.results[0]
        if isinstance(r, KafkadError):
            raise r
        return r

    def _produce_wait_batch(
        self,
        topic: Any,
        elems: List[Any],
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
        reqs: List[Tuple[int, _Req, int]] = []
        with self._lock:
            self._check_open()
            if self._buf:
                self._send_buffer()
            for i in range(0, len(elems), step):
                chunk = elems[i : i + step]
                args = self._args(cluster)
                args["topic"] = topic
                args["ack"] = _WAIT
                if partitioner is not None:
                    args["partitioner"] = partitioner
                args["messages"] = chunk
                self._next_id += 1
                rid = self._next_id
                req = _Req(_K_CALL, "produce", 0, len(chunk), _WAIT)
                self._pending[rid] = req
                reqs.append((rid, req, len(chunk)))
                self._send_payload(self._packer.pack([rid, "produce", args]))
            self._recv_nb()
            if not self._wait_for(lambda: all(r.done for _i, r, _n in reqs), deadline):
                for rid, _r, _n in reqs:
                    self._pending.pop(rid, None)
                raise TimedOut(f"no acknowledgement within {timeout}s (the messages may still be delivered)")
        results: List[Union[RecordMetadata, KafkadError]] = []
        for _rid, req, n in reqs:
            if req.exc is not None:
                raise req.exc
            if req.error is not None:
                raise error_from_map(req.error)
            rl = req.result.get("results") if isinstance(req.result, Mapping) else None
            if not isinstance(rl, list) or len(rl) != n:
                raise ProtocolViolation("wait-mode produce result without one result per message")
            for item in rl:
                part, off, err = item
                results.append(error_from_map(err) if err else RecordMetadata(part, off))
        return ProduceResult(len(elems), 0, results)

    def produce_batch(
        self,
        topic: str,
        messages: Sequence[MessageLike],
        *,
        ack: str = "report",
        partitioner: Optional[str] = None,
        on_delivery: Optional[DeliveryCallback] = None,
        cluster: Optional[str] = None,
        timeout: Optional[float] = _DEFAULT,
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
        ack = _ACKS.get(ack, "")
        if not ack:
            raise ValueError("ack must be 'report', 'none' or 'wait'")
        if all(type(m) is bytes for m in messages):
            elems: List[Any] = list(messages)
            size = sum(map(len, elems)) + 16 * len(elems)
        else:
            elems, size = batch_elements(messages)
        if ack is _WAIT:
            return self._produce_wait_batch(topic, elems, partitioner, cluster, timeout)
        with self._lock:
            self._check_open()
            if topic != self._btopic or ack != self._back or partitioner != self._bpart or cluster != self._bcluster:
                self._new_batch(topic, ack, partitioner, cluster)
            first = self._next_seq if ack is _REPORT else 0
            if ack is _REPORT:
                self._next_seq += len(elems)
                if on_delivery is not None:
                    for s in range(first, first + len(elems)):
                        self._callbacks[s] = on_delivery
            per = size / max(1, len(elems))
            i = 0
            while i < len(elems):
                room = self._batch_n - len(self._buf)
                chunk = elems[i : i + room]
                if not self._buf:
                    self._bt0 = time.monotonic()
                self._buf.extend(chunk)
                self._bbytes += int(per * len(chunk))
                i += len(chunk)
                if len(self._buf) >= self._batch_n or self._bbytes >= self._batch_bytes:
                    self._send_buffer()
            if self._buf and self._linger_ev is not None:
                self._linger_ev.set()
            return ProduceResult(len(elems), first)

    # ------------------------------------------------------------------
    # reports

    def _take(self, limit: int) -> List[DeliveryReport]:
        out: List[DeliveryReport] = []
        runs = self._runs
        while runs and len(out) < limit:
            run = runs[0]
            room = limit - len(out)
            if run[1] > room:
                out.extend(expand_run(run, room))
                off = run[3] + room if run[3] >= 0 else run[3]
                runs[0] = [run[0] + room, run[1] - room, run[2], off, run[4]]
            else:
                out.extend(expand_run(run))
                runs.popleft()
        return out

    def _take_for_callbacks(self) -> List[Tuple[DeliveryCallback, DeliveryReport]]:
        if not self._runs or (self.on_delivery is None and not self._callbacks):
            return []
        reports = self._take(1 << 62)
        cbs = self._callbacks
        glob = self.on_delivery
        out: List[Tuple[DeliveryCallback, DeliveryReport]] = []
        if glob is not None:
            if cbs:
                for r in reports:
                    out.append((cbs.pop(r.seq, glob), r))
            else:
                out = [(glob, r) for r in reports]
            return out
        keep: List[DeliveryReport] = []
        for r in reports:
            cb = cbs.pop(r.seq, None)
            if cb is None:
                keep.append(r)
            else:
                out.append((cb, r))
        if keep:
            self._runs.extendleft(reversed(compress_reports(keep)))
        return out

    @staticmethod
    def _run_callbacks(cbs: List[Tuple[DeliveryCallback, DeliveryReport]]) -> None:
        for cb, r in cbs:
            cb(r)

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
        with self._lock:
            if not self._closed:
                now = time.monotonic()
                if timeout > 0 or now - self._last_read >= 0.001 or (
                    self._buf and now - self._bt0 >= self._linger
                ):
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
            reports = self._take(max)
            cbs: List[Tuple[DeliveryCallback, DeliveryReport]] = []
            if self._callbacks:
                for r in reports:
                    cb = self._callbacks.pop(r.seq, None)
                    if cb is not None:
                        cbs.append((cb, r))
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
            runs = list(self._runs)
            self._runs.clear()
            cbs: List[Tuple[DeliveryCallback, DeliveryReport]] = []
            n = 0
            for run in runs:
                n += run[1]
                if self._callbacks or (run[4] is not None and on_error is not None):
                    for r in expand_run(run):
                        cb = self._callbacks.pop(r.seq, None) if self._callbacks else None
                        if cb is not None:
                            cbs.append((cb, r))
                        elif r.error is not None and on_error is not None:
                            cbs.append((on_error, r))
        self._run_callbacks(cbs)
        return n

    def flush(self, timeout: Optional[float] = 10.0) -> int:
        """Send everything and wait until each message has an outcome.

        Also collects the delivery reports (and calls the callbacks).
        Returns how many messages still have no outcome (0 on success).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        remaining = 0
        with self._lock:
            self._check_open()
            if self._buf:
                self._send_buffer()
            req = _Req(_K_CALL, "flush")
            self._next_id += 1
            rid = self._next_id
            self._pending[rid] = req
            self._send_payload(self._packer.pack([rid, "flush", {"timeout_ms": _ms(timeout)}]))
            self._recv_nb()
            grace = None if deadline is None else deadline + 5.0
            if not self._wait_for(lambda: req.done, grace):
                self._pending.pop(rid, None)
                remaining = max(0, self._sent_rep - self._collected)
            elif req.exc is not None:
                raise req.exc
            elif req.error is not None:
                raise error_from_map(req.error)
            else:
                r = req.result.get("remaining") if isinstance(req.result, Mapping) else None
                remaining = r if isinstance(r, int) else 0
                target = self._sent_rep - remaining
                self._maybe_arm()
                collect_deadline = time.monotonic() + 5.0
                if deadline is not None:
                    collect_deadline = max(deadline, time.monotonic() + 1.0)
                self._wait_for(lambda: self._collected >= target, collect_deadline)
            cbs = self._take_for_callbacks()
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
        args["timeout_ms"] = _ms(timeout)
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

    def call(self, op: str, args: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = _DEFAULT) -> Any:
        """Send any op and return its raw result (for ops newer than this stub)."""
        if not isinstance(op, str) or not op:
            raise InvalidArgument("op must be a non-empty str")
        return self._call(op, dict(args or {}), self.timeout if timeout is not None and timeout < 0 else timeout)

    # ------------------------------------------------------------------
    # introspection

    @property
    def in_flight(self) -> int:
        """Report-mode messages produced whose report has not arrived yet."""
        return (self._next_seq - 1) - self._collected

    @property
    def reports_ready(self) -> int:
        """Messages whose reports arrived and wait to be consumed."""
        return sum(r[1] for r in self._runs)

    def __len__(self) -> int:
        return self.in_flight + (len(self._buf) if self._back is not _REPORT else 0)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<kafkad.Client {self.socket_path!r} {state} in_flight={self.in_flight}>"


def _linger_main(ref: "weakref.ref[Client]", ev: threading.Event, delay: float) -> None:
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
