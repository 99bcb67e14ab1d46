"""Plugin discovery and the one registry that names every attack, victim and dataset.

Plugins come from the ``advbench`` entry-point group only, built-ins included, so a third-party
package is discovered exactly like the plugins shipped with advbench. Each entry point is loaded
in its own ``try``: a plugin that fails to import is reported by ``advbench plugins`` and does not
take the others down. ``ADVBENCH_DISABLE_PLUGINS=name,name`` blocks entry points by name and
``ADVBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` keeps only advbench's own (for hermetic tests).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib.metadata
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import pluggy

from advbench import hookspecs
from advbench.api import AdvbenchError, AttackSpec, DatasetSpec, Spec, VictimSpec

Kind = Literal["attack", "victim", "dataset"]
KINDS: dict[Kind, tuple[str, type]] = {
    "attack": ("advbench_attacks", AttackSpec),
    "victim": ("advbench_victims", VictimSpec),
    "dataset": ("advbench_datasets", DatasetSpec),
}
GROUP = hookspecs.PROJECT
SELF_DIST = "advbench"


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


@dataclass
class Registry:
    """Every registered spec by kind and name; built once from the plugin manager."""

    entries: dict[Kind, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    load_errors: list[tuple[str, str]] = field(default_factory=list)

    def add(self, entry: Entry) -> None:
        known = self.entries[entry.kind]
        if entry.name in known:
            other = known[entry.name]
            raise AdvbenchError(
                f"{entry.kind} name {entry.name!r} is registered twice: by package {other.package!r} "
                f"(plugin {other.plugin!r}) and by package {entry.package!r} (plugin {entry.plugin!r})"
            )
        known[entry.name] = entry

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.entries[kind])

    def get(self, kind: Kind, name: str) -> tuple[Entry, str | None]:
        """The entry for ``name`` and its variant (``family:variant`` names), or a did-you-mean error."""
        known = self.entries[kind]
        if name in known:
            return known[name], None
        family, sep, variant = name.partition(":")
        if sep and family in known and getattr(known[family].spec, "variant", False) and variant:
            return known[family], variant
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise AdvbenchError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(sorted(known))}")

    def select(self, kind: Kind, selector: str | Iterable[str]) -> list[str]:
        """Expand ``all``, ``default``, comma lists and shell patterns (``resnet*``) to names.

        Order follows the selector; each name appears once. Unknown plain names raise.
        """
        items = selector.split(",") if isinstance(selector, str) else list(selector)
        out: list[str] = []
        for raw in (i.strip() for i in items):
            if not raw:
                continue
            if raw == "all":
                found = [n for n, e in sorted(self.entries[kind].items()) if not _is_family(e)]
            elif raw == "default":
                found = [
                    n for n, e in sorted(self.entries[kind].items()) if getattr(e.spec, "default", False)
                ]
            elif any(c in raw for c in "*?["):
                found = fnmatch.filter(sorted(self.entries[kind]), raw)
                if not found:
                    raise AdvbenchError(
                        f"no {kind} matches {raw!r}. Known {kind}s: {', '.join(self.names(kind))}"
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


def _blocked() -> set[str]:
    return {n.strip() for n in os.environ.get("ADVBENCH_DISABLE_PLUGINS", "").split(",") if n.strip()}


@dataclass
class Discovery:
    """The plugin manager, which package each plugin came from, and the plugins that failed to load."""

    pm: pluggy.PluginManager
    packages: dict[str, tuple[str, str]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)


def discover(extra_plugins: Iterable[tuple[str, object]] = ()) -> Discovery:
    """Register every loadable entry point of the ``advbench`` group, then ``extra_plugins``.

    ``extra_plugins`` are ``(name, module_or_object)`` pairs registered as if installed (tests use it).
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    found = Discovery(pm)
    autoload = os.environ.get("ADVBENCH_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    blocked = _blocked()
    eps = importlib.metadata.entry_points(group=GROUP)
    for ep in sorted(eps, key=lambda e: (e.dist.name if e.dist else "", e.name)):
        dist = ep.dist.name if ep.dist else "?"
        if ep.name in blocked or (not autoload and dist != SELF_DIST) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            found.errors.append((f"{ep.name} ({dist})", f"{type(exc).__name__}: {exc}"))
            continue
        found.packages[ep.name] = (dist, ep.dist.version if ep.dist else "0")
    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
        found.packages[name] = (name, str(getattr(plugin, "__version__", "0")))
    pm.check_pending()
    return found


def build_registry(found: Discovery) -> Registry:
    """Call each plugin's hooks one by one, so that a failure is attributed to its plugin."""
    registry = Registry(load_errors=list(found.errors))
    for kind, (hook_name, spec_type) in KINDS.items():
        for impl in reversed(getattr(found.pm.hook, hook_name).get_hookimpls()):
            package, version = found.packages.get(impl.plugin_name, (impl.plugin_name, "0"))
            try:
                specs = impl.function() or []
            except Exception as exc:
                registry.load_errors.append(
                    (f"{impl.plugin_name}.{hook_name}", f"{type(exc).__name__}: {exc}")
                )
                continue
            for spec in specs:
                if not isinstance(spec, spec_type):
                    raise AdvbenchError(
                        f"plugin {impl.plugin_name!r} ({package}) returned {type(spec).__name__} from "
                        f"{hook_name}; expected {spec_type.__name__}"
                    )
                registry.add(Entry(kind, spec, impl.plugin_name, package, version))
    return registry


@functools.cache
def get_registry() -> Registry:
    """The process-wide registry (built on first use)."""
    return build_registry(discover())
