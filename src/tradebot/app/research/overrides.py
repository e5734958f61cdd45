"""Dotted-path overrides of a configuration: ``{"streams.0.fast": 12}`` over a base config file.

:func:`apply` sets paths in a nested config mapping; :func:`settings_for` turns (base config file,
overrides) into validated :class:`~tradebot.app.settings.Settings` through ``load_settings``, so
every check of the settings and of the core configs applies. Used by search spaces
(:mod:`tradebot.app.research.space`) and by every trial of a study.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradebot.app.settings import Settings, load_settings
from tradebot.errors import ConfigError

__all__ = ["apply", "settings_for"]


def _thaw(value: Any) -> Any:
    # A deep copy with mappings as dicts and tuples/lists as lists (so paths can be set in place).
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def apply(base: Mapping[str, Any], overrides: Mapping[str, object]) -> dict[str, Any]:
    """Return a copy of the nested config ``base`` with each dotted path of ``overrides`` set.

    A path segment names a key of a table (created when missing, so a key the file leaves at its
    default can be set) or an index of a list (which must exist: lists are never extended). ``base``
    is not modified; in the copy, tuples become lists.

    Raises
    ------
    ConfigError
        On an empty segment, a list index that is not a number or is out of range, or a path that runs
        through a value; the message names the path.
    """
    result: dict[str, Any] = _thaw(base)
    for path, value in overrides.items():
        parts = path.split(".")
        if not all(parts):
            raise ConfigError(f"config path {path!r}: a dotted path needs a name between every dot")
        node: Any = result
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth]) or "the config"
            if isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            elif isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f"config path {path!r}: index {part!r} is not in {where}, which has {len(node)} item(s)"
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            else:
                raise ConfigError(f"config path {path!r}: {where} is a value ({node!r}), not a table or list")
    return result


def settings_for(base_config: str | Path | None, overrides: Mapping[str, object]) -> Settings:
    """Build validated settings: the base config with ``overrides`` (dotted paths) on top.

    The base is loaded as :func:`~tradebot.app.settings.load_settings` does (file, environment,
    defaults); each top-level section an override touches is taken from it whole, the overrides are
    set with :func:`apply`, and the result goes back through ``load_settings`` as its highest-priority
    values, so every check of the settings (and of the core configs) applies.

    Raises
    ------
    ConfigError
        As ``load_settings`` (the message names the field and value), or :func:`apply`, or for an
        unknown top-level key.
    """
    base = load_settings(base_config)
    top = {path.split(".", 1)[0] for path in overrides}
    unknown = sorted(top - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"config path(s) {unknown}: unknown key; allowed: {sorted(Settings.model_fields)}")
    document = base.model_dump(include=top)
    return load_settings(base_config, **apply(document, overrides))
