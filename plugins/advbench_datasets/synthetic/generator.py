"""The split generator: which identity appears in which split under which camera, the PNG files and the folder built atomically."""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advbench.api import AdvbenchError
from advbench.io import atomic_directory
from advbench_datasets.synthetic.config import (
    _DISTRACTOR,
    _IMAGE,
    _KIND_DISTRACTOR,
    _KIND_GALLERY,
    _KIND_QUERY,
    _KIND_TRAIN,
    _LAYOUT,
    _MANIFEST,
    _SPLITS,
    _STALE_TMP_S,
    _TEST,
    _TRAIN,
    GENERATOR_VERSION,
    _rng,
    fingerprint,
)
from advbench_datasets.synthetic.people import Identity, make_identity
from advbench_datasets.synthetic.render import Studio


# ------------------------------------------------------------------------------- the layout
@dataclass(frozen=True)
class _Planned:
    split: str
    pid: int
    camid: int
    idx: int
    role: int
    index: int
    kind: int
    k: int

    @property
    def name(self) -> str:
        return f"{self.pid:04d}_c{self.camid + 1}s1_{self.idx:06d}_00.png"


def plan(params: Mapping[str, int]) -> list[_Planned]:
    """Every image to render, with its split, raw pid, camera and seed key.

    Raw pids: train ``1..T``, test ``T+1..T+Q``, distractors after them (gallery only). Queries of a
    test id come from ``queries_per_id`` distinct cameras; even-numbered gallery images of that id
    come from a non-query camera (so at least half, and every query has a cross-camera match), odd
    ones from any camera.
    """
    p = dict(params)
    seed, ncam = p["seed"], p["cameras"]
    out: list[_Planned] = []
    for i in range(p["train_ids"]):
        for k in range(p["train_images_per_id"]):
            cam = int(_rng(seed, _IMAGE, _TRAIN, i, _KIND_TRAIN, k).integers(ncam))
            out.append(_Planned("train", 1 + i, cam, k, _TRAIN, i, _KIND_TRAIN, k))
    first_test = 1 + p["train_ids"]
    nq, ng = p["queries_per_id"], p["gallery_per_id"]
    for i in range(p["test_ids"]):
        pid = first_test + i
        qcams = [int(c) for c in _rng(seed, _LAYOUT, _TEST, i).permutation(ncam)[:nq]]
        others = [c for c in range(ncam) if c not in qcams]
        for k, cam in enumerate(qcams):
            out.append(_Planned("query", pid, cam, k, _TEST, i, _KIND_QUERY, k))
        for k in range(ng):
            r = _rng(seed, _IMAGE, _TEST, i, _KIND_GALLERY, k)
            cam = others[int(r.integers(len(others)))] if k % 2 == 0 else int(r.integers(ncam))
            out.append(_Planned("gallery", pid, cam, nq + k, _TEST, i, _KIND_GALLERY, k))
    first_distractor = first_test + p["test_ids"]
    for i in range(p["distractor_ids"]):
        for k in range(p["distractor_images"]):
            cam = int(_rng(seed, _IMAGE, _DISTRACTOR, i, _KIND_DISTRACTOR, k).integers(ncam))
            out.append(_Planned("gallery", first_distractor + i, cam, k, _DISTRACTOR, i, _KIND_DISTRACTOR, k))
    return out


def _image_rng(seed: int, item: _Planned) -> np.random.Generator:
    # The planning stream above drew the camera first; rendering uses a separate child stream.
    return _rng(seed, _IMAGE, item.role, item.index, item.kind, item.k, 1)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray) -> bytes:
    """A standard 8-bit RGB PNG of ``pixels`` [H, W, 3] uint8.

    Why not PIL: its adaptive row filtering costs ~1.3 ms per noisy 128x64 image, three times
    the rendering budget. Here every row uses the "Up" filter and zlib Huffman-only coding
    (0.3 ms, same size). Deterministic for a given zlib; any PNG decoder reads it.
    """
    h, w, _ = pixels.shape
    rows = np.ascontiguousarray(pixels, dtype=np.uint8).reshape(h, w * 3)
    raw = np.empty((h, w * 3 + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter type "Up": each byte minus the byte above it (mod 256)
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_HUFFMAN_ONLY)
    data = packer.compress(raw.tobytes()) + packer.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit, truecolour, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def _generate(params: Mapping[str, int], tmp: Path) -> dict[str, Any]:
    """Render every planned image into ``tmp``; returns the manifest (written last, by the caller)."""
    t0 = time.perf_counter()
    seed, h, w = params["seed"], params["height"], params["width"]
    studio = Studio(seed, params["cameras"], h, w)
    identities: dict[tuple[int, int], Identity] = {}
    counts = dict.fromkeys(_SPLITS, 0)
    for split in _SPLITS:
        (tmp / split).mkdir(parents=True)
    for item in plan(params):
        key = (item.role, item.index)
        if key not in identities:
            identities[key] = make_identity(seed, item.role, item.index)
        pixels = studio.render(identities[key], item.camid, _image_rng(seed, item))
        (tmp / item.split / item.name).write_bytes(encode_png(pixels))
        counts[item.split] += 1
    return {
        "generator": "synthetic",
        "version": GENERATOR_VERSION,
        "params": dict(params),
        "counts": counts,
        "generated_in_s": round(time.perf_counter() - t0, 3),
    }


def _list_complete(folder: Path) -> tuple[dict[str, Any], dict[str, list[str]]] | None:
    """The manifest and file names of a finished dataset folder, or None if it is not complete."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
        names = {s: sorted(n for n in os.listdir(folder / s) if n.endswith(".png")) for s in _SPLITS}
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("counts"), dict):
        return None
    if manifest.get("version") != GENERATOR_VERSION or any(
        len(names[s]) != manifest["counts"].get(s) for s in _SPLITS
    ):
        return None
    return manifest, names


def _clean_stale(parent: Path, key: str) -> None:
    """Remove temporary folders of ``key`` left by a killed process.

    A folder counts as abandoned when neither it nor its split folders (whose mtime changes with
    every image written) changed for an hour, so a generation in progress is never touched.
    """
    now = time.time()
    for tmp in parent.glob(f".{key}.tmp-*"):
        try:
            newest = max(p.stat().st_mtime for p in (tmp, *(tmp / s for s in _SPLITS)) if p.exists())
            if now - newest > _STALE_TMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except (OSError, ValueError):
            pass


def _materialise(
    params: Mapping[str, int], cache_dir: Path
) -> tuple[Path, dict[str, Any], dict[str, list[str]], bool]:
    """Return (folder, manifest, names, generated_now), generating atomically if needed."""
    key = fingerprint(params)
    parent = Path(cache_dir) / "synthetic"
    final = parent / key
    done = _list_complete(final)
    if done is not None:
        return final, *done, False
    parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # incomplete or from another generator version: it is our cache, rebuild it
        shutil.rmtree(final)
    _clean_stale(parent, key)
    with atomic_directory(final) as tmp:  # another process may finish first: then its copy is kept
        manifest = _generate(params, tmp)
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    done = _list_complete(final)
    if done is None:
        raise AdvbenchError(f"synthetic: generated dataset at {final} is incomplete")
    return final, *done, True
