"""The defence axis: plans, threats, adaptive crafts and defended scores, on the tiny grid."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_VICTIMS, tiny_cli

from advbench.cli import main
from advbench.config import RunConfig
from advbench.plan import AttackChoice, DefenceChoice, build_plan
from advbench.victims import VictimRef

JPEG = DefenceChoice("jpeg", "1", (("quality", 75),), ranking=False)
RERANK = DefenceChoice("rerank", "1", (("k1", 20),), ranking=True)
PGD = AttackChoice("pgd", None, "1", (("steps", 10),), learns=False)
GAN = AttackChoice("gan", None, "1", (("steps", 2),), learns=True)


def _ref(name: str) -> VictimRef:
    return VictimRef(
        name=name,
        dataset="synthetic",
        checkpoint=f"/cache/{name}.pt",
        weights_id=f"{name}-w",
        origin="cache",
        input_size=(32, 16),
        dataset_fingerprint="fp",
    )


def _plan(defences):
    refs = {"synthetic": [_ref("a"), _ref("b")]}
    return build_plan(RunConfig(eps=(8.0,)), [PGD, GAN], refs, defences=defences)


def test_undefended_keys_do_not_change_when_defences_join() -> None:
    plain, defended = _plan((None,)), _plan((None, JPEG, RERANK))
    keys = {c.craft.key: {e.key for e in c.evals} for c in plain.cells}
    undefended = {c.craft.key: {e.key for e in c.evals if e.defence is None} for c in defended.cells}
    for craft, evals in keys.items():
        assert undefended[craft] == evals
    assert {f.key for f in plain.fits} <= {f.key for f in defended.fits}
    assert all(c.detect is not None and c.detect.craft_key == c.craft.key for c in defended.cells)


def test_threats_per_defence() -> None:
    plan = _plan((None, JPEG, RERANK))
    # per (attack, source): the undefended craft and one adaptive craft through jpeg (rerank has no pixels)
    assert len(plan.cells) == 2 * 2 * 2
    for cell in plan.cells:
        threats = sorted({(e.defence.name if e.defence else "none", e.threat) for e in cell.evals})
        if cell.craft.defence is None:
            assert threats == [
                ("jpeg", "transfer-to-defended"),
                ("none", "none"),
                ("rerank", "transfer-to-defended"),
            ]
        else:
            assert cell.craft.defence == JPEG and threats == [("jpeg", "adaptive")]
            # a learning attack is fitted through the defence too, under its own key
            if cell.craft.attack.learns:
                assert cell.craft.fit is not None and cell.craft.fit.defence == JPEG
    assert len({c.craft.key for c in plan.cells}) == len(plan.cells)
    assert len({e.key for c in plan.cells for e in c.evals}) == sum(len(c.evals) for c in plan.cells)


@pytest.fixture(scope="module")
def defended_run(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    import os

    root = tmp_path_factory.mktemp("defended")
    cache = Path(os.environ.get("ADVBENCH_CACHE", root / "cache"))
    args = tiny_cli(cache, root / "out", "--attacks", "pgd", "--eps", "8", "--defences", "none,jpeg,rerank")
    assert main(args) == 0
    frame = pd.read_csv(root / "out" / "results.csv")
    frame.attrs["out"] = root / "out"
    return frame


def test_defended_run_rows(session_cache: Path, defended_run: pd.DataFrame) -> None:
    frame = defended_run
    got = frame.groupby(["defence", "threat"]).size().to_dict()
    # 2 sources x 2 targets per (defence, threat)
    assert got == {
        ("jpeg", "adaptive"): 4,
        ("jpeg", "transfer-to-defended"): 4,
        ("none", "none"): 4,
        ("rerank", "transfer-to-defended"): 4,
    }
    # detectability and intervals on every row
    for column in ("spectral_distance", "hf_share", "detector_auroc", "mAP_drop_ci_low", "mAP_drop_ci_high"):
        assert frame[column].notna().all(), column
    assert (frame["mAP_drop_ci_low"] <= frame["mAP_drop"] + 1e-9).all()
    assert (frame["mAP_drop"] <= frame["mAP_drop_ci_high"] + 1e-9).all()
    # clean mAP through jpeg is measured with the defence on: the same for both threats
    jpeg = frame[frame["defence"] == "jpeg"].set_index(["threat", "source_victim", "target_victim"])[
        "clean_mAP"
    ]
    pd.testing.assert_series_equal(
        jpeg["adaptive"].sort_index(), jpeg["transfer-to-defended"].sort_index(), check_names=False
    )


def test_plots_and_image_strips_are_written_and_linked(defended_run: pd.DataFrame) -> None:
    out = defended_run.attrs["out"]
    strips = sorted(p.name for p in (out / "plots").glob("strip_*.jpg"))
    # one strip per undefended craft (attack x source), none for adaptive crafts
    assert strips == [
        f"strip_synthetic_pgd_eps8_{v.replace('_', '-').replace(':', '-')}.jpg"
        for v in sorted(TINY_VICTIMS.split(","))
    ]
    summary = (out / "summary.md").read_text()
    assert all(f"(plots/{name})" in summary for name in strips)
    assert "(plots/transfer_synthetic_pgd_eps8.png)" in summary and "## Defences" in summary
    assert "±" in summary


def test_adaptive_pgd_through_jpeg_drops_at_least_the_non_adaptive(defended_run: pd.DataFrame) -> None:
    white = defended_run[(defended_run["setting"] == "whitebox") & (defended_run["defence"] == "jpeg")]
    drops = white.pivot_table(index="source_victim", columns="threat", values="mAP_drop")
    assert (drops["adaptive"] >= drops["transfer-to-defended"]).all(), drops


def test_ranking_defence_scores_rerank_all_three_distance_matrices() -> None:
    """defended_scores with re-ranking equals re-ranking float64 cosine distances built here, scored
    by the plain evaluation."""
    from advbench.api import ImageSplit
    from advbench.clean import CleanVictim
    from advbench.defences import defended_scores
    from advbench.metrics.reid import distance_matrix, evaluate, evaluate_queries, prepare_gallery
    from advbench_defences.rerank import KReciprocalRerank, k_reciprocal_rerank

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 16, generator=g)
    g_pids, q_pids = torch.arange(30) % 6, torch.arange(12) % 6
    gf = centres[g_pids] + 0.8 * torch.randn(30, 16, generator=g)
    qf = centres[q_pids] + 0.8 * torch.randn(12, 16, generator=g)
    g_cams, q_cams = torch.ones(30, dtype=torch.long), torch.zeros(12, dtype=torch.long)
    index = prepare_gallery(gf, g_pids, g_cams, "cosine")
    target = CleanVictim(_ref("a"), index, qf, evaluate_queries(qf, index, q_pids, q_cams))
    query = ImageSplit(torch.zeros(12, 3, 4, 4), q_pids, q_cams)
    defence = KReciprocalRerank(k1=5, k2=3, lambda_value=0.3)
    got, _ = defended_scores(
        defence, None, query, qf, target, query, None, protocol="market", seed=0, batch_size=4
    )
    dist = k_reciprocal_rerank(
        distance_matrix(qf, gf),
        distance_matrix(qf, qf),
        distance_matrix(gf, gf),
        k1=5,
        k2=3,
        lambda_value=0.3,
    )
    want = evaluate(dist, q_pids, g_pids, q_cams, g_cams)
    assert got.mAP == pytest.approx(want.mAP, abs=1e-5)
    assert got.cmc[:10] == pytest.approx(want.cmc[:10], abs=1e-6)
    assert got.mAP != pytest.approx(target.scores.mAP, abs=1e-4)  # re-ranking changed the ranking
