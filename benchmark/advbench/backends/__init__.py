"""Backends run planned tasks: ``local`` in this process, ``ray`` as Ray tasks across GPUs and nodes.

A task is a module-level function ``fn(ctx, *args)`` (``ctx`` is the worker's
:class:`~advbench.context.TaskContext`) with picklable arguments. :meth:`Backend.map` yields
``(index, outcome)`` pairs as tasks finish, in any order; an outcome is the function's return value
or a :class:`TaskFailed`. Large read-only inputs shared by many tasks (a dataset's clean features)
go through :meth:`Backend.share` once. Backends never touch the store: the driver writes it.
"""

from __future__ import annotations

from advbench.api import AdvbenchError
from advbench.backends.base import Backend, Task, TaskFailed, failure_message
from advbench.config import BACKENDS, RunConfig
from advbench.context import WorkerEnv
from advbench.plugins import Registry

__all__ = ["Backend", "Task", "TaskFailed", "failure_message", "make_backend"]


def make_backend(config: RunConfig, registry: Registry, env: WorkerEnv) -> Backend:
    """The backend ``config.backend`` names, started for ``env``."""
    if config.backend == "local":
        from advbench.backends.local import LocalBackend

        return LocalBackend(env, registry)
    if config.backend == "ray":
        from advbench.backends.ray import RayBackend

        return RayBackend(env, address=config.address)
    raise AdvbenchError(f"unknown backend {config.backend!r}; choose {', '.join(BACKENDS)}")
