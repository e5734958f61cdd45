"""Small validation helpers shared by the management configs (errors name the field and the value)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

from tradebot.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


class Section(Protocol):
    """A config section class: built from a sub-mapping over the base's section (``_FromDict``)."""

    def from_dict(self, data: dict[str, Any], *, path: str | None = ..., base: Any = ...) -> object: ...


def fail(field: str, value: object, requirement: str) -> NoReturn:
    # Raise the uniform "<field> must <requirement>, was <value!r>" error.
    raise ConfigError(f"{field} must {requirement}, was {value!r}")


def positive(field: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        fail(field, value, "be a finite number > 0")


def non_negative(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        fail(field, value, "be a finite number >= 0")


def fraction(field: str, value: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > 1 or value < 0 or (value == 0 and not allow_zero):
        fail(field, value, "be a fraction in [0, 1]" if allow_zero else "be a fraction in (0, 1]")


def integer(field: str, value: object, *, minimum: int) -> int:
    # Return the value, now known to be an int (callers may ignore it).
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        fail(field, value, f"be an integer >= {minimum}")
    return value


def boolean(field: str, value: bool) -> None:
    if not isinstance(value, bool):
        fail(field, value, "be true or false")


def build(
    cls: type[T], data: Any, path: str, nested: Mapping[str, Section] | None = None, base: T | None = None
) -> T:
    """Build the frozen dataclass ``cls`` from a mapping, rejecting unknown keys by name.

    Lists become tuples; keys listed in ``nested`` are built recursively from sub-mappings. With
    ``base``, the mapping overrides ``base``'s fields (sub-mappings override its sections).
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping, was {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        sub = (nested or {}).get(key)
        if sub is not None:
            sub_base = getattr(base, key) if base is not None else None
            kwargs[key] = (
                sub.from_dict(value, path=f"{path}.{key}", base=sub_base)
                if isinstance(value, dict)
                else value
            )
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
