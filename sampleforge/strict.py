"""Typed, flat, strict configs: dataclasses that refuse unknown keys."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config names an unknown key or holds a value of the wrong type."""


def require_at_least(section: str, obj: Any, names: tuple[str, ...], minimum: float = 1) -> None:
    """ConfigError naming ``section.name`` for the first of ``obj``'s fields ``names`` below ``minimum`` (or NaN)."""
    for name in names:
        value = getattr(obj, name)
        if not value >= minimum:
            raise ConfigError(f"{section}.{name} must be >= {minimum}, got {value}")


def require_finite(section: str, obj: Any) -> None:
    """ConfigError naming ``section.name`` for the first float field of dataclass ``obj`` (or float in a list or
    tuple field) that is NaN or infinite: JSON files may spell them ``NaN`` and ``Infinity``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(x, float) and not math.isfinite(x) for x in items):
            raise ConfigError(f"{section}.{f.name} must be a finite number, got {value}")


def require_sizes(section: str, name: str, sizes: list[int]) -> None:
    """ConfigError unless ``sizes`` (channels per level) is a non-empty list of positive integers."""
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"{section}.{name} must be a non-empty list of positive sizes, got {sizes}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError naming them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (valid keys: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:  # a value its __post_init__ refuses
        raise ConfigError(located(where, str(exc))) from None


def located(where: str, message: str) -> str:
    """``message``, a section's own error (``"train.lr: must be > 0"``, ``"unet.channels must be ..."``), placed
    at ``where``, the section's place in its file: its leading section name becomes ``where`` when ``where``'s
    path holds that name (``"f.json: train.vocoder"`` + ``"train.lr: ..."`` -> ``"f.json: train.vocoder.lr:
    ..."``; ``"f.json: model.unet"`` + ``"unet.channels ..."`` -> ``"f.json: model.unet.channels ..."``), else
    ``where`` goes before it."""
    if message.startswith(where):
        return message
    path = where.rpartition(": ")[2]
    head = re.match(r"(\w+)(?=[.:])", message)
    if head and head.group(1) in path.split("."):
        return where + message[head.end():]
    return f"{where}: {message}"


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [arg for arg in args if arg is not type(None)]
        if len(others) == 1:  # X | None: X's own message ("vocoder.dim must be >= 1"), not "does not match"
            return _coerce(others[0], value, where)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        key_type, value_type = typing.get_args(tp) or (Any, Any)
        return {_coerce(key_type, k, where): _coerce(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number):  # JSON's NaN and Infinity pass every range check written as x < limit
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass → plain JSON-able dict (tuples become lists)."""
    return typing.cast(dict[str, Any], _plain(dataclasses.asdict(obj)))


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
