"""The `Config` base: omegaconf-backed dataclasses with strict validation.

Every configuration object in tamrin (TrainerConfig, ModelConfig, DatasetConfig, MetricConfig, ...)
is a dataclass deriving from `Config`. omegaconf supplies YAML loading, `key=value` dotlist
overrides, interpolation (`${...}`) and type checking; this module adds what omegaconf does not:
one `ConfigError` that names the field, the bad value and what would be valid, "did you mean"
suggestions for unknown keys, and per-class range/choice validation that runs on every
construction and every load.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf, SCMode
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException

__all__ = [
    "Config",
    "ConfigError",
    "atomic_write_text",
    "check_choice",
    "check_range",
    "merge_dict_configs",
    "plain_dict",
    "suggest",
]

ConfigT = TypeVar("ConfigT", bound="Config")


class ConfigError(ValueError):
    """A configuration is invalid. The message names each bad field, its value and the fix."""

    def __init__(self, problems: str | Sequence[str], config_name: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1 and config_name is None:
            message = self.problems[0]
        else:
            header = f"Invalid {config_name or 'config'}"
            message = header + ":\n" + "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(message)


def suggest(name: str, valid: Iterable[str]) -> str:
    """Return ' Did you mean `x`?' for the closest valid name, or '' when nothing is close.

    Close means a typo (similarity >= 0.75) or an abbreviation (the start of one valid name), not a
    look-alike that means something else ('sequential' is not 'exponential').
    """
    valid = [str(v) for v in valid]
    matches = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.75)
    if not matches:
        matches = [v for v in valid if len(str(name)) >= 3 and v.startswith(str(name))][:2]
        matches = matches if len(matches) == 1 else []
    return f" Did you mean `{matches[0]}`?" if matches else ""


def check_choice(field: str, value: Any, choices: Iterable[Any], *, optional: bool = False) -> str | None:
    """Return a problem message when `value` is not one of `choices` (None allowed if optional)."""
    choices = list(choices)
    if value is None and optional:
        return None
    if value in choices:
        return None
    shown = ", ".join(repr(choice) for choice in choices)
    hint = suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
    return f"`{field}={value!r}` is not a valid choice. Valid choices: {shown}.{hint}"


def check_range(
    field: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    optional: bool = False,
) -> str | None:
    """Return a problem message when a number lies outside [minimum, maximum]."""
    if value is None:
        return None if optional else f"`{field}` is required (got None)."
    low_ok = minimum is None or (value > minimum if exclusive_minimum else value >= minimum)
    high_ok = maximum is None or value <= maximum
    if low_ok and high_ok:
        return None
    low = "" if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum}"
    high = "" if maximum is None else f"<= {maximum}"
    bounds = " and ".join(part for part in (low, high) if part)
    return f"`{field}={value!r}` is out of range: it must be {bounds}."


class _ConfigMeta(type):
    """Turns unknown constructor keywords into a ConfigError with a "did you mean" hint."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if dataclasses.is_dataclass(cls):
            names = [f.name for f in dataclasses.fields(cls) if f.init]
            unknown = [key for key in kwargs if key not in names]
            if unknown:
                raise ConfigError(
                    [_unknown_key_message(key, cls.__name__, names) for key in unknown],
                    config_name=cls.__name__ if len(unknown) > 1 else None,
                )
        return super().__call__(*args, **kwargs)


def _unknown_key_message(key: str, class_name: str, valid: Sequence[str]) -> str:
    return f"Unknown key `{key}` for {class_name}.{suggest(key, valid)} Valid keys: {', '.join(valid)}."


