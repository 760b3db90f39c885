"""Brokers as the cluster metadata describes them (``pykafka.broker``).

kafkad owns every connection to Kafka, so a Broker here is only a record:
id, host (bytes, as PyKafka has it) and port.
"""

from __future__ import annotations

from typing import Any, Union

__all__ = ["Broker"]


class Broker:
    def __init__(self, id_: int, host: Union[str, bytes], port: int) -> None:
        self._id = id_
        self._host = host.encode("utf-8") if isinstance(host, str) else host
        self._port = port

    @property
    def id(self) -> int:
        """The broker's id within the cluster."""
        return self._id

    @property
    def host(self) -> bytes:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def connected(self) -> bool:
        """Connections belong to kafkad; the broker counts as reachable."""
        return True

    def _update(self, host: Union[str, bytes], port: int) -> None:
        self._host = host.encode("utf-8") if isinstance(host, str) else host
        self._port = port

    def __repr__(self) -> str:
        return (
            f"<{type(self).__module__}.{type(self).__name__} at {hex(id(self))} "
            f"(host={self._host!r}, port={self._port}, id={self._id})>"
        )

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Broker) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)
