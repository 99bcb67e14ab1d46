"""fast-reid itself as a test oracle, from a scratch install that is never a dependency.

Install it once (its PyPI release pins torch 1.13, so without its dependencies)::

    pip install --no-deps --target .fastreid-oracle fastreid==1.4.0 yacs termcolor tabulate

Tests find it through ``$ADVBENCH_FASTREID_ORACLE`` (a folder put first on ``sys.path``), else
``<repo>/.fastreid-oracle``; without it they skip. Shims, all here and none in the plugin:

* ``fastreid.evaluation``'s package ``__init__`` imports scikit-learn (for ROC), which advbench does
  not need; ``fastreid/evaluation/rank.py`` is loaded as a standalone module instead, so its Cython
  import fails and it uses its pure-Python ``evaluate_py``, the reference implementation.
* the package ships no ``configs/*.yml``; :func:`recipe_cfg` sets the fields of ``Base-bagtricks.yml``,
  ``Base-AGW.yml`` and ``Base-SBS.yml`` (https://github.com/JDAI-CV/fast-reid, ``configs/``) in code.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def oracle_dir() -> Path | None:
    """The scratch fast-reid folder, or None when there is none."""
    given = os.environ.get("ADVBENCH_FASTREID_ORACLE")
    folder = Path(given) if given else REPO / ".fastreid-oracle"
    return folder if (folder / "fastreid").is_dir() else None


def require_fastreid() -> types.ModuleType:
    """``import fastreid`` from the scratch install, or skip the test saying how to install it."""
    folder = oracle_dir()
    if folder is None:
        pytest.skip(
            "fast-reid oracle absent: pip install --no-deps --target .fastreid-oracle fastreid==1.4.0 "
            "yacs termcolor tabulate (or set ADVBENCH_FASTREID_ORACLE)"
        )
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("fastreid")
    except Exception as exc:  # an incompatible install must skip, never fail the suite
        pytest.skip(f"fast-reid oracle at {folder} does not import: {type(exc).__name__}: {exc}")


def rank_module() -> types.ModuleType:
    """``fastreid/evaluation/rank.py`` on its own (see the module docstring)."""
    fastreid = require_fastreid()
    path = Path(fastreid.__file__).parent / "evaluation" / "rank.py"
    spec = importlib.util.spec_from_file_location("fastreid_oracle_rank", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # "Cython rank evaluation ... unavailable": expected, see above
        warnings.simplefilter("ignore", UserWarning)
        spec.loader.exec_module(module)
    assert not module.IS_CYTHON_AVAI
    return module


def recipe_cfg(model: str, num_classes: int, size: tuple[int, int]) -> Any:
    """fast-reid's ``get_cfg()`` set as its ``configs/Base-*.yml`` for ``model`` (``sbs-r50-ibn``...)."""
    require_fastreid()
    from fastreid.config import get_cfg

    cfg = get_cfg()
    family = model.split("-")[0]
    heads, backbone = cfg.MODEL.HEADS, cfg.MODEL.BACKBONE
    cfg.MODEL.DEVICE = "cpu"
    backbone.PRETRAIN = False
    backbone.LAST_STRIDE = 1
    backbone.WITH_IBN = model.endswith("-ibn")
    backbone.WITH_NL = family in ("agw", "sbs")
    heads.WITH_BNNECK = True
    heads.NUM_CLASSES = num_classes
    heads.POOL_LAYER = {"bot": "GlobalAvgPool", "agw": "GeneralizedMeanPooling"}.get(
        family, "GeneralizedMeanPoolingP"
    )
    heads.NECK_FEAT = "after" if family == "sbs" else "before"
    if family == "sbs":
        heads.CLS_LAYER, heads.SCALE, heads.MARGIN = "CircleSoftmax", 64, 0.35
    cfg.INPUT.SIZE_TRAIN = list(size)
    cfg.INPUT.SIZE_TEST = list(size)
    return cfg


def randomise(model: nn.Module, size: tuple[int, int], seed: int = 0) -> nn.Module:
    """Non-trivial weights everywhere, with finite features: random BN / IN affines (also the
    zero-initialised non-local ``W`` BNs), GeM's p, then BN running statistics measured on a random
    batch in train mode and perturbed, so that a load which kept any default value shows."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d)]
    with torch.no_grad():
        for m in norms:
            if m.affine:
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: one batch gives its own statistics
        for name, p in model.named_parameters():
            if name.endswith("pool_layer.p"):
                p.fill_(2.5)
            elif ".W.1." in name and name.endswith("weight"):  # non-local residual gains: small, as
                p.mul_(0.1)  # the blocks' attention is cubic in the input and stacks up to 5 times
        model.train()
        images = torch.rand(4, 3, *size, generator=gen) * 255
        x = (images - model.pixel_mean) / model.pixel_std
        model.heads.bottleneck(model.heads.pool_layer(model.backbone(x)))
        for m in norms:
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
                m.running_var.mul_(0.8 + 0.4 * torch.rand(m.running_var.shape, generator=gen))
                m.running_mean.add_(0.05 * torch.randn(m.running_mean.shape, generator=gen))
    return model.eval()


def build_and_save(
    model: str, folder: Path, num_classes: int, size: tuple[int, int], seed: int = 0, embedding_dim: int = 0
) -> Any:
    """fast-reid's own ``build_model`` for ``model`` (with a 1x1 embedding conv to ``embedding_dim``
    when > 0), randomised and saved as its ``Checkpointer`` saves (``folder/model_final.pth`` =
    ``{"model": state_dict, ...}``) with ``cfg.dump()`` as ``folder/config.yaml``; returns the model
    in eval mode."""
    require_fastreid()
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer

    cfg = recipe_cfg(model, num_classes, size)
    cfg.MODEL.HEADS.EMBEDDING_DIM = embedding_dim
    torch.manual_seed(seed)
    net = randomise(build_model(cfg), size, seed)
    folder.mkdir(parents=True, exist_ok=True)
    Checkpointer(net, str(folder)).save("model_final")
    (folder / "config.yaml").write_text(cfg.dump(), encoding="utf-8")
    return net.eval()


def oracle_features(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """fast-reid's eval-mode output for images in [0, 1] (it takes 0-255 and normalises in place)."""
    with torch.no_grad():
        return net({"images": images.mul(255.0)})
