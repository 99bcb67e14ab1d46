"""A loader's protocol parameters: defaults overridden by the user's, coerced and checked.

CLI values arrive as strings (``split_id=3``, ``verify=no``); each is coerced to its default's type
so a loader sees one type whatever the caller was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from advbench_datasets.errors import DatasetError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def resolve_params(
    dataset: str,
    defaults: Mapping[str, Any],
    params: Mapping[str, Any],
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Defaults overridden by ``params``, coerced to the default's type (CLI values come as strings).

    Unknown names, wrong types and values outside ``choices`` (compared case-insensitively for
    strings, returned in the spelling of ``choices``) are one-line errors listing what is valid.
    """
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise DatasetError(
            dataset, f"unknown parameter {unknown[0]!r}; valid parameters: {', '.join(defaults)}"
        )
    out = dict(defaults)
    for key, value in params.items():
        out[key] = _coerce(dataset, key, value, defaults[key])
    for key, allowed in (choices or {}).items():
        value = out[key]
        match = [c for c in allowed if str(c).lower() == str(value).lower()]
        if not match:
            raise DatasetError(
                dataset, f"parameter {key}={value!r} is not one of {', '.join(map(str, allowed))}"
            )
        out[key] = match[0]
    return out


def _coerce(dataset: str, key: str, value: Any, default: Any) -> Any:
    kind = {bool: "a boolean (true/false)", int: "an integer", str: "a string"}.get(type(default), "valid")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    else:
        return value
    raise DatasetError(dataset, f"parameter {key}={value!r} must be {kind}")
