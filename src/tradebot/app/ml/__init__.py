"""Learned position management, the runtime side (issue 16): ``tradebot ml dataset`` builds the
position dataset from a backtest over stored candles (``dataset``, with ``observer`` reading the
engine at each rebalance close) and writes it as Parquet (``files``) with its ``manifest``;
``command`` drives it with progress and a ``summary``. ``tradebot ml train`` (``train``, its
options in ``train_args`` and its tables in ``train_report``) scores LightGBM models on purged
walk-forward folds and saves them with their cards. The features and labels themselves are pure
and live in :mod:`tradebot.core.ml`. Like :mod:`tradebot.app.backtest`, the package re-exports
nothing, so that building the CLI parser (``dataset_args``, ``train_args``) does not import pyarrow or
lightgbm.
"""
