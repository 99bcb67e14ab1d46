"""fast-reid victims: config.yaml parsing, fast-reid's key layout, strict loading and its one-line errors,
features equal to fast-reid's own model, and one end-to-end ``advbench run`` on a fast-reid checkpoint.

Tests marked by :func:`fastreid_oracle.require_fastreid` compare with fast-reid itself from the scratch
install (see tests/fastreid_oracle.py) and skip without it; everything else always runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import TINY_SYNTHETIC
from fastreid_oracle import (
    build_and_save,
    oracle_dir,
    oracle_features,
    randomise,
    rank_module,
    require_fastreid,
)

from advbench.api import AdvbenchError
from advbench.testing import check_victim
from advbench_fastreid import MODELS, advbench_victims, build_fastreid, load_fastreid
from advbench_fastreid.config import FIELDS, FastReidConfig, parse_config, to_yaml_dict
from advbench_fastreid.model import FastReidVictim
from advbench_fastreid.variants import VARIANTS

SMALL = (64, 32)
KEYS = {
    "bot-r50": 324,
    "bot-r50-ibn": 350,
    "agw-r50": 389,
    "agw-r50-ibn": 415,
    "sbs-r50": 390,
    "sbs-r50-ibn": 416,
}
"""State-dict keys of fast-reid 1.4's ``build_model`` for each recipe (measured with the oracle)."""


@pytest.fixture(autouse=True)
def _two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


