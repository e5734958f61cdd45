"""Composition and drivers: settings, logging, bootstrap, daemon, backtest (asyncio lives here)."""
