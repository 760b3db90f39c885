"""kafkad.pykafka's consumers against FakeDaemon (no real daemon): PyKafka's
start positions, held_offsets, reset/commit semantics, consume()/iteration
timeouts, the balanced consumers (the real broker: test_integration_consumer_pykafka.py)."""

import datetime as dt
import os
import socket
import sys
import time
import uuid

import pytest

_STUB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "client-stubs", "python"))
if _STUB not in sys.path:
    sys.path.insert(0, _STUB)

from kafkad.pykafka import KafkaClient, Message  # noqa: E402
from kafkad.pykafka import exceptions as PE  # noqa: E402
from kafkad.pykafka.common import OffsetType  # noqa: E402
from kafkad.pykafka.membershipprotocol import RangeProtocol, RoundRobinProtocol, GroupMembershipProtocol  # noqa: E402
from kafkad.pykafka.utils import deserialize_utf8  # noqa: E402
from kafkad.testing import FakeDaemon  # noqa: E402


@pytest.fixture
def fake(monkeypatch):
    f = FakeDaemon(topics={"topicname": 4, "two": 2}).start()
    monkeypatch.setenv("KAFKAD_SOCKET", f.socket_path)
    yield f
    f.stop()


def fill(fake, topic, n, partitions, start=0):
    for i in range(start, start + n):
        fake.append(topic, i % partitions, b"m%d" % i, key=b"k%d" % i, timestamp=1700000000000 + i,
                    headers=[("h", b"x")] if i == 0 else None)


def opens(fake):
    return [a for (_i, op, a) in fake.requests if op == "consumer_open"]


