"""The fault suite: faults injected as a user would meet them, and what advbench does about each.

kill -9 mid-run and at a leaderboard rename, two runs on one folder, damaged cache entries of every
kind, a damaged or changed checkpoint, unreadable store records, failing and partial runs sharing an
output folder, the umask. Each test compares against an uninterrupted run where numbers matter.
(Bad plugins: tests/test_plugins.py; bad inputs: tests/test_inputs.py.)
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_VICTIMS, tiny_cli

from advbench import hookimpl
from advbench import io as advbench_io
from advbench.api import Attack, AttackSpec, Victim, VictimSpec
from advbench.cli import main
from advbench.plugins import build_registry, discover
from advbench.runner import run

pytestmark = pytest.mark.slow

TIMING = ["sec_per_image", "fit_seconds", "device"]


def _args(cache: Path, out: Path, *extra: str, attacks: str = "fgsm,pgd") -> list[str]:
    return tiny_cli(cache, out, "--attacks", attacks, "--eps", "8", *extra)


def _results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").drop(columns=TIMING)


def _temporaries(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob(".*.tmp")]


@pytest.fixture
def reference(session_cache: Path, tmp_path: Path) -> Path:
    """An uninterrupted run of the grid the faults are compared with."""
    out = tmp_path / "reference"
    assert main(_args(session_cache, out, "--eps", "4,8,16")) == 0
    return out


def _spawn(args: list[str], stderr=subprocess.PIPE, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "advbench.cli", *args], stdout=subprocess.PIPE, stderr=stderr, text=True, **kw
    )


# ------------------------------------------------------------------------------------ kill -9
def test_kill_minus_9_mid_run_then_rerun_gives_the_same_numbers(
    reference: Path, session_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    args = _args(session_cache, out, "--eps", "4,8,16")
    proc = _spawn(args, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / ".store").glob("*.json"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done_before = len(list((out / ".store").glob("*.json")))
    assert done_before >= 3 and not (out / "results.csv").exists()  # really killed mid-run
    assert main(args) == 0
    pd.testing.assert_frame_equal(_results(out), _results(reference))
    assert _temporaries(out, session_cache) == []


_KILL_AT_RENAME = """
import os, signal, sys
real = os.replace
def replace(src, dst, *a, **k):
    if str(dst).endswith("results.csv"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *a, **k)
