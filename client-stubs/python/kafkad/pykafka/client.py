"""``KafkaClient``, the PyKafka entry point, backed by kafkad."""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, Union

from ..client import Client, default_socket_path
from ..errors import KafkadError
from ..types import ClusterMetadata
from .broker import Broker
from .exceptions import (
    ERROR_CODES,
    LeaderNotAvailable,
    NoBrokersAvailableError,
    UnicodeException,
    UnknownTopicOrPartition,
    from_kafkad,
)
from .topic import Topic

__all__ = ["KafkaClient", "Cluster", "TopicDict"]

log = logging.getLogger(__name__)

_LEADER_NOT_AVAILABLE = 5
_UNKNOWN_TOPIC_NAMES = ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC")


def _hostset(hosts: str) -> Set[str]:
    """Normalised ``host:port`` set of a bootstrap list."""
    out: Set[str] = set()
    for h in hosts.split(","):
        h = h.strip().lower()
        if not h:
            continue
        if "://" in h:
            h = h.split("://", 1)[1]
        if h.startswith("[") and "]" in h:  # [v6]:port
            host, _, port = h[1:].partition("]")
            port = port.lstrip(":")
        elif h.count(":") == 1:
            host, _, port = h.partition(":")
        else:
            host, port = h, ""
        if host in ("localhost", "::1"):
            host = "127.0.0.1"
        out.add(f"{host}:{port or '9092'}")
    return out


def pick_cluster(conn: Client, hosts: str) -> Optional[str]:
    """The configured cluster that ``hosts`` designates, else None (default).

    ``hosts`` may be a cluster name, or a broker list compared with each
    cluster's ``bootstrap.servers`` (same set first, then any overlap).
    """
    names = conn.hello.clusters
    h = hosts.strip()
    if h in names:
        return h
    want = _hostset(h)
    if not want:
        return None
    try:
        st = conn.stats()
    except KafkadError as e:
        log.debug("kafkad stats failed while choosing a cluster: %s", e)
        return None
    clusters = st.get("clusters") or {}
    boot: List[Tuple[str, Set[str]]] = []
    for name in sorted(clusters):
        info = clusters[name] or {}
        b = info.get("bootstrap") if isinstance(info, dict) else None
        boot.append((name, _hostset(b if isinstance(b, str) else "")))
    for name, bs in boot:
        if bs == want:
            return name
    for name, bs in boot:
        if bs & want:
            return name
    return None


