"""Distances from features for the re-ID evaluators: a gallery prepared once, ranked many times.

Distances are float32 (as in torchreid), computed against a :class:`GalleryIndex` that holds the
checked gallery features and their norms, so every query set (clean, each attack) reuses them;
:func:`gallery_distances` builds the whole matrix chunk by chunk for the protocols that need it.
:func:`distance_matrix` is a float64 reference for small problems. Euclidean distances are
**squared**, as torchreid's ``euclidean_squared_distance``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from advbench.api import AdvbenchError, Distance
from advbench.metrics.reid_inputs import (
    CHUNK_ELEMENTS,
    ArrayLike,
    _check_chunk,
    _check_distance,
    _features,
    _labels,
    _tensor,
)
from advbench.metrics.reid_ranker import _PidGroups

__all__ = ["GalleryIndex", "distance_matrix", "gallery_distances", "prepare_gallery"]


def _sq_norms(x: Tensor) -> Tensor:
    """Squared L2 norm of every row, in blocks (``(x * x).sum(1)`` would copy all of ``x``)."""
    rows = max(1, CHUNK_ELEMENTS // max(1, x.shape[1]))
    return torch.cat([(b * b).sum(1) for b in x.split(rows)])


@dataclass(frozen=True, eq=False, repr=False)
class GalleryIndex:
    """A gallery prepared once (:func:`prepare_gallery`) and ranked against many query sets.

    ``features`` are float32 ``[G, D]``, contiguous, on the device the evaluation runs on; they
    are the caller's tensor itself when it already was one (no copy: do not modify it in place
    afterwards). Instead of a normalised copy, cosine keeps ``inv_norms`` (1 / ||g||, applied to
    the similarities), euclidean keeps ``sq_norms`` (||g||^2). ``pids`` and ``camids`` are int64.
    Picklable; construct it with :func:`prepare_gallery`, which checks the features.
    """

    features: Tensor
    pids: Tensor
    camids: Tensor
    distance: Distance
    inv_norms: Tensor | None = None
    sq_norms: Tensor | None = None
    _groups: _PidGroups = field(init=False)

    def __post_init__(self) -> None:
        _check_distance(self.distance)
        f = self.features
        if f.ndim != 2 or f.dtype != torch.float32 or not f.is_contiguous():
            raise AdvbenchError(
                f"GalleryIndex.features must be contiguous float32 [G, D], got {f.dtype} {tuple(f.shape)}"
            )
        extra = {"cosine": self.inv_norms, "euclidean": self.sq_norms}[self.distance]
        other = self.sq_norms if self.distance == "cosine" else self.inv_norms
        for name, t, dtype in (
            ("pids", self.pids, torch.int64),
            ("camids", self.camids, torch.int64),
            ("the norm term", extra, torch.float32),
        ):
            if t is None or t.shape != (f.shape[0],) or t.dtype != dtype or t.device != f.device:
                got = None if t is None else f"{t.dtype} {tuple(t.shape)} on {t.device}"
                raise AdvbenchError(
                    f"GalleryIndex {name} must be {dtype} [{f.shape[0]}] on {f.device} for "
                    f"{self.distance} distance, got {got}"
                )
        if other is not None:
            raise AdvbenchError(f"GalleryIndex for {self.distance} distance holds the other distance's norms")
        object.__setattr__(self, "_groups", _PidGroups.of(self.pids))

    def __len__(self) -> int:
        return self.features.shape[0]

    def __repr__(self) -> str:
        g, d = self.features.shape
        return f"GalleryIndex({g} x {d}, {self.distance}, {self.features.device})"

    @property
    def device(self) -> torch.device:
        return self.features.device

    def _distances(self, q: Tensor, out: Tensor | None = None) -> Tensor:
        """Float32 distances ``[len(q), G]`` of checked query features (a chunk), into ``out``.

        Cosine: the normalised queries times the raw gallery (one matmul), then ``1 - s / ||g||``
        (two passes). Euclidean: ``|q|^2 + |g|^2`` (one pass), ``- 2 q.g`` accumulated by the
        matmul, clamped at 0.
        """
        q = q.to(device=self.device, dtype=torch.float32)
        n, num_g = q.shape[0], len(self)
        out = torch.empty(n, num_g, dtype=torch.float32, device=self.device) if out is None else out
        if self.distance == "cosine":
            assert self.inv_norms is not None
            qn = q / torch.linalg.vector_norm(q, dim=1, keepdim=True).clamp_(min=1e-12)
            torch.mm(qn, self.features.T, out=out)
            return out.mul_(self.inv_norms.neg()).add_(1.0)
        assert self.sq_norms is not None
        torch.add(_sq_norms(q)[:, None], self.sq_norms[None, :], out=out)
        return out.addmm_(q, self.features.T, alpha=-2.0).clamp_(min=0.0)


def prepare_gallery(
    g_feats: ArrayLike,
    g_pids: ArrayLike,
    g_camids: ArrayLike,
    distance: Distance = "cosine",
    device: Any = None,
) -> GalleryIndex:
    """Check and prepare a gallery once for :func:`evaluate_queries` (float32, norms precomputed).

    ``device`` defaults to the features' own. Float32 contiguous features on that device are
    used as they are; anything else is converted once (the only copy). Raises
    :class:`AdvbenchError` on NaN/Inf feature rows, label shapes or an unknown distance.
    """
    _check_distance(distance)
    g = _features(g_feats, "gallery features", device).contiguous()
    pids = _labels(g_pids, "g_pids", g.shape[0], g.device)
    camids = _labels(g_camids, "g_camids", g.shape[0], g.device)
    if distance == "cosine":
        inv = torch.linalg.vector_norm(g, dim=1).clamp_(min=1e-12).reciprocal_()
        return GalleryIndex(g, pids, camids, distance, inv_norms=inv)
    return GalleryIndex(g, pids, camids, distance, sq_norms=_sq_norms(g))


def _queries(
    q_feats: ArrayLike, gallery: GalleryIndex, q_pids: ArrayLike | None, q_camids: ArrayLike | None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    if not isinstance(gallery, GalleryIndex):
        raise AdvbenchError(
            f"gallery must be a GalleryIndex (see prepare_gallery), got {type(gallery).__name__}"
        )
    q = _tensor(q_feats)
    # cast chunk by chunk, so checked in its own dtype here (a cast overflow shows as Inf distances)
    qf = _features(q, "query features", q.device, q.dtype)
    if qf.shape[1] != gallery.features.shape[1]:
        raise AdvbenchError(
            f"feature dimensions differ: query {qf.shape[1]} vs gallery {gallery.features.shape[1]}"
        )
    n, dev = qf.shape[0], gallery.device
    qp = None if q_pids is None else _labels(q_pids, "q_pids", n, dev)
    qc = None if q_camids is None else _labels(q_camids, "q_camids", n, dev)
    return qf, qp, qc


def gallery_distances(q_feats: ArrayLike, gallery: GalleryIndex, chunk_size: int | None = None) -> Tensor:
    """The float32 distance matrix ``[Q, G]`` that :func:`evaluate_queries` ranks, built whole.

    Cosine: 1 - cos(q, g), in [0, 2]. Euclidean: the **squared** distance clamped at 0, as
    torchreid's ``euclidean_squared_distance``. For protocols that need the matrix
    (:func:`evaluate_cuhk03_classic`): computed in the same chunks as :func:`evaluate_queries`,
    so :func:`evaluate` of it gives the same scores.
    """
    qf, _, _ = _queries(q_feats, gallery, None, None)
    out = torch.empty(qf.shape[0], len(gallery), dtype=torch.float32, device=gallery.device)
    chunk = _check_chunk(chunk_size, len(gallery))
    for s in range(0, qf.shape[0], chunk):
        gallery._distances(qf[s : s + chunk], out=out[s : s + chunk])
    return out


def distance_matrix(a: ArrayLike, b: ArrayLike, distance: Distance = "cosine") -> Tensor:
    """Float64 distances ``[len(a), len(b)]`` between feature rows, on the device of ``a``.

    ``cosine``: 1 - cos(a, b) on L2-normalised rows, in [0, 2]. ``euclidean``: **squared**
    Euclidean distance (as torchreid's ``euclidean_squared_distance``); the ranking is the same as
    with the plain distance. A float64 reference for small problems: the evaluation path uses
    float32 (:func:`gallery_distances` gives its matrix).
    """
    _check_distance(distance)
    qa = _features(a, "a", dtype=torch.float64)
    gb = _features(b, "b", qa.device, torch.float64)
    if qa.shape[1] != gb.shape[1]:
        raise AdvbenchError(f"feature dimensions differ: {qa.shape[1]} vs {gb.shape[1]}")
    if distance == "cosine":
        an = torch.nn.functional.normalize(qa, dim=1)
        bn = torch.nn.functional.normalize(gb, dim=1)
        return (an @ bn.T).neg_().add_(1.0)
    d = (qa @ gb.T).mul_(-2.0).add_((qa * qa).sum(1, keepdim=True)).add_((gb * gb).sum(1)[None, :])
    return d.clamp_(min=0.0)
