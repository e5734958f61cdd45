"""Trade statistics of a run (STRATEGY.md §7): win rate, profit factor, expectancy, MAE/MFE, per group.

Inputs are the run's closed trades (:class:`~tradebot.core.domain.TradeRecord`) and position events;
money stays ``Decimal`` (quote currency), ratios and percentages are floats. A trade counts once it
is closed (``closed_ms`` set); it is a win when ``net_pnl > 0`` (after fees) and a loss when
``net_pnl < 0``; a zero trade counts in the trade total only. Undefined measures are ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from tradebot.core.domain import ZERO, PositionEvent, TradeRecord

__all__ = ["StreamStats", "TradeStats", "event_stats", "group_metrics", "trade_stats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeStats:
    """Statistics of a set of trades (all trades, or one asset's).

    Attributes
    ----------
    n_trades, n_open_trades
        Closed trades (the basis of every other field) and trades still open (ignored otherwise).
    n_wins, n_losses
        Closed trades with ``net_pnl > 0`` / ``< 0``.
    win_rate
        ``n_wins / n_trades`` (fraction), ``None`` without closed trades.
    avg_win, avg_loss
        Mean ``net_pnl`` of wins / losses, quote currency; ``avg_loss`` is negative. ``None`` if none.
    gross_win, gross_loss
        Σ ``net_pnl`` of wins, and Σ ``|net_pnl|`` of losses (both ≥ 0), quote currency.
    profit_factor
        ``gross_win / gross_loss``; ``None`` when there is no loss.
    net_pnl, trade_fees
        Σ ``net_pnl`` and Σ ``fees`` of closed trades, quote currency.
    expectancy_r, n_trades_with_r
        Mean ``r_multiple`` of the closed trades that have one (Van Tharp's expectancy in R), and their
        count; ``None`` when no trade has an R.
    avg_mae_pct, avg_mfe_pct
        Mean MAE (≤ 0) and MFE (≥ 0), percent of the first entry price; ``None`` without trades.
    avg_giveback
        Mean profit give-back ``mfe_quote − net_pnl``, quote currency; ``None`` without trades.
    """

    n_trades: int
    n_open_trades: int
    n_wins: int
    n_losses: int
    win_rate: float | None
    avg_win: Decimal | None
    avg_loss: Decimal | None
    gross_win: Decimal
    gross_loss: Decimal
    profit_factor: float | None
    net_pnl: Decimal
    trade_fees: Decimal
    expectancy_r: float | None
    n_trades_with_r: int
    avg_mae_pct: float | None
    avg_mfe_pct: float | None
    avg_giveback: Decimal | None

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a flat dict (Decimals kept as ``Decimal``)."""
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStats:
    """PnL attribution of one trend stream, computed by the engine (STRATEGY.md §5); rendered as is.

    Attributes
    ----------
    stream
        Stream id, e.g. ``"BTC:4h"``.
    realized, fees, unrealized, total
        Quote currency; ``total`` must equal ``realized − fees + unrealized``.
    time_in_fraction
        Fraction of the run the stream was ``in``, in [0, 1].
    flips
        Number of state changes.

    Raises
    ------
    ValueError
        If ``total`` does not add up, ``time_in_fraction`` is outside [0, 1] or ``flips`` < 0.
    """

    stream: str
    realized: Decimal
    fees: Decimal
    unrealized: Decimal
    total: Decimal
    time_in_fraction: float
    flips: int

    def __post_init__(self) -> None:
        expected = self.realized - self.fees + self.unrealized
        if self.total != expected:
            raise ValueError(
                f"StreamStats({self.stream}).total must equal realized - fees + unrealized "
                f"= {expected}, was {self.total!r}"
            )
        if not 0.0 <= self.time_in_fraction <= 1.0:
            raise ValueError(
                f"StreamStats({self.stream}).time_in_fraction must be in [0, 1], was {self.time_in_fraction!r}"
            )
        if self.flips < 0:
            raise ValueError(f"StreamStats({self.stream}).flips must be >= 0, was {self.flips!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a flat dict (Decimals kept as ``Decimal``)."""
        return asdict(self)


def _mean_dec(xs: Sequence[Decimal]) -> Decimal | None:
    return sum(xs, ZERO) / len(xs) if xs else None


def _mean_float(xs: Sequence[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def trade_stats(trades: Iterable[TradeRecord]) -> TradeStats:
    """Return the :class:`TradeStats` of ``trades`` (only closed trades are measured).

    Profit factor is gross profit / gross loss; expectancy in R is the mean R multiple
    (Van K. Tharp, *Trade Your Way to Financial Freedom*, 1999); give-back is ``mfe_quote − net_pnl``.
    """
    all_trades = list(trades)
    closed = [t for t in all_trades if t.closed_ms is not None]
    wins = [t.net_pnl for t in closed if t.net_pnl > 0]
    losses = [t.net_pnl for t in closed if t.net_pnl < 0]
    gross_win = sum(wins, ZERO)
    gross_loss = -sum(losses, ZERO)
    rs = [t.r_multiple for t in closed if t.r_multiple is not None]
    return TradeStats(
        n_trades=len(closed),
        n_open_trades=len(all_trades) - len(closed),
        n_wins=len(wins),
        n_losses=len(losses),
        win_rate=len(wins) / len(closed) if closed else None,
        avg_win=_mean_dec(wins),
        avg_loss=_mean_dec(losses),
        gross_win=gross_win,
        gross_loss=gross_loss,
        profit_factor=float(gross_win / gross_loss) if gross_loss > 0 else None,
        net_pnl=sum((t.net_pnl for t in closed), ZERO),
        trade_fees=sum((t.fees for t in closed), ZERO),
        expectancy_r=_mean_float(rs),
        n_trades_with_r=len(rs),
        avg_mae_pct=_mean_float([t.mae_pct for t in closed]),
        avg_mfe_pct=_mean_float([t.mfe_pct for t in closed]),
        avg_giveback=_mean_dec([t.mfe_quote - t.net_pnl for t in closed]),
    )


def group_metrics(
    trades: Iterable[TradeRecord], key: Callable[[TradeRecord], str] = lambda t: t.symbol
) -> dict[str, TradeStats]:
    """Return :class:`TradeStats` per group (default: per symbol), keys sorted.

    Parameters
    ----------
    trades
        Trades of the run (open ones are counted in ``n_open_trades`` only).
    key
        Group of a trade, e.g. ``lambda t: t.symbol``.
    """
    groups: dict[str, list[TradeRecord]] = {}
    for t in trades:
        groups.setdefault(key(t), []).append(t)
    return {k: trade_stats(groups[k]) for k in sorted(groups)}


def event_stats(events: Iterable[PositionEvent]) -> tuple[dict[str, int], dict[str, Decimal]]:
    """Return (count per event type, Σ ``amount_saved_or_gained`` per event type).

    The savings dict only holds types with at least one measured amount (quote currency), e.g.
    ``{"early_exit": Decimal("123.4")}``; keys are the event types' string values, sorted.
    """
    counts: dict[str, int] = {}
    savings: dict[str, Decimal] = {}
    for ev in events:
        name = str(ev.event_type)
        counts[name] = counts.get(name, 0) + 1
        if ev.amount_saved_or_gained is not None:
            savings[name] = savings.get(name, ZERO) + ev.amount_saved_or_gained
    return dict(sorted(counts.items())), dict(sorted(savings.items()))
