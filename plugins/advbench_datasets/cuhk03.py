"""CUHK03: 1,467 ids in 5 camera pairs, hand-labelled or DPM-detected boxes.

Protocols:

* ``new`` (default): the 767/700 split of Zhong et al. (CVPR'17) from
  ``cuhk03_new_protocol_config_{labeled,detected}.mat``; query = one image per view per test id.
* ``classic``: split ``split_id`` (0..19) of the 20 ``testsets`` inside ``cuhk-03.mat``; 100 test
  ids, the other 1,367 train; query and gallery are the same list (score it with the CUHK03
  single-gallery-shot CMC or the Market protocol, which drops each query's own image as junk).

Sources: the raw release (``cuhk03/cuhk03_release/cuhk-03.mat``, MATLAB v7.3 = HDF5, read with
h5py), whose images are extracted once, as torchreid does, into ``cuhk03/images_<variant>/`` as
``{pair}_{person:03d}_{view}_{image:02d}.png`` (all 1-based); or the ready-made ``cuhk03-np``
folders (Market-style, ``0001_c1_1.png``, new protocol only). camid = view within the pair - 1
(0 or 1). Raw pids of the mat route are the person's position in release order (pair 1 first,
1..1467); the new-protocol configs carry their own ``labels``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advbench.api import DatasetSpec, ReidDataset, Sample
from advbench_datasets import common
from advbench_datasets.common import DatasetError, DatasetNotReady, Expected

NAME = "cuhk03"
VERSION = "1"
DEFAULTS: dict[str, Any] = {
    "variant": "detected",
    "protocol": "new",
    "split_id": 0,
    "source": "auto",
    "extract": True,
    "verify": True,
}
CHOICES = {
    "variant": ("detected", "labeled"),
    "protocol": ("new", "classic"),
    "source": ("auto", "mat", "np"),
}
NUM_CLASSIC_SPLITS = 20
PAIR_SIZES = (843, 440, 77, 58, 49)
PAIR_OFFSETS = tuple(sum(PAIR_SIZES[:i]) for i in range(len(PAIR_SIZES)))
RELEASE_FOLDERS = ("cuhk03",)
NP_FOLDERS = ("cuhk03-np", "cuhk03_np", "cuhk03/cuhk03-np")
FOLDERS = (*RELEASE_FOLDERS, *NP_FOLDERS)
MAT = "cuhk03_release/cuhk-03.mat"
CONFIG = "cuhk03_new_protocol_config_{}.mat"
CONFIG_SOURCE = " (the 767/700 split: zhunzhong07/person-re-ranking, evaluation/data/CUHK03/)"
EXTRACTED = re.compile(r"(\d)_(\d{3})_([12])_(\d{2})\.png")
NP_PATTERN = common.NamePattern(re.compile(r"(\d+)_c(\d)_\d"), "0001_c1_1.png", pids=(1, 1467), cams=(1, 2))
NEW_RELEASE = {
    "labeled": {
        "train": Expected(767, 7_368),
        "query": Expected(700, 1_400),
        "gallery": Expected(700, 5_328),
    },
    "detected": {
        "train": Expected(767, 7_365),
        "query": Expected(700, 1_400),
        "gallery": Expected(700, 5_332),
    },
}
TOTAL_IMAGES = {"labeled": 14_096, "detected": 14_097}
LAYOUT = """\
<data-root>/cuhk03/cuhk03_release/cuhk-03.mat                        (MATLAB v7.3 release)
<data-root>/cuhk03/cuhk03_new_protocol_config_{detected,labeled}.mat   (767/700 split)
  images_{detected,labeled}/ are extracted next to them on first use
