"""Hypothesis: a resting sell stop at the simulated exchange over random candles.

Invariants, for any stop price, slippage and candle path (each candle's low <= open, close <= high):

* the stop fills on the first candle whose low reaches it, never before (the quick float look never
  hides a trigger: prices carry up to 8 decimals);
* before slippage the fill price is in ``[low, stop]`` of that candle (the stop, or a lower open);
  after it, it is the sell slippage of that price rounded down to the tick, so never above the stop;
* the base units stay locked while it rests, and the balances move by exactly the fill.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tradebot.adapters.venues.simulated import SimulatedExchange
from tradebot.core.domain import (
    Candle,
    ClientOrderId,
    Fill,
    OrderType,
    PlaceOrder,
    Side,
    Symbol,
    Timeframe,
    spot_instrument,
    to_decimal,
)

BTC = Symbol("BTC/USDT")
T0 = 1_700_000_000_000
TICK = Decimal("0.01")


@st.composite
def candles(draw: st.DrawFn) -> list[tuple[float, float, float, float]]:
    # (open, high, low, close) as floats with up to 8 decimals around 20 000
    out = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        prices = [
            draw(st.integers(min_value=1_900_000_000_000, max_value=2_100_000_000_000)) for _ in range(2)
        ]
        o, c = prices
        hi = max(o, c) + draw(st.integers(min_value=0, max_value=5_000_000_000))
        lo = min(o, c) - draw(st.integers(min_value=0, max_value=5_000_000_000))
        out.append(tuple(float(Decimal(x) / 10**8) for x in (o, hi, lo, c)))
    return out  # type: ignore[return-value]


@settings(max_examples=300, deadline=None)
@given(
    stop_ticks=st.integers(min_value=1_900_000, max_value=2_050_000),
    bps=st.sampled_from([0, 1, 5, 25]),
    path=candles(),
)
def test_a_sell_stop_fills_once_within_the_triggering_candle(
    stop_ticks: int, bps: int, path: list[tuple[float, float, float, float]]
) -> None:
    stop = stop_ticks * TICK
    ex = SimulatedExchange(
        [spot_instrument("BTC")], {"USDT": Decimal(0), "BTC": Decimal("0.5")}, slippage_bps=bps
    )
    ref = max(stop + TICK, to_decimal(path[0][0]) + TICK)
    report = ex.submit(PlaceOrder(client_order_id=ClientOrderId("p-1-1"), symbol=BTC, side=Side.SELL,
                                  qty=Decimal("0.5"), ref_price=ref, reason="stop", intent_id="p-1", created_ms=T0,
                                  order_type=OrderType.STOP_MARKET, stop_price=stop), T0)  # fmt: skip
    assert report.reason == ""
    for n, (o, h, lo, c) in enumerate(path):
        events = ex.on_candle(Candle(BTC, Timeframe.M1, T0 + n * 60_000, o, h, lo, c, 10.0))
        low, open_ = to_decimal(lo), to_decimal(o)
        if n == 0 and open_ <= stop:  # the open it arrives at has reached it: refused
            assert [e.status.value for e in events] == ["expired"]
            event("refused at the first open")
            return
        if low > stop:
            assert events == [] or events == ()
            assert ex.locked() == {"BTC": Decimal("0.5")}
            continue
        (fill,) = events
        assert isinstance(fill, Fill)
        before = min(stop, open_)
        assert low <= before <= stop
        expected = (before * (1 - Decimal(bps) / 10_000) / TICK).to_integral_value(ROUND_FLOOR) * TICK
        assert fill.price == expected <= stop
        assert ex.balances() == {"BTC": Decimal(0), "USDT": fill.qty * fill.price - fill.fee_quote}
        assert ex.locked() == {} and not ex.has_queued_orders()
        event("gapped through" if open_ < stop else "filled at the stop")
        return
    assert ex.fills_for(BTC) == []
    event("never triggered")
