"""The registry: discovery through entry points, lookups, selections, clashes and broken plugins."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from advbench import hookimpl
from advbench.api import AdvbenchError
from advbench.cli import main
from advbench.plugins import build_registry, discover, get_registry

# Installed packages, for real: a dist-info folder with entry points next to the plugin module, on
# sys.path. Each hook returns the expression given (the other hooks return valid specs named after
# the package), so that a test can check the whole package is left out, not just the bad spec.
PLUGIN_MODULE = """
from advbench import hookimpl
from advbench.api import AttackSpec, DatasetSpec, VictimSpec

def _build(**params):
    raise AssertionError("never built by these tests")

@hookimpl
def advbench_attacks():
    return {attacks}

@hookimpl
def advbench_victims():
    return {victims}

@hookimpl
def advbench_datasets():
    return {datasets}
"""


def test_builtins_and_third_party_are_found_the_same_way() -> None:
    found = discover()
    assert {"datasets", "timm", "dgnet", "torchattacks", "misranking"} <= set(found.packages)
    assert (
        found.packages["example"][0] == "advbench-example"
    )  # examples/plugin-package, installed by the README
    registry = build_registry(found)
    assert registry.problems == []
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


class _Broken:
    @hookimpl
    def advbench_attacks(self):
        raise RuntimeError("boom")


def test_a_broken_object_plugin_does_not_take_the_others_down() -> None:
    registry = build_registry(discover([("broken-plugin", _Broken())]))
    assert "pgd" in registry.names("attack")
    assert [(p.plugin, p.package, p.reason) for p in registry.problems] == [
        ("broken-plugin", "broken-plugin", "advbench_attacks raised RuntimeError: boom")
    ]


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


Install = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """``install(package, entry_point, attacks=..., victims=..., datasets=..., source=...)``: a real
    distribution on sys.path; the process-wide registry is rebuilt around the test."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def _install(package: str, entry_point: str, source: str | None = None, **hooks: str) -> None:
        module = "advbench_test_" + entry_point.replace("-", "_")
        own = {
            k: f'[{cls}(name="{entry_point}-{k}", description="valid", {arg}=_build)]'
            for k, cls, arg in (
                ("attacks", "AttackSpec", "build"),
                ("victims", "VictimSpec", "build"),
                ("datasets", "DatasetSpec", "load"),
            )
        }
        (site / f"{module}.py").write_text(source or PLUGIN_MODULE.format(**{**own, **hooks}))
        info = site / f"{package.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[advbench]\n{entry_point} = {module}\n")
        modules.append(module)
        importlib.invalidate_caches()

    get_registry.cache_clear()
    yield _install
    for module in modules:
        sys.modules.pop(module, None)
    get_registry.cache_clear()


def _assert_left_out(capsys: pytest.CaptureFixture[str], package: str, entry_point: str, reason: str) -> None:
    """``package`` is reported (name, reason, how to disable it) and none of its names is registered,
    the built-ins still work, and ``advbench plugins`` lists the problem and exits 1."""
    registry = get_registry()
    lines = [
        line for line in registry.problems_report() if line.startswith(f"plugin problem: package {package} ")
    ]
    assert lines and any(reason in line for line in lines), registry.problems_report()
    assert all(f"ADVBENCH_DISABLE_PLUGINS={entry_point}" in line for line in lines)
    assert not [e for kind in registry.entries.values() for e in kind.values() if e.package == package]
    assert not [n for kind in registry.entries.values() for n in kind if n.startswith(f"{entry_point}-")]
    assert registry.get("attack", "pgd")[0].package == "advbench"
    assert {"resnet10t", "timm"} <= set(registry.names("victim")) and "synthetic" in registry.names("dataset")
    assert main(["plugins"]) == 1
    out = capsys.readouterr().out
    assert "attacks:" in out and " pgd " in out and all(line in out.splitlines() for line in lines)


