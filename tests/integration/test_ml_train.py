"""``tradebot ml train``: the leakage check with shuffled labels, determinism, the CLI end to end on
a dataset of the shipped sample, and its refusals.

The synthetic dataset has a real signal: each position's rows carry a feature ``x`` and labels drawn
from it (``recovered`` and ``scale_in_success`` true when ``x`` plus noise is positive,
``additional_return`` rising with ``x``); the other features are noise. Trained on it the classifiers'
out-of-fold AUC is clearly above 0.5; with the labels shuffled among the rows it falls to 0.5 ± noise.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradebot.app.ml.dataset import DatasetOptions, build_dataset
from tradebot.app.ml.files import manifest_path, write_dataset
from tradebot.app.ml.manifest import DATASET_FORMAT
from tradebot.app.ml.model import CONDITIONAL_LEVELS, MODEL_KINDS
from tradebot.app.ml.train import (
    MODELS,
    TrainOptions,
    conditional_table,
    load_dataset,
    train_models,
    write_models,
)
from tradebot.app.settings import load_settings
from tradebot.cli import main
from tradebot.core.domain import Timeframe

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
MANAGED = ROOT / "config" / "managed.toml"
HOUR = 3_600_000
FEATURES = ["x", "noise_a", "noise_b"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def synthetic_dataset(out: Path, *, positions: int = 240, rows_per: int = 8, shuffle: bool = False) -> Path:
    """Write a dataset with a signal in ``x`` (module docstring) and its manifest; return its path."""
    rng = np.random.default_rng(7)
    n = positions * rows_per
    pos = np.repeat(np.arange(positions), rows_per)
    t = (pos * 3 + np.tile(np.arange(rows_per), positions)) * HOUR  # positions overlap in time
    x = np.repeat(rng.normal(size=positions), rows_per) + rng.normal(scale=0.3, size=n)
    recovered = x + rng.normal(scale=0.7, size=n) > 0
    scale_in = x + rng.normal(scale=0.7, size=n) > 0.3
    additional = 0.01 * np.maximum(x, 0) + 0.005 * rng.random(n)
    best_ms = np.round(np.random.default_rng(8).random(n) * 24) * HOUR  # noise (own stream: rng unchanged)
    if shuffle:
        recovered, scale_in, additional = (rng.permutation(v) for v in (recovered, scale_in, additional))
    losing = rng.random(n) < 0.6
    table = pa.table(
        {
            "position_id": [f"p{p:04d}" for p in pos],
            "time_ms": pa.array(t, pa.int64()),
            "horizon_end_ms": pa.array(t + 24 * HOUR, pa.int64()),
            "horizon_complete": pa.array(np.ones(n, dtype=bool)),
            "x": x,
            "noise_a": rng.normal(size=n),
            "noise_b": rng.normal(size=n),
            "recovered": pa.array([bool(r) if lo else None for r, lo in zip(recovered, losing, strict=True)]),
            "additional_return": additional,
            "scale_in_success": pa.array(scale_in),
            "time_to_best_ms": pa.array(best_ms.astype(np.int64), pa.int64()),
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    manifest = {
        "format": DATASET_FORMAT,
        "config_hash": "synthetic",
        "features": FEATURES,
        "labels": ["recovered", "additional_return", "scale_in_success", "time_to_best_ms"],
        "label_definitions": {},
        "horizon": {"periods": 24, "timeframe": "1h", "ms": 24 * HOUR},
        "candle_range": {"start_ms": 0, "end_ms": int(t.max() + 25 * HOUR), "start": "-", "end": "-"},
        "parquet_file": out.name,
        "parquet_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }
    manifest_path(out).write_text(json.dumps(manifest), encoding="utf-8")
    return out


def _pooled(path: Path) -> dict[str, dict[str, float]]:
    trained = train_models(load_dataset(path), TrainOptions(folds=4, seed=1))
    return {t.spec.name: t.report["pooled"] for t in trained}


def test_shuffled_labels_bring_the_test_auc_to_one_half(tmp_path: Path) -> None:
    real = _pooled(synthetic_dataset(tmp_path / "real.parquet"))
    shuffled = _pooled(synthetic_dataset(tmp_path / "shuffled.parquet", shuffle=True))
    for name in ("recovered", "scale_in_success"):
        assert real[name]["auc"] > 0.75, (name, real[name])
        assert real[name]["brier"] < real[name]["base_brier"]
        assert 0.4 < shuffled[name]["auc"] < 0.6, (name, shuffled[name])
    assert real["additional_return"]["mae"] < 0.8 * real["additional_return"]["base_mae"]
    assert shuffled["additional_return"]["mae"] > 0.95 * shuffled["additional_return"]["base_mae"]


def test_the_additional_return_card_holds_its_conditional_table(tmp_path: Path) -> None:
    data = load_dataset(synthetic_dataset(tmp_path / "ds.parquet"))
    options = TrainOptions(folds=4, seed=1)
    report = write_models(data, options, train_models(data, options), tmp_path / "models")
    card = json.loads((tmp_path / "models" / "additional_return" / "card.json").read_text(encoding="utf-8"))
    table = card["conditional"]
    assert len(table["edges"]) == 9 and table["edges"] == sorted(table["edges"])
    assert table["quantiles"] == [i / 20 for i in range(21)] == list(CONDITIONAL_LEVELS)
    assert len(table["actual"]) == 10 and all(len(q) == 21 for q in table["actual"])
    assert all(q == sorted(q) for q in table["actual"])
    assert sum(table["rows"]) == report["models"]["additional_return"]["pooled"]["test_rows"]
    assert "out-of-fold" in table["fitted_on"] and "searchsorted" in table["applies_to"]
    medians = [q[10] for q in table["actual"]]
    assert medians[-1] > medians[0]  # the label rises with x, and so do the predictions
    for name in ("recovered", "scale_in_success", "time_to_best"):
        other = json.loads((tmp_path / "models" / name / "card.json").read_text(encoding="utf-8"))
        assert "conditional" not in other, name
    assert {m.name: m.kind for m in MODELS} == MODEL_KINDS  # what the loader expects of each card


def test_conditional_table_is_deterministic_and_fills_empty_bins_with_all_rows() -> None:
    rng = np.random.default_rng(3)
    pred = rng.normal(size=500)
    actual = pred + rng.normal(size=500)
    a, b = conditional_table(pred, actual), conditional_table(pred.copy(), actual.copy())
    assert a == b and a["rows"] == [50] * 10
    assert a["edges"] == [float(v) for v in np.quantile(pred, np.arange(1, 10) / 10)]
    # tied predictions: half the rows predict 0, so most edges are 0 and their bins are empty
    tied = np.where(np.arange(500) < 250, 0.0, pred)
    t = conditional_table(tied, actual)
    pooled = [float(v) for v in np.quantile(actual, CONDITIONAL_LEVELS)]
    empty = [i for i, n in enumerate(t["rows"]) if n == 0]
    assert empty and all(t["actual"][i] == pooled for i in empty)
    assert sum(t["rows"]) == 500
    with pytest.raises(ValueError, match="equal, non-empty"):
        conditional_table([], [])


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*/model.txt"))
    }


def test_same_dataset_and_seed_give_the_same_model_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ds = synthetic_dataset(tmp_path / "ds.parquet")
    for out in ("a", "b"):
        assert (
            run_cli(capsys, "ml", "train", "--dataset", str(ds), "--out", str(tmp_path / out), "--seed", "3")[
                0
            ]
            == 0
        )
    a, b = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert set(a) == {"recovered", "additional_return", "scale_in_success", "time_to_best"}
    assert a == b
    card = json.loads((tmp_path / "a" / "recovered" / "card.json").read_text(encoding="utf-8"))
    assert card["model_sha256"] == a["recovered"] and card["seed"] == 3


def test_cli_on_the_sample_writes_models_cards_and_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = load_settings(MANAGED)
    options = DatasetOptions(
        data_dir=SAMPLE, timeframe=Timeframe.parse("1m"), symbols=None, start_ms=None, end_ms=None,
        horizon_periods=24, config_file=MANAGED,
    )  # fmt: skip
    ds, mpath = write_dataset(build_dataset(settings, options), tmp_path / "sample.parquet")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    out = tmp_path / "models"
    code, stdout, _err = run_cli(
        capsys, "ml", "train", "--dataset", str(ds), "--out", str(out), "--folds", "3"
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["dataset_sha256"] == manifest["parquet_sha256"] and report["folds"] == 3
    assert report["embargo_ms"] == manifest["horizon"]["ms"]
    for name, model in report["models"].items():
        assert len(model["folds"]) == 3
        scored = [f for f in model["folds"] if "metrics" in f]
        assert scored, name
        key = "brier" if model["kind"] == "classifier" else "mae"
        assert all(key in f["metrics"] and f"base_{key}" in f["metrics"] for f in scored)
        assert ("beats its base rate" in stdout) or ("DOES NOT BEAT its base rate" in stdout)
        assert f"{name}: " in stdout
        booster_text = (out / name / "model.txt").read_text(encoding="utf-8")
        assert booster_text.startswith("tree\n")  # LightGBM's text format
        card = json.loads((out / name / "card.json").read_text(encoding="utf-8"))
        assert card["features"] == manifest["features"]
        assert card["dataset_sha256"] == manifest["parquet_sha256"]
        assert card["horizon"] == manifest["horizon"] and card["seed"] == 0
        assert card["versions"]["lightgbm"] and card["train_window"]["rows"] == model["rows"]
        assert [f["fold"] for f in card["metrics"]["folds"]] == [1, 2, 3]
        if model["kind"] == "classifier":
            assert card["calibration"]["method"] == "platt"
            assert all(len(f["calibration"]) <= 10 for f in scored)
    assert "calibration" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dataset", "ds.csv"), "--dataset must name a .parquet file, was 'ds.csv'"),
        (("--dataset", "missing.parquet"), "--dataset: file 'missing.parquet' does not exist"),
        (("--dataset", "nomanifest.parquet"), "--dataset: no manifest 'nomanifest.manifest.json'"),
        (("--dataset", "changed.parquet"), "--dataset: SHA-256 of 'changed.parquet' is"),
        (("--out", "afile"), "--out must name a folder, was the file 'afile'"),
    ],
)
def test_cli_refuses_a_bad_dataset_with_exit_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    synthetic_dataset(Path("good.parquet"), positions=20)
    Path("nomanifest.parquet").write_bytes(Path("good.parquet").read_bytes())
    synthetic_dataset(Path("changed.parquet"), positions=20)
    Path("changed.parquet").write_bytes(b"PAR1 not really")
    Path("afile").write_text("x", encoding="utf-8")
    base = {"--dataset": "good.parquet", "--out": "models"}
    base[args[0]] = args[1]
    code, _out, err = run_cli(capsys, "ml", "train", *[x for kv in base.items() for x in kv])
    assert code == 2
    assert message in err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--folds", "1", "argument --folds: expected a whole number of folds >= 2, was '1'"),
        ("--seed", "-1", "argument --seed: expected a whole-number seed >= 0, was '-1'"),
    ],
)
def test_cli_refuses_a_bad_flag_naming_it(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ml", "train", "--dataset", "ds.parquet", "--out", "m", flag, value])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
