"""Ranking and metric attacks (advbench_ranking): pure losses, effect on ranks, errors, conformance kit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import advbench_ranking
from advbench.api import AdvbenchError, Attack, AttackSpec, FeatureBank, Targets, ThreatModel
from advbench.metrics.reid import distance_matrix
from advbench.testing import ConformanceError, TinyVictim, check_attack, check_plugin_module
from advbench_ranking.attacks import (
    CandidateAttack,
    FurthestNegativeAttack,
    MetricFGSM,
    RankPGD,
    kurakin_steps,
)
from advbench_ranking.losses import (
    candidate_attack_loss,
    furthest_negative_loss,
    guide_sets,
    identity_prototypes,
    metric_loss,
    pairwise_distances,
    query_attack_loss,
)

SIZE = (32, 16)
G, IDS = 40, 10  # gallery: 10 identities x 4 images, cameras alternate 0, 1


class EuclideanTiny(TinyVictim):
    """The kit's tiny CNN ranked by squared Euclidean distance of its raw (unnormalised) embedding."""

    distance = "euclidean"

    def features(self, images: Tensor) -> Tensor:
        return self.embed(images)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """The random starts draw from the global generator, which the runner seeds per batch; so do we."""
    torch.manual_seed(0)


def _world(victim: TinyVictim, n_query: int = 6):
    """(gallery images, bank, query images, pids, camids): each query a noisy copy of a camera-0 gallery image."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(G, 3, *SIZE, generator=g)
    pids, camids = torch.arange(IDS).repeat_interleave(G // IDS), torch.arange(G) % 2
    with torch.no_grad():
        bank = FeatureBank(victim.features(images), pids, camids)
    src = torch.arange(n_query) * (G // IDS)
    queries = (images[src] + 0.1 * torch.randn(n_query, 3, *SIZE, generator=g)).clamp(0, 1)
    return images, bank, queries, pids[src], torch.ones(n_query, dtype=torch.long)


def _victim(cls: type = TinyVictim) -> TinyVictim:
    return cls(input_size=SIZE, feature_dim=32).eval()


def _distances(victim, images: Tensor, bank: Tensor) -> Tensor:
    with torch.no_grad():
        return distance_matrix(victim.features(images), bank, victim.distance)


def _normalised_rank(victim, images: Tensor, bank: Tensor, cand: Tensor) -> float:
    """Mean over (query, candidate) of #gallery items strictly closer than the candidate / (G - 1)."""
    d = _distances(victim, images, bank)
    dc = d.gather(1, cand)
    return float(((d[:, None, :] < dc[:, :, None]).sum(-1).double() / (len(bank) - 1)).mean())


def _true_match_rank(victim, images: Tensor, bank: FeatureBank, pids: Tensor, camids: Tensor) -> float:
    """Mean normalised rank of each query's nearest true match (same id, other camera; junk not counted)."""
    d = _distances(victim, images, bank.features)
    out = []
    for i in range(len(images)):
        same = bank.pids == pids[i]
        true, junk = same & (bank.camids != camids[i]), same & (bank.camids == camids[i])
        out.append(float(((d[i] < d[i][true].min()) & ~junk).sum()) / (len(bank.pids) - 1))
    return sum(out) / len(out)


def _linf(adv: Tensor, clean: Tensor) -> float:
    return float((adv - clean).abs().max()) * 255


# ------------------------------------------------------------------------------------ pure losses
def test_pairwise_distances_are_advbenchs() -> None:
    a, b = torch.randn(5, 7, generator=torch.Generator().manual_seed(1)), torch.randn(9, 7)
    for distance in ("cosine", "euclidean"):
        ref = distance_matrix(a, b, distance).float()
        assert torch.allclose(pairwise_distances(a, b, distance), ref, atol=1e-5)
    with pytest.raises(AdvbenchError, match="unknown distance"):
        pairwise_distances(a, b, "manhattan")


def test_query_attack_loss_by_hand() -> None:
    # 1-D, squared euclidean: d(q, c) = 1, d(q, x) = 0.25 and 4
    q, cand, bank = torch.tensor([[0.0]]), torch.tensor([[[1.0]]]), torch.tensor([[0.5], [2.0]])
    # QA+: ([1 - 0.25]_+ + [1 - 4]_+) / 2 ; QA-: ([0.25 - 1]_+ + [4 - 1]_+) / 2
    assert query_attack_loss(q, cand, bank, "euclidean", "targeted").tolist() == [0.375]
    assert query_attack_loss(q, cand, bank, "euclidean", "demote").tolist() == [1.5]
    # a candidate already nearest costs nothing under QA+
    near = torch.tensor([[[0.1]]])
    assert query_attack_loss(q, near, bank, "euclidean", "targeted").tolist() == [0.0]
    # cosine: q = e1, c = e2 (d = 1), x = e1 (d = 0) and -e1 (d = 2)
    e = torch.eye(2)
    loss = query_attack_loss(e[:1], e[1:].view(1, 1, 2), torch.stack([e[0], -e[0]]), "cosine", "targeted")
    assert torch.allclose(loss, torch.tensor([0.5]))  # ([1 - 0]_+ + [1 - 2]_+) / 2
    with pytest.raises(AdvbenchError, match="goal"):
        query_attack_loss(q, cand, bank, "euclidean", "untargeted")


