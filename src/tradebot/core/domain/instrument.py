"""Tradable instrument with the venue's precision and filters."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal, localcontext

from tradebot.core.domain.decimals import ZERO
from tradebot.core.domain.ids import Asset, Symbol

#: Rounding context wide enough that no real quantity or price overflows the default 28 digits.
_WIDE = Context(prec=60)


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    """A spot pair or linear perpetual as the venue defines it.

    Attributes
    ----------
    symbol
        ccxt unified symbol, e.g. ``"BTC/USDT"``.
    base, quote
        Asset codes, e.g. ``"BTC"`` and ``"USDT"``. Quantities are in ``base`` units, prices and
        notionals in ``quote`` currency.
    tick_size
        Price increment in quote currency (Binance ``PRICE_FILTER.tickSize``), > 0.
    step_size
        Quantity increment in base units (Binance ``LOT_SIZE.stepSize``), > 0.
    min_qty
        Smallest order quantity in base units (``LOT_SIZE.minQty``), >= 0.
    max_qty
        Largest order quantity in base units (``LOT_SIZE.maxQty``, or the smaller
        ``MARKET_LOT_SIZE.maxQty`` for market orders), or ``None`` for no limit.
    min_notional
        Smallest order notional ``qty × price`` in quote currency (``NOTIONAL.minNotional``), >= 0.
    max_notional
        Largest order notional in quote currency, or ``None`` for no limit.
    taker_fee
        Taker fee rate as a fraction (``Decimal("0.001")`` = 0.1 %), >= 0.
    maker_fee
        Maker fee rate as a fraction, > -1; negative is a rebate paid to the maker (Deribit
        ``SOL-PERPETUAL``: ``"maker_commission": -0.0002``). Informational: the engine only sends
        market orders, and every fee computation (planner cash bound, simulated fills, benchmark)
        uses ``taker_fee``; the ledger books each fill's own ``fee_quote``.
    contract_size
        Base units per contract for derivatives quoted in contracts (1 for spot).
    """

    symbol: Symbol
    base: Asset
    quote: Asset
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal = ZERO
    max_qty: Decimal | None = None
    min_notional: Decimal = ZERO
    max_notional: Decimal | None = None
    taker_fee: Decimal = Decimal("0.001")
    maker_fee: Decimal = Decimal("0.001")
    contract_size: Decimal = Decimal(1)

    def __post_init__(self) -> None:
        for name in ("tick_size", "step_size"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or value <= 0:
                raise ValueError(f"Instrument {self.symbol}: {name} must be a Decimal > 0, was {value!r}")
        for name in ("min_qty", "min_notional", "taker_fee"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or value < 0:
                raise ValueError(f"Instrument {self.symbol}: {name} must be a Decimal >= 0, was {value!r}")
        maker = self.maker_fee
        if not isinstance(maker, Decimal) or not maker.is_finite() or not maker > -1:
            raise ValueError(
                f"Instrument {self.symbol}: maker_fee must be a Decimal > -1 (negative: a rebate), "
                f"was {maker!r}"
            )
        for name in ("max_qty", "max_notional"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Decimal) or not value > 0):
                raise ValueError(
                    f"Instrument {self.symbol}: {name} must be None or a Decimal > 0, was {value!r}"
                )

    def round_qty(self, qty: Decimal, rounding: str = ROUND_DOWN) -> Decimal:
        """Return ``qty`` (base units) quantized to ``step_size``; rounds toward zero by default.

        Rounding down never sends more than intended or more than the balance holds.
        """
        with localcontext(_WIDE):
            steps = (qty / self.step_size).to_integral_value(rounding=rounding)
            return (steps * self.step_size).quantize(self.step_size)

    def round_price(self, price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """Return ``price`` (quote currency) quantized to ``tick_size`` (half-even by default)."""
        with localcontext(_WIDE):
            ticks = (price / self.tick_size).to_integral_value(rounding=rounding)
            return (ticks * self.tick_size).quantize(self.tick_size)

    def is_qty_on_step(self, qty: Decimal) -> bool:
        """True when ``qty`` is an exact multiple of ``step_size``."""
        with localcontext(_WIDE):
            return qty % self.step_size == 0

    def is_price_on_tick(self, price: Decimal) -> bool:
        """True when ``price`` is an exact multiple of ``tick_size``."""
        with localcontext(_WIDE):
            return price % self.tick_size == 0

    def check_order(self, qty: Decimal, price: Decimal) -> str | None:
        """Check an order against the venue filters as the exchange would, without rounding.

        Parameters
        ----------
        qty
            Quantity in base units, > 0.
        price
            Reference price in quote currency (limit price, or the mark for a market order).

        Returns
        -------
        str | None
            ``None`` when the order passes, else the reason (``"LOT_SIZE: …"``, ``"NOTIONAL: …"``),
            worded after the Binance filter that would reject it.
        """
        if qty <= 0:
            return f"LOT_SIZE: qty must be > 0, was {qty}"
        if not self.is_qty_on_step(qty):
            return f"LOT_SIZE: qty {qty} is not a multiple of step size {self.step_size}"
        if qty < self.min_qty:
            return f"LOT_SIZE: qty {qty} is below min qty {self.min_qty}"
        if self.max_qty is not None and qty > self.max_qty:
            return f"LOT_SIZE: qty {qty} is above max qty {self.max_qty}"
        notional = qty * price
        if notional < self.min_notional:
            return f"NOTIONAL: notional {notional} is below min notional {self.min_notional}"
        if self.max_notional is not None and notional > self.max_notional:
            return f"NOTIONAL: notional {notional} is above max notional {self.max_notional}"
        return None


def spot_instrument(
    base: str,
    quote: str = "USDT",
    *,
    tick_size: str = "0.01",
    step_size: str = "0.00001",
    min_notional: str = "5",
    taker_fee: str = "0.001",
) -> Instrument:
    """Return a spot instrument with Binance-like defaults (tick 0.01, step 0.00001, min notional 5)."""
    return Instrument(
        symbol=Symbol(f"{base}/{quote}"),
        base=Asset(base),
        quote=Asset(quote),
        tick_size=Decimal(tick_size),
        step_size=Decimal(step_size),
        min_notional=Decimal(min_notional),
        taker_fee=Decimal(taker_fee),
        maker_fee=Decimal(taker_fee),
    )
