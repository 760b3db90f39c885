"""Result types returned by the clients."""

from __future__ import annotations

import sys as _sys
from collections import namedtuple

from .errors import KafkadError, error_from_map

# These classes used to be built with typing.NamedTuple and dataclasses, which
# cost a short-lived producer ~10 ms of CPU to import (dataclasses pulls in
# inspect, ast, dis, tokenize...) and more again at interpreter exit.  They
# are now written out by hand with the same fields, defaults, constructor,
# repr and equality; dataclasses.fields()/asdict()/replace() still work on
# the former dataclasses (see _dataclass_fields).

# typing.TYPE_CHECKING without importing typing (mypy treats the name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

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

if TYPE_CHECKING:  # pragma: no cover

    class DeliveryReport(NamedTuple):
        seq: int
        partition: int
        offset: int
        error: Optional[KafkadError]

        @property
        def ok(self) -> bool: ...

    class RecordMetadata(NamedTuple):
        partition: int
        offset: int

else:
    # what typing.NamedTuple builds: a collections.namedtuple class plus the
    # class body's extra members
    DeliveryReport = namedtuple("DeliveryReport", ("seq", "partition", "offset", "error"), module=__name__)
    DeliveryReport.__doc__ = """The outcome of one report-mode message.

    ``seq`` is the number :meth:`Client.produce` returned for the message.
    ``offset`` is -1 when unknown (failure, or ``acks=0``); ``partition`` is -1
    when the message never reached a partition.  ``error`` is ``None`` on
    success.
    """
    DeliveryReport.ok = property(lambda self: self.error is None, doc="True when the message was delivered.")

    RecordMetadata = namedtuple("RecordMetadata", ("partition", "offset"), module=__name__)
    RecordMetadata.__doc__ = """Where an acknowledged message was written (``ack="wait"``)."""


class _Record:
    """Base of the former dataclasses: repr and equality over ``_record_fields``
    as ``@dataclass`` generated them (equal only to the same class; mutable,
    hence unhashable)."""

    _record_fields: "Tuple[str, ...]" = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._record_fields)
        return f"{type(self).__qualname__}({args})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            names = self._record_fields
            return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class _DataclassFields:
    """``__dataclass_fields__`` of a former dataclass, made on first use.

    :mod:`dataclasses` (``fields``, ``asdict``, ``astuple``, ``replace``,
    ``is_dataclass``) and tools such as pytest's assertion diffs look for
    this attribute; building it imports dataclasses, so that happens only
    when someone asks.  ``spec``: ``(name, annotation, default)`` per field,
    default ``_REQUIRED`` or a ``_Factory``.
    """

    def __init__(self, spec: "Tuple[Tuple[str, str, Any], ...]") -> None:
        self.spec = spec

    def __get__(self, obj: object, owner: type) -> "Dict[str, Any]":
        import dataclasses

        specs: "List[Any]" = []
        for name, ann, default in self.spec:
            if default is _REQUIRED:
                specs.append((name, ann))
            elif isinstance(default, _Factory):
                specs.append((name, ann, dataclasses.field(default_factory=default.make)))
            else:
                specs.append((name, ann, dataclasses.field(default=default)))
        shadow = dataclasses.make_dataclass(owner.__name__, specs)
        fields: "Dict[str, Any]" = shadow.__dataclass_fields__  # type: ignore[attr-defined]
        setattr(owner, "__dataclass_fields__", fields)  # later lookups find the dict
        return fields


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: "Any") -> None:
        self.make = make


_REQUIRED = object()
# default of a field that gets a new empty list (default_factory=list)
_NEW_LIST: Any = object()


def _dataclass_fields(cls: type, spec: "Tuple[Tuple[str, str, Any], ...]") -> None:
    names = tuple(name for name, _ann, _default in spec)
    setattr(cls, "_record_fields", names)
    if _sys.version_info >= (3, 10):  # (as @dataclass does)
        setattr(cls, "__match_args__", names)
    setattr(cls, "__dataclass_fields__", _DataclassFields(spec))


