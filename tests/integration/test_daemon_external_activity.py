"""External account activity against a running testnet daemon (issue 14, findings 2–4).

``tradebot run`` trades the simulator while the test, as the account's owner would, deposits and
withdraws USDT and sells BTC by hand through the venue. Before: the deposit's reconciliation found a
"mismatch" and every later order (exits too) was refused while the health file said active; a
resting manual order switched periodic reconciliation off; an adopted SELL was stored as a buy; a
manual sale was bought back at the next rebalance. Now the flows are ``cash_flow`` events (equity
moves, PnL does not; the status line reports the net flows), the daemon keeps trading, and the
manual sale is a ``manual_trade`` event with its true side, respected (``manual_trades=respect``).
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from daemon_proc import FIXTURE, KEY, SECRET, DaemonProcess, sim_env

from tradebot.exchange_sim import ExchangeSim, SimConfig

D = Decimal


def _flows(d: DaemonProcess) -> list[Decimal]:
    return [D(e["amount"]) for e in d.events("cash_flow") if e.get("asset") == "USDT"]


@pytest.mark.timeout(150)
async def test_deposits_withdrawals_and_a_manual_sale_leave_the_daemon_trading(tmp_path: Path) -> None:
    config = SimConfig(data_dir=FIXTURE, start_ms=1679529600000 + 3600_000, minute_wall_s=0.1)
    async with ExchangeSim(config) as sim:
        sim.binance_private.credentials[KEY] = SECRET
        orders = sim.binance_orders
        async with DaemonProcess(sim_env(sim, tmp_path), tmp_path) as d:
            await d.wait_for(
                lambda: any(not e["startup"] for e in d.events("reconciled")), 40, "reconciliation"
            )
            orders.free["USDT"] += D("500")  # a deposit
            await d.wait_for(lambda: _flows(d) == [500], 20, "the deposit as a cash flow")
            orders.free["USDT"] -= D("300")  # a withdrawal
            await d.wait_for(lambda: _flows(d) == [500, -300], 20, "the withdrawal as a cash flow")
            await d.wait_for(lambda: orders.free.get("BTC", D(0)) > D("0.001"), 60, "a BTC position")
            mark = len(d.lines)
            held = orders.free["BTC"]
            sale = (held / 2).quantize(D("0.00001"))
            orders.place(symbol="BTCUSDT", side="SELL", type="MARKET", qty=sale, price=None,
                         client_order_id="web_manual_1")  # fmt: skip
            await d.wait_for(
                lambda: any(e.get("event_type") == "manual_trade" for e in d.events("position_event", mark)),
                20,
                "the manual sale adopted",
            )
            after_sale = len(d.lines)
            await d.wait_for(
                lambda: d.candles() >= 0 and len(d.events("status", after_sale)) >= 20, 30, "time"
            )
            status = d.events("status")[-1]
            assert status["net_cash_flows_quote"] == "200.00"
            assert status["trading_state"] == "active"
            refused = [e for e in d.events("order_rejected") if "not sent" in str(e.get("reason"))]
            assert refused == [], refused
            buys_back = [
                e
                for e in d.events("order_submitted", after_sale)
                if e["symbol"] == "BTC/USDT" and e["side"] == "buy"
            ]
            flips = [e for e in d.events("stream_flipped", after_sale) if str(e["stream"]).startswith("BTC")]
            assert buys_back == [] or flips, "the manual sale was bought back without a stream change"
            assert await d.stop() == 0, d.tail()
    db = sqlite3.connect(tmp_path / "bot.db")
    rows = db.execute(
        "SELECT event_type, size_before, size_after, trigger_reason FROM position_events "
        "WHERE event_type IN ('cash_flow', 'manual_trade') ORDER BY seq"
    ).fetchall()
    kinds = [r[0] for r in rows]
    assert kinds == ["cash_flow", "cash_flow", "manual_trade"], rows
    manual = rows[2]
    assert D(manual[1]) - D(manual[2]) == sale and "sell" in manual[3]
    assert db.execute(
        "SELECT count(*) FROM position_events WHERE event_type = 'reconcile_mismatch'"
    ).fetchone() == (0,)
