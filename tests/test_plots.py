"""Leaderboard plots: transfer heatmaps, eps curves and image strips written as real PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_records import cell_records, craft_record
from matplotlib.colors import to_rgba
from PIL import Image

from advbench import leaderboard, plots
from advbench.api import AdvbenchError
from advbench.records import Record

VICTIMS = ("v1", "v2", "v3")


def _cell(attack: str, source: str, eps: float, adv: dict[str, float]) -> list[Record]:
    craft = craft_record(
        attack,
        source,
        eps,
        attack_params={},
        source_checkpoint="ckpt",
        perceptual={"ssim": 0.9, "ms_ssim": 0.9, "linf": eps, "l2": 1.0, "l0": 0.9},
        n_query=8,
        batch_size=8,
        adv_file="adv.npy",
        provenance={},
    )
    return cell_records(craft, adv, n_gallery=40)


def _frame(attacks: tuple[str, ...] = ("fgsm", "pgd"), eps: tuple[float, ...] = (4.0, 16.0)) -> pd.DataFrame:
    """Every attack x eps x source victim, each scored on every victim (white-box hardest)."""
    records: list[Record] = []
    for a, attack in enumerate(attacks):
        for e in eps:
            for s, source in enumerate(VICTIMS):
                adv = {t: 50.0 - e - a - (20.0 if t == source else s) for t in VICTIMS}
                records += _cell(attack, source, e, adv)
    return leaderboard.results_frame(records)


def _is_png(path: Path, min_bytes: int = 5_000) -> tuple[int, int]:
    assert path.stat().st_size > min_bytes, f"{path} is suspiciously small"
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_heatmap_annotates_every_cell_with_the_table_value(tmp_path: Path) -> None:
    frame = _frame()
    table = leaderboard.transfer_tables(frame)[("synthetic", "pgd", 16.0)]
    table.loc["v2", "v3"] = float("nan")  # a cell not evaluated is shown as a dash, not as a number
    fig = plots.heatmap_figure(table, title="pgd")
    ax = fig.axes[0]
    shown = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    expected = {
        (i, j): "–" if pd.isna(v) else f"{v:.1f}"
        for i, row in enumerate(table.to_numpy())
        for j, v in enumerate(row)
    }
    assert shown == expected
    assert shown[(0, 0)] == "13.0" and shown[(0, 1)] == "33.0"  # white-box v1 and v1 -> v2
    framed = sorted((round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in ax.patches)
    assert framed == [(0, 0), (1, 1), (2, 2)]  # the white-box diagonal, by name
    assert ax.get_xlabel() == "target (evaluated on)" and ax.get_ylabel() == "source (crafted on)"
    assert fig.axes[1].get_ylabel() == plots.TRANSFER_UNIT  # the colourbar says what the numbers are
    width, height = _is_png(plots.transfer_heatmap(table, tmp_path / "h.png", title="pgd"))
    assert width > 400 and height > 300


def test_heatmap_frames_the_diagonal_by_name_when_sources_are_a_subset() -> None:
    table = pd.DataFrame([[5.0, 30.0, 31.0]], index=["v2"], columns=list(VICTIMS))
    ax = plots.heatmap_figure(table, title="one source").axes[0]
    assert [(round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in ax.patches] == [(1, 0)]


def test_eps_curves_draw_one_line_per_attack_and_source_plus_clean(tmp_path: Path) -> None:
    frame = _frame()
    ax = plots.eps_figure(frame, dataset="synthetic").axes[0]
    labels = sorted(line.get_label() for line in ax.get_lines())
    assert labels == sorted(
        [f"{a} on {v}" for a in ("fgsm", "pgd") for v in VICTIMS] + [f"clean {v}" for v in VICTIMS]
    )
    pgd_v1 = next(line for line in ax.get_lines() if line.get_label() == "pgd on v1")
    assert list(pgd_v1.get_xdata()) == [4.0, 16.0] and list(pgd_v1.get_ydata()) == [25.0, 13.0]
    _is_png(plots.eps_curves(frame, tmp_path / "eps.png", dataset="synthetic"))
    with pytest.raises(AdvbenchError, match="market1501"):
        plots.eps_figure(frame, dataset="market1501")


def test_write_plots_one_heatmap_per_matrix_and_eps_curves_only_with_several_eps(tmp_path: Path) -> None:
    paths = plots.write_plots(_frame(), tmp_path)
    names = [p.name for p in paths]
    assert names == sorted(
        ["eps_synthetic.png"]
        + [f"transfer_synthetic_{a}_eps{e}.png" for a in ("fgsm", "pgd") for e in (4, 16)]
    )
    assert paths == sorted(paths) and all(p.parent == tmp_path / "plots" for p in paths)
    for path in paths:
        _is_png(path)
    # a later leaderboard with one eps: no eps curve, and the plots of vanished cells are removed
    again = plots.write_plots(_frame(attacks=("pgd",), eps=(8.0,)), tmp_path)
    assert [p.name for p in again] == ["transfer_synthetic_pgd_eps8.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["transfer_synthetic_pgd_eps8.png"]
    assert plots.write_plots(leaderboard.results_frame([]), tmp_path / "empty") == []


def _example(pid: int, rng: np.random.Generator, k: int = 5) -> plots.StripExample:
    clean = rng.random((32, 16, 3))
    adv = np.clip(clean + rng.uniform(-4 / 255, 4 / 255, clean.shape), 0, 1)
    gallery = [rng.random((32, 16, 3)) for _ in range(k)]
    return plots.StripExample(
        clean=clean,
        adv=adv,
        pid=pid,
        before=gallery,
        before_match=[True, True, False, True, False][:k],
        after=gallery[::-1],
        after_match=[False] * k,
    )


def test_image_strip_layout_frames_and_headers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    examples = [_example(3, rng), _example(7, rng)]
    fig = plots.strip_figure(examples, title="pgd on v1")
    assert len(fig.axes) == 2 * 13
    headers = [ax.get_title().replace("\n", " ") for ax in fig.axes[:13]]
    assert headers == plots.strip_headers(5)
    assert headers[:4] == ["clean query", "perturbation (amplified)", "adversarial", "rank 1 before"]
    assert headers[-1] == "rank 5 after"
    frames = [ax.spines["top"].get_edgecolor() for ax in fig.axes[3:13]]
    green, red = (tuple(round(c, 3) for c in to_rgba(x)) for x in (plots.MATCH, plots.MISMATCH))
    assert [tuple(round(c, 3) for c in f) for f in frames] == [green, green, red, green, red] + [red] * 5
    assert not fig.axes[0].spines["top"].get_visible()  # the query itself has no frame
    width, height = _is_png(plots.image_strip(examples, tmp_path / "strip.png", title="pgd on v1"))
    assert width > height


def test_a_targeted_strip_shows_the_chosen_candidates_with_their_ranks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    examples = []
    for pid, ranks in ((3, [(40, 2), (17, 1), (55, 30)]), (7, [(9, 4), (61, 8), (23, 3)])):
        example = _example(pid, rng)
        example.chosen = [rng.random((32, 16, 3)) for _ in ranks]
        example.chosen_ranks = ranks
        example.after_chosen = [True, False, True, False, False]
        examples.append(example)
    fig = plots.strip_figure(examples, title="rank-pgd on v1")
    assert len(fig.axes) == 2 * 11  # 3 query columns, 3 chosen, top-5 after
    headers = [ax.get_title().replace("\n", " ") for ax in fig.axes[:11]]
    assert headers == plots.strip_headers(5, 3)
    assert headers[3:6] == ["chosen 1", "chosen 2", "chosen 3"] and headers[6] == "rank 1 after"
    assert [ax.get_xlabel() for ax in fig.axes[14:17]] == ["rank 9 → 4", "rank 61 → 8", "rank 23 → 3"]
    blue, red = (tuple(round(c, 3) for c in to_rgba(x)) for x in (plots.CHOSEN, plots.MISMATCH))
    frames = [tuple(round(c, 3) for c in ax.spines["top"].get_edgecolor()) for ax in fig.axes[3:11]]
    assert frames == [blue] * 3 + [blue, red, blue, red, red]  # chosen ones found in the top-5 after are blue
    assert "blue frame" in fig.texts[0].get_text()
    _is_png(plots.image_strip(examples, tmp_path / "targeted.png", title="rank-pgd on v1"))
    # every row of one strip shows the same number of chosen candidates, one rank pair each
    examples[1].chosen = examples[1].chosen[:2]
    with pytest.raises(AdvbenchError, match="pid 7: 2 chosen images, 3 chosen_ranks"):
        plots.strip_figure(examples, title="x")
    examples[1].chosen_ranks = examples[1].chosen_ranks[:2]
    with pytest.raises(AdvbenchError, match="pid 7: 2 chosen images where the first example has 3"):
        plots.strip_figure(examples, title="x")


def test_amplified_perturbation_spans_the_full_range_centred_on_grey() -> None:
    clean = np.full((4, 2, 3), 0.5)
    adv = clean.copy()
    adv[0, 0, 0], adv[1, 0, 0] = 0.5 + 2 / 255, 0.5 - 4 / 255
    shown = plots.amplified(clean, adv)
    assert shown.min() == pytest.approx(0.0) and shown[0, 0, 0] == pytest.approx(0.75)
    assert shown[2, 1, 2] == pytest.approx(0.5)
    assert np.all(plots.amplified(clean, clean) == 0.5)  # no perturbation: plain grey, no division by zero


def test_image_strip_rejects_ragged_examples(tmp_path: Path) -> None:
    example = _example(3, np.random.default_rng(0))
    example.after_match = example.after_match[:4]
    with pytest.raises(AdvbenchError, match="pid 3: 5 after images and 4 after_match"):
        plots.image_strip([example], tmp_path / "bad.png", title="x")
    assert not (tmp_path / "bad.png").exists()
