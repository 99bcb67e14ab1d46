"""The pixels of the leaderboard's image strips: example queries, clean and adversarial, and the
gallery images each ranked first before and after the attack (indices kept in the evaluation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from advbench.api import AdvbenchError, ImageSplit
from advbench.config import RunConfig
from advbench.data.catalog import DatasetCatalog
from advbench.io import verified
from advbench.leaderboard import StripSource
from advbench.plots import StripExample
from advbench.plugins import Registry
from advbench.queries import open_adv
from advbench.records import CraftRecord, EvalRecord

CHOSEN_SHOWN = 3
"""Chosen candidates a targeted strip shows per query (a craft may choose more)."""


def _hwc(image: Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).clamp(0, 1).numpy()


def _chosen(
    craft: CraftRecord, ev: EvalRecord, row: int, after: list[int], gallery: ImageSplit
) -> dict[str, list]:
    """The chosen candidates of query ``row`` of a targeted or demote craft, at most
    :data:`CHOSEN_SHOWN`, with their 1-based ranks before and after; nothing for other crafts."""
    if craft.targets is None or ev.clean_target_ranks is None or ev.adv_target_ranks is None:
        return {}
    targets = craft.targets[row]
    shown = list(zip(targets, ev.clean_target_ranks[row], ev.adv_target_ranks[row], strict=True))
    shown = shown[:CHOSEN_SHOWN]
    images = gallery.batch(torch.tensor([t for t, _, _ in shown]))
    return {
        "chosen": [_hwc(g) for g in images],
        "chosen_ranks": [(b + 1, a + 1) for _, b, a in shown],
        "after_chosen": [g in targets for g in after],
    }


def strip_source(config: RunConfig, registry: Registry) -> StripSource:
    """Strip pixels for crafts of ``config``'s datasets, read from the data and the cache; None for
    a craft whose stored queries are gone or were made from other images (other dataset params)."""
    catalog = DatasetCatalog(config, registry)
    datasets = set(registry.select("dataset", config.datasets))

    def source(craft: CraftRecord, ev: EvalRecord) -> list[StripExample] | None:
        examples = ev.examples
        if examples is None or craft.dataset not in datasets or not verified(craft.adv_file):
            return None
        try:
            query, gallery = catalog.split(craft.dataset, "query"), catalog.split(craft.dataset, "gallery")
            if len(query) != craft.n_query or tuple(query.images.shape[2:]) != tuple(craft.input_size):
                return None
            adv = open_adv(Path(craft.adv_file), query)
            rows = torch.tensor(examples["query"])
            clean, attacked = query.batch(rows), adv.batch(rows)
            out = []
            for i, row in enumerate(rows.tolist()):
                before = gallery.batch(torch.tensor(examples["before"][i]))
                after = gallery.batch(torch.tensor(examples["after"][i]))
                out.append(
                    StripExample(
                        clean=_hwc(clean[i]),
                        adv=_hwc(attacked[i]),
                        pid=int(query.pids[row]),
                        before=[_hwc(g) for g in before],
                        before_match=[bool(m) for m in examples["before_match"][i]],
                        after=[_hwc(g) for g in after],
                        after_match=[bool(m) for m in examples["after_match"][i]],
                        **_chosen(craft, ev, row, examples["after"][i], gallery),
                    )
                )
            return out
        except (AdvbenchError, OSError, KeyError, IndexError):
            return None

    return source
