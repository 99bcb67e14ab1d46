"""Shared helpers of the four real re-ID loaders: parameters, folders, file names, counts, errors.

Every user-facing problem is a :class:`DatasetError` whose first line names the problem and the
path; the lines after it (at most a handful) show the layout the loader expected. Counts that
differ from the known release are a :class:`DatasetCountWarning`, never an error: a user may
well run on a subset on purpose. Nothing here writes to disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advbench.api import AdvbenchError, ReidDataset, Sample

ENV_DATA = "ADVBENCH_DATA"
HIDDEN_PREFIXES = (".", "._")  # macOS resource forks (._0002_c1...jpg) and dot files are not images
TAIL_BYTES = 4096  # a JPEG's end-of-image marker / a PNG's IEND chunk must lie in this many last bytes

BBOX_SPLITS: dict[str, str] = {
    "train": "bounding_box_train",
    "query": "query",
    "gallery": "bounding_box_test",
}
"""Market-style split folders (Market-1501, DukeMTMC-reID, CUHK03-NP): split name -> folder name."""


class DatasetCountWarning(UserWarning):
    """A dataset folder holds other numbers of ids or images than the known release."""


class DatasetError(AdvbenchError):
    """A dataset cannot be loaded: one line naming the problem and the path, then the expected layout.

    ``problem`` is that first line without the dataset prefix, ``layout`` the lines shown after it.
    """

    def __init__(self, dataset: str, problem: str, layout: str = "") -> None:
        self.dataset = dataset
        self.problem = problem
        self.layout = layout
        message = f"{dataset}: {problem}"
        if layout:
            message += "\n  expected layout:\n" + "\n".join("    " + line for line in layout.splitlines())
        super().__init__(message)


class DatasetNotReady(DatasetError):
    """The source files are there but a preparation step (e.g. CUHK03 extraction) was not allowed."""


@dataclass(frozen=True)
class File:
    """A file a dataset depends on, with what the fingerprint hashes.

    ``path`` is a plain string: pathlib costs ~50 µs per file, i.e. seconds on MSMT17's 126k files.
    """

    path: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def stat_file(path: Path | str) -> File:
    """:class:`File` of an existing path (raises OSError when it is missing)."""
    st = os.stat(path)
    return File(str(path), st.st_size, st.st_mtime_ns)


# ----------------------------------------------------------------------------------- parameters
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def resolve_params(
    dataset: str,
    defaults: Mapping[str, Any],
    params: Mapping[str, Any],
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Defaults overridden by ``params``, coerced to the default's type (CLI values come as strings).

    Unknown names, wrong types and values outside ``choices`` (compared case-insensitively for
    strings, returned in the spelling of ``choices``) are one-line errors listing what is valid.
    """
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise DatasetError(
            dataset, f"unknown parameter {unknown[0]!r}; valid parameters: {', '.join(defaults)}"
        )
    out = dict(defaults)
    for key, value in params.items():
        out[key] = _coerce(dataset, key, value, defaults[key])
    for key, allowed in (choices or {}).items():
        value = out[key]
        match = [c for c in allowed if str(c).lower() == str(value).lower()]
        if not match:
            raise DatasetError(
                dataset, f"parameter {key}={value!r} is not one of {', '.join(map(str, allowed))}"
            )
        out[key] = match[0]
    return out


def _coerce(dataset: str, key: str, value: Any, default: Any) -> Any:
    kind = {bool: "a boolean (true/false)", int: "an integer", str: "a string"}.get(type(default), "valid")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    else:
        return value
    raise DatasetError(dataset, f"parameter {key}={value!r} must be {kind}")


# -------------------------------------------------------------------------------------- folders
def data_root(dataset: str, root: Path | str | None, layout: str) -> Path:
    """The data root as an existing folder: ``root``, else ``$ADVBENCH_DATA``, else an error."""
    if root is None or str(root) == "":
        root = os.environ.get(ENV_DATA) or None
    if root is None:
        raise DatasetError(dataset, f"no data root: pass --data-root PATH or set {ENV_DATA}", layout)
    path = Path(root).expanduser().absolute()
    if not path.exists():
        raise DatasetError(dataset, f"data root {path} does not exist", layout)
    if not path.is_dir():
        raise DatasetError(dataset, f"data root {path} is not a folder", layout)
    return path


