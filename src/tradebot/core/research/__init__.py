"""Pure statistics for judging a study: Deflated Sharpe Ratio and Probability of Backtest Overfitting.

No I/O, clock or logging, like the rest of the core.
"""
