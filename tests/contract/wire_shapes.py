"""Shape comparison of JSON answers: same keys, same value types, field by field (imported as a plain
module by the simulator-fidelity contract tests).

A shape keeps what a decoder depends on and drops the values: objects become their keys with the
shape of each value, arrays the shape of their elements, scalars their JSON type (``string``,
``number``, ``bool``; ``null`` matches anything, since a recorded ``null`` says nothing about the
type). Arrays of scalars of one type are ``[type]``; arrays of scalars of several types (a Binance
kline row) are compared position by position.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(f"not a JSON value: {value!r}")


def shape_differences(sim: Any, recorded: Any, *, path: str = "$", optional: Iterable[str] = ()) -> list[str]:
    """Return every difference between the shape of ``sim`` and of ``recorded``, each naming its path.

    ``optional`` names keys the documentation marks as conditional (present only in some answers):
    such a key may be missing on either side, but when both have it its shapes must agree.
    """
    optional = frozenset(optional)
    if recorded is None:
        return []
    if isinstance(recorded, dict):
        if not isinstance(sim, dict):
            return [f"{path}: object expected, simulator sent {_describe(sim)}"]
        if not recorded:  # an empty recorded object ({} in a docs template) constrains nothing
            return []
        out = [f"{path}.{k}: missing (recorded {_describe(recorded[k])})"
               for k in recorded if k not in sim and k not in optional]  # fmt: skip
        out += [f"{path}.{k}: not in the recorded answer (simulator sent {_describe(sim[k])})"
                for k in sim if k not in recorded and k not in optional]  # fmt: skip
        for k in recorded.keys() & sim.keys():
            out += shape_differences(sim[k], recorded[k], path=f"{path}.{k}", optional=optional)
        return out
    if isinstance(recorded, list):
        if not isinstance(sim, list):
            return [f"{path}: array expected, simulator sent {_describe(sim)}"]
        if not recorded or not sim:  # nothing to compare an element with
            return []
        if all(not isinstance(v, dict | list) for v in recorded):
            kinds = {_scalar(v) for v in recorded if v is not None}
            if len(kinds) > 1:  # a positional array such as a kline row
                if len(sim) != len(recorded):
                    return [f"{path}: {len(recorded)} positions expected, simulator sent {len(sim)}"]
                return [d for i, (s, r) in enumerate(zip(sim, recorded, strict=True))
                        for d in shape_differences(s, r, path=f"{path}[{i}]", optional=optional)]  # fmt: skip
        return [
            d
            for item in sim[:3]
            for d in shape_differences(item, recorded[0], path=f"{path}[]", optional=optional)
        ]
    if sim is None:
        return [f"{path}: {_scalar(recorded)} expected, simulator sent null"]
    if isinstance(sim, dict | list) or _scalar(sim) != _scalar(recorded):
        return [
            f"{path}: {_scalar(recorded)} expected (recorded {recorded!r}), simulator sent {_describe(sim)}"
        ]
    return []


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"{_scalar(value)} {value!r}"


def assert_same_shape(sim: Any, recorded: Any, *, what: str, optional: Iterable[str] = ()) -> None:
    """Fail with every difference (path, expected and sent type) when the shapes differ."""
    diffs = shape_differences(sim, recorded, optional=optional)
    assert not diffs, f"{what}: the simulator's answer differs from the recorded one:\n  " + "\n  ".join(
        diffs
    )
