"""Strict loading of official DG-Net re-ID checkpoints (``id_XXXXXXXX.pt`` + ``config.yaml``).

The official evaluation loads ``id_*.pt['a']`` with ``strict=False`` and so silently keeps random
weights when the names do not match. Here every mismatch is an :class:`AdvbenchError` naming the
missing and unexpected keys; only ``*.num_batches_tracked`` counters (absent from checkpoints of
PyTorch < 0.4.1, unused in eval) may be missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from advbench import statedict
from advbench.api import AdvbenchError
from advbench_dgnet.files import read_torch_file, strict_load

CONFIG_NAME = "config.yaml"
REQUIRED_CONFIG = ("ID_class", "ID_stride", "pool")


def find_config(checkpoint: Path, config: str | Path | None = None) -> Path:
    """``config`` if given, else ``config.yaml`` beside the checkpoint or in its parent folder.

    The official release keeps ``outputs/<name>/config.yaml`` next to ``checkpoints/id_*.pt``.
    """
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise AdvbenchError(f"dgnet: config file {path} does not exist")
        return path
    candidates = [checkpoint.parent / CONFIG_NAME, checkpoint.parent.parent / CONFIG_NAME]
    for path in candidates:
        if path.is_file():
            return path
    raise AdvbenchError(
        f"dgnet: no {CONFIG_NAME} for {checkpoint} (looked in {candidates[0]} and {candidates[1]}); "
        "copy the release's config.yaml there or pass config=PATH"
    )


def read_config(path: Path) -> dict[str, Any]:
    """The re-ID fields of an official ``config.yaml``: ``ID_class``, ``ID_stride``, ``pool``."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AdvbenchError(f"dgnet: {path} is not valid YAML ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise AdvbenchError(f"dgnet: {path} is not a YAML mapping")
    absent = [k for k in REQUIRED_CONFIG if k not in data]
    if absent:
        raise AdvbenchError(f"dgnet: {path} lacks {', '.join(absent)} (needed to rebuild the re-ID model)")
    style = data.get("ID_style", "AB")
    if style != "AB":
        raise AdvbenchError(
            f"dgnet: {path} has ID_style {style!r}; only the released 'AB' model is supported"
        )
    num_classes, stride, pool = data["ID_class"], data["ID_stride"], data["pool"]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise AdvbenchError(f"dgnet: {path}: ID_class must be a positive integer, got {num_classes!r}")
    if stride not in (1, 2) or isinstance(stride, bool):
        raise AdvbenchError(f"dgnet: {path}: ID_stride must be 1 or 2, got {stride!r}")
    if pool not in ("max", "avg"):
        raise AdvbenchError(f"dgnet: {path}: pool must be 'max' or 'avg', got {pool!r}")
    return {"num_classes": num_classes, "stride": stride, "pool": pool}


def load_official(
    path: str | Path,
    input_size: tuple[int, int] = (256, 128),
    *,
    backbone: str = "resnet50",
    config: str | Path | None = None,
    fine_grained_weight: float = 0.5,
    stride: int | None = None,
    pool: str | None = None,
    droprate: float = 0.5,
    droprate_fine: float = 0.75,
    pretrained: bool | str = False,
) -> Any:
    """An eval-mode DG-Net victim from an official ``id_*.pt`` (``{'a': state_dict}``) + ``config.yaml``.

    The architecture (``ID_class``, ``ID_stride``, ``pool``) comes from ``config.yaml`` only: the
    runner passes the spec's defaults as params, so ``stride``/``pool`` here are ignored rather than
    allowed to contradict the file. ``pretrained`` is ignored too (the checkpoint has every weight).
    """
    from advbench_dgnet.model import DGNetVictim

    del stride, pool, pretrained
    path = Path(path)
    cfg_path = find_config(path, config)
    cfg = read_config(cfg_path)
    blob = read_torch_file(path)
    if not isinstance(blob, dict) or "a" not in blob:
        keys = sorted(map(str, blob)) if isinstance(blob, dict) else []
        hint = (
            " (it looks like a bare state dict, e.g. the teacher's net_last.pth, not an id_*.pt)"
            if any(k.startswith("model.") for k in keys)
            else ""
        )
        found = (
            f"a dict with keys {statedict.key_list(keys)}" if isinstance(blob, dict) else type(blob).__name__
        )
        raise AdvbenchError(f"dgnet: {path} lacks key 'a' (official id_*.pt format); found {found}{hint}")
    state = blob["a"]
    if not isinstance(state, dict):
        raise AdvbenchError(f"dgnet: {path}['a'] is a {type(state).__name__}, not a state dict")
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module.") :]: v for k, v in state.items()}
    head = state.get("classifier1.classifier.0.weight")
    if isinstance(head, Tensor) and head.ndim == 2 and head.shape[0] != cfg["num_classes"]:
        raise AdvbenchError(
            f"dgnet: {cfg_path} says ID_class {cfg['num_classes']} but {path} has a "
            f"{head.shape[0]}-way classifier (classifier1.classifier.0.weight {tuple(head.shape)}); "
            "use the config.yaml of the same run"
        )
    victim = DGNetVictim(
        cfg["num_classes"],
        input_size,
        backbone=backbone,  # type: ignore[arg-type]
        stride=cfg["stride"],
        pool=cfg["pool"],
        droprate=droprate,
        droprate_fine=droprate_fine,
        fine_grained_weight=fine_grained_weight,
    )
    strict_load(victim, state, source=str(path), what=f"DG-Net {backbone} re-ID model")
    return victim.eval()
