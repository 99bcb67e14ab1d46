"""The whole grid on a tiny embedded dataset: rows, resumption, determinism, failures, bad input."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_SYNTHETIC, TINY_VICTIMS

from advbench import hookimpl, leaderboard
from advbench.api import AdvbenchError, Attack, AttackSpec
from advbench.cli import main
from advbench.plugins import build_registry, discover
from advbench.runner import RunConfig, Runner

pytestmark = pytest.mark.slow


def _tiny_config(cache: Path, out: Path, **overrides: object) -> RunConfig:
    """The tiny synthetic grid of conftest as a RunConfig (what the CLI fixture gives as flags)."""
    base = dict(
        datasets="synthetic",
        victims=TINY_VICTIMS,
        eps=(8.0,),
        out=out,
        cache_dir=cache,
        data_root=None,
        device="cpu",
        train_steps=6,
        dataset_params={"synthetic": TINY_SYNTHETIC},
        progress=False,
    )
    return RunConfig(**{**base, **overrides})


def _frame(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv")


def test_grid_rows_rerun_and_determinism(tiny_run_args: list[str], tmp_path: Path, capsys) -> None:
    args = [*tiny_run_args, "--attacks", "fgsm,pgd", "--eps", "4,16"]
    assert main(args) == 0
    out = Path(args[args.index("--out") + 1])
    frame = _frame(out)
    # 2 attacks x 2 eps x 2 sources x 2 targets
    assert len(frame) == 16 and set(frame["setting"]) == {"whitebox", "transfer"}
    assert list(frame.columns) == leaderboard.COLUMNS
    white = frame[frame.setting == "whitebox"]
    assert (white.source_victim == white.target_victim).all()
    assert ((frame.ssim > 0) & (frame.ssim < 1)).all() and (frame.linf <= frame.eps + 1e-6).all()
    assert ((frame.mAP_drop - (frame.clean_mAP - frame.adv_mAP)).abs() <= 0.011).all()  # each rounded to 0.01
    assert {p.name for p in out.glob("transfer_*.csv")} == {
        f"transfer_synthetic_{a}_eps{e}.csv" for a in ("fgsm", "pgd") for e in (4, 16)
    }

    # second run: nothing recomputed, the store untouched, the files identical
    store = sorted((out / ".store").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in store]
    before = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    capsys.readouterr()
    assert main(args) == 0
    assert "0 cells computed, 8 already done" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in store] == stamps
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == before

    # from scratch into another folder (victims come from the cache): same numbers but the timing column
    args2 = [*args]
    args2[args2.index("--out") + 1] = str(tmp_path / "again")
    assert main(args2) == 0
    again = _frame(tmp_path / "again")
    pd.testing.assert_frame_equal(frame.drop(columns="sec_per_image"), again.drop(columns="sec_per_image"))
    assert (out / "whitebox.csv").read_bytes() == (tmp_path / "again" / "whitebox.csv").read_bytes()


def test_unknown_attack_is_one_line_listing_known(tiny_run_args: list[str], capsys) -> None:
    assert main([*tiny_run_args, "--attacks", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown attack 'nope'" in err and "pgd" in err and "fgsm" in err


class _Raises(Attack):
    name = "raises"

    def perturb(self, victim, images, pids, camids, *, gallery=None):
        raise RuntimeError("this plugin is broken")


class _OverBudget(Attack):
    name = "over-budget"

    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return (images + 3 * self.eps / 255).clamp(0, 1)


class _Plugin:
    @hookimpl
    def advbench_attacks(self):
        return [
            AttackSpec(name="raises", description="raises", build=_Raises),
            AttackSpec(name="over-budget", description="too big", build=_OverBudget),
        ]


def test_a_failing_plugin_fails_only_its_cell(session_cache: Path, tmp_path: Path) -> None:
    registry = build_registry(discover([("test-plugin", _Plugin())]))
    config = _tiny_config(session_cache, tmp_path, attacks="raises,over-budget,fgsm")
    summary = Runner(config, registry).run()
    assert summary.done == 2 and len(summary.failed) == 4
    messages = {label.split(" | ")[1]: message for label, message in summary.failed}
    assert "RuntimeError: this plugin is broken" in messages["raises eps=8"]
    assert "exceeded its L∞ budget" in messages["over-budget eps=8"]
    assert {r["cell"]["attack"] for r in summary.records} == {"fgsm"}
    # failed cells are recorded but not done: the next run tries them again
    failed = [r for r in Runner(config, registry).store.records() if r["status"] == "failed"]
    assert len(failed) == 4


def test_train_command_and_cli_device_errors(tiny_run_args: list[str], capsys) -> None:
    common = tiny_run_args[tiny_run_args.index("--train-steps") :]
    common = [
        a
        for a in common
        if not a.startswith("--out") and a != tiny_run_args[tiny_run_args.index("--out") + 1]
    ]
    assert main(["train", "--victim", "mobilenetv3_small_100", "--dataset", "synthetic", *common]) == 0
    assert "checkpoint" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main([*tiny_run_args, "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_training_from_scratch_is_reproducible(tmp_path: Path) -> None:
    """Two trainings in two empty caches give identical weights: initialisation and steps are seeded."""
    params = [f"--dataset-param=synthetic.{k}={v}" for k, v in TINY_SYNTHETIC.items()]
    weights = []
    for run in ("a", "b"):
        torch.rand(3 if run == "a" else 5)  # a different global RNG state before each training
        out = tmp_path / f"{run}.pt"
        args = ["train", "--victim", "mobilenetv3_small_100", "--dataset", "synthetic", "--train-steps", "3"]
        args += ["--cache", str(tmp_path / run), "--output", str(out), "--device", "cpu", "--no-progress"]
        assert main([*args, *params]) == 0
        weights.append(torch.load(out, weights_only=False)["state_dict"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_missing_checkpoint_for_real_dataset_says_what_to_do(tmp_path: Path, session_cache: Path) -> None:
    from reid_trees import make_market1501

    tree = make_market1501(tmp_path / "data")
    config = RunConfig(
        datasets="market1501",
        victims="mobilenetv3_small_100",
        attacks="fgsm",
        out=tmp_path / "lb",
        cache_dir=session_cache,
        data_root=tree.root,
        device="cpu",
        progress=False,
    )
    summary = Runner(config, build_registry(discover())).run()
    assert summary.done == 0
    assert "advbench train --victim mobilenetv3_small_100 --dataset market1501" in summary.failed[0][1]


def _market_run(root: Path, cache: Path, out: Path, attacks: str, *extra: str) -> int:
    """`advbench run` on a generated Market-1501 tree with one tiny mobilenet trained on demand."""
    return main(
        [
            "run",
            "--datasets",
            "market1501",
            "--data-root",
            str(root),
            "--victims",
            "mobilenetv3_small_100",
            "--attacks",
            attacks,
            "--train-missing",
            "--train-steps",
            "4",
            "--input-size",
            "32x16",
            "--cache",
            str(cache),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
            *extra,
        ]
    )


def test_market1501_tree_runs_end_to_end(tmp_path: Path, session_cache: Path) -> None:
    """A generated Market-1501-shaped folder through `advbench run --datasets market1501`."""
    from reid_trees import make_market1501

    tree = make_market1501(tmp_path / "data")
    out = tmp_path / "lb"
    assert _market_run(tree.root, session_cache, out, "fgsm") == 0
    frame = _frame(out)
    assert len(frame) == 1 and frame.n_query[0] == 10 and frame.n_gallery[0] == 19
    assert os.path.exists(out / "summary.md")


def test_cuhk03_classic_protocol_is_an_option(session_cache: Path, tmp_path: Path) -> None:
    config = _tiny_config(session_cache, tmp_path, attacks="fgsm", protocol="cuhk03-classic")
    summary = Runner(config, build_registry(discover())).run()
    frame = leaderboard.write(summary.records, tmp_path)
    assert summary.done == 2 and set(frame.protocol) == {"cuhk03-classic"}
    registry = build_registry(discover())

    def keys(cfg: RunConfig) -> set[str]:
        cells = Runner(cfg, registry).plan(
            "synthetic", ["mobilenetv3_small_100"], {"mobilenetv3_small_100": "w"}
        )
        return {c.key for c in cells}

    assert keys(dataclasses.replace(config, protocol="market", out=tmp_path / "m")).isdisjoint(keys(config))
    with pytest.raises(AdvbenchError, match="unknown evaluation protocol"):
        Runner(dataclasses.replace(config, protocol="nope"), build_registry(discover()))


def test_fit_on_applies_a_generator_fitted_on_another_dataset(tmp_path: Path, session_cache: Path) -> None:
    """`--fit-on synthetic` on Market-1501 queries: misranking is fitted on synthetic's train split and
    records both datasets; FGSM, which learns nothing, keeps its plain cell."""
    from reid_trees import make_market1501

    tree = make_market1501(tmp_path / "data")
    tiny_gan = ["ngf=8", "n_blocks=1", "ndf=8", "batch_p=4", "batch_k=2", "steps=2"]
    out = tmp_path / "lb"
    extra = [
        "--fit-on",
        "synthetic",
        *[f"--dataset-param=synthetic.{k}={v}" for k, v in TINY_SYNTHETIC.items()],
        *[f"--attack-param=misranking.{p}" for p in tiny_gan],
    ]
    assert _market_run(tree.root, session_cache, out, "fgsm,misranking", *extra) == 0
    frame = _frame(out).set_index("attack")
    assert frame.loc["misranking", "dataset"] == "market1501"
    assert frame.loc["misranking", "fit_dataset"] == "synthetic"
    assert frame.loc["fgsm", "fit_dataset"] == "market1501"
    assert frame.loc["misranking", "linf"] <= frame.loc["misranking", "eps"] + 1e-6
