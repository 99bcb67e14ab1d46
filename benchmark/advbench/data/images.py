"""Decode a list of image files once per (file list, size) into a ``.npy`` file read by batch.

A grid over many victims and attacks reads the same JPEGs many times; decoding and resizing them
once, keyed by the files' names, sizes and modification times, makes every later read a few
``pread`` calls. A changed, added or removed file changes the key, so the cache can never serve
stale pixels.

Memory is bounded by the batch, not the dataset (MSMT17's gallery is 8 GB of uint8 at 256x128):
decoding writes chunks of a few dozen images to a temporary file that is renamed when complete,
and :class:`DiskImages` (:mod:`advbench.data.disk`, importable from here) reads only the rows
asked for into fresh buffers, with ``os.pread`` rather than an mmap, whose touched pages would count
in the process's resident set.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from advbench.api import AdvbenchError, ImageSplit, Sample
from advbench.data.disk import DiskImages, Index  # noqa: F401  (DiskImages is documented here)
from advbench.io import NpyWriter, verified

CACHE_VERSION = "2"
CHUNK = 32  # images decoded per worker task; 2 x workers chunks are in flight at most
SYNC_EVERY = 64 << 20  # bytes written between background syncs of the cache file


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


def decode_image(path: str, size: tuple[int, int]) -> Image.Image:
    """One image as an RGB PIL image at ``size`` (H, W), resized BILINEAR if needed.

    A corrupt or unreadable file is a one-line error naming it.
    """
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return img
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise AdvbenchError(f"cannot decode image {path}: {exc}") from None


def decode(path: str, size: tuple[int, int]) -> np.ndarray:
    """One image as uint8 HWC at ``size`` (H, W); see :func:`decode_image`."""
    return np.array(decode_image(path, size), dtype=np.uint8)


# ---------------------------------------------------------------------------------- decoding
def _decode_chunks(
    samples: Sequence[Sample], size: tuple[int, int], workers: int, out: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Decoded ``[k, 3, H, W]`` chunks of ``samples`` in order, at most ``2 * workers`` ahead.

    Each worker decodes :data:`CHUNK` images straight into the CHW layout (into ``out`` when
    given, else a new array), so memory holds a bounded number of images whatever the split size.
    """

    def job(start: int) -> np.ndarray:
        stop = min(start + CHUNK, len(samples))
        buf = out[start:stop] if out is not None else np.empty((stop - start, 3, *size), np.uint8)
        for i, s in enumerate(samples[start:stop]):
            img = decode_image(s.path, size)
            for c, band in enumerate("RGB"):  # PIL packs each plane: twice as fast as a numpy transpose
                buf[i, c] = np.frombuffer(img.tobytes("raw", band), np.uint8).reshape(size)
        return buf

    if workers <= 1:  # decode in the caller: no thread hand-offs
        for start in range(0, len(samples), CHUNK):
            yield job(start)
        return
    pending: deque[Future[np.ndarray]] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for start in range(0, len(samples), CHUNK):
                pending.append(pool.submit(job, start))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def _open_cached(cache_file: Path, shape: tuple[int, ...]) -> DiskImages | None:
    """The cache entry if it exists, matches its checksum and has the expected shape, else None
    (it will be rewritten)."""
    if not verified(cache_file):
        return None
    try:
        images = DiskImages.open(cache_file)
    except (OSError, ValueError, EOFError):
        return None
    return images if tuple(images.shape) == shape else None


def _counted(chunks: Iterator[np.ndarray], total: int, desc: str, enabled: bool) -> Iterator[np.ndarray]:
    """``chunks`` passed through, with a progress bar counting images (stderr, like the others)."""
    with tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, disable=not enabled) as bar:
        for chunk in chunks:
            bar.update(len(chunk))
            yield chunk


def default_workers() -> int:
    """Decoding threads: one per usable core, at most 8 (PIL releases the GIL while decoding)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def load_split(
    samples: Sequence[Sample],
    size: tuple[int, int],
    *,
    cache_dir: Path | None,
    desc: str = "decode",
    progress: bool = True,
    workers: int | None = None,
) -> ImageSplit:
    """Images of ``samples`` as an :class:`ImageSplit` at ``size`` (H, W).

    With a ``cache_dir`` the images are :class:`DiskImages` over ``cache_dir/images/<key>.npy``,
    decoded once (on a miss) in bounded memory; without one they are decoded into a uint8 tensor.
    """
    if not samples:
        raise AdvbenchError(f"{desc}: no images to load")
    pids = torch.tensor([s.pid for s in samples], dtype=torch.long)
    camids = torch.tensor([s.camid for s in samples], dtype=torch.long)
    shape = (len(samples), 3, *size)
    workers = workers or default_workers()
    if cache_dir is None:
        out = torch.empty(shape, dtype=torch.uint8)
        for _ in _counted(_decode_chunks(samples, size, workers, out.numpy()), len(samples), desc, progress):
            pass
        return ImageSplit(out, pids, camids)
    cache_file = Path(cache_dir) / "images" / f"{split_key(samples, size)}.npy"
    images = _open_cached(cache_file, shape)
    if images is None:
        chunks = _decode_chunks(samples, size, workers)
        with NpyWriter(cache_file, shape, np.uint8, sync_every=SYNC_EVERY) as writer:
            for chunk in _counted(chunks, len(samples), desc, progress):
                writer.write(chunk)
        images = DiskImages.open(cache_file)
    return ImageSplit(images, pids, camids)
