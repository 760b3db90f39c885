"""Turning produce() arguments into protocol message elements."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

__all__ = [
    "BytesLike",
    "Headers",
    "MessageLike",
    "as_bytes",
    "to_millis",
    "message_element",
    "batch_elements",
]

# typing.TYPE_CHECKING without importing typing (mypy treats the name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

    BytesLike = Union[bytes, bytearray, memoryview, str]
    Headers = Union[Mapping[str, Optional[BytesLike]], Sequence[Tuple[str, Optional[BytesLike]]]]
    # produce_batch accepts bytes, a dict with the message-map keys, or a tuple
    # (value, key, headers, timestamp, partition) cut short anywhere after value.
    MessageLike = Union[BytesLike, None, Mapping[str, Any], Tuple[Any, ...]]
else:

    def __getattr__(name: str) -> object:
        # the typing aliases above, made on first use (kafkad.aio imports
        # them at run time): importing typing costs a Client user ~1.5 ms
        if name in ("BytesLike", "Headers", "MessageLike"):
            from typing import Any, Mapping, Optional, Sequence, Tuple, Union

            b = Union[bytes, bytearray, memoryview, str]
            globals().update(
                BytesLike=b,
                Headers=Union[Mapping[str, Optional[b]], Sequence[Tuple[str, Optional[b]]]],
                MessageLike=Union[b, None, Mapping[str, Any], Tuple[Any, ...]],
            )
            return globals()[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_OVERHEAD = 16  # rough per-message msgpack overhead, for batch sizing


def as_bytes(v: Any, what: str) -> Union[bytes, bytearray, memoryview, None]:
    if v is None or type(v) is bytes:
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return v
    raise TypeError(f"{what} must be bytes, bytearray, memoryview, str or None, not {type(v).__name__}")


def to_millis(ts: Any) -> int:
    """Milliseconds since the epoch from an int/float (already ms) or a datetime.

    A naive datetime is taken as UTC (as PyKafka does).
    """
    if isinstance(ts, bool):
        raise TypeError("timestamp must be an int (ms since epoch) or a datetime")
    if isinstance(ts, int):
        return ts
    if isinstance(ts, float):
        return int(ts)
    if isinstance(ts, _dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=_dt.timezone.utc)
        return int(round((ts - _EPOCH).total_seconds() * 1000))
    raise TypeError("timestamp must be an int (ms since epoch) or a datetime")


def _headers(h: Any) -> Tuple[List[List[Any]], int]:
    items: Iterable[Any] = h.items() if isinstance(h, Mapping) else h
    out: List[List[Any]] = []
    size = 0
    for pair in items:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise TypeError("headers must be (name, value) pairs or a mapping") from None
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).decode("utf-8")
        elif not isinstance(name, str):
            raise TypeError("header names must be str")
        value = as_bytes(value, "header value")
        out.append([name, value])
        size += len(name) + (len(value) if value is not None else 0) + 4
    return out, size


def message_element(
    value: Any,
    key: Any = None,
    headers: Any = None,
    timestamp: Any = None,
    partition: Optional[int] = None,
) -> Tuple[Any, int]:
    """The ``messages`` element for one message and its approximate size.

    Only a value (bytes) gives the compact form: the bare bytes.
    """
    v = as_bytes(value, "value")
    size = _OVERHEAD + (len(v) if v is not None else 0)
    if key is None and headers is None and timestamp is None and partition is None and v is not None:
        return v, size
    m: Dict[str, Any] = {"value": v}
    if key is not None:
        k = as_bytes(key, "key")
        m["key"] = k
        size += len(k)  # type: ignore[arg-type]
    if headers is not None:
        hl, hs = _headers(headers)
        if hl:
            m["headers"] = hl
            size += hs
    if timestamp is not None:
        m["timestamp"] = to_millis(timestamp)
    if partition is not None:
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise TypeError("partition must be an int")
        m["partition"] = partition
    return m, size


_FIELDS = ("value", "key", "headers", "timestamp", "partition")


def batch_elements(messages: Iterable[MessageLike]) -> Tuple[List[Any], int]:
    """Normalise a produce_batch list; returns (elements, total size)."""
    out: List[Any] = []
    total = 0
    append = out.append
    for m in messages:
        if type(m) is bytes:
            append(m)
            total += len(m) + _OVERHEAD
            continue
        if isinstance(m, Mapping):
            unknown = set(m) - set(_FIELDS)
            if unknown:
                raise TypeError(f"unknown message fields: {sorted(unknown)}")
            e, s = message_element(
                m.get("value"), m.get("key"), m.get("headers"), m.get("timestamp"), m.get("partition")
            )
        elif isinstance(m, tuple):
            if not 1 <= len(m) <= 5:
                raise TypeError("a message tuple is (value, key, headers, timestamp, partition), cut short anywhere after value")
            e, s = message_element(*m)
        else:
            e, s = message_element(m)
        append(e)
        total += s
    return out, total
