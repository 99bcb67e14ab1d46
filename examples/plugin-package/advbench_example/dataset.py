"""``toy-reid``: a dataset read from a folder layout of the plugin author's own.

Layout (see :data:`LAYOUT`): ``<data-root>/toy-reid/{train,query,gallery}/<pid>/c<cam>_<n>.png``.
The person id is the folder name, the camera the number after ``c`` (1-based in names, 0-based in
:class:`~advbench.api.Sample`). Train pids are relabelled to ``0..N-1``; query and gallery keep the
raw ids, as the contract in :mod:`advbench.api` asks. Every problem is one line naming the path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from advbench.api import AdvbenchError, DatasetSpec, ReidDataset, Sample

NAME = "toy-reid"
VERSION = "1"
FOLDER = "toy-reid"
SPLITS = ("train", "query", "gallery")
ENV_DATA = "ADVBENCH_DATA"
FILE_RE = re.compile(r"c([1-9]\d*)_(\d+)\.(?:png|jpe?g)\Z", re.IGNORECASE)
LAYOUT = """\
<data-root>/toy-reid/
  train/<pid>/c<cam>_<n>.png     e.g. train/0001/c2_000.png (cameras 1-based)
  query/<pid>/c<cam>_<n>.png
  gallery/<pid>/c<cam>_<n>.png
make one with: python -m advbench_example.make_toy <data-root>"""


def _error(problem: str) -> AdvbenchError:
    return AdvbenchError(f"{NAME}: {problem}")


def dataset_folder(root: Path | str | None) -> Path:
    """``<root>/toy-reid`` as an existing folder; ``root`` defaults to ``$ADVBENCH_DATA``."""
    if root is None or str(root) == "":
        root = os.environ.get(ENV_DATA) or None
    if root is None:
        raise _error(f"no data root: pass --data-root PATH or set {ENV_DATA}")
    folder = Path(root).expanduser().absolute() / FOLDER
    if not folder.is_dir():
        raise _error(
            f"no folder {folder}: pass --data-root (or set {ENV_DATA}) to the folder holding {FOLDER}/, "
            "or create one with `python -m advbench_example.make_toy ROOT`"
        )
    return folder


def parse_file(path: Path) -> tuple[int, int]:
    """(raw pid, 0-based camid) of ``<pid>/c<cam>_<n>.png``; anything else is a one-line error."""
    m = FILE_RE.match(path.name)
    if m is None or not path.parent.name.isdigit():
        raise _error(f"bad file name {path}: expected <pid>/c<cam>_<n>.png such as 0007/c2_003.png")
    return int(path.parent.name), int(m.group(1)) - 1


def split_files(folder: Path, split: str) -> list[Path]:
    """Every image of one split, sorted; hidden files are skipped, other files are errors."""
    base = folder / split
    if not base.is_dir():
        raise _error(
            f"missing split folder {base}: expected {', '.join(s + '/' for s in SPLITS)} in {folder}"
        )
    files = sorted(p for p in base.glob("*/*") if not p.name.startswith("."))
    stray = sorted(p for p in base.iterdir() if p.is_file() and not p.name.startswith("."))
    if stray:
        raise _error(f"bad file name {stray[0]}: images go in a folder per person, <pid>/c<cam>_<n>.png")
    if not files:
        raise _error(f"no images in split folder {base}: expected <pid>/c<cam>_<n>.png")
    return files


def fingerprint(params: dict[str, Any], folder: Path, files: list[Path]) -> str:
    """Hash of the protocol and of every file's relative path, size and mtime: a changed file changes it."""
    h = hashlib.sha256(json.dumps([NAME, VERSION, params], sort_keys=True).encode())
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def relabel(samples: list[Sample]) -> list[Sample]:
    """Train pids mapped to ``0..N-1`` in sorted order of the raw ids."""
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [Sample(s.path, mapping[s.pid], s.camid) for s in samples]


def load(root: Path | str | None, cache_dir: Path | None = None, **params: Any) -> ReidDataset:
    """The toy-reid splits under ``root`` (``cache_dir`` is unused: nothing is generated or converted)."""
    if params:
        raise _error(f"unknown parameter {sorted(params)[0]!r}: toy-reid takes none")
    folder = dataset_folder(root)
    files = {split: split_files(folder, split) for split in SPLITS}
    samples = {split: [Sample(str(p), *parse_file(p)) for p in paths] for split, paths in files.items()}
    train = relabel(samples["train"])
    return ReidDataset(
        name=NAME,
        train=train,
        query=samples["query"],
        gallery=samples["gallery"],
        root=folder,
        fingerprint=fingerprint({}, folder, [p for paths in files.values() for p in paths]),
        num_train_pids=len({s.pid for s in train}),
        info={"folder": str(folder)},
    )


SPEC = DatasetSpec(
    name=NAME,
    description="toy-reid: the example plugin's own folder layout, <pid>/c<cam>_<n>.png per split",
    load=load,
    layout=LAYOUT,
    embedded=False,
    default=False,
    input_size=(64, 32),
    version=VERSION,
)
