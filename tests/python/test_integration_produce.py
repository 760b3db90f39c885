"""Producing through kafkad to the real broker; everything is read back with
an independent confluent-kafka Consumer (assign() from OFFSET_BEGINNING) and
checked for value, key, headers, timestamp and partition."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Producer as CKProducer
from kafka.partitioner.default import DefaultPartitioner

from kafka_check import by_value, check_records, read_all
from kafkad import Client, KafkaError, RecordMetadata

pytestmark = pytest.mark.integration

FAST = "message.timeout.ms = 4000\n"


@pytest.fixture
def kd(daemon_factory):
    return daemon_factory(extra=FAST)


def test_sync_produce_returns_partition_and_offset_of_the_log(kafka_cluster, kd):
    topic = kafka_cluster.new_topic("sync", partitions=4)
    t0 = int(time.time() * 1000)
    sent = []
    with Client(kd.socket) as c:
        for i in range(24):
            key = None if i % 3 == 0 else b"key-%d" % (i % 5)
            md = c.produce(topic, b"sync-%d" % i, key, ack="wait")
            assert isinstance(md, RecordMetadata)
            assert 0 <= md.partition < 4 and md.offset >= 0
            sent.append({"value": b"sync-%d" % i, "key": key, "partition": md.partition, "offset": md.offset})
    t1 = int(time.time() * 1000)
    recs = read_all(kafka_cluster.bootstrap, topic, expect=len(sent))
    got = check_records(recs, sent)
    for r in got.values():
        # no timestamp given: the daemon (librdkafka) stamps the produce time
        assert r.timestamp_type == TIMESTAMP_CREATE_TIME
        assert t0 - 1000 <= r.timestamp <= t1 + 1000, (r, t0, t1)
    # the same key always landed in the same partition (default partitioner is keyed)
    parts = {}
    for e in sent:
        if e["key"] is not None:
            assert parts.setdefault(e["key"], e["partition"]) == e["partition"], e


def test_explicit_partition(kafka_cluster, kd):
    topic = kafka_cluster.new_topic("explicit", partitions=4)
    sent = []
    with Client(kd.socket) as c:
        for i in range(16):
            p = i % 4
            # same key everywhere: the explicit partition must win over the partitioner
            md = c.produce(topic, b"explicit-%d" % i, b"samekey", partition=p, ack="wait")
            assert md.partition == p
            sent.append({"value": b"explicit-%d" % i, "key": b"samekey", "partition": p, "offset": md.offset})
        # batch form, wait mode: per-message partitions
        res = c.produce_batch(
            topic, [{"value": b"explicit-b%d" % i, "partition": 3 - (i % 4)} for i in range(8)], ack="wait")
        assert res.count == 8 and not res.errors, res
        for i, r in enumerate(res.results):
            assert r.partition == 3 - (i % 4)
            sent.append({"value": b"explicit-b%d" % i, "partition": r.partition, "offset": r.offset})
        # report mode: the report names the explicit partition
        seq = c.produce(topic, b"explicit-r", partition=2)
        assert c.flush(10) == 0
        reps = [r for r in c.poll_reports() if r.seq == seq]
        assert len(reps) == 1 and reps[0].ok and reps[0].partition == 2, reps
        sent.append({"value": b"explicit-r", "partition": 2, "offset": reps[0].offset})
    check_records(read_all(kafka_cluster.bootstrap, topic, expect=len(sent)), sent)


def test_unknown_partition_is_a_per_message_outcome(kafka_cluster, kd):
    topic = kafka_cluster.new_topic("badpart", partitions=2)
    with Client(kd.socket) as c:
        res = c.produce_batch(topic, [{"value": b"ok-0", "partition": 0},
                                      {"value": b"bad", "partition": 7},
                                      {"value": b"ok-1", "partition": 1}], ack="wait")
        assert res.count == 3
        assert isinstance(res.results[0], RecordMetadata) and res.results[0].partition == 0
        assert isinstance(res.results[2], RecordMetadata) and res.results[2].partition == 1
        err = res.results[1]
        assert isinstance(err, KafkaError), res.results
        assert err.name == "_UNKNOWN_PARTITION", err
    check_records(read_all(kafka_cluster.bootstrap, topic, expect=2),
                  [{"value": b"ok-0", "partition": 0}, {"value": b"ok-1", "partition": 1}])


HEADERS = [
    ("trace-id", b"abc123"),
    ("none-value", None),
    ("empty-value", b""),
    ("dup", b"first"),
    ("dup", b"second"),
    ("binary", bytes(range(256))),
    ("utf8-\u00e9\u6f22", "text value \u00e9".encode()),
]


@pytest.mark.parametrize("ack", ["wait", "report", "none"])
def test_headers_and_timestamp_round_trip(kafka_cluster, kd, ack):
    topic = kafka_cluster.new_topic("hdr-" + ack, partitions=3)
    ts = 1600000000123
    sent = []
    with Client(kd.socket) as c:
        for i in range(6):
            e = {"value": b"hdr-%d" % i, "key": b"hk-%d" % i, "headers": HEADERS[: i + 2], "timestamp": ts + i}
            r = c.produce(topic, e["value"], e["key"], headers=e["headers"], timestamp=e["timestamp"], ack=ack)
            if ack == "wait":
                e["partition"], e["offset"] = r.partition, r.offset
            sent.append(e)
        # batch form, dict messages, with an explicit partition as well
        batch = [{"value": b"hdr-b%d" % i, "key": None, "headers": HEADERS, "timestamp": ts - i, "partition": 1}
                 for i in range(4)]
        res = c.produce_batch(topic, batch, ack=ack)
        assert res.count == 4
        sent += batch
        assert c.flush(10) == 0
        if ack == "report":
            reps = c.poll_reports()
            assert len(reps) == 10 and all(r.ok for r in reps), reps
    got = check_records(read_all(kafka_cluster.bootstrap, topic, expect=len(sent)), sent)
    for r in got.values():
        assert r.timestamp_type == TIMESTAMP_CREATE_TIME


def test_test_broker_keeps_records_with_old_timestamps(kafka_cluster):
    """The tests here and in the Go suite produce records stamped years ago;
    with Kafka's default 7-day time retention the broker deletes them at its
    next retention check, which once fell between a Go test's produce and its
    consume (it then read nothing). The harness turns time retention off."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    topic = kafka_cluster.new_topic("retention", partitions=1)
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(timeout=30)
    assert configs["retention.ms"].value == "-1", configs["retention.ms"]


