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
from advbench.config import RunConfig
from advbench.data.catalog import DatasetCatalog
from advbench.plugins import build_registry, discover, get_registry
from advbench.runner import RunSummary, make_plan, run
from advbench.store import ResultStore

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
    summary = run(config, registry)
    assert summary.done == 2 and len(summary.failed) == 4
    messages = {label.split(" | ")[1]: message for label, message in summary.failed}
    assert "RuntimeError: this plugin is broken" in messages["raises eps=8"]
    assert "exceeded its L∞ budget" in messages["over-budget eps=8"]
    assert {r.attack for r in summary.crafts} == {"fgsm"}
    # failed cells are recorded but not done: the next run tries them again
    failed = [r for r in ResultStore(tmp_path / ".store").records() if r.kind == "failed"]
    assert len(failed) == 4
    again = run(config, registry)
    assert again.done == 0 and again.skipped == 2 and len(again.failed) == 4


def test_train_command_and_cli_device_errors(tiny_run_args: list[str], capsys) -> None:
    run_only = {"--out", "--detect-images"}  # flags of `run` that `train` does not take, with their values
    values = {tiny_run_args[tiny_run_args.index(flag) + 1] for flag in run_only}
    common = tiny_run_args[tiny_run_args.index("--train-steps") :]
    common = [a for a in common if a not in run_only and a not in values]
    assert main(["train", "--victim", "mobilenetv3_small_100", "--dataset", "synthetic", *common]) == 0
    assert "checkpoint" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main([*tiny_run_args, "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_training_from_scratch_is_reproducible(tmp_path: Path) -> None:
    """Two trainings in two empty caches give identical weights: initialisation and steps are seeded."""
    params = [f"--dataset-param=synthetic.{k}={v}" for k, v in TINY_SYNTHETIC.items()]
    weights = []
    for name in ("a", "b"):
        torch.rand(3 if name == "a" else 5)  # a different global RNG state before each training
        out = tmp_path / f"{name}.pt"
        args = ["train", "--victim", "mobilenetv3_small_100", "--dataset", "synthetic", "--train-steps", "3"]
        args += ["--cache", str(tmp_path / name), "--output", str(out), "--device", "cpu", "--no-progress"]
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
    summary = run(config, build_registry(discover()))
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
    registry = build_registry(discover())
    summary = run(config, registry)
    frame = leaderboard.write(summary.records, tmp_path)
    assert summary.done == 2 and set(frame.protocol) == {"cuhk03-classic"}

    def keys(cfg: RunConfig) -> tuple[set[str], set[str]]:
        plan = make_plan(cfg, registry, DatasetCatalog(cfg, registry), RunSummary())
        return {c.craft.key for c in plan.cells}, {e.key for c in plan.cells for e in c.evals}

    market = keys(dataclasses.replace(config, protocol="market"))
    classic = keys(config)
    # the protocol is how queries are scored, not how they are crafted: same crafts, other evaluations
    assert market[0] == classic[0] and market[1].isdisjoint(classic[1])
    with pytest.raises(AdvbenchError, match="unknown evaluation protocol"):
        run(dataclasses.replace(config, protocol="nope"), registry)


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


def _whitebox(summary: RunSummary, source: str) -> dict[str, float]:
    frame = leaderboard.results_frame(summary.records)
    row = frame[(frame.source_victim == source) & (frame.target_victim == source)].iloc[0]
    return {k: row[k] for k in ("adv_mAP", "adv_rank1", "ssim", "l2")}


def test_adding_a_victim_evaluates_stored_queries_and_recomputes_nothing_else(
    session_cache: Path, tmp_path: Path
) -> None:
    """Crafts are keyed without the targets: the PGD queries (random start) crafted on A with A alone
    are the ones a two-victim grid uses, and a second victim only adds evaluations and its own craft."""
    registry = build_registry(discover())
    first_victim, second_victim = TINY_VICTIMS.split(",")
    one = _tiny_config(session_cache, tmp_path / "lb", victims=first_victim, attacks="pgd")
    first = run(one, registry)
    assert first.done == 1 and len(first.crafts) == 1 and len(first.evals) == 1
    craft_file = tmp_path / "lb" / ".store" / f"{first.crafts[0].key}.json"
    adv_file = Path(first.crafts[0].adv_file)
    stamps = (craft_file.stat().st_mtime_ns, adv_file.stat().st_mtime_ns)

    two = dataclasses.replace(one, victims=TINY_VICTIMS)
    second = run(two, registry)
    assert second.done == 2 and len(second.crafts) == 2 and len(second.evals) == 4
    assert (craft_file.stat().st_mtime_ns, adv_file.stat().st_mtime_ns) == stamps  # not crafted again
    assert _whitebox(second, first_victim) == _whitebox(first, first_victim)

    # from scratch with both victims: the same queries on A, hence the same numbers
    fresh = run(dataclasses.replace(two, out=tmp_path / "fresh"), registry)
    assert _whitebox(fresh, first_victim) == _whitebox(first, first_victim)
    assert _whitebox(fresh, second_victim) == _whitebox(second, second_victim)


class _Universal(Attack):
    """A learning attack: a random ±eps sign pattern drawn in ``fit`` (from the fit's seed) and cached;
    each real training appends the key to ``trained.log`` in its cache folder."""

    name = "universal"

    def fit(self, victim, train, *, cache_dir, key, device, progress=True):
        path = Path(cache_dir) / f"{key}.pt"
        if path.exists():
            self.delta = torch.load(path, weights_only=True)
            return
        _, c, h, w = train.images.shape
        self.delta = torch.randint(0, 2, (c, h, w)).float().mul(2).sub(1) * self.eps / 255
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.delta, path)
        with open(Path(cache_dir) / "trained.log", "a") as log:
            log.write(key + "\n")

    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return (images + self.delta.to(images.device)).clamp(0, 1)


class _LearnerPlugin:
    @hookimpl
    def advbench_attacks(self):
        return [AttackSpec(name="universal", description="learned sign pattern", build=_Universal)]


def test_fits_run_once_as_planned_steps_and_cells_reload_them(session_cache: Path, tmp_path: Path) -> None:
    registry = build_registry(discover([("test-learner", _LearnerPlugin())]))
    config = _tiny_config(tmp_path / "cache", tmp_path / "lb", attacks="universal", train_steps=2)
    torch.rand(7)  # the global RNG state before a run must not matter
    summary = run(config, registry)
    assert summary.done == 2 and not summary.failed
    trained = (tmp_path / "cache" / "attacks" / "universal" / "trained.log").read_text().split()
    assert len(trained) == 2  # one fit per source victim, none inside the cells
    store = ResultStore(tmp_path / "lb" / ".store")
    fits = {r.key: r for r in store.records() if r.kind == "fit"}
    assert set(fits) == set(trained)
    for craft in summary.crafts:
        assert craft.fit_seconds in {f.fit_seconds for f in fits.values()}
    # the fit is seeded from its own key: a fresh cache, another RNG state, the same pattern
    torch.rand(11)
    again = run(dataclasses.replace(config, cache_dir=tmp_path / "cache2", out=tmp_path / "lb2"), registry)
    cols = ["adv_mAP", "ssim", "l2"]
    first = leaderboard.results_frame(summary.records)[cols]
    pd.testing.assert_frame_equal(first, leaderboard.results_frame(again.records)[cols])


def test_a_local_run_gives_back_the_thread_count_it_pinned(session_cache: Path, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    pinned = 1 if before != 1 else 2
    config = _tiny_config(session_cache, tmp_path / "out", attacks="fgsm", threads=pinned, detect_images=0)
    summary = run(config, get_registry())
    assert summary.done == 2 and not summary.failed
    assert torch.get_num_threads() == before
