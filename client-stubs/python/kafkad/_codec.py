"""Wire framing: a 4-byte big-endian length, then one msgpack value."""

from __future__ import annotations

import struct
import msgpack

from .errors import BadFrame, ProtocolViolation

# typing.TYPE_CHECKING without importing typing (mypy treats the name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, List

__all__ = [
    "HEADER",
    "DEFAULT_MAX_FRAME",
    "GC_PAUSE_BYTES",
    "new_packer",
    "encode_frame",
    "decode_frame",
    "FrameDecoder",
]

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
# decode at least this much with the cyclic GC paused (see Client._recv_nb)
GC_PAUSE_BYTES = 256 * 1024


def new_packer() -> msgpack.Packer:
    """The packer every request goes through (bytes as bin, str as str)."""
    return msgpack.Packer(use_bin_type=True)


def encode_frame(value: Any, packer: "msgpack.Packer | None" = None) -> bytes:
    """Length-prefixed msgpack encoding of ``value``."""
    payload: bytes = (packer or new_packer()).pack(value)
    return HEADER.pack(len(payload)) + payload


def decode_frame(frame: bytes) -> Any:
    """Inverse of :func:`encode_frame` for exactly one complete frame."""
    if len(frame) < 4:
        raise BadFrame("frame shorter than its header")
    (n,) = HEADER.unpack_from(frame)
    if n == 0 or len(frame) != 4 + n:
        raise BadFrame(f"frame length {n} does not match {len(frame) - 4} payload bytes")
    return msgpack.unpackb(frame[4:], raw=False, strict_map_key=False)


class FrameDecoder:
    """Incremental decoder for a stream of frames.

    Bytes are handed to :meth:`feed` as they arrive; :meth:`frames` returns
    every complete value received so far.  It uses one streaming
    ``msgpack.Unpacker`` and never tries to decode a payload before all of its
    bytes are there, so a large frame arriving in many pieces costs one parse.
    """

    __slots__ = ("_unp", "_fed", "_need", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        # max_buffer_size=0: no limit beyond what frames() lets accumulate
        self._unp = msgpack.Unpacker(raw=False, max_buffer_size=0, strict_map_key=False)
        self._fed = 0
        self._need = -1  # payload length of the frame being read, -1: header next
        self.max_frame = max_frame

    def feed(self, data: "bytes | bytearray | memoryview") -> None:
        self._unp.feed(data)
        self._fed += len(data)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a frame."""
        return self._fed - int(self._unp.tell())

    def frames(self) -> List[Any]:
        out: List[Any] = []
        unp = self._unp
        while True:
            need = self._need
            if need < 0:
                if self._fed - unp.tell() < 4:
                    return out
                need = int.from_bytes(unp.read_bytes(4), "big")
                if need == 0 or need > self.max_frame:
                    raise BadFrame(f"frame length {need} outside 1..{self.max_frame}")
                self._need = need
            start = unp.tell()
            if self._fed - start < need:
                return out
            try:
                value = unp.unpack()
            except Exception as exc:  # OutOfData, FormatError, StackError, ExtraData
                raise ProtocolViolation(f"undecodable frame payload: {exc}") from None
            if unp.tell() - start != need:
                raise ProtocolViolation(
                    f"frame payload is {unp.tell() - start} bytes, header said {need}"
                )
            self._need = -1
            out.append(value)
