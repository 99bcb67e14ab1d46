"""Decode a list of image files once per (file list, size) into a ``.npy`` file read by batch.

A grid over many victims and attacks reads the same JPEGs many times; decoding and resizing them
once, keyed by the files' names, sizes and modification times, makes every later read a few
``pread`` calls. A changed, added or removed file changes the key, so the cache can never serve
stale pixels.

Memory is bounded by the batch, not the dataset (MSMT17's gallery is 8 GB of uint8 at 256x128):
decoding writes chunks of a few dozen images to a temporary file that is renamed when complete,
and :class:`DiskImages` reads only the rows asked for into fresh buffers, with ``os.pread`` rather
than an mmap, whose touched pages would count in the process's resident set.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from tqdm.auto import tqdm

from advbench.api import AdvbenchError, ImageSplit, Sample
from advbench.io import NpyWriter, verified

CACHE_VERSION = "2"
CHUNK = 32  # images decoded per worker task; 2 x workers chunks are in flight at most
SYNC_EVERY = 64 << 20  # bytes written between background syncs of the cache file

Index = int | slice | Tensor | np.ndarray | Sequence[int]


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


# ---------------------------------------------------------------------------------- reading
def _read_into(fd: int, buf: np.ndarray, offset: int, path: str) -> None:
    """Fill the C-contiguous ``buf`` from ``fd`` at ``offset`` (looping over short reads)."""
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[done:]], offset + done)
        else:  # pragma: no cover - platforms without preadv
            chunk = os.pread(fd, len(view) - done, offset + done)
            n = len(chunk)
            view[done : done + n] = chunk
        if n == 0:
            raise AdvbenchError(f"image cache {path} is truncated; delete it and run again")
        done += n


class DiskImages:
    """uint8 images ``[N, 3, H, W]`` in a ``.npy`` file, read on demand into fresh tensors.

    Indexing takes an int, a slice (one contiguous read) or a 1-D index tensor / array / list
    (order kept, duplicates allowed; runs of neighbouring rows are read together) and returns a
    uint8 CPU Tensor, like indexing the in-memory tensor would. Pickling keeps the path, offset and
    shape only; the file is (re)opened lazily in each process, so it can be shipped to workers.
    """

    dtype = torch.uint8
    ndim = 4
    _open_lock = threading.Lock()  # one fd per process even when threads read concurrently

    def __init__(self, path: str | os.PathLike[str], offset: int, shape: Sequence[int]) -> None:
        self.path = str(path)
        self.offset = int(offset)
        self.shape = torch.Size(int(x) for x in shape)
        if len(self.shape) != 4:
            raise ValueError(f"DiskImages needs a shape [N, C, H, W], got {tuple(self.shape)}")
        self._row = int(np.prod(self.shape[1:]))
        self._fd: int | None = None
        self._fd_pid = -1

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> DiskImages:
        """The array of a uint8, C-ordered, 4-D ``.npy`` file; ValueError if it is not one."""
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise ValueError(f"{path}: not a uint8 C-ordered [N, C, H, W] array")
        images = cls(path, offset, shape)
        if size != offset + images.nbytes:
            raise ValueError(f"{path}: {size} bytes, expected {offset + images.nbytes}")
        return images

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._row

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DiskImages({self.path!r}, shape={tuple(self.shape)})"

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "offset": self.offset, "shape": tuple(self.shape)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["offset"], state["shape"])  # type: ignore[misc]

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's file descriptor (reads reopen it)."""
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None and self._fd_pid == os.getpid():
            os.close(fd)

    def _fileno(self) -> int:
        if self._fd is None or self._fd_pid != os.getpid():  # first read, or a forked child
            with self._open_lock:
                if self._fd is None or self._fd_pid != os.getpid():
                    try:
                        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                    except OSError as exc:
                        raise AdvbenchError(f"image cache {self.path} unreadable ({exc.strerror})") from None
                    if os.fstat(fd).st_size < self.offset + self.nbytes:
                        os.close(fd)
                        raise AdvbenchError(f"image cache {self.path} is truncated; delete it and run again")
                    self._fd, self._fd_pid = fd, os.getpid()
        assert self._fd is not None
        return self._fd

    def _rows(self, start: int, stop: int, out: Tensor | None = None) -> Tensor:
        """Rows ``start:stop`` in one read, into ``out`` or a new tensor."""
        if out is None:
            out = torch.empty((stop - start, *self.shape[1:]), dtype=torch.uint8)
        if stop > start:
            _read_into(self._fileno(), out.numpy(), self.offset + start * self._row, self.path)
        return out

    def _gather(self, idx: np.ndarray) -> Tensor:
        """Rows ``idx`` in that order; each run of consecutive distinct rows is one read."""
        if idx.size == 0:
            return torch.empty((0, *self.shape[1:]), dtype=torch.uint8)
        uniq, inverse = np.unique(idx, return_inverse=True)
        rows = torch.empty((len(uniq), *self.shape[1:]), dtype=torch.uint8)
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(uniq)]):
            self._rows(int(uniq[a]), int(uniq[b - 1]) + 1, rows[a:b])
        if len(uniq) == len(idx) and np.array_equal(uniq, idx):
            return rows
        return rows[torch.from_numpy(inverse.reshape(-1))]

    def __getitem__(self, index: Index) -> Tensor:
        n = len(self)
        if isinstance(index, Tensor) and index.ndim == 0:
            index = int(index)
        if isinstance(index, (int, np.integer)):
            i = int(index) + (n if index < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {int(index)} is out of bounds for {n} images")
            return self._rows(i, i + 1)[0]
        if isinstance(index, slice):
            if index.step is not None and index.step <= 0:
                raise ValueError("step must be greater than zero")  # as for a Tensor
            start, stop, step = index.indices(n)
            if step == 1:
                return self._rows(start, max(start, stop))
            return self._gather(np.arange(start, stop, step))
        idx = np.asarray(index.cpu() if isinstance(index, Tensor) else index)
        if idx.dtype == np.bool_:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask of shape {idx.shape} for {n} images")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise IndexError(f"DiskImages takes an int, a slice or a 1-D integer index, got {idx.dtype}")
        idx = idx.astype(np.int64)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"index out of bounds for {n} images")
        return self._gather(idx)


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
