"""Real Kafka 3.9.1 broker for pytest suites, via tests/kafka/cluster.

Import it from a conftest.py (this module is not a conftest itself):

    from conftest_kafka import make_cluster_fixture, start_cluster
    kafka_cluster = make_cluster_fixture()                 # session scoped, KRaft
    kafka_zk_cluster = make_cluster_fixture(mode="zk", name="kafka_zk_cluster")

    def test_x(kafka_cluster):
        topic = kafka_cluster.new_topic("x")             # unique name, 4 partitions
        kafka_cluster.create_topic("fixed-name", partitions=2)
        kafka_cluster.broker_stop(); kafka_cluster.broker_start()
        kafka_zk_cluster.zk_stop(); kafka_zk_cluster.zk_start()   # zk mode
        ... kafka_cluster.bootstrap ...                  # "127.0.0.1:PORT"

Shared broker: if KAFKAD_TEST_BOOTSTRAP is set (e.g. by the Makefile, which
started one broker for all suites), start_cluster() reuses it instead of
starting one; KAFKAD_TEST_KAFKA_DIR names its cluster dir (needed for
broker_stop/broker_start and to learn its mode / ZooKeeper address). A shared
cluster is only reused for the mode it runs in (read from DIR/env, else
assumed "kraft" unless KAFKAD_TEST_ZOOKEEPER is set); a test asking for the
other mode gets its own cluster. stop() never stops a shared cluster.

Everything fails loudly: ClusterError (a RuntimeError) with the script's
output and the broker log tail. Nothing here ever skips a test.

Set KAFKAD_TEST_KEEP_KAFKA=1 to keep the cluster dir (logs) after stop().
"""

import atexit
import os
import shlex
import subprocess
import sys
import threading
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "tests" / "kafka" / "cluster"

FETCH_TIMEOUT = 1800   # first run downloads ~100 jars through maven
START_TIMEOUT = 90     # broker readiness, as tests/kafka/cluster's default

__all__ = ["Cluster", "ClusterError", "start_cluster", "make_cluster_fixture",
           "CLUSTER_SCRIPT"]


class ClusterError(RuntimeError):
    pass


