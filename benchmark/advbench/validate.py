"""Every input of a run checked before any work starts, each problem one :class:`AdvbenchError` line.

:func:`validate` checks a :class:`~advbench.config.RunConfig` against the registry, and
:func:`read_config_file` checks a ``--config`` YAML file. The CLI calls both before
:func:`advbench.runner.run`, which is the first to load (generate) a dataset, decode images or train;
library users call :func:`validate` themselves. Nothing here loads a dataset or builds a victim.

The rules:

* **Plugin parameters** (``--attack-param`` / ``--victim-param`` / ``--dataset-param NAME.KEY=VALUE``):
  NAME must be a registered plugin (a family as ``family:variant``) and KEY one of its spec's
  ``defaults``. Two exceptions: an attack *family* (``variant=True``, e.g. ``torchattacks:<Name>``)
  takes whatever its build takes (the torchattacks class's constructor arguments), and a victim
  given ``--victim-weights`` whose spec has a foreign-checkpoint ``load`` also takes its loader's
  options (``dgnet.config``); those keys are checked by the plugin itself. Every selected attack is
  built once with its parameters (attacks only store settings when built), so a value the plugin
  rejects fails here too. Victims are not built (that would build their networks).
* **Types** follow the default's: an integer where an int is expected (an int where a float is
  expected is fine, a bool never a number), a number where a float is expected, and true/false or a
  word where a bool or a string is expected (options such as ``pretrained`` take true, false, auto
  or a path). A ``None`` default takes anything.
* ``--input-size``: each side at least :data:`MIN_SIDE` pixels, the patch of the ViT victims; every
  built-in victim runs from there (non-multiples of 16 included), and the tests run at 32x16.
* ``--eps``: finite, in (0, 255], no value twice. ``--batch-size`` and ``--train-steps`` >= 1,
  ``--threads`` >= 0.
* ``--victim-weights NAME=PATH``: a registered victim and an existing file.
* ``--out``: created if missing, and a file must be writable in it; ``--cache`` must not be a file.
"""

from __future__ import annotations

import difflib
import math
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from advbench.api import AdvbenchError
from advbench.config import BACKENDS, BUDGETS, GOALS, PROTOCOLS, SIDES, RunConfig
from advbench.plugins import Kind, Registry

MIN_SIDE = 16
"""Smallest side of ``--input-size``: one 16-pixel ViT patch (smaller inputs crash ``vit_tiny_patch16_224``)."""

PARAM_FLAGS: dict[Kind, str] = {
    "attack": "--attack-param",
    "victim": "--victim-param",
    "dataset": "--dataset-param",
    "defence": "--defence-param",
}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` Did you mean X?`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(close)}?" if close else ""


# ------------------------------------------------------------------------------------- types
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def expected_type(default: Any) -> tuple[str, Callable[[Any], bool]] | None:
    """What a parameter with this default takes: (description, check), or None for anything."""
    if default is None:
        return None
    if isinstance(default, bool | str):
        return "true/false or a word", lambda v: isinstance(v, bool | str)
    if isinstance(default, int):
        return "an integer", _is_int
    if isinstance(default, float):
        return "a number", _is_number
    kind = type(default)
    return f"a {kind.__name__}", lambda v: isinstance(v, kind)


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


# ------------------------------------------------------------------------------------ config
def validate(config: RunConfig, registry: Registry, *, out: bool = True) -> None:
    """Raise :class:`AdvbenchError` on the first bad input of ``config``; otherwise return.

    Cheap checks first; the output folder (created if missing) last, and only with ``out``
    (``advbench train`` writes no leaderboard).
    """
    _numbers(config)
    _choices(config)
    _selection(config, registry)
    for kind in PARAM_FLAGS:
        _params(config, registry, kind)
    _attacks_build(config, registry)
    _weights(config, registry)
    _folders(config, out=out)


