"""Input defences, the registry's defence kind, and the adaptive (BPDA / EOT) defended victim."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torchvision.io import decode_jpeg, encode_jpeg

from advbench import hookimpl
from advbench.api import AdvbenchError, DefenceSpec, InputDefence, Victim
from advbench.defended import DefendedVictim, defended_features
from advbench.plugins import build_registry, discover, get_registry
from advbench_defences.jpeg import Jpeg
from advbench_defences.randomization import ResizePad
from advbench_defences.rerank import KReciprocalRerank
from advbench_defences.squeeze import BitDepth, Median

INPUT_DEFENCES = ["jpeg", "bitdepth", "median", "resize-pad"]
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


class TinyNet(Victim):
    """A small convolutional embedding network with an identity head."""

    input_size = (32, 16)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((4, 2)))
        self.head = nn.Linear(64, 5)
        self.feature_dim, self.num_classes = 64, 5

    def features(self, images: Tensor) -> Tensor:
        return self.body(images).flatten(1)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


def images(n: int = 3, seed: int = 0, size: tuple[int, int] = (32, 16)) -> Tensor:
    return torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def build(name: str) -> InputDefence:
    spec = get_registry().entries["defence"][name].spec
    defence = spec.build(**spec.defaults)
    assert isinstance(defence, InputDefence)
    return defence


@pytest.mark.parametrize("name", INPUT_DEFENCES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transforms_keep_shape_range_dtype_device(name: str, dtype: torch.dtype) -> None:
    x = images().to(dtype)
    y = build(name)(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)  # it did transform


def test_jpeg_is_what_the_codec_gives() -> None:
    x = images()
    expected = torch.stack(
        [decode_jpeg(encode_jpeg((img * 255).round().to(torch.uint8), quality=40)) for img in x]
    )
    assert torch.equal(Jpeg(quality=40)(x), expected.float() / 255)
    assert Jpeg.differentiable is False
    with pytest.raises(AdvbenchError, match="quality"):
        Jpeg(quality=0)


@pytest.mark.parametrize("bits", [1, 3, 4])
def test_bitdepth_has_exactly_two_to_the_bits_levels(bits: int) -> None:
    y = BitDepth(bits)(images(4, size=(32, 32)))
    levels = torch.unique(y)
    assert len(levels) == 2**bits
    torch.testing.assert_close(levels, torch.linspace(0, 1, 2**bits), rtol=0, atol=1e-7)


def test_median_removes_salt_and_pepper_from_a_flat_image() -> None:
    x = torch.full((1, 3, 24, 24), 0.5)
    x[:, :, 1::4, 2::4] = 1.0  # isolated salt
    x[:, :, 3::4, 0::4] = 0.0  # and pepper: a 3x3 window holds at most one of each
    assert torch.equal(Median(3)(x), torch.full_like(x, 0.5))


def reference_median(x: np.ndarray, k: int) -> np.ndarray:
    """Median over k x k windows with numpy, padding by reflection (without the border repeated)."""
    r = k // 2
    padded = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
    out = np.empty_like(x)
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            out[:, :, i, j] = np.median(padded[:, :, i : i + k, j : j + k].reshape(*x.shape[:2], -1), axis=2)
    return out


@pytest.mark.parametrize("k", [3, 5])
def test_median_equals_a_numpy_reference(k: int) -> None:
    x = images(2, size=(12, 10)).double()
    np.testing.assert_array_equal(Median(k)(x).numpy(), reference_median(x.numpy(), k))
    with pytest.raises(AdvbenchError, match="odd"):
        Median(4)


def test_median_gradient_reaches_the_selected_pixels() -> None:
    x = images(1, size=(8, 8)).requires_grad_(True)
    Median(3)(x).sum().backward()
    assert x.grad is not None
    assert float(x.grad.sum()) == x.numel()  # each output pixel sends its gradient to one input pixel


def test_resize_pad_is_a_function_of_the_generator_state() -> None:
    x, defence = images(), ResizePad(ratio=0.25)
    first = defence(x, torch.Generator().manual_seed(3))
    assert torch.equal(first, defence(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, defence(x, torch.Generator().manual_seed(4)))
    g = torch.Generator().manual_seed(3)
    defence(x, g)
    assert not torch.equal(first, defence(x, g))  # the state advanced: a new draw
    assert (defence.randomized, defence.differentiable, defence.draws) == (True, True, 4)
    assert torch.equal(ResizePad(ratio=0.0)(x, g), x)  # no room to move: the identity
    with pytest.raises(AdvbenchError, match="ratio"):
        ResizePad(ratio=2.0)


def pixel_grad(features: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The gradient of a squared-feature loss with respect to the pixels ``x``."""
    x = x.clone().requires_grad_(True)
    (features(x) ** 2).sum().backward()
    assert x.grad is not None
    return x.grad


