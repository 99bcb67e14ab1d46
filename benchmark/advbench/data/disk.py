"""Decoded images on disk: :class:`DiskImages` reads rows of a uint8 ``.npy`` file into fresh tensors.

Only the rows asked for are read, with ``os.pread`` rather than an mmap, whose touched pages would
count in the process's resident set (MSMT17's gallery is 8 GB of uint8 at 256x128). Written by
:mod:`advbench.data.images` (the decode cache) and by the adversarial queries a craft keeps;
:class:`advbench.api.ImageSplit` holds one. Imports nothing of advbench but its error type, so the
plugin contract (:mod:`advbench.api`) can name it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advbench.errors import AdvbenchError

__all__ = ["DiskImages", "Index"]

Index = int | slice | Tensor | np.ndarray | Sequence[int]


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
