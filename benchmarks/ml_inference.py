"""Benchmark: the cost of one prediction of the position-management models (issue 16).

The engine calls :meth:`tradebot.app.ml.model.LightGbmPredictor.predict` once per rebalance-clock
close (hourly) with one feature row per open position (1 to 3). This prints, for 1 and 3 rows, the
µs per call of LightGBM's ``Booster.predict`` for one model (with ``num_threads=1``, and with the
default parameters), of the whole predictor (all the folder's models, Platt scaling and the
conditional confidences included) and of one model through LightGBM's C single-row API
(``LGBM_BoosterPredictForMatSingleRowFast``, which the predictor uses row by row). Best of
``--repeat`` runs of ``--calls`` calls each.

Without ``--model`` it first trains the four models with ``tradebot ml train``'s code and defaults
(100 rounds, 15 leaves) on a synthetic dataset with the engine's feature names, in a temporary folder.

    python benchmarks/ml_inference.py
    python benchmarks/ml_inference.py --model out/models --streams 1h,4h,1d
    python benchmarks/ml_inference.py --json ml_inference.json
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

HOUR = 3_600_000


def synthetic_models(
    out: Path, streams: tuple[str, ...], *, positions: int = 400, rows_per: int = 10
) -> Path:
    """Train the four models on a synthetic dataset (a signal in ``profit_fraction``) into ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tradebot.app.ml.files import manifest_path
    from tradebot.app.ml.manifest import DATASET_FORMAT
    from tradebot.app.ml.train import TrainOptions, load_dataset, train_models, write_models
    from tradebot.core.ml import feature_names

    features = feature_names(streams)
    rng = np.random.default_rng(0)
    n = positions * rows_per
    pos = np.repeat(np.arange(positions), rows_per)
    t = (pos * 3 + np.tile(np.arange(rows_per), positions)) * HOUR
    x = np.repeat(rng.normal(size=positions), rows_per) + rng.normal(scale=0.3, size=n)
    columns: dict[str, Any] = {
        "position_id": [f"p{p:05d}" for p in pos],
        "time_ms": pa.array(t, pa.int64()),
        "horizon_end_ms": pa.array(t + 24 * HOUR, pa.int64()),
        "horizon_complete": pa.array(np.ones(n, dtype=bool)),
    }
    for f in features:
        columns[f] = x if f == "profit_fraction" else rng.normal(size=n)
    losing = rng.random(n) < 0.6
    recovered = x + rng.normal(scale=0.7, size=n) > 0
    columns["recovered"] = pa.array(
        [bool(r) if lo else None for r, lo in zip(recovered, losing, strict=True)]
    )
    columns["additional_return"] = 0.01 * np.maximum(x, 0) + 0.005 * rng.random(n)
    columns["scale_in_success"] = pa.array(x + rng.normal(scale=0.7, size=n) > 0.3)
    columns["time_to_best_ms"] = pa.array((rng.random(n) * 24 * HOUR).astype(np.int64), pa.int64())
    ds = out / "synthetic.parquet"
    pq.write_table(pa.table(columns), ds)
    manifest = {
        "format": DATASET_FORMAT,
        "config_hash": "synthetic",
        "features": list(features),
        "labels": ["recovered", "additional_return", "scale_in_success", "time_to_best_ms"],
        "label_definitions": {},
        "horizon": {"periods": 24, "timeframe": "1h", "ms": 24 * HOUR},
        "candle_range": {"start_ms": 0, "end_ms": int(t.max() + 25 * HOUR), "start": "-", "end": "-"},
        "parquet_file": ds.name,
        "parquet_sha256": hashlib.sha256(ds.read_bytes()).hexdigest(),
    }
    manifest_path(ds).write_text(json.dumps(manifest), encoding="utf-8")
    data = load_dataset(ds)
    options = TrainOptions()
    write_models(data, options, train_models(data, options), out / "models")
    return out / "models"