@pytest.mark.parametrize("defence", [Jpeg(quality=30), BitDepth(3)])
def test_bpda_gradient_is_the_victims_gradient_at_the_defended_images(defence: InputDefence) -> None:
    victim, x = TinyNet().eval(), images()
    defended = DefendedVictim(victim, defence)
    y = defence(x)
    torch.testing.assert_close(defended.features(x), victim.features(y))
    grad = pixel_grad(defended.features, x)
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, pixel_grad(victim.features, y))


def test_differentiable_defences_are_differentiated_through() -> None:
    victim, x = TinyNet().eval(), images()
    through = pixel_grad(lambda z: victim.features(Median(3)(z)), x)
    torch.testing.assert_close(pixel_grad(DefendedVictim(victim, Median(3)).features, x), through)


def test_eot_averages_seeded_draws_and_steps_see_new_draws() -> None:
    victim, x, defence = TinyNet().eval(), images(), ResizePad(ratio=0.3, draws=3)
    defended = DefendedVictim(victim, defence, seed=5)
    g = torch.Generator().manual_seed(5)
    draws = [victim.features(defence(x, g)) for _ in range(3)]
    first = defended.features(x)
    torch.testing.assert_close(first, torch.stack(draws).mean(0))
    assert not torch.allclose(first, draws[0])
    second = defended.features(x)
    assert not torch.allclose(first, second)  # the next step draws anew
    torch.testing.assert_close(DefendedVictim(victim, defence, seed=5).features(x), first)
    defended.reseed()
    torch.testing.assert_close(defended.features(x), first)
    evaluated = defended_features(victim, defence, x, seed=5)
    assert len(evaluated) == 3
    for got, want in zip(evaluated, draws, strict=True):
        torch.testing.assert_close(got, want)


def test_logits_go_through_the_same_path() -> None:
    victim, x, defence = TinyNet().eval(), images(), ResizePad(ratio=0.3, draws=2)
    defended = DefendedVictim(victim, defence, seed=1)
    assert (defended.input_size, defended.feature_dim, defended.num_classes) == ((32, 16), 64, 5)
    feats, logits = defended.features_and_logits(x)
    defended.reseed()
    torch.testing.assert_close(feats, defended.features(x))
    defended.reseed()
    torch.testing.assert_close(logits, defended.logits(x))
    g = torch.Generator().manual_seed(1)
    torch.testing.assert_close(logits, (victim.logits(defence(x, g)) + victim.logits(defence(x, g))) / 2)
    jpeg_logits = DefendedVictim(victim, Jpeg()).logits(x)
    torch.testing.assert_close(jpeg_logits, victim.logits(Jpeg()(x)))


def test_fixed_defences_give_one_evaluation_draw() -> None:
    victim, x = TinyNet().eval(), images()
    (feats,) = defended_features(victim, Jpeg(), x, seed=0)
    torch.testing.assert_close(feats, victim.features(Jpeg()(x)))


def test_ranking_defences_are_not_wrapped_around_a_victim() -> None:
    with pytest.raises(AdvbenchError, match="ranking defences"):
        DefendedVictim(TinyNet(), KReciprocalRerank())  # type: ignore[arg-type]


def test_registry_lists_the_builtin_defences_and_the_none_selector() -> None:
    registry = get_registry()
    assert {"jpeg", "bitdepth", "median", "resize-pad", "rerank"} <= set(registry.names("defence"))
    assert all(registry.entries["defence"][n].package == "advbench" for n in INPUT_DEFENCES)
    assert isinstance(build("jpeg"), Jpeg)
    rerank = registry.entries["defence"]["rerank"].spec.build()
    assert isinstance(rerank, KReciprocalRerank) and (rerank.k1, rerank.k2) == (20, 6)
    assert registry.select("defence", "none,jpeg") == ["none", "jpeg"]
    assert registry.select("defence", "jpeg,none,jpeg") == ["jpeg", "none"]
    assert "none" not in registry.select("defence", "all")
    with pytest.raises(AdvbenchError, match="unknown attack 'none'"):
        registry.select("attack", "none")


class _Plugin:
    """A third-party plugin that tries to register a defence called ``none``."""

    @hookimpl
    def advbench_defences(self) -> list[DefenceSpec]:
        return [DefenceSpec(name="none", description="identity", build=Jpeg)]


def test_no_plugin_can_take_the_name_none() -> None:
    registry = build_registry(discover(extra_plugins=[("takes-none", _Plugin())]))
    assert "none" not in registry.names("defence")
    assert any("reserved selector" in line for line in registry.problems_report())


def test_plugins_command_lists_defences(capsys: pytest.CaptureFixture[str]) -> None:
    from advbench.cli import main

    main(["plugins", "--kind", "defence"])
    out = capsys.readouterr().out
    assert "defences:" in out and "resize-pad" in out and "ratio=0.1, draws=4" in out
