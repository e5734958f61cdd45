"""The simulator's order engine: one spot account, orders keyed by client order id, fills against the
replayed candles, and order-path fault switches. Venue-neutral; the Binance and Deribit private
endpoints (``binance_private.py``, ``deribit_private.py``) translate it to their wire formats.

Fill model (deterministic, so tests can compute balances by hand):

* A **market** order fills at once at the open of the candle forming now (the simulator's last
  price), moved by ``slippage_bps`` against the taker. The commission is charged in the *quote*
  asset for buys and sells alike, ``notional × fee_rate`` (quantized to 1e-8, half-even), unless
  ``buy_fee_in_base``: then, like Binance without BNB, a buy pays it in the asset it receives, the
  *base* asset, ``qty × fee_rate`` (1e-8, half-even), and receives ``qty − fee`` (sells still pay
  in quote). The quote default keeps a backtest's fills (``SimulatedExchange`` charges quote fees)
  equal to the simulator's, which the daemon-vs-backtest equality tests rely on.
* A **limit** order rests (``NEW``) with its funds locked and fills at its limit price on a later
  closed candle that trades through it (buy: low ≤ limit, sell: high ≥ limit), at most
  ``volume × limit_volume_fraction`` per candle (partial fills). Those fills are the maker's: they
  pay ``maker_fee_rate`` (default: ``fee_rate``), which may be negative, a rebate paid to the maker
  (Deribit ``SOL-PERPETUAL``: ``"maker_commission": -0.0002``); a buy locks ``notional + fee`` with
  a rebate counted as 0.
* A **stop** order (Binance ``STOP_LOSS`` / ``STOP_LOSS_LIMIT``, Deribit ``stop_market`` /
  ``stop_limit``; ``SimOrder.stop_price`` the trigger) follows :mod:`tradebot.core.domain.stops`, the
  rule the backtest's ``SimulatedExchange`` applies too. Placement refuses a stop the last price
  (the forming candle's open) has already reached, ``-2010 Order would trigger immediately.``
  (sell: ``last <= stop``), a type the symbol's ``orderTypes`` lack (``-2010 Stop loss orders are
  not supported for this symbol.``) and a stop price off the tick (``PRICE_FILTER``); the notional
  is checked at the limit price, else at the stop price. A sell stop locks the base units it sells
  (a second sell of them gets ``-2010`` insufficient balance); a buy stop locks nothing and is
  ``EXPIRED`` if the quote is short when it triggers. It rests ``NEW`` (``isWorking`` false,
  ``workingTime`` -1; Deribit ``untriggered``) until a closed candle from its placement on reaches
  it (sell: low ≤ stop), then executes at the stop, or at that candle's open when the candle opened
  through it (only possible after the first one), moved by ``slippage_bps`` against the taker like
  a market order, taker fee, at the candle's close. A ``STOP_LOSS_LIMIT`` whose triggered price is
  not as good as its limit (sell: below it) rests from the next candle on as a limit order at its
  price (``NEW``, working; Deribit ``open``) and fills like one, as the maker. ``reduce_only`` is
  recorded and echoed (the spot-like account cannot hold a short that a buy would reduce).
* An **inverse** symbol (:attr:`SymbolRules.inverse`, Deribit ``BTC-PERPETUAL``) trades USD
  contracts: ``qty`` is in USD, a multiple of ``step`` (the contract size, 10 USD), and the account
  of its base coin (:attr:`OrderEngine.coin_accounts`, e.g. ``BTC``) settles it, as on Deribit. A
  fill of ``qty`` USD at ``price`` moves ``qty / price`` coins; it pays ``qty / price × rate`` in
  the coin (1e-8, half-even; the docs' 20 USD at 8954 and 0.075 % → 1.68e-06 BTC), and a fill that
  reduces the position realizes ``closed × (1/entry − 1/price)`` coins for a long (the reverse for a
  short; 1e-8, half-even) into the account, entry being the harmonic mean of the opening fills
  (:func:`inverse_position`). Shorts are allowed; nothing is locked: an order that adds to the
  position needs the account to cover the position after it at leverage 1 (``|size| / price``
  coins), else ``-2010`` insufficient balance; one that reduces it needs nothing. A resting
  limit fills at most ``volume × price × limit_volume_fraction`` USD per candle.
* Filters are checked without rounding like Binance: quantity on the step and ≥ min qty
  (``LOT_SIZE``), limit price on the tick (``PRICE_FILTER``), ``qty × price`` ≥ min notional
  (``NOTIONAL``) → :class:`SimReject` ``-1013``; not enough free balance → ``-2010``. A client order
  id that is *open* is refused (``-2010 Duplicate order sent.``); the id of a *closed* order is
  accepted again and creates a second order (Binance's rule, which makes blind retries unsafe).

Fault switches (:class:`OrderFaults`) let tests break the order path on purpose.

Push: every callable in :attr:`OrderEngine.listeners` is called with ``(order, exec_type, trade)``
right after each change of an order (``"NEW"`` on placement, ``"TRADE"`` per execution with its
:class:`SimTrade`, ``"CANCELED"``, ``"EXPIRED"``), with the order's state after the change; the
simulator's user-data streams (``binance_ws_api.py``, ``deribit_user.py``) serialize it at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

from tradebot.core.domain import (
    Side,
    limit_is_marketable,
    stop_execution_price,
    stop_is_crossed,
    stop_is_triggered,
)
from tradebot.exchange_sim.market import Bar, Market, MarketEvent

ZERO = Decimal(0)
_FEE_Q = Decimal("1e-8")
_BPS = Decimal(10_000)
#: Order types of the engine (Binance wire names), and the stop ones.
ORDER_TYPES = frozenset({"MARKET", "LIMIT", "STOP_LOSS", "STOP_LOSS_LIMIT"})
STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT"})
#: Binance's refusal of an order type the symbol does not enable (``errors.md``, -2010).
_NOT_ENABLED = {
    "MARKET": "Market orders are not supported for this symbol.",
    "LIMIT": "Unsupported order combination",
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
}


class SimReject(Exception):
    """A definitive refusal: HTTP ``status`` with venue ``code`` and ``msg`` (Binance wording)."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """Precision and filters of one wire symbol; ``tape`` is the replayed candle symbol."""

    symbol: str
    base: str
    quote: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    tape: str
    #: Order types the symbol enables (Binance ``exchangeInfo`` ``orderTypes``; default: all).
    order_types: frozenset[str] = ORDER_TYPES
    #: An inverse contract: quantities in USD (``quote``), settled in the ``base`` coin's account.
    inverse: bool = False


@dataclass
class SimTrade:
    """One execution of our order."""

    trade_id: int
    order_id: int
    symbol: str
    side: str  # "BUY" | "SELL"
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    ts_ms: int
    maker: bool = False  # a resting limit's fill


@dataclass
class SimOrder:
    """One order as the venue holds it (Binance status strings)."""

    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str  # "MARKET" | "LIMIT" | "STOP_LOSS" | "STOP_LOSS_LIMIT"
    qty: Decimal
    price: Decimal | None  # the limit price (LIMIT, STOP_LOSS_LIMIT)
    created_ms: int
    updated_ms: int
    status: str = "NEW"
    filled: Decimal = ZERO
    quote_filled: Decimal = ZERO
    locked: Decimal = ZERO
    trades: list[SimTrade] = field(default_factory=list)
    stop_price: Decimal | None = None  # the trigger of a stop order
    trigger: str = ""  # Deribit's trigger kind of a stop ("last_price", "mark_price", "index_price")
    reduce_only: bool = False
    triggered_ms: int | None = None  # when a stop triggered (the triggering candle's close), ms

    @property
    def is_open(self) -> bool:
        """True while ``NEW`` or ``PARTIALLY_FILLED``."""
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def is_stop(self) -> bool:
        """True for a stop order (``STOP_LOSS``, ``STOP_LOSS_LIMIT``), triggered or not."""
        return self.type in STOP_TYPES

    @property
    def untriggered(self) -> bool:
        """True for an open stop order that has not triggered yet."""
        return self.is_stop and self.triggered_ms is None and self.is_open


@dataclass
class OrderFaults:
    """Order-path fault switches (each counts down as it fires).

    Attributes
    ----------
    accept_then_500
        The next N order placements are executed, then answered HTTP 500.
    accept_then_hang, hang_s
        The next N placements are executed, then the answer is held ``hang_s`` seconds (longer
        than the client's timeout).
    unknown_1007
        The next N placements are executed, then answered ``-1007`` (execution status unknown).
    lookup_not_found
        The next N order lookups answer "order does not exist" although the order exists.
    partial_then_expire
        The next market order fills only this fraction (rounded down to the step), then EXPIRES.
    throttle
        Queue of (HTTP status 429/418, Retry-After seconds) answered to the next private requests.
    clock_skew
        The next N signed requests are refused with ``-1021`` (timestamp outside recvWindow).
    duplicate_trades
        Trade listings and FULL order answers report every trade twice.
    """

    accept_then_500: int = 0
    accept_then_hang: int = 0
    hang_s: float = 3.0
    unknown_1007: int = 0
    lookup_not_found: int = 0
    partial_then_expire: Decimal | None = None
    throttle: deque[tuple[int, int]] = field(default_factory=deque)
    clock_skew: int = 0
    duplicate_trades: bool = False


class OrderEngine:
    """Orders, trades and balances of one simulated account on one venue.

    Parameters
    ----------
    market
        The replayed market (current price = open of the candle forming now).
    rules
        Wire symbol → :class:`SymbolRules`.
    balances
        Initial balance per asset.
    fee_rate
        Commission as a fraction of notional (default 0.001); the taker's, and the maker's unless
        ``maker_fee_rate`` is given.
    maker_fee_rate
        Commission of resting limit fills; negative is a rebate (default ``None``: ``fee_rate``).
        Tests may set the attribute.
    slippage_bps
        Adverse move of market fills, basis points (default 0).
    limit_volume_fraction
        Share of a candle's volume a resting limit order may fill per candle (default 1).
    buy_fee_in_base
        Charge a buy's commission in the base asset, as Binance does (default ``False``: in quote;
        see the module docstring).
    coin_accounts
        Initial balance of each coin account settling inverse symbols (e.g. ``{"BTC": 1}``);
        separate from ``balances``, which hold the spot-like assets (module docstring).
    """

    def __init__(self, market: Market, rules: dict[str, SymbolRules], balances: dict[str, Decimal], *,
                 fee_rate: Decimal = Decimal("0.001"), slippage_bps: Decimal = ZERO,
                 limit_volume_fraction: Decimal = Decimal(1), buy_fee_in_base: bool = False,
                 maker_fee_rate: Decimal | None = None,
                 coin_accounts: dict[str, Decimal] | None = None) -> None:  # fmt: skip
        self.market, self.rules = market, rules
        #: Balance of each coin account settling inverse symbols: fees and realized PnL, in coins.
        self.coin_accounts: dict[str, Decimal] = dict(coin_accounts or {})
        self.buy_fee_in_base = buy_fee_in_base
        self.free: dict[str, Decimal] = dict(balances)
        self.locked: dict[str, Decimal] = {}
        self.fee_rate, self.slippage_bps = fee_rate, slippage_bps
        self.maker_fee_rate = maker_fee_rate
        self.limit_volume_fraction = limit_volume_fraction
        self.faults = OrderFaults()
        self.orders: list[SimOrder] = []
        self.trades: list[SimTrade] = []
        self.placements: list[str] = []  # client order ids of every placement request that reached us
        #: Called after every order change: ``(order, exec_type, trade)`` (see the module docstring).
        self.listeners: list[Callable[[SimOrder, str, SimTrade | None], None]] = []
        self._order_seq = 0
        self._trade_seq = 0
        market.subscribe(self._on_market)

    # ------------------------------------------------------------------ queries
    @property
    def account_update_ms(self) -> int:
        """Time of the last balance change by an order (placement lock, fill, cancel), ms; 0 before any."""
        return max((o.updated_ms for o in self.orders), default=0)

    def balances(self) -> dict[str, Decimal]:
        """Total (free + locked) per asset."""
        assets = set(self.free) | set(self.locked)
        return {a: self.free.get(a, ZERO) + self.locked.get(a, ZERO) for a in sorted(assets)}

    def find(
        self, symbol: str, *, client_order_id: str | None = None, order_id: int | None = None
    ) -> SimOrder:
        """Return the latest order of ``symbol`` with that id, or raise ``SimReject(-2013)``."""
        for order in reversed(self.orders):
            if order.symbol == symbol and (
                order.client_order_id == client_order_id
                or (order_id is not None and order.order_id == order_id)
            ):
                return order
        raise SimReject(-2013, "Order does not exist.")

    def orders_of(self, client_order_id: str) -> list[SimOrder]:
        """Every order ever created with ``client_order_id`` (a duplicate shows up as two)."""
        return [o for o in self.orders if o.client_order_id == client_order_id]

    def open_orders(self, symbol: str | None = None) -> list[SimOrder]:
        """Open orders (of ``symbol``, or all), oldest first."""
        return [o for o in self.orders if o.is_open and (symbol is None or o.symbol == symbol)]

    def trades_of(self, symbol: str, start_ms: int | None = None) -> list[SimTrade]:
        """Trades of ``symbol`` with ``ts_ms >= start_ms``, oldest first."""
        return [t for t in self.trades if t.symbol == symbol and (start_ms is None or t.ts_ms >= start_ms)]

    def last_price(self, symbol: str) -> Decimal:
        """Open of the candle forming now (raises ``SimReject(-1121)`` for an unknown symbol)."""
        rules = self._rules(symbol)
        bar = self.market.tape.bar(rules.tape, self.market.now_ms)
        if bar is None:
            bars = self.market.tape.bars(rules.tape, "1m", 0, self.market.now_ms)
            if not bars:
                raise SimReject(-1013, "Market is closed.")
            return Decimal(bars[-1].close)
        return Decimal(bar.open)

    # ------------------------------------------------------------------ commands
    def place(self, *, symbol: str, side: str, type: str, qty: Decimal, price: Decimal | None,
              client_order_id: str, stop_price: Decimal | None = None, reduce_only: bool = False,
              trigger: str = "") -> SimOrder:  # fmt: skip
        """Validate and execute a new order (see the module docstring); raises :class:`SimReject`.

        ``stop_price`` is the trigger of a stop order (``STOP_LOSS``, ``STOP_LOSS_LIMIT``, whose
        ``price`` is the limit); ``trigger`` and ``reduce_only`` are recorded and echoed.
        """
        rules = self._rules(symbol)
        self.placements.append(client_order_id)
        if side not in ("BUY", "SELL") or type not in ORDER_TYPES:
            raise SimReject(-1116 if type not in ORDER_TYPES else -1117, "Invalid side or order type.")
        if type not in rules.order_types:
            raise SimReject(-2010, _NOT_ENABLED[type])
        if any(o.is_open and o.client_order_id == client_order_id for o in self.orders):
            raise SimReject(-2010, "Duplicate order sent.")
        if type in STOP_TYPES:
            return self._place_stop(rules, side, type, qty, price, client_order_id, stop_price, reduce_only,
                                    trigger)  # fmt: skip
        now = self.market.now_ms
        ref = price if type == "LIMIT" and price is not None else self.last_price(symbol)
        self._check_filters(rules, qty, price if type == "LIMIT" else None, ref)
        fill_price = self._market_price(side, ref, rules) if type == "MARKET" else ref
        self._check_funds(rules, side, qty, fill_price, self._rate(type))
        self._check_margin(rules, side, qty, fill_price)
        self._order_seq += 1
        order = SimOrder(self._order_seq, client_order_id, symbol, side, type, qty, price, now, now)
        self.orders.append(order)
        if type == "MARKET":
            self._notify(order, "NEW")
            fill_qty = qty
            if self.faults.partial_then_expire is not None:
                fraction, self.faults.partial_then_expire = self.faults.partial_then_expire, None
                fill_qty = (qty * fraction / rules.step).to_integral_value(ROUND_DOWN) * rules.step
            if fill_qty > 0:
                self._execute(order, rules, fill_qty, fill_price, now, self.fee_rate)
            if order.filled < order.qty:
                order.status = "EXPIRED"
                self._notify(order, "EXPIRED")
        else:
            self._lock(order, rules, qty)
            self._notify(order, "NEW")
        return order

    def cancel(self, symbol: str, client_order_id: str) -> SimOrder:
        """Cancel an open order (fills stay); raises ``SimReject(-2011)`` if unknown or closed."""
        order = next((o for o in reversed(self.orders) if o.symbol == symbol and o.client_order_id ==
                      client_order_id and o.is_open), None)  # fmt: skip
        if order is None:
            raise SimReject(-2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.updated_ms = self.market.now_ms
        self._unlock(order, self._rules(symbol))
        self._notify(order, "CANCELED")
        return order

    def _place_stop(self, rules: SymbolRules, side: str, type: str, qty: Decimal, price: Decimal | None,
                    cid: str, stop: Decimal | None, reduce_only: bool, trigger: str) -> SimOrder:  # fmt: skip
        # A stop rests until a candle reaches it (module docstring); a sell locks its base units.
        if stop is None:
            raise SimReject(
                -1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed."
            )
        if type == "STOP_LOSS_LIMIT" and price is None:
            raise SimReject(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        limit = price if type == "STOP_LOSS_LIMIT" else None
        self._check_filters(rules, qty, limit, limit if limit is not None else stop)
        if stop <= 0 or stop % rules.tick != 0:
            raise SimReject(-1013, "Filter failure: PRICE_FILTER")
        if stop_is_crossed(_SIDE[side], stop, self.last_price(rules.symbol)):
            raise SimReject(-2010, "Order would trigger immediately.")
        if side == "SELL":
            self._check_funds(rules, side, qty, stop, self.fee_rate)
        self._check_margin(rules, side, qty, stop)
        self._order_seq += 1
        now = self.market.now_ms
        order = SimOrder(self._order_seq, cid, rules.symbol, side, type, qty, limit, now, now, stop_price=stop,
                         trigger=trigger, reduce_only=reduce_only)  # fmt: skip
        self.orders.append(order)
        if side == "SELL":
            self._lock(order, rules, qty)
        self._notify(order, "NEW")
        return order

    def _trigger(self, order: SimOrder, rules: SymbolRules, bar: Bar) -> None:
        # An untriggered stop on a closed candle from its placement on: execute it if the candle
        # reaches it (a stop-limit not marketable rests at its limit instead).
        assert order.stop_price is not None
        side = _SIDE[order.side]
        if not stop_is_triggered(side, order.stop_price, Decimal(bar.high), Decimal(bar.low)):
            return
        ts = bar.open_time_ms + 60_000
        price = self._market_price(
            order.side, stop_execution_price(side, order.stop_price, Decimal(bar.open)), rules
        )
        order.triggered_ms = order.updated_ms = ts
        if order.price is not None and not limit_is_marketable(side, price, order.price):
            return  # a stop-limit that is not marketable rests at its limit from the next candle on
        if order.side == "BUY" or rules.inverse:
            try:
                self._check_funds(rules, order.side, order.qty, price, self.fee_rate)
                self._check_margin(rules, order.side, order.qty - order.filled, price)
            except SimReject:
                order.status = "EXPIRED"
                self._notify(order, "EXPIRED")
                return
        self._execute(order, rules, order.qty - order.filled, price, ts, self.fee_rate)

    # ------------------------------------------------------------------ internals
    def _notify(self, order: SimOrder, exec_type: str, trade: SimTrade | None = None) -> None:
        for listener in self.listeners:
            listener(order, exec_type, trade)

    def _rules(self, symbol: str) -> SymbolRules:
        rules = self.rules.get(symbol)
        if rules is None:
            raise SimReject(-1121, "Invalid symbol.")
        return rules

    @staticmethod
    def _check_filters(rules: SymbolRules, qty: Decimal, limit: Decimal | None, ref: Decimal) -> None:
        if qty <= 0 or qty % rules.step != 0 or qty < rules.min_qty:
            raise SimReject(-1013, "Filter failure: LOT_SIZE")
        if limit is not None and (limit <= 0 or limit % rules.tick != 0):
            raise SimReject(-1013, "Filter failure: PRICE_FILTER")
        if qty * ref < rules.min_notional:
            raise SimReject(-1013, "Filter failure: NOTIONAL")

    def _market_price(self, side: str, ref: Decimal, rules: SymbolRules) -> Decimal:
        move = ref * self.slippage_bps / _BPS
        raw = ref + move if side == "BUY" else ref - move
        rounding = "ROUND_CEILING" if side == "BUY" else "ROUND_FLOOR"
        return (raw / rules.tick).to_integral_value(rounding=rounding) * rules.tick

    def _rate(self, order_type: str) -> Decimal:
        # a limit order rests, so its fills are the maker's; a market order takes
        if order_type == "LIMIT" and self.maker_fee_rate is not None:
            return self.maker_fee_rate
        return self.fee_rate

    @staticmethod
    def _fee(amount: Decimal, rate: Decimal) -> Decimal:
        return (amount * rate).quantize(_FEE_Q, rounding=ROUND_HALF_EVEN)

    def _quote_fee(self, side: str, notional: Decimal, rate: Decimal) -> Decimal:
        # the commission a buy pays in quote on top of its notional (none when it pays in base; a
        # rebate is paid after the fill, so it lowers no amount needed or locked before)
        return ZERO if side == "BUY" and self.buy_fee_in_base else max(self._fee(notional, rate), ZERO)

    def _check_funds(
        self, rules: SymbolRules, side: str, qty: Decimal, price: Decimal, rate: Decimal
    ) -> None:
        if rules.inverse:  # a margin account: _check_margin
            return
        if side == "BUY":
            need, asset = qty * price + self._quote_fee(side, qty * price, rate), rules.quote
        else:
            need, asset = qty, rules.base
        if self.free.get(asset, ZERO) < need:
            raise SimReject(-2010, "Account has insufficient balance for requested action.")

    def _check_margin(self, rules: SymbolRules, side: str, qty: Decimal, price: Decimal) -> None:
        # an inverse order that adds to the position: the coin account covers it at leverage 1
        if not rules.inverse:
            return
        size = inverse_position(self.trades_of(rules.symbol))[0]
        after = size + (qty if side == "BUY" else -qty)
        if abs(after) > abs(size) and self.coin_accounts.get(rules.base, ZERO) < abs(after) / price:
            raise SimReject(-2010, "Account has insufficient balance for requested action.")

    def _lock(self, order: SimOrder, rules: SymbolRules, qty: Decimal) -> None:
        if rules.inverse:  # nothing is locked on a margin account
            return
        asset = rules.quote if order.side == "BUY" else rules.base
        rate = self._rate(order.type)
        if order.side == "BUY":
            assert order.price is not None
            amount = qty * order.price + self._quote_fee("BUY", qty * order.price, rate)
        else:
            amount = qty
        order.locked = amount
        self.free[asset] = self.free.get(asset, ZERO) - amount
        self.locked[asset] = self.locked.get(asset, ZERO) + amount

    def _unlock(self, order: SimOrder, rules: SymbolRules) -> None:
        if rules.inverse:
            return
        asset = rules.quote if order.side == "BUY" else rules.base
        self.free[asset] = self.free.get(asset, ZERO) + order.locked
        self.locked[asset] = self.locked.get(asset, ZERO) - order.locked
        order.locked = ZERO

    def _execute(self, order: SimOrder, rules: SymbolRules, qty: Decimal, price: Decimal, ts: int,
                 rate: Decimal, *, maker: bool = False) -> None:  # fmt: skip
        notional = qty * price
        sign = 1 if order.side == "BUY" else -1
        if order.locked:  # a resting order pays from its locked funds
            self._unlock(order, rules)
        if rules.inverse:  # USD contracts settled in the coin: fee and realized PnL in coins
            fee, fee_asset = self._fee(qty / price, rate), rules.base
            before = inverse_position(self.trades_of(rules.symbol))[2]
            signed = qty if order.side == "BUY" else -qty
            realized = inverse_position(self.trades_of(rules.symbol), (signed, price))[2] - before
            self.coin_accounts[rules.base] = self.coin_accounts.get(rules.base, ZERO) + realized - fee
        elif order.side == "BUY" and self.buy_fee_in_base:  # paid in the asset received
            fee, fee_asset = self._fee(qty, rate), rules.base
            self.free[rules.base] = self.free.get(rules.base, ZERO) + qty - fee
            self.free[rules.quote] = self.free.get(rules.quote, ZERO) - notional
        else:
            fee, fee_asset = self._fee(notional, rate), rules.quote
            self.free[rules.base] = self.free.get(rules.base, ZERO) + sign * qty
            self.free[rules.quote] = self.free.get(rules.quote, ZERO) - sign * notional - fee
        self._trade_seq += 1
        trade = SimTrade(
            self._trade_seq, order.order_id, order.symbol, order.side, qty, price, fee, fee_asset, ts, maker
        )
        self.trades.append(trade)
        order.trades.append(trade)
        order.filled += qty
        order.quote_filled += notional
        order.updated_ms = ts
        order.status = "FILLED" if order.filled == order.qty else "PARTIALLY_FILLED"
        if order.status == "PARTIALLY_FILLED" and (
            order.type == "LIMIT" or (order.is_stop and order.side == "SELL")
        ):
            self._lock(order, rules, order.qty - order.filled)
        self._notify(order, "TRADE", trade)

    def _on_market(self, events: list[MarketEvent]) -> None:
        finals = {e.symbol: e.bar for e in events if e.final}
        for order in [o for o in self.orders if o.is_open and o.type != "MARKET"]:
            rules = self.rules[order.symbol]
            bar = finals.get(rules.tape)
            if bar is None or bar.open_time_ms < order.created_ms:
                continue
            if order.is_stop and order.triggered_ms is None:
                self._trigger(order, rules, bar)
            elif order.price is not None and (
                order.triggered_ms is None or bar.open_time_ms >= order.triggered_ms
            ):
                self._fill_limit(order, rules, bar)  # a limit, or a stop-limit resting at its limit

    def _fill_limit(self, order: SimOrder, rules: SymbolRules, bar: Bar) -> None:
        assert order.price is not None
        crossed = Decimal(bar.low) <= order.price if order.side == "BUY" else Decimal(bar.high) >= order.price
        if not crossed:
            return
        volume = Decimal(bar.volume) * (order.price if rules.inverse else 1)  # inverse: in USD
        cap = (volume * self.limit_volume_fraction / rules.step).to_integral_value(ROUND_DOWN)
        qty = min(order.qty - order.filled, cap * rules.step)
        if qty > 0:
            self._execute(
                order, rules, qty, order.price, bar.open_time_ms + 60_000, self._rate("LIMIT"), maker=True
            )


_SIDE = {"BUY": Side.BUY, "SELL": Side.SELL}


def inverse_position(
    trades: list[SimTrade], then: tuple[Decimal, Decimal] | None = None
) -> tuple[Decimal, Decimal, Decimal]:
    """Return (size in USD, signed; entry price; realized PnL in coins) of one inverse symbol's
    trades, oldest first, and of the fill ``then`` = (signed USD, price) after them.

    The entry is the harmonic mean of the fills that opened the position (USD over coins, as
    Deribit averages an inverse position); a reducing fill realizes ``closed × (1/entry − 1/price)``
    coins for a long, the opposite for a short, quantized to 1e-8 (half-even); a fill through zero
    opens the rest at its price.
    """
    size = avg = realized = ZERO
    fills = [(t.qty if t.side == "BUY" else -t.qty, t.price) for t in trades]
    for signed, price in [*fills, *([then] if then is not None else [])]:
        if size == 0:
            avg = price
        elif (size > 0) == (signed > 0):  # adding: USD over coins
            avg = (abs(size) + abs(signed)) / (abs(size) / avg + abs(signed) / price)
        else:
            closed = min(abs(size), abs(signed))
            pnl = closed * (1 / avg - 1 / price) * (1 if size > 0 else -1)
            realized += pnl.quantize(_FEE_Q, rounding=ROUND_HALF_EVEN)
            if abs(signed) > abs(size):
                avg = price
        size += signed
        if size == 0:
            avg = ZERO
    return size, avg, realized
