"""Hook specifications: the whole advbench plugin contract, in one file.

A plugin is any module or object with functions decorated by :data:`advbench.hookimpl` whose names
match the specs below. Built-in plugins and third-party packages are found the same way, through
the ``advbench`` entry-point group::

    # pyproject.toml of a plugin package
    [project.entry-points.advbench]
    my_attacks = "my_package.plugin"

    # my_package/plugin.py
    from advbench import hookimpl
    from advbench.api import AttackSpec

    @hookimpl
    def advbench_attacks():
        return [AttackSpec(name="my-attack", description="...", build=MyAttack)]

Every hook is a *collecting* hook: each plugin answers with a list (or tuple) of specs of the
hook's type, or ``None`` for none, and the registry (:mod:`advbench.plugins`) merges them. Hooks
take no arguments, are called once per process when the registry is built, and must be cheap:
import heavy dependencies inside ``build``/``load``, not at module level, so that ``advbench
plugins`` stays fast.

Each spec is checked when it is registered (:func:`advbench.plugins.check_spec`): the name is
lowercase letters, digits, ``-``, ``_``, ``.`` (``:`` is reserved for ``family:variant``;
``all``, ``default`` and ``none`` are selectors), ``build``/``load`` callable, ``defaults`` a mapping with
string keys, ``description`` one non-empty line, ``version`` a string, a dataset's ``input_size``
two positive ints. Names are unique across plugins of one kind.

One ``default`` rule for every kind: a spec's ``default`` is False unless its plugin sets
``default=True``, and ``--attacks/--victims/--datasets default`` select exactly the specs that do.
Installing a package therefore adds nothing to a default run unless it opts in; the built-ins in
the default selection say ``default=True`` explicitly.

A plugin that breaks a rule never takes advbench down: if a hook raises, returns anything else, or
a spec fails the checks, or a name is also registered by another plugin, that plugin (the whole
entry point) is left out and reported by ``advbench plugins`` (exit code 1) and once per run, with
the fix ``ADVBENCH_DISABLE_PLUGINS=<entry point>``. On a name clash with a built-in the built-in
keeps the name; between two third-party packages both are left out.
"""

from __future__ import annotations

import pluggy

from advbench.api import AttackSpec, DatasetSpec, DefenceSpec, VictimSpec

PROJECT = "advbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def advbench_attacks() -> list[AttackSpec]:
    """Return the attacks this plugin provides.

    Called once when the registry is built. Each :class:`~advbench.api.AttackSpec` names the
    attack, gives a one-line description, its default parameters and ``build(eps=..., **params)``,
    which returns an :class:`~advbench.api.Attack`. Return ``[]`` (or ``None``) to provide none.
    """


@hookspec
def advbench_victims() -> list[VictimSpec]:
    """Return the re-ID models (victims) this plugin provides.

    Called once when the registry is built. Each :class:`~advbench.api.VictimSpec` has
    ``build(num_classes=..., input_size=(H, W), **params)`` returning an untrained
    :class:`~advbench.api.Victim`, its training recipe, and optionally ``load(path, ...)`` for
    foreign checkpoints (e.g. official releases). ``default=True`` puts the victim in
    ``--victims default``. ``variant=True`` makes the name a family (``name:variant``).
    """


@hookspec
def advbench_datasets() -> list[DatasetSpec]:
    """Return the datasets this plugin provides.

    Called once when the registry is built. Each :class:`~advbench.api.DatasetSpec` has
    ``load(root, cache_dir, **params)`` returning a :class:`~advbench.api.ReidDataset` with the
    exact splits of the dataset's protocol, and ``layout``, a few lines showing the folders it
    expects. Loading must raise :class:`~advbench.api.AdvbenchError` with a one-line message naming
    the path for a missing or malformed folder.
    """


@hookspec
def advbench_defences() -> list[DefenceSpec]:
    """Return the defences this plugin provides.

    Called once when the registry is built. Each :class:`~advbench.api.DefenceSpec` names the
    defence, gives a one-line description, its default parameters and ``build(**params)``, which
    returns an :class:`~advbench.api.InputDefence` (a transform of the query images before the
    victim; adaptive attacks go through it, with BPDA when it is not differentiable and EOT when it
    is randomized) or a :class:`~advbench.api.RankingDefence` (a transform of the query-gallery
    distances after the victim, e.g. re-ranking). ``none`` is reserved for "no defence".
    """
