"""Metrics: retrieval scores of re-ID rankings and the visibility of perturbations."""

from advbench.metrics.perceptual import (
    MsSsimSetting,
    PerceptualMeter,
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
    GalleryIndex,
    ReidScores,
    distance_matrix,
    evaluate,
    evaluate_cuhk03_classic,
    evaluate_features,
    evaluate_queries,
    gallery_distances,
    prepare_gallery,
)

__all__ = [
    "GalleryIndex",
    "MsSsimSetting",
    "PerceptualMeter",
    "PerceptualReport",
    "ReidScores",
    "distance_matrix",
    "evaluate",
    "evaluate_cuhk03_classic",
    "evaluate_features",
    "evaluate_queries",
    "gallery_distances",
    "l0",
    "l2",
    "linf",
    "ms_ssim",
    "ms_ssim_setting",
    "perceptual_report",
    "prepare_gallery",
    "ssim",
]
