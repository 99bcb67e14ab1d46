"""The results store: one JSON record per finished unit of work, written atomically, read back on rerun.

Units are crafts (adversarial queries of one attack, eps and source victim), evaluations (a craft
scored on one target victim) and fits (see :mod:`advbench.records`). Each record is written to a
temporary name and renamed, so a run killed at any point leaves only whole records, and a rerun
skips exactly the units already finished. A failed unit is recorded too and tried again next run.
Only the driver process writes here; workers return records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from advbench.io import atomic_write_text
from advbench.records import Record, from_json, to_json


class ResultStore:
    """Records under ``root`` (``<out>/.store``), one ``<key>.json`` each."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.unreadable: dict[Path, str] = {}  # records that exist but hold no valid record

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> Record | None:
        """The record stored under ``key``; None when absent, unreadable or of an unknown kind.

        An existing file that is not a valid record (damaged, not JSON, not an object, another
        layout) counts as not done and is noted in :attr:`unreadable` for the caller to report.
        """
        path = self._path(key)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.unreadable[path] = type(exc).__name__
            return None
        try:
            record = from_json(json.loads(text))
        except ValueError as exc:
            self.unreadable[path] = type(exc).__name__
            return None
        if record is None:
            self.unreadable[path] = "not a record of this advbench version"
        return record

    def is_done(self, key: str) -> bool:
        record = self.get(key)
        return record is not None and record.kind != "failed"

    def put(self, record: Record) -> None:
        text = json.dumps(to_json(record), indent=1, sort_keys=True, default=str)
        atomic_write_text(self._path(record.key), text)

    def discard(self, key: str) -> None:
        """Remove the record under ``key`` (a failure that has since succeeded)."""
        self._path(key).unlink(missing_ok=True)

    def records(self) -> Iterator[Record]:
        """Every valid record, oldest file first (so that a newer record of the same result wins)."""

        def age(path: Path) -> tuple[int, str]:
            try:
                return path.stat().st_mtime_ns, path.name
            except OSError:
                return 0, path.name

        for path in sorted(self.root.glob("*.json"), key=age):
            record = self.get(path.stem)
            if record is not None:
                yield record

    def report(self) -> list[str]:
        """One line per unreadable record met so far."""
        return [
            f"unreadable store record {p}: {why}; treated as not done"
            for p, why in sorted(self.unreadable.items())
        ]
