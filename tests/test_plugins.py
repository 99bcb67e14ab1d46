"""The registry: discovery through entry points, lookups, selections, clashes and broken plugins."""

from __future__ import annotations

import pytest

from advbench import hookimpl
from advbench.api import AdvbenchError, AttackSpec
from advbench.cli import main
from advbench.plugins import build_registry, discover, get_registry


def test_builtins_and_third_party_are_found_the_same_way() -> None:
    found = discover()
    assert {"datasets", "timm", "dgnet", "torchattacks", "misranking"} <= set(found.packages)
    assert (
        found.packages["example"][0] == "advbench-example"
    )  # examples/plugin-package, installed by the README
    registry = build_registry(found)
    assert registry.load_errors == []
    assert registry.entries["attack"]["random-sign"].package == "advbench-example"
    assert registry.entries["attack"]["pgd"].package == "advbench"
    assert {"synthetic", "market1501", "dukemtmcreid", "cuhk03", "msmt17"} <= set(registry.names("dataset"))


def test_unknown_name_suggests_and_lists() -> None:
    registry = get_registry()
    with pytest.raises(AdvbenchError) as err:
        registry.get("attack", "pgdd")
    message = str(err.value)
    assert "Did you mean pgd" in message and "fgsm" in message and "\n" not in message


def test_selection_all_default_patterns_and_families() -> None:
    registry = get_registry()
    everything = registry.select("attack", "all")
    assert "torchattacks" not in everything  # families are reached by name:variant, not by 'all'
    assert registry.select("attack", "all") == sorted(everything)
    assert registry.select("victim", "resnet*") == ["resnet10t"]
    assert registry.select("attack", "pgd,fgsm,pgd") == ["pgd", "fgsm"]
    entry, variant = registry.get("victim", "timm:convnext_atto")
    assert entry.name == "timm" and variant == "convnext_atto"
    with pytest.raises(AdvbenchError, match="no victim matches"):
        registry.select("victim", "nothing*")


class _Clash:
    @hookimpl
    def advbench_attacks(self):
        return [AttackSpec(name="pgd", description="another pgd", build=lambda **kw: None)]


class _Broken:
    @hookimpl
    def advbench_attacks(self):
        raise RuntimeError("boom")


def test_duplicate_names_name_both_packages() -> None:
    with pytest.raises(AdvbenchError) as err:
        build_registry(discover([("clashing-plugin", _Clash())]))
    assert "'advbench'" in str(err.value) and "'clashing-plugin'" in str(err.value)


def test_a_broken_plugin_does_not_take_the_others_down() -> None:
    registry = build_registry(discover([("broken-plugin", _Broken())]))
    assert "pgd" in registry.names("attack")
    assert registry.load_errors == [("broken-plugin.advbench_attacks", "RuntimeError: boom")]


def test_disable_plugins_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVBENCH_DISABLE_PLUGINS", "misranking,example")
    registry = build_registry(discover())
    assert "misranking" not in registry.names("attack") and "random-sign" not in registry.names("attack")
    monkeypatch.setenv("ADVBENCH_DISABLE_PLUGINS", "")
    monkeypatch.setenv("ADVBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "random-sign" not in build_registry(discover()).names("attack")


def test_plugins_command_lists_every_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind, name in (
        ("datasets", "synthetic"),
        ("victims", "resnet10t"),
        ("attacks", "pgd"),
        ("attacks", "misranking"),
    ):
        assert f"{kind}:" in out and name in out
    assert "advbench-example" in out and "defaults: steps=10" in out
