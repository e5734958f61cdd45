"""RowPredictor: LightGBM's single-row C path gives exactly what Booster.predict gives, and a library
without that path falls back to Booster.predict."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

import tradebot.app.ml.fast_predict as fast_predict
from tradebot.app.ml.fast_predict import RowPredictor


def _booster(objective: str) -> lgb.Booster:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 5))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) ** 2
    label = (y > 0.3).astype(float) if objective == "binary" else y
    params = {"objective": objective, "num_leaves": 7, "verbose": -1, "deterministic": True, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(x, label), num_boost_round=40)


@pytest.mark.parametrize(
    ("objective", "raw"), [("binary", True), ("binary", False), ("regression_l1", False)]
)
def test_the_single_row_path_equals_booster_predict(objective: str, raw: bool) -> None:
    booster = _booster(objective)
    rows = RowPredictor(booster, raw_score=raw)
    assert rows.fast
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 2.0, size=(300, 5))
    x[rng.random(x.shape) < 0.2] = np.nan
    expected = booster.predict(x, raw_score=raw).tolist()
    assert rows(x) == expected  # exact, not approximately
    assert rows(x[5:6]) == [expected[5]]
    if not raw and objective == "binary":
        assert all(0.0 < v < 1.0 for v in expected)


def test_a_library_without_the_path_falls_back_to_booster_predict(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoFastPath:
        def __getattr__(self, name: str) -> Any:
            raise AttributeError(name)

    monkeypatch.setattr(fast_predict, "_library", NoFastPath)
    booster = _booster("binary")
    rows = RowPredictor(booster, raw_score=True)
    assert not rows.fast
    x = np.array([[0.1, -0.2, np.nan, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    assert rows(x) == booster.predict(x, raw_score=True).tolist()


def test_a_matrix_of_the_wrong_width_is_refused_naming_the_shape() -> None:
    rows = RowPredictor(_booster("regression_l1"), raw_score=False)
    with pytest.raises(ValueError, match=r"5 columns, was shape \(2, 4\)"):
        rows(np.zeros((2, 4)))
