"""advbench built-in plugin: patch attacks (issue 17).

* ``advpattern``: a torso patch after Wang et al., "advPattern: Physical-World Attacks on Deep Person
  Re-Identification via Adversarially Transformable Patterns", ICCV 2019 (arXiv 1908.09327),
  optimised with Expectation over Transformation (Athalye et al., ICML 2018): evasion
  (``query/untargeted/patch``) and impersonation of the chosen candidates (``query/targeted/patch``).

The runner builds a patch attack with ``eps=255`` and ``area=<fraction of the image>`` (from
``--patch-area``) and checks that at most ``floor(area * H * W)`` pixel locations change; ``area`` is
therefore not among the spec's defaults. The hook is cheap: torch work is imported inside ``build``.
"""

from __future__ import annotations

from typing import Any

from advbench import hookimpl
from advbench.api import Attack, AttackSpec, ThreatModel

__version__ = "0.1.0"

PATCH_THREATS = (ThreatModel("query", "untargeted", "patch"), ThreatModel("query", "targeted", "patch"))


def _advpattern(eps: float = 255.0, **params: Any) -> Attack:
    from advbench_patch.attack import build

    return build(eps, **params)


@hookimpl
def advbench_attacks() -> list[AttackSpec]:
    return [
        AttackSpec(
            name="advpattern",
            description="advPattern (Wang et al. ICCV 2019): a torso patch of --patch-area, Adam under EOT (scale/shift/brightness); evasion or impersonation of the chosen candidates",
            build=_advpattern,
            defaults={
                "steps": 50,
                "lr": 0.05,
                "location": "fixed",
                "aspect": 1.0,
                "eot_draws": 4,
                "scale": 0.1,
                "shift": 0.1,
                "brightness": 0.1,
                "beta": 0.0,
                "tv": 0.0,
                "cross_camera": True,
            },
            default=False,
            threat_model="white-box, patch (unbounded inside floor(area*H*W) pixels), EOT",
            version=__version__,
            threats=PATCH_THREATS,
        )
    ]
