"""``advbench new-plugin NAME``: write a working plugin package to start from.

The skeleton registers one attack, one victim and one embedded dataset through the ``advbench``
entry-point group, and its own tests run the conformance kit (:mod:`advbench.testing`) on all three,
so a plugin author starts from green tests and keeps them green while replacing the examples.
Files are rendered from the templates below with :class:`string.Template` (``$name`` placeholders),
so the Python braces in them need no escaping.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from advbench.api import AdvbenchError

NAME_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "advbench plugin $name: an attack, a victim and a dataset"
requires-python = ">=3.10"
dependencies = ["advbench"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This table is how advbench finds the plugin: the entry point names the module with the hooks.
[project.entry-points.advbench]
$module = "$module.plugin"

[tool.setuptools]
packages = ["$module"]
"""

INIT = '''\
"""$dist: an advbench plugin (attack ``$name-attack``, victim ``$name-victim``, dataset ``$name-toy``)."""

__version__ = "0.1.0"
'''

PLUGIN = '''\
"""The hooks advbench calls: one list of specs per kind. Keep this module cheap to import."""

from __future__ import annotations

from advbench import hookimpl
from advbench.api import AttackSpec, DatasetSpec, VictimSpec

from $module import __version__


@hookimpl
def advbench_attacks() -> list[AttackSpec]:
    from $module.attack import OneStepFeatureAttack

    return [
        AttackSpec(
            name="$name-attack",
            description="one signed-gradient step pushing the embedding away from the clean one",
            build=OneStepFeatureAttack,
            defaults={"random_start": 0.5},
            version=__version__,  # bump when results change: it is part of every cache key
        )
    ]


@hookimpl
def advbench_victims() -> list[VictimSpec]:
    from $module.victim import SmallCnn

    return [
        VictimSpec(
            name="$name-victim",
            description="a three-layer CNN with an identity head, cosine distance",
            build=SmallCnn,
            defaults={"width": 16},
            version=__version__,
        )
    ]


@hookimpl
def advbench_datasets() -> list[DatasetSpec]:
    from $module.dataset import DEFAULTS, LAYOUT, load

    return [
        DatasetSpec(
            name="$name-toy",
            description="coloured blocks per identity, generated into the cache in a second",
            load=load,
            defaults=DEFAULTS,
            layout=LAYOUT,
            embedded=True,
            input_size=(64, 32),
            version=__version__,
        )
    ]
'''

ATTACK = '''\
"""An attack: one signed-gradient step on 1 - cos(f(x_adv), f(x)) from a random start."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import Attack, FeatureBank, Victim


class OneStepFeatureAttack(Attack):
    """``eps`` in 1/255 units; ``random_start`` is the fraction of eps of the uniform start noise.

    The start matters: at x_adv = x the loss is at its minimum and its gradient is zero.
    """

    def perturb(
        self,
        victim: Victim,
        images: Tensor,
        pids: Tensor,
        camids: Tensor,
        *,
        gallery: FeatureBank | None = None,
    ) -> Tensor:
        eps = self.eps / 255.0
        with torch.no_grad():
            clean = victim.features(images)
        start = (torch.rand_like(images) * 2 - 1) * eps * float(self.params.get("random_start", 0.5))
        adv = (images + start).clamp(0, 1).requires_grad_(True)
        loss = (1 - F.cosine_similarity(victim.features(adv), clean)).sum()
        (grad,) = torch.autograd.grad(loss, adv)
        delta = (adv.detach() + eps * grad.sign() - images).clamp(-eps, eps)
        return (images + delta).clamp(0, 1)
'''

VICTIM = '''\
"""A victim: a small CNN re-ID model. Pixels arrive in [0, 1]; normalise inside."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from advbench.api import Victim


class SmallCnn(Victim):
    """conv-conv-conv -> global average pool -> ``width``-d feature (L2-normalised) -> identity head."""

    distance = "cosine"

    def __init__(self, num_classes: int, input_size: tuple[int, int], width: int = 16) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_classes = int(num_classes)
        self.feature_dim = int(width)
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, width, 3, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(width, max(self.num_classes, 1), bias=False)

    def embed(self, images: Tensor) -> Tensor:
        return self.body(images * 2 - 1)

    def features(self, images: Tensor) -> Tensor:
        return F.normalize(self.embed(images), dim=1)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.embed(images))

    def train_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.embed(images)
        return feat, self.head(feat)
'''

