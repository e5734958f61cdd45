"""``tradebot ml evaluate``: trained models scored on a later dataset against their train base, the
card's ``label_stats``, pooling across evaluations, and the refusals.

The synthetic datasets have a real signal: each position's rows carry a feature ``x`` and labels drawn
from it (``recovered`` and ``scale_in_success`` true when ``x`` plus noise is positive,
``additional_return`` rising with ``x``); ``noise_a``, ``noise_b`` and ``time_to_best_ms`` are noise.
The models train on one dataset and are tested on another, drawn with another seed, of later times.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradebot.app.ml.evaluate import (
    EVALUATION_FORMAT,
    POOLED_FORMAT,
    Evaluation,
    evaluate_models,
    pooled_report,
)
from tradebot.app.ml.files import manifest_path
from tradebot.app.ml.manifest import DATASET_FORMAT
from tradebot.app.ml.model import MODEL_KINDS, ModelError
from tradebot.app.ml.train import Loaded, TrainOptions, load_dataset, train_models, write_models
from tradebot.cli import main
from tradebot.core.ml import Platt, brier, mae, roc_auc
from tradebot.errors import ConfigError

HOUR = 3_600_000
FEATURES = ["x", "noise_a", "noise_b"]
CLASSIFIERS = ("recovered", "scale_in_success")
LABELS = {
    "recovered": "recovered",
    "additional_return": "additional_return",
    "scale_in_success": "scale_in_success",
    "time_to_best": "time_to_best_ms",
}


def _dataset(
    out: Path,
    *,
    seed: int,
    start_ms: int = 0,
    positions: int = 150,
    rows_per: int = 6,
    shuffle: bool = False,
    features: list[str] | None = None,
    no_recovered: bool = False,
) -> Path:
    """Write a dataset with a signal in ``x`` (module docstring) and its manifest; return its path."""
    features = features or FEATURES
    rng = np.random.default_rng(seed)
    n = positions * rows_per
    pos = np.repeat(np.arange(positions), rows_per)
    t = start_ms + (pos * 3 + np.tile(np.arange(rows_per), positions)) * HOUR
    x = np.repeat(rng.normal(size=positions), rows_per) + rng.normal(scale=0.3, size=n)
    recovered = x + rng.normal(scale=0.5, size=n) > 0
    scale_in = x + rng.normal(scale=0.5, size=n) > 0.3
    additional = 0.01 * np.maximum(x, 0) + 0.005 * rng.random(n)
    best_ms = np.round(rng.random(n) * 24) * HOUR
    if shuffle:
        recovered, scale_in, additional = (rng.permutation(v) for v in (recovered, scale_in, additional))
    losing = rng.random(n) < 0.6
    columns: dict[str, Any] = {
        "position_id": [f"s{seed}p{p:04d}" for p in pos],
        "time_ms": pa.array(t, pa.int64()),
        "horizon_end_ms": pa.array(t + 24 * HOUR, pa.int64()),
        "horizon_complete": pa.array(np.ones(n, dtype=bool)),
    }
    for f in features:
        columns[f] = x if f == "x" else rng.normal(size=n)
    columns["recovered"] = pa.array(
        [None if no_recovered or not lo else bool(r) for r, lo in zip(recovered, losing, strict=True)],
        pa.bool_(),
    )
    columns["additional_return"] = additional
    columns["scale_in_success"] = pa.array(scale_in)
    columns["time_to_best_ms"] = pa.array(best_ms.astype(np.int64), pa.int64())
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), out)
    manifest = {
        "format": DATASET_FORMAT,
        "config_hash": "synthetic",
        "features": features,
        "labels": list(LABELS.values()),
        "label_definitions": {},
        "horizon": {"periods": 24, "timeframe": "1h", "ms": 24 * HOUR},
        "candle_range": {
            "start_ms": start_ms,
            "end_ms": int(t.max() + 25 * HOUR),
            "start": "-",
            "end": "-",
        },
        "parquet_file": out.name,
        "parquet_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }
    manifest_path(out).write_text(json.dumps(manifest), encoding="utf-8")
    return out


#: The test datasets start a day after the train dataset's last label ends.
TEST_START = (150 * 3 + 6 + 24 + 24) * HOUR


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A train dataset, the four models trained on it (``models/``) and test datasets (read-only)."""
    base = tmp_path_factory.mktemp("ml_evaluate")
    data = load_dataset(_dataset(base / "train.parquet", seed=1))
    options = TrainOptions(folds=2, seed=3, rounds=30)
    write_models(data, options, train_models(data, options), base / "models")
    assert sorted(p.name for p in (base / "models").iterdir() if p.is_dir()) == sorted(MODEL_KINDS)
    _dataset(base / "test.parquet", seed=2, start_ms=TEST_START)
    _dataset(base / "shuffled.parquet", seed=2, start_ms=TEST_START, shuffle=True)
    return base


