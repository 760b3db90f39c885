"""PyKafka's ZooKeeper-balanced consumer interop (issue 5), on the ZooKeeper-
mode cluster (zk_cluster): kafkad's zookeeper mode and real PyKafka 2.8
BalancedConsumers (each in a process of its own, tests/python/
zk_pykafka_member.py) in one group. ZooKeeper is read directly with kazoo:
/consumers/<group>/ids/<id> (data: topic) and
/consumers/<group>/owners/<topic>/<leader>-<partition> (data: owner id).

Nothing sleeps to assert: every wait polls toward a deadline and fails with
what it last saw (and the daemon's log)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import pykafka
import pykafka.membershipprotocol as pkmp
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_integration_consumer import produce  # noqa: E402

import kafkad  # noqa: E402
from kafkad import errors as E  # noqa: E402

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
MEMBER = HERE / "zk_pykafka_member.py"
WAIT = 45.0  # upper bound for anything that must eventually happen
DAEMON_EXTRA = "message.timeout.ms = 15000\n"


# --------------------------------------------------------------------------- helpers


def wait_until(pred: Callable[[], Any], what: str, timeout: float = WAIT,
               diag: Optional[Callable[[], str]] = None) -> Any:
    """pred()'s first truthy value; AssertionError with the last value (or
    exception) and diag() after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            v = pred()
            if v:
                return v
            last = v
        except (KazooException, OSError) as e:  # ZooKeeper restarting, ...
            last = e
        if time.monotonic() > deadline:
            extra = ("\n" + diag()) if diag else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}{extra}")
        time.sleep(0.05)


def zk_ids(kz: KazooClient, group: str, topic: str) -> List[str]:
    """The participants of (group, topic), as PyKafka finds them."""
    path = f"/consumers/{group}/ids"
    try:
        kids = kz.get_children(path)
    except NoNodeError:
        return []
    out = []
    for k in kids:
        try:
            data, _ = kz.get(f"{path}/{k}")
        except NoNodeError:
            continue
        if data == topic.encode():
            out.append(k)
    return sorted(out)


def owners_path(group: str, topic: str) -> str:
    """Where PyKafka 2.8 keeps a topic's owner nodes, built as it does:
    '/consumers/{group}/owners/{topic}'.format(topic=topic.name) with the
    name in bytes, which on Python 3 gives "/consumers/<g>/owners/b'<topic>'".
    A member whose owner nodes are elsewhere does not exclude PyKafka
    members from its partitions (nor they it)."""
    return "/consumers/{group}/owners/{topic}".format(group=group, topic=topic.encode())


def zk_owners(kz: KazooClient, group: str, topic: str) -> Dict[int, str]:
    """partition -> owner id, from the owner nodes where PyKafka has them."""
    path = owners_path(group, topic)
    try:
        kids = kz.get_children(path)
    except NoNodeError:
        return {}
    out = {}
    for k in kids:
        try:
            data, _ = kz.get(f"{path}/{k}")
        except NoNodeError:
            continue
        out[int(k.split("-")[1])] = data.decode()
    return out


def zk_owner_dirs(kz: KazooClient, group: str) -> Dict[str, Dict[str, str]]:
    """Every owner node of the group, by topic directory (diagnostics)."""
    out: Dict[str, Dict[str, str]] = {}
    try:
        for d in kz.get_children(f"/consumers/{group}/owners"):
            out[d] = {}
            for k in kz.get_children(f"/consumers/{group}/owners/{d}"):
                try:
                    out[d][k] = kz.get(f"/consumers/{group}/owners/{d}/{k}")[0].decode()
                except NoNodeError:
                    pass
    except NoNodeError:
        pass
    return out


def owned_by(owners: Dict[int, str], member: str) -> Set[int]:
    return {p for p, o in owners.items() if o == member}


def expected_split(pk_topic: Any, members: List[str], protocol: str) -> Dict[str, Set[int]]:
    """What PyKafka 2.8's own decide_partitions gives each member."""
    fn = pkmp.decide_partitions_roundrobin if protocol == "roundrobin" else pkmp.decide_partitions_range
    ids = sorted(m.encode() for m in members)
    return {m.decode(): {p.id for p in fn(ids, pk_topic.partitions, m)} for m in ids}


