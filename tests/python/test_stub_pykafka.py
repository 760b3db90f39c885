"""The PyKafka-compatible layer (kafkad.pykafka) against FakeDaemon."""

import datetime as dt
import hashlib
import os
import queue
import sys
import threading

import pytest

_STUB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "client-stubs", "python"))
if _STUB not in sys.path:
    sys.path.insert(0, _STUB)

from kafkad.pykafka import KafkaClient, Message  # noqa: E402
from kafkad.pykafka import exceptions as PE  # noqa: E402
from kafkad.pykafka.common import OffsetType  # noqa: E402
from kafkad.pykafka.partitioners import (  # noqa: E402
    GroupHashingPartitioner,
    HashingPartitioner,
    RandomPartitioner,
    hashing_partitioner,
    random_partitioner,
)
from kafkad.testing import FakeDaemon  # noqa: E402


@pytest.fixture
def fake(monkeypatch):
    f = FakeDaemon(
        topics={"topicname": 4, "other": 2, "__consumer_offsets": 1},
        clusters=("main", "analytics"),
        bootstrap={"main": "kafka-a:9092,kafka-b:9092", "analytics": "127.0.0.1:9092"},
    ).start()
    monkeypatch.setenv("KAFKAD_SOCKET", f.socket_path)
    yield f
    f.stop()


def produced(fake):
    return [a for (_i, op, a) in fake.requests if op == "produce"]


# ------------------------------------------------------------ the seed examples


def test_seed_producer_examples(fake):
    # the PyKafka blog post's producer code, with only the import changed
    client = KafkaClient("localhost:9092")
    topic = client.topics["topicname"]
    producer = topic.get_producer()
    producer.produce(b"your message")
    producer.stop()

    with topic.get_producer() as producer:
        for i in range(3):
            producer.produce(b"interesting %d" % i)

    producer = topic.get_producer(sync=True)
    producer.produce(b"sync message")

    producer = topic.get_producer(delivery_reports=True)
    producer.produce(b"reported")
    try:
        msg, exc = producer.get_delivery_report(block=False, timeout=0.1)
    except queue.Empty:
        pass
    producer.stop()
    msg, exc = producer.get_delivery_report(block=False, timeout=0.1)
    assert msg.value == b"reported" and exc is None and msg.offset >= 0

    producer = topic.get_producer(partitioner=hashing_partitioner)
    producer.produce(b"your message", partition_key=b"bravo")
    producer.produce(b"another message", partition_key=b"bravo")
    producer.stop()

    producer = topic.get_producer(use_rdkafka=True)
    producer.produce(b"rd")
    producer.stop()

    bravo = [m for m in fake.messages("topicname") if m.key == b"bravo"]
    assert len(bravo) == 2 and bravo[0].partition == bravo[1].partition
    assert len(fake.messages("topicname")) == 9


def test_brief_example(fake):
    client = KafkaClient(hosts="127.0.0.1:9092")
    topic = client.topics[b"topicname"]
    with topic.get_producer(
        sync=False,
        delivery_reports=True,
        partitioner=hashing_partitioner,
        linger_ms=10,
        min_queued_messages=100,
        max_queued_messages=1000,
    ) as producer:
        m = producer.produce(b"msg", partition_key=b"bravo")
        assert isinstance(m, Message)
        with pytest.raises(queue.Empty):
            producer.get_delivery_report(block=False, timeout=0.1)
        msg, exc = producer.get_delivery_report(block=True, timeout=5)
        assert msg is m and exc is None
    expected = int(hashlib.sha1(b"bravo").hexdigest(), 16) % 4
    assert m.partition_id == expected and m.offset == 0
    assert produced(fake)[0]["partitioner"] == "pykafka_hashing"
    assert produced(fake)[0]["cluster"] == "analytics"  # hosts matched its bootstrap list


# ------------------------------------------------------------ KafkaClient / topics


def test_cluster_selection(fake):
    assert KafkaClient("kafka-b:9092, kafka-a:9092").cluster.cluster_name == "main"
    assert KafkaClient("PLAINTEXT://localhost:9092").cluster.cluster_name == "analytics"
    assert KafkaClient("analytics").cluster.cluster_name == "analytics"
    assert KafkaClient("kafka-a:9092").cluster.cluster_name == "main"  # overlap
    assert KafkaClient("elsewhere:9092").cluster.cluster_name is None  # daemon default
    assert KafkaClient("x", cluster="main").cluster.cluster_name == "main"


def test_socket_path_argument(fake, monkeypatch):
    monkeypatch.delenv("KAFKAD_SOCKET")
    c = KafkaClient(socket_path=fake.socket_path)
    assert b"topicname" in c.topics


def test_unreachable_daemon(monkeypatch, tmp_path):
    monkeypatch.setenv("KAFKAD_SOCKET", str(tmp_path / "none.sock"))
    with pytest.raises(PE.NoBrokersAvailableError):
        KafkaClient()


