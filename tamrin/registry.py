"""One registry shape for every named part: models, datasets, metrics handlers, callbacks, optimizers, schedulers.

A `Registry` maps names to classes (or factories). Registering is explicit (a decorator or a call)
and loading never imports what a file names: a config's `name` is looked up among the entries that
code already imported registered. One rule for a repeated name, everywhere:

- the same object, or the same class re-imported (same module and qualified name), replaces itself
  silently (a module reloaded in a notebook);
- any other object under a taken name is a `ValueError` naming both, unless `replace=True` says
  that replacing it is meant (then it is replaced, and nothing is said).

Unknown names are a `ConfigError` that lists the registered names and suggests a close one.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from omegaconf import OmegaConf

from tamrin.configs import Config, ConfigError, suggest

__all__ = ["Registry", "config_name_default", "load_registered_config"]

T = TypeVar("T")
EntryT = TypeVar("EntryT")
ConfigT = TypeVar("ConfigT", bound=Config)


def _same_definition(a: Any, b: Any) -> bool:
    """True when `a` and `b` are one object or one definition imported twice."""
    if a is b:
        return True
    return getattr(a, "__module__", None) == getattr(b, "__module__", object()) and getattr(
        a, "__qualname__", None
    ) == getattr(b, "__qualname__", object())


class Registry(Generic[T]):
    """Names to entries of one kind (`kind` names them in messages: "model", "dataset", ...).

    Args:
        kind: what an entry is, for messages ("model", "callback", ...).
        builtin_modules: modules imported on the first lookup so their entries are registered
            (built-ins that would otherwise make an import cycle or a slow import).
        hint: a sentence appended to the unknown-name error (how to register one).
    """

    def __init__(self, kind: str, *, builtin_modules: tuple[str, ...] = (), hint: str = "") -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._builtin_modules = builtin_modules
        self._builtins_loaded = not builtin_modules
        self._hint = hint

    # -- registering -----------------------------------------------------------------------------
    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Register `entry` under `name` (see the module docstring for the repeated-name rule).

        Raises:
            TypeError: `name` is not a non-empty string.
            ValueError: `name` is taken by another entry and `replace` is False.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"A {self.kind} must be registered under a non-empty string, got {name!r}.")
        existing = self._entries.get(name)
        if existing is not None and not replace and not _same_definition(existing, entry):
            raise ValueError(
                f"{self.kind.capitalize()} {name!r} is already registered to {_describe(existing)}; "
                f"pick another name, or pass replace=True to replace it with {_describe(entry)}."
            )
        self._entries[name] = entry
        return entry

    def register(self, name: str, *, replace: bool = False) -> Callable[[EntryT], EntryT]:
        """Decorator form of `add`: `@registry.register("name")`."""

        def decorator(entry: EntryT) -> EntryT:
            # An EntryT is meant to be a T (e.g. a Model subclass in a Registry[type[Model]]), but typing cannot
            # bound a method's TypeVar by the class's; the decorator returns `entry` with its own, narrower type.
            self.add(name, entry, replace=replace)  # type: ignore[arg-type]
            return entry

        return decorator

    def remove(self, name: str) -> T | None:
        """Unregister `name` and return its entry (None if nothing was registered under it).

        For tests and notebooks that register an entry for a while and must leave the registry as
        they found it.
        """
        return self._entries.pop(name, None)

    # -- looking up ------------------------------------------------------------------------------
    def get(self, name: Any) -> T:
        """The entry registered under `name`.

        Raises:
            ConfigError: nothing is registered under `name` (lists the names, suggests a close one).
        """
        entries = self._loaded()
        entry = entries.get(name) if isinstance(name, str) else None
        if entry is None:
            shown = ", ".join(repr(n) for n in sorted(entries)) or "(none)"
            close = suggest(name, entries) if isinstance(name, str) else ""
            message = f"Unknown {self.kind} name {name!r}. Registered {self.kind}s: {shown}.{close}"
            raise ConfigError(f"{message} {self._hint}".rstrip())
        return entry

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._loaded())

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._loaded().items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._loaded()

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._loaded())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

    def _loaded(self) -> dict[str, T]:
        """The entries, after importing the built-in modules once (they register on import)."""
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)
        return self._entries


def _describe(entry: Any) -> str:
    module, qualname = getattr(entry, "__module__", None), getattr(entry, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else repr(entry)


def load_registered_config(
    cls: type[ConfigT],
    registry: Registry[Any],
    path: str | os.PathLike,
    overrides: Any = None,
    *,
    root: type[Config],
    filename: str | None = None,
    revision: str | None = None,
) -> ConfigT:
    """Load a config file as the config class of the entry registered under the file's `name`.

    What `ModelConfig.load` and `DatasetConfig.load` do: `root.load(path)` returns e.g. a
    `CRNNConfig`, and `CRNNConfig.load(path)` also checks that the file holds one. The file's
    `name` is looked up in `registry` (whose entries carry a `config_class`); nothing it names is
    imported.

    Args:
        cls: the config class `load` was called on (`root` or one of its subclasses).
        registry: the registry whose entries the file may name.
        path, overrides, filename, revision: as `Config.load`.
        root: the base config class of the registry (named in the error that suggests the fix).

    Raises:
        ConfigError: the file is unreadable, has no string `name`, names nothing registered, or
            names an entry whose config class is not a `cls`.
    """
    yaml_path = cls._locate(path, filename or cls.config_filename, revision)
    try:
        raw = OmegaConf.to_container(OmegaConf.load(yaml_path), resolve=True)
    except Exception as err:  # noqa: BLE001 - any parse failure becomes one clear ConfigError
        raise ConfigError(f"Could not read {cls.__name__} from {yaml_path}: {err}") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ConfigError(f"{yaml_path} must be a mapping with a string `name` naming a registered {registry.kind}.")
    config_class: type[Config] = registry.get(raw["name"]).config_class
    if not issubclass(config_class, cls):
        raise ConfigError(
            f"{yaml_path} holds a {config_class.__name__} (`name={raw['name']!r}`), not a {cls.__name__}. "
            f"Load it with {root.__name__}.load or {config_class.__name__}.load."
        )
    return config_class._read_yaml(yaml_path, overrides)  # not `load`: `cls.load` is the override that called us


def config_name_default(config_class: type[Config]) -> str:
    """The default of `name` in a config class: what a model or dataset registered with it must be called."""
    for field in dataclasses.fields(config_class):
        if field.name == "name":
            return field.default if isinstance(field.default, str) else ""
    return ""
