"""Shared helpers of the four real re-ID loaders: the Market-style split reader and dataset assembly.

A loader finds its folder (:mod:`~advbench_datasets.folders`), parses names
(:mod:`~advbench_datasets.filenames`), then builds its dataset here: train pids relabelled, a
fingerprint of every file it read, the sample images checked once per fingerprint; last it
compares its counts with the release (:mod:`~advbench_datasets.counts`). The helpers of those
modules, of :mod:`~advbench_datasets.params`, :mod:`~advbench_datasets.errors` and
:mod:`~advbench_datasets.integrity` are re-exported, so ``common.X`` keeps naming all of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from advbench.api import ReidDataset, Sample
from advbench_datasets.counts import Expected, check_counts, split_counts
from advbench_datasets.errors import DatasetCountWarning, DatasetError, DatasetNotReady
from advbench_datasets.filenames import NamePattern, parse_name
from advbench_datasets.folders import (
    ENV_DATA,
    HIDDEN_PREFIXES,
    File,
    child,
    data_root,
    find_folder,
    is_hidden,
    list_images,
    locate,
    require_dir,
    require_file,
    stat_file,
)
from advbench_datasets.integrity import JPEG_EOI, JPEG_SOI, PNG_SIGNATURE, TAIL_BYTES, check_image
from advbench_datasets.params import resolve_params

__all__ = [
    "BBOX_SPLITS",
    "ENV_DATA",
    "HIDDEN_PREFIXES",
    "JPEG_EOI",
    "JPEG_SOI",
    "PNG_SIGNATURE",
    "TAIL_BYTES",
    "DatasetCountWarning",
    "DatasetError",
    "DatasetNotReady",
    "Expected",
    "File",
    "NamePattern",
    "build_dataset",
    "check_counts",
    "check_image",
    "child",
    "data_root",
    "find_folder",
    "fingerprint",
    "is_hidden",
    "list_images",
    "load_bbox_splits",
    "locate",
    "parse_name",
    "relabel",
    "require_dir",
    "require_file",
    "resolve_params",
    "sort_samples",
    "split_counts",
    "stat_file",
    "verify_images",
]

BBOX_SPLITS: dict[str, str] = {
    "train": "bounding_box_train",
    "query": "query",
    "gallery": "bounding_box_test",
}
"""Market-style split folders (Market-1501, DukeMTMC-reID, CUHK03-NP): split name -> folder name."""


# ------------------------------------------------------------------------- splits and the dataset
def verify_images(
    dataset: str, files: Iterable[File], used: set[str], key: str, cache_dir: Path | str | None
) -> None:
    """:func:`check_image` on each file in ``used``, once per fingerprint ``key``.

    A success leaves an empty marker ``<cache_dir>/verified/<dataset>-<key>``; since the key hashes
    every file's size and mtime, a changed file is checked again. Without a cache, always checks.
    """
    marker = Path(cache_dir) / "verified" / f"{dataset}-{key}" if cache_dir is not None else None
    if marker is not None and marker.exists():
        return
    for f in files:
        if f.path in used:
            check_image(dataset, f)  # looked up in this module: patching common.check_image reaches it
    if marker is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs the check next time
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()


def relabel(samples: Iterable[Sample]) -> list[Sample]:
    """Train pids mapped to 0..N-1 in sorted order of the raw pids (deterministic)."""
    samples = list(samples)
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [Sample(s.path, mapping[s.pid], s.camid) for s in samples]


def sort_samples(samples: Iterable[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: s.path)


def fingerprint(
    dataset: str, version: str, params: Mapping[str, Any], base: Path, files: Iterable[File]
) -> str:
    """Stable hash of the dataset, its protocol parameters and each file's relative name, size, mtime."""
    h = hashlib.sha256(json.dumps([dataset, version, dict(params)], sort_keys=True, default=str).encode())
    prefix = str(base).rstrip("/") + "/"
    rows = sorted((f.path.removeprefix(prefix), f.size, f.mtime_ns) for f in files)
    for rel, size, mtime in rows:
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:20]


def load_bbox_splits(
    dataset: str,
    folder: Path,
    pattern: NamePattern,
    exts: Sequence[str],
    layout: str,
    *,
    drop_pids: Sequence[int] = (),
) -> tuple[dict[str, list[Sample]], list[File], dict[str, int]]:
    """Parse a Market-style folder (bounding_box_train / query / bounding_box_test).

    Returns the raw samples per split (sorted, train not yet relabelled, ``drop_pids`` removed),
    every file for the fingerprint, and how many files each split dropped.
    """
    dirs = {split: require_dir(dataset, folder, name, layout) for split, name in BBOX_SPLITS.items()}
    splits: dict[str, list[Sample]] = {}
    dropped: dict[str, int] = {}
    all_files: list[File] = []
    for split, path in dirs.items():
        files = list_images(dataset, path, exts, layout)
        samples = []
        for f in files:
            pid, camid = parse_name(dataset, f.path, pattern, layout)
            if pid in drop_pids:
                continue
            samples.append(Sample(f.path, pid, camid))
        dropped[split] = len(files) - len(samples)
        if not samples:
            raise DatasetError(
                dataset, f"every image in {path} is junk (person id {', '.join(map(str, drop_pids))})", layout
            )
        splits[split] = sort_samples(samples)
        all_files.extend(files)
    return splits, all_files, dropped


def build_dataset(
    name: str,
    version: str,
    params: Mapping[str, Any],
    folder: Path,
    train: list[Sample],
    query: list[Sample],
    gallery: list[Sample],
    files: Iterable[File],
    info: Mapping[str, Any],
    *,
    verify: bool,
    cache_dir: Path | str | None,
) -> ReidDataset:
    """The :class:`ReidDataset` with its fingerprint (train pids must already be relabelled).

    ``files`` are all the files the content depends on (hashed into the fingerprint); with
    ``verify``, the sample images among them pass :func:`check_image` first.
    """
    files = list(files)
    key = fingerprint(name, version, params, folder, files)
    if verify:
        verify_images(name, files, {s.path for s in (*train, *query, *gallery)}, key, cache_dir)
    return ReidDataset(
        name=name,
        train=train,
        query=query,
        gallery=gallery,
        root=folder,
        fingerprint=key,
        num_train_pids=len({s.pid for s in train}),
        info=dict(info),
    )
