"""The generator's parameters, their defaults and checks, its version and fingerprint, and the seeded streams' keys."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from advbench.api import AdvbenchError

GENERATOR_VERSION = "1.0"
"""Bump whenever a change alters any pixel: the cache key and fingerprint include it."""


DEFAULTS: Mapping[str, int] = MappingProxyType(
    {
        "seed": 0,
        "height": 128,
        "width": 64,
        "cameras": 6,
        "train_ids": 150,
        "train_images_per_id": 12,
        "test_ids": 100,
        "queries_per_id": 2,
        "gallery_per_id": 10,
        "distractor_ids": 100,
        "distractor_images": 5,
    }
)


_MINIMUM: Mapping[str, int] = MappingProxyType(
    {
        "seed": 0,
        "height": 16,
        "width": 8,
        "cameras": 2,
        "train_ids": 1,
        "train_images_per_id": 1,
        "test_ids": 1,
        "queries_per_id": 1,
        "gallery_per_id": 1,
        "distractor_ids": 0,
        "distractor_images": 0,
    }
)


# Stream tags and roles for the seed keys (see the module docstring); never renumber them.
_CAMERA, _IDENTITY, _LAYOUT, _IMAGE, _NOISE = 1, 2, 3, 4, 5


_TRAIN, _TEST, _DISTRACTOR = 0, 1, 2


_KIND_TRAIN, _KIND_QUERY, _KIND_GALLERY, _KIND_DISTRACTOR = 0, 1, 2, 3


_NAME_RE = re.compile(r"^(\d+)_c(\d)s1_(\d{6})_00\.png$")


_SPLITS = ("train", "query", "gallery")


_MANIFEST = "manifest.json"


_STALE_TMP_S = 3600.0


# ------------------------------------------------------------------------------------ params
def _check_params(given: Mapping[str, Any]) -> dict[str, int]:
    """Merge ``given`` over :data:`DEFAULTS` and validate; AdvbenchError on one line otherwise."""
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise AdvbenchError(
            f"synthetic: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}"
        )
    params: dict[str, int] = {}
    for name, default in DEFAULTS.items():
        value = given.get(name, default)
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            params[name] = int(value)
        except (TypeError, ValueError):
            raise AdvbenchError(f"synthetic: {name} must be an integer, got {value!r}") from None
        if params[name] < _MINIMUM[name]:
            raise AdvbenchError(f"synthetic: {name} must be >= {_MINIMUM[name]}, got {params[name]}")
    if params["cameras"] > 9:
        raise AdvbenchError(
            f"synthetic: cameras must be <= 9 (Market-style c<digit>), got {params['cameras']}"
        )
    if params["queries_per_id"] >= params["cameras"]:
        raise AdvbenchError(
            "synthetic: queries_per_id must be < cameras (queries come from distinct cameras and the "
            f"gallery needs a non-query camera), got {params['queries_per_id']} >= {params['cameras']}"
        )
    if params["distractor_ids"] > 0 and params["distractor_images"] < 1:
        raise AdvbenchError("synthetic: distractor_images must be >= 1 when distractor_ids > 0")
    return params


def fingerprint(params: Mapping[str, Any]) -> str:
    """Stable hash of the generator version and the (validated) params: the cache key."""
    full = _check_params(params)
    blob = json.dumps(
        {"generator": "synthetic", "version": GENERATOR_VERSION, "params": full}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream for one named thing (see the module docstring)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))
