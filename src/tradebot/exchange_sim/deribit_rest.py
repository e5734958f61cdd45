"""Simulated Deribit REST ``/api/v2/public/*`` market endpoints for ccxt: ``get_time``,
``get_instruments``, ``get_currencies``, ``get_tradingview_chart_data`` and ``test``, with injected
HTTP 429/5xx answers (429 carries JSON-RPC error 10028 ``too_many_requests``).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from aiohttp import web

from tradebot.exchange_sim.deribit_ws import RESOLUTIONS, rpc_error, rpc_result, tape_symbol
from tradebot.exchange_sim.faults import VenueFaults
from tradebot.exchange_sim.market import Market


def load_instruments() -> list[dict[str, Any]]:
    """Return the recorded real perpetual instruments (USDC linear and BTC/ETH inverse)."""
    text = resources.files("tradebot.exchange_sim").joinpath("data/deribit_instruments.json").read_text()
    instruments: list[dict[str, Any]] = json.loads(text)["result"]
    return instruments


class DeribitRest:
    """aiohttp handlers of the Deribit public market endpoints."""

    def __init__(self, market: Market, faults: VenueFaults) -> None:
        self.market, self.faults = market, faults
        self.instruments = load_instruments()
        self.requests: list[str] = []

    def routes(self) -> list[web.RouteDef]:
        """Return the routes to add to the simulator's aiohttp app."""
        return [web.get("/api/v2/public/{method}", self.dispatch)]

    async def dispatch(self, request: web.Request) -> web.Response:
        """Route ``GET /api/v2/public/<method>?<params>``."""
        self.requests.append(request.path_qs)
        status = self.faults.next_rest_status()
        if status is not None:
            if status == 429:
                return web.Response(
                    status=429,
                    text=rpc_error(None, 10028, "too_many_requests"),
                    content_type="application/json",
                )
            return web.Response(status=status, text="Service Unavailable", content_type="text/html")
        method, q, now = request.match_info["method"], request.query, self.market.now_ms
        if method == "get_time":
            result: Any = now
        elif method == "test":
            result = {"version": "1.2.26"}
        elif method == "get_currencies":
            result = [{"currency": c, "currency_long": c} for c in ("BTC", "ETH", "SOL", "USDC")]
        elif method == "get_instruments":
            currency = q.get("currency", "any")
            result = [
                i
                for i in self.instruments
                if currency in ("any", i["base_currency"], i.get("settlement_currency"))
            ]
        elif method == "ticker":
            return self._ticker(request)
        elif method == "get_tradingview_chart_data":
            return self._chart(request)
        else:
            return web.json_response(json.loads(rpc_error(None, -32601, "Method not found")), status=400)
        return web.Response(text=rpc_result(None, result, now), content_type="application/json")

    def _ticker(self, request: web.Request) -> web.Response:
        """``public/ticker?instrument_name=``: last, mark and index price all the forming candle's
        open (numbers, as Deribit sends them), the best bid / ask a tick either side."""
        now, name = self.market.now_ms, request.query.get("instrument_name", "")
        known = {i["instrument_name"]: i for i in self.instruments}
        price = self.market.last_price(tape_symbol(name)) if name in known else None
        if price is None:
            return web.json_response(
                json.loads(rpc_error(None, 10020, "invalid_or_unsupported_instrument")), status=400
            )
        last, tick = float(price), float(known[name].get("tick_size", 0.0))
        result = {
            "instrument_name": name,
            "timestamp": now,
            "state": "open",
            "last_price": last,
            "mark_price": last,
            "index_price": last,
            "best_bid_price": last - tick,
            "best_ask_price": last + tick,
            "best_bid_amount": 1.0,
            "best_ask_amount": 1.0,
        }
        return web.Response(text=rpc_result(None, result, now), content_type="application/json")

    def _chart(self, request: web.Request) -> web.Response:
        q, now = request.query, self.market.now_ms
        names = {i["instrument_name"] for i in self.instruments}
        instrument = q.get("instrument_name", "")
        try:
            tf_ms = RESOLUTIONS[q.get("resolution", "")]
            start, end = int(q["start_timestamp"]), int(q["end_timestamp"])
        except (KeyError, ValueError):
            return web.json_response(json.loads(rpc_error(None, -32602, "Invalid params")), status=400)
        if instrument not in names:
            return web.json_response(
                json.loads(rpc_error(None, 10020, "invalid_or_unsupported_instrument")), status=400
            )
        bars = self.market.tape.window(tape_symbol(instrument), tf_ms, start, min(end, now) + 1)
        cols: dict[str, list[Any]] = {
            k: [] for k in ("ticks", "open", "high", "low", "close", "volume", "cost")
        }
        for bar in bars:
            if bar.open_time_ms + tf_ms > now:
                if tf_ms != 60_000:
                    continue
                bar = bar.opening()
            cols["ticks"].append(bar.open_time_ms)
            for key, text in (
                ("open", bar.open),
                ("high", bar.high),
                ("low", bar.low),
                ("close", bar.close),
                ("volume", bar.volume),
            ):
                cols[key].append(float(text))
            cols["cost"].append(round(float(bar.volume) * float(bar.close), 1))
        result = {**cols, "status": "ok" if cols["ticks"] else "no_data"}
        return web.Response(text=rpc_result(None, result, now), content_type="application/json")