def test_candidate_attack_loss_by_hand() -> None:
    # c = 0; queries 1 and -2; bank 0.5 and 3. d(q=1): c 1, x 0.25, 4 ; d(q=-2): c 4, x 6.25, 25
    c, queries, bank = torch.tensor([[0.0]]), torch.tensor([[[1.0], [-2.0]]]), torch.tensor([[0.5], [3.0]])
    # CA+: (0.75 + 0 + 0 + 0) / 4 ; CA-: (0 + 3 + 2.25 + 21) / 4
    assert torch.allclose(
        candidate_attack_loss(c, queries, bank, "euclidean", "targeted"), torch.tensor([0.1875])
    )
    assert torch.allclose(
        candidate_attack_loss(c, queries, bank, "euclidean", "demote"), torch.tensor([6.5625])
    )


def test_metric_and_furthest_negative_losses_by_hand() -> None:
    adv = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    guides = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True], [True, False]])  # the (9, 9) guide is padding
    assert metric_loss(adv, guides, mask, "euclidean").tolist() == [5.0, 1.0]
    pull = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    assert furthest_negative_loss(adv, guides, mask, pull, "euclidean").tolist() == [5.0 - 9.0, 1.0 - 0.0]


def test_guide_sets_take_true_matches_padded() -> None:
    g_pids, g_cams = torch.tensor([3, 5, 3, 3, 7]), torch.tensor([0, 0, 1, 0, 1])
    rows, mask = guide_sets(torch.tensor([3, 7, 9]), torch.tensor([0, 0, 0]), g_pids, g_cams)
    assert mask.tolist() == [[True], [True], [False]]  # pid 3 cam 0: only row 2 is from another camera
    assert rows[:, 0].tolist()[:2] == [2, 4]
    rows, mask = guide_sets(torch.tensor([3]), torch.tensor([0]), g_pids, g_cams, cross_camera=False)
    assert rows.tolist() == [[0, 2, 3]] and mask.all()


def test_identity_prototypes_are_means() -> None:
    feats, pids = torch.tensor([[2.0, 0.0], [0.0, 4.0], [1.0, 1.0]]), torch.tensor([1, 1, 0])
    protos, values = identity_prototypes(feats, pids, "euclidean")
    assert values.tolist() == [0, 1] and protos.tolist() == [[1.0, 1.0], [1.0, 2.0]]
    protos, _ = identity_prototypes(feats, pids, "cosine")  # normalised first
    assert torch.allclose(protos[1], torch.tensor([0.5, 0.5]))
    assert torch.allclose(protos[0], F.normalize(torch.ones(2), dim=0))


# ------------------------------------------------------------------------------ attacks on a victim
@pytest.mark.parametrize("cls", [TinyVictim, EuclideanTiny])
def test_rank_pgd_promotes_and_demotes_the_candidates(cls: type) -> None:
    victim = _victim(cls)
    _, bank, queries, pids, camids = _world(victim)
    cand = torch.stack([torch.randperm(G, generator=torch.Generator().manual_seed(i))[:1] for i in range(6)])
    clean = _normalised_rank(victim, queries, bank.features, cand)
    attack = RankPGD(eps=8)
    up = attack.perturb(victim, queries, pids, camids, gallery=bank, targets=Targets("targeted", cand))
    down = attack.perturb(victim, queries, pids, camids, gallery=bank, targets=Targets("demote", cand))
    assert _linf(up, queries) <= 8 + 1e-3 and _linf(down, queries) <= 8 + 1e-3
    assert float(up.min()) >= 0 and float(up.max()) <= 1
    assert _normalised_rank(victim, up, bank.features, cand) < min(0.15, clean - 0.25)
    assert _normalised_rank(victim, down, bank.features, cand) > max(0.75, clean + 0.25)


