"""The re-ID training loop every trainable victim shares: P x K batches, ID loss + batch-hard triplet.

Budgets are in steps, not seconds, so a checkpoint does not depend on the machine's speed. The
victim supplies ``train_outputs(images) -> (embedding, logits)``; either may be a tuple for models
with several heads (DG-Net): cross-entropy is summed over every logits tensor and the triplet loss
over every embedding tensor.
"""

from __future__ import annotations

import functools
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.adversarial_training import AdversarialRecipe, craft
from advbench.api import AdvbenchError, ImageSplit, TrainRecipe, Victim
from advbench.utils import progress_bar


def batch_hard_triplet(embeddings: Tensor, pids: Tensor, margin: float) -> Tensor:
    """Hermans et al.'s batch-hard triplet loss on euclidean distances."""
    dist = torch.cdist(embeddings, embeddings).clamp_min(1e-12)
    same = pids[:, None] == pids[None, :]
    hardest_pos = (dist * same).max(dim=1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(dim=1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def pk_batch(pids: Tensor, p: int, k: int, generator: torch.Generator) -> Tensor:
    """Indices of P identities x K images each (with replacement for identities with fewer than K)."""
    ids = torch.unique(pids)
    if len(ids) < 2:
        raise AdvbenchError("training needs at least two identities in the train split")
    chosen = ids[torch.randperm(len(ids), generator=generator)[: min(p, len(ids))]]
    out = []
    for pid in chosen.tolist():
        members = torch.nonzero(pids == pid).flatten()
        if len(members) >= k:
            pick = members[torch.randperm(len(members), generator=generator)[:k]]
        else:
            pick = members[torch.randint(len(members), (k,), generator=generator)]
        out.append(pick)
    return torch.cat(out)


def augment(images: Tensor, pad: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random horizontal flip and pad-and-crop (replicate padding), per image."""
    n, _, h, w = images.shape
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        images = torch.where(mask.to(images.device)[:, None, None, None], images.flip(-1), images)
    if pad > 0:
        padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
        images = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    return images


def _as_tuple(x: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)


def reid_loss(victim: Victim, images: Tensor, pids: Tensor, recipe: TrainRecipe) -> Tensor:
    """The loss one training step optimises: ID cross-entropy + batch-hard triplet, summed over heads."""
    embeddings, logits = victim.train_outputs(images)
    loss = sum(F.cross_entropy(lg, pids, label_smoothing=recipe.label_smoothing) for lg in _as_tuple(logits))
    return loss + sum(batch_hard_triplet(e, pids, recipe.triplet_margin) for e in _as_tuple(embeddings))


def train_victim(
    victim: Victim,
    train: ImageSplit,
    recipe: TrainRecipe,
    *,
    device: torch.device,
    seed: int,
    progress: bool = True,
    desc: str = "train",
    adversarial: AdversarialRecipe | None = None,
) -> dict[str, float]:
    """Train ``victim`` in place on ``train`` for ``recipe.steps`` steps; returns loss and timing.

    With ``adversarial``, every batch is replaced by PGD examples of the same loss (Madry et al.,
    :mod:`advbench.adversarial_training`).
    """
    victim.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    params = [p for p in victim.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = max(1, recipe.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
    start, losses = time.perf_counter(), []
    bar = progress_bar(range(recipe.steps), total=recipe.steps, desc=desc, enabled=progress)
    for _ in bar:
        idx = pk_batch(train.pids, recipe.batch_p, recipe.batch_k, generator)
        images = augment(train.batch(idx, device), recipe.pad_crop, recipe.flip, generator)
        pids = train.pids[idx].to(device)
        if adversarial is not None:
            loss_of = functools.partial(reid_loss, victim, pids=pids, recipe=recipe)
            images = craft(victim, images, loss_of, adversarial, generator)
        loss = reid_loss(victim, images, pids, recipe)
        if not torch.isfinite(loss):
            raise AdvbenchError(
                f"{desc}: training loss became {loss.item()} (diverged); lower the learning rate"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    victim.eval()
    tail = losses[-20:] or [float("nan")]
    return {
        "steps": recipe.steps,
        "final_loss": sum(tail) / len(tail),
        "train_seconds": time.perf_counter() - start,
    }
