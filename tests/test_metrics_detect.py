"""advbench.metrics.detect: spectra, Fréchet distance and detector against known answers."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from advbench.api import AdvbenchError
from advbench.metrics.detect import (
    SpectralMeter,
    auroc,
    fit_logistic,
    frechet_distance,
    high_frequency_share,
    image_spectral_features,
    radial_power_spectrum,
    spectral_distance,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """The CPU is shared: keep each test on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sine(h: int, w: int, cycles_y: float, cycles_x: float, channels: int = 3) -> torch.Tensor:
    """``[1, C, H, W]`` sine with the given whole cycles across the height and width, in [0, 1]."""
    y = torch.arange(h, dtype=torch.float64)[:, None] / h
    x = torch.arange(w, dtype=torch.float64)[None, :] / w
    wave = 0.5 + 0.4 * torch.sin(2 * math.pi * (cycles_y * y + cycles_x * x))
    return wave.expand(1, channels, h, w).clone()


def images(n: int, h: int = 24, w: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1]."""
    coarse = torch.rand(n, 3, h // 4, w // 4, generator=gen(seed))
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------------ spectra
@pytest.mark.parametrize(
    ("h", "w", "cycles_y", "cycles_x", "ring"),
    [
        (32, 32, 0, 5, 5),
        (32, 32, 3, 4, 5),  # radius sqrt(9 + 16) = 5
        (32, 64, 0, 10, 5),  # 10 cycles over 64 pixels: the same normalised frequency as 5 over 32
        (32, 64, 5, 0, 5),
    ],
)
def test_a_sine_puts_all_its_energy_in_one_ring(h, w, cycles_y, cycles_x, ring):
    spectrum = radial_power_spectrum(sine(h, w, cycles_y, cycles_x))
    assert spectrum.shape == (1, min(h, w) // 2)
    assert spectrum.dtype == torch.float64
    others = torch.cat([spectrum[0, : ring - 1], spectrum[0, ring:]])
    assert float(spectrum[0, ring - 1]) > 1e-3
    assert float(others.max()) < 1e-12 * float(spectrum[0, ring - 1])


def test_white_noise_has_a_flat_spectrum_at_its_variance():
    noise = torch.randn(256, 1, 32, 48, generator=gen(1), dtype=torch.float64) * 0.1
    mean = radial_power_spectrum(noise).mean(0)
    assert mean.shape == (16,)
    # ring 1 holds a few frequencies only (~6% sampling error at 256 images); the outer rings many
    error = (mean / 0.01 - 1).abs()
    assert float(error.max()) < 0.2 and float(error[4:].max()) < 0.05, error


def test_spectrum_uses_the_grey_channel_mean():
    colour = sine(32, 32, 0, 5, channels=1).expand(1, 3, 32, 32).clone()
    colour[:, 1] = 1 - colour[:, 0]  # channels 0 and 1 cancel in the grey mean
    colour[:, 2] = 0.5
    assert float(radial_power_spectrum(colour).abs().max()) < 1e-20


def test_high_frequency_share_of_a_checkerboard_and_of_smooth_signals():
    idx = torch.arange(32)
    board = ((idx[:, None] + idx[None, :]) % 2).to(torch.float64).expand(2, 3, 32, 32) * 0.02 - 0.01
    assert high_frequency_share(board) == pytest.approx(1.0, abs=1e-12)
    assert high_frequency_share(sine(32, 32, 1, 2) - 0.5) < 1e-12
    ramp = (idx / 32.0).to(torch.float64).expand(1, 3, 32, 32)  # periodic wrap leaks a little
    assert high_frequency_share(ramp) < 0.05
    assert high_frequency_share(sine(32, 32, 0, 12) - 0.5) == pytest.approx(1.0, abs=1e-12)  # radius 0.75
    assert math.isnan(high_frequency_share(torch.zeros(1, 3, 8, 8)))


def test_identical_sets_have_zero_spectral_distance():
    x = images(4)
    assert spectral_distance(x, x.clone()) == 0.0


def test_spectral_distance_is_the_mean_gap_of_mean_log_spectra():
    clean = images(6)
    noisy = (clean + 0.03 * torch.randn(clean.shape, generator=gen(2))).clamp(0, 1)
    gap = image_spectral_features(clean).mean(0) - image_spectral_features(noisy).mean(0)
    assert spectral_distance(clean, noisy) == pytest.approx(float(gap.abs().mean()), rel=1e-12)
    assert spectral_distance(clean, noisy) > 0.1  # noise lifts the high rings by decades


def test_meter_equals_the_whole_set_functions_and_pickles():
    clean = images(7, seed=3)
    adv = (clean + 0.02 * torch.randn(clean.shape, generator=gen(4))).clamp(0, 1)
    meter = SpectralMeter()
    for start, stop in ((0, 3), (3, 4), (4, 7)):  # uneven batches, one of them a single image
        meter.update(clean[start:stop], adv[start:stop])
    meter.update(clean[:0], adv[:0])
    report = pickle.loads(pickle.dumps(meter)).report()
    assert report.num_images == 7
    assert report.spectral_distance == pytest.approx(spectral_distance(clean, adv), rel=1e-12)
    assert report.hf_share == pytest.approx(high_frequency_share(adv - clean), rel=1e-12)
    assert meter.clean_sum is not None and meter.clean_sum.shape == (8,)


def test_meter_and_spectra_refuse_bad_input():
    meter = SpectralMeter()
    with pytest.raises(AdvbenchError, match="no images"):
        meter.report()
    meter.update(images(1), images(1, seed=1))
    with pytest.raises(AdvbenchError, match="after 24x16"):
        meter.update(images(1, 16, 16), images(1, 16, 16))
    with pytest.raises(AdvbenchError, match="differ in shape"):
        spectral_distance(images(2), images(3))
    with pytest.raises(AdvbenchError, match=r"\[N, C, H, W\]"):
        radial_power_spectrum(torch.zeros(3, 8, 8))


# ---------------------------------------------------------------------------------- Fréchet distance
def with_moments(n: int, mean: torch.Tensor, var: torch.Tensor, seed: int) -> torch.Tensor:
    """``n`` Gaussian samples whitened so their sample mean and unbiased covariance are exactly given."""
    x = torch.randn(n, mean.shape[0], generator=gen(seed), dtype=torch.float64)
    x = x - x.mean(0)
    chol = torch.linalg.cholesky(x.T @ x / (n - 1))
    white = torch.linalg.solve_triangular(chol, x.T, upper=False).T
    return white * var.sqrt() + mean


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    mu_a, var_a = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64), torch.tensor([1.0, 4.0, 0.25])
    mu_b, var_b = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([9.0, 1.0, 0.25])
    a = with_moments(200, mu_a, var_a.double(), seed=5)
    b = with_moments(150, mu_b, var_b.double(), seed=6)
    expected = float((mu_a - mu_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum())
    assert expected == pytest.approx(1 + 4 + 4 + 1)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_the_general_formula_and_is_symmetric():
    a = torch.randn(300, 5, generator=gen(7)) @ torch.randn(5, 5, generator=gen(8))
    b = torch.randn(200, 5, generator=gen(9)) * 2 + 1
    a64, b64 = a.double(), b.double()
    s_a, s_b = torch.cov(a64.T), torch.cov(b64.T)
    tr_sqrt = torch.linalg.eigvals(s_a @ s_b).real.clamp(min=0).sqrt().sum()  # eigenvalues of S_a S_b
    expected = float((a64.mean(0) - b64.mean(0)).square().sum() + s_a.trace() + s_b.trace() - 2 * tr_sqrt)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-9)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    a = torch.randn(50, 8, generator=gen(10))
    assert frechet_distance(a, a.clone()) == pytest.approx(0.0, abs=1e-6)
    low_rank = torch.randn(10, 2, generator=gen(11)) @ torch.randn(2, 8, generator=gen(12))
    assert frechet_distance(low_rank, low_rank) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(AdvbenchError, match="dimension"):
        frechet_distance(a, a[:, :3])
    with pytest.raises(AdvbenchError, match="N >= 2"):
        frechet_distance(a[:1], a)


# ------------------------------------------------------------------------------------------ detector
def brute_auroc(scores: list[float], labels: list[int]) -> float:
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_matches_a_brute_force_pair_count_with_ties():
    scores = torch.randint(0, 5, (60,), generator=gen(13)).double()  # many ties
    labels = torch.randint(0, 2, (60,), generator=gen(14))
    assert auroc(scores, labels) == pytest.approx(brute_auroc(scores.tolist(), labels.tolist()), abs=1e-12)
    assert auroc(torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0, 0, 1])) == 1.0
    assert auroc(torch.tensor([0.9, 0.2, 0.1]), torch.tensor([0, 0, 1])) == 0.0
    assert auroc(torch.ones(4), torch.tensor([0, 1, 0, 1])) == 0.5
    with pytest.raises(AdvbenchError, match="both classes"):
        auroc(torch.ones(3), torch.ones(3))


def clouds(n: int, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points per class in 6-D, the positives shifted by ``shift`` along every axis."""
    x = torch.randn(2 * n, 6, generator=gen(seed), dtype=torch.float64) * torch.linspace(0.5, 3, 6)
    y = torch.cat([torch.zeros(n), torch.ones(n)])
    return x + shift * y[:, None], y


