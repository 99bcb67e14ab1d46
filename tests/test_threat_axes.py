"""The threat axes (side, goal, budget): data in the plan, keys of today's grid unchanged, columns
on every row, targeted crafts scored on the very candidates they were crafted for."""

from __future__ import annotations

import dataclasses

import pytest
from test_plan import GAN, PGD, _plan, _ref

from advbench.api import UNTARGETED_QUERY, AdvbenchError, ThreatModel
from advbench.config import RunConfig
from advbench.plan import threats_of
from advbench.plugins import get_registry
from advbench.validate import validate

# Keys of this grid as the code before threat axes (and defences) gave them, commit 0b08abd.
KEYS_BEFORE = {
    "crafts": [
        "a3d25aa27dd95d04714dcbfe",
        "b62ed2e05318b2b87883b61a",
        "7024dc18a34254eb8d3af1ce",
        "a10d07ea37b4db7c13fe7b31",
        "5b13b19d0d83661713304ff2",
        "50e120b434fe02921766c324",
        "a8c27fdca734416cd405543f",
        "abaa6679915d7587767f640d",
    ],
    "evals": [
        "10d7eb0031b597fea0c54cc3",
        "1ed63dc4fcf4f83833272cab",
        "4dd90152d1828237b0a8cf85",
        "ee6c049dafe6b9eb4f84179e",
    ],
    "fits": ["ea0ea7a7cda58cdd", "ca8d4318cf17fe37", "3f3fe0c66373e4be", "25d0ad9e5a094adb"],
}
TARGETED = ThreatModel("query", "targeted", "linf")
DEMOTE = ThreatModel("query", "demote", "linf")
RANKER = dataclasses.replace(PGD, name="ranker", threats=(TARGETED, DEMOTE))
BOTH = dataclasses.replace(PGD, name="both", threats=(UNTARGETED_QUERY, TARGETED))


def _keys(plan) -> dict[str, list[str]]:
    return {
        "crafts": [c.craft.key for c in plan.cells],
        "evals": [e.key for c in plan.cells for e in c.evals][:4],
        "fits": [f.key for f in plan.fits],
    }


@pytest.mark.parametrize(
    "axes", [{}, {"sides": ("query",), "goals": ("untargeted",)}, {"sides": ("query", "gallery")}]
)
def test_todays_grid_keeps_its_keys(axes: dict) -> None:
    plan = _plan([_ref("a"), _ref("b")], attacks=(PGD, GAN), eps=(4.0, 16.0), **axes)
    assert _keys(plan) == KEYS_BEFORE
    assert all(c.craft.threat_model == UNTARGETED_QUERY and c.craft.n_targets == 0 for c in plan.cells)


def test_attacks_are_paired_only_with_the_threats_they_list_and_the_run_selects() -> None:
    default = _plan([_ref("a")], attacks=(PGD, RANKER, BOTH))
    assert [(c.craft.attack.name, c.craft.threat_model.goal) for c in default.cells] == [
        ("pgd", "untargeted"),
        ("both", "untargeted"),
    ]
    wide = _plan([_ref("a")], attacks=(PGD, RANKER, BOTH), goals=("untargeted", "targeted", "demote"))
    pairs = [(c.craft.attack.name, c.craft.threat_model.goal) for c in wide.cells]
    assert pairs == [
        ("pgd", "untargeted"),
        ("ranker", "targeted"),
        ("ranker", "demote"),
        ("both", "untargeted"),
        ("both", "targeted"),
    ]
    # widening the goals adds crafts and changes none of the untargeted ones
    assert {c.craft.key for c in default.cells} <= {c.craft.key for c in wide.cells}
    targeted = [c.craft for c in wide.cells if c.craft.targeted]
    assert all(t.n_targets == 5 for t in targeted)
    assert all(c.detect is None for c in wide.cells if c.craft.targeted)  # no train targets to detect with
    assert len({t.key for t in targeted}) == len(targeted)


def test_the_number_of_candidates_is_part_of_a_targeted_key_only() -> None:
    goals = ("untargeted", "targeted")
    five = _plan([_ref("a")], attacks=(BOTH,), goals=goals)
    three = _plan([_ref("a")], attacks=(BOTH,), goals=goals, targets_per_query=3)
    assert five.cells[0].craft.key == three.cells[0].craft.key
    assert five.cells[1].craft.key != three.cells[1].craft.key
    assert three.cells[1].craft.n_targets == 3