def test_a_hook_that_raises_leaves_its_package_out(install: Install, capsys) -> None:
    install("advbench-raises", "raises", victims="[1][5]")
    _assert_left_out(capsys, "advbench-raises", "raises", "advbench_victims raised IndexError")


def test_a_package_that_fails_to_import_is_left_out(install: Install, capsys) -> None:
    install("advbench-noimport", "noimport", source="import advbench_no_such_module\n")
    _assert_left_out(capsys, "advbench-noimport", "noimport", "import failed: ModuleNotFoundError")


def test_an_unknown_hook_leaves_its_package_out(install: Install, capsys) -> None:
    source = PLUGIN_MODULE.replace("def advbench_attacks", "def advbench_attack").format(
        attacks="[]", victims="[]", datasets="[]"
    )
    install("advbench-typo", "typo", source=source)
    _assert_left_out(capsys, "advbench-typo", "typo", "unknown hook(s) advbench_attack")


@pytest.mark.parametrize(
    ("hooks", "reason"),
    [
        ({"attacks": '{"name": "x"}'}, "advbench_attacks returned dict, not a list of AttackSpec"),
        ({"attacks": '"pgd"'}, "advbench_attacks returned str, not a list of AttackSpec"),
        (
            {"attacks": 'VictimSpec(name="v", description="d", build=_build),'},
            "advbench_attacks returned VictimSpec where AttackSpec was expected",
        ),
        ({"datasets": '["synthetic"]'}, "advbench_datasets returned str where DatasetSpec was expected"),
    ],
)
def test_a_hook_that_returns_no_list_of_specs_leaves_its_package_out(
    install: Install, capsys, hooks: dict[str, str], reason: str
) -> None:
    install("advbench-nonspec", "nonspec", **hooks)
    _assert_left_out(capsys, "advbench-nonspec", "nonspec", reason)


def _attack(**fields: str) -> dict[str, str]:
    args = {"name": '"ok"', "description": '"one line"', "build": "_build", **fields}
    return {"attacks": f"[AttackSpec({', '.join(f'{k}={v}' for k, v in args.items())})]"}


def _dataset(**fields: str) -> dict[str, str]:
    args = {"name": '"ok"', "description": '"one line"', "load": "_build", **fields}
    return {"datasets": f"[DatasetSpec({', '.join(f'{k}={v}' for k, v in args.items())})]"}


LOWERCASE = "the name must be lowercase letters, digits"


@pytest.mark.parametrize(
    ("hooks", "reason"),
    [
        (_attack(name='"Bad"'), f"attack 'Bad': {LOWERCASE}"),
        (_attack(name='"fam:x"'), f"attack 'fam:x': {LOWERCASE}"),
        (_attack(name='"a b"'), LOWERCASE),
        (_attack(name='"all"'), "the name 'all' is a reserved selector"),
        (_attack(build="3"), "attack 'ok': build is not callable"),
        (_attack(defaults="{1: 2}"), "defaults must be a mapping with string keys"),
        (_attack(defaults='[("steps", 1)]'), "defaults must be a mapping with string keys"),
        (_attack(description='""'), "description must be a non-empty single line"),
        (_attack(description='"two\\nlines"'), "description must be a non-empty single line"),
        (_attack(version="1"), "version must be a string"),
        (_attack(default="'yes'"), "default must be True or False"),
        (
            {"victims": '[VictimSpec(name="v", description="d", build=_build, load="ckpt")]'},
            "victim 'v': load is neither None nor callable",
        ),
        (_dataset(load="None"), "dataset 'ok': load is not callable"),
        (_dataset(input_size="(0, 64)"), "input_size must be two positive ints"),
        (_dataset(input_size="(256,)"), "input_size must be two positive ints"),
        (_dataset(input_size="(256.0, 128)"), "input_size must be two positive ints"),
        (
            {"attacks": '[AttackSpec(name="dup", description="d", build=_build)] * 2'},
            "advbench_attacks returned 'dup' twice",
        ),
    ],
)
def test_a_bad_spec_leaves_its_package_out(
    install: Install, capsys, hooks: dict[str, str], reason: str
) -> None:
    install("advbench-badspec", "badspec", **hooks)
    _assert_left_out(capsys, "advbench-badspec", "badspec", reason)


