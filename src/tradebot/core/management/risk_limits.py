"""Configuration of the hard risk limits (STRATEGY.md §4): :class:`RiskLimits` and :class:`BlackoutWindow`.

Money is ``Decimal`` in quote currency; fractions are of equity (0.10 = 10 %); ``None`` switches a
limit off. Invalid values raise :class:`~tradebot.errors.ConfigError` naming the field and value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, cast, get_args

from tradebot.core.domain import ZERO, to_decimal
from tradebot.core.management import _validate as v
from tradebot.errors import ConfigError

_MINUTE_MS = 60_000

#: What a daily-loss halt does (see ``RiskLimits.daily_loss_action``).
DailyLossAction = Literal["close_all", "block_entries"]
DAILY_LOSS_ACTIONS: tuple[str, ...] = get_args(DailyLossAction)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlackoutWindow:
    """A window without new entries or scale-ins: daily (UTC minutes of day) or absolute (ms UTC).

    Daily windows are ``[start_minute, end_minute)`` in minutes after 00:00 UTC and may wrap midnight
    (``start_minute > end_minute``). Absolute windows are ``[start_ms, end_ms)``.
    Build with :meth:`daily` or :meth:`between`.
    """

    start_minute: int | None = None
    end_minute: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def __post_init__(self) -> None:
        daily = self.start_minute is not None or self.end_minute is not None
        absolute = self.start_ms is not None or self.end_ms is not None
        if daily == absolute:
            v.fail("blackout_window", self, "be either daily (start/end_minute) or absolute (start/end_ms)")
        if daily:
            for name in ("start_minute", "end_minute"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1440:
                    v.fail(f"blackout_window.{name}", value, "be an integer minute of day in [0, 1440)")
            if self.start_minute == self.end_minute:
                v.fail("blackout_window.end_minute", self.end_minute, "differ from start_minute")
        else:
            start_ms = v.integer("blackout_window.start_ms", self.start_ms, minimum=0)
            end_ms = v.integer("blackout_window.end_ms", self.end_ms, minimum=0)
            if end_ms <= start_ms:
                v.fail("blackout_window.end_ms", self.end_ms, f"be > start_ms {self.start_ms!r}")

    @classmethod
    def daily(cls, start_utc: str, end_utc: str) -> BlackoutWindow:
        """Daily window from ``"HH:MM"`` to ``"HH:MM"`` UTC (end exclusive; may wrap midnight)."""
        return cls(
            start_minute=_minute_of_day("start_utc", start_utc), end_minute=_minute_of_day("end_utc", end_utc)
        )

    @classmethod
    def between(cls, start_ms: int, end_ms: int) -> BlackoutWindow:
        """Absolute window ``[start_ms, end_ms)`` in ms UTC."""
        return cls(start_ms=start_ms, end_ms=end_ms)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlackoutWindow:
        """From ``{"start_utc": "22:00", "end_utc": "23:30"}`` or ``{"start_ms": …, "end_ms": …}``."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"risk.blackout_windows entries must be mappings, was {data!r}")
        keys = set(data)
        if keys == {"start_utc", "end_utc"}:
            return cls.daily(data["start_utc"], data["end_utc"])
        if keys == {"start_ms", "end_ms"}:
            return cls.between(data["start_ms"], data["end_ms"])
        raise ConfigError(
            f"risk.blackout_windows entry must have keys start_utc/end_utc or start_ms/end_ms, was {sorted(keys)}"
        )

    def contains(self, time_ms: int) -> bool:
        """True when ``time_ms`` (ms UTC) lies inside the window."""
        # __post_init__ guarantees the pair of the window's kind is set (both ms, or both minutes).
        if self.start_ms is not None:
            return self.start_ms <= time_ms < cast(int, self.end_ms)
        minute = (time_ms // _MINUTE_MS) % 1440
        start, end = cast(int, self.start_minute), cast(int, self.end_minute)
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end


def _minute_of_day(field_name: str, text: str) -> int:
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) > 23 or int(parts[1]) > 59:
        raise ConfigError(f"blackout_window.{field_name} must be 'HH:MM' (UTC), was {text!r}")
    return int(parts[0]) * 60 + int(parts[1])


