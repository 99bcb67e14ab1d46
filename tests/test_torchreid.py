"""``torchreid:<arch>`` victims: torchreid's own models, checkpoints and feature extractor as references.

Checkpoints are written by torchreid's ``save_checkpoint`` (deep-person-reid,
https://github.com/KaiyangZhou/deep-person-reid) and features compared with its ``FeatureExtractor``
on the same uint8 pixels. Skipped as a whole when the ``[torchreid]`` extra is not installed.
"""

from __future__ import annotations

import builtins
import csv
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip(
    "torchreid", reason='the torchreid extra is not installed (pip install -e ".[torchreid]")'
)

from conftest import TINY_SYNTHETIC, tiny_cli
from torchreid.reid import models as tr_models
from torchreid.reid import utils as tr_utils

from advbench.api import AdvbenchError
from advbench.cli import main
from advbench.testing import check_victim
from advbench_torchreid import ARCHS, DEFAULTS, advbench_victims, build_torchreid, load_torchreid
from advbench_torchreid.checkpoint import _numpy_globals
from advbench_torchreid.model import TorchreidVictim

ARCH = "osnet_x0_25"
IDS = TINY_SYNTHETIC["train_ids"]
SMALL = (TINY_SYNTHETIC["height"], TINY_SYNTHETIC["width"])
SPEC = advbench_victims()[0]


