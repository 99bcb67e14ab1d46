"""advbench.metrics.perceptual: distances with known answers, SSIM / MS-SSIM settings."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from advbench.api import AdvbenchError
from advbench.metrics.perceptual import (
    MS_SSIM_WEIGHTS,
    PerceptualMeter,
    l0,
    l2,
    linf,
    ms_ssim,
    ms_ssim_setting,
    perceptual_report,
    ssim,
    ssim_win_size,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """The CPU is shared: two threads on a loaded machine made small convolutions 30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images (so SSIM is not dominated by pixel noise), quantised to 8 bits."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, h // 8 + 1, w // 8 + 1, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (x * 255).round() / 255


def test_identical_images() -> None:
    x = images(3, 128, 64)
    r = perceptual_report(x, x.clone())
    assert r.ssim == pytest.approx(1.0, abs=1e-6)
    assert r.ms_ssim == pytest.approx(1.0, abs=1e-6)
    assert (r.linf, r.l2, r.l0) == (0.0, 0.0, 0.0)
    assert r.ms_ssim_setting == "win3-5scales"
    assert r.num_images == 3


def test_known_perturbation() -> None:
    x = images(2, 32, 16)
    adv = x.clone()
    # image 0: +4/255 on all 3 channels of 2 pixel locations; image 1: -1/255 on one channel of one pixel
    adv[0, :, 5, 7] = (x[0, :, 5, 7] + 4 / 255).clamp(max=1)
    adv[0, :, 9, 1] = (x[0, :, 9, 1] + 4 / 255).clamp(max=1)
    adv[1, 2, 0, 0] = x[1, 2, 0, 0] + (1 / 255 if x[1, 2, 0, 0] < 0.5 else -1 / 255)
    d0 = adv[0] - x[0]
    assert d0.abs().max() > 3.9 / 255  # the clamp did not eat the perturbation
    assert linf(x, adv).tolist() == pytest.approx([d0.abs().max().item(), 1 / 255], abs=1e-7)
    assert l2(x, adv)[1].item() == pytest.approx(1 / 255, abs=1e-7)
    assert l2(x, adv)[0].item() == pytest.approx(d0.double().norm().item(), abs=1e-7)
    assert l0(x, adv).tolist() == pytest.approx([2 / (32 * 16), 1 / (32 * 16)])
    # a change below the tolerance is not counted
    assert l0(x, adv, atol=2 / 255).tolist() == pytest.approx([2 / (32 * 16), 0.0])


def test_report_units_and_batching() -> None:
    x = images(5, 64, 32, seed=1)
    adv = x.clone()
    adv[:, :, 10:20, 5:15] = (adv[:, :, 10:20, 5:15] + 8 / 255).clamp(0, 1)
    adv[:, 0, 0, 0] = (adv[:, 0, 0, 0] - 16 / 255).clamp(0, 1)
    r1 = perceptual_report(x, adv, batch_size=2)
    r2 = perceptual_report(x, adv, batch_size=64)
    for field in ("ssim", "l2", "l0", "linf"):
        assert getattr(r1, field) == pytest.approx(getattr(r2, field), rel=1e-6)
    assert r1.linf == pytest.approx(linf(x, adv).mean().item() * 255, rel=1e-6)
    assert 8.0 <= r1.linf <= 16.0 + 1e-4
    assert r1.l0 == pytest.approx(l0(x, adv).mean().item())
    assert r1.ssim == pytest.approx(ssim(x, adv).mean().item(), rel=1e-6)
    # 64x32 is too small for pytorch-msssim at any window >= 3
    assert math.isnan(r1.ms_ssim) and r1.ms_ssim_setting == "none"


def test_ms_ssim_settings() -> None:
    s = ms_ssim_setting(256, 128)
    assert s is not None and s.win_size == 7 and str(s) == "win7-5scales"
    assert s.weights == pytest.approx(MS_SSIM_WEIGHTS, rel=1e-3)
    assert sum(s.weights) == pytest.approx(1.0)
    s = ms_ssim_setting(128, 64)
    assert s is not None and s.win_size == 3 and str(s) == "win3-5scales"
    assert ms_ssim_setting(32, 16) is None
    assert ms_ssim_setting(384, 192).win_size == 11  # type: ignore[union-attr]
    # the boundary of pytorch-msssim's assertion min(H, W) > (win - 1) * 16
    assert ms_ssim_setting(97, 300).win_size == 7  # type: ignore[union-attr]
    assert ms_ssim_setting(96, 300).win_size == 5  # type: ignore[union-attr]
    assert ms_ssim_setting(33, 33).win_size == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("size", [(256, 128), (128, 64), (100, 50)])
