"""The decode cache and :class:`DiskImages`: same pixels as in memory, atomic, read by batch."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advbench.api import AdvbenchError, ImageSplit, Sample
from advbench.data import images as img_mod
from advbench.data.images import CHUNK, DiskImages, decode, load_split, split_key

SIZE = (24, 12)
N = CHUNK + 13  # more than one decode chunk


def write_images(folder: Path, n: int = N) -> list[Sample]:
    """PIL-written PNGs (RGB, grey, RGBA, palette) and JPEGs, half of them to be resized to SIZE."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        h, w = SIZE if i % 2 else (31 + i % 4, 17 + i % 3)
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        if i % 3:
            path = folder / f"{i:04d}.png"
            img = img.convert(("RGB", "L", "RGBA", "P")[i % 4])
        else:
            path = folder / f"{i:04d}.jpg"
        img.save(path)
        samples.append(Sample(str(path), pid=i % 5, camid=i % 2))
    return samples


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    return write_images(tmp_path_factory.mktemp("imgs"))


@pytest.fixture(scope="module")
def reference(files: list[Sample]) -> torch.Tensor:
    """What the previous implementation stored: each file decoded alone, HWC -> CHW."""
    return torch.stack([torch.from_numpy(decode(s.path, SIZE)).permute(2, 0, 1) for s in files])


@pytest.fixture
def disk(files: list[Sample], tmp_path: Path) -> ImageSplit:
    return load_split(files, SIZE, cache_dir=tmp_path / "cache", progress=False)


def cache_file(cache: Path, samples: list[Sample]) -> Path:
    return cache / "images" / f"{split_key(samples, SIZE)}.npy"


def test_both_backings_hold_the_reference_pixels(files, reference, disk) -> None:
    memory = load_split(files, SIZE, cache_dir=None, progress=False)
    assert isinstance(memory.images, torch.Tensor) and isinstance(disk.images, DiskImages)
    assert torch.equal(memory.images, reference)
    assert disk.images.shape == reference.shape and len(disk) == N
    assert torch.equal(disk.images[:], reference)
    assert np.array_equal(np.load(disk.images.path), reference.numpy())  # a standard .npy file
    assert torch.equal(disk.pids, memory.pids) and torch.equal(disk.camids, memory.camids)


@pytest.mark.parametrize(
    "index",
    [
        slice(None),
        slice(3, 17),
        slice(-5, None),
        slice(40, 3),
        slice(1, None, 4),
        7,
        -1,
        torch.tensor(5),
    ],
    ids=repr,
)
def test_int_and_slice_reads(reference, disk, index) -> None:
    assert torch.equal(disk.images[index], reference[index])


@pytest.mark.parametrize(
    "index",
    [
        torch.tensor([9, 2, 2, 40, 0, 9, 9]),  # unsorted, repeated (sampling with replacement)
        torch.arange(N),  # one run: a single read
        torch.tensor([4, 5, 6, 20, 21, 1]),
        torch.tensor([], dtype=torch.long),
        [3, -2, 3],
        np.array([N - 1, 0]),
        torch.arange(N) % 3 == 0,  # boolean mask
    ],
    ids=lambda x: type(x).__name__,
)
def test_index_reads_keep_order_and_repeats(reference, disk, index) -> None:
    want = reference[torch.as_tensor(index)]
    got = disk.images[index]
    assert got.dtype == torch.uint8 and torch.equal(got, want)


def test_bad_indices_fail_as_for_a_tensor(reference, disk) -> None:
    for bad in (N, -N - 1, torch.tensor([0, N]), [-N - 1]):
        with pytest.raises(IndexError):
            disk.images[bad]
    for images in (reference, disk.images):
        with pytest.raises(ValueError, match="step"):
            images[::-1]


def test_batch_is_the_same_for_both_backings(files, reference, disk) -> None:
    memory = ImageSplit(reference, disk.pids, disk.camids)
    idx = torch.randint(0, N, (16,), generator=torch.Generator().manual_seed(0))
    for index in (slice(0, 10), slice(None), idx):
        a, b = memory.batch(index), disk.batch(index)
        assert b.dtype == torch.float32 and torch.equal(a, b)
        assert float(b.min()) >= 0.0 and float(b.max()) <= 1.0


