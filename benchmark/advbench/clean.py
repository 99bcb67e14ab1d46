"""Clean features and scores of a dataset: what every cell of the dataset shares.

For each victim, the clean gallery and query features are extracted once (cached on disk by the
victim's weights and the images) and the clean queries are scored once. A :class:`CleanSet` is
built by the driver and shipped once per dataset to the workers (the object store on Ray), so no
cell recomputes any of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from advbench.api import FeatureBank, ImageSplit
from advbench.context import TaskContext
from advbench.features import extract_cached
from advbench.metrics.ranking import candidate_ranks
from advbench.metrics.reid import (
    GalleryIndex,
    ReidScores,
    evaluate_cuhk03_classic,
    evaluate_queries,
    gallery_distances,
    prepare_gallery,
)
from advbench.records import Scores
from advbench.utils import stable_hash
from advbench.victims import VictimRef


@dataclass
class CleanVictim:
    """One victim's clean view of a dataset: its prepared gallery, clean query features and scores."""

    ref: VictimRef
    index: GalleryIndex
    query_features: Tensor
    scores: ReidScores
    defended: dict[tuple, ReidScores] = field(default_factory=dict, repr=False)
    """Clean scores through each defence, filled by the first evaluation that needs them (every
    attack's evaluation through that defence shares them within a process)."""

    @property
    def gallery(self) -> FeatureBank:
        """The clean gallery features an attacker may index (the index's own tensors, no copy)."""
        return FeatureBank(self.index.features, self.index.pids, self.index.camids)


@dataclass
class CleanSet:
    """A dataset's query images and every victim's clean features; what cells of the dataset share."""

    dataset: str
    query: ImageSplit
    victims: dict[str, CleanVictim] = field(default_factory=dict)
    gallery: ImageSplit | None = None
    """The gallery images, for gallery-side crafts (read from the decode cache batch by batch)."""


def as_scores(s: ReidScores) -> Scores:
    """A record's scores (percent) from the metrics' fractions."""
    return Scores(
        mAP=100 * s.mAP,
        rank1=100 * s.rank(1),
        rank5=100 * s.rank(5),
        rank10=100 * s.rank(10),
        mINP=100 * s.mINP,
    )


def ap_list(scores: ReidScores) -> list[float | None] | None:
    """Per-query AP as JSON: None for a query without a true match."""
    if scores.query_ap is None:
        return None
    return [None if math.isnan(v) else round(float(v), 6) for v in scores.query_ap]


def score(features: Tensor, index: GalleryIndex, query: ImageSplit, protocol: str, seed: int) -> ReidScores:
    """Scores of query ``features`` against a victim's prepared clean gallery under ``protocol``.

    ``market`` (every dataset's default) or ``cuhk03-classic`` (single-gallery-shot CMC), both on
    the same float32 distances.
    """
    if protocol == "cuhk03-classic":
        distmat = gallery_distances(features, index)
        return evaluate_cuhk03_classic(distmat, query.pids, index.pids, query.camids, index.camids, seed=seed)
    return evaluate_queries(features, index, query.pids, query.camids)


RANK_CHUNK = 256  # query rows per distance block when ranking chosen candidates


def candidate_ranks_in(features: Tensor, index: GalleryIndex, candidates: Tensor) -> list[list[int]]:
    """0-based rank of ``candidates[i]`` (``[N, k]`` gallery rows) in the ranking of the whole
    gallery by query feature ``features[i]``, one ``[chunk, G]`` distance block at a time."""
    ranks = []
    for s in range(0, len(features), RANK_CHUNK):
        distmat = gallery_distances(features[s : s + RANK_CHUNK], index)
        ranks.append(candidate_ranks(distmat, candidates[s : s + RANK_CHUNK].to(distmat.device)).cpu())
    return torch.cat(ranks).tolist() if ranks else []


def feature_cache_key(ref: VictimRef, split: str, amp: bool) -> str:
    """Cache key of a victim's clean features of one split (the weights fix the model and dataset)."""
    size = list(ref.input_size)
    return stable_hash(ref.weights_id, ref.dataset_fingerprint, split, size, *(["amp"] if amp else []))


def compute_clean(
    ref: VictimRef,
    query: ImageSplit,
    gallery: ImageSplit,
    ctx: TaskContext,
    *,
    batch_size: int,
    protocol: str,
    seed: int,
) -> CleanVictim:
    """Extract (or read from the cache) ``ref``'s clean query and gallery features and score them."""
    model = ctx.victim(ref)
    amp = ctx.env.amp and ctx.device.type == "cuda"
    feats = {}
    for split_name, split in (("query", query), ("gallery", gallery)):
        feats[split_name] = extract_cached(
            model,
            split,
            cache_file=ctx.cache / "features" / f"{feature_cache_key(ref, split_name, amp)}.pt",
            device=ctx.device,
            batch_size=batch_size,
            progress=ctx.progress,
            desc=f"{ref.name} {split_name} features",
            autocast=ctx.autocast,
        )
    index = prepare_gallery(feats["gallery"], gallery.pids, gallery.camids, model.distance)
    scores = score(feats["query"], index, query, protocol, seed)
    return CleanVictim(ref, index, feats["query"], scores)
