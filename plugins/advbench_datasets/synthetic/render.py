"""Rendering one image of an identity under a camera, with numpy: the person, the backdrop, pose jitter, occluders, blur and noise."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from advbench_datasets.synthetic.config import _NOISE, _rng
from advbench_datasets.synthetic.people import Camera, Identity, make_camera


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
