"""Topic partitions (``pykafka.partition``)."""

from __future__ import annotations

import datetime as dt
import weakref
from collections import namedtuple
from typing import TYPE_CHECKING, Any, List, Optional

from ..errors import KafkadError
from .broker import Broker

if TYPE_CHECKING:  # pragma: no cover
    from .topic import Topic

__all__ = ["Partition", "OffsetPartitionResponse"]

OffsetPartitionResponse = namedtuple("OffsetPartitionResponse", ["offset", "err"])


class Partition:
    """One partition of a topic: ``id``, ``leader``, ``replicas``, ``isr``."""

    def __init__(
        self,
        topic: "Topic",
        id_: int,
        leader: Optional[Broker],
        replicas: List[Broker],
        isr: List[Broker],
    ) -> None:
        self._id = id_
        self._leader = leader
        self._replicas = replicas
        self._isr = isr
        self._topic = weakref.ref(topic)

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} at {hex(id(self))} (id={self._id})>"

    def __lt__(self, other: "Partition") -> bool:
        return self._id < other._id

    def __hash__(self) -> int:
        return hash((self.topic, self.id))

    def __eq__(self, other: Any) -> bool:
        return hash(self) == hash(other)

    def __ne__(self, other: Any) -> bool:
        return not self == other

    @property
    def id(self) -> int:
        return self._id

    @property
    def leader(self) -> Optional[Broker]:
        """The leader broker (None while the partition has no leader)."""
        return self._leader

    @property
    def replicas(self) -> List[Broker]:
        return self._replicas

    @property
    def isr(self) -> List[Broker]:
        return self._isr

    @property
    def topic(self) -> "Topic":
        t = self._topic()
        assert t is not None, "the partition's topic is gone"
        return t

    # offset lookups, answered by the daemon's ``watermarks`` op
    def fetch_offset_limit(self, offsets_before: Any, max_offsets: int = 1) -> List[int]:
        """``[offset]`` for ``OffsetType.EARLIEST`` (-2: the first offset),
        ``OffsetType.LATEST`` (-1: the next offset to be written), or a
        timestamp (a ``datetime``, naive read as UTC, or ms since the epoch):
        the first offset whose record is stamped at or after it, as Kafka's
        ListOffsets v1 answers; ``[]`` when every record is older."""
        if isinstance(offsets_before, bool) or not isinstance(offsets_before, (int, dt.datetime)) or (
            isinstance(offsets_before, int) and offsets_before < -2
        ):
            raise ValueError(f"offsets_before is an invalid timestamp: {offsets_before!r}")
        topic = self.topic
        cluster = topic._cluster
        from .consumer import _translate

        try:
            if offsets_before in (-2, -1):
                low, high = cluster._conn.watermarks(topic.name, self._id, cluster._timeout, cluster=cluster.cluster_name)
                return [low if offsets_before == -2 else high]
            got = cluster._conn.offsets_for_times(
                [(topic.name, self._id, offsets_before)], cluster._timeout, cluster=cluster.cluster_name
            )
        except KafkadError as e:
            raise _translate(e) from e
        (off,) = got.values()  # the one partition asked
        return [off] if off >= 0 else []

    def latest_available_offset(self) -> int:
        """The offset of the next message that would be appended."""
        return self.fetch_offset_limit(-1)[0]

    def earliest_available_offset(self) -> int:
        """The earliest offset still available."""
        return self.fetch_offset_limit(-2)[0]

    def update(self, leader: Optional[Broker], replicas: List[Broker], isr: List[Broker]) -> None:
        self._leader = leader
        self._replicas = replicas
        self._isr = isr
