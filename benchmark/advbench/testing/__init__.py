"""Conformance kit for plugin authors: check an attack, victim or dataset against the contract in seconds.

Each ``check_*`` function builds the plugin from its spec, runs it on tiny tensors and raises
:class:`ConformanceError` (an ``AssertionError``, so pytest prints it) at the first broken rule,
naming the plugin, the rule and the numbers. A plugin's own test file needs one line per spec::

    from advbench.testing import check_plugin_module
    import my_package.plugin

    def test_conformance(tmp_path):
        check_plugin_module(my_package.plugin, tmp_dir=tmp_path)

Rules (docs/plugins.md explains why each one matters to the runner):

* victims: ``features`` is ``[N, D]`` with ``D == feature_dim``, finite, differentiable w.r.t. the
  pixels, deterministic in eval mode and independent of the rest of the batch, also at batch 1 and
  at the dataset's ``input_size``; ``input_size`` and ``distance`` are what was asked for. A victim
  *claims to be trainable* when its ``num_classes`` is > 0: then ``num_classes`` is the number it was
  built with, ``logits`` has that many columns, ``features_and_logits`` agrees with the two calls
  and ``train_outputs`` works in train mode.
* attacks: at every eps, ``perturb`` returns the input's shape, dtype and device, finite, in
  [0, 1], within ``eps/255`` (+1e-6) in L∞, and leaves its input untouched. An attack that
  ``needs_fit`` writes only under its ``cache_dir``, writes something there, and a second attack
  built alike reuses it: ``fit`` with the same key rewrites nothing and calls the victim less.
  An attack whose spec lists a query-side ``targeted`` or ``demote`` threat is also called with
  ``targets=Targets(goal, [B, k] gallery rows)`` drawn as the runner draws them, under the same
  rules, leaves the targets untouched and gives the same images for one seed of the global
  generator; an attack that lists no untargeted threat is not called without targets. An attack
  whose spec lists a ``patch`` budget is also built as the runner builds a patch craft
  (``eps=255, area=0.1``) and, instead of the L∞ rule, may change at most ``floor(area * H * W)``
  pixel locations (any channel) of each image.
* datasets: the three splits are non-empty, camids are 0-based, train pids are ``0..N-1``, query and
  gallery share identities, every sample's file exists, the fingerprint is stable across loads; for
  datasets read from a root, it changes when one file changes (checked on a copy of the root)
  and a missing root raises :class:`~advbench.api.AdvbenchError` naming the path.
* defences: ``build`` gives an ``InputDefence`` or a ``RankingDefence``. An input defence returns the
  input's shape, dtype and device, finite, in [0, 1], leaves its input untouched, declares
  ``draws >= 1``, and gives the same output for the same generator seed (the runner seeds every
  draw); a differentiable one passes a gradient to the pixels. A ranking defence returns finite
  ``[Q, G]`` distances and leaves its inputs untouched.

One module per plugin kind (:mod:`advbench.testing.victims`, ``attacks``, ``datasets``,
``defences``; ``plugins`` checks a whole module, ``common`` holds what they share); every name the
docs use is importable from here.
"""

from __future__ import annotations

from advbench.testing.attacks import build_attack, check_attack
from advbench.testing.common import DEFAULT_INPUT_SIZE, LINF_SLACK, PATCH_AREA, ConformanceError, TinyVictim
from advbench.testing.datasets import check_dataset
from advbench.testing.defences import check_defence
from advbench.testing.plugins import PluginReport, check_plugin_module, plugin_specs
from advbench.testing.victims import build_victim, check_victim

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "LINF_SLACK",
    "PATCH_AREA",
    "ConformanceError",
    "PluginReport",
    "TinyVictim",
    "build_attack",
    "build_victim",
    "check_attack",
    "check_dataset",
    "check_defence",
    "check_plugin_module",
    "check_victim",
    "plugin_specs",
]
