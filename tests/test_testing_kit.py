"""The conformance kit (advbench.testing): every built-in and example plugin passes, and each rule
fails a plugin that breaks it with a message naming the plugin and the rule."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TINY_SYNTHETIC
from reid_trees import make_dukemtmcreid, make_market1501, make_msmt17

from advbench import hookimpl
from advbench.api import AdvbenchError, Attack, AttackSpec, DatasetSpec, ReidDataset, Sample, VictimSpec
from advbench.plugins import build_registry, discover, get_registry
from advbench.testing import (
    ConformanceError,
    TinyVictim,
    check_attack,
    check_dataset,
    check_plugin_module,
    check_victim,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*differs from")

SIZE = (32, 16)
TINY_MISRANKING = {"steps": 1, "ngf": 4, "ndf": 4, "n_blocks": 1, "batch_p": 2, "batch_k": 2, "mask_width": 4}
DEFAULT_ATTACKS = ["feature-pgd", "fgsm", "mifgsm", "misranking", "pgd"]


def _builtins(kind: str) -> list[str]:
    return sorted(n for n, e in get_registry().entries[kind].items() if e.package == "advbench")


def _spec(kind: str, name: str):
    return get_registry().entries[kind][name].spec


def _fails(call: Callable[[], object], *fragments: str) -> str:
    """Run ``call``, expect a ConformanceError whose message holds every fragment; return the message."""
    with pytest.raises(ConformanceError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------------ built-ins pass
@pytest.mark.parametrize("name", [n for n in _builtins("attack") if n != "torchattacks"])
def test_builtin_attacks_pass(name: str, tmp_path: Path) -> None:
    if name == "misranking":  # a learning attack: fit, refit from the cache, perturb
        check_attack(_spec("attack", name), eps=(8,), params=TINY_MISRANKING, tmp_dir=tmp_path)
    else:
        check_attack(_spec("attack", name), tmp_dir=tmp_path)


@pytest.mark.parametrize("variant", ["APGD", "BIM"])
def test_torchattacks_family_members_pass(variant: str) -> None:
    check_attack(_spec("attack", "torchattacks"), variant=variant, params={"steps": 2})


@pytest.mark.parametrize("name", [n for n in _builtins("victim") if not _spec("victim", n).variant])
def test_builtin_victims_pass(name: str) -> None:
    check_victim(_spec("victim", name), num_classes=3, input_size=SIZE)


def test_a_timm_family_member_passes() -> None:
    check_victim(_spec("victim", "timm"), variant="mobilenetv3_small_050", input_size=SIZE)


def test_synthetic_passes(tmp_path: Path) -> None:
    data = check_dataset(_spec("dataset", "synthetic"), None, cache_dir=tmp_path, params=TINY_SYNTHETIC)
    assert data.counts()["train_ids"] == TINY_SYNTHETIC["train_ids"]


@pytest.mark.parametrize(
    "name, make",
    [("market1501", make_market1501), ("dukemtmcreid", make_dukemtmcreid), ("msmt17", make_msmt17)],
)
def test_real_dataset_loaders_pass_on_generated_trees(name: str, make, tmp_path: Path) -> None:
    tree = make(tmp_path / "data")
    data = check_dataset(_spec("dataset", name), tree.root, cache_dir=tmp_path / "cache")
    assert len(data.query) == tree.counts["query"][1]


def _example_module():
    eps = [
        e
        for e in importlib.metadata.entry_points(group="advbench")
        if e.dist and e.dist.name == "advbench-example"
    ]
    if not eps:
        pytest.skip("the example plugin package is not installed")
    return eps[0].load()


def test_example_package_plugins_pass(tmp_path: Path) -> None:
    """Whatever the example package registers passes (datasets read from a tree it can write)."""
    module = _example_module()
    entries = [e for k in ("attack", "victim", "dataset") for e in get_registry().entries[k].values()]
    mine = {f"{e.kind}:{e.name}" for e in entries if e.package == "advbench-example"}
    roots = {}
    for label in sorted(mine):
        kind, name = label.split(":")
        if kind == "dataset" and not _spec("dataset", name).embedded:
            make_toy = pytest.importorskip(f"{module.__name__.split('.')[0]}.make_toy")
            roots[name] = tmp_path / "data"
            make_toy.make_toy(roots[name])
    report = check_plugin_module(module, tmp_dir=tmp_path / "kit", roots=roots, input_size=SIZE)
    assert set(report.checked) == mine and not report.skipped


# --------------------------------------------------------------------------------- victim rules
class _WrongDim(TinyVictim):
    def features(self, images):
        f = super().features(images)
        return torch.cat([f, f], dim=1)


class _NaN(TinyVictim):
    def features(self, images):
        return super().features(images) * float("nan")


class _Detached(TinyVictim):
    def features(self, images):
        return super().features(images).detach()


class _Rounded(TinyVictim):  # quantises its input: zero gradient everywhere
    def features(self, images):
        return super().features(torch.round(images))


class _Noisy(TinyVictim):  # dropout-like noise left on in eval mode
    def features(self, images):
        f = super().features(images)
        return f + 0.01 * torch.randn_like(f)


class _BatchCentred(TinyVictim):  # normalises with batch statistics in eval mode
    def features(self, images):
        f = super().features(images)
        return f - f.mean(0, keepdim=True) if len(f) > 1 else f


class _FixedBatch(TinyVictim):
    def features(self, images):
        return super().features(images).reshape(2, self.feature_dim)


class _FixedSize(TinyVictim):
    def __init__(self, num_classes: int, input_size: tuple[int, int]) -> None:
        super().__init__(num_classes, (256, 128))


class _WideHead(TinyVictim):
    def logits(self, images):
        out = super().logits(images)
        return torch.cat([out, out[:, :1]], dim=1)


class _Untrainable(TinyVictim):
    def train_outputs(self, images):
        raise NotImplementedError("no training")


def _victim_spec(name: str, cls: type) -> VictimSpec:
    return VictimSpec(name=name, description="broken on purpose", build=cls)


@pytest.mark.parametrize(
    "cls, fragments",
    [
        (_WrongDim, ["features must be [N, D] with D == feature_dim (8): got [2, 16]"]),
        (_NaN, ["features must be finite", "16 of 16"]),
        (_Detached, ["features must be differentiable w.r.t. the pixels", "no grad_fn"]),
        (_Rounded, ["features must be differentiable w.r.t. the pixels", "max |grad| 0"]),
        (_Noisy, ["features must be deterministic in eval mode"]),
        (_BatchCentred, ["features must not depend on the rest of the batch"]),
        (_FixedBatch, ["features must work at batch 1", "RuntimeError"]),
        (_FixedSize, ["input_size must be the size it was built with", "(256, 128) != (32, 16)"]),
        (_WideHead, ["logits must be [N, num_classes] (4): got [2, 5]"]),
        (_Untrainable, ["train_outputs must work when num_classes (4) > 0", "no training"]),
    ],
)
def test_victim_rules_fail_a_victim_that_breaks_them(cls: type, fragments: list[str]) -> None:
    spec = _victim_spec("broken-victim", cls)
    _fails(lambda: check_victim(spec, input_size=SIZE), "victim 'broken-victim':", *fragments)


def test_a_victim_without_id_head_need_not_train() -> None:
    spec = _victim_spec("embedding-only", lambda num_classes, input_size: _Untrainable(0, input_size))
    assert check_victim(spec, input_size=SIZE).num_classes == 0


# --------------------------------------------------------------------------------- attack rules
class _Shift(Attack):
    """x + scale * eps/255 (clipped): within budget for scale <= 1."""

    scale = 1.0

    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return (images + self.scale * self.eps / 255.0).clamp(0, 1)


class _Beyond(_Shift):
    scale = 2.0


class _Cropped(_Shift):
    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return super().perturb(victim, images, pids, camids)[..., :-1]


class _NaNAttack(_Shift):
    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return super().perturb(victim, images, pids, camids) * float("nan")


class _Unclipped(_Shift):
    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return images + self.eps / 255.0


class _Double(_Shift):
    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return super().perturb(victim, images, pids, camids).double()


class _InPlace(_Shift):
    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return images.add_(self.eps / 255.0).clamp_(0, 1)


class _Universal(_Shift):
    """A learning attack: one sign pattern from the mean feature gradient, saved under cache_dir/key."""

    def pattern(self, victim, train) -> torch.Tensor:
        images = train.batch(slice(None)).requires_grad_(True)
        victim.features(images).sum().backward()
        return images.grad.mean(0).sign()

    def fit(self, victim, train, *, cache_dir, key, device, progress=True):
        path = Path(cache_dir) / f"{key}.pt"
        if path.is_file():
            self.delta = torch.load(path)
            return
        self.delta = self.pattern(victim, train)
        torch.save(self.delta, path)

    def perturb(self, victim, images, pids, camids, *, gallery=None):
        return (images + self.eps / 255.0 * self.delta).clamp(0, 1)


class _Leaky(_Universal):
    def fit(self, victim, train, *, cache_dir, key, device, progress=True):
        super().fit(victim, train, cache_dir=cache_dir, key=key, device=device)
        (Path(cache_dir).parent / "leak.txt").write_text("outside")


class _Forgetful(_Universal):
    def fit(self, victim, train, *, cache_dir, key, device, progress=True):
        self.delta = self.pattern(victim, train)


class _Rewrites(_Universal):
    def fit(self, victim, train, *, cache_dir, key, device, progress=True):
        self.delta = self.pattern(victim, train)
        torch.save(self.delta, Path(cache_dir) / f"{key}.pt")


class _Retrains(_Universal):  # reads the cache but trains again anyway
    def fit(self, victim, train, *, cache_dir, key, device, progress=True):
        path = Path(cache_dir) / f"{key}.pt"
        self.delta = self.pattern(victim, train)
        if not path.is_file():
            torch.save(self.delta, path)


def _attack_spec(name: str, cls: type) -> AttackSpec:
    return AttackSpec(name=name, description="broken on purpose", build=cls)


def test_a_good_learning_attack_passes(tmp_path: Path) -> None:
    check_attack(_attack_spec("universal", _Universal), tmp_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "fit-universal-16" / "cache").iterdir()) == [
        "conformance-eps16.pt"
    ]


@pytest.mark.parametrize(
    "cls, fragments",
    [
        (_Cropped, ["perturb must keep the input's shape", "got [4, 3, 64, 31] for [4, 3, 64, 32] at eps=2"]),
        (_Beyond, ["L∞ must be <= eps/255", "4.000/255", "at eps=2"]),
        (_NaNAttack, ["perturb must return finite images", "NaN or inf"]),
        (_Unclipped, ["perturb must return images in [0, 1]"]),
        (
            _Double,
            ["perturb must keep the input's dtype and device", "torch.float64 on cpu for torch.float32"],
        ),
        (_InPlace, ["perturb must not modify its input images in place"]),
        (_Leaky, ["fit must write only under its cache_dir", "leak.txt"]),
        (_Forgetful, ["fit must save what it learned under cache_dir", "nothing was written at eps=2"]),
        (_Rewrites, ["a second fit with the same key must reuse the cache, not rewrite it"]),
        (_Retrains, ["a second fit with the same key must reuse the cache, not train again"]),
    ],
)
def test_attack_rules_fail_an_attack_that_breaks_them(
    cls: type, fragments: list[str], tmp_path: Path
) -> None:
    spec = _attack_spec("broken-attack", cls)
    _fails(lambda: check_attack(spec, tmp_dir=tmp_path), "attack 'broken-attack':", *fragments)


# -------------------------------------------------------------------------------- dataset rules
def _market_with(name: str, change: Callable[[ReidDataset], ReidDataset]) -> DatasetSpec:
    """market1501's loader with ``change`` applied to what it returns."""
    market = _spec("dataset", "market1501")

    def load(root, cache_dir, **params):
        return change(market.load(root, cache_dir, **params))

    return dataclasses.replace(market, name=name, load=load)


