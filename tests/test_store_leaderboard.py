"""Results store (atomic, resumable, typed records) and the leaderboard files built from its records."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from fake_records import cell_records, craft_record

from advbench import leaderboard
from advbench.records import (
    CraftRecord,
    EvalRecord,
    FailedRecord,
    FitRecord,
    Record,
    from_json,
    to_json,
)
from advbench.store import ResultStore


def _craft(attack: str, source: str, eps: float = 16.0) -> CraftRecord:
    return craft_record(attack, source, eps)


def _cell(attack: str, source: str, targets: dict[str, float], eps: float = 16.0) -> list[Record]:
    return cell_records(_craft(attack, source, eps), targets)


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


# ------------------------------------------------------------------------------ intervals
def _with_ap(record: EvalRecord, clean_ap: list[float | None], adv_ap: list[float | None]) -> EvalRecord:
    import dataclasses

    mean = lambda v: 100 * sum(x for x in v if x is not None) / sum(x is not None for x in v)  # noqa: E731
    clean = dataclasses.replace(record.clean, mAP=mean(clean_ap))
    adv = dataclasses.replace(record.adv, mAP=mean(adv_ap))
    return dataclasses.replace(record, clean=clean, adv=adv, clean_ap=clean_ap, adv_ap=adv_ap)


def test_intervals_pair_each_row_with_its_white_box_row() -> None:
    import numpy as np

    from advbench.metrics.bootstrap import paired_intervals

    rng = np.random.default_rng(0)
    clean = [float(x) for x in rng.random(40)] + [None]  # the last query has no true match
    white_adv = [None if c is None else c * 0.2 for c in clean]
    other_clean = [float(x) for x in rng.random(40)] + [None]
    other_adv = [None if c is None else c * 0.7 for c in other_clean]
    craft, white, other = _cell("pgd", "a", {"a": 0.0, "b": 0.0})
    white = _with_ap(white, clean, white_adv)
    other = _with_ap(other, other_clean, other_adv)
    frame = leaderboard.results_frame([craft, white, other]).set_index("target_victim")
    assert (frame.loc["a", "transfer_rate_ci_low"], frame.loc["a", "transfer_rate_ci_high"]) == (1.0, 1.0)
    as_array = lambda v: np.array([np.nan if x is None else x for x in v])  # noqa: E731
    want = paired_intervals(
        as_array(other_clean),
        as_array(other_adv),
        white_clean_ap=as_array(clean),
        white_adv_ap=as_array(white_adv),
        seed=craft.seed,
    )
    for name, (low, high) in want.items():
        decimals = leaderboard.DECIMALS.get(f"{name}_ci_low", 2)
        assert frame.loc["b", f"{name}_ci_low"] == round(low, decimals)
        assert frame.loc["b", f"{name}_ci_high"] == round(high, decimals)
    assert frame.loc["b", "mAP_drop_ci_low"] < frame.loc["b", "mAP_drop"] < frame.loc["b", "mAP_drop_ci_high"]


def test_identical_clean_and_adversarial_ap_give_a_zero_interval_and_old_records_none(tmp_path: Path) -> None:
    craft, white = _cell("fgsm", "a", {"a": 0.0})
    same = [0.5, 0.25, 1.0, None, 0.75]
    frame = leaderboard.results_frame([craft, _with_ap(white, same, same)])
    assert (frame["mAP_drop_ci_low"].item(), frame["mAP_drop_ci_high"].item()) == (0.0, 0.0)
    old = leaderboard.results_frame(_cell("fgsm", "a", {"a": 10.0}))  # written before per-query AP
    assert len(old) == 1 and old.filter(like="_ci_").isna().all(axis=None)
    leaderboard.write([craft, _with_ap(white, same, same)], tmp_path)
    assert "± 0.00" in (tmp_path / "summary.md").read_text()