or <data-root>/cuhk03-np/{detected,labeled}/{bounding_box_train,query,bounding_box_test}/0001_c1_1.png"""


def load(root: Path | str | None, cache_dir: Path | None = None, **params: Any) -> ReidDataset:
    """CUHK03 ``variant`` under ``protocol``; see the module docstring for sources and parameters.

    ``source``: ``auto`` (the raw release when usable, else cuhk03-np), ``mat`` or ``np``.
    ``extract=False`` refuses to extract images (``DatasetNotReady``): used by ``advbench datasets``.
    """
    p = common.resolve_params(NAME, DEFAULTS, params, CHOICES)
    if p["protocol"] == "classic" and not 0 <= p["split_id"] < NUM_CLASSIC_SPLITS:
        raise DatasetError(NAME, f"split_id={p['split_id']} outside 0..{NUM_CLASSIC_SPLITS - 1}")
    data = common.data_root(NAME, root, LAYOUT)
    variant = p["variant"]
    config = CONFIG.format(variant)
    release = common.locate(
        data, RELEASE_FOLDERS, ("cuhk03_release", "images_detected", "images_labeled", config)
    )
    np_root = common.locate(data, NP_FOLDERS, ("detected", "labeled"))
    if p["protocol"] == "classic":
        if p["source"] == "np":
            raise DatasetError(
                NAME, "the classic protocol needs cuhk-03.mat (cuhk03-np holds the new split only)"
            )
        return _load_classic(p, _require_release(data, release), cache_dir)
    if p["source"] == "np" or (
        p["source"] == "auto" and np_root is not None and not _mat_usable(release, variant)
    ):
        if np_root is None:
            raise DatasetError(
                NAME,
                f"no cuhk03-np folder in data root {data} (looked for {', '.join(f + '/' for f in NP_FOLDERS)})",
                LAYOUT,
            )
        return _load_np(p, np_root, cache_dir)
    return _load_new(p, _require_release(data, release), cache_dir)


def _require_release(data: Path, release: Path | None) -> Path:
    if release is None:
        raise DatasetError(
            NAME,
            f"no CUHK03 folder in data root {data} (looked for {', '.join(f + '/' for f in FOLDERS)})",
            LAYOUT,
        )
    return release


def _mat_usable(release: Path | None, variant: str) -> bool:
    """The raw-release route can serve the new protocol: a config and images (or the .mat) exist."""
    if release is None or common.child(release, CONFIG.format(variant)) is None:
        return False
    return common.child(release, f"images_{variant}") is not None or common.child(release, MAT) is not None


# ---------------------------------------------------------------------------------------- routes
def _load_np(p: dict[str, Any], np_root: Path, cache_dir: Path | None) -> ReidDataset:
    variant = p["variant"]
    folder = common.child(np_root, variant)
    if folder is None or not folder.is_dir():
        raise DatasetError(NAME, f"missing variant folder {np_root / variant}", LAYOUT)
    splits, files, _ = common.load_bbox_splits(NAME, folder, NP_PATTERN, (".png",), LAYOUT)
    info = {"variant": variant, "protocol": "new", "source": "cuhk03-np", "folder": str(folder)}
    dataset = common.build_dataset(
        NAME,
        VERSION,
        {"variant": variant, "protocol": "new", "source": "np"},
        folder,
        common.relabel(splits["train"]),
        splits["query"],
        splits["gallery"],
        files,
        info,
        verify=p["verify"],
        cache_dir=cache_dir,
    )
    common.check_counts(
        NAME, folder, common.split_counts(splits), NEW_RELEASE[variant], f"CUHK03-NP {variant}"
    )
    return dataset


def _load_new(p: dict[str, Any], release: Path, cache_dir: Path | None) -> ReidDataset:
    variant = p["variant"]
    config_path = common.require_file(NAME, release, CONFIG.format(variant), LAYOUT, CONFIG_SOURCE)
    cfg = _read_config(config_path)
    images = _images_dir(release, variant, common.child(release, MAT), cache_dir, p["extract"])
    present = {f.name: f for f in common.list_images(NAME, images, (".png",), LAYOUT)}
    missing = [n for n in dict.fromkeys(cfg.filelist) if n not in present]
    if missing:
        raise DatasetError(
            NAME,
            f"{len(missing):,} of {len(set(cfg.filelist)):,} images named by {config_path.name} are missing "
            f"from {images} (first: {missing[0]}); delete that folder to extract it again",
            LAYOUT,
        )

    def samples(indices: list[int]) -> list[Sample]:
        out = []
        for i in indices:
            name = cfg.filelist[i]
            _, _, view = _parse_extracted(name, config_path)
            out.append(Sample(str(images / name), int(cfg.labels[i]), view - 1))
        return common.sort_samples(out)

    train, query, gallery = samples(cfg.train), samples(cfg.query), samples(cfg.gallery)
    used = [present[n] for n in sorted({os.path.basename(s.path) for s in (*train, *query, *gallery)})]
    splits = {"train": train, "query": query, "gallery": gallery}
    info = {
        "variant": variant,
        "protocol": "new",
        "source": "cuhk-03.mat",
        "folder": str(release),
        "images": str(images),
    }
    dataset = common.build_dataset(
        NAME,
        VERSION,
        {"variant": variant, "protocol": "new", "source": "mat"},
        release,
        common.relabel(train),
        query,
        gallery,
        [*used, common.stat_file(config_path)],
        info,
        verify=p["verify"],
        cache_dir=cache_dir,
    )
    common.check_counts(
        NAME, release, common.split_counts(splits), NEW_RELEASE[variant], f"CUHK03 {variant} (767/700)"
    )
    return dataset


def _load_classic(p: dict[str, Any], release: Path, cache_dir: Path | None) -> ReidDataset:
    variant, split_id = p["variant"], p["split_id"]
    mat_path = common.child(release, MAT)
    if mat_path is None or not mat_path.is_file():
        raise DatasetError(NAME, f"missing file {release / MAT} (the classic splits are inside it)", LAYOUT)
    test_ids = _read_testset(mat_path, split_id)
    images = _images_dir(release, variant, mat_path, cache_dir, p["extract"])
    files = common.list_images(NAME, images, (".png",), LAYOUT)
    train, test = [], []
    for f in files:
        pair, person, view = _parse_extracted(f.name, images)
        sample = Sample(f.path, _release_pid(pair, person, f.path), view - 1)
        (test if (pair, person) in test_ids else train).append(sample)
    train, test = common.sort_samples(train), common.sort_samples(test)
    got = common.split_counts({"train": train, "query = gallery": test, "all": train + test})
    expected = {
        "train": Expected(sum(PAIR_SIZES) - 100, None),
        "query = gallery": Expected(100, None),
        "all": Expected(sum(PAIR_SIZES), TOTAL_IMAGES[variant]),
    }
    info = {
        "variant": variant,
        "protocol": "classic",
        "split_id": split_id,
        "source": "cuhk-03.mat",
        "folder": str(release),
        "images": str(images),
        "query_is_gallery": True,
    }
    dataset = common.build_dataset(
        NAME,
        VERSION,
        {"variant": variant, "protocol": "classic", "split_id": split_id},
        release,
        common.relabel(train),
        test,
        list(test),
        [*files, common.stat_file(mat_path)],
        info,
        verify=p["verify"],
        cache_dir=cache_dir,
    )
    common.check_counts(NAME, images, got, expected, f"CUHK03 {variant} (classic split {split_id})")
    return dataset


def _parse_extracted(name: str, where: Path) -> tuple[int, int, int]:
    """(pair, person, view) of an extracted image name such as ``1_001_2_06.png``."""
    m = EXTRACTED.fullmatch(name)
    if m is None:
        raise DatasetError(
            NAME,
            f"cannot parse ids from file name {name} in {where} (expected names like 1_001_1_01.png)",
            LAYOUT,
        )
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _release_pid(pair: int, person: int, path: str) -> int:
    """Position of (pair, person) in release order, 1..1467."""
    if not (1 <= pair <= len(PAIR_SIZES) and 1 <= person <= PAIR_SIZES[pair - 1]):
        raise DatasetError(NAME, f"camera pair {pair} / person {person} outside the CUHK03 release in {path}")
    return PAIR_OFFSETS[pair - 1] + person


# ------------------------------------------------------------------------------------ mat files
@dataclass(frozen=True)
class NewConfig:
    """A new-protocol config: file names, labels and 0-based split indices."""

    filelist: list[str]
    labels: list[int]
    train: list[int]
    query: list[int]
    gallery: list[int]


def _read_config(path: Path) -> NewConfig:
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


def _read_testset(mat_path: Path, split_id: int) -> set[tuple[int, int]]:
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


def _images_dir(
    release: Path, variant: str, mat_path: Path | None, cache_dir: Path | None, extract: bool
) -> Path:
    """The extracted images: ``release/images_<variant>`` (torchreid's or ours), else extract them.

    When ``release`` is read-only the images go to ``cache_dir`` instead.
    """
    name = f"images_{variant}"
    own = common.child(release, name)
    if own is not None and own.is_dir():
        return own
    fallback = _fallback_dir(cache_dir, mat_path, name)
    if fallback is not None and fallback.is_dir():
        return fallback
    if mat_path is None or not mat_path.is_file():
        raise DatasetError(NAME, f"{release} has neither {name}/ nor {MAT}", LAYOUT)
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


SPEC = DatasetSpec(
    name=NAME,
    description="CUHK03: 1,467 ids, 2 views per pair; labeled/detected, new 767/700 or classic 20-split protocol",
    load=load,
    defaults=DEFAULTS,
    layout=LAYOUT,
    embedded=False,
    default=False,
    input_size=(256, 128),
    version=VERSION,
)
