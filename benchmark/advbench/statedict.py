"""Strict loading of foreign state dicts (official releases, other frameworks) with one-line errors.

A loader of somebody else's checkpoint must never keep random weights silently, as
``load_state_dict(strict=False)`` does when names differ. These helpers read a torch file safely
(``weights_only=True``) and load a state dict strictly, raising :class:`AdvbenchError` on one line
that names the missing and unexpected keys, the shape mismatches and, when the names are only
shifted by a common prefix, that prefix. ``who`` starts every message (the plugin's name).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advbench.api import AdvbenchError

LIST_LIMIT = 8
"""How many keys an error message names before it says "... and N more"."""


def key_list(keys: list[str], limit: int = LIST_LIMIT) -> str:
    """``"3 [a, b, c]"``: the count and the first ``limit`` keys."""
    shown = ", ".join(keys[:limit])
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{len(keys)} [{shown}{more}]"


def prefix_hint(unexpected: Iterable[str], expected: Iterable[str]) -> str:
    """``" (the checkpoint's keys look prefixed with 'X')"`` when every unexpected key is an expected key
    behind one common prefix, else ``""``.

    Prefixes are whole dotted components, the shortest that leaves an expected key: in a network
    with ``conv1.bn.bias`` and ``backbone.conv2.0.conv1.bn.bias``, ``backbone.conv2.0.conv1.bn.bias``
    found as ``x.backbone.conv2.0.conv1.bn.bias`` is prefixed with ``x.``, not ``x.backbone.conv2.0.``.
    """
    names = set(expected)
    prefixes = set()
    for key in unexpected:
        parts = key.split(".")
        cut = next((i for i in range(1, len(parts)) if ".".join(parts[i:]) in names), None)
        if cut is None:
            return ""
        prefixes.add(".".join(parts[:cut]) + ".")
    return f" (the checkpoint's keys look prefixed with {prefixes.pop()!r})" if len(prefixes) == 1 else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unpickler_reason(exc: BaseException) -> str:
    """The useful line of torch's long weights-only error (``Unsupported operand 110``, ``Unsupported
    global: GLOBAL x.Y``), else its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            return (rest or (lines[i + 1] if i + 1 < len(lines) else line)).split(". Please")[0][:200]
    return _first_line(exc)[:200]


def read_torch_file(path: Path, *, who: str, allowed: Sequence[Any] = (), resave: str = "") -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with one-line errors.

    A file that holds arbitrary objects is refused (unpickling it could run code), except the
    globals in ``allowed`` (e.g. the NumPy scalar a training engine stores); the message says how to
    re-save the tensors of a trusted file (``resave``: the format's own command). Damaged bytes
    (an unknown pickle opcode) are "not a torch checkpoint".
    """
    path = Path(path)
    if not path.is_file():
        raise AdvbenchError(f"{who}: checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            how = f": {resave}" if resave else " as a plain dict of tensors"
            raise AdvbenchError(
                f"{who}: {path} holds objects other than tensors and cannot be read with "
                f"weights_only=True ({_unpickler_reason(exc)}); if you trust the file, re-save its weights{how}"
            ) from exc
        raise AdvbenchError(f"{who}: {path} is not a torch checkpoint ({_unpickler_reason(exc)})") from exc
    except Exception as exc:  # a foreign file can fail anywhere inside the unpickler
        raise AdvbenchError(f"{who}: {path} is not a torch checkpoint ({_first_line(exc)})") from exc


def strip_prefix(state: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """``state`` without ``prefix`` when *every* key has it (a DataParallel save), else unchanged."""
    keys = [str(k) for k in state]
    if keys and all(k.startswith(prefix) for k in keys):
        return {str(k)[len(prefix) :]: v for k, v in state.items()}
    return {str(k): v for k, v in state.items()}


def strict_load(
    module: nn.Module,
    state: Mapping[str, Any],
    *,
    source: str,
    what: str,
    who: str,
    optional: Iterable[str] = (),
    shape_hint: str = "",
) -> None:
    """Load ``state`` into ``module`` strictly, or raise one line listing every mismatch.

    Missing ``*.num_batches_tracked`` counters (absent from PyTorch < 0.4.1 saves, unused in eval)
    and the keys in ``optional`` may be missing; they keep the module's values. ``shape_hint`` ends
    the message of a shape mismatch (e.g. "is it a checkpoint of another architecture?").
    """
    expected = module.state_dict()
    bad = sorted(k for k, v in state.items() if not isinstance(v, Tensor))
    if bad:
        raise AdvbenchError(f"{who}: {source}: {what} state dict has non-tensor entries {key_list(bad)}")
    may_miss = set(optional)
    missing = sorted(
        k for k in expected if k not in state and not k.endswith("num_batches_tracked") and k not in may_miss
    )
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        raise AdvbenchError(
            f"{who}: {source} does not match the {what} ({len(expected)} keys): "
            f"missing keys {key_list(missing)}; unexpected keys {key_list(unexpected)}"
            f"{prefix_hint(unexpected, expected)}"
        )
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if shapes:
        raise AdvbenchError(
            f"{who}: {source}: shapes differ from the {what} (checkpoint vs model): {key_list(shapes)}"
            + (f"; {shape_hint}" if shape_hint else "")
        )
    full = dict(expected)
    full.update(state)
    module.load_state_dict(full, strict=True)
