"""The daemon's batched enqueue of bare values (rd_kafka_produce_batch), its
send-now for callers that wait (linger.ms skipped), and the stub's one-shot
``produce_sync``, against the real broker; read back with an independent
confluent-kafka consumer."""
from __future__ import annotations

import time

import pytest

from kafka_check import by_value, check_records, read_all
from kafkad import Client, ConnectionLost, KafkaError, produce_sync

pytestmark = pytest.mark.integration

FAST = "message.timeout.ms = 4000\n"


def test_mixed_request_keeps_order_and_per_message_outcomes(kafka_cluster, daemon_factory):
    """Runs of bare values go to librdkafka in batches, message maps one by
    one; outcomes stay per message and in request order, a refused message
    in the middle of a run included."""
    kd = daemon_factory(extra=FAST + "message.max.bytes = 20000\n")
    topic = kafka_cluster.new_topic("mixed", partitions=3)

    def batch(prefix):
        msgs = []
        for i in range(700):
            if i % 100 == 50:
                msgs.append(b"B" * 50000)  # too large for message.max.bytes: that message's outcome
            elif i % 7 == 0:
                msgs.append({"value": b"%s-%04d" % (prefix, i), "key": b"k%d" % (i % 5)})
            else:
                msgs.append(b"%s-%04d" % (prefix, i))
        return msgs

    with Client(kd.socket) as c:
        res = c.produce_batch(topic, batch(b"w"), ack="wait")
        assert res.count == 700
        for i, r in enumerate(res.results):
            if i % 100 == 50:
                assert isinstance(r, KafkaError) and r.name == "MSG_SIZE_TOO_LARGE", (i, r)
            else:
                assert not isinstance(r, Exception), (i, r)
        # the same in report mode: one report per seq, the refused ones failed
        first = c.produce_batch(topic, batch(b"r")).seq
        assert c.flush(10) == 0
        reps = sorted(c.poll_reports(), key=lambda r: r.seq)
    assert [r.seq for r in reps] == list(range(first, first + 700))
    for i, r in enumerate(reps):
        assert r.ok != (i % 100 == 50), (i, r)
    recs = read_all(kafka_cluster.bootstrap, topic, expect=2 * 693)
    assert len(by_value(recs)) == 2 * 693
    # per partition, in the order of the request
    for p in range(3):
        for prefix in (b"w", b"r"):
            idx = [int(r.value[2:]) for r in recs if r.partition == p and r.value[:1] == prefix]
            assert idx == sorted(idx), (p, prefix)


def test_full_queue_holds_and_resumes_runs_without_loss_or_duplicates(kafka_cluster, daemon_factory):
    """A librdkafka queue of 64 messages: runs of bare values stop at the
    first message that finds it full and continue from there."""
    kd = daemon_factory(extra=FAST + "queue.buffering.max.messages = 64\n")
    topic = kafka_cluster.new_topic("qfull", partitions=2)
    n = 5000
    with Client(kd.socket) as c:
        seqs = {}
        for b in range(0, n, 1000):
            first = c.produce_batch(topic, [b"q-%05d" % i for i in range(b, b + 1000)]).seq
            for j in range(1000):
                seqs[first + j] = b"q-%05d" % (b + j)
        none = c.produce_batch(topic, [b"n-%05d" % i for i in range(500)], ack="none")
        assert none.count == 500
        assert c.flush(30) == 0
        reps = c.poll_reports(1 << 20)
    assert sorted(r.seq for r in reps) == sorted(seqs)
    assert all(r.ok for r in reps), [r for r in reps if not r.ok][:3]
    recs = read_all(kafka_cluster.bootstrap, topic, expect=n + 500)
    got = by_value(recs)
    assert len(recs) == n + 500 and len(got) == n + 500  # no duplicates
    for r in reps:
        assert (got[seqs[r.seq]].partition, got[seqs[r.seq]].offset) == (r.partition, r.offset)


def test_waiting_callers_do_not_wait_out_linger(kafka_cluster, daemon_factory):
    """linger.ms=400: a report-mode message lingers, ack='wait' and flush do not."""
    kd = daemon_factory(extra=FAST + "linger.ms = 400\n")
    topic = kafka_cluster.new_topic("sendnow", partitions=2)
    with Client(kd.socket, linger_ms=0) as c:
        c.produce(topic, b"warm", ack="wait")  # metadata known
        times = []
        for i in range(10):
            t0 = time.monotonic()
            c.produce(topic, b"w-%d" % i, ack="wait")
            times.append(time.monotonic() - t0)
        assert sorted(times)[5] < 0.2, times
        # the last wait's send-now window (at most 10 ms, on the daemon's
        # helper thread) must be over, or it would send r-0 at once too;
        # leave a wide margin for a loaded machine
        time.sleep(0.3)
        c.produce(topic, b"r-0")
        c.poll(0)
        time.sleep(0.05)
        assert c.poll_reports() == []  # still lingering in librdkafka after 50 ms
        t0 = time.monotonic()
        assert c.flush(5) == 0
        assert time.monotonic() - t0 < 0.3
    assert len(read_all(kafka_cluster.bootstrap, topic, expect=12)) == 12


