"""The victim rules: features, determinism, batch independence, input size, and the identity head of a trainable victim."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from advbench.api import (
    Victim,
    VictimSpec,
)
from advbench.testing.common import (
    DEFAULT_INPUT_SIZE,
    _close,
    _fail,
    _generator,
    _images,
    _params,
    _run,
    _shape,
)


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
