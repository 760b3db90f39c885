"""Framing and protocol vectors for the Python stub (no daemon needed)."""

import glob
import json
import os
import sys

import pytest

_STUB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "client-stubs", "python"))
if _STUB not in sys.path:
    sys.path.insert(0, _STUB)

import msgpack  # noqa: E402

from kafkad._codec import FrameDecoder, decode_frame, encode_frame  # noqa: E402
from kafkad.errors import BadFrame, KafkadError, ProtocolViolation, error_from_map  # noqa: E402
from kafkad.types import ClusterMetadata, HelloInfo  # noqa: E402

VECTOR_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "protocol", "vectors"))
VECTORS = sorted(glob.glob(os.path.join(VECTOR_DIR, "*.json")))


def from_json(v):
    if isinstance(v, dict):
        if set(v) == {"$bin"}:
            return bytes.fromhex(v["$bin"])
        return {k: from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


def load(path):
    with open(path) as f:
        doc = json.load(f)
    return doc, from_json(doc["value"]), bytes.fromhex(doc["msgpack_hex"])


# ---------------------------------------------------------------- framing


def test_encode_frame_has_big_endian_length():
    f = encode_frame([1, "ping", {}])
    assert f[:4] == (len(f) - 4).to_bytes(4, "big")
    assert decode_frame(f) == [1, "ping", {}]


def test_bytes_are_bin_and_str_is_str():
    payload = encode_frame([1, "produce", {"messages": [b"\x00", "s"]}])[4:]
    assert b"\xc4\x01\x00" in payload  # bin8, 1 byte
    assert b"\xa1s" in payload  # fixstr "s"


def test_decoder_byte_by_byte():
    frames = [[i, None, {"x": b"y" * i}] for i in range(1, 30)]
    data = b"".join(encode_frame(f) for f in frames)
    dec = FrameDecoder()
    out = []
    for i in range(len(data)):
        dec.feed(data[i : i + 1])
        out.extend(dec.frames())
    assert out == frames
    assert dec.buffered == 0


def test_decoder_many_frames_in_one_feed_and_split_header():
    frames = [[i, None, {}] for i in range(100)]
    data = b"".join(encode_frame(f) for f in frames)
    dec = FrameDecoder()
    dec.feed(data[:2])  # half a header
    assert dec.frames() == []
    dec.feed(data[2:])
    assert dec.frames() == frames


def test_decoder_large_frame_in_pieces():
    big = [7, None, {"reports": [[i, 1, 0, i, None] for i in range(20000)]}]
    data = encode_frame(big)
    dec = FrameDecoder()
    got = []
    for off in range(0, len(data), 4096):
        dec.feed(data[off : off + 4096])
        got.extend(dec.frames())
    assert got == [big]


def test_zero_length_is_bad_frame():
    dec = FrameDecoder()
    dec.feed(b"\x00\x00\x00\x00")
    with pytest.raises(BadFrame):
        dec.frames()


def test_oversized_length_is_bad_frame():
    dec = FrameDecoder(max_frame=100)
    dec.feed((101).to_bytes(4, "big"))
    with pytest.raises(BadFrame):
        dec.frames()


def test_payload_not_exactly_one_value_is_detected():
    two = msgpack.packb(1) + msgpack.packb(2)
    dec = FrameDecoder()
    dec.feed(len(two).to_bytes(4, "big") + two)
    with pytest.raises(ProtocolViolation):
        dec.frames()


def test_decode_frame_rejects_length_mismatch():
    f = encode_frame([1, None, {}])
    with pytest.raises(BadFrame):
        decode_frame(f + b"x")


# ---------------------------------------------------------------- vectors


def test_vectors_exist():
    assert len(VECTORS) >= 12
    ops = set()
    for path in VECTORS:
        doc, value, _ = load(path)
        assert doc["kind"] in ("request", "response")
        if doc["kind"] == "request":
            ops.add(value[1])
    assert ops >= {"hello", "ping", "metadata", "produce", "poll_reports", "flush", "stats"}


@pytest.mark.parametrize("path", VECTORS, ids=[os.path.basename(p)[:-5] for p in VECTORS])
def test_vector_roundtrip(path):
    doc, value, payload = load(path)
    assert msgpack.packb(value, use_bin_type=True) == payload
    assert msgpack.unpackb(payload, raw=False) == value
    # and through the stub's own framing
    frame = len(payload).to_bytes(4, "big") + payload
    dec = FrameDecoder()
    dec.feed(frame)
    assert dec.frames() == [value]
    assert encode_frame(value) == frame


@pytest.mark.parametrize("path", VECTORS, ids=[os.path.basename(p)[:-5] for p in VECTORS])
def test_vector_envelope_shape(path):
    doc, value, _ = load(path)
    assert isinstance(value, list) and len(value) == 3
    if doc["kind"] == "request":
        rid, op, args = value
        assert isinstance(rid, int) and rid >= 0
        assert isinstance(op, str)
        assert args is None or isinstance(args, dict)
    else:
        rid, err, res = value
        assert rid is None or isinstance(rid, int)
        if err is not None:
            assert res is None
            e = error_from_map(err)
            assert isinstance(e, KafkadError) and e.code == err["code"] and e.name == err["name"]


def test_vector_results_parse():
    for path in VECTORS:
        doc, value, _ = load(path)
        if doc["name"] == "hello_response":
            h = HelloInfo.from_result(value[2])
            assert h.max_batch == 10000 and h.default_cluster == "main"
        if doc["name"] == "metadata_response":
            md = ClusterMetadata.from_result(value[2])
            assert [p.id for p in md.topics["events"].partitions] == [0, 1]
            assert md.topics["missing"].error.name == "UNKNOWN_TOPIC_OR_PART"
            assert md.brokers[1].host == "kafka-1.local"


def test_result_types_keep_dataclass_behaviour():
    # the former dataclasses are plain classes now (importing dataclasses
    # cost every process ~10 ms): same constructor, repr, equality, and
    # dataclasses.fields/asdict/replace still work on them
    import dataclasses
    import pickle

    from kafkad.errors import TimedOut
    from kafkad.types import BrokerMetadata, PartitionMetadata, ProduceResult, RecordMetadata, TopicMetadata

    r = ProduceResult(2)
    assert repr(r) == "ProduceResult(count=2, seq=0, results=[])"
    assert r == ProduceResult(2, 0, []) and r != ProduceResult(2, 1) and r != (2, 0, [])
    assert r.results is not ProduceResult(2).results
    with pytest.raises(TypeError):
        hash(r)
    w = ProduceResult(2, results=[RecordMetadata(0, 5), TimedOut("t")])
    assert [type(e) for e in w.errors] == [TimedOut]
    assert dataclasses.is_dataclass(w) and [f.name for f in dataclasses.fields(ProduceResult)] == ["count", "seq", "results"]
    assert dataclasses.asdict(ProduceResult(1, 7)) == {"count": 1, "seq": 7, "results": []}
    assert dataclasses.replace(r, seq=9) == ProduceResult(2, 9)
    assert pickle.loads(pickle.dumps(w)).results[0] == RecordMetadata(0, 5)

    h = HelloInfo(max_batch=5)
    assert h == HelloInfo(1, "", 16 << 20, 5) and h.clusters == [] and h.clusters is not HelloInfo().clusters
    assert repr(HelloInfo()) == (
        "HelloInfo(version=1, server='', max_frame=16777216, max_batch=10000, max_pending=1048576, "
        "clusters=[], default_cluster='')"
    )
    assert dataclasses.asdict(h)["max_batch"] == 5
    md = ClusterMetadata("c", {1: BrokerMetadata(1, "h", 9)}, {"t": TopicMetadata("t", [PartitionMetadata(0, 1, [1], [1])])})
    assert repr(md) == (
        "ClusterMetadata(cluster='c', brokers={1: BrokerMetadata(id=1, host='h', port=9)}, "
        "topics={'t': TopicMetadata(name='t', partitions=[PartitionMetadata(id=0, leader=1, replicas=[1], isrs=[1], "
        "error=None)], error=None)})"
    )
    assert md == pickle.loads(pickle.dumps(md)) and md.topics["t"].partitions[0].error is None
    assert dataclasses.astuple(BrokerMetadata(1, "h", 9)) == (1, "h", 9)
