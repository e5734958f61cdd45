"""Second reference before a decision: compare the engine's marks with the venue's own price.

The candle guard (:mod:`tradebot.app.daemon.candle_guard`) screens each live candle, but a wrong price
can still reach the engine (the guard switched off, a band set wide, a wrong candle that the venue's
REST history repeats). So before the daemon sends

* a *large* decision — one engine step whose orders' notional is at least
  ``large_decision_fraction`` of equity — or
* any decision taken on an *unusual* candle (a close further than ``max_deviation_fraction`` from the
  symbol's mark) or at the other symbols' candles of its minute, where the rebalance clock ticks,

it reads the venue's current price of every symbol the decision rests on (the ordered symbols and the
held ones, whose marks set equity) and compares it with the engine's mark:

* all within ``max_deviation_fraction``: the orders are sent;
* any further off, on an unusual candle's minute with nothing sent since: the candle is taken back —
  the engine is restored to its state before it (a fresh engine, as a restart restores it), the
  candle is discarded (the engine sees a gap, as when the guard discards one), the minute's other
  candles are processed again, and a ``reference_mismatch`` position event records it. The run then
  goes on as if the wrong candle had never arrived: no halt, no signal, no order from it;
* any further off otherwise: the step's orders are refused (a REJECTED update each, a
  ``reference_mismatch`` event); the engine plans again at its next decision;
* a price that cannot be read: a decision that only reduces positions is sent (an exit is never held
  back by a missing quote), one that opens or increases a position is refused.

Reads: one ticker request per symbol (Binance ``GET /api/v3/ticker/price``, Deribit
``public/ticker``), only for large or unusual decisions — a few per day. An unusual candle costs one
engine snapshot (a few ms). Pure logic here (no I/O, no clock, no logging):
:class:`~tradebot.app.daemon.venue_router.VenueRouter` reads the prices, the daemon logs, records and
takes back. Paper runs and backtests have no second venue price and are not checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from tradebot.core.domain import PlaceOrder, Symbol


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceConfig:
    """When a decision needs a second reference and how close it must be.

    Attributes
    ----------
    large_decision_fraction
        A step whose orders' notional (sum of ``qty × ref_price``, quote currency) is at least this
        fraction of equity is large (default 0.1).
    max_deviation_fraction
        Largest ``|mark / reference − 1|`` accepted (default 0.05: a bad tick is off by tens of
        percent, a normal minute by a fraction of one).

    Raises
    ------
    ValueError
        If a fraction is not > 0 (``max_deviation_fraction`` must also be < 1).
    """

    large_decision_fraction: float = 0.1
    max_deviation_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not self.large_decision_fraction > 0.0:
            raise ValueError(f"large_decision_fraction must be > 0, was {self.large_decision_fraction!r}")
        if not 0.0 < self.max_deviation_fraction < 1.0:
            raise ValueError(f"max_deviation_fraction must be in (0, 1), was {self.max_deviation_fraction!r}")


def is_large(orders: Sequence[PlaceOrder], equity: Decimal, config: ReferenceConfig) -> bool:
    """True when the notional of ``orders`` (quote currency) is at least
    ``config.large_decision_fraction`` of ``equity`` (quote currency; any order is large when equity
    is not positive)."""
    notional = sum((o.notional for o in orders), Decimal(0))
    if equity <= 0:
        return notional > 0
    return notional >= equity * Decimal(repr(config.large_decision_fraction))


@dataclass(frozen=True, slots=True, kw_only=True)
class Disagreement:
    """One symbol whose engine mark is far from the venue's price.

    ``mark`` and ``reference`` are quote currency; ``deviation`` is ``|mark / reference − 1|``
    (a fraction).
    """

    symbol: Symbol
    mark: Decimal
    reference: Decimal
    deviation: Decimal


def disagreements(
    marks: Mapping[str, Decimal], references: Mapping[Symbol, Decimal], config: ReferenceConfig
) -> list[Disagreement]:
    """Return the symbols of ``references`` whose mark in ``marks`` is further than
    ``config.max_deviation_fraction`` from the reference, in the order of ``references``.

    A symbol without a positive mark or reference is a disagreement (deviation 1).
    """
    band = Decimal(repr(config.max_deviation_fraction))
    out: list[Disagreement] = []
    for symbol, ref in references.items():
        mark = marks.get(symbol, Decimal(0))
        if not (mark > 0 and ref > 0):
            out.append(Disagreement(symbol=symbol, mark=mark, reference=ref, deviation=Decimal(1)))
            continue
        deviation = abs(mark / ref - 1)
        if deviation > band:
            out.append(Disagreement(symbol=symbol, mark=mark, reference=ref, deviation=deviation))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SecondReference:
    """What the second reference of one large decision found.

    Attributes
    ----------
    marks
        The engine's mark of each checked symbol, quote currency.
    references
        The venue's price of each symbol read (all of ``marks`` unless ``error``), quote currency.
    found
        The symbols off by more than the band.
    error
        Why a price could not be read, or ``None``.
    refused
        Why the decision is not sent, or ``None`` (sent).
    """

    marks: Mapping[Symbol, Decimal]
    references: Mapping[Symbol, Decimal]
    found: Sequence[Disagreement]
    error: str | None
    refused: str | None


def refusal(found: Sequence[Disagreement], error: str | None, *, increases: bool,
            config: ReferenceConfig) -> str | None:  # fmt: skip
    """Return why a large decision is not sent, or ``None`` to send it.

    ``found`` are the disagreements of the prices read; ``error`` is why a price could not be read
    (``None``: all read); ``increases`` is True when any order of the decision opens or increases a
    position. Disagreement refuses; a missing price refuses only a decision that increases.
    """
    if found:
        return f"second reference disagrees: {describe(found, config)}"
    if error is not None and increases:
        return f"no second reference ({error}) for a decision that opens or increases a position"
    return None


def describe(found: Sequence[Disagreement], config: ReferenceConfig) -> str:
    """One line naming each disagreement, e.g. ``"BTC/USDT mark 13814.5 vs venue 27610.0 (50.0 % off,
    band 5.0 %)"``."""
    band = config.max_deviation_fraction
    return "; ".join(
        f"{d.symbol} mark {d.mark} vs venue {d.reference} ({float(d.deviation):.1%} off, band {band:.1%})"
        for d in found
    )
