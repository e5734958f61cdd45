"""Search spaces of ``tradebot optimize --space`` (tradebot.app.research.space)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import TPESampler

from tradebot.app.research.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    apply,
    distributions,
    load_space,
    parse_space,
    settings_for,
    suggest,
    validate_space,
)
from tradebot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
MANAGED = ROOT / "config" / "managed.toml"

EXAMPLE = f"""
[base]
config = "{MANAGED}"
[params."planner.band_fraction"]
low = 0.01
high = 0.10
[params."streams.0.fast"]
low = 10
high = 40
step = 2
[params."allocation.policy"]
choices = ["pooled", "slots", "inverse_vol"]
[params."management.trailing.distance_atr"]
low = 0.5
high = 4.0
log = true
"""


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # The settings read TRADEBOT_* variables; none of the developer's may leak into these tests.
    for name in list(os.environ):
        if name.startswith("TRADEBOT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_parses_the_example_exactly(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, EXAMPLE))
    assert space == SearchSpace(
        params=(
            FloatParam(path="planner.band_fraction", low=0.01, high=0.10),
            IntParam(path="streams.0.fast", low=10, high=40, step=2),
            CategoricalParam(path="allocation.policy", choices=("pooled", "slots", "inverse_vol")),
            FloatParam(path="management.trailing.distance_atr", low=0.5, high=4.0, log=True),
        ),
        base_config=MANAGED,
    )


def test_nested_tables_are_the_same_as_quoted_dotted_keys() -> None:
    quoted = parse_space({"params": {"streams.0.fast": {"low": 10, "high": 20}}})
    nested = parse_space({"params": {"streams": {"0": {"fast": {"low": 10, "high": 20}}}}})
    assert quoted == nested


def test_integer_bounds_on_a_float_field_are_floats() -> None:
    space = parse_space({"params": {"management.trailing.distance_atr": {"low": 1, "high": 3}}})
    assert space.params == (FloatParam(path="management.trailing.distance_atr", low=1.0, high=3.0),)
    assert isinstance(space.params[0].low, float)  # type: ignore[union-attr]


def test_the_shipped_example_space_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    space = load_space(ROOT / "config" / "spaces" / "example.toml")
    assert 3 <= len(space.params) <= 6
    assert space.base_config == Path("config/managed.toml")


def test_base_config_argument_overrides_the_file(tmp_path: Path) -> None:
    default = ROOT / "config" / "default.toml"
    space = load_space(write(tmp_path, EXAMPLE), base_config=default)
    assert space.base_config == default


# --- refusals: each names the key and the value ----------------------------------------------------

REFUSALS = [
    # unknown keys
    ({"planner.band_fractoin": {"low": 0.01, "high": 0.1}}, ["planner.band_fractoin", "band_fractoin"]),
    ({"nosuch.key": {"low": 1, "high": 2}}, ["nosuch.key", "'nosuch'"]),
    (
        {"management.trailing.atr_mult": {"low": 0.5, "high": 4.0}},
        ["management.trailing.atr_mult", "'atr_mult'"],
    ),
    ({"streams.7.fast": {"low": 10, "high": 20}}, ["streams.7.fast", "index '7'", "3 item(s)"]),
    ({"streams.x.fast": {"low": 10, "high": 20}}, ["streams.x.fast", "'x'"]),
    ({"planner": {"low": 1, "high": 2}}, ["'planner'", "not a searchable value"]),
    # empty or inverted ranges, bad choices
    ({"planner.band_fraction": {"low": 0.1, "high": 0.1}}, ["planner.band_fraction", "low=0.1, high=0.1"]),
    ({"streams.0.fast": {"low": 40, "high": 10}}, ["streams.0.fast", "low=40, high=10"]),
    ({"allocation.policy": {"choices": []}}, ["allocation.policy", "[]"]),
    ({"allocation.policy": {"choices": ["pooled", "pooled"]}}, ["allocation.policy", "distinct"]),
    # types that do not fit the field
    ({"streams.0.fast": {"low": 10.5, "high": 20}}, ["streams.0.fast", "10.5", "integer"]),
    ({"streams.0.fast": {"low": 10, "high": 20, "step": 0.5}}, ["streams.0.fast", "0.5"]),
    ({"allocation.policy": {"low": 1, "high": 2}}, ["allocation.policy", "choices"]),
    (
        {"allocation.confidence_weighting": {"choices": [0, 1]}},
        ["allocation.confidence_weighting", "choice 0"],
    ),
    ({"streams.0.fast": {"choices": [10, "20"]}}, ["streams.0.fast", "'20'"]),
    ({"planner.band_fraction": {"low": "0.01", "high": 0.1}}, ["planner.band_fraction", "'0.01'"]),
    ({"planner.band_fraction": {"low": 0.01, "high": math.inf}}, ["planner.band_fraction", "inf"]),
    # step / log
    ({"planner.band_fraction": {"low": 0.01, "high": 0.1, "step": 0.01, "log": True}}, ["step=0.01", "log"]),
    ({"planner.band_fraction": {"low": 0.0, "high": 0.1, "log": True}}, ["planner.band_fraction", "low=0.0"]),
    ({"streams.0.fast": {"low": 10, "high": 21, "step": 2}}, ["streams.0.fast", "step=2", "high=21"]),
    ({"planner.band_fraction": {"low": 0.01, "high": 0.1, "lgo": True}}, ["planner.band_fraction", "'lgo'"]),
    # values outside the field's own validated range (checked by building the settings)
    (
        {"planner.band_fraction": {"low": 0.5, "high": 1.0}},
        ["planner.band_fraction", "value 1.0", "less than 1"],
    ),
    ({"streams.0.band": {"low": -0.1, "high": 0.1}}, ["streams.0.band", "value -0.1"]),
    ({"streams.0.fast": {"low": 10, "high": 60}}, ["streams.0.fast", "value 60", "fast must be < slow"]),
    ({"allocation.policy": {"choices": ["pooled", "equal"]}}, ["allocation.policy", "value 'equal'"]),
    (
        {"management.trailing.distance_atr": {"low": 0.0, "high": 2.0}},
        ["management.trailing.distance_atr", "value 0.0", "> 0"],
    ),
]


@pytest.mark.parametrize(("params", "fragments"), REFUSALS, ids=[next(iter(p)) for p, _ in REFUSALS])
def test_refusals_name_the_key_and_the_value(params: dict[str, object], fragments: list[str]) -> None:
    document = {"base": {"config": str(MANAGED)}, "params": params}  # the TOML file's tables
    with pytest.raises(ConfigError) as info:
        validate_space(parse_space(document))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_refuses_a_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_space(write(tmp_path, "[params\n"))
    with pytest.raises(ConfigError, match="unknown table"):
        load_space(write(tmp_path, "[parameters.x]\nlow = 1\n"))
    with pytest.raises(ConfigError, match="at least one parameter"):
        load_space(write(tmp_path, "[base]\n"))


# --- apply / settings_for --------------------------------------------------------------------------


def test_apply_sets_list_items_and_creates_missing_keys_without_mutating() -> None:
    base = {"streams": ({"timeframe": "1h", "fast": 20}, {"timeframe": "4h", "fast": 20}), "planner": {}}
    out = apply(
        base, {"streams.1.fast": 12, "planner.band_fraction": 0.02, "management.trailing.distance_atr": 2.0}
    )
    assert out == {
        "streams": [{"timeframe": "1h", "fast": 20}, {"timeframe": "4h", "fast": 12}],
        "planner": {"band_fraction": 0.02},
        "management": {"trailing": {"distance_atr": 2.0}},
    }
    assert base == {
        "streams": ({"timeframe": "1h", "fast": 20}, {"timeframe": "4h", "fast": 20}),
        "planner": {},
    }


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"streams.2.fast": 1}, "index '2' is not in streams, which has 2 item(s)"),
        ({"streams.-1.fast": 1}, "index '-1'"),
        ({"streams.0.fast.x": 1}, "streams.0.fast is a value (20)"),
        ({"streams..fast": 1}, "'streams..fast'"),
    ],
)
def test_apply_refusals(override: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply({"streams": [{"fast": 20}, {"fast": 30}]}, override)
    assert fragment in str(info.value)


def test_settings_for_builds_validated_settings_over_the_base() -> None:
    settings = settings_for(
        MANAGED,
        {"streams.1.fast": 12, "planner.band_fraction": 0.02, "management.trailing.distance_atr": 2.5},
    )
    assert settings.streams[1].fast == 12
    assert settings.streams[1].timeframe == "4h"
    assert [s.fast for s in settings.streams] == [20, 12, 20]
    assert settings.planner.band_fraction == 0.02
    assert settings.planner.min_order_notional == 10  # the rest of the section is the base's
    assert settings.management["preset"] == "managed"
    assert settings.management["trailing"]["distance_atr"] == 2.5
    assert settings.management["trailing"]["start_r"] == 2.0


def test_settings_for_refuses_a_cross_field_conflict() -> None:
    with pytest.raises(ConfigError, match="fast must be < slow"):
        settings_for(MANAGED, {"streams.0.fast": 40, "streams.0.slow": 30})


# --- Optuna ----------------------------------------------------------------------------------------


def test_suggest_respects_step_log_and_choices(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, EXAMPLE))
    seen: list[dict[str, object]] = []

    def objective(trial: optuna.Trial) -> float:
        values = suggest(space, trial)
        seen.append(values)
        settings = settings_for(space.base_config, values)  # every suggestion builds valid settings
        return float(settings.planner.band_fraction) + float(values["streams.0.fast"])  # type: ignore[arg-type]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=TPESampler(seed=1))
    study.optimize(objective, n_trials=30)
    assert len(seen) == 30
    for values in seen:
        assert list(values) == [p.path for p in space.params]
        band = values["planner.band_fraction"]
        fast = values["streams.0.fast"]
        trail = values["management.trailing.distance_atr"]
        assert isinstance(band, float) and 0.01 <= band <= 0.10
        assert isinstance(fast, int) and 10 <= fast <= 40 and (fast - 10) % 2 == 0
        assert values["allocation.policy"] in ("pooled", "slots", "inverse_vol")
        assert isinstance(trail, float) and 0.5 <= trail <= 4.0
    assert len({v["allocation.policy"] for v in seen}) == 3
    assert study.trials[0].distributions == distributions(space)


def test_distributions_match_the_params(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, EXAMPLE))
    assert distributions(space) == {
        "planner.band_fraction": FloatDistribution(0.01, 0.10),
        "streams.0.fast": IntDistribution(10, 40, step=2),
        "allocation.policy": CategoricalDistribution(["pooled", "slots", "inverse_vol"]),
        "management.trailing.distance_atr": FloatDistribution(0.5, 4.0, log=True),
    }
    study = optuna.create_study()
    study.enqueue_trial({"planner.band_fraction": 0.05, "streams.0.fast": 20, "allocation.policy": "slots"})
    trial = study.ask(distributions(space))
    assert trial.params["streams.0.fast"] == 20
    assert trial.params["allocation.policy"] == "slots"