def _numbers(config: RunConfig) -> None:
    eps = config.eps
    if not isinstance(eps, tuple | list) or not eps or not all(_is_number(e) for e in eps):
        raise AdvbenchError(f"--eps expects numbers in 1/255 units such as 4,8,16, got {eps!r}")
    for e in eps:
        if not math.isfinite(e) or not 0 < e <= 255:
            raise AdvbenchError(f"--eps values must be finite and in (0, 255] (1/255 units), got {e:g}")
    values = [float(e) for e in eps]
    repeated = sorted({e for e in values if values.count(e) > 1})
    if repeated:
        raise AdvbenchError(f"--eps lists {', '.join(f'{e:g}' for e in repeated)} more than once")
    for flag, value, least in (
        ("--batch-size", config.batch_size, 1),
        ("--threads", config.threads, 0),
        ("--seed", config.seed, 0),
        ("--detect-images", config.detect_images, 0),
        ("--targets-per-query", config.targets_per_query, 1),
        ("--gallery-images", config.gallery_images, 1),
    ):
        if not _is_int(value):
            raise AdvbenchError(f"{flag} expects an integer, got {_shown(value)}")
        if value < least:
            raise AdvbenchError(f"{flag} must be >= {least}, got {value}")
    steps = config.train_steps
    if steps is not None and (not _is_int(steps) or steps < 1):
        raise AdvbenchError(f"--train-steps must be an integer >= 1, got {steps!r}")
    size = config.input_size
    if size is not None:
        if not isinstance(size, tuple | list) or len(size) != 2 or not all(_is_int(s) for s in size):
            raise AdvbenchError(f"--input-size expects HxW such as 256x128, got {size!r}")
        if min(size) < MIN_SIDE:
            raise AdvbenchError(
                f"--input-size {size[0]}x{size[1]} is too small: each side must be at least {MIN_SIDE} "
                f"pixels (one ViT patch), e.g. 32x16"
            )


def _choices(config: RunConfig) -> None:
    for flag, value, known in (
        ("--protocol", config.protocol, PROTOCOLS),
        ("--backend", config.backend, BACKENDS),
    ):
        if value not in known:
            raise AdvbenchError(
                f"unknown {flag} {value!r}.{did_you_mean(str(value), known)} Choose {', '.join(known)}"
            )
    areas = config.patch_areas
    if not isinstance(areas, tuple | list) or not areas or not all(_is_number(a) for a in areas):
        raise AdvbenchError(
            f"--patch-area expects fractions of the image such as 0.05,0.1, got {_shown(areas)}"
        )
    for area in areas:
        if not 0 < area < 1:
            raise AdvbenchError(
                f"--patch-area values must lie in (0, 1) (a fraction of the image), got {area:g}"
            )
    if len(set(areas)) != len(areas):
        raise AdvbenchError("--patch-area lists a value more than once")
    for flag, values, known in (
        ("--side", config.sides, SIDES),
        ("--goal", config.goals, GOALS),
        ("--budget", config.budgets, BUDGETS),
    ):
        if not isinstance(values, tuple | list) or not values:
            raise AdvbenchError(f"{flag} expects one or more of {', '.join(known)}, got {_shown(values)}")
        for value in values:
            if value not in known:
                raise AdvbenchError(
                    f"unknown {flag} {value!r}.{did_you_mean(str(value), known)} Choose {', '.join(known)}"
                )
    if not isinstance(config.device, str):
        raise AdvbenchError(f"--device expects auto, cpu or cuda[:N], got {_shown(config.device)}")
    if config.backend == "local":  # Ray workers resolve the device on their own machines
        from advbench.utils import resolve_device

        resolve_device(config.device)
    else:
        from advbench.backends.ray import import_ray

        import_ray()


def _selection(config: RunConfig, registry: Registry) -> None:
    for kind, selector in (
        ("dataset", config.datasets),
        ("victim", config.victims),
        ("attack", config.attacks),
        ("defence", config.defences),
    ):
        if not isinstance(selector, str):
            raise AdvbenchError(f"--{kind}s expects names separated by commas, got {_shown(selector)}")
        registry.select(kind, selector)  # type: ignore[arg-type]
    if config.fit_on is not None:
        registry.get("dataset", config.fit_on)


