"""The learned position management through the real Engine, with a fake predictor (issue 16, items 3–4).

Set-up of ``test_engine_management``: BTC bought at T0+1h, 49.01960 @ 102, initial stop 99, R 3; the
clock is 1h. The fake predictor returns fixed probabilities and records the feature rows it got.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from test_engine_management import (
    _SCALE_IN_MGMT,
    _SCALE_IN_PATH,
    ALL_OFF,
    BTC,
    ET,
    HOUR,
    QTY,
    T0,
    Market,
    bar,
    events,
    make_engine,
    of_type,
    orders,
)

from tradebot.core.domain import (
    MlPositionPrediction,
    MlPredictionOutcome,
    PositionEvent,
    Side,
    StreamState,
)
from tradebot.core.engine import Engine
from tradebot.core.management import ManagementConfig
from tradebot.core.ml import feature_names
from tradebot.core.ml.predictor import PositionPrediction


class FakePredictor:
    """Fixed outputs; keeps every feature row it was asked about."""

    name = "fake"
    version = "v1"
    features = feature_names(("1h",))
    horizon_ms = 4 * HOUR

    def __init__(self, **values: float | None) -> None:
        self.values = values
        self.models = frozenset(k for k, v in values.items() if v is not None)
        self.rows: list[dict[str, Any]] = []

    def predict(self, rows: Sequence[Mapping[str, float | None]]) -> list[PositionPrediction]:
        self.rows.extend(dict(r) for r in rows)
        return [PositionPrediction(**self.values) for _ in rows]


def _with_ml(**sections: dict[str, Any]) -> ManagementConfig:
    """``management(**sections)`` of test_engine_management plus ``[management.ml]`` with a model."""
    data: dict[str, Any] = {k: dict(v) for k, v in ALL_OFF.items()}
    for name, values in sections.items():
        data[name] = values if name == "indicators" else {"enabled": True, **values}
    data["ml"] = {"model": "fake-folder"}
    return ManagementConfig.from_dict(data)


def _entered(predictor: FakePredictor, mgmt: ManagementConfig) -> tuple[Engine, Market]:
    engine = make_engine([BTC], mgmt, predictor=predictor)
    warm = [bar(BTC, T0 - 3 * HOUR, 100, 101, 99, 100), bar(BTC, T0 - 2 * HOUR, 100, 102, 100, 101),
            bar(BTC, T0 - HOUR, 101, 103, 101, 102)]  # fmt: skip
    assert [s.state for s in engine.warm_up(warm)] == [StreamState.IN]
    market = Market(engine)
    assert orders(market.step(bar(BTC, T0, 102, 103, 101, 102))) == [(BTC, Side.BUY, QTY)]
    return engine, market


def test_a_confident_low_recovery_probability_exits_the_loser_and_records_the_prediction_and_outcome() -> (
    None
):
    fake = FakePredictor(recovered=0.1)
    engine, market = _entered(fake, _with_ml())
    # T0+2h close 101 < entry 102 × 1.002: a loser; recovery 0.1 < 0.30 with confidence 0.9 >= 0.60.
    out = market.run(BTC, T0 + HOUR, [(102, 102.5, 100.5, 101, 100), (101, 102, 100, 101.5, 100)])
    [exit_] = events(out[0], ET.EARLY_EXIT)
    assert exit_.trigger_reason == "model: recovery probability 0.100 < 0.3"
    assert (exit_.event_time_ms, exit_.price, exit_.size_after) == (T0 + 2 * HOUR, 101, 0)
    assert exit_.ml_prediction is not None
    assert exit_.ml_prediction["recommended_action"] == "exit"
    assert exit_.ml_prediction["confidence"] == 0.9
    assert orders(out[0]) == [(BTC, Side.SELL, QTY)]
    [pred] = of_type(out[0], MlPositionPrediction)
    assert pred.position_event_id == exit_.event_id
    assert (pred.symbol, pred.time_ms, pred.recommended_action, pred.action_taken) == (
        BTC, T0 + 2 * HOUR, "exit", "early_exit"
    )  # fmt: skip
    assert pred.prediction == {
        "recovered": 0.1, "additional_return": None, "time_to_best_ms": None, "scale_in_success": None
    }  # fmt: skip
    assert pred.trade_id == exit_.position_id
    assert pred.confidence == 0.9
    # The features are the dataset's, at the close: profit 101 / 102 − 1, R (101 − 102) / 3.
    assert fake.rows[0]["profit_fraction"] == 101 / 102 - 1
    assert fake.rows[0]["r_multiple"] == (101 - 102) / 3
    assert fake.rows[0]["held_ms"] == HOUR
    assert pred.features == fake.rows[0]
    # The exit fills at the next open, 101: the outcome is censored (the trade ended it) and the
    # loser did not recover (101 < 102 × 1.002).
    [outcome] = of_type(out[1], MlPredictionOutcome)
    assert outcome.prediction_id == pred.prediction_id
    assert outcome.outcome_time_ms == T0 + 2 * HOUR
    assert outcome.outcome["recovered"] is False
    assert outcome.outcome["censored"] is True
    assert outcome.outcome["exit_price"] == 101.0
    assert outcome.prediction_accuracy == 1.0  # it said "will not recover" (0.1 < 0.5), right
    assert engine.ledger.position(BTC) == 0
    assert engine.overlay.managers[BTC].locked


def test_below_the_confidence_threshold_the_rules_decide_alone() -> None:
    fake = FakePredictor(recovered=0.45)  # confidence 0.55 < 0.60
    _, market = _entered(fake, _with_ml())
    out = market.run(BTC, T0 + HOUR, [(102, 102.5, 100.5, 101, 100), (101, 102, 100, 101.5, 100)])
    assert events(out[0], ET.EARLY_EXIT) == []
    assert orders(out[0]) == []
    [pred] = of_type(out[0], MlPositionPrediction)
    assert (pred.recommended_action, pred.action_taken, pred.position_event_id) == ("rules", "none", None)
    assert pred.confidence == 0.55
    [again] = of_type(out[1], MlPositionPrediction)
    assert again.prediction_id != pred.prediction_id


def test_the_scale_in_model_holds_back_adds_it_doubts_and_makes_those_it_is_confident_about() -> None:
    mgmt = _with_ml(**_SCALE_IN_MGMT)
    # Without a confident model the rule's add at T0+3h (close 103.5 = +0.5 R, volume and momentum) stands.
    _, market = _entered(FakePredictor(scale_in_success=0.5), mgmt)
    out = market.run(BTC, T0 + HOUR, _SCALE_IN_PATH)
    [add] = events(out[1], ET.SCALE_IN)
    assert add.ml_prediction is None  # the rule's own add
    [pred] = of_type(out[1], MlPositionPrediction)
    assert (pred.recommended_action, pred.action_taken) == ("rules", "rule scale_in")
    # Confident that it fails (0.2): no add at all.
    _, market = _entered(FakePredictor(scale_in_success=0.2), mgmt)
    out = market.run(BTC, T0 + HOUR, _SCALE_IN_PATH)
    assert [e for o in out for e in events(o, ET.SCALE_IN)] == []
    assert [o for o in out if orders(o)] == []
    # Confident that it pays (0.9): the add at the first close the rule's limits allow (+0.5 R).
    _, market = _entered(FakePredictor(scale_in_success=0.9), mgmt)
    out = market.run(BTC, T0 + HOUR, _SCALE_IN_PATH)
    [add] = events(out[1], ET.SCALE_IN)
    assert add.ml_prediction is not None and add.ml_prediction["recommended_action"] == "scale_in"
    assert add.trigger_reason == "model: scale-in success probability 0.900 > 0.7"
    assert (add.size_before, add.size_after) == (QTY, QTY * 3 / 2)
    assert [e for o in out[2:] for e in events(o, ET.SCALE_IN)] == []  # once


def test_the_ml_state_survives_a_snapshot_and_restore() -> None:
    fake = FakePredictor(recovered=0.45)
    engine, market = _entered(fake, _with_ml())
    market.run(BTC, T0 + HOUR, [(102, 102.5, 100.5, 101, 100), (101, 102, 100, 101.5, 100)])
    snap = engine.snapshot()
    fresh = make_engine([BTC], _with_ml(), predictor=FakePredictor(recovered=0.45))
    fresh.restore(snap)
    assert fresh.ml is not None and engine.ml is not None
    assert fresh.ml.state() == engine.ml.state()
    nxt = bar(BTC, T0 + 3 * HOUR, 101.5, 102, 101, 101.5)
    a = [x for x in engine.handle(nxt) if isinstance(x, MlPositionPrediction | PositionEvent)]
    b = [x for x in fresh.handle(nxt) if isinstance(x, MlPositionPrediction | PositionEvent)]
    assert a == b and len(a) == 1


def test_a_configured_model_without_a_predictor_or_with_other_features_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"management\.ml\.model is 'fake-folder' but no predictor"):
        make_engine([BTC], _with_ml())
    other = FakePredictor(recovered=0.5)
    other.features = feature_names(("4h",))
    with pytest.raises(ValueError, match="stream_4h_in"):
        make_engine([BTC], _with_ml(), predictor=other)
