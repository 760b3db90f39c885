"""kafkad's PyKafka layer against the real broker, compared with the real
PyKafka 2.8 and with the seed's producer examples (only the import changed).
Everything is read back with an independent confluent-kafka Consumer."""
from __future__ import annotations

import logging
import queue
import time
from hashlib import sha1

import pykafka
import pykafka.partitioners
import pytest

from kafka_check import check_records, high_watermarks, read_all
from kafkad import Client

pytestmark = pytest.mark.integration

FAST = "message.timeout.ms = 4000\n"


@pytest.fixture
def kd(daemon_factory, monkeypatch):
    d = daemon_factory(extra=FAST)
    # the seed's code names no socket: the layer finds the daemon here
    monkeypatch.setenv("KAFKAD_SOCKET", d.socket)
    return d


def _keys():
    keys = [b"key-%d" % i for i in range(190)]
    keys += [b"", b"\x00", b"\xff" * 40, bytes(range(256)), b"bravo", b"alpha", b"charlie",
             "unicod\u00e9".encode(), b"k" * 1000, b"0"]
    assert len(set(keys)) == len(keys) == 200
    return keys


def _pykafka_rule(key, n):
    return int.from_bytes(sha1(key).digest(), "big") % n


def _real_pykafka_produce(bootstrap, topic, keys):
    """Produce one message per key with the REAL PyKafka and its
    hashing_partitioner; returns {key: partition} from its delivery reports."""
    client = pykafka.KafkaClient(hosts=bootstrap)
    t = client.topics[topic.encode()]
    assert len(t.partitions) == 6
    reported = {}
    p = t.get_producer(partitioner=pykafka.partitioners.hashing_partitioner, delivery_reports=True,
                       linger_ms=10, min_queued_messages=50)
    try:
        for k in keys:
            p.produce(b"pk-" + k, partition_key=k)
        deadline = time.monotonic() + 30
        while len(reported) < len(keys) and time.monotonic() < deadline:
            try:
                msg, exc = p.get_delivery_report(block=True, timeout=1)
            except queue.Empty:
                continue
            assert exc is None, f"real PyKafka could not produce {msg.partition_key!r}: {exc!r}"
            reported[msg.partition_key] = msg.partition_id
    finally:
        p.stop()
    assert len(reported) == len(keys), f"real PyKafka reported {len(reported)} of {len(keys)} messages"
    return reported


def test_hashing_partitioner_matches_real_pykafka(kafka_cluster, kd):
    from kafkad.pykafka import KafkaClient
    from kafkad.pykafka.partitioners import hashing_partitioner

    keys = _keys()
    ta = kafka_cluster.new_topic("pkreal", partitions=6)
    tb = kafka_cluster.new_topic("pklayer", partitions=6)
    tc = kafka_cluster.new_topic("pkwire", partitions=6)

    real_reported = _real_pykafka_produce(kafka_cluster.bootstrap, ta, keys)

    client = KafkaClient(hosts=kafka_cluster.bootstrap)
    topic = client.topics[tb.encode()]
    layer_reported = {}
    with topic.get_producer(partitioner=hashing_partitioner, delivery_reports=True) as producer:
        for k in keys:
            producer.produce(b"pk-" + k, partition_key=k)
        deadline = time.monotonic() + 30
        while len(layer_reported) < len(keys) and time.monotonic() < deadline:
            try:
                msg, exc = producer.get_delivery_report(block=True, timeout=1)
            except queue.Empty:
                continue
            assert exc is None, (msg, exc)
            layer_reported[msg.partition_key] = msg.partition_id
    client.close()
    assert len(layer_reported) == len(keys)

    # the daemon's pykafka_hashing partitioner straight from kafkad.Client
    with Client(kd.socket) as c:
        res = c.produce_batch(tc, [{"value": b"pk-" + k, "key": k} for k in keys],
                              partitioner="pykafka_hashing", ack="wait")
        assert not res.errors, res.errors[:3]

    maps = {}
    for name, t in (("real", ta), ("layer", tb), ("wire", tc)):
        recs = read_all(kafka_cluster.bootstrap, t, expect=len(keys))
        check_records(recs, [{"value": b"pk-" + k, "key": k} for k in keys])
        maps[name] = {r.key: r.partition for r in recs}
    assert len(set(maps["real"].values())) == 6           # the keys spread over every partition
    assert maps["layer"] == maps["real"], {k: (maps["real"][k], maps["layer"][k])
                                           for k in keys if maps["layer"][k] != maps["real"][k]}
    assert maps["wire"] == maps["real"]
    assert layer_reported == real_reported == maps["real"]
    assert maps["real"] == {k: _pykafka_rule(k, 6) for k in keys}


# --- the seed's producer examples, import changed to kafkad.pykafka --------

