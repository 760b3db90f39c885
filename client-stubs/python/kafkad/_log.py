"""A logger that imports :mod:`logging` only when something is logged:
importing logging costs a few milliseconds, which a short-lived process
(the cron / hook pattern kafkad serves) pays on every start."""
from __future__ import annotations

# typing.TYPE_CHECKING without importing typing (mypy treats the name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any


class LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def _get(self) -> Any:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self._name)
        return self._logger

    def debug(self, msg: str, *args: Any) -> None:
        self._get().debug(msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._get().warning(msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self._get().error(msg, *args)


log = LazyLogger("kafkad")
