"""Conformance kit for plugin authors: check an attack, victim or dataset against the contract in seconds.

Each ``check_*`` function builds the plugin from its spec, runs it on tiny tensors and raises
:class:`ConformanceError` (an ``AssertionError``, so pytest prints it) at the first broken rule,
naming the plugin, the rule and the numbers. A plugin's own test file needs one line per spec::

    from advbench.testing import check_plugin_module
    import my_package.plugin

    def test_conformance(tmp_path):
        check_plugin_module(my_package.plugin, tmp_dir=tmp_path)

Rules (docs/plugins.md explains why each one matters to the runner):

* victims: ``features`` is ``[N, D]`` with ``D == feature_dim``, finite, differentiable w.r.t. the
  pixels, deterministic in eval mode and independent of the rest of the batch, also at batch 1 and
  at the dataset's ``input_size``; ``input_size`` and ``distance`` are what was asked for. A victim
  *claims to be trainable* when its ``num_classes`` is > 0: then ``num_classes`` is the number it was
  built with, ``logits`` has that many columns, ``features_and_logits`` agrees with the two calls
  and ``train_outputs`` works in train mode.
* attacks: at every eps, ``perturb`` returns the input's shape, dtype and device, finite, in
  [0, 1], within ``eps/255`` (+1e-6) in L∞, and leaves its input untouched. An attack that
  ``needs_fit`` writes only under its ``cache_dir``, writes something there, and a second attack
  built alike reuses it: ``fit`` with the same key rewrites nothing and calls the victim less.
  An attack whose spec lists a query-side ``targeted`` or ``demote`` threat is also called with
  ``targets=Targets(goal, [B, k] gallery rows)`` drawn as the runner draws them, under the same
  rules, leaves the targets untouched and gives the same images for one seed of the global
  generator; an attack that lists no untargeted threat is not called without targets. An attack
  whose spec lists a ``patch`` budget is also built as the runner builds a patch craft
  (``eps=255, area=0.1``) and, instead of the L∞ rule, may change at most ``floor(area * H * W)``
  pixel locations (any channel) of each image.
* datasets: the three splits are non-empty, camids are 0-based, train pids are ``0..N-1``, query and
  gallery share identities, every sample's file exists, the fingerprint is stable across loads; for
  datasets read from a root, it changes when one file changes (checked on a copy of the root)
  and a missing root raises :class:`~advbench.api.AdvbenchError` naming the path.
* defences: ``build`` gives an ``InputDefence`` or a ``RankingDefence``. An input defence returns the
  input's shape, dtype and device, finite, in [0, 1], leaves its input untouched, declares
  ``draws >= 1``, and gives the same output for the same generator seed (the runner seeds every
  draw); a differentiable one passes a gradient to the pixels. A ranking defence returns finite
  ``[Q, G]`` distances and leaves its inputs untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advbench.api import (
    AdvbenchError,
    Attack,
    AttackSpec,
    DatasetSpec,
    Defence,
    DefenceSpec,
    FeatureBank,
    ImageSplit,
    InputDefence,
    RankingDefence,
    ReidDataset,
    Targets,
    Victim,
    VictimSpec,
)

DEFAULT_INPUT_SIZE = (64, 32)
"""(H, W) the kit uses when no dataset input size is given: small, but deep enough for a ResNet."""

LINF_SLACK = 1e-6

PATCH_AREA = 0.1
"""The patch area (fraction of the image) the kit builds a ``patch``-budget attack with, at eps=255."""


class ConformanceError(AssertionError):
    """A plugin broke a rule of the contract; the message names the plugin, the rule and the numbers."""


def _fail(kind: str, name: str, rule: str, detail: str) -> ConformanceError:
    return ConformanceError(f"{kind} {name!r}: {rule}: {detail}")


def _params(spec: Any, params: Mapping[str, Any] | None, variant: str | None) -> dict[str, Any]:
    """The spec's defaults overridden by ``params``, plus ``variant`` for family specs."""
    merged = {**spec.defaults, **(params or {})}
    if getattr(spec, "variant", False):
        if not variant:
            raise ConformanceError(
                f"{spec.name!r} is a family: pass variant=... to check one member ({spec.name}:<variant>)"
            )
        merged["variant"] = variant
    return merged


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, size: tuple[int, int], seed: int = 0) -> Tensor:
    """``n`` float images in [0, 1] drawn from a fixed seed (so failures reproduce)."""
    return torch.rand(n, 3, *size, generator=_generator(seed))


