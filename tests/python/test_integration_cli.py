"""kafkad-cli against a daemon on the real broker: what it produces is read
back with confluent-kafka, what it consumes is what was produced, and its
exit codes are the documented ones (0 ok, 1 failed, 2 usage, 3 no daemon)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import List

import pytest

from conftest import kafkad_bin
from kafka_check import by_value, read_all

pytestmark = pytest.mark.integration


def cli_bin() -> str:
    return str(Path(kafkad_bin()).parent / "kafkad-cli")


def run(sock: str, args: List[str], stdin: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([cli_bin(), "-s", sock] + args, input=stdin, capture_output=True, timeout=timeout)


def test_ping_stats_and_usage_errors(daemon) -> None:
    r = run(daemon.socket, ["ping", "-c", "3"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(b"pong from kafkad") == 3
    r = run(daemon.socket, ["stats", "--json"])
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["daemon"]["connections"] >= 1 and "main" in stats["clusters"]
    assert run(daemon.socket, ["no-such-command"]).returncode == 2
    assert run(daemon.socket, ["produce"]).returncode == 2
    r = subprocess.run([cli_bin(), "-s", daemon.socket + ".missing", "ping"], capture_output=True)
    assert r.returncode == 3 and b"cannot connect" in r.stderr
    r = subprocess.run([cli_bin(), "--help"], capture_output=True)
    assert r.returncode == 0 and b"--key-separator" in r.stdout and b"exit codes" in r.stdout


def test_produce_lines_with_keys_and_headers_then_consume(kafka_cluster, daemon) -> None:
    topic = kafka_cluster.new_topic("cli", partitions=3)
    lines = b"".join(b"k%d:value %d\n" % (i, i) for i in range(200))
    r = run(daemon.socket, ["produce", topic, "-k", ":", "-H", "src=cli", "-H", "run=1"], stdin=lines)
    assert r.returncode == 0, r.stderr
    assert b"200 records: 200 delivered, 0 failed" in r.stderr
    got = by_value(read_all(kafka_cluster.bootstrap, topic, expect=200))
    assert len(got) == 200
    for i in range(200):
        rec = got[b"value %d" % i]
        assert rec.key == b"k%d" % i
        assert rec.headers == [("src", b"cli"), ("run", b"1")]

    r = run(daemon.socket, ["consume", topic, "-o", "earliest", "-e", "-f", "%k|%v|%h\\n"])
    assert r.returncode == 0, r.stderr
    out = sorted(r.stdout.decode().splitlines())
    assert out == sorted(f"k{i}|value {i}|src=cli,run=1" for i in range(200))


def test_sync_produce_prints_where_each_record_went(kafka_cluster, daemon) -> None:
    topic = kafka_cluster.new_topic("clisync", partitions=1)
    r = run(daemon.socket, ["produce", topic, "--sync", "-p", "0"], stdin=b"a\nb\nc\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["partition 0 offset 0", "partition 0 offset 1",
                                             "partition 0 offset 2"]
    assert [x.value for x in read_all(kafka_cluster.bootstrap, topic, expect=3)] == [b"a", b"b", b"c"]


def test_group_consume_commits_and_resumes(kafka_cluster, daemon) -> None:
    topic = kafka_cluster.new_topic("cligrp", partitions=1)
    r = run(daemon.socket, ["produce", topic], stdin=b"".join(b"m%d\n" % i for i in range(10)))
    assert r.returncode == 0, r.stderr
    args = ["consume", topic, "-g", "cli-group", "-o", "earliest", "-c", "4", "--commit", "-f", "%o %v\\n"]
    first = run(daemon.socket, args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().splitlines() == [f"{i} m{i}" for i in range(4)]
    second = run(daemon.socket, args)
    assert second.returncode == 0, second.stderr
    assert second.stdout.decode().splitlines() == [f"{i} m{i}" for i in range(4, 8)]


def test_failures_exit_1(kafka_cluster, daemon_factory) -> None:
    d = daemon_factory(extra="message.timeout.ms = 3000\n")
    r = run(d.socket, ["produce", "no-such-topic-cli"], stdin=b"x\ny\n")
    assert r.returncode == 1
    assert b"2 records: 0 delivered, 2 failed" in r.stderr
    r = run(d.socket, ["metadata", "no-such-topic-cli"])
    assert r.returncode == 1 and b"UNKNOWN_TOPIC_OR_PART" in r.stdout
    r = run(d.socket, ["produce", "bad topic name"], stdin=b"x\n")
    assert r.returncode == 1 and b"INVALID_ARGUMENT" in r.stderr


def test_offsets_prints_watermarks_and_the_offset_at_a_time(kafka_cluster, daemon) -> None:
    import time

    from kafkad import Client

    topic = kafka_cluster.new_topic("clioffs", partitions=2)
    base = int(time.time() * 1000) - 600_000
    with Client(daemon.socket) as c:   # p0: 5 records stamped base + 1000 i; p1: 2 records
        res = c.produce_batch(topic, [{"value": b"x", "partition": 0, "timestamp": base + 1000 * i} for i in range(5)]
                              + [{"value": b"y", "partition": 1, "timestamp": base + 1000 * i} for i in range(2)],
                              ack="wait")
        assert not res.errors, res
    r = run(daemon.socket, ["offsets", topic])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [f"{topic}[0] low 0 high 5", f"{topic}[1] low 0 high 2"]
    r = run(daemon.socket, ["offsets", topic, "-t", str(base + 2500)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [f"{topic}[0] low 0 high 5 at {base + 2500}: 3",
                                             f"{topic}[1] low 0 high 2 at {base + 2500}: -1"]
    assert run(daemon.socket, ["offsets"]).returncode == 2
    assert run(daemon.socket, ["offsets", topic, "-t", "yesterday"]).returncode == 2
    r = run(daemon.socket, ["offsets", topic + "-missing"])
    assert r.returncode == 1 and b"UNKNOWN_TOPIC_OR_PART" in r.stderr, r.stderr
