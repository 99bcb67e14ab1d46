"""How visible a perturbation is: L∞, L2, L0, SSIM and MS-SSIM between clean and adversarial images.

Images are float ``[N, C, H, W]`` in [0, 1]. Per-image functions return a float64 tensor ``[N]``
on the images' device; a :class:`PerceptualMeter` sums them batch by batch (while crafting) and
:func:`perceptual_report` averages them over a whole set with one.

Units and definitions:

* ``linf``: max |adv - clean| over channels and pixels, in [0, 1] units (the report gives it in
  1/255 units, comparable with ``eps``).
* ``l2``: Euclidean norm of (adv - clean) over all C x H x W values, in [0, 1] units.
* ``l0``: fraction of pixel *locations* (H x W) where at least one channel changed by more than
  ``atol`` (default 0: any change). 8-bit quantised images differ by multiples of 1/255, so the
  exact test is meaningful there.
* ``ssim``: ``pytorch_msssim.ssim`` with data_range 1 and a Gaussian window of 11 (sigma 1.5),
  reduced to the largest odd size that fits the short side of small images.
* ``ms_ssim``: ``pytorch_msssim.ms_ssim`` with data_range 1 and the setting of
  :func:`ms_ssim_setting`; NaN when the image is too small for any setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_msssim
import torch
from torch import Tensor

from advbench.api import AdvbenchError

__all__ = [
    "MS_SSIM_WEIGHTS",
    "MsSsimSetting",
    "PerceptualMeter",
    "PerceptualReport",
    "l0",
    "l2",
    "linf",
    "ms_ssim",
    "ms_ssim_setting",
    "perceptual_report",
    "ssim",
    "ssim_win_size",
]

# pytorch-msssim's default per-scale weights (Wang et al. 2003), finest scale first.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_MAX_WIN = 11
_MIN_MS_WIN = 3


def check_pair(clean: Tensor, adv: Tensor) -> None:
    """One-line errors for clean/adversarial batches that are not float ``[N, C, H, W]`` of one shape."""
    if clean.shape != adv.shape:
        raise AdvbenchError(
            f"clean and adversarial images differ in shape: {tuple(clean.shape)} vs {tuple(adv.shape)}"
        )
    if clean.ndim != 4:
        raise AdvbenchError(f"images must be [N, C, H, W], got shape {tuple(clean.shape)}")
    if not (clean.is_floating_point() and adv.is_floating_point()):
        raise AdvbenchError(f"images must be float in [0, 1], got {clean.dtype} and {adv.dtype}")


def _flat_diff(clean: Tensor, adv: Tensor) -> Tensor:
    check_pair(clean, adv)
    return (adv.to(torch.float64) - clean.to(torch.float64)).flatten(1)


def linf(clean: Tensor, adv: Tensor) -> Tensor:
    """Per-image L∞ distance in [0, 1] units."""
    return _flat_diff(clean, adv).abs().amax(1)


def l2(clean: Tensor, adv: Tensor) -> Tensor:
    """Per-image L2 distance over all C x H x W values, in [0, 1] units."""
    return _flat_diff(clean, adv).norm(dim=1)


def l0(clean: Tensor, adv: Tensor, atol: float = 0.0) -> Tensor:
    """Per-image fraction of pixel locations where any channel changed by more than ``atol``."""
    check_pair(clean, adv)
    changed = ((adv.to(torch.float64) - clean.to(torch.float64)).abs() > atol).any(1)
    return changed.flatten(1).to(torch.float64).mean(1)


def ssim_win_size(h: int, w: int) -> int:
    """SSIM window: 11, or the largest odd size <= the short side for smaller images."""
    side = min(int(h), int(w))
    if side < 1:
        raise AdvbenchError(f"image size {h}x{w} is empty")
    win = min(_MAX_WIN, side)
    return win if win % 2 == 1 else win - 1


def ssim(clean: Tensor, adv: Tensor) -> Tensor:
    """Per-image SSIM (data_range 1, mean over channels), window from :func:`ssim_win_size`."""
    check_pair(clean, adv)
    win = ssim_win_size(clean.shape[-2], clean.shape[-1])
    x, y = clean.to(torch.float32), adv.to(torch.float32)
    return pytorch_msssim.ssim(x, y, data_range=1.0, size_average=False, win_size=win).to(torch.float64)


@dataclass(frozen=True)
class MsSsimSetting:
    """The pytorch-msssim settings MS-SSIM is computed with at one image size.

    ``weights`` are per scale, finest first; with fewer than 5 scales they are the first default
    weights renormalised to sum to 1.
    """

    win_size: int
    weights: tuple[float, ...]

    @property
    def scales(self) -> int:
        return len(self.weights)

    def __str__(self) -> str:
        return f"win{self.win_size}-{self.scales}scales"


def _halve(side: int) -> int:
    # pytorch-msssim pools with kernel 2 and padding side % 2: ceil(side / 2).
    return (side + 1) // 2


def ms_ssim_setting(h: int, w: int) -> MsSsimSetting | None:
    """The largest Gaussian window (odd, 3..11) pytorch-msssim accepts at ``h`` x ``w``, or None.

    pytorch-msssim asserts ``min(h, w) > (win_size - 1) * 16`` whatever the number of scales
    (256x128 -> window 7, 128x64 -> window 3, below 33 pixels on the short side -> None, reported
    as NaN). Scales are then kept while the coarsest one is still at least a window wide, so no
    scale is left unsmoothed; under that assertion all 5 scales always fit, and the weights are
    renormalised only if fewer did.
    """
    side = min(int(h), int(w))
    for win in range(_MAX_WIN, _MIN_MS_WIN - 1, -2):
        if side > (win - 1) * 16:
            break
    else:
        return None
    levels, s = 1, side
    while levels < len(MS_SSIM_WEIGHTS) and _halve(s) >= win:
        s = _halve(s)
        levels += 1
    weights = MS_SSIM_WEIGHTS[:levels]
    total = sum(weights)
    return MsSsimSetting(win_size=win, weights=tuple(x / total for x in weights))


def ms_ssim(clean: Tensor, adv: Tensor, setting: MsSsimSetting | None = None) -> Tensor:
    """Per-image MS-SSIM (data_range 1); NaN for every image when the size admits no setting."""
    check_pair(clean, adv)
    if setting is None:
        setting = ms_ssim_setting(clean.shape[-2], clean.shape[-1])
    if setting is None:
        return torch.full((clean.shape[0],), float("nan"), dtype=torch.float64, device=clean.device)
    x, y = clean.to(torch.float32), adv.to(torch.float32)
    out = pytorch_msssim.ms_ssim(
        x, y, data_range=1.0, size_average=False, win_size=setting.win_size, weights=list(setting.weights)
    )
    return out.to(torch.float64)


@dataclass(frozen=True)
class PerceptualReport:
    """Means over a set of (clean, adversarial) image pairs.

    ``linf`` is in 1/255 units (comparable with ``eps``); ``l2`` in [0, 1] units over C x H x W;
    ``l0`` a fraction of pixel locations; ``ms_ssim`` is NaN and ``ms_ssim_setting`` "none" when
    the images are too small for MS-SSIM.
    """

    ssim: float
    ms_ssim: float
    linf: float
    l2: float
    l0: float
    ms_ssim_setting: str
    num_images: int


def batch_size_after(images: Tensor, seen: tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) of a meter's batch, which must be that of the batches ``seen`` before it."""
    size = (int(images.shape[-2]), int(images.shape[-1]))
    if seen is not None and size != seen:
        raise AdvbenchError(f"images of size {size[0]}x{size[1]} after {seen[0]}x{seen[1]}")
    return size


