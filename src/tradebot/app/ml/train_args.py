"""Options of ``tradebot ml train`` (kept apart from :mod:`.train`, so that building the CLI parser
does not import lightgbm or pyarrow)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

__all__ = ["add_arguments"]


def _whole(minimum: int, what: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = minimum - 1
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, was {value!r}")
        return n

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``ml train`` options to ``p``."""
    p.add_argument("--dataset", type=Path, required=True, help="FILE.parquet from `tradebot ml dataset`")
    p.add_argument("--out", type=Path, required=True, help="folder for the models, cards and report.json")
    p.add_argument(
        "--folds",
        type=_whole(2, "a whole number of folds"),
        default=4,
        metavar="K",
        help="walk-forward folds (default 4)",
    )
    p.add_argument(
        "--seed",
        type=_whole(0, "a whole-number seed"),
        default=0,
        metavar="S",
        help="LightGBM seed (default 0)",
    )