class TopicDict(dict):  # type: ignore[type-arg]
    """PyKafka's lazy topic dict: keys are topic names (bytes), Topic objects
    are created on first access; a missing topic is auto-created (as far as
    the brokers allow) by asking for its metadata."""

    def __init__(self, cluster: "Cluster", exclude_internal_topics: bool) -> None:
        super().__init__()
        self._cluster = cluster
        self._exclude_internal_topics = exclude_internal_topics

    @staticmethod
    def _key(key: Any) -> bytes:
        """Topic names are ASCII bytes; str keys are accepted too."""
        if isinstance(key, (bytes, bytearray)):
            b = bytes(key)
            if not b.isascii():
                raise UnicodeException(f"Topic name {key!r} contains non-ascii characters")
            return b
        try:
            return str(key).encode("ascii")
        except UnicodeEncodeError:
            raise UnicodeException(f"Topic name '{key}' contains non-ascii characters") from None

    def _should_exclude_topic(self, name: bytes) -> bool:
        return self._exclude_internal_topics and name.startswith(b"__")

    def __getitem__(self, key: Any) -> Topic:
        name = self._key(key)
        if self._should_exclude_topic(name):
            raise KeyError("You have configured KafkaClient/Cluster to hide double-underscored, internal topics")
        topic = super().__getitem__(name)  # may call __missing__
        if topic is None:
            topic = self._instantiate(name)
        return topic  # type: ignore[no-any-return]

    def _instantiate(self, name: bytes) -> Topic:
        md = self._cluster._get_metadata([name.decode("ascii")])
        tm = md.topics.get(name.decode("ascii"))
        if tm is None or tm.error is not None:
            err = tm.error if tm is not None else None
            raise from_kafkad(err) if err is not None else UnknownTopicOrPartition(name)
        topic = Topic(self._cluster, tm)
        dict.__setitem__(self, name, topic)
        return topic

    def __missing__(self, key: bytes) -> None:
        log.warning("Topic %s not found. Attempting to auto-create.", key)
        self._create_topic(key)
        return None

    def _create_topic(self, name: bytes) -> None:
        deadline = time.monotonic() + self._cluster._timeout
        while True:
            md = self._cluster._get_metadata([name.decode("ascii")])
            tm = md.topics.get(name.decode("ascii"))
            err = tm.error if tm is not None else None
            code = getattr(err, "kafka_code", None)
            if err is None and tm is not None and tm.partitions:
                log.info("Topic %s successfully auto-created.", name)
                self._cluster.update()
                if not dict.__contains__(self, name):
                    dict.__setitem__(self, name, None)
                return
            if (err is None or code == _LEADER_NOT_AVAILABLE) and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            if err is None:
                raise LeaderNotAvailable(f"Failed to auto-create topic '{name.decode()}'")
            if getattr(err, "name", "") in _UNKNOWN_TOPIC_NAMES:
                exc: Exception = UnknownTopicOrPartition(f"Failed to auto-create topic '{name.decode()}'")
                exc.__cause__ = err
                raise exc
            cls = ERROR_CODES.get(code) if isinstance(code, int) else None
            if cls is not None:
                raise cls(f"Failed to auto-create topic '{name.decode()}'") from err
            raise from_kafkad(err)

    def __contains__(self, key: Any) -> bool:
        try:
            return dict.__contains__(self, self._key(key))
        except UnicodeException:
            return False

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default

    def values(self) -> List[Topic]:  # type: ignore[override]
        return [self[k] for k in self]

    def items(self) -> List[Tuple[bytes, Topic]]:  # type: ignore[override]
        return [(k, self[k]) for k in self]

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(dict.keys(self)))

    def _update_topics(self, md: ClusterMetadata) -> None:
        fresh = {n.encode("utf-8"): t for n, t in md.topics.items()}
        for gone in set(dict.keys(self)) - set(fresh):
            log.info("Removing topic %s", gone)
            dict.__delitem__(self, gone)
        for name, tm in fresh.items():
            if self._should_exclude_topic(name):
                continue
            if not dict.__contains__(self, name):
                dict.__setitem__(self, name, None)
            else:
                t = dict.__getitem__(self, name)
                if t is not None and tm.error is None:
                    t.update(tm)


