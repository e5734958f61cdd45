"""Pictures of a stored run (``tradebot plot``): per asset the price with the trades marked, and the
equity and drawdown against buy-and-hold.

Drawn with matplotlib's Agg canvas (no pyplot, no display). Like :mod:`tradebot.app.reports.chart`,
which draws the equity picture, this module imports matplotlib at the top, so callers import it only
when they draw. The run's candles are not in the database: :func:`load_closes` reads them from the
candle files (as the backtest does), and a picture without them shows the fills and events only.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tradebot.adapters.feeds.replay import discover, load_columns
from tradebot.app.reports.export import events_by_trade, exit_reason
from tradebot.core.domain import (
    EquitySnapshot,
    Fill,
    PositionEvent,
    PositionEventType,
    Timeframe,
    TradeRecord,
)
from tradebot.core.metrics import buy_and_hold_curve
from tradebot.errors import DataError

__all__ = ["Closes", "buy_and_hold_of_run", "load_closes", "price_figure", "stop_levels", "write_price_chart"]

_ET = PositionEventType
_LADDER = {"partial_take_profit", "take_profit_exit"}
_SCALE_IN = {"scale_in", "trailing_scale_in", "management_reload"}
_SCALE_OUT = {"scale_out", "trailing_scale_out", "management_scale_out"}
_STOP_TYPES = (_ET.STOP_SET, _ET.BREAKEVEN, _ET.TRAILING_STOP_UPDATE)
_NUM = r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"


@dataclass(frozen=True, slots=True)
class Closes:
    """Close prices of one symbol: ``close_time_ms`` (ms UTC) and ``close`` (quote currency), ascending."""

    timeframe: Timeframe
    close_time_ms: npt.NDArray[np.int64]
    close: npt.NDArray[np.float64]


def load_closes(
    data_dir: str | os.PathLike[str],
    symbols: Sequence[str],
    *,
    start_ms: int,
    end_ms: int,
    timeframe: Timeframe | None = None,
    max_points: int = 5000,
) -> tuple[dict[str, Closes], list[str]]:
    """Return the closes of each symbol with ``start_ms <= open_time < end_ms`` and notes on what is missing.

    Reads ``<exchange>_<BASE><QUOTE>_<tf>.csv[.gz]`` files of ``data_dir`` (quote of the first symbol),
    ``timeframe`` first (the run's base timeframe) and otherwise the finest file with candles in the
    window. More than ``max_points`` closes are thinned to every k-th (the last one kept). A symbol
    without candles in the window is left out and named in the notes, as is a missing ``data_dir``.
    """
    if not symbols:
        return {}, []
    quote = symbols[0].split("/")[-1]
    try:
        files = discover(Path(data_dir), quote=quote)
    except DataError as e:
        return {}, [f"{e}: drawing fills and events only"]
    out: dict[str, Closes] = {}
    notes: list[str] = []
    for sym in symbols:
        asset = sym.split("/")[0]
        tfs = sorted((tf for a, tf in files if a == asset), key=lambda t: (t != timeframe, t.ms))
        for tf in tfs:
            cols = load_columns(files[(asset, tf)], sym, tf, start_ms, end_ms).columns
            if len(cols):
                k = max(1, math.ceil(len(cols) / max_points))
                idx = np.unique(np.append(np.arange(k - 1, len(cols), k), len(cols) - 1))
                out[sym] = Closes(tf, cols.open_time_ms[idx] + tf.ms, np.asarray(cols.close[idx]))
                break
        else:
            notes.append(f"no {sym} candles in {str(data_dir)!r} for the run's window: fills and events only")
    return out, notes


def stop_levels(events: Sequence[PositionEvent]) -> list[tuple[int, float]]:
    """Return ``(time_ms, stop price)`` of each stop change among ``events`` (stop set, breakeven,
    trailing update), read from their trigger text, e.g. ``"…; stop -> 25045.13"``."""
    out = []
    for e in events:
        if e.event_type not in _STOP_TYPES:
            continue
        text = e.trigger_reason
        match = re.search(r"hard quit at " + _NUM, text) or re.search(r"stop -> " + _NUM, text)
        if match is None and "stop =" in text:
            found = re.findall(r"= " + _NUM, text.split(";")[0])
            level = found[-1] if found else None
        else:
            level = match.group(1) if match else None
        if level is not None:
            out.append((e.event_time_ms, float(level)))
    return out


def _x(ms: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    return np.asarray(ms, dtype=np.int64).astype("datetime64[ms]")


def _markers(
    trades: Sequence[TradeRecord], by_trade: Mapping[str, list[PositionEvent]], fills: Sequence[Fill]
) -> dict[str, list[tuple[int, float]]]:
    # Points per marker kind; order fills at their fill price, else the decision's price.
    by_order: dict[str, list[Fill]] = {}
    for f in fills:
        by_order.setdefault(f.client_order_id, []).append(f)
    kinds: dict[str, list[tuple[int, float]]] = {
        "entry": [], "exit": [], "stop exit": [], "ladder fill": [], "scale-in": [], "scale-out": [],
        "rebalance buy": [], "rebalance sell": [],
    }  # fmt: skip
    for t in trades:
        evs = by_trade[t.position_id]
        stopped = exit_reason(t, evs) == "stop_exit"
        for e in evs:
            if e.event_type is _ET.ENTRY:
                kinds["entry"].append((e.event_time_ms, float(e.price)))
            elif e.event_type is _ET.EXIT:
                kinds["stop exit" if stopped else "exit"].append((e.event_time_ms, float(e.price)))
            elif e.event_type in (_ET.REBALANCE_BUY, _ET.REBALANCE_SELL) and e.size_before and e.size_after:
                kind = (
                    "ladder fill" if e.trigger_reason in _LADDER
                    else "scale-in" if e.trigger_reason in _SCALE_IN
                    else "scale-out" if e.trigger_reason in _SCALE_OUT
                    else "rebalance buy" if e.event_type is _ET.REBALANCE_BUY
                    else "rebalance sell"
                )  # fmt: skip
                done = [(f.ts_ms, float(f.price)) for o in e.client_order_ids for f in by_order.get(o, [])]
                kinds[kind].extend(done or [(e.event_time_ms, float(e.price))])
    return kinds


# marker, face colour, size (points²), edge colour of each kind
_STYLE: dict[str, tuple[str, str, float, str | None]] = {
    "entry": ("^", "tab:green", 60, None),
    "exit": ("v", "tab:red", 60, None),
    "stop exit": ("x", "black", 60, None),
    "ladder fill": ("D", "gold", 40, "black"),
    "scale-in": ("P", "tab:blue", 50, None),
    "scale-out": ("1", "tab:orange", 60, None),
    # a resize of an open position by the portfolio rebalance (not an overlay rule)
    "rebalance buy": ("o", "none", 30, "tab:green"),
    "rebalance sell": ("o", "none", 30, "tab:red"),
}


def _draw_stops(
    ax: Axes, trades: Sequence[TradeRecord], by_trade: Mapping[str, list[PositionEvent]], end_ms: int
) -> None:
    labelled = False
    for t in trades:
        levels = stop_levels(by_trade[t.position_id])
        if not levels:
            continue
        until = t.closed_ms if t.closed_ms is not None else end_ms
        times = [ms for ms, _ in levels] + [max(until, levels[-1][0])]
        prices = [p for _, p in levels] + [levels[-1][1]]
        ax.plot(
            _x(times), prices, drawstyle="steps-post", linestyle="--", linewidth=0.8, color="tab:red",
            alpha=0.7, label=None if labelled else "stop",
        )  # fmt: skip
        labelled = True


def price_figure(
    symbol: str,
    closes: Closes | None,
    trades: Sequence[TradeRecord],
    events: Sequence[PositionEvent],
    fills: Sequence[Fill] = (),
    *,
    title: str | None = None,
    end_ms: int | None = None,
    note: str | None = None,
) -> Figure:
    """Return the price picture of ``symbol``: the close line (if ``closes``), the trades' markers and
    their stop levels (a dashed step line per trade, until it closed or ``end_ms``).

    Markers: entries ``^``, exits ``v``, stop exits ``x``, ladder (take-profit) fills ``D``, scale-ins
    ``P``, scale-outs ``1``, at the fill price and time when the fill is in ``fills``. Only the
    trades, events and fills of ``symbol`` are drawn. ``note`` is written in the corner (e.g. why
    the close line is missing).
    """
    trades = [t for t in trades if t.symbol == symbol]
    events = [e for e in events if e.symbol == symbol]
    fills = [f for f in fills if f.symbol == symbol]
    fig = Figure(figsize=(12, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    fig.suptitle(title or symbol)
    by_trade = events_by_trade(trades, events)
    last = [end_ms or 0, *(e.event_time_ms for e in events)]
    if closes is not None and len(closes.close):
        ax.plot(
            _x(closes.close_time_ms),
            closes.close,
            linewidth=0.7,
            color="tab:gray",
            label=f"close ({closes.timeframe})",
        )
        last.append(int(closes.close_time_ms[-1]))
    _draw_stops(ax, trades, by_trade, max(last))
    for kind, points in _markers(trades, by_trade, fills).items():
        if points:
            times, prices = zip(*sorted(points), strict=True)
            marker, color, size, edge = _STYLE[kind]
            ax.scatter(
                _x(times), prices, s=size, c=color, marker=marker, edgecolors=edge,
                linewidths=1.2, zorder=3, label=f"{kind} ({len(points)})",
            )  # fmt: skip
    if note:
        ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=8, va="bottom", color="tab:red")
    if not trades and (closes is None or not len(closes.close)):
        ax.text(0.5, 0.5, "no candles and no trades", ha="center", va="center", transform=ax.transAxes)
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]  # matplotlib.dates is unannotated
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    ax.set_ylabel(f"Price ({symbol.split('/')[-1]})")
    ax.set_xlabel("Time (UTC)")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    return fig


def write_price_chart(
    path: str | os.PathLike[str], symbol: str, closes: Closes | None, *args: Any, **kwargs: Any
) -> Path:
    """Write :func:`price_figure` (same arguments after ``path``) as a PNG; create the folder; return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    price_figure(symbol, closes, *args, **kwargs).savefig(target, format="png")
    return target


def buy_and_hold_of_run(
    summary: Mapping[str, Any] | None, config: Mapping[str, Any], equity: Sequence[EquitySnapshot]
) -> list[tuple[int, Decimal]] | None:
    """Return the buy-and-hold curve of a stored run, or ``None`` without a benchmark in its summary.

    :func:`tradebot.core.metrics.buy_and_hold_curve` with the summary's benchmark entry
    (``summary["buy_and_hold"]``: entry prices and time), its initial equity, the run's taker fee
    (``config["backtest"]["taker_fee"]``, default 0.001) and the stored equity snapshots' marks: the
    curve the run's own chart draws (its last value is the summary's buy-and-hold final equity).
    """
    bench = (summary or {}).get("buy_and_hold")
    if not isinstance(bench, Mapping) or not bench.get("entry_prices") or not equity:
        return None
    prices = {str(s): Decimal(str(v)) for s, v in bench["entry_prices"].items()}
    fee = Decimal(str((config.get("backtest") or {}).get("taker_fee", "0.001")))
    entry_ms = bench.get("entry_ms")
    if entry_ms is not None and entry_ms >= equity[0].time_ms:
        entry_ms = None
    return buy_and_hold_curve(
        entry_prices=prices,
        marks=[(s.time_ms, s.marks) for s in equity],
        initial_cash=Decimal(str(summary["initial_equity"])) if summary else Decimal(0),
        taker_fee=fee,
        entry_ms=entry_ms,
    )
