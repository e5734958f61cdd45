"""``tradebot status`` on the demo's database: the positions it shows are the daemon's ledger's."""

from __future__ import annotations

import asyncio
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from tradebot.app.daemon.status_report import read_status
from tradebot.app.demo.demo import DemoOptions, run_demo
from tradebot.app.settings import load_settings
from tradebot.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.timeout(180)
async def test_status_shows_the_ledgers_open_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings()
    db = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    result = await run_demo(settings, DemoOptions(data_dir=SAMPLE, days=1.0, db_url=db, minute_wall_s=1e-4))
    c = result.daemon.c
    assert c is not None
    ledger, run_id = c.engine.ledger, c.run_id
    held = {s: q for s, q in ledger.positions().items() if q != 0}
    assert held, "the demo day must end holding something for this test to mean anything"

    health = Path(settings.daemon.health_file).with_name("demo-health.json")
    report = await read_status(db, health_files=[health])
    assert report["run"]["run_id"] == run_id
    shown = {p["symbol"]: Decimal(p["qty_base"]) for p in report["positions"]}
    assert shown == held
    for p in report["positions"]:
        assert Decimal(p["avg_entry_quote"]) == ledger.avg_entry(p["symbol"]).quantize(Decimal("0.0001"))
        mark = c.engine.marks_decimal()[p["symbol"]]
        assert Decimal(p["mark_quote"]) == mark
        assert Decimal(p["unrealized_pnl_quote"]) == ledger.unrealized(p["symbol"], mark).quantize(
            Decimal("0.01")
        )
    equity = ledger.equity(c.engine.marks_decimal()).quantize(Decimal("0.01"))
    assert Decimal(report["equity_quote"]) == equity
    assert Decimal(report["cash_quote"]) == ledger.cash.quantize(Decimal("0.01"))
    assert report["trading_state"] == str(c.engine.trading_state)
    assert report["recent_fills"] and report["recent_events"]
    assert report["daemon"] is not None and report["daemon"]["run_id"] == run_id

    # the command (asyncio.run in a thread): --json for scripts, a table for people; unknown run: exit 2
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", "--db", db, "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert {p["symbol"] for p in parsed["positions"]} == set(held)
    assert await asyncio.to_thread(main, ["status", "--db", db]) == 0
    out = capsys.readouterr().out
    assert f"run {run_id}" in out and "positions" in out
    for symbol in held:
        assert symbol in out
    assert await asyncio.to_thread(main, ["status", "--db", db, "--run", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_status_of_a_missing_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.db"
    assert main(["status", "--db", f"sqlite+aiosqlite:///{missing}"]) == 2
    assert f"no database at '{missing}'" in capsys.readouterr().err
    assert not missing.exists()
    with pytest.raises(SystemExit) as exc:
        main(["status", "--watch", "0"])
    assert exc.value.code == 2
