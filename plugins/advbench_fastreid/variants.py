"""The known ``fastreid:<model>`` variants: fast-reid's base recipes on a ResNet-50(-IBN) trunk.

Each is the architecture of a file under ``configs/`` in https://github.com/JDAI-CV/fast-reid:
``bot-*`` is ``Base-bagtricks.yml`` (BoT: Luo et al., CVPRW 2019), ``agw-*`` is ``Base-AGW.yml``
(AGW: Ye et al., TPAMI 2021) and ``sbs-*`` is ``Base-SBS.yml`` (fast-reid's "stronger baseline");
``-ibn`` sets ``MODEL.BACKBONE.WITH_IBN`` as ``configs/Market1501/*_R50-ibn.yml`` do. ``build`` uses
these; a loaded checkpoint takes its architecture from its own config.yaml, and the variant name
must agree with that file's backbone (see :func:`check_variant`).
"""

from __future__ import annotations

import dataclasses

from advbench.api import AdvbenchError
from advbench_fastreid.config import FastReidConfig

_BOT = FastReidConfig(last_stride=1, with_bnneck=True, neck_feat="before", pool="GlobalAvgPool")
_AGW = dataclasses.replace(_BOT, with_nl=True, pool="GeneralizedMeanPooling")
_SBS = dataclasses.replace(
    _BOT,
    with_nl=True,
    neck_feat="after",
    pool="GeneralizedMeanPoolingP",
    cls_layer="CircleSoftmax",
    scale=64.0,
    margin=0.35,
    size_test=(384, 128),
)

VARIANTS: dict[str, FastReidConfig] = {}
for _name, _cfg in (("bot-r50", _BOT), ("agw-r50", _AGW), ("sbs-r50", _SBS)):
    VARIANTS[_name] = _cfg
    VARIANTS[f"{_name}-ibn"] = dataclasses.replace(_cfg, with_ibn=True)

DESCRIPTIONS = {
    "bot": "BoT (bag of tricks): last stride 1, average pooling, BNNeck",
    "agw": "AGW: non-local blocks, GeM pooling, BNNeck",
    "sbs": "SBS: non-local blocks, learnable GeM, BNNeck, Circle-softmax classifier",
}


def variant_config(variant: str | None) -> FastReidConfig:
    """The recipe of ``variant``, or one line listing the known ones."""
    if variant not in VARIANTS:
        raise AdvbenchError(
            f"fastreid: unknown model {variant!r}; known: {', '.join(VARIANTS)} (fastreid:<model>)"
        )
    return VARIANTS[variant]


def variant_for(cfg: FastReidConfig) -> str:
    """The variants whose backbone (non-local blocks, IBN) is ``cfg``'s; SBS and AGW share one."""
    families = ("agw-r50", "sbs-r50") if cfg.with_nl else ("bot-r50",)
    suffix = "-ibn" if cfg.with_ibn else ""
    return " or ".join(f"fastreid:{f}{suffix}" for f in families)


def check_variant(cfg: FastReidConfig, variant: str, source: str) -> None:
    """The config's backbone must be the variant's: non-local blocks and IBN decide the weights.

    The head (pooling, classifier type, neck) always comes from the config, so an AGW config loads as
    ``sbs-r50`` too; records name the architecture actually built.
    """
    want = variant_config(variant)
    wrong = [
        f"{key} {got}"
        for key, got, expected in (
            ("MODEL.BACKBONE.WITH_NL", cfg.with_nl, want.with_nl),
            ("MODEL.BACKBONE.WITH_IBN", cfg.with_ibn, want.with_ibn),
        )
        if got != expected
    ]
    if wrong:
        raise AdvbenchError(
            f"fastreid: {source} has {' and '.join(wrong)}, which is not {variant}'s backbone: "
            f"load it as {variant_for(cfg)}"
        )
