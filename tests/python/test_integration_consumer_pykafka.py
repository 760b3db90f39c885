"""kafkad's PyKafka consumers against the real broker: the seed's consumer
examples with only the import changed (the ZooKeeper-balanced one is in
test_integration_zookeeper.py), the offset semantics compared
step by step with the real PyKafka 2.8, and the Kafka-coordinated balanced
consumer."""
from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, List, Tuple

import pykafka
import pykafka.common
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_integration_consumer import GROUP_PROPS, WAIT, produce  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def kd(daemon_factory, monkeypatch):
    d = daemon_factory(extra=GROUP_PROPS)
    # the seed's code names no socket: the layer finds the daemon here
    monkeypatch.setenv("KAFKAD_SOCKET", d.socket)
    return d


# --- the seed's consumer examples, import changed to kafkad.pykafka ----------


def test_seed_simple_consumer_consume(kafka_cluster, kd, capsys):
    name = kafka_cluster.new_topic("seedc", partitions=4)
    sent = produce(kd.socket, name, 40, 4)

    from kafkad.pykafka import KafkaClient
    client = KafkaClient("localhost:9092")
    topic = client.topics[name]
    consumer = topic.get_simple_consumer()
    msg = consumer.consume()
    print("%s [key=%s, id=%s, offset=%s]" %
          (msg.value, msg.partition_key, msg.partition_id, msg.offset))

    line = capsys.readouterr().out.strip()
    i = [v for _p, v in sent].index(msg.value)
    assert line == "%s [key=%s, id=%s, offset=%s]" % (
        msg.value, f"k{i}".encode() if i % 3 == 0 else None, sent[i][0], i // 4)
    assert msg.offset == 0  # PyKafka's default: from the earliest offset
    consumer.stop()
    client.close()


def test_seed_iteration_stops_after_consumer_timeout(kafka_cluster, kd):
    name = kafka_cluster.new_topic("seedit", partitions=4)
    sent = produce(kd.socket, name, 100, 4)

    from kafkad.pykafka import KafkaClient
    client = KafkaClient("localhost:9092")
    topic = client.topics[name]
    seen = []
    consumer = topic.get_simple_consumer(consumer_timeout_ms=5000)
    for msg in consumer:
        print(
          "%s [key=%s, id=%s, offset=%s]" %
          (msg.value, msg.partition_key, msg.partition_id, msg.offset))
        seen.append(msg)

    # the loop ended by itself once nothing new came for consumer_timeout_ms
    assert sorted(m.value for m in seen) == sorted(v for _p, v in sent)
    for p in range(4):
        assert [m.offset for m in seen if m.partition_id == p] == list(range(25))
    assert all(m.partition is topic.partitions[m.partition_id] for m in seen)
    consumer.stop()


def test_seed_consumer_group_auto_commit_resumes(kafka_cluster, kd):
    name = kafka_cluster.new_topic("seedgrp", partitions=4)
    sent = produce(kd.socket, name, 80, 4)

    from kafkad.pykafka import KafkaClient
    client = KafkaClient("localhost:9092")
    topic = client.topics[name]
    consumer = topic.get_simple_consumer(consumer_group=b"charlie",
                                         auto_commit_enable=True)
    first = [consumer.consume() for _ in range(30)]
    held = consumer.held_offsets
    consumer.stop()  # commits (auto_commit_enable) what was consumed

    # "upon starting, resume at the last stored offsets"
    consumer = topic.get_simple_consumer(consumer_group=b"charlie",
                                         auto_commit_enable=True, consumer_timeout_ms=1000)
    assert consumer.held_offsets == held
    rest = list(consumer)
    assert sorted(m.value for m in first + rest) == sorted(v for _p, v in sent)
    consumer.stop()

    # "Alternatively, don't set auto_commit_enable and call consumer.commit_offsets()"
    produce(kd.socket, name, 8, 4, start=80)
    consumer = topic.get_simple_consumer(consumer_group=b"charlie", consumer_timeout_ms=1000)
    more = list(consumer)
    assert sorted(m.value for m in more) == sorted(b"v-%d" % i for i in range(80, 88))
    consumer.commit_offsets()
    consumer.stop()
    consumer = topic.get_simple_consumer(consumer_group=b"charlie", consumer_timeout_ms=500)
    assert consumer.consume() is None
    assert consumer.held_offsets == {p: 21 for p in range(4)}
    consumer.stop()


def test_seed_explicit_partitions_split(kafka_cluster, kd):
    name = kafka_cluster.new_topic("seedparts", partitions=4)
    sent = produce(kd.socket, name, 60, 4)

    from kafkad.pykafka import KafkaClient
    client = KafkaClient("localhost:9092")
    topic = client.topics[name]
    parts = topic.partitions
    consumer_a = topic.get_simple_consumer(
        partitions=(parts[0], parts[2]))
    consumer_b = topic.get_simple_consumer(
        partitions=(parts[1], parts[3]))

    a = [consumer_a.consume() for _ in range(30)]
    b = [consumer_b.consume() for _ in range(30)]
    assert {m.partition_id for m in a} == {0, 2} and {m.partition_id for m in b} == {1, 3}
    assert sorted(m.value for m in a + b) == sorted(v for _p, v in sent)
    assert consumer_a.consume(block=False) is None
    assert sorted(consumer_a.partitions) == [0, 2] and sorted(consumer_b.partitions) == [1, 3]
    consumer_a.stop()
    consumer_b.stop()


# the seed's ZooKeeper-balanced consumer example (group "charlie" on
# zookeeper_connect="localhost:2181") runs against the ZooKeeper-mode
# cluster: test_integration_zookeeper.py::test_seed_balanced_consumer


# --- offset semantics, step by step against the real PyKafka ------------------


def _scenario(mod: Any, common: Any, bootstrap: str, name: str, group: bytes) -> List[Tuple[str, Any]]:
    """The same calls on PyKafka or kafkad.pykafka; returns what they saw."""
    OffsetType = common.OffsetType
    client = mod.KafkaClient(hosts=bootstrap)
    topic = client.topics[name.encode()]
    p0, p1 = topic.partitions[0], topic.partitions[1]
    out: List[Tuple[str, Any]] = []
    out.append(("watermarks", (p0.earliest_available_offset(), p0.latest_available_offset(),
                               {k: v.offset for k, v in topic.latest_available_offsets().items()})))
    c = topic.get_simple_consumer(consumer_group=group, auto_offset_reset=OffsetType.LATEST, consumer_timeout_ms=3000)
    out.append(("start: no commit, LATEST", c.held_offsets))
    c.reset_offsets([(p0, 3), (p1, OffsetType.LATEST)])
    out.append(("after reset_offsets", c.held_offsets))
    out.append(("consumed", [(m.partition_id, m.offset, m.value) for m in (c.consume(), c.consume())]))
    out.append(("held", c.held_offsets))
    c.commit_offsets()
    c.stop()
    c = topic.get_simple_consumer(consumer_group=group, consumer_timeout_ms=3000)
    out.append(("resumed", c.held_offsets))
    m = c.consume()
    out.append(("next", (m.partition_id, m.offset)))
    c.commit_offsets([(p1, 4)])
    c.stop()
    c = topic.get_simple_consumer(consumer_group=group, consumer_timeout_ms=3000)
    out.append(("after explicit commit", c.held_offsets))
    c.reset_offsets([(p0, OffsetType.EARLIEST), (p1, 9)])
    out.append(("after reset to earliest / 9", c.held_offsets))
    got = sorted((m.partition_id, m.offset) for m in (c.consume(), c.consume()))
    out.append(("consumed after reset", got))
    c.stop()
    c = topic.get_simple_consumer(consumer_group=group, reset_offset_on_start=True,
                                  auto_offset_reset=OffsetType.LATEST, consumer_timeout_ms=500)
    out.append(("reset_offset_on_start", c.held_offsets))
    out.append(("nothing after latest", c.consume()))
    c.stop()
    c = topic.get_simple_consumer(consumer_group=group, consumer_timeout_ms=500)
    out.append(("reset_offset_on_start committed", c.held_offsets))
    c.stop()
    c = topic.get_simple_consumer(auto_offset_reset=OffsetType.LATEST, consumer_timeout_ms=3000)
    out.append(("no group: held", c.held_offsets))
    out.append(("no group, LATEST: still from offset 0", c.consume().offset))
    c.stop()
    return out


def test_offsets_by_time_reset_and_fetch_offset_limit(kafka_cluster, kd):
    """reset_offsets to a datetime and fetch_offset_limit(timestamp) as
    PyKafka documents them for ListOffsets v1: the first record at or after
    the time. (Not compared with the real PyKafka 2.8: against Kafka 3.9 its
    fetch_offset_limit(ts) returns None and a reset to any datetime reads
    from offset 0.) A time after every record: the end."""
    import datetime as dt

    from kafkad import Client
    from kafkad.pykafka import KafkaClient

    name = kafka_cluster.new_topic("pktime", partitions=2)
    base = int(time.time() * 1000) - 600_000
    with Client(kd.socket) as c:
        res = c.produce_batch(name, [{"value": b"t%d-%d" % (p, i), "partition": p, "timestamp": base + 1000 * i}
                                     for i in range(10) for p in range(2)], ack="wait")
        assert not res.errors, res
    client = KafkaClient("localhost:9092")
    topic = client.topics[name]
    part0 = topic.partitions[0]
    assert part0.fetch_offset_limit(base + 3000) == [3]
    assert part0.fetch_offset_limit(base + 3001) == [4]
    assert part0.fetch_offset_limit(base + 99_000) == []
    assert part0.fetch_offset_limit(pykafka.common.OffsetType.EARLIEST) == [0]
    assert part0.fetch_offset_limit(pykafka.common.OffsetType.LATEST) == [10]
    with pytest.raises(ValueError):
        part0.fetch_offset_limit("soon")
    consumer = topic.get_simple_consumer(consumer_timeout_ms=3000)
    between = dt.datetime.utcfromtimestamp((base + 6500) / 1000)        # naive UTC, as PyKafka takes it
    exact = dt.datetime.fromtimestamp((base + 4000) / 1000, dt.timezone.utc)
    consumer.reset_offsets([(topic.partitions[0], between), (topic.partitions[1], exact)])
    got = sorted((m.partition_id, m.offset) for m in consumer)
    assert got == [(0, o) for o in range(7, 10)] + [(1, o) for o in range(4, 10)], got
    consumer.reset_offsets([(topic.partitions[0], dt.datetime.utcfromtimestamp((base + 99_000) / 1000))])
    assert consumer.consume(block=False) is None
    with Client(kd.socket) as c:
        c.produce(name, b"later", partition=0, ack="wait")
    later = consumer.consume()
    assert later is not None and (later.partition_id, later.offset, later.value) == (0, 10, b"later")
    consumer.stop()
    client.close()


def test_offset_semantics_match_real_pykafka(kafka_cluster, kd):
    name = kafka_cluster.new_topic("pksem", partitions=2)
    produce(kd.socket, name, 20, 2)  # 10 per partition, values v-0..v-19
    group = ("sem-" + uuid.uuid4().hex[:8]).encode()
    import kafkad.pykafka
    import kafkad.pykafka.common

    real = _scenario(pykafka, pykafka.common, kafka_cluster.bootstrap, name, group + b"-real")
    ours = _scenario(kafkad.pykafka, kafkad.pykafka.common, kafka_cluster.bootstrap, name, group + b"-kafkad")
    for (what, r), (_w, o) in zip(real, ours):
        if isinstance(r, dict):
            r, o = sorted(r.items()), sorted(o.items())
        assert o == r, f"{what}: real PyKafka {r!r}, kafkad {o!r}"
    assert len(real) == len(ours)
    assert dict(real)["consumed"] == [(0, 4, b"v-8"), (0, 5, b"v-10")]


# --- the Kafka-coordinated balanced consumer ----------------------------------


def test_managed_balanced_consumers_split_and_resume(kafka_cluster, kd):
    from kafkad.pykafka import KafkaClient
    from kafkad.pykafka.membershipprotocol import RoundRobinProtocol

    name = kafka_cluster.new_topic("pkbal", partitions=4)
    client = KafkaClient("localhost:9092")
    topic = client.topics[name]
    rebalances: List[Any] = []

    def cb(consumer: Any, old: Any, new: Any) -> None:
        rebalances.append((consumer, dict(old), dict(new)))

    a = topic.get_balanced_consumer(consumer_group=b"bal", managed=True, consumer_timeout_ms=1000,
                                    membership_protocol=RoundRobinProtocol, auto_commit_enable=True,
                                    auto_commit_interval_ms=200, post_rebalance_callback=cb)
    assert sorted(a.partitions) == [0, 1, 2, 3]
    b = topic.get_balanced_consumer(consumer_group=b"bal", managed=True, consumer_timeout_ms=1000,
                                    membership_protocol=RoundRobinProtocol, auto_commit_enable=True,
                                    auto_commit_interval_ms=200)
    assert len(b.partitions) == 2
    sent = produce(kd.socket, name, 200, 4)
    got_a: List[Any] = []
    got_b: List[Any] = []
    deadline = time.monotonic() + WAIT
    while len(got_a) + len(got_b) < 200 and time.monotonic() < deadline:
        for c, got in ((a, got_a), (b, got_b)):
            m = c.consume(block=False)
            while m is not None:
                got.append(m)
                m = c.consume(block=False)
        time.sleep(0.01)
    # a learnt about its lost leases with its first consume; b held its two from the start
    assert set(a.partitions).isdisjoint(b.partitions) and set(a.partitions) | set(b.partitions) == {0, 1, 2, 3}
    assert sorted(m.value for m in got_a + got_b) == sorted(v for _p, v in sent), "each message once"
    assert {m.partition_id for m in got_a} == set(a.partitions)
    assert any(set(old) == {0, 1, 2, 3} and len(new) == 2 for _c, old, new in rebalances)
    assert b.held_offsets == {p: 49 for p in b.partitions}
    a.stop()
    b.stop()  # both commit on stop (auto_commit_enable)
    c = topic.get_balanced_consumer(consumer_group=b"bal", managed=True, consumer_timeout_ms=500)
    assert c.held_offsets == {p: 49 for p in range(4)}
    assert c.consume() is None
    c.stop()
    from kafkad.pykafka.exceptions import ConsumerStoppedException
    with pytest.raises(ConsumerStoppedException):
        c.consume()
