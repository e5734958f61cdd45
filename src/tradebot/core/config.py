"""Frozen configuration of the engine, built once by ``app.bootstrap`` from the settings.

Each part is owned by the package that uses it (``StreamConfig`` by signals, ``AllocationConfig`` by
the portfolio, ``PlannerConfig`` by execution, ``ManagementConfig`` / ``RiskLimits`` by management);
this module only bundles them with the engine-wide values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from tradebot.core.domain import Timeframe
from tradebot.core.execution.planner import PlannerConfig
from tradebot.core.management import ManagementConfig, RiskLimits
from tradebot.core.portfolio.rebalancer import AllocationConfig
from tradebot.core.signals.stream import StreamConfig
from tradebot.errors import ConfigError

#: What a manual trade does to its asset (:attr:`EngineConfig.manual_trades`).
MANUAL_TRADE_POLICIES = ("respect", "rebalance")


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Everything the engine needs besides the instruments.

    Attributes
    ----------
    run_id
        Id of the run; prefixes client order ids and position ids.
    quote
        Quote currency of the portfolio (``"USDT"``).
    assets
        ccxt symbol → base asset, in the order candles of equal time are processed,
        e.g. ``{"BTC/USDT": "BTC", "ETH/USDT": "ETH", "SOL/USDT": "SOL"}``.
    base_timeframe
        Timeframe of the input candles (1m live; 1m…1h in backtests).
    streams
        One :class:`StreamConfig` per stream timeframe; every asset gets one stream per entry.
    initial_cash
        Starting quote balance for a fresh ledger (quote currency).
    rebalance_timeframe
        Clock of rebalance checks, equity snapshots, risk checks and period rules (default 1h).
    allocation, planner, management, risk
        Configs of the rebalancer, the planner, the overlay and the risk limits.
    manual_trades
        What a trade the bot did not place (a manual order at the venue) or a base-asset deposit /
        withdrawal does to its asset: ``"respect"`` (default) keeps the new holding as the target until
        one of the asset's streams changes state; ``"rebalance"`` plans the asset back to its target
        at the next rebalance. Either way it is adopted into the ledger and recorded.
    stops_at_venue
        Keep the overlay's stop as a ``STOP_MARKET`` order resting at the venue (filled there when
        the market reaches it, also while the daemon is down) instead of exiting at the next
        candle's open after a candle reached it (:mod:`tradebot.core.engine.stops`). Default False;
        only with management on.

    Raises
    ------
    ValueError
        On an empty ``assets`` or ``streams``, negative ``initial_cash``, or a rebalance timeframe
        that is not a multiple of the base timeframe.
    ConfigError
        If ``management.atr_timeframe`` is neither a stream timeframe nor the rebalance timeframe.
    """

    run_id: str
    quote: str
    assets: Mapping[str, str]
    base_timeframe: Timeframe
    streams: tuple[StreamConfig, ...]
    initial_cash: Decimal
    rebalance_timeframe: Timeframe = Timeframe.H1
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    management: ManagementConfig = field(default_factory=ManagementConfig.disabled)
    risk: RiskLimits = field(default_factory=RiskLimits)
    manual_trades: str = "respect"
    stops_at_venue: bool = False

    def __post_init__(self) -> None:
        if self.manual_trades not in MANUAL_TRADE_POLICIES:
            raise ValueError(
                f"manual_trades must be one of {MANUAL_TRADE_POLICIES}, was {self.manual_trades!r}"
            )
        if not self.assets:
            raise ValueError("assets must name at least one symbol, was {}")
        if not self.streams:
            raise ValueError("streams must hold at least one stream config, was ()")
        if self.initial_cash < 0:
            raise ValueError(f"initial_cash must be >= 0, was {self.initial_cash!r}")
        if self.rebalance_timeframe.ms % self.base_timeframe.ms:
            raise ValueError(
                f"rebalance_timeframe {self.rebalance_timeframe} must be a multiple of base timeframe "
                f"{self.base_timeframe}"
            )
        atr_tf = self.management.atr_timeframe
        if atr_tf is not None and atr_tf not in self.atr_timeframes:
            raise ConfigError(
                "management.atr_timeframe must be one of the stream timeframes or the rebalance "
                f"timeframe {[t.value for t in self.atr_timeframes]}, was {atr_tf!r}"
            )

    @property
    def atr_timeframes(self) -> tuple[Timeframe, ...]:
        """Timeframes the signal book keeps an ATR for: every stream's and the rebalance clock's,
        ascending (the values ``management.atr_timeframe`` may take)."""
        tfs = {s.timeframe for s in self.streams} | {self.rebalance_timeframe}
        return tuple(sorted(tfs, key=lambda t: t.ms))

    @property
    def management_atr_timeframe(self) -> Timeframe:
        """The timeframe of the overlay's ATR: ``management.atr_timeframe``, else the rebalance one."""
        atr_tf = self.management.atr_timeframe
        return self.rebalance_timeframe if atr_tf is None else Timeframe(atr_tf)
