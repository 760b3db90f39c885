#!/usr/bin/env python3
"""Writes the protocol test vectors (one JSON file per vector) next to itself.

Each file is ``{"name", "kind", "value", "msgpack_hex"}``: ``value`` is the
frame payload as JSON, with every msgpack bin written as
``{"$bin": "<hex>"}``; ``msgpack_hex`` is the payload (without the 4-byte
length prefix) as Python's msgpack encodes it with ``use_bin_type=True``:
str as str, bytes as bin, each integer in its smallest encoding and map keys
in the order shown.  A conforming decoder must read every vector back to its
``value``; an encoder need not produce these exact bytes (integer widths and
key order may differ) but must produce something that decodes to ``value``.

Run: python3 protocol/vectors/make_vectors.py   (needs the msgpack package)
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Tuple

import msgpack


def to_json(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return {"$bin": bytes(v).hex()}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    return v


def from_json(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"$bin"}:
            return bytes.fromhex(v["$bin"])
        return {k: from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


def err(code: int, name: str, message: str, retriable: bool = False) -> Dict[str, Any]:
    return {"code": code, "name": name, "message": message, "retriable": retriable}


V: List[Tuple[str, str, Any]] = [
    # ---- requests -------------------------------------------------------
    ("hello_request", "request", [1, "hello", {"version": 1, "client": "kafkad-python/0.1"}]),
    ("ping_request_nil_args", "request", [2, "ping", None]),
    ("metadata_request", "request", [3, "metadata", {"cluster": "main", "topics": ["events"], "timeout_ms": 5000}]),
    ("metadata_request_all_topics", "request", [4, "metadata", {}]),
    (
        "produce_single_wait_request",
        "request",
        [
            5,
            "produce",
            {
                "topic": "events",
                "ack": "wait",
                "value": b"hello",
                "key": b"user-42",
                "headers": [["trace-id", b"\x00\x01\x02"]],
                "timestamp": 1700000000123,
            },
        ],
    ),
    (
        "produce_batch_compact_request",
        "request",
        [6, "produce", {"topic": "events", "ack": "report", "messages": [b"m1", b"m2", b"\xff" * 3]}],
    ),
    (
        "produce_batch_map_form_request",
        "request",
        [
            7,
            "produce",
            {
                "cluster": "main",
                "topic": "events",
                "ack": "report",
                "partitioner": "pykafka_hashing",
                "messages": [
                    {"value": b"v1", "key": b"bravo", "headers": [["h1", b"x"], ["h2", None]]},
                    b"compact-between-maps",
                    {"value": None, "key": b"tombstone", "partition": 2, "timestamp": 1700000000000},
                ],
            },
        ],
    ),
    ("produce_none_request", "request", [8, "produce", {"topic": "logs", "ack": "none", "messages": [b"a", b"b"]}]),
    ("poll_reports_request", "request", [9, "poll_reports", {"max": 65536, "timeout_ms": 5000}]),
    ("flush_request", "request", [10, "flush", {"timeout_ms": 10000}]),
    ("stats_request", "request", [11, "stats", {"cluster": "main"}]),
    ("large_id_request", "request", [2**40 + 7, "ping", {}]),
    # ---- responses ------------------------------------------------------
    (
        "hello_response",
        "response",
        [
            1,
            None,
            {
                "version": 1,
                "server": "kafkad/0.1.0",
                "max_frame": 16777216,
                "max_batch": 10000,
                "max_pending": 1000000,
                "clusters": ["main", "analytics"],
                "default_cluster": "main",
            },
        ],
    ),
    ("ping_response", "response", [2, None, {}]),
    (
        "metadata_response",
        "response",
        [
            3,
            None,
            {
                "cluster": "main",
                "brokers": [{"id": 1, "host": "kafka-1.local", "port": 9092}],
                "topics": [
                    {
                        "name": "events",
                        "error": None,
                        "partitions": [
                            {"id": 0, "leader": 1, "replicas": [1], "isrs": [1], "error": None},
                            {"id": 1, "leader": 1, "replicas": [1], "isrs": [1], "error": None},
                        ],
                    },
                    {
                        "name": "missing",
                        "error": err(10003, "UNKNOWN_TOPIC_OR_PART", "Broker: Unknown topic or partition"),
                        "partitions": [],
                    },
                ],
            },
        ],
    ),
    (
        "produce_wait_response",
        "response",
        [
            5,
            None,
            {
                "count": 2,
                "results": [
                    [0, 42, None],
                    [-1, -1, err(9808, "_MSG_TIMED_OUT", "Local: Message timed out", True)],
                ],
            },
        ],
    ),
    (
        "produce_report_response",
        "response",
        [6, None, {"count": 3, "seq": 1, "reports": [[1, 2, 0, 1000, None]]}],
    ),
    ("produce_none_response", "response", [8, None, {"count": 2}]),
    (
        "poll_reports_response_runs",
        "response",
        [
            9,
            None,
            {
                "reports": [
                    [3, 1, 1, 77, None],
                    [4, 5000, 2, 4294967296, None],
                    [5004, 2, -1, -1, err(10003, "UNKNOWN_TOPIC_OR_PART", "Broker: Unknown topic or partition")],
                    [5006, 1, 0, -1, None],
                ],
                "pending": 12,
            },
        ],
    ),
    ("poll_reports_response_empty", "response", [9, None, {"reports": [], "pending": 0}]),
    ("flush_response", "response", [10, None, {"remaining": 0}]),
    (
        "stats_response",
        "response",
        [
            11,
            None,
            {
                "daemon": {
                    "uptime_ms": 123456,
                    "connections": 2,
                    "connections_total": 9,
                    "requests": 1000,
                    "errors": 1,
                    "bad_frames": 0,
                    "produced": 50000,
                    "delivered": 49990,
                    "delivery_failed": 10,
                    "orphan_delivered": 0,
                    "orphan_failed": 0,
                    "enqueue_failed": 0,
                    "reports_pending": 3,
                },
                "clusters": {"main": {"bootstrap": "kafka-1.local:9092", "outq_len": 0, "librdkafka": None}},
            },
        ],
    ),
    (
        "error_response_unknown_cluster",
        "response",
        [12, err(5, "UNKNOWN_CLUSTER", "cluster 'nope' is not configured"), None],
    ),
    ("error_response_too_large", "response", [13, err(12, "TOO_LARGE", "20000 messages > max_batch 10000"), None]),
    ("error_response_bad_request_nil_id", "response", [None, err(2, "BAD_REQUEST", "envelope is not [id, op, args]"), None]),
    ("bad_frame_error_frame", "response", [None, err(1, "BAD_FRAME", "frame length 0 outside 1..16777216"), None]),
]


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    names = set()
    for name, kind, value in V:
        assert name not in names, name
        names.add(name)
        payload = msgpack.packb(value, use_bin_type=True)
        doc = {"name": name, "kind": kind, "value": to_json(value), "msgpack_hex": payload.hex()}
        # self-check: the JSON form round-trips to the same bytes
        assert msgpack.packb(from_json(doc["value"]), use_bin_type=True) == payload, name
        with open(os.path.join(here, name + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    print(f"wrote {len(V)} vectors to {here}")


if __name__ == "__main__":
    main()
