"""Exceptions raised by the kafkad client stub.

Every error the daemon can send (protocol SPEC section 3) maps to one class
below, all rooted at :class:`KafkadError`.  Kafka errors (codes >= 10000)
become :class:`KafkaError`, which carries librdkafka's name for the error.
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing (mypy treats the name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "KAFKA_ERROR_BASE",
    "KAFKA_ERROR_MIN",
    "KafkadError",
    "BadFrame",
    "BadRequest",
    "UnknownOp",
    "InvalidArgument",
    "UnknownCluster",
    "UnsupportedVersion",
    "TimedOut",
    "InvalidState",
    "ShuttingDown",
    "NotSupported",
    "InternalError",
    "TooLarge",
    "UnknownHandle",
    "NotOwner",
    "NotAssigned",
    "KafkaError",
    "ConnectionLost",
    "ProtocolViolation",
    "error_from_map",
]

KAFKA_ERROR_BASE = 10000
# librdkafka's own (client-side) errors are negative, down to -200
# (RD_KAFKA_RESP_ERR__BEGIN), so Kafka errors span 10000-200 and up; keep a
# margin for future negative codes.
KAFKA_ERROR_MIN = KAFKA_ERROR_BASE - 1000


class KafkadError(Exception):
    """Base of every error raised by this package.

    Attributes mirror the protocol's error map: ``code`` (int), ``name``
    (str), ``message`` (str) and ``retriable`` (bool).
    """

    code: int = 0
    name: str = "KAFKAD_ERROR"
    retriable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        code: Optional[int] = None,
        name: Optional[str] = None,
        retriable: Optional[bool] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if name is not None:
            self.name = name
        if retriable is not None:
            self.retriable = retriable

    def __str__(self) -> str:
        if self.message:
            return f"{self.name} ({self.code}): {self.message}"
        return f"{self.name} ({self.code})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code}, name={self.name!r}, "
            f"message={self.message!r}, retriable={self.retriable})"
        )

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, self.code, self.name, self.retriable))

    def to_map(self) -> Dict[str, Any]:
        """The protocol error map for this error."""
        return {
            "code": self.code,
            "name": self.name,
            "message": self.message,
            "retriable": self.retriable,
        }


def _rebuild(
    cls: Type[KafkadError], message: str, code: int, name: str, retriable: bool
) -> KafkadError:
    return cls(message, code=code, name=name, retriable=retriable)


class BadFrame(KafkadError):
    """Framing error; the daemon closes the connection after reporting it."""

    code = 1
    name = "BAD_FRAME"


class BadRequest(KafkadError):
    """The request was msgpack but not a ``[id, op, args]`` envelope."""

    code = 2
    name = "BAD_REQUEST"


class UnknownOp(KafkadError):
    code = 3
    name = "UNKNOWN_OP"


class InvalidArgument(KafkadError):
    """A field is missing, has the wrong type or a bad value."""

    code = 4
    name = "INVALID_ARGUMENT"


class UnknownCluster(KafkadError):
    code = 5
    name = "UNKNOWN_CLUSTER"


class UnsupportedVersion(KafkadError):
    code = 6
    name = "UNSUPPORTED_VERSION"


class TimedOut(KafkadError):
    """An operation did not finish in time (daemon- or client-side)."""

    code = 7
    name = "TIMED_OUT"
    retriable = True


class InvalidState(KafkadError):
    code = 8
    name = "INVALID_STATE"


class ShuttingDown(KafkadError):
    code = 9
    name = "SHUTTING_DOWN"
    retriable = True


class NotSupported(KafkadError):
    code = 10
    name = "NOT_SUPPORTED"


class InternalError(KafkadError):
    code = 11
    name = "INTERNAL"


class TooLarge(KafkadError):
    """A batch longer than ``max_batch`` or a message that cannot fit a frame."""

    code = 12
    name = "TOO_LARGE"


class UnknownHandle(KafkadError):
    """No open consumer has this handle."""

    code = 13
    name = "UNKNOWN_HANDLE"


class NotOwner(KafkadError):
    """The consumer handle belongs to another connection."""

    code = 14
    name = "NOT_OWNER"


class NotAssigned(KafkadError):
    """The partition is not leased to this connection (any more)."""

    code = 15
    name = "NOT_ASSIGNED"


class KafkaError(KafkadError):
    """An error from Kafka or librdkafka (protocol codes ``10000 + k``).

    ``name`` is librdkafka's name (``_MSG_TIMED_OUT``, ``UNKNOWN_TOPIC_OR_PART``
    ...), ``kafka_code`` is librdkafka's ``rd_kafka_resp_err_t`` value
    (negative for client-side errors) and ``code`` is ``10000 + kafka_code``.
    """

    code = KAFKA_ERROR_BASE - 1
    name = "UNKNOWN"

    @property
    def kafka_code(self) -> int:
        return self.code - KAFKA_ERROR_BASE


class ConnectionLost(KafkadError):
    """The connection to the daemon closed or failed.

    Not a protocol code: it is raised locally.  ``code`` is 0.
    """

    code = 0
    name = "CONNECTION_LOST"
    retriable = True


class ProtocolViolation(KafkadError):
    """The daemon sent something this client cannot understand (code 0)."""

    code = 0
    name = "PROTOCOL_VIOLATION"


_BY_CODE: Dict[int, Type[KafkadError]] = {
    cls.code: cls
    for cls in (
        BadFrame,
        BadRequest,
        UnknownOp,
        InvalidArgument,
        UnknownCluster,
        UnsupportedVersion,
        TimedOut,
        InvalidState,
        ShuttingDown,
        NotSupported,
        InternalError,
        TooLarge,
        UnknownHandle,
        NotOwner,
        NotAssigned,
    )
}


def error_class(code: int) -> Type[KafkadError]:
    """The exception class used for protocol error ``code``."""
    if code >= KAFKA_ERROR_MIN:
        return KafkaError
    return _BY_CODE.get(code, KafkadError)


def error_from_map(m: Optional[Mapping[str, Any]]) -> KafkadError:
    """Build the exception for a protocol error map.

    Missing fields are tolerated (a map is whatever the daemon sent); an
    unknown code below 10000 gives a plain :class:`KafkadError` that keeps
    the code and name it was sent with.
    """
    if not m:
        return ProtocolViolation("empty error map")
    code = m.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        return ProtocolViolation(f"error map without an integer code: {dict(m)!r}")
    cls = error_class(code)
    name = m.get("name")
    message = m.get("message")
    retriable = m.get("retriable")
    return cls(
        message if isinstance(message, str) else "",
        code=code,
        name=name if isinstance(name, str) and name else None,
        retriable=bool(retriable) if retriable is not None else None,
    )
