"""PyKafka's exception names, for code that catches them.

The tree matches ``pykafka.exceptions`` (2.8): :class:`KafkaException` at the
root, one :class:`ProtocolClientError` subclass per Kafka error code listed
in ``ERROR_CODES``.  Errors coming from kafkad are translated by
:func:`from_kafkad`; the original :class:`kafkad.errors.KafkadError` is kept
as ``__cause__`` and as the ``kafkad_error`` attribute.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

from .. import errors as _kerr

__all__ = [
    "KafkaException",
    "UnicodeException",
    "NoBrokersAvailableError",
    "LeaderNotFoundError",
    "SocketDisconnectedError",
    "ProduceFailureError",
    "ConsumerStoppedException",
    "NoMessagesConsumedError",
    "MessageSetDecodeFailure",
    "ProducerQueueFullError",
    "ProducerStoppedException",
    "OffsetRequestFailedError",
    "PartitionOwnedError",
    "ProtocolClientError",
    "UnknownError",
    "OffsetOutOfRangeError",
    "InvalidMessageError",
    "UnknownTopicOrPartition",
    "InvalidMessageSize",
    "LeaderNotAvailable",
    "NotLeaderForPartition",
    "RequestTimedOut",
    "MessageSizeTooLarge",
    "OffsetMetadataTooLarge",
    "GroupLoadInProgress",
    "GroupCoordinatorNotAvailable",
    "NotCoordinatorForGroup",
    "InvalidTopic",
    "IllegalGeneration",
    "InconsistentGroupProtocol",
    "UnknownMemberId",
    "InvalidSessionTimeout",
    "RebalanceInProgress",
    "TopicAuthorizationFailed",
    "GroupAuthorizationFailed",
    "ERROR_CODES",
    "RdKafkaException",
    "RdKafkaStoppedException",
    "from_kafkad",
]


class KafkaException(Exception):
    """Root of the PyKafka-compatible exceptions."""

    kafkad_error: Optional[_kerr.KafkadError] = None


class UnicodeException(Exception):
    """A topic name could not be encoded as ASCII."""


class NoBrokersAvailableError(KafkaException):
    """No broker (here: no kafkad cluster) could be reached."""


class LeaderNotFoundError(KafkaException):
    """A partition has no known leader."""


class SocketDisconnectedError(KafkaException):
    """The connection (here: to kafkad) was lost."""


class ProduceFailureError(KafkaException):
    """A message could not be produced (e.g. no acknowledgement in time)."""


class ConsumerStoppedException(KafkaException):
    pass


class NoMessagesConsumedError(KafkaException):
    pass


class MessageSetDecodeFailure(KafkaException):
    pass


class ProducerQueueFullError(KafkaException):
    """``block_on_queue_full=False`` and ``max_queued_messages`` are queued."""


class ProducerStoppedException(KafkaException):
    """``produce()`` on a producer that is not running."""


class OffsetRequestFailedError(KafkaException):
    pass


class PartitionOwnedError(KafkaException):
    def __init__(self, partition: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.partition = partition


class ProtocolClientError(KafkaException):
    """An error code returned by Kafka."""

    ERROR_CODE: Optional[int] = None


class UnknownError(ProtocolClientError):
    ERROR_CODE = -1


class OffsetOutOfRangeError(ProtocolClientError):
    ERROR_CODE = 1


class InvalidMessageError(ProtocolClientError):
    ERROR_CODE = 2


class UnknownTopicOrPartition(ProtocolClientError):
    ERROR_CODE = 3


class InvalidMessageSize(ProtocolClientError):
    ERROR_CODE = 4


class LeaderNotAvailable(ProtocolClientError):
    ERROR_CODE = 5


class NotLeaderForPartition(ProtocolClientError):
    ERROR_CODE = 6


class RequestTimedOut(ProtocolClientError):
    ERROR_CODE = 7


class MessageSizeTooLarge(ProtocolClientError):
    ERROR_CODE = 10


class OffsetMetadataTooLarge(ProtocolClientError):
    ERROR_CODE = 12


class GroupLoadInProgress(ProtocolClientError):
    ERROR_CODE = 14


class GroupCoordinatorNotAvailable(ProtocolClientError):
    ERROR_CODE = 15


class NotCoordinatorForGroup(ProtocolClientError):
    ERROR_CODE = 16


class InvalidTopic(ProtocolClientError):
    ERROR_CODE = 17


class IllegalGeneration(ProtocolClientError):
    ERROR_CODE = 22


class InconsistentGroupProtocol(ProtocolClientError):
    ERROR_CODE = 23


class UnknownMemberId(ProtocolClientError):
    ERROR_CODE = 25


class InvalidSessionTimeout(ProtocolClientError):
    ERROR_CODE = 26


class RebalanceInProgress(ProtocolClientError):
    ERROR_CODE = 27


class TopicAuthorizationFailed(ProtocolClientError):
    ERROR_CODE = 29


class GroupAuthorizationFailed(ProtocolClientError):
    ERROR_CODE = 30


ERROR_CODES: Dict[int, Type[ProtocolClientError]] = {
    cls.ERROR_CODE: cls
    for cls in (
        UnknownError,
        OffsetOutOfRangeError,
        InvalidMessageError,
        UnknownTopicOrPartition,
        InvalidMessageSize,
        LeaderNotAvailable,
        NotLeaderForPartition,
        RequestTimedOut,
        MessageSizeTooLarge,
        OffsetMetadataTooLarge,
        GroupLoadInProgress,
        GroupCoordinatorNotAvailable,
        NotCoordinatorForGroup,
        InvalidTopic,
        IllegalGeneration,
        InconsistentGroupProtocol,
        UnknownMemberId,
        InvalidSessionTimeout,
        RebalanceInProgress,
        TopicAuthorizationFailed,
        GroupAuthorizationFailed,
    )
}


class RdKafkaException(KafkaException):
    """A librdkafka error with no PyKafka equivalent (args: code, message)."""


class RdKafkaStoppedException(RdKafkaException):
    pass


# librdkafka's client-side codes that mean the same as a Kafka code
_RD_ALIASES = {
    -188: UnknownTopicOrPartition,  # _UNKNOWN_TOPIC
    -190: UnknownTopicOrPartition,  # _UNKNOWN_PARTITION
}


def from_kafkad(err: BaseException) -> Exception:
    """The PyKafka exception for a kafkad error, as PyKafka's librdkafka
    backend would raise it: ``ERROR_CODES[code](code, message)`` for Kafka
    error codes, :class:`RdKafkaException` for other librdkafka codes."""
    if isinstance(err, KafkaException):
        return err
    exc: KafkaException
    if isinstance(err, _kerr.KafkaError):
        code = err.kafka_code
        cls: Type[KafkaException] = ERROR_CODES.get(code) or _RD_ALIASES.get(code) or RdKafkaException
        exc = cls(code, err.message or err.name)
    elif isinstance(err, _kerr.ConnectionLost):
        exc = SocketDisconnectedError(str(err))
    elif isinstance(err, _kerr.TooLarge):
        exc = MessageSizeTooLarge(str(err))
    elif isinstance(err, _kerr.TimedOut):
        exc = ProduceFailureError("Delivery report not received after timeout")
    else:
        exc = ProduceFailureError(str(err))
    if isinstance(err, _kerr.KafkadError):
        exc.kafkad_error = err
    exc.__cause__ = err
    return exc