def test_rank_pgd_with_the_semantics_preserving_term_still_promotes() -> None:
    victim = _victim()
    _, bank, queries, pids, camids = _world(victim)
    cand = torch.stack([torch.randperm(G, generator=torch.Generator().manual_seed(i))[:1] for i in range(6)])
    clean = _normalised_rank(victim, queries, bank.features, cand)
    adv = RankPGD(eps=8, sp=True).perturb(
        victim, queries, pids, camids, gallery=bank, targets=Targets("targeted", cand)
    )
    assert _normalised_rank(victim, adv, bank.features, cand) < clean - 0.2


@pytest.mark.parametrize("cls", [TinyVictim, EuclideanTiny])
def test_candidate_attack_moves_a_gallery_image_for_its_queries(cls: type) -> None:
    victim = _victim(cls)
    images, bank, queries, _, _ = _world(victim)
    with torch.no_grad():
        q_feats = victim.features(queries)
    chosen = torch.tensor([5, 17, 30])  # each attacks two of the queries
    q_sets = q_feats[torch.tensor([[0, 1], [2, 3], [4, 5]])]
    attack = CandidateAttack(eps=8)

    def rank(adv_c: Tensor) -> float:
        """Normalised rank of each perturbed candidate among the gallery, for its own queries."""
        with torch.no_grad():
            fc = victim.features(adv_c)
        ranks = []
        for i, c in enumerate(chosen.tolist()):
            others = torch.cat([bank.features[:c], bank.features[c + 1 :]])
            d_x = distance_matrix(q_sets[i], others, victim.distance)
            d_c = distance_matrix(q_sets[i], fc[i : i + 1], victim.distance)
            ranks.append(float((d_x < d_c).double().mean()))
        return sum(ranks) / len(ranks)

    clean = rank(images[chosen])
    up = attack.perturb_candidates(victim, images[chosen], q_sets, "targeted", gallery_features=bank.features)
    down = attack.perturb_candidates(victim, images[chosen], q_sets, "demote", gallery_features=bank.features)
    assert _linf(up, images[chosen]) <= 8 + 1e-3 and _linf(down, images[chosen]) <= 8 + 1e-3
    assert rank(up) < clean - 0.2 and rank(down) > clean + 0.2
    with pytest.raises(AdvbenchError, match="goal"):
        attack.perturb_candidates(
            victim, images[chosen], q_sets, "untargeted", gallery_features=bank.features
        )
    with pytest.raises(AdvbenchError, match="query_features"):
        attack.perturb_candidates(victim, images[chosen], q_feats, "targeted", gallery_features=bank.features)


@pytest.mark.parametrize(
    ("attack", "gain"),
    [
        (FurthestNegativeAttack(eps=16), 0.2),
        (MetricFGSM(eps=16), 0.05),
        (MetricFGSM(eps=16, steps=1, name="metric-fgsm"), 0.02),
    ],
    ids=["fna", "metric-ifgsm", "metric-fgsm"],
)
@pytest.mark.parametrize("cls", [TinyVictim, EuclideanTiny])
def test_metric_attacks_push_the_true_match_down(attack: Attack, gain: float, cls: type) -> None:
    victim = _victim(cls)
    _, bank, queries, pids, camids = _world(victim)
    clean = _true_match_rank(victim, queries, bank, pids, camids)
    adv = attack.perturb(victim, queries, pids, camids, gallery=bank)
    assert _linf(adv, queries) <= 16 + 1e-3
    assert _true_match_rank(victim, adv, bank, pids, camids) > clean + gain


def test_fna_beats_metric_ifgsm_and_schedules() -> None:
    victim = _victim()
    _, bank, queries, pids, camids = _world(victim)
    fna = FurthestNegativeAttack(eps=8).perturb(victim, queries, pids, camids, gallery=bank)
    ifgsm = MetricFGSM(eps=8).perturb(victim, queries, pids, camids, gallery=bank)
    assert _true_match_rank(victim, fna, bank, pids, camids) > _true_match_rank(
        victim, ifgsm, bank, pids, camids
    )
    assert [kurakin_steps(e) for e in (2, 8, 16)] == [2, 10, 20]
    assert MetricFGSM(eps=16).steps == 20 and MetricFGSM(eps=16).alpha == pytest.approx(1 / 255)
    fgsm = MetricFGSM(eps=16, steps=1, name="metric-fgsm")
    assert fgsm.steps == 1 and fgsm.alpha == pytest.approx(16 / 255)


def test_a_query_without_true_match_is_left_alone_by_the_metric_attack() -> None:
    victim = _victim()
    _, bank, queries, _, camids = _world(victim, n_query=2)
    adv = MetricFGSM(eps=8).perturb(victim, queries, torch.tensor([99, 98]), camids, gallery=bank)
    assert torch.equal(adv, queries)


