"""One candle file on disk, written so that a SIGKILL at any instant loses nothing and corrupts nothing.

Layout, for ``data/binance_BTCUSDT_1m.csv.gz``:

* ``binance_BTCUSDT_1m.csv.gz`` — the file the backtester reads; only ever replaced whole
  (written to ``.binance_BTCUSDT_1m.csv.gz.<pid>.tmp`` in the same folder, fsynced, then
  :func:`os.replace`, then the folder fsynced), so it is either the old or the new version.
* ``binance_BTCUSDT_1m.csv.gz.part`` — the append log of a download in progress: a
  ``#range,<lo>,<hi>`` line before each range is fetched, then the rows of each page as it
  arrives (one ``write`` + ``flush`` per page). A page cut by SIGKILL leaves at most an
  unterminated last line, which the reader drops. Neither name matches the backtester's pattern.

A rerun reads both: the stored file's span plus each log segment's fetched prefix are what is
covered; :func:`~tradebot.adapters.feeds.candle_files.missing_ranges` gives what to fetch; once
everything is fetched, :meth:`CandleFile.commit` merges the log into the file and deletes the log.
A kill after the replace but before the delete only makes the next run merge the same rows again
(deduplicated by open time).
"""

from __future__ import annotations

import contextlib
import gzip
import os
from pathlib import Path
from typing import TextIO

from tradebot.adapters.feeds.candle_files import (
    MergeResult,
    Row,
    Segment,
    covered_span,
    encode_rows,
    merge_rows,
    parse_log,
    parse_rows,
    range_marker,
)
from tradebot.errors import DataError


class CandleFile:
    """The stored candles of one ``(venue, symbol, timeframe)`` and their append log.

    Parameters
    ----------
    path
        The ``.csv.gz`` file (need not exist yet); its folder must exist.
    tf_ms
        Candle length, ms.

    Raises
    ------
    DataError
        (from :meth:`load`) If the stored file or the log is malformed; the message names the file
        and the line.
    """

    def __init__(self, path: Path, tf_ms: int) -> None:
        self.path = path
        self.tf_ms = tf_ms
        self.part_path = path.with_name(path.name + ".part")
        self.rows: list[Row] = []
        self.segments: list[Segment] = []
        self._log: TextIO | None = None

    def load(self) -> None:
        """Read the stored file and the append log left by an interrupted run (if any)."""
        if self.path.exists():
            try:
                text = gzip.decompress(self.path.read_bytes()).decode("ascii")
            except (OSError, EOFError, UnicodeDecodeError) as e:
                raise DataError(f"{self.path.name}: cannot read candle file: {e}") from e
            self.rows = parse_rows(text, name=self.path.name)
        if self.part_path.exists():
            text = self.part_path.read_bytes().decode("ascii", errors="replace")
            self.segments = parse_log(text, name=self.part_path.name)
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # a kill during commit
            stale.unlink(missing_ok=True)

    def covered(self) -> list[tuple[int, int]]:
        """``[lo, hi)`` intervals known to hold every candle the venue has: the file and log prefixes."""
        spans = [covered_span(self.rows, self.tf_ms)] + [s.done(self.tf_ms) for s in self.segments]
        return [s for s in spans if s is not None]

    def begin_range(self, lo: int, hi: int) -> None:
        """Open a log segment for the fetch of ``[lo, hi)`` (ms, aligned)."""
        if self._log is None:
            self._log = self.part_path.open("a", encoding="ascii", newline="\n")
        self._log.write(range_marker(lo, hi))
        self._log.flush()
        self.segments.append(Segment(lo, hi, []))

    def append(self, rows: list[Row]) -> None:
        """Append one page of rows (ascending, inside the open segment) to the log."""
        if self._log is None or not self.segments:
            raise RuntimeError("append() before begin_range()")
        self._log.write(encode_rows(rows, header=False))
        self._log.flush()
        self.segments[-1].rows.extend(rows)

    def commit(self) -> MergeResult:
        """Merge the log into the file (atomic replace), delete the log; return what changed.

        Without a log the file is left untouched (``added == 0``).
        """
        self.close()
        new = [r for s in self.segments for r in s.rows]
        result = merge_rows(self.rows, new)
        if self.part_path.exists():
            if (result.added or result.replaced) and result.rows:
                self._write(result.rows)
            self.part_path.unlink()
        self.rows, self.segments = result.rows, []
        return result

    def close(self) -> None:
        """Close the log (rows stay in it for the next run)."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def _write(self, rows: list[Row]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        data = gzip.compress(encode_rows(rows).encode("ascii"), compresslevel=6, mtime=0)
        try:
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not every platform can fsync a folder
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
