"""Every input of `advbench run` is checked before any work: one stderr line, exit 2, nothing computed.

Also: flags win over `--config` even when they equal their defaults, and `--dry-run` prints the plan of
a run and computes nothing. No training anywhere (the dry run generates the tiny synthetic dataset only).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import TINY_SYNTHETIC, TINY_VICTIMS, tiny_cli

from advbench.api import AdvbenchError
from advbench.cli import main
from advbench.config import RunConfig
from advbench.data.catalog import DatasetCatalog
from advbench.plugins import get_registry
from advbench.records import DetectRecord, EvalRecord, RunSummary, Scores
from advbench.runner import make_plan
from advbench.store import ResultStore
from advbench.validate import validate


def _args(tmp_path: Path, *extra: str) -> list[str]:
    """A tiny valid `advbench run` (fgsm, eps 8) into tmp_path/cache and tmp_path/lb, plus ``extra``."""
    return tiny_cli(tmp_path / "cache", tmp_path / "lb", "--attacks", "fgsm", "--eps", "8", *extra)


def _nothing_computed(tmp_path: Path, *, dataset: bool = False) -> None:
    cache = tmp_path / "cache"
    assert not (cache / "victims").exists() and not (cache / "images").exists()
    assert not (tmp_path / "lb" / ".store").exists()
    if not dataset:
        assert not (cache / "datasets").exists()  # rejected before the dataset was even generated


def _rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """Run with ``extra``; assert exit 2, one stderr line and no work; return the line."""
    capsys.readouterr()
    assert main(_args(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("advbench: error: ") and "\n" not in err, err
    _nothing_computed(tmp_path)
    return err


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--attack-param", "pdg.steps=3"], ["unknown attack 'pdg'", "Did you mean pgd"]),
        (["--attack-param", "pgd.stpes=3"], ["pgd.stpes", "unknown parameter 'stpes'", "Did you mean steps"]),
        (["--attack-param", "fgsm.eps=3"], ["unknown parameter 'eps'", "--eps"]),
        (["--victim-param", "mobilenetv3_small_10.pretrained=false"], ["Did you mean mobilenetv3_small_100"]),
        (["--victim-param", "mobilenetv3_small_100.pretrianed=false"], ["Did you mean pretrained"]),
        (["--victim-param", "dgnet.config=x.yaml"], ["unknown parameter 'config'"]),  # loader-only option
        (["--dataset-param", "synthtic.seed=1"], ["unknown dataset 'synthtic'", "Did you mean synthetic"]),
        (["--dataset-param", "synthetic.sed=1"], ["unknown parameter 'sed'", "Did you mean seed"]),
        # a family takes what its build takes: the torchattacks class's constructor arguments
        (["--attack-param", "torchattacks:PGD.stpes=3"], ["torchattacks:PGD", "stpes", "it takes"]),
        (["--attacks", "torchattacks:Nope"], ["torchattacks has no L∞ attack 'Nope'"]),
        (["--attack-param", "torchattacks.steps=3"], ["family", "torchattacks:<variant>.KEY=VALUE"]),
        (["--attack-param", "misranking.preset=fast"], ["attack misranking", "preset 'fast'"]),
    ],
)
def test_unknown_plugins_and_parameter_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: list[str]
) -> None:
    err = _rejected(tmp_path, capsys, *extra)
    assert all(text in err for text in expected), err


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("--attack-param=pgd.steps=ten", "steps expects an integer (default 10), got str 'ten'"),
        ("--attack-param=pgd.steps=2.5", "got float 2.5"),
        ("--attack-param=misranking.lr=fast", "lr expects a number"),
        ("--attack-param=misranking.flip=3", "flip expects true/false or a word"),
        ("--dataset-param=synthetic.seed=true", "seed expects an integer"),
        ("--victim-param=mobilenetv3_small_100.pretrained=1", "pretrained expects true/false or a word"),
    ],
)
def test_parameter_values_of_the_wrong_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], param: str, expected: str
) -> None:
    assert expected in _rejected(tmp_path, capsys, param)


def test_values_the_rules_accept(tmp_path: Path) -> None:
    """The type rules are not stricter than the plugins: an int for a float, true/false or a path for
    ``pretrained``, a loader option with --victim-weights, a None default taking an int."""
    weights = tmp_path / "id_00100000.pt"
    weights.write_bytes(b"not read by validation")
    config = RunConfig(
        datasets="synthetic",
        victims="dgnet",
        attacks="misranking,torchattacks:PGD",
        cache_dir=tmp_path / "cache",
        out=tmp_path / "lb",
        device="cpu",
        input_size=(32, 16),
        victim_weights={"dgnet": weights},
        attack_params={
            "misranking": {"lr": 1, "k": 100},
            "torchattacks:PGD": {"steps": 3, "random_start": False},
        },
        victim_params={
            "dgnet": {"config": "c.yaml", "pretrained": "/w.pth"},
            "timm:resnet18": {"pretrained": False},
        },
        dataset_params={"synthetic": {"seed": 1}},
    )
    validate(config, get_registry())
    _nothing_computed(tmp_path)
    assert (tmp_path / "lb").is_dir() and not list((tmp_path / "lb").iterdir())  # created, probe removed


def test_library_users_get_the_same_checks(tmp_path: Path) -> None:
    base = dict(cache_dir=tmp_path / "cache", out=tmp_path / "lb", device="cpu", attacks="fgsm")
    with pytest.raises(AdvbenchError, match="finite"):
        validate(RunConfig(**base, eps=(math.nan,)), get_registry())
    with pytest.raises(AdvbenchError, match="expects an integer"):
        validate(RunConfig(**base, batch_size=6.5), get_registry())  # type: ignore[arg-type]
    assert not (tmp_path / "lb").exists()  # the output folder is the last check


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--input-size", "8x8"], "--input-size 8x8 is too small: each side must be at least 16"),
        (["--input-size", "32x15"], "at least 16"),
        (["--input-size", "32by16"], "--input-size expects HxW"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--train-steps", "0"], "--train-steps must be an integer >= 1, got 0"),
        (["--threads", "-1"], "--threads must be >= 0, got -1"),
        (["--eps", "nan"], "--eps values must be finite"),
        (["--eps", "inf"], "--eps values must be finite"),
        (["--eps", "0"], "in (0, 255]"),
        (["--eps", "4,16,4"], "--eps lists 4 more than once"),
        (["--eps", "four"], "--eps expects numbers"),
    ],
)
def test_sizes_counts_and_budgets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    assert expected in _rejected(tmp_path, capsys, *extra)


def test_victim_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _rejected(tmp_path, capsys, "--victim-weights", f"nope={tmp_path}")
    assert "unknown victim 'nope'" in err
    err = _rejected(tmp_path, capsys, "--victim-weights", f"resnet10t={tmp_path / 'missing.pt'}")
    assert "missing.pt: no such file" in err
    err = _rejected(tmp_path, capsys, "--victim-weights", f"resnet10t={tmp_path}")
    assert "is a folder" in err


def test_out_must_be_a_writable_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    err = _rejected(tmp_path, capsys, "--out", str(blocker))
    assert "--out" in err and "is a file" in err
    err = _rejected(tmp_path, capsys, "--out", str(blocker / "sub"))  # cannot be created under a file
    assert "cannot be created" in err
    assert blocker.read_text() == "x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bach_size: 8\n", ["unknown option 'bach_size'", "Did you mean batch_size"]),
        ("seed: abc\n", ["seed expects an integer, got str 'abc'"]),
        ("eps: [4, four]\n", ["eps expects numbers"]),
        ("amp: 1\n", ["amp expects true or false"]),
        ("attack_params: {pgd: 3}\n", ["attack_params expects a mapping"]),
        ("protocol: cuhk03\n", ["unknown --protocol 'cuhk03'", "Did you mean cuhk03-classic"]),
        ("attack_params: {pgd: {stpes: 3}}\n", ["unknown parameter 'stpes'"]),
        ("- eps\n", ["must hold a mapping"]),
    ],
)
def test_config_file_keys_and_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(text)
    err = _rejected(tmp_path, capsys, "--config", str(config))
    assert all(t in err for t in expected), err


def test_flags_win_over_the_config_file_even_at_their_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each of these config values is bad or different; the flags, all equal to their defaults, win.
    ``attacks`` has no flag, so the file's value is used."""
    config = tmp_path / "run.yaml"
    config.write_text("eps: 4\nbatch_size: 0\nthreads: -1\nseed: -5\nattacks: pgd\nvictims: nope\n")
    args = _args(tmp_path, "--config", str(config), "--dry-run", "--eps", "16", "--batch-size", "64")
    args += ["--threads", "0", "--seed", "0"]
    args.remove("--attacks")
    args.remove("fgsm")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| pgd eps=16 |" in out and "eps=4" not in out and "fgsm" not in out
    _nothing_computed(tmp_path, dataset=True)


