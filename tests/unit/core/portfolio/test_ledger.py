"""Exact-number tests of the ledger: asset accounting and per-stream attribution (STRATEGY.md §5)."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from portfolio_helpers import BTC, ETH, make_fill

from tradebot.core.portfolio.ledger import Ledger, StreamPnl


def test_average_entry_across_partial_reductions_with_fees(ledger: Ledger) -> None:
    assert ledger.apply(make_fill("1", "buy", "1", "100", "0.1"))
    assert ledger.apply(make_fill("2", "buy", "1", "110", "0.11"))
    assert ledger.avg_entry(BTC) == D("105")
    assert ledger.cash == D("9789.79")

    r = ledger.apply(make_fill("3", "sell", "0.5", "120", "0.06"))
    assert r.realized_pnl == D("7.5")  # (120 − 105) × 0.5
    assert (r.position_before, r.position_after) == (D("2"), D("1.5"))
    assert ledger.avg_entry(BTC) == D("105")  # reductions keep the average entry

    r = ledger.apply(make_fill("4", "sell", "0.5", "90", "0.045"))
    assert r.realized_pnl == D("-7.5")  # (90 − 105) × 0.5
    assert ledger.position(BTC) == D("1")
    assert ledger.avg_entry(BTC) == D("105")
    assert ledger.realized(BTC) == D("0")
    assert ledger.fees(BTC) == D("0.315")
    assert ledger.net_profit(BTC) == D("-0.315")
    assert ledger.cash == D("9894.685")  # 10000 − 100.1 − 110.11 + 59.94 + 44.955
    assert ledger.cost_basis(BTC) == D("105")
    assert ledger.unrealized(BTC, D("100")) == D("-5")
    assert ledger.equity({BTC: D("100")}) == D("9994.685")
    assert ledger.asset_pnl(BTC, D("100")) == StreamPnl(
        units=D("1"),
        avg_entry=D("105"),
        realized=D("0"),
        fees=D("0.315"),
        unrealized=D("-5"),
        total=D("-5.315"),
    )


def test_flip_long_flat_long_short_and_cover(ledger: Ledger) -> None:
    ledger.apply(make_fill("1", "buy", "2", "100"))
    r = ledger.apply(make_fill("2", "sell", "2", "110"))
    assert (r.realized_pnl, r.position_after) == (D("20"), D("0"))
    assert ledger.avg_entry(BTC) == D("0")
    ledger.apply(make_fill("3", "buy", "1", "120"))
    assert ledger.avg_entry(BTC) == D("120")

    r = ledger.apply(make_fill("4", "sell", "3", "130", "0.3"))  # closes 1 long, opens 2 short
    assert r.realized_pnl == D("10")
    assert r.position_after == D("-2")
    assert ledger.avg_entry(BTC) == D("130")
    assert ledger.unrealized(BTC, D("125")) == D("10")  # (125 − 130) × −2

    r = ledger.apply(make_fill("5", "buy", "2", "125"))
    assert r.realized_pnl == D("10")  # (130 − 125) × 2
    assert ledger.position(BTC) == D("0")
    assert ledger.realized(BTC) == D("40")
    assert ledger.cash == D("10039.7")  # 10000 + 40 − 0.3
    assert ledger.equity({}) == D("10039.7")


def test_duplicate_trade_id_changes_nothing(ledger: Ledger) -> None:
    fill = make_fill("1", "buy", "1", "100", "0.1")
    assert ledger.apply(fill)
    before = ledger.snapshot()
    again = ledger.apply(fill)
    assert not again
    assert again.applied is False
    assert ledger.snapshot() == before
    # Same trade id on another venue or symbol is a different execution.
    assert ledger.apply(make_fill("1", "buy", "1", "100", venue="binance"))
    assert ledger.apply(make_fill("1", "buy", "1", "3000", symbol=ETH))
    assert ledger.positions() == {BTC: D("2"), ETH: D("1")}


def test_internal_crossing_at_mark_moves_no_asset_quantity(ledger: Ledger) -> None:
    assert ledger.set_stream_targets(BTC, {"BTC:1h": D("1"), "BTC:4h": D("1")}, D("100")) == D("2")
    assert ledger.pending(BTC) == {"BTC:1h": D("1"), "BTC:4h": D("1")}
    r = ledger.apply(make_fill("1", "buy", "2", "101", "0.2"))
    assert r.stream_qty == {"BTC:1h": D("1"), "BTC:4h": D("1")}
    assert ledger.pending(BTC) == {}
    assert ledger.stream_pnl("BTC:1h", D("101")).fees == D("0.1")

    # BTC:1h goes out, BTC:4h takes its unit: crossed at the mark 110, nothing to trade.
    assert ledger.set_stream_targets(BTC, {"BTC:1h": D("0"), "BTC:4h": D("2")}, D("110")) == D("0")
    assert ledger.pending(BTC) == {}
    assert ledger.position(BTC) == D("2")
    assert ledger.avg_entry(BTC) == D("101")
    out = ledger.stream_pnl("BTC:1h", D("120"))
    assert out == StreamPnl(
        units=D("0"), avg_entry=D("0"), realized=D("9"), fees=D("0.1"), unrealized=D("0"), total=D("8.9")
    )
    kept = ledger.stream_pnl("BTC:4h", D("120"))
    assert (kept.units, kept.avg_entry, kept.realized) == (D("2"), D("105.5"), D("0"))
    assert kept.total == D("28.9")  # 2 × 120 − (101 + 110) − 0.1
    assert out.total + kept.total == ledger.asset_pnl(BTC, D("120")).total == D("37.8")


def test_crossing_then_net_sell_goes_to_the_seller(ledger: Ledger) -> None:
    ledger.set_stream_targets(BTC, {"BTC:4h": D("2")}, D("100"))
    ledger.apply(make_fill("1", "buy", "2", "100"))
    net = ledger.set_stream_targets(BTC, {"BTC:1h": D("0.5"), "BTC:4h": D("0")}, D("100"))
    assert net == D("-1.5")  # 0.5 crossed from 4h to 1h, 1.5 sold on the venue
    assert ledger.pending(BTC) == {"BTC:4h": D("-1.5")}
    r = ledger.apply(make_fill("2", "sell", "1.5", "99", "0.15"))
    assert r.stream_qty == {"BTC:4h": D("-1.5")}
    assert ledger.stream_pnl("BTC:4h", D("99")).realized == D("-1.5")  # (99 − 100) × 1.5
    assert ledger.stream_units("BTC:1h") == D("0.5")
    assert ledger.position(BTC) == D("0.5")


def test_partial_fills_are_pro_rata_to_pending_and_capped(ledger: Ledger) -> None:
    ledger.set_stream_targets(BTC, {"BTC:1h": D("3"), "BTC:4h": D("1")}, D("100"))
    r = ledger.apply(make_fill("1", "buy", "2", "100", "0.4"))
    assert r.stream_qty == {"BTC:1h": D("1.5"), "BTC:4h": D("0.5")}
    assert ledger.stream_pnl("BTC:1h", D("100")).fees == D("0.3")
    assert ledger.stream_pnl("BTC:4h", D("100")).fees == D("0.1")
    assert ledger.pending(BTC) == {"BTC:1h": D("1.5"), "BTC:4h": D("0.5")}
    # The venue rounds the rest up to its step: the excess beyond pending goes to the bucket.
    r = ledger.apply(make_fill("2", "buy", "2.00001", "100"))
    assert r.stream_qty == {"BTC:1h": D("1.5"), "BTC:4h": D("0.5"), "BTC:unassigned": D("0.00001")}
    assert ledger.pending(BTC) == {}


def test_rounding_remainder_goes_to_the_last_stream(ledger: Ledger) -> None:
    ledger.set_stream_targets(BTC, {"BTC:1h": D("1"), "BTC:4h": D("2")}, D("100"))
    r = ledger.apply(make_fill("1", "buy", "0.00000000000000001", "100", "0.000000000000000001"))
    assert r.stream_qty == {"BTC:1h": D("3E-18"), "BTC:4h": D("7E-18")}
    fees = [ledger.stream_pnl(s, D("100")).fees for s in ("BTC:1h", "BTC:4h")]
    assert fees == [D("0"), D("1E-18")]  # 1e-18 × 3/10 rounds down to 0; the last takes the rest
    assert ledger.stream_units("BTC:1h") + ledger.stream_units("BTC:4h") == ledger.position(BTC)


def test_unassigned_bucket_takes_unrequested_buys_and_is_crossed_later(ledger: Ledger) -> None:
    r = ledger.apply(make_fill("1", "buy", "1", "100", "0.1"))  # e.g. a reconciliation adjustment
    assert r.stream_qty == {"BTC:unassigned": D("1")}
    assert ledger.stream_ids(BTC) == ("BTC:1h", "BTC:4h", "BTC:unassigned")
    # The bucket's target is 0 unless named: its unit is crossed to BTC:1h at the mark.
    assert ledger.set_stream_targets(BTC, {"BTC:1h": D("1")}, D("105")) == D("0")
    bucket = ledger.stream_pnl("BTC:unassigned", D("105"))
    assert (bucket.units, bucket.realized, bucket.fees, bucket.total) == (D("0"), D("5"), D("0.1"), D("4.9"))
    assert ledger.stream_pnl("BTC:1h", D("105")).avg_entry == D("105")


def test_unrequested_sell_reduces_holdings_pro_rata(ledger: Ledger) -> None:
    ledger.set_stream_targets(BTC, {"BTC:1h": D("3"), "BTC:4h": D("1")}, D("100"))
    ledger.apply(make_fill("1", "buy", "4", "100"))
    r = ledger.apply(make_fill("2", "sell", "2", "90", "0.2"))  # a stop exit
    assert r.stream_qty == {"BTC:1h": D("-1.5"), "BTC:4h": D("-0.5")}
    assert ledger.stream_pnl("BTC:1h", D("90")).realized == D("-15")
    assert ledger.stream_pnl("BTC:4h", D("90")).realized == D("-5")


def test_snapshot_restore_round_trip(ledger: Ledger) -> None:
    ledger.set_initial_risk(BTC, D("5"))
    ledger.set_stream_targets(BTC, {"BTC:1h": D("1"), "BTC:4h": D("2")}, D("100"))
    ledger.apply(make_fill("1", "buy", "2", "100", "0.2", cid="t-1-1"))
    ledger.on_bar(BTC, 104.5, 98.25)
    data = json.loads(json.dumps(ledger.snapshot()))
    restored = Ledger.restore(data)
    assert restored.snapshot() == ledger.snapshot()
    assert restored.open_trade(BTC) == ledger.open_trade(BTC)
    assert not restored.apply(make_fill("1", "buy", "2", "100", "0.2"))  # dedupe survives
    nxt = make_fill("2", "buy", "1", "101", "0.1", cid="t-1-2")
    assert ledger.apply(nxt) == restored.apply(nxt)
    assert restored.snapshot() == ledger.snapshot()


def test_ledger_rejects_bad_input(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match=r"symbol must be one of \['BTC/USDT', 'ETH/USDT'\], was 'SOL/USDT'"):
        ledger.apply(make_fill("1", "buy", "1", "1", symbol="SOL/USDT"))
    with pytest.raises(ValueError, match="qty must have at most 18 decimals"):
        ledger.apply(make_fill("1", "buy", "0.0000000000000000001", "1"))
    with pytest.raises(ValueError, match=r"mark of BTC/USDT must be a Decimal > 0, was Decimal\('0'\)"):
        ledger.set_stream_targets(BTC, {}, D("0"))
    with pytest.raises(ValueError, match=r"target_units names streams not of BTC/USDT: \['ETH:1h'\]"):
        ledger.set_stream_targets(BTC, {"ETH:1h": D("1")}, D("1"))
    with pytest.raises(ValueError, match=r"marks\['BTC/USDT'\] is needed"):
        ledger.apply(make_fill("1", "buy", "1", "1"))
        ledger.equity({})
    with pytest.raises(ValueError, match="symbol must be '<base>/USDT', was 'BTC/USDC'"):
        Ledger("USDT", D("0"), ["BTC/USDC"], {})
    with pytest.raises(ValueError, match="initial_cash must be a Decimal >= 0, was Decimal"):
        Ledger("USDT", D("-1"), [BTC], {})
    with pytest.raises(ValueError, match="stream ids must be unique and not reserved, was 'X'"):
        Ledger("USDT", D("0"), [BTC, ETH], {BTC: ["X"], ETH: ["X"]})
    with pytest.raises(ValueError, match="streams_by_symbol names symbols not in symbols"):
        Ledger("USDT", D("0"), [BTC], {ETH: ["ETH:1h"]})