def _torchreid_model(arch: str = ARCH, num_classes: int = IDS, seed: int = 0) -> torch.nn.Module:
    """A torchreid network with random weights *and* random BatchNorm statistics (not the identity)."""
    torch.manual_seed(seed)
    model = tr_models.build_model(arch, num_classes, loss="softmax", pretrained=False, use_gpu=False)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.running_mean is not None:
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _save(model: torch.nn.Module, folder: Path, epoch: int = 250, **extra: Any) -> Path:
    """torchreid's ``save_checkpoint`` as its engine calls it (rank1 a NumPy scalar, optimiser, scheduler)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[150, 225])
    state = {
        "state_dict": model.state_dict(),
        "epoch": epoch,
        "rank1": np.float32(0.875),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        **extra,
    }
    tr_utils.save_checkpoint(state, str(folder))
    return folder / f"model.pth.tar-{epoch}"


def _load(path: Path, input_size: tuple[int, int] = SMALL, num_classes: int = IDS, **params: Any):
    return load_torchreid(
        path, input_size=input_size, num_classes=num_classes, variant=ARCH, **{**DEFAULTS, **params}
    )


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    return _torchreid_model()


@pytest.fixture(scope="module")
def checkpoint(source: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(source, tmp_path_factory.mktemp("torchreid") / "log")


def _pixels(n: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def _as_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0)


# ----------------------------------------------------------------------- the toolkit's features
def test_features_equal_torchreid_feature_extractor(checkpoint: Path) -> None:
    """FeatureExtractor (PIL, ToTensor, Normalize, model.eval()) vs the victim at the model's size."""
    size = (256, 128)
    # torchreid's own load_checkpoint cannot read its engine's NumPy rank1 under torch >= 2.6's
    # weights_only default; allow exactly what advbench's reader allows.
    with torch.serialization.safe_globals(_numpy_globals()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = tr_utils.FeatureExtractor(
            model_name=ARCH, model_path=str(checkpoint), image_size=size, device="cpu", verbose=False
        )
    images = _pixels(2, size)
    reference = extractor(images)
    victim = _load(checkpoint, input_size=size)
    assert victim.image_size == size and victim.input_size == size
    with torch.no_grad():
        ours = victim.features(_as_tensor(images))
    assert ours.shape == reference.shape == (2, 512)
    assert float((ours - reference).abs().max()) < 1e-5  # measured 3.8e-8


def test_resize_inside_follows_pil_up_to_its_rounding(checkpoint: Path) -> None:
    """Another crop size is resized to 256x128 inside: close to PIL's bilinear Resize, not equal."""
    with torch.serialization.safe_globals(_numpy_globals()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = tr_utils.FeatureExtractor(
            model_name=ARCH, model_path=str(checkpoint), image_size=(256, 128), device="cpu", verbose=False
        )
    images = _pixels(2, SMALL, seed=1)
    victim = _load(checkpoint)
    assert victim.image_size == (256, 128) and victim.input_size == SMALL
    assert victim.info["image_size"] == f"256x128 (inputs resized from {SMALL[0]}x{SMALL[1]})"
    with torch.no_grad():
        ours = victim.features(_as_tensor(images))
    reference = extractor(images)
    assert float((ours - reference).abs().max()) < 2e-3 * float(reference.abs().max()) + 1e-3


def test_distance_is_torchreids(checkpoint: Path) -> None:
    """metric=euclidean is torchreid's squared euclidean on raw features; cosine as its cosine."""
    from torchreid.reid.metrics import compute_distance_matrix

    from advbench.metrics.reid import gallery_distances, prepare_gallery

    images = _as_tensor(_pixels(5, SMALL, seed=2))
    for metric in ("euclidean", "cosine"):
        victim = _load(checkpoint, metric=metric)
        assert victim.distance == metric
        with torch.no_grad():
            feats = victim.features(images)
        ours = gallery_distances(feats[:2], prepare_gallery(feats[2:], [0, 1, 2], [0, 0, 0], metric))
        theirs = compute_distance_matrix(feats[:2], feats[2:], metric=metric)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------- strict loading
def test_checkpoint_loads_strictly_with_its_classifier(checkpoint: Path, source: torch.nn.Module) -> None:
    victim = _load(checkpoint)
    assert isinstance(victim, TorchreidVictim) and not victim.training
    for key, value in source.state_dict().items():
        assert torch.equal(victim.model.state_dict()[key], value), key
    assert victim.num_classes == IDS and victim.feature_dim == 512 and victim.distance == "euclidean"
    assert victim.info == {
        "checkpoint": "torchreid checkpoint model.pth.tar-250 (epoch 250, rank-1 87.5%)",
        "classifier": f"{IDS} ids, as the dataset: used for logits",
        "image_size": f"256x128 (inputs resized from {SMALL[0]}x{SMALL[1]})",
        "metric": "euclidean",
    }
    x = torch.rand(3, 3, *SMALL)
    with torch.no_grad():
        feats, logits = victim.features_and_logits(x)
        torch.testing.assert_close(feats, victim.features(x))
        torch.testing.assert_close(logits, source.classifier(feats))


def test_classifier_of_another_dataset_is_kept_out(checkpoint: Path) -> None:
    victim = _load(checkpoint, num_classes=5)
    assert victim.num_classes == 0
    assert victim.info["classifier"] == f"{IDS} ids, dataset has 5: not used"
    with pytest.raises(NotImplementedError, match=f"classifier is {IDS} ids, dataset has 5"):
        victim.logits(torch.rand(1, 3, *SMALL))
    with torch.no_grad():  # the embedding does not depend on the classifier
        torch.testing.assert_close(
            victim.features(torch.ones(1, 3, *SMALL)), _load(checkpoint).features(torch.ones(1, 3, *SMALL))
        )


def test_tolerated_forms_load(tmp_path: Path, source: torch.nn.Module) -> None:
    """A bare state dict, ``module.``-prefixed keys (DataParallel), no classifier at all."""
    x = torch.rand(2, 3, *SMALL)
    with torch.no_grad():
        expected = _load(_save(source, tmp_path / "ref")).features(x)
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, bare)
    victim = _load(bare)
    assert victim.info["checkpoint"] == "torchreid state dict bare.pth" and victim.num_classes == IDS
    headless = tmp_path / "headless.pth"
    torch.save(
        {"state_dict": {k: v for k, v in source.state_dict().items() if "classifier" not in k}}, headless
    )
    stripped = _load(headless)
    assert (
        stripped.num_classes == 0 and stripped.info["classifier"] == "absent from the checkpoint: no logits"
    )
    with torch.no_grad():
        torch.testing.assert_close(victim.features(x), expected, atol=0, rtol=0)
        torch.testing.assert_close(stripped.features(x), expected, atol=0, rtol=0)


def _one_line(path: Path, match: str, **params: Any) -> str:
    with pytest.raises(AdvbenchError, match=match) as err:
        _load(path, **params)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_mismatched_checkpoints_fail_in_one_line(tmp_path: Path, source: torch.nn.Module) -> None:
    state = source.state_dict()
    renamed = {k.replace("conv5.", "conv_last."): v for k, v in state.items()}
    msg = _one_line(_save_state(tmp_path / "renamed.pth", renamed), r"missing keys \d+ \[conv5\.")
    assert "unexpected keys" in msg and "conv_last." in msg
    partial = {k: v for k, v in state.items() if not k.startswith("conv4")}
    _one_line(
        _save_state(tmp_path / "partial.pth", partial), r"missing keys \d+ \[conv4.*unexpected keys 0 \[\]"
    )
    prefixed = {f"backbone.{k}": v for k, v in state.items()}
    _one_line(_save_state(tmp_path / "prefixed.pth", prefixed), r"prefixed with 'backbone\.'")
    wider = _torchreid_model("osnet_x0_5").state_dict()  # another architecture, same key names
    _one_line(_save_state(tmp_path / "wider.pth", wider), r"shapes differ .*another architecture")


def _save_state(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"state_dict": state, "epoch": 1}, path)
    return path