def test_pickle_round_trip(reference, disk) -> None:
    disk.images[0]  # the original holds an open descriptor; the copy must open its own
    split = pickle.loads(pickle.dumps(disk))
    assert isinstance(split.images, DiskImages) and split.images._fd is None
    assert split.images.shape == reference.shape
    assert torch.equal(split.images[[4, 1, 4]], reference[[4, 1, 4]])
    assert torch.equal(split.batch(slice(2, 9)), disk.batch(slice(2, 9)))
    disk.images.close()
    assert torch.equal(disk.images[-3:], reference[-3:])  # reopens after close


def test_cache_hit_does_not_decode(files, reference, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    load_split(files, SIZE, cache_dir=cache, progress=False)
    path = cache_file(cache, files)
    mtime = path.stat().st_mtime_ns
    calls = []
    real = img_mod.decode_image
    monkeypatch.setattr(img_mod, "decode_image", lambda *a: calls.append(a) or real(*a))
    again = load_split(files, SIZE, cache_dir=cache, progress=False)
    assert calls == [] and path.stat().st_mtime_ns == mtime
    assert torch.equal(again.images[:], reference)
    # no temporary file left: the entry and its checksum
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, f"{path.name}.sha256"]


def test_temp_files_are_never_read(files, reference, tmp_path) -> None:
    cache = tmp_path / "cache"
    path = cache_file(cache, files)
    path.parent.mkdir(parents=True)
    killed = path.parent / f".{path.name}.abc123.tmp"  # what a killed writer leaves
    np.save(killed.with_suffix(".npy"), reference[:5].numpy())
    killed.with_suffix(".npy").rename(killed)
    split = load_split(files, SIZE, cache_dir=cache, progress=False)
    assert split.images.path == str(path) and torch.equal(split.images[:], reference)
    assert killed.exists()  # recent: it may belong to a writer still running

    stale = path.parent / f".{path.name}.old999.tmp"
    stale.write_bytes(b"\x93NUMPY partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    path.unlink()
    load_split(files, SIZE, cache_dir=cache, progress=False)
    assert not stale.exists() and killed.exists()


@pytest.mark.parametrize("damage", ["truncated", "wrong shape", "not npy"])
def test_damaged_entry_is_decoded_again(files, reference, tmp_path, damage) -> None:
    cache = tmp_path / "cache"
    path = cache_file(cache, files)
    load_split(files, SIZE, cache_dir=cache, progress=False)
    if damage == "truncated":
        os.truncate(path, path.stat().st_size - 100)
    elif damage == "wrong shape":
        np.save(path, reference[:-1].numpy())
    else:
        path.write_bytes(b"PK\x03\x04 a torch.save zip")
    split = load_split(files, SIZE, cache_dir=cache, progress=False)
    assert torch.equal(split.images[:], reference)
    assert DiskImages.open(path).shape == reference.shape


def test_corrupt_image_is_one_line_error_and_leaves_no_file(files, tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    samples = [*files, Sample(str(bad), 0, 0)]  # after a full chunk has been written
    cache = tmp_path / "cache"
    for cache_dir in (cache, None):
        with pytest.raises(AdvbenchError, match=r"cannot decode image .*bad\.jpg") as err:
            load_split(samples, SIZE, cache_dir=cache_dir, progress=False)
        assert "\n" not in str(err.value)
    assert list((cache / "images").iterdir()) == []  # neither a final nor a temporary file


def test_missing_file_is_an_error(files, tmp_path) -> None:
    samples = [*files[:3], Sample(str(tmp_path / "gone.png"), 0, 0)]
    with pytest.raises(AdvbenchError, match=r"image file missing: .*gone\.png"):
        load_split(samples, SIZE, cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(AdvbenchError, match=r"gone\.png"):
        load_split(samples, SIZE, cache_dir=None, progress=False)


def test_open_rejects_other_arrays(tmp_path) -> None:
    np.save(tmp_path / "f.npy", np.zeros((2, 3, 4, 5), np.float32))
    np.save(tmp_path / "t.npy", np.zeros((2, 3, 4), np.uint8))
    for name in ("f.npy", "t.npy"):
        with pytest.raises(ValueError):
            DiskImages.open(tmp_path / name)


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_counts_and_background_syncs_give_the_same_file(
    files, reference, tmp_path, monkeypatch, workers
) -> None:
    monkeypatch.setattr(img_mod, "SYNC_EVERY", 1)  # a background fdatasync after every chunk
    split = load_split(files, SIZE, cache_dir=tmp_path / "c", progress=False, workers=workers)
    assert torch.equal(split.images[:], reference)
