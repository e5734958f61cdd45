"""Benchmark: the full backtest through the whole engine, with and without the database writer.

Prints candles per second (engine loop, and end to end including loading) and peak memory (RSS) for
each variant; every variant runs in its own process so peak memory is its own.

    python benchmarks/bench_backtest.py --data ../shared/data --timeframe 5m
    python benchmarks/bench_backtest.py --data ../shared/data --timeframe 5m --config config/managed.toml
    python benchmarks/bench_backtest.py --data ../shared/data --timeframe 5m --variants nodb --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _one(args: argparse.Namespace) -> None:
    from tradebot.app.backtest.backtest import BacktestOptions, load_data, run_backtest
    from tradebot.app.logging import configure_logging
    from tradebot.app.settings import load_settings
    from tradebot.core.domain import Timeframe

    configure_logging(level="warning")
    settings = load_settings(args.config)
    db_url = None
    tmp = None
    if args.variant == "sqlite":
        tmp = tempfile.TemporaryDirectory()
        db_url = f"sqlite+aiosqlite:///{tmp.name}/bench.db"
    elif args.variant == "postgres":
        db_url = args.pg_url
    options = BacktestOptions(
        data_dir=Path(args.data),
        timeframe=Timeframe.parse(args.timeframe),
        db_url=db_url,
        run_id=f"bench-{args.variant}",
    )
    t0 = time.perf_counter()
    load_data(settings, options)
    load_s = time.perf_counter() - t0
    result = asyncio.run(run_backtest(settings, options))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "variant": args.variant,
                "config": str(args.config or "defaults"),
                "candles": result.n_candles,
                "load_s": round(load_s, 3),
                "engine_s": round(result.engine_s, 3),
                "total_s": round(result.elapsed_s, 3),
                "engine_candles_per_s": round(result.n_candles / result.engine_s),
                "end_to_end_candles_per_s": round(result.n_candles / result.elapsed_s),
                "peak_rss_mb": round(peak_mb, 1),
                "final_equity": result.summary["final_equity"],
                "orders": result.summary["overall"]["n_orders"],
            }
        )
    )
    if tmp is not None:
        tmp.cleanup()


def main() -> None:
    """Run each variant in a subprocess and print a table of the figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--timeframe", default="5m")
    p.add_argument("--config", default=None)
    p.add_argument("--variants", default="nodb,sqlite", help="comma list of nodb, sqlite, postgres")
    p.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per variant, interleaved; the table shows the median run (by engine time) "
        "and the best engine figure, since a shared machine's speed moves between runs",
    )
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        _one(args)
        return
    if args.repeat < 1:
        p.error(f"--repeat must be >= 1, was {args.repeat}")
    variants = args.variants.split(",")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.repeat):
        for variant in variants:
            cmd = [
                sys.executable,
                __file__,
                "--data",
                args.data,
                "--timeframe",
                args.timeframe,
                "--variant",
                variant,
                "--pg-url",
                args.pg_url,
            ]
            if args.config:
                cmd += ["--config", args.config]
            out = (
                subprocess.run(cmd, check=True, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            runs[variant].append(json.loads(out))
            print(out, flush=True)
    print()
    print(
        f"{'variant':10} {'candles':>9} {'engine c/s':>12} {'best c/s':>10} {'end-to-end c/s':>15} "
        f"{'load s':>7} {'engine s':>9} {'total s':>8} {'peak MB':>8}"
    )
    for variant, rs in runs.items():
        r = sorted(rs, key=lambda x: x["engine_s"])[(len(rs) - 1) // 2]
        best = max(x["engine_candles_per_s"] for x in rs)
        print(
            f"{variant:10} {r['candles']:>9,} {r['engine_candles_per_s']:>12,} {best:>10,} "
            f"{r['end_to_end_candles_per_s']:>15,} {r['load_s']:>7} {r['engine_s']:>9} {r['total_s']:>8} "
            f"{r['peak_rss_mb']:>8}"
        )


if __name__ == "__main__":
    main()
