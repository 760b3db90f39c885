"""Error mapping of the Python stub (no daemon needed)."""

import os
import pickle
import sys

import pytest

_STUB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "client-stubs", "python"))
if _STUB not in sys.path:
    sys.path.insert(0, _STUB)

from kafkad import errors as E  # noqa: E402
from kafkad.pykafka import exceptions as PE  # noqa: E402

PROTOCOL = [
    (1, "BAD_FRAME", E.BadFrame),
    (2, "BAD_REQUEST", E.BadRequest),
    (3, "UNKNOWN_OP", E.UnknownOp),
    (4, "INVALID_ARGUMENT", E.InvalidArgument),
    (5, "UNKNOWN_CLUSTER", E.UnknownCluster),
    (6, "UNSUPPORTED_VERSION", E.UnsupportedVersion),
    (7, "TIMED_OUT", E.TimedOut),
    (8, "INVALID_STATE", E.InvalidState),
    (9, "SHUTTING_DOWN", E.ShuttingDown),
    (10, "NOT_SUPPORTED", E.NotSupported),
    (11, "INTERNAL", E.InternalError),
    (12, "TOO_LARGE", E.TooLarge),
    (13, "UNKNOWN_HANDLE", E.UnknownHandle),
    (14, "NOT_OWNER", E.NotOwner),
    (15, "NOT_ASSIGNED", E.NotAssigned),
]


@pytest.mark.parametrize("code,name,cls", PROTOCOL)
def test_protocol_codes(code, name, cls):
    e = E.error_from_map({"code": code, "name": name, "message": "m", "retriable": code in (7, 9)})
    assert type(e) is cls
    assert isinstance(e, E.KafkadError)
    assert (e.code, e.name, e.message, e.retriable) == (code, name, "m", code in (7, 9))
    assert cls.code == code and cls.name == name


def test_ops_json_codes_match():
    import json

    path = os.path.join(os.path.dirname(__file__), "..", "..", "protocol", "ops.json")
    with open(path) as f:
        ops = json.load(f)
    for name, code in ops["errors"].items():
        assert E.error_class(code).name == name
    assert ops["kafka_error_base"] == E.KAFKA_ERROR_BASE


def test_kafka_error():
    e = E.error_from_map({"code": 9808, "name": "_MSG_TIMED_OUT", "message": "Local: Message timed out", "retriable": True})
    assert type(e) is E.KafkaError
    assert e.kafka_code == -192 and e.code == 9808 and e.name == "_MSG_TIMED_OUT" and e.retriable
    e = E.error_from_map({"code": 10003, "name": "UNKNOWN_TOPIC_OR_PART", "message": "", "retriable": False})
    assert e.kafka_code == 3 and not e.retriable
    assert "UNKNOWN_TOPIC_OR_PART" in str(e)


def test_unknown_and_malformed_maps():
    e = E.error_from_map({"code": 77, "name": "NEW_THING", "message": "x", "retriable": False})
    assert type(e) is E.KafkadError and e.code == 77 and e.name == "NEW_THING"
    assert isinstance(E.error_from_map({}), E.ProtocolViolation)
    assert isinstance(E.error_from_map({"name": "X"}), E.ProtocolViolation)
    e = E.error_from_map({"code": 4})  # missing fields are tolerated
    assert type(e) is E.InvalidArgument and e.name == "INVALID_ARGUMENT" and e.message == ""


def test_connection_lost_is_kafkad_error():
    assert issubclass(E.ConnectionLost, E.KafkadError)
    assert E.ConnectionLost("x").retriable


def test_pickle_and_to_map():
    e = E.error_from_map({"code": 10005, "name": "LEADER_NOT_AVAILABLE", "message": "m", "retriable": True})
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is E.KafkaError and e2.to_map() == e.to_map()


def test_pykafka_translation():
    unknown = E.error_from_map({"code": 10003, "name": "UNKNOWN_TOPIC_OR_PART", "message": "m"})
    x = PE.from_kafkad(unknown)
    assert type(x) is PE.UnknownTopicOrPartition and x.args == (3, "m") and x.kafkad_error is unknown
    big = E.error_from_map({"code": 10010, "name": "MSG_SIZE_TOO_LARGE", "message": "m"})
    assert type(PE.from_kafkad(big)) is PE.MessageSizeTooLarge
    timeout = E.error_from_map({"code": 9808, "name": "_MSG_TIMED_OUT", "message": "m"})
    assert type(PE.from_kafkad(timeout)) is PE.RdKafkaException
    assert type(PE.from_kafkad(E.error_from_map({"code": 9812, "name": "_UNKNOWN_TOPIC"}))) is PE.UnknownTopicOrPartition
    assert type(PE.from_kafkad(E.ConnectionLost("gone"))) is PE.SocketDisconnectedError
    assert type(PE.from_kafkad(E.TimedOut("t"))) is PE.ProduceFailureError
    assert PE.ERROR_CODES[3] is PE.UnknownTopicOrPartition
