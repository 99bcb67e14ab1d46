"""Merging the results stores of several machines, and the leaderboard printed as terminal tables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from fake_records import CLEAN, cell_records, craft_record

from advbench import leaderboard, merge
from advbench.api import AdvbenchError
from advbench.cli import main
from advbench.records import CraftRecord, EvalRecord, FailedRecord, Record
from advbench.store import ResultStore

VICTIMS = ("v1", "v2")


def _records(machine: str, attacks: tuple[str, ...] = ("fgsm", "pgd"), eps: float = 8.0) -> list[Record]:
    """Every attack x source victim scored on both victims, as ``machine`` would record it: the
    results depend only on the cell; provenance, timings and local paths on the machine."""
    records: list[Record] = []
    for a, attack in enumerate(attacks):
        for s, source in enumerate(VICTIMS):
            craft = craft_record(
                attack,
                source,
                eps,
                source_checkpoint=f"/{machine}/ckpt/{source}.pt",
                perceptual={"ssim": 0.8, "ms_ssim": float("nan"), "linf": eps, "l2": 1.0, "l0": 0.9},
                sec_per_image=0.01 if machine == "a" else 0.5,
                n_query=8,
                batch_size=64 if machine == "a" else 8,
                adv_file=f"/{machine}/adv/{attack}-{source}.npy",
                provenance={"host": machine, "device": "cpu" if machine == "a" else "cuda"},
            )
            clean = dataclasses.replace(CLEAN, mAP=60.0 + s)
            adv = {t: 40.0 - 10 * a - (20.0 if t == source else 0.0) for t in VICTIMS}
            records += cell_records(craft, adv, clean=clean, n_gallery=40, provenance={"host": machine})
    return records


def _store(out: Path, records: list[Record]) -> Path:
    store = ResultStore(out / ".store")
    for record in records:
        store.put(record)
    return out


def _changed(records: list[Record], key: str, adv_mAP: float) -> list[Record]:
    return [
        dataclasses.replace(r, adv=dataclasses.replace(r.adv, mAP=adv_mAP))
        if r.key == key and isinstance(r, EvalRecord)
        else r
        for r in records
    ]


def test_merging_stores_with_the_same_results_keeps_each_record_once(tmp_path: Path, capsys) -> None:
    a = _store(tmp_path / "a", _records("a"))
    b = _store(tmp_path / "b", _records("b"))
    leaderboard.publish(a)
    assert main(["leaderboard", "merge", str(a), str(b / ".store"), "--out", str(tmp_path / "m")]) == 0
    assert "disagreement" not in capsys.readouterr().out
    merged = tmp_path / "m"
    assert (merged / "results.csv").read_bytes() == (a / "results.csv").read_bytes()
    assert (merged / "summary.md").read_bytes() == (a / "summary.md").read_bytes()
    assert len(list((merged / ".store").glob("*.json"))) == len(_records("a"))
    assert not (merged / "disagreements.csv").exists()


def test_merge_is_the_union_of_stores_holding_different_cells(tmp_path: Path) -> None:
    a = _store(tmp_path / "a", _records("a", attacks=("fgsm",)))
    b = _store(tmp_path / "b", _records("b", attacks=("fgsm", "pgd")))
    c = _store(tmp_path / "c", [*_records("c", eps=16.0), FailedRecord("x.failed", "x", "boom", "craft")])
    failed_elsewhere = FailedRecord("pgd-v1-8.failed", "synthetic | pgd", "CUDA out of memory", "craft")
    ResultStore(a / ".store").put(failed_elsewhere)  # machine a failed a cell that machine b finished
    merged, frame, problems = merge.merge_stores([a, b, c], tmp_path / "m")
    assert not merged.disagreements and problems == []
    assert sorted(frame.groupby(["attack", "eps"]).size().items()) == [
        (("fgsm", 8.0), 4),
        (("fgsm", 16.0), 4),
        (("pgd", 8.0), 4),
        (("pgd", 16.0), 4),
    ]
    assert merged.origin["fgsm-v1-8-v1"] == str(a) and merged.origin["pgd-v1-8-v1"] == str(b)
    stored = {p.stem for p in (tmp_path / "m" / ".store").glob("*.json")}
    assert "pgd-v1-8.failed" not in stored and "x.failed" in stored  # a failure nobody fixed is kept


def test_disagreeing_record_is_flagged_and_the_first_store_kept(tmp_path: Path, capsys) -> None:
    a = _store(tmp_path / "a", _records("a"))
    b = _store(tmp_path / "b", _changed(_records("b"), "pgd-v1-8-v2", adv_mAP=12.5))
    out = tmp_path / "m"
    assert main(["leaderboard", "merge", str(a), str(b), "--out", str(out)]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("disagreement:")]
    assert lines == [
        f"disagreement: synthetic | pgd | eps 8 | v1 -> v2: {a} vs {b}: adv.mAP 30.0 vs 12.5 "
        f"(kept {a}; record pgd-v1-8-v2)"
    ]
    report = pd.read_csv(out / "disagreements.csv")
    assert report[["key", "attack", "eps", "source_victim", "target_victim", "field"]].values.tolist() == [
        ["pgd-v1-8-v2", "pgd", 8, "v1", "v2", "adv.mAP"]
    ]
    assert report[["kept_value", "other_value"]].values.tolist() == [[30.0, 12.5]]
    results = pd.read_csv(out / "results.csv")  # still written, with the first store's number
    cell = results[
        (results["attack"] == "pgd") & (results["source_victim"] == "v1") & (results["target_victim"] == "v2")
    ]
    assert cell["adv_mAP"].tolist() == [30.0] and len(results) == 8
    # merging the merged folder again (it may be a STORE itself) with an agreeing store: no stale report
    assert main(["leaderboard", "merge", str(out), str(a), "--out", str(out)]) == 0
    assert not (out / "disagreements.csv").exists()


def test_every_differing_field_is_listed_and_provenance_paths_timings_are_not() -> None:
    kept = _records("a")[0]
    assert isinstance(kept, CraftRecord)
    other = dataclasses.replace(
        _records("b")[0], perceptual={**kept.perceptual, "ssim": 0.7}, attack_params={"steps": 20}
    )
    assert merge.differences(kept, _records("b")[0]) == []  # NaN ms_ssim equals NaN; machine fields ignored
    assert merge.differences(kept, other) == [("attack_params.steps", 10, 20), ("perceptual.ssim", 0.8, 0.7)]
    found = merge.merge_records([("a", [kept]), ("b", [other])]).disagreements
    assert [(d.cell, d.field) for d in found] == [
        ("synthetic | fgsm | eps 8 | v1 -> (craft)", "attack_params.steps"),
        ("synthetic | fgsm | eps 8 | v1 -> (craft)", "perceptual.ssim"),
    ]
    assert len(merge.disagreement_lines(found)) == 1  # one line per record and store


def test_merge_refuses_bad_stores(tmp_path: Path, capsys) -> None:
    a = _store(tmp_path / "a", _records("a"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdvbenchError, match="empty is neither a leaderboard folder"):
        merge.merge_stores([a, tmp_path / "empty"], tmp_path / "m")
    with pytest.raises(AdvbenchError, match="listed twice"):
        merge.merge_stores([a, a / ".store"], tmp_path / "m")
    other = _store(tmp_path / "other", _records("o", eps=2.0))
    with pytest.raises(AdvbenchError, match="already holds records"):
        merge.merge_stores([a], other)
    assert main(["leaderboard", "merge", str(a)]) == 2  # no --out: nowhere to merge into
    assert "needs STORE... and --out DIR" in capsys.readouterr().err


def test_leaderboard_prints_tables_filtered_by_dataset_and_attack(tmp_path: Path, capsys) -> None:
    a = _store(tmp_path / "a", _records("a"))
    assert main(["leaderboard", "--out", str(a)]) == 0
    out = capsys.readouterr().out
    assert out.count("Transfer synthetic / ") == 2 and "White-box mAP drop" in out
    assert (a / "results.csv").exists()
    assert main(["leaderboard", "--out", str(a), "--attack", "pgd", "--dataset", "synthetic"]) == 0
    lines = capsys.readouterr().out.splitlines()
    white = lines[lines.index("White-box mAP drop (points; columns: victim attacked and evaluated)") + 1 :][
        :2
    ]
    assert white[0].split() == ["dataset", "attack", "eps", "v1", "v2"]
    assert white[1].split() == [
        "synthetic",
        "pgd",
        "8",
        "50.00",
        "51.00",
    ]  # clean 60 and 61, white-box adv 10
    heading = next(i for i, line in enumerate(lines) if line.startswith("Transfer "))
    assert lines[heading].startswith("Transfer synthetic / pgd / eps 8: adversarial mAP")
    assert [line.split() for line in lines[heading + 1 : heading + 5]] == [
        ["v1", "v2"],
        ["source", "\\", "target"],
        ["v1", "10.00", "30.00"],
        ["v2", "30.00", "10.00"],
    ]
    assert not any("fgsm" in line for line in lines)
    assert main(["leaderboard", "--out", str(a), "--attack", "cw"]) == 2
    assert "--attack 'cw' has no row in this leaderboard; it holds fgsm, pgd" in capsys.readouterr().err


def _retrained(records: list[Record]) -> list[Record]:
    """The same cells recorded by a machine that trained its own victims: other weights, so other
    keys, and other clean scores."""
    out: list[Record] = []
    for r in records:
        if isinstance(r, CraftRecord):
            out.append(dataclasses.replace(r, key=f"{r.key}-own", source_weights_id="own"))
        elif isinstance(r, EvalRecord):
            clean = dataclasses.replace(r.clean, mAP=r.clean.mAP + 5)
            out.append(
                dataclasses.replace(
                    r,
                    key=f"{r.key}-own",
                    craft_key=f"{r.craft_key}-own",
                    target_weights_id="own",
                    clean=clean,
                )
            )
    return out


def test_the_same_cell_under_other_keys_is_flagged_and_the_first_store_shown(tmp_path: Path) -> None:
    a = _store(tmp_path / "a", _records("a"))
    b = _store(tmp_path / "b", _retrained(_records("b")))
    merged, frame, _ = merge.merge_stores([a, b], tmp_path / "ab")
    assert {(d.field, d.kept_value, d.other_value) for d in merged.disagreements} == {
        ("clean.mAP", "60.0", "65.0"),
        ("clean.mAP", "61.0", "66.0"),
    }
    assert len(merged.disagreements) == 8 and all(d.key.endswith("-own") for d in merged.disagreements)
    assert len(frame) == 8 and sorted(frame["clean_mAP"].unique()) == [60.0, 61.0]
    assert len(list((tmp_path / "ab" / ".store").glob("*.json"))) == 2 * len(_records("a"))  # none lost
    _, frame, _ = merge.merge_stores([b, a], tmp_path / "ba")
    assert sorted(frame["clean_mAP"].unique()) == [65.0, 66.0]
