"""The shared training loop: batch-hard triplet against a loop reference, P x K batches, a real fit."""

from __future__ import annotations

import pytest
import torch

from advbench.api import ImageSplit, TrainRecipe
from advbench.plugins import get_registry
from advbench.training import augment, batch_hard_triplet, pk_batch, train_victim


def test_batch_hard_triplet_matches_a_plain_loop() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(12, 5, generator=g)
    pids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    losses = []
    for i in range(12):
        d = [float(torch.linalg.vector_norm(emb[i] - emb[j])) for j in range(12)]
        pos = max(d[j] for j in range(12) if pids[j] == pids[i])
        neg = min(d[j] for j in range(12) if pids[j] != pids[i])
        losses.append(max(0.0, pos - neg + 0.3))
    assert abs(float(batch_hard_triplet(emb, pids, 0.3)) - sum(losses) / 12) < 1e-5


def test_pk_batch_has_p_ids_of_k_images() -> None:
    pids = torch.tensor([0] * 5 + [1] * 2 + [2] * 7 + [3] * 4)
    idx = pk_batch(pids, p=3, k=4, generator=torch.Generator().manual_seed(1))
    chosen = pids[idx].view(3, 4)
    assert (chosen == chosen[:, :1]).all() and len(set(chosen[:, 0].tolist())) == 3


def test_augment_keeps_shape_and_pixels() -> None:
    x = torch.rand(4, 3, 16, 8)
    y = augment(x, pad=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


@pytest.mark.slow
def test_training_separates_identities() -> None:
    """Four colour-coded identities: a few steps must make same-id features closer than others."""
    g = torch.Generator().manual_seed(0)
    colours = torch.rand(4, 3, 1, 1, generator=g)
    pids = torch.arange(4).repeat_interleave(8)
    images = (colours[pids] * 0.7 + 0.3 * torch.rand(32, 3, 32, 16, generator=g)).clamp(0, 1)
    split = ImageSplit((images * 255).round().to(torch.uint8), pids, torch.zeros(32, dtype=torch.long))
    entry, _ = get_registry().get("victim", "resnet10t")
    victim = entry.spec.build(num_classes=4, input_size=(32, 16), pretrained=False)
    stats = train_victim(
        victim,
        split,
        TrainRecipe(steps=25, batch_p=4, batch_k=4, warmup_steps=5),
        device=torch.device("cpu"),
        seed=0,
        progress=False,
    )
    assert stats["steps"] == 25 and torch.isfinite(torch.tensor(stats["final_loss"]))
    with torch.no_grad():
        f = victim.eval().features(split.batch(slice(None)))
    sim = (f @ f.T).fill_diagonal_(-2)
    nearest_same = (pids[sim.argmax(dim=1)] == pids).float().mean()
    assert nearest_same >= 0.9  # leave-one-out rank-1; chance is 7/31


def test_timm_features_and_logits_share_one_pass() -> None:
    """The fused call gives the same feature and logits as the two separate calls, with gradients."""
    entry, _ = get_registry().get("victim", "resnet10t")
    victim = entry.spec.build(num_classes=5, input_size=(32, 16), pretrained=False).eval()
    x = torch.rand(3, 3, 32, 16, requires_grad=True)
    feats, logits = victim.features_and_logits(x)
    assert torch.allclose(feats, victim.features(x), atol=1e-6)
    assert torch.allclose(logits, victim.logits(x), atol=1e-6)
    (feats.sum() + logits.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
