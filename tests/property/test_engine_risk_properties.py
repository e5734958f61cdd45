"""Hypothesis: random price paths through the real Engine with the managed overlay and hard risk limits.

Two symbols (BTC, ETH), 15m base candles from seeded geometric random walks, one 1h stream each
(EMA 2/3, ATR 2), the managed preset with short indicator periods, pooled allocation investing 95 %,
planner band 0 (every clock trades to target, so holdings never drift away from the clipped targets
by more than the minimum order). Every ``PlaceOrder`` fills at the next candle's open of its symbol.

Invariants:

* a buy never takes its symbol above ``max_position_fraction`` × equity (equity as the engine saw it
  when it sent the order; + one step of rounding);
* a plan with a buy never takes the gross exposure above ``max_gross_exposure_fraction`` × equity
  (+ one step and one minimum order per symbol: a decrease below the minimum order cannot be sent);
* no buy is sent between a ``DAILY_LOSS_HALT`` and the next UTC midnight;
* no ``SCALE_IN`` event while the mark is below the average entry.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tradebot.app.instruments import default_instruments
from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    Candle,
    Fill,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    Timeframe,
    TradeId,
    to_decimal,
)
from tradebot.core.engine import Engine
from tradebot.core.execution.planner import PlannerConfig
from tradebot.core.management import ManagementConfig, RiskLimits
from tradebot.core.portfolio.rebalancer import AllocationConfig
from tradebot.core.signals.stream import StreamConfig

M15, H1 = Timeframe.M15, Timeframe.H1
DAY = 86_400_000
T0 = 1_704_844_800_000  # 2024-01-10 00:00 UTC
START = {"BTC/USDT": 100.0, "ETH/USDT": 20.0}
FEE = Decimal("0.001")
MIN_ORDER = Decimal("5")
HOURS = 72
MANAGED = ManagementConfig.from_dict(
    {
        "indicators": {"volume_sma_h": 3, "momentum_h": 2},
        "initial_stop": {"regime_period_h": 5},
        "time_stop": {"max_hours": 12},
        "proportional": {"min_interval_ms": 0},
    }
)


def walk(
    rng: random.Random, start: float, n: int, drift: float, vol: float, tf: Timeframe, t0: int, sym: str
):
    """``n`` candles of a geometric random walk (open = previous close), prices rounded to 0.01."""
    out, price = [], start
    for i in range(n):
        close = round(max(price * math.exp(drift + vol * rng.gauss(0.0, 1.0)), 0.05), 2)
        wick = abs(rng.gauss(0.0, vol / 2))
        high = round(max(price, close) * (1 + wick), 2)
        low = round(min(price, close) * (1 - wick), 2)
        out.append(
            Candle(sym, tf, t0 + i * tf.ms, price, high, max(low, 0.01), close, rng.uniform(50.0, 150.0))
        )
        price = close
    return out


class Checker:
    """Drives the engine (fills at the next open) and checks the invariants after every step."""

    def __init__(self, engine: Engine, risk: RiskLimits) -> None:
        self.engine = engine
        self.cap = to_decimal(risk.max_position_fraction)
        self.gross = to_decimal(risk.max_gross_exposure_fraction)
        self.steps = {s: i.step_size for s, i in engine.instruments.items()}
        self.pending: dict[str, list[PlaceOrder]] = {}
        self.halted_until: int | None = None
        self.n_fills = 0
        self.seen: set[str] = set()

    def step(self, candle: Candle) -> None:
        while queue := self.pending.pop(candle.symbol, []):
            for cmd in queue:
                price = Decimal(repr(candle.open))
                self.n_fills += 1
                fill = Fill(
                    venue="test", symbol=cmd.symbol, trade_id=TradeId(f"x-{self.n_fills}"),
                    client_order_id=cmd.client_order_id, side=cmd.side, qty=cmd.qty, price=price,
                    fee_quote=cmd.qty * price * FEE, ts_ms=candle.open_time_ms,
                )  # fmt: skip
                self._check(self.engine.handle(fill))
        self._check(self.engine.handle(candle))

    def _check(self, out: list) -> None:
        eng = self.engine
        equity = eng.ledger.equity(eng.marks_decimal())  # what the engine planned with in this call
        net: dict[str, Decimal] = {}
        buys = []
        for x in out:
            if type(x) is PositionEvent:
                self.seen.add(x.event_type.value)
                if x.event_type is PositionEventType.DAILY_LOSS_HALT:
                    self.halted_until = (x.event_time_ms // DAY + 1) * DAY
                elif x.event_type is PositionEventType.SCALE_IN:
                    assert to_decimal(eng.mark(x.symbol)) >= eng.ledger.avg_entry(x.symbol), x
            elif type(x) is PlaceOrder:
                self.pending.setdefault(x.symbol, []).append(x)
                sign = 1 if x.side is Side.BUY else -1
                net[x.symbol] = net.get(x.symbol, Decimal(0)) + sign * x.qty
                if x.side is Side.BUY:
                    buys.append(x)
                    if self.halted_until is not None:
                        assert x.created_ms >= self.halted_until, (x, self.halted_until)
        if not buys:
            return
        marks = eng.marks_decimal()
        post = {s: (eng.ledger.position(s) + net.get(s, Decimal(0))) * marks[s] for s in eng.symbols}
        for b in buys:
            bound = self.cap * equity + self.steps[b.symbol] * b.ref_price
            assert post[b.symbol] <= bound, (b, post[b.symbol], bound)
        slack = sum((self.steps[s] * marks[s] + MIN_ORDER for s in eng.symbols), Decimal(0))
        assert sum(post.values(), Decimal(0)) <= self.gross * equity + slack, (post, equity)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    drift=st.floats(-0.002, 0.002),
    vol=st.floats(0.002, 0.02),
    cap=st.sampled_from([0.2, 0.35, 0.6]),
    gross=st.sampled_from([0.5, 0.8, 1.0]),
)
def test_risk_limits_hold_on_random_paths(
    seed: int, drift: float, vol: float, cap: float, gross: float
) -> None:
    symbols = list(START)
    risk = RiskLimits(
        max_position_fraction=cap,
        max_gross_exposure_fraction=gross,
        daily_loss_limit_fraction=0.03,
        min_order_notional=MIN_ORDER,
    )
    config = EngineConfig(
        run_id="p",
        quote="USDT",
        assets={s: s.split("/")[0] for s in symbols},
        base_timeframe=M15,
        streams=(StreamConfig(timeframe=H1, fast=2, slow=3, atr_period=2),),
        initial_cash=Decimal("10000"),
        allocation=AllocationConfig(policy="pooled", invest_fraction=0.95),
        planner=PlannerConfig(band_fraction=Decimal("0"), cash_buffer_fraction=Decimal("0")),
        management=MANAGED,
        risk=risk,
    )
    engine = Engine(config, default_instruments(symbols))
    rng = random.Random(seed)
    warm = [c for s in symbols for c in walk(rng, START[s], 6, drift * 4, vol * 2, H1, T0 - 6 * H1.ms, s)]
    engine.warm_up(warm)
    paths = {
        s: walk(rng, warm[6 * i + 5].close, HOURS * 4, drift, vol, M15, T0, s) for i, s in enumerate(symbols)
    }
    checker = Checker(engine, risk)
    for k in range(HOURS * 4):
        for s in symbols:
            checker.step(paths[s][k])
    for kind in ("daily_loss_halt", "scale_in", "stop_exit", "risk_block"):
        event(f"{kind}: {kind in checker.seen}")
