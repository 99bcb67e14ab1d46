"""The embedded ``synthetic`` re-ID dataset: procedural people rendered with numpy, written as PNG.

Why: the benchmark must run end to end with no download. Identities are defined by clothing
(colours from small *shared* palettes, so identities collide on colour, plus patterns, sleeves,
shorts, hair, bags) and body shape; cameras by background, lighting, viewpoint, blur and noise;
every image adds pose jitter and, sometimes, an occluder. The ranges follow the "v2" preset of
the feasibility prototype. Raw-pixel matching is near chance (about 2 mAP on the default split),
while resnet10t trained for 400 steps reached 83 mAP.

Seeding: every random quantity comes from ``np.random.default_rng(SeedSequence([seed, *key]))``
with a key naming what it draws: ``(_CAMERA, c)`` for camera ``c``, ``(_IDENTITY, role, i)`` for
the ``i``-th identity of a role (train / test / distractor), ``(_LAYOUT, _TEST, i)`` for the query
cameras of a test identity, ``(_IMAGE, role, i, kind, k)`` for the camera of the ``k``-th image of
a kind (train / query / gallery / distractor) and the same key plus ``1`` for its rendering, and
``(_NOISE,)`` for the shared noise bank. Streams are independent, so changing one count (e.g.
``gallery_per_id``, or ``train_ids``) adds or removes images without changing any other image.

Files: ``<cache_dir>/synthetic/<fingerprint>/{train,query,gallery}/`` with Market-1501-style names
``{pid:04d}_c{cam+1}s1_{idx:06d}_00.png`` and a ``manifest.json`` written last. The folder is built
under a temporary sibling name and renamed when complete, so a crash never leaves half a dataset.

Modules by role: :mod:`~advbench_datasets.synthetic.config` (parameters, version, fingerprint),
``people`` (identity and camera attributes), ``render`` (one image), ``generator`` (the splits and
their files), ``spec`` (``load`` and ``SPEC``).
"""

from __future__ import annotations

from advbench_datasets.synthetic.config import DEFAULTS, GENERATOR_VERSION, fingerprint
from advbench_datasets.synthetic.generator import encode_png, plan
from advbench_datasets.synthetic.people import Camera, Identity, make_camera, make_identity
from advbench_datasets.synthetic.render import Studio
from advbench_datasets.synthetic.spec import SPEC, load

__all__ = [
    "DEFAULTS",
    "GENERATOR_VERSION",
    "SPEC",
    "Camera",
    "Identity",
    "Studio",
    "encode_png",
    "fingerprint",
    "load",
    "make_camera",
    "make_identity",
    "plan",
]
