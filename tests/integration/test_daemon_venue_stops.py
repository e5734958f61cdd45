"""Stops at the venue, end to end (issue 13 acceptance): ``tradebot run`` (testnet mode, PostgreSQL)
against the exchange simulator with the managed overlay and ``TRADEBOT_STOPS_AT_VENUE=true``.

1. A position opens → exactly one stop rests at the simulator for the position's quantity; while
   the trail moves it is replaced, never two at once for the same units.
2. SIGKILL the daemon; one minute of the simulator's tape then wicks through the resting stop: the
   simulator fills the stop while the daemon is down.
3. Restart: the fill is applied once, the trade closes as ``stop_exit`` naming the stop order, the
   ledger equals the simulator's balances and no second sell of those units is sent.

The same on Binance spot (``STOP_LOSS_LIMIT``: the recorded symbols allow no ``STOP_LOSS``) and on the
Deribit USDC perpetuals (``stop_market``, ``reduce_only``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from decimal import Decimal
from pathlib import Path

import pytest
from daemon_proc import FIXTURE, KEY, SECRET, DaemonProcess, sim_env

from tradebot.adapters.store import SqlEventStore
from tradebot.core.domain import PositionEventType, Side
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.deribit_ws import tape_symbol

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]
START = 1679529600000 + 3600_000  # 2023-03-23 01:00 UTC
MANAGED = '{"preset": "managed"}'
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
DERIBIT_KEY, DERIBIT_SECRET = "sim-deribit-key-01", "sim-deribit-secret-02"


@dataclasses.dataclass(frozen=True)
class Venue:
    name: str
    quote: str

    def orders(self, sim: ExchangeSim):  # type: ignore[no-untyped-def]
        return sim.binance_orders if self.name == "binance" else sim.deribit_orders

    def unified(self, base: str) -> str:
        return f"{base}/USDT" if self.name == "binance" else f"{base}/USDC:USDC"

    def base(self, wire: str) -> str:  # "BTCUSDT" / "BTC_USDC-PERPETUAL" → "BTC"
        return wire.removesuffix("USDT") if self.name == "binance" else wire.split("_")[0]

    def tape(self, wire: str) -> str:
        return wire if self.name == "binance" else tape_symbol(wire)

    def trade_id(self, t) -> str:  # type: ignore[no-untyped-def]
        return str(t.trade_id) if self.name == "binance" else f"USDC-T{t.trade_id}"

    def env(self, sim: ExchangeSim, tmp_path: Path, pg_url: str) -> dict[str, str]:
        common = {
            "TRADEBOT_DATABASE_URL": pg_url,
            "TRADEBOT_STOPS_AT_VENUE": "true",
            "TRADEBOT_MANAGEMENT": MANAGED,
        }
        if self.name == "binance":
            sim.binance_private.credentials[KEY] = SECRET
            return {**sim_env(sim, tmp_path), **common}
        sim.deribit_private.credentials[DERIBIT_KEY] = DERIBIT_SECRET
        binance = sim_env(sim, tmp_path)
        keep = ("TRADEBOT_DAEMON__STATUS_INTERVAL_S", "TRADEBOT_DAEMON__POLL_INTERVAL_S",
                "TRADEBOT_DAEMON__HEALTH_FILE", "TRADEBOT_DAEMON__BAN_FILE", "TRADEBOT_STREAMS")  # fmt: skip
        return {
            **{k: binance[k] for k in keep},
            **common,
            "TRADEBOT_MODE": "testnet",
            "TRADEBOT_VENUE": "deribit",
            "TRADEBOT_QUOTE": "USDC",
            "TRADEBOT_SYMBOLS": '["BTC/USDC:USDC", "ETH/USDC:USDC", "SOL/USDC:USDC"]',
            "TRADEBOT_TESTNET_API_KEY": DERIBIT_KEY,
            "TRADEBOT_TESTNET_API_SECRET": DERIBIT_SECRET,
            "TRADEBOT_FEEDS__DERIBIT__WS_URL": sim.deribit_ws_url,
            "TRADEBOT_FEEDS__DERIBIT__REST_URL": sim.deribit_rest_url,
            "TRADEBOT_EXCHANGE__DERIBIT__REST_URL": sim.deribit_rest_url,
            "TRADEBOT_EXCHANGE__DERIBIT__WS_URL": sim.deribit_ws_url,
            "TRADEBOT_FEEDS__DERIBIT__MAX_LAG_MS": str(10**13),
            "TRADEBOT_DAEMON__RECONCILE_INTERVAL_S": "5",  # Deribit's reads are slow (test_daemon_deribit)
        }


VENUES = [Venue("binance", "USDT"), Venue("deribit", "USDC")]


def _ledger(fills: list, venue: Venue) -> tuple[Decimal, dict[str, Decimal]]:
    cash = Decimal(10000) - sum(
        ((f.qty * f.price) if f.side is Side.BUY else -(f.qty * f.price)) + f.fee_quote for f in fills
    )
    held = {}
    for base in ("BTC", "ETH", "SOL"):
        held[base] = sum(((f.qty if f.side is Side.BUY else -f.qty) for f in fills
                          if f.symbol == venue.unified(base)), Decimal(0))  # fmt: skip
    return cash, held


@pytest.mark.parametrize("venue", VENUES, ids=[v.name for v in VENUES])
async def test_a_stop_rests_at_the_venue_fills_while_the_daemon_is_down_and_is_applied_once(
    tmp_path: Path, pg_url: str, venue: Venue
) -> None:
    config = SimConfig(
        data_dir=FIXTURE if venue.name == "binance" else SAMPLE, start_ms=START, minute_wall_s=0.05
    )
    run = f"testnet-{venue.name}"
    async with ExchangeSim(config) as sim:
        env = venue.env(sim, tmp_path, pg_url)

        def _resting() -> list:
            return [o for o in venue.orders(sim).open_orders() if o.is_stop]

        most_at_once: dict[str, int] = {}
        replaced: set[str] = set()
        async with DaemonProcess(env, tmp_path) as d:

            def watch() -> bool:  # one stop per symbol, for no more than the position
                stops = _resting()
                for o in stops:
                    most_at_once[o.symbol] = max(most_at_once.get(o.symbol, 0),
                                                 sum(1 for x in stops if x.symbol == o.symbol))  # fmt: skip
                    replaced.add(o.client_order_id)
                return len(replaced) >= 3 and bool(stops)

            await d.wait_for(watch, 150, "three protective stops placed at the simulator")
            sim.market.pause()
            await asyncio.sleep(1.0)  # let the daemon settle on the paused minute
            stop = _resting()[0]
            assert d.proc is not None
            d.proc.send_signal(signal.SIGKILL)
            await d.proc.wait()
        assert set(most_at_once.values()) == {1}, most_at_once
        held = venue.orders(sim).balances()[venue.base(stop.symbol)]
        assert stop.qty == held  # the stop covers the whole position (nothing else is held)
        if venue.name == "binance":
            assert stop.type == "STOP_LOSS_LIMIT", stop
        else:
            # Deribit stop_market, reduce_only (the simulator's order engine names it STOP_LOSS)
            assert (stop.type, stop.reduce_only, stop.trigger) == ("STOP_LOSS", True, "last_price"), stop

        # the market wicks through the stop in the next minute, while the daemon is down
        key = (venue.tape(stop.symbol), "1m")
        tape = sim.market.tape
        i = tape._opens[key].index(sim.market.now_ms)
        bar = tape._bars[key][i]
        wick = f"{stop.stop_price * Decimal('0.995'):.2f}"
        tape._bars[key][i] = dataclasses.replace(bar, low=wick)
        sim.market.step()
        orders = venue.orders(sim)
        fills_at_sim = [t for t in orders.trades if t.order_id == stop.order_id]
        assert len(fills_at_sim) == 1 and fills_at_sim[0].qty == stop.qty, orders.trades[-3:]
        sim.market.resume()
        placements_before = list(orders.placements)

        async with DaemonProcess(env, tmp_path) as d:
            await d.wait_for(lambda: d.candles() > 30, 60, "the restarted daemon trading again")
            assert await d.stop() == 0
            restart_log = [e["event"] for e in d.lines]
        trades, balances = list(orders.trades), orders.balances()

    assert "reconciled" in restart_log
    async with SqlEventStore(pg_url) as store:
        fills = await store.fills(run)
        events = await store.position_events(run)
        rows = await store.orders(run)
    stop_fills = [f for f in fills if f.client_order_id == stop.client_order_id]
    assert len(stop_fills) == 1 and stop_fills[0].qty == stop.qty
    exits = [e for e in events if e.event_type is PositionEventType.STOP_EXIT
             and stop.client_order_id in e.client_order_ids]  # fmt: skip
    assert len(exits) == 1, [(e.event_type, e.trigger_reason) for e in events[-10:]]
    assert exits[0].trigger_reason.startswith("venue stop")
    # no second sell of the units the stop sold: every later sell of the symbol is a new position's
    unified = venue.unified(venue.base(stop.symbol))
    later = [
        r
        for r in rows
        if r.symbol == unified and r.side is Side.SELL and r.client_order_id not in placements_before
    ]
    sold_twice = [r for r in later if r.created_ms <= stop_fills[0].ts_ms + 60_000 and r.filled_qty > 0]
    assert sold_twice == [], sold_twice
    # the ledger equals the simulator's balances, every simulator trade stored once
    assert sorted(f.trade_id for f in fills) == sorted(venue.trade_id(t) for t in trades)
    cash, held = _ledger(fills, venue)
    assert cash == balances[venue.quote]
    for base, qty in held.items():
        assert qty == balances.get(base, Decimal(0)), base
    row = next(r for r in rows if r.client_order_id == stop.client_order_id)
    assert row.order_type.is_stop and row.stop_price == stop.stop_price