def test_null_and_empty_key_and_value_are_distinct(kafka_cluster, kd):
    topic = kafka_cluster.new_topic("nulls", partitions=1)
    cases = [(None, None), (b"", None), (None, b""), (b"", b""), (b"v", None), (None, b"k")]
    with Client(kd.socket) as c:
        res = c.produce_batch(topic, [{"value": v, "key": k} for v, k in cases], ack="wait")
        assert not res.errors, res
        offsets = [r.offset for r in res.results]
    recs = read_all(kafka_cluster.bootstrap, topic, expect=len(cases))
    by_off = {r.offset: r for r in recs}
    for (v, k), off in zip(cases, offsets):
        assert by_off[off].value == v and by_off[off].key == k, (v, k, by_off[off])


# batch_messages=1000 splits each 2500-message produce_batch over several
# requests; 2500 sends each as one request
@pytest.mark.parametrize("batch_messages", [1000, 2500])
def test_async_20000_every_seq_gets_one_report_matching_the_log(kafka_cluster, kd, batch_messages):
    topic = kafka_cluster.new_topic("async", partitions=4)
    n, per = 20000, 2500
    seq_value = {}
    with Client(kd.socket, batch_messages=batch_messages) as c:
        for b in range(0, n, per):
            msgs = [{"value": b"a-%06d" % i, "key": b"k%d" % (i % 97)} for i in range(b, b + per)]
            res = c.produce_batch(topic, msgs)
            assert res.count == per
            for j in range(per):
                seq_value[res.seq + j] = b"a-%06d" % (b + j)
        # singles too, through produce()
        for i in range(n, n + 50):
            seq_value[c.produce(topic, b"a-%06d" % i)] = b"a-%06d" % i
        assert len(seq_value) == n + 50
        reports = []
        while len(reports) < len(seq_value):
            got = c.poll_reports(timeout=5.0)
            if not got:
                break
            reports += got
        assert c.flush(10) == 0
        reports += c.poll_reports()
        assert c.in_flight == 0
    seqs = [r.seq for r in reports]
    assert len(seqs) == len(set(seqs)), "a seq got two reports"
    assert set(seqs) == set(seq_value), (
        f"{len(set(seq_value) - set(seqs))} seqs without report, {len(set(seqs) - set(seq_value))} unknown")
    bad = [r for r in reports if not r.ok]
    assert not bad, bad[:5]
    recs = read_all(kafka_cluster.bootstrap, topic, expect=len(seq_value))
    got = by_value(recs)
    for r in reports:
        rec = got[seq_value[r.seq]]
        assert (rec.partition, rec.offset) == (r.partition, r.offset), (r, rec)
    # keyed messages: one partition per key, order kept within a key
    last = {}
    for r in recs:
        if r.key is not None:
            assert last.setdefault(r.key, (r.partition, -1))[0] == r.partition
            i = int(r.value[2:])
            assert i > last[r.key][1], f"order broken for key {r.key!r}"
            last[r.key] = (r.partition, i)


