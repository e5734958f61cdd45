"""Exact-number tests of the portfolio rebalancer (STRATEGY.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from tradebot.core.domain import StreamState
from tradebot.core.portfolio.rebalancer import AllocationConfig, compute_targets

IN, OUT = StreamState.IN, StreamState.OUT
PRICES = {"BTC/USDT": Decimal("60000"), "ETH/USDT": Decimal("3000"), "SOL/USDT": Decimal("150")}


@dataclass(frozen=True)
class View:
    stream_id: str
    symbol: str
    asset: str
    state: StreamState
    confidence: float = 0.5


def nine_streams(sol_out: int = 0) -> list[View]:
    views = []
    for asset in ("BTC", "ETH", "SOL"):
        for n, tf in enumerate(("1h", "4h", "1d")):
            state = OUT if asset == "SOL" and n < sol_out else IN
            views.append(View(f"{asset}:{tf}", f"{asset}/USDT", asset, state))
    return views


def test_slots_all_in_then_one_sol_out_frees_a_slot_to_quote() -> None:
    cfg = AllocationConfig(policy="slots")
    before = compute_targets(cfg, nine_streams(), Decimal("9000"), PRICES)
    assert before.asset_notional == {
        "BTC/USDT": Decimal("3000"),
        "ETH/USDT": Decimal("3000"),
        "SOL/USDT": Decimal("3000"),
    }
    after = compute_targets(cfg, nine_streams(sol_out=1), Decimal("9000"), PRICES)
    # SOL: 3/9 → 2/9 of equity; the freed slot stays in quote (BTC/ETH unchanged).
    assert after.asset_notional == {
        "BTC/USDT": Decimal("3000"),
        "ETH/USDT": Decimal("3000"),
        "SOL/USDT": Decimal("2000"),
    }
    assert after.invested == Decimal("8000")
    assert after.stream_notional["SOL:1h"] == Decimal("0")
    assert after.stream_notional["SOL:4h"] == Decimal("1000")


def test_pooled_one_sol_out_flows_into_btc_and_eth() -> None:
    cfg = AllocationConfig()  # pooled is the default
    before = compute_targets(cfg, nine_streams(), Decimal("9000"), PRICES)
    assert before.asset_notional["SOL/USDT"] == Decimal("3000")  # 3/9
    after = compute_targets(cfg, nine_streams(sol_out=1), Decimal("9000"), PRICES)
    assert after.asset_notional == {
        "BTC/USDT": Decimal("3375"),  # 3/8
        "ETH/USDT": Decimal("3375"),  # 3/8
        "SOL/USDT": Decimal("2250"),  # 2/8
    }
    assert after.invested == Decimal("9000")


def test_pooled_invest_fraction_and_quantization_toward_zero() -> None:
    views = [
        View("BTC:1h", "BTC/USDT", "BTC", IN),
        View("BTC:4h", "BTC/USDT", "BTC", IN),
        View("ETH:1h", "ETH/USDT", "ETH", IN),
    ]
    alloc = compute_targets(AllocationConfig(invest_fraction=0.5), views, Decimal("1000"), PRICES)
    # Each stream gets 500/3 = 166.666…, quantized down to 1e-8; the asset is the sum of its streams.
    assert alloc.stream_notional == {
        "BTC:1h": Decimal("166.66666666"),
        "BTC:4h": Decimal("166.66666666"),
        "ETH:1h": Decimal("166.66666666"),
    }
    assert alloc.asset_notional == {
        "BTC/USDT": Decimal("333.33333332"),
        "ETH/USDT": Decimal("166.66666666"),
        "SOL/USDT": Decimal("0"),  # present in prices, no stream
    }


def test_nothing_in_gives_zero_for_every_symbol() -> None:
    views = [View("BTC:1h", "BTC/USDT", "BTC", OUT)]
    for policy in ("slots", "pooled", "inverse_vol"):
        alloc = compute_targets(AllocationConfig(policy=policy), views, Decimal("1000"), PRICES)
        assert alloc.asset_notional == dict.fromkeys(sorted(PRICES), Decimal(0))
        assert alloc.stream_notional == {"BTC:1h": Decimal(0)}


def test_pooled_confidence_weights_are_renormalised() -> None:
    cfg = AllocationConfig(confidence_weighting=True)  # weights 0.5 + 1.0 × confidence
    views = [
        View("BTC:1h", "BTC/USDT", "BTC", IN, confidence=1.0),  # 1.5
        View("ETH:1h", "ETH/USDT", "ETH", IN, confidence=0.0),  # 0.5
        View("SOL:1h", "SOL/USDT", "SOL", OUT, confidence=1.0),
    ]
    alloc = compute_targets(cfg, views, Decimal("1000"), PRICES)
    assert alloc.asset_notional == {
        "BTC/USDT": Decimal("750"),
        "ETH/USDT": Decimal("250"),
        "SOL/USDT": Decimal("0"),
    }


def test_slots_confidence_weight_is_capped_at_one_slot() -> None:
    cfg = AllocationConfig(policy="slots", confidence_weighting=True)
    views = [
        View("BTC:1h", "BTC/USDT", "BTC", IN, confidence=1.0),  # 1.5 → capped at 1 slot
        View("ETH:1h", "ETH/USDT", "ETH", IN, confidence=0.0),  # half a slot
        View("SOL:1h", "SOL/USDT", "SOL", IN, confidence=0.25),  # 0.75 slot
        View("SOL:4h", "SOL/USDT", "SOL", OUT, confidence=1.0),
    ]
    alloc = compute_targets(cfg, views, Decimal("1000"), PRICES)
    assert alloc.asset_notional == {
        "BTC/USDT": Decimal("250"),
        "ETH/USDT": Decimal("125"),
        "SOL/USDT": Decimal("187.5"),
    }


def test_inverse_vol_weights_by_one_over_volatility() -> None:
    views = [
        View("BTC:1h", "BTC/USDT", "BTC", IN),
        View("ETH:1h", "ETH/USDT", "ETH", IN),
        View("SOL:1h", "SOL/USDT", "SOL", OUT),
    ]
    vol = {"BTC/USDT": 0.02, "ETH/USDT": 0.04}  # SOL is out: its volatility is not needed
    alloc = compute_targets(AllocationConfig(policy="inverse_vol"), views, Decimal("900"), PRICES, vol)
    assert alloc.asset_notional == {
        "BTC/USDT": Decimal("600"),
        "ETH/USDT": Decimal("300"),
        "SOL/USDT": Decimal("0"),
    }


@pytest.mark.parametrize("vol", [None, {}, {"BTC/USDT": 0.0}, {"BTC/USDT": -0.1}, {"BTC/USDT": float("nan")}])
def test_inverse_vol_rejects_missing_or_non_positive_volatility(vol: dict[str, float] | None) -> None:
    views = [View("BTC:1h", "BTC/USDT", "BTC", IN)]
    with pytest.raises(ValueError, match=r"volatility\['BTC/USDT'\] must be a finite number > 0, was"):
        compute_targets(AllocationConfig(policy="inverse_vol"), views, Decimal("1000"), PRICES, vol)


def test_max_asset_fraction_caps_and_leaves_excess_in_quote() -> None:
    views = [
        View("BTC:1h", "BTC/USDT", "BTC", IN),
        View("BTC:4h", "BTC/USDT", "BTC", IN),
        View("ETH:1h", "ETH/USDT", "ETH", OUT),
    ]
    alloc = compute_targets(AllocationConfig(max_asset_fraction=0.4), views, Decimal("1000"), PRICES)
    assert alloc.asset_notional["BTC/USDT"] == Decimal("400")
    assert alloc.stream_notional == {"BTC:1h": Decimal("200"), "BTC:4h": Decimal("200"), "ETH:1h": Decimal(0)}
    assert alloc.invested == Decimal("400")


def test_compute_targets_rejects_bad_inputs() -> None:
    view = View("BTC:1h", "BTC/USDT", "BTC", IN)
    cfg = AllocationConfig()
    with pytest.raises(ValueError, match=r"equity must be >= 0, was Decimal\('-1'\)"):
        compute_targets(cfg, [view], Decimal("-1"), PRICES)
    with pytest.raises(ValueError, match="'BTC:1h' was repeated"):
        compute_targets(cfg, [view, view], Decimal("1"), PRICES)
    with pytest.raises(ValueError, match=r"prices\['BTC/USDT'\] must be > 0 for stream 'BTC:1h', was None"):
        compute_targets(cfg, [view], Decimal("1"), {})
    bad = View("BTC:1h", "BTC/USDT", "BTC", IN, confidence=1.2)
    with pytest.raises(ValueError, match=r"stream 'BTC:1h': confidence must be in \[0, 1\], was 1.2"):
        compute_targets(AllocationConfig(confidence_weighting=True), [bad], Decimal("1"), PRICES)
    # Without weighting the confidence is unused and not checked.
    assert compute_targets(cfg, [bad], Decimal("1"), PRICES).asset_notional["BTC/USDT"] == Decimal("1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "equal"}, "allocation.policy must be one of .*, was 'equal'"),
        ({"invest_fraction": 0.0}, r"allocation.invest_fraction must be in \(0, 1\], was 0.0"),
        ({"invest_fraction": 1.5}, r"allocation.invest_fraction must be in \(0, 1\], was 1.5"),
        ({"confidence_weighting": 1}, "allocation.confidence_weighting must be a bool, was 1"),
        ({"min_confidence_weight": -0.1}, "allocation.min_confidence_weight must be >= 0, was -0.1"),
        (
            {"max_confidence_weight": 0.4},
            r"max_confidence_weight must be >= min_confidence_weight \(0.5\), was 0.4",
        ),
        ({"max_asset_fraction": 0.0}, r"allocation.max_asset_fraction must be in \(0, 1\] or None, was 0.0"),
    ],
)
def test_allocation_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AllocationConfig(**kwargs)  # type: ignore[arg-type]
