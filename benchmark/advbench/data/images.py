"""Decode a list of image files once per (file list, size) and keep the uint8 tensor on disk.

A grid over many victims and attacks reads the same JPEGs many times; decoding and resizing them
once, keyed by the files' names, sizes and modification times, makes every later read a single
``torch.load``. A changed, added or removed file changes the key, so the cache can never serve
stale pixels.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from advbench.api import AdvbenchError, ImageSplit, Sample
from advbench.store import atomic_torch_save
from advbench.utils import progress_bar

CACHE_VERSION = "1"


def split_key(samples: Sequence[Sample], size: tuple[int, int]) -> str:
    """Hash of the decoded content: each file's path, size and mtime, its labels, and the size."""
    h = hashlib.sha256(f"images-v{CACHE_VERSION}:{size[0]}x{size[1]}".encode())
    for s in samples:
        try:
            st = os.stat(s.path)
        except OSError as exc:
            raise AdvbenchError(f"image file missing: {s.path} ({exc.strerror})") from None
        h.update(f"{s.path}\0{st.st_size}\0{st.st_mtime_ns}\0{s.pid}\0{s.camid}\n".encode())
    return h.hexdigest()[:24]


def decode(path: str, size: tuple[int, int]) -> np.ndarray:
    """One image as uint8 HWC at ``size`` (H, W); a corrupt file is a one-line error naming it."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.array(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise AdvbenchError(f"cannot decode image {path}: {exc}") from None


def load_split(
    samples: Sequence[Sample],
    size: tuple[int, int],
    *,
    cache_dir: Path | None,
    desc: str = "decode",
    progress: bool = True,
    workers: int = 4,
) -> ImageSplit:
    """Images of ``samples`` as an :class:`ImageSplit` at ``size``, from the cache when possible."""
    if not samples:
        raise AdvbenchError(f"{desc}: no images to load")
    pids = torch.tensor([s.pid for s in samples], dtype=torch.long)
    camids = torch.tensor([s.camid for s in samples], dtype=torch.long)
    cache_file = cache_dir / "images" / f"{split_key(samples, size)}.pt" if cache_dir else None
    if cache_file is not None and cache_file.exists():
        try:
            images = torch.load(cache_file, weights_only=True)
            if images.shape == (len(samples), 3, *size):
                return ImageSplit(images, pids, camids)
        except Exception:
            pass  # unreadable cache entry: decode again and overwrite it
    out = torch.empty((len(samples), 3, *size), dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = pool.map(lambda s: decode(s.path, size), samples)
        for i, arr in enumerate(progress_bar(decoded, total=len(samples), desc=desc, enabled=progress)):
            out[i] = torch.from_numpy(arr).permute(2, 0, 1)
    if cache_file is not None:
        atomic_torch_save(out, cache_file)
    return ImageSplit(out, pids, camids)