def test_gallery_side_crafts_are_planned_undefended_with_their_own_keys() -> None:
    from advbench.plan import DefenceChoice, build_plan

    gallery = ThreatModel("gallery", "targeted", "linf")
    choice = dataclasses.replace(
        PGD, name="cand", threats=(gallery, ThreatModel("gallery", "untargeted", "linf"))
    )
    assert threats_of(choice, RunConfig(sides=("query",), goals=("targeted",))) == []
    both = RunConfig(sides=("query", "gallery"), goals=("untargeted", "targeted"))
    assert threats_of(choice, both) == [gallery]  # a gallery side needs chosen targets
    jpeg = DefenceChoice("jpeg", "1", (), ranking=False)

    config = RunConfig(eps=(8.0,), sides=("gallery",), goals=("targeted",), gallery_images=7)
    defended = build_plan(config, [choice], {"synthetic": [_ref("a"), _ref("b")]}, defences=(None, jpeg))
    assert [c.craft.threat_model for c in defended.cells] == [gallery, gallery]
    assert all(e.defence is None for c in defended.cells for e in c.evals)
    assert all(c.craft.gallery_images == 7 and c.detect is None for c in defended.cells)
    fewer = build_plan(dataclasses.replace(config, gallery_images=5), [choice], {"synthetic": [_ref("a")]})
    assert fewer.cells[0].craft.key != defended.cells[0].craft.key


def test_patch_threats_need_the_patch_budget_and_are_crafted_once_per_area() -> None:
    patch = ThreatModel("query", "untargeted", "patch")
    mixed = dataclasses.replace(PGD, name="mixed", threats=(UNTARGETED_QUERY, patch))
    default = _plan([_ref("a")], attacks=(mixed,), eps=(4.0, 16.0))
    assert [c.craft.threat_model for c in default.cells] == [UNTARGETED_QUERY] * 2
    wide = _plan(
        [_ref("a")], attacks=(mixed,), eps=(4.0, 16.0), budgets=("linf", "patch"), patch_areas=(0.05, 0.1)
    )
    crafts = [c.craft for c in wide.cells]
    assert [(c.threat_model.budget, c.eps, c.patch_area) for c in crafts] == [
        ("linf", 4.0, None),
        ("linf", 16.0, None),
        ("patch", 255.0, 0.05),
        ("patch", 255.0, 0.1),
    ]
    assert [c.key for c in crafts[:2]] == [c.craft.key for c in default.cells]
    assert len({c.key for c in crafts}) == 4
    assert crafts[2].attack.build_kwargs(crafts[2].eps, crafts[2].patch_area)["area"] == 0.05


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sides", ("probe",), "unknown --side 'probe'"),
        ("goals", ("targetted",), "Did you mean targeted"),
        ("goals", (), "--goal expects one or more of"),
        ("targets_per_query", 0, "--targets-per-query must be >= 1"),
        ("budgets", ("l2",), "unknown --budget 'l2'"),
        ("patch_areas", (1.5,), "--patch-area values must lie in"),
        ("patch_areas", (0.1, 0.1), "more than once"),
        ("gallery_images", 0, "--gallery-images must be >= 1"),
    ],
)
def test_bad_axes_are_one_line_errors(tmp_path, field: str, value, message: str) -> None:
    config = RunConfig(out=tmp_path, cache_dir=tmp_path / "cache", **{field: value})
    with pytest.raises(AdvbenchError, match=message) as info:
        validate(config, get_registry())
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ end to end
def _jpeg_size(path) -> tuple[int, int]:
    """(width, height) of a JPEG, from the pixels matplotlib reads back."""
    from matplotlib.image import imread

    height, width = imread(path).shape[:2]
    return width, height


