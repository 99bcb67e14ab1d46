"""Robust victims: the PGD inner step, training on it, the ``@at<eps>`` names, keys and a tiny run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_SYNTHETIC, tiny_cli
from torch import Tensor, nn

from advbench import victims
from advbench.adversarial_training import AdversarialRecipe, craft, split_name, train_name
from advbench.api import AdvbenchError, ImageSplit, TrainRecipe, Victim
from advbench.checkpoints import read_checkpoint
from advbench.cli import main
from advbench.config import RunConfig
from advbench.data.catalog import DatasetCatalog
from advbench.plugins import get_registry
from advbench.training import reid_loss, train_victim

SMALL = "timm:mobilenetv3_small_050"


def _split(n_ids: int = 4, per_id: int = 4) -> ImageSplit:
    g = torch.Generator().manual_seed(0)
    pids = torch.arange(n_ids).repeat_interleave(per_id)
    images = (torch.rand(len(pids), 3, 32, 16, generator=g) * 255).round().to(torch.uint8)
    return ImageSplit(images, pids, torch.zeros(len(pids), dtype=torch.long))


class TinyReid(Victim):
    """Conv-BN-ReLU, pooled, with an ID head: BatchNorm buffers that crafting must leave alone."""

    input_size, feature_dim = (32, 16), 8

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, num_classes)

    def features(self, images: Tensor) -> Tensor:
        return self.body(images).mean(dim=(2, 3))

    def train_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.features(images)
        return feats, self.head(feats)


def _victim() -> TinyReid:
    torch.manual_seed(0)
    return TinyReid()


def test_pgd_step_stays_in_the_ball_raises_the_loss_and_keeps_bn_stats() -> None:
    victim, split = _victim(), _split()
    images, pids = split.batch(slice(None)), split.pids
    recipe = AdversarialRecipe(eps=8, steps=3)
    before = {k: v.clone() for k, v in victim.state_dict().items()}
    victim.eval()
    adv = craft(
        victim,
        images,
        lambda x: reid_loss(victim, x, pids, TrainRecipe()),
        recipe,
        torch.Generator().manual_seed(0),
    )
    assert not victim.training  # the caller's mode is restored
    assert all(torch.equal(before[k], v) for k, v in victim.state_dict().items())  # running stats put back
    assert (adv - images).abs().max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (adv - images).abs().max() > 4 / 255  # it moved, not a no-op
    victim.train()
    with torch.no_grad():
        clean, attacked = (float(reid_loss(victim, x, pids, TrainRecipe())) for x in (images, adv))
    assert attacked > clean


def test_adversarial_training_steps_run_and_differ_from_standard() -> None:
    split, recipe = _split(), TrainRecipe(steps=2, batch_p=4, batch_k=4, warmup_steps=1)
    weights = []
    for adversarial in (None, AdversarialRecipe(eps=4)):
        victim = _victim()
        stats = train_victim(
            victim, split, recipe, device=torch.device("cpu"), seed=0, progress=False, adversarial=adversarial
        )
        assert stats["steps"] == 2 and torch.isfinite(torch.tensor(stats["final_loss"]))
        weights.append(next(victim.parameters()).detach().clone())
    assert not torch.equal(*weights)  # trained on other images


@pytest.mark.parametrize(
    ("name", "base", "recipe"),
    [
        ("resnet10t", "resnet10t", None),
        ("resnet10t@at4", "resnet10t", AdversarialRecipe(eps=4)),
        ("timm:resnet18@at8s5", "timm:resnet18", AdversarialRecipe(eps=8, steps=5)),
        ("resnet10t@at0.5", "resnet10t", AdversarialRecipe(eps=0.5)),
    ],
)
def test_names_read_as_base_and_recipe(name: str, base: str, recipe: AdversarialRecipe | None) -> None:
    assert split_name(name) == (base, recipe)
    assert base + (recipe.suffix if recipe else "") == name  # one spelling each way


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("resnet10t@atx", "unknown suffix '@atx'"),
        ("resnet10t@foo", "unknown suffix '@foo'"),
        ("resnet10t@at4.0", "write it as 'resnet10t@at4'"),
        ("resnet10t@at4s3", "write it as 'resnet10t@at4'"),
        ("resnet10t@at0", "eps must be in (0, 255]"),
        ("@at4", "name the victim"),
    ],
)
def test_bad_suffixes_are_one_line_errors(name: str, says: str) -> None:
    with pytest.raises(AdvbenchError) as err:
        get_registry().select("victim", f"resnet10t,{name}")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_train_flags_name_the_robust_victim() -> None:
    assert train_name("resnet10t", "pgd", 4.0, None) == "resnet10t@at4"
    assert train_name("timm:resnet18", "pgd", 8.0, 5) == "timm:resnet18@at8s5"
    assert train_name("resnet10t", None, None, None) == "resnet10t"
    with pytest.raises(AdvbenchError, match="need --adversarial"):
        train_name("resnet10t", None, 4.0, None)
    with pytest.raises(AdvbenchError, match="already a robust name"):
        train_name("resnet10t@at4", "pgd", 4.0, None)


def test_robust_and_standard_victims_never_share_weights(session_cache: Path) -> None:
    config = RunConfig(
        cache_dir=session_cache, train_steps=2, dataset_params={"synthetic": dict(TINY_SYNTHETIC)}
    )
    registry = get_registry()
    catalog = DatasetCatalog(config, registry)
    data, size = catalog.get("synthetic"), catalog.input_size("synthetic")
    refs = {
        n: victims.resolve(n, data, size, config, registry, True)
        for n in (SMALL, f"{SMALL}@at4", f"{SMALL}@at8")
    }
    assert len({r.weights_id for r in refs.values()}) == 3
    assert len({r.checkpoint for r in refs.values()}) == 3
    robust = refs[f"{SMALL}@at4"]
    assert robust.adversarial == AdversarialRecipe(eps=4) and refs[SMALL].adversarial is None
    victims.train(
        robust, catalog.split("synthetic", "train"), registry=registry, device="cpu", log=lambda _: None
    )
    blob = read_checkpoint(Path(robust.checkpoint))
    assert blob is not None and blob["victim"] == f"{SMALL}@at4"
    assert blob["adversarial"] == {"method": "pgd", "eps": 4.0, "steps": 3, "random_start": True}
    assert victims.load(robust, registry).num_classes == data.num_train_pids


def test_tiny_run_ranks_the_robust_victim(session_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "lb"
    robust = f"{SMALL}@at4"
    args = tiny_cli(session_cache, out, "--victims", f"{SMALL},{robust}", "--train-steps", "2")
    assert main([*args, "--attacks", "fgsm", "--eps", "4", "--detect-images", "0"]) == 0
    frame = pd.read_csv(out / "results.csv")
    assert robust in set(frame.source_victim) and robust in set(frame.target_victim)
    assert len(frame) == 4  # 2 sources x 2 targets
    white = frame[frame.setting == "whitebox"]
    assert sorted(white.source_victim) == sorted([SMALL, robust])
    assert (white.source_victim == white.target_victim).all()


def test_train_command_caches_the_robust_victim(
    session_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = [f"--dataset-param=synthetic.{k}={v}" for k, v in TINY_SYNTHETIC.items()]
    common = ["train", "--victim", SMALL, "--cache", str(session_cache), "--device", "cpu", "--no-progress"]
    assert main([*common, "--adv-eps", "4"]) == 2
    assert "need --adversarial pgd" in capsys.readouterr().err
    assert main([*common, *params, "--train-steps", "2", "--adversarial", "pgd", "--adv-eps", "4"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{SMALL}@at4 on synthetic: ")
    blob = read_checkpoint(Path(line.split(" checkpoint ")[-1]))
    assert blob is not None and blob["adversarial"]["eps"] == 4.0