def test_topic_dict(fake):
    client = KafkaClient()
    topics = client.topics
    assert set(topics.keys()) == {b"topicname", b"other"}  # internal topics hidden
    assert dict.__getitem__(topics, b"other") is None  # lazily instantiated
    t = topics["other"]
    assert topics[b"other"] is t and t.name == b"other"
    assert "other" in topics and b"other" in topics and "nope" not in topics
    assert sorted(x.name for x in topics.values()) == [b"other", b"topicname"]
    with pytest.raises(KeyError):
        topics[b"__consumer_offsets"]
    with pytest.raises(PE.UnicodeException):
        topics["t\u00e9"]
    with pytest.raises(PE.UnknownTopicOrPartition):
        topics[b"does-not-exist"]
    assert topics.get(b"nope") is None


def test_topic_auto_create(fake):
    client = KafkaClient()
    fake.topics["late"] = 3  # appears after the client started (e.g. broker auto-create)
    t = client.topics[b"late"]
    assert sorted(t.partitions) == [0, 1, 2]
    assert b"late" in client.topics


def test_partitions_and_brokers(fake):
    client = KafkaClient()
    t = client.topics[b"topicname"]
    assert list(t.partitions) == [0, 1, 2, 3]
    p = t.partitions[2]
    assert p.id == 2 and p.topic is t and p.leader is client.brokers[p.leader.id]
    assert isinstance(p.leader.host, bytes) and p.leader.port > 0
    assert sorted([t.partitions[3], t.partitions[0]]) == [t.partitions[0], t.partitions[3]]
    # offsets come from the daemon's watermarks (consumers: test_stub_consumer_pykafka.py)
    assert p.latest_available_offset() == 0 and p.earliest_available_offset() == 0
    assert t.latest_available_offsets()[2].offset == [0]
    assert OffsetType.EARLIEST == -2 and OffsetType.LATEST == -1
    client.update_cluster()
    assert client.topics[b"topicname"] is t


# ------------------------------------------------------------ producer semantics


def test_produce_returns_message_and_type_checks(fake):
    t = KafkaClient().topics[b"topicname"]
    p = t.get_producer()
    m = p.produce(b"v", partition_key=b"k")
    assert isinstance(m, Message) and m.value == b"v" and m.partition_key == b"k"
    assert m.delivery_report_q is None and m.timestamp is None  # broker_version 0.9.0: protocol 0
    with pytest.raises(TypeError):
        p.produce("str value")
    with pytest.raises(TypeError):
        p.produce(b"v", partition_key="str key")
    with pytest.raises(RuntimeError):
        p.produce(b"v", timestamp=dt.datetime(2020, 1, 1))
    with pytest.raises(PE.KafkaException):
        p.get_delivery_report()
    p.stop()
    with pytest.raises(PE.ProducerStoppedException):
        p.produce(b"late")


def test_timestamps_with_newer_broker_version(fake):
    t = KafkaClient(broker_version="2.8.0").topics[b"topicname"]
    with t.get_producer() as p:
        m1 = p.produce(b"a", timestamp=dt.datetime(2020, 1, 1))
        m2 = p.produce(b"b")
    assert m1.timestamp == 1577836800000 and m1.timestamp_dt == dt.datetime(2020, 1, 1)
    assert isinstance(m2.timestamp, int) and m2.timestamp > 1577836800000
    stamps = sorted(m.timestamp for m in fake.messages("topicname"))
    assert stamps[0] == 1577836800000


def test_serializer(fake):
    from kafkad.pykafka.utils import serialize_utf8

    t = KafkaClient().topics[b"topicname"]
    with t.get_producer(serializer=serialize_utf8, partitioner=hashing_partitioner) as p:
        p.produce("text", partition_key="key")
    (m,) = fake.messages("topicname")
    assert m.value == b"text" and m.key == b"key"


def test_hashing_partitioner_refuses_none_key(fake):
    t = KafkaClient().topics[b"topicname"]
    p = t.get_producer(partitioner=hashing_partitioner)
    with pytest.raises(ValueError):
        p.produce(b"no key")
    p.stop()


def test_hashing_partitioner_direct_call_matches_sha1():
    class P:
        def __init__(self, i):
            self.id = i

        def __lt__(self, o):
            return self.id < o.id

    parts = [P(3), P(1), P(0), P(2)]
    for key in (b"bravo", b"a", b"\x00" * 10):
        assert hashing_partitioner(parts, key).id == int(hashlib.sha1(key).hexdigest(), 16) % 4
    with pytest.raises(ValueError):
        hashing_partitioner(parts, None)
    rp = RandomPartitioner()
    assert [rp(parts, None).id for _ in range(4)] == [1, 0, 2, 3]
    g = GroupHashingPartitioner(lambda k: 5, group_size=1)
    assert g(parts, b"k").id == 1
    with pytest.raises(ValueError):
        GroupHashingPartitioner(lambda k: 5, group_size=0)


