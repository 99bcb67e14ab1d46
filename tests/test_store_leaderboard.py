"""Results store (atomic, resumable) and the leaderboard files built from its records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from advbench import leaderboard
from advbench.store import ResultStore


def _record(attack: str, source: str, targets: dict[str, float], eps: float = 16.0) -> dict:
    rows = []
    for target, adv in targets.items():
        rows.append(
            {
                "target_victim": target,
                "setting": "whitebox" if target == source else "transfer",
                "clean_mAP": 60.0,
                "adv_mAP": adv,
                "mAP_drop": 60.0 - adv,
                "rel_mAP_drop": (60 - adv) / 60,
                "transfer_rate": 1.0,
                "clean_rank1": 70.0,
                "adv_rank1": adv,
                "clean_rank5": 80.0,
                "adv_rank5": adv,
                "clean_rank10": 90.0,
                "adv_rank10": adv,
                "clean_mINP": 20.0,
                "adv_mINP": 1.0,
            }
        )
    return {
        "status": "ok",
        "rows": rows,
        "perceptual": {
            "ssim": 0.712345,
            "ms_ssim": 0.9,
            "ms_ssim_setting": "win3",
            "linf": 16.0,
            "l2": 3.2,
            "l0": 0.99,
        },
        "sec_per_image": 0.01,
        "n_query": 10,
        "n_gallery": 50,
        "input_size": [32, 16],
        "seed": 0,
        "quantized": True,
        "provenance": {"advbench_version": "0", "device": "cpu"},
        "cell": {
            "dataset": "synthetic",
            "attack": attack,
            "attack_params": {"steps": 10},
            "eps": eps,
            "source_victim": source,
            "fit_dataset": "synthetic",
            "key": f"{attack}-{source}-{eps}",
        },
    }


def test_store_roundtrip_and_failed_cells_are_not_done(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / ".store")
    store.put("a", _record("pgd", "v1", {"v1": 1.0}))
    store.put("b", {"status": "failed", "error": "RuntimeError: boom"})
    (tmp_path / ".store" / "c.json").write_text("{half a reco")  # a torn write from another tool
    assert (
        store.is_done("a") and not store.is_done("b") and not store.is_done("c") and not store.is_done("zz")
    )
    assert [r["status"] for r in store.records()] == ["ok", "failed"]
    assert not list((tmp_path / ".store").glob("*.tmp"))


def test_leaderboard_files_and_tables(tmp_path: Path) -> None:
    records = [
        _record("pgd", "v1", {"v1": 1.0, "v2": 40.0}),
        _record("pgd", "v2", {"v1": 50.0, "v2": 2.0}),
        _record("fgsm", "v1", {"v1": 5.0, "v2": 45.0}),
    ]
    frame = leaderboard.write(records, tmp_path)
    assert list(frame.columns) == leaderboard.COLUMNS and len(frame) == 6
    white = pd.read_csv(tmp_path / "whitebox.csv")
    assert (
        white.set_index("attack").loc["pgd", "v1"] == 59.0
        and white.set_index("attack").loc["pgd", "v2"] == 58.0
    )
    matrix = pd.read_csv(tmp_path / "transfer_synthetic_pgd_eps16.csv", index_col=0)
    assert matrix.loc["v1", "v2"] == 40.0 and matrix.loc["v2", "v1"] == 50.0
    assert pd.read_csv(tmp_path / "results.csv")["ssim"].iloc[0] == 0.7123
    assert "## White-box mAP drop" in (tmp_path / "summary.md").read_text()


def test_leaderboard_is_byte_identical_and_drops_stale_matrices(tmp_path: Path) -> None:
    records = [_record("pgd", "v1", {"v1": 1.0, "v2": 40.0}), _record("fgsm", "v1", {"v1": 5.0, "v2": 45.0})]
    leaderboard.write(records, tmp_path / "a")
    leaderboard.write(list(reversed(records)), tmp_path / "b")
    for name in ("results.csv", "whitebox.csv", "summary.md", "transfer_synthetic_fgsm_eps16.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    leaderboard.write(records[:1], tmp_path / "a")
    assert not (tmp_path / "a" / "transfer_synthetic_fgsm_eps16.csv").exists()