def test_ms_ssim_runs_at_its_setting(size: tuple[int, int]) -> None:
    x = images(2, *size)
    noisy = (x + 0.03 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    values = ms_ssim(x, noisy)
    assert values.shape == (2,)
    assert torch.all(values < 0.999) and torch.all(values > 0.3)
    assert ms_ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


def test_ms_ssim_too_small_is_nan() -> None:
    x = images(2, 32, 16)
    assert torch.isnan(ms_ssim(x, x)).all()


def test_ssim_noisy_below_one_and_small_windows() -> None:
    x = images(4, 128, 64)
    g = torch.Generator().manual_seed(0)
    weak = (x + 0.01 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    strong = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s_weak, s_strong = ssim(x, weak), ssim(x, strong)
    assert torch.all(s_weak < 1.0) and torch.all(s_strong < s_weak)
    assert ssim_win_size(256, 128) == 11
    assert ssim_win_size(10, 40) == 9
    assert ssim_win_size(8, 8) == 7
    tiny = images(2, 8, 6)
    assert ssim(tiny, tiny).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


def test_bad_inputs() -> None:
    x = images(2, 16, 16)
    with pytest.raises(AdvbenchError, match="differ in shape"):
        perceptual_report(x, x[:1])
    with pytest.raises(AdvbenchError, match=r"must be in \[0, 1\]"):
        perceptual_report(x, x * 255)
    with pytest.raises(AdvbenchError, match="float"):
        linf((x * 255).to(torch.uint8), (x * 255).to(torch.uint8))


def perturbed(n: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = images(n, h, w, seed=seed)
    g = torch.Generator().manual_seed(seed)
    adv = (x + torch.empty_like(x).uniform_(-8 / 255, 8 / 255, generator=g)).clamp(0, 1)
    adv[:, :, : h // 2] = x[:, :, : h // 2]  # half of each image untouched: L0 is not trivial
    return x, (adv * 255).round() / 255


def test_meter_batches_of_any_size_give_one_report() -> None:
    x, adv = perturbed(7, 128, 64, seed=3)
    whole = perceptual_report(x, adv)  # one batch
    meter = PerceptualMeter()
    for s, e in ((0, 1), (1, 4), (4, 4), (4, 6), (6, 7)):  # sizes 1, 3, 0, 2, 1
        meter.update(x[s:e], adv[s:e])
    r = meter.report()
    assert r.num_images == 7 and r.ms_ssim_setting == whole.ms_ssim_setting == "win3-5scales"
    for field in ("ssim", "ms_ssim", "linf", "l2", "l0"):
        assert getattr(r, field) == pytest.approx(getattr(whole, field), rel=1e-6), field
    # and the means are those of the per-image functions
    assert r.linf == pytest.approx(linf(x, adv).mean().item() * 255, rel=1e-12)
    assert r.l2 == pytest.approx(l2(x, adv).mean().item(), rel=1e-12)
    assert r.l0 == pytest.approx(l0(x, adv).mean().item(), rel=1e-12)
    assert r.ms_ssim == pytest.approx(ms_ssim(x, adv).mean().item(), rel=1e-6)
    assert 0.0 < r.l0 < 0.51 and 0.5 < r.ssim < 1.0


def test_report_is_a_meter_fed_with_its_batches() -> None:
    x, adv = perturbed(5, 128, 64, seed=4)
    meter = PerceptualMeter()
    for s in range(0, 5, 2):
        meter.update(x[s : s + 2], adv[s : s + 2])
    assert meter.report() == perceptual_report(x, adv, batch_size=2)  # the very same sums


def test_meter_pickles_midway() -> None:
    x, adv = perturbed(4, 128, 64, seed=5)
    meter = PerceptualMeter()
    meter.update(x[:2], adv[:2])
    resumed = pickle.loads(pickle.dumps(meter))
    for m in (meter, resumed):
        m.update(x[2:], adv[2:])
    assert resumed.report() == meter.report()


def test_meter_bad_inputs_leave_it_unchanged() -> None:
    x, adv = perturbed(2, 64, 32, seed=6)
    meter = PerceptualMeter()
    with pytest.raises(AdvbenchError, match="no images to compare"):
        meter.report()
    meter.update(x, adv)
    before = pickle.dumps(meter)
    with pytest.raises(AdvbenchError, match="size 32x32 after 64x32"):
        meter.update(x[..., :32, :], adv[..., :32, :])
    with pytest.raises(AdvbenchError, match=r"adversarial images must be in \[0, 1\]"):
        meter.update(x, adv + 0.5)
    with pytest.raises(AdvbenchError, match="differ in shape"):
        meter.update(x, adv[:1])
    with pytest.raises(AdvbenchError, match="float"):
        meter.update((x * 255).to(torch.uint8), (adv * 255).to(torch.uint8))
    assert pickle.dumps(meter) == before
    assert meter.report().num_images == 2