def child(parent: Path, relative: str) -> Path | None:
    """``parent/relative`` if it exists, matching each component case-insensitively; else None."""
    path = parent
    for part in Path(relative).parts:
        exact = path / part
        if exact.exists():
            path = exact
            continue
        try:
            names = [e.name for e in os.scandir(path)] if path.is_dir() else []
        except OSError:
            return None
        match = sorted(n for n in names if n.lower() == part.lower())
        if not match:
            return None
        path = path / match[0]
    return path


def _candidate_paths(root: Path, candidates: Sequence[str]) -> list[Path]:
    paths = [p for p in (child(root, c) for c in candidates) if p is not None]
    if root.name.lower() in {Path(c).name.lower() for c in candidates}:
        paths.append(root)
    return paths


def locate(root: Path, candidates: Sequence[str], markers: Sequence[str]) -> Path | None:
    """The first candidate folder under ``root`` (or ``root`` itself, by name) holding any marker."""
    for path in _candidate_paths(root, candidates):
        if path.is_dir() and any(child(path, m) is not None for m in markers):
            return path
    return None


def find_folder(
    dataset: str,
    root: Path,
    candidates: Sequence[str],
    markers: Sequence[str],
    layout: str,
    title: str,
) -> Path:
    """The first candidate folder under ``root`` holding any of ``markers`` (split folders, lists).

    ``root`` itself counts when its name is the last component of a candidate (the user pointed
    at the dataset folder). Errors say where the loader looked and, when ``root`` itself looks
    like a dataset folder of another name, that its parent is the data root.
    """
    found = locate(root, candidates, markers)
    if found is not None:
        return found
    paths = _candidate_paths(root, candidates)
    looked = ", ".join(f"{c}/" for c in candidates)
    existing = [p for p in paths if p.is_dir()]
    if existing:
        raise DatasetError(
            dataset,
            f"{existing[0]} holds none of {', '.join(markers)} (an incomplete extraction?)",
            layout,
        )
    hint = ""
    if any((root / m).exists() for m in markers):
        hint = f"; {root} itself looks like the dataset folder: name it {candidates[0]}/ and pass its parent"
    raise DatasetError(dataset, f"no {title} folder in data root {root} (looked for {looked}){hint}", layout)


def require_dir(dataset: str, folder: Path, name: str, layout: str) -> Path:
    """``folder/name`` as an existing folder, or a missing-split error naming it."""
    path = child(folder, name)
    if path is None or not path.is_dir():
        raise DatasetError(dataset, f"missing split folder {folder / name}", layout)
    return path


def require_file(dataset: str, folder: Path, name: str, layout: str, why: str = "") -> Path:
    """``folder/name`` as an existing file, or an error naming it (``why`` is appended)."""
    path = child(folder, name)
    if path is None or not path.is_file():
        raise DatasetError(dataset, f"missing file {folder / name}{why}", layout)
    return path


def is_hidden(name: str) -> bool:
    return name.startswith(HIDDEN_PREFIXES)


def list_images(dataset: str, folder: Path, exts: Sequence[str], layout: str) -> list[File]:
    """Image files directly in ``folder`` with one of ``exts`` (case-insensitive), sorted by name.

    Dot files (including macOS ``._`` forks), other extensions (``Thumbs.db``) and sub-folders are
    ignored; a folder with no image is an error that says what it holds instead.
    """
    files: list[File] = []
    subdirs = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if is_hidden(entry.name):
                continue
            if entry.is_dir():
                subdirs += 1
            elif os.path.splitext(entry.name)[1].lower() in exts:
                st = entry.stat()
                files.append(File(entry.path, st.st_size, st.st_mtime_ns))
    if not files:
        held = f" (it holds {subdirs} sub-folders: extracted one level too deep?)" if subdirs else ""
        raise DatasetError(dataset, f"no {'/'.join(exts)} images in {folder}{held}", layout)
    files.sort(key=lambda f: f.path)
    return files


