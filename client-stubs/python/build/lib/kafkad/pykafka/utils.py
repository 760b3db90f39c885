"""Serializers with PyKafka's names (``pykafka.utils``)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

__all__ = ["serialize_utf8", "deserialize_utf8"]


def serialize_utf8(value: Any, partition_key: Any) -> Tuple[Optional[bytes], Optional[bytes]]:
    """Producer serializer: str value/key -> UTF-8 bytes (bytes pass through)."""
    if value is not None and type(value) is not bytes:
        value = value.encode("utf-8")
    if partition_key is not None and type(partition_key) is not bytes:
        partition_key = partition_key.encode("utf-8")
    return value, partition_key


def deserialize_utf8(value: Any, partition_key: Any) -> Tuple[Optional[str], Optional[str]]:
    """Consumer deserializer: UTF-8 bytes -> str."""
    if value is not None:
        value = value.decode("utf-8")
    if partition_key is not None:
        partition_key = partition_key.decode("utf-8")
    return value, partition_key
