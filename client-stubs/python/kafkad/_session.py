"""Protocol state shared by the blocking and the asyncio client (no I/O here).

A session knows the open local batch, the pending requests, the sequence
mapping and the delivery-report runs received.  It turns responses into
state changes (:meth:`_dispatch`) and builds request payloads; the clients
own the socket, the waiting and the locking.

Report-mode numbering: the client numbers report-mode messages itself
(``_next_seq``) when they enter the local batch; see ``_reports.py`` for how
daemon numbers are mapped back.  Back-pressure accounting: ``_sent_rep`` is
the number of report-mode messages sent, ``_collected`` the number whose
report reached us (or that need none from the daemon, e.g. a rejected
request); the daemon holds ``_sent_rep - _collected`` uncollected reports and
that must stay within ``max_pending`` (SPEC 5.3).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping

from ._codec import FrameDecoder, new_packer
from ._reports import SeqMap, compress_reports, expand_run, iter_run
from .errors import BadFrame, ConnectionLost, InvalidArgument, KafkadError, ProtocolViolation, TooLarge, error_from_map
from .types import DeliveryReport, HelloInfo, ProduceResult, RecordMetadata

# typing.TYPE_CHECKING without importing typing (mypy treats the name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

    DeliveryCallback = Callable[[DeliveryReport], Any]
else:

    def __getattr__(name: str) -> object:
        # DeliveryCallback, a typing alias, is made on first use: importing
        # typing costs every process that uses a Client ~1.5 ms
        if name == "DeliveryCallback":
            from typing import Any, Callable

            alias = Callable[[DeliveryReport], Any]
            globals()[name] = alias
            return alias
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["DEFAULT_SOCKET", "default_socket_path", "DeliveryCallback", "Session"]

from ._log import log  # noqa: E402

DEFAULT_SOCKET = "/run/kafkad/kafkad.sock"
PROTOCOL_VERSION = 1
CLIENT_NAME = "kafkad-python/0.1"

REPORT = "report"
NONE = "none"
WAIT = "wait"
ACKS = {REPORT: REPORT, NONE: NONE, WAIT: WAIT}

K_CALL = 0  # a caller waits for the response
K_BATCH = 1  # async produce batch (report / none)
K_POLL = 2  # the parked poll_reports

DEFAULT = -1.0  # "use the client's timeout"
CLOSED = object()  # batch key of a closed client: equal to no topic
FOREVER_MS = 0x7FFFFFFF
POLL_PARK_MS = 5000


def default_socket_path(socket_path: Optional[str] = None) -> str:
    """``socket_path`` if given, else ``$KAFKAD_SOCKET``, else the default."""
    return socket_path or os.environ.get("KAFKAD_SOCKET") or DEFAULT_SOCKET


def ms(timeout: Optional[float]) -> int:
    if timeout is None:
        return FOREVER_MS
    return max(0, min(FOREVER_MS, int(timeout * 1000)))


def timestamp_ms(v: Any) -> int:
    """An int (ms since the epoch, or -2 earliest / -1 latest) as is; a
    ``datetime`` in ms (a naive one read as UTC, as PyKafka does)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if hasattr(v, "tzinfo") and hasattr(v, "timestamp"):
        if v.tzinfo is None:
            import datetime as _dt

            v = v.replace(tzinfo=_dt.timezone.utc)
        return int(round(v.timestamp() * 1000))
    raise InvalidArgument(f"timestamp: expected an int (ms) or a datetime, not {type(v).__name__}")


def times_args(timestamps: Any) -> List[List[Any]]:
    """``offsets_for_times``' list from ``{(topic, partition): ts}`` or
    ``(topic, partition, ts)`` triples (ts: ms or datetime)."""
    out = []
    try:
        items = timestamps.items() if isinstance(timestamps, Mapping) else (((t, p), ts) for t, p, ts in timestamps)
        for (topic, partition), ts in items:
            t = topic.decode("utf-8") if isinstance(topic, (bytes, bytearray)) else topic
            if not isinstance(t, str) or isinstance(partition, bool) or not isinstance(partition, int):
                raise TypeError
            out.append([t, partition, timestamp_ms(ts)])
    except (TypeError, ValueError) as e:
        raise InvalidArgument(
            "offsets_for_times: expected {(topic, partition): timestamp} or (topic, partition, timestamp) triples"
        ) from e
    if not out:
        raise InvalidArgument("offsets_for_times: no partitions given")
    return out


