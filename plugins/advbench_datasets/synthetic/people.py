"""Identities and cameras: the attributes drawn for each (clothing from shared palettes, body shape; background, lighting, viewpoint)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advbench_datasets.synthetic.config import _CAMERA, _IDENTITY, _rng

# Shared palettes (RGB in [0, 1]): small on purpose, so identities collide on single colours.
_TOPS = (
    (0.80, 0.10, 0.10),
    (0.10, 0.25, 0.70),
    (0.95, 0.95, 0.92),
    (0.08, 0.08, 0.08),
    (0.20, 0.55, 0.20),
    (0.95, 0.80, 0.15),
    (0.55, 0.55, 0.58),
    (0.50, 0.15, 0.55),
    (0.95, 0.50, 0.10),
    (0.45, 0.75, 0.90),
    (0.90, 0.55, 0.70),
    (0.40, 0.25, 0.12),
)


_BOTTOMS = (
    (0.10, 0.12, 0.30),
    (0.08, 0.08, 0.08),
    (0.45, 0.45, 0.48),
    (0.70, 0.62, 0.45),
    (0.30, 0.45, 0.70),
    (0.35, 0.22, 0.12),
    (0.88, 0.88, 0.85),
)


_SHOES = ((0.05, 0.05, 0.05), (0.92, 0.92, 0.92), (0.40, 0.25, 0.15), (0.50, 0.10, 0.10))


_HAIR = ((0.05, 0.04, 0.03), (0.35, 0.20, 0.10), (0.80, 0.65, 0.35), (0.50, 0.50, 0.50))


_SKIN = ((0.96, 0.80, 0.68), (0.85, 0.65, 0.50), (0.62, 0.43, 0.30), (0.38, 0.25, 0.17))


_SLEEVES = (0.12, 0.45, 1.0)  # fraction of the arm covered: sleeveless, short, long


_PATTERNS = ("none", "hstripes", "vstripes", "logo")


_BAGS = ("none", "backpack", "handbag")


# ------------------------------------------------------------------------------ attributes
@dataclass(frozen=True)
class Identity:
    """What stays fixed for one person across images: clothing and body shape."""

    top: np.ndarray
    top2: np.ndarray
    bottom: np.ndarray
    shoes: np.ndarray
    hair: np.ndarray
    skin: np.ndarray
    bag_colour: np.ndarray
    pattern: str
    period: float  # stripe period, fraction of the person's height
    sleeve: float
    shorts: bool
    long_hair: bool
    bag: str
    bag_side: int  # -1 left, +1 right
    body_width: float
    body_height: float
    head_size: float


@dataclass(frozen=True)
class Camera:
    """What stays fixed for one camera: background, lighting, viewpoint and optics."""

    bg_top: np.ndarray
    bg_bottom: np.ndarray
    floor: np.ndarray
    floor_start: float  # fraction of the image height
    tex_amp: float
    tex_freq: tuple[float, float]  # cycles per image (vertical, horizontal)
    gain: float
    cast: np.ndarray
    gamma: float
    scale: float
    offset: float  # pixels at width 64
    mirror: bool
    blur: float  # sigma in pixels at 128x64
    noise: float


def _colour(
    rng: np.random.Generator, palette: tuple[tuple[float, float, float], ...], jitter: float = 0.04
) -> np.ndarray:
    base = np.asarray(palette[int(rng.integers(len(palette)))], dtype=np.float32)
    return np.clip(base + rng.uniform(-jitter, jitter, 3).astype(np.float32), 0.0, 1.0)


def make_identity(seed: int, role: int, index: int) -> Identity:
    """Draw the fixed attributes of the ``index``-th identity of ``role`` from its own stream."""
    rng = _rng(seed, _IDENTITY, role, index)
    top = _colour(rng, _TOPS)
    top2 = _colour(rng, _TOPS)
    while float(np.abs(top2 - top).sum()) < 0.4:  # the pattern must be visible
        top2 = _colour(rng, _TOPS)
    return Identity(
        top=top,
        top2=top2,
        bottom=_colour(rng, _BOTTOMS),
        shoes=_colour(rng, _SHOES),
        hair=_colour(rng, _HAIR),
        skin=_colour(rng, _SKIN, 0.03),
        bag_colour=_colour(rng, _TOPS + _BOTTOMS),
        pattern=_PATTERNS[int(rng.choice(4, p=[0.4, 0.2, 0.2, 0.2]))],
        period=float(rng.uniform(0.04, 0.09)),
        sleeve=_SLEEVES[int(rng.integers(3))],
        shorts=bool(rng.random() < 0.3),
        long_hair=bool(rng.random() < 0.35),
        bag=_BAGS[int(rng.choice(3, p=[0.5, 0.25, 0.25]))],
        bag_side=int(rng.choice([-1, 1])),
        body_width=float(rng.uniform(0.85, 1.2)),
        body_height=float(rng.uniform(0.92, 1.04)),
        head_size=float(rng.uniform(0.9, 1.15)),
    )


def make_camera(seed: int, cam: int) -> Camera:
    """Draw the fixed properties of camera ``cam`` from its own stream."""
    rng = _rng(seed, _CAMERA, cam)
    return Camera(
        bg_top=rng.uniform(0.15, 0.9, 3).astype(np.float32),
        bg_bottom=rng.uniform(0.15, 0.9, 3).astype(np.float32),
        floor=rng.uniform(0.1, 0.8, 3).astype(np.float32),
        floor_start=float(rng.uniform(0.72, 0.88)),
        tex_amp=float(rng.uniform(0.03, 0.1)),
        tex_freq=(float(rng.uniform(1.0, 8.0)), float(rng.uniform(0.5, 5.0))),
        gain=float(rng.uniform(0.65, 1.3)),
        cast=rng.uniform(0.82, 1.18, 3).astype(np.float32),
        gamma=float(rng.uniform(0.8, 1.25)),
        scale=float(rng.uniform(0.85, 1.0)),
        offset=float(rng.uniform(-5.0, 5.0)),
        mirror=bool(rng.random() < 0.5),
        blur=float(rng.uniform(0.0, 1.3)),
        noise=float(rng.uniform(0.01, 0.05)),
    )
