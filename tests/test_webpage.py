"""index.html: the page's content from a results frame, and the page driven in headless Chromium."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fake_records import cell_records, craft_record

from advbench import webpage
from advbench.leaderboard import results_frame, write
from advbench.merge import Disagreement

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "leaderboards"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


class Page(HTMLParser):
    """Elements of a page: results rows, image sources and every URL an element loads."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.labels: set[str] = set()
        self.selects: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-i" in a:
            self.rows.append(a)
        if tag == "img":
            self.images.append(a)
        if tag == "label" and "for" in a:
            self.labels.add(a["for"])
        if tag == "select":
            self.selects.append(a.get("id", ""))
        for key in ("src", "href", "srcset", "data", "poster"):
            if key in a:
                self.urls.append(a[key])


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def _records(attack: str = "pgd") -> list[Any]:
    """Two victims, each attacked and evaluated on both, with provenance."""
    records: list[Any] = []
    for source, drops in (("a", {"a": 10.0, "b": 40.0}), ("b", {"a": 45.0, "b": 5.0})):
        prov = {"advbench_version": "9.9", "git_commit": "abc1234", "torch_version": "2.x", "device": "cpu"}
        craft = craft_record(attack, source, provenance=prov)
        records += cell_records(craft, drops)
    return records


def test_page_has_every_row_marks_white_box_and_links_images_relatively(tmp_path: Path) -> None:
    frame = results_frame(_records())
    html = webpage.render_page(frame, ["plots/transfer_synthetic_pgd_eps16.png"], _records())
    page = parse(html)
    assert len(page.rows) == len(frame) == 4
    white = [r for r in page.rows if "whitebox" in r.get("class", "")]
    assert {(r["data-source_victim"], r["data-target_victim"]) for r in white} == {("a", "a"), ("b", "b")}
    assert html.count("◆ white-box</span>") >= 2  # a visible marker, not only a class
    assert [i["src"] for i in page.images] == ["plots/transfer_synthetic_pgd_eps16.png"]
    assert all(i["alt"] for i in page.images)
    assert not [u for u in page.urls if re.match(r"^(https?:)?//", u)], "the page must load nothing remote"
    assert "http://" not in html and "https://" not in html
    assert set(page.selects) <= page.labels  # every filter has a label
    assert "abc1234" in html and "torch_version" in html  # provenance from the records
    assert "advbench run --datasets synthetic --attacks pgd --eps 16 --victims a,b" in html
    assert "--attack-param pgd.steps=10" in html


def test_values_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    records: list[Any] = []
    craft = craft_record("pgd", evil)
    records += cell_records(craft, {evil: 10.0, "b&c": 30.0})
    html = webpage.render_page(results_frame(records), [], records)
    assert evil not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "b&amp;c" in html and "b&c<" not in html
    assert html.count("<script>") == 1  # the page's own


def test_disagreements_listed_at_the_top() -> None:
    frame = results_frame(_records())
    d = Disagreement("k", "synthetic", "pgd", "16", "a", "b", "adv.mAP", "m1", "20.0", "m2", "21.0")
    html = webpage.render_page(frame, [], disagreements=[d])
    assert html.index('id="disagreements"') < html.index('id="results"')
    assert "adv.mAP" in html and "21.0" in html


def test_write_page_lists_a_merges_disagreements_csv(tmp_path: Path) -> None:
    from advbench.merge import disagreements_csv

    d = Disagreement("k", "synthetic", "pgd", "16", "a", "b", "adv.mAP", "m1", "20.0", "m2", "21.5")
    (tmp_path / "disagreements.csv").write_text(disagreements_csv([d]))
    html = webpage.write_page(results_frame(_records()), tmp_path).read_text()
    assert html.index('id="disagreements"') < html.index('id="results"')
    assert "21.5" in html and "synthetic | pgd | eps 16 | a -&gt; b" in html


def test_reproduce_command_follows_the_cli() -> None:
    from advbench.cli import parser

    row = {
        "dataset": "market1501",
        "fit_dataset": "dukemtmc",
        "attack": "pgd",
        "attack_params": '{"steps":20,"name":"a b","flag":true}',
        "eps": 8.0,
        "source_victim": "resnet50",
        "target_victim": "osnet",
        "defence": "jpeg",
        "threat": "adaptive",
        "side": "query",
        "goal": "targeted",
        "budget": "linf",
        "n_targets": 5.0,
        "protocol": "cuhk03-classic",
        "seed": 3,
        "quantized": False,
    }
    command = webpage.reproduce_command(row)
    import shlex

    args = parser().parse_args(shlex.split(command)[1:])
    assert (args.datasets, args.attacks, args.eps, args.victims) == (
        "market1501",
        "pgd",
        "8",
        "resnet50,osnet",
    )
    assert (args.defences, args.goal, args.targets_per_query, args.fit_on) == (
        "jpeg",
        "targeted",
        5,
        "dukemtmc",
    )
    assert (args.protocol, args.seed, args.no_quantize) == ("cuhk03-classic", 3, True)
    from advbench.cli import _scoped

    assert _scoped(args.attack_param, "--attack-param") == {"pgd": {"steps": 20, "name": "a b", "flag": True}}


def test_defence_and_targeted_rows_get_their_tables_and_commands() -> None:
    from fake_records import eval_record

    craft = craft_record("pgd", "a")
    records: list[Any] = cell_records(craft, {"a": 10.0, "b": 30.0})
    records.append(eval_record(craft, "a", 30.0, key="d", defence="jpeg", threat="transfer-to-defended"))
    targeted = craft_record("rank-pgd", "a", key="t", goal="targeted", targets=[[1, 2]] * 10)
    ranks = {"clean_target_ranks": [[10, 20]] * 10, "adv_target_ranks": [[0, 1]] * 10}
    records += [targeted, eval_record(targeted, "a", 50.0, key="te", **ranks)]
    html = webpage.render_page(results_frame(records), [], records)
    assert 'id="defences"' in html and 'id="targeted"' in html
    assert "--defences jpeg" in html and "--goal targeted --targets-per-query 2" in html


