"""Mis-Ranking GAN plugin: losses, budget, mask, discriminator/mask training, cache, real behaviour.

Everything runs at 32x16 with a tiny conv victim, so the whole file stays well under a minute on CPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from advbench.api import ImageSplit, Victim
from advbench_misranking import advbench_attacks
from advbench_misranking.attack import MisRankingAttack
from advbench_misranking.budget import bound_perturbation
from advbench_misranking.losses import least_likely_xent, misranking_loss, perception_setting
from advbench_misranking.mask import gumbel_topk
from advbench_misranking.trainer import GanTrainer

H, W = 32, 16
TINY = {"ngf": 8, "n_blocks": 1, "ndf": 8, "mask_width": 8, "batch_p": 4, "batch_k": 2}


class TinyVictim(Victim):
    """A small frozen conv re-ID model with an identity head (random but fixed weights)."""

    input_size = (H, W)
    distance = "euclidean"
    feature_dim = 16

    def __init__(self, num_classes: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(16, num_classes)
        self.eval().requires_grad_(False)

    def features(self, images: Tensor) -> Tensor:
        return self.body((images - 0.5) / 0.25)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny convs run fastest on one thread, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_split(num_ids: int = 6, per_id: int = 4, seed: int = 0, spread: float = 0.06) -> ImageSplit:
    """Identities = three horizontal colour bands close to a shared grey (hard to tell apart under eps)."""
    g = torch.Generator().manual_seed(seed)
    colours = 0.5 + spread * (torch.rand(num_ids, 3, 3, generator=g) * 2 - 1)  # id, band, rgb
    images, pids = [], []
    for pid in range(num_ids):
        for _ in range(per_id):
            bands = colours[pid].t().repeat_interleave(H // 3 + 1, dim=1)[:, :H]  # rgb, H
            img = bands.unsqueeze(-1).expand(3, H, W) + 0.02 * torch.randn(3, H, W, generator=g)
            images.append(img)
            pids.append(pid)
    x = (torch.stack(images).clamp(0, 1) * 255).round().to(torch.uint8)
    pid_t = torch.tensor(pids)
    return ImageSplit(images=x, pids=pid_t, camids=torch.arange(len(pids)) % 2)


def test_hook_registers_misranking() -> None:
    (spec,) = advbench_attacks()
    assert spec.name == "misranking" and spec.default
    attack = spec.build(eps=8.0, **spec.defaults)
    assert isinstance(attack, MisRankingAttack) and attack.eps == 8.0 and attack.config.k is None


def test_misranking_loss_equals_formula() -> None:
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(8, 5, generator=g)
    ref = torch.randn(8, 5, generator=g)
    pids = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    for reference in (None, ref):
        other = feats if reference is None else reference
        terms = []
        for i in range(8):
            d = [float(torch.linalg.vector_norm(feats[i] - other[j])) for j in range(8)]
            far_neg = max(d[j] for j in range(8) if pids[j] != pids[i])
            near_pos = min(d[j] for j in range(8) if pids[j] == pids[i] and j != i)
            terms.append(max(0.0, far_neg - near_pos + 0.3))
        expected = sum(terms) / len(terms)
        got = misranking_loss(feats, pids, 0.3, reference)
        assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # The anchor itself is not its own nearest positive: identical duplicates would give d = 0.
    with pytest.raises(ValueError):
        misranking_loss(feats[:3], torch.tensor([0, 1, 1]))


def test_least_likely_xent_targets_argmin_with_smoothing() -> None:
    logits = torch.tensor([[3.0, 1.0, -2.0, 0.5], [0.0, 2.0, 1.0, -1.0]])
    pids = torch.tensor([0, 1])
    logp = torch.log_softmax(logits, 1)
    # Smoothing mass goes to the classes not in the batch (2 and 3), renormalised.
    q = torch.tensor([[0.0, 0.0, 0.9 + 0.05, 0.05], [0.0, 0.0, 0.05, 0.9 + 0.05]])
    expected = -(q * logp).sum(1).mean()
    assert least_likely_xent(logits, pids, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_perception_setting_fits_pytorch_msssim() -> None:
    assert perception_setting(128, 64) == ("ms_ssim", 3, 5)
    assert perception_setting(256, 128) == ("ms_ssim", 7, 5)
    assert perception_setting(384, 192) == ("ms_ssim", 11, 5)
    assert perception_setting(32, 16)[0] == "ssim"


@pytest.mark.parametrize("mode", ["tanh", "st"])
def test_bound_never_exceeds_eps(mode: str) -> None:
    raw = torch.randn(4, 3, 8, 8) * torch.logspace(-3, 3, 8).view(1, 1, 1, 8)
    raw.requires_grad_(True)
    delta = bound_perturbation(raw, 16 / 255, mode)
    assert delta.abs().max().item() <= 16 / 255 + 1e-7
    delta.sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0
    if mode == "st":  # straight-through: identity gradient
        assert torch.equal(raw.grad, torch.ones_like(raw))


@pytest.mark.parametrize("mode", ["tanh", "st"])
def test_perturbation_never_exceeds_eps(mode: str, tmp_path: Path) -> None:
    split = make_split()
    victim = TinyVictim(6)
    attack = MisRankingAttack(eps=4.0, steps=2, bound=mode, **TINY)
    attack.fit(victim, split, cache_dir=tmp_path, key="k", device=torch.device("cpu"), progress=False)
    with torch.no_grad():  # a wild generator: huge raw outputs everywhere
        attack.nets.generator.last.weight.mul_(1e4)
    x = split.batch(slice(None))
    adv = attack.perturb(victim, x, split.pids, split.camids)
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max().item() <= 4 / 255 + 1e-6
    assert (adv - x).abs().max().item() > 3.9 / 255  # the budget is actually used


def test_fitted_generator_applies_to_another_datasets_images(tmp_path: Path) -> None:
    """Cross-dataset use (``--fit-on``): fit on one split, perturb images of another size."""
    attack = MisRankingAttack(eps=8.0, k=50, steps=1, **TINY)
    attack.fit(
        TinyVictim(6), make_split(), cache_dir=tmp_path, key="x", device=torch.device("cpu"), progress=False
    )
    other = torch.rand(3, 3, 38, 18)  # not a multiple of 4
    adv = attack.perturb(TinyVictim(6), other, torch.arange(3), torch.zeros(3, dtype=torch.long))
    assert adv.shape == other.shape and (adv - other).abs().max() <= 8 / 255 + 1e-6
    assert torch.equal((adv != other).any(1).flatten(1).sum(1), torch.full((3,), 50))


def test_gumbel_topk_exact_k_and_straight_through() -> None:
    logits = torch.randn(3, 50, requires_grad=True)
    noise = -torch.log(-torch.log(torch.rand(3, 50).clamp(1e-9, 1 - 1e-7)))
    m = gumbel_topk(logits, 7, 0.5, noise)
    assert torch.equal((m != 0).sum(1), torch.full((3,), 7))
    assert torch.allclose(m[m != 0], torch.ones(21))
    (m * torch.randn(3, 50)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_controllable_mode_changes_exactly_k_pixels(tmp_path: Path) -> None:
    split = make_split()
    victim = TinyVictim(6)
    attack = MisRankingAttack(eps=16.0, k=37, steps=2, **TINY)
    attack.fit(victim, split, cache_dir=tmp_path, key="k37", device=torch.device("cpu"), progress=False)
    x = split.batch(slice(None))
    adv = attack.perturb(victim, x, split.pids, split.camids)
    quantised = (adv * 255).round() / 255  # what the runner stores: still exactly k pixels
    for out in (adv, quantised):
        changed = (out != x).any(dim=1).flatten(1).sum(1)
        assert torch.equal(changed, torch.full((len(x),), 37))
    assert (adv - x).abs().max().item() <= 16 / 255 + 1e-6


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def test_every_discriminator_branch_trains() -> None:
    trainer = GanTrainer(TinyVictim(6), make_split(), MisRankingAttack(**TINY).config, eps=16.0)
    branches = trainer.nets.discriminator.branches
    assert len(branches) == 3
    before = [_snapshot(b) for b in branches]
    trainer.step()
    for i, (b, snap) in enumerate(zip(branches, before)):
        weights = [k for k in snap if k.endswith("weight") or "original" in k]
        changed = [k for k in weights if not torch.equal(snap[k], b.state_dict()[k])]
        assert len(changed) == len(weights), f"branch {i}: unchanged {set(weights) - set(changed)}"


def test_mask_head_trains_with_the_generator() -> None:
    config = MisRankingAttack(k=20, **TINY).config
    trainer = GanTrainer(TinyVictim(6), make_split(), config, eps=16.0)
    head = trainer.nets.mask_head
    assert head is not None
    before = _snapshot(head)
    tau = head.log_tau.item()
    trainer.step()
    after = head.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    params = [n for n, _ in head.named_parameters()]
    assert len(changed) >= len(params) - 1, f"unchanged: {set(before) - set(changed)}"
    assert head.log_tau.item() != tau
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_second_fit_loads_from_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split, victim = make_split(), TinyVictim(6)
    first = MisRankingAttack(steps=2, **TINY)
    first.fit(victim, split, cache_dir=tmp_path, key="abc", device=torch.device("cpu"), progress=False)
    assert (tmp_path / "abc.pt").exists() and not first.loaded_from_cache
    # no temporary left behind: the generator and its checksum
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc.pt", "abc.pt.sha256"]

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached generator must not be retrained")

    monkeypatch.setattr("advbench_misranking.trainer.GanTrainer.run", no_training)
    second = MisRankingAttack(steps=2, **TINY)
    second.fit(victim, split, cache_dir=tmp_path, key="abc", device=torch.device("cpu"), progress=False)
    assert second.loaded_from_cache
    x = split.batch(slice(0, 5))
    assert torch.equal(first.perturb(victim, x, split.pids[:5], split.camids[:5]),
                       second.perturb(victim, x, split.pids[:5], split.camids[:5]))  # fmt: skip
    with pytest.raises(Exception, match="other parameters"):  # same key, different params: refuse
        MisRankingAttack(steps=3, **TINY).fit(
            victim, split, cache_dir=tmp_path, key="abc", device=torch.device("cpu"), progress=False
        )
    # a damaged entry is reported and trained again, never loaded
    with open(tmp_path / "abc.pt", "r+b") as f:
        f.seek(200)
        f.write(bytes(64))
    monkeypatch.undo()
    third = MisRankingAttack(steps=2, **TINY)
    third.fit(victim, split, cache_dir=tmp_path, key="abc", device=torch.device("cpu"), progress=False)
    assert not third.loaded_from_cache


def _fitted_generator(run_seed: int, folder: Path, **params: object) -> dict[str, Tensor]:
    """The generator of a fit under ``run_seed``, seeded as the runner seeds every fit
    (:func:`advbench.attacks.restore` calls ``seed_everything(task.seed)``; the seed comes from the
    fit key, which hashes the run's ``--seed``)."""
    from advbench.utils import seed_everything

    split, victim = make_split(), TinyVictim(6)  # TinyVictim seeds the global generator itself
    seed_everything(run_seed)
    attack = MisRankingAttack(steps=2, **{**TINY, **params})
    attack.fit(victim, split, cache_dir=folder, key="k", device=torch.device("cpu"), progress=False)
    assert not attack.loaded_from_cache and attack.nets is not None
    return attack.nets.generator.state_dict()


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_fit_follows_the_run_seed(tmp_path: Path) -> None:
    """Different run seeds give different generators, the same one identical generators; an
    explicit ``seed`` parameter pins the fit whatever the run seed."""
    first = _fitted_generator(1, tmp_path / "a")
    assert _same(first, _fitted_generator(1, tmp_path / "b"))
    assert not _same(first, _fitted_generator(2, tmp_path / "c"))
    assert _same(_fitted_generator(1, tmp_path / "d", seed=5), _fitted_generator(2, tmp_path / "e", seed=5))


def test_the_fit_seed_is_part_of_the_spec_version() -> None:
    """Fits cached before the attack followed --seed (version 1.0.0) are not reused."""
    assert advbench_attacks()[0].version != "1.0.0"


def _rank1(victim: Victim, queries: Tensor, q_pids: Tensor, gallery: Tensor, g_pids: Tensor) -> float:
    with torch.no_grad():
        d = torch.cdist(victim.features(queries), victim.features(gallery))
    return (g_pids[d.argmin(1)] == q_pids).float().mean().item()


def test_short_fit_hurts_retrieval_more_than_random_noise(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train = make_split(num_ids=8, per_id=4, seed=1, spread=0.1)
    test = make_split(num_ids=8, per_id=6, seed=2, spread=0.1)  # unseen identities, as in re-ID
    queries, gallery = test.images[::2], test.images[1::2]
    q = queries.float() / 255
    g = gallery.float() / 255
    q_pids, g_pids = test.pids[::2], test.pids[1::2]
    victim = TinyVictim(8)
    attack = MisRankingAttack(eps=16.0, steps=40, lr=3e-3, **TINY)  # a higher lr: 40 steps only
    attack.fit(victim, train, cache_dir=tmp_path, key="real", device=torch.device("cpu"), progress=False)
    adv = attack.perturb(victim, q, q_pids, q_pids)
    noise = (q + 16 / 255 * torch.sign(torch.randn_like(q))).clamp(0, 1)  # the strongest random noise
    clean_r1 = _rank1(victim, q, q_pids, g, g_pids)
    noise_r1 = _rank1(victim, noise, q_pids, g, g_pids)
    adv_r1 = _rank1(victim, adv, q_pids, g, g_pids)
    assert clean_r1 >= 0.9, clean_r1
    assert adv_r1 <= noise_r1 - 0.3, (clean_r1, noise_r1, adv_r1)
    assert list(itertools.islice(attack.history, 1))  # the fit recorded its losses