@dataclasses.dataclass
class Config(metaclass=_ConfigMeta):
    """Base of every tamrin config: a dataclass that omegaconf type-checks and `validate` checks.

    Subclasses are plain dataclasses; they override `validate()` to return a list of problems
    (range and choice checks). Construction, `load` and `merge` all run the type check and
    `validate`, and raise one `ConfigError` that lists every problem at once.
    """

    config_filename: ClassVar[str] = "config.yaml"

    def __post_init__(self) -> None:
        self._coerce_types()
        problems = [problem for problem in self.validate() if problem]
        if problems:
            raise ConfigError(problems, config_name=type(self).__name__)

    def validate(self) -> list[str | None]:
        """Return the problems with this config (None entries are ignored). Override to add checks."""
        return []

    # -- construction ------------------------------------------------------------------------
    def _coerce_types(self) -> None:
        """Type-check every field with omegaconf and store the converted values (`"3"` -> 3)."""
        try:
            node = OmegaConf.structured(self)
        except OmegaConfBaseException as err:
            raise _as_config_error(err, type(self)) from None
        plain = plain_dict(node, resolve=False)
        for field in dataclasses.fields(self):
            if not isinstance(getattr(self, field.name), Config):
                object.__setattr__(self, field.name, plain[field.name])

    @classmethod
    def from_dict(cls: type[ConfigT], data: Mapping[str, Any] | DictConfig) -> ConfigT:
        """Build a config from a mapping (interpolations resolved); unknown keys fail clearly."""
        try:
            plain: object = OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else data
        except InterpolationResolutionError as err:
            raise interpolation_error(err) from None
        if not isinstance(plain, Mapping):  # e.g. a DictConfig holding None converts to None
            raise ConfigError(f"A {cls.__name__} must be a mapping of keys to values, got {type(plain).__name__}.")
        cls._check_keys(plain)
        try:
            config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), plain))
        except OmegaConfBaseException as err:
            raise _as_config_error(err, cls) from None
        assert isinstance(config, cls), "to_object of a structured node of `cls` is a `cls`"  # narrows the stubs' union
        return config

    @classmethod
    def _check_keys(cls, data: Mapping[Any, Any]) -> None:
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        unknown = [str(key) for key in data if key not in names]
        if unknown:
            raise ConfigError(
                [_unknown_key_message(key, cls.__name__, names) for key in unknown],
                config_name=cls.__name__ if len(unknown) > 1 else None,
            )

    @classmethod
    def load(
        cls: type[ConfigT],
        path: str | os.PathLike,
        overrides: Mapping[str, Any] | Sequence[str] | None = None,
        *,
        filename: str | None = None,
        revision: str | None = None,
    ) -> ConfigT:
        """Load a config from a YAML file, or from a directory (or Hub repo) that holds one.

        Args:
            path: a YAML file, a directory holding `filename`, or a Hub repo id ("user/repo").
            overrides: a mapping or `key=value` dotlist strings applied on top of the file.
            filename: the YAML file inside a directory or repo; defaults to `cls.config_filename`.
            revision: the Hub revision (branch, tag or commit) when `path` is a repo id.

        Raises:
            ConfigError: the file is invalid; FileNotFoundError: nothing exists at `path`.
        """
        return cls._read_yaml(cls._locate(path, filename or cls.config_filename, revision), overrides)

    @classmethod
    def _read_yaml(
        cls: type[ConfigT], yaml_path: Path, overrides: Mapping[str, Any] | Sequence[str] | None = None
    ) -> ConfigT:
        """`load` of a located YAML file, as `cls` itself (a subclass's `load` may dispatch on the file's `name`)."""
        try:
            raw = OmegaConf.load(yaml_path)
        except (OSError, OmegaConfBaseException, ValueError, yaml.YAMLError) as err:  # YAMLError: e.g. a !!python tag
            raise ConfigError(f"Could not read {cls.__name__} from {yaml_path}: {err}") from err
        if not isinstance(raw, DictConfig):
            raise ConfigError(f"{yaml_path} must hold a mapping of keys to values, not a list.")
        if overrides:
            raw = merge_dict_configs(raw, _overrides_to_config(overrides))
        return cls.from_dict(raw)

    @staticmethod
    def _locate(path: str | os.PathLike, filename: str, revision: str | None) -> Path:
        local = Path(path)
        if local.is_file():
            return local
        if local.is_dir():
            candidate = local / filename
            if not candidate.is_file():
                raise FileNotFoundError(f"No {filename} in directory {local}.")
            return candidate
        from tamrin import hub  # huggingface_hub: ~0.1 s to import, needed only for the Hub

        if hub.is_repo_id(str(path)):
            return hub.download_file(str(path), filename, revision=revision)
        raise FileNotFoundError(f"No config file, directory or Hub repo id at {str(path)!r}.")

    # -- conversion and persistence ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-friendly dict of every field (nested configs become dicts)."""
        return plain_dict(OmegaConf.structured(self))

    def to_yaml(self) -> str:
        """The config as plain YAML, without Python object tags."""
        return OmegaConf.to_yaml(OmegaConf.create(self.to_dict()))

    def save(self, directory: str | os.PathLike, filename: str | None = None) -> Path:
        """Write the config as YAML into `directory` (atomically: a reader never sees half a file)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / (filename or self.config_filename)
        atomic_write_text(target, self.to_yaml())
        return target

    def merge(self: ConfigT, overrides: Mapping[str, Any] | Sequence[str]) -> ConfigT:
        """Return a new config with `overrides` (a mapping or `key=value` strings) applied."""
        merged = merge_dict_configs(OmegaConf.create(self.to_dict()), _overrides_to_config(overrides))
        return type(self).from_dict(merged)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        filename: str | None = None,
        commit_message: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        token: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Upload this config as `filename` to a Hub repo in one commit; returns the commit sha.

        The other arguments mean what they mean in `tamrin.hub.upload_folder`; nothing is deleted.
        """
        from tamrin import hub  # huggingface_hub: ~0.1 s to import, needed only for the Hub

        return hub.upload_saved(
            lambda folder: self.save(folder, filename),
            repo_id,
            commit_message=commit_message or f"Upload {type(self).__name__}",
            private=private,
            revision=revision,
            token=token,
            create_pr=create_pr,
        )