def test_simple_consumer_defaults_and_message_shape(fake):
    fill(fake, "topicname", 8, 4)
    topic = KafkaClient("localhost:9092").topics[b"topicname"]
    consumer = topic.get_simple_consumer()
    args = opens(fake)[-1]
    # PyKafka's defaults: EARLIEST; without a group it reads from offset 0
    assert args["mode"] == "simple" and args["topic"] == "topicname" and args["auto_offset_reset"] == "earliest"
    assert args["offsets"] == [[p, 0] for p in range(4)] and "group" not in args
    assert consumer.held_offsets == {p: OffsetType.EARLIEST for p in range(4)}
    msg = consumer.consume()
    assert isinstance(msg, Message)
    i = int(msg.value[1:])
    assert (msg.partition_key, msg.partition_id, msg.offset) == (b"k%d" % i, i % 4, i // 4)
    assert msg.partition is topic.partitions[msg.partition_id]
    assert msg.timestamp == 1700000000000 + i and msg.timestamp_dt is not None
    assert msg.headers == ([["h", b"x"]] if i == 0 else None)
    rest = [consumer.consume() for _ in range(7)]
    assert sorted(m.value for m in [msg] + rest) == sorted(b"m%d" % i for i in range(8))
    assert consumer.held_offsets == {p: 1 for p in range(4)}
    assert consumer.consume(block=False) is None
    assert sorted(consumer.partitions) == [0, 1, 2, 3] and consumer.topic is topic
    consumer.stop()
    with pytest.raises(PE.ConsumerStoppedException):
        consumer.consume()


def test_iteration_ends_after_consumer_timeout(fake):
    fill(fake, "topicname", 10, 4)
    topic = KafkaClient().topics[b"topicname"]
    with topic.get_simple_consumer(consumer_timeout_ms=200, deserializer=deserialize_utf8) as consumer:
        seen = list(consumer)
        assert sorted(m.value for m in seen) == sorted("m%d" % i for i in range(10))
        assert all(isinstance(m.partition_key, str) for m in seen)
        t0 = time.monotonic()
        assert consumer.consume() is None  # consumer_timeout_ms passed
        assert time.monotonic() - t0 < 5


def test_explicit_partitions(fake):
    fill(fake, "topicname", 12, 4)
    topic = KafkaClient().topics[b"topicname"]
    parts = topic.partitions
    a = topic.get_simple_consumer(partitions=(parts[0], parts[2]), consumer_timeout_ms=200)
    b = topic.get_simple_consumer(partitions=[1, 3], consumer_timeout_ms=200)
    assert opens(fake)[-2]["partitions"] == [0, 2] and opens(fake)[-1]["partitions"] == [1, 3]
    ga, gb = list(a), list(b)
    assert {m.partition_id for m in ga} == {0, 2} and {m.partition_id for m in gb} == {1, 3}
    assert len(ga) + len(gb) == 12
    assert sorted(a.held_offsets) == [0, 2]
    with pytest.raises(PE.KafkaException):
        a.reset_offsets([(parts[1], 0)])
    with pytest.raises(PE.KafkaException):
        topic.get_simple_consumer(partitions=[9])
    a.stop()
    b.stop()


def test_group_start_commits_reset_positions_like_pykafka(fake):
    fill(fake, "topicname", 20, 4)
    fake.group_offsets[("charlie", "topicname", 1)] = 3
    topic = KafkaClient().topics[b"topicname"]
    consumer = topic.get_simple_consumer(consumer_group=b"charlie", auto_offset_reset=OffsetType.LATEST)
    # partition 1 resumes at its commit; the others are reset to LATEST and
    # that is committed at once (PyKafka's fetch_offsets -> reset_offsets)
    assert consumer.held_offsets == {0: 4, 1: 2, 2: 4, 3: 4}
    assert {p: o for (g, t, p), o in fake.group_offsets.items() if g == "charlie"} == {0: 5, 1: 3, 2: 5, 3: 5}
    got = [consumer.consume() for _ in range(2)]
    assert [(m.partition_id, m.offset) for m in got] == [(1, 3), (1, 4)]
    consumer.commit_offsets()
    assert fake.group_offsets[("charlie", "topicname", 1)] == 5
    fake.group_offsets[("charlie", "topicname", 1)] = 2
    # fetch_offsets (reset_offset_on_fetch) goes back to the committed offsets
    res = dict(consumer.fetch_offsets())
    assert res[1].offset == 2 and res[0].offset == 5
    assert consumer.held_offsets[1] == 1
    assert (consumer.consume().partition_id, consumer.held_offsets[1]) == (1, 2)
    consumer.commit_offsets([(topic.partitions[2], 1)])
    assert fake.group_offsets[("charlie", "topicname", 2)] == 1
    with pytest.raises(PE.KafkaException):
        consumer.commit_offsets([(object(), 1)])
    consumer.stop()


def test_reset_offsets_semantics(fake):
    fill(fake, "two", 20, 2)  # 10 per partition
    topic = KafkaClient().topics[b"two"]
    p0, p1 = topic.partitions[0], topic.partitions[1]
    consumer = topic.get_simple_consumer(consumer_group=b"g", consumer_timeout_ms=300)
    assert consumer.held_offsets == {0: OffsetType.EARLIEST, 1: OffsetType.EARLIEST}
    # an int is the last consumed offset: consuming continues after it
    consumer.reset_offsets([(p0, 3), (p1, OffsetType.LATEST)])
    assert consumer.held_offsets == {0: 3, 1: 9}
    assert fake.group_offsets[("g", "two", 0)] == 4 and fake.group_offsets[("g", "two", 1)] == 10
    assert [(m.partition_id, m.offset) for m in consumer] == [(0, o) for o in range(4, 10)]
    consumer.reset_offsets()  # everything to auto_offset_reset (EARLIEST)
    assert consumer.held_offsets == {0: OffsetType.EARLIEST, 1: OffsetType.EARLIEST}
    assert len(list(consumer)) == 20
    # a datetime (naive: UTC): from the first message stamped at or after it
    # (p0 holds fill's i = 0, 2, 4, ...: i = 6 is its offset 3); none that late: the end
    when = dt.datetime.utcfromtimestamp((1700000000000 + 5) / 1000)
    consumer.reset_offsets([(p0, when), (p1, dt.datetime(2100, 1, 1))])
    assert consumer.held_offsets == {0: 2, 1: 9}
    assert [(m.partition_id, m.offset) for m in consumer] == [(0, o) for o in range(3, 10)]
    with pytest.raises(ValueError):
        consumer.reset_offsets([(p0, "3")])
    with pytest.raises(ValueError):
        consumer.reset_offsets([(p0, -7)])
    consumer.stop()


def test_commit_needs_a_group_and_reset_on_start(fake):
    fill(fake, "two", 6, 2)
    topic = KafkaClient().topics[b"two"]
    c = topic.get_simple_consumer(consumer_timeout_ms=200)
    with pytest.raises(Exception, match="consumer group must be specified"):
        c.commit_offsets()
    c.stop()
    fake.group_offsets[("g", "two", 0)] = 2
    c = topic.get_simple_consumer(consumer_group="g", reset_offset_on_start=True, consumer_timeout_ms=200)
    assert opens(fake)[-1]["reset_offset_on_start"] is True
    assert c.held_offsets == {0: OffsetType.EARLIEST, 1: OffsetType.EARLIEST}
    assert fake.group_offsets[("g", "two", 0)] == 0
    assert len(list(c)) == 6
    c.stop()
    with pytest.raises(PE.UnicodeException):
        topic.get_simple_consumer(consumer_group="gr\u00fcppe")
    with pytest.raises(ValueError):
        topic.get_simple_consumer(auto_offset_reset=5)


def test_auto_commit_stop_and_restart(fake):
    fill(fake, "two", 10, 2)
    topic = KafkaClient().topics[b"two"]
    c = topic.get_simple_consumer(consumer_group=b"g", auto_commit_enable=True, auto_commit_interval_ms=50,
                                  consumer_timeout_ms=200)
    got = [c.consume() for _ in range(4)]
    deadline = time.monotonic() + 5
    want = {p: max(m.offset for m in got if m.partition_id == p) + 1 for p in {m.partition_id for m in got}}
    while {p: o for (_g, _t, p), o in fake.group_offsets.items() if p in want} != want:
        assert time.monotonic() < deadline, fake.group_offsets  # the timer commits what was consumed
        time.sleep(0.01)
    got.append(c.consume())
    c.stop()  # commits on stop
    held = c.held_offsets
    last = {p: (-1 if v == OffsetType.EARLIEST else v) for p, v in held.items()}
    assert {p: o for (_g, _t, p), o in fake.group_offsets.items()} == {p: v + 1 for p, v in last.items()}
    c.start()
    assert c.held_offsets == held
    rest = list(c)
    assert sorted(m.value for m in got + rest) == sorted(b"m%d" % i for i in range(10))
    c.stop()


def test_managed_balanced_consumer(fake):
    topic = KafkaClient().topics[b"topicname"]
    calls = []
    a = topic.get_balanced_consumer(b"bal", managed=True, consumer_timeout_ms=200, membership_protocol=RoundRobinProtocol,
                                    post_rebalance_callback=lambda c, old, new: calls.append((old, new)))
    args = opens(fake)[-1]
    assert args["mode"] == "group" and args["group"] == "bal" and args["assignor"] == "roundrobin"
    assert sorted(a.partitions) == [0, 1, 2, 3] and a.held_offsets == {p: OffsetType.EARLIEST for p in range(4)}
    assert calls and calls[-1][1] == {p: OffsetType.EARLIEST for p in range(4)}
    b = topic.get_balanced_consumer(b"bal", managed=True, consumer_timeout_ms=200)
    assert opens(fake)[-1]["assignor"] == "range"
    assert len(b.partitions) == 2
    assert a.consume() is None  # waiting (200 ms), a learns that it lost two partitions
    assert len(a.partitions) == 2
    fill(fake, "topicname", 40, 4)  # a quiet run: each message once
    ga, gb = list(a), list(b)
    assert len(a.partitions) == 2 and set(a.partitions).isdisjoint(b.partitions)
    assert sorted(m.value for m in ga + gb) == sorted(b"m%d" % i for i in range(40))
    assert set(calls[-1][0]) == {0, 1, 2, 3} and set(calls[-1][1]) == set(a.partitions)
    a.commit_offsets()
    assert {p for (_g, _t, p) in fake.group_offsets} == set(a.partitions)
    a.reset_offsets([(topic.partitions[sorted(a.partitions)[0]], 5)])
    with pytest.raises(PE.KafkaException):
        a.reset_offsets([(topic.partitions[sorted(b.partitions)[0]], 5)])
    a.stop()
    b.stop()
    assert a.held_offsets is None and a.partitions == {}
    with pytest.raises(PE.KafkaException):
        a.commit_offsets()
    with pytest.raises(ValueError):
        topic.get_balanced_consumer(b"x", managed=True,
                                    membership_protocol=GroupMembershipProtocol(b"consumer", b"custom", None, None))


def test_zookeeper_balanced_consumer(fake):
    fill(fake, "topicname", 20, 4)
    topic = KafkaClient().topics[b"topicname"]
    # the seed's call: PyKafka's default get_balanced_consumer is ZooKeeper's
    c = topic.get_balanced_consumer(consumer_group=b"charlie", zookeeper_connect="localhost:2181",
                                    consumer_timeout_ms=200, auto_commit_enable=True)
    args = opens(fake)[-1]
    assert args["mode"] == "zookeeper" and args["group"] == "charlie" and args["topic"] == "topicname"
    assert args["zookeeper_connect"] == "localhost:2181" and args["assignor"] == "range"
    assert args["zookeeper_connection_timeout_ms"] == 6000 and args["rebalance_backoff_ms"] == 2000
    assert "zookeeper_session_timeout_ms" not in args and args["auto_offset_reset"] == "earliest"
    host, _, uid = c.member_id.rpartition(":")
    assert host == socket.gethostname() and str(uuid.UUID(uid)) == uid
    assert c.consumer_id == c._consumer_id == c.member_id.encode()
    assert sorted(c.partitions) == [0, 1, 2, 3] and c.held_offsets == {p: OffsetType.EARLIEST for p in range(4)}
    got = list(c)
    assert sorted(m.value for m in got) == sorted(b"m%d" % i for i in range(20))
    c.commit_offsets()
    assert {p: o for (g, _t, p), o in fake.group_offsets.items() if g == "charlie"} == {0: 5, 1: 5, 2: 5, 3: 5}
    # a second consumer of the same group and topic attaches to the daemon's one member
    d = topic.get_balanced_consumer(b"charlie", zookeeper_connect="localhost:2181", consumer_timeout_ms=200)
    assert d.member_id == c.member_id and c.consume() is None
    assert sorted(list(c.partitions) + list(d.partitions)) == [0, 1, 2, 3] and len(d.partitions) == 2
    d.stop()
    c.stop()
    assert c.partitions == {} and c.held_offsets is None


def test_zookeeper_connect_sources_and_options(fake):
    import pykafka.membershipprotocol as real_mp

    def zk_args(**kw):
        c = topic.get_balanced_consumer(b"g", consumer_timeout_ms=0, **kw)
        c.stop()
        return opens(fake)[-1]

    topic = KafkaClient().topics[b"two"]
    assert zk_args()["zookeeper_connect"] == "127.0.0.1:2181"  # PyKafka's default
    assert zk_args(zookeeper_hosts="zh:1")["zookeeper_connect"] == "zh:1"
    assert zk_args(zookeeper_hosts="zh:1", zookeeper_connect="zc:2/chroot")["zookeeper_connect"] == "zc:2/chroot"
    topic = KafkaClient("localhost:9092", zookeeper_hosts="client-zk:2181").topics[b"two"]
    assert zk_args()["zookeeper_connect"] == "client-zk:2181"
    assert zk_args(zookeeper_hosts="zh:1")["zookeeper_connect"] == "zh:1"
    a = zk_args(membership_protocol=real_mp.RoundRobinProtocol, rebalance_backoff_ms=500,
                zookeeper_connection_timeout_ms=1500, zookeeper_session_timeout_ms=4000)
    assert a["assignor"] == "roundrobin" and a["rebalance_backoff_ms"] == 500
    assert a["zookeeper_connection_timeout_ms"] == 1500 and a["zookeeper_session_timeout_ms"] == 4000
    assert zk_args(membership_protocol=real_mp.RangeProtocol)["assignor"] == "range"
    assert "zookeeper_owners_layout" not in a  # the daemon's default (PyKafka on Python 3)
    assert zk_args(zookeeper_owners_layout="topic")["zookeeper_owners_layout"] == "topic"
    assert zk_args(membership_protocol=RoundRobinProtocol)["assignor"] == "roundrobin"
    n = len(opens(fake))
    for bad in (GroupMembershipProtocol(b"consumer", b"custom", None, None),
                GroupMembershipProtocol(b"consumer", b"cooperative-sticky", None, None)):
        with pytest.raises(ValueError):
            topic.get_balanced_consumer(b"g", membership_protocol=bad)
    assert len(opens(fake)) == n  # refused before asking the daemon
    with pytest.raises(ValueError):
        topic.get_balanced_consumer(b"", zookeeper_connect="zk:1")

    # a KazooClient lends its hosts (and session timeout): the daemon has its own session
    from kazoo.client import KazooClient

    kz = KazooClient("zk1:2181,[::1]:2182/kafka", timeout=7.5)
    a = zk_args(zookeeper=kz, zookeeper_connect="ignored:1")
    assert a["zookeeper_connect"] == "zk1:2181,[::1]:2182/kafka" and a["zookeeper_session_timeout_ms"] == 7500

    class Opaque:
        pass

    with pytest.raises(ValueError, match="zookeeper_connect"):
        topic.get_balanced_consumer(b"g", zookeeper=Opaque())


def test_zookeeper_balanced_consumer_errors(fake):
    topic = KafkaClient().topics[b"two"]
    fake.zookeeper_unreachable.add("127.0.0.1:1")
    with pytest.raises(PE.RequestTimedOut) as ei:
        topic.get_balanced_consumer(b"g", zookeeper_connect="127.0.0.1:1", zookeeper_connection_timeout_ms=100)
    assert ei.value.kafkad_error.code == 7
    c = topic.get_balanced_consumer(b"g", zookeeper_connect="127.0.0.1:2", consumer_timeout_ms=0)
    assert sorted(c.partitions) == [0, 1]
    c.stop()


def test_native_client_zookeeper_mode(fake):
    import kafkad
    from kafkad import errors

    with kafkad.Client(fake.socket_path) as cl:
        with pytest.raises(errors.InvalidArgument):
            cl.consumer("two", mode="zookeeper", group="g")  # no zookeeper_connect
        with pytest.raises(errors.InvalidArgument):
            cl.consumer(topics=["two", "topicname"], mode="zookeeper", group="g", zookeeper_connect="zk:1")
        with pytest.raises(errors.InvalidArgument):
            cl.consumer("two", mode="zookeeper", group="g", zookeeper_connect="zk:1", assignor="cooperative-sticky")
        with pytest.raises(TypeError):
            cl.consumer("two", mode="zookeeper", group="g", zookeeper_connect="zk:1", rebalance_backoff_ms="1")
        con = cl.consumer("two", mode="zookeeper", group="g", zookeeper_connect=b"zk:1/x", assignor="roundrobin",
                          zookeeper_session_timeout_ms=4000, zookeeper_connection_timeout_ms=1000,
                          rebalance_backoff_ms=100)
        a = opens(fake)[-1]
        assert (a["zookeeper_connect"], a["zookeeper_session_timeout_ms"], a["zookeeper_connection_timeout_ms"],
                a["rebalance_backoff_ms"], a["assignor"]) == ("zk:1/x", 4000, 1000, 100, "roundrobin")
        assert con.member_id and con.member_id.startswith(socket.gethostname() + ":")
        con.close()
        g = cl.consumer("two", mode="group", group="g")
        assert g.member_id is None and "zookeeper_connect" not in opens(fake)[-1]
        g.close()


def test_membership_protocols_decide_like_pykafka():
    class P:
        def __init__(self, i):
            self.id = i

    parts = {i: P(i) for i in range(5)}
    members = [b"b", b"a"]
    assert {p.id for p in RangeProtocol.decide_partitions(members, parts, b"a")} == {0, 1, 2}
    assert {p.id for p in RangeProtocol.decide_partitions(members, parts, b"b")} == {3, 4}
    assert {p.id for p in RoundRobinProtocol.decide_partitions(members, parts, b"a")} == {0, 2, 4}
    assert {p.id for p in RoundRobinProtocol.decide_partitions(members, parts, b"b")} == {1, 3}


def test_membership_protocols_match_real_pykafka_exactly():
    """Same members and partitions -> the same sets as PyKafka 2.8's own
    functions, including its string sort ("<topic>-<leader>-<id>": 10 < 2)."""
    import random

    import pykafka.membershipprotocol as real

    class T:
        name = b"topic"

    class L:
        def __init__(self, i):
            self.id = i

    class P:
        def __init__(self, i, leader):
            self.id, self.topic, self.leader = i, T, L(leader)

    rnd = random.Random(5)
    for _ in range(300):
        n = rnd.randint(1, 25)
        parts = {i: P(i, rnd.choice([0, 1, 2, 10])) for i in range(n)}
        members = [("%s:%s" % (rnd.choice(["h1", "h2", "host-10"]), rnd.random())).encode()
                   for _ in range(rnd.randint(1, 8))]
        for ours, theirs in ((RangeProtocol, real.RangeProtocol), (RoundRobinProtocol, real.RoundRobinProtocol)):
            for m in members:
                assert ours.decide_partitions(members, parts, m) == theirs.decide_partitions(members, parts, m)
    parts = {i: P(i, 0) for i in range(12)}
    assert {p.id for p in RangeProtocol.decide_partitions([b"a", b"b"], parts, b"a")} == {0, 1, 10, 11, 2, 3}


def test_offset_lookups(fake):
    fill(fake, "topicname", 10, 4)
    topic = KafkaClient().topics[b"topicname"]
    assert {k: v.offset for k, v in topic.latest_available_offsets().items()} == {0: [3], 1: [3], 2: [2], 3: [2]}
    assert {k: v.offset for k, v in topic.earliest_available_offsets().items()} == {p: [0] for p in range(4)}
    p = topic.partitions[0]
    assert p.latest_available_offset() == 3 and p.earliest_available_offset() == 0
    assert p.fetch_offset_limit(OffsetType.LATEST) == [3]
    # by time: the first message stamped at or after it (p0 holds fill's i = 0, 4, 8)
    assert p.fetch_offset_limit(1700000000000 + 4) == [1]
    assert p.fetch_offset_limit(dt.datetime.utcfromtimestamp(1700000000.001)) == [1]
    assert p.fetch_offset_limit(dt.datetime(2024, 1, 1)) == []   # every message is older
    with pytest.raises(ValueError):
        p.fetch_offset_limit(-3)
    assert topic.fetch_offset_limits(OffsetType.EARLIEST)[1].err == 0


def test_stop_from_another_thread_ends_a_blocking_consume(fake):
    import threading

    topic = KafkaClient().topics[b"two"]
    c = topic.get_simple_consumer()  # consumer_timeout_ms=-1: blocks forever
    raised = []

    def run():
        try:
            c.consume()
        except PE.ConsumerStoppedException as e:
            raised.append(e)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.2)
    c.stop()
    t.join(10)
    assert not t.is_alive() and raised


def test_more_balanced_consumers_than_partitions(fake):
    topic = KafkaClient().topics[b"two"]
    cons = [topic.get_balanced_consumer(b"many", managed=True, consumer_timeout_ms=100) for _ in range(3)]
    for c in cons:
        c.consume()  # learn about lease changes
    sizes = sorted(len(c.partitions) for c in cons)
    assert sizes == [0, 1, 1]
    for c in cons:
        c.stop()


def test_dropped_consumer_stops_and_commits(fake):
    import gc as _gc

    fill(fake, "two", 4, 2)
    topic = KafkaClient().topics[b"two"]
    c = topic.get_simple_consumer(consumer_group=b"drop", auto_commit_enable=True)
    got = [c.consume() for _ in range(3)]
    del c
    _gc.collect()
    want = {p: max(m.offset for m in got if m.partition_id == p) + 1 for p in {m.partition_id for m in got}}
    assert {p: o for (g, _t, p), o in fake.group_offsets.items() if g == "drop" and p in want} == want
    b = topic.get_balanced_consumer(b"bz", managed=True, consumer_timeout_ms=0)
    b.consume()  # consumer_timeout_ms=0: returns at once (PyKafka's balanced consumer)
    b.stop()
