"""The cold path: one message from a fresh process, as cheaply as possible.

:func:`produce_sync` connects, sends one ``produce`` request with
``ack="wait"``, waits for its answer and closes.  A process that runs for a
few milliseconds (a cron job, a git hook, a CGI script) spends most of them
importing things, so this module imports nothing at load time and, on the
success path, only ``_socket`` (the C socket module: ``socket.py`` itself
costs ~2 ms with its enums and ``selectors``): no msgpack, no ``typing``, no
``threading``.  It speaks the few msgpack types of that request and its
response itself (:func:`pack`, :func:`unpack`).

The request is byte-identical to what :class:`kafkad.Client` sends for
``produce(topic, value, key, ..., ack="wait")`` as its first request after
``hello`` (id 2; tests/python/test_stub_oneshot.py checks it).  ``hello`` is
optional (SPEC 4.1) and skipped when the frame is at most 1024 bytes, the
smallest ``max_frame`` a daemon can have; a larger request asks for
``max_frame`` first.  Anything this path does not handle itself (headers, a
datetime timestamp, argument types the full client converts or rejects) goes
through a :class:`kafkad.Client` instead, with the same result and errors.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, List, Optional, Tuple, Union

    from .errors import KafkadError

__all__ = ["produce_sync", "pack", "unpack", "encode_produce_wait"]

# the same values as kafkad._session (which imports msgpack): a test keeps them equal
DEFAULT_SOCKET = "/run/kafkad/kafkad.sock"
PROTOCOL_VERSION = 1
CLIENT_NAME = "kafkad-python/0.1"
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MIN_MAX_FRAME = 1024  # a daemon's max_frame is never smaller (config.c)
HELLO_ID = 1
PRODUCE_ID = 2  # what a fresh Client uses for its first request after hello

_BYTES = (bytes, bytearray, memoryview)


# --------------------------------------------------------------------------
# msgpack, the subset of the protocol (encoding as msgpack.Packer(use_bin_type=True))


def pack(obj: Any, out: List[bytes]) -> None:
    """Append the msgpack encoding of ``obj`` to ``out``: None, bool, int,
    str, bytes-like (as bin), list/tuple and dict with str keys."""
    t = type(obj)
    if obj is None:
        out.append(b"\xc0")
    elif t is bool:
        out.append(b"\xc3" if obj else b"\xc2")
    elif t is int:
        out.append(_int(obj))
    elif t is str:
        b = obj.encode("utf-8")
        out.append(_head(len(b), 0xA0, 32, 0xD9, 0xDA, 0xDB))
        out.append(b)
    elif t in _BYTES:
        b = obj if t is bytes else bytes(obj)
        out.append(_head(len(b), 0, 0, 0xC4, 0xC5, 0xC6))
        out.append(b)
    elif t is list or t is tuple:
        out.append(_head(len(obj), 0x90, 16, 0, 0xDC, 0xDD))
        for v in obj:
            pack(v, out)
    elif t is dict:
        out.append(_head(len(obj), 0x80, 16, 0, 0xDE, 0xDF))
        for k, v in obj.items():
            pack(k, out)
            pack(v, out)
    else:
        raise TypeError(f"cannot encode {t.__name__}")


def _head(n: int, fix: int, fix_below: int, tag8: int, tag16: int, tag32: int) -> bytes:
    """The header of a str/bin/array/map of length ``n``: the fix form below
    ``fix_below`` (0: none), else the 8-bit form (tag 0: none), 16 or 32."""
    if n < fix_below:
        return bytes((fix | n,))
    if tag8 and n < 0x100:
        return bytes((tag8, n))
    if n < 0x10000:
        return bytes((tag16,)) + n.to_bytes(2, "big")
    return bytes((tag32,)) + n.to_bytes(4, "big")


def _int(v: int) -> bytes:
    if v >= 0:
        if v < 0x80:
            return bytes((v,))
        if v < 0x100:
            return bytes((0xCC, v))
        if v < 0x10000:
            return b"\xcd" + v.to_bytes(2, "big")
        if v < 0x100000000:
            return b"\xce" + v.to_bytes(4, "big")
        return b"\xcf" + v.to_bytes(8, "big")
    if v >= -32:
        return bytes((v & 0xFF,))
    if v >= -0x80:
        return b"\xd0" + v.to_bytes(1, "big", signed=True)
    if v >= -0x8000:
        return b"\xd1" + v.to_bytes(2, "big", signed=True)
    if v >= -0x80000000:
        return b"\xd2" + v.to_bytes(4, "big", signed=True)
    return b"\xd3" + v.to_bytes(8, "big", signed=True)


class _Undecodable(Exception):
    pass


# fixed-size scalars: first byte -> (size, signed)
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_SINT = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}


def unpack(buf: bytes, pos: int = 0) -> Tuple[Any, int]:
    """Decode one msgpack value of ``buf`` at ``pos``: (value, next pos).

    Decodes as ``msgpack.unpackb(raw=False, strict_map_key=False)`` does,
    except that ext types are refused; raises ValueError on malformed input.
    """
    try:
        return _unpack(buf, pos)
    except (IndexError, UnicodeDecodeError, _Undecodable) as e:
        raise ValueError(f"malformed msgpack at offset {pos}: {e or type(e).__name__}") from None


def _need(buf: bytes, end: int) -> None:
    if end > len(buf):
        raise _Undecodable("truncated")


def _unpack(buf: bytes, pos: int) -> Tuple[Any, int]:
    b = buf[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if 0xA0 <= b <= 0xBF:
        n = b & 0x1F
    elif 0x90 <= b <= 0x9F:
        return _array(buf, pos, b & 0x0F)
    elif 0x80 <= b <= 0x8F:
        return _map(buf, pos, b & 0x0F)
    elif b == 0xC0:
        return None, pos
    elif b == 0xC2:
        return False, pos
    elif b == 0xC3:
        return True, pos
    elif b in _UINT or b in _SINT:
        size = _UINT.get(b) or _SINT[b]
        _need(buf, pos + size)
        return int.from_bytes(buf[pos : pos + size], "big", signed=b in _SINT), pos + size
    elif b in (0xD9, 0xC4):
        _need(buf, pos + 1)
        n = buf[pos]
        pos += 1
    elif b in (0xDA, 0xC5, 0xDC, 0xDE):
        _need(buf, pos + 2)
        n = int.from_bytes(buf[pos : pos + 2], "big")
        pos += 2
    elif b in (0xDB, 0xC6, 0xDD, 0xDF):
        _need(buf, pos + 4)
        n = int.from_bytes(buf[pos : pos + 4], "big")
        pos += 4
    elif b == 0xCA or b == 0xCB:
        import struct  # floats: not in any response this module reads

        size = 4 if b == 0xCA else 8
        _need(buf, pos + size)
        return struct.unpack_from(">f" if b == 0xCA else ">d", buf, pos)[0], pos + size
    else:
        raise _Undecodable(f"unsupported type byte 0x{b:02x}")
    if b == 0xDC or b == 0xDD:
        return _array(buf, pos, n)
    if b == 0xDE or b == 0xDF:
        return _map(buf, pos, n)
    _need(buf, pos + n)
    if b in (0xC4, 0xC5, 0xC6):
        return bytes(buf[pos : pos + n]), pos + n
    return str(buf[pos : pos + n], "utf-8"), pos + n


def _array(buf: bytes, pos: int, n: int) -> Tuple[Any, int]:
    out = []
    for _ in range(n):
        v, pos = _unpack(buf, pos)
        out.append(v)
    return out, pos


def _map(buf: bytes, pos: int, n: int) -> Tuple[Any, int]:
    out = {}
    for _ in range(n):
        k, pos = _unpack(buf, pos)
        v, pos = _unpack(buf, pos)
        try:
            out[k] = v
        except TypeError:  # an unhashable key (msgpack-python refuses it too)
            raise _Undecodable("unhashable map key") from None
    return out, pos


# --------------------------------------------------------------------------
# the request


def encode_produce_wait(
    topic: Any,
    value: Any,
    key: Any = None,
    timestamp: Any = None,
    partition: Any = None,
    partitioner: Any = None,
    cluster: Any = None,
    rid: int = PRODUCE_ID,
) -> Optional[bytes]:
    """The payload (no length header) of the one-message ``ack="wait"``
    produce request :class:`kafkad.Client` would send, or None when an
    argument needs the full client (which converts it or raises TypeError)."""
    tt = type(topic)
    if tt is bytes or tt is bytearray:
        try:
            topic = bytes(topic).decode("utf-8")
        except UnicodeDecodeError:
            return None
    elif tt is not str:
        return None
    vt = type(value)
    if vt is str:
        value = value.encode("utf-8")
    elif value is not None and vt not in _BYTES:
        return None
    if key is None and timestamp is None and partition is None and value is not None:
        msg: Any = value  # the compact form: bare bytes
    else:
        msg = {"value": value}
        if key is not None:
            kt = type(key)
            if kt is str:
                key = key.encode("utf-8")
            elif kt not in _BYTES:
                return None
            msg["key"] = key
        if timestamp is not None:
            if type(timestamp) is not int:  # datetime, float: converted by the full client
                return None
            msg["timestamp"] = timestamp
        if partition is not None:
            if type(partition) is not int:
                return None
            msg["partition"] = partition
    args: Any = {}
    if cluster is not None:
        if type(cluster) is not str:
            return None
        args["cluster"] = cluster
    args["topic"] = topic
    args["ack"] = "wait"
    if partitioner is not None:
        if type(partitioner) is not str:
            return None
        args["partitioner"] = partitioner
    args["messages"] = [msg]
    out: List[bytes] = []
    try:
        pack([rid, "produce", args], out)
    except (TypeError, OverflowError):  # e.g. an int beyond 64 bits: the full client's error
        return None
    return b"".join(out)


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


# --------------------------------------------------------------------------
# the call


def produce_sync(
    topic: Union[str, bytes],
    value: Any,
    key: Any = None,
    *,
    headers: Any = None,
    timestamp: Any = None,
    partition: Optional[int] = None,
    partitioner: Optional[str] = None,
    cluster: Optional[str] = None,
    socket_path: Optional[str] = None,
    timeout: Optional[float] = 30.0,
) -> Tuple[int, int]:
    """Produce one message and wait until Kafka acknowledged it.

    Connects to the daemon (``socket_path``, else ``$KAFKAD_SOCKET``, else
    ``/run/kafkad/kafkad.sock``), sends one ``produce`` request with
    ``ack="wait"``, and returns ``(partition, offset)`` (the values of the
    :class:`~kafkad.types.RecordMetadata` that ``Client.produce(...,
    ack="wait")`` returns, as a plain tuple); raises what that call raises:
    :class:`~kafkad.errors.ConnectionLost` when the daemon cannot be reached,
    the request's error (e.g. :class:`~kafkad.errors.InvalidArgument`), the
    message's :class:`~kafkad.errors.KafkaError`, or
    :class:`~kafkad.errors.TimedOut` after ``timeout`` seconds (``None``:
    wait forever; the message may still be delivered).

    Arguments are those of :meth:`kafkad.Client.produce`.  Meant for
    processes that produce one message and exit; anything that produces more
    should keep a :class:`kafkad.Client`, which batches and pipelines.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be a positive number of seconds or None")
    path = socket_path or os.environ.get("KAFKAD_SOCKET") or DEFAULT_SOCKET
    payload = None if headers is not None else encode_produce_wait(
        topic, value, key, timestamp, partition, partitioner, cluster)
    if payload is None:
        return _with_client(path, topic, value, key, headers, timestamp, partition, partitioner, cluster, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            raise _error("ConnectionLost", f"cannot connect to kafkad at {path}: {e}") from e
        conn = _Conn(sock, deadline, timeout, _socket.timeout)
        if len(payload) + 4 > MIN_MAX_FRAME:
            out: List[bytes] = []
            pack([HELLO_ID, "hello", {"version": PROTOCOL_VERSION, "client": CLIENT_NAME}], out)
            conn.send(_frame(b"".join(out)))
            hello = conn.response(HELLO_ID, "hello")
            max_frame = hello.get("max_frame") if type(hello) is dict else None
            if type(max_frame) is not int or max_frame <= 0:
                max_frame = DEFAULT_MAX_FRAME
            conn.max_frame = max(max_frame, 1 << 16)
            if len(payload) > max_frame:
                raise _error("TooLarge", f"request of {len(payload)} bytes exceeds max_frame {max_frame}")
        conn.send(_frame(payload))
        res = conn.response(PRODUCE_ID, "produce")
    finally:
        sock.close()
    rl = res.get("results") if type(res) is dict else None
    if type(rl) is not list or len(rl) != 1 or type(rl[0]) is not list or len(rl[0]) != 3:
        raise _error("ProtocolViolation", "wait-mode produce result without one result per message")
    part, off, err = rl[0]
    if err:
        raise _from_map(err)
    return part, off


class _Conn:
    """Frames over a blocking socket with an overall deadline."""

    __slots__ = ("sock", "deadline", "timeout", "buf", "max_frame", "timeout_exc")

    def __init__(self, sock: Any, deadline: Optional[float], timeout: Optional[float], timeout_exc: Any) -> None:
        self.sock = sock
        self.timeout_exc = timeout_exc  # _socket.timeout (TimeoutError since 3.10, not before)
        self.deadline = deadline
        self.timeout = timeout
        self.buf = b""
        self.max_frame = DEFAULT_MAX_FRAME

    def _timed_out(self) -> KafkadError:
        return _error("TimedOut", f"no acknowledgement within {self.timeout}s (the messages may still be delivered)")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except self.timeout_exc:
            raise self._timed_out() from None
        except OSError as e:
            raise _error("ConnectionLost", f"send failed: {e}") from e

    def _read(self) -> None:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out()
            self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except self.timeout_exc:
            raise self._timed_out() from None
        except OSError as e:
            raise _error("ConnectionLost", f"receive failed: {e}") from e
        if not chunk:
            raise _error("ConnectionLost", "kafkad closed the connection")
        self.buf += chunk

    def response(self, rid: int, op: str) -> Any:
        """The result of request ``rid``; raises its error."""
        while True:
            while len(self.buf) < 4:
                self._read()
            n = int.from_bytes(self.buf[:4], "big")
            if n == 0 or n > self.max_frame:
                raise _error("BadFrame", f"frame length {n} outside 1..{self.max_frame}")
            while len(self.buf) < 4 + n:
                self._read()
            body, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
            try:
                frame, end = unpack(body)
            except ValueError as e:
                raise _error("ProtocolViolation", f"undecodable frame payload: {e}") from None
            if end != n:
                raise _error("ProtocolViolation", f"frame payload is {end} bytes, header said {n}")
            if type(frame) is not list or len(frame) != 3:
                raise _error("ProtocolViolation", f"response is not [id, error, result]: {frame!r:.200}")
            fid, err, res = frame
            if fid is None and err:
                raise _from_map(err)  # BAD_FRAME / BAD_REQUEST without an id: about our request
            if fid != rid:
                continue  # not ours (there is no other request on this connection)
            if err is not None:
                raise _from_map(err)
            return res


# errors: kafkad.errors imports typing, so only when there is one to raise


def _error(cls: str, message: str) -> KafkadError:
    from . import errors

    exc: KafkadError = getattr(errors, cls)(message)
    return exc


def _from_map(err: Any) -> KafkadError:
    from .errors import ProtocolViolation, error_from_map

    if not isinstance(err, dict):
        return ProtocolViolation(f"error is not a map: {err!r:.200}")
    return error_from_map(err)


def _with_client(
    path: str,
    topic: Any,
    value: Any,
    key: Any,
    headers: Any,
    timestamp: Any,
    partition: Any,
    partitioner: Any,
    cluster: Any,
    timeout: Optional[float],
) -> Tuple[int, int]:
    """The full client, for what encode_produce_wait leaves to it."""
    from ._messages import message_element
    from .client import Client

    message_element(value, key, headers, timestamp, partition)  # TypeError before connecting
    if not isinstance(topic, (str, bytes)):
        raise TypeError("topic must be str or bytes")

    c = Client(path, cluster=cluster, timeout=timeout, background=False)
    try:
        md = c.produce(topic, value, key, headers=headers, timestamp=timestamp, partition=partition,
                       partitioner=partitioner, ack="wait")
    finally:
        c.close()
    return md.partition, md.offset
