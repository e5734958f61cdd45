"""The benchmark script runs as documented: each variant in its own process, a table at the end.

On the shipped 1m sample (small enough for the test suite); the figures themselves are not asserted
(speed goals live in the benchmark, not in timed tests), only that every run is the real backtest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_interleaves_repeats_and_prints_the_table(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "bench_backtest.py"),
        "--data",
        str(REPO / "data" / "sample"),
        "--timeframe",
        "1m",
        "--variants",
        "nodb,sqlite",
        "--repeat",
        "2",
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tmp_path, timeout=300).stdout
    runs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["variant"] for r in runs] == ["nodb", "sqlite", "nodb", "sqlite"]
    for r in runs:  # the same backtest every time: the golden sample's result
        assert (r["candles"], r["final_equity"], r["orders"]) == (198_261, "10391.17359401", 152)
        assert r["engine_candles_per_s"] > 0 and r["peak_rss_mb"] > 0
    table = out.split("\n\n")[-1].splitlines()
    assert table[0].split()[:4] == ["variant", "candles", "engine", "c/s"]
    assert [row.split()[0] for row in table[1:]] == ["nodb", "sqlite"]
    assert all(row.split()[1] == "198,261" for row in table[1:])


def test_bench_refuses_a_repeat_below_one() -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_backtest.py"), "--repeat", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--repeat must be >= 1, was 0" in done.stderr


def test_bench_optimize_prints_throughput_ratio_and_memory_per_jobs() -> None:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "bench_optimize.py"),
        "--data",
        str(REPO / "data" / "sample"),
        "--timeframe",
        "1h",
        "--trials",
        "3",
        "--jobs",
        "1,2",
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    runs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(r["jobs"], r["trials"]) for r in runs] == [(1, 3), (2, 3)]
    # workers that ran a trial: with 3 short trials one of two spawned workers may take them all
    assert runs[0]["workers"] == 1 and 1 <= runs[1]["workers"] <= 2
    for r in runs:
        assert r["trials_per_min"] > r["end_to_end_trials_per_min"] > 0
        assert r["trial_over_engine"] > 1 and r["median_trial_s"] > r["median_engine_s"] > 0
        assert r["peak_rss_mb"] > 0 and len(r["rss_first_last_mb"]) == r["workers"]
    table = out.split("\n\n")[-1].splitlines()
    assert table[0].split()[:3] == ["jobs", "trials", "trials/min"]
    assert [row.split()[0] for row in table[1:]] == ["1", "2"]
    assert table[1].split()[4] == "1.00"  # the speed-up column, against --jobs 1


def test_stop_fills_measures_every_stop_exit_of_the_managed_backtest(tmp_path: Path) -> None:
    """``benchmarks/stop_fills.py`` on the 1m and 1h sample: every ``stop_exit`` of the managed run is
    measured, the percentiles are ordered, and the JSON file equals the printed figures."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "stop_fills.py"), "--data", str(REPO / "data" / "sample"),
           "--timeframes", "1m", "1h", "--config", str(REPO / "config" / "managed.toml"),
           "--json", str(tmp_path / "stops.json")]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tmp_path, timeout=300).stdout
    (printed,) = [json.loads(line) for line in out.splitlines() if line.startswith("[")]
    assert printed == json.loads((tmp_path / "stops.json").read_text())
    assert [r["timeframe"] for r in printed] == ["1m", "1h"]
    assert printed[0]["candles"] == 198_261
    for r in printed:
        s = r["bps"]
        assert r["stop_exits"] == s["n"] > 0
        assert s["min"] <= s["p5"] <= s["p25"] <= s["median"] <= s["p75"] <= s["p95"] <= s["max"]
        assert sum(k["n"] for k in r["by_stop_kind"].values()) == s["n"]
        assert 0 <= r["breakeven_exits_losing"] <= r["breakeven_exits"] <= s["n"]
    assert "stop exits: (fill - stop) / stop, bps" in out
