"""Execution planner: target notionals vs holdings → order intents and child orders (pure).

The planner turns the rebalancer's *target notional per symbol* (after the management overlay)
into market-order intents, and slices each intent into child :class:`PlaceOrder` commands that a
venue accepts as they are:

* a difference smaller than the band (``band_fraction × equity``) is ignored, unless the symbol is
  in ``force`` (stop exits);
* quantities are rounded *down* to the instrument's step; a sell never exceeds the holding; a sell
  that would leave a remainder below the minimum order sells everything (dust-free exits);
* a difference that cannot make one order of at least the effective minimum notional
  (``max(config.min_order_notional, instrument.min_notional)``) is reported in ``Plan.denied``;
* buys are limited by cash: ``Σ notional_i × (1 + taker_fee_i) ≤ cash × (1 − cash_buffer_fraction)``
  (scaled down proportionally when cash is short);
* sells come before buys; with ``defer_buys_while_selling`` the buys are left for a second plan
  after the sells have filled;
* an intent larger than the maximum order notional is split into near-equal children, each on
  step, each at least the minimum and at most the maximum notional, summing exactly to the intent.

All notionals are in quote currency, quantities in base units, fractions are fractions (0.02 = 2 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from tradebot.core.domain import (
    ONE,
    ZERO,
    ClientOrderId,
    Instrument,
    OrderIntent,
    PlaceOrder,
    Side,
    Symbol,
    to_decimal,
)
from tradebot.core.execution.slicing import slice_qty

__all__ = ["Denial", "Plan", "PlannerConfig", "max_notional", "min_notional", "plan_rebalance"]

_SCALE_QUANTUM = Decimal("1e-18")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannerConfig:
    """Frozen settings of :func:`plan_rebalance`.

    Attributes
    ----------
    band_fraction
        No order when ``|target − current notional| < band_fraction × equity``. Fraction of equity
        in [0, 1); default ``0.02`` (2 %).
    max_order_notional
        Largest child order in quote currency (> 0), or ``None`` for no slicing. Must be at least
        ``2 × min_order_notional`` so that any intent can be sliced into valid children.
    min_order_notional
        Smallest order in quote currency (>= 0, default 0). The effective minimum of a symbol is
        ``max(min_order_notional, instrument.min_notional)``.
    cash_buffer_fraction
        Fraction of cash kept aside for fees and slippage when sizing buys, in [0, 1);
        default ``0.002``.
    defer_buys_while_selling
        When True (default) and the plan has sells, the buys are not planned; ``Plan.deferred_buys``
        tells the caller to plan again once the sells have filled (their proceeds become cash).

    Raises
    ------
    ValueError
        If a field is out of range; the message names the field and the value.
    """

    band_fraction: Decimal = Decimal("0.02")
    max_order_notional: Decimal | None = None
    min_order_notional: Decimal = ZERO
    cash_buffer_fraction: Decimal = Decimal("0.002")
    defer_buys_while_selling: bool = True

    def __post_init__(self) -> None:
        for name in ("band_fraction", "min_order_notional", "cash_buffer_fraction"):
            object.__setattr__(self, name, to_decimal(getattr(self, name), field=name))
        if self.max_order_notional is not None:
            value = to_decimal(self.max_order_notional, field="max_order_notional")
            object.__setattr__(self, "max_order_notional", value)
        for name in ("band_fraction", "cash_buffer_fraction"):
            value = getattr(self, name)
            if not ZERO <= value < ONE:
                raise ValueError(f"PlannerConfig.{name} must be in [0, 1), was {value!r}")
        if self.min_order_notional < 0:
            raise ValueError(
                f"PlannerConfig.min_order_notional must be >= 0, was {self.min_order_notional!r}"
            )
        mx = self.max_order_notional
        if mx is not None and (mx <= 0 or mx < 2 * self.min_order_notional):
            raise ValueError(
                "PlannerConfig.max_order_notional must be > 0 and >= 2 × min_order_notional "
                f"({2 * self.min_order_notional}), was {mx!r}"
            )


@dataclass(frozen=True, slots=True)
class Denial:
    """A wanted trade that the planner could not turn into a valid order.

    Attributes
    ----------
    symbol, side
        What would have been traded.
    qty
        Quantity in base units that was wanted (rounded down to step; may be 0).
    reason
        Why, e.g. ``"NOTIONAL: buy notional 4.00 is below min notional 5"``.
    """

    symbol: Symbol
    side: Side
    qty: Decimal
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Result of :func:`plan_rebalance`.

    Attributes
    ----------
    intents
        One intent per traded symbol, sells first.
    orders
        The intents' child orders in sending order (sells first), ids ``"<intent_id>-<n>"``, n from 1.
    denied
        Differences at or above the band that could not become a valid order.
    deferred_buys
        True when buys were wanted but left out because sells were planned
        (``defer_buys_while_selling``): plan again after the sells fill.
    next_intent_seq
        The sequence number to pass to the next call.
    """

    intents: tuple[OrderIntent, ...]
    orders: tuple[PlaceOrder, ...]
    denied: tuple[Denial, ...]
    deferred_buys: bool
    next_intent_seq: int


