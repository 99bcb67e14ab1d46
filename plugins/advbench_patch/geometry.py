"""Patch rectangles on the torso of a person crop (advPattern, Wang et al., ICCV 2019).

advPattern prints its pattern on the adversary's clothes, on the chest/torso. On an aligned re-ID
crop (a standing pedestrian, head at the top) the torso occupies roughly rows 25%-60% of the height
and the central 70% of the width: :data:`TORSO` (fractions of H and W). On a 2:1 crop that box is
about square (0.35 H x 0.7 W = 0.7 W x 0.7 W), so the default patch is square (``aspect`` =
width / height = 1).

A patch of ``area`` covers at most ``floor(area * H * W)`` pixels, the rule the runner checks: the
rectangle's height and width are rounded so that ``h * w`` never exceeds that count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from advbench.api import AdvbenchError

TORSO = (0.25, 0.60, 0.15, 0.85)
"""The torso box (top, bottom, left, right) as fractions of the crop's height and width."""

LOCATIONS = ("fixed", "sampled")


@dataclass(frozen=True)
class Rect:
    """A patch rectangle: rows ``top:top + h``, columns ``left:left + w``."""

    top: int
    left: int
    h: int
    w: int

    @property
    def pixels(self) -> int:
        return self.h * self.w


def check_area(area: float) -> float:
    """``area`` as a float in (0, 1), or a one-line AdvbenchError."""
    try:
        value = float(area)
    except (TypeError, ValueError):
        raise AdvbenchError(f"patch area must be a fraction of the image in (0, 1), got {area!r}") from None
    if not 0.0 < value < 1.0 or not math.isfinite(value):
        raise AdvbenchError(f"patch area must be a fraction of the image in (0, 1), got {area!r}")
    return value


def max_pixels(area: float, size: tuple[int, int]) -> int:
    """``floor(area * H * W)``: the most pixel locations a patch of ``area`` may change."""
    h, w = size
    return math.floor(check_area(area) * h * w)


def patch_size(area: float, size: tuple[int, int], aspect: float = 1.0) -> tuple[int, int]:
    """(h, w) of a patch of ``area`` with width/height ``aspect``, ``h * w <= floor(area * H * W)``.

    The height is the integer nearest ``sqrt(n / aspect)`` (or a neighbour, whichever covers more
    pixels) and the width ``n // h``; both are capped by the image.
    """
    H, W = int(size[0]), int(size[1])
    if not (isinstance(aspect, (int, float)) and math.isfinite(aspect) and aspect > 0):
        raise AdvbenchError(f"patch aspect (width / height) must be a positive number, got {aspect!r}")
    n = max_pixels(area, (H, W))
    if n < 1:
        raise AdvbenchError(f"patch area {area:g} of a {H}x{W} image covers no pixel (floor(area*H*W) = 0)")
    ideal = max(1, round(math.sqrt(n / aspect)))
    best: tuple[int, int] | None = None
    for h in (ideal - 1, ideal, ideal + 1):
        h = min(max(h, 1), H)
        w = min(n // h, W)
        if w >= 1 and (best is None or h * w > best[0] * best[1]):
            best = (h, w)
    assert best is not None and best[0] * best[1] <= n
    return best


def _span(lo: float, hi: float, length: int, extent: int) -> tuple[int, int]:
    """(first, last) start offsets keeping ``length`` inside ``[lo, hi)`` (pixels) and the image."""
    first, last = math.ceil(lo), math.floor(hi) - length
    if last < first:  # larger than the band: centre it on the band
        first = last = round((lo + hi - length) / 2)
    first = min(max(first, 0), extent - length)
    last = min(max(last, 0), extent - length)
    return first, max(first, last)


def torso_spans(h: int, w: int, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (first, last) top rows and left columns that keep an ``h x w`` patch in the torso box."""
    H, W = size
    top, bottom, left, right = TORSO
    return _span(top * H, bottom * H, h, H), _span(left * W, right * W, w, W)


def rects(
    n: int, area: float, size: tuple[int, int], *, aspect: float = 1.0, location: str = "fixed"
) -> list[Rect]:
    """One patch rectangle per image: centred in the torso box (``fixed``) or drawn uniformly inside
    it (``sampled``, from torch's global generator, so one seed gives one layout)."""
    if location not in LOCATIONS:
        raise AdvbenchError(f"patch location must be one of {', '.join(LOCATIONS)}, got {location!r}")
    h, w = patch_size(area, size, aspect)
    (t0, t1), (l0, l1) = torso_spans(h, w, size)
    if location == "fixed":
        return [Rect((t0 + t1) // 2, (l0 + l1) // 2, h, w)] * n
    tops = torch.randint(t0, t1 + 1, (n,)).tolist()
    lefts = torch.randint(l0, l1 + 1, (n,)).tolist()
    return [Rect(int(t), int(left), h, w) for t, left in zip(tops, lefts, strict=True)]


def masks(rects_: list[Rect], size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """``[N, 1, H, W]`` float masks, 1 inside each image's rectangle."""
    out = torch.zeros(len(rects_), 1, *size, device=device)
    for i, r in enumerate(rects_):
        out[i, :, r.top : r.top + r.h, r.left : r.left + r.w] = 1.0
    return out
