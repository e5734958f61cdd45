"""``tradebot walkforward`` on the shipped sample (real studies, real backtests, SQLite storage).

The sample's 1h files cover 30 days: ``--train 14D --test 7D`` makes two folds; a few trials each.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import shutil
from decimal import Decimal
from pathlib import Path

import optuna
import pytest

from tradebot.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
DEFAULT = REPO / "config" / "default.toml"
SPACE = f'[base]\nconfig = "{DEFAULT}"\n\n' + (
    REPO / "tests" / "fixtures" / "spaces" / "three_params.toml"
).read_text(encoding="utf-8")
KEYS = {"folds", "oos", "default", "buy_and_hold", "deflated_sharpe", "pbo"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def hourly(tmp_path: Path) -> Path:
    """The sample's 1h/4h/1d files only (the walk-forward's base is 1h)."""
    folder = tmp_path / "clean"
    folder.mkdir()
    for path in SAMPLE.glob("binance_*USDT_*.csv.gz"):
        if not path.name.endswith("_1m.csv.gz"):
            shutil.copy(path, folder / path.name)
    return folder


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _walkforward(data: Path, out: Path, *extra: str, trials: int = 4) -> tuple[int, str, str]:
    space = out.parent / "space.toml"
    space.write_text(SPACE, encoding="utf-8")
    return _cli(
        "walkforward", "--data", str(data), "--space", str(space), "--train", "14D", "--test", "7D",
        "--trials", str(trials), "--objective", "sharpe", "--out", str(out), *extra,
    )  # fmt: skip


def _poison(src: Path, dst: Path, after_ms: int) -> None:
    # Copy the candle files, halving every price (and tripling the volume) from ``after_ms`` on.
    dst.mkdir()
    for path in src.iterdir():
        rows = list(csv.reader(io.StringIO(gzip.decompress(path.read_bytes()).decode())))
        out = [rows[0]]
        for r in rows[1:]:
            if int(r[0]) >= after_ms:
                r = [r[0], *(str(Decimal(x) / 2) for x in r[1:5]), str(Decimal(r[5]) * 3)]
            out.append(r)
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(out)
        (dst / path.name).write_bytes(gzip.compress(text.getvalue().encode()))


def test_walkforward_writes_the_report_and_a_rerun_continues_it(hourly: Path, tmp_path: Path) -> None:
    code, stdout, err = _walkforward(hourly, tmp_path / "wf")
    assert code == 0, err
    report = json.loads((tmp_path / "wf" / "walkforward.json").read_text())
    assert set(report) >= KEYS
    assert (tmp_path / "wf" / "walkforward.png").stat().st_size > 10_000
    folds = report["folds"]
    assert [f["index"] for f in folds] == [0, 1]
    for f in folds:
        assert (
            f["train_end_ms"] == f["test_start_ms"]
            and f["test_end_ms"] - f["test_start_ms"] == 7 * 86_400_000
        )
        assert f["n_trials"] == 4 and set(f["params"]) == {
            "planner.band_fraction",
            "streams.0.fast",
            "allocation.policy",
        }
        assert set(f["in_sample"]) == set(f["out_of_sample"]) == set(report["oos"])
    # the three tables share the keys of a backtest summary's overall
    assert set(report["oos"]) == set(report["default"]) and "sharpe" in report["buy_and_hold"]
    # the stitched OOS compounds the folds' test runs
    growth = 1.0
    for f in folds:
        growth *= float(f["out_of_sample"]["final_equity"]) / float(f["out_of_sample"]["initial_equity"])
    assert float(report["oos"]["final_equity"]) == pytest.approx(10_000 * growth, rel=1e-12)
    assert (
        report["oos_start_ms"] == folds[0]["test_start_ms"]
        and report["oos_end_ms"] == folds[-1]["test_end_ms"]
    )
    assert report["deflated_sharpe"]["n_trials"] == 8 and len(report["pbo"]["per_fold"]) == 2
    assert "Walk-forward folds" in stdout and "Deflated Sharpe Ratio" in stdout and "Buy & hold" in stdout
    assert "Probability of Backtest Overfitting" in stdout
    # the same command again: the fold studies are complete, nothing new runs, the same choice
    code, _stdout, err2 = _walkforward(hourly, tmp_path / "wf")
    assert code == 0, err2
    again = json.loads((tmp_path / "wf" / "walkforward.json").read_text())
    assert [f["params"] for f in again["folds"]] == [f["params"] for f in folds]
    assert [f["n_trials"] for f in again["folds"]] == [4, 4]
    storage = f"sqlite:///{tmp_path / 'wf' / 'optuna.db'}"
    for name in ("walkforward-fold0", "walkforward-fold1"):
        assert len(optuna.load_study(study_name=name, storage=storage).get_trials()) == 4  # none ran again


def test_test_window_candles_never_reach_training(hourly: Path, tmp_path: Path) -> None:
    # Poison every candle after fold k's train window: fold k (and every earlier fold) still chooses
    # the same parameters from the same trials, while the out-of-sample results do change.
    code, _o, err = _walkforward(hourly, tmp_path / "clean-wf")
    assert code == 0, err
    clean = json.loads((tmp_path / "clean-wf" / "walkforward.json").read_text())
    for fold in clean["folds"]:
        k = fold["index"]
        poisoned = tmp_path / f"poisoned{k}"
        _poison(hourly, poisoned, fold["train_end_ms"])
        code, _o, err = _walkforward(poisoned, tmp_path / f"wf{k}")
        assert code == 0, err
        report = json.loads((tmp_path / f"wf{k}" / "walkforward.json").read_text())
        for a, b in zip(clean["folds"][: k + 1], report["folds"][: k + 1], strict=True):
            assert (a["params"], a["objective_values"], a["in_sample"]) == (
                b["params"],
                b["objective_values"],
                b["in_sample"],
            )
        assert report["folds"][k]["out_of_sample"]["final_equity"] != fold["out_of_sample"]["final_equity"]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--train", "12M"), "--train 12M + --test 7D is longer than the data: 2023-02-14"),
        (("--train", "12X"), "'12X'"),
        (("--step", "3D"), "--step 3D is shorter than --test 7D"),
        (("--objective", "sharp"), "'sharp'"),
    ],
)
def test_bad_input_exits_2_naming_the_value(
    hourly: Path, tmp_path: Path, flags: tuple[str, ...], named: str
) -> None:
    code, _out, err = _walkforward(hourly, tmp_path / "wf", *flags)
    assert code == 2, err
    assert named in err
    assert not (tmp_path / "wf" / "walkforward.json").exists()
