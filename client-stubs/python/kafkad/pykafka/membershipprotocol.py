"""Group membership protocols (``pykafka.membershipprotocol``).

With kafkad the assignment is done by Kafka's group protocol inside the
daemon: a ``ManagedBalancedConsumer`` passes the protocol's name to it as
its assignor (``range`` or ``roundrobin``, the same strategies as
librdkafka's and the Java client's).  ``decide_partitions`` is kept so that
code that calls it directly still works.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, Iterable, Mapping, Set

__all__ = ["GroupMembershipProtocol", "RangeProtocol", "RoundRobinProtocol", "assignor_name"]

GroupMembershipProtocol = namedtuple(
    "GroupMembershipProtocol", ["protocol_type", "protocol_name", "metadata", "decide_partitions"]
)


def _sorted_partitions(partitions: Any) -> list:  # type: ignore[type-arg]
    parts = list(partitions.values()) if isinstance(partitions, Mapping) else list(partitions)
    return sorted(parts, key=lambda p: (getattr(getattr(p, "topic", None), "name", b""), p.id))


def _decide_range(participants: Iterable[bytes], partitions: Any, consumer_id: bytes) -> Set[Any]:
    """Contiguous blocks of the sorted partitions, the first members one larger."""
    members = sorted(participants)
    parts = _sorted_partitions(partitions)
    me = members.index(consumer_id)
    each, extra = divmod(len(parts), len(members))
    start = me * each + min(me, extra)
    return set(parts[start : start + each + (1 if me < extra else 0)])


def _decide_roundrobin(participants: Iterable[bytes], partitions: Any, consumer_id: bytes) -> Set[Any]:
    """Every n-th partition of the sorted list, n being the member count."""
    members = sorted(participants)
    me = members.index(consumer_id)
    return {p for i, p in enumerate(_sorted_partitions(partitions)) if i % len(members) == me}


RangeProtocol = GroupMembershipProtocol(b"consumer", b"range", None, _decide_range)
RoundRobinProtocol = GroupMembershipProtocol(b"consumer", b"roundrobin", None, _decide_roundrobin)

_ASSIGNORS = {b"range": "range", b"roundrobin": "roundrobin", b"cooperative-sticky": "cooperative-sticky"}


def assignor_name(protocol: Any) -> str:
    """The daemon's assignor for a membership protocol (by its
    ``protocol_name``); ValueError for a custom one, whose
    ``decide_partitions`` the daemon cannot run."""
    name = getattr(protocol, "protocol_name", protocol)
    if isinstance(name, str):
        name = name.encode("ascii", "replace")
    try:
        return _ASSIGNORS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"membership protocol {name!r} is not supported: kafkad's group consumer assigns with "
            "Kafka's range or roundrobin strategy (RangeProtocol, RoundRobinProtocol)"
        ) from None
