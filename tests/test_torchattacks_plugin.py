"""torchattacks through the prototype classifier, and the feature-space PGD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advbench.api import AdvbenchError, FeatureBank, Victim
from advbench.plugins import get_registry
from advbench_torchattacks.catalog import SUPPORTED, UNSUPPORTED
from advbench_torchattacks.wrapper import PrototypeClassifier


class SmallNet(Victim):
    """A real (small) convolutional embedding network; cheap enough to run 25 attacks on."""

    input_size = (16, 8)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d((4, 2)),
            nn.Flatten(),
            nn.Linear(64, 16),
        )
        self.feature_dim = 16

    def features(self, images: Tensor) -> Tensor:
        return F.normalize(self.net(images), dim=1)


@pytest.fixture(scope="module")
def setup() -> tuple[Victim, Tensor, Tensor, FeatureBank]:
    victim = SmallNet().eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 16, 8, generator=g)
    pids = torch.tensor([1, 1, 2, 2, 3, 3])
    # 12 gallery identities (APGDT targets the 9 runner-up classes, so it needs at least 10)
    gallery_images = torch.cat(
        [
            (images + 0.05 * torch.randn(6, 3, 16, 8, generator=g)).clamp(0, 1),
            torch.rand(10, 3, 16, 8, generator=g),
        ]
    )
    gallery_pids = torch.tensor([1, 1, 2, 2, 3, 3, *range(4, 14)])
    with torch.no_grad():
        bank = FeatureBank(victim.features(gallery_images), gallery_pids, torch.zeros(16, dtype=torch.long))
    return victim, images, pids, bank


def test_prototype_classifier_labels_and_logits(setup) -> None:
    victim, images, pids, bank = setup
    model = PrototypeClassifier(victim, bank)
    assert model.num_classes == 13 and model(images).shape == (6, 13)
    assert model.labels(images, pids).tolist() == [0, 0, 1, 1, 2, 2]
    unknown = model.labels(images, torch.tensor([1, 1, 2, 2, 3, 99]))  # no prototype: the clean prediction
    assert unknown[5] == model(images[5:]).argmax()


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_every_supported_torchattack_runs_within_budget(name: str, setup) -> None:
    """The claim of the catalog: each supported class works through the wrapper on re-ID crops."""
    victim, images, pids, bank = setup
    entry, variant = get_registry().get("attack", f"torchattacks:{name}")
    small = {"steps": 2} if "steps" in _params(name) else {}
    if name == "Square":
        small = {"n_queries": 20}
    if name == "SPSA":
        small = {"nb_sample": 8}
    attack = entry.spec.build(eps=8, variant=variant, **small)
    torch.manual_seed(0)
    adv = attack.perturb(victim, images, pids, torch.zeros(6, dtype=torch.long), gallery=bank)
    assert adv.shape == images.shape and torch.isfinite(adv).all()
    assert (adv - images).abs().max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def _params(name: str) -> set[str]:
    import inspect

    import torchattacks

    return set(inspect.signature(getattr(torchattacks, name).__init__).parameters)


def test_unsupported_and_unknown_torchattacks_are_clear_errors() -> None:
    entry, _ = get_registry().get("attack", "torchattacks:CW")
    with pytest.raises(AdvbenchError, match="not supported: L2 attack"):
        entry.spec.build(eps=8, variant="CW")
    with pytest.raises(AdvbenchError, match="no L∞ attack 'Nope'"):
        entry.spec.build(eps=8, variant="Nope")
    with pytest.raises(AdvbenchError, match="takes no parameter"):
        get_registry().get("attack", "pgd")[0].spec.build(eps=8, stepz=3)
    assert set(SUPPORTED).isdisjoint(UNSUPPORTED)


def test_pgd_alpha_follows_the_budget() -> None:
    attack = get_registry().get("attack", "pgd")[0].spec.build(eps=8, steps=10)
    assert attack.kwargs["eps"] == pytest.approx(8 / 255) and attack.kwargs["alpha"] == pytest.approx(2 / 255)


def test_pgd_moves_queries_off_their_identity_more_than_noise(setup) -> None:
    victim, images, pids, bank = setup
    model = PrototypeClassifier(victim, bank)
    torch.manual_seed(0)
    adv = (
        get_registry()
        .get("attack", "pgd")[0]
        .spec.build(eps=16, steps=10)
        .perturb(victim, images, pids, pids, gallery=bank)
    )
    noise = (images + 16 / 255 * torch.randint(0, 2, images.shape).mul(2).sub(1)).clamp(0, 1)
    labels = model.labels(images, pids)

    def margin(x: Tensor) -> float:
        logits = model(x)
        return float((logits.gather(1, labels[:, None]).squeeze(1) - logits.max(dim=1).values).mean())

    assert margin(adv) < margin(images) and margin(adv) < margin(noise) - 0.1


def test_feature_pgd_lowers_cosine_to_clean(setup) -> None:
    victim, images, pids, _ = setup
    torch.manual_seed(0)
    adv = (
        get_registry().get("attack", "feature-pgd")[0].spec.build(eps=16).perturb(victim, images, pids, pids)
    )
    assert (adv - images).abs().max() <= 16 / 255 + 1e-6
    noise = (images + 16 / 255 * torch.randint(0, 2, images.shape).mul(2).sub(1)).clamp(0, 1)
    clean = victim.features(images)
    cos_adv = (victim.features(adv) * clean).sum(dim=1)
    cos_noise = (victim.features(noise) * clean).sum(dim=1)
    assert (1 - cos_adv.mean()) > 3 * (1 - cos_noise.mean())


def test_prototypes_are_built_once_per_victim_and_gallery(setup) -> None:
    """perturb runs once per query batch; the prototypes are rebuilt only for a new victim or gallery object."""
    victim, images, pids, bank = setup
    built: list[PrototypeClassifier] = []

    class Counting(PrototypeClassifier):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    attack = get_registry().get("attack", "pgd")[0].spec.build(eps=8, steps=2)
    attack.classifier_type = Counting
    camids = torch.zeros(6, dtype=torch.long)
    torch.manual_seed(0)
    first = attack.perturb(victim, images, pids, camids, gallery=bank)
    torch.manual_seed(0)
    second = attack.perturb(victim, images, pids, camids, gallery=bank)
    assert len(built) == 1 and attack.classifier(victim, bank) is built[0]
    # reuse changes nothing: a fresh attack (new classifier) gives the same pixels and logits
    torch.manual_seed(0)
    fresh = get_registry().get("attack", "pgd")[0].spec.build(eps=8, steps=2)
    assert torch.equal(first, second) and torch.equal(
        first, fresh.perturb(victim, images, pids, camids, gallery=bank)
    )
    assert torch.equal(built[0](images), PrototypeClassifier(victim, bank)(images))
    # the key is identity, not content: an equal gallery in a new object, or a new victim, rebuilds
    copy = FeatureBank(bank.features.clone(), bank.pids.clone(), bank.camids.clone())
    attack.perturb(victim, images, pids, camids, gallery=copy)
    assert len(built) == 2 and built[1].victim is victim
    other = SmallNet().eval().requires_grad_(False)
    attack.perturb(other, images, pids, camids, gallery=copy)
    attack.perturb(other, images, pids, camids, gallery=copy)
    assert len(built) == 3 and built[2].victim is other and attack.classifier(other, copy) is built[2]


class BatchNormNet(SmallNet):
    """SmallNet with a BatchNorm layer, whose mode decides whether a forward moves its running stats."""

    def __init__(self) -> None:
        super().__init__()
        self.net.insert(1, nn.BatchNorm2d(8))


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_perturb_leaves_the_victims_modes_as_they_were(name: str, setup) -> None:
    """torchattacks' model.train() on the wrapper used to leave an eval victim training (BatchNorm stats drifting)."""
    _, images, pids, _ = setup
    victim = BatchNormNet().eval().requires_grad_(False)
    victim.net[0].train()  # a mixed state is kept as it is, module by module
    with torch.no_grad():
        bank = FeatureBank(victim.features(images), pids, torch.zeros(6, dtype=torch.long))
    modes = [m.training for m in victim.modules()]
    attack = (
        get_registry().get("attack", name)[0].spec.build(eps=8, **({"steps": 2} if name == "pgd" else {}))
    )
    attack.perturb(victim, images, pids, pids, gallery=bank)
    assert [m.training for m in victim.modules()] == modes
    stats = victim.net[1].running_mean.clone()
    with torch.no_grad():
        victim.features(torch.rand(6, 3, 16, 8))
    assert torch.equal(stats, victim.net[1].running_mean)