def _decimal_or_none(name: str, value: Any, *, positive: bool) -> Decimal | None:
    if value is None:
        return None
    try:
        d = to_decimal(value, field=f"risk.{name}")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if d < 0 or (positive and d == 0):
        raise ConfigError(f"risk.{name} must be {'> 0' if positive else '>= 0'}, was {value!r}")
    return d


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskLimits:
    """Hard limits (STRATEGY.md §4). ``None`` switches a limit off.

    Attributes
    ----------
    max_position_fraction
        Max target per symbol as a fraction of equity (default 0.10 as in §4). Note: with three
        assets fully invested this caps exposure at 30 % of equity; set ``None`` (off) or raise it for
        a fully invested portfolio.
    max_position_notional
        Max target per symbol, quote currency.
    max_gross_exposure_fraction
        Max Σ targets as a fraction of equity (default 1.0: no borrowing on spot).
    max_order_notional
        Max notional of one order, quote currency (for the planner's slicing and :meth:`RiskManager.check_order`).
    min_order_notional
        Increases smaller than this are dropped and targets below it become 0 (quote currency, default 5).
    max_open_positions
        Max symbols held (a holding ≥ ``min_order_notional`` counts as open).
    daily_loss_limit_fraction
        Halt when equity ≤ start-of-day equity × (1 − this) (default 0.03).
    daily_loss_action
        What the daily-loss halt does until the next UTC day (STRATEGY.md §4):

        - ``"close_all"`` (default): every target becomes 0 — the whole book is sold at once — and
          no entry or increase is allowed;
        - ``"block_entries"``: no entry or increase (targets are clipped to the current holdings,
          as in the ``REDUCING`` state), but the positions are kept: only decreases the rebalancer
          or the overlay decide anyway (a stream going out, a stop or other overlay exit) trade.

        A halt set by the engine (:meth:`RiskManager.set_state`) always closes all.
    blackout_windows
        No new entries or increases while inside one.
    max_leverage
        Gross exposure cap as a multiple of equity on derivatives venues (default 1.0); the gross
        cap used is ``equity × min(max_gross_exposure_fraction, max_leverage)``.
    """

    max_position_fraction: float | None = 0.10
    max_position_notional: Decimal | None = None
    max_gross_exposure_fraction: float | None = 1.0
    max_order_notional: Decimal | None = None
    min_order_notional: Decimal = Decimal("5")
    max_open_positions: int | None = None
    daily_loss_limit_fraction: float | None = 0.03
    daily_loss_action: DailyLossAction = "close_all"
    blackout_windows: tuple[BlackoutWindow, ...] = field(default_factory=tuple)
    max_leverage: float = 1.0

    def __post_init__(self) -> None:
        if self.max_position_fraction is not None:
            v.positive("risk.max_position_fraction", self.max_position_fraction)
        if self.max_gross_exposure_fraction is not None:
            v.positive("risk.max_gross_exposure_fraction", self.max_gross_exposure_fraction)
        if self.daily_loss_limit_fraction is not None:
            v.fraction("risk.daily_loss_limit_fraction", self.daily_loss_limit_fraction)
        if self.daily_loss_action not in DAILY_LOSS_ACTIONS:
            v.fail("risk.daily_loss_action", self.daily_loss_action, f"be one of {list(DAILY_LOSS_ACTIONS)}")
        if self.max_open_positions is not None:
            v.integer("risk.max_open_positions", self.max_open_positions, minimum=0)
        v.positive("risk.max_leverage", self.max_leverage)
        for name, pos in (
            ("max_position_notional", True),
            ("max_order_notional", True),
            ("min_order_notional", False),
        ):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, Decimal) or not value.is_finite() or value < 0 or (pos and value == 0)
            ):
                v.fail(f"risk.{name}", value, "be a finite Decimal " + ("> 0" if pos else ">= 0"))
        for i, w in enumerate(self.blackout_windows):
            if not isinstance(w, BlackoutWindow):
                v.fail(f"risk.blackout_windows[{i}]", w, "be a BlackoutWindow")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str = "risk") -> RiskLimits:
        """Build from a mapping; money fields accept strings/ints/floats (converted exactly).

        Raises
        ------
        ConfigError
            On unknown keys (named) or invalid values.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must be a mapping, was {data!r}")
        data = dict(data)
        for name, pos in (
            ("max_position_notional", True),
            ("max_order_notional", True),
            ("min_order_notional", False),
        ):
            if name in data:
                data[name] = _decimal_or_none(name, data[name], positive=pos)
        if "blackout_windows" in data:
            data["blackout_windows"] = tuple(
                BlackoutWindow.from_dict(w) for w in data["blackout_windows"] or ()
            )
        return v.build(cls, data, path)

    def position_cap(self, equity: Decimal) -> Decimal | None:
        """Max target of one symbol for ``equity`` (quote currency), or ``None`` when uncapped."""
        caps = []
        if self.max_position_fraction is not None:
            caps.append(max(equity, ZERO) * to_decimal(self.max_position_fraction))
        if self.max_position_notional is not None:
            caps.append(self.max_position_notional)
        return min(caps) if caps else None

    def gross_cap(self, equity: Decimal) -> Decimal:
        """Max Σ targets for ``equity`` (quote currency)."""
        fraction = self.max_leverage
        if self.max_gross_exposure_fraction is not None:
            fraction = min(fraction, self.max_gross_exposure_fraction)
        return max(equity, ZERO) * to_decimal(fraction)