# -------------------------------------------------------------------------------------------- errors
def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_targets_or_gallery_raise_one_line_errors() -> None:
    victim = _victim()
    _, bank, queries, pids, camids = _world(victim, n_query=2)
    cand = torch.tensor([[3], [9]])
    with pytest.raises(AdvbenchError) as exc:
        RankPGD(eps=8).perturb(victim, queries, pids, camids, gallery=bank)
    assert "needs targets" in _one_line(exc)
    with pytest.raises(AdvbenchError) as exc:
        RankPGD(eps=8).perturb(victim, queries, pids, camids, targets=Targets("targeted", cand))
    assert "gallery" in _one_line(exc)
    with pytest.raises(AdvbenchError) as exc:
        RankPGD(eps=8).perturb(
            victim, queries, pids, camids, gallery=bank, targets=Targets("targeted", cand[:1])
        )
    assert "[B=2, k>=1]" in _one_line(exc)
    with pytest.raises(AdvbenchError) as exc:
        RankPGD(eps=8).perturb(
            victim, queries, pids, camids, gallery=bank, targets=Targets("targeted", cand + G)
        )
    assert "rows of the gallery" in _one_line(exc)
    for attack in (FurthestNegativeAttack(eps=8), MetricFGSM(eps=8)):
        with pytest.raises(AdvbenchError) as exc:
            attack.perturb(victim, queries, pids, camids)
        assert "gallery" in _one_line(exc)
    with pytest.raises(AdvbenchError) as exc:
        RankPGD(eps=8, steps=0)
    assert "steps >= 1" in _one_line(exc)
    with pytest.raises(AdvbenchError) as exc:
        advbench_ranking.advbench_attacks()[0].build(eps=8, stepz=3)
    assert "stepz" in _one_line(exc)


# ------------------------------------------------------------------------------------ conformance
def test_specs_are_opt_in_and_pass_the_kit(tmp_path) -> None:
    specs = {s.name: s for s in advbench_ranking.advbench_attacks()}
    assert set(specs) == {"rank-pgd", "candidate-pgd", "fna", "metric-fgsm", "metric-ifgsm"}
    assert {(t.side, t.goal) for t in specs["candidate-pgd"].threats} == {
        ("gallery", "targeted"),
        ("gallery", "demote"),
    }
    assert not any(s.default for s in specs.values())
    assert {t.goal for t in specs["rank-pgd"].threats} == {"targeted", "demote"}
    report = check_plugin_module(advbench_ranking, tmp_dir=tmp_path)
    assert sorted(report.checked) == sorted(f"attack:{n}" for n in specs)


class _Unbounded(Attack):
    """A targeted attack that ignores its budget when it is given targets."""

    def perturb(self, victim, images, pids, camids, *, gallery=None, targets=None):
        if targets is None:
            return images.clone()
        return (images + 2 * self.eps / 255).clamp(0, 1)


class _Noisy(Attack):
    """A targeted attack whose output depends on a generator it does not take from the global seed."""

    def perturb(self, victim, images, pids, camids, *, gallery=None, targets=None):
        noise = torch.empty_like(images).uniform_(
            -1, 1, generator=torch.Generator().manual_seed(_Noisy.calls)
        )
        _Noisy.calls += 1
        return (images + noise * self.eps / 255).clamp(0, 1)

    calls = 0


def _spec(cls: type) -> AttackSpec:
    return AttackSpec(
        name=cls.__name__.lower().strip("_"),
        description="test",
        build=lambda eps, **_: cls(eps),
        threats=(ThreatModel("query", "targeted", "linf"),),
    )


def test_the_kit_checks_targeted_crafts() -> None:
    with pytest.raises(ConformanceError, match=r"unbounded \(targeted\)'.*L∞ must be <= eps/255"):
        check_attack(_spec(_Unbounded))
    with pytest.raises(ConformanceError, match="deterministic"):
        check_attack(_spec(_Noisy))


class _GalleryUnbounded(Attack):
    """A gallery-side attack that leaves its L∞ ball."""

    def perturb(self, victim, images, pids, camids, *, gallery=None, targets=None, queries=None):
        assert targets is not None and queries is not None  # the kit gives what the runner gives
        return (images + 2 * self.eps / 255).clamp(0, 1)


def test_the_kit_checks_gallery_side_crafts() -> None:
    spec = AttackSpec(
        name="gallery-unbounded",
        description="breaks the budget on the gallery side",
        build=lambda eps=16.0, **p: _GalleryUnbounded(eps=eps, **p),
        threats=(ThreatModel("gallery", "demote", "linf"),),
    )
    with pytest.raises(ConformanceError, match="gallery side, demote"):
        check_attack(spec)
    check_attack(next(s for s in advbench_ranking.advbench_attacks() if s.name == "candidate-pgd"), eps=(8,))