def _card(folder: Path, name: str) -> dict[str, Any]:
    card: dict[str, Any] = json.loads((folder / name / "card.json").read_text(encoding="utf-8"))
    return card


def _train_labels(root: Path, name: str) -> np.ndarray:
    y = load_dataset(root / "train.parquet").labels[LABELS[name]]
    return y[~np.isnan(y)]


def test_cards_hold_the_stats_of_the_final_models_train_labels(root: Path) -> None:
    for name, kind in MODEL_KINDS.items():
        y = _train_labels(root, name)
        stats = _card(root / "models", name)["label_stats"]
        assert stats["rows"] == len(y) == _card(root / "models", name)["train_window"]["rows"]
        assert stats["mean"] == float(np.mean(y))
        if kind == "regressor":
            assert stats["median"] == float(np.median(y))
        else:
            assert "median" not in stats and 0.0 < stats["mean"] < 1.0


def test_a_real_signal_beats_the_train_base_out_of_sample(root: Path) -> None:
    data = load_dataset(root / "test.parquet")
    ev = evaluate_models(root / "models", data)
    rep = ev.report
    assert rep["format"] == EVALUATION_FORMAT and rep["dataset_sha256"] == data.sha256
    assert rep["models_dir"] == str(root / "models") and rep["dataset"] == str(root / "test.parquet")
    assert rep["candle_range"] == data.manifest["candle_range"] and rep["rows"] == 900
    assert set(rep["models"]) == set(MODEL_KINDS) == set(ev.predictions)
    for name in CLASSIFIERS:
        e = rep["models"][name]
        m = e["metrics"]
        y_train = _train_labels(root, name)
        assert m["auc"] > 0.8, (name, m)
        assert e["beats_base"] is True and m["brier"] < m["base_brier"]
        assert m["base_rate"] == float(np.mean(y_train)) and e["base_source"] == "label_stats.mean"
        y, p, b = ev.predictions[name]
        assert b == m["base_rate"] and len(y) == len(p) == e["rows"]
        assert m["base_brier"] == pytest.approx(float(np.mean((y - b) ** 2)), abs=1e-15)
        assert m["test_rate"] == float(np.mean(y)) and m["base_auc"] == 0.5
        assert m["auc"] == roc_auc(y, p) and m["brier"] == brier(y, p)
        assert sum(r["n"] for r in e["calibration"]) == e["rows"] and len(e["calibration"]) == 10
        assert e["in_training_dataset"] is False and e["rows_in_train_window"] == 0
        # the same predictions as the engine's predictor: the booster's raw score through the card's Platt
        booster = lgb.Booster(model_file=str(root / "models" / name / "model.txt"))
        cal = _card(root / "models", name)["calibration"]
        rows = np.flatnonzero(~np.isnan(data.labels[name]))
        expected = Platt(cal["a"], cal["b"])(booster.predict(data.x[rows], raw_score=True))
        assert p == pytest.approx(expected, rel=1e-12)
    n_losing = int(np.sum(~np.isnan(data.labels["recovered"])))
    assert rep["models"]["recovered"]["rows"] == n_losing < rep["models"]["scale_in_success"]["rows"] == 900
    ar = rep["models"]["additional_return"]
    assert ar["beats_base"] is True and ar["metrics"]["mae"] < 0.8 * ar["metrics"]["base_mae"]
    assert ar["metrics"]["base_median"] == float(np.median(_train_labels(root, "additional_return")))
    assert ar["positions"] == 150 and "calibration" not in ar
    tb = rep["models"]["time_to_best"]
    y, p, b = ev.predictions["time_to_best"]
    assert tb["metrics"]["mae"] == mae(y, p) and tb["metrics"]["base_mae"] == mae(y, np.full(len(y), b))
    assert bool(np.all(p >= 0.0))
    json.dumps(rep)  # JSON-able