class Cluster:
    """Brokers and topics of the kafkad cluster a KafkaClient designates."""

    def __init__(
        self,
        hosts: str,
        *,
        socket_path: Optional[str] = None,
        cluster: Optional[str] = None,
        socket_timeout_ms: int = 30 * 1000,
        exclude_internal_topics: bool = True,
        broker_version: str = "0.9.0",
        zookeeper_hosts: Optional[str] = None,
    ) -> None:
        self._seed_hosts = hosts
        # what a ZooKeeper-balanced consumer uses when given no ZooKeeper
        self._zookeeper_connect = zookeeper_hosts
        self._socket_path = default_socket_path(socket_path)
        self._timeout = socket_timeout_ms / 1000.0
        self._broker_version = broker_version
        self._brokers: Dict[int, Broker] = {}
        self._topics = TopicDict(self, exclude_internal_topics)
        try:
            self._conn = Client(self._socket_path, timeout=self._timeout, linger_ms=0, background=False)
        except KafkadError as e:
            raise NoBrokersAvailableError(f"cannot reach kafkad at {self._socket_path}: {e}") from e
        self.cluster_name = cluster if cluster is not None else pick_cluster(self._conn, hosts)
        self._conn.cluster = self.cluster_name
        self.update()

    @property
    def brokers(self) -> Dict[int, Broker]:
        return self._brokers

    @property
    def topics(self) -> TopicDict:
        return self._topics

    @property
    def socket_path(self) -> str:
        return self._socket_path

    def _get_metadata(self, topics: Optional[List[str]] = None) -> ClusterMetadata:
        try:
            md = self._conn.metadata(topics, timeout=self._timeout)
        except KafkadError as e:
            raise NoBrokersAvailableError(f"Unable to fetch metadata through kafkad: {e}") from e
        self._update_brokers(md)
        return md

    def _update_brokers(self, md: ClusterMetadata) -> None:
        for bid in set(self._brokers) - set(md.brokers):
            del self._brokers[bid]
        for bid, bm in md.brokers.items():
            if bid in self._brokers:
                self._brokers[bid]._update(bm.host, bm.port)
            else:
                self._brokers[bid] = Broker(bid, bm.host, bm.port)

    def update(self) -> None:
        """Refresh brokers and topics."""
        md = self._get_metadata()
        if not md.brokers and not md.topics:
            log.warning("No broker metadata found (cluster %s).", self.cluster_name or "default")
        self._topics._update_topics(md)

    def close(self) -> None:
        self._conn.close()


class KafkaClient:
    """PyKafka's ``KafkaClient``, talking to kafkad instead of the brokers.

    ``hosts`` picks the kafkad cluster: a cluster name, or a broker list that
    matches a configured cluster's ``bootstrap.servers``; anything else means
    the daemon's default cluster.  ``cluster=`` names one directly.  The
    socket is ``socket_path=``, else ``$KAFKAD_SOCKET``, else
    ``/run/kafkad/kafkad.sock``.  ``zookeeper_hosts`` is the ZooKeeper of
    ``get_balanced_consumer()`` (kafkad finds the brokers by ``hosts``);
    ``ssl_config``, ``source_address`` and ``use_greenlets`` are accepted
    and ignored: kafkad owns the connections to Kafka.
    """

    def __init__(
        self,
        hosts: Union[str, bytes] = "127.0.0.1:9092",
        zookeeper_hosts: Optional[str] = None,
        socket_timeout_ms: int = 30 * 1000,
        offsets_channel_socket_timeout_ms: int = 10 * 1000,
        use_greenlets: bool = False,
        exclude_internal_topics: bool = True,
        source_address: str = "",
        ssl_config: Any = None,
        broker_version: str = "0.9.0",
        *,
        socket_path: Optional[str] = None,
        cluster: Optional[str] = None,
    ) -> None:
        if isinstance(hosts, bytes):
            hosts = hosts.decode("utf-8")
        if isinstance(zookeeper_hosts, bytes):
            zookeeper_hosts = zookeeper_hosts.decode("utf-8")
        for name, val in (("ssl_config", ssl_config), ("use_greenlets", use_greenlets)):
            if val:
                log.info("KafkaClient: %s is ignored (kafkad owns the Kafka connections)", name)
        self._seed_hosts = zookeeper_hosts if zookeeper_hosts is not None else hosts
        self._socket_timeout_ms = socket_timeout_ms
        self._offsets_channel_socket_timeout_ms = offsets_channel_socket_timeout_ms
        self.cluster = Cluster(
            hosts,
            socket_path=socket_path,
            cluster=cluster,
            socket_timeout_ms=socket_timeout_ms,
            exclude_internal_topics=exclude_internal_topics,
            broker_version=broker_version,
            zookeeper_hosts=zookeeper_hosts,
        )
        self.brokers = self.cluster.brokers
        self.topics = self.cluster.topics

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} at {hex(id(self))} (hosts={self._seed_hosts})>"

    def update_cluster(self) -> None:
        """Refresh brokers and topics."""
        self.cluster.update()

    def close(self) -> None:
        """Close the metadata connection (producers have their own)."""
        self.cluster.close()
