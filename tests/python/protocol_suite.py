"""kafkad wire-protocol conformance suite (protocol/SPEC.md, protocol/ops.json).

Plain Unix socket + msgpack, no client stub.  Everything a check needs is in
data structures here; tests/python/test_integration_protocol.py only supplies
the environment (a broker, a daemon under test, topics) and parametrizes
over the tables:

- ``OP_CASES``: for every op of ops.json at least one valid request and the
  shape its result must have (ops.json's result schema AND the stricter
  SPEC shape of the case), plus optional semantic checks.
- ``ERROR_CASES``: for every daemon error code of ops.json's ``errors``
  table (and some Kafka errors, code = 10000 + librdkafka's code) a request
  that triggers it.  Each checks code, name, retriable and a non-empty
  message, and that the connection is still usable afterwards (or, for the
  errors that end a connection, that it was closed and the daemon still
  accepts new ones).
- ``NOT_EMITTED``: daemon codes this implementation never sends, each with
  the reason.  A code is either triggered or listed here, never neither.

Reuse against another implementation (another daemon, or requests encoded
by another language's stub):

- ``SOCKET_PATH``: the Unix socket every ``Conn()`` connects to by default.
  The test module sets it to the daemon it starts, unless the environment
  variable ``KAFKAD_PROTOCOL_SOCKET`` names an already running
  implementation (configured with a cluster on $KAFKAD_TEST_BOOTSTRAP).
- ``make_request(rid, op, args) -> bytes``: builds one complete request
  frame (length prefix included).  Assign another function to send the
  table's requests through another encoder.  Deliberately malformed frames
  (BAD_FRAME / BAD_REQUEST cases) are built with ``raw_frame`` instead,
  since a correct encoder cannot produce them.
- ``Env``: what the cases need from the surroundings (topics, the data
  already in the read topic, a way to start a daemon with extra config).

Nothing here sleeps to assert timing: loops wait for an outcome with a
generous upper bound (``WAIT``) and fail with a description if it never
comes.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import msgpack

ROOT = Path(__file__).resolve().parents[2]
OPS_JSON: Dict[str, Any] = json.loads((ROOT / "protocol" / "ops.json").read_text())
SPEC_MD: str = (ROOT / "protocol" / "SPEC.md").read_text()

OPS: Dict[str, Any] = OPS_JSON["ops"]
ERRORS: Dict[str, int] = OPS_JSON["errors"]
ERROR_NAMES: Dict[int, str] = {v: k for k, v in ERRORS.items()}
KAFKA_BASE: int = OPS_JSON["kafka_error_base"]
HDR = struct.Struct(">I")

WAIT = 45.0  # upper bound for anything that must eventually happen (never asserted on)


def _spec_error_table() -> Dict[str, Tuple[int, bool]]:
    """SPEC.md section 3's table: name -> (code, retriable), where a code is
    retriable when its meaning says so ("(retriable)", "(retriable: ...")."""
    out: Dict[str, Tuple[int, bool]] = {}
    for m in re.finditer(r"^\| (\d+) \| ([A-Z_]+) \| (.*) \|$", SPEC_MD, re.M):
        out[m.group(2)] = (int(m.group(1)), "(retriable" in m.group(3))
    return out


SPEC_ERRORS = _spec_error_table()


# ----------------------------------------------------------------- transport

SOCKET_PATH: Optional[str] = os.environ.get("KAFKAD_PROTOCOL_SOCKET") or None


def default_make_request(rid: int, op: Any, args: Any) -> bytes:
    payload = msgpack.packb([rid, op, args], use_bin_type=True)
    return HDR.pack(len(payload)) + payload


make_request: Callable[[int, Any, Any], bytes] = default_make_request


def raw_frame(obj: Any) -> bytes:
    """A frame holding any msgpack value (for malformed envelopes)."""
    payload = msgpack.packb(obj, use_bin_type=True)
    return HDR.pack(len(payload)) + payload


class Conn:
    """One connection.  Responses read while waiting for another id are
    kept, so pipelined requests can be collected in any order."""

    def __init__(self, path: Optional[str] = None, timeout: float = WAIT) -> None:
        path = path or SOCKET_PATH
        assert path, "protocol_suite.SOCKET_PATH is not set (no daemon under test)"
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._buf = bytearray()
        self._next_id = 1
        self._stash: Dict[Any, list] = {}

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sending
    def new_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    def frame(self, op: Any, args: Any = None, rid: Optional[int] = None) -> Tuple[int, bytes]:
        rid = self.new_id() if rid is None else rid
        return rid, make_request(rid, op, args)

    def send(self, op: Any, args: Any = None, rid: Optional[int] = None) -> int:
        rid, data = self.frame(op, args, rid)
        self.sock.sendall(data)
        return rid

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- receiving
    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise EOFError(f"connection closed by the daemon ({len(self._buf)} of {n} bytes read)")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def recv(self) -> Any:
        """The next frame, decoded (msgpack str -> str, bin -> bytes), its
        envelope checked."""
        (n,) = HDR.unpack(self._read_exact(4))
        resp = msgpack.unpackb(self._read_exact(n), raw=False, strict_map_key=False)
        check_envelope(resp)
        return resp

    def response(self, rid: Any) -> list:
        """The response to request ``rid`` (reading, and keeping, others)."""
        if rid in self._stash:
            return self._stash.pop(rid)
        while True:
            resp = self.recv()
            if resp[0] == rid:
                return resp
            assert resp[0] not in self._stash, f"two responses with id {resp[0]!r}: {self._stash[resp[0]]!r}, {resp!r}"
            self._stash[resp[0]] = resp

    def responses(self, rids: Sequence[Any]) -> Dict[Any, list]:
        return {rid: self.response(rid) for rid in rids}

    def eof(self) -> bool:
        """True when the daemon closed the connection and nothing is left."""
        if self._buf:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    # -- calls
    def call(self, op: str, args: Any = None) -> Tuple[Optional[Dict[str, Any]], Any]:
        rid = self.send(op, args)
        resp = self.response(rid)
        return resp[1], resp[2]

    def ok(self, op: str, args: Any = None) -> Any:
        """Result of a request that must succeed; its result is checked
        against ops.json's schema for the op."""
        err, res = self.call(op, args)
        assert err is None, f"{op} {short(args)}: unexpected error {err!r}"
        check_ops_json_result(op, res)
        return res

    def error(self, op: str, args: Any = None) -> Dict[str, Any]:
        err, res = self.call(op, args)
        assert err is not None, f"{op} {short(args)}: expected an error, got result {short(res)}"
        return err

    def assert_usable(self) -> None:
        err, res = self.call("ping")
        assert (err, res) == (None, {}), f"connection not usable any more: ping gave {err!r} {res!r}"


def short(x: Any, n: int = 300) -> str:
    s = repr(x)
    return s if len(s) <= n else s[:n] + "..."


