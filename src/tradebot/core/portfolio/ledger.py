"""The ledger: cash, positions, PnL and fees per asset and per stream (STRATEGY.md §5).

:meth:`Ledger.apply` is the only way a quantity or an average entry changes (besides the
internal crossing of stream units in :meth:`Ledger.set_stream_targets`, which moves no asset
quantity). Fills are deduplicated by ``(venue, symbol, trade_id)``.

Accounting per asset (average cost, sign-aware, long → flat → short supported):

* ``cash −= side × qty × price + fee_quote`` for every fill;
* realized PnL on the reducing part: ``(price − avg_entry) × qty`` (``(avg − price) × qty`` short);
* unrealized ``(mark − avg_entry) × qty``; net profit = realized − fees;
* ``equity(marks) = cash + Σ qty × mark``;
* a deposit or withdrawal (:meth:`Ledger.apply_cash_flow`) moves cash (quote asset) or the position
  (base asset, at the flow's price, like a fee-free fill with no cash leg) and ``net_flows`` by its
  quote value: equity moves, PnL does not.

Exact invariants (no rounding tolerance), with ``cost_basis = avg_entry × qty`` (signed):
``realized − fees − cost_basis == cash − initial_cash − net_flows`` summed over the assets, i.e. realized PnL
plus the cost of the open position (``−cost_basis`` of cash still tied up) equals the net cash flow
minus fees; ``Σ stream units == asset qty``; ``Σ stream total PnL == asset total PnL`` at any mark.

Per-stream attribution: each stream owns virtual units of its asset, with its own average cost.
:meth:`Ledger.set_stream_targets` first crosses units between the asset's streams at the mark
(no fee), then records what each stream still needs as a *pending delta*. A fill is allocated to
the streams whose pending delta has its sign, pro rata to ``|delta|`` and capped by it; what is
left (a stop exit, a reconciliation adjustment, rounding to the venue's step) reduces the streams
holding the opposite sign pro rata to their units, and any further remainder (e.g. a buy with
nothing pending) goes to the per-asset bucket stream ``f"{asset}:unassigned"``. The bucket is an
ordinary stream with target 0 unless the caller sets one, so its units are crossed to (or sold
for) the real streams at the next rebalance. Fees are split over the allocated streams pro rata to
quantity. Ties and rounding are deterministic: streams are served in construction order, the
bucket last, and the last one gets the rounding remainder.

Typical use by the engine, per rebalance of a symbol::

    alloc = compute_targets(cfg, streams, ledger.equity(marks), marks, vols)
    units = {sid: alloc.stream_notional[sid] / mark for sid in ledger.stream_ids(symbol)[:-1]}
    net = ledger.set_stream_targets(symbol, units, mark)   # crossing done; net base units to trade
    qty = instrument.round_qty(abs(net))                   # unfilled rest stays pending on the streams
    ...                                                    # place the order; then, per fill:
    result = ledger.apply(fill)                            # falsy for a duplicate
    ledger.clear_pending(symbol)                           # once the orders are terminal

Replaying the same calls (targets and fills, in order) into a fresh ledger rebuilds the same
state; :meth:`Ledger.snapshot` / :meth:`Ledger.restore` persist and resume it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from tradebot.core.domain import ZERO, CashFlow, ClientOrderId, Fill, Side, Symbol, TradeId, TradeRecord
from tradebot.core.portfolio.attribution import UNASSIGNED_SUFFIX, AssetBooks
from tradebot.core.portfolio.book import LEDGER_CONTEXT, QUANTUM, PositionBook
from tradebot.core.portfolio.trades import TradeTracker
from tradebot.errors import InvariantViolation

SNAPSHOT_VERSION = "1"


@dataclass(frozen=True, slots=True)
class StreamPnl:
    """PnL of one stream's virtual units (or, from :meth:`Ledger.asset_pnl`, of a whole asset).

    Attributes
    ----------
    units
        Signed quantity in base units.
    avg_entry
        Average entry price in quote currency (quantum 1e-12), 0 when flat.
    realized, fees, unrealized
        Quote currency; unrealized at the given mark.
    total
        ``realized + unrealized − fees``.
    """

    units: Decimal
    avg_entry: Decimal
    realized: Decimal
    fees: Decimal
    unrealized: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    """What :meth:`Ledger.apply` did with one fill. Truthy when the fill was applied.

    Attributes
    ----------
    applied
        False when the fill was a duplicate (nothing changed; the other fields are then 0, None or
        empty).
    position_before, position_after
        Signed asset quantity in base units around the fill.
    realized_pnl
        PnL realized by the fill on the asset, quote currency, before fees.
    stream_qty
        Signed base units allocated to each stream (including the bucket stream).
    position_id
        The lifecycle the fill belongs to (the new one after a flip), None for a duplicate.
    opened, closed
        The lifecycle this fill opened / closed (both for a flip), else None.
    """

    applied: bool
    fill: Fill
    position_before: Decimal = ZERO
    position_after: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    stream_qty: dict[str, Decimal] = field(default_factory=dict)
    position_id: str | None = None
    opened: TradeRecord | None = None
    closed: TradeRecord | None = None

    def __bool__(self) -> bool:
        return self.applied


class Ledger:
    """Cash, positions, PnL and fees of one portfolio, per asset and per stream.

    Parameters
    ----------
    quote
        Quote currency, e.g. ``"USDT"``; every symbol must be quoted in it.
    initial_cash
        Starting quote balance (quote currency), >= 0.
    symbols
        ccxt symbols traded, e.g. ``["BTC/USDT", "ETH/USDT"]``.
    streams_by_symbol
        Stream ids of each symbol (a symbol may be missing: it then has only the bucket stream).
    run_id
        Prefix of position ids (see :class:`~tradebot.core.portfolio.trades.TradeTracker`).

    Raises
    ------
    ValueError
        On an empty/duplicate/foreign-quote symbol, a stream of an unknown symbol, a duplicate or
        reserved stream id, or negative initial cash.

    Notes
    -----
    The ledger owns a :class:`TradeTracker` (``ledger.trades``) that :meth:`apply` drives; the
    engine feeds it bars and initial risks through :meth:`on_bar` and :meth:`set_initial_risk`.
    """

    def __init__(
        self,
        quote: str,
        initial_cash: Decimal,
        symbols: Sequence[str],
        streams_by_symbol: Mapping[str, Sequence[str]],
        *,
        run_id: str = "run",
    ) -> None:
        if not isinstance(initial_cash, Decimal) or not initial_cash >= 0:
            raise ValueError(f"initial_cash must be a Decimal >= 0, was {initial_cash!r}")
        if not symbols or len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols must be non-empty and unique, was {list(symbols)!r}")
        unknown = set(streams_by_symbol) - set(symbols)
        if unknown:
            raise ValueError(f"streams_by_symbol names symbols not in symbols: {sorted(unknown)!r}")
        self.quote = quote
        self.run_id = run_id
        self.initial_cash = initial_cash
        self._cash = initial_cash
        self._assets: dict[str, AssetBooks] = {}
        self._stream_symbol: dict[str, str] = {}
        for symbol in symbols:
            base, _, rest = symbol.partition("/")
            if not base or rest.split(":")[0] != quote:
                raise ValueError(f"symbol must be '<base>/{quote}', was {symbol!r}")
            state = AssetBooks(base, list(streams_by_symbol.get(symbol, ())))
            for sid in state.streams:
                if sid in self._stream_symbol or (sid.endswith(UNASSIGNED_SUFFIX) and sid != state.bucket):
                    raise ValueError(f"stream ids must be unique and not reserved, was {sid!r}")
                self._stream_symbol[sid] = symbol
            self._assets[symbol] = state
        self._seen: set[tuple[str, str, str]] = set()
        self._flows = ZERO
        self._flow_ids: set[str] = set()
        self.trades = TradeTracker(run_id)

    # ----------------------------------------------------------------- queries
    @property
    def cash(self) -> Decimal:
        """Quote-currency balance."""
        return self._cash

    @property
    def net_flows(self) -> Decimal:
        """Net deposits minus withdrawals so far, quote currency (each at its price when applied)."""
        return self._flows

    @property
    def flow_count(self) -> int:
        """Cash flows applied so far."""
        return len(self._flow_ids)

    def has_flow(self, flow_id: str) -> bool:
        """True when the cash flow ``flow_id`` was applied already."""
        return flow_id in self._flow_ids

    @property
    def symbols(self) -> tuple[str, ...]:
        """The ledger's symbols, in construction order."""
        return tuple(self._assets)

    def position(self, symbol: str) -> Decimal:
        """Signed quantity of ``symbol`` in base units."""
        return self._asset(symbol).book.qty

    def positions(self) -> dict[str, Decimal]:
        """Signed quantity per symbol in base units (every symbol, 0 when flat)."""
        return {s: a.book.qty for s, a in self._assets.items()}

    def avg_entry(self, symbol: str) -> Decimal:
        """Average entry price of ``symbol`` in quote currency (quantum 1e-12), 0 when flat."""
        with localcontext(LEDGER_CONTEXT):
            return self._asset(symbol).book.avg_entry()

    def cost_basis(self, symbol: str) -> Decimal:
        """Signed cost basis ``avg_entry × qty`` of ``symbol`` in quote currency (exact)."""
        return self._asset(symbol).book.cost

    def realized(self, symbol: str) -> Decimal:
        """Realized PnL of ``symbol`` before fees, quote currency."""
        return self._asset(symbol).book.realized

    def fees(self, symbol: str) -> Decimal:
        """Fees paid on ``symbol``, quote currency."""
        return self._asset(symbol).book.fees

    def net_profit(self, symbol: str) -> Decimal:
        """``realized − fees`` of ``symbol``, quote currency."""
        book = self._asset(symbol).book
        return book.realized - book.fees

    def unrealized(self, symbol: str, mark: Decimal) -> Decimal:
        """``(mark − avg_entry) × qty`` of ``symbol`` in quote currency (exact: ``mark × qty − cost``)."""
        with localcontext(LEDGER_CONTEXT):
            return self._asset(symbol).book.unrealized(mark)

    def asset_pnl(self, symbol: str, mark: Decimal) -> StreamPnl:
        """PnL breakdown of the whole asset ``symbol`` at ``mark``."""
        return _pnl(self._asset(symbol).book, mark)

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        """``cash + Σ qty × mark`` in quote currency.

        Raises
        ------
        ValueError
            If a symbol with a non-zero position has no mark.
        """
        # The context's own methods: the ledger's arithmetic without switching the thread's context
        # (this runs on every clock tick).
        add, multiply = LEDGER_CONTEXT.add, LEDGER_CONTEXT.multiply
        total = self._cash
        for symbol, state in self._assets.items():
            qty = state.book.qty
            if qty:
                if symbol not in marks:
                    raise ValueError(f"marks[{symbol!r}] is needed for open position {qty}")
                total = add(total, multiply(qty, marks[symbol]))
        return total

    def stream_ids(self, symbol: str) -> tuple[str, ...]:
        """Stream ids of ``symbol`` in allocation order, the bucket stream last."""
        return tuple(self._asset(symbol).streams)

    def stream_units(self, stream_id: str) -> Decimal:
        """Virtual units (base units, signed) held by ``stream_id``."""
        return self._stream(stream_id).qty

    def stream_pnl(self, stream_id: str, mark: Decimal) -> StreamPnl:
        """PnL breakdown of ``stream_id``'s virtual units at ``mark`` (quote currency)."""
        return _pnl(self._stream(stream_id), mark)

    def pending(self, symbol: str) -> dict[str, Decimal]:
        """Pending deltas (signed base units) of ``symbol``'s streams that no fill has covered yet."""
        return dict(self._asset(symbol).pending)

    # ----------------------------------------------------------------- commands
    def set_stream_targets(self, symbol: str, target_units: Mapping[str, Decimal], mark: Decimal) -> Decimal:
        """Cross units between ``symbol``'s streams at ``mark`` and return the net order quantity.

        Parameters
        ----------
        symbol
            The asset's symbol.
        target_units
            Target virtual units (base units, quantized to 1e-18; negative = short) per stream of
            ``symbol``. A stream not named keeps its units; the bucket stream's target is 0 unless
            named.
        mark
            Mark price in quote currency, > 0: the internal crossing price.

        Returns
        -------
        Decimal
            Net signed base units the exchange must trade (``Σ targets − asset qty``), not rounded
            to the venue's step. Earlier pending deltas of ``symbol`` are replaced, so call it when
            the previous rebalance's orders are done or canceled.

        Raises
        ------
        ValueError
            If ``mark`` is not > 0 or a stream id does not belong to ``symbol``.
        """
        state = self._asset(symbol)
        if not isinstance(mark, Decimal) or not mark > 0:
            raise ValueError(f"mark of {symbol} must be a Decimal > 0, was {mark!r}")
        foreign = [sid for sid in target_units if sid not in state.streams]
        if foreign:
            raise ValueError(f"target_units names streams not of {symbol}: {foreign!r}")
        with localcontext(LEDGER_CONTEXT):
            return state.cross(target_units, mark)

    def clear_pending(self, symbol: str) -> None:
        """Forget ``symbol``'s pending deltas (e.g. after its rebalance orders were canceled)."""
        self._asset(symbol).pending = {}

    def apply(self, fill: Fill) -> ApplyResult:
        """Apply one fill to cash, the asset position, the streams and the trade tracker, once.

        Returns
        -------
        ApplyResult
            Falsy (``applied=False``) when ``(venue, symbol, trade_id)`` was already applied.

        Raises
        ------
        ValueError
            If the symbol is unknown or the quantity has more than 18 decimals.
        InvariantViolation
            If Σ stream units no longer equals the asset quantity (a bug).
        """
        key = (fill.venue, fill.symbol, fill.trade_id)
        if key in self._seen:
            return ApplyResult(applied=False, fill=fill)
        state = self._asset(fill.symbol)
        with localcontext(LEDGER_CONTEXT):
            if fill.qty != fill.qty.quantize(QUANTUM):
                raise ValueError(f"fill {fill.trade_id}: qty must have at most 18 decimals, was {fill.qty!r}")
            signed = fill.side.sign * fill.qty
            before = state.book.qty
            realized, closed_qty, allocation = state.apply_fill(signed, fill.price, fill.fee_quote)
            self._cash -= signed * fill.price + fill.fee_quote
            if fill.fee > 0 and fill.fee_currency == state.asset and signed > 0:
                # Binance takes a buy's commission in the base asset: the fee's quote value is booked as
                # the fill's fee above, and the units it cost leave the position (cash gets them back).
                realized += state.pay_fee_in_base(fill.fee, fill.price, allocation)
                self._cash += fill.fee * fill.price
            units = state.stream_units_total()
            if units != state.book.qty:
                raise InvariantViolation(
                    f"{fill.symbol}: Σ stream units {units} != asset qty {state.book.qty}"
                )
            self._seen.add(key)
            opened, closed = self.trades.on_fill(fill, before, state.book.qty, realized, closed_qty)
        position_id = self.trades.position_id(fill.symbol) or (closed.position_id if closed else None)
        return ApplyResult(
            applied=True,
            fill=fill,
            position_before=before,
            position_after=state.book.qty,
            realized_pnl=realized,
            stream_qty=allocation,
            position_id=position_id,
            opened=opened,
            closed=closed,
        )

    def apply_cash_flow(self, flow: CashFlow) -> ApplyResult | None:
        """Apply a deposit or withdrawal once (by ``flow.flow_id``); it moves equity, not PnL.

        The quote asset moves cash by ``amount``. A base asset moves the position of ``flow.symbol``
        by ``amount`` at ``flow.price`` exactly like a fee-free fill without its cash leg: a deposit
        enters at that price (it goes to the asset's bucket stream, crossed or sold by the next
        rebalance), a withdrawal leaves the streams pro rata and realizes ``(price − avg_entry) ×
        qty`` like a sale (the gain or loss the bot held it for). ``net_flows`` moves by the flow's
        quote value, which keeps ``realized − fees − cost_basis == cash − initial_cash − net_flows``.

        Returns
        -------
        ApplyResult | None
            For a base-asset flow, the position change (its ``fill`` is synthetic, trade id
            ``flow_id``: never a venue fill); ``None`` for a quote flow or a flow applied before.

        Raises
        ------
        ValueError
            If the asset is neither the quote nor a traded base asset, ``symbol`` does not match
            it, or a withdrawal exceeds the position or the cash.
        """
        if flow.flow_id in self._flow_ids:
            return None
        result = None
        with localcontext(LEDGER_CONTEXT):
            if flow.asset == self.quote:
                if self._cash + flow.amount < 0:
                    raise ValueError(
                        f"cash flow {flow.flow_id}: withdrawal {flow.amount} exceeds cash {self._cash}"
                    )
                self._cash += flow.amount
            else:
                symbol = flow.symbol
                if symbol is None or symbol not in self._assets or self._assets[symbol].asset != flow.asset:
                    raise ValueError(
                        f"cash flow {flow.flow_id}: asset {flow.asset!r} is not traded as {symbol!r}"
                    )
                held = self._assets[symbol].book.qty
                if flow.amount < 0 and -flow.amount > held:
                    raise ValueError(
                        f"cash flow {flow.flow_id}: withdrawal {flow.amount} exceeds the position {held}"
                    )
                side = Side.BUY if flow.amount > 0 else Side.SELL
                fill = Fill(venue="external", symbol=Symbol(symbol), trade_id=TradeId(flow.flow_id),
                            client_order_id=ClientOrderId(flow.flow_id), side=side, qty=abs(flow.amount),
                            price=flow.price, fee_quote=ZERO, ts_ms=flow.ts_ms)  # fmt: skip
                result = self.apply(fill)
                self._cash += flow.amount * flow.price  # no cash leg: undo the fill's
            self._flows += flow.amount * flow.price
        self._flow_ids.add(flow.flow_id)
        return result

    def on_bar(self, symbol: str, high: float, low: float) -> None:
        """Feed a base candle's high/low to the open lifecycle of ``symbol`` (MAE/MFE); cheap."""
        self.trades.on_bar(symbol, high, low)

    def set_initial_risk(self, symbol: str, risk_per_unit: Decimal) -> None:
        """Set R of ``symbol``'s open (or next) lifecycle; see :meth:`TradeTracker.set_initial_risk`."""
        self.trades.set_initial_risk(symbol, risk_per_unit)

    @property
    def closed_trades(self) -> tuple[TradeRecord, ...]:
        """Lifecycles closed since construction or restore."""
        return self.trades.closed_trades

    def open_trade(self, symbol: str) -> TradeRecord | None:
        """The open lifecycle of ``symbol``, or None when flat."""
        return self.trades.open_trade(symbol)

    # ----------------------------------------------------------------- persistence
    def snapshot(self) -> dict[str, Any]:
        """Return the full state as plain JSON-able data (Decimals as strings)."""
        return {
            "version": SNAPSHOT_VERSION,
            "quote": self.quote,
            "run_id": self.run_id,
            "initial_cash": str(self.initial_cash),
            "cash": str(self._cash),
            "assets": {symbol: state.to_dict() for symbol, state in self._assets.items()},
            "seen": sorted([list(k) for k in self._seen]),
            "trades": self.trades.snapshot(),
            "net_flows": str(self._flows),
            "flow_ids": sorted(self._flow_ids),
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any]) -> Ledger:
        """Return a ledger with the state of :meth:`snapshot` ``data``.

        Raises
        ------
        ValueError
            If the snapshot version is not supported.
        """
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"ledger snapshot version must be {SNAPSHOT_VERSION!r}, was {data.get('version')!r}"
            )
        assets = data["assets"]
        streams = {
            s: [sid for sid in a["streams"] if not sid.endswith(UNASSIGNED_SUFFIX)] for s, a in assets.items()
        }
        ledger = cls(
            data["quote"], Decimal(data["initial_cash"]), list(assets), streams, run_id=data["run_id"]
        )
        ledger._cash = Decimal(data["cash"])
        for symbol, saved in assets.items():
            ledger._assets[symbol].load(saved)
        ledger._seen = {(v, s, t) for v, s, t in data["seen"]}
        ledger._flows = Decimal(data.get("net_flows", "0"))  # older snapshots had no cash flows
        ledger._flow_ids = set(data.get("flow_ids", ()))
        ledger.trades = TradeTracker.restore(data["run_id"], data["trades"])
        return ledger

    # ----------------------------------------------------------------- internals
    def _asset(self, symbol: str) -> AssetBooks:
        try:
            return self._assets[symbol]
        except KeyError:
            raise ValueError(f"symbol must be one of {list(self._assets)}, was {symbol!r}") from None

    def _stream(self, stream_id: str) -> PositionBook:
        symbol = self._stream_symbol.get(stream_id)
        if symbol is None:
            raise ValueError(f"stream_id must be one of {list(self._stream_symbol)}, was {stream_id!r}")
        return self._assets[symbol].streams[stream_id]


def _pnl(book: PositionBook, mark: Decimal) -> StreamPnl:
    with localcontext(LEDGER_CONTEXT):
        unrealized = book.unrealized(mark)
        return StreamPnl(
            units=book.qty,
            avg_entry=book.avg_entry(),
            realized=book.realized,
            fees=book.fees,
            unrealized=unrealized,
            total=book.realized + unrealized - book.fees,
        )
