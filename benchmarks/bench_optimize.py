"""Benchmark: throughput of optimisation trials (``tradebot optimize``) with one and two workers.

Runs a small study (three parameters over the base config: the rebalance band, the 1h stream's fast
EMA and the allocation policy; seeded TPE) with ``tradebot optimize`` in a subprocess for each
``--jobs`` value, then reads the trials back from the study's SQLite file. Each trial records its
costs in its ``perf`` user attribute (engine loop, whole backtest, the worker's RSS and peak RSS, its
pid); the trial's own time is Optuna's start-to-complete (sampling, backtest, summary, storage writes).

Printed per run (one JSON line) and in a table (the median run per ``--jobs`` by trials/min):

- trials/min: finished trials over the span from the first trial's start to the last one's end (the
  workers' start-up and candle loading excluded), and end to end over the whole command;
- trial / engine: the median over trials of the trial's time over its engine loop's;
- peak RSS per worker (MiB, the largest of the workers), and each worker's RSS after its first and
  its last trial (the largest growth is shown);
- the load average before the run, and the CPU time other processes used during it (the machine's
  busy time from ``/proc/stat`` less this study's), since a shared machine's speed moves between runs;
- the speed-up of each ``--jobs`` over the first one.

    python benchmarks/bench_optimize.py --data ../shared/data --timeframe 5m --trials 12
    python benchmarks/bench_optimize.py --data ../shared/data --timeframe 5m --trials 12 --repeat 3
    python benchmarks/bench_optimize.py --data data/sample --timeframe 1h --trials 4 --jobs 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPACE = """
[params."planner.band_fraction"]
low = 0.01
high = 0.10

[params."streams.0.fast"]
low = 10
high = 40
step = 2

[params."allocation.policy"]
choices = ["pooled", "slots"]
"""


def _run(args: argparse.Namespace, jobs: int) -> dict[str, Any]:
    # One study with `jobs` workers in a fresh folder; its figures from the stored trials.
    import optuna
    from optuna.trial import TrialState

    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "space.toml"
        space.write_text(SPACE, encoding="utf-8")
        out = Path(tmp) / "out"
        cmd = [
            sys.executable, "-m", "tradebot", "optimize", "--data", str(Path(args.data).resolve()),
            "--timeframe", args.timeframe, "--space", str(space), "--config", str(Path(args.config).resolve()),
            "--trials", str(args.trials), "--jobs", str(jobs), "--seed", str(args.seed), "--out", str(out),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
        load = os.getloadavg()
        busy0, ours0 = _busy_s(), _children_cpu_s()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tmp, env=env)
        wall_s = time.perf_counter() - t0
        others_s = max(0.0, (_busy_s() - busy0) - (_children_cpu_s() - ours0))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name="tradebot", storage=f"sqlite:///{out / 'optuna.db'}")
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        raise SystemExit(f"jobs {jobs}: no complete trial")
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    span_s = (max(ends) - min(starts)).total_seconds()
    ratios, trial_s, engine_s = [], [], []
    workers: dict[int, list[dict[str, Any]]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        perf = t.user_attrs["perf"]
        assert t.datetime_start is not None and t.datetime_complete is not None
        own = (t.datetime_complete - t.datetime_start).total_seconds()
        trial_s.append(own)
        engine_s.append(perf["engine_s"])
        ratios.append(own / perf["engine_s"])
        workers.setdefault(perf["pid"], []).append(perf)
    growth = {
        pid: (ps[0]["rss_mb"], ps[-1]["rss_mb"])
        for pid, ps in workers.items()
        if ps[0]["rss_mb"] is not None and ps[-1]["rss_mb"] is not None
    }
    return {
        "jobs": jobs,
        "trials": len(trials),
        "load_avg_1m": round(load[0], 2),
        "others_cpu_s": round(others_s, 1),
        "others_cores": round(others_s / wall_s, 2),
        "trials_per_min": round(len(trials) / span_s * 60, 2),
        "end_to_end_trials_per_min": round(len(trials) / wall_s * 60, 2),
        "wall_s": round(wall_s, 2),
        "median_trial_s": round(statistics.median(trial_s), 3),
        "median_engine_s": round(statistics.median(engine_s), 3),
        "trial_over_engine": round(statistics.median(ratios), 3),
        "workers": len(workers),
        "peak_rss_mb": round(max(p["peak_rss_mb"] for ps in workers.values() for p in ps), 1),
        "rss_first_last_mb": {str(pid): [round(a, 1), round(b, 1)] for pid, (a, b) in growth.items()},
        "rss_growth_mb": round(max((b - a for a, b in growth.values()), default=0.0), 1),
        "final_equity_best": study.best_trial.user_attrs["summary"]["final_equity"],
    }


def _busy_s() -> float:
    # CPU seconds the whole machine spent busy since boot (user, nice, system, irq, softirq, steal).
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    # CPU seconds of the finished subprocesses (and the workers they waited for).
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    """Run the study once per ``--jobs`` value (``--repeat`` times, interleaved) and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--timeframe", default="5m")
    p.add_argument("--config", default=str(REPO / "config" / "default.toml"), help="base config")
    p.add_argument("--trials", type=int, default=12, help="finished trials per study (default 12)")
    p.add_argument("--jobs", default="1,2", help="comma list of worker counts (default 1,2)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per --jobs value, interleaved; the median shown"
    )
    args = p.parse_args()
    jobs = [int(j) for j in args.jobs.split(",")]
    if args.repeat < 1 or args.trials < 1 or min(jobs) < 1:
        p.error(f"--repeat, --trials and --jobs must be >= 1, were {args.repeat}, {args.trials}, {args.jobs}")
    runs: dict[int, list[dict[str, Any]]] = {j: [] for j in jobs}
    for _ in range(args.repeat):
        for j in jobs:
            r = _run(args, j)
            runs[j].append(r)
            print(json.dumps(r), flush=True)
    print()
    print(
        f"{'jobs':>4} {'trials':>6} {'trials/min':>10} {'e2e t/min':>9} {'speed-up':>8} {'trial s':>8} "
        f"{'engine s':>8} {'trial/engine':>12} {'peak MiB':>8} {'RSS growth':>10} {'load':>5} {'others':>6}"
    )
    first = None
    for j, rs in runs.items():
        r = sorted(rs, key=lambda x: x["trials_per_min"])[(len(rs) - 1) // 2]
        first = first or r["trials_per_min"]
        print(
            f"{j:>4} {r['trials']:>6} {r['trials_per_min']:>10} {r['end_to_end_trials_per_min']:>9} "
            f"{r['trials_per_min'] / first:>8.2f} {r['median_trial_s']:>8} {r['median_engine_s']:>8} "
            f"{r['trial_over_engine']:>12} {r['peak_rss_mb']:>8} {r['rss_growth_mb']:>10} {r['load_avg_1m']:>5} "
            f"{r['others_cores']:>6}"
        )


if __name__ == "__main__":
    main()