def wait_for(pred: Callable[[], Any], what: str, timeout: float = WAIT, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, f"gave up after {timeout}s waiting for {what}"
        time.sleep(interval)


def connect_and_ping(path: str) -> Conn:
    """A new connection that the daemon serves (retrying while it refuses
    connections with INTERNAL: it may not have noticed a close yet)."""
    holder: List[Conn] = []

    def attempt() -> bool:
        c = Conn(path)
        rid = c.send("ping")
        resp = c.recv()
        if resp[0] is None and resp[1] is not None and resp[1]["name"] == "INTERNAL":
            c.close()
            return False
        assert resp == [rid, None, {}], f"ping on a new connection: {resp!r}"
        holder.append(c)
        return True

    wait_for(attempt, f"a new connection to {path} to be served")
    return holder[0]


# ------------------------------------------------------------------- shapes
#
# A shape is
#   - a type string in ops.json's notation: int, str, bytes, bool, nil, map,
#     any, a NAMED type, "[T]" (list of T), "[T1,T2,...]" (a fixed-length
#     list), "A|B" (either); in a map shape a trailing "?" makes the key
#     optional (present -> the type), elsewhere it allows nil;
#   - a dict (a map: key -> shape; "!key" means the key must be absent;
#     "__exact__": True forbids keys not listed);
#   - a callable(value, path) raising AssertionError.

Shape = Union[str, Dict[str, Any], Callable[[Any, str], None]]


def _parse_type(s: str) -> Any:
    toks = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[\[\],|?]", s)
    assert "".join(toks) == s.replace(" ", ""), f"bad type string {s!r}"
    pos = 0

    def peek() -> Optional[str]:
        return toks[pos] if pos < len(toks) else None

    def take(t: Optional[str] = None) -> str:
        nonlocal pos
        tok = toks[pos]
        assert t is None or tok == t, f"type {s!r}: expected {t!r} at token {pos}"
        pos += 1
        return tok

    def alt() -> Any:
        items = [atom()]
        while peek() == "|":
            take("|")
            items.append(atom())
        return items[0] if len(items) == 1 else ("alt", items)

    def atom() -> Any:
        if peek() == "[":
            take("[")
            items = [alt()]
            while peek() == ",":
                take(",")
                items.append(alt())
            take("]")
            return ("list", items[0]) if len(items) == 1 else ("tuple", items)
        return ("name", take())

    node = alt()
    if peek() == "?":
        take("?")
        node = ("opt", node)
    assert peek() is None, f"bad type string {s!r}"
    return node


_PARSED: Dict[str, Any] = {}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


BASE_TYPES: Dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "str": lambda v: isinstance(v, str),
    "bytes": lambda v: isinstance(v, bytes),   # the daemon sends bytes as bin
    "bool": lambda v: isinstance(v, bool),
    "nil": lambda v: v is None,
    "map": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}


def map_of(shape: Shape) -> Callable[[Any, str], None]:
    def check(v: Any, path: str) -> None:
        assert isinstance(v, dict), f"{path}: expected a map, got {short(v)}"
        for k, x in v.items():
            assert isinstance(k, str), f"{path}: key {k!r} is not a str"
            check_shape(x, shape, f"{path}.{k}")
    return check


def nonempty_str(v: Any, path: str) -> None:
    assert isinstance(v, str) and v, f"{path}: expected a non-empty str, got {v!r}"


COUNTERS = ["uptime_ms", "connections", "connections_total", "requests", "errors", "bad_frames", "produced",
            "delivered", "delivery_failed", "orphan_delivered", "orphan_failed", "enqueue_failed",
            "reports_pending", "rss_bytes", "rss_peak_bytes", "memory_trims"]

NAMED: Dict[str, Shape] = {
    "error": {"code": "int", "name": "str", "message": nonempty_str, "retriable": "bool"},
    "run": "[int,int,int,int,error|nil]",                       # poll_reports / produce reports
    "outcome": "[int,int,error|nil]",                           # produce wait results[i]
    "broker": {"id": "int", "host": "str", "port": "int"},
    "md_partition": {"id": "int", "leader": "int", "replicas": "[int]", "isrs": "[int]", "error": "error|nil"},
    "md_topic": {"name": "str", "error": "error|nil", "partitions": "[md_partition]"},
    "message": "[int,int,int,int,bytes|nil,bytes|nil,[[str,bytes|nil]]|nil]",
    "event": {"type": "str", "topic": "str", "partition": "int", "offset": "int?"},
    "tpo": "[str,int,int]",
    "counters": {k: "int" for k in COUNTERS},
    "cluster_stats": {"bootstrap": "str", "outq_len": "int", "librdkafka": "str|nil"},
}
NAMED["clusters_stats"] = map_of("cluster_stats")


def check_shape(v: Any, shape: Shape, path: str = "result") -> None:
    if callable(shape):
        shape(v, path)
    elif isinstance(shape, dict):
        _check_map(v, shape, path)
    else:
        node = _PARSED.get(shape)
        if node is None:
            node = _PARSED[shape] = _parse_type(shape)
        _check_node(v, node, path)


def _check_map(v: Any, shape: Dict[str, Any], path: str) -> None:
    assert isinstance(v, dict), f"{path}: expected a map, got {short(v)}"
    for k in v:
        assert isinstance(k, str), f"{path}: map key {k!r} is not a str"
    for k, t in shape.items():
        if k == "__exact__":
            continue
        if k.startswith("!"):
            assert k[1:] not in v, f"{path}: key {k[1:]!r} must be absent, got {short(v[k[1:]])}"
            continue
        optional = isinstance(t, str) and t.endswith("?")
        if k not in v:
            assert optional, f"{path}: required key {k!r} missing in {short(v)}"
            continue
        check_shape(v[k], t[:-1] if optional else t, f"{path}.{k}")
    if shape.get("__exact__"):
        extra = set(v) - {k.lstrip("!") for k in shape}
        assert not extra, f"{path}: unexpected keys {sorted(extra)} in {short(v)}"


def _check_node(v: Any, node: Any, path: str) -> None:
    kind = node[0]
    if kind == "name":
        name = node[1]
        if name in BASE_TYPES:
            assert BASE_TYPES[name](v), f"{path}: expected {name}, got {type(v).__name__} {short(v)}"
        else:
            assert name in NAMED, f"shape bug: unknown type name {name!r}"
            check_shape(v, NAMED[name], path)
    elif kind == "opt":
        if v is not None:
            _check_node(v, node[1], path)
    elif kind == "alt":
        failures = []
        for alt in node[1]:
            try:
                _check_node(v, alt, path)
                return
            except AssertionError as e:
                failures.append(str(e))
        raise AssertionError(f"{path}: matches none of the alternatives: " + " / ".join(failures))
    elif kind == "list":
        assert isinstance(v, list), f"{path}: expected a list, got {type(v).__name__} {short(v)}"
        for i, x in enumerate(v):
            _check_node(x, node[1], f"{path}[{i}]")
    elif kind == "tuple":
        assert isinstance(v, list) and len(v) == len(node[1]), (
            f"{path}: expected a list of {len(node[1])}, got {short(v)}")
        for i, (x, t) in enumerate(zip(v, node[1])):
            _check_node(x, t, f"{path}[{i}]")
    else:  # pragma: no cover
        raise AssertionError(f"shape bug: {node!r}")


def check_ops_json_result(op: str, res: Any) -> None:
    assert op in OPS, f"{op} is not an op of ops.json"
    check_shape(res, OPS[op]["result"], f"{op} result (ops.json)")


def check_error_map(err: Any, path: str = "error") -> None:
    """An error map per SPEC 3: its code and name agree with the tables.
    (Whether `retriable` is right is checked by run_error_case.)"""
    check_shape(err, "error", path)
    code, name = err["code"], err["name"]
    if code in ERROR_NAMES:
        assert name == ERROR_NAMES[code], f"{path}: code {code} is {ERROR_NAMES[code]}, not {name}"
    else:
        assert code >= KAFKA_BASE - 1000, f"{path}: code {code} is neither a daemon code nor a Kafka error"


def check_envelope(resp: Any) -> None:
    """[id, error, result]: id uint or nil, error nil or an error map, and
    result nil whenever error is not."""
    assert isinstance(resp, list) and len(resp) == 3, f"not a response envelope: {short(resp)}"
    rid, err, res = resp
    assert rid is None or (_is_int(rid) and 0 <= rid < 2**64), f"bad response id {rid!r}"
    if err is not None:
        check_error_map(err, f"response {rid!r} error")
        assert res is None, f"response {rid!r}: an error with a result {short(res)}"


# ---------------------------------------------------------------- environment

@dataclass
class DaemonHandle:
    """A daemon the suite started itself (for the configurations the cases
    need): its socket, and a way to signal it."""
    socket: str
    signal: Callable[[int], None]


