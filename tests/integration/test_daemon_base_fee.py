"""Binance's buy commission in the base asset, end to end through the daemon: ``tradebot run``
(testnet mode) against the simulator with ``binance_buy_fee_in_base`` (a buy of ``q`` BTC delivers
``q − q × 0.001`` BTC, as Binance does without BNB), ccxt, the order executor, the engine's ledger
and reconciliation.

With ``TRADEBOT_DAEMON__BALANCE_CHANGES=refuse`` any BTC the ledger cannot explain — a base-asset fee
it did not take off the position — refuses trading at the next reconciliation. The daemon trades,
every reconciliation (periodic, and at the restart) finds the ledger equal to the simulator's
balances, and the stored fills fold to the simulator's balances exactly: held = Σ bought − Σ base
fees − Σ sold per asset, USDT = 10000 − Σ bought notional + Σ sold notional − Σ sell fees.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from daemon_proc import FIXTURE, KEY, SECRET, DaemonProcess, sim_env

from tradebot.adapters.store import SqlEventStore
from tradebot.core.domain import OrderStatus, Side
from tradebot.exchange_sim import ExchangeSim, SimConfig

D = Decimal
RUN = "testnet-binance"


@pytest.mark.timeout(120)
async def test_buy_fees_in_the_base_asset_keep_the_daemons_ledger_equal_to_the_venue(tmp_path: Path) -> None:
    config = SimConfig(data_dir=FIXTURE, start_ms=1679529600000 + 3600_000, minute_wall_s=0.02,
                       binance_buy_fee_in_base=True)  # fmt: skip
    async with ExchangeSim(config) as sim:
        sim.binance_private.credentials[KEY] = SECRET
        env = {**sim_env(sim, tmp_path), "TRADEBOT_DAEMON__BALANCE_CHANGES": "refuse"}
        orders = sim.binance_orders

        def count(side: str) -> int:
            return sum(t.side == side for t in orders.trades)

        async with DaemonProcess(env, tmp_path) as d:
            await d.wait_for(lambda: count("BUY") >= 2 and count("SELL") >= 1, 60, "two buys and a sell")
            seen = len(d.events("reconciled"))
            await d.wait_for(
                lambda: len(d.events("reconciled")) >= seen + 2, 30, "reconciliations after them"
            )
            first = d.events("reconciled")
            assert await d.stop() == 0, d.tail()
        async with DaemonProcess(env, tmp_path) as d:  # the restart folds the stored fills again
            await d.wait_for(lambda: any(e["startup"] for e in d.events("reconciled")), 40, "startup")
            await d.wait_for(lambda: len(d.events("status")) >= 3, 20, "a few status lines")
            second = d.events("reconciled")
            assert await d.stop() == 0, d.tail()
        trades, balances = list(orders.trades), orders.balances()
        steps = {f"{r.base}/{r.quote}": r.step for r in orders.rules.values()}
    for event in first + second:
        assert event["ok"] is True, event
    assert any(e["startup"] for e in second) and any(not e["startup"] for e in first)
    async with SqlEventStore(env["TRADEBOT_DATABASE_URL"]) as store:
        fills = await store.fills(RUN)
        rows = await store.orders(RUN)
    # no sell ever asked for the units a base fee took (a buy may be refused for cash when the
    # fill moved from the decision price, as with quote fees; not this test's subject)
    assert [r.client_order_id for r in rows if r.side is Side.SELL and r.status is OrderStatus.REJECTED] == []
    assert sorted((f.trade_id, f.qty, f.price, f.fee) for f in fills) == sorted(
        (str(t.trade_id), t.qty, t.price, t.fee) for t in trades
    )
    buys = [f for f in fills if f.side is Side.BUY]
    assert len(buys) >= 2 and any(f.side is Side.SELL for f in fills)
    # each base fee is more than the reconciliation's dust (one step), so a ledger ignoring it is refused
    assert all(f.fee > steps[f.symbol] for f in buys), [(f.symbol, f.fee) for f in buys]
    for f in fills:  # a buy pays qty × 0.001 in the base asset, a sell notional × 0.001 in USDT
        base = f.symbol.split("/")[0]
        expected = (f.qty if f.side is Side.BUY else f.qty * f.price) * D("0.001")
        assert (f.fee_currency, f.fee) == (
            base if f.side is Side.BUY else "USDT",
            expected.quantize(D("1e-8")),
        )
    cash = D(10000) + sum((-(f.qty * f.price) if f.side is Side.BUY else f.qty * f.price - f.fee for f in fills),
                          D(0))  # fmt: skip
    assert cash == balances["USDT"]
    for base in ("BTC", "ETH", "SOL"):
        mine = [f for f in fills if f.symbol == f"{base}/USDT"]
        held = sum(((f.qty - f.fee) if f.side is Side.BUY else -f.qty for f in mine), D(0))
        assert held == balances.get(base, D(0)), base
