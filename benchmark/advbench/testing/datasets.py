"""The dataset rules: splits, labels, a fingerprint that follows the files, and the error of a missing root."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advbench.api import (
    AdvbenchError,
    DatasetSpec,
    ReidDataset,
)
from advbench.testing.common import ConformanceError, _fail


# ----------------------------------------------------------------------------------------- datasets
def _check_splits(name: str, data: ReidDataset) -> None:
    """The split rules: non-empty, 0-based camids, relabelled train pids, shared test ids, files exist."""
    fail = lambda rule, detail: _fail("dataset", name, rule, detail)  # noqa: E731
    if not isinstance(data, ReidDataset):
        raise fail("load must return an advbench.api.ReidDataset", type(data).__name__)
    sizes = {split: len(getattr(data, split)) for split in ("train", "query", "gallery")}
    if empty := [s for s, n in sizes.items() if n == 0]:
        raise fail("every split must be non-empty", f"{', '.join(empty)} empty ({sizes})")
    samples = [*data.train, *data.query, *data.gallery]
    cams = sorted({s.camid for s in samples})
    if cams[0] != 0:
        raise fail("camids must be 0-based (min 0)", f"got min {cams[0]}, camids {cams[:8]}")
    train_ids = sorted({s.pid for s in data.train})
    if train_ids != list(range(len(train_ids))) or data.num_train_pids != len(train_ids):
        raise fail(
            f"train pids must be relabelled to 0..N-1 (N = {len(train_ids)})",
            f"got pids {train_ids[:3]}...{train_ids[-1]}, num_train_pids {data.num_train_pids}",
        )
    query_ids, gallery_ids = {s.pid for s in data.query}, {s.pid for s in data.gallery}
    if not query_ids & gallery_ids:
        raise fail(
            "query and gallery must share identities",
            f"{len(query_ids)} query ids, {len(gallery_ids)} gallery ids, none in common",
        )
    if missing := [s.path for s in samples if not os.path.isfile(s.path)]:
        raise fail("every sample's file must exist", f"{len(missing)} missing, e.g. {missing[0]}")
    if not isinstance(data.fingerprint, str) or not data.fingerprint:
        raise fail("fingerprint must be a non-empty string", repr(data.fingerprint))


def _rewrite(path: Path) -> None:
    """Change one file's content (an image stays decodable) and move its mtime on by 2 s."""
    stat = path.stat()
    try:
        from PIL import Image

        with Image.open(path) as img:
            fmt, pixels = img.format, img.convert("RGB")
        value = pixels.getpixel((0, 0))
        pixels.putpixel((0, 0), tuple(255 - c for c in value))
        pixels.save(path, format=fmt, quality=95)
    except Exception:  # not an image: append a byte
        with path.open("ab") as handle:
            handle.write(b"\0")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def _check_fingerprint_follows_files(
    spec: DatasetSpec, root: Path, cache_dir: Path, params: Mapping[str, Any]
) -> None:
    """Load a copy of ``root``, change one sample file there, reload: the fingerprint must change."""
    fail = lambda rule, detail: _fail("dataset", spec.name, rule, detail)  # noqa: E731
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        copy = Path(tmp) / "root"
        shutil.copytree(root, copy, symlinks=True)
        before = spec.load(copy, cache_dir, **params)
        inside = [Path(s.path) for s in before.query if Path(s.path).resolve().is_relative_to(copy.resolve())]
        if not inside:
            raise fail(
                "samples must be files under the data root", f"no query file lies under the root {copy}"
            )
        _rewrite(inside[0])
        after = spec.load(copy, cache_dir, **params)
        if after.fingerprint == before.fingerprint:
            raise fail(
                "fingerprint must change when a file changes",
                f"still {before.fingerprint} after rewriting {inside[0].relative_to(copy)}",
            )


def _check_missing_root(spec: DatasetSpec, cache_dir: Path, params: Mapping[str, Any]) -> None:
    """Loading from a root that does not exist must raise AdvbenchError naming it."""
    missing = cache_dir / "no-such-data-root"
    try:
        spec.load(missing, cache_dir, **params)
    except AdvbenchError as exc:
        if str(missing) not in str(exc):
            raise _fail(
                "dataset", spec.name, "a missing root must raise AdvbenchError naming the path", f"got {exc}"
            ) from exc
        return
    except Exception as exc:
        raise _fail(
            "dataset",
            spec.name,
            "a missing root must raise AdvbenchError naming the path",
            f"got {type(exc).__name__}: {exc}",
        ) from exc
    raise _fail(
        "dataset", spec.name, "a missing root must raise AdvbenchError naming the path", f"{missing} loaded"
    )


def check_dataset(
    spec: DatasetSpec,
    root: Path | str | None,
    *,
    cache_dir: Path | str,
    params: Mapping[str, Any] | None = None,
) -> ReidDataset:
    """Load ``spec`` from ``root`` (None for an embedded dataset) into ``cache_dir`` and check the dataset rules.

    Returns the loaded dataset. For a dataset read from a root, the root is copied once to check the
    fingerprint: pass a small tree.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    merged = {**spec.defaults, **(params or {})}
    if root is None and not spec.embedded:
        raise ConformanceError(
            f"dataset {spec.name!r} reads a data root: pass root=<a small tree> to check it"
        )
    data = spec.load(Path(root) if root is not None else None, cache, **merged)
    _check_splits(spec.name, data)
    again = spec.load(Path(root) if root is not None else None, cache, **merged)
    if again.fingerprint != data.fingerprint:
        raise _fail(
            "dataset",
            spec.name,
            "fingerprint must be stable across loads",
            f"{data.fingerprint} != {again.fingerprint}",
        )
    if root is not None:
        _check_fingerprint_follows_files(spec, Path(root), cache, merged)
        _check_missing_root(spec, cache, merged)
    return data
