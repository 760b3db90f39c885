"""systemd integration: sd_notify READY/STATUS/STOPPING, watchdog pings and
socket activation (LISTEN_FDS), checked with a real notify socket and a real
inherited listening socket, the way systemd drives the daemon."""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from typing import List

import pytest

from conftest import ROOT, kafkad_bin

pytestmark = pytest.mark.integration

sys_path = str(ROOT / "client-stubs" / "python")


def _conf(dirpath: str, sock: str) -> str:
    path = os.path.join(dirpath, "kafkad.conf")
    with open(path, "w") as f:
        f.write(f"[daemon]\nsocket = {sock}\nshutdown_timeout_ms = 2000\n[cluster main]\nbootstrap.servers = mock\n")
    return path


def _recv_until(ns: socket.socket, needle: str, timeout: float = 20.0) -> List[str]:
    got: List[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        ns.settimeout(max(0.05, deadline - time.time()))
        try:
            got.append(ns.recv(4096).decode())
        except socket.timeout:
            break
        if any(needle in g for g in got):
            return got
    raise AssertionError(f"no {needle!r} from the daemon; got {got!r}")


def test_notify_ready_status_watchdog_and_stopping() -> None:
    d = tempfile.mkdtemp(prefix="kafkad-sd-")
    notify_path = os.path.join(d, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify_path)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="400000")
    sock = os.path.join(d, "k.sock")
    p = subprocess.Popen([kafkad_bin(), "-c", _conf(d, sock)], env=env, stderr=subprocess.DEVNULL)
    # WATCHDOG_PID unset: sd_watchdog_enabled accepts it for any pid
    try:
        ready = _recv_until(ns, "READY=1")
        assert any("STATUS=serving 1 cluster" in m for m in ready), ready
        pings = _recv_until(ns, "WATCHDOG=1")
        assert any("WATCHDOG=1" in m for m in pings)
        p.terminate()
        stopping = _recv_until(ns, "STOPPING=1")
        assert any("STOPPING=1" in m for m in stopping)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        ns.close()


def test_socket_activation_uses_the_inherited_socket() -> None:
    d = tempfile.mkdtemp(prefix="kafkad-sa-")
    sock_path = os.path.join(d, "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(16)
    fd = listener.fileno()
    # systemd passes the socket as fd 3 with LISTEN_FDS=1 and LISTEN_PID set to
    # the daemon's own pid: `exec` in sh keeps the pid that $$ names.
    conf = _conf(d, os.path.join(d, "unused.sock"))
    # (the socket arrives as stdin and moves to fd 3: sh only names fds 0-9)
    cmd = f"exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec {kafkad_bin()} -c {conf}"
    p = subprocess.Popen(["sh", "-c", cmd], stdin=fd, stderr=subprocess.PIPE)
    listener.close()
    try:
        import sys

        sys.path.insert(0, sys_path)
        import kafkad

        deadline = time.time() + 20
        while True:
            try:
                c = kafkad.Client(sock_path, timeout=5)
                break
            except (OSError, kafkad.ConnectionLost):
                if p.poll() is not None:
                    raise AssertionError(f"kafkad exited: {p.communicate()[1].decode(errors='replace')}")
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        with c:
            c.ping()
            assert c.hello.clusters == ["main"]
        # it never created its configured path: the inherited socket is used
        assert not os.path.exists(os.path.join(d, "unused.sock"))
        p.terminate()
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode(errors="replace")
        assert b"listening on the socket passed by systemd" in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
