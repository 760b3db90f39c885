"""Enums shared by the PyKafka-compatible classes (``pykafka.common``)."""

from __future__ import annotations

import datetime as dt

__all__ = ["CompressionType", "OffsetType", "EPOCH"]

EPOCH = dt.datetime(1970, 1, 1)


class CompressionType:
    """Compression codecs.  kafkad compresses as its cluster config says;
    a producer's ``compression`` argument is accepted and ignored."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class OffsetType:
    """Special offsets: the earliest / latest available one."""

    EARLIEST = -2
    LATEST = -1
