"""A backtest with the position models (issue 16, items 3–5): predictions recorded with their outcomes,
the same rows in SQLite and PostgreSQL, the features equal to the dataset's, and the CLI's refusal
of a corrupt or mismatched model (exit 2).

The models are trained once per module on the shipped 1m sample (``data/sample``) with
``config/managed.toml``: a dataset of its backtest, then ``train_models`` with 30 rounds.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tradebot.adapters.store import SqlEventStore
from tradebot.app.backtest.backtest import BacktestOptions, BacktestResult, run_backtest
from tradebot.app.ml.dataset import DatasetOptions, build_dataset
from tradebot.app.ml.files import write_dataset
from tradebot.app.ml.train import TrainOptions, load_dataset, train_models, write_models
from tradebot.app.settings import Settings, load_settings
from tradebot.cli import main
from tradebot.core.domain import MlPositionPrediction, Timeframe

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
MANAGED = ROOT / "config" / "managed.toml"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset file, models folder) of the sample."""
    tmp = tmp_path_factory.mktemp("ml_backtest")
    settings = load_settings(MANAGED)
    options = DatasetOptions(data_dir=SAMPLE, timeframe=Timeframe.parse("1m"), config_file=MANAGED)
    ds, _ = write_dataset(build_dataset(settings, options), tmp / "sample.parquet")
    loaded = load_dataset(ds)
    opts = TrainOptions(folds=3, rounds=30)
    models = tmp / "models"
    write_models(loaded, opts, train_models(loaded, opts), models)
    return ds, models


def ml_config(folder: Path, models: Path, **ml: Any) -> Path:
    """``config/managed.toml`` plus ``[management.ml]`` naming ``models``."""
    extra = "".join(f"{k} = {v!r}\n" for k, v in ml.items())
    path = folder / "managed_ml.toml"
    path.write_text(
        MANAGED.read_text(encoding="utf-8") + f'\n[management.ml]\nmodel = "{models}"\n{extra}',
        encoding="utf-8",
    )
    return path


def backtest(settings: Settings, db_url: str | None) -> BacktestResult:
    options = BacktestOptions(data_dir=SAMPLE, timeframe=Timeframe.parse("1m"), db_url=db_url, run_id="ml-bt")
    return asyncio.run(run_backtest(settings, options))


def stored(url: str, run_id: str) -> list[MlPositionPrediction]:
    async def go() -> list[MlPositionPrediction]:
        async with SqlEventStore(url) as store:
            return await store.ml_predictions(run_id)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def sqlite_run(
    trained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, BacktestResult, list[MlPositionPrediction]]:
    tmp = tmp_path_factory.mktemp("ml_sqlite")
    settings = load_settings(ml_config(tmp, trained[1]))
    url = f"sqlite+aiosqlite:///{tmp / 'events.db'}"
    result = backtest(settings, url)
    return settings, result, stored(url, result.summary["run"]["run_id"])


def test_a_backtest_with_the_models_records_every_prediction_and_fills_the_outcomes(
    sqlite_run: tuple[Settings, BacktestResult, list[MlPositionPrediction]],
) -> None:
    _settings, result, rows = sqlite_run
    engine = result.engine
    assert engine.ml is not None
    assert len(rows) == engine.ml.n_predictions > 100
    closed = {t.position_id for t in result.trades if t.closed_ms is not None}
    for row in rows:
        assert row.model_name == "position-ml" and row.model_version == engine.ml.predictor.version
        assert set(row.prediction) == {
            "recovered",
            "additional_return",
            "time_to_best_ms",
            "scale_in_success",
        }
        assert row.recommended_action in {
            "rules",
            "exit",
            "take_profit",
            "trail",
            "scale_in",
            "hold_scale_in",
        }
        assert row.features is not None and len(row.features) == len(engine.ml.predictor.features)
        if row.trade_id in closed:
            assert row.outcome is not None and row.outcome_time_ms is not None
            assert row.outcome_time_ms >= (row.time_ms or 0)
            assert row.prediction_accuracy is None or 0 <= row.prediction_accuracy <= 1
        else:
            assert row.outcome is None
    assert sum(r.outcome is not None for r in rows) > 0.8 * len(rows)
    acted = [r for r in rows if r.position_event_id is not None]
    assert acted, "the models never acted on the sample"
    # Each acted prediction's position event carries it in ml_prediction.
    assert {r.recommended_action for r in acted} <= {"exit", "take_profit", "trail", "scale_in"}


def test_the_engine_computes_the_dataset_s_features(
    trained: tuple[Path, Path], sqlite_run: tuple[Settings, BacktestResult, list[MlPositionPrediction]]
) -> None:
    # Until the models' first recommendation the two runs are the same backtest: each prediction's
    # features equal the dataset row of the same position and close. Position ids embed the run id,
    # so rows are matched on (symbol, opened time, row time).
    index = {(r["symbol"], r["opened_ms"], r["time_ms"]): r for r in pq.read_table(trained[0]).to_pylist()}
    rows = sqlite_run[2]
    first = min(r.time_ms or 0 for r in rows if r.recommended_action != "rules")
    early = [r for r in rows if (r.time_ms or 0) < first]
    assert len(early) >= 5
    for r in early:
        assert r.features is not None and r.time_ms is not None
        ref = index[(r.symbol, r.time_ms - int(r.features["held_ms"]), r.time_ms)]
        assert {n: ref[n] for n in r.features} == r.features


@pytest.mark.postgres
def test_postgresql_holds_the_same_prediction_rows_as_sqlite(
    sqlite_run: tuple[Settings, BacktestResult, list[MlPositionPrediction]], pg_url: str
) -> None:
    settings, _result, rows = sqlite_run
    pg = backtest(settings, pg_url)
    assert stored(pg_url, pg.summary["run"]["run_id"]) == rows


def test_the_cli_refuses_a_corrupt_or_mismatched_model_with_exit_2(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    bad = tmp_path / "models"
    shutil.copytree(trained[1], bad)
    text = bad / "recovered" / "model.txt"
    text.write_bytes(text.read_bytes().replace(b"tree", b"TREE", 1))
    config = ml_config(tmp_path, bad)
    code = main(["backtest", "--config", str(config), "--data", str(SAMPLE), "--timeframe", "1m"])
    err = capsys.readouterr().err
    assert code == 2
    assert "recovered/model.txt" in err and "SHA-256" in err and "changed or is damaged" in err
    # Features of another configuration (streams 1h/4h only): named.
    shutil.rmtree(bad)
    shutil.copytree(trained[1], bad)
    card = json.loads((bad / "scale_in_success" / "card.json").read_text(encoding="utf-8"))
    card["features"] = card["features"][:-2]
    (bad / "scale_in_success" / "card.json").write_text(json.dumps(card), encoding="utf-8")
    code = main(["backtest", "--config", str(config), "--data", str(SAMPLE), "--timeframe", "1m"])
    err = capsys.readouterr().err
    assert code == 2
    assert "scale_in_success" in err and "stream_1d_confidence" in err
