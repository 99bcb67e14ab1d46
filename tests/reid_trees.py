"""Small dataset trees with the real folder layouts and file names, for tests.

Every builder writes real, decodable images (an identity colour plus noise, so a victim can learn
something from them) and returns a :class:`Tree` with the counts a correct loader must find.
:func:`make_market1501` is the tree the end-to-end ``advbench run --datasets market1501`` test
uses: it has junk (``-1_*``) and distractor (``0000_*``) gallery files and the clutter real
copies carry (``Thumbs.db``, macOS ``._*`` forks, ``gt_bbox/``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CUHK03_PAIR_OFFSETS = (0, 843, 1283, 1360, 1418)  # persons before each camera pair in release order


@dataclass
class Tree:
    """A built tree: the data root to pass as ``--data-root``, the dataset folder, expected counts.

    ``counts[split] = (ids, images)`` after loading (Market junk already removed).
    """

    root: Path
    folder: Path
    counts: dict[str, tuple[int, int]]
    extra: dict[str, Any] = field(default_factory=dict)


def identity_image(pid: int, index: int, size: tuple[int, int] = (128, 64), seed: int = 0) -> np.ndarray:
    """uint8 HxWx3: a colour fixed by ``pid`` (top and bottom halves) plus noise varying with ``index``."""
    colours = np.random.default_rng([seed, abs(pid) + 7]).integers(30, 226, size=(2, 3))
    rng = np.random.default_rng([seed, abs(pid) + 7, index + 1])
    h, w = size
    img = np.empty((h, w, 3), dtype=np.float64)
    img[: h // 2] = colours[0]
    img[h // 2 :] = colours[1]
    img += rng.normal(0, 25, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image(path: Path, pid: int, index: int, size: tuple[int, int] = (128, 64), seed: int = 0) -> Path:
    """Save :func:`identity_image` as JPEG or PNG (by suffix) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(identity_image(pid, index, size, seed)).save(path, format=fmt, quality=90)
    return path


def _clutter(folder: Path) -> None:
    """What real copies carry besides the images: ignored by the loaders."""
    (folder / "readme.txt").write_text("not an image\n")
    (folder / "gt_bbox").mkdir(exist_ok=True)
    test = folder / "bounding_box_test"
    (test / "Thumbs.db").write_bytes(b"\x00" * 64)
    (test / "._0001_c1s1_000001_01.jpg").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    (test / ".DS_Store").write_bytes(b"\x00")


def make_market1501(
    root: Path,
    *,
    folder: str = "Market-1501-v15.09.15",
    train_ids: int = 6,
    train_per_id: int = 4,
    test_ids: int = 5,
    gallery_per_id: int = 3,
    distractors: int = 4,
    junk: int = 3,
    clutter: bool = True,
    size: tuple[int, int] = (128, 64),
    seed: int = 0,
) -> Tree:
    """A Market-1501-shaped tree: ``0002_c1s1_000451_03.jpg`` names, junk, distractors, 6 cameras.

    Train pids are 2, 5, 8, ... (not contiguous, so relabelling shows); test pids follow. Each test
    id has 2 queries (cameras 1 and 2) and ``gallery_per_id`` gallery images on cameras 3, 4, 1, ...
    (so every query has a cross-camera match and one same-camera junk match).
    """
    base = root / folder
    frame = itertools.count(100, 25)

    def name(pid: int, cam: int) -> str:
        pid_text = "-1" if pid < 0 else f"{pid:04d}"
        return f"{pid_text}_c{cam}s{cam % 6 + 1}_{next(frame):06d}_{len(str(pid)) % 9:02d}.jpg"

    train_pids = [2 + 3 * i for i in range(train_ids)]
    test_pids = (
        [train_pids[-1] + 3 + 3 * i for i in range(test_ids)] if train_ids else list(range(1, test_ids + 1))
    )
    for pid in train_pids:
        for k in range(train_per_id):
            write_image(base / "bounding_box_train" / name(pid, k % 6 + 1), pid, k, size, seed)
    gallery_cams = [3, 4, 1, 5, 6, 2]
    for pid in test_pids:
        for k, cam in enumerate((1, 2)):
            write_image(base / "query" / name(pid, cam), pid, 100 + k, size, seed)
        for k in range(gallery_per_id):
            write_image(base / "bounding_box_test" / name(pid, gallery_cams[k % 6]), pid, 200 + k, size, seed)
    for k in range(distractors):
        write_image(base / "bounding_box_test" / name(0, k % 6 + 1), 10_000 + k, k, size, seed)
    for k in range(junk):
        write_image(base / "bounding_box_test" / name(-1, k % 6 + 1), 20_000 + k, k, size, seed)
    if clutter:
        _clutter(base)
    counts = {
        "train": (train_ids, train_ids * train_per_id),
        "query": (test_ids, 2 * test_ids),
        "gallery": (test_ids + (1 if distractors else 0), test_ids * gallery_per_id + distractors),
    }
    return Tree(root, base, counts, {"train_pids": train_pids, "test_pids": test_pids, "junk": junk})


