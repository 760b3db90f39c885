"""kafkad.consumer (Client.consumer / AsyncClient.consumer) against
kafkad.testing.FakeDaemon: decoding, the local buffer and prefetch, events
and leases, commit/seek bookkeeping, timeouts, errors (no real daemon)."""

import asyncio
import gc
import os
import sys
import threading
import time

import pytest

_STUB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "client-stubs", "python"))
if _STUB not in sys.path:
    sys.path.insert(0, _STUB)

import kafkad  # noqa: E402
from kafkad import errors as E  # noqa: E402
from kafkad.aio import AsyncClient  # noqa: E402
from kafkad.consumer import OFFSET_INVALID, Event, Message  # noqa: E402
from kafkad.testing import FakeDaemon  # noqa: E402


@pytest.fixture
def fake():
    f = FakeDaemon(topics={"t": 3, "u": 2}).start()
    yield f
    f.stop()


def fill(fake, topic, n, partitions, start=0):
    for i in range(start, start + n):
        fake.append(topic, i % partitions, b"%s-%d" % (topic.encode(), i), key=b"k%d" % i if i % 2 else None,
                    headers=[("h", b"%d" % i)] if i % 3 == 0 else None, timestamp=1000 + i)


def requests(fake, op):
    return [a for (_i, o, a) in fake.requests if o == op]


