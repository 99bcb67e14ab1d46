"""The results store: one JSON record per finished cell, written atomically, read back on rerun.

A cell is (dataset, attack with its parameters and eps, source victim). Its record holds one row
per target victim. Records are written to a temporary name and renamed, so a run killed at any
point leaves only whole records, and a rerun skips exactly the cells already finished. A failed
cell is recorded too (status ``failed`` with the message) and is tried again on the next run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    _atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename."""
    _atomic_write(path, lambda f: torch.save(obj, f))


class ResultStore:
    """Cell records under ``root`` (``<out>/.store``), one ``<key>.json`` each."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # unreadable record: treat the cell as not done

    def is_done(self, key: str) -> bool:
        record = self.get(key)
        return record is not None and record.get("status") == "ok"

    def put(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_text(self._path(key), json.dumps(record, indent=1, sort_keys=True, default=str))

    def records(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.root.glob("*.json")):
            record = self.get(path.stem)
            if record is not None:
                yield record
