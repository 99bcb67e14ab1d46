"""The embedded ``synthetic`` re-ID dataset: procedural people rendered with numpy, written as PNG.

Why: the benchmark must run end to end with no download. Identities are defined by clothing
(colours from small *shared* palettes, so identities collide on colour, plus patterns, sleeves,
shorts, hair, bags) and body shape; cameras by background, lighting, viewpoint, blur and noise;
every image adds pose jitter and, sometimes, an occluder. The ranges follow the "v2" preset of
the feasibility prototype. Raw-pixel matching is near chance (about 2 mAP on the default split),
while resnet10t trained for 400 steps reached 83 mAP.

Seeding: every random quantity comes from ``np.random.default_rng(SeedSequence([seed, *key]))``
with a key naming what it draws: ``(_CAMERA, c)`` for camera ``c``, ``(_IDENTITY, role, i)`` for
the ``i``-th identity of a role (train / test / distractor), ``(_LAYOUT, _TEST, i)`` for the query
cameras of a test identity, ``(_IMAGE, role, i, kind, k)`` for the camera of the ``k``-th image of
a kind (train / query / gallery / distractor) and the same key plus ``1`` for its rendering, and
``(_NOISE,)`` for the shared noise bank. Streams are independent, so changing one count (e.g.
``gallery_per_id``, or ``train_ids``) adds or removes images without changing any other image.

Files: ``<cache_dir>/synthetic/<fingerprint>/{train,query,gallery}/`` with Market-1501-style names
``{pid:04d}_c{cam+1}s1_{idx:06d}_00.png`` and a ``manifest.json`` written last. The folder is built
under a temporary sibling name and renamed when complete, so a crash never leaves half a dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import struct
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from advbench.api import AdvbenchError, DatasetSpec, ReidDataset, Sample
from advbench.io import atomic_directory

GENERATOR_VERSION = "1.0"
"""Bump whenever a change alters any pixel: the cache key and fingerprint include it."""

DEFAULTS: Mapping[str, int] = MappingProxyType(
    {
        "seed": 0,
        "height": 128,
        "width": 64,
        "cameras": 6,
        "train_ids": 150,
        "train_images_per_id": 12,
        "test_ids": 100,
        "queries_per_id": 2,
        "gallery_per_id": 10,
        "distractor_ids": 100,
        "distractor_images": 5,
    }
)

_MINIMUM: Mapping[str, int] = MappingProxyType(
    {
        "seed": 0,
        "height": 16,
        "width": 8,
        "cameras": 2,
        "train_ids": 1,
        "train_images_per_id": 1,
        "test_ids": 1,
        "queries_per_id": 1,
        "gallery_per_id": 1,
        "distractor_ids": 0,
        "distractor_images": 0,
    }
)

# Stream tags and roles for the seed keys (see the module docstring); never renumber them.
_CAMERA, _IDENTITY, _LAYOUT, _IMAGE, _NOISE = 1, 2, 3, 4, 5
_TRAIN, _TEST, _DISTRACTOR = 0, 1, 2
_KIND_TRAIN, _KIND_QUERY, _KIND_GALLERY, _KIND_DISTRACTOR = 0, 1, 2, 3

_NAME_RE = re.compile(r"^(\d+)_c(\d)s1_(\d{6})_00\.png$")
_SPLITS = ("train", "query", "gallery")
_MANIFEST = "manifest.json"
_STALE_TMP_S = 3600.0

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


# ------------------------------------------------------------------------------------ params
def _check_params(given: Mapping[str, Any]) -> dict[str, int]:
    """Merge ``given`` over :data:`DEFAULTS` and validate; AdvbenchError on one line otherwise."""
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise AdvbenchError(
            f"synthetic: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}"
        )
    params: dict[str, int] = {}
    for name, default in DEFAULTS.items():
        value = given.get(name, default)
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            params[name] = int(value)
        except (TypeError, ValueError):
            raise AdvbenchError(f"synthetic: {name} must be an integer, got {value!r}") from None
        if params[name] < _MINIMUM[name]:
            raise AdvbenchError(f"synthetic: {name} must be >= {_MINIMUM[name]}, got {params[name]}")
    if params["cameras"] > 9:
        raise AdvbenchError(
            f"synthetic: cameras must be <= 9 (Market-style c<digit>), got {params['cameras']}"
        )
    if params["queries_per_id"] >= params["cameras"]:
        raise AdvbenchError(
            "synthetic: queries_per_id must be < cameras (queries come from distinct cameras and the "
            f"gallery needs a non-query camera), got {params['queries_per_id']} >= {params['cameras']}"
        )
    if params["distractor_ids"] > 0 and params["distractor_images"] < 1:
        raise AdvbenchError("synthetic: distractor_images must be >= 1 when distractor_ids > 0")
    return params


def fingerprint(params: Mapping[str, Any]) -> str:
    """Stable hash of the generator version and the (validated) params: the cache key."""
    full = _check_params(params)
    blob = json.dumps(
        {"generator": "synthetic", "version": GENERATOR_VERSION, "params": full}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream for one named thing (see the module docstring)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


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


# -------------------------------------------------------------------------------- rendering
# Shapes are signed distance fields in pixels (negative inside); coverage = clip(0.5 - d, 0, 1)
# gives one pixel of anti-aliasing at any resolution. Each shape is evaluated only inside its
# bounding box, which keeps an image at about 1 ms.
def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return (np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) - 1.0) * min(ry, rx)


def _box(
    yy: np.ndarray, xx: np.ndarray, y0: float, y1: float, hw0: float, hw1: float, cx: float, r: float
) -> np.ndarray:
    """Rounded trapezoid from ``y0`` to ``y1``, half-width ``hw0`` at the top, ``hw1`` at the bottom."""
    cy, hh = (y0 + y1) / 2, (y1 - y0) / 2
    t = np.clip((yy - y0) / max(y1 - y0, 1e-6), 0.0, 1.0)
    qx = np.abs(xx - cx) - (hw0 + (hw1 - hw0) * t) + r
    qy = np.abs(yy - cy) - hh + r
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0) - r


def _capsule(
    yy: np.ndarray, xx: np.ndarray, a: tuple[float, float], b: tuple[float, float], r0: float, r1: float
) -> np.ndarray:
    """Segment from ``a`` to ``b`` (y, x), radius tapering from ``r0`` to ``r1``."""
    by, bx = b[0] - a[0], b[1] - a[1]
    py, px = yy - a[0], xx - a[1]
    h = np.clip((py * by + px * bx) / max(by * by + bx * bx, 1e-6), 0.0, 1.0)
    return np.sqrt((py - h * by) ** 2 + (px - h * bx) ** 2) - (r0 + (r1 - r0) * h)


class _Canvas:
    """An RGB float image that shapes are painted onto, back to front."""

    def __init__(self, image: np.ndarray, fabric: np.ndarray) -> None:
        self.image = image
        self.fabric = fabric  # [H, W, 1] multiplicative cloth texture
        h, w = image.shape[:2]
        self.yy = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
        self.xx = (np.arange(w, dtype=np.float32) + 0.5)[None, :]

    def paint(
        self,
        bbox: tuple[float, float, float, float],
        sdf: Callable[[np.ndarray, np.ndarray], np.ndarray],
        colour: np.ndarray,
        cloth: bool = True,
    ) -> None:
        """Composite ``colour`` where ``sdf`` < 0 inside ``bbox`` = (y0, y1, x0, x1) in pixels."""
        h, w = self.image.shape[:2]
        y0, y1 = max(int(bbox[0]) - 1, 0), min(math.ceil(bbox[1]) + 1, h)
        x0, x1 = max(int(bbox[2]) - 1, 0), min(math.ceil(bbox[3]) + 1, w)
        if y0 >= y1 or x0 >= x1:
            return
        alpha = np.subtract(0.5, sdf(self.yy[y0:y1], self.xx[:, x0:x1]), dtype=np.float32)
        np.minimum(np.maximum(alpha, 0.0, out=alpha), 1.0, out=alpha)
        alpha = alpha[..., None]
        paint = colour[y0:y1, x0:x1] if colour.ndim == 3 else colour
        if cloth:
            paint = paint * self.fabric[y0:y1, x0:x1]
        region = self.image[y0:y1, x0:x1]
        region += alpha * (paint - region)

    def ellipse(
        self, cy: float, cx: float, ry: float, rx: float, colour: np.ndarray, cloth: bool = True
    ) -> None:
        self.paint(
            (cy - ry, cy + ry, cx - rx, cx + rx), lambda y, x: _ellipse(y, x, cy, cx, ry, rx), colour, cloth
        )

    def box(
        self,
        y0: float,
        y1: float,
        hw0: float,
        hw1: float,
        cx: float,
        r: float,
        colour: np.ndarray,
        cloth: bool = True,
    ) -> None:
        hw = max(hw0, hw1)
        self.paint(
            (y0, y1, cx - hw, cx + hw), lambda y, x: _box(y, x, y0, y1, hw0, hw1, cx, r), colour, cloth
        )

    def capsule(
        self,
        a: tuple[float, float],
        b: tuple[float, float],
        r0: float,
        r1: float,
        colour: np.ndarray,
        cloth: bool = True,
    ) -> None:
        r = max(r0, r1)
        bbox = (min(a[0], b[0]) - r, max(a[0], b[0]) + r, min(a[1], b[1]) - r, max(a[1], b[1]) + r)
        self.paint(bbox, lambda y, x: _capsule(y, x, a, b, r0, r1), colour, cloth)


def _backdrop(cam: Camera, h: int, w: int, pad_y: int, pad_x: int) -> np.ndarray:
    """Camera background with a margin for crop jitter: gradient, sinusoid texture, floor band."""
    hh, ww = h + 2 * pad_y, w + 2 * pad_x
    y = ((np.arange(hh, dtype=np.float32) - pad_y) / (h - 1))[:, None, None]
    x = ((np.arange(ww, dtype=np.float32) - pad_x) / (w - 1))[None, :, None]
    bg = cam.bg_top + (cam.bg_bottom - cam.bg_top) * np.clip(y, 0.0, 1.0)
    bg = bg * (1.0 + cam.tex_amp * np.sin(2 * np.pi * (cam.tex_freq[0] * y + cam.tex_freq[1] * x)))
    floor = (y >= cam.floor_start).astype(np.float32)
    floor_tex = 1.0 + 0.5 * cam.tex_amp * np.sin(2 * np.pi * 6.0 * x * (y + 0.3))
    bg = bg * (1 - floor) + cam.floor * floor_tex * floor
    return np.array(np.broadcast_to(bg, (hh, ww, 3)), dtype=np.float32)


class Studio:
    """Everything shared by the images of one dataset: cameras, their backdrops, a noise bank.

    Built once per generation so that each image only draws its person. Per-image pixel and
    fabric noise are random windows of one bank of gaussian noise (drawn from its own stream),
    which is several times cheaper than fresh noise and indistinguishable at this scale.
    """

    def __init__(self, seed: int, cameras: int, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.pad_y, self.pad_x = max(1, round(4 * h / 128)), max(1, round(4 * w / 64))
        self.cameras = [make_camera(seed, c) for c in range(cameras)]
        self.backdrops = [_backdrop(cam, h, w, self.pad_y, self.pad_x) for cam in self.cameras]
        self.noise = _rng(seed, _NOISE).standard_normal((3 * h, 3 * w, 3), dtype=np.float32)

    def _noise(self, rng: np.random.Generator, channels: int) -> np.ndarray:
        y, x = int(rng.integers(2 * self.h)), int(rng.integers(2 * self.w))
        c = int(rng.integers(4 - channels))
        return self.noise[y : y + self.h, x : x + self.w, c : c + channels]

    def render(self, ident: Identity, camid: int, rng: np.random.Generator) -> np.ndarray:
        """One ``[h, w, 3]`` uint8 image of ``ident`` seen by camera ``camid``.

        ``rng`` is the image's own stream: pose, crop jitter, lighting, occluder and noise windows.
        """
        h, w, cam = self.h, self.w, self.cameras[camid]
        dy, dx = int(rng.integers(2 * self.pad_y + 1)), int(rng.integers(2 * self.pad_x + 1))
        background = self.backdrops[camid][dy : dy + h, dx : dx + w].copy()
        fabric = 1.0 + np.float32(rng.uniform(0.02, 0.05)) * self._noise(rng, 1)
        cv = _Canvas(background, fabric)
        _draw_person(cv, ident, cam, rng)
        img = cv.image * np.float32(cam.gain * rng.uniform(0.85, 1.15)) * cam.cast
        img = np.clip(img, 0.0, 1.0) ** np.float32(cam.gamma)
        if cam.blur > 0.05:
            img = gaussian_filter(img, sigma=(cam.blur * h / 128, cam.blur * w / 64, 0.0), mode="nearest")
        img += np.float32(cam.noise) * self._noise(rng, 3)
        if cam.mirror:
            img = img[:, ::-1]
        return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def _draw_person(cv: _Canvas, ident: Identity, cam: Camera, rng: np.random.Generator) -> None:
    """Paint one person (and maybe an occluder) onto ``cv``, back to front."""
    h, w = cv.image.shape[:2]
    sy, sx = h / 128.0, w / 64.0
    yy, xx = cv.yy, cv.xx

    # Geometry: u is the person's height in pixels; everything is a fraction of it.
    u = min(0.9 * h * cam.scale * ident.body_height * rng.uniform(0.95, 1.05), 0.97 * h)
    foot = min(h - 0.5 * sy, 0.97 * h + rng.uniform(-2, 2) * sy)
    top = foot - u
    cx = w / 2 + (cam.offset + rng.uniform(-2, 2)) * sx
    stride = rng.uniform(-0.09, 0.09) * u
    swing = rng.uniform(-1.0, 1.0)
    bw = ident.body_width
    r_head = 0.065 * u * ident.head_size
    head_y = top + r_head
    sh_y, waist_y, hip_y = top + 0.17 * u, top + 0.52 * u, top + 0.56 * u
    hw_sh, hw_waist = 0.12 * u * bw, 0.095 * u * bw
    knee_y, ankle_y = top + 0.76 * u, top + 0.955 * u
    side = ident.bag_side

    top_colour: np.ndarray = ident.top
    if ident.pattern in ("hstripes", "vstripes"):
        phase = (yy - top) if ident.pattern == "hstripes" else (xx - cx)
        mask = (np.sin(2 * np.pi * phase / (ident.period * u)) > 0)[..., None]
        top_colour = np.where(mask, ident.top2, ident.top)
        top_colour = np.broadcast_to(top_colour, (h, w, 3))

    if ident.bag == "backpack":  # behind the body: shows as a bump on one side
        cv.box(
            sh_y + 0.02 * u,
            top + 0.46 * u,
            0.075 * u,
            0.08 * u,
            cx + side * hw_sh * 0.9,
            0.03 * u,
            ident.bag_colour,
        )
    if ident.long_hair:
        cv.box(head_y, top + 0.29 * u, r_head * 1.05, r_head * 1.15, cx, 0.02 * u, ident.hair)

    # Legs, then shoes, then the hips.
    leg_r0, leg_r1 = 0.052 * u * bw, 0.038 * u * bw
    for s in (-1, 1):
        hip = (hip_y, cx + s * 0.5 * hw_waist)
        ankle = (ankle_y, hip[1] + s * 0.15 * stride + 0.5 * s * stride)
        if ident.shorts:
            cv.capsule(hip, ankle, leg_r0, leg_r1, ident.skin, cloth=False)
            t = (knee_y - 0.04 * u - hip[0]) / (ankle[0] - hip[0])
            knee = (hip[0] + t * (ankle[0] - hip[0]), hip[1] + t * (ankle[1] - hip[1]))
            cv.capsule(hip, knee, leg_r0 * 1.12, leg_r0 * 1.05, ident.bottom)
        else:
            cv.capsule(hip, ankle, leg_r0, leg_r1, ident.bottom)
        cv.ellipse(top + 0.975 * u, ankle[1] + 0.01 * u * s, 0.028 * u, 0.05 * u, ident.shoes)
    cv.box(waist_y - 0.03 * u, hip_y + 0.05 * u, hw_waist, hw_waist * 1.02, cx, 0.02 * u, ident.bottom)

    # Neck, torso, arms (with sleeves and a handbag on the bag side).
    cv.capsule((head_y, cx), (sh_y, cx), 0.032 * u, 0.035 * u, ident.skin, cloth=False)
    cv.box(sh_y - 0.02 * u, waist_y, hw_sh, hw_waist, cx, 0.035 * u, top_colour)
    if ident.pattern == "logo":
        cv.ellipse(top + 0.29 * u, cx, 0.045 * u, 0.045 * u, ident.top2)
    arm_r0, arm_r1 = 0.036 * u * bw, 0.028 * u * bw
    for s in (-1, 1):
        shoulder = (sh_y + 0.02 * u, cx + s * (hw_sh - 0.025 * u))
        hand = (top + 0.5 * u - abs(swing) * 0.03 * u, cx + s * (hw_sh + 0.035 * u) + s * swing * 0.04 * u)
        cv.capsule(shoulder, hand, arm_r0, arm_r1, ident.skin, cloth=False)
        f = ident.sleeve
        elbow = (shoulder[0] + f * (hand[0] - shoulder[0]), shoulder[1] + f * (hand[1] - shoulder[1]))
        cv.capsule(shoulder, elbow, arm_r0 * 1.15, arm_r0 * 1.05 + (arm_r1 - arm_r0) * f, top_colour)
        if ident.bag == "handbag" and s == side:
            bag_y, bag_x = hand[0] + 0.02 * u, hand[1] + s * 0.03 * u
            cv.capsule(shoulder, (bag_y, bag_x), 0.008 * u, 0.008 * u, ident.bag_colour)
            cv.box(bag_y, bag_y + 0.1 * u, 0.055 * u, 0.06 * u, bag_x, 0.015 * u, ident.bag_colour)

    # Head, hair cap (upper part of an ellipse), backpack straps.
    cv.ellipse(head_y, cx, r_head * 1.08, r_head * 0.92, ident.skin, cloth=False)
    hair_y, line = head_y - 0.12 * r_head, head_y - 0.15 * r_head
    cv.paint(
        (hair_y - r_head, line, cx - r_head, cx + r_head),
        lambda y, x: np.maximum(_ellipse(y, x, hair_y, cx, r_head, r_head * 0.98), y - line),
        ident.hair,
    )
    if ident.bag == "backpack":
        for s in (-1, 1):
            x0 = cx + s * 0.55 * hw_sh
            cv.capsule(
                (sh_y, x0), (top + 0.42 * u, x0 + s * 0.01 * u), 0.012 * u, 0.012 * u, ident.bag_colour
            )

    if rng.random() < 0.3:  # an occluder entering from the bottom or a side
        colour = rng.uniform(0.05, 0.95, 3).astype(np.float32) * (0.9 + 0.2 * yy[..., None] / h)
        colour = np.broadcast_to(colour, (h, w, 3))
        where = int(rng.integers(3))
        if where == 0:
            y0, xc, half = h * rng.uniform(0.65, 0.85), rng.uniform(0, w), w * rng.uniform(0.3, 0.7)
            cv.paint(
                (y0, h, xc - half, xc + half),
                lambda y, x: np.maximum(y0 - y, np.abs(x - xc) - half),
                colour,
                False,
            )
        else:
            edge = 0.0 if where == 1 else float(w)
            reach = w * rng.uniform(0.15, 0.35)
            y0, y1 = sorted(h * rng.uniform(0.2, 1.0, 2))
            y1 = max(y1, y0 + 0.3 * h)
            cv.paint(
                (y0, y1, edge - reach, edge + reach),
                lambda y, x: np.maximum(np.abs(x - edge) - reach, np.maximum(y0 - y, y - y1)),
                colour,
                False,
            )


# ------------------------------------------------------------------------------- the layout
@dataclass(frozen=True)
class _Planned:
    split: str
    pid: int
    camid: int
    idx: int
    role: int
    index: int
    kind: int
    k: int

    @property
    def name(self) -> str:
        return f"{self.pid:04d}_c{self.camid + 1}s1_{self.idx:06d}_00.png"


def plan(params: Mapping[str, int]) -> list[_Planned]:
    """Every image to render, with its split, raw pid, camera and seed key.

    Raw pids: train ``1..T``, test ``T+1..T+Q``, distractors after them (gallery only). Queries of a
    test id come from ``queries_per_id`` distinct cameras; even-numbered gallery images of that id
    come from a non-query camera (so at least half, and every query has a cross-camera match), odd
    ones from any camera.
    """
    p = dict(params)
    seed, ncam = p["seed"], p["cameras"]
    out: list[_Planned] = []
    for i in range(p["train_ids"]):
        for k in range(p["train_images_per_id"]):
            cam = int(_rng(seed, _IMAGE, _TRAIN, i, _KIND_TRAIN, k).integers(ncam))
            out.append(_Planned("train", 1 + i, cam, k, _TRAIN, i, _KIND_TRAIN, k))
    first_test = 1 + p["train_ids"]
    nq, ng = p["queries_per_id"], p["gallery_per_id"]
    for i in range(p["test_ids"]):
        pid = first_test + i
        qcams = [int(c) for c in _rng(seed, _LAYOUT, _TEST, i).permutation(ncam)[:nq]]
        others = [c for c in range(ncam) if c not in qcams]
        for k, cam in enumerate(qcams):
            out.append(_Planned("query", pid, cam, k, _TEST, i, _KIND_QUERY, k))
        for k in range(ng):
            r = _rng(seed, _IMAGE, _TEST, i, _KIND_GALLERY, k)
            cam = others[int(r.integers(len(others)))] if k % 2 == 0 else int(r.integers(ncam))
            out.append(_Planned("gallery", pid, cam, nq + k, _TEST, i, _KIND_GALLERY, k))
    first_distractor = first_test + p["test_ids"]
    for i in range(p["distractor_ids"]):
        for k in range(p["distractor_images"]):
            cam = int(_rng(seed, _IMAGE, _DISTRACTOR, i, _KIND_DISTRACTOR, k).integers(ncam))
            out.append(_Planned("gallery", first_distractor + i, cam, k, _DISTRACTOR, i, _KIND_DISTRACTOR, k))
    return out


def _image_rng(seed: int, item: _Planned) -> np.random.Generator:
    # The planning stream above drew the camera first; rendering uses a separate child stream.
    return _rng(seed, _IMAGE, item.role, item.index, item.kind, item.k, 1)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray) -> bytes:
    """A standard 8-bit RGB PNG of ``pixels`` [H, W, 3] uint8.

    Why not PIL: its adaptive row filtering costs ~1.3 ms per noisy 128x64 image, three times
    the rendering budget. Here every row uses the "Up" filter and zlib Huffman-only coding
    (0.3 ms, same size). Deterministic for a given zlib; any PNG decoder reads it.
    """
    h, w, _ = pixels.shape
    rows = np.ascontiguousarray(pixels, dtype=np.uint8).reshape(h, w * 3)
    raw = np.empty((h, w * 3 + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter type "Up": each byte minus the byte above it (mod 256)
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_HUFFMAN_ONLY)
    data = packer.compress(raw.tobytes()) + packer.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit, truecolour, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def _generate(params: Mapping[str, int], tmp: Path) -> dict[str, Any]:
    """Render every planned image into ``tmp``; returns the manifest (written last, by the caller)."""
    t0 = time.perf_counter()
    seed, h, w = params["seed"], params["height"], params["width"]
    studio = Studio(seed, params["cameras"], h, w)
    identities: dict[tuple[int, int], Identity] = {}
    counts = dict.fromkeys(_SPLITS, 0)
    for split in _SPLITS:
        (tmp / split).mkdir(parents=True)
    for item in plan(params):
        key = (item.role, item.index)
        if key not in identities:
            identities[key] = make_identity(seed, item.role, item.index)
        pixels = studio.render(identities[key], item.camid, _image_rng(seed, item))
        (tmp / item.split / item.name).write_bytes(encode_png(pixels))
        counts[item.split] += 1
    return {
        "generator": "synthetic",
        "version": GENERATOR_VERSION,
        "params": dict(params),
        "counts": counts,
        "generated_in_s": round(time.perf_counter() - t0, 3),
    }


def _list_complete(folder: Path) -> tuple[dict[str, Any], dict[str, list[str]]] | None:
    """The manifest and file names of a finished dataset folder, or None if it is not complete."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
        names = {s: sorted(n for n in os.listdir(folder / s) if n.endswith(".png")) for s in _SPLITS}
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("counts"), dict):
        return None
    if manifest.get("version") != GENERATOR_VERSION or any(
        len(names[s]) != manifest["counts"].get(s) for s in _SPLITS
    ):
        return None
    return manifest, names


