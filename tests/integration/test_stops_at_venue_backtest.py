"""Stops resting at the venue in the backtest (issue 13): the managed overlay on the shipped 1m sample
with ``stops_at_venue``, replayed one time slice at a time against the simulated exchange.

After every slice, for every symbol: at most one stop rests at the venue, never for more than the
position; when the position is open with an overlay stop and nothing else is in flight, exactly one
rests, for the whole position at the overlay's stop (rounded down to the tick). Every stop the venue
fills is one fill, one ``stop_exit`` event naming it, one exit of the position, at the stop (or a
lower gapped open) less the slippage — and no market sell beside it.
"""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_DOWN, ROUND_FLOOR
from pathlib import Path

import pytest

from tradebot.app.backtest.backtest import BacktestOptions, _prepare, load_data
from tradebot.app.backtest.replay import Dispatcher, replay_into
from tradebot.app.settings import load_settings
from tradebot.core.domain import (
    Fill,
    OrderStatus,
    PositionEvent,
    PositionEventType,
    Side,
    Timeframe,
    to_decimal,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    config = tmp_path_factory.mktemp("cfg") / "venue_stops.toml"
    config.write_text(
        "stops_at_venue = true\n" + (REPO / "config" / "managed.toml").read_text(), encoding="utf-8"
    )
    settings = load_settings(config)
    data = load_data(settings, BacktestOptions(data_dir=REPO / "data" / "sample", timeframe=Timeframe.M1))
    engine, exchange, stream, _ = _prepare(settings, data, "vs", None)
    d = Dispatcher(engine, exchange)
    records: list[object] = []
    checked = protected = 0
    violations: list[str] = []
    lo, n = 0, len(stream)
    planning, stops = engine._planning, engine._stops
    assert stops is not None
    while lo < n:
        hi = stream.slice_end(lo + 1)
        records += replay_into(d, stream, lo, hi)
        lo = hi
        busy = {planning.orders[c].symbol for c in planning.in_flight}
        for sym in engine.symbols:
            resting = [
                o for o in exchange.open_orders(sym) if o.order_type is not None and o.order_type.is_stop
            ]
            held = engine.ledger.position(sym)
            if len(resting) > 1 or sum(o.qty - o.filled_qty for o in resting) > held:
                violations.append(f"{sym} @ {stream.times[hi - 1]}: {resting} for {held}")
            stop = engine._sym[sym].manager.protective_stop
            inst = engine.instruments[sym]
            if held <= 0 or stop is None or sym in busy or stops.cancelling or sym in stops.triggered:
                continue
            wanted = stops.wanted(sym, held, stop, engine.mark(sym))
            if wanted is None:
                continue
            checked += 1
            if [(o.qty, o.stop_price) for o in resting] == [wanted]:
                protected += 1
            else:
                violations.append(f"{sym} @ {stream.times[hi - 1]}: resting {resting}, wanted {wanted}")
            assert wanted == (
                inst.round_qty(held, ROUND_DOWN),
                inst.round_price(to_decimal(stop), ROUND_FLOOR),
            )
    records += engine.finish()
    return {"records": records, "checked": checked, "protected": protected, "violations": violations,
            "exchange": exchange, "engine": engine, "slippage_bps": settings.backtest.slippage_bps}  # fmt: skip


def test_one_stop_rests_for_each_protected_position_at_the_overlays_level(run: dict) -> None:
    assert run["violations"] == []
    # slices with an open, stop-protected position and nothing in flight: every one had its stop
    assert run["checked"] == run["protected"] > 10_000, (run["checked"], run["protected"])


def test_a_filled_stop_is_one_fill_one_stop_exit_and_no_market_sell(run: dict) -> None:
    records = run["records"]
    engine = run["engine"]
    stops = engine._stops
    fills = [r for r in records if type(r) is Fill]
    stop_fills = [f for f in fills if stops.is_stop(f.client_order_id)]
    exits = [r for r in records if type(r) is PositionEvent and r.event_type is PositionEventType.STOP_EXIT]
    venue_exits = [e for e in exits if e.trigger_reason.startswith("venue stop")]
    assert len(stop_fills) >= 20
    assert Counter(f.client_order_id for f in stop_fills).most_common(1)[0][1] == 1  # one fill each
    assert sorted(e.client_order_ids for e in venue_exits) == sorted((f.client_order_id,) for f in stop_fills)
    closing = {(r.symbol, r.event_time_ms) for r in records if type(r) is PositionEvent
               and r.event_type is PositionEventType.EXIT}  # fmt: skip
    bps = run["slippage_bps"]
    for f in stop_fills:
        order = engine.orders[f.client_order_id]
        assert order.status is OrderStatus.FILLED and order.side is Side.SELL and f.qty == order.qty
        assert (
            f.price
            <= order.stop_price * (1 - to_decimal(bps) / 10_000) + engine.instruments[f.symbol].tick_size
        )
        assert (f.symbol, f.ts_ms) in closing  # the whole position, closed by the stop
        beside = [g for g in fills if g.symbol == f.symbol and g.ts_ms == f.ts_ms and g is not f]
        assert beside == []  # no market sell of the same units
    # a stop exit decided by the engine itself (the stop raised within a bar, below the close)
    # remains a market exit; every other stop exit was filled at the venue
    assert all("raised this bar" in e.trigger_reason for e in exits if e not in venue_exits)


def test_the_stops_are_recorded_as_stop_orders_with_their_trigger_price(run: dict) -> None:
    from tradebot.core.domain import OrderRecord, OrderType

    rows = [r for r in run["records"] if type(r) is OrderRecord and r.order_type is OrderType.STOP_MARKET]
    assert rows and all(r.stop_price is not None and r.stop_price > 0 for r in rows)
    assert {r.reason for r in rows} == {"protective_stop"}
    cancelled = [r for r in rows if r.status is OrderStatus.CANCELED]
    assert cancelled  # replaced as the stop moved (breakeven, trail) or freed for a sell
    rejected = [r for r in run["records"] if type(r) is PositionEvent
                and r.event_type is PositionEventType.ORDER_REJECTED]  # fmt: skip
    assert rejected == []  # the engine's own cancels are not failures
