"""Reading DG-Net and torchvision weight files with one-line errors, and loading them strictly.

Below both :mod:`advbench_dgnet.model` (ImageNet initialisation) and :mod:`advbench_dgnet.official`
(official checkpoints), which read files alike.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advbench import statedict
from advbench.api import AdvbenchError


def read_torch_file(path: Path) -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with one-line errors."""
    if not path.is_file():
        raise AdvbenchError(f"dgnet: checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            raise AdvbenchError(
                f"dgnet: {path} holds objects other than tensors and cannot be read with "
                f"weights_only=True ({first}); if you trust the file, re-save it as a plain dict: "
                "torch.save({'a': torch.load(PATH, weights_only=False)['a']}, PATH)"
            ) from exc
        raise AdvbenchError(f"dgnet: {path} is not a torch checkpoint ({first})") from exc
    except Exception as exc:  # a foreign file can fail anywhere inside the unpickler
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdvbenchError(f"dgnet: {path} is not a torch checkpoint ({first})") from exc


def strict_load(module: nn.Module, state: Mapping[str, Any], *, source: str, what: str) -> None:
    """Load ``state`` into ``module`` strictly, or raise one line listing every mismatch
    (:func:`advbench.statedict.strict_load`; missing ``num_batches_tracked`` counters are tolerated)."""
    statedict.strict_load(module, state, source=source, what=what, who="dgnet")
