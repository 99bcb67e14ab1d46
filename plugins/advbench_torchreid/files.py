"""Reading a torchreid checkpoint file: ``torch.load`` with NumPy scalars allowed, and its state dict.

Below both :mod:`advbench_torchreid.model` (ImageNet initialisation) and
:mod:`advbench_torchreid.checkpoint` (loading a trained victim), which read files alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from advbench import statedict
from advbench.api import AdvbenchError


def _numpy_globals() -> list[Any]:
    """What torchreid's engine pickles besides tensors: ``rank1`` is a NumPy scalar."""
    import numpy as np

    core = np._core if hasattr(np, "_core") else np.core  # NumPy 2 renamed np.core
    scalar = core.multiarray.scalar
    dtypes = [getattr(np.dtypes, n) for n in ("Float32DType", "Float64DType", "Int64DType", "Int32DType")]
    return [scalar, np.dtype, *dtypes]


def read_torch_file(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` (NumPy scalars allowed) with one-line errors."""
    return statedict.read_torch_file(
        path,
        who="torchreid",
        allowed=_numpy_globals(),
        resave="torch.save({'state_dict': torch.load(PATH, weights_only=False)['state_dict']}, PATH)",
    )


def state_dict_of(blob: Any, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict without a ``module.`` prefix, the other entries) of a checkpoint dict or bare state."""
    if not isinstance(blob, Mapping):
        raise AdvbenchError(f"torchreid: {path} holds a {type(blob).__name__}, not a checkpoint dict")
    if "state_dict" in blob:
        state, meta = blob["state_dict"], {k: v for k, v in blob.items() if k != "state_dict"}
        if not isinstance(state, Mapping):
            raise AdvbenchError(
                f"torchreid: {path}['state_dict'] is a {type(state).__name__}, not a state dict"
            )
    else:
        state, meta = blob, {}
    bad = sorted(str(k) for k, v in state.items() if not isinstance(v, Tensor))
    if bad:
        hint = (
            "" if "state_dict" in blob else " (a torchreid checkpoint keeps its weights under 'state_dict')"
        )
        raise AdvbenchError(
            f"torchreid: {path}: state dict has non-tensor entries {statedict.key_list(bad)}{hint}"
        )
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module.") :]: v for k, v in state.items()}
    return {str(k): v for k, v in state.items()}, meta
