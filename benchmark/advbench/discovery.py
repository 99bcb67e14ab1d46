"""Plugin discovery: the pluggy manager and every entry point of the ``advbench`` group.

:func:`discover` imports and registers each entry point (built-ins first, then third-party
packages, then a test's extra plugins), honouring ``ADVBENCH_DISABLE_PLUGINS`` and
``ADVBENCH_DISABLE_PLUGIN_AUTOLOAD``; one that fails to import or register is recorded as a
:class:`~advbench.registry.PluginProblem`, never raised. Calling the hooks and checking their
answers is :func:`advbench.plugins.build_registry`'s job.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pluggy

from advbench import hookspecs
from advbench.api import AdvbenchError
from advbench.registry import KINDS, PluginProblem, one_line

GROUP = hookspecs.PROJECT
SELF_DIST = "advbench"


def _blocked(known: Iterable[str]) -> set[str]:
    """Entry-point names in ``ADVBENCH_DISABLE_PLUGINS``; a name no entry point has is an error."""
    blocked = {n.strip() for n in os.environ.get("ADVBENCH_DISABLE_PLUGINS", "").split(",") if n.strip()}
    unknown = sorted(blocked - set(known))
    if unknown:
        raise AdvbenchError(
            f"ADVBENCH_DISABLE_PLUGINS names no entry point called {', '.join(unknown)}; "
            f"known entry points: {', '.join(sorted(set(known)))}"
        )
    return blocked


@dataclass
class Discovery:
    """The plugin manager, which package each plugin came from, and the plugins that failed to load."""

    pm: pluggy.PluginManager
    packages: dict[str, tuple[str, str]] = field(default_factory=dict)
    problems: list[PluginProblem] = field(default_factory=list)


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hooks ``plugin`` implements that no spec defines (typos), which pluggy would raise on."""
    return sorted(
        caller.name
        for caller in pm.get_hookcallers(plugin) or []
        if not caller.has_spec()
        and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())
    )


def discover(extra_plugins: Iterable[tuple[str, object]] = ()) -> Discovery:
    """Register every loadable entry point of the ``advbench`` group, then ``extra_plugins``.

    ``extra_plugins`` are ``(name, module_or_object)`` pairs registered as if installed by a
    third-party package of that name (tests use it). A plugin that cannot be imported or
    registered is recorded in ``problems`` and skipped. Built-ins come first, so a third-party
    entry point reusing a built-in's entry-point name is the one left out.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    found = Discovery(pm)
    autoload = os.environ.get("ADVBENCH_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    extra = list(extra_plugins)
    eps = sorted(
        importlib.metadata.entry_points(group=GROUP),
        key=lambda e: (e.dist is None or e.dist.name != SELF_DIST, e.dist.name if e.dist else "", e.name),
    )
    blocked = _blocked([ep.name for ep in eps] + [name for name, _ in extra])
    tried: dict[str, str] = {}  # entry-point name -> the package that took it first

    def register(name: str, package: str, version: str, load: Callable[[], object]) -> None:
        if tried.setdefault(name, package) != package:
            taken = tried[name]
            found.problems.append(
                PluginProblem(
                    name,
                    package,
                    f"its entry-point name is already taken by package {taken}",
                    fix=f"rename the entry point or uninstall {package}",
                )
            )
            return
        try:
            plugin = load()
        except Exception as exc:  # a broken plugin must not take the others down
            found.problems.append(PluginProblem(name, package, f"import failed: {one_line(exc)}"))
            return
        try:
            pm.register(plugin, name=name)
        except Exception as exc:  # e.g. a hook with arguments the spec does not have
            found.problems.append(PluginProblem(name, package, f"could not be registered: {one_line(exc)}"))
            return
        if typos := _unknown_hooks(pm, plugin):
            pm.unregister(plugin)
            hooks = ", ".join(h for h, _ in KINDS.values())
            found.problems.append(
                PluginProblem(
                    name, package, f"implements unknown hook(s) {', '.join(typos)} (hooks: {hooks})"
                )
            )
            return
        found.packages[name] = (package, version)

    for ep in eps:
        dist = ep.dist.name if ep.dist else "?"
        if ep.name in blocked or (not autoload and dist != SELF_DIST):
            continue
        if tried.get(ep.name) == dist:
            continue  # the same distribution seen twice on sys.path
        register(ep.name, dist, ep.dist.version if ep.dist else "0", ep.load)
    for name, plugin in extra:
        if name not in blocked:
            register(name, name, str(getattr(plugin, "__version__", "0")), lambda p=plugin: p)
    pm.check_pending()  # cannot raise any more: plugins with unknown hooks were unregistered
    return found
