"""Tests of the embedded synthetic dataset: determinism, protocol, caching, difficulty."""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advbench.api import AdvbenchError, ReidDataset, Sample
from advbench_datasets import synthetic

SMALL = {
    "height": 32,
    "width": 16,
    "cameras": 4,
    "train_ids": 6,
    "train_images_per_id": 4,
    "test_ids": 8,
    "queries_per_id": 2,
    "gallery_per_id": 4,
    "distractor_ids": 3,
    "distractor_images": 2,
}
NAME = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_00\.png$")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> ReidDataset:
    return synthetic.load(None, tmp_path_factory.mktemp("cache"), **SMALL)


def _bytes(samples: list[Sample]) -> dict[str, bytes]:
    return {Path(s.path).name: Path(s.path).read_bytes() for s in samples}


def _raw_pid(sample: Sample) -> int:
    return int(Path(sample.path).name.split("_")[0])


def _decode(samples: list[Sample]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(s.path).convert("RGB"), dtype=np.float32) / 255 for s in samples])


def _market_eval(
    sim: np.ndarray, qp: np.ndarray, qc: np.ndarray, gp: np.ndarray, gc: np.ndarray
) -> tuple[float, float]:
    """(rank-1, mAP) in %, Market protocol: same pid and camera dropped; no-match queries skipped."""
    r1, aps = [], []
    for i in range(len(qp)):
        keep = ~((gp == qp[i]) & (gc == qc[i]))
        match = (gp[keep] == qp[i])[np.argsort(-sim[i][keep], kind="stable")]
        if match.any():
            hits = np.flatnonzero(match)
            aps.append(float(np.mean(np.arange(1, len(hits) + 1) / (hits + 1))))
            r1.append(float(match[0]))
    return 100 * float(np.mean(r1)), 100 * float(np.mean(aps))


# ---------------------------------------------------------------------------------- spec
def test_spec() -> None:
    spec = synthetic.SPEC
    assert (spec.name, spec.embedded, spec.default, spec.input_size) == ("synthetic", True, True, (128, 64))
    assert dict(spec.defaults) == dict(synthetic.DEFAULTS)
    assert spec.defaults["train_ids"] == 150 and spec.defaults["distractor_images"] == 5
    assert spec.version == synthetic.GENERATOR_VERSION and "{pid:04d}_c{cam+1}s1" in spec.layout


def test_runs_use_the_size_the_params_generate(small: ReidDataset, tmp_path: Path) -> None:
    """The spec's input_size is the default params' crop size; a run of 32x16 data decodes it at
    32x16 (not upsampled to the spec's 128x64), unless --input-size says otherwise."""
    from advbench.config import RunConfig
    from advbench.data.catalog import DatasetCatalog
    from advbench.plugins import get_registry

    assert small.info["input_size"] == (SMALL["height"], SMALL["width"])
    config = RunConfig(datasets="synthetic", cache_dir=tmp_path, dataset_params={"synthetic": SMALL})
    assert DatasetCatalog(config, get_registry()).input_size("synthetic") == (32, 16)
    resized = RunConfig(**{**vars(config), "input_size": (64, 32)})
    assert DatasetCatalog(resized, get_registry()).input_size("synthetic") == (64, 32)


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_bytes_and_fingerprint(small: ReidDataset, tmp_path: Path) -> None:
    again = synthetic.load(None, tmp_path, **SMALL)
    assert again.fingerprint == small.fingerprint == synthetic.fingerprint(SMALL)
    assert again.root != small.root
    for split in ("train", "query", "gallery"):
        assert _bytes(getattr(again, split)) == _bytes(getattr(small, split))


def test_other_seed_differs(small: ReidDataset, tmp_path: Path) -> None:
    other = synthetic.load(None, tmp_path, **{**SMALL, "seed": 1})
    assert other.fingerprint != small.fingerprint
    a, b = _bytes(small.query), _bytes(other.query)
    assert sum(a[k] != b.get(k) for k in a) == len(a)


def test_fingerprint_covers_params_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    base = synthetic.fingerprint(SMALL)
    assert synthetic.fingerprint({**SMALL, "gallery_per_id": 5}) != base
    assert synthetic.fingerprint(dict(SMALL)) == base
    # omitted params take their defaults: explicit defaults hash the same
    assert synthetic.fingerprint({}) == synthetic.fingerprint(dict(synthetic.DEFAULTS))
    monkeypatch.setattr(synthetic.config, "GENERATOR_VERSION", "test-bump")  # where fingerprint reads it
    assert synthetic.fingerprint(SMALL) != base


