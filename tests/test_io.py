"""Atomic writes: a reader sees the old file or the whole new one; failures leave nothing behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from advbench.io import NpyWriter, atomic_directory, atomic_write, atomic_write_text, clean_stale_temps


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    atomic_write_text(path, "old")

    def half(f) -> None:
        f.write(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, half)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_npy_writer_publishes_only_complete_arrays(tmp_path: Path) -> None:
    data = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3)
    path = tmp_path / "a.npy"
    with NpyWriter(path, data.shape, np.uint8, sync_every=1) as writer:  # a background sync per block
        for start in range(0, 5, 2):
            writer.write(data[start : start + 2])
        assert not path.exists()  # nothing visible before close
    assert np.array_equal(np.load(path), data)

    with (
        pytest.raises(ValueError, match="wrote 2 of 5 rows"),
        NpyWriter(tmp_path / "b.npy", data.shape, np.uint8) as w,
    ):
        w.write(data[:2])
    with pytest.raises(RuntimeError), NpyWriter(tmp_path / "c.npy", data.shape, np.uint8) as w:
        w.write(data[:2])
        raise RuntimeError("killed mid-way")
    with (
        pytest.raises(ValueError, match="does not fit"),
        NpyWriter(tmp_path / "d.npy", data.shape, np.uint8) as w,
    ):
        w.write(np.zeros((2, 3, 3), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["a.npy", "a.npy.sha256"]


def test_stale_temporaries_are_removed_recent_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    old, fresh = tmp_path / ".x.npy.111.tmp", tmp_path / ".x.npy.222.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    clean_stale_temps(path)
    assert not old.exists() and fresh.exists()


def test_atomic_directory(tmp_path: Path) -> None:
    final = tmp_path / "ds"
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "a.png").write_bytes(b"x")
        raise RuntimeError("generator crashed")
    assert os.listdir(tmp_path) == []
    with atomic_directory(final) as tmp:
        (tmp / "a.png").write_bytes(b"x")
    assert os.listdir(final) == ["a.png"] and os.listdir(tmp_path) == ["ds"]
