from time import perf_counter as _clock; T0 = _clock()  # noqa: E401,E702  (first line: "after interpreter start")
# One short-lived producer process (cold start and short-lived-process
# benchmarks of sidecar_bench.py): import a client, produce ONE message,
# wait for its delivery, exit.
#
#   oneshot.py KIND TOPIC WHERE SIZE
#
# KIND     kafkad (stub's one-shot call kafkad.produce_sync: ack "wait"),
#          kafkad-client (stub Client(...).produce(ack="wait")), kafkad-raw
#          (plain socket + msgpack, one produce request with ack "wait"),
#          confluent-kafka, kafka-python
# WHERE    kafkad's socket path, or the broker's bootstrap address
#
# Prints one line: "T0 T_IMPORTED T_DELIVERED PARTITION OFFSET PEAK_RSS_KB",
# the times in perf_counter() seconds (CLOCK_MONOTONIC: the parent compares
# them with its own clock).  Settings match the other benchmarks: acks=all,
# linger.ms=0 (nothing to batch in a one-message process), no compression.
# Nothing else is imported before the clock starts.
import sys


def peak_rss_kb() -> int:
    """VmHWM of this process: getrusage/wait4 maxrss would include the parent's
    RSS (vfork + exec carries the parent's high-water mark over)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    kind, topic, where, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    value = b"x" * size
    if kind == "kafkad":
        from kafkad import produce_sync

        t_imp = _clock()
        part, off = produce_sync(topic, value, socket_path=where)  # raises on a failed delivery
        t_del = _clock()
    elif kind == "kafkad-client":
        import kafkad

        t_imp = _clock()
        with kafkad.Client(where) as c:
            md = c.produce(topic, value, ack="wait")  # raises on a failed delivery
            t_del = _clock()
        part, off = md.partition, md.offset
    elif kind == "kafkad-raw":
        import socket
        import struct

        import msgpack

        t_imp = _clock()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(where)
        body = msgpack.packb([1, "produce", {"topic": topic, "ack": "wait", "value": value}], use_bin_type=True)
        s.sendall(struct.pack(">I", len(body)) + body)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">I", buf)[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("kafkad closed the connection")
            buf += chunk
        rid, err, res = msgpack.unpackb(buf[4:], raw=False)
        t_del = _clock()
        s.close()
        part, off, merr = res["results"][0] if err is None else (-1, -1, err)
        if err is not None or merr is not None:
            raise SystemExit(f"produce failed: {err or merr}")
    elif kind == "confluent-kafka":
        import confluent_kafka

        t_imp = _clock()
        out = []

        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            out.append((_clock(), err, msg.partition(), msg.offset()))

        p = confluent_kafka.Producer({"bootstrap.servers": where, "acks": "all", "linger.ms": 0,
                                      "compression.type": "none"})
        p.produce(topic, value, on_delivery=on_delivery)
        p.flush(30)
        if not out or out[0][1] is not None:
            raise SystemExit(f"produce failed: {out[0][1] if out else 'no delivery report'}")
        t_del, _, part, off = out[0]
    elif kind == "kafka-python":
        import kafka

        t_imp = _clock()
        p = kafka.KafkaProducer(bootstrap_servers=where, acks="all", linger_ms=0, compression_type=None,
                                enable_idempotence=False)
        md = p.send(topic, value).get(timeout=30)
        t_del = _clock()
        part, off = md.partition, md.offset
        p.close(10)
    else:
        raise SystemExit(f"unknown kind {kind}")
    print(f"{T0!r} {t_imp!r} {t_del!r} {part} {off} {peak_rss_kb()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
