"""Search spaces of ``tradebot optimize --space FILE.toml`` (issue 12 item 3).

One table per parameter under ``[params]``, keyed by the parameter's dotted path in the configuration
(list items by index, ``streams.0.fast`` = the first ``[[streams]]`` entry)::

    [base]
    config = "config/managed.toml"      # optional; relative paths are taken from the working directory

    [params."planner.band_fraction"]    # float: low/high, optional step, or log = true
    low = 0.01
    high = 0.10

    [params."streams.0.fast"]           # int: integer low/high, optional integer step
    low = 10
    high = 40
    step = 2

    [params."allocation.policy"]        # categorical: choices
    choices = ["pooled", "slots", "inverse_vol"]

    [params."management.trailing.distance_atr"]
    low = 0.5
    high = 4.0
    log = true

The kind of a range follows the field it sets: an integer field takes an int range, a float (or
``Decimal``) field a float range (integer bounds are read as floats), a bool or text field only
``choices``. :func:`load_space` refuses (``ConfigError`` naming the key and the value) an unknown key,
a list index the base config does not have, an empty or inverted range, ``step`` with ``log``, a type
that does not fit the field, and any range end or choice the settings themselves refuse: it builds
the settings at both ends of every range and at every choice (:func:`settings_for`), so the field's
own validation (pydantic bounds, the core configs' checks) decides, not a copy of it here.

Each parameter is checked alone against the base config; a combination that breaks a cross-field rule
(e.g. ``fast >= slow`` when both are searched) is refused by :func:`settings_for` for that trial.
A parameter of a rule the base config disables (``management.preset = "disabled"``) is accepted but
changes nothing.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeAlias

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import BaseTrial
from pydantic import BaseModel

from tradebot.app.research.overrides import apply, settings_for
from tradebot.app.settings import Settings, load_settings
from tradebot.core.management import ManagementConfig, RiskLimits
from tradebot.errors import ConfigError

__all__ = [
    "CategoricalParam",
    "Choice",
    "FloatParam",
    "IntParam",
    "Param",
    "SearchSpace",
    "apply",
    "distributions",
    "load_space",
    "parse_space",
    "settings_for",
    "suggest",
    "validate_space",
]

#: A categorical value Optuna can store.
Choice: TypeAlias = bool | int | float | str


@dataclass(frozen=True, slots=True, kw_only=True)
class IntParam:
    """An integer parameter: ``low, low + step, …, high`` (both ends included).

    Attributes
    ----------
    path
        Dotted configuration path, e.g. ``"streams.0.fast"``; also the Optuna parameter name.
    low, high
        Bounds, ``low < high``; ``high - low`` is a multiple of ``step``.
    step
        Spacing, ``>= 1``.
    log
        Sample on a log scale (``low >= 1``, ``step == 1``).
    """

    path: str
    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatParam:
    """A float parameter in ``[low, high]``, on a grid of ``step`` or on a log scale.

    Attributes
    ----------
    path
        Dotted configuration path, e.g. ``"planner.band_fraction"``; also the Optuna parameter name.
    low, high
        Finite bounds, ``low < high``; in the field's own units (fractions, ATR multiples, …).
    step
        Grid spacing (``high - low`` a multiple of it), or ``None`` for a continuous range.
    log
        Sample on a log scale (``low > 0``, no ``step``).
    """

    path: str
    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CategoricalParam:
    """A parameter taking one of ``choices`` (at least two, distinct, scalars)."""

    path: str
    choices: tuple[Choice, ...]


Param: TypeAlias = IntParam | FloatParam | CategoricalParam


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpace:
    """A parsed search space: the parameters in file order and the config file they start from.

    Attributes
    ----------
    params
        One entry per searched configuration path (paths unique).
    base_config
        ``[base] config`` of the file (``None``: the settings' own sources, as ``tradebot backtest``
        without ``--config``).
    """

    params: tuple[Param, ...]
    base_config: Path | None = None


# --- field types of the settings -------------------------------------------------------------------

_Kind = Literal["int", "float", "decimal", "bool", "str", "any"]
_SPEC_KEYS = frozenset({"low", "high", "step", "log", "choices"})
#: Settings fields that are free-form mappings, checked by a core config when settings are built.
_MAPPING_FIELDS: dict[str, type] = {"management": ManagementConfig, "risk": RiskLimits}
#: Keys of the management mapping that are not ManagementConfig fields (see ManagementConfig.from_dict).
_MANAGEMENT_EXTRA: dict[str, Any] = {"preset": str, "enabled": bool}


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _children(node: Any, part: str, path: str) -> Any:
    # The annotation of `part` below `node` (a model, dataclass or tuple annotation); ConfigError if none.
    origin = typing.get_origin(node)
    if origin is tuple:
        if not part.isdigit():
            raise ConfigError(f"space parameter {path!r}: {part!r} must be a list index (0, 1, …)")
        return typing.get_args(node)[0]
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(part)
        if field is None:
            raise ConfigError(
                f"space parameter {path!r}: unknown key {part!r}; allowed: {sorted(node.model_fields)}"
            )
        return field.annotation
    if isinstance(node, type) and dataclasses.is_dataclass(node):
        hints = typing.get_type_hints(node)
        if node is ManagementConfig:
            hints = {**hints, **_MANAGEMENT_EXTRA}
        if part not in hints:
            raise ConfigError(f"space parameter {path!r}: unknown key {part!r}; allowed: {sorted(hints)}")
        return hints[part]
    raise ConfigError(f"space parameter {path!r}: {part!r} is below a value, not a table")


def _field_kind(path: str) -> _Kind:
    # Resolve `path` in the Settings model to the kind of its leaf (a Literal is "str": pydantic checks it).
    parts = path.split(".")
    if not all(parts):
        raise ConfigError(f"space parameter {path!r}: a dotted path needs a name between every dot")
    if len(parts) == 1 and parts[0] in _MAPPING_FIELDS:
        raise ConfigError(f"space parameter {path!r}: is a table, name one of its keys")
    node: Any = Settings
    for depth, part in enumerate(parts):
        if depth == 1 and parts[0] in _MAPPING_FIELDS:
            node = _MAPPING_FIELDS[parts[0]]
        node = _unwrap_optional(_children(node, part, path))
    if typing.get_origin(node) is Literal:
        return "str"
    simple: dict[Any, _Kind] = {bool: "bool", int: "int", float: "float", Decimal: "decimal", str: "str"}
    if node in simple:
        return simple[node]
    if node is Any:
        return "any"
    raise ConfigError(f"space parameter {path!r}: is not a searchable value (a table, list or {node!r})")


# --- parsing ---------------------------------------------------------------------------------------


def _number(path: str, key: str, value: Any, *, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"space parameter {path!r}: {key} must be a number, was {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(
            f"space parameter {path!r}: {key} must be an integer (the field is one), was {value!r}"
        )
    if not math.isfinite(value):
        raise ConfigError(f"space parameter {path!r}: {key} must be finite, was {value!r}")
    return value


def _parse_choices(path: str, kind: _Kind, spec: Mapping[str, Any]) -> CategoricalParam:
    extra = sorted(set(spec) - {"choices"})
    if extra:
        raise ConfigError(f"space parameter {path!r}: choices cannot be combined with {extra}")
    choices = spec["choices"]
    if not isinstance(choices, list) or len(choices) < 2:
        raise ConfigError(f"space parameter {path!r}: choices must list at least 2 values, was {choices!r}")
    allowed: dict[_Kind, tuple[type, ...]] = {
        "bool": (bool,),
        "str": (str,),
        "int": (int,),
        "float": (int, float),
        "decimal": (int, float, str),
        "any": (bool, int, float, str),
    }
    for choice in choices:
        numeric_bool = isinstance(choice, bool) and kind in ("int", "float", "decimal")
        if not isinstance(choice, allowed[kind]) or numeric_bool:
            raise ConfigError(f"space parameter {path!r}: choice {choice!r} does not fit a {kind} field")
        if isinstance(choice, float) and not math.isfinite(choice):
            raise ConfigError(f"space parameter {path!r}: choice must be finite, was {choice!r}")
    if len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"space parameter {path!r}: choices must be distinct, were {choices!r}")
    return CategoricalParam(path=path, choices=tuple(choices))


def _parse_range(path: str, kind: _Kind, spec: Mapping[str, Any]) -> IntParam | FloatParam:
    if kind in ("bool", "str"):
        raise ConfigError(
            f"space parameter {path!r}: a {kind} field takes choices, not a range, was {dict(spec)!r}"
        )
    missing = sorted({"low", "high"} - set(spec))
    if missing:
        raise ConfigError(f"space parameter {path!r}: a range needs low and high, missing {missing}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"space parameter {path!r}: log must be true or false, was {log!r}")
    step = spec.get("step")
    if log and step is not None:
        raise ConfigError(
            f"space parameter {path!r}: step cannot be combined with log = true, was step={step!r}"
        )
    integer = kind == "int" or (
        kind == "any" and all(isinstance(spec.get(k, 1), int) for k in ("low", "high", "step"))
    )
    low = _number(path, "low", spec["low"], integer=integer)
    high = _number(path, "high", spec["high"], integer=integer)
    if low >= high:
        raise ConfigError(f"space parameter {path!r}: low must be < high, was low={low!r}, high={high!r}")
    if log and low <= 0:
        raise ConfigError(f"space parameter {path!r}: log = true needs low > 0, was low={low!r}")
    if step is not None:
        step = _number(path, "step", step, integer=integer)
        if step <= 0:
            raise ConfigError(f"space parameter {path!r}: step must be > 0, was {step!r}")
        n_steps = (high - low) / step
        if abs(n_steps - round(n_steps)) > 1e-9 * max(1.0, n_steps):
            raise ConfigError(
                f"space parameter {path!r}: high - low must be a multiple of step, was "
                f"low={low!r}, high={high!r}, step={step!r}"
            )
    if integer:
        return IntParam(path=path, low=int(low), high=int(high), step=int(step or 1), log=log)
    return FloatParam(
        path=path, low=float(low), high=float(high), step=None if step is None else float(step), log=log
    )


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Mapping[str, Any]]:
    # `[params."a.b"]` and `[params.a.b]` both give {"a.b": spec}: a table with a spec key is a spec.
    out: dict[str, Mapping[str, Any]] = {}
    for key, value in params.items():
        path = f"{prefix}{key}"
        if not isinstance(value, dict):
            raise ConfigError(
                f"space parameter {path!r}: must be a table of low/high/step/log or choices, was {value!r}"
            )
        if set(value) & _SPEC_KEYS:
            unknown = sorted(set(value) - _SPEC_KEYS)
            if unknown:
                raise ConfigError(
                    f"space parameter {path!r}: unknown key(s) {unknown}; allowed: {sorted(_SPEC_KEYS)}"
                )
            if path in out:
                raise ConfigError(f"space parameter {path!r}: given twice")
            out[path] = value
        else:
            for sub, spec in _flatten(value, f"{path}.").items():
                if sub in out:
                    raise ConfigError(f"space parameter {sub!r}: given twice")
                out[sub] = spec
    return out


def parse_space(document: Mapping[str, Any]) -> SearchSpace:
    """Parse a search-space document (the TOML file's tables) without reading any config file.

    Checks the structure and each parameter against the *types* of the settings fields; the base
    config (list indices, value bounds) is checked by :func:`validate_space`.

    Raises
    ------
    ConfigError
        On an unknown table or key, an unknown configuration path, a range or choice that does not
        fit its field's type, an empty or inverted range, ``step`` with ``log``, or a ``step`` that
        does not divide the range; the message names the parameter and the value.
    """
    unknown = sorted(set(document) - {"base", "params"})
    if unknown:
        raise ConfigError(f"search space: unknown table(s) {unknown}; allowed: ['base', 'params']")
    base = document.get("base", {})
    if not isinstance(base, dict) or sorted(set(base) - {"config"}):
        raise ConfigError(f'search space: [base] takes only config = "FILE.toml", was {base!r}')
    config = base.get("config")
    if config is not None and (not isinstance(config, str) or not config):
        raise ConfigError(f"search space: base.config must be a file name, was {config!r}")
    params = document.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"search space: [params] must hold at least one parameter table, was {params!r}")
    parsed: list[Param] = []
    for path, spec in _flatten(params).items():
        kind = _field_kind(path)
        param: Param = (
            _parse_choices(path, kind, spec) if "choices" in spec else _parse_range(path, kind, spec)
        )
        parsed.append(param)
    return SearchSpace(params=tuple(parsed), base_config=None if config is None else Path(config))


def _probe_values(param: Param) -> tuple[Choice, ...]:
    if isinstance(param, CategoricalParam):
        return param.choices
    return (param.low, param.high)


def validate_space(space: SearchSpace, base_config: str | Path | None = None) -> None:
    """Check every parameter against the base config by building the settings at its range ends and
    at each of its choices (one parameter at a time, the others as in the base).

    Parameters
    ----------
    space
        A parsed space.
    base_config
        Config file the space starts from; ``None`` uses ``space.base_config``.

    Raises
    ------
    ConfigError
        If the base config itself is invalid, or the settings refuse a value (a list index the base
        config lacks, a value outside the field's validated range, an unknown key of a core config);
        the message names the parameter and the value.
    """
    config = base_config if base_config is not None else space.base_config
    load_settings(config)
    for param in space.params:
        for value in _probe_values(param):
            try:
                settings_for(config, {param.path: value})
            except ConfigError as exc:
                raise ConfigError(
                    f"space parameter {param.path!r}: value {value!r} is refused: {exc}"
                ) from None


def load_space(path: str | Path, *, base_config: str | Path | None = None) -> SearchSpace:
    """Read, parse and validate a ``--space`` TOML file.

    Parameters
    ----------
    path
        The space file.
    base_config
        Overrides the file's ``[base] config`` (e.g. ``--config`` on the command line); the result's
        ``base_config`` is the file actually used.

    Raises
    ------
    ConfigError
        If the file is missing or not valid TOML, or as :func:`parse_space` and :func:`validate_space`.
    """
    file = Path(path)
    try:
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"search space file {str(file)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"search space file {str(file)!r} is not valid TOML: {exc}") from None
    try:
        space = parse_space(document)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    if base_config is not None:
        space = dataclasses.replace(space, base_config=Path(base_config))
    validate_space(space)
    return space


# --- use in a study --------------------------------------------------------------------------------


def suggest(space: SearchSpace, trial: BaseTrial) -> dict[str, object]:
    """Ask ``trial`` for one value per parameter, named by its dotted path.

    Returns
    -------
    dict
        ``{path: value}`` in the space's order, ready for :func:`apply` / :func:`settings_for`.
    """
    values: dict[str, object] = {}
    for p in space.params:
        if isinstance(p, IntParam):
            values[p.path] = trial.suggest_int(p.path, p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, FloatParam):
            values[p.path] = trial.suggest_float(p.path, p.low, p.high, step=p.step, log=p.log)
        else:
            values[p.path] = trial.suggest_categorical(p.path, list(p.choices))
    return values


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Return the Optuna distribution of each parameter (for ``create_trial``, ``enqueue_trial`` checks
    and reports), keyed by dotted path."""
    out: dict[str, BaseDistribution] = {}
    for p in space.params:
        if isinstance(p, IntParam):
            out[p.path] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, FloatParam):
            out[p.path] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[p.path] = CategoricalDistribution(list(p.choices))
    return out
