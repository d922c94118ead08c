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

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from tamrin.configs import ConfigError, suggest

__all__ = ["Registry"]

T = TypeVar("T")
EntryT = TypeVar("EntryT")


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
            self.add(name, entry, replace=replace)  # type: ignore[arg-type]
            return entry

        return decorator

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
