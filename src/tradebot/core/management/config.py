"""Configuration of the position-management overlay (STRATEGY.md §3): one frozen sub-config per rule.

Every rule family has ``enabled``; every parameter carries its unit in its name (``_atr`` = multiples
of ATR, ``_r`` = multiples of the initial risk R, ``_m`` = multiplier units, ``_h`` = 1h periods /
hours, ``_ms`` = milliseconds, ``_fraction`` = 0.03 means 3 %, ``_pct`` = 3.0 means 3 %). "1h
periods" are periods of the rebalance clock (1h by default); the ATR is that of
``ManagementConfig.atr_timeframe`` (default: the rebalance timeframe). Invalid values raise
:class:`~tradebot.errors.ConfigError` naming the field and the value.

Three ready-made variants:

- ``ManagementConfig()``: the managed overlay with the seed defaults below;
- :meth:`ManagementConfig.disabled`: no management at all (multiplier stays 1, no stop);
- :meth:`ManagementConfig.fixed_stop_target`: the "traditional" baseline — a fixed initial stop at
  ``k`` ATR and one full take-profit at ``+target_r`` R, nothing else.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, get_args

from tradebot.core.domain import Timeframe
from tradebot.core.management import _validate as v
from tradebot.core.ml.predictor import MlThresholds
from tradebot.errors import ConfigError

#: Re-entry policies after a forced exit (see ``ManagementConfig.reentry``).
ReentryPolicy = Literal["stream_change", "after_periods", "new_high"]
REENTRY_POLICIES: tuple[str, ...] = get_args(ReentryPolicy)


class _FromDict:
    # Base of the section configs; every subclass is a dataclass (declared for the type checker).
    __slots__ = ()
    if TYPE_CHECKING:
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str | None = None, base: Self | None = None) -> Self:
        """Build from a mapping (lists → tuples), over ``base`` when given; unknown keys raise
        ``ConfigError`` naming them."""
        return v.build(cls, data, path or cls.__name__, base=base)


@dataclass(frozen=True, slots=True, kw_only=True)
class InitialStopConfig(_FromDict):
    """Initial stop ``entry − k × ATR`` with ``k`` chosen by volatility regime.

    The regime compares ``ATR / price`` at entry with its own slow EMA (``regime_period_h`` 1h periods,
    maintained in ``on_period``): below ``low_vol_ratio`` × average → low (``k_low_vol_atr``), above
    ``high_vol_ratio`` × average → high (``k_high_vol_atr``), else (and while the average warms up, or
    with ``regime_enabled=False``) normal (``k_normal_atr``). Quiet markets get a tighter stop, wild
    ones a wider stop so noise does not stop the position out.

    The optional technical stop (``swing_low_enabled``) sits ``swing_buffer_atr`` ATR below the lowest
    low of the last ``swing_lookback_h`` 1h candles; it replaces the ATR stop when it lies below the
    entry and no farther than ``swing_max_distance_atr`` ATR from it.
    """

    enabled: bool = True
    k_low_vol_atr: float = 1.0
    k_normal_atr: float = 1.5
    k_high_vol_atr: float = 2.0
    regime_enabled: bool = True
    regime_period_h: int = 100
    low_vol_ratio: float = 0.8
    high_vol_ratio: float = 1.25
    swing_low_enabled: bool = False
    swing_lookback_h: int = 24
    swing_buffer_atr: float = 0.1
    swing_max_distance_atr: float = 3.0

    def __post_init__(self) -> None:
        p = "initial_stop"
        v.boolean(f"{p}.enabled", self.enabled)
        for name in ("k_low_vol_atr", "k_normal_atr", "k_high_vol_atr", "swing_max_distance_atr"):
            v.positive(f"{p}.{name}", getattr(self, name))
        v.non_negative(f"{p}.swing_buffer_atr", self.swing_buffer_atr)
        v.integer(f"{p}.regime_period_h", self.regime_period_h, minimum=1)
        v.integer(f"{p}.swing_lookback_h", self.swing_lookback_h, minimum=1)
        v.positive(f"{p}.low_vol_ratio", self.low_vol_ratio)
        v.positive(f"{p}.high_vol_ratio", self.high_vol_ratio)
        if self.low_vol_ratio > self.high_vol_ratio:
            v.fail(f"{p}.low_vol_ratio", self.low_vol_ratio, f"be <= high_vol_ratio {self.high_vol_ratio!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakevenConfig(_FromDict):
    """At ``+trigger_r`` R (bar high) move the stop up to the average entry (× ``1 + 2 × fee_rate``
    when ``include_fees``, so a stop-out still covers the round-trip fees)."""

    enabled: bool = True
    trigger_r: float = 1.0
    include_fees: bool = True

    def __post_init__(self) -> None:
        v.boolean("breakeven.enabled", self.enabled)
        v.positive("breakeven.trigger_r", self.trigger_r)
        v.boolean("breakeven.include_fees", self.include_fees)


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeProfitConfig(_FromDict):
    """Partial take-profit ladder.

    Levels are in R above the first entry (``levels_r``) or in percent above it (``levels_pct``,
    ``6.0`` = +6 %); exactly one of the two is non-empty when enabled. ``fractions[i]`` is the share
    of the multiplier held when the first level was hit that level ``i`` sells. When the fractions sum
    to 1 the last level is a full exit (``TAKE_PROFIT_EXIT``). Seed alternative:
    ``levels_pct=(6, 10, 15), fractions=(0.3, 0.3, 0.4)``.
    """

    enabled: bool = True
    levels_r: tuple[float, ...] = (1.5,)
    levels_pct: tuple[float, ...] = ()
    fractions: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        p = "take_profit"
        v.boolean(f"{p}.enabled", self.enabled)
        levels = self.levels
        if bool(self.levels_r) == bool(self.levels_pct):
            v.fail(f"{p}.levels_r/levels_pct", (self.levels_r, self.levels_pct), "have exactly one non-empty")
        name = "levels_r" if self.levels_r else "levels_pct"
        for i, x in enumerate(levels):
            v.positive(f"{p}.{name}[{i}]", x)
        if any(b <= a for a, b in itertools.pairwise(levels)):
            v.fail(f"{p}.{name}", levels, "be strictly increasing")
        if len(self.fractions) != len(levels):
            v.fail(f"{p}.fractions", self.fractions, f"have one entry per level ({len(levels)})")
        for i, x in enumerate(self.fractions):
            v.fraction(f"{p}.fractions[{i}]", x)
        if sum(self.fractions) > 1 + 1e-9:
            v.fail(f"{p}.fractions", self.fractions, "sum to at most 1")

    @property
    def levels(self) -> tuple[float, ...]:
        """The non-empty level list (R or percent)."""
        return self.levels_r or self.levels_pct


@dataclass(frozen=True, slots=True, kw_only=True)
class TrailingConfig(_FromDict):
    """Trailing stop ``peak − distance_atr × ATR``, ratcheted up only.

    Starts when the bar high reaches ``+start_r`` R (``None`` = never by R) or, with
    ``start_after_first_ladder``, when the first take-profit level is taken. The stop moves only when
    it would rise by at least ``min_step_atr`` ATR (fewer, meaningful ``TRAILING_STOP_UPDATE`` events).
    """

    enabled: bool = True
    start_r: float | None = 2.0
    start_after_first_ladder: bool = False
    distance_atr: float = 1.0
    min_step_atr: float = 0.25

    def __post_init__(self) -> None:
        p = "trailing"
        v.boolean(f"{p}.enabled", self.enabled)
        if self.start_r is not None:
            v.positive(f"{p}.start_r", self.start_r)
        v.boolean(f"{p}.start_after_first_ladder", self.start_after_first_ladder)
        if self.enabled and self.start_r is None and not self.start_after_first_ladder:
            v.fail(f"{p}.start_r", self.start_r, "be set unless start_after_first_ladder is true")
        v.positive(f"{p}.distance_atr", self.distance_atr)
        v.non_negative(f"{p}.min_step_atr", self.min_step_atr)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProportionalConfig(_FromDict):
    """Proportional scale-out / scale-in along the trailing stop (needs the trail).

    Target ``m = m_trail_start × clamp((close − S) / (P − S), 0, 1)``. An adjustment is made only
    when all guards pass:

    - at least ``min_interval_ms`` since the previous adjustment (or the trail start);
    - fewer than ``max_adjustments`` adjustments so far in this trail;
    - ``|Δm| >= min_step_m``;
    - ``|Δm| × notional_per_m >= min_order_notional_quote`` (skipped when the engine gave no
      ``notional_per_m``);
    - fee rule: the close has moved at least ``fee_multiple × 2 × fee_rate`` (relative) from the price
      of the previous adjustment (or the trail start peak). A sell followed by a buy-back costs two
      fees; requiring this move between consecutive adjustments means the price swing each pair plays
      is worth ``fee_multiple`` times its round-trip fees, and stops churn on noise.
    - a buy-back is never made below the average entry (no averaging down).
    """

    enabled: bool = True
    min_interval_ms: int = 900_000
    max_adjustments: int = 20
    min_step_m: float = 0.1
    min_order_notional_quote: float = 10.0
    fee_multiple: float = 2.0

    def __post_init__(self) -> None:
        p = "proportional"
        v.boolean(f"{p}.enabled", self.enabled)
        v.integer(f"{p}.min_interval_ms", self.min_interval_ms, minimum=0)
        v.integer(f"{p}.max_adjustments", self.max_adjustments, minimum=0)
        v.positive(f"{p}.min_step_m", self.min_step_m)
        v.non_negative(f"{p}.min_order_notional_quote", self.min_order_notional_quote)
        v.non_negative(f"{p}.fee_multiple", self.fee_multiple)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleInConfig(_FromDict):
    """Add ``add_m`` once to a winner: close ≥ entry + ``trigger_r`` R and above the average entry,
    1h volume > ``volume_factor`` × its SMA, momentum (rate of change) > ``min_momentum_fraction``;
    never above ``max_total_m`` (2 × the initial size) nor ``max_scale``; not while trailing."""

    enabled: bool = True
    trigger_r: float = 0.5
    add_m: float = 0.5
    max_total_m: float = 2.0
    volume_factor: float = 1.0
    min_momentum_fraction: float = 0.0

    def __post_init__(self) -> None:
        p = "scale_in"
        v.boolean(f"{p}.enabled", self.enabled)
        v.positive(f"{p}.trigger_r", self.trigger_r)
        v.positive(f"{p}.add_m", self.add_m)
        v.positive(f"{p}.max_total_m", self.max_total_m)
        v.non_negative(f"{p}.volume_factor", self.volume_factor)
        if not -1 < self.min_momentum_fraction < 1:
            v.fail(f"{p}.min_momentum_fraction", self.min_momentum_fraction, "be in (-1, 1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeStopConfig(_FromDict):
    """Exit a position whose bar highs have not reached ``+target_r`` R within ``max_hours``."""

    enabled: bool = True
    max_hours: float = 48.0
    target_r: float = 0.5

    def __post_init__(self) -> None:
        v.boolean("time_stop.enabled", self.enabled)
        v.positive("time_stop.max_hours", self.max_hours)
        v.positive("time_stop.target_r", self.target_r)


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyExitConfig(_FromDict):
    """Exit before the stop, judged on 1h closes, only while the stop is still below the average entry.

    - momentum reversal: rate of change ≤ −``momentum_drop_fraction`` and close below the entry;
    - volume drying up: ``volume_dry_periods`` consecutive 1h volumes < ``volume_dry_ratio`` × SMA;
    - time decay: held ≥ ``time_decay_hours`` and close below the average entry.
    """

    enabled: bool = True
    momentum_enabled: bool = True
    momentum_drop_fraction: float = 0.03
    volume_enabled: bool = True
    volume_dry_ratio: float = 0.5
    volume_dry_periods: int = 6
    time_decay_enabled: bool = True
    time_decay_hours: float = 24.0

    def __post_init__(self) -> None:
        p = "early_exit"
        for name in ("enabled", "momentum_enabled", "volume_enabled", "time_decay_enabled"):
            v.boolean(f"{p}.{name}", getattr(self, name))
        v.fraction(f"{p}.momentum_drop_fraction", self.momentum_drop_fraction)
        v.fraction(f"{p}.volume_dry_ratio", self.volume_dry_ratio)
        v.integer(f"{p}.volume_dry_periods", self.volume_dry_periods, minimum=1)
        v.positive(f"{p}.time_decay_hours", self.time_decay_hours)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagementModeConfig(_FromDict):
    """Work a loser fractionally instead of a binary stop (seed 000; off by default).

    While enabled the stop below the entry is the hard quit level ``entry − quit_r × R``
    (``MANAGEMENT_QUIT``). On 1h closes below the average entry: a bounce of ``bounce_atr`` ATR off
    the lowest low since the last management action sells ``scale_out_m`` (not below ``min_m``); a
    close ``reload_step_atr`` ATR below the last management price buys ``reload_m`` back, at most
    ``max_reloads`` times and ``reload_budget_m`` in total (this is the one place that adds below
    the entry, inside that strict budget).
    """

    enabled: bool = False
    bounce_atr: float = 0.5
    scale_out_m: float = 0.25
    min_m: float = 0.25
    reload_step_atr: float = 1.0
    reload_m: float = 0.25
    reload_budget_m: float = 0.5
    max_reloads: int = 2
    quit_r: float = 2.0

    def __post_init__(self) -> None:
        p = "management_mode"
        v.boolean(f"{p}.enabled", self.enabled)
        for name in ("bounce_atr", "scale_out_m", "reload_step_atr", "reload_m", "quit_r"):
            v.positive(f"{p}.{name}", getattr(self, name))
        v.non_negative(f"{p}.min_m", self.min_m)
        v.non_negative(f"{p}.reload_budget_m", self.reload_budget_m)
        v.integer(f"{p}.max_reloads", self.max_reloads, minimum=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class IndicatorConfig(_FromDict):
    """Slow indicators maintained on 1h closes: volume SMA and momentum (rate of change of closes)."""

    volume_sma_h: int = 20
    momentum_h: int = 12

    def __post_init__(self) -> None:
        v.integer("indicators.volume_sma_h", self.volume_sma_h, minimum=1)
        v.integer("indicators.momentum_h", self.momentum_h, minimum=1)


_SEED_THRESHOLDS = MlThresholds()


@dataclass(frozen=True, slots=True, kw_only=True)
class MlConfig(_FromDict):
    """``[management.ml]``: the learned position management (issue 16), off without ``model``.

    On each rebalance-clock close the engine asks the models about every open position and acts on
    a recommendation only when its confidence is at least ``min_confidence``; below it the rules
    decide alone. The risk limits stay above every model decision (the managed targets are clipped
    by them as any other). See :func:`tradebot.core.ml.predictor.decide` for the order.

    Attributes
    ----------
    model
        Folder of ``tradebot ml train`` (one sub-folder per model with ``model.txt`` and
        ``card.json``), or ``None`` (default: no model, the rules alone). Loaded by the application.
    exit_recovery_below
        Exit a losing position when its recovery probability is below this, in (0, 1) (0.30).
    take_profit_return_below
        Take ``take_profit_fraction`` of a winner when its expected further return is below this
        fraction (0.005 = 0.5 %).
    trail_return_above
        Start the trailing stop of a winner now when its expected further return is above this
        fraction (0.02 = 2 %).
    scale_in_probability_above
        Scale in only when the success probability is above this, in (0, 1) (0.70), and the
        scale-in rule's limits allow it (winner above ``trigger_r``, once, ``max_total_m``).
    min_confidence
        Confidence in [0.5, 1] below which the rules decide alone (0.60).
    take_profit_fraction
        Share of the position a model take-profit sells, in (0, 1] (0.5); once per position.
    """

    model: str | None = None
    # the seed's thresholds: MlThresholds' defaults, one source for both
    exit_recovery_below: float = _SEED_THRESHOLDS.exit_recovery_below
    take_profit_return_below: float = _SEED_THRESHOLDS.take_profit_return_below
    trail_return_above: float = _SEED_THRESHOLDS.trail_return_above
    scale_in_probability_above: float = _SEED_THRESHOLDS.scale_in_probability_above
    min_confidence: float = _SEED_THRESHOLDS.min_confidence
    take_profit_fraction: float = _SEED_THRESHOLDS.take_profit_fraction

    def __post_init__(self) -> None:
        p = "ml"
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            v.fail(f"{p}.model", self.model, "be a folder path (a non-empty string) or unset")
        for name in ("exit_recovery_below", "scale_in_probability_above"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                v.fail(f"{p}.{name}", value, "be a probability in (0, 1)")
        for name in ("take_profit_return_below", "trail_return_above"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not -1 < value < 1:
                v.fail(f"{p}.{name}", value, "be a fraction in (-1, 1) (0.005 = 0.5 %)")
        if self.take_profit_return_below > self.trail_return_above:
            v.fail(
                f"{p}.take_profit_return_below",
                self.take_profit_return_below,
                f"be <= trail_return_above {self.trail_return_above!r}",
            )
        c = self.min_confidence
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0.5 <= c <= 1:
            v.fail(f"{p}.min_confidence", c, "be in [0.5, 1]")
        v.fraction(f"{p}.take_profit_fraction", self.take_profit_fraction)

    @property
    def enabled(self) -> bool:
        """True when a model is configured."""
        return self.model is not None

    def thresholds(self) -> MlThresholds:
        """Return the decision thresholds for :func:`tradebot.core.ml.predictor.decide`."""
        return MlThresholds(**{f.name: float(getattr(self, f.name)) for f in fields(MlThresholds)})


_SECTIONS: dict[str, type[_FromDict]] = {
    "initial_stop": InitialStopConfig,
    "breakeven": BreakevenConfig,
    "take_profit": TakeProfitConfig,
    "trailing": TrailingConfig,
    "proportional": ProportionalConfig,
    "scale_in": ScaleInConfig,
    "time_stop": TimeStopConfig,
    "early_exit": EarlyExitConfig,
    "management_mode": ManagementModeConfig,
    "indicators": IndicatorConfig,
    "ml": MlConfig,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagementConfig:
    """The whole overlay: global parameters plus one sub-config per rule family.

    Attributes
    ----------
    fee_rate
        Taker fee as a fraction per trade (0.001 = 0.1 %), used by breakeven and the fee rule.
    max_scale
        Upper bound of the multiplier m (m ∈ [0, max_scale]).
    reentry_lock
        After an exit the manager forces (stop, trailing stop, take-profit exit, time, early, quit)
        keep m = 0 while the position is flat, until the lock is released (see ``reentry``).
        ``False``: no lock at all (``reentry`` is then ignored).
    reentry
        When the re-entry lock is released (with ``reentry_lock``). Always: when the asset's streams
        change — all of them out, or one more in than before (``PositionManager.on_streams``). The
        other policies add one earlier release, judged on rebalance-clock closes
        (``PositionManager.on_period``):

        - ``"stream_change"`` (default): only the stream change;
        - ``"after_periods"``: at the ``reentry_periods``-th rebalance-clock close strictly after
          the exit's time (an exit decided at a clock close does not count that close; one decided
          inside a period counts that period's close as the first);
        - ``"new_high"``: at the first rebalance-clock close above ``H``, the highest price seen since
          the exit: ``H`` starts at the exit price, takes the high of the rebalance-clock candle in
          which the exit happened (that candle is never judged itself), and then the high of every
          later clock candle that does not release the lock. Judged on closes only (OHLC: the high
          of the exit's candle may be from before the exit, which makes ``H`` conservative).

        A snapshot from before these policies existed holds no exit time, so a lock it restores is
        released by a stream change only.
    reentry_periods
        ``N`` of ``"after_periods"``: rebalance periods (closes of ``rebalance_timeframe``), int >= 1;
        ignored by the other policies.
    atr_timeframe
        Timeframe of the ATR behind every ATR distance of the overlay: initial stop (and its
        volatility regime and swing buffer), trailing distance and step, management mode. Must be a
        stream timeframe or the rebalance timeframe (checked by ``EngineConfig``: the signal book
        keeps an ATR only for those), e.g. ``"1h"``, ``"4h"``, ``"1d"``. ``None`` (default): the
        rebalance timeframe (``"1h"`` by default), as before this key existed. The ATR is read on
        every rebalance-clock close, so a 4h ATR on a 1h clock changes once every four periods.
    """

    fee_rate: float = 0.001
    max_scale: float = 2.0
    reentry_lock: bool = True
    reentry: ReentryPolicy = "stream_change"
    reentry_periods: int = 1
    atr_timeframe: str | None = None
    initial_stop: InitialStopConfig = field(default_factory=InitialStopConfig)
    breakeven: BreakevenConfig = field(default_factory=BreakevenConfig)
    take_profit: TakeProfitConfig = field(default_factory=TakeProfitConfig)
    trailing: TrailingConfig = field(default_factory=TrailingConfig)
    proportional: ProportionalConfig = field(default_factory=ProportionalConfig)
    scale_in: ScaleInConfig = field(default_factory=ScaleInConfig)
    time_stop: TimeStopConfig = field(default_factory=TimeStopConfig)
    early_exit: EarlyExitConfig = field(default_factory=EarlyExitConfig)
    management_mode: ManagementModeConfig = field(default_factory=ManagementModeConfig)
    indicators: IndicatorConfig = field(default_factory=IndicatorConfig)
    ml: MlConfig = field(default_factory=MlConfig)

    def __post_init__(self) -> None:
        v.fraction("fee_rate", self.fee_rate, allow_zero=True)
        if self.fee_rate >= 0.1:
            v.fail("fee_rate", self.fee_rate, "be < 0.1 (a fraction: 0.001 = 0.1 %)")
        v.positive("max_scale", self.max_scale)
        if self.max_scale < 1:
            v.fail("max_scale", self.max_scale, "be >= 1")
        v.boolean("reentry_lock", self.reentry_lock)
        if self.reentry not in REENTRY_POLICIES:
            v.fail("management.reentry", self.reentry, f"be one of {list(REENTRY_POLICIES)}")
        v.integer("management.reentry_periods", self.reentry_periods, minimum=1)
        if self.atr_timeframe is not None:
            tfs = [t.value for t in Timeframe]
            if not isinstance(self.atr_timeframe, str) or self.atr_timeframe not in tfs:
                v.fail("management.atr_timeframe", self.atr_timeframe, f"be one of {tfs} or unset")
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                v.fail(name, getattr(self, name), f"be a {cls.__name__}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str = "management") -> ManagementConfig:
        """Build from a (YAML/JSON) mapping; sections are sub-mappings, e.g.
        ``{"fee_rate": 0.001, "trailing": {"distance_atr": 1.5}}``.

        Two optional top-level keys choose the base the other keys override: ``preset``
        (``"managed"`` = the defaults, ``"disabled"``, ``"fixed_stop_target"``) and ``enabled``
        (``false`` = the ``"disabled"`` preset). Section keys override the base's section field by
        field, so ``{"preset": "fixed_stop_target", "take_profit": {"levels_r": [3]}}`` keeps the
        full-exit fraction of the preset.

        Raises
        ------
        ConfigError
            On unknown keys (named) or invalid values (field and value named).
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must be a mapping, was {data!r}")
        rest = dict(data)
        preset = rest.pop("preset", "managed")
        enabled = rest.pop("enabled", True)
        v.boolean(f"{path}.enabled", enabled)
        presets: dict[str, Callable[[], ManagementConfig]] = {
            "managed": cls,
            "disabled": cls.disabled,
            "fixed_stop_target": cls.fixed_stop_target,
        }
        if preset not in presets:
            v.fail(f"{path}.preset", preset, f"be one of {sorted(presets)}")
        base = presets[preset]() if enabled else cls.disabled()
        return v.build(cls, rest, path, _SECTIONS, base=base)

    @property
    def is_off(self) -> bool:
        """True when no rule can act: :meth:`disabled` but for the keys that only tune rules
        (``reentry``, ``reentry_periods``, ``atr_timeframe``), which change nothing without a rule."""
        neutral = replace(self, reentry="stream_change", reentry_periods=1, atr_timeframe=None)
        return neutral == ManagementConfig.disabled()

    @classmethod
    def disabled(cls) -> ManagementConfig:
        """No management at all: no stop, no rule; the multiplier stays 1 and nothing is locked."""
        base = cls()
        off = {
            name: replace(getattr(base, name), enabled=False)
            for name in _SECTIONS
            if name not in ("indicators", "ml")
        }
        return replace(base, reentry_lock=False, **off)

    @classmethod
    def fixed_stop_target(cls, *, k_atr: float = 1.5, target_r: float = 2.0) -> ManagementConfig:
        """The "traditional" baseline: a fixed stop at ``k_atr`` ATR (no regime, no swing low) and a
        full take-profit exit at ``+target_r`` R; no breakeven, trail, scaling or early exits."""
        base = cls.disabled()
        return replace(
            base,
            reentry_lock=True,
            initial_stop=InitialStopConfig(regime_enabled=False, k_normal_atr=k_atr),
            take_profit=TakeProfitConfig(levels_r=(target_r,), fractions=(1.0,)),
        )