@dataclass(frozen=True, slots=True)
class _Want:
    symbol: Symbol
    side: Side
    qty: Decimal  # on step, > 0 unless denied
    mark: Decimal
    instrument: Instrument


def plan_rebalance(
    *,
    targets: Mapping[str, Decimal],
    holdings: Mapping[str, Decimal],
    marks: Mapping[str, Decimal],
    cash: Decimal,
    equity: Decimal,
    instruments: Mapping[str, Instrument],
    config: PlannerConfig,
    run_id: str,
    next_intent_seq: int,
    time_ms: int,
    reason: str = "rebalance",
    blocked_increase: AbstractSet[str] = frozenset(),
    force: AbstractSet[str] = frozenset(),
) -> Plan:
    """Plan the market orders that move holdings toward target notionals.

    Parameters
    ----------
    targets
        Target notional per symbol, quote currency, >= 0. Only these symbols are planned: a held
        symbol missing from ``targets`` is left untouched (pass 0 to exit it).
    holdings
        Current quantity per symbol, base units, >= 0 (missing = 0).
    marks
        Mark price per symbol, quote currency, > 0; required for every symbol in ``targets``.
        Used as ``ref_price`` of intents and orders.
    cash
        Free quote-currency balance available for buys.
    equity
        Portfolio value in quote currency (cash + Σ qty × mark), >= 0; sizes the band.
    instruments
        Precision and filters per symbol; required for every symbol in ``targets``.
    config
        Planner settings.
    run_id, next_intent_seq
        Intent ids are ``f"{run_id}-{seq}"`` with ``seq`` counting up from ``next_intent_seq``.
    time_ms
        Event time of the decision (ms UTC), the orders' ``created_ms``.
    reason
        Reason of the intents and orders (``"rebalance"``, ``"stop_exit"``, …).
    blocked_increase
        Symbols that must not be bought (risk blocks, stale feeds). Silently skipped, not denied.
    force
        Symbols traded even when the difference is below the band (stop exits).

    Returns
    -------
    Plan
        Intents, child orders (sells before buys), denials and the next intent sequence number.

    Raises
    ------
    ValueError
        If a target, holding, mark, cash or equity is out of range, or a mark or instrument is missing.
    """
    _check_inputs(targets, holdings, marks, cash, equity, instruments)
    band = config.band_fraction * equity
    sells: list[_Want] = []
    buys: list[tuple[_Want, Decimal]] = []  # (want with qty 0, wanted notional)
    denied: list[Denial] = []
    for key, target in targets.items():
        symbol = Symbol(key)
        mark, instrument = marks[symbol], instruments[symbol]
        held = holdings.get(symbol, ZERO)
        diff = target - held * mark
        if diff == 0 or (abs(diff) < band and symbol not in force):
            continue
        if diff < 0:
            want = _sell_want(symbol, -diff, held, target, mark, instrument, config)
            if isinstance(want, Denial):
                denied.append(want)
            else:
                sells.append(want)
        elif symbol not in blocked_increase:
            buys.append((_Want(symbol, Side.BUY, ZERO, mark, instrument), diff))
    deferred = bool(sells and buys and config.defer_buys_while_selling)
    if deferred:
        plan = _build_plan(sells, denied, deferred, config, run_id, next_intent_seq, time_ms, reason)
        if plan.orders:
            return plan
        # No sell could be placed (e.g. one step is above the max notional): buy with the cash there is.
        deferred = False
        denied = list(plan.denied)
        sells = []
    sized: list[_Want] = []
    if buys:
        sized, buy_denied = _size_buys(buys, cash, config)
        denied.extend(buy_denied)
    return _build_plan(sells + sized, denied, deferred, config, run_id, next_intent_seq, time_ms, reason)


def _check_inputs(
    targets: Mapping[str, Decimal],
    holdings: Mapping[str, Decimal],
    marks: Mapping[str, Decimal],
    cash: Decimal,
    equity: Decimal,
    instruments: Mapping[str, Instrument],
) -> None:
    if equity < 0:
        raise ValueError(f"plan_rebalance: equity must be >= 0, was {equity!r}")
    if cash < 0:
        raise ValueError(f"plan_rebalance: cash must be >= 0, was {cash!r}")
    for symbol, target in targets.items():
        if target < 0:
            raise ValueError(f"plan_rebalance: target of {symbol} must be >= 0, was {target!r}")
        if symbol not in instruments:
            raise ValueError(f"plan_rebalance: no instrument for {symbol!r}")
        mark = marks.get(symbol)
        if mark is None or mark <= 0:
            raise ValueError(f"plan_rebalance: mark of {symbol} must be > 0, was {mark!r}")
        held = holdings.get(symbol, ZERO)
        if held < 0:
            raise ValueError(f"plan_rebalance: holding of {symbol} must be >= 0, was {held!r}")


