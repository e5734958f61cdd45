"""Options of ``tradebot ml evaluate`` (kept apart from :mod:`.evaluate`, so that building the CLI
parser does not import lightgbm or pyarrow)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``ml evaluate`` options to ``p``."""
    p.add_argument(
        "--model", type=Path, required=True, metavar="DIR", help="model folder of `tradebot ml train --out`"
    )
    p.add_argument(
        "--dataset",
        type=Path,
        required=True,
        metavar="FILE.parquet",
        help="dataset of `tradebot ml dataset` to score the models on (normally after their training data)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE.json",
        help="the evaluation JSON (default: DIR/evaluation-<dataset name>.json)",
    )