def _samples(samples: list[Sample], *, pid: int = 0, camid: int = 0) -> list[Sample]:
    return [Sample(s.path, s.pid + pid, s.camid + camid) for s in samples]


def _names_only(data: ReidDataset) -> ReidDataset:
    names = sorted(Path(s.path).name for s in (*data.train, *data.query, *data.gallery))
    return dataclasses.replace(data, fingerprint=hashlib.sha256("\n".join(names).encode()).hexdigest()[:20])


_calls = iter(range(10**6))

BROKEN_DATASETS: list[tuple[Callable[[ReidDataset], ReidDataset], list[str]]] = [
    (
        lambda d: dataclasses.replace(
            d,
            train=_samples(d.train, camid=1),
            query=_samples(d.query, camid=1),
            gallery=_samples(d.gallery, camid=1),
        ),
        ["camids must be 0-based (min 0)", "got min 1"],
    ),
    (
        lambda d: dataclasses.replace(d, train=_samples(d.train, pid=1)),
        ["train pids must be relabelled to 0..N-1 (N = 6)", "got pids [1, 2, 3]...6"],
    ),
    (lambda d: dataclasses.replace(d, query=[]), ["every split must be non-empty", "query empty"]),
    (
        lambda d: dataclasses.replace(d, query=_samples(d.query, pid=10_000)),
        ["query and gallery must share identities", "none in common"],
    ),
    (
        lambda d: dataclasses.replace(d, gallery=[*d.gallery, Sample(d.gallery[0].path + ".gone", 1, 0)]),
        ["every sample's file must exist", "1 missing", ".jpg.gone"],
    ),
    (
        _names_only,
        ["fingerprint must change when a file changes", "after rewriting Market-1501-v15.09.15/query/"],
    ),
    (
        lambda d: dataclasses.replace(d, fingerprint=str(next(_calls))),
        ["fingerprint must be stable across loads"],
    ),
]