def test_a_name_clash_with_a_builtin_keeps_the_builtin(install: Install, capsys) -> None:
    install("advbench-clash", "clash", attacks='[AttackSpec(name="pgd", description="mine", build=_build)]')
    _assert_left_out(
        capsys,
        "advbench-clash",
        "clash",
        "attack 'pgd' is also registered by built-in package advbench (entry point 'torchattacks'), which keeps it",
    )
    assert get_registry().get("attack", "pgd")[0].spec.description != "mine"


def test_a_name_clash_between_two_packages_leaves_both_out(install: Install, capsys) -> None:
    twin = '[VictimSpec(name="twin", description="d", build=_build)]'
    install("advbench-left", "left", victims=twin)
    install("advbench-right", "right", victims=twin)
    _assert_left_out(
        capsys, "advbench-left", "left", "victim 'twin' is also registered by package advbench-right"
    )
    _assert_left_out(
        capsys, "advbench-right", "right", "victim 'twin' is also registered by package advbench-left"
    )
    assert "twin" not in get_registry().names("victim")


def test_a_disabled_bad_package_is_simply_gone(install: Install, monkeypatch, capsys) -> None:
    install("advbench-raises", "raises", attacks="[][1]")
    monkeypatch.setenv("ADVBENCH_DISABLE_PLUGINS", "raises")
    assert get_registry().problems == [] and main(["plugins"]) == 0


def test_unknown_name_blames_the_package_that_failed_to_load(install: Install) -> None:
    install("advbench-raises", "raises", attacks="[][1]")
    registry = get_registry()
    with pytest.raises(AdvbenchError) as err:
        registry.select("attack", "pgdd,fgsm")
    message = str(err.value)
    assert message.startswith(
        "unknown attack 'pgdd'; package advbench-raises (entry point 'raises') failed to load "
        "(advbench_attacks raised IndexError: list index out of range) and may provide it."
    )
    assert "\n" not in message
    with pytest.raises(AdvbenchError, match="no attack matches 'raises-\\*'; package advbench-raises"):
        registry.select("attack", "raises-*")
    # It answered for victims (with raises-victims): an unknown victim is not its doing.
    with pytest.raises(AdvbenchError) as err:
        registry.get("victim", "resnet10")
    assert "advbench-raises" not in str(err.value) and "Did you mean resnet10t" in str(err.value)


def test_unknown_name_says_when_a_left_out_package_declared_it(install: Install) -> None:
    install("advbench-clash", "clash", attacks='[AttackSpec(name="pgd", description="mine", build=_build)]')
    with pytest.raises(AdvbenchError) as err:
        get_registry().get("victim", "clash-victims")
    message = str(err.value)
    assert "package advbench-clash (entry point 'clash') failed to load" in message
    assert "and provides it" in message and "Did you mean" not in message


def test_disable_plugins_rejects_unknown_names(monkeypatch, capsys) -> None:
    monkeypatch.setenv("ADVBENCH_DISABLE_PLUGINS", "example,nope")
    with pytest.raises(AdvbenchError) as err:
        discover()
    message = str(err.value)
    assert message.startswith("ADVBENCH_DISABLE_PLUGINS names no entry point called nope; ")
    assert "\n" not in message
    assert "known entry points: " in message and {"timm", "misranking", "example"} <= set(
        message.split("known entry points: ")[1].split(", ")
    )
    get_registry.cache_clear()
    assert main(["plugins"]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and "ADVBENCH_DISABLE_PLUGINS" in err_lines[0] and "nope" in err_lines[0]
