"""The broker goes away and comes back (named zz_ to run last: it stops the
session's shared broker, and always restarts it)."""
from __future__ import annotations

import threading
import time

import pytest

from kafka_check import check_records, read_all, wait_until
from kafkad import Client, KafkaError
from kafkad.errors import KafkadError, TimedOut

pytestmark = pytest.mark.integration

FAST = "message.timeout.ms = 4000\n"
RETRIABLE_DOWN = ("_MSG_TIMED_OUT", "_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "REQUEST_TIMED_OUT")


class _Call(threading.Thread):
    """Runs one blocking call; .result / .error afterwards."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.result = None
        self.error = None
        self.started_call = threading.Event()

    def run(self):
        self.started_call.set()
        try:
            self.result = self.fn()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_broker_down_then_back(kafka_cluster, daemon_factory):
    d = daemon_factory(extra=FAST)
    topic = kafka_cluster.new_topic("down", partitions=2)
    c_prod = Client(d.socket, timeout=60)
    c_meta = Client(d.socket, timeout=60)
    c_ping = Client(d.socket, timeout=60)
    c_rep = Client(d.socket, timeout=60)
    try:
        before = c_prod.produce(topic, b"before the outage", b"k", ack="wait")
        kafka_cluster.broker_stop()
        try:
            prod = _Call(lambda: c_prod.produce(topic, b"during the outage", b"k", ack="wait"))
            meta = _Call(lambda: c_meta.metadata([topic], timeout=3.0))
            seq = c_rep.produce(topic, b"reported during the outage")
            prod.start()
            meta.start()
            prod.started_call.wait()
            meta.started_call.wait()
            # the daemon's loop never blocks: pings (and stats) on another
            # connection are answered while the produce and the metadata
            # request are still waiting for the dead broker
            pings = 0
            while pings < 20 and (prod.is_alive() or meta.is_alive()):
                c_ping.ping()
                c_ping.stats()
                pings += 1
                if pings >= 5:
                    break
            assert pings >= 5
            # (the metadata call may fail fast with _TRANSPORT once librdkafka
            # sees every broker down; the produce waits message.timeout.ms)
            assert prod.is_alive(), "the produce finished before the pings: cannot tell"
            prod.join(30)
            meta.join(30)
            assert not prod.is_alive() and not meta.is_alive()

            # sync produce: a retriable Kafka error (message.timeout.ms = 4000)
            e = prod.error
            assert isinstance(e, KafkaError), f"sync produce during the outage gave {prod.result!r} / {e!r}"
            assert e.retriable and e.name in RETRIABLE_DOWN, repr(e)
            # metadata: a clear error, not a hang or an empty answer
            e = meta.error
            assert isinstance(e, (KafkaError, TimedOut)), f"metadata during the outage gave {meta.result!r} / {e!r}"
            assert e.name in RETRIABLE_DOWN + ("TIMED_OUT",), repr(e)
            assert e.retriable and e.message, repr(e)
            # report mode: one failure report
            assert c_rep.flush(15) == 0
            reps = c_rep.poll_reports()
            assert len(reps) == 1 and reps[0].seq == seq and not reps[0].ok, reps
            assert reps[0].error.retriable and reps[0].error.name in RETRIABLE_DOWN, reps
            assert c_ping.ping() >= 0
        finally:
            kafka_cluster.broker_start()

        # back: a sync produce succeeds again (retry while librdkafka reconnects)
        attempts = []

        def produce_after():
            try:
                return c_prod.produce(topic, b"after the outage #%d" % len(attempts), b"k", ack="wait")
            except KafkadError as e:
                assert e.retriable, repr(e)
                attempts.append(e)
                return None

        after = wait_until(produce_after, 30, f"a successful produce after broker_start ({attempts[-3:]})",
                           interval=0.2)
        md = c_meta.metadata([topic])
        assert md.topics[topic].error is None and len(md.topics[topic].partitions) == 2
        st = c_ping.stats()["daemon"]
        assert st["delivery_failed"] >= 2 + len(attempts), st
    finally:
        for c in (c_prod, c_meta, c_ping, c_rep):
            c.close()
    recs = read_all(kafka_cluster.bootstrap, topic)
    # the messages that failed while the broker was down are not in the log;
    # a failed attempt after broker_start may have been written ("possibly
    # persisted" timeouts), so those are left out of the comparison
    failed_attempts = {b"after the outage #%d" % i for i in range(len(attempts))}
    recs = [r for r in recs if r.value not in failed_attempts]
    check_records(recs, [
        {"value": b"before the outage", "key": b"k", "partition": before.partition, "offset": before.offset},
        {"value": b"after the outage #%d" % len(attempts), "key": b"k", "partition": after.partition,
         "offset": after.offset},
    ])
    assert d.alive()


def test_daemons_started_while_the_broker_is_unreachable_still_report(daemon_factory):
    """kafkad started before its broker is reachable (e.g. at boot): the
    outcome of a message must still reach the client. Ten daemons are started
    at once against a closed port; each must answer an ack=wait produce with
    _MSG_TIMED_OUT after message.timeout.ms, not leave it without outcome.

    (librdkafka wakes the daemon's event pipe only when the main queue goes
    from empty to non-empty; an event queued before the pipe is enabled
    must not leave the queue unserved.)"""
    from kafka_check import closed_port

    n = 10
    ds = [daemon_factory(extra="message.timeout.ms = 1000\n[daemon]\nshutdown_timeout_ms = 200\n",
                         bootstrap="127.0.0.1:%d" % closed_port(), start=False) for _ in range(n)]
    starters = [threading.Thread(target=d.start) for d in ds]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    assert all(d.alive() for d in ds)
    calls = []
    clients = [Client(d.socket, timeout=5) for d in ds]
    try:
        calls = [_Call(lambda c=c: c.produce("never-delivered", b"x", ack="wait")) for c in clients]
        for t in calls:
            t.start()
        for t in calls:
            t.join(30)
        outcomes = [getattr(t.error, "name", repr(t.result)) for t in calls]
    finally:
        for c in clients:
            c.close()
        stoppers = [threading.Thread(target=d.stop) for d in ds]   # in parallel: a stuck one takes seconds
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
    stuck = [i for i, o in enumerate(outcomes) if o != "_MSG_TIMED_OUT"]
    assert not stuck, (
        f"{len(stuck)} of {n} daemons never produced an outcome (outcomes: {outcomes}); log of #{stuck[0]}:\n"
        + ds[stuck[0]].log()[-3000:])


def test_group_consumer_survives_a_broker_outage(kafka_cluster, daemon_factory):
    """A daemon-held group consumer while the broker is down: consume
    answers (buffered messages, then empty batches) without blocking the
    loop; when the broker is back the same handle goes on, and every message
    is consumed: those from before, and those produced after the outage."""
    d = daemon_factory(extra=FAST)
    topic = kafka_cluster.new_topic("down-consume", partitions=3)
    group = "down-consume-" + topic
    c = Client(d.socket, timeout=60)
    c_ping = Client(d.socket, timeout=60)
    try:
        for i in range(300):
            c.produce(topic, b"before-%d" % i, partition=i % 3)
        assert c.flush(30) == 0
        cons = c.consumer(topics=[topic], mode="group", group=group, auto_offset_reset="earliest")
        got = []

        def first_half():
            got.extend(m.value for m in cons.consume(max=100, timeout=0.5))
            return len(got) >= 150

        wait_until(first_half, 30, "the first 150 messages")
        cons.commit()
        kafka_cluster.broker_stop()
        try:
            # consume is served (what is buffered, then empty batches) and
            # the daemon answers other connections meanwhile
            t_end = time.monotonic() + 6
            while time.monotonic() < t_end:
                t0 = time.monotonic()
                got.extend(m.value for m in cons.consume(max=100, timeout=0.3))
                assert time.monotonic() - t0 < 5, "consume blocked while the broker is down"
                assert c_ping.ping() >= 0
        finally:
            kafka_cluster.broker_start()

        def produce_after():
            try:
                c.produce(topic, b"after", partition=0, ack="wait")
                return True
            except KafkadError as e:
                assert e.retriable, repr(e)
                return False

        wait_until(produce_after, 60, "a produce after broker_start", interval=0.3)
        want = {b"before-%d" % i for i in range(300)} | {b"after"}

        def all_consumed():
            got.extend(m.value for m in cons.consume(max=500, timeout=0.5))
            return want <= set(got)

        wait_until(all_consumed, 90, f"every message after the outage (missing {len(want - set(got))})")
        cons.commit()
        cons.close()
    finally:
        c.close()
        c_ping.close()
    assert d.alive()