def test_ack_none_arrives_and_counts_in_stats(kafka_cluster, kd):
    topic = kafka_cluster.new_topic("none", partitions=2)
    with Client(kd.socket) as c:
        before = c.stats()["daemon"]
        res = c.produce_batch(topic, [b"none-%d" % i for i in range(300)], ack="none")
        assert res.count == 300 and res.seq == 0
        for i in range(300, 320):
            assert c.produce(topic, b"none-%d" % i, b"k", ack="none") == 0
        assert c.flush(10) == 0
        assert c.poll_reports() == []          # ack=none never reports
        after = c.stats()["daemon"]
    assert after["produced"] - before["produced"] == 320, (before, after)
    assert after["delivered"] - before["delivered"] == 320, (before, after)
    assert after["delivery_failed"] == before["delivery_failed"]
    recs = read_all(kafka_cluster.bootstrap, topic, expect=320)
    check_records(recs, [{"value": b"none-%d" % i} for i in range(300)]
                  + [{"value": b"none-%d" % i, "key": b"k"} for i in range(300, 320)])


def test_flush_returns_zero(kafka_cluster, kd):
    topic = kafka_cluster.new_topic("flush", partitions=2)
    with Client(kd.socket) as c:
        assert c.flush(5) == 0                     # nothing produced yet
        for i in range(1000):
            c.produce(topic, b"f-%d" % i, ack="report" if i % 2 else "none")
        assert c.flush(10) == 0
        assert c.in_flight == 0
        reps = c.poll_reports()
        assert len(reps) == 500 and all(r.ok for r in reps)
        assert c.flush(5) == 0
    assert len(read_all(kafka_cluster.bootstrap, topic, expect=1000)) == 1000


class _OneTopicCluster:
    """Just enough of kafka-python's ClusterMetadata for DefaultPartitioner."""

    def __init__(self, topic: str, n: int) -> None:
        self.topic, self.n = topic, n

    def topics(self):
        return {self.topic}

    def partitions_for_topic(self, topic):
        return set(range(self.n))

    def available_partitions_for_topic(self, topic):
        return set(range(self.n))


def _keys():
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"abcde", bytes(range(256)), b"\xff" * 13]
    keys += [b"user-%d" % i for i in range(150)]
    keys += ["ключ-%d" % i for i in range(20)]   # str keys: their UTF-8 bytes
    return keys


def _kbytes(k):
    return k.encode() if isinstance(k, str) else k


def _ck_produce(bootstrap, topic, keys, partitioner):
    p = CKProducer({"bootstrap.servers": bootstrap, "partitioner": partitioner, "linger.ms": 5})
    errs = []
    for k in keys:
        p.produce(topic, value=b"ck-" + _kbytes(k), key=_kbytes(k),
                  on_delivery=lambda e, m: errs.append(e) if e else None)
    assert p.flush(30) == 0
    assert not errs, errs


@pytest.mark.parametrize("partitioner", ["murmur2", "murmur2_random"])
def test_murmur2_is_the_java_client_rule(kafka_cluster, kd, partitioner):
    n = 7
    topic = kafka_cluster.new_topic("murmur-kd", partitions=n)
    ref_topic = kafka_cluster.new_topic("murmur-ck", partitions=n)
    keys = _keys()
    java = DefaultPartitioner()
    cl = _OneTopicCluster(topic, n)
    expected = {_kbytes(k): java.partition(topic, _kbytes(k), _kbytes(k), None, None, cl) for k in keys}
    assert len(set(expected.values())) == n        # the keys do spread
    with Client(kd.socket) as c:
        res = c.produce_batch(topic, [{"value": b"kd-" + _kbytes(k), "key": k} for k in keys],
                              partitioner=partitioner, ack="wait")
        assert not res.errors, res.errors[:3]
        for k, r in zip(keys, res.results):
            assert r.partition == expected[_kbytes(k)], (k, r.partition, expected[_kbytes(k)])
        # single-message requests and report mode pick the same partition
        for k in keys[:20]:
            md = c.produce(topic, b"kd1-" + _kbytes(k), k, partitioner=partitioner, ack="wait")
            assert md.partition == expected[_kbytes(k)], k
    _ck_produce(kafka_cluster.bootstrap, ref_topic, keys, "murmur2_random")
    kd_recs = read_all(kafka_cluster.bootstrap, topic, expect=len(keys) + 20)
    ck_recs = read_all(kafka_cluster.bootstrap, ref_topic, expect=len(keys))
    check_records(kd_recs, [{"value": b"kd-" + _kbytes(k), "key": _kbytes(k), "partition": expected[_kbytes(k)]}
                            for k in keys]
                  + [{"value": b"kd1-" + _kbytes(k), "key": _kbytes(k), "partition": expected[_kbytes(k)]}
                     for k in keys[:20]])
    ck_map = {r.key: r.partition for r in ck_recs}
    kd_map = {r.key: r.partition for r in kd_recs}
    assert kd_map == ck_map == expected