def test_partition_for_python_callable(fake):
    seen = []

    def last_partition(partitions, key):
        seen.append(([p.id for p in partitions], key))
        return partitions[-1]

    t = KafkaClient().topics[b"topicname"]
    with t.get_producer(partitioner=last_partition, delivery_reports=True) as p:
        m = p.produce(b"v", partition_key=b"k")
        assert m.partition_id == 3  # known at produce() time, as in PyKafka
    assert seen == [([0, 1, 2, 3], b"k")]
    req = produced(fake)[0]
    assert req["messages"] == [{"value": b"v", "key": b"k", "partition": 3}] and "partitioner" not in req
    custom = HashingPartitioner(hash_func=lambda k: len(k))
    with t.get_producer(partitioner=custom) as p:
        m = p.produce(b"v", partition_key=b"abcdef")
    assert m.partition_id == 6 % 4 and produced(fake)[1]["messages"][0]["partition"] == 2


def test_default_partitioner_is_daemon_random(fake):
    t = KafkaClient().topics[b"topicname"]
    with t.get_producer(partitioner=random_partitioner) as p:
        p.produce(b"x")
    with t.get_producer() as p:
        p.produce(b"y")
    assert [r["partitioner"] for r in produced(fake)] == ["random", "random"]
    assert all(r["messages"] == [r["messages"][0]] and isinstance(r["messages"][0], bytes) for r in produced(fake))


def test_sync_producer_raises_pykafka_exceptions(fake):
    client = KafkaClient()
    t = client.topics[b"topicname"]
    p = t.get_sync_producer()
    m = p.produce(b"ok")
    assert m.offset == 0 and m.partition_id in range(4)
    fake.topics.pop("topicname")  # the topic vanishes under the producer
    with pytest.raises(PE.UnknownTopicOrPartition) as ei:
        p.produce(b"fails")
    assert ei.value.kafkad_error.name == "UNKNOWN_TOPIC_OR_PART"
    p.stop()


def test_delivery_report_failure(fake):
    t = KafkaClient().topics[b"topicname"]
    fake.auto_deliver = False
    p = t.get_producer(delivery_reports=True, linger_ms=0)
    m = p.produce(b"doomed")
    assert fake.wait_produced(1)
    fake.fail_pending()
    msg, exc = p.get_delivery_report(timeout=5)
    assert msg is m and isinstance(exc, PE.RdKafkaException) and exc.args[0] == -192
    p.stop()


def test_max_request_size(fake):
    t = KafkaClient().topics[b"topicname"]
    with t.get_producer(delivery_reports=True, max_request_size=100) as p:
        m = p.produce(b"x" * 200)
        msg, exc = p.get_delivery_report(block=False)
        assert msg is m and isinstance(exc, PE.MessageSizeTooLarge)
    assert produced(fake) == []
    p = t.get_sync_producer(max_request_size=100)
    with pytest.raises(PE.MessageSizeTooLarge):
        p.produce(b"x" * 200)
    p.stop()


def test_delivery_reports_are_per_thread(fake):
    t = KafkaClient().topics[b"topicname"]
    p = t.get_producer(delivery_reports=True, linger_ms=1)
    mine = p.produce(b"main thread")
    other = {}

    def worker():
        other["msg"] = p.produce(b"worker thread")
        other["report"] = p.get_delivery_report(timeout=5)

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert other["report"][0] is other["msg"]
    msg, exc = p.get_delivery_report(timeout=5)
    assert msg is mine
    with pytest.raises(queue.Empty):
        p.get_delivery_report(block=False)
    p.stop()


def test_stop_flushes_everything(fake):
    t = KafkaClient().topics[b"topicname"]
    p = t.get_producer(linger_ms=60000, min_queued_messages=1000)
    for i in range(50):
        p.produce(b"%d" % i)
    assert produced(fake) == []
    p.stop()
    assert len(fake.messages("topicname")) == 50
    p.stop()  # idempotent
    p.start()
    p.produce(b"after restart")
    p.stop()
    assert len(fake.messages("topicname")) == 51


def test_queue_full_without_blocking(fake):
    fake.auto_deliver = False
    t = KafkaClient().topics[b"topicname"]
    p = t.get_producer(max_queued_messages=3, block_on_queue_full=False, linger_ms=0)
    for i in range(3):
        p.produce(b"x")
    with pytest.raises(PE.ProducerQueueFullError):
        p.produce(b"one too many")
    assert fake.wait_produced(3)
    fake.deliver()
    p.stop()


def test_argument_validation(fake):
    t = KafkaClient().topics[b"topicname"]
    with pytest.raises(ValueError):
        t.get_producer(min_queued_messages=0)
    with pytest.raises(TypeError):
        t.get_producer(linger_ms="5")


def test_producer_reconnects_after_connection_loss(fake):
    t = KafkaClient().topics[b"topicname"]
    p = t.get_producer(delivery_reports=True, linger_ms=0)
    fake.auto_deliver = False
    lost = p.produce(b"outcome unknown")
    assert fake.wait_produced(1)
    fake.kill_connections()
    for _ in range(200):  # the producer notices on its next read
        p._client.poll(0.01)
        if p._client.closed:
            break
    fake.auto_deliver = True
    m = p.produce(b"after the restart")  # reconnects
    msg, exc = p.get_delivery_report(timeout=5)
    assert msg is lost and isinstance(exc, PE.SocketDisconnectedError)
    msg, exc = p.get_delivery_report(timeout=5)
    assert msg is m and exc is None
    p.stop()
