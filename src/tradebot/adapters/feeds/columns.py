"""One symbol's stored candles as columns: numpy arrays, read as a sequence of :class:`Candle`.

A backtest study keeps years of base candles in memory for thousands of runs. As ``Candle`` tuples
they cost ~355 bytes each; as columns 48 (one ``int64`` open time and five ``float64`` prices and
volume). The values are the very floats the loader parsed, so a :class:`Candle` built from a row is
equal, bit for bit, to the one the loader would have built. The replay builds candles only where the
engine takes them one by one, and reads quiet stretches straight from the columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import TypeVar, overload

import numpy as np
import numpy.typing as npt

from tradebot.core.domain import Candle, Timeframe

__all__ = ["CandleColumns"]

_FIELDS = ("open", "high", "low", "close", "volume")
_T = TypeVar("_T", bound=np.generic)


class CandleColumns(Sequence[Candle]):
    """Base candles of one symbol and timeframe, strictly ascending in open time, held as columns.

    A read-only :class:`~collections.abc.Sequence` of :class:`Candle`: indexing builds the candle of
    that row (``missing == 0``), slicing builds a list. The arrays are made read-only.

    Parameters
    ----------
    symbol
        ccxt symbol stamped on the candles, e.g. ``"BTC/USDT"``.
    timeframe
        The candles' timeframe.
    open_time_ms
        Open times, ms UTC, ``int64``, strictly ascending (the caller vouches; the loader checks).
    open, high, low, close
        Prices in quote currency, ``float64``.
    volume
        Volumes in base units, ``float64``.

    Raises
    ------
    ValueError
        If a column is not one-dimensional, has another dtype or another length than ``open_time_ms``.
    """

    __slots__ = ("close", "high", "low", "open", "open_time_ms", "symbol", "timeframe", "volume")

    def __init__(
        self,
        symbol: str,
        timeframe: Timeframe,
        open_time_ms: npt.NDArray[np.int64],
        open: npt.NDArray[np.float64],
        high: npt.NDArray[np.float64],
        low: npt.NDArray[np.float64],
        close: npt.NDArray[np.float64],
        volume: npt.NDArray[np.float64],
    ) -> None:
        n = len(open_time_ms)
        if open_time_ms.ndim != 1 or open_time_ms.dtype != np.int64:
            raise ValueError(
                f"{symbol}: open_time_ms must be a 1-d int64 array, was {open_time_ms.dtype} "
                f"of shape {open_time_ms.shape}"
            )
        for name, col in zip(_FIELDS, (open, high, low, close, volume), strict=True):
            if col.ndim != 1 or col.dtype != np.float64 or len(col) != n:
                raise ValueError(
                    f"{symbol}: {name} must be a 1-d float64 array of {n} values, was {col.dtype} "
                    f"of shape {col.shape}"
                )
        self.symbol = symbol
        self.timeframe = timeframe
        self.open_time_ms = _frozen(open_time_ms)
        self.open = _frozen(open)
        self.high = _frozen(high)
        self.low = _frozen(low)
        self.close = _frozen(close)
        self.volume = _frozen(volume)

    @classmethod
    def from_candles(cls, symbol: str, timeframe: Timeframe, candles: Sequence[Candle]) -> CandleColumns:
        """Return the columns of ``candles`` (base candles of ``symbol`` and ``timeframe``, ascending).

        Raises
        ------
        ValueError
            If a candle has another symbol or timeframe, or a non-zero ``missing`` (an aggregate).
        """
        if isinstance(candles, CandleColumns) and (candles.symbol, candles.timeframe) == (symbol, timeframe):
            return candles
        for c in candles:
            if c[0] != symbol or c[1] != timeframe or c[8]:
                raise ValueError(f"candles of {symbol} {timeframe} expected (base, missing=0), was {c!r}")
        return cls(
            symbol,
            timeframe,
            np.array([c[2] for c in candles], dtype=np.int64),
            *(np.array([c[k] for c in candles], dtype=np.float64) for k in range(3, 8)),
        )

    def __len__(self) -> int:
        return len(self.open_time_ms)

    @overload
    def __getitem__(self, index: int) -> Candle: ...

    @overload
    def __getitem__(self, index: slice) -> list[Candle]: ...

    def __getitem__(self, index: int | slice) -> Candle | list[Candle]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self.candles(start, stop)
            return [self[i] for i in range(start, stop, step)]
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError(f"{self.symbol}: candle index {index} out of range for {n} candles")
        return Candle(
            self.symbol,
            self.timeframe,
            int(self.open_time_ms[i]),
            float(self.open[i]),
            float(self.high[i]),
            float(self.low[i]),
            float(self.close[i]),
            float(self.volume[i]),
        )

    def __iter__(self) -> Iterator[Candle]:
        return iter(self.candles(0, len(self)))

    def candles(self, lo: int, hi: int) -> list[Candle]:
        """Return the candles of rows ``lo <= row < hi`` (built in one pass)."""
        cols = [c[lo:hi].tolist() for c in self.columns()]
        return list(map(Candle, repeat(self.symbol), repeat(self.timeframe), *cols))

    def columns(
        self,
    ) -> tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
    ]:
        """Return ``(open_time_ms, open, high, low, close, volume)``: the candle fields' order."""
        return self.open_time_ms, self.open, self.high, self.low, self.close, self.volume

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return sum(c.nbytes for c in self.columns())

    def __repr__(self) -> str:
        return f"CandleColumns(symbol={self.symbol!r}, timeframe={self.timeframe}, n={len(self)})"


def _frozen(a: npt.NDArray[_T]) -> npt.NDArray[_T]:
    # A read-only view: the columns are shared by every run of a process.
    view = a.view()
    view.flags.writeable = False
    return view