def test_grid_colours_keep_dark_text_legible() -> None:
    for share in (0.0, 0.5, 1.0, 2.0, float("nan")):
        rgb = tuple(int(x) for x in re.findall(r"\d+", webpage.colour(share)))
        assert webpage.contrast(rgb) >= 4.5  # type: ignore[arg-type]


def test_write_makes_the_page_and_no_html_skips_it(tmp_path: Path) -> None:
    write(_records(), tmp_path / "lb")
    assert (tmp_path / "lb" / "index.html").is_file()
    write(_records(), tmp_path / "bare", html=False)
    assert not (tmp_path / "bare" / "index.html").exists()


def test_page_of_the_committed_results_csv_agrees_with_it(tmp_path: Path) -> None:
    if not (COMMITTED / "results.csv").is_file():
        pytest.skip("no committed leaderboards/results.csv")
    frame = webpage.read_results(COMMITTED / "results.csv")
    html = webpage.render_page(frame, [f.as_posix() for f in webpage.page_figures(COMMITTED)])
    page = parse(html)
    assert len(page.rows) == len(frame)
    for row, (_, expected) in zip(page.rows, frame.iterrows(), strict=True):
        assert (row["data-attack"], row["data-source_victim"], row["data-target_victim"]) == (
            expected["attack"],
            expected["source_victim"],
            expected["target_victim"],
        )
    for image in page.images:
        assert (COMMITTED / image["src"]).is_file(), image["src"]


# --- the page in a real browser -----------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium through selenium and Debian's chromium-driver (skips where absent)."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("Chromium absent: apt-get install chromium chromium-driver to run the browser test")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium absent (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="advbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _visible_rows(driver: Any) -> list[dict[str, Any]]:
    """The results rows the page shows, in order: their identifying cells and raw mAP_drop."""
    return driver.execute_script(
        """
        var table = document.getElementById('results-table');
        var cols = Array.prototype.map.call(table.tHead.rows[0].cells, function (c) { return c.dataset.col; });
        var drop = cols.indexOf('mAP_drop');
        return Array.prototype.filter.call(table.tBodies[0].rows, function (r) {
          return !r.hidden && r.offsetParent !== null;
        }).map(function (r) {
          return {attack: r.dataset.attack, source: r.dataset.source_victim, target: r.dataset.target_victim,
                  defence: r.dataset.defence, threat: r.dataset.threat,
                  drop: r.cells[drop].dataset.v, shown: r.cells[drop].textContent.trim()};
        });
        """
    )


def test_page_in_chromium_sorts_filters_and_loads_every_image(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    if not (COMMITTED / "results.csv").is_file():
        pytest.skip("no committed leaderboards/results.csv")
    folder = tmp_path / "leaderboards"
    shutil.copytree(COMMITTED, folder, ignore=shutil.ignore_patterns(".store", "index.html"))
    webpage.write_page(webpage.read_results(folder / "results.csv"), folder)
    expected = pd.read_csv(folder / "results.csv")

    browser.get((folder / "index.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, 'th[data-col="mAP_drop"] button').click()
    direction = browser.find_element(By.CSS_SELECTOR, 'th[data-col="mAP_drop"]').get_attribute("aria-sort")
    assert direction == "descending"  # numbers sort largest first
    attack = sorted(expected["attack"].unique())[len(expected["attack"].unique()) // 2]
    Select(browser.find_element(By.ID, "f-attack")).select_by_value(attack)

    want = expected[expected["attack"] == attack].sort_values(
        "mAP_drop", ascending=False, kind="stable", na_position="last"
    )
    got = _visible_rows(browser)
    assert [(r["attack"], r["source"], r["target"]) for r in got] == list(
        zip(want["attack"], want["source_victim"], want["target_victim"], strict=True)
    )
    assert [float(r["drop"]) for r in got] == pytest.approx(want["mAP_drop"].tolist())
    assert [r["shown"].split(" ")[0] for r in got] == [f"{v:.2f}" for v in want["mAP_drop"]]
    shown = browser.find_element(By.ID, "shown").text
    assert shown == f"{len(want)} of {len(expected)} rows shown"

    # a white-box row links its image strip, which opens when followed
    row = browser.find_element(By.CSS_SELECTOR, "#results-table tbody tr.whitebox:not([hidden])")
    row.find_element(By.TAG_NAME, "summary").click()
    link = row.find_element(By.PARTIAL_LINK_TEXT, "image strip")
    strip = link.get_attribute("href").split("#", 1)[1]
    link.click()
    assert browser.find_element(By.ID, strip).get_attribute("open") is not None

    # every image loads: open each closed strip first, then wait for the decodes
    browser.execute_script("document.querySelectorAll('details').forEach(function (d) { d.open = true; });")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if browser.execute_script(
            "return Array.from(document.images).every(function (i) { return i.complete; })"
        ):
            break
        time.sleep(0.1)
    images = browser.execute_script(
        "return Array.from(document.images).map(function (i) { return [i.getAttribute('src'), i.naturalWidth]; })"
    )
    assert images, "the committed page shows its plots and strips"
    assert [src for src, width in images if not width] == [], "broken images"
    assert {src for src, _ in images} == {f.as_posix() for f in webpage.page_figures(folder)}

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
