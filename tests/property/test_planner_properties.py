"""Hypothesis invariants of the execution planner: child orders are always valid, sum to their intent,
sells never exceed holdings and buys never exceed cash."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.domain import Asset, Instrument, Side, Symbol
from tradebot.core.execution.planner import PlannerConfig, plan_rebalance
from tradebot.core.execution.slicing import slice_qty

SYMBOLS = [Symbol("BTC/USDT"), Symbol("ETH/USDT"), Symbol("SOL/USDT")]


def decimals(lo: int, hi: int, places: int) -> st.SearchStrategy[D]:
    return st.integers(lo, hi).map(lambda n: D(n).scaleb(-places))


@st.composite
def instruments(draw, symbol: Symbol) -> Instrument:
    return Instrument(
        symbol=symbol,
        base=Asset(symbol.split("/")[0]),
        quote=Asset("USDT"),
        tick_size=D("0.01"),
        step_size=draw(st.sampled_from([D("0.00001"), D("0.0001"), D("0.001"), D("0.01"), D("1")])),
        min_qty=draw(st.sampled_from([D("0"), D("0.001"), D("0.01")])),
        min_notional=draw(st.sampled_from([D("0"), D("5"), D("10")])),
        max_notional=draw(st.sampled_from([None, D("9000"), D("100000")])),
        taker_fee=draw(st.sampled_from([D("0"), D("0.00075"), D("0.001")])),
    )


@st.composite
def configs(draw) -> PlannerConfig:
    min_order = draw(st.sampled_from([D("0"), D("1"), D("20")]))
    max_order = draw(st.one_of(st.none(), decimals(2 * int(min_order) * 100 + 100, 5_000_000, 2)))
    return PlannerConfig(
        band_fraction=draw(st.sampled_from([D("0"), D("0.001"), D("0.02")])),
        max_order_notional=max_order,
        min_order_notional=min_order,
        cash_buffer_fraction=draw(st.sampled_from([D("0"), D("0.002"), D("0.05")])),
        defer_buys_while_selling=draw(st.booleans()),
    )


@st.composite
def scenarios(draw):
    symbols = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=3, unique=True))
    insts = {s: draw(instruments(s)) for s in symbols}
    marks = {s: draw(decimals(1, 10_000_000, 2)) for s in symbols}  # 0.01 .. 100000
    holdings = {s: draw(st.one_of(st.just(D(0)), decimals(0, 10**9, 6))) for s in symbols}
    targets = {s: draw(st.one_of(st.just(D(0)), decimals(0, 10**7, 2))) for s in symbols}
    cash = draw(decimals(0, 10**8, 2))
    equity = cash + sum(holdings[s] * marks[s] for s in symbols)
    blocked = frozenset(draw(st.lists(st.sampled_from(symbols), unique=True)))
    force = frozenset(draw(st.lists(st.sampled_from(symbols), unique=True)))
    return dict(
        targets=targets,
        holdings=holdings,
        marks=marks,
        cash=cash,
        equity=equity,
        instruments=insts,
        config=draw(configs()),
        run_id="r",
        next_intent_seq=1,
        time_ms=0,
        blocked_increase=blocked,
        force=force,
    )


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_plan_invariants(kw):
    plan = plan_rebalance(**kw)
    cfg: PlannerConfig = kw["config"]
    by_intent: dict[str, D] = {}
    for order in plan.orders:
        inst = kw["instruments"][order.symbol]
        assert order.qty > 0
        assert order.qty % inst.step_size == 0
        assert order.qty >= inst.min_qty
        assert order.ref_price == kw["marks"][order.symbol]
        assert order.notional >= max(cfg.min_order_notional, inst.min_notional)
        if cfg.max_order_notional is not None:
            assert order.notional <= cfg.max_order_notional
        if inst.max_notional is not None:
            assert order.notional <= inst.max_notional
        assert inst.check_order(order.qty, order.ref_price) is None
        assert order.client_order_id.startswith(order.intent_id + "-")
        by_intent[order.intent_id] = by_intent.get(order.intent_id, D(0)) + order.qty
    # children sum exactly to their intent; one intent per symbol; ids are sequential
    assert by_intent == {i.intent_id: i.qty for i in plan.intents}
    assert len({i.symbol for i in plan.intents}) == len(plan.intents)
    assert [i.intent_id for i in plan.intents] == [f"r-{n}" for n in range(1, plan.next_intent_seq)]
    assert len({o.client_order_id for o in plan.orders}) == len(plan.orders)
    # sells first, never more than held
    sides = [o.side for o in plan.orders]
    assert sides == sorted(sides, key=lambda s: s is Side.BUY)
    for intent in plan.intents:
        if intent.side is Side.SELL:
            assert intent.qty <= kw["holdings"][intent.symbol]
        else:
            assert intent.symbol not in kw["blocked_increase"]
    # buys never exceed usable cash, fees included
    buy_cost = sum(
        (o.notional * (1 + kw["instruments"][o.symbol].taker_fee) for o in plan.orders if o.side is Side.BUY),
        D(0),
    )
    assert buy_cost <= kw["cash"] * (1 - cfg.cash_buffer_fraction)
    if plan.deferred_buys:
        assert all(o.side is Side.SELL for o in plan.orders) and plan.orders


@settings(max_examples=300, deadline=None)
@given(
    steps=st.integers(1, 10**7),
    step=st.sampled_from([D("0.00001"), D("0.001"), D("1")]),
    mark=decimals(1, 10_000_000, 2),
    min_notional=decimals(0, 5_000, 0),
    max_notional=decimals(1, 100_000, 0),
    max_steps=st.none() | st.integers(1, 10**6),
)
def test_slice_qty_children_are_valid_and_sum_to_the_intent(
    steps, step, mark, min_notional, max_notional, max_steps
):
    max_qty = None if max_steps is None else max_steps * step
    inst = Instrument(
        symbol=SYMBOLS[0],
        base=Asset("BTC"),
        quote=Asset("USDT"),
        tick_size=D("0.01"),
        step_size=step,
        max_qty=max_qty,
    )
    qty = steps * step
    children, cut = slice_qty(qty, mark, inst, min_notional=min_notional, max_notional=max_notional)
    assert sum(children, D(0)) + cut == qty
    assert 0 <= cut <= qty
    if qty * mark <= max_notional and (max_qty is None or qty <= max_qty):
        assert children == [qty]
        return
    for child in children:
        assert child > 0 and child % step == 0
        assert min_notional <= child * mark <= max_notional
        assert max_qty is None or child <= max_qty
    unit = step * mark
    largest = max_notional if max_qty is None else min(max_notional, max_qty * mark)
    if largest >= 2 * min_notional + 3 * unit:
        assert cut == 0