def test_shuffled_test_labels_do_not_beat_the_base(root: Path) -> None:
    rep = evaluate_models(root / "models", load_dataset(root / "shuffled.parquet")).report
    for name in CLASSIFIERS:
        m = rep["models"][name]["metrics"]
        assert 0.4 < m["auc"] < 0.6, (name, m)
        assert rep["models"][name]["beats_base"] is False
    ar = rep["models"]["additional_return"]
    assert ar["metrics"]["mae"] > 0.95 * ar["metrics"]["base_mae"]


def test_the_training_dataset_is_flagged_in_sample(root: Path) -> None:
    rep = evaluate_models(root / "models", load_dataset(root / "train.parquet")).report
    for e in rep["models"].values():
        assert e["in_training_dataset"] is True and e["rows_in_train_window"] == e["rows"] > 0


def _part(data: Loaded, rows: np.ndarray) -> Loaded:
    return dataclasses.replace(
        data,
        x=data.x[rows],
        times=data.times[rows],
        label_end=data.label_end[rows],
        groups=data.groups[rows],
        labels={k: v[rows] for k, v in data.labels.items()},
    )


def test_pooling_two_evaluations_equals_evaluating_their_concatenation(root: Path) -> None:
    data = load_dataset(root / "test.parquet")
    half = len(data.times) // 2 + 3  # cuts a position's rows in two
    first = evaluate_models(root / "models", _part(data, np.arange(half)))
    second = evaluate_models(root / "models", _part(data, np.arange(half, len(data.times))))
    whole = evaluate_models(root / "models", data).report
    pooled = pooled_report([first, second])
    assert pooled["format"] == POOLED_FORMAT and pooled["evaluations"] == 2
    assert pooled["rows"] == len(data.times) and len(pooled["datasets"]) == 2
    for name, e in whole["models"].items():
        got = pooled["models"][name]
        assert got["evaluations"] == 2
        for key in ("label", "kind", "rows", "positions", "metrics", "beats_base"):
            assert got[key] == e[key], (name, key)
        assert got.get("calibration") == e.get("calibration")


def test_pooling_scores_each_row_against_its_own_base(root: Path) -> None:
    data = load_dataset(root / "test.parquet")
    half = len(data.times) // 2
    parts = [
        evaluate_models(root / "models", _part(data, r))
        for r in (np.arange(half), np.arange(half, len(data.times)))
    ]
    moved = [
        Evaluation(
            report=e.report,
            predictions={
                n: (y, p, b + shift * (0.1 if n in CLASSIFIERS else 0.001))
                for n, (y, p, b) in e.predictions.items()
            },
            positions=e.positions,
        )
        for e, shift in zip(parts, (-1.0, 1.0), strict=True)
    ]
    pooled = pooled_report(moved)
    for name in MODEL_KINDS:
        ys = [e.predictions[name][0] for e in moved]
        bases = np.concatenate(
            [np.full(len(y), e.predictions[name][2]) for y, e in zip(ys, moved, strict=True)]
        )
        y = np.concatenate(ys)
        m = pooled["models"][name]["metrics"]
        if name in CLASSIFIERS:
            assert m["base_brier"] == pytest.approx(float(np.mean((bases - y) ** 2)), rel=1e-12)
            assert m["base_rate"] == pytest.approx(float(np.mean(bases)), rel=1e-12)
        else:
            assert m["base_mae"] == pytest.approx(float(np.mean(np.abs(bases - y))), rel=1e-12)
            assert m["base_median"] == pytest.approx(float(np.mean(bases)), rel=1e-12)


def test_a_model_without_labelled_rows_is_not_scored(root: Path, tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "nolosing.parquet", seed=4, start_ms=TEST_START, no_recovered=True)
    ev = evaluate_models(root / "models", load_dataset(ds))
    e = ev.report["models"]["recovered"]
    assert e["rows"] == 0 and e["metrics"] is None and e["beats_base"] is False
    assert len(ev.predictions["recovered"][0]) == 0
    assert ev.report["models"]["scale_in_success"]["rows"] == 900
    pooled = pooled_report([ev])
    assert pooled["models"]["recovered"]["metrics"] is None


