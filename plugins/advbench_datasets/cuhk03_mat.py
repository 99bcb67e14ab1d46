"""CUHK03's MATLAB files: the new-protocol configs and the v7.3 release ``cuhk-03.mat``.

The configs (``cuhk03_new_protocol_config_{labeled,detected}.mat``) are MATLAB v5, read with scipy.
``cuhk-03.mat`` is MATLAB v7.3 = HDF5, read with h5py: it holds the 20 classic test sets and the
images, which are extracted once, as torchreid does, into ``images_<variant>/`` as
``{pair}_{person:03d}_{view}_{image:02d}.png`` (all 1-based). The extraction is atomic (a hidden
temporary folder renamed on success) and falls back to the cache folder when the release is
read-only. The protocols built on these files are in :mod:`advbench_datasets.cuhk03`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advbench_datasets.errors import DatasetError, DatasetNotReady
from advbench_datasets.folders import child

NAME = "cuhk03"
MAT = "cuhk03_release/cuhk-03.mat"


@dataclass(frozen=True)
class NewConfig:
    """A new-protocol config: file names, labels and 0-based split indices."""

    filelist: list[str]
    labels: list[int]
    train: list[int]
    query: list[int]
    gallery: list[int]


def read_config(path: Path) -> NewConfig:
    """The new-protocol config at ``path``; anything else is a one-line error naming the file."""
    import numpy as np
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, NotImplementedError (v7.3), ...
        raise DatasetError(
            NAME, f"cannot read {path} as a MATLAB file ({type(exc).__name__}: {exc})"
        ) from None
    for key in ("filelist", "labels", "train_idx", "query_idx", "gallery_idx"):
        if key not in mat:
            raise DatasetError(NAME, f"{path} has no {key!r} (not a CUHK03 new-protocol config?)")
    filelist = [_cell_text(x) for x in np.asarray(mat["filelist"], dtype=object).ravel()]
    labels = [int(v) for v in np.asarray(mat["labels"]).ravel()]
    if len(labels) != len(filelist):
        raise DatasetError(NAME, f"{path}: {len(labels)} labels for {len(filelist)} files")
    splits = []
    for key in ("train_idx", "query_idx", "gallery_idx"):
        idx = [int(v) - 1 for v in np.asarray(mat[key]).ravel()]
        bad = [i + 1 for i in idx if not 0 <= i < len(filelist)]
        if bad:
            raise DatasetError(NAME, f"{path}: {key} holds {bad[0]}, outside 1..{len(filelist)}")
        splits.append(idx)
    return NewConfig(filelist, labels, *splits)


def _cell_text(value: Any) -> str:
    """The string inside a loadmat cell (nested 1-element arrays of str)."""
    import numpy as np

    while isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    return str(value).strip()


def _open_h5(path: Path) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(NAME, f"cannot read {path} as MATLAB v7.3 / HDF5 ({exc})") from None


def read_testset(mat_path: Path, split_id: int) -> set[tuple[int, int]]:
    """The 100 (camera pair, person) of classic split ``split_id`` (1-based, as in the file)."""
    import numpy as np

    with _open_h5(mat_path) as mat:
        if "testsets" not in mat:
            raise DatasetError(NAME, f"{mat_path} has no 'testsets' (not the CUHK03 release file?)")
        try:
            refs = np.asarray(mat["testsets"]).ravel()
            if split_id >= len(refs):
                raise DatasetError(
                    NAME, f"split_id={split_id} but {mat_path} holds {len(refs)} classic splits"
                )
            table = np.asarray(mat[refs[split_id]]).T
        except DatasetError:
            raise
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise DatasetError(NAME, f"cannot read testsets of {mat_path} ({exc})") from None
    if table.ndim != 2 or table.shape[1] != 2:
        raise DatasetError(
            NAME, f"{mat_path}: testsets[{split_id}] has shape {table.shape}, expected (100, 2)"
        )
    return {(int(a), int(b)) for a, b in table}


def images_dir(
    release: Path, variant: str, mat_path: Path | None, cache_dir: Path | None, extract: bool, *, layout: str
) -> Path:
    """The extracted images: ``release/images_<variant>`` (torchreid's or ours), else extract them.

    When ``release`` is read-only the images go to ``cache_dir`` instead. ``layout`` is the
    loader's expected layout, shown when neither the images nor the ``.mat`` are there.
    """
    name = f"images_{variant}"
    own = child(release, name)
    if own is not None and own.is_dir():
        return own
    fallback = _fallback_dir(cache_dir, mat_path, name)
    if fallback is not None and fallback.is_dir():
        return fallback
    if mat_path is None or not mat_path.is_file():
        raise DatasetError(NAME, f"{release} has neither {name}/ nor {MAT}", layout)
    if not extract:
        raise DatasetNotReady(
            NAME, f"found {mat_path}; {name}/ is not extracted yet (the first load extracts it)"
        )
    try:
        return _extract(mat_path, variant, release / name)
    except _Unwritable as exc:
        if fallback is None:
            raise DatasetError(
                NAME, f"cannot write {release / name} ({exc}) and no cache folder was given"
            ) from None
        return _extract(mat_path, variant, fallback)


def _fallback_dir(cache_dir: Path | None, mat_path: Path | None, name: str) -> Path | None:
    if cache_dir is None or mat_path is None or not mat_path.is_file():
        return None
    st = mat_path.stat()
    key = hashlib.sha256(f"{mat_path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return Path(cache_dir) / NAME / key / name


class _Unwritable(Exception):
    """The folder that should receive the extracted images cannot be written."""


def _extract(mat_path: Path, variant: str, dest: Path) -> Path:
    """Write every non-empty ``variant`` cell of ``mat_path`` as PNG into ``dest``, atomically.

    Images go to a hidden temporary folder next to ``dest`` that is renamed on success and removed
    on any failure (including Ctrl-C); leftovers of killed processes are removed first.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(dest)
        tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
    except OSError as exc:
        raise _Unwritable(exc.strerror or str(exc)) from None
    try:
        print(f"{NAME}: extracting {variant} images from {mat_path} into {dest} (once)", file=sys.stderr)
        count = _write_images(mat_path, variant, tmp)
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():  # otherwise a concurrent process finished first: keep its copy
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{NAME}: wrote {count:,} images", file=sys.stderr)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


STALE_SECONDS = 600


def _remove_stale_partials(dest: Path) -> None:
    """Delete ``.<name>.partial-<pid>-*`` folders of dead processes (killed before their cleanup).

    Dead = no such process here *and* untouched for ``STALE_SECONDS`` (an extraction running on
    another host sharing the folder keeps adding files, so its folder stays fresh).
    """
    for path in dest.parent.glob(f".{dest.name}.partial-*"):
        try:
            if time.time() - path.stat().st_mtime < STALE_SECONDS:
                continue
            os.kill(int(path.name.rsplit(".partial-", 1)[1].split("-")[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, IndexError, OSError):
            continue


def _write_images(mat_path: Path, variant: str, out: Path) -> int:
    """Extract the images of ``variant`` into ``out`` as torchreid names them; return how many."""
    import numpy as np
    from PIL import Image

    count = 0
    with _open_h5(mat_path) as mat:
        if variant not in mat:
            raise DatasetError(NAME, f"{mat_path} has no {variant!r} (not the CUHK03 release file?)")
        try:
            for pair, pair_ref in enumerate(np.asarray(mat[variant]).ravel(), start=1):
                cells = np.asarray(mat[pair_ref]).T  # MATLAB persons x 10 cell, stored transposed
                if cells.ndim != 2:
                    raise DatasetError(NAME, f"{mat_path}: {variant} pair {pair} is not a persons x 10 cell")
                for person in range(1, cells.shape[0] + 1):
                    written = 0
                    for index, ref in enumerate(cells[person - 1], start=1):
                        array = np.asarray(mat[ref])
                        if array.ndim < 3 or array.size == 0:
                            continue  # an empty cell: this person has fewer images in this view
                        image = array.T  # stored 3 x W x H
                        where = f"{variant} pair {pair} person {person} image {index}"
                        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                            raise DatasetError(
                                NAME,
                                f"{mat_path}: {where} has shape {image.shape} {image.dtype}, expected H x W x 3 uint8",
                            )
                        view = 1 if index <= 5 else 2
                        name = f"{pair}_{person:03d}_{view}_{index:02d}.png"
                        Image.fromarray(np.ascontiguousarray(image)).save(out / name, format="PNG")
                        written += 1
                    if not written:
                        raise DatasetError(
                            NAME, f"{mat_path}: {variant} pair {pair} person {person} has no image"
                        )
                    count += written
        except DatasetError:
            raise
        except (KeyError, ValueError, TypeError) as exc:
            raise DatasetError(NAME, f"cannot read {variant} images of {mat_path} ({exc})") from None
        except OSError as exc:
            if isinstance(exc, PermissionError) or exc.filename is not None:
                raise DatasetError(NAME, f"cannot write {exc.filename or out}: {exc.strerror}") from None
            raise DatasetError(NAME, f"cannot read {variant} images of {mat_path} ({exc})") from None
    return count
