"""Position events are exactly-once across kills: the paper daemon against the exchange simulator
(``events_runner.py``, a subprocess) is SIGKILLed right after the store commits a step's decision
events — the moment between a step's records and its checkpoint when those are two transactions —
then restarted, several times, on SQLite and on PostgreSQL.

At the end the run's position events equal those of an uninterrupted run of the same candles: the
same multiset of decision events (type, symbol, time, price, sizes, action), every start's feed
stale → recovered pair per symbol, and ``seq`` = 1..N with no gap or duplicate.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import os
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from events_runner import arguments, event_key, main

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.store.migrate import upgrade
from tradebot.core.domain import PositionEvent, PositionEventType

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
RUNNER = Path(__file__).with_name("events_runner.py")
RUN = "events"
MINUTES = 240  # 4 simulated hours: 6 steps that decide (3 rebalances, their fills)
KILLS = 5
FEED_EVENTS = {PositionEventType.FEED_STALE, PositionEventType.FEED_RECOVERED}
ENV = {"TRADEBOT_STREAMS": '[{"timeframe": "1h", "fast": 2, "slow": 3, "atr_period": 2}]'}

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped sample with its 1m candles cut after the window (every start parses them twice)."""
    out = tmp_path_factory.mktemp("sample")
    for path in SAMPLE.glob("*.csv.gz"):
        if "_1m." not in path.name:
            shutil.copy(path, out / path.name)
            continue
        with gzip.open(path, "rt") as src, gzip.open(out / path.name, "wt") as dst:
            dst.writelines(itertools.islice(src, MINUTES + 61))  # the header, the window and an hour
    return out


def _args(db: str, data: Path) -> list[str]:
    return ["--db", db, "--run", RUN, "--data", str(data), "--minutes", str(MINUTES)]


async def _killed_run(db: str, data: Path) -> int:
    # one start in a subprocess that kills itself after the next deciding step's commit
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}, **ENV}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(RUNNER), *_args(db, data), "--kill", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    lines = [json.loads(t) for t in out.decode().splitlines() if t.startswith("{")]
    assert proc.returncode == -signal.SIGKILL and lines, err.decode()[-3000:]  # the kill found its step
    return int(lines[-1]["killed_at_ms"])


async def _full_run(db: str, data: Path) -> None:
    # a start to the end of the window, in this process (saves an interpreter start)
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
            mp.delenv(key)
        for key, value in ENV.items():
            mp.setenv(key, value)
        done = await main(arguments(_args(db, data)))
    assert (done["done"], done["stopped_by"]) == (0, "end_of_data"), done


async def _events(db: str) -> list[PositionEvent]:
    async with SqlEventStore(db) as store:
        return await store.position_events(RUN)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[list[PositionEvent]]:
    """The position events of an uninterrupted run (SQLite; the backend does not change decisions)."""
    db = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('reference') / 'ref.db'}"

    async def run() -> list[PositionEvent]:
        await upgrade(db)
        await _full_run(db, data_dir)
        return await _events(db)

    yield asyncio.run(run())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'killed.db'}"
    return request.getfixturevalue("pg_url")


async def test_kills_between_a_steps_records_and_its_checkpoint_lose_and_duplicate_no_event(
    db_url: str, data_dir: Path, reference: list[PositionEvent]
) -> None:
    if db_url.startswith("sqlite"):
        await upgrade(db_url)
    killed = [await _killed_run(db_url, data_dir) for _ in range(KILLS)]
    await _full_run(db_url, data_dir)
    assert killed == sorted(killed)
    got = await _events(db_url)

    decisions = Counter(event_key(e) for e in got if e.event_type not in FEED_EVENTS)
    expected = Counter(event_key(e) for e in reference if e.event_type not in FEED_EVENTS)
    duplicated, lost = decisions - expected, expected - decisions
    starts = KILLS + 1
    feed = Counter((e.symbol, e.event_type) for e in got if e.event_type in FEED_EVENTS)
    symbols = {e.symbol for e in reference}
    lost_feed = sum(starts - feed[(s, t)] for s in symbols for t in FEED_EVENTS)
    seqs = [e.seq for e in got]
    figures = (f"{KILLS} kills at {killed}: {sum(duplicated.values())} decision events duplicated, "
               f"{sum(lost.values())} lost, {lost_feed} feed events lost; seqs {seqs}")  # fmt: skip
    print(figures)
    assert not duplicated and not lost, figures
    assert lost_feed == 0, figures
    assert seqs == list(range(1, len(got) + 1)), figures
    for sym in symbols:  # one stale → recovered pair per start, in order
        mine = [e.event_type for e in got if e.symbol == sym and e.event_type in FEED_EVENTS]
        assert mine == [PositionEventType.FEED_STALE, PositionEventType.FEED_RECOVERED] * starts, figures
