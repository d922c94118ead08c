"""The generic `tamrin.registry.Registry`: the repeated-name rule, unknown names, lazy built-ins."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tamrin.configs import ConfigError
from tamrin.registry import Registry


class Gear:
    pass


class Wheel:
    pass


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for throwaway modules; the modules it holds are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for path in tmp_path.glob("*.py"):
        sys.modules.pop(path.stem, None)


# -- the repeated-name rule ----------------------------------------------------------------------------
def test_registering_the_same_object_again_is_silent() -> None:
    registry: Registry[type] = Registry("part")
    registry.add("gear", Gear)
    registry.add("gear", Gear)
    assert registry.get("gear") is Gear


def test_a_reimported_class_replaces_its_old_definition_silently(module_dir: Path) -> None:
    (module_dir / "reloaded_parts.py").write_text("class Sprocket:\n    pass\n")
    module = importlib.import_module("reloaded_parts")
    registry: Registry[type] = Registry("part")
    old = registry.add("sprocket", module.Sprocket)
    new = importlib.reload(module).Sprocket  # what a notebook does: a new class, same module and name
    assert new is not old
    registry.add("sprocket", new)
    assert registry.get("sprocket") is new


def test_another_class_under_a_taken_name_is_an_error_naming_both() -> None:
    registry: Registry[type] = Registry("part")
    registry.add("gear", Gear)
    gear, wheel = (re.escape(f"{cls.__module__}.{cls.__qualname__}") for cls in (Gear, Wheel))
    with pytest.raises(
        ValueError,
        match=rf"Part 'gear' is already registered to {gear}; pick another name, or pass "
        rf"replace=True to replace it with {wheel}\.",
    ):
        registry.add("gear", Wheel)
    assert registry.get("gear") is Gear


def test_replace_true_replaces_another_class() -> None:
    registry: Registry[type] = Registry("part")
    registry.add("gear", Gear)
    registry.add("gear", Wheel, replace=True)
    assert registry.get("gear") is Wheel


def test_the_decorator_follows_the_same_rule_and_returns_the_class() -> None:
    registry: Registry[type] = Registry("part")
    assert registry.register("gear")(Gear) is Gear
    with pytest.raises(ValueError, match=re.escape(f"already registered to {Gear.__module__}.Gear")):
        registry.register("gear")(Wheel)


def test_a_name_must_be_a_non_empty_string() -> None:
    registry: Registry[type] = Registry("part")
    with pytest.raises(TypeError, match="A part must be registered under a non-empty string, got ''"):
        registry.add("", Gear)


# -- unknown names -------------------------------------------------------------------------------------
def test_an_unknown_name_lists_the_names_and_suggests_a_close_one() -> None:
    registry: Registry[type] = Registry("part", hint="Register one with `@PARTS.register(name)`.")
    registry.add("gear", Gear)
    registry.add("wheel", Wheel)
    with pytest.raises(
        ConfigError,
        match=r"Unknown part name 'wheal'\. Registered parts: 'gear', 'wheel'\. Did you mean `wheel`\? "
        r"Register one with `@PARTS\.register\(name\)`\.",
    ):
        registry.get("wheal")


def test_an_unknown_name_with_nothing_close_suggests_nothing() -> None:
    registry: Registry[type] = Registry("part")
    registry.add("gear", Gear)
    with pytest.raises(ConfigError, match=r"^Unknown part name 'zzz'\. Registered parts: 'gear'\.$"):
        registry.get("zzz")


def test_a_name_that_is_not_a_string_is_unknown() -> None:
    registry: Registry[type] = Registry("part")
    with pytest.raises(ConfigError, match=r"Unknown part name 3\. Registered parts: \(none\)\."):
        registry.get(3)


def test_remove_gives_back_the_entry_or_none() -> None:
    registry: Registry[type] = Registry("part")
    registry.add("gear", Gear)
    assert registry.remove("gear") is Gear
    assert registry.remove("gear") is None
    assert "gear" not in registry


# -- built-in modules ----------------------------------------------------------------------------------
def test_builtin_modules_are_imported_on_the_first_lookup_only(module_dir: Path) -> None:
    (module_dir / "lazy_home.py").write_text(
        "from tamrin.registry import Registry\nPARTS = Registry('part', builtin_modules=('lazy_builtins',))\n"
    )
    (module_dir / "lazy_builtins.py").write_text(
        "from lazy_home import PARTS\n\n@PARTS.register('cog')\nclass Cog:\n    pass\n"
    )
    registry = importlib.import_module("lazy_home").PARTS
    assert "lazy_builtins" not in sys.modules  # building the registry imports nothing
    assert registry.get("cog").__name__ == "Cog"
    assert "lazy_builtins" in sys.modules
    del sys.modules["lazy_builtins"]
    assert registry.names() == ["cog"]
    assert "lazy_builtins" not in sys.modules  # imported once, not on every lookup
