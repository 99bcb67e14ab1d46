"""The local backend: tasks one after another in this process, sharing one context (and its loaded victims)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from advbench.backends.base import Backend, Task, TaskFailed, failure_message
from advbench.context import TaskContext, WorkerEnv
from advbench.plugins import Registry


class LocalBackend(Backend):
    name = "local"

    def __init__(self, env: WorkerEnv, registry: Registry | None = None) -> None:
        self._threads = torch.get_num_threads()  # the context pins --threads; close() gives them back
        self.ctx = TaskContext(env, registry)

    def close(self) -> None:
        torch.set_num_threads(self._threads)

    def map(
        self, fn: Task, calls: Sequence[tuple[Any, ...]], *, gpu: bool = True
    ) -> Iterator[tuple[int, Any]]:
        for i, args in enumerate(calls):
            try:
                result = fn(self.ctx, *args)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                result = TaskFailed(failure_message(exc))
            yield i, result
