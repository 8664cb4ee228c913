"""Config dataclasses to and from their plain JSON form.

:func:`build_config` builds any frozen config dataclass from nested plain values, converting
lists to tuples and whole floats to ints, and turns unknown keys and wrong types into one
:class:`ConfigError` sentence that names the key. :func:`to_plain` goes back. Front ends
speak in *leaf* names (``cutn`` rather than ``cutouts.cutn``: CLI flags and UI widgets are
named after leaves), so :func:`field_paths`, :func:`nest` and :func:`flatten` translate.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from generator.errors import ConfigError


def build_config(cls: type, data: Mapping[str, Any]) -> Any:
    """Build the config dataclass ``cls`` from its plain (nested) form, with its checks.

    Raises:
        ConfigError: an unknown key (with the closest known one), a wrong type, or a value
            the dataclass refuses.
    """
    return _build(cls, data, "", root=cls)


def to_plain(value: Any) -> Any:
    """A config dataclass (or a value inside one) as plain JSON: dicts, lists, numbers, text."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    return value


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge plain config dicts: nested mappings merge, everything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def field_paths(cls: type, prefix: str = "") -> dict[str, str]:
    """Leaf field name -> dotted path (``cutn`` -> ``cutouts.cutn``), for flags and widgets."""
    paths: dict[str, str] = {}
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint):
            paths.update(field_paths(hint, f"{prefix}{item.name}."))
        else:
            paths[item.name] = f"{prefix}{item.name}"
    return paths


def leaf_hints(cls: type) -> dict[str, Any]:
    """Leaf field name -> its type hint."""
    hints: dict[str, Any] = {}
    types_ = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        hint = types_[item.name]
        if dataclasses.is_dataclass(hint):
            hints.update(leaf_hints(hint))
        else:
            hints[item.name] = hint
    return hints


def nest(cls: type, flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"cutn": 8}`` -> ``{"cutouts": {"cutn": 8}}``; names that are not leaves of ``cls`` are left out."""
    paths = field_paths(cls)
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        if name not in paths:
            continue
        node = nested
        *parents, leaf = paths[name].split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def flatten(cls: type, plain: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`nest` for a complete plain config: leaf name -> value."""
    flat: dict[str, Any] = {}
    for leaf, path in field_paths(cls).items():
        node: Any = plain
        for part in path.split("."):
            node = node[part]
        flat[leaf] = node
    return flat


def _build(cls: type, data: Any, path: str, root: type) -> Any:
    where = path.rstrip(".") or "the config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, not {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(_unknown_key_message(cls, path, str(key), root))
    values = {key: _convert(hints[key], data[key], f"{path}{key}", root) for key in data}
    return cls(**values)


def _unknown_key_message(cls: type, path: str, key: str, root: type) -> str:
    leaf_paths = field_paths(root)
    if key in leaf_paths and not path:
        hint = f"did you mean {leaf_paths[key]}? "
    else:
        close = difflib.get_close_matches(key, [f.name for f in dataclasses.fields(cls)], n=1)
        hint = f"did you mean {path}{close[0]}? " if close else ""
    return f"unknown config key {path}{key}; {hint}see `python -m generator presets NAME` for the keys."


def _convert(hint: Any, value: Any, path: str, root: type) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            if type(None) in typing.get_args(hint):
                return None
            raise ConfigError(f"config key {path} cannot be empty.")
        return _convert(options[0], value, path, root)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{path}.", root)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {path} must be a list, not {value!r}.")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]", root) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key {path} must have {len(args)} items, not {len(value)}.")
        return tuple(_convert(a, v, f"{path}[{i}]", root) for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {path} must be true or false, not {value!r}.")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {path} must be a whole number, not {value!r}.")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ConfigError(f"config key {path} must be a finite number, not {value!r}.")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {path} must be text, not {value!r}.")
    raise TypeError(f"unsupported config type {hint!r} at {path}")  # a bug, not user input