def test_seed_context_manager_flushes_on_exit(kafka_cluster, kd):
    name = kafka_cluster.new_topic("seedctx", partitions=4)

    from kafkad.pykafka import KafkaClient
    client = KafkaClient("localhost:9092")      # as in the seed: no such cluster -> the daemon's default
    topic = client.topics[name]

    sent = []
    with topic.get_producer() as producer:
        while len(sent) < 500:                  # "while not your_app.needs_stopping"
            msg = b"interesting message %d" % len(sent)
            producer.produce(msg)
            sent.append(msg)
    # PyKafka's defaults keep messages queued for linger_ms=5000 / 70000
    # messages; leaving the block must have flushed them: they are in the log
    # right now, no waiting.
    assert sum(high_watermarks(kafka_cluster.bootstrap, name).values()) == 500
    check_records(read_all(kafka_cluster.bootstrap, name, expect=500), [{"value": m} for m in sent])
    client.close()


def test_seed_sync_producer(kafka_cluster, kd):
    name = kafka_cluster.new_topic("seedsync", partitions=4)

    from kafkad.pykafka import KafkaClient
    client = KafkaClient(kafka_cluster.bootstrap)
    topic = client.topics[name]

    producer = topic.get_producer(sync=True)
    written = []
    for i in range(5):
        msg = producer.produce(b"your message %d" % i)
        # sync: produce() returned, so the message is in the log already
        assert sum(high_watermarks(kafka_cluster.bootstrap, name).values()) == i + 1
        assert msg.partition_id in topic.partitions and msg.offset >= 0
        written.append({"value": b"your message %d" % i, "partition": msg.partition_id, "offset": msg.offset})
    producer.stop()
    check_records(read_all(kafka_cluster.bootstrap, name, expect=5), written)
    client.close()


def test_seed_delivery_reports(kafka_cluster, kd):
    name = kafka_cluster.new_topic("seeddr", partitions=4)

    from kafkad.pykafka import KafkaClient
    client = KafkaClient(kafka_cluster.bootstrap)
    topic = client.topics[name]

    producer = topic.get_producer(delivery_reports=True)
    n = 300
    for i in range(n):
        producer.produce(b"dr message %d" % i, partition_key=b"pk-%d" % (i % 7))
    reports = []
    deadline = time.monotonic() + 30
    while len(reports) < n and time.monotonic() < deadline:
        try:
            msg, exc = producer.get_delivery_report(block=False, timeout=.1)
        except queue.Empty:
            time.sleep(0.05)                     # a real app does other work here
            continue
        reports.append((msg, exc))
    producer.stop()
    assert len(reports) == n
    assert all(exc is None for _m, exc in reports), [e for _m, e in reports if e][:3]
    expected = []
    for msg, _exc in reports:
        assert msg.partition_key == b"pk-%d" % (int(msg.value.split()[-1]) % 7)
        assert msg.partition_id in topic.partitions and msg.offset >= 0
        expected.append({"value": msg.value, "key": msg.partition_key, "partition": msg.partition_id,
                         "offset": msg.offset})
    assert len({m.value for m, _e in reports}) == n
    check_records(read_all(kafka_cluster.bootstrap, name, expect=n), expected)
    # no report left over, and none duplicated
    with pytest.raises(queue.Empty):
        producer.get_delivery_report(block=False, timeout=.1)
    client.close()


def test_seed_hashing_partitioner_bravo(kafka_cluster, kd):
    name = kafka_cluster.new_topic("seedhash", partitions=6)

    from kafkad.pykafka import KafkaClient
    from kafkad.pykafka.partitioners import hashing_partitioner
    client = KafkaClient(kafka_cluster.bootstrap)
    topic = client.topics[name]

    producer = topic.get_producer(partitioner=hashing_partitioner)
    producer.produce(b"your message", partition_key=b"bravo")
    producer.produce(b"another message", partition_key=b"bravo")
    producer.stop()

    want = _pykafka_rule(b"bravo", 6)
    check_records(read_all(kafka_cluster.bootstrap, name, expect=2), [
        {"value": b"your message", "key": b"bravo", "partition": want},
        {"value": b"another message", "key": b"bravo", "partition": want},
    ])
    client.close()


def test_layer_refuses_a_nil_key_under_hashing(kafka_cluster, kd):
    """PyKafka raises for a None key with hashing_partitioner; so does the layer."""
    name = kafka_cluster.new_topic("seednil", partitions=2)
    from kafkad.pykafka import KafkaClient
    from kafkad.pykafka.partitioners import hashing_partitioner
    client = KafkaClient(kafka_cluster.bootstrap)
    producer = client.topics[name].get_producer(partitioner=hashing_partitioner, sync=True)
    with pytest.raises(ValueError):
        producer.produce(b"no key")
    producer.produce(b"with key", partition_key=b"k")
    producer.stop()
    check_records(read_all(kafka_cluster.bootstrap, name, expect=1),
                  [{"value": b"with key", "key": b"k", "partition": _pykafka_rule(b"k", 2)}])
    client.close()


logging.getLogger("pykafka").setLevel(logging.WARNING)
