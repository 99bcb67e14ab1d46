"""The registry: every attack, victim, dataset and defence by name, and the plugins left out.

Built once per process by :func:`advbench.plugins.build_registry` from what
:mod:`advbench.discovery` found; here is only the data and its look-ups (a name, a
``family:variant``, a selector such as ``all``, ``default`` or ``resnet*``), so that code which
takes a registry need not import the plugin machinery.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from advbench.api import (
    AdvbenchError,
    AttackSpec,
    DatasetSpec,
    DefenceSpec,
    Spec,
    VictimSpec,
)

Kind = Literal["attack", "victim", "dataset", "defence"]
KINDS: dict[Kind, tuple[str, type]] = {
    "attack": ("advbench_attacks", AttackSpec),
    "victim": ("advbench_victims", VictimSpec),
    "dataset": ("advbench_datasets", DatasetSpec),
    "defence": ("advbench_defences", DefenceSpec),
}
NO_DEFENCE = "none"


@dataclass(frozen=True)
class Entry:
    """A spec together with where it came from."""

    kind: Kind
    spec: Spec
    plugin: str
    package: str
    package_version: str

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class PluginProblem:
    """Why one entry point was left out of the registry, as data (one per problem).

    ``declared`` holds the names it declared by kind; a kind it could not answer (import failed,
    hook raised) is missing, so it *may* provide any name of that kind.
    """

    plugin: str  # the entry-point name: what ADVBENCH_DISABLE_PLUGINS takes
    package: str  # the distribution that installs it
    reason: str  # one line
    declared: Mapping[Kind, frozenset[str]] = field(default_factory=dict, compare=False)
    fix: str = ""  # how to get rid of it, when disabling by name is not the answer

    def line(self) -> str:
        fix = self.fix or f"disable it with ADVBENCH_DISABLE_PLUGINS={self.plugin}"
        return (
            f"plugin problem: package {self.package} (entry point {self.plugin!r}) left out: "
            f"{self.reason}; {fix}"
        )

    def provides(self, kind: Kind, match: Callable[[str], bool]) -> bool | None:
        """True if it declared a matching name, None if it may have (unknown), False if not."""
        if kind not in self.declared:
            return None
        return any(match(n) for n in self.declared[kind])


@dataclass
class Registry:
    """Every registered spec by kind and name, and the plugins left out; built once per process."""

    entries: dict[Kind, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    problems: list[PluginProblem] = field(default_factory=list)

    def add(self, entry: Entry) -> None:
        known = self.entries[entry.kind]
        if entry.name in known:  # build_registry resolves clashes first: this is a bug, not input
            other = known[entry.name]
            raise AdvbenchError(
                f"{entry.kind} name {entry.name!r} is registered twice: by package {other.package!r} "
                f"(plugin {other.plugin!r}) and by package {entry.package!r} (plugin {entry.plugin!r})"
            )
        known[entry.name] = entry

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.entries[kind])

    def problems_report(self) -> list[str]:
        """One line per problem (package, what is wrong, how to disable it); empty when all loaded."""
        return [p.line() for p in self.problems]

    def _left_out_note(self, kind: Kind, match: Callable[[str], bool]) -> tuple[str, bool]:
        """'package P failed to load (why) and may provide it' for each left-out plugin that may.

        The flag is True when one of them declared a matching name for sure.
        """
        notes: dict[str, str] = {}
        sure = False
        for problem in self.problems:
            provides = problem.provides(kind, match)
            if provides is False or problem.plugin in notes:
                continue
            sure = sure or bool(provides)
            notes[problem.plugin] = (
                f"package {problem.package} (entry point {problem.plugin!r}) failed to load "
                f"({problem.reason}) and {'provides' if provides else 'may provide'} it"
            )
        return "; ".join(notes.values()), sure

    def get(self, kind: Kind, name: str) -> tuple[Entry, str | None]:
        """The entry for ``name`` and its variant (``family:variant`` names), or a one-line error.

        The error names left-out plugins that may provide ``name``; the did-you-mean is kept
        unless one of them declared it. A robust victim (``resnet10t@at4``) is its base victim's entry.
        """
        if kind == "victim" and "@" in name:  # advbench.adversarial_training names; a bad suffix raises
            from advbench.adversarial_training import split_name

            return self.get(kind, split_name(name)[0])
        known = self.entries[kind]
        if name in known:
            return known[name], None
        family, sep, variant = name.partition(":")
        if sep and family in known and getattr(known[family].spec, "variant", False) and variant:
            return known[family], variant
        note, sure = self._left_out_note(kind, lambda n: n in (name, family))
        close = [] if sure else difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise AdvbenchError(
            f"unknown {kind} {name!r}{'; ' + note if note else ''}.{hint} "
            f"Known {kind}s: {', '.join(sorted(known))}"
        )

    def select(self, kind: Kind, selector: str | Iterable[str]) -> list[str]:
        """Expand ``all``, ``default``, comma lists and shell patterns (``resnet*``) to names.

        Order follows the selector; each name appears once. Unknown plain names raise. For
        defences, ``none`` (no defence, :data:`NO_DEFENCE`) is kept in its place as a name of its
        own (``"none,jpeg"`` -> ``["none", "jpeg"]``); ``all`` and ``default`` never include it.
        """
        items = selector.split(",") if isinstance(selector, str) else list(selector)
        out: list[str] = []
        for raw in (i.strip() for i in items):
            if not raw:
                continue
            if raw == NO_DEFENCE and kind == "defence":
                found = [NO_DEFENCE]
            elif raw == "all":
                found = [n for n, e in sorted(self.entries[kind].items()) if not _is_family(e)]
            elif raw == "default":
                found = [
                    n for n, e in sorted(self.entries[kind].items()) if getattr(e.spec, "default", False)
                ]
            elif any(c in raw for c in "*?["):
                found = fnmatch.filter(sorted(self.entries[kind]), raw)
                if not found:
                    note, _ = self._left_out_note(kind, lambda n, pattern=raw: fnmatch.fnmatch(n, pattern))
                    raise AdvbenchError(
                        f"no {kind} matches {raw!r}{'; ' + note if note else ''}. "
                        f"Known {kind}s: {', '.join(self.names(kind))}"
                    )
            else:
                self.get(kind, raw)
                found = [raw]
            out.extend(n for n in found if n not in out)
        if not out:
            raise AdvbenchError(f"no {kind} selected by {selector!r}")
        return out


def _is_family(entry: Entry) -> bool:
    return bool(getattr(entry.spec, "variant", False))


def one_line(exc: BaseException) -> str:
    """``exc`` as a short one-line :attr:`PluginProblem.reason`."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
