"""PyKafka's ``Message`` (``pykafka.protocol.Message``), as produced messages
and their delivery reports carry it."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Optional

from .common import CompressionType

__all__ = ["Message"]

_EPOCH = dt.datetime(1970, 1, 1)


class Message:
    """One Kafka message.

    :ivar value: the payload (bytes or None)
    :ivar partition_key: the key used for partitioning (and sent as the
        message key)
    :ivar partition_id: the partition; for a daemon-side partitioner (the
        default random one) it is -1 until the delivery report sets it
    :ivar offset: set by the delivery report (-1 until then, or when unknown)
    :ivar timestamp: ms since the epoch, or None (protocol version 0)
    :ivar delivery_report_q: the queue this message's report goes to (the
        producing thread's), or None when delivery reports are off
    """

    __slots__ = [
        "compression_type",
        "partition_key",
        "value",
        "offset",
        "partition_id",
        "partition",
        "produce_attempt",
        "delivery_report_q",
        "protocol_version",
        "timestamp",
    ]

    VALID_TS_TYPES = (int, float, type(None))

    def __init__(
        self,
        value: Optional[bytes],
        partition_key: Optional[bytes] = None,
        compression_type: int = CompressionType.NONE,
        offset: int = -1,
        partition_id: int = -1,
        produce_attempt: int = 0,
        protocol_version: int = 0,
        timestamp: Any = None,
        delivery_report_q: Any = None,
    ) -> None:
        self.compression_type = compression_type
        self.partition_key = partition_key
        self.value = value
        self.offset = offset
        if timestamp is None and protocol_version > 0:
            timestamp = int(time.time() * 1000)
        self.timestamp: Any = None
        self.set_timestamp(timestamp)
        self.partition_id = partition_id
        self.partition: Any = None
        self.produce_attempt = produce_attempt
        self.delivery_report_q = delivery_report_q
        if protocol_version not in (0, 1):
            raise ValueError("protocol_version must be 0 or 1")
        self.protocol_version = protocol_version

    def __len__(self) -> int:
        """Size on the wire as PyKafka counts it (for ``max_request_size``)."""
        size = 4 + 1 + 1 + 4 + 4
        if self.value is not None:
            size += len(self.value)
        if self.partition_key is not None:
            size += len(self.partition_key)
        if self.protocol_version > 0 and self.timestamp:
            size += 8
        return size

    def __repr__(self) -> str:
        return (
            f"<kafkad.pykafka.Message partition={self.partition_id} offset={self.offset} "
            f"key={self.partition_key!r} value={self.value!r:.60}>"
        )

    @property
    def timestamp_dt(self) -> Optional[dt.datetime]:
        """The timestamp as a naive UTC datetime, if there is one."""
        if self.timestamp:
            return _EPOCH + dt.timedelta(milliseconds=self.timestamp)
        return None

    @timestamp_dt.setter
    def timestamp_dt(self, value: dt.datetime) -> None:
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        self.timestamp = int(1000 * (value - _EPOCH).total_seconds())

    def set_timestamp(self, ts: Any) -> None:
        if type(ts) in self.VALID_TS_TYPES:
            self.timestamp = ts
        elif isinstance(ts, dt.datetime):
            self.timestamp_dt = ts
        else:
            raise RuntimeError(f"invalid timestamp {ts!r}")
