"""Ids and images per split compared with the known release: a difference warns, never fails.

A user may well run on a subset on purpose, so :func:`check_counts` issues a single
:class:`~advbench_datasets.errors.DatasetCountWarning` naming every split that differs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from advbench.api import Sample
from advbench_datasets.errors import DatasetCountWarning


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