def min_notional(instrument: Instrument, config: PlannerConfig) -> Decimal:
    """Effective minimum order notional: ``max(config.min_order_notional, instrument.min_notional)``."""
    return max(config.min_order_notional, instrument.min_notional)


def max_notional(instrument: Instrument, config: PlannerConfig) -> Decimal | None:
    """Effective maximum order notional: the smaller of the config's and the instrument's, or None."""
    limits = [x for x in (config.max_order_notional, instrument.max_notional) if x is not None]
    return min(limits) if limits else None


def _below_min(qty: Decimal, mark: Decimal, instrument: Instrument, config: PlannerConfig) -> str | None:
    """Reason why ``qty`` cannot be one order (zero, below min qty or min notional), else None."""
    if qty <= 0:
        return f"LOT_SIZE: qty rounds down to 0 at step size {instrument.step_size}"
    if qty < instrument.min_qty:
        return f"LOT_SIZE: qty {qty} is below min qty {instrument.min_qty}"
    minimum = min_notional(instrument, config)
    if qty * mark < minimum:
        return f"NOTIONAL: notional {qty * mark} is below min notional {minimum}"
    return None


def _sell_want(
    symbol: Symbol,
    notional: Decimal,
    held: Decimal,
    target: Decimal,
    mark: Decimal,
    instrument: Instrument,
    config: PlannerConfig,
) -> _Want | Denial:
    # Sell `notional` worth of `held`; all of it (on step) when the rest would be dust.
    sellable = instrument.round_qty(held)
    qty = min(instrument.round_qty(notional / mark), sellable)
    remainder = held - qty
    if target == 0 or _below_min(instrument.round_qty(remainder), mark, instrument, config):
        qty = sellable
    why = _below_min(qty, mark, instrument, config)
    if why is not None:
        return Denial(symbol, Side.SELL, qty, why)
    return _Want(symbol, Side.SELL, qty, mark, instrument)


def _size_buys(
    buys: list[tuple[_Want, Decimal]], cash: Decimal, config: PlannerConfig
) -> tuple[list[_Want], list[Denial]]:
    # Scale wanted notionals so that Σ notional × (1 + fee) fits into the usable cash.
    usable = cash * (ONE - config.cash_buffer_fraction)
    cost = sum((n * (ONE + w.instrument.taker_fee) for w, n in buys), ZERO)
    # Round the scale down so that Σ notional × scale × (1 + fee) never exceeds `usable`.
    scale = ONE if cost <= usable else (usable / cost).quantize(_SCALE_QUANTUM, rounding=ROUND_FLOOR)
    sized: list[_Want] = []
    denied: list[Denial] = []
    for want, notional in buys:
        qty = want.instrument.round_qty(notional * scale / want.mark)
        # Guard against the last digit of the division rounding up past the wanted notional.
        while qty > 0 and qty * want.mark > notional * scale:
            qty -= want.instrument.step_size
        why = _below_min(qty, want.mark, want.instrument, config)
        if why is not None:
            if scale < ONE:
                why = f"{why} (buy scaled to {scale:.6f} of {notional} by the cash limit)"
            denied.append(Denial(want.symbol, Side.BUY, qty, why))
        else:
            sized.append(_Want(want.symbol, Side.BUY, qty, want.mark, want.instrument))
    return sized, denied


def _build_plan(
    wants: list[_Want],
    denied: list[Denial],
    deferred: bool,
    config: PlannerConfig,
    run_id: str,
    seq: int,
    time_ms: int,
    reason: str,
) -> Plan:
    intents: list[OrderIntent] = []
    orders: list[PlaceOrder] = []
    for want in wants:
        lo, hi = min_notional(want.instrument, config), max_notional(want.instrument, config)
        children, cut = slice_qty(want.qty, want.mark, want.instrument, min_notional=lo, max_notional=hi)
        if cut:
            denied.append(
                Denial(
                    want.symbol,
                    want.side,
                    cut,
                    f"NOTIONAL: remainder {cut} cannot be sliced into orders between min notional "
                    f"{lo} and max notional {hi}"
                    + (f" of at most max qty {want.instrument.max_qty}" if want.instrument.max_qty else ""),
                )
            )
        if not children:
            continue
        intent = OrderIntent(
            intent_id=f"{run_id}-{seq}",
            symbol=want.symbol,
            side=want.side,
            qty=sum(children, ZERO),
            ref_price=want.mark,
            reason=reason,
        )
        seq += 1
        intents.append(intent)
        orders.extend(
            PlaceOrder(
                client_order_id=ClientOrderId(f"{intent.intent_id}-{n}"),
                symbol=want.symbol,
                side=want.side,
                qty=qty,
                ref_price=want.mark,
                reason=reason,
                intent_id=intent.intent_id,
                created_ms=time_ms,
            )
            for n, qty in enumerate(children, start=1)
        )
    return Plan(
        intents=tuple(intents),
        orders=tuple(orders),
        denied=tuple(denied),
        deferred_buys=deferred,
        next_intent_seq=seq,
    )
