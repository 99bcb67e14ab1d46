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

Every hook is a *collecting* hook: each plugin answers with a list of specs, and the registry
(:mod:`advbench.plugins`) merges them. Names must be unique across all plugins of one kind; a
clash is an error that names both packages. Hooks take no arguments, are called once per process
when the registry is built, and must be cheap: import heavy dependencies inside ``build``/``load``,
not at module level, so that ``advbench plugins`` stays fast.
"""

from __future__ import annotations

import pluggy

from advbench.api import AttackSpec, DatasetSpec, VictimSpec

PROJECT = "advbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def advbench_attacks() -> list[AttackSpec]:
    """Return the attacks this plugin provides.

    Called once when the registry is built. Each :class:`~advbench.api.AttackSpec` names the
    attack, gives a one-line description, its default parameters and ``build(eps=..., **params)``,
    which returns an :class:`~advbench.api.Attack`. Return ``[]`` (or nothing) to provide none.
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
