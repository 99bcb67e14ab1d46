"""The example third-party package (examples/plugin-package): registered specs, the toy-reid loader's
errors, the uap fit cache, and a grid mixing its attack, victim and dataset with built-ins."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from advbench_example import dataset, victim
from advbench_example.attacks import RandomSign, UniversalPerturbation, feature_distance
from advbench_example.make_toy import make_toy

from advbench.api import AdvbenchError, ImageSplit
from advbench.cli import main
from advbench.plugins import get_registry


def test_every_kind_is_registered_by_the_example_package() -> None:
    registry = get_registry()
    for kind, name in [
        ("attack", "uap"),
        ("attack", "random-sign"),
        ("victim", "tiny-cnn"),
        ("dataset", "toy-reid"),
    ]:
        entry, variant = registry.get(kind, name)
        assert entry.package == "advbench-example" and variant is None
    assert not [p for p in registry.problems if p.package == "advbench-example"]


# ------------------------------------------------------------------------------------------ dataset
def test_toy_reid_loads_with_the_documented_ids(tmp_path: Path) -> None:
    make_toy(tmp_path, train_ids=3, test_ids=2, images_per_id=2, cameras=3)
    data = dataset.load(tmp_path)
    assert data.counts() == {
        "train_ids": 3,
        "train_images": 6,
        "query_ids": 2,
        "query_images": 2,
        "gallery_ids": 2,
        "gallery_images": 4,
    }
    assert {s.pid for s in data.train} == {0, 1, 2} and {s.pid for s in data.query} == {4, 5}
    assert {s.camid for s in data.query} == {0} and {s.camid for s in data.gallery} == {1, 2}  # c1 -> 0
    assert dataset.load(tmp_path).fingerprint == data.fingerprint
    (tmp_path / "toy-reid" / "gallery" / "0005" / "c2_001.png").write_bytes(b"changed")
    assert dataset.load(tmp_path).fingerprint != data.fingerprint


def _error(root: Path | None) -> str:
    with pytest.raises(AdvbenchError) as err:
        dataset.load(root)
    message = str(err.value)
    assert "\n" not in message and message.startswith("toy-reid: ")
    return message


def test_toy_reid_errors_are_one_line_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADVBENCH_DATA", raising=False)
    assert "--data-root" in _error(None) and "ADVBENCH_DATA" in _error(None)
    missing = _error(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "toy-reid") in missing and "--data-root" in missing

    make_toy(tmp_path, train_ids=2, test_ids=1, images_per_id=1, cameras=2)
    base = tmp_path / "toy-reid"
    shutil.rmtree(base / "query")
    assert f"missing split folder {base / 'query'}" in _error(tmp_path)

    make_toy(tmp_path, train_ids=2, test_ids=1, images_per_id=1, cameras=2)
    bad = base / "train" / "0001" / "camera1.png"
    shutil.copy(base / "train" / "0001" / "c1_000.png", bad)
    assert f"bad file name {bad}" in _error(tmp_path)
    bad.unlink()
    zero = base / "gallery" / "0003" / "c0_009.png"  # cameras are 1-based in names
    shutil.copy(base / "train" / "0001" / "c1_000.png", zero)
    assert f"bad file name {zero}" in _error(tmp_path)


# ---------------------------------------------------------------------------------------------- uap
def _tiny_victim() -> victim.TinyReidNet:
    torch.manual_seed(0)
    return victim.build(num_classes=4, input_size=(32, 16), width=8, embed_dim=16).eval()


def _train_split() -> ImageSplit:
    torch.manual_seed(1)
    return ImageSplit(torch.rand(24, 3, 32, 16), torch.arange(24) % 4, torch.arange(24) % 2)


def test_uap_fit_is_cached_under_its_key_and_reused(tmp_path: Path) -> None:
    model, train = _tiny_victim(), _train_split()
    cache = tmp_path / "attacks" / "uap"
    attack = UniversalPerturbation(eps=8, steps=5, batch_size=8)
    attack.fit(model, train, cache_dir=cache, key="k1", device=torch.device("cpu"), progress=False)
    assert not attack.loaded_from_cache
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [Path("attacks/uap/k1.pt"), Path("attacks/uap/k1.pt.sha256")]
    stamp = (cache / "k1.pt").stat().st_mtime_ns

    calls: list[int] = []
    model.body.register_forward_pre_hook(lambda *_: calls.append(1))
    again = UniversalPerturbation(eps=8, steps=5, batch_size=8)
    again.fit(model, train, cache_dir=cache, key="k1", device=torch.device("cpu"), progress=False)
    assert again.loaded_from_cache and calls == [] and (cache / "k1.pt").stat().st_mtime_ns == stamp
    assert torch.equal(again.delta, attack.delta)

    other = UniversalPerturbation(eps=4, steps=5, batch_size=8)  # same key, other settings: refused
    with pytest.raises(AdvbenchError, match="delete it to refit"):
        other.fit(model, train, cache_dir=cache, key="k1", device=torch.device("cpu"))


def test_uap_stays_in_the_ball_and_beats_random_noise(tmp_path: Path) -> None:
    model, train = _tiny_victim(), _train_split()
    attack = UniversalPerturbation(eps=8, steps=10, batch_size=8)
    attack.fit(model, train, cache_dir=tmp_path, key="k", device=torch.device("cpu"), progress=False)
    eps = 8 / 255
    for size in [(32, 16), (64, 32)]:  # queries at the fit's size and, resized, at another
        images = torch.rand(6, 3, *size)
        adv = attack.perturb(model, images, torch.zeros(6), torch.zeros(6))
        assert adv.shape == images.shape and adv.min() >= 0 and adv.max() <= 1
        assert (adv - images).abs().max() <= eps + 1e-6
    clean = train.images
    with torch.no_grad():
        moved = {
            name: feature_distance(
                model,
                model.features(a.perturb(model, clean, train.pids, train.camids)),
                model.features(clean),
            )
            .mean()
            .item()
            for name, a in [("uap", attack), ("random", RandomSign(eps=8))]
        }
    assert moved["uap"] > moved["random"]


# -------------------------------------------------------------------------------------- whole grid
SMALL_SYNTHETIC = {
    "height": 32,
    "width": 16,
    "train_ids": 8,
    "train_images_per_id": 4,
    "test_ids": 4,
    "queries_per_id": 1,
    "gallery_per_id": 3,
    "distractor_ids": 0,
    "distractor_images": 0,
}


@pytest.mark.slow
def test_grid_mixes_example_and_builtin_plugins(tmp_path: Path) -> None:
    make_toy(tmp_path / "data", train_ids=6, test_ids=4, images_per_id=3, cameras=3)
    out = tmp_path / "out"
    synthetic = [f"--dataset-param=synthetic.{k}={v}" for k, v in SMALL_SYNTHETIC.items()]
    args = [
        "run",
        "--data-root", str(tmp_path / "data"),
        "--datasets", "toy-reid,synthetic",
        "--victims", "tiny-cnn,timm:mobilenetv3_small_050",
        "--attacks", "uap,fgsm",
        "--attack-param", "uap.steps=3",
        "--eps", "8",
        "--train-steps", "4",
        "--train-missing",
        "--cache", str(tmp_path / "cache"),
        "--out", str(out),
        "--input-size", "32x16",
        "--device", "cpu",
        "--no-progress",
        "--threads", "1",  # two threads on a busy 2-core machine ran 5x slower
        *synthetic,
    ]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)  # the run sets it for the whole process
    frame = pd.read_csv(out / "results.csv")
    victims = ["tiny-cnn", "timm:mobilenetv3_small_050"]
    expected = {
        (d, a, s, t)
        for d in ("toy-reid", "synthetic")
        for a in ("uap", "fgsm")
        for s in victims
        for t in victims
    }
    got = list(zip(frame.dataset, frame.attack, frame.source_victim, frame.target_victim, strict=True))
    assert len(got) == len(expected) and set(got) == expected
    assert all(math.isfinite(v) for v in [*frame.clean_mAP, *frame.adv_mAP])
    assert (frame.linf <= frame.eps + 1e-6).all()
    assert (
        len(list((tmp_path / "cache" / "attacks" / "uap").glob("*.pt"))) == 4
    )  # one fit per source and dataset