DATASET = '''\
"""A dataset: tiny procedural people (a top and a bottom colour per identity) written into cache_dir.

Replace ``load`` with a reader of your folder layout: take ``root``, raise AdvbenchError naming the
path when it is missing, relabel train ids to 0..N-1, make camids 0-based, and hash every file's
name, size and mtime into the fingerprint (advbench keys its caches by it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from advbench.api import ReidDataset, Sample

GENERATOR = "1"
DEFAULTS: dict[str, int] = {"train_ids": 6, "test_ids": 4, "per_id": 3, "cameras": 2, "seed": 0}
LAYOUT = "generated, no data root needed:\\n<cache>/$name-toy/<fingerprint>/{train,query,gallery}/"
SIZE = (64, 32)


def _image(rng: np.random.Generator, colours: np.ndarray, camera: int) -> np.ndarray:
    h, w = SIZE
    img = np.empty((h, w, 3))
    img[:] = 40 + 60 * camera
    img[8 : h // 2, 6:-6] = colours[0]
    img[h // 2 : h - 4, 8:-8] = colours[1]
    img += rng.normal(0, 12, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def _write(folder: Path, params: dict[str, int]) -> None:
    """Each id: ``per_id`` images per split role; query on camera 0, gallery on the others."""
    rng = np.random.default_rng(params["seed"])
    test_start = 100
    for split, ids in (("train", range(params["train_ids"])), ("test", range(params["test_ids"]))):
        for i in ids:
            pid = i if split == "train" else test_start + i
            colours = rng.integers(0, 256, (2, 3))
            for k in range(params["per_id"]):
                if split == "train":
                    targets = [("train", k % params["cameras"])]
                else:
                    targets = [("query", 0)] if k == 0 else [("gallery", 1 + k % (params["cameras"] - 1))]
                for sub, cam in targets:
                    path = folder / sub / f"{pid:04d}_c{cam}_{k}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(_image(rng, colours, cam)).save(path)


def load(root: Path | None, cache_dir: Path, **params: Any) -> ReidDataset:
    """Generate once into ``cache_dir`` (keyed by the parameters) and list the three splits."""
    p = {**DEFAULTS, **{k: int(v) for k, v in params.items()}}
    fingerprint = hashlib.sha256(json.dumps([GENERATOR, p], sort_keys=True).encode()).hexdigest()[:20]
    folder = Path(cache_dir) / "$name-toy" / fingerprint
    if not (folder / "done").is_file():
        _write(folder, p)
        (folder / "done").write_text("ok\\n")
    splits = {}
    for split in ("train", "query", "gallery"):
        samples = []
        for path in sorted((folder / split).glob("*.png")):
            pid, cam, _ = path.stem.split("_")
            samples.append(Sample(str(path), int(pid), int(cam[1:])))
        splits[split] = samples
    return ReidDataset(name="$name-toy", root=folder, fingerprint=fingerprint, **splits)
'''

TESTS = '''\
"""The advbench conformance kit on every spec this plugin registers."""

from __future__ import annotations

from pathlib import Path

from advbench.plugins import get_registry
from advbench.testing import check_plugin_module

import $module.plugin


def test_every_spec_passes_the_conformance_kit(tmp_path: Path) -> None:
    report = check_plugin_module($module.plugin, tmp_dir=tmp_path, input_size=(32, 16))
    assert report.checked == ["attack:$name-attack", "victim:$name-victim", "dataset:$name-toy"]


def test_advbench_finds_the_plugin() -> None:
    registry = get_registry()
    assert not registry.problems_report()
    assert "$name-attack" in registry.names("attack")
'''

README = """\
# $dist

An advbench plugin: the attack `$name-attack`, the victim `$name-victim` and the embedded
dataset `$name-toy`. Generated by `advbench new-plugin $name`; replace the examples
with your own and keep the tests green.

```sh
pip install -e .            # registers the entry point advbench looks for
advbench plugins            # lists $name-attack, $name-victim, $name-toy
python -m pytest tests      # the advbench conformance kit on every spec
advbench run --datasets $name-toy --victims $name-victim --attacks $name-attack --train-missing
```

Layout: `$module/plugin.py` holds the hooks (cheap to import: heavy imports go inside `build`/`load`),
`attack.py`, `victim.py` and `dataset.py` one example each. New specs are left out of
`--attacks default` unless they set `default=True`. Bump `version` when a change alters results:
it is part of every cache key. See advbench's docs/plugins.md ("Writing a plugin").
"""

FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "$module/__init__.py": INIT,
    "$module/plugin.py": PLUGIN,
    "$module/attack.py": ATTACK,
    "$module/victim.py": VICTIM,
    "$module/dataset.py": DATASET,
    "tests/test_conformance.py": TESTS,
}


def names(name: str) -> dict[str, str]:
    """The distribution, module and spec-name prefix of a plugin called ``name``."""
    if not NAME_RE.match(name):
        raise AdvbenchError(
            f"plugin name {name!r}: use lowercase letters, digits and single '-' (e.g. my-attacks), "
            "starting with a letter"
        )
    dist = name if name.startswith("advbench-") else f"advbench-{name}"
    return {"name": name, "dist": dist, "module": dist.replace("-", "_")}


def new_plugin(name: str, directory: Path | str = ".") -> Path:
    """Write the package of plugin ``name`` under ``directory`` and return its folder.

    Refuses a folder that already exists, so nothing of the user's is overwritten.
    """
    values = names(name)
    target = Path(directory) / values["dist"]
    if target.exists():
        raise AdvbenchError(f"{target} already exists: remove it or pass another --dir")
    for relative, text in FILES.items():
        path = target / Template(relative).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values))
    return target
