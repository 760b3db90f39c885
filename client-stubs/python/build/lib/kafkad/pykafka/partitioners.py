"""Partitioners with PyKafka's names and behaviour (``pykafka.partitioners``).

A partitioner is called as ``partitioner(partitions, key)`` with the list of
the topic's :class:`~kafkad.pykafka.partition.Partition` objects and returns
one of them.  The producer recognises the stock ones and lets kafkad do the
work instead of calling them:

- :class:`RandomPartitioner` (the default; ``random_partitioner``) -> the
  daemon's ``random`` partitioner;
- :class:`HashingPartitioner` with its default hash (``hashing_partitioner``)
  -> ``pykafka_hashing``, which picks the same partition PyKafka does
  (SHA-1 of the key as a big-endian integer, modulo the partition count).

Any other callable runs in the producer, and the partition it picks is sent
explicitly.
"""

from __future__ import annotations

import random
from hashlib import sha1
from typing import Any, Callable, Optional, Sequence

__all__ = [
    "BasePartitioner",
    "RandomPartitioner",
    "HashingPartitioner",
    "GroupHashingPartitioner",
    "hashing_partitioner",
    "random_partitioner",
    "sha1_hash",
]


def sha1_hash(key: bytes) -> int:
    """PyKafka's default key hash: the SHA-1 digest as a big-endian integer."""
    return int.from_bytes(sha1(key).digest(), "big")


class BasePartitioner:
    """Base class for class-based partitioners."""

    def __call__(self, partitions: Sequence[Any], key: Any = None) -> Any:
        raise NotImplementedError("a partitioner must implement __call__(partitions, key)")


class RandomPartitioner(BasePartitioner):
    """Spreads messages evenly over the partitions, ignoring the key.

    Called directly it cycles through the partitions (as PyKafka's does);
    used by a producer, kafkad's ``random`` partitioner does the spreading.
    """

    def __init__(self) -> None:
        self.idx = 0

    def __call__(self, partitions: Sequence[Any], key: Any = None) -> Any:
        self.idx = (self.idx + 1) % len(partitions)
        return partitions[self.idx]


class HashingPartitioner(BasePartitioner):
    """The same key always goes to the same partition (while the partition
    count does not change).  ``hash_func`` defaults to :func:`sha1_hash`."""

    def __init__(self, hash_func: Optional[Callable[[Any], int]] = None) -> None:
        self.default_hash = hash_func is None
        self.hash_func: Callable[[Any], int] = hash_func if hash_func is not None else sha1_hash

    def __call__(self, partitions: Sequence[Any], key: Any = None) -> Any:
        if key is None:
            raise ValueError("key cannot be `None` when using hashing partitioner")
        ordered = sorted(partitions)
        return ordered[abs(self.hash_func(key)) % len(ordered)]


class GroupHashingPartitioner(BasePartitioner):
    """Spreads each key over a group of ``group_size`` consecutive partitions."""

    def __init__(self, hash_func: Callable[[Any], int], group_size: int = 1) -> None:
        if hash_func is None:
            raise ValueError("hash_func must be specified when using GroupHashingPartitioner")
        if group_size < 1:
            raise ValueError("group_size cannot be < 1 when using GroupHashingPartitioner")
        self.hash_func = hash_func
        self.group_size = group_size

    def __call__(self, partitions: Sequence[Any], key: Any = None) -> Any:
        if key is None:
            raise ValueError("key cannot be `None` when using hashing partitioner")
        if self.group_size > len(partitions):
            raise ValueError("group_size cannot be > available partitions")
        ordered = sorted(partitions)
        h = self.hash_func(key) + random.randrange(0, self.group_size)
        return ordered[abs(h) % len(ordered)]


hashing_partitioner = HashingPartitioner()
random_partitioner = RandomPartitioner()
