"""SIGTERM: messages in flight are delivered before kafkad exits 0; with the
broker unreachable it gives up after shutdown_timeout_ms, says what it could
not deliver, and still exits 0."""
from __future__ import annotations

import re
import signal

import pytest

from kafka_check import check_records, closed_port, read_all
from kafkad import Client
from kafkad.errors import ConnectionLost, KafkadError

pytestmark = pytest.mark.integration

FAST = "message.timeout.ms = 4000\n"


def test_sigterm_delivers_messages_in_flight(kafka_cluster, daemon_factory):
    # a long linger keeps the messages queued in the daemon until SIGTERM (its
    # flush sends them at once): with the default 5 ms a slow ping answer on a
    # loaded machine could come after every report, leaving nothing in flight
    d = daemon_factory(extra=FAST + "linger.ms = 2000\n")
    topic = kafka_cluster.new_topic("sigterm", partitions=4)
    n_rep, n_none = 20000, 5000
    c = Client(d.socket, batch_messages=5000)
    try:
        c.produce_batch(topic, [{"value": b"rep-%06d" % i, "key": b"k%d" % (i % 13)} for i in range(n_rep)])
        c.produce_batch(topic, [b"none-%06d" % i for i in range(n_none)], ack="none")
        c.produce(topic, b"last", headers=[("h", b"v")], timestamp=1700000000000)
        # requests of one connection are handled in order: once the ping is
        # answered, the daemon has taken every produce request before it
        c.ping()
        assert c.in_flight > 0, "everything was already delivered: nothing in flight to test"
        rc = d.stop(signal.SIGTERM, timeout=30)
        assert rc == 0, d.log()
        # the client sees the connection end; every message still gets exactly one report
        try:
            c.flush(5)
        except KafkadError:
            pass
        reps = c.poll_reports()
        assert len({r.seq for r in reps}) == len(reps) <= n_rep + 1
        assert all(r.ok or isinstance(r.error, (ConnectionLost, KafkadError)) for r in reps)
    finally:
        c.close()
    log = d.log()
    assert "SIGTERM" in log
    assert "every message was delivered" in log, log[-3000:]
    assert "could not be delivered" not in log
    recs = read_all(kafka_cluster.bootstrap, topic, expect=n_rep + n_none + 1)
    check_records(recs, [{"value": b"rep-%06d" % i, "key": b"k%d" % (i % 13)} for i in range(n_rep)]
                  + [{"value": b"none-%06d" % i} for i in range(n_none)]
                  + [{"value": b"last", "headers": [("h", b"v")], "timestamp": 1700000000000}])


def test_sigterm_with_unreachable_broker_reports_undelivered(daemon_factory):
    # extra is appended after [cluster main]: re-open [daemon] for its key
    d = daemon_factory(
        extra="message.timeout.ms = 60000\n[daemon]\nshutdown_timeout_ms = 1000\n",
        bootstrap="127.0.0.1:%d" % closed_port())
    topic_a, topic_b = "undeliverable-a", "undeliverable-b"
    c = Client(d.socket)
    try:
        c.produce_batch(topic_a, [b"a-%d" % i for i in range(120)])
        c.produce_batch(topic_a, [b"a-none-%d" % i for i in range(3)], ack="none")
        c.produce_batch(topic_b, [b"b-%d" % i for i in range(7)])
        c.ping()
        assert c.flush(0.2) == 130           # nothing can be delivered
        st = c.stats()["daemon"]
        assert st["produced"] == 130 and st["delivered"] == 0, st
        rc = d.stop(signal.SIGTERM, timeout=15)
        assert rc == 0, d.log()
    finally:
        c.close()
    log = d.log()
    found = {m.group(2): int(m.group(1))
             for m in re.finditer(r"(\d+) messages? to topic (\S+) could not be delivered", log)}
    assert found == {topic_a: 123, topic_b: 7}, log[-4000:]
