"""Composition and drivers (asyncio lives here), grouped by what runs: ``daemon/`` (``tradebot run``
and its parts), ``backtest/`` (``tradebot backtest``), ``demo/`` (``tradebot demo``) and
``reports/`` (the summary, tables and chart every run ends with); at this level the parts they all
share (``settings``, ``logging``, default ``instruments``, ``storage`` helpers) and the CLI
``commands`` that start them.
"""
