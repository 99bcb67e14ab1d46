"""The Ray backend: every task a Ray task, one GPU each when the cluster has GPUs.

Tasks receive the run's :class:`~advbench.context.WorkerEnv` and build their context in the
worker (plugins are discovered there through the same entry points, so every node needs the same
packages installed, and the cache folder and data root at the same path, e.g. on NFS). Shared
inputs go to the object store once (:meth:`RayBackend.share`). A task whose worker dies is retried
by Ray (``max_retries``); one that raises is reported, not retried. An ``advbench run`` started
inside an existing ``ray.init`` reuses it; otherwise it starts or joins (``--address``) a cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from advbench.api import AdvbenchError
from advbench.backends.base import Backend, Task, TaskFailed, failure_message
from advbench.context import TaskContext, WorkerEnv

MAX_RETRIES = 3
_FORWARDED_ENV = ("ADVBENCH_DISABLE_PLUGINS", "ADVBENCH_DISABLE_PLUGIN_AUTOLOAD", "ADVBENCH_CACHE")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AdvbenchError(
            'the ray backend needs Ray: pip install -e ".[ray]" (or pip install "advbench[ray]")'
        ) from None
    return ray


def _run(env: WorkerEnv, fn: Task, *args: Any) -> tuple[bool, Any]:
    """A task's body in the worker: (True, result) or (False, one-line error)."""
    try:
        return True, fn(TaskContext(env), *args)
    except Exception as exc:
        return False, failure_message(exc)


class RayBackend(Backend):
    name = "ray"

    def __init__(self, env: WorkerEnv, address: str | None = None) -> None:
        ray = self.ray = import_ray()
        self.env = env
        self._owns = not ray.is_initialized()
        if self._owns:
            env_vars = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
            env_vars["CUBLAS_WORKSPACE_CONFIG"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=True,
                runtime_env={"env_vars": env_vars},
            )
        gpus = ray.cluster_resources().get("GPU", 0)
        if env.device == "cpu":
            self.gpus_per_task = 0
        elif env.device.startswith("cuda") and not gpus:
            raise AdvbenchError("--device cuda was asked for but the Ray cluster has no GPU")
        else:
            self.gpus_per_task = 1 if gpus else 0
        # A CPU task reserves its threads' cores (never more than a node has, or it could not be
        # scheduled); a GPU task reserves one core, its GPU being what it waits on.
        biggest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
        self.cpus_per_task = 1 if self.gpus_per_task else max(1, min(env.threads, int(biggest)))
        self._remote = ray.remote(_run)

    def share(self, obj: Any) -> Any:
        return self.ray.put(obj)

    def map(
        self, fn: Task, calls: Sequence[tuple[Any, ...]], *, gpu: bool = True
    ) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        remote = self._remote.options(
            num_cpus=self.cpus_per_task,
            num_gpus=self.gpus_per_task if gpu else 0,
            max_retries=MAX_RETRIES,
            retry_exceptions=False,
        )
        index = {remote.remote(self.env, fn, *args): i for i, args in enumerate(calls)}
        pending = list(index)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        ok, value = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # worker lost more than MAX_RETRIES times
                        ok, value = False, failure_message(exc)
                    yield index[ref], value if ok else TaskFailed(value)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
