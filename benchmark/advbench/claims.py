"""Claims on work: file locks that let runs sharing a cache or an output folder split the work.

Two ``advbench run`` on one cache must not train the same victim twice, and two on one output
folder must not compute the same cell twice. Before a unit of work (a victim training, an attack
fit, a cell) runs, its claim is taken with a file lock (the ``filelock`` package). Units another
run holds are set aside, waited for after the free ones, and then re-checked: usually the other
run finished them and there is nothing left to do. A claim dies with its process (the OS drops a
killed process's locks), so a crash never blocks a later run.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

T = TypeVar("T", bound=Hashable)


class Claims:
    """Locks named ``<folder>/<name>.lock``."""

    def __init__(self, folder: Path, log: Callable[[str], None]) -> None:
        self.folder = Path(folder)
        self.log = log

    def _lock(self, name: str) -> FileLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        return FileLock(self.folder / f"{name}.lock")

    def run(
        self,
        items: Sequence[T],
        name: Callable[[T], str],
        label: Callable[[T], str],
        work: Callable[[list[T]], Iterator[tuple[int, Any]]],
        refresh: Callable[[T], T | None],
    ) -> Iterator[tuple[T, Any]]:
        """Yield ``(item, outcome)`` for the items this run claims, each claim held while ``work``
        computes it and until the caller asks for the next item (so its outcome is stored before
        another run may look). Every item is ``refresh``-ed once its claim is held (None: another run did it,
        skipped with a note); an item another run holds is waited for first."""
        free, busy, locks = [], [], {}
        for item in items:
            lock = self._lock(name(item))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                busy.append(item)
                continue
            fresh = refresh(item)  # another run may have finished it since this run planned it
            if fresh is None:
                lock.release()
                self.log(f"{label(item)}: done by another run")
                continue
            locks[fresh] = lock
            free.append(fresh)
        try:
            for i, outcome in work(free):
                try:
                    yield free[i], outcome  # the caller stores the outcome before the claim is let go
                finally:
                    locks.pop(free[i]).release()
        finally:
            for lock in locks.values():
                lock.release()
        for item in busy:
            self.log(f"waiting for another run working on {label(item)}")
            with self._lock(name(item)):
                again = refresh(item)
                if again is None:
                    self.log(f"{label(item)}: done by another run")
                    continue
                for _, outcome in work([again]):
                    yield again, outcome
