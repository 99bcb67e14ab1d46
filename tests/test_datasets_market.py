"""Market-1501 and DukeMTMC-reID loaders: parsed lists, folder names, counts, every bad input."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reid_trees import make_dukemtmcreid, make_market1501, write_image

from advbench.api import AdvbenchError, ReidDataset
from advbench_datasets import dukemtmcreid, market1501
from advbench_datasets.common import DatasetCountWarning

MARKET_CAM = re.compile(r"_c(\d)s")


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADVBENCH_DATA", raising=False)


def load(module, root, **params) -> ReidDataset:
    """Load a small tree; its counts differ from the release, so the warning is expected."""
    with pytest.warns(DatasetCountWarning):
        return module.load(root, None, **params)


def counts(ds: ReidDataset) -> dict[str, tuple[int, int]]:
    c = ds.counts()
    return {s: (c[f"{s}_ids"], c[f"{s}_images"]) for s in ("train", "query", "gallery")}


def error(module, root, **params) -> str:
    with pytest.raises(AdvbenchError) as info:
        module.load(root, None, **params)
    message = str(info.value)
    assert len(message.splitlines()) <= 7, message  # one line, then the layout in a few lines
    return message.splitlines()[0]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory):
    return make_market1501(tmp_path_factory.mktemp("market"))


# ------------------------------------------------------------------------------------ Market
def test_market_lists_junk_distractors_relabel_camids(market) -> None:
    ds = load(market1501, market.root)
    assert counts(ds) == market.counts
    assert ds.root == market.folder.absolute()
    everything = ds.train + ds.query + ds.gallery
    assert all(s.pid != -1 for s in everything)  # junk dropped at load
    assert ds.info["junk_dropped"] == 3
    assert sum(s.pid == 0 for s in ds.gallery) == ds.info["distractors"] == 4  # distractors kept
    assert not any(Path(s.path).name.startswith(("-1_", ".")) for s in everything)
    # train relabelled 0..N-1 in order of the raw pids; query/gallery raw
    raw_train = sorted({int(Path(s.path).name[:4]) for s in ds.train})
    assert raw_train == market.extra["train_pids"]
    for s in ds.train:
        assert s.pid == raw_train.index(int(Path(s.path).name[:4]))
    assert sorted({s.pid for s in ds.query}) == market.extra["test_pids"]
    assert {s.pid for s in ds.gallery} == {0, *market.extra["test_pids"]}
    for s in everything:
        assert s.camid == int(MARKET_CAM.search(Path(s.path).name).group(1)) - 1
        assert Path(s.path).is_absolute() and Path(s.path).is_file()
    for split in (ds.train, ds.query, ds.gallery):
        assert [s.path for s in split] == sorted(s.path for s in split)
    assert ds.num_train_pids == 6


def test_market_tree_images_decode(market) -> None:
    """The helper writes real images that a decoder reads (the end-to-end run relies on it)."""
    ds = load(market1501, market.root, verify=True)
    for s in ds.query[:3] + ds.gallery[:3]:
        with Image.open(s.path) as img:
            assert img.size == (64, 128) and np.asarray(img.convert("RGB")).std() > 5


def test_market_count_warning_names_splits_and_numbers(market) -> None:
    with pytest.warns(DatasetCountWarning) as caught:
        market1501.load(market.root, None)
    (w,) = caught
    text = str(w.message)
    assert str(market.folder.absolute()) in text
    assert "train has 6 ids / 24 images (release: 751 ids / 12,936 images)" in text
    assert "gallery has 6 ids / 19 images (release: 751 ids / 15,913 images)" in text


def test_market_exact_release_counts_do_not_warn(market, monkeypatch: pytest.MonkeyPatch) -> None:
    from advbench_datasets.common import Expected

    monkeypatch.setattr(market1501, "RELEASE", {k: Expected(*v) for k, v in market.counts.items()})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        market1501.load(market.root, None)


@pytest.mark.parametrize(
    "folder",
    ["Market-1501-v15.09.15", "market1501/Market-1501-v15.09.15", "market1501", "market-1501-V15.09.15"],
)
def test_market_accepts_torchreid_and_fastreid_folder_names(tmp_path: Path, folder: str) -> None:
    tree = make_market1501(tmp_path, folder=folder, train_ids=2, train_per_id=2, test_ids=2, clutter=False)
    ds = load(market1501, tmp_path)
    assert counts(ds) == tree.counts
    assert ds.info["folder"] == str(tree.folder.absolute())


def test_market_root_may_be_the_dataset_folder_itself(market) -> None:
    ds = load(market1501, market.folder)
    assert counts(ds) == market.counts


def test_market_ids_come_from_the_file_name_not_the_path(tmp_path: Path) -> None:
    root = tmp_path / "0099_c3s1_runs" / "data"
    tree = make_market1501(root, train_ids=2, train_per_id=2, test_ids=2, clutter=False)
    ds = load(market1501, root)
    assert 99 not in {s.pid for s in ds.query + ds.gallery}
    assert counts(ds) == tree.counts


def test_market_fingerprint_tracks_the_folder(tmp_path: Path) -> None:
    tree = make_market1501(tmp_path, train_ids=2, train_per_id=2, test_ids=2, clutter=False)
    first = load(market1501, tmp_path).fingerprint
    assert load(market1501, tmp_path, verify=False).fingerprint == first  # checks do not change content
    victim = next((tree.folder / "query").iterdir())
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = load(market1501, tmp_path).fingerprint
    assert touched != first
    write_image(tree.folder / "query" / "0099_c2s1_000001_01.jpg", 99, 1)
    assert load(market1501, tmp_path).fingerprint not in (first, touched)


def test_market_needs_a_data_root_and_reads_the_environment(market, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AdvbenchError) as info:
        market1501.load(None, None)
    lines = str(info.value).splitlines()
    assert lines[0] == "market1501: no data root: pass --data-root PATH or set ADVBENCH_DATA"
    assert any("bounding_box_train/" in line for line in lines[1:])
    monkeypatch.setenv("ADVBENCH_DATA", str(market.root))
    assert counts(load(market1501, None)) == market.counts


def _broken_tree(tmp_path: Path) -> Path:
    make_market1501(tmp_path, train_ids=2, train_per_id=2, test_ids=2, distractors=1, junk=1, clutter=False)
    return tmp_path / "Market-1501-v15.09.15"


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("no-root", "data root {root}/nowhere does not exist"),
        ("root-is-file", "data root {root}/file.txt is not a folder"),
        ("no-dataset", "no Market-1501 folder in data root {root}/empty (looked for Market-1501-v15.09.15/"),
        ("renamed", "no Market-1501 folder in data root {root}/renamed (looked for"),
        ("no-split-folder", "missing split folder {folder}/query"),
        ("no-split-at-all", "{folder} holds none of bounding_box_train, query, bounding_box_test"),
        ("empty-split", "no .jpg images in {folder}/query"),
        ("nested-split", "no .jpg images in {folder}/query (it holds 1 sub-folders"),
        (
            "bad-name",
            "cannot parse ids from file name {folder}/bounding_box_train/person.jpg (expected names like",
        ),
        ("duke-name", "cannot parse ids from file name {folder}/query/0001_c2_f0046182.jpg"),
        ("bad-camera", "camera 7 outside 1..6 in file name {folder}/query/0002_c7s1_000001_01.jpg"),
        ("bad-pid", "person id 1600 outside -1..1501 in file name {folder}/query/1600_c1s1_000001_01.jpg"),
        (
            "truncated",
            "truncated or corrupt JPEG {folder}/query/0050_c1s1_000001_01.jpg (no end-of-image marker)",
        ),
        ("zero-bytes", "empty image file {folder}/query/0050_c1s1_000001_01.jpg"),
        ("not-an-image", "not a JPEG or PNG image: {folder}/query/0050_c1s1_000001_01.jpg"),
        ("unknown-param", "unknown parameter 'verfy'; valid parameters: verify"),
        ("bad-param", "parameter verify='maybe' must be a boolean (true/false)"),
    ],
)
def test_market_bad_inputs_are_one_line_errors(tmp_path: Path, breakage: str, expected: str) -> None:
    folder = _broken_tree(tmp_path)
    root, params = tmp_path, {}
    query = folder / "query"
    good = folder / "query" / "0050_c1s1_000001_01.jpg"
    write_image(good, 50, 0)
    if breakage == "no-root":
        root = tmp_path / "nowhere"
    elif breakage == "root-is-file":
        root = tmp_path / "file.txt"
        root.write_text("x")
    elif breakage == "no-dataset":
        root = tmp_path / "empty"
        root.mkdir()
    elif breakage == "renamed":
        root = tmp_path / "renamed"
        folder.rename(root)
    elif breakage == "no-split-folder":
        shutil.rmtree(query)
    elif breakage == "no-split-at-all":
        for sub in list(folder.iterdir()):
            shutil.rmtree(sub)
    elif breakage == "empty-split":
        shutil.rmtree(query)
        query.mkdir()
        (query / "Thumbs.db").write_bytes(b"\x00")
    elif breakage == "nested-split":
        shutil.move(str(query), str(tmp_path / "q"))
        query.mkdir()
        shutil.move(str(tmp_path / "q"), str(query / "query"))
    elif breakage == "bad-name":
        write_image(folder / "bounding_box_train" / "person.jpg", 1, 0)
    elif breakage == "duke-name":
        write_image(query / "0001_c2_f0046182.jpg", 1, 0)
    elif breakage == "bad-camera":
        write_image(query / "0002_c7s1_000001_01.jpg", 2, 0)
    elif breakage == "bad-pid":
        write_image(query / "1600_c1s1_000001_01.jpg", 1600, 0)
    elif breakage == "truncated":
        good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif breakage == "zero-bytes":
        good.write_bytes(b"")
    elif breakage == "not-an-image":
        good.write_text("<html>404 Not Found</html>")
    elif breakage == "unknown-param":
        params = {"verfy": False}
    elif breakage == "bad-param":
        params = {"verify": "maybe"}
    first = error(market1501, root, **params)
    assert first.startswith("market1501: " + expected.format(root=tmp_path, folder=folder))
    if breakage == "renamed":
        assert first.endswith(
            f"{root} itself looks like the dataset folder: name it Market-1501-v15.09.15/ and pass its parent"
        )


def test_market_verify_false_skips_the_byte_check(tmp_path: Path) -> None:
    folder = _broken_tree(tmp_path)
    bad = folder / "query" / "0050_c1s1_000001_01.jpg"
    write_image(bad, 50, 0)
    bad.write_bytes(bad.read_bytes()[:100])
    ds = load(market1501, tmp_path, verify="false")  # CLI strings are coerced
    assert str(bad.absolute()) in {s.path for s in ds.query}


def test_market_all_junk_gallery_is_an_error(tmp_path: Path) -> None:
    folder = _broken_tree(tmp_path)
    for f in (folder / "bounding_box_test").iterdir():
        if not f.name.startswith("-1_"):
            f.unlink()
    assert (
        error(market1501, tmp_path)
        == f"market1501: every image in {folder}/bounding_box_test is junk (person id -1)"
    )


# -------------------------------------------------------------------------------------- Duke
def test_duke_lists_cameras_and_distractor_ids(tmp_path: Path) -> None:
    tree = make_dukemtmcreid(tmp_path)
    ds = load(dukemtmcreid, tmp_path)
    assert counts(ds) == tree.counts
    assert sorted({s.pid for s in ds.train}) == list(range(4))
    assert sorted({s.pid for s in ds.query}) == tree.extra["test_pids"]
    assert {s.pid for s in ds.gallery} - {s.pid for s in ds.query} == {5000, 5001}  # gallery-only ids
    assert {s.camid for s in ds.gallery} == {4, 6, 7}  # c5, c7, c8 -> 0-based
    for s in ds.train:
        assert s.pid == tree.extra["train_pids"].index(int(Path(s.path).name[:4]))


@pytest.mark.parametrize("folder", ["DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID"])
def test_duke_folder_names(tmp_path: Path, folder: str) -> None:
    tree = make_dukemtmcreid(tmp_path, folder=folder)
    assert counts(load(dukemtmcreid, tmp_path)) == tree.counts


def test_duke_rejects_market_names_and_missing_folder(tmp_path: Path) -> None:
    tree = make_dukemtmcreid(tmp_path)
    bad = tree.folder / "query" / "0002_c1s1_000451_03.jpg"
    write_image(bad, 2, 0)
    assert error(dukemtmcreid, tmp_path) == (
        f"dukemtmcreid: cannot parse ids from file name {bad} (expected names like 0001_c2_f0046182.jpg)"
    )
    first = error(dukemtmcreid, tmp_path / "DukeMTMC-reID" / "query")
    assert first.startswith("dukemtmcreid: no DukeMTMC-reID folder in data root")
    assert "DukeMTMC-reID/, dukemtmc-reid/DukeMTMC-reID/" in first


def test_market_loader_rejects_a_duke_folder(tmp_path: Path) -> None:
    tree = make_dukemtmcreid(tmp_path, folder="market1501")
    assert "cannot parse ids from file name" in error(market1501, tmp_path)
    assert tree.folder.is_dir()


def test_market_verification_runs_once_per_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from advbench_datasets import common

    folder = _broken_tree(tmp_path)
    cache = tmp_path / "cache"
    checked: list[str] = []
    real = common.check_image
    monkeypatch.setattr(common, "check_image", lambda ds, f: (checked.append(f.path), real(ds, f)))
    with pytest.warns(DatasetCountWarning):
        ds = market1501.load(tmp_path, cache)
    assert len(checked) == len(ds.train + ds.query + ds.gallery)  # junk files are not checked
    assert (cache / "verified" / f"market1501-{ds.fingerprint}").is_file()
    checked.clear()
    with pytest.warns(DatasetCountWarning):
        market1501.load(tmp_path, cache)
    assert checked == []
    bad = next((folder / "query").iterdir())
    bad.write_bytes(bad.read_bytes()[:40])  # new size and mtime: a new fingerprint, checked again
    with pytest.raises(AdvbenchError, match="truncated or corrupt JPEG"):
        market1501.load(tmp_path, cache)
