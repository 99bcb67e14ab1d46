"""Strict loading of fast-reid checkpoints: ``model_final.pth`` plus the ``config.yaml`` beside it.

fast-reid's ``Checkpointer`` saves ``{"model": state_dict, "optimizer": ..., "iteration": ...}``
(https://github.com/JDAI-CV/fast-reid, ``fastreid/utils/checkpoint.py``) and its trainer dumps the
full config as ``OUTPUT_DIR/config.yaml`` next to it. The config decides the architecture; every key
of the network must be in the file with its shape (only ``num_batches_tracked`` counters may be
missing), and any mismatch is one :class:`AdvbenchError` line naming the keys. The one tolerated
difference is the classifier: its size is read from ``heads.weight``, and when it is not the
dataset's number of train ids the victim has no logits (``num_classes`` 0) and says so in ``info``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from advbench.api import AdvbenchError
from advbench.statedict import key_list, read_torch_file, strict_load, strip_prefix
from advbench_fastreid.config import FastReidConfig, read_config
from advbench_fastreid.model import FastReidVictim
from advbench_fastreid.variants import check_variant

CONFIG_NAME = "config.yaml"
PIXEL_KEYS = ("pixel_mean", "pixel_std")
"""Buffers fast-reid saved before 1.4 (persistent then, non-persistent since)."""


def find_config(checkpoint: Path, config: str | Path | None = None) -> Path:
    """``config`` if given, else ``config.yaml`` beside the checkpoint (fast-reid's OUTPUT_DIR)."""
    if config is not None:
        path = Path(config).expanduser()
        if not path.is_file():
            raise AdvbenchError(f"fastreid: config file {path} does not exist")
        return path
    path = checkpoint.parent / CONFIG_NAME
    if not path.is_file():
        raise AdvbenchError(
            f"fastreid: no {CONFIG_NAME} beside {checkpoint}: copy the config.yaml that fast-reid wrote "
            f"in the training's OUTPUT_DIR to {path}, or pass config=PATH"
        )
    return path


def read_state(path: Path) -> dict[str, Any]:
    """The network's state dict in a fast-reid file: ``blob['model']``, or a bare state dict."""
    blob = read_torch_file(path, who="fastreid")
    if not isinstance(blob, dict):
        raise AdvbenchError(
            f"fastreid: {path} holds a {type(blob).__name__}, not a fast-reid checkpoint dict"
        )
    if "model" in blob:
        state = blob["model"]
        if not isinstance(state, dict):
            raise AdvbenchError(f"fastreid: {path}['model'] is a {type(state).__name__}, not a state dict")
    elif blob and all(isinstance(v, Tensor) for v in blob.values()):
        state = blob
    else:
        raise AdvbenchError(
            f"fastreid: {path} lacks key 'model' (fast-reid's Checkpointer format) and is not a bare "
            f"state dict; found keys {key_list(sorted(map(str, blob)))}"
        )
    return strip_prefix(state, "module.")


def classifier_rows(state: dict[str, Any], cfg: FastReidConfig, path: Path, cfg_path: Path) -> int:
    """Rows of the checkpoint's ``heads.weight``; it must agree with a non-zero ``NUM_CLASSES``."""
    weight = state.get("heads.weight")
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        return cfg.num_classes  # the strict load names the missing or malformed key
    rows = int(weight.shape[0])
    if cfg.num_classes and rows != cfg.num_classes:
        raise AdvbenchError(
            f"fastreid: {cfg_path} says MODEL.HEADS.NUM_CLASSES {cfg.num_classes} but {path} has a "
            f"{rows}-way classifier (heads.weight {tuple(weight.shape)}); use the config.yaml of the same run"
        )
    return rows


def _pixel_stats(state: dict[str, Any], path: Path) -> tuple[Tensor, Tensor] | None:
    """A pre-1.4 file's own ``pixel_mean``/``pixel_std`` (removed from ``state``), or None."""
    found = [k for k in PIXEL_KEYS if k in state]
    if not found:
        return None
    if len(found) != 2 or not all(isinstance(state[k], Tensor) and state[k].numel() == 3 for k in PIXEL_KEYS):
        raise AdvbenchError(f"fastreid: {path}: pixel_mean and pixel_std must both be 3-value tensors")
    mean, std = (state.pop(k).float() for k in PIXEL_KEYS)
    return mean, std


def load_checkpoint(
    path: str | Path,
    *,
    input_size: tuple[int, int],
    num_classes: int,
    variant: str,
    config: str | Path | None = None,
    resize: bool = True,
) -> FastReidVictim:
    """An eval-mode victim from a fast-reid checkpoint and its config.yaml, loaded strictly.

    ``resize`` (default) runs the network at the config's ``INPUT.SIZE_TEST`` when the dataset's
    ``input_size`` differs (bilinear, inside the victim); ``resize=False`` runs it at the dataset's size.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise AdvbenchError(f"fastreid: checkpoint {path} does not exist")
    cfg_path = find_config(path, config)
    cfg = read_config(cfg_path)
    check_variant(cfg, variant, str(cfg_path))
    state = read_state(path)
    stats = _pixel_stats(state, path)
    rows = classifier_rows(state, cfg, path, cfg_path)
    victim = FastReidVictim(
        cfg,
        input_size=input_size,
        classifier_rows=rows,
        num_classes=num_classes,
        run_size=cfg.size_test if resize else None,
    )
    strict_load(victim, state, source=str(path), what=f"fast-reid {variant} model", who="fastreid")
    if stats is not None:
        victim.set_pixel_stats(*stats)
    victim.info = describe(victim, path, cfg_path, num_classes, stats is not None)
    return victim.eval()


def describe(
    victim: FastReidVictim, path: Path, cfg_path: Path, num_classes: int, own_stats: bool
) -> dict[str, str]:
    """What records say about a loaded checkpoint: file, architecture, classifier use, input size."""
    rows = int(victim.heads.weight.shape[0])
    if victim.num_classes:
        classifier = f"{rows} ids: used for logits"
    elif rows == 0:
        classifier = "none (0 ids): no logits"
    else:
        classifier = f"{rows} ids, dataset has {num_classes}: not used"
    (h, w), (rh, rw) = victim.input_size, victim.run_size
    size = f"{h}x{w}" if (h, w) == (rh, rw) else f"{h}x{w} resized to {rh}x{rw} (INPUT.SIZE_TEST)"
    return {
        "checkpoint": f"fast-reid {path.name}",
        "config": str(cfg_path),
        "architecture": victim.cfg.summary(),
        "classifier": classifier,
        "input": size,
        "pixel_stats": "checkpoint's pixel_mean/pixel_std" if own_stats else "config MODEL.PIXEL_MEAN/STD",
    }
