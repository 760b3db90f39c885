"""Shared pytest fixtures: the real Kafka broker and kafkad daemons.

Integration tests are marked ``integration`` (they need the broker and the
daemon binary, $KAFKAD_BIN, default build/daemon/kafkad). Nothing here
skips: a broker or daemon that cannot start fails the test loudly.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest_kafka import Cluster, ClusterError, _run, make_cluster_fixture, start_cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "client-stubs" / "python"))

kafka_cluster = make_cluster_fixture("kraft", scope="session", name="kafka_cluster")


@pytest.fixture(scope="session")
def zk_cluster() -> Iterator[Cluster]:
    """The ZooKeeper-mode cluster (ZooKeeper + a ZK-mode broker): the one
    scripts/test.sh started for the run ($KAFKAD_TEST_ZK_BOOTSTRAP,
    $KAFKAD_TEST_ZK_CONNECT, $KAFKAD_TEST_ZK_DIR), else one of its own for
    this session.  ``.zookeeper`` is its connect string, ``.zk_stop()`` /
    ``.zk_start()`` restart ZooKeeper under a running broker."""
    boot = os.environ.get("KAFKAD_TEST_ZK_BOOTSTRAP")
    if boot:
        zk = os.environ.get("KAFKAD_TEST_ZK_CONNECT")
        d = os.environ.get("KAFKAD_TEST_ZK_DIR")
        if not zk or not d:
            raise ClusterError("KAFKAD_TEST_ZK_BOOTSTRAP is set: KAFKAD_TEST_ZK_CONNECT and KAFKAD_TEST_ZK_DIR must be too")
        try:
            _run(["metadata", "--bootstrap", boot], timeout=30)
        except ClusterError as e:
            raise ClusterError(f"shared ZK-mode broker KAFKAD_TEST_ZK_BOOTSTRAP={boot} does not answer:\n{e}")
        yield Cluster(boot, dir=d, zookeeper=zk, mode="zk", owned=False)
        return
    c = start_cluster(mode="zk")
    try:
        yield c
    finally:
        c.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs the real Kafka broker and the kafkad binary")


def kafkad_bin() -> str:
    b = os.environ.get("KAFKAD_BIN") or str(ROOT / "build" / "daemon" / "kafkad")
    if not os.access(b, os.X_OK):
        raise RuntimeError(f"kafkad binary {b} is missing: run `make build` first")
    return b


class Daemon:
    """One kafkad process with its own socket and config; stop() checks that
    it exited 0 (so sanitizer reports fail the test)."""

    def __init__(self, bootstrap: str, extra: str = "", name: str = "kafkad") -> None:
        self.dir = tempfile.mkdtemp(prefix=f"{name}-")
        self.socket = os.path.join(self.dir, "kafkad.sock")
        self.conf = os.path.join(self.dir, "kafkad.conf")
        self.log_path = os.path.join(self.dir, "kafkad.log")
        with open(self.conf, "w") as f:
            f.write(f"[daemon]\nsocket = {self.socket}\nlog_level = debug\nshutdown_timeout_ms = 5000\n")
            f.write(f"[cluster main]\nbootstrap.servers = {bootstrap}\n")
            f.write(extra)
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self, timeout: float = 20.0) -> "Daemon":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([kafkad_bin(), "-c", self.conf], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafkad exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.socket):
                return self
            time.sleep(0.02)
        raise RuntimeError(f"kafkad did not create {self.socket} within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"kafkad did not stop within {timeout}s:\n{self.log()}")
        self._log.close()
        return rc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _daemons(default_bootstrap: str) -> Iterator["DaemonFactory"]:
    started: List[Daemon] = []

    def make(extra: str = "", bootstrap: Optional[str] = None, start: bool = True) -> Daemon:
        d = Daemon(bootstrap or default_bootstrap, extra)
        started.append(d)
        return d.start() if start else d

    yield make  # type: ignore[misc]
    failures = []
    for d in started:
        if d.proc is None:
            continue
        rc = d.stop()
        if rc != 0:
            failures.append(f"kafkad exited with {rc}:\n{d.log()}")
    if failures:
        raise AssertionError("\n".join(failures))


@pytest.fixture
def daemon_factory(kafka_cluster: Cluster) -> Iterator["DaemonFactory"]:
    yield from _daemons(kafka_cluster.bootstrap)


@pytest.fixture
def zk_daemon_factory(zk_cluster: Cluster) -> Iterator["DaemonFactory"]:
    """daemon_factory for the ZooKeeper-mode cluster (its broker is the
    default bootstrap); needs no KRaft cluster."""
    yield from _daemons(zk_cluster.bootstrap)


DaemonFactory = object


@pytest.fixture
def daemon(daemon_factory):  # type: ignore[no-untyped-def]
    """A kafkad on the shared real broker, stopped (and checked) after the test."""
    return daemon_factory()
