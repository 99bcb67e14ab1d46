"""advpattern patch attack (advbench_patch): geometry, EOT draws, the changed-pixel budget, effect, errors, kit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import advbench_patch
from advbench.api import AdvbenchError, Attack, AttackSpec, FeatureBank, Targets, ThreatModel
from advbench.testing import ConformanceError, TinyVictim, check_attack
from advbench_patch.attack import AdvPattern, _paired
from advbench_patch.geometry import TORSO, masks, max_pixels, patch_size, rects
from advbench_patch.transforms import draw, render

SIZE = (32, 16)
G, IDS = 40, 10  # gallery: 10 identities x 4 images, cameras alternate 0, 1
FAST = {"steps": 30}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def victim() -> TinyVictim:
    return TinyVictim(input_size=SIZE, feature_dim=32).eval()


@pytest.fixture(scope="module")
def world(victim: TinyVictim):
    """(bank, queries, pids, camids, target rows): each query a noisy copy of a camera-0 gallery image."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(G, 3, *SIZE, generator=g)
    pids, camids = torch.arange(IDS).repeat_interleave(G // IDS), torch.arange(G) % 2
    with torch.no_grad():
        bank = FeatureBank(victim.features(images), pids, camids)
    src = torch.arange(6) * (G // IDS)
    queries = (images[src] + 0.1 * torch.randn(6, 3, *SIZE, generator=g)).clamp(0, 1)
    rows = torch.stack([(src + 4) % G, (src + 5) % G], dim=1)  # two images of the next identity
    return bank, queries, pids[src], torch.ones(6, dtype=torch.long), rows


def _spec() -> AttackSpec:
    (spec,) = advbench_patch.advbench_attacks()
    return spec


def _features(victim: TinyVictim, images: Tensor) -> Tensor:
    with torch.no_grad():
        return victim.features(images)


def _changed(adv: Tensor, clean: Tensor) -> Tensor:
    """[N, H, W] bool: the pixel locations that differ in any channel."""
    return (adv != clean).any(dim=1)


# ------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("size", [(32, 16), (64, 32), (256, 128), (384, 128), (7, 5), (128, 64)])
@pytest.mark.parametrize("area", [0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.9])
def test_patch_size_never_exceeds_the_area(size: tuple[int, int], area: float) -> None:
    n = math.floor(area * size[0] * size[1])
    if n < 1:
        with pytest.raises(AdvbenchError, match="covers no pixel"):
            patch_size(area, size)
        return
    for aspect in (0.5, 1.0, 2.0):
        h, w = patch_size(area, size, aspect)
        assert 1 <= h <= size[0] and 1 <= w <= size[1]
        assert h * w <= n == max_pixels(area, size)
    h, w = patch_size(area, size)
    if n >= 25 and math.isqrt(n) <= min(size):  # a square fits: it covers nearly all the budget
        assert h * w >= 0.85 * n


def test_fixed_patch_is_centred_in_the_torso_band() -> None:
    for size in ((32, 16), (64, 32), (256, 128)):
        (r,) = rects(1, 0.1, size)
        H, W = size
        assert TORSO[0] * H <= r.top and r.top + r.h <= TORSO[1] * H
        assert TORSO[2] * W <= r.left and r.left + r.w <= TORSO[3] * W
        assert (
            abs((r.left + r.w / 2) - W / 2) <= 1
            and abs((r.top + r.h / 2) - (TORSO[0] + TORSO[1]) / 2 * H) <= 1
        )
    (big,) = rects(1, 0.5, (256, 128))  # taller than the band: centred on it, inside the image
    assert big.top >= 0 and big.top + big.h <= 256 and big.left + big.w <= 128
    assert abs(big.top + big.h / 2 - 0.425 * 256) <= 1


def test_sampled_locations_are_seeded_and_inside_the_torso_band() -> None:
    torch.manual_seed(3)
    first = rects(64, 0.05, (256, 128), location="sampled")
    torch.manual_seed(3)
    assert rects(64, 0.05, (256, 128), location="sampled") == first
    assert len({(r.top, r.left) for r in first}) > 10
    for r in first:
        assert r.top >= 0.25 * 256 and r.top + r.h <= 0.60 * 256
        assert r.left >= 0.15 * 128 and r.left + r.w <= 0.85 * 128
    m = masks(first[:2], (256, 128))
    assert m.shape == (2, 1, 256, 128) and int(m[0].sum()) == first[0].pixels


# ------------------------------------------------------------------------------------ EOT draws
def test_eot_draws_are_seeded_and_draw_zero_is_the_identity() -> None:
    boxes = rects(3, 0.1, SIZE)
    torch.manual_seed(1)
    a = draw(boxes, SIZE, 4)
    torch.manual_seed(1)
    b = draw(boxes, SIZE, 4)
    assert torch.equal(a.theta, b.theta) and torch.equal(a.gain, b.gain)
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    assert torch.allclose(a.theta[:3], eye.expand(3, 2, 3)) and torch.equal(
        a.gain[:3], torch.ones(3, 1, 1, 1)
    )
    assert not torch.allclose(a.theta[3:], eye.expand(9, 2, 3))
    clean, mask = torch.rand(3, 3, *SIZE), masks(boxes, SIZE)
    canvas = torch.rand(3, 3, *SIZE) * mask
    out = render(clean, canvas, mask, a)
    assert out.shape == (12, 3, *SIZE) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.allclose(out[:3], clean * (1 - mask) + canvas, atol=1e-5)
    x = torch.rand(3, 3, *SIZE, requires_grad=True)
    grad = torch.autograd.grad(render(clean, x * mask, mask, a).sum(), x)[0]
    assert float(grad.abs().sum()) > 0 and float((grad * (1 - mask)).abs().max()) == 0


# ------------------------------------------------------------------------------------ budget
@pytest.mark.parametrize("location", ["fixed", "sampled"])
def test_changes_stay_inside_the_patch_rectangle(victim, world, location: str) -> None:
    bank, queries, pids, camids, rows = world
    spec = _spec()
    attack = spec.build(
        eps=255.0, area=0.1, **{**spec.defaults, "steps": 3, "location": location, "scale": 0.3, "shift": 0.5}
    )
    for targets in (None, Targets("targeted", rows)):
        torch.manual_seed(7)
        adv = attack.perturb(victim, queries, pids, camids, gallery=bank, targets=targets)
        torch.manual_seed(7)
        boxes = rects(len(queries), 0.1, SIZE, location=location)  # the attack's first draws
        changed = _changed(adv, queries)
        assert int(changed.flatten(1).sum(1).max()) <= math.floor(0.1 * SIZE[0] * SIZE[1])
        inside = masks(boxes, SIZE)[:, 0].bool()
        assert not bool((changed & ~inside).any())
        assert int(changed.flatten(1).sum(1).min()) > 0.8 * boxes[0].pixels
        assert adv.dtype == queries.dtype and float(adv.min()) >= 0 and float(adv.max()) <= 1


def test_budget_holds_at_the_runner_crop_size() -> None:
    big = TinyVictim(input_size=(256, 128), feature_dim=8).eval()
    images = torch.rand(2, 3, 256, 128)
    for area in (0.05, 0.1, 0.2):
        adv = AdvPattern(area=area, steps=1, eot_draws=2).perturb(
            big, images, torch.tensor([0, 1]), torch.tensor([0, 1])
        )
        assert int(_changed(adv, images).flatten(1).sum(1).max()) <= math.floor(area * 256 * 128)


# ------------------------------------------------------------------------------------ effect
def _random_patch(queries: Tensor) -> Tensor:
    boxes = rects(len(queries), 0.1, SIZE)
    return torch.where(masks(boxes, SIZE).bool(), torch.rand_like(queries), queries)


def test_evasion_moves_the_query_away_from_its_identity(victim, world) -> None:
    bank, queries, pids, camids, _ = world
    clean = _features(victim, queries)
    adv = AdvPattern(area=0.1, **FAST).perturb(victim, queries, pids, camids, gallery=bank)
    d_adv = _paired(_features(victim, adv), clean, "cosine").mean()
    d_rand = _paired(_features(victim, _random_patch(queries)), clean, "cosine").mean()
    assert d_adv > 5 * d_rand
    match = ((bank.pids[None, :] == pids[:, None]) & (bank.camids[None, :] != camids[:, None])).float()
    assert bool((match.sum(1) == 2).all())  # two true matches per query on the other camera

    def to_matches(feats: Tensor) -> Tensor:
        d = 1 - torch.nn.functional.normalize(feats, dim=1) @ bank.features.T
        return ((d * match).sum(1) / match.sum(1)).mean()

    assert to_matches(_features(victim, adv)) > 2 * to_matches(clean)


def test_impersonation_moves_the_query_to_its_targets(victim, world) -> None:
    bank, queries, pids, camids, rows = world
    target = bank.features[rows].mean(1)
    adv = AdvPattern(area=0.1, **FAST).perturb(
        victim, queries, pids, camids, gallery=bank, targets=Targets("targeted", rows)
    )
    d_adv = _paired(_features(victim, adv), target, "cosine").mean()
    d_rand = _paired(_features(victim, _random_patch(queries)), target, "cosine").mean()
    d_clean = _paired(_features(victim, queries), target, "cosine").mean()
    assert d_adv < 0.5 * d_rand and d_adv < 0.5 * d_clean


def test_deterministic_for_one_seed(victim, world) -> None:
    bank, queries, pids, camids, rows = world
    attack = AdvPattern(area=0.1, steps=5, location="sampled")
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(
            attack.perturb(victim, queries, pids, camids, gallery=bank, targets=Targets("targeted", rows))
        )
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert all(p.grad is None for p in victim.parameters())  # the victim's gradients are left alone


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("area", [0.0, -0.1, 1.0, 1.5, float("nan"), "big"])
def test_bad_area_is_a_one_line_error(area) -> None:
    with pytest.raises(AdvbenchError, match="patch area must be a fraction") as info:
        _spec().build(eps=255.0, area=area, **_spec().defaults)
    assert "\n" not in str(info.value)


def test_bad_params_and_missing_targets_are_one_line_errors(victim, world) -> None:
    bank, queries, pids, camids, rows = world
    for bad in ({"location": "head"}, {"steps": 0}, {"aspect": -1.0}, {"no_such": 1}, {"goal": "demote"}):
        with pytest.raises(AdvbenchError) as info:
            _spec().build(eps=255.0, area=0.1, **{**_spec().defaults, **bad})
        assert "\n" not in str(info.value)
    with pytest.raises(AdvbenchError, match="needs targets"):
        AdvPattern(area=0.1, goal="targeted").perturb(victim, queries, pids, camids, gallery=bank)
    with pytest.raises(AdvbenchError, match="gallery"):
        AdvPattern(area=0.1).perturb(victim, queries, pids, camids, targets=Targets("targeted", rows))
    with pytest.raises(AdvbenchError, match="target indices"):
        AdvPattern(area=0.1).perturb(
            victim, queries, pids, camids, gallery=bank, targets=Targets("targeted", rows[:2])
        )
    with pytest.raises(AdvbenchError, match="covers no pixel"):
        AdvPattern(area=0.001).perturb(victim, queries, pids, camids, gallery=bank)


# ------------------------------------------------------------------------------------ spec and kit
def test_spec_is_registered_with_patch_threats_and_no_area_default() -> None:
    from advbench.plugins import get_registry

    entry, _ = get_registry().get("attack", "advpattern")
    spec = entry.spec
    assert spec.default is False and "area" not in spec.defaults
    assert set(spec.threats) == {
        ThreatModel("query", "untargeted", "patch"),
        ThreatModel("query", "targeted", "patch"),
    }
    attack = spec.build(eps=255.0, area=0.2, **spec.defaults)
    assert isinstance(attack, AdvPattern) and attack.area == 0.2


def test_conformance_kit_passes_advpattern(tmp_path) -> None:
    check_attack(_spec(), tmp_dir=tmp_path, params={"steps": 3})


class _Leaky(Attack):
    """Changes its patch plus ``extra`` pixels (outside the area budget) or a faint full-image shift."""

    def __init__(self, eps: float = 255.0, area: float = 0.1, extra: int = 1, whole: bool = False) -> None:
        super().__init__(eps=eps)
        self.area, self.extra, self.whole = area, extra, whole

    def perturb(self, victim, images, pids, camids, *, gallery=None, targets=None) -> Tensor:
        if self.whole:
            return (images + 1e-3).clamp(0, 1) * 0.999
        adv = images.clone().flatten(2)
        n = math.floor(self.area * images.shape[2] * images.shape[3]) + self.extra
        adv[:, :, :n] = 1.0 - adv[:, :, :n]
        return adv.view_as(images)


@pytest.mark.parametrize("kw", [{"extra": 1}, {"whole": True}])
def test_conformance_kit_rejects_changes_outside_the_patch_area(tmp_path, kw) -> None:
    spec = AttackSpec(
        name="leaky-patch",
        description="changes more pixels than its area",
        build=lambda eps, **p: _Leaky(eps, **p),
        defaults=kw,
        threats=(ThreatModel("query", "untargeted", "patch"),),
    )
    with pytest.raises(ConformanceError, match=r"floor\(area\*H\*W\) = 204 pixel locations"):
        check_attack(spec, tmp_dir=tmp_path)
    ok = AttackSpec(
        name="exact-patch",
        description="changes exactly its area",
        build=lambda eps, **p: _Leaky(eps, **p),
        defaults={"extra": 0},
        threats=(ThreatModel("query", "untargeted", "patch"),),
    )
    check_attack(ok, tmp_dir=tmp_path)  # floor(0.1 * 64 * 32) = 204 changed: within the budget