def make_dukemtmcreid(
    root: Path,
    *,
    folder: str = "DukeMTMC-reID",
    train_ids: int = 4,
    train_per_id: int = 3,
    test_ids: int = 3,
    distractor_ids: int = 2,
    seed: int = 0,
) -> Tree:
    """A DukeMTMC-reID-shaped tree (``0001_c2_f0046182.jpg``, 8 cameras, gallery-only distractor ids)."""
    base = root / folder
    frame = itertools.count(46182, 37)
    size = (64, 32)

    def name(pid: int, cam: int) -> str:
        return f"{pid:04d}_c{cam}_f{next(frame):07d}.jpg"

    train_pids = [1 + 2 * i for i in range(train_ids)]
    test_pids = [100 + 2 * i for i in range(test_ids)]
    for pid in train_pids:
        for k in range(train_per_id):
            write_image(base / "bounding_box_train" / name(pid, k % 8 + 1), pid, k, size, seed)
    for pid in test_pids:
        write_image(base / "query" / name(pid, 1), pid, 0, size, seed)
        for k, cam in enumerate((7, 8)):
            write_image(base / "bounding_box_test" / name(pid, cam), pid, k + 1, size, seed)
    for j in range(distractor_ids):
        write_image(base / "bounding_box_test" / name(5000 + j, 5), 5000 + j, 0, size, seed)
    counts = {
        "train": (train_ids, train_ids * train_per_id),
        "query": (test_ids, test_ids),
        "gallery": (test_ids + distractor_ids, 2 * test_ids + distractor_ids),
    }
    return Tree(root, base, counts, {"train_pids": train_pids, "test_pids": test_pids})


def make_cuhk03_np(
    root: Path, *, folder: str = "cuhk03-np", variants: Sequence[str] = ("detected", "labeled"), seed: int = 0
) -> Tree:
    """A cuhk03-np tree (``<variant>/bounding_box_train/0001_c1_1.png``): 3 train ids, 2 test ids."""
    base = root / folder
    size = (48, 24)
    for variant in variants:
        vdir = base / variant
        for pid in (1, 4, 9):
            for cam in (1, 2):
                write_image(vdir / "bounding_box_train" / f"{pid:04d}_c{cam}_{cam}.png", pid, cam, size, seed)
        for pid in (1400, 1467):
            for cam in (1, 2):
                write_image(vdir / "query" / f"{pid:04d}_c{cam}_1.png", pid, cam, size, seed)
                write_image(vdir / "bounding_box_test" / f"{pid:04d}_c{cam}_2.png", pid, 10 + cam, size, seed)
    counts = {"train": (3, 6), "query": (2, 4), "gallery": (2, 4)}
    return Tree(root, base, counts)


