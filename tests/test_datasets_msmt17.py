"""MSMT17 V1/V2: list files, folder names, camera parsing, val handling, every bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from reid_trees import make_msmt17

from advbench.api import AdvbenchError, ReidDataset
from advbench_datasets import msmt17
from advbench_datasets.common import DatasetCountWarning


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADVBENCH_DATA", raising=False)


def load(root: Path, **params) -> ReidDataset:
    with pytest.warns(DatasetCountWarning):
        return msmt17.load(root, None, **params)


def error(root: Path, **params) -> str:
    with pytest.raises(AdvbenchError) as info:
        msmt17.load(root, None, **params)
    assert len(str(info.value).splitlines()) <= 7
    return str(info.value).splitlines()[0]


def split(ds: ReidDataset, name: str) -> tuple[int, int]:
    c = ds.counts()
    return c[f"{name}_ids"], c[f"{name}_images"]


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_lists_parsed_from_the_list_files(tmp_path: Path, version: str) -> None:
    tree = make_msmt17(tmp_path, version=version)
    ds = load(tmp_path)
    assert ds.info["variant"] == version and ds.info["protocol"] == "train"
    for name in ("train", "query", "gallery"):
        assert split(ds, name) == tree.counts[name]
    lines = tree.extra["lines"]
    top = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}[version]
    expected_query = sorted(
        (str((tree.folder / top[1] / rel).absolute()), int(pid), int(rel.split("/")[1].split("_")[2]) - 1)
        for rel, pid in (line.split() for line in lines["query"])
    )
    assert [(s.path, s.pid, s.camid) for s in ds.query] == expected_query
    assert {s.camid for s in ds.gallery} == {2, 14}  # cameras 03 and 15
    assert all(Path(s.path).is_relative_to(tree.folder / top[0]) for s in ds.train)
    assert sorted({s.pid for s in ds.train}) == [0, 1, 2, 3]
    assert ds.info["val_images"] == 4
    val = {Path(line.split()[0]).name for line in lines["val"]}
    assert not val & {Path(s.path).name for s in ds.train}  # list_val not used by default


def test_include_val_and_relabelling(tmp_path: Path) -> None:
    tree = make_msmt17(tmp_path)
    lines = tree.folder / "list_train.txt"
    # shift the train pids so relabelling shows: pid dirs 0000.. but list pids 10, 11, ...
    text = "\n".join(
        f"{rel} {int(pid) + 10}" for rel, pid in (r.split() for r in lines.read_text().split("\n") if r)
    )
    lines.write_text(text + "\n\n")  # trailing blank lines are fine
    ds = load(tmp_path)
    assert sorted({s.pid for s in ds.train}) == [0, 1, 2, 3]
    both = load(tmp_path, include_val=True)
    assert split(both, "train") == (8, 12)  # 10..13 from train, 0..3 from val: 8 ids relabelled 0..7
    assert both.info["protocol"] == "train+val"
    assert both.fingerprint != ds.fingerprint


def test_count_warning_uses_train_plus_val(tmp_path: Path) -> None:
    make_msmt17(tmp_path)
    with pytest.warns(DatasetCountWarning) as caught:
        msmt17.load(tmp_path, None)
    text = str(caught[0].message)
    assert "train+val has 4 ids / 12 images (release: 1,041 ids / 32,621 images)" in text
    assert "gallery has 3 ids / 6 images (release: 3,060 ids / 82,161 images)" in text


@pytest.mark.parametrize(
    ("folder", "version"), [("msmt17/MSMT17_V1", "V1"), ("msmt17/MSMT17_V2", "V2"), ("msmt17_v2", "V2")]
)
def test_folder_names(tmp_path: Path, folder: str, version: str) -> None:
    make_msmt17(tmp_path, version=version, folder=folder)
    assert load(tmp_path).info["folder"] == str((tmp_path / folder).absolute())


def test_version_choice(tmp_path: Path) -> None:
    make_msmt17(tmp_path, version="V1")
    make_msmt17(tmp_path, version="V2", test_ids=2)
    assert load(tmp_path).info["variant"] == "V1"  # V1 first, as torchreid and fast-reid
    v2 = load(tmp_path, version="v2")
    assert v2.info["variant"] == "V2" and split(v2, "query") == (2, 2)
    assert load(tmp_path / "MSMT17_V2").info["variant"] == "V2"  # the dataset folder itself


def test_missing_pieces(tmp_path: Path) -> None:
    tree = make_msmt17(tmp_path)
    first = error(tmp_path / "MSMT17_V1" / "train")
    assert first.startswith("msmt17: no MSMT17 folder in data root")
    assert "MSMT17_V1/, msmt17/MSMT17_V1/, MSMT17_V2/, msmt17/MSMT17_V2/" in first
    assert error(tmp_path, version="V2").endswith("(looked for MSMT17_V2/, msmt17/MSMT17_V2/)")
    (tree.folder / "list_val.txt").unlink()
    assert split(load(tmp_path), "train") == (4, 8)  # list_val is optional by default
    assert error(tmp_path, include_val=True) == (
        f"msmt17: missing file {tree.folder}/list_val.txt (needed by include_val=True)"
    )
    (tree.folder / "list_query.txt").unlink()
    assert error(tmp_path).startswith(f"msmt17: missing file {tree.folder}/list_query.txt (some copies")
    shutil.rmtree(tree.folder / "test")
    assert error(tmp_path) == f"msmt17: missing split folder {tree.folder}/test"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0000/0000_000_01_0303morning_0015_0.jpg", "line 2: expected '<pid>/<file>.jpg <pid>', got"),
        ("0000/0000_000_01_0303morning_0015_0.jpg x", "line 2: expected '<pid>/<file>.jpg <pid>', got"),
        (
            "0000/0000_000_16_0303morning_0015_0.jpg 0",
            "line 2: no camera 1..15 in file name 0000_000_16_0303",
        ),
        ("0000/person.jpg 0", "line 2: no camera 1..15 in file name person.jpg (expected names like"),
        (
            "0000/0000_009_01_0303morning_0015_0.jpg 0",
            "1 of 4 images listed in {list} are missing (first: {top}/0000/",
        ),
    ],
)
def test_bad_list_lines(tmp_path: Path, line: str, expected: str) -> None:
    tree = make_msmt17(tmp_path)
    path = tree.folder / "list_query.txt"
    rows = path.read_text().splitlines()
    path.write_text("\n".join([rows[0], line, *rows[1:]]) + "\n")
    first = error(tmp_path)
    prefix = f"msmt17: {path} " if "missing" not in expected else "msmt17: "
    assert first.startswith(prefix + expected.format(list=path, top=tree.folder / "test"))


def test_corrupt_listed_image(tmp_path: Path) -> None:
    tree = make_msmt17(tmp_path)
    rel = tree.extra["lines"]["gallery"][0].split()[0]
    image = tree.folder / "test" / rel
    image.write_bytes(image.read_bytes()[:50])
    assert error(tmp_path) == f"msmt17: truncated or corrupt JPEG {image} (no end-of-image marker)"
    assert split(load(tmp_path, verify=False), "gallery") == (3, 6)


def test_empty_list(tmp_path: Path) -> None:
    tree = make_msmt17(tmp_path)
    (tree.folder / "list_gallery.txt").write_text("\n")
    assert error(tmp_path) == f"msmt17: {tree.folder}/list_gallery.txt lists no image"