class ProduceResult(_Record):
    """What a ``produce_batch`` call returns.

    ``seq``: first sequence number (report mode; messages got
    ``seq .. seq+count-1``), else 0.  ``results``: wait mode only, one entry
    per message, a :class:`RecordMetadata` or the message's error.
    """

    count: int
    seq: int
    results: List[Union[RecordMetadata, KafkadError]]

    def __init__(
        self, count: int, seq: int = 0, results: List[Union[RecordMetadata, KafkadError]] = _NEW_LIST
    ) -> None:
        self.count = count
        self.seq = seq
        self.results = [] if results is _NEW_LIST else results

    @property
    def errors(self) -> List[KafkadError]:
        return [r for r in self.results if isinstance(r, KafkadError)]


class HelloInfo(_Record):
    version: int
    server: str
    max_frame: int
    max_batch: int
    max_pending: int
    clusters: List[str]
    default_cluster: str

    def __init__(
        self,
        version: int = 1,
        server: str = "",
        max_frame: int = 16 * 1024 * 1024,
        max_batch: int = 10000,
        max_pending: int = 1 << 20,
        clusters: List[str] = _NEW_LIST,
        default_cluster: str = "",
    ) -> None:
        self.version = version
        self.server = server
        self.max_frame = max_frame
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.clusters = [] if clusters is _NEW_LIST else clusters
        self.default_cluster = default_cluster

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


class BrokerMetadata(_Record):
    id: int
    host: str
    port: int

    def __init__(self, id: int, host: str, port: int) -> None:
        self.id = id
        self.host = host
        self.port = port


class PartitionMetadata(_Record):
    id: int
    leader: int
    replicas: List[int]
    isrs: List[int]
    error: Optional[KafkadError]

    def __init__(
        self, id: int, leader: int, replicas: List[int], isrs: List[int], error: Optional[KafkadError] = None
    ) -> None:
        self.id = id
        self.leader = leader
        self.replicas = replicas
        self.isrs = isrs
        self.error = error


class TopicMetadata(_Record):
    name: str
    partitions: List[PartitionMetadata]
    error: Optional[KafkadError]

    def __init__(self, name: str, partitions: List[PartitionMetadata], error: Optional[KafkadError] = None) -> None:
        self.name = name
        self.partitions = partitions
        self.error = error


class ClusterMetadata(_Record):
    """Result of ``metadata()``: brokers by id and topics by name."""

    cluster: str
    brokers: Dict[int, BrokerMetadata]
    topics: Dict[str, TopicMetadata]

    def __init__(self, cluster: str, brokers: Dict[int, BrokerMetadata], topics: Dict[str, TopicMetadata]) -> None:
        self.cluster = cluster
        self.brokers = brokers
        self.topics = topics

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


_LIST = _Factory(list)
_dataclass_fields(
    ProduceResult,
    (("count", "int", _REQUIRED), ("seq", "int", 0), ("results", "List[Union[RecordMetadata, KafkadError]]", _LIST)),
)
_dataclass_fields(
    HelloInfo,
    (
        ("version", "int", 1),
        ("server", "str", ""),
        ("max_frame", "int", 16 * 1024 * 1024),
        ("max_batch", "int", 10000),
        ("max_pending", "int", 1 << 20),
        ("clusters", "List[str]", _LIST),
        ("default_cluster", "str", ""),
    ),
)
_dataclass_fields(BrokerMetadata, (("id", "int", _REQUIRED), ("host", "str", _REQUIRED), ("port", "int", _REQUIRED)))
_dataclass_fields(
    PartitionMetadata,
    (
        ("id", "int", _REQUIRED),
        ("leader", "int", _REQUIRED),
        ("replicas", "List[int]", _REQUIRED),
        ("isrs", "List[int]", _REQUIRED),
        ("error", "Optional[KafkadError]", None),
    ),
)
_dataclass_fields(
    TopicMetadata,
    (("name", "str", _REQUIRED), ("partitions", "List[PartitionMetadata]", _REQUIRED), ("error", "Optional[KafkadError]", None)),
)
_dataclass_fields(
    ClusterMetadata,
    (
        ("cluster", "str", _REQUIRED),
        ("brokers", "Dict[int, BrokerMetadata]", _REQUIRED),
        ("topics", "Dict[str, TopicMetadata]", _REQUIRED),
    ),
)
