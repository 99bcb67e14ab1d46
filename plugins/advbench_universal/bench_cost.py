"""Cost of ``uap-retrieval`` against PGD-10 on a small victim (CPU): ``python -m advbench_universal.bench_cost``.

Prints the fit time (features of the pool, k-means, the δ steps), the seconds per query image of
applying δ, and PGD-10's seconds per query image, all on the same victim and input size. Times are
process CPU seconds (the best of ``--repeat``), so that other jobs on shared cores inflate them less.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import torch

from advbench.api import FeatureBank, ImageSplit
from advbench.plugins import get_registry


def best(fn: Callable[[], object], repeat: int) -> float:
    """The least process CPU time of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(max(1, repeat)):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv3_small_050")
    parser.add_argument("--size", default="128x64")
    parser.add_argument("--train", type=int, default=512, help="train images")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from advbench_timm.model import TimmReid
    from advbench_universal.attack import UniversalRetrievalAttack

    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    victim = TimmReid(args.model, num_classes=16, input_size=(h, w), pretrained=False).eval()
    g = torch.Generator().manual_seed(0)
    train = ImageSplit(
        torch.rand(args.train, 3, h, w, generator=g), torch.arange(args.train) % 16, torch.zeros(args.train)
    )
    queries = torch.rand(args.queries, 3, h, w, generator=g)
    ids = torch.zeros(args.queries, dtype=torch.long)

    uap = UniversalRetrievalAttack(eps=16.0, steps=args.steps)
    cpu = torch.device("cpu")

    def fit(key: str, cache: str) -> None:
        torch.manual_seed(0)
        uap.fit(victim, train, cache_dir=cache, key=key, device=cpu, progress=False)

    with tempfile.TemporaryDirectory() as cache:
        fit_s = best(lambda: fit(str(time.time_ns()), cache), args.repeat)
        fit("again", cache)
        reload_s = best(lambda: fit("again", cache), args.repeat)
    uap_q = best(lambda: uap.perturb(victim, queries, ids, ids), args.repeat) / args.queries

    gids = torch.arange(args.queries) % 16
    with torch.no_grad():  # a gallery for PGD's prototype classifier, built before the clock starts
        gallery = FeatureBank(victim.features(torch.rand(args.queries, 3, h, w, generator=g)), gids, gids % 2)
    entry, _ = get_registry().get("attack", "pgd")
    pgd = entry.spec.build(eps=16.0, **dict(entry.spec.defaults))

    def run_pgd() -> None:
        for s in range(0, args.queries, 32):
            pgd.perturb(victim, queries[s : s + 32], ids[s : s + 32], ids[s : s + 32], gallery=gallery)

    pgd_q = best(run_pgd, args.repeat) / args.queries
    print(
        f"{args.model} {h}x{w}, {args.train} train images, {args.threads} threads, CPU s: uap-retrieval fit "
        f"{fit_s:.2f} s ({args.steps} steps x {uap.config.batch_size}), reload {reload_s * 1e3:.1f} ms, "
        f"{uap_q * 1e6:.1f} µs/query; PGD-10 {pgd_q * 1e3:.1f} ms/query; fit = PGD-10 on "
        f"{fit_s / pgd_q:.0f} queries"
    )


if __name__ == "__main__":
    main()