def times_result(res: Any) -> Dict[Tuple[str, int], int]:
    offs = res.get("offsets") if isinstance(res, Mapping) else None
    if not isinstance(offs, list):
        raise ProtocolViolation("offsets_for_times result without offsets")
    return {(t, p): o for t, p, o in offs}


class Req:
    """One outstanding request."""

    __slots__ = ("kind", "done", "result", "error", "exc", "cstart", "count", "ack", "op", "fut", "hook")

    def __init__(self, kind: int, op: str, cstart: int = 0, count: int = 0, ack: str = REPORT) -> None:
        self.kind = kind
        self.op = op
        self.done = False
        self.result: Any = None
        self.error: Any = None
        self.exc: Optional[KafkadError] = None
        self.cstart = cstart
        self.count = count
        self.ack = ack
        self.fut: Any = None  # asyncio future of the async client
        # called with the request when its outcome is set, in dispatch order
        # (with the client's lock held): consumers keep stream order with it
        self.hook: Optional[Callable[["Req"], None]] = None

    def outcome(self) -> Any:
        """The result, or raise the request's error."""
        if self.exc is not None:
            raise self.exc
        if self.error is not None:
            raise error_from_map(self.error)
        return self.result


class Calls:
    """Delivery callbacks to run outside the lock: one callback for every
    report of some runs (expanded lazily as it runs, see
    :func:`~kafkad._reports.iter_run`), or explicit (callback, report)
    pairs."""

    __slots__ = ("cb", "runs", "count", "pairs")

    def __init__(
        self,
        cb: Optional[DeliveryCallback] = None,
        runs: Optional[List[List[Any]]] = None,
        pairs: Optional[List[Tuple[DeliveryCallback, DeliveryReport]]] = None,
    ) -> None:
        self.cb = cb
        self.runs = runs or []
        self.count = sum(r[1] for r in self.runs) if cb is not None else 0
        self.pairs = pairs or []

    def __len__(self) -> int:
        return len(self.pairs) + self.count

    def run(self) -> None:
        cb = self.cb
        if cb is not None:
            for run in self.runs:
                for r in iter_run(run):
                    cb(r)
        for c, r in self.pairs:
            c(r)


_NO_CALLS = Calls()