# ----------------------------------------------------------------------------------- file names
@dataclass(frozen=True)
class NamePattern:
    """How a dataset's file names carry the person and camera ids (parsed from the basename only).

    ``regex`` must capture the pid then the 1-based camera number at the start of the name.
    """

    regex: re.Pattern[str]
    example: str
    pids: tuple[int, int]
    cams: tuple[int, int]


def parse_name(dataset: str, path: str, pattern: NamePattern, layout: str) -> tuple[int, int]:
    """(raw pid, 0-based camid) from the file name; anything else is a one-line error naming it."""
    m = pattern.regex.match(os.path.basename(path))
    if m is None:
        raise DatasetError(
            dataset, f"cannot parse ids from file name {path} (expected names like {pattern.example})", layout
        )
    pid, cam = int(m.group(1)), int(m.group(2))
    if not pattern.pids[0] <= pid <= pattern.pids[1]:
        raise DatasetError(
            dataset,
            f"person id {pid} outside {pattern.pids[0]}..{pattern.pids[1]} in file name {path}",
            layout,
        )
    if not pattern.cams[0] <= cam <= pattern.cams[1]:
        raise DatasetError(
            dataset, f"camera {cam} outside {pattern.cams[0]}..{pattern.cams[1]} in file name {path}", layout
        )
    return pid, cam - 1


JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_image(dataset: str, file: File) -> None:
    """Cheap integrity check without decoding: a JPEG or PNG signature and its end marker.

    Catches empty files, non-images with an image extension and truncated downloads (the usual
    corruption); a file damaged in the middle is left to the decoder.
    """
    if file.size == 0:
        raise DatasetError(dataset, f"empty image file {file.path}")
    try:
        with open(file.path, "rb") as fh:
            head = fh.read(8)
            fh.seek(max(0, file.size - TAIL_BYTES))
            tail = fh.read()
    except OSError as exc:
        raise DatasetError(dataset, f"cannot read image {file.path}: {exc.strerror}") from None
    if head.startswith(JPEG_SOI):
        if JPEG_EOI not in tail:
            raise DatasetError(dataset, f"truncated or corrupt JPEG {file.path} (no end-of-image marker)")
    elif head.startswith(PNG_SIGNATURE):
        if b"IEND" not in tail:
            raise DatasetError(dataset, f"truncated or corrupt PNG {file.path} (no IEND chunk)")
    else:
        raise DatasetError(dataset, f"not a JPEG or PNG image: {file.path}")


# ---------------------------------------------------------------------------- splits and counts
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
            check_image(dataset, f)
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


@dataclass(frozen=True)
class Expected:
    """Ids and images of one split in the known release; None where the release number is unknown."""

    ids: int | None
    images: int | None


def check_counts(
    dataset: str,
    folder: Path,
    got: Mapping[str, tuple[int, int]],
    expected: Mapping[str, Expected],
    release: str,
) -> list[str]:
    """Compare (ids, images) per split with the release; warn once naming every split that differs.

    Returns the differing splits' descriptions (empty when all match).
    """
    diffs = []
    for split, exp in expected.items():
        ids, images = got[split]
        if (exp.ids is not None and ids != exp.ids) or (exp.images is not None and images != exp.images):
            want = f"{_n(exp.ids)} ids / {_n(exp.images)} images"
            diffs.append(f"{split} has {ids:,} ids / {images:,} images (release: {want})")
    if diffs:
        warnings.warn(
            DatasetCountWarning(
                f"{dataset}: {folder} differs from {release}: {'; '.join(diffs)}. A partial copy?"
            ),
            stacklevel=3,
        )
    return diffs


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def split_counts(splits: Mapping[str, Sequence[Sample]]) -> dict[str, tuple[int, int]]:
    return {name: (len({s.pid for s in samples}), len(samples)) for name, samples in splits.items()}


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
