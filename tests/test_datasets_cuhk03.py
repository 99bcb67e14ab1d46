"""CUHK03: extraction from a v7.3-like cuhk-03.mat, new and classic protocols, cuhk03-np, failures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reid_trees import (
    CUHK03_PAIR_OFFSETS,
    cuhk03_cells,
    extracted_names,
    make_cuhk03_np,
    make_cuhk03_release,
    write_cuhk03_mat,
    write_image,
    write_new_protocol_config,
)

from advbench.api import AdvbenchError, ReidDataset
from advbench_datasets import cuhk03
from advbench_datasets.common import DatasetCountWarning, DatasetNotReady


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADVBENCH_DATA", raising=False)


def load(root: Path, cache: Path | None = None, **params) -> ReidDataset:
    with pytest.warns(DatasetCountWarning):
        return cuhk03.load(root, cache, **params)


def error(root: Path | None, cache: Path | None = None, **params) -> str:
    with pytest.raises(AdvbenchError) as info:
        cuhk03.load(root, cache, **params)
    assert len(str(info.value).splitlines()) <= 7
    return str(info.value).splitlines()[0]


def triples(samples) -> list[tuple[str, int, int]]:
    return sorted((Path(s.path).name, s.pid, s.camid) for s in samples)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("images_", ".images_")))


@pytest.fixture
def release(tmp_path: Path):
    return make_cuhk03_release(tmp_path)


# ---------------------------------------------------------------------------------- extraction
def test_extraction_writes_standard_names_and_exact_pixels(release) -> None:
    ds = load(release.root)
    images = release.folder / "images_detected"
    cells = release.extra["cells"]["detected"]
    assert sorted(p.name for p in images.iterdir()) == sorted(r[0] for r in extracted_names(cells))
    assert "1_001_2_06.png" in {p.name for p in images.iterdir()}  # view 2 = cells 6-10
    assert not (release.folder / "images_labeled").exists()  # only the variant asked for
    for name, _, _, index in extracted_names(cells)[:5]:
        pair, person = int(name[0]), int(name[2:5])
        with Image.open(images / name) as img:
            np.testing.assert_array_equal(np.asarray(img), cells[pair - 1][person - 1][index - 1])
    assert ds.info["images"] == str(images.absolute())
    assert leftovers(release.folder) == ["images_detected"]


def test_extraction_happens_once(release, capfd: pytest.CaptureFixture[str]) -> None:
    first = load(release.root)
    assert "extracting detected images" in capfd.readouterr().err
    mtime = (release.folder / "images_detected" / "1_001_1_01.png").stat().st_mtime_ns
    second = load(release.root)
    assert capfd.readouterr().err == ""
    assert (release.folder / "images_detected" / "1_001_1_01.png").stat().st_mtime_ns == mtime
    assert second.fingerprint == first.fingerprint


@pytest.mark.parametrize("variant", ["detected", "labeled"])
def test_new_protocol_lists(release, variant: str) -> None:
    ds = load(release.root, variant=variant)
    expected = release.extra["expected"][variant]
    assert triples(ds.query) == expected["query"]
    assert triples(ds.gallery) == expected["gallery"]
    raw = sorted({pid for _, pid, _ in expected["train"]})
    assert triples(ds.train) == sorted((n, raw.index(pid), cam) for n, pid, cam in expected["train"])
    assert {s.camid for s in ds.train + ds.query + ds.gallery} == {0, 1}
    assert {s.camid for s in ds.query} == {0, 1} and len(ds.query) == 2 * len({s.pid for s in ds.query})
    assert ds.info == {
        "variant": variant,
        "protocol": "new",
        "source": "cuhk-03.mat",
        "folder": str(release.folder.absolute()),
        "images": str((release.folder / f"images_{variant}").absolute()),
    }
    c = ds.counts()
    assert (c["train_ids"], c["train_images"]) == release.extra["counts"][variant]["train"]


def test_default_is_detected_new_protocol_and_warning_names_numbers(release) -> None:
    with pytest.warns(DatasetCountWarning) as caught:
        ds = cuhk03.load(release.root, None)
    assert (ds.info["variant"], ds.info["protocol"]) == ("detected", "new")
    text = str(caught[0].message)
    assert "train has 9 ids / 31 images (release: 767 ids / 7,365 images)" in text
    assert "gallery has 3 ids / 6 images (release: 700 ids / 5,332 images)" in text


@pytest.mark.parametrize("split_id", [0, 7])
def test_classic_protocol(release, split_id: int) -> None:
    ds = load(release.root, protocol="classic", variant="labeled", split_id=split_id)
    test_ids = {CUHK03_PAIR_OFFSETS[p - 1] + j for p, j in release.extra["testsets"][split_id]}
    assert {s.pid for s in ds.query} == test_ids  # raw release-order pids
    assert ds.query == ds.gallery
    rows = extracted_names(release.extra["cells"]["labeled"])
    assert triples(ds.query) == sorted((n, pid, cam) for n, pid, cam, _ in rows if pid in test_ids)
    train_raw = sorted({pid for _, pid, _, _ in rows if pid not in test_ids})
    assert triples(ds.train) == sorted(
        (n, train_raw.index(pid), cam) for n, pid, cam, _ in rows if pid not in test_ids
    )
    assert ds.info["split_id"] == split_id and ds.info["query_is_gallery"] is True


def test_classic_and_new_fingerprints_differ(release) -> None:
    new = load(release.root).fingerprint
    classic = [load(release.root, protocol="classic", split_id=k).fingerprint for k in (0, 1)]
    assert len({new, *classic}) == 3


def test_bad_split_ids(tmp_path: Path) -> None:
    make_cuhk03_release(tmp_path, n_splits=5)
    assert error(tmp_path, protocol="classic", split_id=20) == "cuhk03: split_id=20 outside 0..19"
    first = error(tmp_path, protocol="classic", split_id=7)
    assert (
        first == f"cuhk03: split_id=7 but {tmp_path}/cuhk03/cuhk03_release/cuhk-03.mat holds 5 classic splits"
    )
    assert not (tmp_path / "cuhk03" / "images_detected").exists()  # checked before extracting


# ---------------------------------------------------------------------------------- failures
def test_failed_extraction_leaves_nothing(tmp_path: Path) -> None:
    cells = cuhk03_cells()
    cells[2][1][0] = np.zeros((20, 10, 3), dtype=np.float64)  # pair 3, person 2: not uint8
    mat = write_cuhk03_mat(tmp_path / "cuhk03" / "cuhk03_release" / "cuhk-03.mat", {"detected": cells}, [])
    config = tmp_path / "cuhk03" / "cuhk03_new_protocol_config_detected.mat"
    write_new_protocol_config(config, ["1_001_1_01.png"], [1], [1], [1], [1])
    first = error(tmp_path)
    assert first == (
        f"cuhk03: {mat}: detected pair 3 person 2 image 1 has shape (20, 10, 3) float64, expected H x W x 3 uint8"
    )
    assert leftovers(tmp_path / "cuhk03") == []  # pairs 1-2 were written, then removed


def test_interrupted_extraction_leaves_nothing(release, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_save = Image.Image.save

    def flaky_save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        cuhk03.load(release.root, None)
    assert leftovers(release.folder) == []
    monkeypatch.undo()
    assert len(load(release.root).train) == 31  # a later run extracts from scratch


def test_stale_partial_folder_of_a_dead_process_is_removed(release) -> None:
    stale = release.folder / ".images_detected.partial-999999999-dead"
    fresh = release.folder / ".images_labeled.partial-999999999-busy"  # maybe another host's, running
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "1_001_1_01.png").write_bytes(b"half")
    os.utime(stale, (1e9, 1e9))
    load(release.root)
    load(release.root, variant="labeled")
    assert leftovers(release.folder) == [fresh.name, "images_detected", "images_labeled"]


def test_not_an_hdf5_file(release) -> None:
    mat = release.folder / "cuhk03_release" / "cuhk-03.mat"
    mat.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 200)
    first = error(release.root)
    assert first.startswith(f"cuhk03: cannot read {mat} as MATLAB v7.3 / HDF5 (")
    assert leftovers(release.folder) == []


def test_mat_without_the_variant(tmp_path: Path) -> None:
    make_cuhk03_release(tmp_path)
    mat = tmp_path / "cuhk03" / "cuhk03_release" / "cuhk-03.mat"
    write_cuhk03_mat(mat, {"labeled": cuhk03_cells()}, [])
    assert error(tmp_path) == f"cuhk03: {mat} has no 'detected' (not the CUHK03 release file?)"
    assert leftovers(tmp_path / "cuhk03") == []


def test_missing_config_names_it_and_its_source(release) -> None:
    (release.folder / "cuhk03_new_protocol_config_detected.mat").unlink()
    first = error(release.root)
    assert first.startswith(f"cuhk03: missing file {release.folder}/cuhk03_new_protocol_config_detected.mat")
    assert "zhunzhong07/person-re-ranking" in first
    assert leftovers(release.folder) == []  # checked before extracting


def test_corrupt_config(release) -> None:
    config = release.folder / "cuhk03_new_protocol_config_detected.mat"
    config.write_bytes(b"garbage")
    assert error(release.root).startswith(f"cuhk03: cannot read {config} as a MATLAB file")


def test_extract_false_reports_not_ready(release) -> None:
    with pytest.raises(DatasetNotReady) as info:
        cuhk03.load(release.root, None, extract=False)
    assert "images_detected/ is not extracted yet" in str(info.value)
    assert leftovers(release.folder) == []


def test_preextracted_folder_is_reused_without_the_mat(release) -> None:
    """torchreid users already have images_detected/ next to the configs."""
    before = load(release.root)
    shutil.rmtree(release.folder / "cuhk03_release")
    after = load(release.root)
    assert triples(after.query) == triples(before.query) and triples(after.train) == triples(before.train)
    first = error(release.root, protocol="classic")
    assert first.startswith(f"cuhk03: missing file {release.folder}/cuhk03_release/cuhk-03.mat")


def test_partial_preextracted_folder_is_an_error(release) -> None:
    load(release.root)
    (release.folder / "images_detected" / "2_001_1_01.png").unlink()
    first = error(release.root)
    assert first.startswith(
        "cuhk03: 1 of 45 images named by cuhk03_new_protocol_config_detected.mat are missing"
    )
    assert "(first: 2_001_1_01.png); delete that folder to extract it again" in first


def test_corrupt_extracted_png(release) -> None:
    load(release.root)
    png = release.folder / "images_detected" / "1_001_1_01.png"
    png.write_bytes(png.read_bytes()[:30])
    assert error(release.root) == f"cuhk03: truncated or corrupt PNG {png} (no IEND chunk)"


def test_unparsable_extracted_name(release) -> None:
    load(release.root, protocol="classic")
    write_image(release.folder / "images_detected" / "person.png", 1, 0)
    first = error(release.root, protocol="classic")
    assert first.startswith("cuhk03: cannot parse ids from file name person.png in")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_release_extracts_into_the_cache(release, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    release.folder.chmod(0o555)
    try:
        ds = load(release.root, cache)
        images = Path(ds.info["images"])
        assert images.is_relative_to(cache) and images.name == "images_detected"
        assert leftovers(release.folder) == []
        assert load(release.root, cache).fingerprint == ds.fingerprint
    finally:
        release.folder.chmod(0o755)


def test_read_only_release_extracts_into_the_cache_as_root(release, tmp_path: Path, monkeypatch) -> None:
    """Same fallback, simulated: creating the temporary folder fails with EROFS."""
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name.startswith(".images_") and self.parent == release.folder:
            raise OSError(30, "Read-only file system")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    ds = load(release.root, tmp_path / "cache")
    assert Path(ds.info["images"]).is_relative_to(tmp_path / "cache")
    assert leftovers(release.folder) == []
    with pytest.raises(AdvbenchError, match=r"cannot write .*images_labeled .*no cache folder"):
        cuhk03.load(release.root, None, variant="labeled")


# ---------------------------------------------------------------------------------- cuhk03-np
@pytest.mark.parametrize("folder", ["cuhk03-np", "cuhk03_np", "cuhk03/cuhk03-np", "CUHK03-NP"])
@pytest.mark.parametrize("variant", ["detected", "labeled"])
def test_cuhk03_np_layout(tmp_path: Path, folder: str, variant: str) -> None:
    tree = make_cuhk03_np(tmp_path, folder=folder, variants=(variant,))
    ds = load(tmp_path, variant=variant)
    c = ds.counts()
    assert {s: (c[f"{s}_ids"], c[f"{s}_images"]) for s in ("train", "query", "gallery")} == tree.counts
    assert sorted({s.pid for s in ds.train}) == [0, 1, 2]
    assert {s.pid for s in ds.query} == {1400, 1467}
    assert all(
        s.camid == int(Path(s.path).name.split("_c")[1][0]) - 1 for s in ds.train + ds.query + ds.gallery
    )
    assert ds.info["source"] == "cuhk03-np" and ds.root == (tree.folder / variant).absolute()


def test_source_choice(tmp_path: Path) -> None:
    make_cuhk03_release(tmp_path)
    make_cuhk03_np(tmp_path)
    assert load(tmp_path).info["source"] == "cuhk-03.mat"  # auto prefers the raw release
    assert load(tmp_path, source="np").info["source"] == "cuhk03-np"
    (tmp_path / "cuhk03" / "cuhk03_new_protocol_config_detected.mat").unlink()
    assert load(tmp_path).info["source"] == "cuhk03-np"  # release unusable for the new split
    assert error(tmp_path, source="np", protocol="classic").startswith(
        "cuhk03: the classic protocol needs cuhk-03.mat"
    )


def test_np_errors(tmp_path: Path) -> None:
    tree = make_cuhk03_np(tmp_path, variants=("labeled",))
    assert error(tmp_path) == f"cuhk03: missing variant folder {tree.folder}/detected"
    bad = tree.folder / "labeled" / "query" / "0001_c3_1.png"
    write_image(bad, 1, 0)
    assert error(tmp_path, variant="labeled") == f"cuhk03: camera 3 outside 1..2 in file name {bad}"
    assert error(tmp_path, source="mat").startswith(f"cuhk03: no CUHK03 folder in data root {tmp_path}")


def test_nothing_there_and_bad_params(tmp_path: Path) -> None:
    first = error(tmp_path)
    assert first == (
        f"cuhk03: no CUHK03 folder in data root {tmp_path} "
        "(looked for cuhk03/, cuhk03-np/, cuhk03_np/, cuhk03/cuhk03-np/)"
    )
    assert (
        error(tmp_path, variant="both") == "cuhk03: parameter variant='both' is not one of detected, labeled"
    )
    assert error(tmp_path, split="3").startswith(
        "cuhk03: unknown parameter 'split'; valid parameters: variant,"
    )
    assert error(tmp_path, split_id="x") == "cuhk03: parameter split_id='x' must be an integer"
    make_cuhk03_np(tmp_path)
    assert load(tmp_path, variant="Labeled", split_id="3").info["variant"] == "labeled"
