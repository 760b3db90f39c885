"""A real PyKafka 2.8 ZooKeeper-balanced consumer in its own process, for
test_integration_zookeeper.py (PyKafka's BalancedConsumer runs kazoo and
worker threads: a process of its own keeps them out of pytest's).

    python zk_pykafka_member.py '{"bootstrap": ..., "zookeeper": ..., "topic": ...,
                                  "group": ..., "protocol": "range", "limit": -1,
                                  "auto_commit": false}'

stdout, one line each (flushed):
    ID <consumer id>              once started
    HELD <json {partition: last consumed offset}>
    M <partition> <offset> <value, latin-1>
    PARTS <json [partitions]>     whenever the held partitions change
    COMMITTED <json held_offsets> after a "commit" command
    STOPPED                       after a "stop" command (then it exits 0)
    ERROR <text>                  a worker exception (then it exits 1)
stdin commands, one a line: "commit", "stop".  "limit" > 0: stop consuming
after that many messages (commands still work).
"""
import json
import logging
import queue
import sys
import threading
import time

from pykafka import KafkaClient
from pykafka.common import OffsetType
from pykafka.membershipprotocol import RangeProtocol, RoundRobinProtocol


def out(*parts):
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def main():
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    commands = queue.Queue()

    def read_stdin():
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("stop")  # the test went away

    threading.Thread(target=read_stdin, daemon=True).start()
    client = KafkaClient(hosts=cfg["bootstrap"])
    topic = client.topics[cfg["topic"].encode()]
    protocol = RoundRobinProtocol if cfg.get("protocol") == "roundrobin" else RangeProtocol
    consumer = topic.get_balanced_consumer(
        consumer_group=cfg["group"].encode(),
        zookeeper_connect=cfg["zookeeper"],
        membership_protocol=protocol,
        consumer_timeout_ms=100,
        auto_commit_enable=bool(cfg.get("auto_commit", False)),
        auto_commit_interval_ms=int(cfg.get("auto_commit_interval_ms", 500)),
        auto_offset_reset=OffsetType.EARLIEST,
        # kafkad may hold an owner node while it hands a partition over:
        # PyKafka must not give up on it meanwhile
        rebalance_max_retries=int(cfg.get("rebalance_max_retries", 40)),
        rebalance_backoff_ms=int(cfg.get("rebalance_backoff_ms", 300)),
        zookeeper_connection_timeout_ms=int(cfg.get("zookeeper_connection_timeout_ms", 6000)),
    )
    out("ID", consumer._consumer_id.decode())
    held = consumer.held_offsets or {}
    out("HELD", json.dumps({str(k): v for k, v in held.items()}))
    limit = int(cfg.get("limit", -1))
    n = 0
    parts = None
    while True:
        try:
            cmd = commands.get_nowait()
        except queue.Empty:
            cmd = None
        if cmd == "commit":
            consumer.commit_offsets()
            out("COMMITTED", json.dumps({str(k): v for k, v in (consumer.held_offsets or {}).items()}))
        elif cmd == "stop":
            consumer.stop()
            out("STOPPED")
            return 0
        if consumer._worker_exception is not None:
            out("ERROR", repr(consumer._worker_exception[1]))
            return 1
        now = sorted(consumer.partitions)
        if now != parts:
            parts = now
            out("PARTS", json.dumps(now))
        if limit >= 0 and n >= limit:
            time.sleep(0.05)
            continue
        m = consumer.consume(block=True)
        if m is not None:
            n += 1
            out("M", m.partition_id, m.offset, m.value.decode("latin-1"))


if __name__ == "__main__":
    sys.exit(main())