def _close(a: Tensor, b: Tensor, rel: float = 1e-4) -> float | None:
    """Max abs difference of ``a`` and ``b`` when it exceeds ``rel`` x their scale, else None."""
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(a.abs().max()) + 1.0 if a.numel() else 1.0
    return diff if diff > rel * scale else None


def _shape(t: Any) -> str:
    return str(list(t.shape)) if isinstance(t, Tensor) else type(t).__name__


# ------------------------------------------------------------------------------------- tiny victim
class TinyVictim(Victim):
    """A three-layer CNN re-ID model (8-d cosine feature, ID head): the kit's victim for attack checks.

    Cheap enough to attack at every eps in well under a second; seeded so every check sees the same
    weights. Trainable (``num_classes`` > 0), so attacks that need logits work on it too.
    """

    distance = "cosine"

    def __init__(
        self, num_classes: int = 4, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE, feature_dim: int = 8
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(16, self.feature_dim),
            )
            self.head = nn.Linear(self.feature_dim, max(self.num_classes, 1), bias=False)

    def embed(self, images: Tensor) -> Tensor:
        return self.body(images * 2.0 - 1.0)

    def features(self, images: Tensor) -> Tensor:
        return F.normalize(self.embed(images), dim=1)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.embed(images))

    def train_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.embed(images)
        return feat, self.head(feat)


