"""Atomic, verified file writes: a reader sees the old file or the whole new one, never half, never rot.

Every artefact advbench writes (store records, leaderboards, decoded images, features, victim
checkpoints, fitted attacks, adversarial queries) goes through here: it is written to a temporary
sibling (named after the host and process that writes it), flushed to disk and renamed over the
final name, so a run killed at any point leaves only whole files; temporaries of dead processes are
removed by the next writer. Cache entries (``digest=True``) also get a ``<name>.sha256`` sidecar
computed while writing, and :func:`verified` checks it before an entry is used: a damaged entry is
reported in one line and removed, so it is recomputed instead of silently changing numbers. Files
are created with the user's umask (shared caches work for a group). Plugins may use these helpers
for their own caches (the Mis-Ranking plugin does).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import sys
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
    "load_torch_verified",
    "verified",
]

_HOST = socket.gethostname().replace(".", "_")
_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) already checked in this process


def _temp_sibling(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a published file follows the umask
    return fd, tmp


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def digest_file(path: Path | str) -> Path:
    """The sidecar holding the SHA-256 of a cache entry."""
    path = Path(path)
    return path.with_name(f"{path.name}.sha256")


class _Hashing:
    """A write-only file wrapper that hashes what passes through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data: Any) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], Any], *, digest: bool = False) -> None:
    """Call ``write(f)`` on a temporary sibling of ``path``, fsync it, and rename it to ``path``.

    With ``digest``, the SHA-256 of the bytes written goes to the sidecar :func:`digest_file`
    just *before* the rename, so a concurrent reader never sees the new entry without its sidecar
    (and takes it for damaged); killed in between, the entry is simply unverified, hence recomputed.
    """
    path = Path(path)
    fd, tmp = _temp_sibling(path)
    try:
        with os.fdopen(fd, "wb") as f:
            sink = _Hashing(f)
            write(sink)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        if digest:
            atomic_write_text(digest_file(path), sink.sha.hexdigest() + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            sha.update(block)
    return sha.hexdigest()


def verified(path: Path | str, *, report: bool = True, remove: bool = True) -> bool:
    """Whether cache entry ``path`` exists and matches its SHA-256 sidecar.

    A damaged or unverifiable entry (no sidecar: written by an older advbench, or killed before
    the sidecar) is reported on stderr as ``damaged cache entry PATH: recomputing`` and removed,
    so the caller recomputes it. With ``remove=False`` (a dry run, which touches nothing) it is
    reported as ``damaged cache entry PATH: a run would recompute it`` and left where it is.
    A file is hashed once per process and version (size, mtime).
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return False
    stamp = (str(path), st.st_size, st.st_mtime_ns)
    if stamp in _VERIFIED:
        return True
    try:
        ok = digest_file(path).read_text().strip() == _sha256(path)
    except OSError:
        ok = False
    if ok:
        _VERIFIED.add(stamp)
        return True
    if report:
        what = "recomputing" if remove else "a run would recompute it"
        print(f"damaged cache entry {path}: {what}", file=sys.stderr, flush=True)
    if not remove:
        return False
    path.unlink(missing_ok=True)
    digest_file(path).unlink(missing_ok=True)
    return False


def load_torch_verified(path: Path | str) -> Any | None:
    """``torch.load(path, weights_only=True)`` of a verified cache entry, or None (then recompute it)."""
    import torch

    if not verified(path):
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # hash matched but the content is unreadable (e.g. another format)
        print(f"damaged cache entry {path}: recomputing ({type(exc).__name__})", file=sys.stderr, flush=True)
        Path(path).unlink(missing_ok=True)
        return None


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: Path | str, *, digest: bool = True) -> None:
    """``torch.save`` through a temporary file and a rename, with a SHA-256 sidecar by default."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f), digest=digest)


STALE_TEMP_S = 3600
"""A temporary file untouched this long was left by a killed process."""


def _writer_alive(tmp: Path) -> bool | None:
    """Whether the process named in a temporary's name still runs (None: another host, or an old name)."""
    tag = tmp.name.rsplit(".", 3)
    if len(tag) < 3:
        return None
    host, _, pid = tag[-3].rpartition("-")
    if host != _HOST or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(path: Path | str, older_than: float = STALE_TEMP_S, *, folder: bool = False) -> None:
    """Remove temporaries of ``path`` (or, with ``folder``, of every file in the folder ``path``)
    left by a killed process: at once when the process that wrote one is gone (same host),
    otherwise once untouched for ``older_than`` seconds. A killed run must not leave gigabytes
    behind, and a live writer's file is never touched."""
    path = Path(path)
    now = time.time()
    pattern = (path, ".*.tmp") if folder else (path.parent, f".{path.name}.*.tmp")
    for tmp in pattern[0].glob(pattern[1]):
        try:
            alive = _writer_alive(tmp)
            if alive is False or (alive is None and now - tmp.stat().st_mtime > older_than):
                tmp.unlink()
        except OSError:
            pass


class NpyWriter:
    """Write a C-contiguous ``.npy`` array of known shape row block by row block, atomically.

    Memory stays bounded by the block: rows are appended to a temporary file in order and the file
    is renamed to ``path`` by :meth:`close` once every row is there (an exception inside ``with``
    drops it), its SHA-256 sidecar written just before (:func:`verified` checks it). Every ``sync_every`` bytes a background ``fdatasync`` pushes what was written so
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
        fd, self._tmp = _temp_sibling(self.path)
        self._file = os.fdopen(fd, "wb")
        self._sink = _Hashing(self._file)
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_1_0(self._sink, header)

    def write(self, block: np.ndarray) -> None:
        """Append rows ``block`` (shape ``[n, *shape[1:]]``)."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + block.shape[0] > self.shape[0]:
            raise ValueError(f"block of shape {block.shape} does not fit {self.shape} after {self.rows} rows")
        self._sink.write(memoryview(block).cast("B"))
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
        # sidecar first: a concurrent reader never finds the new file without it (see atomic_write)
        atomic_write_text(digest_file(self.path), self._sink.sha.hexdigest() + "\n")
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
