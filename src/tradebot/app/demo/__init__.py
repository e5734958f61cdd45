"""The offline demo (``tradebot demo``): the local exchange simulator replaying the shipped sample
candles, and the real daemon of :mod:`tradebot.app.daemon` trading against it on 127.0.0.1; it
ends with the same summary as a backtest. The package re-exports nothing.
"""
