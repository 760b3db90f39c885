"""Topic partitions (``pykafka.partition``)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, List, Optional

from .broker import Broker

if TYPE_CHECKING:  # pragma: no cover
    from .topic import Topic

__all__ = ["Partition"]

_NO_OFFSETS = (
    "offset lookups need a ListOffsets op, which kafkad protocol v1 does not have yet"
)


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

    # offset lookups: a later protocol version adds the op they need
    def fetch_offset_limit(self, offsets_before: Any, max_offsets: int = 1) -> List[int]:
        raise NotImplementedError(_NO_OFFSETS)

    def latest_available_offset(self) -> int:
        raise NotImplementedError(_NO_OFFSETS)

    def earliest_available_offset(self) -> int:
        raise NotImplementedError(_NO_OFFSETS)

    def update(self, leader: Optional[Broker], replicas: List[Broker], isr: List[Broker]) -> None:
        self._leader = leader
        self._replicas = replicas
        self._isr = isr