@dataclass
class Env:
    topic: str                      # read-only topic holding exactly `prefill`
    partitions: int
    prefill: List[Dict[str, Any]]   # {partition, offset, key, value, headers, timestamp}
    produce_topic: str              # a topic the cases write to (4 partitions)
    start_daemon: Callable[..., DaemonHandle]   # (extra="", bootstrap=None)
    unreachable_bootstrap: Callable[[], str]

    @property
    def socket(self) -> str:
        assert SOCKET_PATH, "no daemon under test"
        return SOCKET_PATH

    def per_partition(self) -> Dict[int, int]:
        out = {p: 0 for p in range(self.partitions)}
        for m in self.prefill:
            out[m["partition"]] += 1
        return out


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------ consumer helpers

@dataclass
class Collected:
    messages: List[Tuple[str, int, int, int, Optional[bytes], Optional[bytes], Any]] = field(default_factory=list)
    events: List[Dict[str, Any]] = field(default_factory=list)

    def offsets(self) -> Dict[int, List[int]]:
        out: Dict[int, List[int]] = {}
        for m in self.messages:
            out.setdefault(m[1], []).append(m[2])
        return out

    def events_of(self, kind: str) -> Set[int]:
        return {e["partition"] for e in self.events if e["type"] == kind}


def check_consume_result(res: Any, into: Collected) -> None:
    check_ops_json_result("consume", res)
    check_shape(res, CONSUME_RESULT)
    for i, m in enumerate(res["messages"]):
        assert m[0] < len(res["topics"]), f"messages[{i}]: topic_index {m[0]} with topics {res['topics']}"
        assert m[2] >= 0, f"messages[{i}]: offset {m[2]}"
        assert m[3] >= 0 or m[3] == -1, f"messages[{i}]: timestamp {m[3]}"
        into.messages.append((res["topics"][m[0]], m[1], m[2], m[3], m[4], m[5], m[6]))
    for e in res["events"]:
        assert e["type"] in ("assigned", "revoked", "eof"), f"unknown event {e!r}"
        if e["type"] == "eof":
            assert "offset" in e, f"an eof event carries the offset: {e!r}"
    into.events.extend(res["events"])


def consume_until(c: Conn, handle: int, done: Callable[[Collected], bool], what: str,
                  into: Optional[Collected] = None) -> Collected:
    got = into if into is not None else Collected()
    deadline = time.monotonic() + WAIT
    while not done(got):
        assert time.monotonic() < deadline, f"gave up waiting for {what}: have {short(got, 2000)}"
        check_consume_result(c.ok("consume", {"handle": handle, "max": 1000, "timeout_ms": 500}), got)
    return got


def open_consumer(c: Conn, env: Env, **kw: Any) -> int:
    args = {"topic": env.topic, "auto_offset_reset": "earliest"}
    args.update(kw)
    res = c.ok("consumer_open", args)
    check_shape(res, CONSUMER_OPEN_RESULT)
    return res["handle"]


def all_assigned(env: Env, parts: Optional[Sequence[int]] = None) -> Callable[[Collected], bool]:
    want = set(range(env.partitions) if parts is None else parts)
    return lambda got: want <= got.events_of("assigned")


def all_prefill(env: Env) -> Callable[[Collected], bool]:
    n = len(env.prefill)
    return lambda got: len(got.messages) >= n


def same_as_prefill(env: Env, got: Collected) -> None:
    have = sorted((m[1], m[2], m[4], m[5], m[3], [tuple(h) for h in m[6]] if m[6] is not None else None)
                  for m in got.messages)
    want = sorted((m["partition"], m["offset"], m["key"], m["value"], m["timestamp"],
                   [tuple(h) for h in m["headers"]] if m["headers"] else None) for m in env.prefill)
    assert have == want, f"consumed {short(have, 3000)}\n expected {short(want, 3000)}"
    assert all(m[0] == env.topic for m in got.messages)


# ------------------------------------------------------- SPEC result shapes

HELLO_RESULT = {"version": "int", "server": "str", "max_frame": "int", "max_batch": "int", "max_pending": "int",
                "clusters": "[str]", "default_cluster": "str"}
EMPTY = {"__exact__": True}
METADATA_RESULT = {"cluster": "str", "brokers": "[broker]", "topics": "[md_topic]"}
PRODUCE_NONE = {"count": "int", "!seq": None, "!reports": None, "!results": None}
PRODUCE_REPORT = {"count": "int", "seq": "int", "reports": "[run]", "!results": None}
PRODUCE_WAIT = {"count": "int", "results": "[outcome]", "!seq": None, "!reports": None}
POLL_RESULT = {"reports": "[run]", "pending": "int"}
FLUSH_RESULT = {"remaining": "int"}
STATS_RESULT = {"daemon": "counters", "clusters": "clusters_stats", "consumers": "[map]"}
CONSUMER_OPEN_RESULT = {"handle": "int", "consumer": nonempty_str, "attached": "int", "member_id": "str?"}
CONSUME_RESULT = {"topics": "[str]", "messages": "[message]", "events": "[event]"}
OFFSETS_RESULT = {"offsets": "[tpo]"}
WATERMARKS_RESULT = {"low": "int", "high": "int"}


# ----------------------------------------------------------------- op cases

@dataclass
class OpCase:
    id: str
    op: str
    args: Any                      # the args map, or callable(env, conn, state) -> args
    shape: Shape                   # SPEC shape of the result (ops.json's is checked too)
    setup: Optional[Callable[[Env, Conn], Dict[str, Any]]] = None
    check: Optional[Callable[[Env, Conn, Dict[str, Any], Any], None]] = None


def run_op_case(case: OpCase, env: Env) -> Any:
    with Conn(env.socket) as c:
        st = case.setup(env, c) if case.setup else {}
        args = case.args(env, c, st) if callable(case.args) else case.args
        res = c.ok(case.op, args)
        check_shape(res, case.shape, f"{case.op} result (SPEC)")
        if case.check:
            case.check(env, c, st, res)
        c.assert_usable()
        return res


def runs_by_seq(runs: List[list]) -> Dict[int, Tuple[int, int, Any]]:
    """seq -> (partition, offset, error) from runs, each seq exactly once."""
    out: Dict[int, Tuple[int, int, Any]] = {}
    for seq, count, part, off, err in runs:
        assert count >= 1, f"run {[seq, count, part, off, err]}: count < 1"
        for i in range(count):
            assert seq + i not in out, f"seq {seq + i} reported twice ({runs})"
            out[seq + i] = (part, off + i if off >= 0 else off, err)
    return out


# hello