# ------------------------------------------------------------------------------------------ victims
def build_victim(
    spec: VictimSpec,
    *,
    num_classes: int = 4,
    input_size: tuple[int, int] | None = None,
    variant: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Victim:
    """``spec.build`` as the runner calls it (defaults, then ``params``, then ``variant``)."""
    size = tuple(input_size or DEFAULT_INPUT_SIZE)
    victim = spec.build(num_classes=num_classes, input_size=size, **_params(spec, params, variant))
    if not isinstance(victim, Victim):
        raise _fail("victim", spec.name, "build must return an advbench.api.Victim", type(victim).__name__)
    return victim


def check_victim(
    spec: VictimSpec,
    *,
    num_classes: int = 4,
    input_size: tuple[int, int] | None = None,
    variant: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Victim:
    """Build ``spec`` for a dataset of ``num_classes`` train ids at ``input_size`` and check the victim rules.

    Returns the built victim (in eval mode) so a test can go on with it.
    """
    size = tuple(input_size or DEFAULT_INPUT_SIZE)
    name = spec.name if variant is None else f"{spec.name}:{variant}"
    victim = build_victim(spec, num_classes=num_classes, input_size=size, variant=variant, params=params)
    fail = lambda rule, detail: _fail("victim", name, rule, detail)  # noqa: E731
    if tuple(victim.input_size) != size:
        raise fail("input_size must be the size it was built with", f"{tuple(victim.input_size)} != {size}")
    if victim.distance not in ("cosine", "euclidean"):
        raise fail("distance must be 'cosine' or 'euclidean'", repr(victim.distance))
    if not (isinstance(victim.feature_dim, int) and victim.feature_dim > 0):
        raise fail("feature_dim must be a positive int", repr(victim.feature_dim))
    victim.eval()
    images = _images(2, size)
    feats = _run(
        fail, f"features must work at {size[0]}x{size[1]}", lambda: _no_grad(victim.features, images)
    )
    _check_features(victim, images, feats, fail)
    if victim.num_classes > 0:
        _check_trainable(victim, images, feats, num_classes, fail)
    return victim.eval()


def _run(fail: Callable[[str, str], Exception], rule: str, call: Callable[[], Any]) -> Any:
    """``call()``, with any exception turned into a ConformanceError for ``rule``."""
    try:
        return call()
    except ConformanceError:
        raise
    except Exception as exc:
        raise fail(rule, f"raised {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from exc


def _check_features(
    victim: Victim, images: Tensor, feats: Tensor, fail: Callable[[str, str], Exception]
) -> None:
    """Shape, finiteness, determinism, pixel gradients and batch independence of ``features``.

    ``feats`` are ``features(images)`` without grad; the gradient pass doubles as the second call
    of the determinism check, so the victim runs three times.
    """
    dim, size = victim.feature_dim, f"{images.shape[2]}x{images.shape[3]}"
    rule = f"features must be [N, D] with D == feature_dim ({dim})"
    if not isinstance(feats, Tensor) or tuple(feats.shape) != (2, dim):
        raise fail(rule, f"got {_shape(feats)} for a batch of 2 at {size}")
    if not torch.isfinite(feats).all():
        raise fail(
            "features must be finite", f"{int((~torch.isfinite(feats)).sum())} of {feats.numel()} are not"
        )
    pixels = images.clone().requires_grad_(True)
    out = victim.features(pixels)
    if (diff := _close(feats, out.detach())) is not None:
        raise fail("features must be deterministic in eval mode", f"two calls differ by {diff:.3g}")
    if not out.requires_grad:
        raise fail(
            "features must be differentiable w.r.t. the pixels", "the output has no grad_fn (detached?)"
        )
    (out * torch.randn(2, dim, generator=_generator(1))).sum().backward()
    grad = pixels.grad
    if grad is None or not torch.isfinite(grad).all() or float(grad.abs().max()) == 0.0:
        got = "None" if grad is None else f"max |grad| {float(grad.abs().max()):.3g}"
        raise fail("features must be differentiable w.r.t. the pixels", f"grad is {got}")
    single = _run(
        fail, f"features must work at batch 1 ({size})", lambda: _no_grad(victim.features, images[:1])
    )
    if not isinstance(single, Tensor) or tuple(single.shape) != (1, dim):
        raise fail(rule, f"got {_shape(single)} for a batch of 1 at {size}")
    if (diff := _close(feats[:1], single)) is not None:
        raise fail(
            "features must not depend on the rest of the batch in eval mode",
            f"batch 1 and batch 2 differ by {diff:.3g}",
        )


def _no_grad(call: Callable[[Tensor], Any], images: Tensor) -> Any:
    with torch.no_grad():
        return call(images)


def _check_trainable(
    victim: Victim, images: Tensor, feats: Tensor, num_classes: int, fail: Callable[[str, str], Exception]
) -> None:
    """The rules of a victim that claims to be trainable (``num_classes`` > 0)."""
    if victim.num_classes != num_classes:
        raise fail(
            "num_classes must be 0 (no ID head) or the number it was built with",
            f"{victim.num_classes} != {num_classes}",
        )
    n = len(images)
    rule = f"logits must be [N, num_classes] ({num_classes})"
    logits = _run(fail, rule, lambda: _no_grad(victim.logits, images))
    if not isinstance(logits, Tensor) or tuple(logits.shape) != (n, num_classes):
        raise fail(rule, f"got {_shape(logits)} for a batch of {n}")
    both = _run(fail, "features_and_logits must work", lambda: _no_grad(victim.features_and_logits, images))
    if (diff := _close(both[0], feats)) is not None or (diff := _close(both[1], logits)) is not None:
        raise fail("features_and_logits must equal (features, logits)", f"they differ by {diff:.3g}")
    victim.train()
    try:
        emb, train_logits = _run(
            fail,
            f"train_outputs must work when num_classes ({num_classes}) > 0 (the victim claims to be trainable)",
            lambda: victim.train_outputs(images),
        )
    finally:
        victim.eval()
    # either may be a tuple, one tensor per head (DG-Net): the trainer sums its losses over them
    embs, heads = _heads(emb), _heads(train_logits)
    if not embs or any(not isinstance(e, Tensor) or e.ndim != 2 or e.shape[0] != n for e in embs):
        raise fail(
            "train_outputs' embedding must be [N, D'] (or a tuple of them)",
            f"got {_shapes(emb)} for a batch of {n}",
        )
    if not heads or any(not isinstance(h, Tensor) or tuple(h.shape) != (n, num_classes) for h in heads):
        raise fail(
            f"train_outputs' logits must be [N, num_classes] ({num_classes}) (or a tuple of them)",
            f"got {_shapes(train_logits)} for a batch of {n}",
        )
    if not all(torch.isfinite(t).all() for t in (*embs, *heads)):
        raise fail("train_outputs must be finite", "NaN or inf in the embedding or the logits")


def _heads(out: Any) -> tuple[Any, ...]:
    """One output of ``train_outputs`` as a tuple of per-head values."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _shapes(out: Any) -> str:
    return ", ".join(_shape(t) for t in _heads(out))


# ------------------------------------------------------------------------------------------ attacks
def _split(n_ids: int, per_id: int, size: tuple[int, int], seed: int) -> ImageSplit:
    """A tiny labelled split: ``per_id`` images of each of ``n_ids`` identities over two cameras."""
    pids = torch.arange(n_ids).repeat_interleave(per_id)
    camids = torch.arange(n_ids * per_id) % 2
    return ImageSplit((_images(n_ids * per_id, size, seed) * 255).round().to(torch.uint8), pids, camids)


def _bank(victim: Victim, split: ImageSplit, device: torch.device) -> FeatureBank:
    """The clean gallery features a white-box attacker indexes."""
    with torch.no_grad():
        feats = victim.features(split.batch(slice(None), device))
    return FeatureBank(feats, split.pids.to(device), split.camids.to(device))


def build_attack(
    spec: AttackSpec, eps: float, *, variant: str | None = None, params: Mapping[str, Any] | None = None
) -> Attack:
    """``spec.build`` as the runner calls it: ``build(eps=..., **defaults, **params[, variant=...])``."""
    attack = spec.build(eps=float(eps), **_params(spec, params, variant))
    if not isinstance(attack, Attack):
        raise _fail("attack", spec.name, "build must return an advbench.api.Attack", type(attack).__name__)
    return attack


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """relative path -> (mtime_ns, sha256) of every file under ``root``."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        out[str(path.relative_to(root))] = (
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
    return out


@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    """Run the block in ``path`` (so that a fit writing to relative paths writes where the kit looks)."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _count_calls(victim: Victim) -> Iterator[list[int]]:
    """Count forward calls of the victim's submodules while the block runs (whatever method is used)."""
    count = [0]
    hooks = [m.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1)) for m in victim.modules()]
    try:
        yield count
    finally:
        for hook in hooks:
            hook.remove()


def _fit_twice(
    name: str,
    eps: float,
    victim: Victim,
    train: ImageSplit,
    tmp: Path,
    build: Callable[[], Attack],
    first: Attack,
) -> Attack:
    """Fit ``first``, then a fresh attack with the same key; check where they write and the reuse."""
    fail = lambda rule, detail: _fail("attack", name, rule, detail)  # noqa: E731
    cache_dir, work = tmp / "cache", tmp / "work"
    cache_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    key = f"conformance-eps{eps:g}"

    def fit(attack: Attack) -> int:
        before = _snapshot(tmp)
        with _working_dir(work), _count_calls(victim) as calls:
            attack.fit(
                victim, train, cache_dir=cache_dir, key=key, device=torch.device("cpu"), progress=False
            )
        outside = sorted(
            p for p, v in _snapshot(tmp).items() if not p.startswith("cache" + os.sep) and before.get(p) != v
        )
        if outside:
            raise fail(
                "fit must write only under its cache_dir", f"it wrote {', '.join(outside[:3])} outside it"
            )
        victim.eval()
        return calls[0]

    first_calls = fit(first)
    saved = _snapshot(cache_dir)
    if not saved:
        raise fail("fit must save what it learned under cache_dir", f"nothing was written at eps={eps:g}")
    second = build()
    second_calls = fit(second)
    changed = sorted(p for p, v in _snapshot(cache_dir).items() if saved.get(p) != v)
    if changed:
        raise fail(
            "a second fit with the same key must reuse the cache, not rewrite it",
            f"it rewrote {', '.join(changed[:3])} at eps={eps:g}",
        )
    if first_calls and second_calls >= first_calls:
        raise fail(
            "a second fit with the same key must reuse the cache, not train again",
            f"it called the victim {second_calls} times, the first fit {first_calls} times (eps={eps:g})",
        )
    return second


def _check_output(
    name: str, eps: float, clean: Tensor, kept: Tensor, adv: Any, area: float | None = None
) -> None:
    """Shape, dtype, device, finiteness, range and budget (L∞, or the patch area) of one ``perturb`` output."""
    where = f"eps={eps:g}" + (f" area={area:g}" if area is not None else "")
    fail = lambda rule, detail: _fail("attack", name, rule, f"{detail} at {where}")  # noqa: E731
    if not isinstance(adv, Tensor):
        raise fail("perturb must return a Tensor", f"got {type(adv).__name__}")
    if adv.shape != clean.shape:
        raise fail("perturb must keep the input's shape", f"got {list(adv.shape)} for {list(clean.shape)}")
    if adv.dtype != clean.dtype or adv.device != clean.device:
        raise fail(
            "perturb must keep the input's dtype and device",
            f"got {adv.dtype} on {adv.device} for {clean.dtype} on {clean.device}",
        )
    if not torch.equal(clean, kept):
        raise fail("perturb must not modify its input images in place", "the input changed")
    if not torch.isfinite(adv).all():
        raise fail(
            "perturb must return finite images", f"{int((~torch.isfinite(adv)).sum())} values are NaN or inf"
        )
    low, high = float(adv.min()), float(adv.max())
    if low < 0.0 or high > 1.0:
        raise fail("perturb must return images in [0, 1]", f"got values in [{low:.4g}, {high:.4g}]")
    if area is not None:
        limit = math.floor(area * clean.shape[2] * clean.shape[3])
        changed = (adv.detach() != clean).any(dim=1).flatten(1).sum(1)
        if int(changed.max()) > limit:
            raise fail(
                f"a patch attack may change at most floor(area*H*W) = {limit} pixel locations per image",
                f"image {int(changed.argmax())} has {int(changed.max())} changed",
            )
        return
    linf = float((adv.detach() - clean).abs().max())
    if linf > eps / 255.0 + LINF_SLACK:
        raise fail(
            f"L∞ must be <= eps/255 (+{LINF_SLACK:g})",
            f"got {linf:.6f} = {linf * 255:.3f}/255 > {eps / 255:.6f}",
        )


def check_attack(
    spec: AttackSpec,
    *,
    victim: Victim | None = None,
    eps: Sequence[float] = (2, 8, 16),
    tmp_dir: Path | str | None = None,
    variant: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> None:
    """Build ``spec`` at each ``eps`` and check the attack rules on ``victim`` (a :class:`TinyVictim` by
    default). Fits, for attacks that need one, go under ``tmp_dir`` (a temporary folder by default).
    """
    name = spec.name if variant is None else f"{spec.name}:{variant}"
    victim = (victim or TinyVictim()).eval()
    size = tuple(victim.input_size)
    device = next((p.device for p in victim.parameters()), torch.device("cpu"))
    gallery_split = _split(4, 2, size, seed=11)
    gallery = _bank(victim, gallery_split, device)
    query = _split(4, 1, size, seed=12)
    train = _split(8, 4, size, seed=13)
    budgets = {t.budget for t in spec.threats}
    crafts = [(float(e), None) for e in eps] if budgets - {"patch"} else []
    if "patch" in budgets:  # built as the runner builds a patch craft
        crafts.append((255.0, PATCH_AREA))
    with contextlib.ExitStack() as stack:
        root = Path(tmp_dir) if tmp_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for e, area in crafts:
            budget = "linf" if area is None else "patch"
            goals = {t.goal for t in spec.threats if t.side == "query" and t.budget == budget}
            gallery_goals = {t.goal for t in spec.threats if t.side == "gallery" and t.budget == budget}
            own = {**(params or {}), **({"area": area} if area is not None else {})}
            build = lambda e=e, own=own: build_attack(spec, e, variant=variant, params=own)  # noqa: E731
            attack = build()
            if attack.needs_fit:
                fit_dir = root / (f"fit-{name}-{e:g}" + ("" if area is None else f"-area{area:g}"))
                attack = _fit_twice(name, float(e), victim, train, fit_dir, build, attack)
            clean = query.batch(slice(None), device)
            kept = clean.clone()
            pids, camids = query.pids.to(device), query.camids.to(device)
            if "untargeted" in goals or not (goals or gallery_goals):
                adv = attack.perturb(victim, clean, pids, camids, gallery=gallery)
                _check_output(name, float(e), clean, kept, adv, area)
            for goal in sorted(goals & {"targeted", "demote"}):
                _check_targeted(
                    name, float(e), attack, victim, clean, kept, pids, camids, gallery, goal, area
                )
            for goal in sorted(gallery_goals & {"targeted", "demote"}):
                queries = _bank(victim, query, device)
                _check_gallery_side(
                    name, float(e), attack, victim, gallery_split, gallery, queries, goal, area
                )


def _check_targeted(
    name: str,
    eps: float,
    attack: Attack,
    victim: Victim,
    clean: Tensor,
    kept: Tensor,
    pids: Tensor,
    camids: Tensor,
    gallery: FeatureBank,
    goal: Any,
    area: float | None = None,
) -> None:
    """A targeted or demote craft, as the runner makes it: ``targets=Targets(goal, [B, k] gallery rows)``.

    The candidates are drawn with the runner's rule (:func:`advbench.metrics.ranking.draw_targets`,
    k = 2 of other identities, seed 0). The output must obey the rules of every craft, the targets must
    be left untouched, and, the global generator seeded alike (as the runner seeds each batch), two
    calls must give the same images.
    """
    from advbench.metrics.ranking import draw_targets

    label = f"{name} ({goal})"
    rows = draw_targets(pids.cpu(), gallery.pids.cpu(), 2, seed=0).to(clean.device)
    kept_rows = rows.clone()

    def craft() -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return attack.perturb(victim, clean, pids, camids, gallery=gallery, targets=Targets(goal, rows))

    adv = craft()
    _check_output(label, eps, clean, kept, adv, area)
    if not torch.equal(rows, kept_rows):
        raise _fail("attack", label, "perturb must not modify targets.indices in place", f"at eps={eps:g}")
    again = craft()
    if (diff := _close(adv.detach(), again.detach(), rel=1e-5)) is not None:
        raise _fail(
            "attack",
            label,
            "perturb must be deterministic for one seed of the global generator",
            f"two seeded calls differ by {diff:.3g} at eps={eps:g}",
        )


def _check_gallery_side(
    name: str,
    eps: float,
    attack: Attack,
    victim: Victim,
    gallery_split: ImageSplit,
    gallery: FeatureBank,
    queries: FeatureBank,
    goal: Any,
    area: float | None = None,
) -> None:
    """A gallery-side craft, as the runner makes it: the chosen gallery images, ``targets`` rows of
    the ``queries`` bank (:func:`advbench.metrics.ranking.draw_gallery_targets`, k = 2, seed 0), the
    clean gallery. The output must obey every craft's rules and be deterministic for one seed."""
    from advbench.metrics.ranking import draw_gallery_targets

    label = f"{name} (gallery side, {goal})"
    chosen = draw_gallery_targets(
        queries.pids.cpu(),
        queries.camids.cpu(),
        gallery.pids.cpu(),
        gallery.camids.cpu(),
        n_images=len(gallery_split),
        k=2,
        goal=goal,
        seed=0,
    )
    device = gallery.features.device
    images = gallery_split.batch(chosen.rows, device)
    kept = images.clone()
    pids, camids = gallery.pids[chosen.rows.to(device)], gallery.camids[chosen.rows.to(device)]
    targets = Targets(goal, chosen.padded(2).to(device))

    def craft() -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return attack.perturb(
                victim, images, pids, camids, gallery=gallery, targets=targets, queries=queries
            )

    adv = craft()
    _check_output(label, eps, images, kept, adv, area)
    if (diff := _close(adv.detach(), craft().detach(), rel=1e-5)) is not None:
        raise _fail(
            "attack",
            label,
            "perturb must be deterministic for one seed of the global generator",
            f"two seeded calls differ by {diff:.3g} at eps={eps:g}",
        )


# ----------------------------------------------------------------------------------------- datasets
def _check_splits(name: str, data: ReidDataset) -> None:
    """The split rules: non-empty, 0-based camids, relabelled train pids, shared test ids, files exist."""
    fail = lambda rule, detail: _fail("dataset", name, rule, detail)  # noqa: E731
    if not isinstance(data, ReidDataset):
        raise fail("load must return an advbench.api.ReidDataset", type(data).__name__)
    sizes = {split: len(getattr(data, split)) for split in ("train", "query", "gallery")}
    if empty := [s for s, n in sizes.items() if n == 0]:
        raise fail("every split must be non-empty", f"{', '.join(empty)} empty ({sizes})")
    samples = [*data.train, *data.query, *data.gallery]
    cams = sorted({s.camid for s in samples})
    if cams[0] != 0:
        raise fail("camids must be 0-based (min 0)", f"got min {cams[0]}, camids {cams[:8]}")
    train_ids = sorted({s.pid for s in data.train})
    if train_ids != list(range(len(train_ids))) or data.num_train_pids != len(train_ids):
        raise fail(
            f"train pids must be relabelled to 0..N-1 (N = {len(train_ids)})",
            f"got pids {train_ids[:3]}...{train_ids[-1]}, num_train_pids {data.num_train_pids}",
        )
    query_ids, gallery_ids = {s.pid for s in data.query}, {s.pid for s in data.gallery}
    if not query_ids & gallery_ids:
        raise fail(
            "query and gallery must share identities",
            f"{len(query_ids)} query ids, {len(gallery_ids)} gallery ids, none in common",
        )
    if missing := [s.path for s in samples if not os.path.isfile(s.path)]:
        raise fail("every sample's file must exist", f"{len(missing)} missing, e.g. {missing[0]}")
    if not isinstance(data.fingerprint, str) or not data.fingerprint:
        raise fail("fingerprint must be a non-empty string", repr(data.fingerprint))


def _rewrite(path: Path) -> None:
    """Change one file's content (an image stays decodable) and move its mtime on by 2 s."""
    stat = path.stat()
    try:
        from PIL import Image

        with Image.open(path) as img:
            fmt, pixels = img.format, img.convert("RGB")
        value = pixels.getpixel((0, 0))
        pixels.putpixel((0, 0), tuple(255 - c for c in value))
        pixels.save(path, format=fmt, quality=95)
    except Exception:  # not an image: append a byte
        with path.open("ab") as handle:
            handle.write(b"\0")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def _check_fingerprint_follows_files(
    spec: DatasetSpec, root: Path, cache_dir: Path, params: Mapping[str, Any]
) -> None:
    """Load a copy of ``root``, change one sample file there, reload: the fingerprint must change."""
    fail = lambda rule, detail: _fail("dataset", spec.name, rule, detail)  # noqa: E731
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        copy = Path(tmp) / "root"
        shutil.copytree(root, copy, symlinks=True)
        before = spec.load(copy, cache_dir, **params)
        inside = [Path(s.path) for s in before.query if Path(s.path).resolve().is_relative_to(copy.resolve())]
        if not inside:
            raise fail(
                "samples must be files under the data root", f"no query file lies under the root {copy}"
            )
        _rewrite(inside[0])
        after = spec.load(copy, cache_dir, **params)
        if after.fingerprint == before.fingerprint:
            raise fail(
                "fingerprint must change when a file changes",
                f"still {before.fingerprint} after rewriting {inside[0].relative_to(copy)}",
            )


def _check_missing_root(spec: DatasetSpec, cache_dir: Path, params: Mapping[str, Any]) -> None:
    """Loading from a root that does not exist must raise AdvbenchError naming it."""
    missing = cache_dir / "no-such-data-root"
    try:
        spec.load(missing, cache_dir, **params)
    except AdvbenchError as exc:
        if str(missing) not in str(exc):
            raise _fail(
                "dataset", spec.name, "a missing root must raise AdvbenchError naming the path", f"got {exc}"
            ) from exc
        return
    except Exception as exc:
        raise _fail(
            "dataset",
            spec.name,
            "a missing root must raise AdvbenchError naming the path",
            f"got {type(exc).__name__}: {exc}",
        ) from exc
    raise _fail(
        "dataset", spec.name, "a missing root must raise AdvbenchError naming the path", f"{missing} loaded"
    )


def check_dataset(
    spec: DatasetSpec,
    root: Path | str | None,
    *,
    cache_dir: Path | str,
    params: Mapping[str, Any] | None = None,
) -> ReidDataset:
    """Load ``spec`` from ``root`` (None for an embedded dataset) into ``cache_dir`` and check the dataset rules.

    Returns the loaded dataset. For a dataset read from a root, the root is copied once to check the
    fingerprint: pass a small tree.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    merged = {**spec.defaults, **(params or {})}
    if root is None and not spec.embedded:
        raise ConformanceError(
            f"dataset {spec.name!r} reads a data root: pass root=<a small tree> to check it"
        )
    data = spec.load(Path(root) if root is not None else None, cache, **merged)
    _check_splits(spec.name, data)
    again = spec.load(Path(root) if root is not None else None, cache, **merged)
    if again.fingerprint != data.fingerprint:
        raise _fail(
            "dataset",
            spec.name,
            "fingerprint must be stable across loads",
            f"{data.fingerprint} != {again.fingerprint}",
        )
    if root is not None:
        _check_fingerprint_follows_files(spec, Path(root), cache, merged)
        _check_missing_root(spec, cache, merged)
    return data


# ------------------------------------------------------------------------------------- whole plugins
def _check_input_defence(name: str, defence: InputDefence) -> None:
    fail = lambda rule, detail: _fail("defence", name, rule, detail)  # noqa: E731
    if int(getattr(defence, "draws", 1)) < 1:
        raise fail("draws must be >= 1", f"got {defence.draws}")
    images = _images(2, (32, 16))
    kept = images.clone()
    out = _run(fail, "__call__ must run on [2, 3, 32, 16] images", lambda: defence(images, _generator(0)))
    if not isinstance(out, Tensor) or out.shape != images.shape or out.dtype != images.dtype:
        raise fail(
            "output must have the input's shape and dtype", f"got {_shape(out)}, expected {_shape(images)}"
        )
    if out.device != images.device:
        raise fail("output must stay on the input's device", f"got {out.device}, expected {images.device}")
    if not torch.isfinite(out).all() or float(out.min()) < 0 or float(out.max()) > 1:
        raise fail(
            "output must be finite and in [0, 1]", f"range [{float(out.min()):.4g}, {float(out.max()):.4g}]"
        )
    if not torch.equal(images, kept):
        raise fail("must not change its input in place", "the input images changed")
    again = defence(images, _generator(0))
    if not torch.equal(out, again):
        raise fail(
            "the same generator seed must give the same output",
            f"max |difference| {float((out - again).abs().max()):.3g}",
        )
    if defence.differentiable:
        x = images.clone().requires_grad_(True)
        y = defence(x, _generator(0))
        grad = torch.autograd.grad(y.sum(), x, allow_unused=True)[0] if y.requires_grad else None
        if grad is None or not bool(grad.abs().sum() > 0):
            raise fail(
                "differentiable=True needs a gradient w.r.t. the pixels",
                "got none (declare differentiable=False for BPDA)",
            )


def _check_ranking_defence(name: str, defence: RankingDefence) -> None:
    fail = lambda rule, detail: _fail("defence", name, rule, detail)  # noqa: E731
    g = _generator(0)
    q, gal = torch.rand(8, 8, generator=g), torch.rand(40, 8, generator=g)  # Q + G > k1 = 20
    q_g, q_q, g_g = torch.cdist(q, gal), torch.cdist(q, q), torch.cdist(gal, gal)
    kept = [t.clone() for t in (q_g, q_q, g_g)]
    out = _run(fail, "rerank must run on [8, 40] distances", lambda: defence.rerank(q_g, q_q, g_g))
    if not isinstance(out, Tensor) or tuple(out.shape) != (8, 40):
        raise fail("rerank must return [Q, G] distances", f"got {_shape(out)}, expected [8, 40]")
    if not torch.isfinite(out).all():
        raise fail("rerank must return finite distances", f"{int((~torch.isfinite(out)).sum())} NaN/Inf")
    if not all(torch.equal(a, b) for a, b in zip((q_g, q_q, g_g), kept, strict=True)):
        raise fail("must not change its inputs in place", "an input distance matrix changed")


def check_defence(spec: DefenceSpec, *, params: Mapping[str, Any] | None = None) -> Defence:
    """Check a defence spec against the contract (see the module docstring); returns the defence."""
    values = {**spec.defaults, **(params or {})}
    fail = lambda rule, detail: _fail("defence", spec.name, rule, detail)  # noqa: E731
    defence = _run(fail, "build(**defaults) must succeed", lambda: spec.build(**values))
    if isinstance(defence, InputDefence):
        _check_input_defence(spec.name, defence)
    elif isinstance(defence, RankingDefence):
        _check_ranking_defence(spec.name, defence)
    else:
        raise fail("build must return an InputDefence or a RankingDefence", f"got {type(defence).__name__}")
    return defence


@dataclass
class PluginReport:
    """What :func:`check_plugin_module` checked (``kind:name``) and what it skipped, with the reason."""

    checked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def plugin_specs(plugin: object) -> list[AttackSpec | VictimSpec | DatasetSpec | DefenceSpec]:
    """Every spec the hook implementations of ``plugin`` (a module or an object) return, registry-checked."""
    from advbench.plugins import KINDS, check_spec

    specs: list[Any] = []
    for hook, spec_type in KINDS.values():
        impl = getattr(plugin, hook, None)
        if impl is None:
            continue
        answer = impl() or []
        if not isinstance(answer, (list, tuple)):
            raise ConformanceError(
                f"{hook} must return a list of {spec_type.__name__}, got {type(answer).__name__}"
            )
        for spec in answer:
            if problem := check_spec(spec, spec_type):
                raise ConformanceError(f"{hook} returned {problem}")
            specs.append(spec)
    return specs


def check_plugin_module(
    plugin: object,
    *,
    tmp_dir: Path | str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    variants: Mapping[str, str] | None = None,
    roots: Mapping[str, Path | str] | None = None,
    victim: Victim | None = None,
    input_size: tuple[int, int] | None = None,
    num_classes: int = 4,
    eps: Sequence[float] = (2, 8, 16),
) -> PluginReport:
    """Run the right check on every spec ``plugin``'s hooks return.

    ``params`` maps a spec name to parameters overriding its defaults (keep checks tiny), ``variants``
    a family name to the member to check, ``roots`` a dataset name to a small data root. A family
    with no variant and a dataset that needs a root but has none are skipped (listed in the report).
    """
    params, variants, roots = params or {}, variants or {}, roots or {}
    report = PluginReport()
    with contextlib.ExitStack() as stack:
        tmp = Path(tmp_dir) if tmp_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for spec in plugin_specs(plugin):
            kind = type(spec).__name__.removesuffix("Spec").lower()
            label = f"{kind}:{spec.name}"
            variant = variants.get(spec.name)
            if getattr(spec, "variant", False) and variant is None:
                report.skipped[label] = "a family: give variants={name: member} to check one member"
                continue
            own = params.get(spec.name)
            if isinstance(spec, VictimSpec):
                check_victim(
                    spec, num_classes=num_classes, input_size=input_size, variant=variant, params=own
                )
            elif isinstance(spec, AttackSpec):
                check_attack(
                    spec, victim=victim, eps=eps, tmp_dir=tmp / "attacks", variant=variant, params=own
                )
            elif isinstance(spec, DefenceSpec):
                check_defence(spec, params=own)
            else:
                root = roots.get(spec.name)
                if root is None and not spec.embedded:
                    report.skipped[label] = "reads a data root: give roots={name: small tree} to check it"
                    continue
                check_dataset(spec, root, cache_dir=tmp / "datasets" / spec.name, params=own)
            report.checked.append(label)
    return report