def _clean_stale(parent: Path, key: str) -> None:
    """Remove temporary folders of ``key`` left by a killed process.

    A folder counts as abandoned when neither it nor its split folders (whose mtime changes with
    every image written) changed for an hour, so a generation in progress is never touched.
    """
    now = time.time()
    for tmp in parent.glob(f".{key}.tmp-*"):
        try:
            newest = max(p.stat().st_mtime for p in (tmp, *(tmp / s for s in _SPLITS)) if p.exists())
            if now - newest > _STALE_TMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except (OSError, ValueError):
            pass


def _materialise(
    params: Mapping[str, int], cache_dir: Path
) -> tuple[Path, dict[str, Any], dict[str, list[str]], bool]:
    """Return (folder, manifest, names, generated_now), generating atomically if needed."""
    key = fingerprint(params)
    parent = Path(cache_dir) / "synthetic"
    final = parent / key
    done = _list_complete(final)
    if done is not None:
        return final, *done, False
    parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # incomplete or from another generator version: it is our cache, rebuild it
        shutil.rmtree(final)
    _clean_stale(parent, key)
    with atomic_directory(final) as tmp:  # another process may finish first: then its copy is kept
        manifest = _generate(params, tmp)
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    done = _list_complete(final)
    if done is None:
        raise AdvbenchError(f"synthetic: generated dataset at {final} is incomplete")
    return final, *done, True


