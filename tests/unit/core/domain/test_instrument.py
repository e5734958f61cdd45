"""Fee validation: an instrument's maker fee may be a rebate (negative), its taker fee never is; a fill
may carry a rebate no larger than its notional."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tradebot.core.domain import Asset, ClientOrderId, Fill, Instrument, Side, Symbol, TradeId


def sol(**fees: D) -> Instrument:
    return Instrument(symbol=Symbol("SOL/USD:SOL"), base=Asset("SOL"), quote=Asset("USD"), tick_size=D("0.01"),
                      step_size=D("1e-8"), **fees)  # type: ignore[arg-type]  # fmt: skip


def test_a_maker_rebate_is_a_negative_maker_fee() -> None:
    inst = sol(taker_fee=D("0.0005"), maker_fee=D("-0.0002"))
    assert (inst.taker_fee, inst.maker_fee) == (D("0.0005"), D("-0.0002"))


@pytest.mark.parametrize("value", [D("-1"), D("-1.5"), D("NaN")])
def test_maker_fee_must_be_above_minus_one(value: D) -> None:
    with pytest.raises(
        ValueError, match=r"SOL/USD:SOL: maker_fee must be a Decimal > -1 \(negative: a rebate\), was"
    ):
        sol(maker_fee=value)


def test_maker_fee_must_be_a_decimal() -> None:
    with pytest.raises(
        ValueError, match=r"maker_fee must be a Decimal > -1 \(negative: a rebate\), was -0.0002"
    ):
        sol(maker_fee=-0.0002)  # type: ignore[arg-type]


def test_a_taker_fee_is_never_negative() -> None:
    with pytest.raises(
        ValueError, match=r"SOL/USD:SOL: taker_fee must be a Decimal >= 0, was Decimal\('-0.0001'\)"
    ):
        sol(taker_fee=D("-0.0001"))


def test_a_fill_may_carry_a_rebate_but_never_more_than_its_notional() -> None:
    fill = Fill(venue="deribit", symbol=Symbol("SOL/USDC:USDC"), trade_id=TradeId("t1"),
                client_order_id=ClientOrderId("c-1-1"), side=Side.BUY, qty=D("2"), price=D("50"),
                fee_quote=D("-0.02"), ts_ms=0)  # fmt: skip
    assert fill.fee_quote == D("-0.02")
    with pytest.raises(ValueError, match=r"Fill t2: fee_quote must be a finite Decimal >= -qty × price"):
        Fill(venue="deribit", symbol=Symbol("SOL/USDC:USDC"), trade_id=TradeId("t2"),
             client_order_id=ClientOrderId("c-1-1"), side=Side.BUY, qty=D("2"), price=D("50"),
             fee_quote=D("-100.01"), ts_ms=0)  # fmt: skip