def _params(config: RunConfig, registry: Registry, kind: Kind) -> None:
    """Plugin names, keys and value types of one kind's ``NAME.KEY=VALUE`` parameters."""
    flag = PARAM_FLAGS[kind]
    given: Mapping[str, Any] = getattr(config, f"{kind}_params")
    for name, params in given.items():
        if not isinstance(params, Mapping):
            raise AdvbenchError(f"{flag} {name}: expects KEY=VALUE pairs, got {_shown(params)}")
        try:
            entry, variant = registry.get(kind, name)
        except AdvbenchError as exc:
            raise AdvbenchError(f"{flag} {name}.{next(iter(params), 'KEY')}: {exc}") from None
        spec = entry.spec
        family = bool(getattr(spec, "variant", False))
        if family and variant is None:
            raise AdvbenchError(
                f"{flag} {name}.KEY: {name} is a family; scope its parameters as {name}:<variant>.KEY=VALUE"
            )
        defaults = spec.defaults
        loader_options = (
            kind == "victim" and getattr(spec, "load", None) is not None and name in config.victim_weights
        )
        for key, value in params.items():
            if key not in defaults:
                if (family and kind == "attack") or loader_options:
                    continue  # the build (attack families) or the loader checks these keys
                takes = f"{name} takes: {', '.join(defaults)}" if defaults else f"{name} takes no parameters"
                hint = " The budget is --eps." if key == "eps" else did_you_mean(key, defaults)
                raise AdvbenchError(f"{flag} {name}.{key}: unknown parameter {key!r}.{hint} {takes}")
            expected = expected_type(defaults[key])
            if expected is not None and not expected[1](value):
                raise AdvbenchError(
                    f"{flag} {name}.{key}={value}: {key} expects {expected[0]} "
                    f"(default {defaults[key]!r}), got {_shown(value)}"
                )


def _attacks_build(config: RunConfig, registry: Registry) -> None:
    """Build every selected or parameterised attack once: a value its plugin rejects fails here."""
    names = dict.fromkeys([*registry.select("attack", config.attacks), *config.attack_params])
    eps = float(max(config.eps))
    for name in names:
        entry, variant = registry.get("attack", name)
        params = {**entry.spec.defaults, **config.attack_params.get(name, {})}
        try:
            entry.spec.build(eps=eps, **params, **({"variant": variant} if variant is not None else {}))
        except (AdvbenchError, TypeError, ValueError) as exc:
            message = " ".join(str(exc).split())
            raise AdvbenchError(f"attack {name} cannot be built with its parameters: {message}") from None


def _weights(config: RunConfig, registry: Registry) -> None:
    for name, path in config.victim_weights.items():
        try:
            registry.get("victim", name)
        except AdvbenchError as exc:
            raise AdvbenchError(f"--victim-weights {name}=...: {exc}") from None
        file = Path(path).expanduser()
        if file.is_dir():
            raise AdvbenchError(f"--victim-weights {name}={file} is a folder; give the checkpoint file")
        if not file.is_file():
            raise AdvbenchError(f"--victim-weights {name}={file}: no such file")


def _folders(config: RunConfig, *, out: bool) -> None:
    cache = Path(config.cache_dir)
    if cache.exists() and not cache.is_dir():
        raise AdvbenchError(f"--cache {cache} is a file, not a folder")
    if not out:
        return
    folder = Path(config.out)
    if folder.exists() and not folder.is_dir():
        raise AdvbenchError(f"--out {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdvbenchError(f"--out {folder} cannot be created: {exc.strerror or exc}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".advbench-write-test-"):
            pass
    except OSError as exc:
        raise AdvbenchError(f"--out {folder} is not writable: {exc.strerror or exc}") from None


# ------------------------------------------------------------------------------ config files
def _names(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _eps_value(v: Any) -> bool:
    return isinstance(v, str) or _is_number(v) or (isinstance(v, list) and all(_is_number(x) for x in v))


def _size_value(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v))


