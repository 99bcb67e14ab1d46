"""The attack rules: shape, range and budget of ``perturb``, the cache of a fit, targeted and gallery-side threats."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advbench.api import (
    Attack,
    AttackSpec,
    FeatureBank,
    ImageSplit,
    Targets,
    Victim,
)
from advbench.testing.common import LINF_SLACK, PATCH_AREA, TinyVictim, _close, _fail, _images, _params


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
