"""``tradebot ml dataset`` on the shipped 1m sample: no look-ahead, determinism, the CLI end to end.

The leakage test (issue 16's acceptance): the candles opening at or after a poison point P are
multiplied by 10, or shuffled among themselves, in a copy of the sample; the dataset built on the copy
has the same rows up to P, with exactly the same id and feature columns, while the labels of the rows
whose horizon crosses P change (the poison reaches what may see it) and so do the rows after P. Each P
is the time of a row, so that the rows at P itself (which must not see the candle opening at P) are
checked too: a feature reading one period ahead fails here.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tradebot.app.ml.dataset import DatasetOptions, build_dataset
from tradebot.app.ml.files import manifest_path, write_dataset
from tradebot.app.settings import load_settings
from tradebot.cli import main
from tradebot.core.domain import Timeframe
from tradebot.core.ml import LABEL_NAMES

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
MANAGED = ROOT / "config" / "managed.toml"
START = 1_679_270_400_000  # 2023-03-20 00:00 UTC
END = 1_680_134_400_000  # 2023-03-30 00:00 UTC
ASSETS = ("BTC", "ETH", "SOL")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Settings read TRADEBOT_* variables and a .env file in the working directory: neither may leak in.
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def copy_sample(dest: Path, poison: str | None = None, at_ms: int = 0) -> Path:
    """Copy the sample's window [START, END) of 1m candles (and the warm-up files) to ``dest``; with
    ``poison``, change every 1m candle opening at or after ``at_ms``: ``"scale"`` multiplies its prices
    by 10, ``"shuffle"`` swaps the candles' prices and volumes among themselves (seeded)."""
    dest.mkdir(parents=True)
    for path in SAMPLE.glob("binance_*.csv.gz"):
        if not path.name.endswith("_1m.csv.gz"):
            shutil.copy(path, dest / path.name)
            continue
        with gzip.open(path, "rt", encoding="ascii") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows = [r for r in reader if START <= int(r[0]) < END]
        late = [i for i, r in enumerate(rows) if int(r[0]) >= at_ms]
        if poison == "scale":
            for i in late:
                rows[i] = [rows[i][0], *(repr(float(x) * 10) for x in rows[i][1:5]), rows[i][5]]
        elif poison == "shuffle":
            values = [rows[i][1:] for i in late]
            random.Random(16).shuffle(values)
            for i, v in zip(late, values, strict=True):
                rows[i] = [rows[i][0], *v]
        with gzip.open(dest / path.name, "wt", encoding="ascii", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    return dest


def dataset(data_dir: Path, horizon: int = 24) -> pa.Table:
    options = DatasetOptions(data_dir=data_dir, timeframe=Timeframe.M1, start_ms=START, end_ms=END,
                             horizon_periods=horizon)  # fmt: skip
    return build_dataset(load_settings(MANAGED), options).table


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    return dataset(copy_sample(tmp_path_factory.mktemp("clean") / "data"))


def _features(table: pa.Table) -> list[str]:
    return [n for n in table.column_names if n not in LABEL_NAMES]


def _poison_points(table: pa.Table) -> list[int]:
    # Row times at a quarter, half and three quarters of the rows: rows on both sides of each.
    times = sorted(set(table["time_ms"].to_pylist()))
    return [times[len(times) * k // 4] for k in (1, 2, 3)]


@pytest.mark.parametrize(("poison", "point"), [("scale", 0), ("scale", 1), ("scale", 2), ("shuffle", 1)])
def test_poisoning_the_candles_after_a_row_leaves_its_features_unchanged(
    clean: pa.Table, tmp_path: Path, poison: str, point: int
) -> None:
    at = _poison_points(clean)[point]
    poisoned = dataset(copy_sample(tmp_path / "data", poison, at))
    early = pc.less_equal(clean["time_ms"], at)
    before, after = clean.filter(early), clean.filter(pc.invert(early))
    assert before.num_rows >= 10 and after.num_rows >= 10  # rows on both sides of the poison
    assert pc.any(pc.equal(before["time_ms"], at)).as_py()  # and rows at the poison point itself
    p_early = pc.less_equal(poisoned["time_ms"], at)
    p_before = poisoned.filter(p_early)
    cols = _features(clean)
    assert len(cols) > 30 and "stop_distance_atr" in cols and "stream_1d_confidence" in cols
    assert p_before.num_rows == before.num_rows
    for name in cols:  # each column alone, so that a failure names it
        assert p_before[name].equals(before[name]), f"feature {name} changed by candles after the row"
    # the poison does reach what may see it: labels of rows whose horizon crosses it, and later rows
    assert not p_before.select(list(LABEL_NAMES)).equals(before.select(list(LABEL_NAMES)))
    assert not poisoned.filter(pc.invert(p_early)).select(cols).equals(after.select(cols))


def test_every_row_reads_only_candles_before_its_horizon_end(clean: pa.Table) -> None:
    # labels of a horizon past the window's end are null, never computed from a partial window
    end_ok = pc.less_equal(clean["horizon_end_ms"], END)
    assert pc.all(pc.equal(clean["horizon_complete"], end_ok)).as_py()
    late = clean.filter(pc.invert(end_ok))
    assert late.num_rows > 0
    for name in LABEL_NAMES:
        assert late[name].null_count == late.num_rows, name


def test_same_input_gives_byte_identical_files(tmp_path: Path) -> None:
    settings = load_settings(MANAGED)
    options = DatasetOptions(data_dir=SAMPLE, timeframe=Timeframe.M1, start_ms=START, end_ms=END)
    a = write_dataset(build_dataset(settings, options), tmp_path / "a" / "ds.parquet")
    b = write_dataset(build_dataset(settings, options), tmp_path / "b" / "ds.parquet")
    assert a[0].read_bytes() == b[0].read_bytes()
    assert a[1].read_bytes() == b[1].read_bytes()
    manifest = json.loads(a[1].read_text(encoding="utf-8"))
    assert manifest["parquet_sha256"] == hashlib.sha256(a[0].read_bytes()).hexdigest()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_parquet_and_manifest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "ml" / "positions.parquet"
    code, stdout, _err = run_cli(
        capsys, "ml", "dataset", "--data", str(SAMPLE), "--timeframe", "1m", "--start", "2023-03-20",
        "--end", "2023-03-30", "--config", str(MANAGED), "--horizon", "12", "--out", str(out),
    )  # fmt: skip
    assert code == 0
    table = pq.read_table(out)
    manifest = json.loads(manifest_path(out).read_text(encoding="utf-8"))
    assert manifest_path(out) == tmp_path / "ml" / "positions.manifest.json"
    assert table.num_rows == manifest["rows"] > 0
    assert manifest["parquet_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert set(manifest["features"]) | set(manifest["labels"]) | set(manifest["id_columns"]) == set(
        table.column_names
    )
    assert manifest["labels"] == list(LABEL_NAMES) and set(manifest["label_definitions"]) == set(LABEL_NAMES)
    assert manifest["horizon"] == {"periods": 12, "timeframe": "1h", "ms": 12 * 3_600_000}
    assert manifest["candle_range"]["start"] == "2023-03-20T00:00:00Z"
    assert manifest["candle_range"]["end"] == "2023-03-30T00:00:00Z"
    run = manifest["runs"][0]
    assert run["config_file"] == str(MANAGED) and run["config_hash"] == manifest["config_hash"]
    assert run["symbols"] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"] and run["base_timeframe"] == "1m"
    assert manifest["tradebot_version"] and manifest["positions"] == len(
        set(table["position_id"].to_pylist())
    )
    rates = manifest["label_base_rates"]
    recovered = [v for v in table["recovered"].to_pylist() if v is not None]
    assert rates["recovered"] == {"defined": len(recovered), "rate": sum(recovered) / len(recovered)}
    assert "label base rates" in stdout and f"{manifest['rows']:,}" in stdout
    assert "100%" in stdout  # the progress lines off a terminal


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--timeframe", "7m"), "--timeframe: timeframe must be one of"),
        (("--out", "ds.csv"), "--out must name a .parquet file, was 'ds.csv'"),
        (("--start", "2023-03-25", "--end", "2023-03-20"), "--start must be before --end"),
        (("--data", "no-such-folder"), "candle data directory 'no-such-folder' does not exist"),
        (("--config", "missing.toml"), "config file 'missing.toml' does not exist"),
    ],
)
def test_cli_refuses_bad_input_with_exit_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    base = {"--data": str(SAMPLE), "--out": "ds.parquet", "--config": str(MANAGED)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, _out, err = run_cli(capsys, "ml", "dataset", *[x for kv in base.items() for x in kv])
    assert code == 2
    assert message in err
    assert not Path("ds.parquet").exists()


def test_cli_refuses_a_bad_horizon_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ml", "dataset", "--out", "ds.parquet", "--horizon", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --horizon: expected a whole number of rebalance periods >= 1, was '0'" in err
