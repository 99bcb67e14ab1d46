"""The ``synthetic`` dataset spec and its ``load``: generate once (cached by fingerprint), then list the splits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from advbench.api import AdvbenchError, DatasetSpec, ReidDataset, Sample
from advbench_datasets.synthetic.config import (
    _NAME_RE,
    _SPLITS,
    DEFAULTS,
    GENERATOR_VERSION,
    _check_params,
    fingerprint,
)
from advbench_datasets.synthetic.generator import _materialise


def load(root: Path | None, cache_dir: Path, **params: Any) -> ReidDataset:
    """Generate (once, cached by fingerprint) and list the synthetic dataset. ``root`` is unused."""
    del root
    p = _check_params(params)
    t0 = time.perf_counter()
    folder, manifest, names, generated = _materialise(p, Path(cache_dir))
    splits: dict[str, list[Sample]] = {}
    for split in _SPLITS:
        samples = []
        for name in names[split]:
            m = _NAME_RE.match(name)
            if m is None:
                raise AdvbenchError(f"synthetic: unexpected file {folder / split / name}; delete {folder}")
            samples.append(Sample(str(folder / split / name), int(m.group(1)), int(m.group(2)) - 1))
        splits[split] = samples
    relabel = {pid: i for i, pid in enumerate(sorted({s.pid for s in splits["train"]}))}
    train = [Sample(s.path, relabel[s.pid], s.camid) for s in splits["train"]]
    info: dict[str, Any] = {
        "params": p,
        "input_size": (p["height"], p["width"]),  # the crop size runs use (not the spec's default)
        "version": GENERATOR_VERSION,
        "generated_in_s": manifest["generated_in_s"],
        "generated_now": generated,
        "loaded_in_s": round(time.perf_counter() - t0, 3),
        "train_pids": f"raw 1..{p['train_ids']} relabelled to 0..{p['train_ids'] - 1}",
        "distractor_pids": f"{1 + p['train_ids'] + p['test_ids']}..{p['train_ids'] + p['test_ids'] + p['distractor_ids']}"
        if p["distractor_ids"]
        else "none",
    }
    return ReidDataset(
        name="synthetic",
        train=train,
        query=splits["query"],
        gallery=splits["gallery"],
        root=folder,
        fingerprint=fingerprint(p),
        num_train_pids=len(relabel),
        info=info,
    )


SPEC = DatasetSpec(
    name="synthetic",
    description="Embedded procedural people (clothing, body shape; 6 cameras), generated on CPU in seconds",
    load=load,
    defaults=dict(DEFAULTS),
    layout=(
        "generated, no data root needed:\n"
        "<cache>/synthetic/<fingerprint>/\n"
        "  train/ query/ gallery/   {pid:04d}_c{cam+1}s1_{idx:06d}_00.png\n"
        "  manifest.json            written last: params, counts, generated_in_s"
    ),
    embedded=True,
    default=True,
    input_size=(128, 64),
    version=GENERATOR_VERSION,
)
