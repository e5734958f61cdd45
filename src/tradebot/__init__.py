"""tradebot: a trend-stream portfolio trading daemon with one engine for every mode."""

__version__ = "0.1.0"