@pytest.mark.parametrize("change, fragments", BROKEN_DATASETS)
def test_dataset_rules_fail_a_dataset_that_breaks_them(change, fragments: list[str], tmp_path: Path) -> None:
    tree = make_market1501(tmp_path / "data", clutter=False)
    spec = _market_with("broken-dataset", change)
    _fails(
        lambda: check_dataset(spec, tree.root, cache_dir=tmp_path / "cache"),
        "dataset 'broken-dataset':",
        *fragments,
    )


def test_a_missing_root_must_raise_advbench_error_naming_it(tmp_path: Path) -> None:
    tree = make_market1501(tmp_path / "data", clutter=False)
    market = _spec("dataset", "market1501")

    def vague(root, cache_dir, **params):
        if not Path(root).exists():
            raise AdvbenchError("dataset not found")
        return market.load(root, cache_dir, **params)

    def raw(root, cache_dir, **params):
        list(Path(root).iterdir())  # FileNotFoundError
        return market.load(root, cache_dir, **params)

    rule = "a missing root must raise AdvbenchError naming the path"
    for load, detail in ((vague, "got dataset not found"), (raw, "got FileNotFoundError")):
        spec = dataclasses.replace(market, name="lost", load=load)
        _fails(
            lambda s=spec: check_dataset(s, tree.root, cache_dir=tmp_path / "c"),
            "dataset 'lost':",
            rule,
            detail,
        )


