"""What ``advbench datasets`` shows: for every dataset spec, where it looked, what it found, counts.

Generic over :class:`~advbench.api.DatasetSpec` (the CLI passes the registry's specs and never
names a plugin). Real datasets are loaded with their defaults, except that a spec with an
``extract`` parameter gets ``extract=False`` so that listing never starts a long extraction.
Embedded datasets are not generated: they need no data root.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from advbench.api import AdvbenchError, DatasetSpec
from advbench_datasets.errors import DatasetNotReady
from advbench_datasets.folders import ENV_DATA

STATES = ("ok", "differs", "not ready", "unavailable", "embedded", "broken")


@dataclass(frozen=True)
class DatasetStatus:
    """One dataset's line in ``advbench datasets``.

    ``state``: ``ok`` (counts match the release), ``differs`` (loads, counts differ: see
    ``notes``), ``not ready`` (found, needs a one-off preparation such as CUHK03 extraction),
    ``unavailable`` (not found or malformed: ``message`` says where it looked and why),
    ``embedded`` (generated on demand), ``broken`` (the loader raised an unexpected exception).
    """

    name: str
    state: str
    description: str
    folder: str = ""
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    info: dict[str, object] = field(default_factory=dict)


def report(
    specs: Iterable[DatasetSpec], data_root: Path | str | None, cache_dir: Path
) -> list[DatasetStatus]:
    """Try every spec against ``data_root`` (None: ``$ADVBENCH_DATA`` or nothing) and describe it."""
    return [dataset_status(spec, data_root, cache_dir) for spec in specs]


def dataset_status(spec: DatasetSpec, data_root: Path | str | None, cache_dir: Path) -> DatasetStatus:
    """Load one spec with its defaults (no extraction) and turn the outcome into a status."""
    if spec.embedded:
        return DatasetStatus(
            spec.name, "embedded", spec.description, message="generated on first use; no data root needed"
        )
    params = {"extract": False} if "extract" in spec.defaults else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = spec.load(Path(data_root) if data_root else None, Path(cache_dir), **params)
        except DatasetNotReady as exc:
            return DatasetStatus(spec.name, "not ready", spec.description, message=_first_line(exc))
        except AdvbenchError as exc:
            return DatasetStatus(spec.name, "unavailable", spec.description, message=_first_line(exc))
        except Exception as exc:  # a third-party loader's bug must not hide the other datasets
            return DatasetStatus(
                spec.name, "broken", spec.description, message=f"{type(exc).__name__}: {exc}"
            )
    notes = tuple(_first_line(w.message) for w in caught)
    return DatasetStatus(
        spec.name,
        "differs" if notes else "ok",
        spec.description,
        folder=str(ds.root),
        counts=ds.counts(),
        notes=notes,
        info=dict(ds.info),
    )


def format_report(statuses: Iterable[DatasetStatus], data_root: Path | str | None, source: str = "") -> str:
    """Plain-text table for the terminal: a header with the data root, then 1-3 lines per dataset."""
    where = (
        f"{data_root} ({source})"
        if data_root and source
        else str(data_root or f"not set (--data-root or {ENV_DATA})")
    )
    lines = [f"data root: {where}"]
    statuses = list(statuses)
    width = max((len(s.name) for s in statuses), default=8) + 2
    for s in statuses:
        detail = s.folder or s.message
        lines.append(f"{s.name:<{width}}{s.state:<13}{detail}")
        if s.counts:
            c = s.counts
            lines.append(
                " " * width
                + " · ".join(
                    f"{k} {c[f'{k}_ids']:,} ids / {c[f'{k}_images']:,} images"
                    for k in ("train", "query", "gallery")
                )
            )
        lines.extend(" " * width + "! " + note for note in s.notes)
    return "\n".join(lines)


def _first_line(exc: object) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