def test_consistent_random_keeps_key_to_partition(kafka_cluster, kd):
    n = 5
    topic = kafka_cluster.new_topic("crand-kd", partitions=n)
    ref_topic = kafka_cluster.new_topic("crand-ck", partitions=n)
    keys = [b"ck-key-%d" % i for i in range(60)]
    sent = []
    with Client(kd.socket) as c:
        for rnd in range(4):
            msgs = [{"value": b"cr-%d-%d" % (rnd, i), "key": k} for i, k in enumerate(keys)]
            c.produce_batch(topic, msgs, partitioner="consistent_random")
            sent += msgs
        # keyless messages under consistent_random go to random partitions
        c.produce_batch(topic, [b"cr-nokey-%d" % i for i in range(40)], partitioner="consistent_random")
        assert c.flush(10) == 0
        reps = c.poll_reports()
        assert len(reps) == len(sent) + 40 and all(r.ok for r in reps)
    _ck_produce(kafka_cluster.bootstrap, ref_topic, keys, "consistent_random")
    recs = read_all(kafka_cluster.bootstrap, topic, expect=len(sent) + 40)
    check_records(recs, sent + [{"value": b"cr-nokey-%d" % i} for i in range(40)])
    kd_map = {}
    for r in recs:
        if r.key is not None:
            assert kd_map.setdefault(r.key, r.partition) == r.partition, f"key {r.key!r} in two partitions"
    assert len(set(kd_map.values())) > 1
    ck_map = {r.key: r.partition for r in read_all(kafka_cluster.bootstrap, ref_topic, expect=len(keys))}
    assert kd_map == ck_map          # the same CRC32 rule as librdkafka's consistent_random


def test_str_fields_are_taken_as_utf8_bytes(kafka_cluster, kd):
    """SPEC 2: "bytes" fields accept msgpack str (its UTF-8 bytes); sent by
    hand, since the stub encodes str itself."""
    from kafka_check import Raw

    topic = kafka_cluster.new_topic("strbytes", partitions=1)
    with Raw(kd.socket) as r:
        err, res = r.call("produce", {"topic": topic, "ack": "wait", "messages": [
            "plain str value \u00e9",
            {"value": "v\u00e9", "key": "k\u6f22", "headers": [["h", "hv\u00e9"], ["b", b"\x00\xff"]]},
        ]})
        assert err is None, err
        assert res["count"] == 2 and [x[2] for x in res["results"]] == [None, None], res
        # single-message form (no `messages`): the args map is the message
        err, res = r.call("produce", {"topic": topic, "ack": "wait", "value": "single", "key": b"kb",
                                      "timestamp": 1234567890123})
        assert err is None and res["count"] == 1 and res["results"][0][2] is None, (err, res)
    check_records(read_all(kafka_cluster.bootstrap, topic, expect=3), [
        {"value": "plain str value \u00e9".encode()},
        {"value": "v\u00e9".encode(), "key": "k\u6f22".encode(),
         "headers": [("h", "hv\u00e9".encode()), ("b", b"\x00\xff")]},
        {"value": b"single", "key": b"kb", "timestamp": 1234567890123},
    ])


def test_long_bootstrap_servers_line(kafka_cluster, daemon_factory):
    """A realistic bootstrap.servers list longer than 200 characters (the real
    broker first, then addresses nobody listens on) must be read whole."""
    from kafka_check import closed_port

    boot = ",".join([kafka_cluster.bootstrap] + ["127.0.0.1:%d" % closed_port() for _ in range(15)])
    assert len("bootstrap.servers = " + boot) > 250
    # librdkafka tries the bootstrap addresses one at a time, so finding the
    # live one among 15 dead ones can take longer than FAST's 4 s
    d = daemon_factory(extra="message.timeout.ms = 30000\n", bootstrap=boot)
    topic = kafka_cluster.new_topic("longboot", partitions=1)
    with Client(d.socket) as c:
        assert c.stats()["clusters"]["main"]["bootstrap"] == boot
        md = c.produce(topic, b"long bootstrap", ack="wait")
    check_records(read_all(kafka_cluster.bootstrap, topic, expect=1),
                  [{"value": b"long bootstrap", "partition": 0, "offset": md.offset}])
