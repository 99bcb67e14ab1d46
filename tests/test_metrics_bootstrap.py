"""advbench.metrics.bootstrap: paired intervals against a slow reference bootstrap and known answers."""

from __future__ import annotations

import numpy as np
import pytest

from advbench.api import AdvbenchError
from advbench.metrics.bootstrap import interval, paired_intervals, resample_counts, resampled_means


def reference_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Slow bootstrap: draw the query indices of each resample in turn, nanmean of the drawn values."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    out = []
    for _ in range(resamples):
        drawn = values[rng.integers(0, n, size=n)]
        out.append(np.nanmean(drawn) if np.any(~np.isnan(drawn)) else np.nan)
    return np.array(out)


def reference_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = 50.0 * (1 - level)
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def ap_vectors(n: int, seed: int = 1, nan_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Clean AP in [0, 1] and a lower adversarial AP for the same queries, NaN on the same queries."""
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.3, 1.0, n)
    adv = clean * rng.uniform(0.0, 0.8, n)
    missing = rng.random(n) < nan_share
    clean[missing] = np.nan
    adv[missing] = np.nan
    return clean, adv


def test_counts_are_multinomial_rows_and_seeded():
    c = resample_counts(7, resamples=50, seed=3)
    assert c.shape == (50, 7)
    assert (c.sum(1) == 7).all() and (c >= 0).all()
    assert np.array_equal(c, resample_counts(7, resamples=50, seed=3))
    assert not np.array_equal(c, resample_counts(7, resamples=50, seed=4))


@pytest.mark.parametrize("nan_share", [0.0, 0.2])
def test_resampled_means_match_slow_reference(nan_share):
    values, _ = ap_vectors(37, nan_share=nan_share)
    fast = resampled_means(values, resample_counts(37, resamples=300, seed=5))
    slow = reference_means(values, resamples=300, seed=5)
    assert fast.shape == (300,)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)


def test_resampled_means_of_rows_match_each_row():
    clean, adv = ap_vectors(20, nan_share=0.1)
    counts = resample_counts(20, resamples=40)
    both = resampled_means(np.stack([clean, adv]), counts)
    assert both.shape == (2, 40)
    np.testing.assert_allclose(both[1], resampled_means(adv, counts), atol=1e-12)


def test_a_resample_with_no_valid_query_is_nan():
    values = np.array([np.nan, np.nan, 0.5])
    means = resampled_means(values, np.array([[3, 0, 0], [1, 1, 1]]))
    assert np.isnan(means[0]) and means[1] == 0.5


def test_paired_intervals_match_slow_reference():
    clean, adv = ap_vectors(60, nan_share=0.1)
    white_clean, white_adv = ap_vectors(60, seed=2, nan_share=0.0)
    white_clean[np.isnan(clean)] = np.nan
    white_adv[np.isnan(clean)] = np.nan
    got = paired_intervals(
        clean, adv, white_clean_ap=white_clean, white_adv_ap=white_adv, resamples=400, seed=9
    )
    ref = {k: reference_means(v, 400, 9) for k, v in [("c", clean), ("a", adv), ("wc", white_clean)]}
    ref["wa"] = reference_means(white_adv, 400, 9)
    drop, white_drop = ref["c"] - ref["a"], ref["wc"] - ref["wa"]
    expected = {
        "clean_mAP": reference_interval(100 * ref["c"]),
        "adv_mAP": reference_interval(100 * ref["a"]),
        "mAP_drop": reference_interval(100 * drop),
        "transfer_rate": reference_interval(np.where(white_drop > 0, drop / white_drop, np.nan)),
    }
    assert got.keys() == expected.keys()
    for key, (lo, hi) in expected.items():
        assert got[key] == pytest.approx((lo, hi), abs=1e-9), key


def test_identical_clean_and_adversarial_have_exactly_zero_drop():
    clean, _ = ap_vectors(50, nan_share=0.1)
    got = paired_intervals(clean, clean.copy())
    assert got["mAP_drop"] == (0.0, 0.0)
    assert got["clean_mAP"] == got["adv_mAP"]
    assert got["clean_mAP"][0] < got["clean_mAP"][1]
    assert np.isnan(got["transfer_rate"]).all()


def test_constant_ap_gives_a_zero_width_interval_at_the_value():
    got = paired_intervals(np.full(30, 0.25), np.full(30, 0.125))
    assert got["clean_mAP"] == (25.0, 25.0)
    assert got["adv_mAP"] == (12.5, 12.5)
    assert got["mAP_drop"] == (12.5, 12.5)
    lo, hi = paired_intervals(np.full(30, 0.3), np.full(30, 0.1))["clean_mAP"]
    assert lo == pytest.approx(30.0, abs=1e-12) and hi == pytest.approx(30.0, abs=1e-12)


def test_nan_queries_are_excluded():
    clean = np.full(40, 0.5)
    clean[::3] = np.nan
    adv = np.where(np.isnan(clean), np.nan, 0.2)
    got = paired_intervals(clean, adv)
    assert got["clean_mAP"] == (50.0, 50.0)
    assert got["mAP_drop"][0] == pytest.approx(30.0) and got["mAP_drop"][1] == pytest.approx(30.0)


def test_width_shrinks_like_one_over_sqrt_n():
    clean, adv = ap_vectors(100, seed=4)
    small = paired_intervals(clean, adv, seed=1)
    large = paired_intervals(np.tile(clean, 16), np.tile(adv, 16), seed=1)  # same spread, 16x the queries
    for key in ("clean_mAP", "mAP_drop"):
        ratio = (small[key][1] - small[key][0]) / (large[key][1] - large[key][0])
        assert 3.4 < ratio < 4.6, (key, ratio)


def test_transfer_rate_of_a_white_box_row_is_one():
    clean, adv = ap_vectors(40)
    got = paired_intervals(clean, adv, white_clean_ap=clean, white_adv_ap=adv)
    assert got["transfer_rate"] == pytest.approx((1.0, 1.0), abs=1e-12)


def test_transfer_rate_is_nan_without_a_white_box_drop():
    clean, adv = ap_vectors(40)
    got = paired_intervals(clean, adv, white_clean_ap=clean, white_adv_ap=clean)
    assert np.isnan(got["transfer_rate"]).all()
    assert not np.isnan(got["mAP_drop"]).any()


def test_interval_needs_level_of_the_samples_defined():
    samples = np.arange(100, dtype=np.float64)
    assert interval(samples, 0.9) == pytest.approx(tuple(np.percentile(samples, [5, 95])))
    some_nan = samples.copy()
    some_nan[:5] = np.nan
    assert interval(some_nan, 0.9) == pytest.approx(tuple(np.percentile(samples[5:], [5, 95])))
    many_nan = samples.copy()
    many_nan[:11] = np.nan
    assert np.isnan(interval(many_nan, 0.9)).all()
    assert np.isnan(interval(np.full(10, np.nan))).all()


def test_mismatched_inputs_fail_with_a_message():
    with pytest.raises(AdvbenchError, match="same queries"):
        paired_intervals(np.zeros(3), np.zeros(4))
    with pytest.raises(AdvbenchError, match="both"):
        paired_intervals(np.zeros(3), np.zeros(3), white_clean_ap=np.zeros(3))
    with pytest.raises(AdvbenchError, match="do not match"):
        resampled_means(np.zeros(3), resample_counts(4, 5))
    with pytest.raises(AdvbenchError, match="at least one query"):
        resample_counts(0)