def load(root: Path | None, cache_dir: Path, **params: Any) -> ReidDataset:
    """Generate (once, cached by fingerprint) and list the synthetic dataset. ``root`` is unused."""
    del root
    p = _check_params(params)
    t0 = time.perf_counter()
    folder, manifest, names, generated = _materialise(p, Path(cache_dir))
    splits: dict[str, list[Sample]] = {}
    for split in _SPLITS:
        samples = []
        for name in names[split]:
            m = _NAME_RE.match(name)
            if m is None:
                raise AdvbenchError(f"synthetic: unexpected file {folder / split / name}; delete {folder}")
            samples.append(Sample(str(folder / split / name), int(m.group(1)), int(m.group(2)) - 1))
        splits[split] = samples
    relabel = {pid: i for i, pid in enumerate(sorted({s.pid for s in splits["train"]}))}
    train = [Sample(s.path, relabel[s.pid], s.camid) for s in splits["train"]]
    info: dict[str, Any] = {
        "params": p,
        "input_size": (p["height"], p["width"]),  # the crop size runs use (not the spec's default)
        "version": GENERATOR_VERSION,
        "generated_in_s": manifest["generated_in_s"],
        "generated_now": generated,
        "loaded_in_s": round(time.perf_counter() - t0, 3),
        "train_pids": f"raw 1..{p['train_ids']} relabelled to 0..{p['train_ids'] - 1}",
        "distractor_pids": f"{1 + p['train_ids'] + p['test_ids']}..{p['train_ids'] + p['test_ids'] + p['distractor_ids']}"
        if p["distractor_ids"]
        else "none",
    }
    return ReidDataset(
        name="synthetic",
        train=train,
        query=splits["query"],
        gallery=splits["gallery"],
        root=folder,
        fingerprint=fingerprint(p),
        num_train_pids=len(relabel),
        info=info,
    )


SPEC = DatasetSpec(
    name="synthetic",
    description="Embedded procedural people (clothing, body shape; 6 cameras), generated on CPU in seconds",
    load=load,
    defaults=dict(DEFAULTS),
    layout=(
        "generated, no data root needed:\n"
        "<cache>/synthetic/<fingerprint>/\n"
        "  train/ query/ gallery/   {pid:04d}_c{cam+1}s1_{idx:06d}_00.png\n"
        "  manifest.json            written last: params, counts, generated_in_s"
    ),
    embedded=True,
    default=True,
    input_size=(128, 64),
    version=GENERATOR_VERSION,
)
