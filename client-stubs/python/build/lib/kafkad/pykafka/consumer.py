"""Consumers: not available yet.

kafkad protocol v1 has only producer ops.  When consumer ops arrive, the
PyKafka ``SimpleConsumer`` and ``BalancedConsumer`` shapes go here and
``Topic.get_simple_consumer`` / ``get_balanced_consumer`` return them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SimpleConsumer", "BalancedConsumer", "ManagedBalancedConsumer", "CONSUMER_UNAVAILABLE"]

CONSUMER_UNAVAILABLE = "consuming needs consumer ops, which kafkad protocol v1 does not have yet"


class SimpleConsumer:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(CONSUMER_UNAVAILABLE)


class BalancedConsumer(SimpleConsumer):
    pass


class ManagedBalancedConsumer(BalancedConsumer):
    pass
