"""A whole plugin module: every spec its hooks return, each through its kind's check."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advbench.api import (
    AttackSpec,
    DatasetSpec,
    DefenceSpec,
    Victim,
    VictimSpec,
)
from advbench.testing.attacks import check_attack
from advbench.testing.common import ConformanceError
from advbench.testing.datasets import check_dataset
from advbench.testing.defences import check_defence
from advbench.testing.victims import check_victim


@dataclass
class PluginReport:
    """What :func:`check_plugin_module` checked (``kind:name``) and what it skipped, with the reason."""

    checked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def plugin_specs(plugin: object) -> list[AttackSpec | VictimSpec | DatasetSpec | DefenceSpec]:
    """Every spec the hook implementations of ``plugin`` (a module or an object) return, registry-checked."""
    from advbench.plugins import KINDS, check_spec

    specs: list[Any] = []
    for hook, spec_type in KINDS.values():
        impl = getattr(plugin, hook, None)
        if impl is None:
            continue
        answer = impl() or []
        if not isinstance(answer, (list, tuple)):
            raise ConformanceError(
                f"{hook} must return a list of {spec_type.__name__}, got {type(answer).__name__}"
            )
        for spec in answer:
            if problem := check_spec(spec, spec_type):
                raise ConformanceError(f"{hook} returned {problem}")
            specs.append(spec)
    return specs


def check_plugin_module(
    plugin: object,
    *,
    tmp_dir: Path | str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    variants: Mapping[str, str] | None = None,
    roots: Mapping[str, Path | str] | None = None,
    victim: Victim | None = None,
    input_size: tuple[int, int] | None = None,
    num_classes: int = 4,
    eps: Sequence[float] = (2, 8, 16),
) -> PluginReport:
    """Run the right check on every spec ``plugin``'s hooks return.

    ``params`` maps a spec name to parameters overriding its defaults (keep checks tiny), ``variants``
    a family name to the member to check, ``roots`` a dataset name to a small data root. A family
    with no variant and a dataset that needs a root but has none are skipped (listed in the report).
    """
    params, variants, roots = params or {}, variants or {}, roots or {}
    report = PluginReport()
    with contextlib.ExitStack() as stack:
        tmp = Path(tmp_dir) if tmp_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for spec in plugin_specs(plugin):
            kind = type(spec).__name__.removesuffix("Spec").lower()
            label = f"{kind}:{spec.name}"
            variant = variants.get(spec.name)
            if getattr(spec, "variant", False) and variant is None:
                report.skipped[label] = "a family: give variants={name: member} to check one member"
                continue
            own = params.get(spec.name)
            if isinstance(spec, VictimSpec):
                check_victim(
                    spec, num_classes=num_classes, input_size=input_size, variant=variant, params=own
                )
            elif isinstance(spec, AttackSpec):
                check_attack(
                    spec, victim=victim, eps=eps, tmp_dir=tmp / "attacks", variant=variant, params=own
                )
            elif isinstance(spec, DefenceSpec):
                check_defence(spec, params=own)
            else:
                root = roots.get(spec.name)
                if root is None and not spec.embedded:
                    report.skipped[label] = "reads a data root: give roots={name: small tree} to check it"
                    continue
                check_dataset(spec, root, cache_dir=tmp / "datasets" / spec.name, params=own)
            report.checked.append(label)
    return report
