"""DG-Net victim: official key names, strict official-format loading, the official test feature."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from advbench.api import AdvbenchError, Victim
from advbench_dgnet import (
    DEFAULTS,
    advbench_victims,
    build_dgnet,
    build_dgnet_r18,
    load_dgnet,
    load_dgnet_r18,
)
from advbench_dgnet.model import DGNetVictim, build

SMALL = (64, 32)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise(victim: DGNetVictim, seed: int = 0) -> DGNetVictim:
    """Non-trivial BN statistics and affine params, so that a load that kept defaults shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in victim.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith(("running_mean", "bn1.bias", "bn2.bias", "bn3.bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
    return victim.eval()


def _official_keys(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of an official id_*.pt, written from the official code (GitHub `NVlabs/DG-Net`, `reIDmodel.py` ft_netAB) and torchvision ResNet-50 naming.

    Independent of torchvision and of the plugin: ResNet-50 (blocks 3, 4, 6, 3; Bottleneck
    conv1/conv2/conv3 + bn1/bn2/bn3, downsample.0 conv + downsample.1 BN in block 0), fc 2048->1000,
    then two heads Linear(2048->512), BN1d(512), Linear(512->ID_class).
    """
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for s in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{s}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    keys["model.conv1.weight"] = (64, 3, 7, 7)
    bn("model.bn1", 64)
    inplanes = 64
    for layer, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = f"model.layer{layer}.{b}"
            keys[f"{p}.conv1.weight"] = (width, inplanes, 1, 1)
            bn(f"{p}.bn1", width)
            keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{p}.bn2", width)
            keys[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
            bn(f"{p}.bn3", width * 4)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (width * 4, inplanes, 1, 1)
                bn(f"{p}.downsample.1", width * 4)
            inplanes = width * 4
    keys["model.fc.weight"] = (1000, 2048)
    keys["model.fc.bias"] = (1000,)
    for head in ("classifier1", "classifier2"):
        keys[f"{head}.add_block.0.weight"] = (512, 2048)
        keys[f"{head}.add_block.0.bias"] = (512,)
        bn(f"{head}.add_block.1", 512)
        keys[f"{head}.classifier.0.weight"] = (num_classes, 512)
        keys[f"{head}.classifier.0.bias"] = (num_classes,)
    return keys


def _write_official(root: Path, state: dict, num_classes: int, **config: object) -> Path:
    """The released layout: outputs/<name>/config.yaml and outputs/<name>/checkpoints/id_00100000.pt."""
    run = root / "outputs" / "E0.5new_reid0.5_w30000"
    (run / "checkpoints").mkdir(parents=True)
    cfg = {"ID_class": num_classes, "ID_stride": 1, "pool": "max", "norm_id": False, "ID_style": "AB"}
    cfg.update(config)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    path = run / "checkpoints" / "id_00100000.pt"
    torch.save({"a": state}, path)
    return path


@pytest.fixture
def small() -> DGNetVictim:
    torch.manual_seed(0)
    return _randomise(build(7, SMALL, backbone="resnet18"))


# ------------------------------------------------------------------------------- registration
def test_specs_registered_and_cheap() -> None:
    specs = {s.name: s for s in advbench_victims()}
    assert set(specs) == {"dgnet", "dgnet-r18"}
    assert specs["dgnet"].load is load_dgnet and specs["dgnet-r18"].load is load_dgnet_r18
    assert (
        not specs["dgnet-r18"].default and not specs["dgnet"].default
    )  # both too slow for the CPU default grid
    assert dict(specs["dgnet"].defaults) == DEFAULTS
    assert DEFAULTS["stride"] == 1 and DEFAULTS["pool"] == "max"  # configs/latest.yaml
    v = specs["dgnet-r18"].build(num_classes=5, input_size=SMALL, **specs["dgnet-r18"].defaults)
    assert isinstance(v, Victim) and v.backbone == "resnet18" and v.feature_dim == 1024


# --------------------------------------------------------------------------- official key list
def test_state_dict_matches_the_reference_key_list() -> None:
    victim = build_dgnet(751, (256, 128))
    got = {k: tuple(v.shape) for k, v in victim.state_dict().items()}
    expected = _official_keys(751)
    assert sorted(set(got) ^ set(expected)) == []
    assert got == expected
    assert len(got) == 338  # reference §2.3
    assert sum(p.numel() for p in victim.parameters()) == 28_427_782  # reference §1.2


def test_official_checkpoint_loads_strictly(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = _randomise(build_dgnet(751, (256, 128)))
    path = _write_official(tmp_path, source.state_dict(), 751)
    victim = load_dgnet(path, input_size=(256, 128), **DEFAULTS)
    assert isinstance(victim, DGNetVictim) and not victim.training
    assert (victim.num_classes, victim.stride, victim.pool) == (751, 1, "max")
    x = torch.rand(2, 3, 64, 32)  # ResNet-50 at 256x128 is slow on CPU; the model is size-agnostic
    with torch.no_grad():
        feats = victim.features(x)
        ref = source.features(x)
    assert feats.shape == (2, 1024) and victim.feature_dim == 1024
    torch.testing.assert_close(feats, ref)
    # Documented norms: primary half 1, fine half sqrt(0.5), total sqrt(1.5).
    torch.testing.assert_close(feats[:, :512].norm(dim=1), torch.ones(2))
    torch.testing.assert_close(feats[:, 512:].norm(dim=1), torch.full((2,), math.sqrt(0.5)))
    torch.testing.assert_close(feats.norm(dim=1), torch.full((2,), math.sqrt(1.5)))
    # A randomly initialised model gives different features: the weights were really loaded.
    assert not torch.allclose(build_dgnet(751, (256, 128)).eval().features(x).detach(), feats)


# ----------------------------------------------------------------------------- test feature
def test_feature_is_the_official_flip_sum_of_normalised_heads(small: DGNetVictim) -> None:
    x = torch.rand(3, 3, *SMALL)
    with torch.no_grad():
        a1, a2 = small.head_embeddings(x)
        b1, b2 = small.head_embeddings(x.flip(3))
        prim = F.normalize(F.normalize(a1, dim=1) + F.normalize(b1, dim=1), dim=1)
        fine = F.normalize(F.normalize(a2, dim=1) + F.normalize(b2, dim=1), dim=1)
        small.fine_grained_weight = 1.0  # the raw vector the official test_2label.py stores
        raw = small.features(x)
        small.fine_grained_weight = 0.5
        weighted = small.features(x)
    torch.testing.assert_close(raw, torch.cat([prim, fine], 1))
    torch.testing.assert_close(raw.norm(dim=1), torch.full((3,), math.sqrt(2.0)))
    torch.testing.assert_close(weighted[:, :512], prim)
    torch.testing.assert_close(weighted[:, 512:], math.sqrt(0.5) * fine)
    # Scoring: cosine of the weighted vectors = (cos_prim + 0.5 cos_fine) / 1.5, as evaluate_gpu.py.
    cos = F.normalize(weighted, dim=1) @ F.normalize(weighted, dim=1).T
    official = (prim @ prim.T + 0.5 * fine @ fine.T) / 1.5
    torch.testing.assert_close(cos, official)
    assert not torch.allclose(official, (prim @ prim.T + fine @ fine.T) / 2)


def test_features_are_flip_invariant(small: DGNetVictim) -> None:
    x = torch.rand(4, 3, *SMALL)
    with torch.no_grad():
        torch.testing.assert_close(small.features(x), small.features(x.flip(3)), atol=1e-6, rtol=0)
        assert not torch.allclose(small.features(x), small.features(x.flip(2)), atol=1e-3)


def test_gradients_reach_the_pixels(small: DGNetVictim) -> None:
    x = torch.rand(2, 3, *SMALL, requires_grad=True)
    direction = torch.randn(2, 1024)
    (small.features(x) * direction).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    y = torch.rand(2, 3, *SMALL, requires_grad=True)
    small.logits(y).logsumexp(1).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_logits_and_train_outputs(small: DGNetVictim) -> None:
    x = torch.rand(8, 3, *SMALL)
    with torch.no_grad():
        pooled = small._pooled(x)
        expected = small.classifier1(pooled) + 0.5 * small.classifier2(pooled)
        torch.testing.assert_close(small.logits(x), expected)
    small.train()
    embs, logits = small.train_outputs(x)
    assert [tuple(e.shape) for e in embs] == [(8, 512), (8, 512)]
    assert [tuple(t.shape) for t in logits] == [(8, 7), (8, 7)]
    loss = sum(F.cross_entropy(t, torch.arange(8) % 7) for t in logits) + sum(e.pow(2).mean() for e in embs)
    loss.backward()
    assert (
        small.model.conv1.weight.grad is not None and small.classifier2.classifier[0].weight.grad is not None
    )


def test_stride_and_pool_change_behaviour_not_keys() -> None:
    torch.manual_seed(0)
    base = build(3, SMALL, backbone="resnet18", stride=1, pool="max")
    x = torch.rand(2, 3, *SMALL)
    assert base._layer4(x).shape[-2:] == (4, 2)
    assert base.appearance_code(x).shape == (2, 512 * 4)
    for other in (
        build(3, SMALL, backbone="resnet18", stride=2),
        build(3, SMALL, backbone="resnet18", pool="avg"),
    ):
        assert list(other.state_dict()) == list(base.state_dict())
        other.load_state_dict(base.state_dict(), strict=True)
        with torch.no_grad():
            assert not torch.allclose(other.eval().features(x), base.eval().features(x), atol=1e-4)
    assert build(3, SMALL, backbone="resnet18", stride=2)._layer4(x).shape[-2:] == (2, 1)
    with pytest.raises(AdvbenchError, match="pool"):
        build(3, SMALL, pool="mean")


def test_rebuild_from_state_dict_is_exact(small: DGNetVictim) -> None:
    """The core checkpoint format rebuilds with build(...) + load_state_dict(strict=True)."""
    again = build_dgnet_r18(7, SMALL, **DEFAULTS)
    again.load_state_dict(small.state_dict(), strict=True)
    x = torch.rand(2, 3, *SMALL)
    with torch.no_grad():
        torch.testing.assert_close(again.eval().features(x), small.features(x))


# ------------------------------------------------------------------------------ loader errors
def test_renamed_keys_fail_with_the_key_list(tmp_path: Path, small: DGNetVictim) -> None:
    state = {k.replace("classifier2.", "fine_head."): v for k, v in small.state_dict().items()}
    path = _write_official(tmp_path, state, 7)
    with pytest.raises(AdvbenchError) as err:
        load_dgnet_r18(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing keys 8 [classifier2.add_block.0.bias" in msg  # num_batches_tracked tolerated
    assert "unexpected keys 9 [fine_head.add_block.0.bias" in msg
    assert "... and 1 more" in msg
    assert "prefixed" not in msg
    state = {f"backbone.{k}": v for k, v in small.state_dict().items()}
    path.unlink()
    torch.save({"a": state}, path)
    with pytest.raises(AdvbenchError, match=r"missing keys 118 .* keys look prefixed with 'backbone\.'"):
        load_dgnet_r18(path)


def test_partial_checkpoint_fails(tmp_path: Path, small: DGNetVictim) -> None:
    state = {k: v for k, v in small.state_dict().items() if not k.startswith("model.layer4")}
    with pytest.raises(AdvbenchError, match=r"missing keys \d+ \[model\.layer4.*unexpected keys 0 \[\]"):
        load_dgnet_r18(_write_official(tmp_path, state, 7))


def test_wrong_backbone_fails_on_shapes(tmp_path: Path, small: DGNetVictim) -> None:
    with pytest.raises(AdvbenchError, match=r"missing keys|shapes differ"):
        load_dgnet(_write_official(tmp_path, small.state_dict(), 7))


def test_tolerated_variants_load(tmp_path: Path, small: DGNetVictim) -> None:
    """A ``module.`` prefix, no num_batches_tracked (PyTorch < 0.4.1), the legacy file format."""
    state = {f"module.{k}": v for k, v in small.state_dict().items() if "num_batches_tracked" not in k}
    path = _write_official(tmp_path, state, 7)
    torch.save({"a": state}, path, _use_new_zipfile_serialization=False)
    victim = load_dgnet_r18(path, input_size=SMALL)
    x = torch.rand(2, 3, *SMALL)
    with torch.no_grad():
        torch.testing.assert_close(victim.features(x), small.features(x))


def test_missing_a_and_garbage_fail(tmp_path: Path, small: DGNetVictim) -> None:
    path = _write_official(tmp_path, small.state_dict(), 7)
    torch.save(small.state_dict(), path)  # bare state dict, like the teacher's net_last.pth
    with pytest.raises(AdvbenchError, match=r"lacks key 'a'.*bare state dict"):
        load_dgnet_r18(path)
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(AdvbenchError, match="is not a torch checkpoint"):
        load_dgnet_r18(path)
    with pytest.raises(AdvbenchError, match="does not exist"):
        load_dgnet_r18(path.with_name("id_00000001.pt"))


def test_config_problems_fail(tmp_path: Path, small: DGNetVictim) -> None:
    path = _write_official(tmp_path / "a", small.state_dict(), 751)
    with pytest.raises(AdvbenchError, match=r"ID_class 751 .* 7-way classifier"):
        load_dgnet_r18(path)
    path = _write_official(tmp_path / "b", small.state_dict(), 7)
    # The runner passes the spec defaults; config.yaml alone decides the architecture.
    victim = load_dgnet_r18(path, stride=2, pool="avg")
    assert (victim.stride, victim.pool) == (1, "max")
    (path.parent.parent / "config.yaml").unlink()
    with pytest.raises(AdvbenchError, match=r"no config\.yaml"):
        load_dgnet_r18(path)
    cfg = tmp_path / "elsewhere.yaml"
    cfg.write_text(yaml.safe_dump({"ID_class": 7, "ID_stride": 2, "pool": "avg"}), encoding="utf-8")
    victim = load_dgnet_r18(path, config=cfg)
    assert (victim.stride, victim.pool) == (2, "avg")
    cfg.write_text(yaml.safe_dump({"ID_class": 7, "pool": "avg"}), encoding="utf-8")
    with pytest.raises(AdvbenchError, match="lacks ID_stride"):
        load_dgnet_r18(path, config=cfg)


def test_pretrained_weights_are_never_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: DGNetVictim
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(AdvbenchError, match=r"resnet18-f37072fd\.pth.*does not download"):
        build(5, SMALL, backbone="resnet18", pretrained=True)
    trunk = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    trunk.parent.mkdir(parents=True)
    torch.save(small.model.state_dict(), trunk)
    victim = build(5, SMALL, backbone="resnet18", pretrained=True)
    torch.testing.assert_close(victim.model.state_dict(), small.model.state_dict())
