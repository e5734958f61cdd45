"""Run statistics of the engine: fills, fees, turnover, stream time-in and flips, event counts.

What the reports need (:mod:`tradebot.app.backtest` summaries); kept as counters so a report needs no
second pass over the records. Pure, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from tradebot.core.domain import ZERO, Fill, PositionEventType, StreamSignal, StreamState


class EngineStats:
    """Counters the reports need: fills, fees, turnover, stream time-in and flips, event counts.

    All money in quote currency (``Decimal``); times in ms UTC. ``equity_curve`` holds the equity
    samples and ``mark_curve``, parallel to it, the marks each sample was valued at (``{symbol: price}``,
    quote currency; the buy-and-hold benchmark of the reports is marked with them).

    Deposits and withdrawals (:meth:`on_cash_flow`) are accounted like a fund's subscriptions: the
    portfolio holds ``units`` (1 at the start), a flow of value F at equity E buys or redeems
    ``F / (E / units)`` of them, and :meth:`flow_adjusted_curve` (equity per unit, scaled to the
    first sample) is the time-weighted curve the returns are measured on (GIPS time-weighted return
    with revaluation at each flow).
    """

    def __init__(self, symbols: Iterable[str], streams: Iterable[str]) -> None:
        self.n_fills = 0
        self.fees_quote = ZERO
        self.traded_notional = ZERO
        self.traded_notional_by_symbol: dict[str, Decimal] = dict.fromkeys(symbols, ZERO)
        self.fees_by_symbol: dict[str, Decimal] = dict.fromkeys(symbols, ZERO)
        self.flips: dict[str, int] = dict.fromkeys(streams, 0)
        self.in_since: dict[str, int | None] = dict.fromkeys(streams, None)
        self.in_ms: dict[str, int] = dict.fromkeys(streams, 0)
        self.state_by_stream: dict[str, StreamState] = dict.fromkeys(streams, StreamState.OUT)
        self.event_counts: dict[str, int] = {}
        self.event_amounts: dict[str, Decimal] = {}
        self.equity_curve: list[tuple[int, Decimal]] = []
        self.mark_curve: list[tuple[int, Mapping[str, Decimal]]] = []
        self.exposure_ms = 0
        self._last_equity_ms: int | None = None
        self._last_exposed = False
        self._changed: set[str] = set()
        self.scaled_in_positions: set[str] = set()
        #: ``(time_ms, units)`` from which each unit count holds (the first: ``(t, 1)`` at the first flow).
        self.unit_changes: list[tuple[int, Decimal]] = []
        self.net_flows = ZERO

    def on_cash_flow(self, t: int, value: Decimal, equity_before: Decimal) -> None:
        """Account a deposit (``value > 0``) or withdrawal at ``t`` (ms UTC) made when equity was
        ``equity_before`` (quote currency, > 0; a flow into an empty portfolio restarts the units)."""
        units = self.unit_changes[-1][1] if self.unit_changes else Decimal(1)
        if equity_before > 0:
            units += value / (equity_before / units)
        else:
            units = Decimal(1)
        if units <= 0:
            units = Decimal("1e-18")  # everything withdrawn: later equity is a new portfolio's
        self.unit_changes.append((t, units))
        self.net_flows += value

    def flow_adjusted_curve(self) -> list[tuple[int, Decimal]]:
        """The equity curve net of cash flows: ``equity / units`` per sample, equal to ``equity_curve``
        while no flow happened. A sample at a flow's time is valued before the flow."""
        if not self.unit_changes:
            return self.equity_curve
        out: list[tuple[int, Decimal]] = []
        changes, i, units = self.unit_changes, 0, Decimal(1)
        for t, equity in self.equity_curve:
            while i < len(changes) and changes[i][0] < t:
                units = changes[i][1]
                i += 1
            out.append((t, equity / units))
        return out

    def on_fill(self, fill: Fill) -> None:
        """Count one applied fill."""
        self.n_fills += 1
        self.fees_quote += fill.fee_quote
        self.traded_notional += fill.notional
        self.traded_notional_by_symbol[fill.symbol] = (
            self.traded_notional_by_symbol.get(fill.symbol, ZERO) + fill.notional
        )
        self.fees_by_symbol[fill.symbol] = self.fees_by_symbol.get(fill.symbol, ZERO) + fill.fee_quote

    def on_flip(self, sig: StreamSignal) -> None:
        """Record a stream flip at ``sig.time_ms`` (time-in accounting)."""
        sid = sig.stream
        self.flips[sid] = self.flips.get(sid, 0) + 1
        if sig.state is StreamState.IN:
            self.in_since[sid] = sig.time_ms
        else:
            since = self.in_since.get(sid)
            if since is not None:
                self.in_ms[sid] = self.in_ms.get(sid, 0) + sig.time_ms - since
            self.in_since[sid] = None
        self.state_by_stream[sid] = sig.state

    def time_in_ms(self, sid: str, until_ms: int) -> int:
        """Total time stream ``sid`` was ``in`` up to ``until_ms``."""
        since = self.in_since.get(sid)
        return self.in_ms.get(sid, 0) + (until_ms - since if since is not None else 0)

    def mark_streams_changed(self, sym: str) -> None:
        """Note that a stream of ``sym`` flipped since the last plan (attribution must be updated)."""
        self._changed.add(sym)

    def streams_changed(self, sym: str) -> bool:
        """Return and clear the "a stream flipped" flag of ``sym``."""
        if sym in self._changed:
            self._changed.discard(sym)
            return True
        return False

    def streams_in(self, sym: str) -> int:
        """Number of streams of ``sym``'s asset that are in (by stream id prefix)."""
        asset = sym.split("/")[0]
        return sum(
            1
            for sid, st in self.state_by_stream.items()
            if st is StreamState.IN and sid.startswith(asset + ":")
        )

    def on_event(self, kind: PositionEventType, amount: Decimal | None, position_id: str | None) -> None:
        """Count a position event, sum its measured amount, remember positions that scaled in."""
        self.event_counts[kind.value] = self.event_counts.get(kind.value, 0) + 1
        if kind is PositionEventType.SCALE_IN and position_id is not None:
            self.scaled_in_positions.add(position_id)
        if amount is not None:
            self.event_amounts[kind.value] = self.event_amounts.get(kind.value, ZERO) + amount

    def on_equity(self, t: int, equity: Decimal, exposed: bool, marks: Mapping[str, Decimal]) -> None:
        """Append an equity sample and its marks; accumulate exposure time (time with any position open).

        ``marks`` is kept as given (not copied): the caller passes a dict it no longer changes. A second
        sample at the same ``t`` replaces the first, in both curves.
        """
        if self.equity_curve and self.equity_curve[-1][0] == t:
            self.equity_curve[-1] = (t, equity)
            self.mark_curve[-1] = (t, marks)
        else:
            self.equity_curve.append((t, equity))
            self.mark_curve.append((t, marks))
        if self._last_equity_ms is not None and self._last_exposed:
            self.exposure_ms += t - self._last_equity_ms
        self._last_equity_ms = t
        self._last_exposed = exposed

    def state(self) -> dict[str, Any]:
        """Return the JSON-able state (Decimals as strings), for the engine snapshot."""
        return {
            "n_fills": self.n_fills,
            "fees_quote": str(self.fees_quote),
            "traded_notional": str(self.traded_notional),
            "traded_notional_by_symbol": {k: str(v) for k, v in self.traded_notional_by_symbol.items()},
            "fees_by_symbol": {k: str(v) for k, v in self.fees_by_symbol.items()},
            "flips": self.flips,
            "in_since": self.in_since,
            "in_ms": self.in_ms,
            "state": {k: v.value for k, v in self.state_by_stream.items()},
            "event_counts": self.event_counts,
            "event_amounts": {k: str(v) for k, v in self.event_amounts.items()},
            "equity_curve": [[t, str(v)] for t, v in self.equity_curve],
            "mark_curve": [[t, {k: str(v) for k, v in m.items()}] for t, m in self.mark_curve],
            "exposure_ms": self.exposure_ms,
            "last_equity_ms": self._last_equity_ms,
            "last_exposed": self._last_exposed,
            "scaled_in_positions": sorted(self.scaled_in_positions),
            "unit_changes": [[t, str(u)] for t, u in self.unit_changes],
            "net_flows": str(self.net_flows),
        }

    def restore(self, s: dict[str, Any]) -> None:
        """Load a :meth:`state`.

        A snapshot written before ``mark_curve`` existed restores with a mark curve of the same times
        and no marks (the benchmark then values those samples at the entry prices).
        """
        self.n_fills = s["n_fills"]
        self.fees_quote = Decimal(s["fees_quote"])
        self.traded_notional = Decimal(s["traded_notional"])
        self.traded_notional_by_symbol = {k: Decimal(v) for k, v in s["traded_notional_by_symbol"].items()}
        self.fees_by_symbol = {k: Decimal(v) for k, v in s["fees_by_symbol"].items()}
        self.flips = dict(s["flips"])
        self.in_since = dict(s["in_since"])
        self.in_ms = dict(s["in_ms"])
        self.state_by_stream = {k: StreamState(v) for k, v in s["state"].items()}
        self.event_counts = dict(s["event_counts"])
        self.event_amounts = {k: Decimal(v) for k, v in s["event_amounts"].items()}
        self.equity_curve = [(int(t), Decimal(v)) for t, v in s["equity_curve"]]
        if "mark_curve" in s:
            self.mark_curve = [(int(t), {k: Decimal(v) for k, v in m.items()}) for t, m in s["mark_curve"]]
        else:
            self.mark_curve = [(t, {}) for t, _ in self.equity_curve]
        self.exposure_ms = s["exposure_ms"]
        self._last_equity_ms = s["last_equity_ms"]
        self._last_exposed = s["last_exposed"]
        self.scaled_in_positions = set(s["scaled_in_positions"])
        self.unit_changes = [(int(t), Decimal(u)) for t, u in s.get("unit_changes", ())]
        self.net_flows = Decimal(s.get("net_flows", "0"))
