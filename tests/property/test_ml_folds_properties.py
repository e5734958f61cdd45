"""Invariants of the purged, embargoed walk-forward folds (tradebot.core.ml.folds) on random rows."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.ml import holdout_split, purged_walk_forward

H = 10


@st.composite
def rows(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Positions with a start and a few rows each, possibly overlapping in time.
    n_pos = draw(st.integers(1, 30))
    times: list[int] = []
    groups: list[str] = []
    for p in range(n_pos):
        start = draw(st.integers(0, 500))
        for j in range(draw(st.integers(1, 8))):
            times.append(start + j * draw(st.integers(1, 5)))
            groups.append(f"p{p:02d}")
    t = np.array(times, dtype=np.int64)
    return t, t + H, np.array(groups)


@settings(max_examples=200, deadline=None)
@given(rows(), st.integers(1, 6), st.integers(0, 20))
def test_folds_group_purge_and_embargo(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], k: int, emb: int
) -> None:
    t, e, g = data
    folds = purged_walk_forward(t, e, g, n_folds=k, embargo_ms=emb)
    assert len(folds) <= k
    seen_test: set[int] = set()
    for f in folds:
        train, test = set(f.train.tolist()), set(f.test.tolist())
        assert test and not (train & test)
        assert not (set(g[f.train]) & set(g[f.test]))  # a position never spans train and test
        assert not (seen_test & test)  # test sets are disjoint
        seen_test |= test
        t0, t1 = t[f.test].min(), e[f.test].max()
        assert (f.test_start_ms, f.test_end_ms) == (t0, t1)
        if len(f.train):
            # purge + embargo: every train label window ends more than the embargo before the test span
            assert e[f.train].max() < t0 - emb
            assert t[f.train].max() < t0  # walk-forward: only the past trains
            assert f.train_end_ms == e[f.train].max()
    # test blocks follow each other in time: each group's block is fixed, ordered by first time
    firsts = [min(t[g == x]) for f in folds for x in sorted(set(g[f.test]))]
    by_fold = [[min(t[g == x]) for x in set(g[f.test])] for f in folds]
    for a, b in itertools.pairwise(by_fold):
        assert max(a) <= min(b)
    assert len(firsts) == len(set(g[sorted(seen_test)]))


@settings(max_examples=200, deadline=None)
@given(rows(), st.sampled_from([0.2, 0.25, 0.5]), st.integers(0, 20))
def test_holdout_is_purged_grouped_and_later(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], frac: float, emb: int
) -> None:
    t, e, g = data
    rows_ = np.arange(len(t))
    fit, held = holdout_split(rows_, t, e, g, fraction=frac, embargo_ms=emb)
    assert not (set(fit.tolist()) & set(held.tolist()))
    if len(held):
        assert not (set(g[fit]) & set(g[held]))
        if len(fit):
            assert e[fit].max() < t[held].min() - emb
    else:
        assert len(fit) == len(t)
