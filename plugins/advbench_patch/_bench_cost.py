"""Cost per query image of ``advpattern`` next to PGD-10 on the same tiny victim (not a test).

Run: ``python -m advbench_patch._bench_cost [--victim tiny|timm] [--batch 32] [--threads 1]``.
PGD-10 is the ``pgd`` spec of the torchattacks plugin, looked up through the registry; both attacks
run on the same batch and gallery; the figure is the median of ``--repeats`` timed calls after a
warm-up. advpattern's cost is about ``steps * eot_draws`` forward/backward passes of the victim per
image (PGD-10: 10), plus the patch resampling.
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
    entry, variant = get_registry().get(kind, name)
    return entry.spec, variant


def _victim(kind: str, size: tuple[int, int]):
    if kind == "tiny":
        return TinyVictim(input_size=size, feature_dim=32).eval()
    spec, variant = _spec("victim", "timm:mobilenetv3_small_050")
    return spec.build(num_classes=8, input_size=size, **{**spec.defaults, "variant": variant}).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="tiny", choices=("tiny", "timm"))
    parser.add_argument("--size", default="64x32", help="HxW")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gallery", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = (int(v) for v in args.size.split("x"))
    victim = _victim(args.victim, (h, w))
    g_pids = torch.arange(args.gallery) // 4
    g_imgs = torch.rand(args.gallery, 3, h, w)
    with torch.no_grad():
        bank = FeatureBank(victim.features(g_imgs), g_pids, torch.arange(args.gallery) % 2)
    src = torch.arange(args.batch) * 4 % args.gallery
    queries = (g_imgs[src] + 0.1 * torch.randn(args.batch, 3, h, w)).clamp(0, 1)
    pids, camids = g_pids[src], torch.ones(args.batch, dtype=torch.long)
    rows = draw_targets(pids, g_pids, 2, seed=0)
    from advbench_patch import advbench_attacks

    (ours,) = advbench_attacks()
    runs = [("pgd (PGD-10, eps 8)", _spec("attack", "pgd")[0], 8.0, {}, None)]
    runs += [("advpattern evasion", ours, 255.0, {"area": 0.1}, None)]
    runs += [("advpattern impersonation", ours, 255.0, {"area": 0.1}, "targeted")]
    print(
        f"victim={args.victim} size={h}x{w} batch={args.batch} threads={args.threads} defaults={dict(ours.defaults)}"
    )
    base = None
    for label, spec, eps, extra, goal in runs:
        attack = build_attack(spec, eps, params=extra)
        kw = {"targets": Targets(goal, rows)} if goal else {}
        times = []
        for i in range(args.repeats + 1):
            start = time.perf_counter()
            attack.perturb(victim, queries, pids, camids, gallery=bank, **kw)
            if i:
                times.append(time.perf_counter() - start)
        per_image = statistics.median(times) / args.batch * 1e3
        base = base or per_image
        print(f"{label:26s} {per_image:8.3f} ms/image   x{per_image / base:6.2f} of PGD-10")


if __name__ == "__main__":
    main()