def _check_hello(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res["version"] == 1
    assert res["default_cluster"] in res["clusters"], res
    assert res["max_frame"] >= 1024 and res["max_batch"] >= 1 and res["max_pending"] >= 1, res
    assert res["server"], res


# metadata

def _check_metadata_topics(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res["brokers"], res
    by_name = {t["name"]: t for t in res["topics"]}
    t = by_name[env.topic]
    assert t["error"] is None, t
    assert [p["id"] for p in t["partitions"]] == list(range(env.partitions)), "partitions sorted by id"
    broker_ids = {b["id"] for b in res["brokers"]}
    for p in t["partitions"]:
        assert p["error"] is None and p["leader"] in broker_ids and p["leader"] in p["replicas"], p
    missing = by_name[st["missing"]]
    assert missing["error"] is not None and missing["error"]["name"] == "UNKNOWN_TOPIC_OR_PART", missing
    assert missing["error"]["code"] == KAFKA_BASE + 3, missing


def _check_metadata_all(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert env.topic in {t["name"] for t in res["topics"]}


# produce

def _check_produce_none(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res == {"count": 3}, res
    assert c.ok("flush", {"timeout_ms": 30000}) == {"remaining": 0}   # flush covers ack none too
    assert c.ok("poll_reports") == {"reports": [], "pending": 0}        # and none gives no reports


def _check_produce_report(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res["count"] == 1 and res["seq"] == 1, f"first numbers of a connection start at 1: {res}"
    runs = list(res["reports"])
    assert c.ok("flush", {"timeout_ms": 30000}) == {"remaining": 0}
    poll = c.ok("poll_reports")
    check_shape(poll, POLL_RESULT)
    runs += poll["reports"]
    got = runs_by_seq(runs)
    assert set(got) == {1}, runs
    part, off, err = got[1]
    assert err is None and part == 2 and off >= 0, runs
    assert poll["pending"] == 0


def _wait_messages() -> List[Any]:
    return [
        {"value": b"w-0", "key": b"k0", "partition": 1,
         "headers": [["h1", b"v1"], ["h-nil", None], ["h-str", "text"]], "timestamp": int(time.time() * 1000) - 5000},
        b"w-1-compact",                                   # bare bytes: the value, no key
        {"value": None, "key": b"tombstone", "partition": 3},
        {"value": "w-3-str", "key": "str-key", "partition": 0},
        {"value": b"", "partition": 1},
    ]


def _check_produce_wait(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    msgs = _wait_messages()
    assert res["count"] == len(msgs) and len(res["results"]) == len(msgs), res
    for i, (m, (part, off, err)) in enumerate(zip(msgs, res["results"])):
        assert err is None, f"message {i}: {err}"
        assert off >= 0, f"message {i}: offset {off}"
        if isinstance(m, dict) and "partition" in m:
            assert part == m["partition"], f"message {i}: partition {part} != {m['partition']}"
        else:
            assert 0 <= part < 4, f"message {i}: partition {part}"
    # same partition: offsets in request order
    p1 = [r[1] for m, r in zip(msgs, res["results"]) if isinstance(m, dict) and m.get("partition") == 1]
    assert p1 == sorted(p1) and len(set(p1)) == len(p1), res["results"]


def _check_produce_single_wait(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res["count"] == 1 and len(res["results"]) == 1 and res["results"][0][2] is None, res
    assert res["results"][0][0] == 0


# poll_reports

def _setup_poll(env: Env, c: Conn) -> Dict[str, Any]:
    t = env.produce_topic
    r1 = c.ok("produce", {"topic": t, "messages": [{"value": b"p-%d" % i, "partition": 1} for i in range(3)]})
    check_shape(r1, PRODUCE_REPORT)
    r2 = c.ok("produce", {"topic": t, "ack": "wait", "value": b"p-wait", "partition": 1})
    check_shape(r2, PRODUCE_WAIT)
    r3 = c.ok("produce", {"topic": t, "ack": "none", "value": b"p-none", "partition": 1})
    check_shape(r3, PRODUCE_NONE)
    r4 = c.ok("produce", {"topic": t, "messages": [{"value": b"p-4", "partition": 1}, {"value": b"p-5", "partition": 1}]})
    check_shape(r4, PRODUCE_REPORT)
    # report and wait requests share the connection's counter; none takes no numbers
    assert (r1["seq"], r1["count"]) == (1, 3), r1
    assert (r4["seq"], r4["count"]) == (5, 2), f"seq after 3 report + 1 wait messages: {r4}"
    seqs = [1, 2, 3, 5, 6]
    assert c.ok("flush", {"timeout_ms": 30000}) == {"remaining": 0}
    return {"seqs": seqs, "early": r1["reports"] + r2.get("reports", []) + r4["reports"]}


def _check_poll(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    runs = st["early"] + res["reports"]
    taken = sum(r[1] for r in res["reports"])
    assert taken <= 2, f"max=2 bounds messages, not runs: {res['reports']}"
    assert res["pending"] == 0, res
    rest = c.ok("poll_reports", {"max": 65536, "timeout_ms": 0})
    check_shape(rest, POLL_RESULT)
    runs += rest["reports"]
    got = runs_by_seq(runs)
    assert sorted(got) == st["seqs"], f"reports for exactly the report-mode seqs {st['seqs']}: {runs}"
    offs = []
    for seq in st["seqs"]:
        part, off, err = got[seq]
        assert err is None and part == 1 and off >= 0, (seq, got[seq])
        offs.append(off)
    assert offs == sorted(offs), f"per-partition order kept: {offs}"
    assert c.ok("poll_reports", {"timeout_ms": 0}) == {"reports": [], "pending": 0}


# flush / stats

def _setup_flush(env: Env, c: Conn) -> Dict[str, Any]:
    c.ok("produce", {"topic": env.produce_topic, "messages": [b"f-%d" % i for i in range(20)]})
    c.ok("produce", {"topic": env.produce_topic, "ack": "none", "messages": [b"fn-%d" % i for i in range(20)]})
    return {}


def _check_stats(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    hello = c.ok("hello", {"version": 1})
    assert set(res["clusters"]) == set(hello["clusters"]), res["clusters"]
    d = res["daemon"]
    assert d["connections"] >= 1 and d["connections_total"] >= d["connections"] and d["requests"] >= 1, d
    assert 0 < d["rss_bytes"] <= d["rss_peak_bytes"] < 1 << 40, d
    one = c.ok("stats", {"cluster": hello["default_cluster"]})
    check_shape(one, STATS_RESULT)
    assert list(one["clusters"]) == [hello["default_cluster"]], one["clusters"]
    # consumers: a consumer opened here is listed with its key and state
    opened = c.ok("consumer_open", {"topic": env.topic, "group": unique("proto-stats")})
    listed = {e["consumer"]: e for e in c.ok("stats")["consumers"]}
    assert opened["consumer"] in listed, listed
    e = listed[opened["consumer"]]
    check_shape(e, {"consumer": "str", "mode": "str", "attached": "int", "partitions": "int", "buffered": "int",
                    "declared": "bool"})
    assert e["mode"] == "simple" and e["attached"] >= 1 and e["partitions"] == env.partitions and not e["declared"], e
    c.ok("consumer_close", {"handle": opened["handle"]})


# consumers

def _setup_open(env: Env, c: Conn) -> Dict[str, Any]:
    return {"group": unique("proto-g")}


def _check_open(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res["attached"] == 1, res
    if "group" in st["args"]:
        # SPEC 4.8: the same (cluster, mode, group, topics) on another
        # connection attaches to the same consumer.  (Not checked without a
        # group: this daemon gives each groupless simple open its own
        # consumer, which SPEC 4.8 does not say.)
        with Conn(env.socket) as other:
            res2 = other.ok("consumer_open", st["args"])
            check_shape(res2, CONSUMER_OPEN_RESULT)
            assert res2["consumer"] == res["consumer"] and res2["attached"] == 2, (res, res2)
            assert res2["handle"] != res["handle"], "a handle identifies one attach"
    h = res["handle"]
    got = consume_until(c, h, lambda g: bool(g.events or g.messages), "the first event or message")
    assert got.events or got.messages


def _open_args(mode: str) -> Callable[[Env, Conn, Dict[str, Any]], Dict[str, Any]]:
    def args(env: Env, c: Conn, st: Dict[str, Any]) -> Dict[str, Any]:
        a: Dict[str, Any] = {"topic": env.topic, "auto_offset_reset": "earliest"}
        if mode == "group":
            a = {"mode": "group", "topics": [env.topic], "group": st["group"], "auto_offset_reset": "earliest"}
        elif mode == "simple-group":
            a["group"] = st["group"]
        elif mode == "simple-partitions":
            a.update(partitions=[2, 0], offsets=[[2, 1]])
        st["args"] = a
        return a
    return args


def _setup_consumer(group: bool = False, read_all: bool = False, parts: Optional[List[int]] = None
                    ) -> Callable[[Env, Conn], Dict[str, Any]]:
    def setup(env: Env, c: Conn) -> Dict[str, Any]:
        kw: Dict[str, Any] = {}
        st: Dict[str, Any] = {}
        if group:
            st["group"] = kw["group"] = unique("proto-g")
        if parts is not None:
            kw["partitions"] = parts
        st["handle"] = open_consumer(c, env, **kw)
        st["got"] = Collected()
        want = all_assigned(env, parts)
        done = (lambda g: want(g) and all_prefill(env)(g)) if read_all else want
        consume_until(c, st["handle"], done, "the assignment" + (" and the prefilled messages" if read_all else ""),
                      into=st["got"])
        return st
    return setup


def _with_handle(extra: Optional[Dict[str, Any]] = None) -> Callable[[Env, Conn, Dict[str, Any]], Dict[str, Any]]:
    def args(env: Env, c: Conn, st: Dict[str, Any]) -> Dict[str, Any]:
        a = {"handle": st["handle"]}
        for k, v in (extra or {}).items():
            a[k] = v(env) if callable(v) else v
        return a
    return args


def _check_consume(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    got = Collected()
    check_consume_result(res, got)
    counts = env.per_partition()
    eof_done = lambda g: set(counts) <= g.events_of("eof")                     # noqa: E731
    consume_until(c, st["handle"], lambda g: all_prefill(env)(g) and all_assigned(env)(g) and eof_done(g),
                  "every prefilled message, assignment and eof", into=got)
    same_as_prefill(env, got)
    for p, offs in got.offsets().items():
        assert offs == sorted(offs), f"partition {p}: per-partition order {offs}"
    eofs = {e["partition"]: e["offset"] for e in got.events if e["type"] == "eof"}
    assert eofs == counts, f"eof offsets {eofs} != partition ends {counts}"
    assert all(e["topic"] == env.topic for e in got.events), got.events
    # nothing more: each message exactly once
    more = c.ok("consume", {"handle": st["handle"], "timeout_ms": 200})
    check_consume_result(more, Collected())
    assert more["messages"] == [], more


def _check_consume_max(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    got = Collected()
    check_consume_result(res, got)
    assert len(res["messages"]) <= 1, f"max=1: {res['messages']}"
    deadline = time.monotonic() + WAIT
    while len(got.messages) < len(env.prefill):
        assert time.monotonic() < deadline, f"gave up waiting for the prefilled messages: have {short(got, 2000)}"
        r = c.ok("consume", {"handle": st["handle"], "max": 1, "timeout_ms": 500})
        check_consume_result(r, got)
        assert len(r["messages"]) <= 1, r
    same_as_prefill(env, got)


def _check_commit_all(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    counts = env.per_partition()
    have = {(t, p): o for t, p, o in res["offsets"]}
    assert have == {(env.topic, p): n for p, n in counts.items() if n}, f"commit of everything received: {res}"
    com = c.ok("committed", {"handle": st["handle"]})
    check_shape(com, OFFSETS_RESULT)
    assert {(t, p): o for t, p, o in com["offsets"]} == {(env.topic, p): n for p, n in counts.items()}, com


def _check_commit_explicit(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res["offsets"] == [[env.topic, 0, 1]], res
    com = c.ok("committed", {"handle": st["handle"], "partitions": [[env.topic, 0]]})
    assert com["offsets"] == [[env.topic, 0, 1]], com


def _setup_committed(env: Env, c: Conn) -> Dict[str, Any]:
    st = _setup_consumer(group=True)(env, c)
    res = c.ok("commit", {"handle": st["handle"], "offsets": [[env.topic, 1, 2]]})
    check_shape(res, OFFSETS_RESULT)
    return st


def _check_committed(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    have = {(t, p): o for t, p, o in res["offsets"]}
    assert have == {(env.topic, 1): 2, (env.topic, 2): -1001}, f"-1001 when nothing is committed: {res}"


def _check_seek(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res == {}
    want = {0: [0, 1, 2], 1: [1, 2]}
    counts = env.per_partition()
    assert counts[0] == 3 and counts[1] == 3, "prefill layout"
    got = consume_until(c, st["handle"], lambda g: sum(len(v) for v in g.offsets().values()) >= 5,
                        "the messages after the seek")
    more = c.ok("consume", {"handle": st["handle"], "timeout_ms": 200})
    check_consume_result(more, got)
    assert got.offsets() == want, f"after seek (p0 -> earliest, p1 -> 1): {got.offsets()}"


def _check_watermarks(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res == {"low": 0, "high": env.per_partition()[3]}, res


def _times_args(env: Env, c: Conn, st: Dict[str, Any]) -> Dict[str, Any]:
    ts = {(m["partition"], m["offset"]): m["timestamp"] for m in env.prefill}
    return {"timestamps": [[env.topic, 0, ts[(0, 1)]],          # exactly the second record's
                           [env.topic, 1, ts[(1, 0)] - 1000],   # before every record
                           [env.topic, 2, ts[(2, 2)] + 1],      # after every record
                           [env.topic, 3, -1]],                 # latest: the high watermark
            "timeout_ms": 10000}


def _check_offsets_for_times(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    high3 = env.per_partition()[3]
    assert res == {"offsets": [[env.topic, 0, 1], [env.topic, 1, 0], [env.topic, 2, -1], [env.topic, 3, high3]]}, res


def _check_close(env: Env, c: Conn, st: Dict[str, Any], res: Any) -> None:
    assert res == {}
    for op, args in (("consume", {"handle": st["handle"]}), ("consumer_close", {"handle": st["handle"]})):
        err = c.error(op, args)
        assert err["name"] == "UNKNOWN_HANDLE", f"{op} after consumer_close: {err}"


OP_CASES: List[OpCase] = [
    OpCase("hello", "hello", {"version": 1, "client": "protocol-suite"}, HELLO_RESULT, check=_check_hello),
    OpCase("hello-newer-client", "hello", {"version": 99}, HELLO_RESULT, check=_check_hello),
    OpCase("hello-nil-args", "hello", None, HELLO_RESULT, check=_check_hello),
    OpCase("ping", "ping", None, EMPTY),
    OpCase("ping-unknown-args-ignored", "ping", {"future_field": [1, {"x": b"y"}]}, EMPTY),
    OpCase("metadata-topics", "metadata", lambda env, c, st: {"topics": [env.topic, st["missing"]], "timeout_ms": 10000},
           METADATA_RESULT, setup=lambda env, c: {"missing": unique("proto-missing")}, check=_check_metadata_topics),
    OpCase("metadata-all", "metadata", {}, METADATA_RESULT, check=_check_metadata_all),
    OpCase("produce-none", "produce",
           lambda env, c, st: {"topic": env.produce_topic, "ack": "none", "messages": [b"n-0", {"value": b"n-1"}, "n-2"]},
           PRODUCE_NONE, check=_check_produce_none),
    OpCase("produce-report-single", "produce",
           lambda env, c, st: {"topic": env.produce_topic, "value": b"r-0", "key": b"rk", "partition": 2},
           PRODUCE_REPORT, check=_check_produce_report),
    OpCase("produce-wait-batch", "produce",
           lambda env, c, st: {"topic": env.produce_topic, "ack": "wait", "messages": _wait_messages()},
           PRODUCE_WAIT, check=_check_produce_wait),
    OpCase("produce-wait-partitioner", "produce",
           lambda env, c, st: {"topic": env.produce_topic, "ack": "wait", "key": b"pk", "value": b"v",
                               "partitioner": "pykafka_hashing", "cluster": c.ok("hello")["default_cluster"]},
           PRODUCE_WAIT, check=lambda env, c, st, res: _check_pykafka_hashing(res, b"pk", 4)),
    OpCase("produce-wait-empty-batch", "produce",
           lambda env, c, st: {"topic": env.produce_topic, "ack": "wait", "messages": []},
           PRODUCE_WAIT, check=lambda env, c, st, res: _eq(res, {"count": 0, "results": []})),
    OpCase("poll_reports", "poll_reports", {"max": 2, "timeout_ms": 0}, POLL_RESULT, setup=_setup_poll,
           check=_check_poll),
    OpCase("poll_reports-parked-timeout", "poll_reports", {"timeout_ms": 50}, POLL_RESULT,
           check=lambda env, c, st, res: _eq(res, {"reports": [], "pending": 0})),
    OpCase("flush", "flush", {"timeout_ms": 30000}, FLUSH_RESULT, setup=_setup_flush,
           check=lambda env, c, st, res: _eq(res, {"remaining": 0})),
    OpCase("stats", "stats", {}, STATS_RESULT, check=_check_stats),
    OpCase("consumer_open-simple", "consumer_open", _open_args("simple"), CONSUMER_OPEN_RESULT, setup=_setup_open,
           check=_check_open),
    OpCase("consumer_open-simple-group", "consumer_open", _open_args("simple-group"), CONSUMER_OPEN_RESULT,
           setup=_setup_open, check=_check_open),
    OpCase("consumer_open-simple-partitions", "consumer_open", _open_args("simple-partitions"), CONSUMER_OPEN_RESULT,
           setup=_setup_open, check=lambda env, c, st, res: _check_partitions_open(env, c, res)),
    OpCase("consumer_open-group", "consumer_open", _open_args("group"), CONSUMER_OPEN_RESULT, setup=_setup_open,
           check=_check_open),
    OpCase("consume", "consume", _with_handle({"max": 1000, "max_bytes": 1 << 20, "timeout_ms": 500}), CONSUME_RESULT,
           setup=lambda env, c: {"handle": open_consumer(c, env)}, check=_check_consume),
    OpCase("consume-max-1", "consume", _with_handle({"max": 1, "timeout_ms": 500}), CONSUME_RESULT,
           setup=lambda env, c: {"handle": open_consumer(c, env)}, check=_check_consume_max),
    OpCase("commit-default", "commit", _with_handle(), OFFSETS_RESULT, setup=_setup_consumer(group=True, read_all=True),
           check=_check_commit_all),
    OpCase("commit-explicit", "commit", _with_handle({"offsets": lambda env: [[env.topic, 0, 1]]}), OFFSETS_RESULT,
           setup=_setup_consumer(group=True), check=_check_commit_explicit),
    OpCase("committed", "committed", _with_handle({"partitions": lambda env: [[env.topic, 1], [env.topic, 2]],
                                                   "timeout_ms": 10000}),
           OFFSETS_RESULT, setup=_setup_committed, check=_check_committed),
    OpCase("seek", "seek", _with_handle({"offsets": lambda env: [[env.topic, 0, -2], [env.topic, 1, 1]]}), EMPTY,
           setup=_setup_consumer(read_all=True), check=_check_seek),
    OpCase("watermarks", "watermarks", lambda env, c, st: {"topic": env.topic, "partition": 3, "timeout_ms": 10000},
           WATERMARKS_RESULT, check=_check_watermarks),
    OpCase("offsets_for_times", "offsets_for_times", _times_args, OFFSETS_RESULT, check=_check_offsets_for_times),
    OpCase("consumer_close", "consumer_close", _with_handle(), EMPTY,
           setup=lambda env, c: {"handle": open_consumer(c, env)}, check=_check_close),
]


def _eq(res: Any, want: Any) -> None:
    assert res == want, f"{short(res)} != {short(want)}"


def _check_pykafka_hashing(res: Any, key: bytes, nparts: int) -> None:
    import hashlib
    want = int(hashlib.sha1(key).hexdigest(), 16) % nparts
    assert res["results"][0][2] is None and res["results"][0][0] == want, f"{res} (expected partition {want})"


def _check_partitions_open(env: Env, c: Conn, res: Any) -> None:
    assert res["attached"] == 1, res
    got = consume_until(c, res["handle"], lambda g: {0, 2} <= g.events_of("assigned") and len(g.messages) >= 5,
                        "partitions 0 and 2 (from offset 1 on 2)")
    assert got.events_of("assigned") == {0, 2}, got.events
    assert got.offsets() == {0: [0, 1, 2], 2: [1, 2]}, got.offsets()


# -------------------------------------------------------------- error cases

@dataclass
class Outcome:
    err: Dict[str, Any]
    conn: Conn                     # the connection that got the error
    closed: bool = False           # the daemon closes it after this error
    socket: Optional[str] = None   # the daemon that sent it (default: the one under test)


@dataclass
class ErrorCase:
    id: str
    name: str                      # expected name (daemon code from ops.json, or a Kafka error name)
    trigger: Callable[[Env], Outcome]
    code: Optional[int] = None     # Kafka errors: the expected code
    retriable: Optional[bool] = None   # Kafka errors: the expected flag (daemon codes: from SPEC 3)
    message_has: Optional[str] = None  # a word the message must contain (e.g. the field)


def _simple(op: str, args: Any) -> Callable[[Env], Outcome]:
    def trig(env: Env) -> Outcome:
        c = Conn(env.socket)
        a = args(env) if callable(args) else args
        return Outcome(c.error(op, a), c)
    return trig


def _raw(obj: Any, want_id: Any) -> Callable[[Env], Outcome]:
    def trig(env: Env) -> Outcome:
        c = Conn(env.socket)
        c.send_bytes(raw_frame(obj))
        resp = c.recv()
        assert resp[0] == want_id, f"{obj!r}: response id {resp[0]!r}, expected {want_id!r}"
        return Outcome(resp[1], c)
    return trig


def _bad_frame(data: bytes) -> Callable[[Env], Outcome]:
    def trig(env: Env) -> Outcome:
        c = Conn(env.socket)
        rid = c.send("ping")              # a valid request first: answered before the error
        c.send_bytes(data)
        assert c.recv() == [rid, None, {}]
        resp = c.recv()
        assert resp[0] is None and resp[2] is None, f"BAD_FRAME frame must be [nil, error, nil]: {resp!r}"
        return Outcome(resp[1], c, closed=True)
    return trig


def _too_large(env: Env) -> Outcome:
    c = Conn(env.socket)
    max_batch = c.ok("hello", {"version": 1})["max_batch"]
    before = c.ok("stats")["daemon"]["produced"]
    err = c.error("produce", {"topic": env.produce_topic, "ack": "wait", "messages": [b"x"] * (max_batch + 1)})
    after = c.ok("stats")["daemon"]["produced"]
    assert after == before, f"a TOO_LARGE request enqueued {after - before} messages"
    return Outcome(err, c)


def _poll_twice(env: Env) -> Outcome:
    c = Conn(env.socket)
    p1 = c.send("poll_reports", {"timeout_ms": 300})
    p2 = c.send("poll_reports", {"timeout_ms": 0})
    err = c.response(p2)[1]
    assert err is not None, "second concurrent poll_reports succeeded"
    first = c.response(p1)
    assert first[1] is None and first[2] == {"reports": [], "pending": 0}, f"the parked poll: {first!r}"
    return Outcome(err, c)


def _flush_twice(env: Env) -> Outcome:
    # nothing can be delivered there: the flush parks (and the daemon gives up on it at once when stopped)
    d = env.start_daemon(extra="[daemon]\nshutdown_timeout_ms = 500\n", bootstrap=env.unreachable_bootstrap())
    c = Conn(d.socket)
    c.ok("produce", {"topic": "proto-nowhere", "value": b"stuck"})
    f1 = c.send("flush", {"timeout_ms": 300})
    f2 = c.send("flush", {"timeout_ms": 0})
    err = c.response(f2)[1]
    assert err is not None, "second concurrent flush succeeded"
    first = c.response(f1)
    assert first[1] is None and first[2] == {"remaining": 1}, f"the parked flush: {first!r}"
    return Outcome(err, c, socket=d.socket)


def _no_group(op: str) -> Callable[[Env], Outcome]:
    def trig(env: Env) -> Outcome:
        c = Conn(env.socket)
        h = open_consumer(c, env)                   # simple mode, no group
        consume_until(c, h, all_assigned(env), "the assignment")
        args: Dict[str, Any] = {"handle": h}
        if op == "commit":
            args["offsets"] = [[env.topic, 0, 1]]
        return Outcome(c.error(op, args), c)
    return trig


def _consume_twice(env: Env) -> Outcome:
    c = Conn(env.socket)
    h = open_consumer(c, env, auto_offset_reset="latest", partitions=[0])
    deadline = time.monotonic() + WAIT
    while True:
        # the first parks only when nothing (no message, no event) is waiting
        r1 = c.send("consume", {"handle": h, "timeout_ms": 300})
        r2 = c.send("consume", {"handle": h, "timeout_ms": 0})
        second, first = c.response(r2), c.response(r1)
        assert first[1] is None, f"consume: {first!r}"
        check_consume_result(first[2], Collected())
        assert first[2]["messages"] == [], first
        if second[1] is not None:
            return Outcome(second[1], c)
        check_consume_result(second[2], Collected())
        assert time.monotonic() < deadline, "a consume never parked (events kept coming?)"


def _unknown_handle(env: Env) -> Outcome:
    c = Conn(env.socket)
    h = open_consumer(c, env)
    err = c.error("consume", {"handle": h + 1000003})
    c.ok("consume", {"handle": h})                  # the real handle is unaffected
    return Outcome(err, c)


def _not_owner(env: Env) -> Outcome:
    owner, other = Conn(env.socket), Conn(env.socket)
    h = open_consumer(owner, env)
    err = other.error("consume", {"handle": h})
    for op, args in (("commit", {"handle": h}), ("seek", {"handle": h, "offsets": [[env.topic, 0, 0]]}),
                     ("consumer_close", {"handle": h})):
        e = other.error(op, args)
        assert e["name"] == "NOT_OWNER", f"{op} with another connection's handle: {e}"
    consume_until(owner, h, all_prefill(env), "the owner still consuming")
    owner.close()
    return Outcome(err, other)


def _not_assigned(op: str) -> Callable[[Env], Outcome]:
    def trig(env: Env) -> Outcome:
        c = Conn(env.socket)
        h = open_consumer(c, env, partitions=[0], group=unique("proto-g"))
        consume_until(c, h, all_assigned(env, [0]), "partition 0's assignment")
        err = c.error(op, {"handle": h, "offsets": [[env.topic, 1, 1]]})
        # a partition of another topic is not held either
        e2 = c.error(op, {"handle": h, "offsets": [[env.produce_topic, 0, 1]]})
        assert e2["name"] == "NOT_ASSIGNED", e2
        # partition 0 is held: the same op works for it
        c.ok(op, {"handle": h, "offsets": [[env.topic, 0, 1]]})
        return Outcome(err, c)
    return trig


def _shutting_down(env: Env) -> Outcome:
    """SIGTERM with a produce in flight to an unreachable broker: the daemon
    keeps serving its open connections while it tries to flush, and a new
    produce (or consumer_open) on an already open connection is refused."""
    d = env.start_daemon(extra="message.timeout.ms = 120000\n[daemon]\nshutdown_timeout_ms = 60000\n",
                         bootstrap=env.unreachable_bootstrap())
    a, b = Conn(d.socket), Conn(d.socket)
    b.assert_usable()
    res = a.ok("produce", {"topic": "proto-in-flight", "value": b"in flight"})
    assert a.ok("flush", {"timeout_ms": 0}) == {"remaining": 1}, "the message is in flight"
    d.signal(signal.SIGTERM)
    assert res["seq"] == 1
    holder: List[Dict[str, Any]] = []

    def refused() -> bool:
        # before the daemon saw the signal a produce is still accepted (and stuck)
        err, _res = b.call("produce", {"topic": "proto-in-flight", "ack": "none", "value": b"late"})
        if err is not None:
            holder.append(err)
        return err is not None

    wait_for(refused, "produce to be refused after SIGTERM")
    e2 = b.error("consumer_open", {"topic": "proto-in-flight"})
    assert e2["name"] == "SHUTTING_DOWN", f"consumer_open while stopping: {e2}"
    a.assert_usable()
    return Outcome(holder[0], b, socket=d.socket)


def _max_connections(env: Env) -> Outcome:
    """max_connections = 2: the third connection gets one INTERNAL error
    frame (nil id) and is closed; the first two are unaffected."""
    d = env.start_daemon(extra="[daemon]\nmax_connections = 2\n")
    a = Conn(d.socket)
    # earlier connections (a readiness probe) may not be gone yet
    wait_for(lambda: a.ok("stats")["daemon"]["connections"] == 1, "a to be the only connection")
    b = Conn(d.socket)
    b.assert_usable()
    c = Conn(d.socket)
    resp = c.recv()
    assert resp[0] is None and resp[2] is None, f"refusal must be [nil, error, nil]: {resp!r}"
    a.assert_usable()
    b.assert_usable()
    a.close()
    return Outcome(resp[1], c, closed=True, socket=d.socket)


def _kafka_unreachable_metadata(env: Env) -> Outcome:
    d = env.start_daemon(bootstrap=env.unreachable_bootstrap())
    c = Conn(d.socket)
    return Outcome(c.error("metadata", {"timeout_ms": 300}), c, socket=d.socket)


ERROR_CASES: List[ErrorCase] = [
    ErrorCase("BAD_FRAME-zero-length", "BAD_FRAME", _bad_frame(HDR.pack(0))),
    ErrorCase("BAD_FRAME-not-msgpack", "BAD_FRAME", _bad_frame(HDR.pack(1) + b"\xc1")),
    ErrorCase("BAD_FRAME-two-values", "BAD_FRAME", _bad_frame(HDR.pack(2) + b"\x01\x02")),
    ErrorCase("BAD_FRAME-over-max_frame", "BAD_FRAME", _bad_frame(HDR.pack(0xFFFFFFFF) + b"\x90")),
    ErrorCase("BAD_REQUEST-op-not-str", "BAD_REQUEST", _raw([7, 5, {}], 7)),
    ErrorCase("BAD_REQUEST-args-not-map", "BAD_REQUEST", _raw([8, "ping", "args"], 8)),
    ErrorCase("BAD_REQUEST-not-a-list", "BAD_REQUEST", _raw({"id": 1, "op": "ping"}, None)),
    ErrorCase("BAD_REQUEST-negative-id", "BAD_REQUEST", _raw([-1, "ping", {}], None)),
    ErrorCase("UNKNOWN_OP", "UNKNOWN_OP", _simple("no_such_op", {}), message_has="no_such_op"),
    ErrorCase("INVALID_ARGUMENT-produce-no-topic", "INVALID_ARGUMENT", _simple("produce", {"value": b"v"}),
              message_has="topic"),
    ErrorCase("INVALID_ARGUMENT-consume-no-handle", "INVALID_ARGUMENT", _simple("consume", {}), message_has="handle"),
    ErrorCase("INVALID_ARGUMENT-watermarks-partition", "INVALID_ARGUMENT",
              _simple("watermarks", lambda env: {"topic": env.topic, "partition": "0"}), message_has="partition"),
    ErrorCase("UNKNOWN_CLUSTER-metadata", "UNKNOWN_CLUSTER", _simple("metadata", {"cluster": "no-such-cluster"}),
              message_has="no-such-cluster"),
    ErrorCase("UNKNOWN_CLUSTER-watermarks", "UNKNOWN_CLUSTER",
              _simple("watermarks", lambda env: {"cluster": "nope", "topic": env.topic, "partition": 0})),
    ErrorCase("INVALID_ARGUMENT-offsets_for_times-no-timestamps", "INVALID_ARGUMENT",
              _simple("offsets_for_times", {}), message_has="timestamps"),
    ErrorCase("INVALID_ARGUMENT-offsets_for_times-empty", "INVALID_ARGUMENT",
              _simple("offsets_for_times", {"timestamps": []}), message_has="timestamps"),
    ErrorCase("INVALID_ARGUMENT-offsets_for_times-timestamp-type", "INVALID_ARGUMENT",
              _simple("offsets_for_times", lambda env: {"timestamps": [[env.topic, 0, "yesterday"]]}),
              message_has="timestamps[0]"),
    ErrorCase("UNKNOWN_CLUSTER-offsets_for_times", "UNKNOWN_CLUSTER",
              _simple("offsets_for_times", lambda env: {"cluster": "nope", "timestamps": [[env.topic, 0, 0]]})),
    ErrorCase("UNSUPPORTED_VERSION", "UNSUPPORTED_VERSION", _simple("hello", {"version": 0})),
    ErrorCase("INVALID_STATE-two-poll_reports", "INVALID_STATE", _poll_twice),
    ErrorCase("INVALID_STATE-two-flush", "INVALID_STATE", _flush_twice),
    ErrorCase("INVALID_STATE-two-consume", "INVALID_STATE", _consume_twice),
    ErrorCase("INVALID_STATE-commit-without-group", "INVALID_STATE", _no_group("commit")),
    ErrorCase("INVALID_STATE-committed-without-group", "INVALID_STATE", _no_group("committed")),
    ErrorCase("SHUTTING_DOWN", "SHUTTING_DOWN", _shutting_down),
    ErrorCase("TIMED_OUT-zookeeper-unreachable", "TIMED_OUT",
              _simple("consumer_open", lambda env: {"mode": "zookeeper", "topic": env.topic, "group": "g",
                                                    "zookeeper_connect": env.unreachable_bootstrap(),
                                                    "zookeeper_connection_timeout_ms": 300}),
              message_has="zookeeper"),
    ErrorCase("INTERNAL-max_connections", "INTERNAL", _max_connections),
    ErrorCase("TOO_LARGE", "TOO_LARGE", _too_large),
    ErrorCase("UNKNOWN_HANDLE", "UNKNOWN_HANDLE", _unknown_handle),
    ErrorCase("NOT_OWNER", "NOT_OWNER", _not_owner),
    ErrorCase("NOT_ASSIGNED-seek", "NOT_ASSIGNED", _not_assigned("seek")),
    ErrorCase("NOT_ASSIGNED-commit", "NOT_ASSIGNED", _not_assigned("commit")),
    # Kafka errors: code = kafka_error_base + librdkafka's rd_kafka_resp_err_t
    ErrorCase("KAFKA-consumer_open-missing-topic", "UNKNOWN_TOPIC_OR_PART",
              _simple("consumer_open", lambda env: {"topic": unique("proto-missing")}),
              code=KAFKA_BASE + 3, retriable=False),
    ErrorCase("KAFKA-consumer_open-missing-partition", "_UNKNOWN_PARTITION",
              _simple("consumer_open", lambda env: {"topic": env.topic, "partitions": [env.partitions + 3]}),
              code=KAFKA_BASE - 190, retriable=False),
    ErrorCase("KAFKA-offsets_for_times-missing-topic", "UNKNOWN_TOPIC_OR_PART",
              _simple("offsets_for_times", lambda env: {"timestamps": [[unique("proto-missing"), 0, 0]],
                                                        "timeout_ms": 3000}),
              code=KAFKA_BASE + 3, retriable=False),
    ErrorCase("KAFKA-metadata-unreachable-broker", "_TRANSPORT|_TIMED_OUT|_ALL_BROKERS_DOWN",
              _kafka_unreachable_metadata, retriable=True),
]

# Daemon codes of ops.json that this implementation never sends, with why.
# A code here must not also have a trigger above.
NOT_EMITTED: Dict[str, str] = {
    "NOT_SUPPORTED": "not emitted by this daemon as `make test` builds it: the only NOT_SUPPORTED is the "
                     "answer of a kafkad built without libzookeeper_mt to consumer_open mode \"zookeeper\" "
                     "(daemon/ops_consume.c), and scripts/deps.sh installs libzookeeper-mt-dev",
}

KAFKA_NAMES = {"UNKNOWN_TOPIC_OR_PART": 3, "_UNKNOWN_PARTITION": -190, "_TRANSPORT": -195, "_TIMED_OUT": -185,
               "_ALL_BROKERS_DOWN": -187}


def run_error_case(case: ErrorCase, env: Env) -> Outcome:
    out = case.trigger(env)
    err = out.err
    check_error_map(err)
    names = case.name.split("|")
    assert err["name"] in names, f"{case.id}: expected {case.name}, got {err!r}"
    if case.name in ERRORS:
        assert err["code"] == ERRORS[case.name], f"{case.id}: code {err['code']} != {ERRORS[case.name]}"
        want_retriable = SPEC_ERRORS[case.name][1]     # SPEC 3: "(retriable)" in the code's meaning
    else:
        want_code = case.code if case.code is not None else KAFKA_BASE + KAFKA_NAMES[err["name"]]
        assert err["code"] == want_code, f"{case.id}: Kafka error code {err['code']} != {want_code} ({err})"
        want_retriable = bool(case.retriable)
    assert isinstance(err["message"], str) and err["message"], err
    if case.message_has:
        assert case.message_has in err["message"], f"{case.id}: message {err['message']!r} lacks {case.message_has!r}"
    if out.closed:
        assert out.conn.eof(), f"{case.id}: connection not closed after {err['name']}"
        connect_and_ping(out.socket or env.socket).close()       # the daemon still serves others
    else:
        out.conn.assert_usable()
    out.conn.close()
    # checked last, so that a wrong flag does not hide the other checks
    assert err["retriable"] is want_retriable, (
        f"{case.id}: retriable is {err['retriable']}, SPEC says {want_retriable} for {err['name']} ({err})")
    return out


# ------------------------------------------------------------ pipelining

def pipeline_requests(env: Env, n: int = 50) -> List[Tuple[str, Any, Callable[[Any, Any], None]]]:
    """n mixed requests (op, args, check(err, res)) for one connection,
    meant to be sent without reading.  Produces to partition 0 of
    produce_topic are in send order, so their offsets must increase."""
    t = env.produce_topic

    def ok(shape: Shape, extra: Optional[Callable[[Any], None]] = None) -> Callable[[Any, Any], None]:
        def check(err: Any, res: Any) -> None:
            assert err is None, err
            check_shape(res, shape)
            if extra:
                extra(res)
        return check

    def error(name: str) -> Callable[[Any, Any], None]:
        def check(err: Any, res: Any) -> None:
            assert err is not None and err["name"] == name, err
        return check

    kinds: List[Tuple[str, Any, Callable[[Any, Any], None]]] = [
        ("ping", None, ok(EMPTY)),
        ("produce", {"topic": t, "ack": "wait", "partition": 0}, ok(PRODUCE_WAIT)),
        ("hello", {"version": 1}, ok(HELLO_RESULT)),
        ("produce", {"topic": t, "partition": 0}, ok(PRODUCE_REPORT)),
        ("metadata", {"topics": [env.topic]}, ok(METADATA_RESULT)),
        ("produce", {"topic": t, "ack": "none", "partition": 0}, ok(PRODUCE_NONE)),
        ("watermarks", {"topic": env.topic, "partition": 0}, ok(WATERMARKS_RESULT)),
        ("poll_reports", {"timeout_ms": 0}, ok(POLL_RESULT)),
        ("stats", None, ok(STATS_RESULT)),
        ("no_such_op", {}, error("UNKNOWN_OP")),
        ("produce", {"value": b"no topic"}, error("INVALID_ARGUMENT")),
    ]
    out = []
    for i in range(n - 1):
        op, args, check = kinds[i % len(kinds)]
        if op == "produce" and "topic" in (args or {}):
            args = dict(args, value=b"pipe-%02d" % i)
        out.append((op, args, check))
    out.append(("flush", {"timeout_ms": 30000}, ok(FLUSH_RESULT, lambda r: _eq(r, {"remaining": 0}))))
    return out