def test_damaged_files_fail_in_one_line(tmp_path: Path, checkpoint: Path) -> None:
    _one_line(tmp_path / "absent.pth.tar", r"does not exist")
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(checkpoint.read_bytes()[:5000])
    _one_line(truncated, r"is not a torch checkpoint")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 40)
    _one_line(garbage, r"is not a torch checkpoint")
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": {}, "config": Path("x")}, pickled)  # a class weights_only refuses
    _one_line(pickled, r"cannot be read with weights_only=True.*re-save its weights")
    listed = tmp_path / "list.pth"
    torch.save([1, 2], listed)
    _one_line(listed, r"holds a list, not a checkpoint dict")
    _one_line(checkpoint, r"unknown parameter\(s\) colour", colour="red")
    _one_line(checkpoint, r"image_size must be auto or HxW", image_size="big")


# ---------------------------------------------------------------------------------- the family
def test_variants_are_torchreids_factory() -> None:
    """``ARCHS`` is the factory, and every architecture returns an embedding in eval mode and
    ``(logits, embedding)`` in train mode with loss='triplet' (shapes on the meta device: no compute)."""
    factory = tr_models.__dict__["__model_factory"]
    assert list(ARCHS) == list(factory) and SPEC.variants == ARCHS
    for arch in ARCHS:
        size = (160, 64) if arch == "hacnn" else (256, 128)
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = tr_models.build_model(arch, 7, loss="triplet", pretrained=False, use_gpu=False)
            out = model.eval()(torch.zeros(2, 3, *size))
            logits, emb = model.train()(torch.zeros(2, 3, *size))
        assert isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == 2, arch
        heads = logits if isinstance(logits, (list, tuple)) else [logits]
        assert all(tuple(h.shape) == (2, 7) for h in heads), arch
        embs = emb if isinstance(emb, (list, tuple)) else [emb]
        assert all(e.ndim == 2 and e.shape[0] == 2 for e in embs), arch


def test_spec_is_a_cheap_family() -> None:
    assert SPEC.name == "torchreid" and SPEC.variant and SPEC.load is load_torchreid
    assert dict(SPEC.defaults) == {"metric": "euclidean", "image_size": "auto", "pretrained": False}
    assert not SPEC.default


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_conformance(metric: str) -> None:
    victim = check_victim(SPEC, variant=ARCH, num_classes=4, input_size=SMALL, params={"metric": metric})
    assert victim.image_size == SMALL and victim.distance == metric and victim.init == "scratch"


@pytest.mark.filterwarnings("ignore::UserWarning")  # HACNN's deprecated F.upsample / grid_sample
def test_conformance_of_multi_head_archs() -> None:
    """PCB (one classifier per part) and HACNN (fixed 160x64, two branches) at the kit's size."""
    for arch in ("pcb_p4", "hacnn"):
        victim = check_victim(SPEC, variant=arch, num_classes=4, input_size=(64, 32))
        assert victim.image_size == ((160, 64) if arch == "hacnn" else (64, 32))


