"""Hypothesis tests of the ledger's accounting invariants (STRATEGY.md §5, STYLE.md rule 11).

For any generated sequence of fills (buys and sells, flips included), duplicate deliveries and
stream re-targetings (internal crossings at a mark), after every step:

* Σ stream units == asset quantity, exactly;
* Σ stream total PnL == asset total PnL (realized + unrealized − fees) at any common mark, exactly;
* asset quantity == Σ signed fill quantities;
* Σ over assets of (realized − fees − cost_basis) == cash − initial_cash, exactly, where
  cost_basis = avg_entry × qty (signed): realized PnL plus the cost of the open position equals the
  net cash flow minus fees; and cash == initial − Σ (side × qty × price + fee);
* equity(marks) == cash + Σ qty × mark;
* realized PnL matches an exact rational (Fraction) average-cost model within the 1e-18 rounding of
  removed cost per reduction;
* a duplicate trade id changes nothing; replaying the same operations into a fresh ledger, and
  restoring a snapshot, give identical state.
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.domain import ClientOrderId, Fill, Side, Symbol, TradeId
from tradebot.core.portfolio.ledger import Ledger

BTC, ETH = "BTC/USDT", "ETH/USDT"
STREAMS = {BTC: ["BTC:1h", "BTC:4h", "BTC:1d"], ETH: ["ETH:1h"]}
ALL_STREAMS = {BTC: [*STREAMS[BTC], "BTC:unassigned"], ETH: [*STREAMS[ETH], "ETH:unassigned"]}
INITIAL = Decimal("100000")


def scaled(lo: int, hi: int, places: int) -> st.SearchStrategy[Decimal]:
    return st.integers(lo, hi).map(lambda n: Decimal(n).scaleb(-places))


QTY = scaled(1, 2_000_000, 5)  # 0.00001 … 20 base units
PRICE = scaled(1, 10_000_000, 2)  # 0.01 … 100000 quote
FEE = scaled(0, 100_000, 6)
SYMBOL = st.sampled_from([BTC, ETH])
FILL_OP = st.tuples(st.just("fill"), SYMBOL, st.sampled_from(["buy", "sell"]), QTY, PRICE, FEE)
DUP_OP = st.tuples(st.just("dup"), st.integers(0, 10_000))


@st.composite
def target_op(draw: st.DrawFn) -> tuple[object, ...]:
    symbol = draw(SYMBOL)
    names = draw(st.lists(st.sampled_from(ALL_STREAMS[symbol]), unique=True))
    places = draw(st.sampled_from([5, 9, 20]))  # 20 decimals exercise the 1e-18 quantization
    targets = {n: draw(scaled(-2 * 10**places, 20 * 10**places, places)) for n in names}
    return ("targets", symbol, targets, draw(PRICE))


OPS = st.lists(st.one_of(FILL_OP, FILL_OP, DUP_OP, target_op()), max_size=40)


def new_ledger() -> Ledger:
    return Ledger("USDT", INITIAL, [BTC, ETH], STREAMS, run_id="p")


def make_fill(n: int, symbol: str, side: str, qty: Decimal, price: Decimal, fee: Decimal) -> Fill:
    return Fill(
        venue="simulated",
        symbol=Symbol(symbol),
        trade_id=TradeId(str(n)),
        client_order_id=ClientOrderId(f"p-{n}-1"),
        side=Side(side),
        qty=qty,
        price=price,
        fee_quote=fee,
        ts_ms=n,
    )


class Model:
    """Independent exact model: signed quantity, cash and average-cost realized PnL in Fractions."""

    def __init__(self) -> None:
        self.qty = {BTC: Fraction(0), ETH: Fraction(0)}
        self.cost = {BTC: Fraction(0), ETH: Fraction(0)}
        self.realized = {BTC: Fraction(0), ETH: Fraction(0)}
        self.cash = Fraction(INITIAL)
        self.reductions = 0

    def apply(self, fill: Fill) -> None:
        s = fill.side.sign
        q, p = Fraction(fill.qty) * s, Fraction(fill.price)
        self.cash -= q * p + Fraction(fill.fee_quote)
        held, cost = self.qty[fill.symbol], self.cost[fill.symbol]
        if held and (held > 0) != (q > 0):
            closed = min(abs(q), abs(held))
            removed = cost * closed / abs(held)
            self.realized[fill.symbol] += (1 if held > 0 else -1) * p * closed - removed
            cost -= removed
            held += closed if held < 0 else -closed
            q += -closed if q > 0 else closed
            self.reductions += 1
        self.qty[fill.symbol] = held + q
        self.cost[fill.symbol] = cost + q * p


def run(ops: list[tuple[object, ...]], ledger: Ledger, model: Model | None = None) -> list[Fill]:
    fills: list[Fill] = []
    for n, op in enumerate(ops):
        if op[0] == "fill":
            _, symbol, side, qty, price, fee = op
            fill = make_fill(n, symbol, side, qty, price, fee)  # type: ignore[arg-type]
            assert ledger.apply(fill)
            fills.append(fill)
            if model is not None:
                model.apply(fill)
        elif op[0] == "dup" and fills:
            before = ledger.snapshot()
            assert not ledger.apply(fills[op[1] % len(fills)])  # type: ignore[operator]
            assert ledger.snapshot() == before
        elif op[0] == "targets":
            _, symbol, targets, mark = op
            qty_before = ledger.position(symbol)  # type: ignore[arg-type]
            net = ledger.set_stream_targets(symbol, targets, mark)  # type: ignore[arg-type]
            assert ledger.position(symbol) == qty_before  # crossing moves no asset quantity
            assert net == sum(ledger.pending(symbol).values(), Decimal(0))  # type: ignore[arg-type]
        if model is not None:
            check_invariants(ledger, model)
    return fills


def check_invariants(ledger: Ledger, model: Model) -> None:
    marks = {BTC: Decimal("123.45"), ETH: Decimal("0.07")}
    flow = Decimal(0)
    for symbol in (BTC, ETH):
        qty = ledger.position(symbol)
        assert qty == model.qty[symbol]
        assert sum((ledger.stream_units(s) for s in ALL_STREAMS[symbol]), Decimal(0)) == qty
        asset_total = ledger.asset_pnl(symbol, marks[symbol]).total
        stream_total = sum(
            (ledger.stream_pnl(s, marks[symbol]).total for s in ALL_STREAMS[symbol]), Decimal(0)
        )
        assert stream_total == asset_total
        flow += ledger.realized(symbol) - ledger.fees(symbol) - ledger.cost_basis(symbol)
        tolerance = Fraction(1, 10**18) * (model.reductions + 1)
        assert abs(Fraction(ledger.realized(symbol)) - model.realized[symbol]) <= tolerance
    assert ledger.cash == model.cash
    assert flow == ledger.cash - INITIAL
    expected_equity = ledger.cash + sum((ledger.position(s) * marks[s] for s in (BTC, ETH)), Decimal(0))
    assert ledger.equity(marks) == expected_equity


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_accounting_invariants_hold_after_every_step(ops: list[tuple[object, ...]]) -> None:
    run(ops, new_ledger(), Model())


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_replay_and_snapshot_restore_give_identical_state(ops: list[tuple[object, ...]]) -> None:
    first, second = new_ledger(), new_ledger()
    run(ops, first)
    run(ops, second)
    assert first.snapshot() == second.snapshot()
    assert first.closed_trades == second.closed_trades
    restored = Ledger.restore(json.loads(json.dumps(first.snapshot())))
    assert restored.snapshot() == first.snapshot()
    for symbol in (BTC, ETH):
        assert restored.open_trade(symbol) == first.open_trade(symbol)
