"""Options shared by the commands: ``KEY=VALUE`` flags, sizes, budgets, and the RunConfig of a command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from advbench.api import AdvbenchError

if TYPE_CHECKING:
    from advbench.config import RunConfig


def _key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AdvbenchError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value) if value else ""
    return out


def _scoped(items: Sequence[str], flag: str) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` flags -> {NAME: {KEY: VALUE}} (values parsed as YAML scalars)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in _key_values(items, flag).items():
        name, dot, param = key.partition(".")
        if not dot:
            raise AdvbenchError(f"{flag} expects NAME.KEY=VALUE (e.g. pgd.steps=20), got {key!r}")
        out.setdefault(name, {})[param] = value
    return out


def _size(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    if not text:
        return None
    if isinstance(text, list | tuple):  # a config file's [H, W]
        return int(text[0]), int(text[1])
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise AdvbenchError(f"--input-size expects HxW such as 256x128, got {text!r}") from None
    return h, w


def _eps(value: str | float | Sequence[float]) -> tuple[float, ...]:
    """``--eps`` text (``4,16``), or a config file's number or list, as floats (ranges: :mod:`advbench.validate`)."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    try:
        values = tuple(float(x) for x in items if str(x).strip())
    except ValueError:
        raise AdvbenchError(f"--eps expects numbers in 1/255 units such as 4,8,16, got {value!r}") from None
    if not values:
        raise AdvbenchError(f"--eps expects numbers in 1/255 units such as 4,8,16, got {value!r}")
    return values


def common_options(p: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``train`` share."""
    p.add_argument(
        "--cache", type=Path, default=None, help="cache folder (default $ADVBENCH_CACHE or ~/.cache/advbench)"
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding the real datasets (default $ADVBENCH_DATA)",
    )
    p.add_argument("--device", default=None, help="auto (CUDA when present, the default), cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    p.add_argument("--dataset-param", action="append", default=None, metavar="DATASET.KEY=VALUE")
    p.add_argument("--victim-param", action="append", default=None, metavar="VICTIM.KEY=VALUE")
    p.add_argument(
        "--train-steps", type=int, default=None, help="override every victim's training step budget"
    )
    p.add_argument("--input-size", default=None, metavar="HxW", help="override the dataset's crop size")
    p.add_argument("--no-progress", action="store_true", default=None, help="no progress bars")


def _merge_scoped(*layers: Any) -> dict[str, dict[str, Any]]:
    """{NAME: {KEY: VALUE}} layers merged key by key, later layers winning."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for name, params in layer.items():
            out.setdefault(name, {}).update(params)
    return out


def _areas(value: Any) -> tuple[float, ...] | None:
    """``0.05,0.1`` (or a number, or a config file's list) as patch areas; None when not given."""
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    try:
        return tuple(float(item) for item in items if str(item).strip())
    except ValueError:
        raise AdvbenchError(
            f"--patch-area expects fractions of the image such as 0.05,0.1, got {value!r}"
        ) from None


def _words(value: Any) -> tuple[str, ...] | None:
    """``a,b`` or a config file's list as a tuple of words (None when not given)."""
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _listed(value: Any) -> list[str]:
    """A config file's string or list of ``NAME.KEY=VALUE`` items as a list."""
    return [value] if isinstance(value, str) else list(value or [])


def _config_from(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of ``args``: each flag given wins, then the ``--config`` file, then RunConfig's default.

    Every flag defaults to None, so that a flag given with its default value (``--eps 16``) still wins
    over the file; ``--config`` keys and types are checked by :func:`advbench.validate.read_config_file`.
    """
    from advbench.config import RunConfig
    from advbench.validate import read_config_file

    options = read_config_file(args.config) if getattr(args, "config", None) else {}

    def pick(name: str) -> Any:
        flag = getattr(args, name, None)
        return flag if flag is not None else options.get(name)

    def names(name: str) -> str | None:
        value = pick(name)
        return ",".join(value) if isinstance(value, list) else value

    given: dict[str, Any] = {
        "datasets": names("datasets"),
        "victims": names("victims"),
        "attacks": names("attacks"),
        "defences": names("defences"),
        "detect_images": pick("detect_images"),
        "eps": _eps(pick("eps")) if pick("eps") is not None else None,
        "out": Path(pick("out")).expanduser() if pick("out") is not None else None,
        "cache_dir": Path(pick("cache")).expanduser() if pick("cache") is not None else None,
        "data_root": Path(pick("data_root")).expanduser() if pick("data_root") is not None else None,
        "device": pick("device"),
        "seed": pick("seed"),
        "train_steps": pick("train_steps"),
        "train_missing": pick("train_missing"),
        "fit_on": pick("fit_on"),
        "input_size": _size(pick("input_size")),
        "batch_size": pick("batch_size"),
        "quantize": None if pick("no_quantize") is None else not pick("no_quantize"),
        "protocol": pick("protocol"),
        "backend": pick("backend"),
        "address": pick("address"),
        "threads": pick("threads"),
        "amp": pick("amp"),
        "sides": _words(pick("side")),
        "goals": _words(pick("goal")),
        "budgets": _words(pick("budget")),
        "targets_per_query": pick("targets_per_query"),
        "patch_areas": _areas(pick("patch_area")),
        "gallery_images": pick("gallery_images"),
    }
    weights = {
        **options.get("victim_weights", {}),
        **_key_values(getattr(args, "victim_weights", None) or [], "--victim-weights"),
    }
    scoped = {
        kind: _merge_scoped(
            options.get(f"{kind}_params", {}),
            _scoped(_listed(options.get(f"{kind}_param")), f"--{kind}-param"),
            _scoped(getattr(args, f"{kind}_param", None) or [], f"--{kind}-param"),
        )
        for kind in ("attack", "victim", "dataset", "defence")
    }
    return RunConfig(
        **{k: v for k, v in given.items() if v is not None},
        victim_weights={k: Path(str(v)).expanduser() for k, v in weights.items()},
        attack_params=scoped["attack"],
        defence_params=scoped["defence"],
        victim_params=scoped["victim"],
        dataset_params=scoped["dataset"],
        progress=not pick("no_progress") and sys.stderr.isatty(),
    )
