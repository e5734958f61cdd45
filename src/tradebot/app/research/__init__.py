"""Research commands: candle download, parameter search (Optuna) and walk-forward validation.

Everything here drives the same engine as a backtest (:mod:`tradebot.app.backtest`); studies are
coordinated by Optuna's RDB storage (an SQLite file, or PostgreSQL for many machines).
"""
