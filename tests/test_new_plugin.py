"""``advbench new-plugin``: the skeleton installs, its own conformance tests pass, advbench lists it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from advbench.cli import main


def _run(*args: str, cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("ADVBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_new_plugin_installs_and_passes_its_own_tests(tmp_path: Path, capsys) -> None:
    assert main(["new-plugin", "demo-kit", "--dir", str(tmp_path)]) == 0
    package = tmp_path / "advbench-demo-kit"
    assert str(package) in capsys.readouterr().out
    assert (package / "advbench_demo_kit" / "plugin.py").is_file()
    site = tmp_path / "site"  # installed beside, never into, the shared environment
    pip = [
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--target",
        str(site),
        str(package),
    ]
    installed = _run(*pip, cwd=tmp_path, site=site)
    assert installed.returncode == 0, installed.stderr
    tests = _run(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests"), cwd=tmp_path, site=site
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
    listed = _run("-m", "advbench.cli", "plugins", cwd=tmp_path, site=site)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for name in ("demo-kit-attack", "demo-kit-victim", "demo-kit-toy"):
        assert f"{name} " in listed.stdout


@pytest.mark.parametrize("name", ["Demo", "1demo", "my_plugin", "a--b", "demo-"])
def test_new_plugin_rejects_bad_names(name: str, tmp_path: Path, capsys) -> None:
    assert main(["new-plugin", name, "--dir", str(tmp_path)]) == 2
    assert f"plugin name {name!r}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_new_plugin_never_overwrites(tmp_path: Path, capsys) -> None:
    (tmp_path / "advbench-demo").mkdir()
    (tmp_path / "advbench-demo" / "mine.txt").write_text("keep")
    assert main(["new-plugin", "demo", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "advbench-demo").iterdir()] == ["mine.txt"]
