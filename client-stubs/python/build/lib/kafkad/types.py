"""Result types returned by the clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

from .errors import KafkadError, error_from_map

__all__ = [
    "DeliveryReport",
    "RecordMetadata",
    "ProduceResult",
    "HelloInfo",
    "BrokerMetadata",
    "PartitionMetadata",
    "TopicMetadata",
    "ClusterMetadata",
]


class DeliveryReport(NamedTuple):
    """The outcome of one report-mode message.

    ``seq`` is the number :meth:`Client.produce` returned for the message.
    ``offset`` is -1 when unknown (failure, or ``acks=0``); ``partition`` is -1
    when the message never reached a partition.  ``error`` is ``None`` on
    success.
    """

    seq: int
    partition: int
    offset: int
    error: Optional[KafkadError]

    @property
    def ok(self) -> bool:
        return self.error is None


class RecordMetadata(NamedTuple):
    """Where an acknowledged message was written (``ack="wait"``)."""

    partition: int
    offset: int


@dataclass
class ProduceResult:
    """What a ``produce_batch`` call returns.

    ``seq``: first sequence number (report mode; messages got
    ``seq .. seq+count-1``), else 0.  ``results``: wait mode only, one entry
    per message, a :class:`RecordMetadata` or the message's error.
    """

    count: int
    seq: int = 0
    results: List[Union[RecordMetadata, KafkadError]] = field(default_factory=list)

    @property
    def errors(self) -> List[KafkadError]:
        return [r for r in self.results if isinstance(r, KafkadError)]


@dataclass
class HelloInfo:
    version: int = 1
    server: str = ""
    max_frame: int = 16 * 1024 * 1024
    max_batch: int = 10000
    max_pending: int = 1 << 20
    clusters: List[str] = field(default_factory=list)
    default_cluster: str = ""

    @classmethod
    def from_result(cls, r: Mapping[str, Any]) -> "HelloInfo":
        d = cls()
        for name in ("version", "max_frame", "max_batch", "max_pending"):
            v = r.get(name)
            if isinstance(v, int) and v > 0:
                setattr(d, name, v)
        if isinstance(r.get("server"), str):
            d.server = r["server"]
        if isinstance(r.get("clusters"), list):
            d.clusters = [c for c in r["clusters"] if isinstance(c, str)]
        if isinstance(r.get("default_cluster"), str):
            d.default_cluster = r["default_cluster"]
        return d


def _err(v: Any) -> Optional[KafkadError]:
    return error_from_map(v) if v else None


def _ints(v: Any) -> List[int]:
    return [int(x) for x in v] if isinstance(v, (list, tuple)) else []


@dataclass
class BrokerMetadata:
    id: int
    host: str
    port: int


@dataclass
class PartitionMetadata:
    id: int
    leader: int
    replicas: List[int]
    isrs: List[int]
    error: Optional[KafkadError] = None


@dataclass
class TopicMetadata:
    name: str
    partitions: List[PartitionMetadata]
    error: Optional[KafkadError] = None


@dataclass
class ClusterMetadata:
    """Result of ``metadata()``: brokers by id and topics by name."""

    cluster: str
    brokers: Dict[int, BrokerMetadata]
    topics: Dict[str, TopicMetadata]

    @classmethod
    def from_result(cls, r: Mapping[str, Any]) -> "ClusterMetadata":
        brokers: Dict[int, BrokerMetadata] = {}
        for b in r.get("brokers") or ():
            bm = BrokerMetadata(int(b.get("id", -1)), str(b.get("host", "")), int(b.get("port", 0)))
            brokers[bm.id] = bm
        topics: Dict[str, TopicMetadata] = {}
        for t in r.get("topics") or ():
            parts: Sequence[Mapping[str, Any]] = t.get("partitions") or ()
            pm = [
                PartitionMetadata(
                    int(p.get("id", -1)),
                    int(p.get("leader", -1)),
                    _ints(p.get("replicas")),
                    _ints(p.get("isrs")),
                    _err(p.get("error")),
                )
                for p in parts
            ]
            pm.sort(key=lambda p: p.id)
            name = t.get("name")
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            tm = TopicMetadata(str(name), pm, _err(t.get("error")))
            topics[tm.name] = tm
        return cls(str(r.get("cluster", "")), brokers, topics)
