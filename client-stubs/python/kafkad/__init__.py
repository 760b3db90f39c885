"""Python client stub for kafkad, the per-host Kafka sidecar daemon.

>>> from kafkad import Client
>>> with Client() as c:                      # $KAFKAD_SOCKET or /run/kafkad/kafkad.sock
...     seq = c.produce("events", b"hello")  # batched, returns at once
...     c.flush()                            # wait for the outcomes
...     reports = c.poll_reports()

``client.consumer(...)`` attaches to a daemon-held consumer
(:mod:`kafkad.consumer`); ``kafkad.aio.AsyncClient`` is the asyncio flavour;
``kafkad.pykafka`` is a PyKafka-compatible layer.
"""

from .client import DEFAULT_SOCKET, Client, DeliveryCallback, default_socket_path
from .errors import (
    ConnectionLost,
    KafkadError,
    KafkaError,
    error_from_map,
)
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

__version__ = "0.1.0"

__all__ = [
    "Client",
    "DEFAULT_SOCKET",
    "DeliveryCallback",
    "default_socket_path",
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


_LAZY = {"OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID", "Consumer", "Event", "Message"}


def __getattr__(name: str) -> object:
    # the consumer module loads on first use: a producing process never pays
    # for importing it
    if name in _LAZY:
        from . import consumer

        return getattr(consumer, name)
    raise AttributeError(f"module 'kafkad' has no attribute {name!r}")