def test_an_older_card_without_label_stats_falls_back_to_its_training_base(
    root: Path, tmp_path: Path
) -> None:
    import shutil

    models = Path(shutil.copytree(root / "models", tmp_path / "models"))
    for name in MODEL_KINDS:
        path = models / name / "card.json"
        card = json.loads(path.read_text(encoding="utf-8"))
        del card["label_stats"]
        path.write_text(json.dumps(card), encoding="utf-8")
    rep = evaluate_models(models, load_dataset(root / "test.parquet")).report
    for name in CLASSIFIERS:
        pooled = _card(root / "models", name)["metrics"]["pooled"]
        assert rep["models"][name]["metrics"]["base_rate"] == pooled["base_rate"]
        assert rep["models"][name]["base_source"] == "metrics.pooled.base_rate"
    folds = _card(root / "models", "additional_return")["metrics"]["folds"]
    assert rep["models"]["additional_return"]["metrics"]["base_median"] == folds[-1]["metrics"]["base_median"]
    assert rep["models"]["additional_return"]["base_source"].startswith("metrics.folds[")


def test_a_dataset_of_other_features_is_refused_naming_the_first(root: Path, tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "other.parquet", seed=2, features=["x", "noise_a", "noise_c"])
    with pytest.raises(
        ModelError, match=r"column 2 is 'noise_c' in the dataset, 'noise_b' in the models"
    ) as exc:
        evaluate_models(root / "models", load_dataset(ds))
    assert isinstance(exc.value, ConfigError) and "missing noise_b; unexpected noise_c" in str(exc.value)
    short = _dataset(tmp_path / "short.parquet", seed=2, features=["x", "noise_a"])
    with pytest.raises(ConfigError, match=r"the dataset ends at column 2, the models go on with 'noise_b'"):
        evaluate_models(root / "models", load_dataset(short))
    with pytest.raises(ModelError, match=r"model folder '.*nowhere' does not exist"):
        evaluate_models(tmp_path / "nowhere", load_dataset(ds))


@pytest.fixture
def cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["ml", "evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prints_the_tables_and_writes_the_json(
    root: Path, cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    models = Path(shutil.copytree(root / "models", cwd / "models"))
    code, out, _err = _cli(capsys, "--model", str(models), "--dataset", str(root / "test.parquet"))
    assert code == 0
    path = models / "evaluation-test.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report == evaluate_models(models, load_dataset(root / "test.parquet")).report
    assert set(report) == {
        "format",
        "models_dir",
        "dataset",
        "dataset_sha256",
        "candle_range",
        "rows",
        "models",
    }
    for name, e in report["models"].items():
        assert {"rows", "positions", "metrics", "beats_base"} <= set(e)
        assert f"{name}: beats its base rate" in out or f"{name}: DOES NOT BEAT its base rate" in out
    assert set(report["models"]["recovered"]["metrics"]) == {
        "auc", "brier", "base_rate", "base_brier", "base_auc", "test_rate"
    }  # fmt: skip
    assert set(report["models"]["additional_return"]["metrics"]) == {"mae", "base_median", "base_mae"}
    assert "beats base" in out and "MAE h" in out and "calibration" in out
    tb = report["models"]["time_to_best"]["metrics"]
    assert f"{tb['mae'] / HOUR:.2f}" in out  # hours, not ms
    assert str(path) in out.replace("\n", "")
    code, _out, _err = _cli(
        capsys, "--model", str(models), "--dataset", str(root / "test.parquet"), "--out", "e/x.json"
    )
    assert code == 0 and json.loads((cwd / "e" / "x.json").read_text(encoding="utf-8")) == report


def test_cli_refuses_a_bad_model_or_dataset_with_exit_2(
    root: Path, cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _dataset(cwd / "other.parquet", seed=2, features=["x", "noise_c", "noise_b"])
    test = str(root / "test.parquet")
    models = str(root / "models")
    cases = [
        (("--model", models, "--dataset", str(other)), "column 1 is 'noise_c' in the dataset, 'noise_a'"),
        (("--model", "nowhere", "--dataset", test), "model folder 'nowhere' does not exist"),
        (
            ("--model", models, "--dataset", "missing.parquet"),
            "--dataset: file 'missing.parquet' does not exist",
        ),
        (("--model", models, "--dataset", "ds.csv"), "--dataset must name a .parquet file"),
        (
            ("--model", models, "--dataset", test, "--out", "x.txt"),
            "--out must name a .json file, was 'x.txt'",
        ),
    ]
    for args, message in cases:
        code, _out, err = _cli(capsys, *args)
        assert code == 2, args
        assert message in err.replace("\n", ""), (args, err)
    assert not list((root / "models").glob("evaluation-*.json"))
