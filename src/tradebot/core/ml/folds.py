"""Purged, embargoed walk-forward folds over position rows (López de Prado, *Advances in Financial
Machine Learning*, ch. 7), for training the position-management models.

A row ``i`` has a time ``t_i`` (when its features are known) and a label window ``[t_i, e_i]`` (its
labels read the candles up to ``e_i = t_i + horizon``), and belongs to a group ``g_i`` (its
position). :func:`purged_walk_forward` cuts the rows into folds in time order:

1. **Grouping.** The groups are ordered by their first row's time and cut into ``n_folds + 1``
   consecutive blocks of about equal row counts; a group lies in one block only, so a position never
   has rows in both the train and the test set of a fold.
2. **Walk-forward.** Fold ``k`` (``k = 1 … n_folds``) tests on block ``k`` and trains on rows of the
   blocks before it: only the past trains.
3. **Purging.** The test span is ``[T0, T1]``: the first test row's time to the last test label's end.
   A train row whose label window ``[t, e]`` overlaps it (``e >= T0``) is dropped: its label saw
   candles the test rows are judged on. A row of an earlier position still open during the test span
   is purged this way too.
4. **Embargo.** A train row must also end its label window at least ``embargo_ms`` before the test
   span (``e < T0 − embargo``). AFML's embargo follows the test set, because its folds also train on
   rows after the test; walk-forward trains on the past only, so the embargo here keeps the same
   distance on that side: features built on long windows (ATR regime, volume averages) of the last
   train rows overlap the first test rows' less.

:func:`holdout_split` cuts a train set once more the same way (the last groups held out, purged and
embargoed), for calibrating a classifier on rows its trees did not see.

Pure: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["PurgedFold", "holdout_split", "purged_walk_forward"]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgedFold:
    """One fold: row indices (ascending) into the arrays given, and the spans they cover (ms UTC).

    Attributes
    ----------
    index
        1-based fold number (block 0 only ever trains).
    train, test
        Row indices of the train and test sets.
    purged
        Train-block rows dropped by the purge or the embargo.
    test_start_ms, test_end_ms
        The test span: first test row time, last test label end.
    train_start_ms, train_end_ms
        First train row time and last train label end (``None`` for an empty train set).
    """

    index: int
    train: IntArray
    test: IntArray
    purged: int
    test_start_ms: int
    test_end_ms: int
    train_start_ms: int | None
    train_end_ms: int | None


def _blocks(times: IntArray, groups: npt.NDArray[np.str_] | npt.NDArray[np.object_], n: int) -> IntArray:
    # Block number per row: groups ordered by (first time, name), cut into n blocks of ~equal rows.
    names, inverse = np.unique(groups, return_inverse=True)
    first = np.full(len(names), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inverse, times)
    sizes = np.bincount(inverse, minlength=len(names))
    order = np.lexsort((np.arange(len(names)), first))  # ties: the sorted name order
    cum = np.cumsum(sizes[order])
    total = int(cum[-1])
    # A group goes to the block where its rows' midpoint falls: blocks of ~total / n rows each.
    mid = cum - sizes[order] / 2.0
    block_of_group = np.empty(len(names), dtype=np.int64)
    block_of_group[order] = np.minimum((mid * n / total).astype(np.int64), n - 1)
    return block_of_group[inverse]


def _validate(times: IntArray, label_end: IntArray, groups: npt.NDArray[np.generic]) -> None:
    if not (len(times) == len(label_end) == len(groups)):
        raise ValueError(
            f"times, label_end and groups must have one entry per row, had {len(times)}, "
            f"{len(label_end)} and {len(groups)}"
        )
    if np.any(label_end < times):
        raise ValueError("a row's label window must not end before its time (label_end >= times)")


def purged_walk_forward(
    times_ms: npt.ArrayLike,
    label_end_ms: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    n_folds: int,
    embargo_ms: int,
) -> list[PurgedFold]:
    """Return ``n_folds`` purged, embargoed walk-forward folds over the rows (module docstring).

    Parameters
    ----------
    times_ms, label_end_ms
        Per row: its time and the end of its label window (ms UTC; ``label_end >= time``).
    groups
        Per row: its group (position id); a group never spans a fold's train and test sets.
    n_folds
        Number of folds (>= 1); the rows are cut into ``n_folds + 1`` blocks.
    embargo_ms
        Distance (>= 0) kept between the last train label end and the test span.

    Returns
    -------
    list of PurgedFold
        One per non-empty test block (fewer than ``n_folds`` when there are fewer groups than blocks).

    Raises
    ------
    ValueError
        For ``n_folds < 1``, ``embargo_ms < 0``, arrays of different lengths, or a label window ending
        before its row.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, was {n_folds}")
    if embargo_ms < 0:
        raise ValueError(f"embargo_ms must be >= 0, was {embargo_ms}")
    t = np.asarray(times_ms, dtype=np.int64)
    e = np.asarray(label_end_ms, dtype=np.int64)
    g = np.asarray(groups)
    _validate(t, e, g)
    if len(t) == 0:
        return []
    block = _blocks(t, g, n_folds + 1)
    folds: list[PurgedFold] = []
    for k in range(1, n_folds + 1):
        test = np.flatnonzero(block == k)
        if len(test) == 0:
            continue
        t0, t1 = int(t[test].min()), int(e[test].max())
        candidates = block < k
        keep = candidates & (e < t0 - embargo_ms)
        train = np.flatnonzero(keep)
        folds.append(
            PurgedFold(
                index=len(folds) + 1,
                train=train,
                test=test,
                purged=int(candidates.sum() - keep.sum()),
                test_start_ms=t0,
                test_end_ms=t1,
                train_start_ms=int(t[train].min()) if len(train) else None,
                train_end_ms=int(e[train].max()) if len(train) else None,
            )
        )
    return folds


def holdout_split(
    rows: npt.ArrayLike,
    times_ms: npt.ArrayLike,
    label_end_ms: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    fraction: float,
    embargo_ms: int,
) -> tuple[IntArray, IntArray]:
    """Split the row indices ``rows`` into ``(fit, held_out)``: the last ``fraction`` of their groups
    (in time order, as :func:`purged_walk_forward` orders them) held out, the fit rows purged and
    embargoed against the held-out span. ``times_ms``, ``label_end_ms`` and ``groups`` are indexed by
    ``rows``. Returns two empty-or-not index arrays (the held-out part empty for fewer than two
    groups).

    Raises
    ------
    ValueError
        For ``fraction`` outside (0, 1), ``embargo_ms < 0``, or inputs as :func:`purged_walk_forward`.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), was {fraction}")
    if embargo_ms < 0:
        raise ValueError(f"embargo_ms must be >= 0, was {embargo_ms}")
    r = np.asarray(rows, dtype=np.int64)
    t = np.asarray(times_ms, dtype=np.int64)[r]
    e = np.asarray(label_end_ms, dtype=np.int64)[r]
    g = np.asarray(groups)[r]
    _validate(t, e, g)
    empty = np.empty(0, dtype=np.int64)
    if len(np.unique(g)) < 2:
        return r, empty
    # Blocks of 1/fraction parts: the last one (at least one group) is held out.
    n = max(2, round(1.0 / fraction))
    block = _blocks(t, g, n)
    held = block == block.max()
    if held.all():
        return r, empty
    t0 = int(t[held].min())
    fit = ~held & (e < t0 - embargo_ms)
    return r[fit], r[held]
