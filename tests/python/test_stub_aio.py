"""kafkad.aio.AsyncClient against FakeDaemon (no real daemon)."""

import asyncio
import os
import sys

import pytest

_STUB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "client-stubs", "python"))
if _STUB not in sys.path:
    sys.path.insert(0, _STUB)

from kafkad import RecordMetadata  # noqa: E402
from kafkad import errors as E  # noqa: E402
from kafkad.aio import AsyncClient  # noqa: E402
from kafkad.testing import FakeDaemon  # noqa: E402


@pytest.fixture
def fake():
    f = FakeDaemon(topics={"t": 3}).start()
    yield f
    f.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_basic_ops(fake):
    async def main():
        async with await AsyncClient.connect(fake.socket_path) as c:
            assert c.hello.max_batch == 10000
            assert await c.ping() > 0
            md = await c.metadata()
            assert [p.id for p in md.topics["t"].partitions] == [0, 1, 2]
            assert "daemon" in await c.stats()
            seqs = [await c.produce("t", b"m%d" % i) for i in range(100)]
            assert seqs == list(range(1, 101))
            md = await c.produce("t", b"sync", key=b"k", ack="wait")
            assert isinstance(md, RecordMetadata)
            assert await c.flush() == 0
            reps = await c.poll_reports(max=1000)
            assert sorted(r.seq for r in reps) == seqs and all(r.ok for r in reps)
            with pytest.raises(E.KafkaError):
                await c.produce("nope", b"x", ack="wait")
            with pytest.raises(E.UnknownOp):
                await c.call("nope")
        assert c.closed

    run(main())
    assert len(fake.messages("t")) == 101


def test_flush_calls_back_as_reports_arrive(fake):
    fake.auto_deliver = False

    async def main():
        got = []
        c = await AsyncClient.connect(fake.socket_path, linger_ms=1, on_delivery=got.append)
        first = await c.produce("t", b"a")
        await c.poll(0.05)
        assert await asyncio.get_running_loop().run_in_executor(None, fake.wait_produced, 1)
        fake.deliver()
        await c.produce("t", b"b")
        flushing = asyncio.ensure_future(c.flush(10))
        for _ in range(300):
            if got:
                break
            await asyncio.sleep(0.01)
        assert [r.seq for r in got] == [first]
        assert not flushing.done()  # still waiting for "b"
        assert await asyncio.get_running_loop().run_in_executor(None, fake.wait_produced, 2)
        fake.deliver()
        assert await flushing == 0
        assert len(got) == 2 and all(r.error is None for r in got)
        await c.close()

    run(main())


def test_batching_linger_and_callbacks(fake):
    async def main():
        got = []
        c = await AsyncClient.connect(fake.socket_path, batch_messages=10, linger_ms=20, on_delivery=got.append)
        for i in range(25):
            await c.produce("t", b"x")
        for _ in range(100):
            reqs = [a for (_i, op, a) in fake.requests if op == "produce"]
            if len(reqs) == 2:
                break
            await asyncio.sleep(0.01)
        assert [len(a["messages"]) for a in reqs] == [10, 10]
        await asyncio.sleep(0.2)  # linger sends the last 5
        reqs = [a for (_i, op, a) in fake.requests if op == "produce"]
        assert [len(a["messages"]) for a in reqs] == [10, 10, 5]
        n = 0
        for _ in range(50):
            n += await c.poll(0.1)
            if n == 25:
                break
        assert n == 25 and len(got) == 25
        await c.close()

    run(main())


def test_produce_batch_and_concurrent_tasks(fake):
    async def main():
        async with await AsyncClient.connect(fake.socket_path) as c:
            r = await c.produce_batch("t", [b"a", {"value": b"b", "key": b"k"}, (b"c",)])
            assert r.count == 3 and r.seq == 1
            res = await asyncio.gather(*[c.produce("t", b"w%d" % i, ack="wait", partition=i % 3) for i in range(30)])
            assert [m.partition for m in res] == [i % 3 for i in range(30)]
            await c.flush()
            assert len(await c.poll_reports()) == 3

    run(main())


def test_max_pending_and_connection_loss():
    async def main(f):
        c = await AsyncClient.connect(f.socket_path, batch_messages=20, linger_ms=10000)
        for i in range(300):
            await c.produce("t", b"x")
        assert await c.flush(5) == 0
        assert len(await c.poll_reports(max=1000)) == 300
        f.auto_deliver = False
        s = await c.produce("t", b"lost?", ack="report")
        await c._send_buffer()
        f.kill_connections()
        with pytest.raises(E.ConnectionLost):
            for _ in range(100):
                await c.ping()
                await asyncio.sleep(0.01)
        reps = await c.poll_reports()
        assert [r.seq for r in reps] == [s] and isinstance(reps[0].error, E.ConnectionLost)

    with FakeDaemon(topics={"t": 2}, max_pending=50, piggyback=False) as f:
        run(main(f))


def test_produce_batch_spanning_several_batches_keeps_seqs(fake):
    async def main():
        async with await AsyncClient.connect(fake.socket_path, batch_messages=100, linger_ms=10000) as c:
            seq_value = {}
            for b in range(0, 1000, 250):
                res = await c.produce_batch("t", [{"value": b"%d" % i} for i in range(b, b + 250)])
                for j in range(250):
                    seq_value[res.seq + j] = b"%d" % (b + j)
            assert await c.flush() == 0
            return seq_value, await c.poll_reports(max=10000)

    seq_value, reps = run(main())
    assert sorted(r.seq for r in reps) == sorted(seq_value)
    stored = {(m.partition, m.offset): m.value for m in fake.messages("t")}
    for r in reps:
        assert stored[(r.partition, r.offset)] == seq_value[r.seq]
