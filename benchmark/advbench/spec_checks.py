"""What a valid spec is: the checks every spec a plugin's hook returns must pass.

The rules are listed in :mod:`advbench.plugins`, which leaves out a plugin whose spec fails them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from advbench.api import AttackSpec, DatasetSpec, DefenceSpec, TrainRecipe, VictimSpec
from advbench.registry import KINDS

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
RESERVED_NAMES = frozenset({"all", "default", "none"})  # selectors; "none" = no defence in --defences


def check_spec(spec: object, spec_type: type) -> str | None:
    """What is wrong with one spec a hook returned (one line), or None when it is valid."""
    if not isinstance(spec, spec_type):
        return f"{type(spec).__name__} where {spec_type.__name__} was expected"
    assert isinstance(spec, (AttackSpec, VictimSpec, DatasetSpec, DefenceSpec))
    wrong: list[str] = []
    if not isinstance(spec.name, str) or not NAME_RE.match(spec.name):
        wrong.append("the name must be lowercase letters, digits, '-', '_', '.' (':' is for family:variant)")
    elif spec.name in RESERVED_NAMES:
        wrong.append(f"the name {spec.name!r} is a reserved selector")
    call = "load" if isinstance(spec, DatasetSpec) else "build"
    if not callable(getattr(spec, call)):
        wrong.append(f"{call} is not callable")
    if isinstance(spec, VictimSpec) and spec.load is not None and not callable(spec.load):
        wrong.append("load is neither None nor callable")
    if not isinstance(spec.defaults, Mapping) or not all(isinstance(k, str) for k in spec.defaults):
        wrong.append("defaults must be a mapping with string keys")
    text = spec.description
    if not isinstance(text, str) or not text.strip() or "\n" in text or "\r" in text:
        wrong.append("description must be a non-empty single line")
    if not isinstance(spec.version, str):
        wrong.append("version must be a string")
    flags = ("embedded", "default") if isinstance(spec, DatasetSpec) else ("default", "variant")
    flags = ("default",) if isinstance(spec, DefenceSpec) else flags
    wrong += [f"{flag} must be True or False" for flag in flags if not isinstance(getattr(spec, flag), bool)]
    if isinstance(spec, VictimSpec) and not isinstance(spec.recipe, TrainRecipe):
        wrong.append("recipe must be a TrainRecipe")
    if isinstance(spec, VictimSpec) and not (
        isinstance(spec.variants, tuple) and all(isinstance(v, str) and v for v in spec.variants)
    ):
        wrong.append("variants must be a tuple of non-empty strings")
    if isinstance(spec, VictimSpec) and spec.variants and not spec.variant:
        wrong.append("variants are listed but the spec is not a family (variant=False)")
    if isinstance(spec, AttackSpec) and not isinstance(spec.threat_model, str):
        wrong.append("threat_model must be a string")
    if isinstance(spec, DatasetSpec):
        if not isinstance(spec.layout, str):
            wrong.append("layout must be a string")
        size: Any = spec.input_size
        if not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            wrong.append("input_size must be two positive ints (H, W)")
    if not wrong:
        return None
    kind = next(k for k, (_, t) in KINDS.items() if isinstance(spec, t))
    return f"{kind} {spec.name!r}: {'; '.join(wrong)}"
