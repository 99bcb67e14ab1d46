"""Metrics: retrieval scores of re-ID rankings and the visibility of perturbations."""

from advbench.metrics.perceptual import (
    MsSsimSetting,
    PerceptualReport,
    l0,
    l2,
    linf,
    ms_ssim,
    ms_ssim_setting,
    perceptual_report,
    ssim,
)
from advbench.metrics.reid import (
    ReidScores,
    distance_matrix,
    evaluate,
    evaluate_cuhk03_classic,
    evaluate_features,
)

__all__ = [
    "MsSsimSetting",
    "PerceptualReport",
    "ReidScores",
    "distance_matrix",
    "evaluate",
    "evaluate_cuhk03_classic",
    "evaluate_features",
    "l0",
    "l2",
    "linf",
    "ms_ssim",
    "ms_ssim_setting",
    "perceptual_report",
    "ssim",
]