def _run(args, timeout):
    cmd = [sys.executable, str(CLUSTER_SCRIPT)] + [str(a) for a in args]
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise ClusterError("%s timed out after %ss\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(cmd), timeout, e.stdout or "", e.stderr or ""))
    if r.returncode != 0:
        raise ClusterError("%s failed (exit %d)\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(cmd), r.returncode, r.stdout, r.stderr))
    return r.stdout


def _parse_kv(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        vals = shlex.split(v)
        out[k] = vals[0] if vals else ""
    return out


class Cluster(object):
    """One running test cluster (a broker, plus ZooKeeper in zk mode).

    bootstrap: "127.0.0.1:PORT"; dir: cluster dir (str) or None for a shared
    broker given only by address; zookeeper: "127.0.0.1:PORT" or None;
    mode: "kraft" | "zk"; owned: False for a shared (reused) broker."""

    def __init__(self, bootstrap, dir=None, zookeeper=None, mode="kraft", owned=True):
        self.bootstrap = bootstrap
        self.dir = dir
        self.zookeeper = zookeeper
        self.mode = mode
        self.owned = owned
        self._stopped = False
        self._lock = threading.Lock()

    def __repr__(self):
        return "Cluster(bootstrap=%r, dir=%r, zookeeper=%r, mode=%r, owned=%r)" % (
            self.bootstrap, self.dir, self.zookeeper, self.mode, self.owned)

    def _where(self):
        if self.dir:
            return ["--dir", self.dir]
        return ["--bootstrap", self.bootstrap]

    def _need_dir(self, what):
        if not self.dir:
            raise ClusterError("%s needs the cluster dir; set KAFKAD_TEST_KAFKA_DIR "
                               "for the shared broker %s" % (what, self.bootstrap))

    def create_topic(self, name, partitions=4, exist_ok=False, config=None):
        """Create a topic (replication factor 1) and wait until every
        partition has a leader. config: dict of topic configs."""
        args = ["create-topic", name, "--partitions", partitions] + self._where()
        for k, v in (config or {}).items():
            args += ["--config", "%s=%s" % (k, v)]
        if exist_ok:
            args.append("--if-not-exists")
        _run(args, timeout=120)
        return name

    def new_topic(self, prefix="t", partitions=4, config=None):
        """Create a topic with a unique name (safe on a shared broker)."""
        name = "%s-%s" % (prefix, uuid.uuid4().hex[:12])
        return self.create_topic(name, partitions=partitions, config=config)

    def metadata(self, *topics):
        """The script's human-readable metadata dump (brokers, leaders)."""
        return _run(["metadata"] + list(topics) + self._where(), timeout=30)

    def broker_stop(self):
        """Stop only the broker (graceful, SIGKILL after a timeout)."""
        self._need_dir("broker_stop")
        _run(["broker-stop", "--dir", self.dir], timeout=120)

    def broker_start(self):
        """Start the broker again on the same port with the same data; returns
        once it answers metadata requests."""
        self._need_dir("broker_start")
        _run(["broker-start", "--dir", self.dir], timeout=START_TIMEOUT + 60)

    def zk_stop(self):
        """Stop only ZooKeeper (zk mode); the broker keeps running."""
        self._need_dir("zk_stop")
        _run(["zk-stop", "--dir", self.dir], timeout=120)

    def zk_start(self):
        """Start ZooKeeper again (same port, same data); returns once it
        answers."""
        self._need_dir("zk_start")
        _run(["zk-start", "--dir", self.dir], timeout=START_TIMEOUT + 60)

    def stop(self):
        """Stop everything (no-op for a shared broker, and when repeated)."""
        with self._lock:
            if self._stopped or not self.owned:
                return
            self._stopped = True
        args = ["stop", "--dir", self.dir]
        if not os.environ.get("KAFKAD_TEST_KEEP_KAFKA"):
            args.append("--rm")
        _run(args, timeout=180)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def _shared_cluster(mode):
    bootstrap = os.environ.get("KAFKAD_TEST_BOOTSTRAP")
    if not bootstrap:
        return None
    d = os.environ.get("KAFKAD_TEST_KAFKA_DIR") or None
    zookeeper = os.environ.get("KAFKAD_TEST_ZOOKEEPER") or None
    shared_mode = "zk" if zookeeper else "kraft"
    if d:
        envfile = Path(d) / "env"
        try:
            env = _parse_kv(envfile.read_text())
        except OSError as e:
            raise ClusterError("KAFKAD_TEST_KAFKA_DIR=%s: cannot read %s: %s" % (d, envfile, e))
        if env.get("BOOTSTRAP") and env["BOOTSTRAP"] != bootstrap:
            raise ClusterError("KAFKAD_TEST_BOOTSTRAP=%s but %s says BOOTSTRAP=%s"
                               % (bootstrap, envfile, env["BOOTSTRAP"]))
        shared_mode = env.get("MODE", shared_mode)
        zookeeper = env.get("ZOOKEEPER", zookeeper)
    if shared_mode != mode:
        return None
    c = Cluster(bootstrap, dir=d, zookeeper=zookeeper, mode=shared_mode, owned=False)
    # must really answer, or fail now rather than in every test
    try:
        _run(["metadata", "--bootstrap", bootstrap], timeout=30)
    except ClusterError as e:
        raise ClusterError("shared broker KAFKAD_TEST_BOOTSTRAP=%s does not answer:\n%s"
                           % (bootstrap, e))
    return c


def start_cluster(mode="kraft", partitions=4, dir=None, timeout=START_TIMEOUT):
    """Start a broker (or reuse the shared one, see module doc) -> Cluster.
    Raises ClusterError if it cannot be started; never skips."""
    if mode not in ("kraft", "zk"):
        raise ValueError("mode must be 'kraft' or 'zk', not %r" % (mode,))
    shared = _shared_cluster(mode)
    if shared is not None:
        return shared
    _run(["fetch"], timeout=FETCH_TIMEOUT)
    args = ["start", "--mode", mode, "--partitions", partitions, "--timeout", timeout]
    if dir:
        args += ["--dir", dir]
    out = _parse_kv(_run(args, timeout=timeout + 60))
    if not out.get("BOOTSTRAP") or not out.get("DIR"):
        raise ClusterError("tests/kafka/cluster start printed no BOOTSTRAP/DIR: %r" % out)
    c = Cluster(out["BOOTSTRAP"], dir=out["DIR"], zookeeper=out.get("ZOOKEEPER"),
                mode=mode, owned=True)
    atexit.register(_stop_quietly, c)   # if a fixture teardown never runs
    return c


def _stop_quietly(c):
    try:
        c.stop()
    except Exception as e:   # interpreter is exiting; report, don't mask
        sys.stderr.write("conftest_kafka: stopping %r failed: %s\n" % (c, e))


def make_cluster_fixture(mode="kraft", scope="session", name="kafka_cluster", partitions=4):
    """A pytest fixture (default: session scoped, named "kafka_cluster")
    yielding a started Cluster and stopping it afterwards. Assign it to a
    module-level name in conftest.py, e.g. `kafka_cluster = make_cluster_fixture()`."""
    import pytest

    @pytest.fixture(scope=scope, name=name)
    def _kafka_cluster_fixture():
        c = start_cluster(mode=mode, partitions=partitions)
        try:
            yield c
        finally:
            c.stop()

    return _kafka_cluster_fixture
