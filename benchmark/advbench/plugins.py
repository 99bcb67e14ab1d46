"""Plugin discovery and the one registry that names every attack, victim and dataset.

Plugins come from the ``advbench`` entry-point group only, built-ins included, so a third-party
package is discovered exactly like the plugins shipped with advbench.

One bad plugin never takes the tool down. The unit of trust is the entry point (what
``ADVBENCH_DISABLE_PLUGINS`` names): an entry point that breaks a rule below is **left out whole**
(none of its specs is registered), recorded as a :class:`PluginProblem`, and everything else keeps
working. ``advbench plugins`` lists the problems and exits 1; :meth:`Registry.problems_report` gives
the same lines to print once per run; an unknown name that a left-out plugin may provide says so.
An entry point is left out when it

* fails to import, or to register (a hook with arguments the spec does not have), or implements a
  hook that does not exist (a typo such as ``advbench_attack``);
* has a hook that raises, or returns anything but a list (or tuple, or ``None``) of the hook's spec
  type (``AttackSpec`` from ``advbench_attacks``, ...);
* returns a spec that fails :func:`check_spec`: the name is lowercase letters, digits, ``-``, ``_``,
  ``.`` (``:`` is reserved for ``family:variant``; ``all``, ``default``, ``none`` are selectors),
  ``build``/``load`` callable, ``defaults`` a mapping with string keys, ``description`` a non-empty
  single line, ``version`` a string, flags booleans, a dataset's ``input_size`` two positive ints;
* registers a name twice, or a name another entry point also registers. A clash with a built-in
  (package ``advbench``) keeps the built-in and drops the other package: a name such as ``pgd``
  must mean the same attack on every machine, so an install cannot silently replace it nor, by
  clashing, remove it. A clash between two third-party packages drops both, since neither has a
  better claim and picking by install order would make a name's meaning depend on the machine.

``ADVBENCH_DISABLE_PLUGINS=name,name`` blocks entry points by name (an unknown name is an error
listing the known ones) and ``ADVBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` keeps only advbench's own (for
hermetic tests).

Discovery lives in :mod:`advbench.discovery`, the registry in :mod:`advbench.registry` and the spec
checks in :mod:`advbench.spec_checks`; this module builds the registry from what discovery found
and re-exports their names.
"""

from __future__ import annotations

import functools

import pluggy

from advbench.api import Spec
from advbench.discovery import GROUP, SELF_DIST, Discovery, discover
from advbench.registry import KINDS, NO_DEFENCE, Entry, Kind, PluginProblem, Registry, one_line
from advbench.spec_checks import NAME_RE, RESERVED_NAMES, check_spec

__all__ = [
    "GROUP",
    "KINDS",
    "NAME_RE",
    "NO_DEFENCE",
    "RESERVED_NAMES",
    "SELF_DIST",
    "Discovery",
    "Entry",
    "Kind",
    "PluginProblem",
    "Registry",
    "build_registry",
    "check_spec",
    "discover",
    "get_registry",
]


def _answers(impl: pluggy.HookImpl, hook_name: str, spec_type: type) -> tuple[list[Spec] | None, list[str]]:
    """The specs one hook implementation returns (None: no usable answer), and what is wrong."""
    try:
        answer = impl.function()
    except Exception as exc:
        return None, [f"{hook_name} raised {one_line(exc)}"]
    if answer is None:
        return [], []
    if not isinstance(answer, (list, tuple)):
        return None, [f"{hook_name} returned {type(answer).__name__}, not a list of {spec_type.__name__}"]
    wrong = [f"{hook_name} returned {w}" for w in (check_spec(s, spec_type) for s in answer) if w]
    names = [s.name for s in answer if isinstance(s, spec_type) and isinstance(s.name, str)]
    wrong += [f"{hook_name} returned {n!r} twice" for n in sorted({n for n in names if names.count(n) > 1})]
    return list(answer), wrong


def build_registry(found: Discovery) -> Registry:
    """Call each plugin's hooks one by one, check every answer, and leave out the plugins that break
    the rules (see the module docstring) so that a failure is attributed to its plugin alone."""
    registry = Registry(problems=list(found.problems))
    claims: dict[str, list[tuple[Kind, Spec]]] = {}
    declared: dict[str, dict[Kind, frozenset[str]]] = {}
    wrong: dict[str, list[str]] = {}
    impls: dict[str, dict[Kind, pluggy.HookImpl]] = {}
    for kind, (hook_name, _) in KINDS.items():
        for impl in getattr(found.pm.hook, hook_name).get_hookimpls():
            impls.setdefault(impl.plugin_name, {})[kind] = impl
    for plugin in found.packages:
        claims[plugin], declared[plugin], wrong[plugin] = [], {}, []
        for kind, (hook_name, spec_type) in KINDS.items():
            if kind not in impls.get(plugin, {}):
                declared[plugin][kind] = frozenset()
                continue
            specs, problems = _answers(impls[plugin][kind], hook_name, spec_type)
            wrong[plugin] += problems
            if specs is not None:  # else it may provide any name of this kind
                declared[plugin][kind] = frozenset(
                    n for s in specs if isinstance(n := getattr(s, "name", 0), str)
                )
                claims[plugin] += [(kind, s) for s in specs]
    # Clashes between plugins that are otherwise valid (a broken plugin is out anyway).
    owners: dict[tuple[Kind, str], list[str]] = {}
    for plugin, specs in claims.items():
        if not wrong[plugin]:
            for kind, spec in specs:
                owners.setdefault((kind, spec.name), []).append(plugin)
    for (kind, name), plugins in owners.items():
        if len(plugins) < 2:
            continue
        builtins = [p for p in plugins if found.packages[p][0] == SELF_DIST]
        for plugin in plugins:
            others = [p for p in plugins if p != plugin]
            if len(builtins) == 1 and plugin == builtins[0]:
                continue  # the built-in keeps its name
            if len(builtins) == 1:
                wrong[plugin].append(
                    f"{kind} {name!r} is also registered by built-in package {SELF_DIST} "
                    f"(entry point {builtins[0]!r}), which keeps it"
                )
                continue
            by = ", ".join(f"package {found.packages[p][0]} (entry point {p!r})" for p in others)
            everyone = "both are" if len(plugins) == 2 else "all are"
            wrong[plugin].append(f"{kind} {name!r} is also registered by {by}; {everyone} left out")
    for plugin, (package, version) in found.packages.items():
        if wrong[plugin]:
            registry.problems += [PluginProblem(plugin, package, w, declared[plugin]) for w in wrong[plugin]]
            continue
        for kind, spec in claims[plugin]:
            registry.add(Entry(kind, spec, plugin, package, version))
    return registry


@functools.cache
def get_registry() -> Registry:
    """The process-wide registry (built on first use)."""
    return build_registry(discover())
