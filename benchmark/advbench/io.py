"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written file.

Every artefact advbench writes (store records, leaderboards, decoded images, features, victim
checkpoints, fitted attacks, adversarial queries) goes through here: it is written to a temporary
sibling, flushed to disk and renamed over the final name, so a run killed at any point leaves only
whole files. Plugins may use these helpers for their own caches (the Mis-Ranking plugin does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "NpyWriter",
    "atomic_directory",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_stale_temps",
]


def _temp_sibling(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary sibling of ``path``, fsync it, and rename it to ``path``."""
    path = Path(path)
    fd, tmp = _temp_sibling(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    """``torch.save`` through a temporary file and a rename."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


STALE_TEMP_S = 3600
"""A temporary file untouched this long was left by a killed process."""


def clean_stale_temps(path: Path | str, older_than: float = STALE_TEMP_S) -> None:
    """Remove temporary siblings of ``path`` (from :func:`atomic_write` or :class:`NpyWriter`) that
    no process has written for ``older_than`` seconds: a killed run must not leave gigabytes behind."""
    path = Path(path)
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
        except OSError:
            pass


class NpyWriter:
    """Write a C-contiguous ``.npy`` array of known shape row block by row block, atomically.

    Memory stays bounded by the block: rows are appended to a temporary file in order and the file
    is renamed to ``path`` by :meth:`close` once every row is there (an exception inside ``with``
    drops it). Every ``sync_every`` bytes a background ``fdatasync`` pushes what was written so
    far to disk while the caller goes on, so the final fsync has little left to wait for. Used for
    decoded image splits and adversarial queries, read back in batches by
    :class:`advbench.data.images.DiskImages`.
    """

    def __init__(
        self, path: Path | str, shape: tuple[int, ...], dtype: np.dtype | str, *, sync_every: int = 64 << 20
    ) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self.sync_every = sync_every
        self._unsynced = 0
        self._syncing: Future[None] | None = None
        self._syncer = ThreadPoolExecutor(max_workers=1)
        clean_stale_temps(self.path)
        fd, self._tmp = _temp_sibling(self.path)
        self._file = os.fdopen(fd, "wb")
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, block: np.ndarray) -> None:
        """Append rows ``block`` (shape ``[n, *shape[1:]]``)."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + block.shape[0] > self.shape[0]:
            raise ValueError(f"block of shape {block.shape} does not fit {self.shape} after {self.rows} rows")
        self._file.write(memoryview(block).cast("B"))
        self.rows += block.shape[0]
        self._unsynced += block.nbytes
        if self._unsynced >= self.sync_every and (self._syncing is None or self._syncing.done()):
            self._file.flush()
            self._syncing = self._syncer.submit(_datasync, self._file.fileno())
            self._unsynced = 0

    def close(self) -> Path:
        """Publish the file under its final name; every row must have been written."""
        if self.rows != self.shape[0]:
            self.abort()
            raise ValueError(f"{self.path}: wrote {self.rows} of {self.shape[0]} rows")
        self._syncer.shutdown(wait=True)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (nothing is published)."""
        self._syncer.shutdown(wait=True)
        if not self._file.closed:
            self._file.close()
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _datasync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


@contextlib.contextmanager
def atomic_directory(final: Path | str) -> Iterator[Path]:
    """Build a folder under a temporary sibling name, renamed to ``final`` when the block succeeds.

    If another process published ``final`` first, its copy is kept and ours is dropped (the caller
    checks the result). The temporary folder is removed on any failure.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
