"""The plan of a run is data: keys hash exactly what each result depends on, never the set of targets."""

from __future__ import annotations

import dataclasses
import pickle

from advbench.config import RunConfig
from advbench.plan import AttackChoice, build_plan
from advbench.victims import VictimRef


def _ref(name: str, weights: str = "w", dataset: str = "synthetic") -> VictimRef:
    return VictimRef(
        name=name,
        dataset=dataset,
        checkpoint=f"/cache/{name}.pt",
        weights_id=f"{name}-{weights}",
        origin="cache",
        input_size=(32, 16),
        dataset_fingerprint=f"fp-{dataset}",
    )


PGD = AttackChoice("pgd", None, "1", (("steps", 10),), learns=False)
GAN = AttackChoice("gan", None, "1", (("steps", 2),), learns=True)


def _plan(victims: list[VictimRef], attacks=(PGD,), **config):
    return build_plan(RunConfig(**{"eps": (8.0,), **config}), list(attacks), {"synthetic": victims})


def _crafts(plan) -> dict[tuple[str, str], str]:
    return {(c.craft.attack.name, c.craft.source.name): c.craft.key for c in plan.cells}


def test_grid_shape_and_white_box_evaluation() -> None:
    plan = _plan([_ref("a"), _ref("b")], eps=(4.0, 16.0))
    assert len(plan.cells) == 4  # 1 attack x 2 eps x 2 sources
    for cell in plan.cells:
        assert [e.target.name for e in cell.evals] == ["a", "b"]
        assert all(e.craft_key == cell.craft.key for e in cell.evals)
    assert len({c.craft.key for c in plan.cells}) == 4


def test_craft_keys_and_seeds_do_not_depend_on_the_targets() -> None:
    one = _plan([_ref("a")])
    two = _plan([_ref("a"), _ref("b")])
    assert _crafts(one)[("pgd", "a")] == _crafts(two)[("pgd", "a")]
    assert one.cells[0].craft.seed == two.cells[0].craft.seed
    assert one.cells[0].evals[0].key == two.cells[0].evals[0].key  # a on a: the same evaluation


def test_craft_keys_follow_what_the_queries_depend_on() -> None:
    base = _crafts(_plan([_ref("a")]))[("pgd", "a")]
    changed = {
        "eps": _plan([_ref("a")], eps=(4.0,)),
        "seed": _plan([_ref("a")], seed=1),
        "weights": _plan([_ref("a", weights="retrained")]),
        "batch": _plan([_ref("a")], batch_size=32),
        "quantize": _plan([_ref("a")], quantize=False),
        "params": _plan([_ref("a")], attacks=[dataclasses.replace(PGD, params=(("steps", 20),))]),
        "version": _plan([_ref("a")], attacks=[dataclasses.replace(PGD, version="2")]),
    }
    for what, plan in changed.items():
        assert _crafts(plan)[("pgd", "a")] != base, what
    classic = _plan([_ref("a")], protocol="cuhk03-classic")
    assert _crafts(classic)[("pgd", "a")] == base  # scoring is not crafting
    assert classic.cells[0].evals[0].key != _plan([_ref("a")]).cells[0].evals[0].key


def test_fits_are_planned_once_and_seeded_from_their_own_key() -> None:
    plan = _plan([_ref("a"), _ref("b")], attacks=(PGD, GAN), eps=(4.0, 16.0))
    assert len(plan.fits) == 4  # one per (eps, source); PGD learns nothing
    for fit in plan.fits:
        assert fit.seed == int(fit.key[:8], 16)
    gan_cells = [c for c in plan.cells if c.craft.attack.name == "gan"]
    assert {c.craft.fit.key for c in gan_cells} == {f.key for f in plan.fits}
    assert all(c.craft.fit is None for c in plan.cells if c.craft.attack.name == "pgd")
    # the fit does not depend on the grid around it
    alone = _plan([_ref("a")], attacks=(GAN,), eps=(4.0,))
    assert alone.fits[0].key in {f.key for f in plan.fits}


def test_fit_on_another_dataset_uses_the_victims_weights_there() -> None:
    fit_refs = {"a": _ref("a", dataset="market1501")}
    config = RunConfig(eps=(16.0,), fit_on="market1501")
    plan = build_plan(config, [PGD, GAN], {"synthetic": [_ref("a"), _ref("b")]}, fit_refs)
    gan = [c for c in plan.cells if c.craft.attack.name == "gan"]
    # b has no weights on the fit dataset: its learning cell is left out (reported when resolving)
    assert [c.craft.source.name for c in gan] == ["a"]
    assert gan[0].craft.fit.source.dataset == "market1501"
    assert len([c for c in plan.cells if c.craft.attack.name == "pgd"]) == 2


def test_tasks_pickle_for_other_processes() -> None:
    plan = _plan([_ref("a"), _ref("b")], attacks=(PGD, GAN))
    again = pickle.loads(pickle.dumps(plan))
    assert again.cells == plan.cells and again.fits == plan.fits
    assert set(plan.victims()) == {_ref("a"), _ref("b")}


def test_both_backends_default_to_the_same_threads() -> None:
    """Thread counts change CPU rounding, so the default must not depend on the backend."""
    import torch

    from advbench.runner import worker_env

    local, ray = (worker_env(RunConfig(backend=b)) for b in ("local", "ray"))
    assert local.threads == ray.threads == torch.get_num_threads() >= 1
    assert worker_env(RunConfig(backend="ray", threads=3)).threads == 3