def plain_dict(node: DictConfig, *, resolve: bool = True) -> dict[str, Any]:
    """`OmegaConf.to_container(node)` for a mapping read by name: a config, a recipe, a manifest.

    omegaconf types the result as any container (a DictConfig holding None converts to None) keyed by
    any key type (str, int, Enum, ...); this checks both, so callers get the `dict[str, Any]` they index by name.

    Raises:
        ConfigError: the node holds no mapping, a top-level key is not a string (e.g. YAML's `1: x`), or
            an interpolation cannot be resolved (`${oc.env:UNSET}`).
    """
    try:
        plain = OmegaConf.to_container(node, resolve=resolve, structured_config_mode=SCMode.DICT)
    except InterpolationResolutionError as err:
        raise interpolation_error(err) from None
    if not isinstance(plain, dict):
        raise ConfigError(f"Expected a mapping of keys to values, got {type(plain).__name__}.")
    named: dict[str, Any] = {}
    for key, value in plain.items():
        if not isinstance(key, str):
            raise ConfigError(f"Key {key!r} must be a string (a field or section name), not a {type(key).__name__}.")
        named[key] = value
    return named


_UNSET_VARIABLE = re.compile(r"Environment variable '([^']*)' not found")


def interpolation_error(err: InterpolationResolutionError) -> ConfigError:
    """Name the key whose `${...}` cannot be resolved (an unset `${oc.env:VAR}`), not omegaconf's traceback."""
    key = getattr(err, "full_key", None) or "?"
    unset = _UNSET_VARIABLE.search(str(err))
    if unset:
        return ConfigError(
            f"`{key}` reads the environment variable {unset.group(1)!r}, which is not set: set it, or give "
            f"`{key}` a value (or a default: `${{oc.env:{unset.group(1)},<default>}}`)."
        )
    return ConfigError(f"`{key}` cannot be resolved: {str(err).splitlines()[0]}")


def merge_dict_configs(base: DictConfig, *overrides: DictConfig) -> DictConfig:
    """`OmegaConf.merge(base, *overrides)`, typed as what it returns for a DictConfig base: a DictConfig.

    omegaconf's stubs give merge one return type for every input (DictConfig, ListConfig or TupleConfig);
    the first argument decides which it is.
    """
    merged = OmegaConf.merge(base, *overrides)
    assert isinstance(merged, DictConfig), "omegaconf merges into the type of its first argument"
    return merged


def _overrides_to_config(overrides: Mapping[str, Any] | Sequence[str] | DictConfig) -> DictConfig:
    """Turn a mapping or a `key=value` dotlist (nested keys, lists, null) into a DictConfig."""
    if isinstance(overrides, DictConfig):
        return overrides
    if isinstance(overrides, Mapping):
        return OmegaConf.create(dict(overrides))
    bad = [item for item in overrides if not isinstance(item, str) or "=" not in item]
    if bad:
        raise ConfigError(f"Overrides must look like `key=value`; got {bad[0]!r}.")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"Could not parse overrides {list(overrides)}: {err}") from None


def _as_config_error(err: OmegaConfBaseException, cls: type) -> ConfigError:
    """Rephrase an omegaconf error so that it names the field, the value and the expected type."""
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    first_line = str(err).splitlines()[0]
    if "not in" in first_line and key is not None:
        return ConfigError(_unknown_key_message(str(key).split(".")[-1], cls.__name__, names))
    if key is not None:
        top = str(key).split(".")[0].split("[")[0]
        expected = _field_type(cls, top)
        value = getattr(err, "value", None) if hasattr(err, "value") else None
        shown = f"={value!r}" if value is not None else ""
        return ConfigError(f"`{key}{shown}` has the wrong type for {cls.__name__}: expected {expected}. ({first_line})")
    return ConfigError(f"Invalid {cls.__name__}: {first_line}")


def _field_type(cls: type, name: str) -> str:
    for field in dataclasses.fields(cls):
        if field.name == name:
            return str(field.type)
    return "a valid value"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a synced temporary file in the same folder, so no reader sees half of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
