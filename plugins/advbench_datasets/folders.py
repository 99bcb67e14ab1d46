"""Finding a release on disk: the data root, its dataset folders, split folders and image files.

Each path component is matched case-insensitively, and a folder that holds nothing usable is
an error saying what it holds instead. Nothing here writes to disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from advbench_datasets.errors import DatasetError

ENV_DATA = "ADVBENCH_DATA"
HIDDEN_PREFIXES = (".", "._")  # macOS resource forks (._0002_c1...jpg) and dot files are not images


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
