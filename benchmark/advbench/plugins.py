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
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib.metadata
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy

from advbench import hookspecs
from advbench.api import (
    AdvbenchError,
    AttackSpec,
    DatasetSpec,
    DefenceSpec,
    Spec,
    TrainRecipe,
    VictimSpec,
)

Kind = Literal["attack", "victim", "dataset", "defence"]
KINDS: dict[Kind, tuple[str, type]] = {
    "attack": ("advbench_attacks", AttackSpec),
    "victim": ("advbench_victims", VictimSpec),
    "dataset": ("advbench_datasets", DatasetSpec),
    "defence": ("advbench_defences", DefenceSpec),
}
GROUP = hookspecs.PROJECT
SELF_DIST = "advbench"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
RESERVED_NAMES = frozenset({"all", "default", "none"})  # selectors; "none" = no defence in --defences
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


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
            found.problems.append(PluginProblem(name, package, f"import failed: {_one_line(exc)}"))
            return
        try:
            pm.register(plugin, name=name)
        except Exception as exc:  # e.g. a hook with arguments the spec does not have
            found.problems.append(PluginProblem(name, package, f"could not be registered: {_one_line(exc)}"))
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


def _answers(impl: pluggy.HookImpl, hook_name: str, spec_type: type) -> tuple[list[Spec] | None, list[str]]:
    """The specs one hook implementation returns (None: no usable answer), and what is wrong."""
    try:
        answer = impl.function()
    except Exception as exc:
        return None, [f"{hook_name} raised {_one_line(exc)}"]
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