def test_produce_sync(kafka_cluster, daemon_factory):
    kd = daemon_factory(extra=FAST)
    topic = kafka_cluster.new_topic("oneshot", partitions=3)
    sent = []
    for i in range(6):
        key = b"k%d" % i if i % 2 else None
        part, off = produce_sync(topic, b"one-%d" % i, key, socket_path=kd.socket)
        sent.append({"value": b"one-%d" % i, "key": key, "partition": part, "offset": off})
    part, off = produce_sync(topic, b"one-h", headers=[("h", b"1")], partition=2, socket_path=kd.socket)
    assert part == 2
    sent.append({"value": b"one-h", "partition": 2, "offset": off, "headers": [("h", b"1")]})
    part, off = produce_sync(topic, b"x" * 3000, socket_path=kd.socket)  # asks for max_frame first
    sent.append({"value": b"x" * 3000, "partition": part, "offset": off})
    check_records(read_all(kafka_cluster.bootstrap, topic, expect=len(sent)), sent)
    with pytest.raises(KafkaError) as ei:
        produce_sync(topic, b"v", partition=7, socket_path=kd.socket)
    assert ei.value.name == "_UNKNOWN_PARTITION"
    kd.stop()
    with pytest.raises(ConnectionLost):
        produce_sync(topic, b"v", socket_path=kd.socket)


def _spread_run(kd, topic, requests, per_request, pause):
    """Report-mode produce_batch calls of bare values; returns the reports by
    request and every (value, partition, offset) the reports claim."""
    by_request = []
    claimed = []
    with Client(kd.socket) as c:
        # the topic's first use starts the daemon's metadata fetch; until it is
        # in, librdkafka's own partitioner places runs (its sticky window can
        # split a request)
        c.produce(topic, b"warm-up", ack="wait")
        time.sleep(0.5)
        for r in range(requests):
            values = [b"%d-%d" % (r, i) for i in range(per_request)]
            res = c.produce_batch(topic, values)
            by_request.append((res.seq, values))
            time.sleep(pause)
        assert c.flush(30) == 0
        reports = {rep.seq: rep for rep in c.poll_reports(max=1 << 20)}
    for seq, values in by_request:
        for i, v in enumerate(values):
            rep = reports[seq + i]
            assert rep.error is None, rep
            claimed.append((v, rep.partition, rep.offset))
    return by_request, reports, claimed


def test_unkeyed_runs_stick_to_a_partition_then_move_on(kafka_cluster, daemon_factory):
    """The daemon picks the partition of a run of bare values itself
    (librdkafka's sticky rule: a random partition with a leader, kept for
    sticky.partitioning.linger.ms). On the real broker: each request of at
    most 256 values lands on one partition, requests spaced beyond the linger
    spread over the partitions, and the reports' partitions and offsets are
    where an independent consumer finds the messages."""
    kd = daemon_factory(extra="sticky.partitioning.linger.ms = 5\n")
    topic = kafka_cluster.new_topic("sticky", partitions=6)
    by_request, reports, claimed = _spread_run(kd, topic, requests=40, per_request=200, pause=0.02)
    used = set()
    for seq, values in by_request:
        parts = {reports[seq + i].partition for i in range(len(values))}
        assert len(parts) == 1, f"one request of {len(values)} values went to partitions {parts}"
        used |= parts
    assert len(used) >= 3, f"40 requests 20 ms apart used only partitions {used}"
    records = by_value(read_all(kafka_cluster.bootstrap, topic, expect=len(claimed) + 1))
    for v, p, off in claimed:
        assert (records[v].partition, records[v].offset) == (p, off)


def test_no_stickiness_spreads_each_request(kafka_cluster, daemon_factory):
    """sticky.partitioning.linger.ms = 0: librdkafka's partitioner picks per
    message, so one request's values spread over the partitions."""
    kd = daemon_factory(extra="sticky.partitioning.linger.ms = 0\n")
    topic = kafka_cluster.new_topic("nosticky", partitions=6)
    by_request, reports, claimed = _spread_run(kd, topic, requests=2, per_request=200, pause=0)
    for seq, values in by_request:
        parts = {reports[seq + i].partition for i in range(len(values))}
        assert len(parts) > 1, "200 values on one partition of six with per-message random partitioning"
    records = by_value(read_all(kafka_cluster.bootstrap, topic, expect=len(claimed) + 1))
    del records[b"warm-up"]
    assert {v: (r.partition, r.offset) for v, r in records.items()} == {v: (p, o) for v, p, o in claimed}