def make_msmt17(
    root: Path,
    *,
    version: str = "V1",
    folder: str | None = None,
    train_ids: int = 4,
    train_per_id: int = 3,
    test_ids: int = 3,
    seed: int = 0,
) -> Tree:
    """An MSMT17_V1/V2 tree: one folder per pid, the four list files; last train image of each id is val."""
    base = root / (folder or f"MSMT17_{version}")
    train_dir, test_dir = ("train", "test") if version == "V1" else ("mask_train_v2", "mask_test_v2")
    size = (64, 32)
    lines: dict[str, list[str]] = {"train": [], "val": [], "query": [], "gallery": []}

    def add(split: str, top: str, pid: int, idx: int, cam: int) -> None:
        suffix = "_ex" if idx == 2 else ""
        rel = f"{pid:04d}/{pid:04d}_{idx:03d}_{cam:02d}_0303morning_{15 + idx:04d}_{idx % 2}{suffix}.jpg"
        write_image(base / top / rel, pid, idx, size, seed)
        lines[split].append(f"{rel} {pid}")

    for pid in range(train_ids):
        for idx in range(train_per_id):
            add("val" if idx == train_per_id - 1 else "train", train_dir, pid, idx, idx % 15 + 1)
    for pid in range(test_ids):
        add("query", test_dir, pid, 0, 15)
        add("gallery", test_dir, pid, 1, 3)
        add("gallery", test_dir, pid, 2, 15)
    for split, rows in lines.items():
        (base / f"list_{split}.txt").write_text("\n".join(rows) + "\n")
    counts = {
        "train": (train_ids, train_ids * (train_per_id - 1)),
        "train+val": (train_ids, train_ids * train_per_id),
        "query": (test_ids, test_ids),
        "gallery": (test_ids, 2 * test_ids),
    }
    return Tree(root, base, counts, {"lines": lines})


# ------------------------------------------------------------------------------------------ CUHK03
Cells = list[list[list[np.ndarray | None]]]  # pair -> person -> 10 images (None = empty cell)


def cuhk03_cells(persons: Sequence[int] = (4, 3, 2, 2, 2), *, extra: bool = False, seed: int = 0) -> Cells:
    """Images per pair/person: 1-3 in view 1 (cells 1-5), 1-2 in view 2 (cells 6-10), the rest empty.

    ``extra`` adds one image to the first person (detected has one more image than labeled).
    """
    rng = np.random.default_rng(seed)
    pairs: Cells = []
    for p, n in enumerate(persons):
        rows = []
        for person in range(n):
            row: list[np.ndarray | None] = [None] * 10
            n1, n2 = 1 + (person + p) % 3, 1 + person % 2
            if extra and p == 0 and person == 0:
                n1 += 1
            for i in list(range(n1)) + list(range(5, 5 + n2)):
                h, w = int(rng.integers(16, 24)), int(rng.integers(8, 12))
                row[i] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            rows.append(row)
        pairs.append(rows)
    return pairs


def write_cuhk03_mat(path: Path, cells: dict[str, Cells], testsets: Sequence[np.ndarray]) -> Path:
    """A MATLAB v7.3-like ``cuhk-03.mat``: HDF5 with a 512-byte MATLAB header and object references.

    As MATLAB stores them (dims reversed): ``/<variant>`` (1, pairs) refs; each pair (10, persons)
    refs; each image (3, W, H) uint8; each empty cell a (2,) uint64 ``[0, 0]`` with ``MATLAB_empty``;
    ``/testsets`` (1, n) refs to (2, k) doubles of 1-based [pair, person].
    """
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    counter = itertools.count()
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def store(data: np.ndarray, cls: str, **kw: Any) -> Any:
            ds = refs.create_dataset(f"r{next(counter)}", data=data, **kw)
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            return ds.ref

        def store_empty() -> Any:
            ds = refs.create_dataset(f"r{next(counter)}", data=np.zeros(2, dtype=np.uint64))
            ds.attrs["MATLAB_class"] = np.bytes_("double")
            ds.attrs["MATLAB_empty"] = np.uint8(1)
            return ds.ref

        for variant, pairs in cells.items():
            pair_refs = np.empty((1, len(pairs)), dtype=h5py.ref_dtype)
            for p, persons in enumerate(pairs):
                grid = np.empty((10, len(persons)), dtype=h5py.ref_dtype)
                for j, row in enumerate(persons):
                    for i, img in enumerate(row):
                        grid[i, j] = store_empty() if img is None else store(np.asarray(img).T, "uint8")
                pair_refs[0, p] = store(grid, "cell", dtype=h5py.ref_dtype)
            ds = f.create_dataset(variant, data=pair_refs, dtype=h5py.ref_dtype)
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
        split_refs = np.empty((1, len(testsets)), dtype=h5py.ref_dtype)
        for k, table in enumerate(testsets):
            split_refs[0, k] = store(np.asarray(table, dtype=np.float64).T, "double")
        f.create_dataset("testsets", data=split_refs, dtype=h5py.ref_dtype)
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2015 HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return path


