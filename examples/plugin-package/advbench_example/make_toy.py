"""Write a small, valid ``toy-reid`` tree of person-like PNGs: ``python -m advbench_example.make_toy ROOT``.

Why: the example dataset reads a folder layout of its own, and a reader of the walk-through needs one
to run on without downloading anything. Each identity is a shirt colour, a trouser colour and a
height; each camera a background colour and a brightness; each image adds a little position jitter
and pixel noise. The tree is ``ROOT/toy-reid/{train,query,gallery}/<pid>/c<cam>_<n>.png`` (cameras
1-based). Train ids are ``1..train_ids``; each test id has one query on camera 1 and its gallery
images on the other cameras, so every query has a true match under the Market-1501 protocol.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from advbench_example.dataset import FOLDER

HEIGHT, WIDTH = 64, 32


def person(rng: np.random.Generator, look: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """One ``[HEIGHT, WIDTH, 3]`` uint8 image of identity ``look`` seen by ``camera``.

    ``look`` = (shirt RGB, trousers RGB, height fraction); ``camera`` = (background RGB, brightness).
    """
    shirt, trousers, tall = look[0:3], look[3:6], look[6]
    background, light = camera[0:3], camera[3]
    img = np.empty((HEIGHT, WIDTH, 3), np.float32)
    img[:] = background
    dy, dx = rng.integers(-3, 4), rng.integers(-2, 3)
    top = int(HEIGHT * (1.0 - tall)) + 2 + dy
    head, waist, feet = top + 10, top + int((HEIGHT - top) * 0.55), HEIGHT - 2 + min(dy, 0)
    cx = WIDTH // 2 + dx
    img[top:head, cx - 4 : cx + 4] = (0.85, 0.65, 0.5)  # head
    img[head:waist, cx - 8 : cx + 8] = shirt
    img[waist:feet, cx - 7 : cx - 1] = trousers  # two legs
    img[waist:feet, cx + 1 : cx + 7] = trousers
    img = img * light + rng.normal(0.0, 0.04, img.shape)
    return (img.clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_toy(
    root: Path | str,
    *,
    train_ids: int = 8,
    test_ids: int = 6,
    images_per_id: int = 4,
    cameras: int = 3,
    seed: int = 0,
) -> Path:
    """Write the toy tree under ``root`` and return ``root / "toy-reid"`` (existing files are overwritten)."""
    if cameras < 2 or images_per_id < 1 or train_ids < 2 or test_ids < 1:
        raise ValueError("need cameras >= 2, images_per_id >= 1, train_ids >= 2 and test_ids >= 1")
    rng = np.random.default_rng(seed)
    cams = np.concatenate([rng.uniform(0.1, 0.9, (cameras, 3)), rng.uniform(0.7, 1.2, (cameras, 1))], 1)
    base = Path(root) / FOLDER
    for pid in range(1, train_ids + test_ids + 1):
        look = np.concatenate([rng.uniform(0, 1, 6), rng.uniform(0.75, 0.95, 1)])
        if pid <= train_ids:
            shots = [("train", 1 + n % cameras) for n in range(images_per_id)]
        else:
            shots = [("query", 1)] + [("gallery", 2 + n % (cameras - 1)) for n in range(images_per_id)]
        for n, (split, cam) in enumerate(shots):
            folder = base / split / f"{pid:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(person(rng, look, cams[cam - 1])).save(folder / f"c{cam}_{n:03d}.png")
    return base


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m advbench_example.make_toy", description=__doc__.splitlines()[0]
    )
    p.add_argument("root", type=Path, help="data root: the tree goes to ROOT/toy-reid/")
    p.add_argument("--train-ids", type=int, default=8)
    p.add_argument("--test-ids", type=int, default=6)
    p.add_argument("--images-per-id", type=int, default=4)
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    base = make_toy(
        args.root,
        train_ids=args.train_ids,
        test_ids=args.test_ids,
        images_per_id=args.images_per_id,
        cameras=args.cameras,
        seed=args.seed,
    )
    print(f"wrote {sum(1 for _ in base.rglob('*.png'))} images under {base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