@pytest.mark.slow
def test_targeted_and_demote_rows_on_the_tiny_grid(session_cache, tmp_path) -> None:
    """rank-pgd pushes its chosen candidates up (targeted) and down (demote) on the white-box victim;
    the untargeted rows of the same run equal those of a run without --goal."""
    import pandas as pd
    from conftest import TINY_VICTIMS, tiny_cli

    from advbench.cli import main
    from advbench.records import CraftRecord
    from advbench.store import ResultStore

    grid = ("--eps", "8", "--attacks", "pgd,rank-pgd")
    wide = tmp_path / "wide"
    assert main([*tiny_cli(session_cache, wide), *grid, "--goal", "untargeted,targeted,demote"]) == 0
    assert main([*tiny_cli(session_cache, tmp_path / "plain"), *grid]) == 0
    timing = ["sec_per_image", "fit_seconds"]
    frame = pd.read_csv(wide / "results.csv")
    plain = pd.read_csv(tmp_path / "plain" / "results.csv")
    assert set(plain["goal"]) == {"untargeted"} and set(plain["attack"]) == {"pgd"}
    untargeted = frame[frame["goal"] == "untargeted"].reset_index(drop=True)
    pd.testing.assert_frame_equal(untargeted.drop(columns=timing), plain.drop(columns=timing))
    assert untargeted["clean_target_rank"].isna().all()

    ranked = frame[frame["attack"] == "rank-pgd"]
    assert set(ranked["goal"]) == {"targeted", "demote"} and set(ranked["side"]) == {"query"}
    n_victims = len(TINY_VICTIMS.split(","))
    assert len(ranked) == 2 * n_victims * n_victims  # two goals x sources x targets
    white = ranked[ranked["setting"] == "whitebox"]
    for row in white.itertuples():
        assert 0.2 < row.clean_target_rank < 0.8  # random other identities: mid-ranking before
        assert row.clean_target_rank_ci_low <= row.clean_target_rank <= row.clean_target_rank_ci_high
        if row.goal == "targeted":
            assert row.adv_target_rank < row.clean_target_rank - 0.2
            assert row.adv_target_top10 > row.clean_target_top10
        else:
            assert row.adv_target_rank > row.clean_target_rank + 0.1
        assert row.target_rank_change == pytest.approx(row.adv_target_rank - row.clean_target_rank, abs=2e-4)
        assert row.n_targets == 5 and row.linf <= 8

    crafts = [r for r in ResultStore(wide / ".store").records() if isinstance(r, CraftRecord)]
    targeted = [c for c in crafts if c.goal != "untargeted"]
    assert len(targeted) == 2 * n_victims
    for craft in targeted:
        assert craft.targets is not None and len(craft.targets) == craft.n_query
        assert all(len(set(row)) == 5 for row in craft.targets)
    summary = (wide / "summary.md").read_text()
    assert "## Query-side targeted attacks" in summary and "## Query-side demote attacks" in summary

    # a strip per craft: a targeted or demote one shows its chosen candidates (fewer columns than
    # the top-5 before) and is named and linked by its goal; the untargeted names are as before
    from advbench.tables import slug

    page = (wide / "index.html").read_text()
    assert "<h3>synthetic / pgd / eps 8</h3>" in page
    assert "<h3>synthetic / rank-pgd / eps 8 / targeted</h3>" in page
    for source in TINY_VICTIMS.split(","):
        plain_strip = wide / "plots" / f"strip_synthetic_pgd_eps8_{slug(source)}.jpg"
        assert plain_strip.is_file()
        for goal in ("targeted", "demote"):
            strip = wide / "plots" / f"strip_synthetic_rank-pgd_eps8_{slug(source)}_{goal}.jpg"
            assert _jpeg_size(strip)[0] < _jpeg_size(plain_strip)[0]
            assert f'src="plots/{strip.name}"' in page
            assert f'id="strip-synthetic-rank-pgd-8-{slug(source)}-{goal}"' in page
            assert f'href="#strip-synthetic-rank-pgd-8-{slug(source)}-{goal}"' in page


@pytest.mark.slow
def test_gallery_side_demote_hides_the_chosen_images_from_their_own_queries(session_cache, tmp_path) -> None:
    """candidate-pgd (CA-) sinks each chosen gallery image in its own identity's queries' rankings on
    the white-box victim; the clean queries and the rest of the gallery are untouched."""
    import pandas as pd
    from conftest import tiny_cli

    from advbench.cli import main
    from advbench.records import CraftRecord
    from advbench.store import ResultStore

    out = tmp_path / "gallery"
    args = ["--eps", "8", "--attacks", "candidate-pgd", "--side", "gallery", "--goal", "demote"]
    assert main([*tiny_cli(session_cache, out), *args, "--gallery-images", "10"]) == 0
    frame = pd.read_csv(out / "results.csv")
    assert set(frame["side"]) == {"gallery"} and set(frame["goal"]) == {"demote"}
    assert (frame["n_query"] == 10).all()
    white = frame[frame["setting"] == "whitebox"]
    assert len(white) == 2
    for row in white.itertuples():
        assert row.adv_target_rank > row.clean_target_rank + 0.2
        assert row.adv_target_top1 <= row.clean_target_top1
        assert row.linf <= 8
    craft = next(r for r in ResultStore(out / ".store").records() if isinstance(r, CraftRecord))
    assert craft.attacked is not None and len(craft.attacked) == 10 == len(set(craft.attacked))
    assert craft.targets is not None and all(1 <= len(q) <= 5 for q in craft.targets)
