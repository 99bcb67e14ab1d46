"""Results store (atomic, resumable, typed records) and the leaderboard files built from its records."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from advbench import leaderboard
from advbench.records import (
    CraftRecord,
    EvalRecord,
    FailedRecord,
    FitRecord,
    Record,
    Scores,
    from_json,
    to_json,
)
from advbench.store import ResultStore


def _craft(attack: str, source: str, eps: float = 16.0) -> CraftRecord:
    return CraftRecord(
        key=f"{attack}-{source}-{eps:g}",
        dataset="synthetic",
        fit_dataset="synthetic",
        attack=attack,
        attack_params={"steps": 10},
        eps=eps,
        source_victim=source,
        source_checkpoint="/ckpt",
        source_weights_id="w",
        perceptual={
            "ssim": 0.712345,
            "ms_ssim": 0.9,
            "ms_ssim_setting": "win3",
            "linf": 16.0,
            "l2": 3.2,
            "l0": 0.99,
        },
        sec_per_image=0.01,
        fit_seconds=0.0,
        n_query=10,
        input_size=(32, 16),
        seed=0,
        quantized=True,
        batch_size=64,
        adv_file="/adv.npy",
        provenance={"advbench_version": "0", "device": "cpu"},
    )


def _cell(attack: str, source: str, targets: dict[str, float], eps: float = 16.0) -> list[Record]:
    craft = _craft(attack, source, eps)
    clean = Scores(mAP=60.0, rank1=70.0, rank5=80.0, rank10=90.0, mINP=20.0)
    evals = [
        EvalRecord(
            key=f"{craft.key}-{target}",
            craft_key=craft.key,
            dataset="synthetic",
            target_victim=target,
            target_weights_id="t",
            protocol="market",
            n_gallery=50,
            clean=clean,
            adv=Scores(mAP=adv, rank1=adv, rank5=adv, rank10=adv, mINP=1.0),
        )
        for target, adv in targets.items()
    ]
    return [craft, *evals]


def test_records_roundtrip_through_json() -> None:
    records = [*_cell("pgd", "v1", {"v1": 1.0}), FitRecord("f", "gan", "v1", "synthetic", 3.5)]
    records.append(FailedRecord("x.failed", "synthetic | pgd", "RuntimeError: boom", "craft"))
    for record in records:
        assert from_json(json.loads(json.dumps(to_json(record)))) == record
    assert from_json({"status": "ok", "rows": []}) is None  # a record of an older store layout
    assert from_json({"kind": "eval", "key": "k"}) is None  # fields missing


def test_store_roundtrip_and_failed_units_are_not_done(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / ".store")
    craft, ev = _cell("pgd", "v1", {"v1": 1.0})
    store.put(craft)
    store.put(ev)
    store.put(FailedRecord("b", "synthetic | fgsm", "RuntimeError: boom", "craft"))
    (tmp_path / ".store" / "c.json").write_text("{half a reco")  # a torn write from another tool
    (tmp_path / ".store" / "d.json").write_text('{"status": "ok"}')  # an older layout
    assert store.is_done(craft.key) and store.is_done(ev.key)
    assert not any(store.is_done(k) for k in ("b", "c", "d", "zz"))
    assert store.get(ev.key) == ev
    assert sorted(r.kind for r in store.records()) == ["craft", "eval", "failed"]
    store.discard("b")
    assert store.get("b") is None
    assert not list((tmp_path / ".store").glob("*.tmp"))


def test_leaderboard_files_and_tables(tmp_path: Path) -> None:
    records = [
        *_cell("pgd", "v1", {"v1": 1.0, "v2": 40.0}),
        *_cell("pgd", "v2", {"v1": 50.0, "v2": 2.0}),
        *_cell("fgsm", "v1", {"v1": 5.0, "v2": 45.0}),
    ]
    frame = leaderboard.write(records, tmp_path)
    assert list(frame.columns) == leaderboard.COLUMNS and len(frame) == 6
    white = pd.read_csv(tmp_path / "whitebox.csv").set_index("attack")
    assert white.loc["pgd", "v1"] == 59.0 and white.loc["pgd", "v2"] == 58.0
    matrix = pd.read_csv(tmp_path / "transfer_synthetic_pgd_eps16.csv", index_col=0)
    assert matrix.loc["v1", "v2"] == 40.0 and matrix.loc["v2", "v1"] == 50.0
    results = pd.read_csv(tmp_path / "results.csv").set_index(["attack", "source_victim", "target_victim"])
    assert results["ssim"].iloc[0] == 0.7123
    # transfer rate: the transfer drop over the same craft's white-box drop
    assert results.loc[("pgd", "v1", "v2"), "transfer_rate"] == round(20.0 / 59.0, 4)
    assert results.loc[("pgd", "v1", "v1"), "setting"] == "whitebox"
    assert "## White-box mAP drop" in (tmp_path / "summary.md").read_text()


def test_evaluations_without_their_craft_are_left_out(tmp_path: Path) -> None:
    craft, *evals = _cell("pgd", "v1", {"v1": 1.0, "v2": 40.0})
    assert leaderboard.results_frame(evals).empty
    assert len(leaderboard.results_frame([craft, *evals])) == 2


def test_leaderboard_is_byte_identical_and_drops_stale_matrices(tmp_path: Path) -> None:
    records = [*_cell("pgd", "v1", {"v1": 1.0, "v2": 40.0}), *_cell("fgsm", "v1", {"v1": 5.0, "v2": 45.0})]
    leaderboard.write(records, tmp_path / "a")
    leaderboard.write(list(reversed(records)), tmp_path / "b")
    for name in ("results.csv", "whitebox.csv", "summary.md", "transfer_synthetic_fgsm_eps16.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    leaderboard.write(records[:3], tmp_path / "a")
    assert not (tmp_path / "a" / "transfer_synthetic_fgsm_eps16.csv").exists()


def test_transfer_rate_is_undefined_without_a_positive_white_box_drop(tmp_path: Path) -> None:
    # the source's own drop is -5 (adversarial queries score better than clean ones on it)
    frame = leaderboard.results_frame(_cell("noise", "v1", {"v1": 65.0, "v2": 50.0})).set_index(
        "target_victim"
    )
    assert pd.isna(frame.loc["v2", "transfer_rate"]) and pd.isna(frame.loc["v1", "transfer_rate"])
    assert frame.loc["v2", "mAP_drop"] == 10.0 and frame.loc["v1", "fit_seconds"] == 0.0
