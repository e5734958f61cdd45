"""Portfolio rebalancer: stream states, equity and volatility → target notional per asset (STRATEGY.md §2).

The rebalancer never thinks in "this stream's position": it spreads equity over the streams that
are ``in`` according to a policy and sums the streams' shares per asset. Outputs are ``Decimal``
notionals in the quote currency, quantized to ``1e-8`` rounding toward zero, so the invested total
never exceeds what the policy allows. ``asset_notional[symbol]`` is *defined* as the sum of the
(quantized) ``stream_notional`` of the symbol's streams, so both views agree exactly.

Policies (``AllocationConfig.policy``), with ``E`` = equity, ``N`` = number of streams,
``w_i`` = confidence weight of stream ``i`` (1 when confidence weighting is off):

``slots``
    Each stream owns ``E / N``. ``stream_i = E / N × min(w_i, 1)`` when in, else 0, so
    ``target(asset) = E × (#in of asset) / N`` without weighting. Out streams' slots (and the
    part of a slot a low-confidence stream does not use) stay in the quote currency. A weight above
    1 is capped at one slot: a stream never takes another stream's slot. ``invest_fraction`` does
    not apply (the slot count already fixes the invested share).
``pooled`` (default)
    ``stream_i = E × f × w_i / Σ_in w_j`` (``f`` = ``invest_fraction``), so without weighting
    ``target(asset) = E × f × (#in of asset) / (#in, all assets)``; all zero when nothing is in.
    Weights are renormalised: confidence shifts money between in streams, it never changes the
    invested total.
``inverse_vol``
    Like ``pooled`` with ``w_i / vol(asset_i)`` as the weight, where ``vol`` is the asset's
    volatility as a fraction of price (e.g. ATR / close = ``0.02``).

``max_asset_fraction`` then caps each asset at ``E × max_asset_fraction``: the asset's streams
are scaled down pro rata and the excess stays in the quote currency (it is not redistributed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from tradebot.core.domain import ZERO, StreamState, to_decimal

#: Quantum of every output notional (quote currency).
NOTIONAL_QUANTUM = Decimal("1e-8")

POLICIES = ("slots", "pooled", "inverse_vol")


class StreamView(Protocol):
    """What the rebalancer reads of a stream (produced by the engine from the signal layer)."""

    @property
    def stream_id(self) -> str:
        """Stream id ``"<asset>:<timeframe>"``."""
        ...

    @property
    def symbol(self) -> str:
        """ccxt unified symbol the stream trades, e.g. ``"BTC/USDT"``."""
        ...

    @property
    def asset(self) -> str:
        """Base asset, e.g. ``"BTC"``."""
        ...

    @property
    def state(self) -> StreamState:
        """``in`` or ``out``."""
        ...

    @property
    def confidence(self) -> float:
        """Rule strength in [0, 1]."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationConfig:
    """How equity is spread over streams and assets (config ``allocation.*``).

    Attributes
    ----------
    policy
        ``"slots"``, ``"pooled"`` (default) or ``"inverse_vol"`` (see the module docstring).
    invest_fraction
        Share of equity the ``pooled`` / ``inverse_vol`` policies may invest, fraction in (0, 1];
        default 1.0. Ignored by ``slots``.
    confidence_weighting
        When True, each in stream's weight is
        ``min_confidence_weight + (max_confidence_weight − min_confidence_weight) × confidence``.
        Default False (all weights 1).
    min_confidence_weight, max_confidence_weight
        Weight at confidence 0 and at confidence 1; ``0 <= min <= max``; defaults 0.5 and 1.5.
    max_asset_fraction
        Cap of one asset's target as a fraction of equity in (0, 1], applied after the policy;
        ``None`` (default) for no cap. The risk limits of the management layer apply on top.

    Raises
    ------
    ValueError
        On construction, when a field is out of range; the message names the field and value.
    """

    policy: str = "pooled"
    invest_fraction: float = 1.0
    confidence_weighting: bool = False
    min_confidence_weight: float = 0.5
    max_confidence_weight: float = 1.5
    max_asset_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"allocation.policy must be one of {list(POLICIES)}, was {self.policy!r}")
        if not _is_number(self.invest_fraction) or not 0 < self.invest_fraction <= 1:
            raise ValueError(f"allocation.invest_fraction must be in (0, 1], was {self.invest_fraction!r}")
        if not isinstance(self.confidence_weighting, bool):
            raise ValueError(
                f"allocation.confidence_weighting must be a bool, was {self.confidence_weighting!r}"
            )
        lo, hi = self.min_confidence_weight, self.max_confidence_weight
        if not _is_number(lo) or lo < 0:
            raise ValueError(f"allocation.min_confidence_weight must be >= 0, was {lo!r}")
        if not _is_number(hi) or hi < lo:
            raise ValueError(
                f"allocation.max_confidence_weight must be >= min_confidence_weight ({lo!r}), was {hi!r}"
            )
        cap = self.max_asset_fraction
        if cap is not None and (not _is_number(cap) or not 0 < cap <= 1):
            raise ValueError(f"allocation.max_asset_fraction must be in (0, 1] or None, was {cap!r}")

    def weight(self, confidence: float) -> Decimal:
        """Return the stream weight for ``confidence`` (1 when confidence weighting is off).

        Raises
        ------
        ValueError
            If weighting is on and ``confidence`` is not a number in [0, 1] (not checked when off:
            the value is then unused).
        """
        if not self.confidence_weighting:
            return Decimal(1)
        if not _is_number(confidence) or not 0 <= confidence <= 1:
            raise ValueError(f"confidence must be in [0, 1], was {confidence!r}")
        lo = to_decimal(self.min_confidence_weight, field="min_confidence_weight")
        hi = to_decimal(self.max_confidence_weight, field="max_confidence_weight")
        return lo + (hi - lo) * to_decimal(confidence, field="confidence")


