"""Python client stub for kafkad, the per-host Kafka sidecar daemon.

>>> from kafkad import Client
>>> with Client() as c:                      # $KAFKAD_SOCKET or /run/kafkad/kafkad.sock
...     seq = c.produce("events", b"hello")  # batched, returns at once
...     c.flush()                            # wait for the outcomes
...     reports = c.poll_reports()

One message from a short-lived process (a cron job, a hook), without a
client object: ``partition, offset = kafkad.produce_sync("events", b"hello")``
(:mod:`kafkad._oneshot`: no msgpack, no threads, one request).

``client.consumer(...)`` attaches to a daemon-held consumer
(:mod:`kafkad.consumer`); ``kafkad.aio.AsyncClient`` is the asyncio flavour;
``kafkad.pykafka`` is a PyKafka-compatible layer.

Importing the package costs next to nothing: every name below is loaded from
its module on first use (PEP 562), so a process that only calls
:func:`produce_sync` never imports msgpack, ``socket``, ``threading``,
``typing`` or ``dataclasses``.  :class:`Client` needs msgpack, ``_socket``,
``select`` and ``threading``, still not ``typing`` or ``dataclasses``
(annotations are for type checkers only): what a short-lived process
imports it pays for twice, at start and again at interpreter exit.
"""

from __future__ import annotations

import sys as _sys

__version__ = "0.1.0"

# typing.TYPE_CHECKING without importing typing (mypy treats the name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._oneshot import produce_sync
    from .client import DEFAULT_SOCKET, Client, DeliveryCallback, default_socket_path
    from .consumer import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, Consumer, Event, Message
    from .errors import ConnectionLost, KafkadError, KafkaError, error_from_map
    from .types import (
        BrokerMetadata,
        ClusterMetadata,
        DeliveryReport,
        HelloInfo,
        PartitionMetadata,
        ProduceResult,
        RecordMetadata,
        TopicMetadata,
    )

__all__ = [
    "Client",
    "DEFAULT_SOCKET",
    "DeliveryCallback",
    "default_socket_path",
    "produce_sync",
    "Consumer",
    "Message",
    "Event",
    "OFFSET_BEGINNING",
    "OFFSET_END",
    "OFFSET_INVALID",
    "KafkadError",
    "KafkaError",
    "ConnectionLost",
    "error_from_map",
    "DeliveryReport",
    "RecordMetadata",
    "ProduceResult",
    "HelloInfo",
    "ClusterMetadata",
    "BrokerMetadata",
    "TopicMetadata",
    "PartitionMetadata",
    "__version__",
]

# name -> the submodule that defines it
_LAZY = {
    "produce_sync": "_oneshot",
    "Client": "client",
    "DEFAULT_SOCKET": "client",
    "DeliveryCallback": "client",
    "default_socket_path": "client",
    "Consumer": "consumer",
    "Message": "consumer",
    "Event": "consumer",
    "OFFSET_BEGINNING": "consumer",
    "OFFSET_END": "consumer",
    "OFFSET_INVALID": "consumer",
    "KafkadError": "errors",
    "KafkaError": "errors",
    "ConnectionLost": "errors",
    "error_from_map": "errors",
    "DeliveryReport": "types",
    "RecordMetadata": "types",
    "ProduceResult": "types",
    "HelloInfo": "types",
    "ClusterMetadata": "types",
    "BrokerMetadata": "types",
    "TopicMetadata": "types",
    "PartitionMetadata": "types",
}
# submodules reachable as attributes (``import kafkad; kafkad.errors.X``), as
# they were when this package imported them eagerly
_SUBMODULES = frozenset(("aio", "client", "consumer", "errors", "pykafka", "testing", "types"))


def __getattr__(name: str) -> object:
    mod = _LAZY.get(name)
    if mod is None and name not in _SUBMODULES:
        raise AttributeError(f"module 'kafkad' has no attribute {name!r}")
    full = f"{__name__}.{mod or name}"
    __import__(full)
    m = _sys.modules[full]
    value = m if mod is None else getattr(m, name)
    globals()[name] = value  # later lookups do not come here again
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
