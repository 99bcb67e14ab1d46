"""fast-reid's ``config.yaml`` (the ``cfg.dump()`` written beside ``model_final.pth``) as a typed record.

Only the fields that decide the test-time network and feature are read; each is checked against what
this plugin rebuilds, and anything else (another meta-architecture or backbone, SE blocks, a pooling
or norm layer not implemented here, test-time query expansion or re-ranking) stops with one
:class:`AdvbenchError` line naming the field. Absent fields take fast-reid's own defaults
(``fastreid/config/defaults.py`` in https://github.com/JDAI-CV/fast-reid), as fast-reid does when it
merges a partial file into ``get_cfg()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advbench.api import AdvbenchError

IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)

POOLS = (
    "GlobalAvgPool",
    "FastGlobalAvgPool",
    "GlobalMaxPool",
    "GeneralizedMeanPooling",
    "GeneralizedMeanPoolingP",
    "AdaptiveAvgMaxPool",
    "ClipGlobalAvgPool",
)
CLS_LAYERS = ("Linear", "CosSoftmax", "ArcSoftmax", "CircleSoftmax")
NORMS = ("BN", "syncBN")
"""Norm layers with the layout and eval-mode arithmetic of ``nn.BatchNorm2d`` (syncBN differs only
in training, across GPUs)."""
DEPTHS = ("50x",)
METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class FastReidConfig:
    """The architecture and test settings of one fast-reid ``Baseline`` model.

    Field names follow fast-reid's keys (``MODEL.BACKBONE.WITH_NL`` -> ``with_nl``); pixel statistics
    are in 0-255 units, as fast-reid applies them to 0-255 images.
    """

    depth: str = "50x"
    last_stride: int = 1
    norm: str = "BN"
    with_ibn: bool = False
    with_nl: bool = False
    feat_dim: int = 2048
    head_norm: str = "BN"
    with_bnneck: bool = False
    neck_feat: str = "before"
    pool: str = "GlobalAvgPool"
    embedding_dim: int = 0
    num_classes: int = 0
    cls_layer: str = "Linear"
    scale: float = 1.0
    margin: float = 0.0
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN_255
    pixel_std: tuple[float, float, float] = IMAGENET_STD_255
    size_test: tuple[int, int] = (256, 128)
    metric: str = "cosine"
    flip_test: bool = False

    @property
    def out_dim(self) -> int:
        """Dimension of the test feature: the embedding conv's output, else the backbone's."""
        return self.embedding_dim if self.embedding_dim > 0 else self.feat_dim

    def summary(self) -> str:
        """One line for records: ``ResNet-50 IBN-a + non-local, GeM, BNNeck, 2048-d cosine``."""
        trunk = "ResNet-" + self.depth.rstrip("x")
        extras = [e for e, on in (("IBN-a", self.with_ibn), ("non-local", self.with_nl)) if on]
        parts = [" + ".join([trunk, *extras]), self.pool]
        if self.embedding_dim:
            parts.append(f"1x1 conv to {self.embedding_dim}")
        parts.append("BNNeck" if self.with_bnneck else "no BNNeck")
        parts.append(f"{self.out_dim}-d {self.metric}" + (", flip TTA" if self.flip_test else ""))
        return ", ".join(parts)


# ----------------------------------------------------------------------------------- field checks
def _choice(known: tuple[Any, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in known:
            raise ValueError(f"is not supported (supported: {', '.join(map(str, known))})")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _count(least: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"must be an integer >= {least}")
        return value

    return check


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return float(value)


def _floats3(value: Any) -> tuple[float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError("must be a list of 3 numbers (R, G, B in 0-255 units)")
    r, g, b = (_number(v) for v in value)
    return (r, g, b)


def _positive3(value: Any) -> tuple[float, float, float]:
    out = _floats3(value)
    if min(out) <= 0:
        raise ValueError("must be 3 positive numbers")
    return out


def _size(value: Any) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError("must be [height, width]")
    h, w = (_count(1)(v) for v in value)
    return (h, w)


def _last_stride(value: Any) -> int:
    if value not in (1, 2) or isinstance(value, bool):
        raise ValueError("must be 1 or 2")
    return int(value)


# yaml path -> (dataclass field, check); fields absent from the file keep fast-reid's defaults
FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "MODEL.BACKBONE.DEPTH": ("depth", _choice(DEPTHS)),
    "MODEL.BACKBONE.LAST_STRIDE": ("last_stride", _last_stride),
    "MODEL.BACKBONE.NORM": ("norm", _choice(NORMS)),
    "MODEL.BACKBONE.WITH_IBN": ("with_ibn", _bool),
    "MODEL.BACKBONE.WITH_NL": ("with_nl", _bool),
    "MODEL.BACKBONE.FEAT_DIM": ("feat_dim", _choice((2048,))),
    "MODEL.HEADS.NORM": ("head_norm", _choice(NORMS)),
    "MODEL.HEADS.WITH_BNNECK": ("with_bnneck", _bool),
    "MODEL.HEADS.NECK_FEAT": ("neck_feat", _choice(("before", "after"))),
    "MODEL.HEADS.POOL_LAYER": ("pool", _choice(POOLS)),
    "MODEL.HEADS.EMBEDDING_DIM": ("embedding_dim", _count(0)),
    "MODEL.HEADS.NUM_CLASSES": ("num_classes", _count(0)),
    "MODEL.HEADS.CLS_LAYER": ("cls_layer", _choice(CLS_LAYERS)),
    "MODEL.HEADS.SCALE": ("scale", _number),
    "MODEL.HEADS.MARGIN": ("margin", _number),
    "MODEL.PIXEL_MEAN": ("pixel_mean", _floats3),
    "MODEL.PIXEL_STD": ("pixel_std", _positive3),
    "INPUT.SIZE_TEST": ("size_test", _size),
    "TEST.METRIC": ("metric", _choice(METRICS)),
    "TEST.FLIP.ENABLED": ("flip_test", _bool),
}

# yaml path -> the only value this plugin supports (and what to do otherwise)
FIXED: dict[str, tuple[Any, str]] = {
    "MODEL.META_ARCHITECTURE": (
        "Baseline",
        "only the Baseline meta-architecture (BoT, AGW, SBS) is supported",
    ),
    "MODEL.BACKBONE.NAME": ("build_resnet_backbone", "only fast-reid's ResNet backbone is supported"),
    "MODEL.BACKBONE.WITH_SE": (False, "squeeze-excitation blocks are not supported"),
    "MODEL.HEADS.NAME": ("EmbeddingHead", "only the EmbeddingHead is supported"),
    "TEST.AQE.ENABLED": (False, "query expansion is not part of a victim; set it to False"),
    "TEST.RERANK.ENABLED": (
        False,
        "re-ranking is not part of a victim (advbench has a re-ranking defence); set it to False",
    ),
}


def _lookup(data: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """(found, value) of ``A.B.C`` in nested mappings."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def parse_config(data: Any, source: str = "config.yaml") -> FastReidConfig:
    """A :class:`FastReidConfig` from the mapping of a fast-reid config dump; one-line errors."""
    if not isinstance(data, Mapping):
        raise AdvbenchError(f"fastreid: {source} is not a YAML mapping (expected fast-reid's cfg dump)")
    if "_BASE_" in data:
        raise AdvbenchError(
            f"fastreid: {source} has _BASE_: give the full dump fast-reid writes as OUTPUT_DIR/config.yaml "
            "(cfg.dump()), not a training recipe that inherits from another file"
        )
    for dotted, (value, why) in FIXED.items():
        found, got = _lookup(data, dotted)
        if found and got != value:
            raise AdvbenchError(f"fastreid: {source}: {dotted} {got!r}: {why}")
    values: dict[str, Any] = {}
    for dotted, (name, check) in FIELDS.items():
        found, got = _lookup(data, dotted)
        if not found:
            continue
        try:
            values[name] = check(got)
        except ValueError as exc:
            raise AdvbenchError(f"fastreid: {source}: {dotted} {got!r} {exc}") from None
    return FastReidConfig(**values)


def read_config(path: Path) -> FastReidConfig:
    """Parse fast-reid's ``config.yaml`` at ``path`` with PyYAML's safe loader."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise AdvbenchError(f"fastreid: cannot read {path} as YAML ({type(exc).__name__})") from None
    return parse_config(data, str(path))


def to_yaml_dict(cfg: FastReidConfig) -> dict[str, Any]:
    """The nested fast-reid keys of ``cfg`` (what :func:`parse_config` reads back), for saving a
    config.yaml beside a checkpoint written by this plugin."""
    out: dict[str, Any] = {}
    values = dataclasses.asdict(cfg)
    for dotted, (name, _) in FIELDS.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        value = values[name]
        node[leaf] = list(value) if isinstance(value, tuple) else value
    for dotted, (value, _) in FIXED.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
