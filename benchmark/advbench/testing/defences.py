"""The defence rules: an input defence keeps the images' shape, dtype and range, has ``draws >= 1`` and follows its generator; a ranking defence returns finite ``[Q, G]`` distances and leaves its inputs untouched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from advbench.api import (
    Defence,
    DefenceSpec,
    InputDefence,
    RankingDefence,
)
from advbench.testing.common import _fail, _generator, _images, _run, _shape


# ------------------------------------------------------------------------------------------ defences
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