def split_done(kz: KazooClient, group: str, topic: str, members: List[str], pk_topic: Any,
               protocol: str) -> Optional[Dict[int, str]]:
    """The owner nodes once they are complete and exactly PyKafka's split
    among exactly these participants; else None."""
    if zk_ids(kz, group, topic) != sorted(members):
        return None
    owners = zk_owners(kz, group, topic)
    if set(owners) != set(pk_topic.partitions):
        return None
    want = expected_split(pk_topic, members, protocol)
    if any(owned_by(owners, m) != want[m] for m in members):
        return None
    return owners


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PyKafkaMember:
    """A real PyKafka BalancedConsumer in a subprocess (zk_pykafka_member.py)."""

    def __init__(self, cluster: Any, topic: str, group: str, protocol: str = "range", **cfg: Any) -> None:
        conf = {"bootstrap": cluster.bootstrap, "zookeeper": cluster.zookeeper, "topic": topic,
                "group": group, "protocol": protocol}
        conf.update(cfg)
        self.stderr = tempfile.NamedTemporaryFile(prefix="pykafka-member-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, str(MEMBER), json.dumps(conf)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, universal_newlines=True, bufsize=1)
        self.lock = threading.Lock()
        self.id: Optional[str] = None
        self.held: Optional[Dict[int, int]] = None
        self.committed: Optional[Dict[int, int]] = None
        self.msgs: List[Tuple[int, int, bytes]] = []
        self.parts: List[int] = []
        self.stopped = False
        self.error: Optional[str] = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            with self.lock:
                if kind == "M":
                    p, o, v = rest.split(" ", 2)
                    self.msgs.append((int(p), int(o), v.encode("latin-1")))
                elif kind == "ID":
                    self.id = rest
                elif kind == "HELD":
                    self.held = {int(k): v for k, v in json.loads(rest).items()}
                elif kind == "COMMITTED":
                    self.committed = {int(k): v for k, v in json.loads(rest).items()}
                elif kind == "PARTS":
                    self.parts = json.loads(rest)
                elif kind == "STOPPED":
                    self.stopped = True
                elif kind == "ERROR":
                    self.error = rest

    def log(self) -> str:
        try:
            return "----- PyKafka member stderr -----\n" + Path(self.stderr.name).read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def wait_id(self) -> str:
        wait_until(lambda: self.id or self.error or self.proc.poll() is not None, "PyKafka member start",
                   diag=self.log)
        assert self.id and not self.error, f"PyKafka member failed: {self.error}\n{self.log()}"
        return self.id

    def values(self) -> Set[bytes]:
        with self.lock:
            return {v for _p, _o, v in self.msgs}

    def messages(self) -> List[Tuple[int, int, bytes]]:
        with self.lock:
            return list(self.msgs)

    def command(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.command("stop")
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"PyKafka member did not stop\n{self.log()}")
        assert rc == 0 and self.stopped, f"PyKafka member exited {rc}: {self.error}\n{self.log()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        try:
            os.unlink(self.stderr.name)
        except OSError:
            pass


class KafkadMember:
    """kafkad's zookeeper mode through the native client, consumed by a
    thread of its own (as an app would); messages land in .msgs."""

    def __init__(self, sock: str, topic: str, group: str, zookeeper: str, assignor: str = "range",
                 auto_commit_interval_ms: int = 0, **zk: Any) -> None:
        self.client = kafkad.Client(sock)
        self.con = self.client.consumer(topic, mode="zookeeper", group=group, zookeeper_connect=zookeeper,
                                        assignor=assignor, auto_offset_reset="earliest",
                                        auto_commit_interval_ms=auto_commit_interval_ms,
                                        rebalance_backoff_ms=zk.pop("rebalance_backoff_ms", 300), **zk)
        self.member_id = self.con.member_id
        self.lock = threading.Lock()
        self.msgs: List[Tuple[float, int, int, bytes]] = []
        self._stop = threading.Event()
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                got = self.con.consume(max=500, timeout=0.1)
                now = time.monotonic()
                with self.lock:
                    self.msgs += [(now, m.partition, m.offset, m.value or b"") for m in got]
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            try:
                self.con.close()
            finally:
                self.client.close()

    def values(self) -> Set[bytes]:
        with self.lock:
            return {v for _t, _p, _o, v in self.msgs}

    def messages(self) -> List[Tuple[float, int, int, bytes]]:
        with self.lock:
            return list(self.msgs)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "kafkad member thread did not end"
        assert self.error is None, f"kafkad member failed: {self.error!r}"


@pytest.fixture(scope="module")
def kz(zk_cluster: Any) -> Iterator[KazooClient]:
    k = KazooClient(zk_cluster.zookeeper, timeout=10.0)
    k.start(timeout=30)
    yield k
    k.stop()
    k.close()


@pytest.fixture
def members() -> Iterator[Callable[..., PyKafkaMember]]:
    started: List[PyKafkaMember] = []

    def start(*a: Any, **kw: Any) -> PyKafkaMember:
        m = PyKafkaMember(*a, **kw)
        started.append(m)
        return m

    yield start
    for m in started:
        m.kill()


@pytest.fixture
def kmembers() -> Iterator[Callable[..., KafkadMember]]:
    started: List[KafkadMember] = []

    def start(*a: Any, **kw: Any) -> KafkadMember:
        m = KafkadMember(*a, **kw)
        started.append(m)
        return m

    yield start
    for m in started:
        if m.thread.is_alive():
            m._stop.set()
            m.thread.join(30)


@pytest.fixture
def zkd(zk_daemon_factory: Any) -> Any:
    return zk_daemon_factory(extra=DAEMON_EXTRA)


def pk_topic_of(cluster: Any, topic: str) -> Any:
    """PyKafka's Topic (its partitions, for decide_partitions)."""
    client = pykafka.KafkaClient(hosts=cluster.bootstrap)
    t = client.topics[topic.encode()]
    t._test_client = client  # PyKafka's topics hold their cluster weakly
    return t


def new_group(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- the oracle itself


def test_pykafka_members_split_as_the_oracle_says(zk_cluster, kz, members):
    """Two real PyKafka members: the harness (ZooKeeper, ZK-mode broker) and
    split_done() agree with PyKafka itself, so the kafkad tests below
    compare against PyKafka's real behaviour."""
    topic = zk_cluster.new_topic("zkpk", partitions=12)
    group = new_group("pk")
    pk_topic = pk_topic_of(zk_cluster, topic)
    a = members(zk_cluster, topic, group)
    aid = a.wait_id()
    wait_until(lambda: split_done(kz, group, topic, [aid], pk_topic, "range"), "one member owns all", diag=a.log)
    b = members(zk_cluster, topic, group)
    bid = b.wait_id()
    owners = wait_until(lambda: split_done(kz, group, topic, [aid, bid], pk_topic, "range"), "PyKafka's split",
                        diag=lambda: f"{zk_owners(kz, group, topic)}\n{a.log()}{b.log()}")
    lo = min(aid, bid)
    assert owned_by(owners, lo) == {0, 1, 10, 11, 2, 3}  # string order: 0 1 10 11 2 3 | 4 ... 9
    a.stop()
    wait_until(lambda: split_done(kz, group, topic, [bid], pk_topic, "range"), "the other takes all", diag=b.log)
    b.stop()


# --------------------------------------------------------------------------- a. split with PyKafka


@pytest.mark.parametrize("assignor", ["range", "roundrobin"])
def test_split_with_pykafka_member(zk_cluster, zkd, kz, members, kmembers, assignor):
    # 12 partitions: PyKafka sorts "<topic>-<leader>-<id>" as strings (10 < 2)
    topic = zk_cluster.new_topic("zksplit", partitions=12)
    group = new_group("split")
    pk_topic = pk_topic_of(zk_cluster, topic)
    everything = set(range(12))

    def diag() -> str:
        return f"owner nodes={zk_owner_dirs(kz, group)} ids={zk_ids(kz, group, topic)}\n{zkd.log()[-6000:]}"

    k = kmembers(zkd.socket, topic, group, zk_cluster.zookeeper, assignor=assignor)
    kid = k.member_id
    host, _, uid = (kid or "").rpartition(":")
    assert host == socket.gethostname() and str(uuid.UUID(uid)) == uid, kid
    wait_until(lambda: split_done(kz, group, topic, [kid], pk_topic, assignor), "kafkad alone owns all", diag=diag)

    p = members(zk_cluster, topic, group, protocol=assignor)
    pid = p.wait_id()
    owners = wait_until(lambda: split_done(kz, group, topic, [kid, pid], pk_topic, assignor),
                        "kafkad + PyKafka split as PyKafka decides", diag=lambda: diag() + p.log())
    mine, theirs = owned_by(owners, kid), owned_by(owners, pid)
    assert mine and theirs and mine | theirs == everything

    # produced after the split: each member gets all of its partitions' share, and only that
    sent = produce(zkd.socket, topic, 240, 12, prefix=f"a1{assignor}")
    for who, got, parts in (("kafkad", k, mine), ("PyKafka", p, theirs)):
        want = {v for part, v in sent if part in parts}
        wait_until(lambda: want <= got.values(), f"{who}'s share of the first batch", diag=diag)
    kfirst = {(part, v) for _t, part, _o, v in k.messages() if v.startswith(b"a1")}
    assert {part for part, _v in kfirst} == mine, "kafkad consumed only (and all) the partitions it owns"
    assert {part for part, _o, v in p.messages() if v.startswith(b"a1")} == theirs

    # the PyKafka member leaves: kafkad owns everything and reads everything
    p.stop()
    wait_until(lambda: split_done(kz, group, topic, [kid], pk_topic, assignor), "kafkad takes all", diag=diag)
    sent2 = produce(zkd.socket, topic, 120, 12, prefix=f"a2{assignor}")
    wait_until(lambda: {v for _p, v in sent2} <= k.values(), "kafkad reads all partitions", diag=diag)

    # the reverse: a PyKafka member joins, kafkad's consumer closes, PyKafka owns everything
    q = members(zk_cluster, topic, group, protocol=assignor)
    qid = q.wait_id()
    wait_until(lambda: split_done(kz, group, topic, [kid, qid], pk_topic, assignor), "split again",
               diag=lambda: diag() + q.log())
    k.close()
    wait_until(lambda: split_done(kz, group, topic, [qid], pk_topic, assignor),
               "PyKafka alone owns all after kafkad closed", diag=lambda: diag() + q.log())
    sent3 = produce(zkd.socket, topic, 120, 12, prefix=f"a3{assignor}")
    wait_until(lambda: {v for _p, v in sent3} <= q.values(), "PyKafka reads all partitions",
               diag=lambda: diag() + q.log())
    q.stop()


# --------------------------------------------------------------------------- b. handovers under load


def test_no_message_lost_across_handovers(zk_cluster, zkd, kz, members, kmembers):
    topic = zk_cluster.new_topic("zkload", partitions=6)
    group = new_group("load")
    pk_topic = pk_topic_of(zk_cluster, topic)
    acked: List[bytes] = []
    stop = threading.Event()
    perr: List[BaseException] = []

    def producer() -> None:
        i = 0
        try:
            with kafkad.Client(zkd.socket) as c:
                while not stop.is_set():
                    msgs = [{"value": b"b-%d" % (i + j), "partition": (i + j) % 6} for j in range(20)]
                    res = c.produce_batch(topic, msgs, ack="wait", timeout=30)
                    assert not res.errors, res.errors[:3]
                    acked.extend(m["value"] for m in msgs)
                    i += 20
                    time.sleep(0.02)
        except BaseException as e:
            perr.append(e)

    def diag() -> str:
        return f"owner nodes={zk_owner_dirs(kz, group)} ids={zk_ids(kz, group, topic)}\n{zkd.log()[-6000:]}"

    def split(*ids: str) -> Dict[int, str]:
        return wait_until(lambda: split_done(kz, group, topic, list(ids), pk_topic, "range"),
                          f"split among {ids}", diag=diag)

    pt = threading.Thread(target=producer, daemon=True)
    pt.start()
    try:
        k = kmembers(zkd.socket, topic, group, zk_cluster.zookeeper, auto_commit_interval_ms=300)
        split(k.member_id)
        p1 = members(zk_cluster, topic, group, auto_commit=True, auto_commit_interval_ms=300)
        split(k.member_id, p1.wait_id())
        p2 = members(zk_cluster, topic, group, auto_commit=True, auto_commit_interval_ms=300)
        split(k.member_id, p1.id, p2.wait_id())
        p1.stop()
        split(k.member_id, p2.id)
        k.close()  # commits what its thread consumed, then leaves
        split(p2.id)
        k2 = kmembers(zkd.socket, topic, group, zk_cluster.zookeeper, auto_commit_interval_ms=300)
        split(k2.member_id, p2.id)
        assert wait_until(lambda: len(acked) > 600, "messages produced during the handovers")
    finally:
        stop.set()
        pt.join(60)
    assert not perr, perr
    sent = set(acked)
    assert len(sent) == len(acked)

    def seen() -> Set[bytes]:
        return k.values() | k2.values() | p1.values() | p2.values()

    wait_until(lambda: sent <= seen(), "every produced message consumed by some member",
               diag=lambda: f"missing {len(sent - seen())} e.g. {sorted(sent - seen())[:10]}\n{diag()}")
    p2.stop()
    k2.close()


# --------------------------------------------------------------------------- c. ZooKeeper restart


def test_zookeeper_restart_under_running_member(zk_cluster, zkd, kz, members, kmembers):
    topic = zk_cluster.new_topic("zkrestart", partitions=6)
    group = new_group("restart")
    pk_topic = pk_topic_of(zk_cluster, topic)

    def diag() -> str:
        return f"owner nodes={zk_owner_dirs(kz, group)} ids={zk_ids(kz, group, topic)}\n{zkd.log()[-8000:]}"

    # session 6 s: the ownership lease (3/4 of it) lapses 4.5 s into the outage at the latest
    k = kmembers(zkd.socket, topic, group, zk_cluster.zookeeper, zookeeper_session_timeout_ms=6000)
    wait_until(lambda: split_done(kz, group, topic, [k.member_id], pk_topic, "range"), "kafkad owns all",
               diag=diag)
    sent = produce(zkd.socket, topic, 60, 6, prefix="c0")
    wait_until(lambda: {v for _p, v in sent} <= k.values(), "kafkad consumes before the restart", diag=diag)

    deliveries: List[Tuple[float, bool]] = []
    stop = threading.Event()

    def producer() -> None:
        with kafkad.Client(zkd.socket) as c:
            i = 0
            while not stop.is_set():
                try:
                    c.produce(topic, b"cp-%d" % i, partition=i % 6, ack="wait", timeout=10)
                    deliveries.append((time.monotonic(), True))
                except E.KafkadError:
                    deliveries.append((time.monotonic(), False))
                i += 1
                time.sleep(0.05)

    pt = threading.Thread(target=producer, daemon=True)
    pt.start()
    try:
        t_down = time.monotonic()
        zk_cluster.zk_stop()
        t_stopped = time.monotonic()
        # the outage lasts until 9 s; the lease lapsed by 4.5 s: what is produced at
        # 6 s must not be handed out before ZooKeeper is back
        time.sleep(max(0.0, t_down + 6.0 - time.monotonic()))
        during = produce(zkd.socket, topic, 30, 6, prefix="c-down")
        time.sleep(max(0.0, t_down + 9.0 - time.monotonic()))
        early = k.values() & {v for _p, v in during}
        t_up = time.monotonic()
        zk_cluster.zk_start()
    finally:
        stop.set()
        pt.join(30)
    ok_down = [t for t, ok in deliveries if ok and t_stopped < t < t_up]
    assert len(ok_down) >= 10, f"produce kept working while ZooKeeper was down: {len(ok_down)} deliveries"
    assert not early, f"kafkad handed out {len(early)} messages while its ZooKeeper lease had lapsed"

    # recovery: ownership complete again, consumption resumes, only from owned partitions
    wait_until(lambda: len(zk_ids(kz, group, topic)) == 1 and split_done(
        kz, group, topic, zk_ids(kz, group, topic), pk_topic, "range"), "ownership recovered", diag=diag)
    kid = zk_ids(kz, group, topic)[0]
    wait_until(lambda: {v for _p, v in during} <= k.values(), "messages produced during the outage", diag=diag)
    p = members(zk_cluster, topic, group)
    pid = p.wait_id()
    owners = wait_until(lambda: split_done(kz, group, topic, [kid, pid], pk_topic, "range"),
                        "a PyKafka member joins after the restart", diag=lambda: diag() + p.log())
    mine = owned_by(owners, kid)
    after = produce(zkd.socket, topic, 60, 6, prefix="c-after")
    wait_until(lambda: {v for part, v in after if part in mine} <= k.values(), "kafkad's share after", diag=diag)
    wait_until(lambda: {v for part, v in after if part not in mine} <= p.values(), "PyKafka's share after",
               diag=lambda: diag() + p.log())
    got = {part for _t, part, _o, v in k.messages() if v.startswith(b"c-after")}
    assert got == mine, f"kafkad consumed partitions {got}, owns {mine}"
    p.stop()
    k.close()


# --------------------------------------------------------------------------- d. session expiry


def test_session_expiry_while_stopped(zk_cluster, zkd, kz, members):
    topic = zk_cluster.new_topic("zkexpire", partitions=6)
    group = new_group("expire")
    pk_topic = pk_topic_of(zk_cluster, topic)

    def diag() -> str:
        return f"owner nodes={zk_owner_dirs(kz, group)} ids={zk_ids(kz, group, topic)}\n{zkd.log()[-8000:]}"

    cl = kafkad.Client(zkd.socket)
    # raw calls: no prefetching, so whatever a consume answers was handed out then
    res = cl.call("consumer_open", {"mode": "zookeeper", "topic": topic, "group": group,
                                    "zookeeper_connect": zk_cluster.zookeeper,
                                    "zookeeper_session_timeout_ms": 4000,  # 2 x tickTime: ZooKeeper's minimum
                                    "rebalance_backoff_ms": 300, "auto_offset_reset": "earliest"})
    h, kid = res["handle"], res["member_id"]

    def consume() -> List[Tuple[int, int, bytes]]:
        r = cl.call("consume", {"handle": h, "max": 1000, "timeout_ms": 100})
        return [(m[1], m[2], m[5]) for m in r["messages"]]

    p = members(zk_cluster, topic, group)
    pid = p.wait_id()
    owners = wait_until(lambda: split_done(kz, group, topic, [kid, pid], pk_topic, "range"), "split",
                        diag=lambda: diag() + p.log())
    mine = owned_by(owners, kid)
    consume()
    # the daemon fetches its partitions' share of this batch, but nobody consumes it from kafkad
    sent = produce(zkd.socket, topic, 120, 6, prefix="d1")
    wait_until(lambda: {v for part, v in sent if part not in mine} <= p.values(), "PyKafka's share",
               diag=lambda: diag() + p.log())
    assert zkd.proc is not None
    os.kill(zkd.proc.pid, signal.SIGSTOP)
    try:
        # the daemon's session expires; PyKafka takes every partition and reads kafkad's share
        wait_until(lambda: split_done(kz, group, topic, [pid], pk_topic, "range"),
                   "PyKafka owns all while kafkad is stopped", diag=lambda: diag() + p.log())
        wait_until(lambda: {v for _p, v in sent} <= p.values(), "PyKafka reads kafkad's former share",
                   diag=lambda: diag() + p.log())
    finally:
        os.kill(zkd.proc.pid, signal.SIGCONT)

    # after SIGCONT: whatever kafkad hands out is from partitions it owns in ZooKeeper then
    handed: List[Tuple[int, int, bytes]] = []

    def back() -> Optional[Dict[int, str]]:
        got = consume()
        owners_now = zk_owners(kz, group, topic)
        ours = {part for part, o in owners_now.items() if o != pid}
        bad = [m for m in got if m[0] not in ours]
        assert not bad, f"kafkad handed out {len(bad)} messages of partitions it does not own: {bad[:5]} " \
                        f"(owners {owners_now})\n{zkd.log()[-8000:]}"
        handed.extend(got)
        ids = zk_ids(kz, group, topic)
        return split_done(kz, group, topic, ids, pk_topic, "range") if len(ids) == 2 and pid in ids else None

    owners = wait_until(back, "kafkad registered again and got its share back", diag=lambda: diag() + p.log())
    kid2 = next(i for i in zk_ids(kz, group, topic) if i != pid)
    mine2 = owned_by(owners, kid2)
    assert mine2, owners
    sent2 = produce(zkd.socket, topic, 60, 6, prefix="d2")

    def got_share() -> bool:
        back()
        return {v for part, v in sent2 if part in mine2} <= {v for _p, _o, v in handed}

    wait_until(got_share, "kafkad's share after re-registering", diag=diag)
    assert {part for part, _o, v in handed if v.startswith(b"d2")} == mine2
    cl.call("consumer_close", {"handle": h})
    cl.close()
    p.stop()


# --------------------------------------------------------------------------- e. offsets


def test_offsets_resume_across_kafkad_and_pykafka(zk_cluster, zkd, kz, members, monkeypatch):
    from kafkad.pykafka import KafkaClient

    topic = zk_cluster.new_topic("zkoff", partitions=4)
    group = new_group("off")
    produce(zkd.socket, topic, 40, 4, prefix="e")  # 10 per partition
    monkeypatch.setenv("KAFKAD_SOCKET", zkd.socket)
    t = KafkaClient(zk_cluster.bootstrap).topics[topic]

    def diag() -> str:
        return f"owner nodes={zk_owner_dirs(kz, group)} ids={zk_ids(kz, group, topic)}\n{zkd.log()[-6000:]}"

    def last(held: Dict[int, int]) -> Dict[int, int]:
        return {p: (-1 if o == -2 else o) for p, o in held.items()}

    # kafkad consumes 17 and commits
    c = t.get_balanced_consumer(consumer_group=group.encode(), zookeeper_connect=zk_cluster.zookeeper,
                                consumer_timeout_ms=10000)
    ours = [c.consume() for _ in range(17)]
    assert all(m is not None for m in ours)
    c.commit_offsets()
    held = last(c.held_offsets)
    assert sum(o + 1 for o in held.values()) == 17 and sorted(held) == [0, 1, 2, 3]
    kid = c.member_id
    c.stop()
    wait_until(lambda: kid not in zk_ids(kz, group, topic) and not zk_owners(kz, group, topic),
               "kafkad left the group", diag=diag)

    # PyKafka resumes at exactly the next offsets, consumes 10, commits
    p = members(zk_cluster, topic, group, limit=10)
    p.wait_id()
    wait_until(lambda: p.held is not None and len(p.messages()) == 10, "PyKafka consumed 10", diag=p.log)
    assert last(p.held) == held, f"PyKafka resumed at {p.held}, kafkad committed after {held}\n{p.log()}"
    for part in range(4):
        offs = [o for q, o, _v in p.messages() if q == part]
        assert offs == list(range(held[part] + 1, held[part] + 1 + len(offs))), (part, offs, held)
    p.command("commit")
    wait_until(lambda: p.committed is not None, "PyKafka commit", diag=p.log)
    pheld = last(p.committed)
    p.stop()
    wait_until(lambda: not zk_ids(kz, group, topic) and not zk_owners(kz, group, topic), "PyKafka left",
               diag=diag)

    # kafkad resumes where PyKafka committed and reads exactly the rest
    c2 = t.get_balanced_consumer(consumer_group=group.encode(), zookeeper_connect=zk_cluster.zookeeper,
                                 consumer_timeout_ms=3000)
    assert last(c2.held_offsets) == pheld
    rest = list(c2)
    seen = [(m.partition_id, m.offset) for m in ours] + [(q, o) for q, o, _v in p.messages()] + \
        [(m.partition_id, m.offset) for m in rest]
    assert sorted(seen) == [(q, o) for q in range(4) for o in range(10)], "each message exactly once"
    c2.stop()


# --------------------------------------------------------------------------- f. bad input


def test_bad_input(zk_cluster, zkd):
    topic = zk_cluster.new_topic("zkbad", partitions=2)
    other = zk_cluster.new_topic("zkbad2", partitions=2)
    zk = zk_cluster.zookeeper
    with kafkad.Client(zkd.socket, timeout=30) as cl:
        def open_(**kw: Any) -> Any:
            args = {"mode": "zookeeper", "topic": topic, "group": "bad", "zookeeper_connect": zk}
            args.update(kw)
            return cl.call("consumer_open", {k: v for k, v in args.items() if v is not None})

        closed = free_port()
        t0 = time.monotonic()
        with pytest.raises(E.TimedOut) as ei:
            open_(zookeeper_connect=f"127.0.0.1:{closed}", zookeeper_connection_timeout_ms=1500)
        took = time.monotonic() - t0
        assert ei.value.code == 7 and 1.0 <= took <= 6.0, (ei.value, took)
        with pytest.raises(E.InvalidArgument):
            open_(zookeeper_connect=None)
        with pytest.raises(E.InvalidArgument):
            open_(topic=None, topics=[topic, other])
        with pytest.raises(E.InvalidArgument):
            open_(assignor="cooperative-sticky")
        with pytest.raises(E.InvalidArgument):
            open_(group=None)
        with pytest.raises(E.InvalidArgument) as ei2:
            open_(zookeeper_connect=zk + "/nothing")
        assert "/brokers/ids" in ei2.value.message, ei2.value.message
        with pytest.raises(E.KafkaError) as ei3:
            open_(topic="no-such-topic-" + uuid.uuid4().hex[:8])
        assert ei3.value.code == 10003 and ei3.value.name == "UNKNOWN_TOPIC_OR_PART"
        with pytest.raises(E.InvalidArgument):
            cl.call("consumer_open", {"mode": "group", "topic": topic, "group": "g", "zookeeper_connect": zk})
        # the daemon keeps serving: a good open works on the same connection
        assert cl.ping() > 0
        res = open_()
        assert res["member_id"] and res["attached"] == 1
        cl.call("consumer_close", {"handle": res["handle"]})


# --------------------------------------------------------------------------- declared member


def test_declared_member_outlives_app_restarts(zk_cluster, zk_daemon_factory, kz):
    """A [consumer NAME] section with mode = zookeeper: the daemon registers
    at startup, before any app; apps attach to that member (same id) and
    detach without it leaving the group, so PyKafka members see no
    rebalance when an app restarts; stats shows it and its lease."""
    topic = zk_cluster.new_topic("zkdecl", partitions=3)
    group = new_group("zkdecl")
    d = zk_daemon_factory(extra=DAEMON_EXTRA + (
        f"[consumer legacy]\nmode = zookeeper\nzookeeper_connect = {zk_cluster.zookeeper}\n"
        f"group = {group}\ntopics = {topic}\nauto_offset_reset = earliest\n"))
    ids = wait_until(lambda: zk_ids(kz, group, topic), "the declared member's registration")
    assert len(ids) == 1
    member = ids[0]
    wait_until(lambda: set(zk_owners(kz, group, topic).values()) == {member}
               and len(zk_owners(kz, group, topic)) == 3, "the declared member owning every partition")
    with kafkad.Client(d.socket, timeout=30) as cl:
        for i in range(15):
            cl.produce(topic, b"decl-%d" % i, partition=i % 3)
        assert cl.flush(30) == 0
        st = {e["consumer"]: e for e in cl.stats()["consumers"]}
        entry = [e for e in st.values() if e["mode"] == "zookeeper"]
        assert len(entry) == 1 and entry[0]["declared"] and entry[0]["member_id"] == member, st
        assert entry[0]["attached"] == 0
        wait_until(lambda: [e for e in cl.stats()["consumers"] if e["mode"] == "zookeeper"][0]
                   ["ownership_confirmed"], "the ownership lease")
        got: List[bytes] = []
        for round_ in range(2):  # an app, then the same app restarted
            res = cl.call("consumer_open", {"mode": "zookeeper", "group": group, "topic": topic,
                                            "zookeeper_connect": zk_cluster.zookeeper})
            assert res["member_id"] == member, res
            h = res["handle"]
            want = 8 if round_ == 0 else 15

            def take() -> bool:
                r = cl.call("consume", {"handle": h, "max": 100, "timeout_ms": 300})
                got.extend(m[5] for m in r["messages"])
                return len(got) >= want

            wait_until(take, f"{want} messages through the declared member")
            cl.call("commit", {"handle": h})  # so the next attachment goes on from here
            cl.call("consumer_close", {"handle": h})
            # the member stays registered and keeps its partitions
            assert zk_ids(kz, group, topic) == [member]
            assert set(zk_owners(kz, group, topic).values()) == {member}
        assert sorted(got) == sorted(b"decl-%d" % i for i in range(15)), sorted(got)
    assert d.stop() == 0


def test_client_vanishing_mid_open_leaves_no_member(zk_cluster, zk_daemon_factory, kz):
    """consumer_open in zookeeper mode from connections that close before
    the answer: whether the daemon dropped the prepared consumer or attached
    and then lost its only user, no member stays registered in ZooKeeper and
    no owner node is left; the daemon serves on and exits cleanly."""
    from test_integration_consumer import vanish_mid_open

    topic = zk_cluster.new_topic("zkvanish", partitions=2)
    group = new_group("zkvanish")
    d = zk_daemon_factory(extra=DAEMON_EXTRA + "[daemon]\nconsumer_linger_ms = 0\n")
    args = {"mode": "zookeeper", "group": group, "topic": topic, "zookeeper_connect": zk_cluster.zookeeper}
    for _ in range(3):
        vanish_mid_open(d.socket, args)
    with kafkad.Client(d.socket, timeout=30) as cl:
        assert cl.ping() > 0
        wait_until(lambda: not [e for e in cl.stats()["consumers"] if group in e["consumer"]],
                   "the vanished connections' consumers to close")
        wait_until(lambda: zk_ids(kz, group, topic) == [] and zk_owners(kz, group, topic) == {},
                   "no member or owner node left in ZooKeeper",
                   diag=lambda: f"ids {zk_ids(kz, group, topic)} owners {zk_owners(kz, group, topic)}")
        res = cl.call("consumer_open", args)  # a member can still join
        assert res["member_id"]
        wait_until(lambda: zk_ids(kz, group, topic) == [res["member_id"]], "the new member's registration")
        cl.call("consumer_close", {"handle": res["handle"]})
    assert d.stop() == 0


# --------------------------------------------------------------------------- the seed's example


class _Forwarder:
    """localhost:2181 -> the test ZooKeeper (the seed names that address)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listeners: List[socket.socket] = []
        deadline = time.monotonic() + 20
        while True:
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", 2181))
                break
            except OSError as e:
                s.close()
                if time.monotonic() > deadline:
                    raise AssertionError(f"the seed's example connects to localhost:2181, which is taken: {e}")
                time.sleep(0.2)
        self.listeners.append(s)
        try:  # "localhost" may resolve to ::1 first
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s6.bind(("::1", 2181))
            self.listeners.append(s6)
        except OSError:
            pass
        self.closed = False
        for ls in self.listeners:
            ls.listen(16)
            ls.settimeout(0.2)
            threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls: socket.socket) -> None:
        while not self.closed:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        for ls in self.listeners:
            ls.close()


def test_seed_balanced_consumer(zk_cluster, zkd, kz, monkeypatch):
    name = zk_cluster.new_topic("seedbal", partitions=4)
    sent = produce(zkd.socket, name, 40, 4)
    monkeypatch.setenv("KAFKAD_SOCKET", zkd.socket)  # the seed's code names no socket
    fwd = _Forwarder(zk_cluster.zookeeper)
    try:
        # the seed's code, import changed to kafkad.pykafka
        from kafkad.pykafka import KafkaClient
        client = KafkaClient(hosts="127.0.0.1:9092")
        topic = client.topics[name.encode()]
        consumer_a = topic.get_balanced_consumer(
            consumer_group=b"charlie",
            zookeeper_connect="localhost:2181")

        got = [consumer_a.consume() for _ in range(40)]
        assert sorted(m.value for m in got) == sorted(v for _p, v in sent)
        assert sorted(consumer_a.partitions) == [0, 1, 2, 3]
        # a second one in the same group shares the daemon's member: the partitions split
        consumer_b = topic.get_balanced_consumer(
            consumer_group=b"charlie",
            zookeeper_connect="localhost:2181", consumer_timeout_ms=500)
        for c in (consumer_a, consumer_b):  # each learns its leases from its consume results
            wait_until(lambda: c.consume(block=False) is None and len(c.partitions) == 2, "two partitions each")
        assert sorted(list(consumer_a.partitions) + list(consumer_b.partitions)) == [0, 1, 2, 3]
        mid = consumer_a.member_id
        assert mid and consumer_b.member_id == mid
        assert zk_ids(kz, "charlie", name) == [mid]
        assert set(zk_owners(kz, "charlie", name).values()) == {mid}
        consumer_b.stop()
        consumer_a.stop()
    finally:
        fwd.close()
