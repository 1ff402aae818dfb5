"""Hyperparameters: one parser for every algorithm's frozen dataclass of settings.

`marllbd train --hyper NAME=VALUE` gives strings; the Python API gives values.
`parse(cls, pairs)` turns either into an instance of `cls`, converting each
string to the type its field is annotated with (int, float, bool, str, an
optional of those, or a tuple of floats written "1,1.5,2"), and names the key
and the valid keys or the expected type when something does not fit.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from marllbd.training.errors import TrainingError

T = TypeVar("T")

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse(cls: type[T], pairs: Iterable[tuple[str, Any]], *, algorithm: str) -> T:
    """An instance of the dataclass `cls` with `pairs` overriding its defaults.

    Unknown names, unparsable values and values the class's own checks refuse
    are TrainingErrors that name the key (and, for unknown keys, the valid ones).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    given: dict[str, Any] = {}
    for name, value in pairs:
        if name not in fields:
            raise TrainingError(
                f"hyper.{name}: unknown {algorithm} hyperparameter; valid: {', '.join(fields)}"
            )
        given[name] = convert(hints[name], value, f"hyper.{name}")
    try:
        return cls(**given)
    except (TypeError, ValueError) as exc:
        raise TrainingError(str(exc)) from None


def convert(annotation: Any, value: Any, key: str) -> Any:
    """`value` (a CLI string or a Python value) as the type `annotation` names."""
    options = _options(annotation)
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        if type(None) in options:
            return None
        if value is None or str not in options:  # "none" is a value of a text field
            raise TrainingError(f"{key}: expected {_describe(options)}, got {value!r}")
    for option in (o for o in options if o is not type(None)):
        try:
            return _as(option, value)
        except (TypeError, ValueError):
            continue  # the next option of a union, else the error below
    raise TrainingError(f"{key}: expected {_describe(options)}, got {value!r}")


def _options(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _as(option: Any, value: Any) -> Any:
    origin = typing.get_origin(option)
    if origin is tuple:
        (item, *_rest) = typing.get_args(option)
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(_as(item, v.strip() if isinstance(v, str) else v) for v in items)
    if option is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError(value)
    if option is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if option is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if option is str:
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    raise TypeError(f"unsupported hyperparameter type {option!r}")


def _describe(options: tuple[Any, ...]) -> str:
    names = []
    for o in options:
        if o is type(None):
            names.append("none")
        elif typing.get_origin(o) is tuple:
            names.append("a comma-separated list of numbers")
        else:
            names.append({bool: "true/false", int: "an integer", float: "a number"}.get(o, "text"))
    return " or ".join(names)