def per_call_us(fn: Callable[[], object], calls: int, repeat: int) -> float:
    """Best of ``repeat`` runs of ``calls`` calls of ``fn``, µs per call (after a warm-up)."""
    for _ in range(min(calls, 200)):
        fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def _capi_single_row(booster: Any, row: np.ndarray[Any, Any]) -> Callable[[], object]:
    # Reference only: LightGBM's C "fast" single-row prediction (what its Java/SWIG users call), set
    # up once; through the lightgbm package's private handle to the library.
    from lightgbm.basic import _safe_call
    from lightgbm.libpath import _LIB

    handle = ctypes.c_void_p()
    params = ctypes.c_char_p(b"num_threads=1")
    _safe_call(
        _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle, ctypes.c_int(1), ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(1),
            ctypes.c_int32(row.shape[0]), params, ctypes.byref(handle),
        )
    )  # fmt: skip
    x = np.ascontiguousarray(row, dtype=np.float64)
    out = np.empty(1, dtype=np.float64)
    out_len = ctypes.c_int64(0)
    px, po = x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    def call() -> None:
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFast(handle, px, ctypes.byref(out_len), po))

    call()
    if not np.isclose(out[0], booster.predict(x[None, :], raw_score=True)[0]):
        raise RuntimeError("the C single-row prediction differs from Booster.predict")
    return call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, help="a folder of `tradebot ml train` (default: train one)")
    parser.add_argument("--streams", default="1h,4h,1d", help="stream timeframes of the features (1h,4h,1d)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per run (2000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the best is reported (7)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import lightgbm as lgb

    from tradebot.app.ml.model import MODEL_KINDS, ModelError, load_predictor
    from tradebot.core.ml.predictor import MlThresholds

    streams = tuple(s.strip() for s in args.streams.split(",") if s.strip())
    tmp = None
    folder: Path = args.model
    if folder is None:
        tmp = tempfile.TemporaryDirectory()
        started = time.perf_counter()
        folder = synthetic_models(Path(tmp.name), streams)
        print(f"trained the synthetic models in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    try:
        predictor = load_predictor(folder, stream_timeframes=streams, thresholds=MlThresholds())
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = next(n for n in MODEL_KINDS if n in predictor.cards)
    booster = lgb.Booster(model_file=str(folder / name / "model.txt"))
    trees = booster.num_trees()
    rng = np.random.default_rng(1)
    all_rows = [{f: float(v) for f, v in zip(predictor.features, rng.normal(size=len(predictor.features)), strict=True)} for _ in range(3)]  # fmt: skip
    figures: dict[str, Any] = {
        "lightgbm": lgb.__version__,
        "model_folder": str(args.model) if args.model else "synthetic",
        "booster": {"model": name, "trees": trees, "features": len(predictor.features)},
        "models": sorted(predictor.cards),
        "us_per_call": {},
    }
    for n_rows in (1, 3):
        rows = all_rows[:n_rows]
        x = np.array([[r[f] for f in predictor.features] for r in rows], dtype=np.float64)
        calls: dict[str, Callable[[], object]] = {
            "booster_predict_num_threads_1": partial(booster.predict, x, raw_score=True, num_threads=1),
            "booster_predict_default": partial(booster.predict, x, raw_score=True),
            "predictor_all_models": partial(predictor.predict, rows),
        }
        figures["us_per_call"][f"{n_rows}_rows"] = {
            key: per_call_us(fn, args.calls, args.repeat) for key, fn in calls.items()
        }
    figures["us_per_call"]["1_rows"]["reference_c_api_single_row"] = per_call_us(
        _capi_single_row(booster, np.array([all_rows[0][f] for f in predictor.features])),
        args.calls,
        args.repeat,
    )
    print(f"LightGBM {lgb.__version__}; {name}: {trees} trees, {len(predictor.features)} features; "
          f"predictor models: {', '.join(figures['models'])}")  # fmt: skip
    print(f"{'µs per call':<40}{'1 row':>10}{'3 rows':>10}")
    for key in ("booster_predict_num_threads_1", "booster_predict_default", "predictor_all_models"):
        one, three = (figures["us_per_call"][f"{n}_rows"][key] for n in (1, 3))
        print(f"{key:<40}{one:>10.1f}{three:>10.1f}")
    print(
        f"{'reference_c_api_single_row':<40}{figures['us_per_call']['1_rows']['reference_c_api_single_row']:>10.1f}{'-':>10}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
