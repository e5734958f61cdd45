"""``tradebot optimize`` on the shipped sample (real backtests, real SQLite / PostgreSQL storage), and
the backtest on preloaded candles it is built on.

Speed: the studies replay the sample's 1h files (``--timeframe 1h``: 30 days, ~0.1 s a trial) with the
default configuration as the base; the PostgreSQL test runs ``tradebot`` subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tradebot.app.backtest.backtest import BacktestOptions, backtest_loaded, load_data, run_backtest
from tradebot.app.research.study import LEAN_ATTRS, open_storage
from tradebot.app.settings import load_settings
from tradebot.cli import main
from tradebot.core.domain import Timeframe

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
DEFAULT = REPO / "config" / "default.toml"
DAY_MS = 86_400_000


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env from the caller's working directory


def _space(tmp_path: Path, body: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'[base]\nconfig = "{DEFAULT}"\n\n{body}', encoding="utf-8")
    return path


THREE = (REPO / "tests" / "fixtures" / "spaces" / "three_params.toml").read_text(encoding="utf-8")


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _optimize(space: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _cli(
        "optimize", "--data", str(SAMPLE), "--timeframe", "1h", "--space", str(space), "--out", str(out),
        *extra,
    )  # fmt: skip


# --- the backtest on preloaded candles -------------------------------------------------------------


def test_a_backtest_on_preloaded_candles_equals_tradebot_backtest() -> None:
    # Loaded once with a much wider warm-up than the settings need, cut per run: same result.
    settings = load_settings(DEFAULT)
    options = BacktestOptions(data_dir=SAMPLE, start_ms=1_680_307_200_000, end_ms=1_681_516_800_000)
    reference = asyncio.run(run_backtest(settings, options))
    wide = load_data(
        settings,
        options,
        lookback_bars=3 * 3 * max(s.slow for s in settings.streams),
        warmup_timeframes=frozenset(Timeframe(t) for t in ("1h", "4h", "1d")),
    )
    assert len(wide.warmup) > len(load_data(settings, options).warmup)
    for _ in range(2):  # the loaded data is reusable
        result = backtest_loaded(settings, wide)
        assert result.summary["final_equity"] == reference.summary["final_equity"]
        assert result.summary["overall"]["n_orders"] == reference.summary["overall"]["n_orders"] > 0
        assert result.summary["overall"]["n_trades"] == reference.summary["overall"]["n_trades"]


def test_backtest_symbols_btc_trades_only_btc(tmp_path: Path) -> None:
    code, _out, err = _cli(
        "backtest", "--data", str(SAMPLE), "--symbols", "BTC", "--no-db", "--out", str(tmp_path / "o")
    )
    assert code == 0, err
    [summary_file] = (tmp_path / "o").glob("*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["run"]["symbols"] == ["BTC/USDT"]
    assert set(summary["per_asset"]) <= {"BTC/USDT"}
    assert set(summary["final_positions"]) == {"BTC/USDT"}
    assert summary["overall"]["n_orders"] > 0


# --- optimize -------------------------------------------------------------------------------------


def test_optimize_20_trials_prints_the_best_summary_and_is_reproducible(tmp_path: Path) -> None:
    space = _space(tmp_path, THREE)
    bests = []
    for run in ("a", "b"):
        out = tmp_path / run
        code, stdout, err = _optimize(space, out, "--trials", "20", "--seed", "7")
        assert code == 0, err
        assert "Final equity (USDT)" in stdout and "best trial" in stdout
        assert "parameter importances" in stdout
        assert "20/20 done" in err  # one progress line per trial off a terminal
        best = json.loads((out / "best.json").read_text())
        assert set(best["params"]) == {"planner.band_fraction", "streams.0.fast", "allocation.policy"}
        assert best["summary"]["overall"]["sharpe"] == pytest.approx(best["values"][0])
        bests.append((best["trial"], best["params"], best["values"]))
        study = optuna.load_study(study_name="tradebot", storage=f"sqlite:///{out / 'optuna.db'}")
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 20
    assert bests[0] == bests[1]
    # best.toml is a config `tradebot backtest --config` runs to the best trial's equity
    code, _o, err = _cli(
        "backtest", "--data", str(SAMPLE), "--timeframe", "1h", "--no-db", "--config",
        str(tmp_path / "a" / "best.toml"), "--out", str(tmp_path / "bt"),
    )  # fmt: skip
    assert code == 0, err
    [summary_file] = (tmp_path / "bt").glob("*/summary.json")
    best_a = json.loads((tmp_path / "a" / "best.json").read_text())
    assert json.loads(summary_file.read_text())["final_equity"] == best_a["summary"]["final_equity"]


def test_optimize_finds_a_planted_winner_and_respects_constraints(tmp_path: Path) -> None:
    # Max drawdown is smallest when almost nothing is invested: invest_fraction 0.01 is the known best.
    space = _space(tmp_path, '[params."allocation.invest_fraction"]\nchoices = [0.5, 0.01, 1.0]\n')
    code, _out, err = _optimize(space, tmp_path / "o", "--trials", "8", "--objective", "max_drawdown")
    assert code == 0, err
    best = json.loads((tmp_path / "o" / "best.json").read_text())
    assert best["params"] == {"allocation.invest_fraction": 0.01}
    # With a constraint no trial meets, none is chosen (exit 1) though all are recorded.
    code, stdout, err = _optimize(
        space, tmp_path / "c", "--trials", "4", "--objective", "max_drawdown", "--min-trades", "100000"
    )
    assert code == 1, err
    assert "no complete trial meets the constraints" in stdout
    study = optuna.load_study(study_name="tradebot", storage=f"sqlite:///{tmp_path / 'c' / 'optuna.db'}")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4 and not any(t.user_attrs["feasible"] for t in trials)


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    # Each value is valid alone; the pair fast 45 / slow 40 is refused by the settings for that trial.
    space = _space(
        tmp_path,
        '[params."streams.0.fast"]\nchoices = [12, 45]\n[params."streams.0.slow"]\nchoices = [50, 40]\n',
    )
    code, _out, err = _optimize(space, tmp_path / "o", "--trials", "10", "--objective", "final_equity")
    assert code == 0, err
    study = optuna.load_study(study_name="tradebot", storage=f"sqlite:///{tmp_path / 'o' / 'optuna.db'}")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed and all("fast" in t.user_attrs["error"] for t in failed)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.FAIL))) == 10

    # Workers read the trials with only the attributes they need (the rest stays stored, for the
    # reports); each complete trial records its costs.
    url = f"sqlite:///{tmp_path / 'o' / 'optuna.db'}"
    lean = optuna.load_study(study_name="tradebot", storage=open_storage(url, lean=True))
    full = optuna.load_study(study_name="tradebot", storage=open_storage(url))
    pairs = list(zip(lean.get_trials(), full.get_trials(), strict=True))
    for a, b in pairs:
        assert (a.number, a.state, a.params, a.values) == (b.number, b.state, b.params, b.values)
        assert a.user_attrs == {k: v for k, v in b.user_attrs.items() if k in LEAN_ATTRS}
        if b.state == TrialState.COMPLETE:
            assert {"summary", "daily_returns"} <= b.user_attrs.keys()
            perf = b.user_attrs["perf"]
            assert 0 < perf["engine_s"] <= perf["run_s"] and perf["peak_rss_mb"] >= perf["rss_mb"] > 0
        else:
            assert "traceback" in b.user_attrs and "error" in a.user_attrs


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--objective", "sharp"), "'sharp'"),
        (("--trials", "0"), "--trials must be a positive integer, was 0"),
        (("--jobs", "0"), "--jobs must be a positive integer, was 0"),
        (("--storage", "postgresql://postgres@127.0.0.1:1/nowhere"), "127.0.0.1:1/nowhere"),
        (("--storage", "nosuchdb://x"), "nosuchdb://x"),
        (("--timeframe", "7x"), "7x"),
    ],
)
def test_bad_input_exits_2_naming_the_value(tmp_path: Path, flags: tuple[str, ...], named: str) -> None:
    code, _out, err = _optimize(_space(tmp_path, THREE), tmp_path / "o", "--trials", "3", *flags)
    assert code == 2, err
    assert named in err
    db = tmp_path / "o" / "optuna.db"
    if db.exists():
        study = optuna.load_study(study_name="tradebot", storage=f"sqlite:///{db}")
        assert not study.get_trials(states=(TrialState.COMPLETE,))


def test_a_space_key_that_does_not_exist_exits_2(tmp_path: Path) -> None:
    space = _space(tmp_path, '[params."planner.no_such_knob"]\nlow = 1\nhigh = 2\n')
    code, _out, err = _optimize(space, tmp_path / "o", "--trials", "3")
    assert code == 2 and "no_such_knob" in err
    assert not (tmp_path / "o" / "optuna.db").exists()


# --- many workers on one PostgreSQL study ----------------------------------------------------------


@pytest.fixture
def pg_storage(pg_server: object) -> Iterator[str]:
    """A fresh empty PostgreSQL database for an Optuna storage (sync psycopg URL), dropped after."""
    name, url = pg_server.create(migrated=False)  # type: ignore[attr-defined]
    try:
        yield url.replace("postgresql+asyncpg://", "postgresql+psycopg://", 1)
    finally:
        pg_server.drop(name)  # type: ignore[attr-defined]


def _spawn(space: Path, out: Path, storage: str, study: str, trials: int) -> subprocess.Popen[bytes]:
    argv = [
        str(Path(sys.executable).parent / "tradebot"), "optimize", "--data", str(SAMPLE), "--timeframe", "1h",
        "--space", str(space), "--out", str(out), "--storage", storage, "--study", study,
        "--trials", str(trials),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    return subprocess.Popen(argv, cwd=out.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials()


@pytest.mark.postgres
def test_two_workers_share_one_postgres_study_and_survive_a_kill(tmp_path: Path, pg_storage: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _space(tmp_path, THREE)
    study = f"wf-{os.getpid()}-{time.monotonic_ns()}"
    n = 16
    procs = [_spawn(space, tmp_path / f"o{i}", pg_storage, study, n) for i in range(2)]
    for p in procs:
        _o, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    trials = _trials(pg_storage, study)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == n
    # a trial two workers started at once beyond N is PRUNED as surplus, never run or counted
    assert all(t.user_attrs.get("surplus") for t in trials if t.state != TrialState.COMPLETE)
    # SIGKILL a worker mid-study: every completed trial is kept, and the same command continues to N.
    study2, n2 = study + "-kill", 14
    victim = _spawn(space, tmp_path / "k", pg_storage, study2, n2)
    deadline = time.monotonic() + 60
    complete: list[int] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyError):
            complete = [t.number for t in _trials(pg_storage, study2) if t.state == TrialState.COMPLETE]
        if len(complete) >= 4:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    kept = {t.number for t in _trials(pg_storage, study2) if t.state == TrialState.COMPLETE}
    assert len(kept) >= 4 and set(complete) <= kept
    again = _spawn(space, tmp_path / "k", pg_storage, study2, n2)
    _o, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    trials = _trials(pg_storage, study2)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL)]
    assert kept <= {t.number for t in trials if t.state == TrialState.COMPLETE}
    assert len(finished) == n2  # the killed worker's RUNNING trial turned FAIL
    assert not [t for t in trials if t.state == TrialState.RUNNING]