def test_unknown_arch_and_missing_extra(monkeypatch: pytest.MonkeyPatch, checkpoint: Path) -> None:
    with pytest.raises(AdvbenchError, match=r"no architecture 'osnet_x0_3'\. Did you mean osnet_x0_5"):
        build_torchreid(4, SMALL, variant="osnet_x0_3")
    real_import = builtins.__import__

    def no_torchreid(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torchreid" or name.startswith("torchreid."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchreid)
    expected = 'torchreid:osnet_x1_0 needs the torchreid extra: pip install -e ".[torchreid]"'
    with pytest.raises(AdvbenchError) as err:
        build_torchreid(4, SMALL, variant="osnet_x1_0")
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    with pytest.raises(AdvbenchError) as err:
        load_torchreid(checkpoint, input_size=SMALL, num_classes=IDS, variant="osnet_x1_0")
    assert str(err.value).startswith(expected)


def test_pretrained_comes_from_local_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(AdvbenchError, match=r"no local ImageNet weights.*never downloads"):
        build_torchreid(4, SMALL, variant=ARCH, pretrained=True)
    assert build_torchreid(4, SMALL, variant=ARCH, pretrained="auto").init == "scratch"
    imagenet = _torchreid_model(num_classes=1000, seed=3)
    torch.save(imagenet.state_dict(), tmp_path / f"{ARCH}_imagenet.pth")  # torchreid's file name
    victim = build_torchreid(4, SMALL, variant=ARCH, pretrained="auto")
    assert victim.init.startswith(f"imagenet:{ARCH}_imagenet.pth (") and victim.num_classes == 4
    torch.testing.assert_close(victim.model.conv1.conv.weight, imagenet.conv1.conv.weight)


# ------------------------------------------------------------------------------- advbench run
def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_run_with_a_torchreid_checkpoint(
    session_cache: Path, tmp_path: Path, source: torch.nn.Module
) -> None:
    """A checkpoint with a plain-float rank1 (see docs/torchreid.md on NumPy scalars and the core reader)."""
    name = f"torchreid:{ARCH}"
    path = _save(source, tmp_path / "log", epoch=3, rank1=0.5)
    args = tiny_cli(session_cache, tmp_path / "lb")
    args[args.index("--victims") + 1] = name
    code = main([*args, "--victim-weights", f"{name}={path}", "--attacks", "fgsm", "--eps", "8"])
    assert code == 0
    rows = [r for r in _rows(tmp_path / "lb") if r["attack"] == "fgsm"]
    assert rows and all(r["source_victim"] == name for r in rows)
    assert all(math.isfinite(float(r["clean_mAP"])) and math.isfinite(float(r["adv_mAP"])) for r in rows)


def test_run_with_an_engine_checkpoint(session_cache: Path, tmp_path: Path, checkpoint: Path) -> None:
    """The fixture's checkpoint, as torchreid's engine writes it (rank1 a NumPy scalar)."""
    name = f"torchreid:{ARCH}"
    args = tiny_cli(session_cache, tmp_path / "lb")
    args[args.index("--victims") + 1] = name
    assert main([*args, "--victim-weights", f"{name}={checkpoint}", "--attacks", "fgsm", "--eps", "8"]) == 0


def test_trains_on_the_embedded_data_without_a_checkpoint(session_cache: Path, tmp_path: Path) -> None:
    name = f"torchreid:{ARCH}"
    args = tiny_cli(session_cache, tmp_path / "lb")
    args[args.index("--victims") + 1] = name
    args[args.index("--train-steps") + 1] = "2"
    assert main([*args, "--attacks", "fgsm", "--eps", "8"]) == 0
    rows = [r for r in _rows(tmp_path / "lb") if r["attack"] == "fgsm"]
    assert rows and all(math.isfinite(float(r["clean_mAP"])) for r in rows)
    assert list((session_cache / "victims").glob(f"torchreid-{ARCH}__*.pt"))
