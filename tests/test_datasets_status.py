"""``advbench datasets`` report, plugin registration of the four loaders, shared parameter rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from reid_trees import make_cuhk03_release, make_market1501

from advbench.api import DatasetSpec
from advbench_datasets import common, cuhk03, dukemtmcreid, market1501, msmt17
from advbench_datasets.status import dataset_status, format_report, report

REAL = [market1501.SPEC, dukemtmcreid.SPEC, cuhk03.SPEC, msmt17.SPEC]


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADVBENCH_DATA", raising=False)


def _embedded_load(root, cache_dir, **params):
    raise AssertionError("the report must not generate embedded datasets")


def _buggy_load(root, cache_dir, **params):
    raise RuntimeError("plugin bug")


EMBEDDED = DatasetSpec(name="toy", description="generated", load=_embedded_load, embedded=True)
BUGGY = DatasetSpec(name="buggy", description="third-party", load=_buggy_load)


def test_report_over_a_mixed_root(tmp_path: Path) -> None:
    market = make_market1501(tmp_path, train_ids=2, train_per_id=2, test_ids=2)
    make_cuhk03_release(tmp_path)
    statuses = {s.name: s for s in report([*REAL, EMBEDDED, BUGGY], tmp_path, tmp_path / "cache")}
    m = statuses["market1501"]
    assert m.state == "differs" and m.folder == str(market.folder.absolute())
    assert (m.counts["train_ids"], m.counts["gallery_images"]) == (2, 2 * 3 + 4)
    assert len(m.notes) == 1 and "train has 2 ids / 4 images (release: 751 ids" in m.notes[0]
    c = statuses["cuhk03"]
    assert c.state == "not ready" and "images_detected/ is not extracted yet" in c.message
    assert not (tmp_path / "cuhk03" / "images_detected").exists()  # listing never extracts
    d = statuses["dukemtmcreid"]
    assert d.state == "unavailable"
    assert d.message.startswith(f"dukemtmcreid: no DukeMTMC-reID folder in data root {tmp_path} (looked for")
    assert statuses["msmt17"].state == "unavailable"
    assert statuses["toy"].state == "embedded"
    assert statuses["buggy"].state == "broken" and statuses["buggy"].message == "RuntimeError: plugin bug"

    text = format_report(statuses.values(), tmp_path, "--data-root")
    lines = text.splitlines()
    assert lines[0] == f"data root: {tmp_path} (--data-root)"
    assert any(
        line.startswith("market1501") and "differs" in line and str(market.folder) in line for line in lines
    )
    assert "train 2 ids / 4 images · query 2 ids / 4 images · gallery 3 ids / 10 images" in text
    assert any(line.startswith("cuhk03") and "not ready" in line for line in lines)


def test_report_without_a_data_root() -> None:
    statuses = report(REAL, None, Path("/nonexistent-cache"))
    assert {s.state for s in statuses} == {"unavailable"}
    assert all("pass --data-root PATH or set ADVBENCH_DATA" in s.message for s in statuses)
    assert (
        format_report(statuses, None).splitlines()[0] == "data root: not set (--data-root or ADVBENCH_DATA)"
    )


def test_matching_release_counts_read_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_market1501(tmp_path, train_ids=2, train_per_id=2, test_ids=2)
    monkeypatch.setattr(market1501, "RELEASE", {k: common.Expected(*v) for k, v in tree.counts.items()})
    status = dataset_status(market1501.SPEC, tmp_path, tmp_path / "cache")
    assert status.state == "ok" and status.notes == ()


def test_plugin_hook_registers_the_four_real_datasets() -> None:
    from advbench_datasets import advbench_datasets

    specs = {s.name: s for s in advbench_datasets()}
    for spec in REAL:
        assert specs[spec.name] is spec
        assert not spec.embedded and not spec.default and spec.input_size == (256, 128)
        assert spec.layout.count("\n") <= 4 and "<data-root>" in spec.layout
        assert set(spec.defaults) >= {"verify"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"verify": "yes"}, {"verify": True}),
        ({"verify": 0}, {"verify": False}),
        ({"split_id": " 4 "}, {"split_id": 4}),
        ({"name": "V2"}, {"name": "V2"}),
    ],
)
def test_resolve_params_coerces_cli_strings(params: dict, expected: dict) -> None:
    out = common.resolve_params("x", {"verify": True, "split_id": 0, "name": "auto"}, params)
    assert {k: out[k] for k in expected} == expected


def test_resolve_params_rejects_wrong_types() -> None:
    with pytest.raises(common.DatasetError, match="parameter split_id=True must be an integer"):
        common.resolve_params("x", {"split_id": 0}, {"split_id": True})
    with pytest.raises(common.DatasetError, match="parameter name=3 must be a string"):
        common.resolve_params("x", {"name": "a"}, {"name": 3})