def test_logistic_detector_separates_distant_clouds():
    x, y = clouds(100, 4.0, seed=15)
    detector = fit_logistic(x, y)
    test_x, test_y = clouds(200, 4.0, seed=16)
    assert auroc(detector(test_x), test_y) > 0.99
    again = fit_logistic(x, y)
    assert torch.equal(again.weight, detector.weight) and again.bias == detector.bias


def test_logistic_detector_is_at_chance_on_identical_distributions():
    x, y = clouds(150, 0.0, seed=17)
    detector = fit_logistic(x, y)
    test_x, test_y = clouds(500, 0.0, seed=18)
    assert abs(auroc(detector(test_x), test_y) - 0.5) < 0.07


def test_logistic_detector_on_spectral_features_and_bad_input():
    def split(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        clean = images(20, 16, 16, seed=seed)
        adv = (clean + 0.05 * torch.randn(clean.shape, generator=gen(seed + 1))).clamp(0, 1)
        feats = torch.cat([image_spectral_features(clean), image_spectral_features(adv)])
        return feats, torch.cat([torch.zeros(20), torch.ones(20)])

    feats, labels = split(19)
    detector = fit_logistic(feats, labels)
    assert auroc(detector(*split(21)[:1]), split(21)[1]) > 0.95  # held-out pairs
    with pytest.raises(AdvbenchError, match="0 \\(clean\\) or 1"):
        fit_logistic(feats, labels * 2)
    with pytest.raises(AdvbenchError, match="expects"):
        detector(feats[:, :3])


def test_frechet_distance_in_sample_space_matches_the_general_formula():
    """Above SAMPLE_SPACE_DIM dimensions with fewer samples than dimensions (2048-d features, a few
    hundred queries) the N x M route gives the D x D formula's value."""
    from advbench.metrics import detect

    dim = detect.SAMPLE_SPACE_DIM + 16
    a = torch.randn(40, dim, generator=gen(13)) * torch.rand(dim, generator=gen(14))
    b = torch.randn(30, dim, generator=gen(15)) * 0.5 + 0.2
    a64, b64 = a.double(), b.double()
    s_a, s_b = torch.cov(a64.T), torch.cov(b64.T)
    root = torch.linalg.eigh(s_a)
    half = (root.eigenvectors * root.eigenvalues.clamp(min=0).sqrt()) @ root.eigenvectors.T
    tr_sqrt = torch.linalg.eigvalsh(half @ s_b @ half).clamp(min=0).sqrt().sum()
    expected = float((a64.mean(0) - b64.mean(0)).square().sum() + s_a.trace() + s_b.trace() - 2 * tr_sqrt)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a.clone()) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(AdvbenchError, match="N >= 2"):
        frechet_distance(a[:1], b)