@dataclass(frozen=True, slots=True)
class Allocation:
    """Result of :func:`compute_targets`.

    Attributes
    ----------
    asset_notional
        Target notional per symbol in quote currency (>= 0, quantum 1e-8); every symbol of the
        streams and of ``prices`` is present, 0 when none of its streams is in.
    stream_notional
        Each stream's share in quote currency (0 when out); the shares of a symbol's streams sum
        exactly to its ``asset_notional``.
    """

    asset_notional: dict[str, Decimal]
    stream_notional: dict[str, Decimal]

    @property
    def invested(self) -> Decimal:
        """Σ asset targets, quote currency."""
        return sum(self.asset_notional.values(), ZERO)


def compute_targets(
    config: AllocationConfig,
    streams: Iterable[StreamView],
    equity: Decimal,
    prices: Mapping[str, Decimal],
    volatility: Mapping[str, float] | None = None,
) -> Allocation:
    """Return the target notional per asset and per stream for the current stream states.

    Parameters
    ----------
    config
        The allocation policy.
    streams
        All streams (in and out), each with a unique ``stream_id``; ``N`` for ``slots`` is their
        count.
    equity
        Portfolio equity in quote currency (cash + Σ qty × mark), >= 0.
    prices
        Mark price per symbol in quote currency, > 0. Every stream's symbol must have one (a
        symbol without a mark cannot be traded); extra symbols get a target of 0.
    volatility
        Per symbol, volatility as a fraction of price (ATR / price), > 0. Required by
        ``inverse_vol`` for every symbol with an in stream; ignored otherwise.

    Returns
    -------
    Allocation
        Targets in quote currency, quantized to 1e-8 toward zero. Keys are sorted.

    Raises
    ------
    ValueError
        If ``equity`` is negative or not finite, a stream id repeats, a confidence is outside
        [0, 1] while confidence weighting is on, a stream's symbol has no positive price, or (``inverse_vol``) an in stream's
        volatility is missing, not finite or <= 0; the message names the item and the value.
    """
    equity = to_decimal(equity, field="equity")
    if equity < 0:
        raise ValueError(f"equity must be >= 0, was {equity!r}")
    views = list(streams)
    weights = _raw_weights(config, views, prices, volatility)
    if config.policy == "slots":
        shares = _slot_shares(views, weights, equity)
    else:
        shares = _pooled_shares(weights, equity * to_decimal(config.invest_fraction))
    symbols = sorted({v.symbol for v in views} | set(prices))
    if config.max_asset_fraction is not None:
        shares = _cap_assets(views, shares, equity * to_decimal(config.max_asset_fraction))
    stream_notional = {v.stream_id: _q(shares.get(v.stream_id, ZERO)) for v in sorted(views, key=_sid)}
    asset_notional = dict.fromkeys(symbols, ZERO)
    for v in views:
        asset_notional[v.symbol] += stream_notional[v.stream_id]
    return Allocation(asset_notional=asset_notional, stream_notional=stream_notional)


def _sid(view: StreamView) -> str:
    return view.stream_id


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _q(value: Decimal) -> Decimal:
    return value.quantize(NOTIONAL_QUANTUM, rounding=ROUND_DOWN)


def _raw_weights(
    config: AllocationConfig,
    views: list[StreamView],
    prices: Mapping[str, Decimal],
    volatility: Mapping[str, float] | None,
) -> dict[str, Decimal]:
    # Weight of every *in* stream (out streams are absent); validates ids, prices and vols.
    seen: set[str] = set()
    weights: dict[str, Decimal] = {}
    for v in views:
        if v.stream_id in seen:
            raise ValueError(f"stream ids must be unique, {v.stream_id!r} was repeated")
        seen.add(v.stream_id)
        price = prices.get(v.symbol)
        if price is None or not price > 0:
            raise ValueError(f"prices[{v.symbol!r}] must be > 0 for stream {v.stream_id!r}, was {price!r}")
        try:
            weight = config.weight(v.confidence)
        except ValueError:
            raise ValueError(
                f"stream {v.stream_id!r}: confidence must be in [0, 1], was {v.confidence!r}"
            ) from None
        if v.state is not StreamState.IN:
            continue
        if config.policy == "inverse_vol":
            vol = None if volatility is None else volatility.get(v.symbol)
            if vol is None or not _is_number(vol) or vol <= 0:
                raise ValueError(f"volatility[{v.symbol!r}] must be a finite number > 0, was {vol!r}")
            weight = weight / to_decimal(vol, field=f"volatility[{v.symbol!r}]")
        weights[v.stream_id] = weight
    return weights


def _slot_shares(views: list[StreamView], weights: dict[str, Decimal], equity: Decimal) -> dict[str, Decimal]:
    if not views:
        return {}
    slot = equity / len(views)
    return {sid: slot * min(w, Decimal(1)) for sid, w in weights.items()}


def _pooled_shares(weights: dict[str, Decimal], budget: Decimal) -> dict[str, Decimal]:
    total = sum(weights.values(), ZERO)
    if total <= 0:
        return {}
    return {sid: budget * w / total for sid, w in weights.items()}


def _cap_assets(views: list[StreamView], shares: dict[str, Decimal], cap: Decimal) -> dict[str, Decimal]:
    per_asset: dict[str, Decimal] = {}
    for v in views:
        per_asset[v.symbol] = per_asset.get(v.symbol, ZERO) + shares.get(v.stream_id, ZERO)
    capped = dict(shares)
    for v in views:
        total = per_asset[v.symbol]
        if total > cap and v.stream_id in shares:
            capped[v.stream_id] = shares[v.stream_id] * cap / total
    return capped