class Session:
    """I/O-free protocol state; see the module docstring."""

    def _init_session(
        self,
        cluster: Optional[str],
        on_delivery: Optional[DeliveryCallback],
        batch_messages: int,
        batch_bytes: int,
        linger_ms: float,
    ) -> None:
        self.cluster = cluster
        self.on_delivery = on_delivery
        self._closed = True
        self._close_exc: KafkadError = ConnectionLost("not connected")
        self._pending: Dict[int, Req] = {}
        self._next_id = 0
        self._packer = new_packer()
        self._decoder = FrameDecoder()
        self._sending = False
        # the open local batch and what it is for
        self._buf: List[Any] = []
        self._bbytes = 0
        self._bt0 = 0.0
        self._btopic: Any = None
        # the batch's topic when it is a plain report-mode batch (no
        # partitioner, no cluster), else CLOSED: Client.produce's common call
        # checks its batch key with one comparison
        self._fast_key: Any = CLOSED
        self._bname = ""
        self._back = REPORT
        self._bpart: Optional[str] = None
        self._bcluster: Optional[str] = None
        # report-mode bookkeeping
        self._next_seq = 1
        self._sent_rep = 0
        self._collected = 0
        self._seqmap = SeqMap()
        self._runs: Deque[List[Any]] = collections.deque()
        self._callbacks: Dict[int, DeliveryCallback] = {}
        self._poll_req: Optional[Req] = None
        self._poll_retry_at = 0.0
        self.daemon_pending = 0
        self.async_errors = 0
        self.last_async_error: Optional[KafkadError] = None
        self._want_batch = max(1, int(batch_messages))
        self._want_bytes = max(1, int(batch_bytes))
        self._linger = max(0.0, float(linger_ms)) / 1000.0
        self.hello = HelloInfo()
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

    def _hello_done(self, res: Any) -> None:
        self.hello = HelloInfo.from_result(res if isinstance(res, Mapping) else {})
        self._apply_limits()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise self._close_exc

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _args(self, cluster: Optional[str]) -> Dict[str, Any]:
        c = cluster if cluster is not None else self.cluster
        return {"cluster": c} if c is not None else {}

    def _encode_call(self, op: str, args: Optional[Mapping[str, Any]]) -> Tuple[int, Req, bytes]:
        rid = self._new_id()
        req = Req(K_CALL, op)
        self._pending[rid] = req
        payload: bytes = self._packer.pack([rid, op, args if args is not None else {}])
        return rid, req, payload

    # ------------------------------------------------------------------
    # failure

    def _fail_state(self, exc: KafkadError) -> None:
        """Mark the session dead: fail waiters, give every report-mode
        message without an outcome a ConnectionLost report."""
        self._closed = True
        self._close_exc = exc
        lost = exc if isinstance(exc, ConnectionLost) else ConnectionLost(str(exc))
        if lost is not exc:
            lost.__cause__ = exc
        covered: List[Tuple[int, int]] = []
        runs: List[List[Any]] = []
        for req in self._pending.values():
            if req.kind == K_CALL:
                req.exc = exc
                req.done = True
                if req.hook is not None:
                    req.hook(req)
                self._complete(req)
            elif req.kind == K_BATCH and req.ack is REPORT and req.count:
                runs.append([req.cstart, req.count, -1, -1, lost])
                covered.append((req.cstart, req.cstart + req.count))
        self._pending.clear()
        self._poll_req = None
        # accepted requests whose messages have no outcome yet
        for cstart, count in self._seqmap.unreported():
            runs.append([cstart, count, -1, -1, lost])
            covered.append((cstart, cstart + count))
        self._seqmap.clear()
        if self._buf and self._back is REPORT:
            n = len(self._buf)
            runs.append([self._next_seq - n, n, -1, -1, lost])
            covered.append((self._next_seq - n, self._next_seq))
        self._buf = []
        self._bbytes = 0
        self._btopic = CLOSED
        self._fast_key = CLOSED
        # per-message callbacks get exactly one report in any case
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

    def _complete(self, req: Req) -> None:
        """Hook: a K_CALL request got its outcome."""

    # ------------------------------------------------------------------
    # responses

    def _dispatch(self, frame: Any) -> Optional[KafkadError]:
        """Apply one response; returns an error that must kill the connection."""
        if type(frame) is not list or len(frame) != 3:
            return ProtocolViolation(f"response is not [id, error, result]: {frame!r:.200}")
        rid, err, res = frame
        if rid is None:
            exc = error_from_map(err) if isinstance(err, Mapping) else ProtocolViolation("nil id without error")
            if isinstance(exc, BadFrame):
                return exc
            log.warning("kafkad: error without request id: %s", exc)
            return None
        req = self._pending.pop(rid, None)
        if req is None:
            log.debug("kafkad: response to unknown or abandoned request %r", rid)
            return None
        kind = req.kind
        if kind == K_BATCH:
            self._batch_done(req, err, res)
        elif kind == K_POLL:
            self._poll_done(req, err, res)
        else:
            req.error = err
            req.result = res
            req.done = True
            if req.hook is not None:
                req.hook(req)
            self._complete(req)
        return None

    def _batch_done(self, req: Req, err: Any, res: Any) -> None:
        if err is not None:
            exc = error_from_map(err)
            if req.ack is REPORT:
                self._runs.append([req.cstart, req.count, -1, -1, exc])
                self._collected += req.count
            else:
                self.async_errors += 1
                self.last_async_error = exc
            log.warning("kafkad: produce of %d message(s) rejected: %s", req.count, exc)
            return
        if not isinstance(res, Mapping):
            return
        if req.ack is REPORT:
            seq = res.get("seq")
            out: List[List[Any]] = []
            self._seqmap.add(seq if isinstance(seq, int) else req.cstart, req.count, req.cstart, out)
            if out:
                self._runs.extend(out)
        reps = res.get("reports")
        if reps:
            self._on_runs(reps)

    def _poll_done(self, req: Req, err: Any, res: Any, now: float = 0.0) -> None:
        if self._poll_req is req:
            self._poll_req = None
        if err is not None:
            exc = error_from_map(err)
            log.debug("kafkad: poll_reports failed: %s", exc)
            self._poll_backoff(exc)
            return
        if isinstance(res, Mapping):
            reps = res.get("reports")
            if reps:
                self._on_runs(reps)
            p = res.get("pending")
            if isinstance(p, int):
                self.daemon_pending = p

    def _poll_backoff(self, exc: KafkadError) -> None:
        """Hook: when to try poll_reports again after an error."""

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

    def _needs_poll(self) -> bool:
        return (
            self._poll_req is None
            and not self._sending
            and not self._closed
            and self._sent_rep > self._collected
        )

    def _encode_poll(self) -> bytes:
        req = Req(K_POLL, "poll_reports")
        rid = self._new_id()
        self._pending[rid] = req
        self._poll_req = req
        payload: bytes = self._packer.pack([rid, "poll_reports", {"max": self._poll_max, "timeout_ms": POLL_PARK_MS}])
        return payload

    # ------------------------------------------------------------------
    # batching

    def _set_batch_key(self, topic: Any, ack: str, partitioner: Optional[str], cluster: Optional[str]) -> None:
        """Validate and record what the (empty) local batch is for."""
        self._check_open()
        if isinstance(topic, str):
            name = topic
        elif isinstance(topic, bytes):
            name = topic.decode("utf-8")
        else:
            raise TypeError("topic must be str or bytes")
        if partitioner is not None and not isinstance(partitioner, str):
            raise TypeError("partitioner must be a str (a name from the protocol)")
        if ack not in ACKS:
            raise ValueError(f"ack must be 'report', 'none' or 'wait', not {ack!r}")
        self._btopic = topic  # compared as given: bytes and str keys both stay cheap
        self._bname = name
        self._back = ACKS[ack]
        self._bpart = partitioner
        self._bcluster = cluster
        self._fast_key = topic if self._back is REPORT and partitioner is None and cluster is None else CLOSED

    def _detach(self) -> Optional[Tuple[List[Any], int, str]]:
        """Take the local batch: (messages, first client seq, ack) or None."""
        buf = self._buf
        if not buf:
            return None
        self._buf = []
        self._bbytes = 0
        ack = self._back
        return buf, (self._next_seq - len(buf) if ack is REPORT else 0), ack

    def _encode_produce(self, msgs: List[Any], cstart: int, ack: str) -> List[Tuple[bytes, int, int]]:
        """Payloads for a detached batch: [(payload, first seq, count)].

        A batch too large for one frame is split; a single message that
        cannot fit gets a TOO_LARGE outcome here.
        """
        args = self._args(self._bcluster)
        args["topic"] = self._bname
        args["ack"] = ack
        if self._bpart is not None:
            args["partitioner"] = self._bpart
        out: List[Tuple[bytes, int, int]] = []
        todo = [(msgs, cstart)]
        while todo:
            part, first = todo.pop()
            args["messages"] = part
            payload: bytes = self._packer.pack([0, "produce", args])
            if len(payload) + 8 <= self._max_payload:  # + room for the real id
                out.append((payload, first, len(part)))
                continue
            if len(part) == 1:
                exc = TooLarge(f"message of {len(payload)} bytes does not fit max_frame {self._max_payload}")
                if ack is REPORT:
                    self._runs.append([first, 1, -1, -1, exc])
                    self._sent_rep += 1
                    self._collected += 1
                else:
                    self.async_errors += 1
                    self.last_async_error = exc
                continue
            h = len(part) // 2
            todo.append((part[h:], first + h if ack is REPORT else 0))
            todo.append((part[:h], first))
        return out

    def _register_produce(self, payload: bytes, first: int, n: int, ack: str) -> Tuple[bytes, memoryview]:
        """Give an encoded produce request its id and track it; returns the
        payload as two parts (new head, untouched rest) to send together."""
        rid = self._new_id()
        self._pending[rid] = Req(K_BATCH, "produce", first, n, ack)
        if ack is REPORT:
            self._sent_rep += n
        # the payload was packed with id 0 (one byte, 0x00, right after the
        # array header 0x93); re-pack the id in front instead of re-packing
        # the whole batch
        return b"\x93" + self._packer.pack(rid), memoryview(payload)[2:]

    def _encode_wait(
        self, topic: str, chunk: List[Any], partitioner: Optional[str], cluster: Optional[str]
    ) -> Tuple[Req, bytes]:
        args = self._args(cluster)
        args["topic"] = topic
        args["ack"] = WAIT
        if partitioner is not None:
            args["partitioner"] = partitioner
        args["messages"] = chunk
        rid = self._new_id()
        req = Req(K_CALL, "produce", 0, len(chunk), WAIT)
        self._pending[rid] = req
        payload: bytes = self._packer.pack([rid, "produce", args])
        return req, payload

    @staticmethod
    def _wait_results(reqs: List[Req], count: int) -> ProduceResult:
        results: List[Any] = []
        for req in reqs:
            res = req.outcome()
            # (a dict from msgpack; isinstance with typing.Mapping costs microseconds)
            rl = res.get("results") if isinstance(res, dict) else None
            if not isinstance(rl, list) or len(rl) != req.count:
                raise ProtocolViolation("wait-mode produce result without one result per message")
            for part, off, err in rl:
                results.append(error_from_map(err) if err else RecordMetadata(part, off))
        return ProduceResult(count, 0, results)

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

    def _take_for_callbacks(self) -> Calls:
        if not self._runs or (self.on_delivery is None and not self._callbacks):
            return _NO_CALLS
        cbs = self._callbacks
        glob = self.on_delivery
        if glob is not None and not cbs:
            runs = list(self._runs)
            self._runs.clear()
            return Calls(glob, runs)
        reports = self._take(1 << 62)
        if glob is not None:
            return Calls(pairs=[(cbs.pop(r.seq, glob), r) for r in reports])
        out: List[Tuple[DeliveryCallback, DeliveryReport]] = []
        keep: List[DeliveryReport] = []
        for r in reports:
            cb = cbs.pop(r.seq, None)
            if cb is None:
                keep.append(r)
            else:
                out.append((cb, r))
        if keep:
            self._runs.extendleft(reversed(compress_reports(keep)))
        return Calls(pairs=out)

    def _take_with_own_callbacks(self, limit: int) -> Tuple[List[DeliveryReport], Calls]:
        reports = self._take(limit)
        cbs: List[Tuple[DeliveryCallback, DeliveryReport]] = []
        if self._callbacks:
            for r in reports:
                cb = self._callbacks.pop(r.seq, None)
                if cb is not None:
                    cbs.append((cb, r))
        return reports, Calls(pairs=cbs)

    def _take_discard(self, on_error: Optional[DeliveryCallback]) -> Tuple[int, Calls]:
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
        return n, Calls(pairs=cbs)

    @staticmethod
    def _run_callbacks(calls: Calls) -> None:
        calls.run()

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
        return self.in_flight + (len(self._buf) if self._back is not REPORT else 0)
