"""Backends run planned tasks: ``local`` in this process, ``ray`` as Ray tasks across GPUs and nodes.

A task is a module-level function ``fn(ctx, *args)`` (``ctx`` is the worker's
:class:`~advbench.context.TaskContext`) with picklable arguments. :meth:`Backend.map` yields
``(index, outcome)`` pairs as tasks finish, in any order; an outcome is the function's return value
or a :class:`TaskFailed`. Large read-only inputs shared by many tasks (a dataset's clean features)
go through :meth:`Backend.share` once. Backends never touch the store: the driver writes it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from advbench.api import AdvbenchError
from advbench.config import BACKENDS, RunConfig
from advbench.context import WorkerEnv
from advbench.plugins import Registry

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


def make_backend(config: RunConfig, registry: Registry, env: WorkerEnv) -> Backend:
    """The backend ``config.backend`` names, started for ``env``."""
    if config.backend == "local":
        from advbench.backends.local import LocalBackend

        return LocalBackend(env, registry)
    if config.backend == "ray":
        from advbench.backends.ray import RayBackend

        return RayBackend(env, address=config.address)
    raise AdvbenchError(f"unknown backend {config.backend!r}; choose {', '.join(BACKENDS)}")