def eventually(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def take_all(con, n, timeout=5.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got.extend(con.consume(n - len(got), timeout=0.2))
    return got


# ------------------------------------------------------------------ opening


def test_open_args_and_properties(fake):
    with kafkad.Client(fake.socket_path, cluster="main") as c:
        con = c.consumer(b"t", group=b"g1", partitions=[0, 2], offsets={0: 1, 2: -2}, auto_offset_reset="earliest",
                         reset_offset_on_start=True, auto_commit_interval_ms=1000)
        args = requests(fake, "consumer_open")[0]
        assert args == {"mode": "simple", "topic": "t", "group": "g1", "partitions": [0, 2], "offsets": [[0, 1], [2, -2]],
                        "auto_offset_reset": "earliest", "reset_offset_on_start": True, "cluster": "main"}
        assert "auto_commit_interval_ms" not in args  # committed from here: consumed, not prefetched
        assert con.handle == 1 and con.key == "main/simple/g1/t/0,2" and con.attached == 1
        assert con.topics == ["t"] and con.group == "g1" and not con.closed
        g = c.consumer(topics=["u", "t"], mode="group", group="g2", assignor="roundrobin")
        args = requests(fake, "consumer_open")[1]
        assert args["topics"] == ["u", "t"] and args["mode"] == "group" and args["assignor"] == "roundrobin"
        assert args["auto_offset_reset"] == "latest"
        assert g.topics == ["t", "u"] and "consumer" in repr(g).lower()
        for bad in (dict(), dict(topic="t", topics=["t"])):
            with pytest.raises(ValueError):
                c.consumer(**bad)
        with pytest.raises(ValueError):
            c.consumer("t", mode="balanced")
        with pytest.raises(ValueError):
            c.consumer("t", auto_offset_reset="middle")
        with pytest.raises(ValueError):
            c.consumer("t", auto_commit_interval_ms=100)  # nothing to commit to


def test_open_errors(fake):
    with kafkad.Client(fake.socket_path) as c:
        with pytest.raises(E.KafkaError) as ei:
            c.consumer("missing")
        assert ei.value.name == "UNKNOWN_TOPIC_OR_PART" and ei.value.kafka_code == 3
        with pytest.raises(E.InvalidArgument):
            c.consumer("t", mode="zookeeper", group="g")  # no zookeeper_connect
        with pytest.raises(E.InvalidArgument):
            c.call("consumer_open", {"topic": "t", "mode": "group"})
        with pytest.raises(E.KafkaError):
            c.consumer("t", partitions=[5])
        assert c.ping() > 0


# ------------------------------------------------------------- decoding


def test_messages_decode_to_named_tuples(fake):
    fill(fake, "t", 30, 3)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", auto_offset_reset="earliest")
        got = take_all(con, 30)
        assert len(got) == 30 and all(type(m) is Message for m in got)
        by_value = {m.value: m for m in got}
        for i in range(30):
            m = by_value[b"t-%d" % i]
            assert (m.topic, m.partition, m.offset, m.timestamp) == ("t", i % 3, i // 3, 1000 + i)
            assert m.key == (b"k%d" % i if i % 2 else None)
            assert m.headers == ([["h", b"%d" % i]] if i % 3 == 0 else None)
            assert m[0] == "t" and m._asdict()["value"] == m.value
        for p in range(3):
            assert [m.offset for m in got if m.partition == p] == list(range(10))
        assert gc.isenabled()


def test_several_topics_get_their_names(fake):
    fill(fake, "t", 6, 3)
    fill(fake, "u", 4, 2)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer(topics=["u", "t"], mode="group", group="g", auto_offset_reset="earliest")
        got = take_all(con, 10)
        assert sorted((m.topic, m.value) for m in got) == sorted(
            [("t", b"t-%d" % i) for i in range(6)] + [("u", b"u-%d" % i) for i in range(4)])
        assert con.assignment == {("t", 0), ("t", 1), ("t", 2), ("u", 0), ("u", 1)}


def test_poll_is_served_from_the_local_batch_with_one_request_ahead(fake):
    fill(fake, "t", 300, 3)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", auto_offset_reset="earliest", fetch_max=100)
        assert eventually(lambda: len(requests(fake, "consume")) == 1)  # prefetch at open
        first = con.poll(5)
        assert first is not None
        # the first batch (100) is local; the next request is already out
        assert eventually(lambda: len(requests(fake, "consume")) == 2)
        rest = [con.poll(5) for _ in range(99)]
        assert len(requests(fake, "consume")) == 2, "99 polls from the local batch: no request"
        assert all(m is not None for m in rest)
        more = [con.poll(5) for _ in range(200)]
        assert sorted(m.value for m in [first] + rest + more) == sorted(b"t-%d" % i for i in range(300))
        assert con.poll(0.05) is None
        n = len(requests(fake, "consume"))
        assert 3 <= n <= 6
        reqs = requests(fake, "consume")
        assert all(a["max"] == 100 for a in reqs)
        # the first one answers at once (it brings the leases); the others wait at the daemon
        assert reqs[0]["timeout_ms"] == 0 and all(a["timeout_ms"] > 0 for a in reqs[1:])


def test_consume_limits_and_slicing(fake):
    fill(fake, "t", 250, 1)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", auto_offset_reset="earliest", fetch_max=100)
        a = con.consume(30, timeout=5)
        assert [m.offset for m in a] == list(range(30))
        b = con.consume(100, timeout=5)  # rest of the first batch (and the next one when it is in)
        assert len(b) >= 70 and [m.offset for m in b] == list(range(30, 30 + len(b)))
        c_ = con.consume(1000, timeout=5)
        assert c_ and c_[0].offset == 30 + len(b) and len(c_) <= 1000
        got = a + b + c_ + take_all(con, 250 - 30 - len(b) - len(c_))
        assert [m.offset for m in got] == list(range(250))
        # a larger consume() grows the size of the next requests
        assert con._core.fetch_max == 1000 and con._core.consume_args(1)["max"] == 1000
        with pytest.raises(ValueError):
            con.consume(0)


def test_timeouts_return_empty(fake):
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t")
        assert con.consume(10, timeout=0) == []
        assert con.consume(10, timeout=0.1) == []
        assert con.poll(0) is None
        assert con.poll(0.1) is None
        assert con.poll(0.05) is None
        fill(fake, "t", 3, 3)  # latest: the fake's consumer started at the (empty) end
        got = [con.poll(5) for _ in range(3)]
        assert sorted(m.value for m in got) == [b"t-0", b"t-1", b"t-2"]


def test_blocking_consume_wakes_up_for_a_message(fake):
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t")
        threading.Timer(0.2, lambda: fake.append("t", 1, b"late")).start()
        got = con.consume(10, timeout=None)
        assert [m.value for m in got] == [b"late"]


def test_iteration(fake):
    fill(fake, "t", 9, 3)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", auto_offset_reset="earliest")
        seen = []
        for m in con:
            seen.append(m.value)
            if len(seen) == 9:
                con.close()
        assert sorted(seen) == sorted(b"t-%d" % i for i in range(9))


# ------------------------------------------------------------ events and leases


def test_events_queue_and_callback(fake):
    fill(fake, "t", 3, 3)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", auto_offset_reset="earliest")
        assert con.wait_assignment(5) == {("t", 0), ("t", 1), ("t", 2)}
        got = take_all(con, 3)
        assert len(got) == 3
        take_all(con, 1, timeout=0.3)
        evs = list(con.events)
        assert [e for e in evs if e.type == "assigned"] == [Event("assigned", "t", p, -1) for p in range(3)]
        assert {(e.partition, e.offset) for e in evs if e.type == "eof"} == {(0, 1), (1, 1), (2, 1)}
        con.events.clear()
        seen = []
        con2 = c.consumer("u", on_event=seen.append)
        con2.consume(1, timeout=0.2)
        assert {e.partition for e in seen if e.type == "assigned"} == {0, 1} and not con2.events


def test_lease_moves_drop_buffered_messages_and_rewind(fake):
    """Two connections on one consumer: partitions move when the second
    attaches; what the first had buffered (prefetched, unconsumed) of a
    moved partition is dropped here and redelivered to the other one."""
    fill(fake, "t", 60, 3)
    with kafkad.Client(fake.socket_path) as c1, kafkad.Client(fake.socket_path) as c2:
        a = c1.consumer("t", group="g", auto_offset_reset="earliest", fetch_max=30)
        first = a.consume(5, timeout=5)  # 30 fetched, 5 consumed, 25 buffered here
        a.commit()
        committed = {p: o for (g, t, p), o in fake.group_offsets.items() if g == "g"}
        b = c2.consumer("t", group="g", auto_offset_reset="earliest")
        got_a = first + take_all(a, 100, timeout=1.0)
        got_b = take_all(b, 100, timeout=1.0)
        moved = {p for t, p in b.assignment}
        assert moved and not moved & {p for t, p in a.assignment}
        assert {("revoked", "t", p) for p in moved} <= {(e.type, e.topic, e.partition) for e in a.events}
        # nothing lost, nothing of a moved partition handed out by a after the move
        assert {m.value for m in got_a} | {m.value for m in got_b} == {b"t-%d" % i for i in range(60)}
        for p in moved:
            on_b = sorted(m.offset for m in got_b if m.partition == p)
            assert on_b[0] == committed.get(p, 0) and on_b == list(range(on_b[0], 20))
        dups = {m.value for m in got_a} & {m.value for m in got_b}
        assert all(m.partition in moved and m.offset >= committed.get(m.partition, 0)
                   for m in got_a if m.value in dups)
        # positions of moved partitions are no longer committable from a
        assert all(p not in moved for (_t, p) in a.positions())


def test_commit_when_a_revocation_is_not_here_yet(fake):
    fill(fake, "t", 30, 3)
    with kafkad.Client(fake.socket_path) as c1, kafkad.Client(fake.socket_path) as c2:
        a = c1.consumer("t", group="g", auto_offset_reset="earliest")
        got = take_all(a, 30)
        assert len(got) == 30
        b = c2.consumer("t", group="g")  # takes a partition: a hears of it with its next consume
        moved = {p for t, p in b.wait_assignment(5)}
        assert len(moved) == 1
        done = a.commit()  # NOT_ASSIGNED for the moved one: the others still get committed
        assert sorted(done) == [("t", p, 10) for p in range(3) if p not in moved]
        assert {p: o for (_g, _t, p), o in fake.group_offsets.items()} == {p: 10 for p in range(3) if p not in moved}
        with pytest.raises(E.NotAssigned):
            a.commit({("t", next(iter(moved))): 3})  # explicit offsets are not second-guessed


# --------------------------------------------------------------- offsets


def test_commit_covers_consumed_not_prefetched(fake):
    fill(fake, "t", 50, 1)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", group="g", auto_offset_reset="earliest", fetch_max=40)
        for _ in range(7):
            con.poll(5)
        assert con.positions() == {("t", 0): 7}
        assert con.commit() == [("t", 0, 7)]
        assert fake.group_offsets[("g", "t", 0)] == 7
        assert con.commit() == []  # nothing new
        got = con.consume(100, timeout=5)
        assert got[0].offset == 7
        con.commit(asynchronous=True)
        assert eventually(lambda: fake.group_offsets[("g", "t", 0)] == got[-1].offset + 1)
        assert con.commit(got[2]) == [("t", 0, got[2].offset + 1)]
        assert con.commit([("t", 0, 3)]) == [("t", 0, 3)]
        assert con.committed() == {("t", 0): 3, ("t", 1): OFFSET_INVALID, ("t", 2): OFFSET_INVALID}
        assert con.committed([("t", 0)]) == {("t", 0): 3}
        with pytest.raises(TypeError):
            con.commit([("t", 0)])
        nogroup = c.consumer("t")
        with pytest.raises(E.InvalidState):
            nogroup.commit({("t", 0): 1})
        assert nogroup.positions() == {}  # without a group nothing is tracked


def test_committed_reports_invalid_when_nothing_committed(fake):
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", group="fresh")
        assert con.wait_assignment(5)
        assert con.committed() == {("t", p): OFFSET_INVALID for p in range(3)}


def test_seek_drops_stale_buffered_messages(fake):
    fill(fake, "t", 90, 3)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", group="g", auto_offset_reset="earliest", fetch_max=30)
        first = con.consume(3, timeout=5)  # the rest of the 30 are buffered
        assert len(first) == 3
        time.sleep(0.1)  # the prefetched response is in too
        con.seek({("t", 1): 25})
        got = take_all(con, 200, timeout=1.0)
        on1 = [m.offset for m in first + got if m.partition == 1 and m not in first]
        assert on1 == [25, 26, 27, 28, 29]
        assert sorted(m.offset for m in first + got if m.partition == 0) == list(range(30))
        assert ("t", 1) in con.positions()
        con.seek([("t", 2, -2)])
        again = take_all(con, 30, timeout=1.0)
        assert [m.offset for m in again] == list(range(30))
        with pytest.raises(E.NotAssigned):
            con.seek({("t", 7): 0})
        con.seek([])  # nothing to do


def test_auto_commit_timer(fake):
    fill(fake, "t", 20, 1)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", group="g", auto_offset_reset="earliest", auto_commit_interval_ms=30)
        got = con.consume(12, timeout=5)
        assert len(got) == 12
        assert eventually(lambda: fake.group_offsets.get(("g", "t", 0)) == 12), fake.group_offsets
        more = con.consume(3, timeout=5)
        con.close()  # final commit
        assert fake.group_offsets[("g", "t", 0)] == 12 + len(more)


# ------------------------------------------------------------- closing, errors


def test_close_and_use_after_close(fake):
    with kafkad.Client(fake.socket_path) as c:
        with c.consumer("t", group="g") as con:
            h = con.handle
        assert con.closed and requests(fake, "consumer_close") == [{"handle": h}]
        con.close()  # twice is fine
        for call in (lambda: con.consume(1, timeout=0), lambda: con.poll(0), lambda: con.commit(),
                     lambda: con.seek({("t", 0): 0})):
            with pytest.raises(E.UnknownHandle):
                call()
        with pytest.raises(E.UnknownHandle):
            c.call("consume", {"handle": h})
        assert c.ping() > 0


def test_handles_belong_to_their_connection(fake):
    with kafkad.Client(fake.socket_path) as c1, kafkad.Client(fake.socket_path) as c2:
        con = c1.consumer("t")
        with pytest.raises(E.NotOwner):
            c2.call("consume", {"handle": con.handle})
        with pytest.raises(E.UnknownHandle):
            c2.call("commit", {"handle": 4242})
        assert con.consume(1, timeout=0) == []


def test_connection_loss_surfaces(fake):
    c = kafkad.Client(fake.socket_path)
    con = c.consumer("t")
    fake.kill_connections()
    with pytest.raises(E.ConnectionLost):
        con.consume(1, timeout=2)
    con.close()
    c.close()


def test_watermarks(fake):
    fill(fake, "t", 7, 3)
    with kafkad.Client(fake.socket_path) as c:
        assert c.watermarks("t", 0) == (0, 3) and c.watermarks(b"t", 2) == (0, 2)
        with pytest.raises(E.KafkaError):
            c.watermarks("missing", 0)
        assert c.consumer("t").watermarks("t", 1) == (0, 2)


def test_offsets_for_times_arguments_and_result(fake):
    import datetime as dt

    base = 1_800_000_000_000
    for i in range(5):
        fake.append("t", 0, b"m%d" % i, timestamp=base + 1000 * i)
    with kafkad.Client(fake.socket_path) as c:
        assert c.offsets_for_times({("t", 0): base + 1500, (b"t", 1): -1}) == {("t", 0): 2, ("t", 1): 0}
        aware = dt.datetime.fromtimestamp((base + 3000) / 1000, dt.timezone.utc)
        naive = aware.replace(tzinfo=None)  # read as UTC, as PyKafka does
        assert c.offsets_for_times([("t", 0, aware)]) == {("t", 0): 3}
        assert c.offsets_for_times([("t", 0, naive)]) == {("t", 0): 3}
        assert c.offsets_for_times([("t", 0, base + 99_000)]) == {("t", 0): -1}
        sent = [a for (_i, op, a) in fake.requests if op == "offsets_for_times"]
        assert sent[0]["timestamps"] == [["t", 0, base + 1500], ["t", 1, -1]] and sent[0]["timeout_ms"] == 5000
        assert sent[1]["timestamps"] == [["t", 0, base + 3000]]
        for bad in ([("t", 0, "noon")], [("t", 0, True)], [], {}, [("t", 0)], [("t", "0", 1)], [(5, 0, 1)], 7):
            with pytest.raises(E.InvalidArgument):
                c.offsets_for_times(bad)
        with pytest.raises(E.KafkaError) as ei:
            c.offsets_for_times([("missing", 0, base)])
        assert ei.value.name == "UNKNOWN_TOPIC_OR_PART"
        assert c.consumer("t").offsets_for_times([("t", 0, base)]) == {("t", 0): 0}


# ---------------------------------------------------------------- asyncio


def test_async_consumer(fake):
    fill(fake, "t", 30, 3)

    async def main():
        async with await AsyncClient.connect(fake.socket_path) as c:
            assert await c.watermarks("t", 0) == (0, 10)
            assert await c.offsets_for_times([("t", 0, -1), ("t", 1, -2)]) == {("t", 0): 10, ("t", 1): 0}
            async with await c.consumer("t", group="g", auto_offset_reset="earliest", fetch_max=10) as con:
                assert await con.wait_assignment(5) == {("t", 0), ("t", 1), ("t", 2)}
                got = []
                while len(got) < 12:
                    got.extend(await con.consume(12 - len(got), timeout=1))
                assert len(got) == 12
                done = await con.commit()
                assert sum(o for _t, _p, o in done) == 12
                m = await con.poll(1)
                assert m is not None
                await con.seek({("t", m.partition): 0})
                seen = []
                async for x in con:
                    seen.append(x)
                    if len([y for y in seen if y.partition == m.partition]) >= 10:
                        break
                assert sorted(y.offset for y in seen if y.partition == m.partition)[:10] == list(range(10))
                assert await con.committed() == {(t, p): o for t, p, o in done} | {
                    ("t", p): OFFSET_INVALID for p in range(3) if p not in {p for _t, p, _o in done}}
                assert await con.consume(1, timeout=0.05) is not None
            assert con.closed
            with pytest.raises(E.UnknownHandle):
                await con.consume(1, timeout=0)
            with pytest.raises(E.KafkaError):
                await c.consumer("missing")

    asyncio.run(asyncio.wait_for(main(), 30))


def test_blocked_consume_does_not_hold_up_commits_or_close(fake):
    fill(fake, "t", 5, 1)
    with kafkad.Client(fake.socket_path) as c:
        con = c.consumer("t", group="g", auto_offset_reset="earliest", auto_commit_interval_ms=30)
        assert len(take_all(con, 5)) == 5
        result = []
        t = threading.Thread(target=lambda: result.append(con.consume(10, timeout=None)))
        t.start()  # blocks: nothing more to read
        # the timer commits what was consumed while the other thread waits
        assert eventually(lambda: fake.group_offsets.get(("g", "t", 0)) == 5)
        assert con.commit({("t", 1): 0}) == [("t", 1, 0)]  # so can this thread
        con.close()  # and closing wakes the waiter up
        t.join(10)
        assert not t.is_alive() and result == [[]]