def _eval(key: str) -> EvalRecord:
    scores = Scores(1.0, 1.0, 1.0, 1.0, 1.0)
    return EvalRecord(key, "c", "synthetic", "x", "x", "market", 1, scores, scores)


def test_dry_run_prints_the_plan_and_computes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(tmp_path, "--dry-run", "--attacks", "fgsm,misranking")
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    victims = TINY_VICTIMS.split(",")
    assert sum(line.startswith("train  ") for line in out) == 2  # both tiny victims, 6 steps each
    assert all(any(f"train  {v} on synthetic: 6 steps" in line for line in out) for v in victims)
    assert sum(line.startswith("fit    misranking eps=8") for line in out) == 2
    assert (
        sum(line.startswith("to do  synthetic | ") and "craft, 2 evaluation(s)" in line for line in out) == 4
    )
    assert out[-1] == "dry run: 4 cells, 0 done, 4 to do; 2 victim(s) to train, 2 fit(s); nothing computed"
    _nothing_computed(tmp_path, dataset=True)

    # the same plan through the library: store one cell's evaluations and one of another's
    config = RunConfig(
        datasets="synthetic",
        victims=TINY_VICTIMS,
        attacks="fgsm,misranking",
        eps=(8.0,),
        out=tmp_path / "lb",
        cache_dir=tmp_path / "cache",
        device="cpu",
        train_steps=6,
        dataset_params={"synthetic": TINY_SYNTHETIC},
        detect_images=8,  # as tiny_cli
    )
    plan = make_plan(config, get_registry(), DatasetCatalog(config, get_registry()), RunSummary())
    fgsm = [c for c in plan.cells if c.craft.attack.name == "fgsm"]
    store = ResultStore(tmp_path / "lb" / ".store")
    for ev in (*fgsm[0].evals, fgsm[1].evals[0]):
        store.put(_eval(ev.key))
    store.put(DetectRecord(fgsm[0].detect.key, fgsm[0].craft.key, 0.1, 0.5, 0.9, 64))
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"done   {fgsm[0].craft.label}" in out
    assert f"to do  {fgsm[1].craft.label}: craft, 1 evaluation(s), detection" in out
    assert out[-1] == "dry run: 4 cells, 1 done, 3 to do; 2 victim(s) to train, 2 fit(s); nothing computed"
    assert not (tmp_path / "cache" / "victims").exists() and not (tmp_path / "cache" / "images").exists()
    assert len(list(store.root.glob("*.json"))) == 4  # the dry run wrote nothing
