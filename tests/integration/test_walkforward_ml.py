"""``tradebot walkforward --ml`` on the shipped 1m sample (issue 16, item 7): per fold, the position
models are trained on the train window only and tested on the window after it, and the test window
is back-tested with the rules alone and with the fold's models.

The sample's 1m files cover 46 days: ``--train 30D --test 14D`` makes one fold.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tradebot.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
MANAGED_ML = REPO / "config" / "managed_ml.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


ARGS = ("--data", str(SAMPLE), "--timeframe", "1m", "--train", "30D", "--test", "14D")


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("wf_ml") / "wf"
    code, stdout, stderr = _cli("walkforward", *ARGS, "--ml", "--config", str(MANAGED_ML), "--out", str(out))
    assert code == 0, stderr[-3000:] + stdout[-3000:]
    return out, json.loads((out / "walkforward.json").read_text(encoding="utf-8")), stdout


def test_each_fold_trains_on_its_train_window_and_is_tested_on_the_next(
    ran: tuple[Path, dict[str, Any], str],
) -> None:
    out, report, stdout = ran
    (fold,) = report["folds"]
    ml = fold["ml"]
    assert ml["model_used"] is True and ml["train_rows"] > 100
    models = out / "fold0" / "models"
    assert {p.name for p in models.iterdir() if p.is_dir()} >= {"recovered", "additional_return"}
    # No candle of the test window reached training: the train dataset's candles end at the train
    # window's end, and every training row's label window closes by then.
    train = pq.read_table(out / "fold0" / "train.parquet").to_pylist()
    manifest = json.loads((out / "fold0" / "train.manifest.json").read_text(encoding="utf-8"))
    assert manifest["candle_range"]["end_ms"] <= fold["train_end_ms"] == fold["test_start_ms"]
    complete = [r for r in train if r["horizon_complete"]]
    assert complete and max(r["horizon_end_ms"] for r in complete) <= fold["train_end_ms"]
    card = json.loads((models / "recovered" / "card.json").read_text(encoding="utf-8"))
    assert card["train_window"]["end_ms"] <= fold["train_end_ms"]
    # The test dataset is of the test window only, scored against the train rows' base rates.
    test = pq.read_table(out / "fold0" / "test.parquet").to_pylist()
    assert test and min(r["time_ms"] for r in test) >= fold["test_start_ms"]
    assert max(r["time_ms"] for r in test) < fold["test_end_ms"]
    rec = ml["test"]["recovered"]
    assert rec["rows"] > 0 and 0.0 <= rec["metrics"]["auc"] <= 1.0
    assert rec["metrics"]["base_rate"] == pytest.approx(card["label_stats"]["mean"])
    assert isinstance(rec["beats_base"], bool)
    # The pooled table of one fold is that fold's table.
    pooled = report["ml"]["test"]["models"]["recovered"]
    assert pooled["rows"] == rec["rows"]
    assert pooled["metrics"]["auc"] == pytest.approx(rec["metrics"]["auc"])
    assert "Position models on each fold's test window" in stdout
    assert "walk-forward OOS + ML" in stdout
    assert (out / "walkforward_ml.png").stat().st_size > 10_000


def test_the_two_arms_differ_only_by_the_model(ran: tuple[Path, dict[str, Any], str]) -> None:
    _out, report, _stdout = ran
    (fold,) = report["folds"]
    rules, with_ml = fold["out_of_sample"], fold["ml"]["out_of_sample"]
    assert rules["initial_equity"] == with_ml["initial_equity"]
    # The stitched OOS of one fold is that fold's run, for both arms.
    assert report["oos"]["final_equity"] == pytest.approx(rules["final_equity"])
    assert report["ml"]["oos"]["final_equity"] == pytest.approx(with_ml["final_equity"])
    # The rules arm is the configuration with the model off: the same as the default run here
    # (no --space, the OOS period is the one test window).
    assert report["default"]["final_equity"] == pytest.approx(rules["final_equity"])
    assert report["folds"][0]["chosen"] == "the configuration (no --space)"
    assert report["folds"][0]["n_trials"] == 0


def test_the_fold_models_do_not_depend_on_the_test_window(
    ran: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    # Poisoning the candles after the train window leaves the fold's model files byte-identical.
    import gzip
    import shutil

    out, report, _ = ran
    cut = report["folds"][0]["train_end_ms"]
    data = tmp_path / "poisoned"
    data.mkdir()
    for path in SAMPLE.glob("binance_*"):
        if not path.name.endswith("_1m.csv.gz"):
            shutil.copy(path, data / path.name)
            continue
        with gzip.open(path, "rt", encoding="utf-8") as src:
            lines = src.read().splitlines()
        rows = [lines[0]]
        for line in lines[1:]:
            t, o, h, lo, c, v = line.split(",")
            if int(t) >= cut:  # a crash after the cut: every price halved
                o, h, lo, c = (f"{float(x) / 2:.8f}" for x in (o, h, lo, c))
            rows.append(",".join((t, o, h, lo, c, v)))
        with gzip.open(data / path.name, "wt", encoding="utf-8") as dst:
            dst.write("\n".join(rows) + "\n")
    out2 = tmp_path / "wf2"
    args = [a if a != str(SAMPLE) else str(data) for a in ARGS]
    code, stdout, stderr = _cli("walkforward", *args, "--ml", "--config", str(MANAGED_ML), "--out", str(out2))
    assert code == 0, stderr[-3000:] + stdout[-3000:]
    for name in ("recovered", "additional_return", "scale_in_success", "time_to_best"):
        a, b = out / "fold0" / "models" / name / "model.txt", out2 / "fold0" / "models" / name / "model.txt"
        if a.exists():
            assert a.read_bytes() == b.read_bytes(), name
    report2 = json.loads((out2 / "walkforward.json").read_text(encoding="utf-8"))
    assert report2["folds"][0]["ml"]["test"] != report["folds"][0]["ml"]["test"]  # the test did change


def test_with_a_space_the_studies_run_without_the_configured_model(tmp_path: Path) -> None:
    # config/managed_ml.toml names out/ml/models, which does not exist here: the fold's study, its
    # datasets and its rules arm must not load it (before the fix every trial failed on it).
    space = tmp_path / "space.toml"
    space.write_text(
        f'[base]\nconfig = "{MANAGED_ML}"\n\n[params."planner.band_fraction"]\nlow = 0.02\nhigh = 0.08\n',
        encoding="utf-8",
    )
    out = tmp_path / "wf"
    code, stdout, stderr = _cli(
        "walkforward", *ARGS, "--ml", "--space", str(space), "--trials", "2", "--out", str(out)
    )
    assert code == 0, stderr[-3000:] + stdout[-3000:]
    report = json.loads((out / "walkforward.json").read_text(encoding="utf-8"))
    (fold,) = report["folds"]
    assert fold["n_trials"] == 2 and fold["n_failed"] == 0
    assert set(fold["params"]) == {"planner.band_fraction"}
    assert fold["ml"]["model_used"] is True
    assert (out / "fold0" / "models" / "recovered" / "model.txt").is_file()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ((), "needs --space"),
        (("--ml", "--ml-horizon", "0"), "--ml-horizon must be an integer"),
        (("--ml", "--ml-folds", "1"), "--ml-folds must be an integer >= 2"),
        (("--ml", "--config", str(REPO / "config" / "default.toml")), "position management is off"),
    ],
)
def test_bad_ml_input_exits_2_naming_it(extra: tuple[str, ...], needle: str, tmp_path: Path) -> None:
    code, stdout, stderr = _cli("walkforward", *ARGS, *extra, "--out", str(tmp_path / "o"))
    assert code == 2, stdout + stderr
    assert needle in stderr + stdout
    assert not (tmp_path / "o").exists()


def test_optimize_warns_that_its_trials_use_the_configured_model(
    ran: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    models = ran[0] / "fold0" / "models"
    config = tmp_path / "ml.toml"
    config.write_text(
        MANAGED_ML.read_text(encoding="utf-8").replace('model = "out/ml/models"', f'model = "{models}"'),
        encoding="utf-8",
    )
    space = tmp_path / "space.toml"
    space.write_text(
        f'[base]\nconfig = "{config}"\n\n[params."planner.band_fraction"]\nlow = 0.02\nhigh = 0.08\n',
        encoding="utf-8",
    )
    code, stdout, stderr = _cli(
        "optimize", "--data", str(SAMPLE), "--timeframe", "1m", "--space", str(space), "--trials", "1",
        "--out", str(tmp_path / "opt"),
    )  # fmt: skip
    assert code == 0, stderr[-3000:] + stdout[-3000:]
    assert "the configuration names a model" in stdout and str(models) in stdout.replace("\n", "")