def _images(n: int = 2, size: tuple[int, int] = SMALL, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def _save(victim: FastReidVictim, folder: Path, *, state: dict[str, Any] | None = None, **cfg: Any) -> Path:
    """``victim`` saved as fast-reid saves (``{"model": ...}`` + config.yaml); ``cfg`` overrides fields."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_final.pth"
    torch.save({"model": victim.state_dict() if state is None else state, "iteration": 3}, path)
    config = dataclasses.replace(victim.cfg, **cfg)
    (folder / "config.yaml").write_text(yaml.safe_dump(to_yaml_dict(config)), encoding="utf-8")
    return path


def _built(variant: str = "bot-r50", num_classes: int = 8, size: tuple[int, int] = SMALL) -> FastReidVictim:
    torch.manual_seed(0)
    victim = build_fastreid(num_classes, size, variant=variant)
    assert isinstance(victim, FastReidVictim)
    return randomise(victim, size)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def bot() -> FastReidVictim:
    return _built()


def _error(call: Any) -> str:
    with pytest.raises(AdvbenchError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.startswith("fastreid: "), message
    return message


# ------------------------------------------------------------------------------------- registry
def test_spec_is_a_family_with_the_known_models() -> None:
    (spec,) = advbench_victims()
    assert spec.name == "fastreid" and spec.variant and spec.load is not None
    assert spec.variants == MODELS == tuple(VARIANTS)
    assert spec.defaults == {"pretrained": False}


# --------------------------------------------------------------------------------------- config
SAMPLE_VALUES = {
    "MODEL.BACKBONE.DEPTH": "50x",
    "MODEL.BACKBONE.LAST_STRIDE": 2,
    "MODEL.BACKBONE.NORM": "syncBN",
    "MODEL.BACKBONE.WITH_IBN": True,
    "MODEL.BACKBONE.WITH_NL": True,
    "MODEL.BACKBONE.FEAT_DIM": 2048,
    "MODEL.HEADS.NORM": "syncBN",
    "MODEL.HEADS.WITH_BNNECK": True,
    "MODEL.HEADS.NECK_FEAT": "after",
    "MODEL.HEADS.POOL_LAYER": "GeneralizedMeanPoolingP",
    "MODEL.HEADS.EMBEDDING_DIM": 256,
    "MODEL.HEADS.NUM_CLASSES": 751,
    "MODEL.HEADS.CLS_LAYER": "CircleSoftmax",
    "MODEL.HEADS.SCALE": 64,
    "MODEL.HEADS.MARGIN": 0.35,
    "MODEL.PIXEL_MEAN": [120.0, 110.0, 100.0],
    "MODEL.PIXEL_STD": [50.0, 55.0, 60.0],
    "INPUT.SIZE_TEST": [384, 128],
    "TEST.METRIC": "euclidean",
    "TEST.FLIP.ENABLED": True,
}


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


@pytest.mark.parametrize("dotted", list(FIELDS))
def test_each_supported_field_is_read(dotted: str) -> None:
    name = FIELDS[dotted][0]
    value = SAMPLE_VALUES[dotted]
    cfg = parse_config(_nested(dotted, value))
    expected = tuple(value) if isinstance(value, list) else value
    assert getattr(cfg, name) == expected
    others = {f.name for f in dataclasses.fields(FastReidConfig)} - {name}
    assert all(getattr(cfg, o) == getattr(FastReidConfig(), o) for o in others)  # fast-reid's defaults


def test_config_round_trips_and_defaults_are_fastreids() -> None:
    for cfg in VARIANTS.values():
        assert parse_config(yaml.safe_load(yaml.safe_dump(to_yaml_dict(cfg)))) == cfg
    bare = FastReidConfig()  # fast-reid's get_cfg(): no BNNeck, average pooling, 256x128, cosine
    assert (bare.with_bnneck, bare.pool, bare.size_test, bare.metric) == (
        False,
        "GlobalAvgPool",
        (256, 128),
        "cosine",
    )


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_nested("MODEL.META_ARCHITECTURE", "MGN"), "MODEL.META_ARCHITECTURE 'MGN'"),
        (_nested("MODEL.BACKBONE.NAME", "build_osnet_backbone"), "MODEL.BACKBONE.NAME"),
        (_nested("MODEL.BACKBONE.WITH_SE", True), "MODEL.BACKBONE.WITH_SE"),
        (_nested("MODEL.BACKBONE.DEPTH", "101x"), "MODEL.BACKBONE.DEPTH '101x' is not supported"),
        (_nested("MODEL.BACKBONE.NORM", "GN"), "MODEL.BACKBONE.NORM 'GN'"),
        (_nested("MODEL.BACKBONE.FEAT_DIM", 512), "MODEL.BACKBONE.FEAT_DIM 512"),
        (_nested("MODEL.BACKBONE.LAST_STRIDE", 3), "MODEL.BACKBONE.LAST_STRIDE 3 must be 1 or 2"),
        (_nested("MODEL.HEADS.POOL_LAYER", "Identity"), "MODEL.HEADS.POOL_LAYER 'Identity'"),
        (_nested("MODEL.HEADS.NECK_FEAT", "middle"), "MODEL.HEADS.NECK_FEAT"),
        (_nested("MODEL.HEADS.CLS_LAYER", "AMSoftmax"), "MODEL.HEADS.CLS_LAYER"),
        (_nested("MODEL.HEADS.WITH_BNNECK", "yes"), "MODEL.HEADS.WITH_BNNECK 'yes' must be true or false"),
        (_nested("MODEL.HEADS.EMBEDDING_DIM", -1), "MODEL.HEADS.EMBEDDING_DIM"),
        (_nested("MODEL.PIXEL_STD", [1.0, 0.0, 1.0]), "MODEL.PIXEL_STD"),
        (_nested("MODEL.PIXEL_MEAN", [1.0, 2.0]), "MODEL.PIXEL_MEAN"),
        (_nested("INPUT.SIZE_TEST", [256]), "INPUT.SIZE_TEST"),
        (_nested("TEST.METRIC", "jaccard"), "TEST.METRIC 'jaccard'"),
        (_nested("TEST.RERANK.ENABLED", True), "TEST.RERANK.ENABLED"),
        (_nested("TEST.AQE.ENABLED", True), "TEST.AQE.ENABLED"),
        ({"_BASE_": "Base-SBS.yml"}, "_BASE_"),
        ([1, 2], "not a YAML mapping"),
    ],
)
def test_unsupported_config_fails_in_one_line_naming_the_field(data: Any, named: str) -> None:
    assert named in _error(lambda: parse_config(data))


# ----------------------------------------------------------------------------------- key layout
@pytest.mark.parametrize("variant", MODELS)
def test_key_layout_of_each_model(variant: str) -> None:
    torch.manual_seed(0)
    state = build_fastreid(4, SMALL, variant=variant).state_dict()
    assert len(state) == KEYS[variant]
    assert "pixel_mean" not in state and tuple(state["heads.weight"].shape) == (4, 2048)
    cfg = VARIANTS[variant]
    assert ("backbone.layer3.5.bn1.IN.weight" in state) == cfg.with_ibn
    assert "backbone.layer4.0.bn1.running_var" in state  # layer4 never has IBN
    assert not any(k.startswith(("backbone.NL_1", "backbone.NL_4")) for k in state)
    nl = sorted({k.split(".")[1] + "." + k.split(".")[2] for k in state if k.startswith("backbone.NL_")})
    assert nl == (["NL_2.0", "NL_2.1", "NL_3.0", "NL_3.1", "NL_3.2"] if cfg.with_nl else [])
    if cfg.with_nl:
        assert tuple(state["backbone.NL_3.2.theta.weight"].shape) == (1, 1024, 1, 1)
        assert tuple(state["backbone.NL_2.0.W.0.weight"].shape) == (512, 1, 1, 1)
    assert ("heads.pool_layer.p" in state) == (cfg.pool == "GeneralizedMeanPoolingP")
    assert "heads.bottleneck.0.running_mean" in state


def test_saved_model_reloads_strictly_with_equal_features(tmp_path: Path, bot: FastReidVictim) -> None:
    path = _save(bot, tmp_path)
    loaded = load_fastreid(path, input_size=SMALL, num_classes=8, variant="bot-r50")
    torch.testing.assert_close(loaded.state_dict(), bot.state_dict(), rtol=0, atol=0)
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(images), bot.features(images), rtol=0, atol=0)
        torch.testing.assert_close(loaded.logits(images), bot.logits(images), rtol=0, atol=0)
    assert loaded.num_classes == 8 and loaded.distance == "cosine" and loaded.feature_dim == 2048
    assert loaded.info["classifier"] == "8 ids: used for logits"
    assert loaded.info["checkpoint"] == "fast-reid model_final.pth"


def test_tolerated_variants_load(tmp_path: Path, bot: FastReidVictim) -> None:
    """A DataParallel ``module.`` prefix, a bare state dict, no ``num_batches_tracked``, and the
    ``pixel_mean``/``pixel_std`` buffers saved by fast-reid before 1.4 (then used)."""
    state = {f"module.{k}": v for k, v in bot.state_dict().items() if not k.endswith("num_batches_tracked")}
    mean, std = torch.tensor([100.0, 110.0, 120.0]), torch.tensor([60.0, 61.0, 62.0])
    state["module.pixel_mean"], state["module.pixel_std"] = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)
    path = _save(bot, tmp_path / "a", state=state)
    loaded = load_fastreid(path, input_size=SMALL, num_classes=8, variant="bot-r50")
    assert torch.equal(loaded.pixel_mean.flatten(), mean) and "checkpoint's" in loaded.info["pixel_stats"]
    bare = tmp_path / "b" / "model_final.pth"
    _save(bot, bare.parent)
    torch.save(bot.state_dict(), bare)
    load_fastreid(bare, input_size=SMALL, num_classes=8, variant="bot-r50")


# ------------------------------------------------------------------------------ one-line errors
def test_damaged_missing_and_foreign_files_fail(tmp_path: Path, bot: FastReidVictim) -> None:
    def load(path: Path, **kw: Any) -> Any:
        return load_fastreid(
            path, input_size=SMALL, num_classes=8, variant=kw.pop("variant", "bot-r50"), **kw
        )

    path = _save(bot, tmp_path / "ok")
    assert "does not exist" in _error(lambda: load(tmp_path / "nope.pth"))
    garbage = tmp_path / "ok" / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    assert "is not a torch checkpoint" in _error(lambda: load(garbage))
    truncated = tmp_path / "ok" / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:5000])
    assert "is not a torch checkpoint" in _error(lambda: load(truncated))
    other = tmp_path / "ok" / "other.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "epoch": 3}, other)
    assert "lacks key 'model'" in _error(lambda: load(other))
    lonely = tmp_path / "lonely" / "model_final.pth"
    lonely.parent.mkdir()
    lonely.write_bytes(path.read_bytes())
    message = _error(lambda: load(lonely))
    assert f"no config.yaml beside {lonely}" in message and "OUTPUT_DIR" in message
    load(lonely, config=str(tmp_path / "ok" / "config.yaml"))  # config=PATH points elsewhere
    assert "config file" in _error(lambda: load(lonely, config=str(tmp_path / "none.yaml")))
    assert "unknown loader option(s) stride" in _error(lambda: load(path, stride=1))
    assert "unknown model 'bot-r18'" in _error(lambda: load(path, variant="bot-r18"))


def test_wrong_keys_and_shapes_fail_naming_them(tmp_path: Path, bot: FastReidVictim) -> None:
    state = bot.state_dict()
    renamed = {k.replace("heads.bottleneck.0", "heads.bnneck"): v for k, v in state.items()}
    message = _error(lambda: load_fastreid(_save(bot, tmp_path / "a", state=renamed), SMALL, 8, "bot-r50"))
    assert (
        "missing keys 4 [heads.bottleneck.0.bias" in message
        and "unexpected keys 5 [heads.bnneck.bias" in message
    )
    prefixed = {f"model.{k}": v for k, v in state.items()}
    message = _error(lambda: load_fastreid(_save(bot, tmp_path / "b", state=prefixed), SMALL, 8, "bot-r50"))
    assert "look prefixed with 'model.'" in message
    partial = {k: v for k, v in state.items() if not k.startswith("backbone.layer4")}
    message = _error(lambda: load_fastreid(_save(bot, tmp_path / "c", state=partial), SMALL, 8, "bot-r50"))
    assert "missing keys 50 [backbone.layer4.0.bn1.bias" in message and "unexpected keys 0 []" in message
    narrow = dict(state, **{"backbone.conv1.weight": torch.zeros(32, 3, 7, 7)})
    message = _error(lambda: load_fastreid(_save(bot, tmp_path / "d", state=narrow), SMALL, 8, "bot-r50"))
    assert "shapes differ" in message and "backbone.conv1.weight (32, 3, 7, 7) vs (64, 3, 7, 7)" in message
    # the config decides the architecture: an AGW config over BoT weights names the missing NL blocks
    message = _error(lambda: load_fastreid(_save(bot, tmp_path / "e", with_nl=True), SMALL, 8, "agw-r50"))
    assert "missing keys 60 [backbone.NL_2.0.W.0.bias" in message


def test_config_and_variant_must_agree(tmp_path: Path, bot: FastReidVictim) -> None:
    path = _save(bot, tmp_path / "a", with_nl=True, with_ibn=True)
    message = _error(lambda: load_fastreid(path, SMALL, 8, "bot-r50"))
    assert "MODEL.BACKBONE.WITH_NL True and MODEL.BACKBONE.WITH_IBN True" in message
    assert "load it as fastreid:agw-r50-ibn or fastreid:sbs-r50-ibn" in message
    path = _save(bot, tmp_path / "b", num_classes=751)
    message = _error(lambda: load_fastreid(path, SMALL, 8, "bot-r50"))
    assert "NUM_CLASSES 751" in message and "8-way classifier" in message


def test_classifier_of_another_dataset_gives_no_logits(tmp_path: Path, bot: FastReidVictim) -> None:
    state = dict(bot.state_dict(), **{"heads.weight": torch.randn(751, 2048)})
    path = _save(bot, tmp_path, state=state, num_classes=751)
    loaded = load_fastreid(path, input_size=SMALL, num_classes=16, variant="bot-r50")
    assert loaded.num_classes == 0
    assert loaded.info["classifier"] == "751 ids, dataset has 16: not used"
    for call in (loaded.logits, loaded.features_and_logits, loaded.train_outputs):
        with pytest.raises(NotImplementedError, match="751 ids, dataset has 16: not used"):
            call(_images())
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(_images()), bot.features(_images()), rtol=0, atol=0)


# ---------------------------------------------------------------------------- behaviour of a load
def test_resize_flip_and_metric_follow_the_config(tmp_path: Path, bot: FastReidVictim) -> None:
    images = _images(size=(32, 16))
    up = F.interpolate(images, size=SMALL, mode="bilinear", align_corners=False)
    path = _save(bot, tmp_path / "a", size_test=SMALL)
    resized = load_fastreid(path, input_size=(32, 16), num_classes=8, variant="bot-r50")
    native = load_fastreid(path, input_size=(32, 16), num_classes=8, variant="bot-r50", resize=False)
    assert resized.input_size == native.input_size == (32, 16)
    assert (
        resized.info["input"] == "32x16 resized to 64x32 (INPUT.SIZE_TEST)"
        and native.info["input"] == "32x16"
    )
    with torch.no_grad():
        torch.testing.assert_close(resized.features(images), bot.features(up), rtol=0, atol=0)
        assert native.features(images).shape == (2, 2048)
    path = _save(bot, tmp_path / "b", flip_test=True, metric="euclidean")
    flipped = load_fastreid(path, input_size=SMALL, num_classes=8, variant="bot-r50")
    assert flipped.distance == "euclidean"
    x = _images()
    with torch.no_grad():
        expected = (bot.features(x) + bot.features(x.flip(dims=[3]))) / 2
        torch.testing.assert_close(flipped.features(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["bot-r50", "sbs-r50-ibn"])
def test_conformance_of_a_built_model(variant: str) -> None:
    torch.manual_seed(0)
    victim = check_victim(advbench_victims()[0], variant=variant, input_size=SMALL, num_classes=4)
    assert victim.num_classes == 4 and victim.init == "scratch"


def test_a_training_step_works() -> None:
    """The built model trains: a triplet feature and logits in train mode, finite gradients, and the
    BNNeck's bias stays frozen."""
    torch.manual_seed(0)
    victim = build_fastreid(4, (32, 16), variant="sbs-r50").train()
    emb, logits = victim.train_outputs(_images(4, (32, 16)))
    assert emb.shape == (4, 2048) and logits.shape == (4, 4)  # SBS: NECK_FEAT after, 64 x cosine
    loss = F.cross_entropy(logits, torch.tensor([0, 0, 1, 1])) + emb.pow(2).mean() * 1e-3
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    grad = victim.backbone.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and float(grad.abs().max()) > 0
    assert victim.heads.pool_layer.p.grad is not None  # learnable GeM
    assert victim.heads.bottleneck[0].bias.grad is None


def test_pretrained_weights_come_from_a_local_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ADVBENCH_WEIGHTS", raising=False)
    assert "never downloads" in _error(lambda: build_fastreid(4, SMALL, variant="agw-r50", pretrained=True))
    import torchvision

    imagenet = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(imagenet, path)
    victim = build_fastreid(4, SMALL, variant="agw-r50", pretrained=str(path))
    assert victim.init == "imagenet:resnet50-0676ba61.pth"
    torch.testing.assert_close(victim.backbone.layer3[2].conv2.weight, imagenet["layer3.2.conv2.weight"])
    monkeypatch.setenv("ADVBENCH_WEIGHTS", str(tmp_path))
    assert build_fastreid(4, SMALL, variant="agw-r50", pretrained=True).init == victim.init


# ------------------------------------------------------------------------------ against fast-reid
@pytest.mark.parametrize(("model", "embedding"), [*((m, 0) for m in MODELS), ("agw-r50", 256)])
def test_features_equal_fastreids_own_model(tmp_path: Path, model: str, embedding: int) -> None:
    net = build_and_save(model, tmp_path, num_classes=8, size=SMALL, embedding_dim=embedding)
    assert len(net.state_dict()) == KEYS[model] + (1 if embedding else 0)  # the 1x1 conv's weight
    ours = load_fastreid(tmp_path / "model_final.pth", input_size=SMALL, num_classes=8, variant=model)
    assert ours.feature_dim == (embedding or 2048)
    images = _images(3)
    with torch.no_grad():
        diff = float((ours.features(images) - oracle_features(net, images)).abs().max())
    assert diff <= 1e-5, f"{model}: features differ by {diff:.3g}"
    assert ours.num_classes == 8


def test_fastreid_default_model_at_its_test_size(tmp_path: Path) -> None:
    """fast-reid's plain ``build_model(get_cfg())`` (319 keys, no BNNeck, no classifier rows) loads as
    bot-r50 and, fed 32x16 images, equals fast-reid on the same images resized to 256x128."""
    require_fastreid()
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer

    cfg = get_cfg()
    cfg.MODEL.DEVICE, cfg.MODEL.BACKBONE.PRETRAIN = "cpu", False
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    assert len(net.state_dict()) == 319
    Checkpointer(net, str(tmp_path)).save("model_final")
    (tmp_path / "config.yaml").write_text(cfg.dump(), encoding="utf-8")
    ours = load_fastreid(tmp_path / "model_final.pth", input_size=(32, 16), num_classes=16, variant="bot-r50")
    assert ours.num_classes == 0 and ours.info["classifier"] == "none (0 ids): no logits"
    images = _images(2, (32, 16))
    up = F.interpolate(images, size=(256, 128), mode="bilinear", align_corners=False)
    with torch.no_grad():
        diff = float((ours.features(images) - oracle_features(net, up)).abs().max())
    assert diff <= 1e-5


def test_metrics_equal_fastreids_evaluate_rank() -> None:
    from advbench.metrics.reid import evaluate

    rank = rank_module()
    rng = np.random.default_rng(0)
    for trial in range(4):
        num_q, num_g, ids = (30, 200, 25) if trial < 2 else (60, 400, 40)
        q_pids, g_pids = rng.integers(0, ids, num_q), rng.integers(0, ids, num_g)
        q_cams, g_cams = rng.integers(0, 6, num_q), rng.integers(0, 6, num_g)
        dist = rng.random((num_q, num_g))  # continuous: no ties, so sort stability does not matter
        cmc, all_ap, all_inp = rank.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, use_cython=False)
        scores = evaluate(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50)
        assert scores.num_valid_queries == len(all_ap)
        assert abs(scores.mAP - float(np.mean(all_ap))) < 1e-6
        assert abs(scores.mINP - float(np.mean(all_inp))) < 1e-6
        np.testing.assert_allclose(scores.cmc, cmc, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------ end to end
def test_advbench_run_on_a_fastreid_checkpoint(tmp_path: Path) -> None:
    """``advbench run --victims fastreid:bot-r50 --victim-weights fastreid:bot-r50=PATH`` on the tiny
    synthetic dataset; the checkpoint is fast-reid's own when the oracle is installed, else one saved
    in its format by this plugin. Its config's INPUT.SIZE_TEST is the data's 32x16, so no resize, and
    it has a 128-d embedding conv (MODEL.HEADS.EMBEDDING_DIM): every evaluation computes a Fréchet
    distance of the features, whose D x D eigendecomposition takes 10-25 s at 2048-d on 2 cores."""
    import pandas as pd

    from advbench.cli import main

    size = (TINY_SYNTHETIC["height"], TINY_SYNTHETIC["width"])
    folder = tmp_path / "logs"
    if oracle_dir() is not None:
        build_and_save("bot-r50", folder, num_classes=751, size=size, embedding_dim=128)
    else:
        torch.manual_seed(0)
        cfg = dataclasses.replace(VARIANTS["bot-r50"], size_test=size, embedding_dim=128, num_classes=751)
        own = randomise(FastReidVictim(cfg, input_size=size, classifier_rows=751, num_classes=751), size)
        _save(own, folder)  # type: ignore[arg-type]
    params = [f"--dataset-param=synthetic.{k}={v}" for k, v in TINY_SYNTHETIC.items()]
    args = ["run", "--datasets", "synthetic", "--victims", "fastreid:bot-r50", "--attacks", "fgsm"]
    args += ["--eps", "8", "--victim-weights", f"fastreid:bot-r50={folder / 'model_final.pth'}"]
    args += ["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main([*args, "--no-progress", "--detect-images", "8", *params]) == 0
    rows = pd.read_csv(tmp_path / "out" / "results.csv")
    row = rows[(rows.source_victim == "fastreid:bot-r50") & (rows.target_victim == "fastreid:bot-r50")]
    assert len(row) == 1
    for column in ("clean_mAP", "adv_mAP", "clean_rank1"):
        assert math.isfinite(float(row[column].iloc[0])), column
