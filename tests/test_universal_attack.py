"""``uap-retrieval`` (Li et al., ICCV 2019): one δ within budget for every query, learnt on the train
split, hurting retrieval more than random noise; its cache (reuse, damage); the conformance kit; an
``advbench run`` and a ``--fit-on`` run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_SYNTHETIC
from reid_trees import make_market1501
from torch import Tensor

from advbench.api import AdvbenchError, ImageSplit, Victim
from advbench.cli import main
from advbench.metrics.reid import evaluate_features
from advbench.plugins import get_registry
from advbench.testing import TinyVictim, check_attack
from advbench_universal.attack import UniversalRetrievalAttack
from advbench_universal.losses import kmeans, list_loss, pair_loss

SIZE = (32, 16)
TINY = {"steps": 8, "batch_size": 16, "clusters": 8}
CPU = torch.device("cpu")


def _prototypes() -> Tensor:
    """24 smooth colour layouts, one per identity (16 train, 8 test)."""
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.interpolate(torch.rand(24, 3, 8, 4, generator=g), size=SIZE, mode="bilinear")


def _split(protos: Tensor, per_id: int, seed: int) -> ImageSplit:
    g = torch.Generator().manual_seed(seed)
    pids = torch.arange(len(protos)).repeat_interleave(per_id)
    images = protos[pids] + 0.15 * torch.randn(len(pids), 3, *SIZE, generator=g)
    return ImageSplit(images.clamp(0, 1), pids, torch.arange(len(pids)) % 2)


@pytest.fixture(scope="module")
def data() -> dict[str, ImageSplit]:
    protos = _prototypes()
    return {
        "train": _split(protos[:16], 6, 1),
        "query": _split(protos[16:], 2, 2),  # held-out identities: never seen by the fit
        "gallery": _split(protos[16:], 4, 3),
    }


def _fit(attack: UniversalRetrievalAttack, victim: Victim, train: ImageSplit, cache: Path, key: str) -> None:
    torch.manual_seed(0)  # as the runner seeds a fit from its key
    attack.fit(victim, train, cache_dir=cache, key=key, device=CPU, progress=False)


class _Counting(TinyVictim):
    """TinyVictim counting its feature passes (a refit would call it)."""

    calls = 0

    def features(self, images: Tensor) -> Tensor:
        type(self).calls += 1
        return super().features(images)


# ------------------------------------------------------------------------------- the perturbation
def test_one_delta_within_budget_for_every_query(data: dict[str, ImageSplit], tmp_path: Path) -> None:
    attack = UniversalRetrievalAttack(eps=8.0, **TINY)
    _fit(attack, TinyVictim(8, SIZE), data["train"], tmp_path, "k")
    assert attack.delta is not None and attack.delta.shape == (3, *SIZE)
    assert attack.delta.abs().max() <= 8 / 255 + 1e-7 and attack.delta.abs().max() > 4 / 255
    g = torch.Generator().manual_seed(9)
    a, b = (0.2 + 0.6 * torch.rand(n, 3, *SIZE, generator=g) for n in (3, 5))  # nothing is clipped
    ids = torch.zeros(5, dtype=torch.long)
    da = attack.perturb(TinyVictim(8, SIZE), a, ids[:3], ids[:3]) - a
    db = attack.perturb(TinyVictim(8, SIZE), b, ids, ids) - b
    assert torch.allclose(da, attack.delta.expand_as(da), atol=1e-6)
    assert torch.allclose(db, attack.delta.expand_as(db), atol=1e-6)
    edge = attack.perturb(TinyVictim(8, SIZE), torch.ones(1, 3, *SIZE), ids[:1], ids[:1])
    assert edge.min() >= 0 and edge.max() <= 1


def _map(victim: Victim, queries: Tensor, data: dict[str, ImageSplit]) -> float:
    q, g = data["query"], data["gallery"]
    with torch.no_grad():
        qf, gf = victim.features(queries), victim.features(g.batch(slice(None)))
    return evaluate_features(qf, gf, q.pids, g.pids, q.camids, g.camids + 2, distance=victim.distance).mAP


def test_hurts_held_out_retrieval_more_than_random_sign_noise(
    data: dict[str, ImageSplit], tmp_path: Path
) -> None:
    """Clean ≈ 0.51 mAP, random ±eps signs ≈ 0.48, the learnt δ ≈ 0.30 (measured, seeded: deterministic)."""
    victim = TinyVictim(8, SIZE).eval()
    clean = data["query"].batch(slice(None))
    signs = torch.randint(0, 2, clean.shape, generator=torch.Generator().manual_seed(5)) * 2 - 1
    noisy = _map(victim, (clean + 8 / 255 * signs).clamp(0, 1), data)
    attack = UniversalRetrievalAttack(eps=8.0, steps=20, batch_size=16)
    _fit(attack, victim, data["train"], tmp_path, "pair")
    adv = attack.perturb(victim, clean, data["query"].pids, data["query"].camids)
    assert _map(victim, adv, data) < noisy - 0.1
    with torch.no_grad():  # and the features move further than under noise
        f0, fa = victim.features(clean), victim.features(adv)
        fn = victim.features((clean + 8 / 255 * signs).clamp(0, 1))
    cos = torch.nn.functional.cosine_similarity
    assert (1 - cos(fa, f0)).mean() > 2 * (1 - cos(fn, f0)).mean()


@pytest.mark.parametrize("loss", ["point", "list", "label", "pair+point"])
def test_every_loss_variant_fits_within_budget_and_hurts(
    loss: str, data: dict[str, ImageSplit], tmp_path: Path
) -> None:
    victim = TinyVictim(8, SIZE).eval()
    attack = UniversalRetrievalAttack(eps=8.0, loss=loss, **TINY)
    _fit(attack, victim, data["train"], tmp_path, loss)
    assert attack.delta is not None and attack.delta.abs().max() <= 8 / 255 + 1e-7
    assert len(attack.history) == TINY["steps"]
    clean = data["query"].batch(slice(None))
    adv = attack.perturb(victim, clean, data["query"].pids, data["query"].camids)
    assert _map(victim, adv, data) < _map(victim, clean, data)


def test_losses_push_the_query_out_of_its_neighbourhood() -> None:
    """Pair-wise: zero once the query sits on its farthest centre; list-wise: lowest on the reversed list."""
    centres = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), dim=1)
    clean = torch.tensor([[1.0, 0.0]])
    assert pair_loss(clean, clean, centres, 0.8, 10.0).item() > 10
    assert pair_loss(centres[2:], clean, centres, 0.8, 10.0).item() == 0
    assert list_loss(centres[2:], clean, centres, 10.0) < list_loss(clean, clean, centres, 10.0)
    points = torch.cat([torch.randn(20, 2) + 5, torch.randn(20, 2) - 5])
    found = kmeans(points, 2, 10, torch.Generator().manual_seed(0))
    assert sorted(found.sum(1).sign().tolist()) == [-1.0, 1.0]


# ------------------------------------------------------------------------------------------ cache
def test_second_fit_reloads_without_training(data: dict[str, ImageSplit], tmp_path: Path) -> None:
    victim = _Counting(8, SIZE).eval()
    first = UniversalRetrievalAttack(eps=8.0, **TINY)
    _fit(first, victim, data["train"], tmp_path, "k")
    assert not first.loaded_from_cache and _Counting.calls > TINY["steps"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pt", "k.pt.sha256"]
    _Counting.calls = 0
    second = UniversalRetrievalAttack(eps=8.0, **TINY)
    _fit(second, victim, data["train"], tmp_path, "k")
    assert second.loaded_from_cache and _Counting.calls == 0
    assert torch.equal(first.delta, second.delta) and second.history == first.history
    with pytest.raises(AdvbenchError, match="other parameters"):
        _fit(UniversalRetrievalAttack(eps=4.0, **TINY), victim, data["train"], tmp_path, "k")


def test_damaged_cache_entry_is_detected_and_refitted(
    data: dict[str, ImageSplit], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = TinyVictim(8, SIZE).eval()
    first = UniversalRetrievalAttack(eps=8.0, **TINY)
    _fit(first, victim, data["train"], tmp_path, "k")
    entry = tmp_path / "k.pt"
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    entry.write_bytes(bytes(raw))
    capsys.readouterr()
    again = UniversalRetrievalAttack(eps=8.0, **TINY)
    _fit(again, victim, data["train"], tmp_path, "k")
    assert "damaged cache entry" in capsys.readouterr().err
    assert not again.loaded_from_cache and torch.equal(again.delta, first.delta)  # same seed, same δ
    third = UniversalRetrievalAttack(eps=8.0, **TINY)
    _fit(third, victim, data["train"], tmp_path, "k")
    assert third.loaded_from_cache


# ------------------------------------------------------------------------------------------ errors
def test_other_sizes_and_bad_params_are_one_line_errors(data: dict[str, ImageSplit], tmp_path: Path) -> None:
    attack = UniversalRetrievalAttack(eps=8.0, **TINY)
    with pytest.raises(AdvbenchError, match="fit\\(\\) must run"):
        attack.perturb(TinyVictim(8, SIZE), torch.rand(1, 3, *SIZE), torch.zeros(1), torch.zeros(1))
    with pytest.raises(AdvbenchError, match="train split is 32x16 but the victim takes 64x32") as err:
        _fit(attack, TinyVictim(8, (64, 32)), data["train"], tmp_path, "k")
    assert "\n" not in str(err.value)
    _fit(attack, TinyVictim(8, SIZE), data["train"], tmp_path, "k")
    with pytest.raises(AdvbenchError, match="fitted at 32x16 but the queries are 64x32") as err:
        attack.perturb(TinyVictim(8, SIZE), torch.rand(1, 3, 64, 32), torch.zeros(1), torch.zeros(1))
    assert "\n" not in str(err.value)
    for bad in ({"stepz": 3}, {"loss": "pair+nope"}, {"clusters": 1}, {"init": "ones"}):
        with pytest.raises(AdvbenchError, match="uap-retrieval"):
            UniversalRetrievalAttack(eps=8.0, **bad)


# ------------------------------------------------------------------------------------- the plugin
def test_registered_off_the_default_grid_and_passes_the_conformance_kit(tmp_path: Path) -> None:
    entry, _ = get_registry().get("attack", "uap-retrieval")
    spec = entry.spec
    assert not spec.default and spec.defaults["loss"] == "pair" and spec.defaults["steps"] == 60
    assert UniversalRetrievalAttack().needs_fit
    check_attack(spec, tmp_dir=tmp_path, params={"steps": 3, "batch_size": 8, "clusters": 4})


def _frame(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv")


def _common(cache: Path, out: Path) -> list[str]:
    return [
        "--victims",
        "timm:mobilenetv3_small_050",
        "--attacks",
        "uap-retrieval",
        "--attack-param=uap-retrieval.steps=4",
        "--attack-param=uap-retrieval.clusters=8",
        "--train-missing",
        "--train-steps",
        "2",
        "--input-size",
        "32x16",
        "--cache",
        str(cache),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        *[f"--dataset-param=synthetic.{k}={v}" for k, v in TINY_SYNTHETIC.items()],
    ]


@pytest.mark.filterwarnings("ignore:market1501.*differs from the Market-1501 release")
def test_advbench_run_and_fit_on_another_dataset(tmp_path: Path, session_cache: Path) -> None:
    """A synthetic grid with uap-retrieval, then Market-1501 queries with δ fitted on synthetic's train
    split (same 32x16 crops, so the victim's synthetic weights and the first fit are reused)."""
    out = tmp_path / "lb"
    assert main(["run", "--datasets", "synthetic", *_common(session_cache, out)]) == 0
    row = _frame(out).iloc[0]
    assert row.attack == "uap-retrieval" and row.fit_dataset == "synthetic"
    assert 0 < row.linf <= row.eps + 1e-6 and row.input_size == "32x16"

    tree = make_market1501(tmp_path / "data")
    cross = tmp_path / "cross"
    args = ["run", "--datasets", "market1501", "--data-root", str(tree.root), "--fit-on", "synthetic"]
    assert main([*args, *_common(session_cache, cross)]) == 0
    row = _frame(cross).iloc[0]
    assert row.dataset == "market1501" and row.fit_dataset == "synthetic"
    assert 0 < row.linf <= row.eps + 1e-6
    fits = list((session_cache / "attacks" / "uap-retrieval").glob("*.pt"))
    assert len(fits) == 1  # the cross-dataset cells reused the synthetic fit
    shutil.rmtree(tmp_path / "data")
