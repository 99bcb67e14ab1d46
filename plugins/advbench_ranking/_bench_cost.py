"""Cost per query image of this package's attacks next to PGD-10, on the same tiny victims (not a test).

Run: ``python -m advbench_ranking._bench_cost [--victim tiny|timm] [--batch 32] [--gallery 200]``.
PGD-10 is the ``pgd`` spec of the torchattacks plugin (looked up through the registry, so this
package imports no other plugin); every attack runs on the same batch, gallery and thread count,
and the figure is the median of ``--repeats`` timed calls after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from advbench.api import FeatureBank, Targets
from advbench.metrics.ranking import draw_targets
from advbench.plugins import get_registry
from advbench.testing import TinyVictim, build_attack


def _spec(kind: str, name: str):
    """A registered spec (and its variant) by name, through the registry."""
    entry, variant = get_registry().get(kind, name)
    return entry.spec, variant


def _victim(kind: str):
    if kind == "tiny":
        return TinyVictim(input_size=(64, 32), feature_dim=32).eval()
    spec, variant = _spec("victim", "timm:mobilenetv3_small_050")
    return spec.build(num_classes=8, input_size=(64, 32), **{**spec.defaults, "variant": variant}).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="tiny", choices=("tiny", "timm"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gallery", type=int, default=200)
    parser.add_argument("--eps", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    victim = _victim(args.victim)
    h, w = victim.input_size
    g_pids = torch.arange(args.gallery) // 4
    g_imgs = torch.rand(args.gallery, 3, h, w)
    with torch.no_grad():
        bank = FeatureBank(victim.features(g_imgs), g_pids, torch.arange(args.gallery) % 2)
    src = torch.arange(args.batch) * 4 % args.gallery
    queries = (g_imgs[src] + 0.1 * torch.randn(args.batch, 3, h, w)).clamp(0, 1)
    pids, camids = g_pids[src], torch.ones(args.batch, dtype=torch.long)
    rows = draw_targets(pids, g_pids, 2, seed=0)
    from advbench_ranking import advbench_attacks

    ours = {s.name: s for s in advbench_attacks()}
    runs = [("pgd", _spec("attack", "pgd")[0], None)]
    runs += [("rank-pgd (QA+)", ours["rank-pgd"], "targeted"), ("rank-pgd (QA-)", ours["rank-pgd"], "demote")]
    runs += [(n, ours[n], None) for n in ("fna", "metric-fgsm", "metric-ifgsm")]
    runs.append(("feature-pgd (= SMA)", _spec("attack", "feature-pgd")[0], None))
    base = None
    print(
        f"victim={args.victim} batch={args.batch} gallery={args.gallery} eps={args.eps:g} threads={args.threads}"
    )
    for label, spec, goal in runs:
        attack = build_attack(spec, args.eps)
        extra = {"targets": Targets(goal, rows)} if goal else {}
        times = []
        for i in range(args.repeats + 1):
            start = time.perf_counter()
            attack.perturb(victim, queries, pids, camids, gallery=bank, **extra)
            if i:
                times.append(time.perf_counter() - start)
        per_image = statistics.median(times) / args.batch * 1e3
        base = base or per_image
        print(f"{label:22s} {per_image:8.3f} ms/image   x{per_image / base:5.2f} of PGD-10")


if __name__ == "__main__":
    main()
