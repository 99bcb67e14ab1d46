"""The Ray backend gives the local backend's leaderboard, and retries a task whose worker died."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_runner import _tiny_config

from advbench import leaderboard
from advbench.backends import TaskFailed
from advbench.config import RunConfig
from advbench.context import WorkerEnv
from advbench.plugins import build_registry, discover
from advbench.runner import run

ray = pytest.importorskip("ray", reason='the ray backend needs pip install -e ".[ray]"')
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # test task bodies travel by value
    yield
    ray.shutdown()


def _config(cache: Path, out: Path, backend: str) -> RunConfig:
    """The tiny grid of test_runner, one thread per task on both backends (the same arithmetic)."""
    return _tiny_config(cache, out, attacks="fgsm,pgd", backend=backend, threads=1)


def test_ray_and_local_backends_write_the_same_leaderboard(
    ray_cluster, session_cache: Path, tmp_path: Path
) -> None:
    registry = build_registry(discover())
    local = run(_config(session_cache, tmp_path / "local", "local"), registry)
    remote = run(_config(session_cache, tmp_path / "ray", "ray"), registry)
    assert remote.done == 4 and not remote.failed
    drop = ["sec_per_image", "device"]
    frames = [leaderboard.results_frame(s.records).drop(columns=drop) for s in (local, remote)]
    pd.testing.assert_frame_equal(*frames)
    # a rerun on Ray skips every finished cell, exactly as the local backend does
    again = run(_config(session_cache, tmp_path / "ray", "ray"), registry)
    assert again.done == 0 and again.skipped == 4


def _die_once(ctx, marker: str) -> int:
    """Kill this worker process the first time (as an OOM killer or a lost node would)."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return os.getpid()


def _raise(ctx) -> None:
    raise ValueError("a plugin bug")


def test_a_task_whose_worker_dies_is_retried(ray_cluster, tmp_path: Path) -> None:
    from advbench.backends.ray import RayBackend

    backend = RayBackend(WorkerEnv(tmp_path, device="cpu", threads=1))
    results = dict(backend.map(_die_once, [(str(tmp_path / "died"),)]))
    assert isinstance(results[0], int) and (tmp_path / "died").exists()
    # an exception is the task's own failure: reported in one line, not retried
    (out,) = dict(backend.map(_raise, [()])).values()
    assert out == TaskFailed("ValueError: a plugin bug")


def test_missing_ray_is_one_line_saying_how_to_install(monkeypatch, tmp_path: Path, capsys) -> None:
    from advbench.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert main(["run", "--backend", "ray", "--out", str(tmp_path), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and 'pip install -e ".[ray]"' in err
