"""What every backend shares: the :class:`Backend` interface, :class:`TaskFailed` and the task type.

A module of its own below :mod:`advbench.backends` (which picks a backend), so that the backends
import it without importing the package that imports them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Backend", "Task", "TaskFailed", "failure_message"]

Task = Callable[..., Any]


@dataclass(frozen=True)
class TaskFailed:
    """A task that raised (its one-line message) or whose worker could not finish it."""

    message: str


def failure_message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class Backend(abc.ABC):
    """Runs tasks; see the module docstring."""

    name: str = "backend"

    def share(self, obj: Any) -> Any:
        """A handle that tasks receive in place of ``obj`` (the object itself in-process)."""
        return obj

    @abc.abstractmethod
    def map(
        self, fn: Task, calls: Sequence[tuple[Any, ...]], *, gpu: bool = True
    ) -> Iterator[tuple[int, Any]]:
        """Run ``fn(ctx, *args)`` for each ``args`` of ``calls``; yield ``(index, result | TaskFailed)``.

        ``gpu`` asks for one GPU per task where the backend has them.
        """

    def close(self) -> None:  # noqa: B027 - optional
        """Release workers."""