def _mapping_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, Mapping) and all(isinstance(k, str) and check(x) for k, x in v.items())


_TEXT = ("a string", lambda v: isinstance(v, str))
_PATH = ("a path", lambda v: isinstance(v, str))
_INT = ("an integer", _is_int)
_BOOL = ("true or false", lambda v: isinstance(v, bool))
_SCOPED = ("a mapping NAME: {KEY: VALUE}", _mapping_of(lambda x: isinstance(x, Mapping)))

CONFIG_OPTIONS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "datasets": ("names (a string or a list)", _names),
    "victims": ("names (a string or a list)", _names),
    "attacks": ("names (a string or a list)", _names),
    "defences": ("names (a string or a list)", _names),
    "detect_images": _INT,
    "eps": ("numbers (16, '4,16' or a list)", _eps_value),
    "out": _PATH,
    "cache": _PATH,
    "data_root": _PATH,
    "device": _TEXT,
    "seed": _INT,
    "victim_weights": ("a mapping VICTIM: PATH", _mapping_of(lambda x: isinstance(x, str))),
    "attack_params": _SCOPED,
    "victim_params": _SCOPED,
    "dataset_params": _SCOPED,
    "defence_params": _SCOPED,
    "attack_param": ("NAME.KEY=VALUE strings", _names),
    "victim_param": ("NAME.KEY=VALUE strings", _names),
    "dataset_param": ("NAME.KEY=VALUE strings", _names),
    "defence_param": ("NAME.KEY=VALUE strings", _names),
    "train_steps": _INT,
    "train_missing": _BOOL,
    "fit_on": _TEXT,
    "input_size": ("HxW ('256x128' or [256, 128])", _size_value),
    "batch_size": _INT,
    "no_quantize": _BOOL,
    "protocol": _TEXT,
    "no_progress": _BOOL,
    "backend": _TEXT,
    "address": _TEXT,
    "threads": _INT,
    "amp": _BOOL,
    "side": ("names (a string or a list)", _names),
    "goal": ("names (a string or a list)", _names),
    "budget": ("names (a string or a list)", _names),
    "targets_per_query": _INT,
    "gallery_images": _INT,
    "patch_area": ("fractions (0.1, '0.05,0.1' or a list)", _eps_value),
}
"""The keys of a ``--config`` file: the long flag names of ``advbench run`` (``-`` or ``_``), the repeated
``NAME.KEY=VALUE`` flags also as mappings (``attack_params: {pgd: {steps: 20}}``), with what each takes."""

CONFIG_ALIASES: dict[str, tuple[str, bool]] = {
    "cache_dir": ("cache", False),
    "quantize": ("no_quantize", True),
    "progress": ("no_progress", True),
    "sides": ("side", False),
    "goals": ("goal", False),
    "budgets": ("budget", False),
}
"""RunConfig field names accepted for flag names: key -> (option, negated)."""


def read_config_file(path: Path) -> dict[str, Any]:
    """The options of a ``--config`` YAML file under their flag names, keys and value types checked.

    An empty value (``fit_on:``) counts as not given.
    """
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split())
        raise AdvbenchError(f"cannot read config file {path}: {first}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise AdvbenchError(f"config file {path} must hold a mapping of options, got {type(loaded).__name__}")
    options: dict[str, Any] = {}
    for raw, value in loaded.items():
        key = str(raw).replace("-", "_")
        if key in CONFIG_ALIASES:
            key, negated = CONFIG_ALIASES[key]
            if negated and isinstance(value, bool):
                value = not value
        if key not in CONFIG_OPTIONS:
            hint = did_you_mean(key, [*CONFIG_OPTIONS, *CONFIG_ALIASES])
            raise AdvbenchError(
                f"config file {path}: unknown option {raw!r}.{hint} Options: {', '.join(CONFIG_OPTIONS)}"
            )
        if value is None:
            continue
        what, check = CONFIG_OPTIONS[key]
        if not check(value):
            raise AdvbenchError(f"config file {path}: {raw} expects {what}, got {_shown(value)}")
        options[key] = value
    return options