def test_independent_streams(small: ReidDataset, tmp_path: Path) -> None:
    """More gallery images, or more train ids, leave every other image unchanged."""
    more = synthetic.load(None, tmp_path / "a", **{**SMALL, "gallery_per_id": 6})
    assert _bytes(more.train) == _bytes(small.train)
    assert _bytes(more.query) == _bytes(small.query)
    old, new = _bytes(small.gallery), _bytes(more.gallery)
    assert all(new[name] == data for name, data in old.items())
    # one more train id shifts the raw test pids by one, but the test people look the same
    shifted = synthetic.load(None, tmp_path / "b", **{**SMALL, "train_ids": SMALL["train_ids"] + 1})
    assert [Path(s.path).read_bytes() for s in shifted.query] == [
        Path(s.path).read_bytes() for s in small.query
    ]
    assert [_raw_pid(s) - 1 for s in shifted.query] == [_raw_pid(s) for s in small.query]


# ------------------------------------------------------------------------------ protocol
def test_counts_match_params(small: ReidDataset) -> None:
    p = SMALL
    assert small.counts() == {
        "train_ids": p["train_ids"],
        "train_images": p["train_ids"] * p["train_images_per_id"],
        "query_ids": p["test_ids"],
        "query_images": p["test_ids"] * p["queries_per_id"],
        "gallery_ids": p["test_ids"] + p["distractor_ids"],
        "gallery_images": p["test_ids"] * p["gallery_per_id"] + p["distractor_ids"] * p["distractor_images"],
    }
    assert small.num_train_pids == p["train_ids"]
    assert small.info["params"] == {**synthetic.DEFAULTS, **SMALL}
    assert small.info["generated_in_s"] > 0


def test_ids_disjoint_and_labelled(small: ReidDataset) -> None:
    train_raw = {_raw_pid(s) for s in small.train}
    query = {s.pid for s in small.query}
    gallery = {s.pid for s in small.gallery}
    distractors = gallery - query
    assert len(distractors) == SMALL["distractor_ids"]
    assert not train_raw & (query | gallery)
    assert not distractors & query and min(train_raw | gallery) >= 1
    assert sorted({s.pid for s in small.train}) == list(range(SMALL["train_ids"]))
    assert all(s.pid == _raw_pid(s) for s in small.query + small.gallery)
    for sample in small.train:  # relabelling keeps one raw id per label
        assert sample.pid == _raw_pid(sample) - min(train_raw)
    for s in small.train + small.query + small.gallery:
        assert 0 <= s.camid < SMALL["cameras"]


def test_queries_from_distinct_cameras(small: ReidDataset) -> None:
    cams: dict[int, list[int]] = defaultdict(list)
    for s in small.query:
        cams[s.pid].append(s.camid)
    assert len(cams) == SMALL["test_ids"]
    for c in cams.values():
        assert len(c) == SMALL["queries_per_id"] == len(set(c))


def test_gallery_composition(small: ReidDataset) -> None:
    qcams: dict[int, set[int]] = defaultdict(set)
    for s in small.query:
        qcams[s.pid].add(s.camid)
    per_id = Counter(s.pid for s in small.gallery)
    for pid, cams in qcams.items():
        items = [s for s in small.gallery if s.pid == pid]
        assert len(items) == SMALL["gallery_per_id"]
        assert 2 * sum(s.camid not in cams for s in items) >= len(items)
        for cam in cams:  # every query has a match that survives the same-camera filter
            assert any(s.camid != cam for s in items)
    distractors = set(per_id) - set(qcams)
    assert all(per_id[pid] == SMALL["distractor_images"] for pid in distractors)


def test_files_are_market_style_pngs(small: ReidDataset) -> None:
    for split in ("train", "query", "gallery"):
        samples = getattr(small, split)
        assert samples == sorted(samples, key=lambda s: s.path)
        for s in samples:
            path = Path(s.path)
            m = NAME.match(path.name)
            assert m and path.parent.name == split and path.parent.parent == small.root
            assert int(m.group(2)) == s.camid + 1
    img = Image.open(small.query[0].path)
    assert (img.format, img.mode, img.size) == ("PNG", "RGB", (SMALL["width"], SMALL["height"]))
    manifest = json.loads((small.root / "manifest.json").read_text())
    assert manifest["counts"] == {k: len(getattr(small, k)) for k in ("train", "query", "gallery")}


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (32, 16, 3)])
def test_png_encoder_round_trip(shape: tuple[int, int, int]) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(synthetic.encode_png(pixels))))
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, pixels)


# --------------------------------------------------------------------------------- cache
def test_reload_does_not_regenerate(small: ReidDataset) -> None:
    files = sorted(small.root.rglob("*"))
    before = {f: f.stat().st_mtime_ns for f in files}
    again = synthetic.load(None, small.root.parent.parent, **SMALL)
    assert again.info["generated_now"] is False and small.info["generated_now"] is True
    assert {f: f.stat().st_mtime_ns for f in sorted(small.root.rglob("*"))} == before
    assert (again.train, again.query, again.gallery) == (small.train, small.query, small.gallery)


