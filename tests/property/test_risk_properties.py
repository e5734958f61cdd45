"""Hypothesis: risk limits never raise a target, caps and gross hold, no entry after a daily-loss halt."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.domain import TradingState
from tradebot.core.management import RiskLimits, RiskManager

DAY = 86_400_000
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")

money = st.decimals(min_value=0, max_value=1_000_000, places=2, allow_nan=False, allow_infinity=False)
limits = st.builds(
    RiskLimits,
    max_position_fraction=st.none() | st.floats(0.01, 1.0),
    max_position_notional=st.none() | st.decimals(min_value=1, max_value=500_000, places=2),
    max_gross_exposure_fraction=st.none() | st.floats(0.1, 3.0),
    max_open_positions=st.none() | st.integers(0, 4),
    min_order_notional=st.decimals(min_value=0, max_value=50, places=2),
    max_leverage=st.floats(0.1, 3.0),
)


@st.composite
def books(draw):
    syms = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=4, unique=True))
    targets = {s: draw(money) for s in syms}
    holdings = {s: draw(money) for s in syms}
    return targets, holdings


@settings(max_examples=300, deadline=None)
@given(
    lim=limits,
    book=books(),
    equity=st.decimals(min_value=0, max_value=2_000_000, places=2),
    state=st.sampled_from(list(TradingState)),
    stale=st.sets(st.sampled_from(SYMBOLS)),
)
def test_limits_only_lower_targets_and_hold_every_cap(lim, book, equity, state, stale) -> None:
    targets, holdings = book
    rm = RiskManager(lim)
    rm.set_state(state, time_ms=0, reason="test")
    out, events = rm.apply_limits(targets, holdings, equity, 0, stale=frozenset(stale))
    assert out.keys() == targets.keys()
    cap = lim.position_cap(equity)
    for s, t in out.items():
        assert Decimal(0) <= t <= targets[s]
        if cap is not None:
            assert t <= cap
        if state is not TradingState.ACTIVE or s in stale:
            assert t <= holdings[s]
        if state is TradingState.HALTED:
            assert t == 0
    assert sum(out.values(), Decimal(0)) <= lim.gross_cap(equity)
    if lim.max_open_positions is not None:
        open_now = {s for s, h in holdings.items() if h >= lim.min_order_notional}
        new = {s for s, t in out.items() if t > 0 and s not in open_now}
        assert len(new) <= max(lim.max_open_positions - len(open_now), 0)
    lowered = {s for s in targets if out[s] < targets[s]}
    assert lowered == {e.symbol for e in events}


observations = st.lists(
    st.tuples(st.integers(0, DAY // 2), st.floats(min_value=1.0, max_value=1e6, allow_nan=False)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(obs=observations, limit=st.floats(0.005, 0.5))
def test_no_entry_after_a_daily_loss_halt_until_the_next_utc_day(obs, limit) -> None:
    rm = RiskManager(RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=limit))
    t = 0
    halted_day = None
    start = None
    for dt, equity in obs:
        t += dt
        day = t // DAY
        if start is None or day != start[0]:
            start = (day, Decimal(repr(equity)))
        rm.on_equity(t, equity)
        if halted_day is not None and day > halted_day:
            halted_day = None
        if Decimal(repr(equity)) <= start[1] * (1 - Decimal(repr(limit))):
            halted_day = day
        assert (rm.trading_state is TradingState.HALTED) == (halted_day is not None)
        out, _ = rm.apply_limits(
            {"BTC/USDT": Decimal(1000)}, {"BTC/USDT": Decimal(10)}, Decimal(repr(equity)), t
        )
        if halted_day is not None:
            assert out == {"BTC/USDT": Decimal(0)}
