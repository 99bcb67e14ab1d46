"""JPEG re-compression of the queries (Dziugaite et al., 2016, "A study of the effect of JPG
compression on adversarial images"; Guo et al., ICLR 2018, "Countering adversarial images using
input transformations").

Encoding quantises DCT coefficients, which removes much of a small high-frequency perturbation.
The codec is libjpeg through :func:`torchvision.io.encode_jpeg` / :func:`~torchvision.io.decode_jpeg`
on 8-bit CPU tensors, so the output is exactly what a JPEG file of that quality decodes to. Rounding
and quantisation have zero gradient almost everywhere: adaptive attacks go through it with BPDA.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from advbench.api import DefenceSpec, InputDefence
from advbench_defences.common import check_images, int_param


def to_uint8(images: Tensor) -> Tensor:
    """Float [0, 1] images as uint8 CPU tensors (round to nearest), the codec's input."""
    return images.detach().clamp(0.0, 1.0).mul(255.0).round().to(device="cpu", dtype=torch.uint8)


class Jpeg(InputDefence):
    """Encode each image as JPEG at ``quality`` (1-100) and decode it again."""

    differentiable = False

    def __init__(self, quality: int = 75) -> None:
        self.quality = int_param("jpeg", "quality", quality, 1, 100)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        from torchvision.io import decode_jpeg, encode_jpeg

        check_images("jpeg", images)
        if len(images) == 0:
            return images.detach().clone()
        with warnings.catch_warnings():  # torchvision >= 0.29 points to TorchCodec; the codec is the same
            warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
            encoded = encode_jpeg(list(to_uint8(images)), quality=self.quality)
            decoded = torch.stack(decode_jpeg(encoded))
        return decoded.to(device=images.device, dtype=images.dtype).div_(255.0)


SPEC = DefenceSpec(
    name="jpeg",
    description="JPEG re-compression of the queries (Guo et al., ICLR 2018); BPDA for adaptive attacks",
    build=Jpeg,
    defaults={"quality": 75},
)