os.replace = replace
from advbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_minus_9_at_the_leaderboard_rename_then_rerun(
    reference: Path, session_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    args = _args(session_cache, out, "--eps", "4,8,16")
    proc = subprocess.run([sys.executable, "-c", _KILL_AT_RENAME, *args], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.csv").exists() and _temporaries(out)  # the half-written file is a temporary
    assert main(args) == 0
    pd.testing.assert_frame_equal(_results(out), _results(reference))
    assert _temporaries(out) == []


# ---------------------------------------------------------------------------- two runs, one folder
def test_two_concurrent_runs_on_one_folder_share_the_work(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = _args(cache, out)
    procs = [_spawn(args) for _ in range(2)]
    logs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    lines = "".join(e for _, e in logs).splitlines()
    assert sum(line.startswith("training ") for line in lines) == 2  # two victims, each trained once in all
    assert sum(line.startswith("done synthetic |") for line in lines) == 4  # four cells, each computed once
    assert len(_results(out)) == 8  # no lost row: 2 attacks x 2 sources x 2 targets


def test_partial_and_failing_runs_never_delete_each_others_files(session_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(_args(session_cache, out, attacks="fgsm")) == 0
    assert main(_args(session_cache, out, attacks="pgd")) == 0
    assert {p.name for p in out.glob("transfer_*.csv")} == {
        "transfer_synthetic_fgsm_eps8.csv",
        "transfer_synthetic_pgd_eps8.csv",
    }
    assert set(_results(out).attack) == {"fgsm", "pgd"}

    # a run whose cells all fail leaves no header-only results.csv beside an older summary.md
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    registry = build_registry(discover([("test-broken", _Broken())]))
    from test_runner import _tiny_config

    summary = run(_tiny_config(session_cache, out, attacks="broken"), registry)
    assert summary.done == 0 and len(summary.failed) == 2
    from advbench import leaderboard

    leaderboard.publish(out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    fresh = tmp_path / "fresh"
    run(_tiny_config(session_cache, fresh, attacks="broken"), registry)
    frame, _ = leaderboard.publish(fresh)
    assert frame.empty and not (fresh / "results.csv").exists()


class _Raises(Attack):
    name = "broken"

    def perturb(self, victim, images, pids, camids, *, gallery=None):
        raise RuntimeError("broken plugin")


class _Broken:
    @hookimpl
    def advbench_attacks(self):
        return [AttackSpec(name="broken", description="raises", build=_Raises)]


def test_a_complete_store_needs_no_cache(session_cache: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    args = _args(cache, tmp_path / "out", attacks="fgsm")
    assert main(args) == 0
    for folder in ("victims", "features", "images", "adversarial"):
        for p in (cache / folder).rglob("*"):
            if p.is_file():
                p.unlink()
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "0 cells computed, 2 already done" in captured.out and "training" not in captured.err
    assert not list((cache / "victims").glob("*.pt"))


# ------------------------------------------------------------------------------ damaged caches
def _damage(path: Path) -> None:
    """4 KiB of zeros in the middle of a file (or over all of it when smaller)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(max(0, size // 2 - 2048))
        f.write(bytes(min(4096, size)))


@pytest.mark.parametrize("kind", ["images", "features", "victims", "adversarial"])
def test_a_damaged_cache_entry_is_recomputed_with_the_same_numbers(kind: str, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    first = tmp_path / "first"
    assert main(_args(cache, first)) == 0
    entries = sorted(p for p in (cache / kind).rglob("*") if p.is_file() and p.suffix in (".pt", ".npy"))
    assert entries
    for entry in entries:
        _damage(entry)
    capsys.readouterr()
    second = tmp_path / "second"
    if kind == "adversarial":  # stored queries are read when a new evaluation needs them
        second = first
        for record in (first / ".store").glob("*.json"):
            if '"kind": "eval"' in record.read_text():
                record.unlink()
    assert main(_args(cache, second)) == 0
    err = capsys.readouterr().err
    # Only entries this run reads are checked (a cached victim needs no training images): names vary with tmp_path.
    reported = [e for e in entries if f"damaged cache entry {e}: recomputing" in err]
    assert reported, err
    pd.testing.assert_frame_equal(_results(second), _results(first))


def test_a_damaged_fitted_attack_is_fitted_again(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    gan = [
        f"--attack-param=misranking.{p}"
        for p in ("ngf=8", "n_blocks=1", "ndf=8", "batch_p=4", "batch_k=2", "steps=2")
    ]
    assert main(_args(cache, tmp_path / "a", *gan, attacks="misranking")) == 0
    entries = list((cache / "attacks" / "misranking").glob("*.pt"))
    assert entries
    for path in entries:
        _damage(path)
    capsys.readouterr()
    assert main(_args(cache, tmp_path / "b", *gan, attacks="misranking")) == 0
    assert "damaged cache entry" in capsys.readouterr().err
    pd.testing.assert_frame_equal(_results(tmp_path / "b"), _results(tmp_path / "a"))


def test_a_damaged_user_checkpoint_is_one_line_naming_it(session_cache: Path, tmp_path: Path, capsys) -> None:
    victim = TINY_VICTIMS.split(",")[0]
    ckpt = next((session_cache / "victims").glob(f"{victim}__*.pt"))
    broken = tmp_path / "mine.pt"
    broken.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # truncated
    args = _args(session_cache, tmp_path / "out", "--victim-weights", f"{victim}={broken}", attacks="fgsm")
    assert main(args) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if str(broken) in line]
    assert lines and all("not a readable torch checkpoint" in line for line in lines)
    assert "weights_only" not in out


def test_a_dry_run_reports_damaged_cache_entries_and_removes_nothing(tmp_path: Path, capsys) -> None:
    """Entries without their SHA-256 sidecar (a victim checkpoint, stored adversarial queries) are
    named by a dry run, which would have a run recompute them, and are all still there after it."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    assert main(_args(cache, out, attacks="fgsm")) == 0
    entries = sorted((cache / "victims").glob("*.pt")) + sorted((cache / "adversarial").rglob("*.npy"))
    assert any(e.suffix == ".pt" for e in entries) and any(e.suffix == ".npy" for e in entries)
    for entry in entries:
        entry.with_name(f"{entry.name}.sha256").unlink()
    for record in (out / ".store").glob("*.json"):  # the stored queries are checked for new evaluations
        if '"kind": "eval"' in record.read_text():
            record.unlink()
    capsys.readouterr()
    advbench_io._VERIFIED.clear()  # as in a new process: entries this one wrote are not known good
    assert main(_args(cache, out, "--dry-run", attacks="fgsm")) == 0
    captured = capsys.readouterr()
    for entry in entries:
        assert entry.is_file(), f"the dry run removed {entry}"
        assert f"damaged cache entry {entry}: a run would recompute it" in captured.err, captured.err
    assert "recomputing" not in captured.err
    assert captured.out.splitlines()[-1].startswith("dry run: 2 cells, 0 done, 2 to do; 2 victim(s) to train")


# ---------------------------------------------------------------------- code behind a victim
STRIDE = {"value": 1}


class _Toy(Victim):
    feature_dim = 8

    def __init__(self, num_classes: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.input_size, self.num_classes = input_size, num_classes
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=STRIDE["value"], padding=1)
        self.head = torch.nn.Linear(8, num_classes, bias=False)

    def features(self, images):
        return self.conv(images).mean((2, 3))

    def logits(self, images):
        return self.head(self.features(images))

    def train_outputs(self, images):
        f = self.features(images)
        return f, self.head(f)


class _ToyPlugin:
    @hookimpl
    def advbench_victims(self):
        return [VictimSpec(name="toy", description="a toy victim", build=_Toy)]


def test_a_victim_whose_code_changed_is_refused_until_its_version_is_bumped(tmp_path: Path) -> None:
    from test_runner import _tiny_config

    registry = build_registry(discover([("test-toy", _ToyPlugin())]))
    config = _tiny_config(tmp_path / "cache", tmp_path / "a", victims="toy", attacks="fgsm", train_steps=2)
    assert run(config, registry).done == 1
    STRIDE["value"] = 2  # same weight shapes, other behaviour, no version bump
    try:
        import dataclasses

        summary = run(dataclasses.replace(config, out=tmp_path / "b"), registry)
    finally:
        STRIDE["value"] = 1
    assert summary.done == 0
    refused = [m for _, m in summary.failed if "module structure differs" in m]
    assert refused and "bump the spec's `version`" in refused[0] and "\n" not in refused[0]


# --------------------------------------------------------------------------- the results store
def test_unreadable_store_records_are_redone_and_reported(
    session_cache: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    args = _args(session_cache, out, attacks="fgsm")
    assert main(args) == 0
    reference = _results(out)
    records = sorted((out / ".store").glob("*.json"))
    records[0].write_bytes(b"\xff\xfe not json at all")
    records[1].write_text("[1, 2, 3]")
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "unreadable store record" in err and "Traceback" not in err
    pd.testing.assert_frame_equal(_results(out), reference)
    assert main(["leaderboard", "--out", str(out)]) == 0


def test_files_follow_the_umask(session_cache: Path, tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        out = tmp_path / "out"
        assert main(_args(session_cache, out, attacks="fgsm")) == 0
    finally:
        os.umask(old)
    for path in [out / "results.csv", *(out / ".store").glob("*.json")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path


class _Cropped(Attack):
    name = "cropped"

    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return images[..., :-1]


class _CroppedPlugin:
    @hookimpl
    def advbench_attacks(self):
        return [AttackSpec(name="cropped", description="wrong shape", build=_Cropped)]


def test_a_perturbation_of_the_wrong_shape_fails_its_cell_naming_both_shapes(
    session_cache: Path, tmp_path: Path
) -> None:
    from test_runner import _tiny_config

    registry = build_registry(discover([("test-cropped", _CroppedPlugin())]))
    summary = run(_tiny_config(session_cache, tmp_path, attacks="cropped,fgsm"), registry)
    assert summary.done == 2
    messages = [m for label, m in summary.failed if "cropped" in label]
    assert len(messages) == 2
    for (
        message
    ) in messages:  # "... returned images of shape (n, 3, H, W-1) for a batch of shape (n, 3, H, W)"
        got, want = (
            tuple(int(x) for x in part.split(")")[0].split(", ")) for part in message.split("shape (")[1:]
        )
        assert got[:3] == want[:3] and got[3] == want[3] - 1
