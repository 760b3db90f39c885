"""Topics (``pykafka.topic``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict

from ..types import TopicMetadata
from .partition import OffsetPartitionResponse, Partition
from .producer import Producer

if TYPE_CHECKING:  # pragma: no cover
    from .client import Cluster

__all__ = ["Topic"]

log = logging.getLogger(__name__)


class Topic:
    """A topic: ``name`` (bytes) and ``partitions`` (dict id -> Partition)."""

    def __init__(self, cluster: "Cluster", topic_metadata: TopicMetadata) -> None:
        self._name = topic_metadata.name.encode("utf-8")
        self._cluster = cluster
        self._partitions: Dict[int, Partition] = {}
        self.update(topic_metadata)

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} at {hex(id(self))} (name={self._name!r})>"

    @property
    def name(self) -> bytes:
        return self._name

    @property
    def partitions(self) -> Dict[int, Partition]:
        """All known partitions, by id (in id order)."""
        return self._partitions

    def get_producer(self, use_rdkafka: bool = False, **kwargs: Any) -> Producer:
        """A :class:`~kafkad.pykafka.producer.Producer` for this topic.

        ``use_rdkafka`` is accepted for compatibility: every producer here is
        backed by librdkafka, inside kafkad.
        """
        return Producer(self._cluster, self, **kwargs)

    def get_sync_producer(self, **kwargs: Any) -> Producer:
        return Producer(self._cluster, self, sync=True, **kwargs)

    def fetch_offset_limits(self, offsets_before: Any, max_offsets: int = 1) -> Dict[int, Any]:
        """Partition id -> ``OffsetPartitionResponse(offset=[...], err=0)`` for
        ``OffsetType.EARLIEST`` / ``LATEST`` (the daemon's ``watermarks``) or
        a timestamp (its ``offsets_for_times``); see
        :meth:`Partition.fetch_offset_limit`."""
        return {
            pid: OffsetPartitionResponse(p.fetch_offset_limit(offsets_before, max_offsets), 0)
            for pid, p in self._partitions.items()
        }

    def earliest_available_offsets(self) -> Dict[int, Any]:
        """The earliest offset of each partition."""
        return self.fetch_offset_limits(-2)

    def latest_available_offsets(self) -> Dict[int, Any]:
        """The next offset to be written to each partition."""
        return self.fetch_offset_limits(-1)

    def get_simple_consumer(self, consumer_group: Any = None, use_rdkafka: bool = False, **kwargs: Any) -> Any:
        """A :class:`~kafkad.pykafka.consumer.SimpleConsumer` of this topic
        (``use_rdkafka`` is accepted: kafkad's consumer is librdkafka)."""
        from .consumer import SimpleConsumer

        return SimpleConsumer(self, self._cluster, consumer_group=consumer_group, **kwargs)

    def get_balanced_consumer(self, consumer_group: Any, managed: bool = False, **kwargs: Any) -> Any:
        """A balanced consumer of this topic: ``managed=False`` (PyKafka's
        default) gives the ZooKeeper-balanced
        :class:`~kafkad.pykafka.consumer.BalancedConsumer` (kafkad's
        zookeeper mode: ``zookeeper_connect``, else ``zookeeper_hosts``, else
        the KafkaClient's ``zookeeper_hosts``); ``managed=True`` the
        Kafka-coordinated :class:`~kafkad.pykafka.consumer.ManagedBalancedConsumer`
        (kafkad's group mode)."""
        from .consumer import BalancedConsumer, ManagedBalancedConsumer

        if not managed:
            return BalancedConsumer(self, self._cluster, consumer_group, **kwargs)
        return ManagedBalancedConsumer(self, self._cluster, consumer_group, **kwargs)

    def update(self, metadata: TopicMetadata) -> None:
        """Refresh the partitions from fresh topic metadata."""
        brokers = self._cluster.brokers
        fresh = {p.id: p for p in metadata.partitions}
        for gone in set(self._partitions) - set(fresh):
            log.info("Removing partition %s/%s", self._name, gone)
            del self._partitions[gone]
        for pid in sorted(fresh):
            pm = fresh[pid]
            leader = brokers.get(pm.leader)
            if leader is None:
                log.warning("partition %s/%s has no known leader (%s)", self._name, pid, pm.leader)
            replicas = [brokers[b] for b in pm.replicas if b in brokers]
            isr = [brokers[b] for b in pm.isrs if b in brokers]
            if pid in self._partitions:
                self._partitions[pid].update(leader, replicas, isr)
            else:
                self._partitions[pid] = Partition(self, pid, leader, replicas, isr)
        # keep the dict in id order: partitioners see partitions in that order
        if list(self._partitions) != sorted(self._partitions):
            ordered = {k: self._partitions[k] for k in sorted(self._partitions)}
            self._partitions.clear()
            self._partitions.update(ordered)
