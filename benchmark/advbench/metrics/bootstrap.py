"""Paired bootstrap intervals over queries for the leaderboard's mAP columns and transfer rate.

A bootstrap resample draws ``n`` of the ``n`` queries with replacement (Efron & Tibshirani, "An
Introduction to the Bootstrap", 1993); it is stored as a ``[resamples, n]`` matrix of how many
times each query was drawn, so that a resampled mean over every resample is one matrix product.

*Paired* means the same resampled queries for every quantity of one comparison: clean and
adversarial AP of a row (so the mAP drop's interval reflects only per-query differences), and the
transfer row and the white-box row of one craft (for the transfer rate).

Per-query AP is a fraction in [0, 1], NaN for a query without a valid true match; mAP excludes such
queries, so a resampled mean is a weighted mean over the drawn valid queries (NaN when a resample
draws none).
"""

from __future__ import annotations

import numpy as np

from advbench.api import AdvbenchError

__all__ = ["interval", "paired_intervals", "resample_counts", "resampled_means"]


def resample_counts(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """How many times each of ``n`` queries is drawn in each resample: int ``[resamples, n]``.

    Row ``b`` counts ``numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))[b]``,
    so each row is multinomial (n draws, equal probabilities) and sums to ``n``.
    """
    if n < 1:
        raise AdvbenchError(f"bootstrap needs at least one query, got n={n}")
    if resamples < 1:
        raise AdvbenchError(f"resamples must be >= 1, got {resamples}")
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    flat = (idx + n * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n)


def resampled_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (``[n]`` or ``[k, n]``) in each resample: ``[resamples]`` or ``[k, resamples]``.

    NaN values are excluded (a weighted mean over the valid drawn queries); a resample that draws
    no valid query gives NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if v.ndim not in (1, 2) or c.ndim != 2 or v.shape[-1] != c.shape[1]:
        raise AdvbenchError(
            f"values {v.shape} and counts {c.shape} do not match: need [n] or [k, n] and [resamples, n]"
        )
    valid = ~np.isnan(v)
    num = c @ np.where(valid, v, 0.0).T
    den = c @ valid.astype(np.float64).T
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return means.T


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval holding ``level`` of the bootstrap ``samples`` (linear interpolation).

    Samples may be NaN where the statistic is undefined in a resample (a transfer rate whose
    white-box drop is not positive). Percentiles are taken over the defined samples, and the
    interval is ``(nan, nan)`` when fewer than ``level`` of the samples are defined: the undefined
    ones could then hold the whole excluded tail, so no interval with that coverage exists.
    """
    if not 0.0 < level < 1.0:
        raise AdvbenchError(f"interval level must be in (0, 1), got {level}")
    s = np.asarray(samples, dtype=np.float64).ravel()
    defined = s[~np.isnan(s)]
    if s.size == 0 or defined.size < level * s.size:
        return (float("nan"), float("nan"))
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(defined, [tail, 100.0 - tail])
    return (float(lo), float(hi))


def _transfer_rates(drop: np.ndarray, white_drop: np.ndarray) -> np.ndarray:
    """Per-resample drop / white-box drop, NaN where the white-box drop is not positive."""
    positive = white_drop > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positive, drop / np.where(positive, white_drop, 1.0), np.nan)


def paired_intervals(
    clean_ap: np.ndarray,
    adv_ap: np.ndarray,
    *,
    white_clean_ap: np.ndarray | None = None,
    white_adv_ap: np.ndarray | None = None,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of one leaderboard row from its per-query AP (fractions, NaN = no match).

    Returns ``clean_mAP``, ``adv_mAP`` and ``mAP_drop`` in percent points (like the leaderboard)
    and ``transfer_rate`` as a fraction: this row's drop over the craft's white-box drop
    (``white_clean_ap`` / ``white_adv_ap``, the same queries in the same order), drawn from the
    same resampled queries; ``(nan, nan)`` without white-box AP, and undefined in a resample whose
    white-box drop is not positive (see :func:`interval`). For a white-box row, pass its own AP
    as the white-box AP (every resampled rate is then 1 where defined).

    A drop is the resampled mean of per-query differences (clean minus adversarial AP) over the
    queries valid in both; with the same NaN queries in both (the usual case: validity depends
    only on the gallery's labels) it equals the difference of the two mAPs.
    """
    if (white_clean_ap is None) != (white_adv_ap is None):
        raise AdvbenchError("transfer rate needs both white_clean_ap and white_adv_ap, or neither")
    arrays = (
        [clean_ap, adv_ap] if white_clean_ap is None else [clean_ap, adv_ap, white_clean_ap, white_adv_ap]
    )
    rows = [np.asarray(a, dtype=np.float64) for a in arrays]
    shapes = {r.shape for r in rows}
    if len(shapes) != 1 or rows[0].ndim != 1:
        raise AdvbenchError(
            f"per-query AP arrays must be 1-D with the same queries, got shapes {[r.shape for r in rows]}"
        )
    # drops are means of per-query differences: exactly 0 where clean and adversarial AP agree
    stats = [rows[0], rows[1], rows[0] - rows[1]] + ([rows[2] - rows[3]] if len(rows) == 4 else [])
    means = resampled_means(np.stack(stats), resample_counts(rows[0].shape[0], resamples, seed))
    out = {
        "clean_mAP": interval(100.0 * means[0], level),
        "adv_mAP": interval(100.0 * means[1], level),
        "mAP_drop": interval(100.0 * means[2], level),
    }
    if len(rows) == 4:
        out["transfer_rate"] = interval(_transfer_rates(means[2], means[3]), level)
    else:
        out["transfer_rate"] = (float("nan"), float("nan"))
    return out
