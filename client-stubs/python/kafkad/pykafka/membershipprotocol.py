"""Group membership protocols (``pykafka.membershipprotocol``).

With kafkad the assignment is done inside the daemon: a
``ManagedBalancedConsumer`` passes the protocol's name to it as the Kafka
group assignor (``range`` or ``roundrobin``, the strategies of librdkafka
and the Java client); a ZooKeeper ``BalancedConsumer`` passes it as the
daemon's ZooKeeper balancing strategy, which decides exactly as PyKafka's
``decide_partitions`` functions below (so kafkad and PyKafka members of one
ZooKeeper group agree).  ``decide_partitions`` is kept, identical to PyKafka
2.8's, for code that calls it directly.
"""

from __future__ import annotations

import itertools
from collections import namedtuple
from typing import Any, Iterable, List, Mapping, Set

__all__ = [
    "GroupMembershipProtocol",
    "RangeProtocol",
    "RoundRobinProtocol",
    "assignor_name",
    "zookeeper_assignor",
    "decide_partitions_range",
    "decide_partitions_roundrobin",
]

GroupMembershipProtocol = namedtuple(
    "GroupMembershipProtocol", ["protocol_type", "protocol_name", "metadata", "decide_partitions"]
)


def _p_to_str(p: Any) -> str:
    # PyKafka's sort key, strings and all: "<str(topic name)>-<leader id>-<id>",
    # so partition 10 sorts before partition 2 (what every member must agree on)
    topic = getattr(p, "topic", None)
    leader = getattr(p, "leader", None)
    return "-".join([str(getattr(topic, "name", b"")), str(getattr(leader, "id", "")), str(p.id)])


def _sorted_partitions(partitions: Any) -> List[Any]:
    parts = list(partitions.values()) if isinstance(partitions, Mapping) else list(partitions)
    return sorted(parts, key=_p_to_str)


def decide_partitions_range(participants: Iterable[bytes], partitions: Any, consumer_id: bytes) -> Set[Any]:
    """Contiguous blocks of the sorted partitions, the first members one
    larger (PyKafka 2.8's ``decide_partitions_range``)."""
    all_parts = _sorted_partitions(partitions)
    members = sorted(participants)
    idx = members.index(consumer_id)
    per, extra = divmod(len(all_parts), len(members))
    start = per * idx + min(idx, extra)
    num = per + (0 if idx + 1 > extra else 1)
    return set(itertools.islice(all_parts, start, start + num))


def decide_partitions_roundrobin(participants: Iterable[bytes], partitions: Any, consumer_id: bytes) -> Set[Any]:
    """The sorted partitions dealt to the sorted members in turn (PyKafka
    2.8's ``decide_partitions_roundrobin``)."""
    parts = _sorted_partitions(partitions)
    members = sorted(participants)
    return {p for i, p in enumerate(parts) if members[i % len(members)] == consumer_id}


RangeProtocol = GroupMembershipProtocol(b"consumer", b"range", None, decide_partitions_range)
RoundRobinProtocol = GroupMembershipProtocol(b"consumer", b"roundrobin", None, decide_partitions_roundrobin)

_ASSIGNORS = {b"range": "range", b"roundrobin": "roundrobin", b"cooperative-sticky": "cooperative-sticky"}
_ZK_ASSIGNORS = {b"range": "range", b"roundrobin": "roundrobin"}


def _protocol_name(protocol: Any) -> Any:
    name = getattr(protocol, "protocol_name", protocol)
    if isinstance(name, str):
        name = name.encode("ascii", "replace")
    return name


def assignor_name(protocol: Any) -> str:
    """The daemon's assignor for a membership protocol (by its
    ``protocol_name``, so PyKafka's own protocol objects work too);
    ValueError for a custom one, whose ``decide_partitions`` the daemon
    cannot run."""
    name = _protocol_name(protocol)
    try:
        return _ASSIGNORS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"membership protocol {name!r} is not supported: kafkad's group consumer assigns with "
            "Kafka's range or roundrobin strategy (RangeProtocol, RoundRobinProtocol)"
        ) from None


def zookeeper_assignor(protocol: Any) -> str:
    """As :func:`assignor_name`, for the ZooKeeper-balanced consumer
    (PyKafka's two strategies: range, roundrobin)."""
    name = _protocol_name(protocol)
    try:
        return _ZK_ASSIGNORS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"membership protocol {name!r} is not supported: kafkad's ZooKeeper balancer decides as "
            "PyKafka's RangeProtocol or RoundRobinProtocol"
        ) from None
