#!/usr/bin/env bash
# `make run`: kafkad in the foreground on librdkafka's embedded mock cluster,
# with a short demo through the Python stub once it is ready. Ctrl-C stops it
# (SIGINT: it flushes, then exits 0).
set -euo pipefail
cd "$(dirname "$0")/.."
SOCK=build/kafkad.sock
export KAFKAD_SOCKET="$PWD/$SOCK"

demo() {
    for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
    .venv/bin/python - <<'PY'
import kafkad
from kafkad.pykafka import KafkaClient
with kafkad.Client() as c:
    print(f"demo: connected to {c.hello.server}, clusters {c.hello.clusters}")
    for i in range(3):
        c.produce("demo", b"message %d" % i, key=b"k%d" % i)
    c.flush()
    for r in c.poll_reports():
        print(f"demo: delivered seq={r.seq} partition={r.partition} offset={r.offset} error={r.error}")
topic = KafkaClient().topics[b"demo"]
with topic.get_producer(sync=True) as p:
    p.produce(b"through the PyKafka-shaped layer")
print("demo: PyKafka-shaped sync produce acknowledged")
with kafkad.Client() as c, c.consumer(topic="demo", auto_offset_reset="earliest") as consumer:
    got = []
    for _ in range(20):
        got += consumer.consume(max=100, timeout=0.5)
        if len(got) >= 4:
            break
    print(f"demo: a daemon-held consumer read back {len(got)} messages: {sorted(m.value for m in got)}")
print(f"demo: done. Try it yourself from another terminal:\n"
      f"  KAFKAD_SOCKET={__import__('os').environ['KAFKAD_SOCKET']} .venv/bin/python -c "
      "'import kafkad; c = kafkad.Client(); print(c.produce(\"demo\", b\"hi\", ack=\"wait\"))'")
PY
}

demo &
exec build/daemon/kafkad -c conf/kafkad-dev.conf