def write_new_protocol_config(
    path: Path,
    filelist: Sequence[str],
    labels: Sequence[int],
    train_idx: Sequence[int],
    query_idx: Sequence[int],
    gallery_idx: Sequence[int],
) -> Path:
    """``cuhk03_new_protocol_config_<variant>.mat`` as scipy writes it (indices 1-based, N x 1)."""
    from scipy.io import savemat

    def column(values: Sequence[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).reshape(-1, 1)

    names = np.empty((len(filelist), 1), dtype=object)
    for i, n in enumerate(filelist):
        names[i, 0] = n
    savemat(
        str(path),
        {
            "filelist": names,
            "labels": column(labels),
            "train_idx": column(train_idx),
            "query_idx": column(query_idx),
            "gallery_idx": column(gallery_idx),
        },
    )
    return path


def extracted_names(cells: Cells) -> list[tuple[str, int, int, int]]:
    """(file name, release pid, 0-based camid, 0-based cell index) of every image, release order."""
    out = []
    for p, persons in enumerate(cells, start=1):
        for j, row in enumerate(persons, start=1):
            for i, img in enumerate(row, start=1):
                if img is not None:
                    view = 1 if i <= 5 else 2
                    out.append(
                        (f"{p}_{j:03d}_{view}_{i:02d}.png", CUHK03_PAIR_OFFSETS[p - 1] + j, view - 1, i)
                    )
    return out


def make_cuhk03_release(
    root: Path,
    *,
    persons: Sequence[int] = (4, 3, 2, 2, 2),
    test_persons: int = 4,
    n_splits: int = 20,
    configs: bool = True,
    seed: int = 0,
) -> Tree:
    """``cuhk03/cuhk03_release/cuhk-03.mat`` plus both new-protocol configs.

    New protocol: the last ``test_persons`` persons (release order) are test ids; query = the
    first image of each view, gallery = the other test images. Classic split k holds 3 persons.
    ``extra["expected"][variant][split]`` = sorted (file name, pid, camid) a loader must return.
    """
    base = root / "cuhk03"
    cells = {
        "labeled": cuhk03_cells(persons, seed=seed),
        "detected": cuhk03_cells(persons, extra=True, seed=seed + 1),
    }
    all_ids = [(p, j) for p, n in enumerate(persons, start=1) for j in range(1, n + 1)]
    rng = np.random.default_rng(seed)
    testsets = [
        np.array([all_ids[i] for i in rng.choice(len(all_ids), 3, replace=False)]) for _ in range(n_splits)
    ]
    write_cuhk03_mat(base / "cuhk03_release" / "cuhk-03.mat", cells, testsets)
    test_pids = {CUHK03_PAIR_OFFSETS[p - 1] + j for p, j in all_ids[-test_persons:]}
    expected: dict[str, dict[str, list[tuple[str, int, int]]]] = {}
    for variant, pairs in cells.items():
        rows = extracted_names(pairs)
        split: dict[str, list[tuple[str, int, int]]] = {"train": [], "query": [], "gallery": []}
        seen: set[tuple[int, int]] = set()
        for name, pid, camid, _ in rows:
            if pid not in test_pids:
                split["train"].append((name, pid, camid))
            elif (pid, camid) not in seen:
                seen.add((pid, camid))
                split["query"].append((name, pid, camid))
            else:
                split["gallery"].append((name, pid, camid))
        expected[variant] = {k: sorted(v) for k, v in split.items()}
        if configs:
            filelist = [r[0] for r in rows]
            index = {n: i + 1 for i, n in enumerate(filelist)}
            write_new_protocol_config(
                base / f"cuhk03_new_protocol_config_{variant}.mat",
                filelist,
                [r[1] for r in rows],
                [index[n] for n, _, _ in split["train"]],
                [index[n] for n, _, _ in split["query"]],
                [index[n] for n, _, _ in split["gallery"]],
            )
    counts = {
        v: {k: (len({r[1] for r in rows}), len(rows)) for k, rows in e.items()} for v, e in expected.items()
    }
    return Tree(
        root,
        base,
        counts["detected"],
        {"cells": cells, "testsets": testsets, "expected": expected, "counts": counts},
    )