# ------------------------------------------------------------------------------ whole plugins
class _Plugin:
    @hookimpl
    def advbench_attacks(self):
        return [
            _attack_spec("shift", _Shift),
            AttackSpec(name="family", description="a family", build=_Shift, variant=True),
        ]

    @hookimpl
    def advbench_victims(self):
        return [_victim_spec("tiny", TinyVictim)]


def test_check_plugin_module_checks_every_spec_and_reports_families(tmp_path: Path) -> None:
    report = check_plugin_module(_Plugin(), tmp_dir=tmp_path)
    assert report.checked == ["attack:shift", "victim:tiny"]
    assert list(report.skipped) == ["attack:family"]
    report = check_plugin_module(_Plugin(), tmp_dir=tmp_path, variants={"family": "any"})
    assert "attack:family" in report.checked


def test_check_plugin_module_fails_on_a_broken_spec_or_plugin(tmp_path: Path) -> None:
    class Bad:
        @hookimpl
        def advbench_attacks(self):
            return [_attack_spec("Bad Name", _Shift)]

    class Beyond:
        @hookimpl
        def advbench_attacks(self):
            return [_attack_spec("beyond", _Beyond)]

    _fails(
        lambda: check_plugin_module(Bad(), tmp_dir=tmp_path), "advbench_attacks returned attack 'Bad Name'"
    )
    _fails(lambda: check_plugin_module(Beyond(), tmp_dir=tmp_path), "attack 'beyond': L∞ must be <= eps/255")