def _check_range(name: str, t: Tensor) -> None:
    lo, hi = (float(v) for v in torch.aminmax(t))
    if not (lo >= -1e-6 and hi <= 1 + 1e-6):
        raise AdvbenchError(f"{name} images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")


@dataclass
class PerceptualMeter:
    """Sums of the per-image metrics, fed batch by batch (:meth:`update`); :meth:`report` averages.

    Lets a runner measure a query set while crafting it, without holding the whole set as floats.
    Holds only the sums, the count and the image size (fixed by the first batch, which fixes the
    MS-SSIM setting), so it is small and picklable. The report does not depend on the batching.
    """

    num_images: int = 0
    size: tuple[int, int] | None = None
    ssim_sum: float = 0.0
    ms_ssim_sum: float = 0.0
    linf_sum: float = 0.0
    l2_sum: float = 0.0
    l0_sum: float = 0.0

    def update(self, clean: Tensor, adv: Tensor) -> None:
        """Add a batch of float ``[n, C, H, W]`` pairs in [0, 1] (a tolerance of 1e-6 outside).

        A batch that fails a check leaves the meter unchanged.
        """
        check_pair(clean, adv)
        size = batch_size_after(clean, self.size)
        if clean.shape[0] == 0:
            return
        _check_range("clean", clean)
        _check_range("adversarial", adv)
        sums = (
            float(ssim(clean, adv).sum()),
            float(ms_ssim(clean, adv, ms_ssim_setting(*size)).sum()),
            float(linf(clean, adv).sum()),
            float(l2(clean, adv).sum()),
            float(l0(clean, adv).sum()),
        )
        self.ssim_sum += sums[0]
        self.ms_ssim_sum += sums[1]
        self.linf_sum += sums[2]
        self.l2_sum += sums[3]
        self.l0_sum += sums[4]
        self.num_images += int(clean.shape[0])
        self.size = size

    def report(self) -> PerceptualReport:
        """Means over every image so far (``linf`` in 1/255 units); raises when there is none."""
        if self.num_images == 0 or self.size is None:
            raise AdvbenchError("no images to compare")
        n = self.num_images
        setting = ms_ssim_setting(*self.size)
        return PerceptualReport(
            ssim=self.ssim_sum / n,
            ms_ssim=self.ms_ssim_sum / n,
            linf=self.linf_sum / n * 255.0,
            l2=self.l2_sum / n,
            l0=self.l0_sum / n,
            ms_ssim_setting=str(setting) if setting is not None else "none",
            num_images=n,
        )


def perceptual_report(clean: Tensor, adv: Tensor, batch_size: int = 64) -> PerceptualReport:
    """Mean SSIM, MS-SSIM, L∞ (/255), L2 and L0 of ``adv`` against ``clean``, ``batch_size`` at a time.

    Both are float ``[N, 3, H, W]`` in [0, 1] (a tolerance of 1e-6 is allowed outside); a
    :class:`PerceptualMeter` fed with consecutive batches.
    """
    check_pair(clean, adv)
    if clean.shape[0] == 0:
        raise AdvbenchError("no images to compare")
    if batch_size < 1:
        raise AdvbenchError(f"batch_size must be >= 1, got {batch_size}")
    meter = PerceptualMeter()
    for s in range(0, clean.shape[0], batch_size):
        meter.update(clean[s : s + batch_size], adv[s : s + batch_size])
    return meter.report()
