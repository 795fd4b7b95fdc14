"""Typed, frozen settings: one object per process.

Each role declares a frozen dataclass and registers it under a TOML section name.
:func:`load` builds it from, in increasing precedence:

1. the dataclass defaults;
2. the section of a TOML file (``--config`` or ``SAMENLOOP_CONFIG``);
3. ``SAMENLOOP_<SECTION>_<FIELD>`` environment variables;
4. command-line flags (``overrides``; ``None`` means "not given").

Unknown sections, unknown keys and unknown ``SAMENLOOP_<SECTION>_*`` variables are
errors, as are values of the wrong type and missing required settings.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from exchange.errors import ConfigError

T = TypeVar("T")
_SECTIONS: dict[str, type[Any]] = {}
CONFIG_ENV = "SAMENLOOP_CONFIG"


def section(name: str) -> Any:
    """Class decorator: register a settings dataclass under a TOML section."""

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError("settings must be a frozen dataclass")
        _SECTIONS[name] = cls
        cls.__samenloop_section__ = name  # type: ignore[attr-defined]
        return cls

    return register


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or value == "":
            return None
        return _coerce(value, options[0], where)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where} must be true or false")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer")
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where} must be an integer") from exc
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where} must be a number") from exc
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string")
        return value
    if kind is Path:
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{where} must be a path")
        return Path(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list")
        (item,) = typing.get_args(kind)[:1]
        return tuple(_coerce(v, item, where) for v in value)
    raise TypeError(f"unsupported settings type {kind!r}")  # pragma: no cover


def read_file(path: Path) -> dict[str, Any]:
    """Parse a config file and reject unknown sections."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown section [{unknown[0]}]"
            f" (known: {', '.join(sorted(_SECTIONS))})"
        )
    return data


def load(
    cls: type[T],
    *,
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build the settings object of one section."""
    name: str = cls.__samenloop_section__  # type: ignore[attr-defined]
    env = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    if path is not None:
        table = read_file(path).get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: [{name}] must be a table")
        for key, value in table.items():
            if key not in fields:
                raise ConfigError(f"config file {path}: unknown key '{key}' in [{name}]")
            values[key] = value
            sources[key] = f"'{key}' in [{name}] of {path}"

    prefix = f"SAMENLOOP_{name.upper()}_"
    for var, value in env.items():
        if not var.startswith(prefix):
            continue
        key = var[len(prefix):].lower()
        if key not in fields:
            raise ConfigError(f"unknown environment variable {var}")
        values[key] = value
        sources[key] = var

    for key, value in (overrides or {}).items():
        if key not in fields:
            raise TypeError(f"unknown override {key!r} for [{name}]")
        if value is not None:
            values[key] = value
            sources[key] = f"--{key.replace('_', '-')}"

    kwargs = {k: _coerce(v, hints[k], sources[k]) for k, v in values.items()}
    missing = [
        k for k, f in fields.items()
        if k not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(
            f"missing setting '{missing[0]}' for [{name}]: set it in the config file, "
            f"as {prefix}{missing[0].upper()} or with --{missing[0].replace('_', '-')}"
        )
    return cls(**kwargs)