# ---------------------------------------------------------------------------- the default rule
def test_default_attacks_are_the_built_ins_that_opt_in() -> None:
    """AttackSpec.default is False like every spec; ``--attacks default`` is the same five built-ins."""
    assert AttackSpec(name="x", description="x", build=_Shift).default is False
    registry = build_registry(discover([("third-party", _Plugin())]))
    assert registry.select("attack", "default") == DEFAULT_ATTACKS
    assert "shift" in registry.select("attack", "all")


# ------------------------------------------------------------------------------ defences
@pytest.mark.parametrize("name", _builtins("defence"))
def test_builtin_defences_pass(name: str) -> None:
    from advbench.testing import check_defence

    check_defence(_spec("defence", name), params={"draws": 2} if name == "resize-pad" else None)


def _defence(build, name: str = "broken"):
    from advbench.api import DefenceSpec

    return DefenceSpec(name=name, description="a defence that breaks a rule", build=build)


def _input_defence(call, **flags):
    from advbench.api import InputDefence

    cls = type(
        "Broken", (InputDefence,), {"__call__": lambda self, x, generator=None: call(x, generator), **flags}
    )
    return lambda: cls()


def _ranking_defence(rerank):
    from advbench.api import RankingDefence

    cls = type("BrokenRanking", (RankingDefence,), {"rerank": lambda self, a, b, c: rerank(a, b, c)})
    return lambda: cls()


@pytest.mark.parametrize(
    "build, fragments",
    [
        (_input_defence(lambda x, g: x[:, :, ::2]), ["shape", "[2, 3, 16, 16]"]),
        (_input_defence(lambda x, g: x * 2), ["[0, 1]"]),
        (_input_defence(lambda x, g: x.clamp_(0.2, 0.8)), ["in place"]),
        (_input_defence(lambda x, g: (x + 0.1 * torch.rand(x.shape)).clamp(0, 1)), ["same generator seed"]),
        (_input_defence(lambda x, g: x.detach().round()), ["differentiable=True", "BPDA"]),
        (_input_defence(lambda x, g: x, draws=0), ["draws must be >= 1"]),
        (_ranking_defence(lambda q_g, q_q, g_g: q_q), ["[Q, G]", "[8, 8]"]),
        (_ranking_defence(lambda q_g, q_q, g_g: q_g / 0 - q_g / 0), ["finite"]),
        (lambda: object(), ["InputDefence or a RankingDefence", "object"]),
    ],
)
def test_defence_rules_fail_a_defence_that_breaks_them(build, fragments: list[str]) -> None:
    from advbench.testing import check_defence

    with pytest.raises(ConformanceError) as caught:
        check_defence(_defence(build))
    message = str(caught.value)
    assert "defence 'broken'" in message
    for fragment in fragments:
        assert fragment in message, message
