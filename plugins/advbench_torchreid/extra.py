"""The optional torchreid extra: importing it, or one line saying how to install it.

Below both :mod:`advbench_torchreid` (the hook) and :mod:`advbench_torchreid.model`, which need it.
"""

from __future__ import annotations

from typing import Any

from advbench.api import AdvbenchError

__all__ = ["INSTALL_HINT", "require_torchreid"]

INSTALL_HINT = 'pip install -e ".[torchreid]"'


def require_torchreid(name: str) -> Any:
    """The imported ``torchreid.reid.models`` module, or one line saying how to install the extra."""
    import warnings

    try:
        with warnings.catch_warnings():  # "Cython evaluation ... is unavailable" at import
            warnings.simplefilter("ignore")
            from torchreid.reid import models
    except ImportError as exc:
        missing = f" ({exc.name} is missing)" if getattr(exc, "name", None) else ""
        raise AdvbenchError(f"{name} needs the torchreid extra: {INSTALL_HINT}{missing}") from None
    return models
