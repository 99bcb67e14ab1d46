"""CUHK03: 1,467 ids in 5 camera pairs, hand-labelled or DPM-detected boxes.

Protocols:

* ``new`` (default): the 767/700 split of Zhong et al. (CVPR'17) from
  ``cuhk03_new_protocol_config_{labeled,detected}.mat``; query = one image per view per test id.
* ``classic``: split ``split_id`` (0..19) of the 20 ``testsets`` inside ``cuhk-03.mat``; 100 test
  ids, the other 1,367 train; query and gallery are the same list (score it with the CUHK03
  single-gallery-shot CMC or the Market protocol, which drops each query's own image as junk).

Sources: the raw release (``cuhk03/cuhk03_release/cuhk-03.mat``, MATLAB v7.3 = HDF5, read with
h5py in :mod:`~advbench_datasets.cuhk03_mat`), whose images are extracted once, as torchreid
does, into ``cuhk03/images_<variant>/`` as ``{pair}_{person:03d}_{view}_{image:02d}.png`` (all
1-based); or the ready-made ``cuhk03-np`` folders (Market-style, ``0001_c1_1.png``, new protocol
only). camid = view within the pair - 1 (0 or 1). Raw pids of the mat route are the person's
position in release order (pair 1 first, 1..1467); the new-protocol configs carry their own
``labels``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from advbench.api import DatasetSpec, ReidDataset, Sample
from advbench_datasets import common
from advbench_datasets.counts import Expected
from advbench_datasets.cuhk03_mat import MAT, NAME, images_dir, read_config, read_testset
from advbench_datasets.errors import DatasetError

# NAME and MAT (the release file) live in cuhk03_mat, whose errors carry them too
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
    cfg = read_config(config_path)
    images = images_dir(release, variant, common.child(release, MAT), cache_dir, p["extract"], layout=LAYOUT)
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
    test_ids = read_testset(mat_path, split_id)
    images = images_dir(release, variant, mat_path, cache_dir, p["extract"], layout=LAYOUT)
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
