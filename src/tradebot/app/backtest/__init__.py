"""The backtest driver (``tradebot backtest``): stored candles replayed time slice by time slice
(``replay``) through the one engine and the simulated exchange (``backtest``), ending with the
run's summary from :mod:`tradebot.app.reports`. Nothing here opens a network connection or draws a
chart (matplotlib is imported only by the CLI when it writes one); the package re-exports nothing.
"""