def test_failure_mid_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synthetic.Studio.render
    calls = {"n": 0}

    def flaky(self: synthetic.Studio, *args: object, **kwargs: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("injected failure")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(synthetic.Studio, "render", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        synthetic.load(None, tmp_path, **SMALL)
    assert calls["n"] == 20
    parent = tmp_path / "synthetic"
    assert list(parent.iterdir()) == []  # neither the final folder nor the temporary one
    monkeypatch.setattr(synthetic.Studio, "render", real)
    ds = synthetic.load(None, tmp_path, **SMALL)
    assert [p.name for p in parent.iterdir()] == [ds.fingerprint]
    assert ds.counts()["gallery_images"] == 38


def test_abandoned_temporary_folders_are_removed(tmp_path: Path) -> None:
    key = synthetic.fingerprint(SMALL)
    parent = tmp_path / "synthetic"
    stale, busy = parent / f".{key}.tmp-1-dead", parent / f".{key}.tmp-2-busy"
    for folder in (stale / "train", busy / "train"):
        folder.mkdir(parents=True)
    old = time.time() - 2 * 3600
    for folder in (stale, stale / "train", busy):  # busy/train was just written to
        os.utime(folder, (old, old))
    synthetic.load(None, tmp_path, **SMALL)
    assert not stale.exists() and busy.exists()


def test_incomplete_folder_is_rebuilt(tmp_path: Path) -> None:
    ds = synthetic.load(None, tmp_path, **SMALL)
    victim = Path(ds.gallery[3].path)
    data = victim.read_bytes()
    victim.unlink()
    again = synthetic.load(None, tmp_path, **SMALL)
    assert again.info["generated_now"] is True
    assert victim.read_bytes() == data


# ---------------------------------------------------------------------------------- params
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"seeds": 1}, "unknown parameter(s) seeds; valid: seed, height"),
        ({"cameras": "six"}, "cameras must be an integer"),
        ({"cameras": 2.5}, "cameras must be an integer"),
        ({"test_ids": 0}, "test_ids must be >= 1"),
        ({"cameras": 10}, "cameras must be <= 9"),
        ({"queries_per_id": 4, "cameras": 4}, "queries_per_id must be < cameras"),
        ({"distractor_images": 0}, "distractor_images must be >= 1"),
    ],
)
def test_bad_params(tmp_path: Path, params: dict[str, object], message: str) -> None:
    with pytest.raises(AdvbenchError) as err:
        synthetic.load(None, tmp_path, **params)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "synthetic").exists()


def test_string_params_from_the_command_line(small: ReidDataset) -> None:
    as_text = {k: str(v) for k, v in SMALL.items()}
    assert synthetic.fingerprint(as_text) == small.fingerprint


# ------------------------------------------------------------------------------ difficulty
def test_not_separable_by_raw_pixels_but_clothing_carries_identity(tmp_path: Path) -> None:
    params = {**SMALL, "height": 64, "width": 32, "cameras": 6, "train_ids": 1, "test_ids": 40}
    params.update(gallery_per_id=6, distractor_ids=20, distractor_images=3)
    ds = synthetic.load(None, tmp_path, **params)
    q, g = _decode(ds.query), _decode(ds.gallery)
    qp, qc = np.array([s.pid for s in ds.query]), np.array([s.camid for s in ds.query])
    gp, gc = np.array([s.pid for s in ds.gallery]), np.array([s.camid for s in ds.gallery])
    qf, gf = q.reshape(len(q), -1), g.reshape(len(g), -1)
    qf /= np.linalg.norm(qf, axis=1, keepdims=True)
    gf /= np.linalg.norm(gf, axis=1, keepdims=True)
    rank1, m_ap = _market_eval(qf @ gf.T, qp, qc, gp, gc)
    print(f"raw-pixel cosine NN on {len(q)} queries x {len(g)} gallery: rank-1 {rank1:.1f} mAP {m_ap:.1f}")
    assert rank1 < 25.0

    # Signal exists: in the central clothing region, per-image chromaticity of same-id pairs
    # (across cameras) is closer than that of different-id pairs.
    h, w = params["height"], params["width"]
    region = np.concatenate([q, g])[:, int(0.25 * h) : int(0.85 * h), int(0.35 * w) : int(0.65 * w)]
    colour = region.reshape(len(region), -1, 3).mean(1)
    colour /= colour.sum(1, keepdims=True)
    pids, cams = np.concatenate([qp, gp]), np.concatenate([qc, gc])
    dist = np.abs(colour[:, None] - colour[None]).sum(-1)
    same = (pids[:, None] == pids[None]) & (cams[:, None] != cams[None])
    diff = pids[:, None] != pids[None]
    print(f"clothing chromaticity L1: same id {dist[same].mean():.3f}, different id {dist[diff].mean():.3f}")
    assert dist[same].mean() < 0.6 * dist[diff].mean()


@pytest.mark.slow
def test_default_size_counts(tmp_path: Path) -> None:
    """The default split sizes (generation time: tests/bench_synthetic.py)."""
    ds = synthetic.load(None, tmp_path)
    assert ds.counts() == {
        "train_ids": 150,
        "train_images": 1800,
        "query_ids": 100,
        "query_images": 200,
        "gallery_ids": 200,
        "gallery_images": 1500,
    }
