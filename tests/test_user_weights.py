"""A user's own checkpoint (``--victim-weights NAME=PATH``): keyed by its content, named in records.

Two files of one architecture never share a cache entry, and every record of a victim loaded from a
user's file carries the file's name and full SHA-256 (``source_info`` / ``target_info``).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_VICTIMS, tiny_cli

from advbench.cli import main
from advbench.records import CraftRecord, EvalRecord
from advbench.store import ResultStore

pytestmark = pytest.mark.slow


def _records(out: Path) -> list:
    return [r for r in ResultStore(out / ".store").records() if isinstance(r, (CraftRecord, EvalRecord))]


def test_user_checkpoint_is_keyed_by_content_and_named_in_records(
    session_cache: Path, tmp_path: Path
) -> None:
    victim = TINY_VICTIMS.split(",")[0]
    grid = ("--victims", victim, "--attacks", "fgsm", "--eps", "8")
    assert main([*tiny_cli(session_cache, tmp_path / "trained"), *grid]) == 0
    cached = next((session_cache / "victims").glob(f"{victim}__*.pt"))
    mine = tmp_path / "mine.pt"
    shutil.copyfile(cached, mine)
    sha = hashlib.sha256(mine.read_bytes()).hexdigest()

    assert (
        main([*tiny_cli(session_cache, tmp_path / "a"), *grid, "--victim-weights", f"{victim}={mine}"]) == 0
    )
    records = _records(tmp_path / "a")
    assert {type(r) for r in records} == {CraftRecord, EvalRecord}
    for r in records:
        info = r.source_info if isinstance(r, CraftRecord) else r.target_info
        assert info == {"file": "mine.pt", "sha256": sha}
    assert all(not r.source_info for r in _records(tmp_path / "trained") if isinstance(r, CraftRecord))

    # the same architecture from other weights: other keys, never the first file's cached crafts
    blob = torch.load(mine, weights_only=True)
    blob["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    other = tmp_path / "other.pt"
    torch.save(blob, other)
    assert (
        main([*tiny_cli(session_cache, tmp_path / "b"), *grid, "--victim-weights", f"{victim}={other}"]) == 0
    )
    keys_a = {r.key for r in records}
    keys_b = {r.key for r in _records(tmp_path / "b")}
    assert keys_a.isdisjoint(keys_b)
