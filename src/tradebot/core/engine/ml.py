"""The engine's learned position management (issue 16): features, predictions, decisions, outcomes.

:class:`MlStage` runs on each rebalance-clock close, after the overlay's period rules, for every
open managed position:

1. the features of :func:`tradebot.core.ml.position_features`, computed as ``tradebot ml dataset``
   computes them (a :class:`~tradebot.core.ml.MarketTracker` per symbol on the clock candles, the
   trade's record, the overlay's stop, the streams' states and confidences, the portfolio's
   exposure at the clock's equity snapshot);
2. one call of the injected :class:`~tradebot.core.ml.predictor.Predictor` for all of them;
3. :func:`~tradebot.core.ml.predictor.decide` with ``[management.ml]``'s thresholds, applied through
   :meth:`~tradebot.core.management.PositionManager.ml_apply` (below the confidence threshold the
   rules decide alone; the risk limits clip the managed targets after it, as for any rule);
4. one :class:`~tradebot.core.domain.MlPositionPrediction` record per prediction, linked to the
   position event it caused; when the trade closes, one
   :class:`~tradebot.core.domain.MlPredictionOutcome` per prediction of it.

Actual outcomes are observed on the clock candles after the prediction, within the model's horizon
and while the trade is open (the trade's end censors them; ``outcome["censored"]`` says so):
``recovered`` (a losing row's high reached entry × (1 + 2 fee) before a low reached the stop at the
prediction; a candle reaching both counts as stopped, as the labels do), ``additional_return``
(highest high / mark − 1), ``scale_in_return`` (an add at the mark with fees, sold at the stop if a
low reached it, else at the exit price or the horizon's close). ``prediction_accuracy`` is the
share of the classifiers' calls (probability >= 0.5 ⇔ true) that were right. Pure, like the rest of
the core.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tradebot.core.domain import (
    Candle,
    EquitySnapshot,
    MlPositionPrediction,
    MlPredictionOutcome,
    StreamState,
)
from tradebot.core.management import Action, PositionManager
from tradebot.core.ml import (
    FeatureConfig,
    MarketState,
    MarketTracker,
    PositionState,
    StreamReading,
    feature_names,
    position_features,
    recovery_level,
)
from tradebot.core.ml.predictor import MlThresholds, PositionPrediction, Predictor, decide
from tradebot.core.portfolio.ledger import Ledger
from tradebot.core.signals.book import SignalBook

__all__ = ["ML_PREDICTION_NAMESPACE", "MlStage", "ml_prediction_id"]

#: Namespace of the deterministic prediction ids (uuid5 of ``"<run id>:ml:<seq>"``).
ML_PREDICTION_NAMESPACE = uuid.UUID("6f1d2b7e-3c41-5a8e-9b0d-0d0000000016")

_STATE_SKIP = frozenset({"config", "period"})


def ml_prediction_id(run_id: str, seq: int) -> uuid.UUID:
    """Return the deterministic UUID of prediction ``seq`` of run ``run_id`` (uuid5, pure)."""
    return uuid.uuid5(ML_PREDICTION_NAMESPACE, f"{run_id}:ml:{seq}")


@dataclass(slots=True, kw_only=True)
class _Pending:
    # One prediction of an open trade whose outcome is still being observed.
    prediction_id: str
    trade_id: str
    time_ms: int
    horizon_end_ms: int
    mark: float
    stop: float | None
    recover_level: float | None  # entry x (1 + 2 fee) for a losing row, else None
    prediction: dict[str, float | None]
    high: float
    recovered: bool | None = None
    stopped: bool = False
    last_close: float = 0.0
    observed_until_ms: int = 0


class MlStage:
    """Features → predictor → decisions → records, on each rebalance-clock close (module docstring).

    Parameters
    ----------
    predictor
        The models (features in, predictions out); its ``features`` must equal
        :func:`~tradebot.core.ml.feature_names` of ``stream_timeframes``.
    thresholds
        Decision thresholds (``[management.ml]``).
    run_id
        The run's id (deterministic prediction ids).
    symbols
        The engine's symbols, in their configured order (rows of one close come in that order).
    stream_timeframes
        The streams' timeframes (``("1h", "4h", "1d")``), the feature columns' order.
    horizon_ms
        The models' label horizon, ms (> 0): how long an outcome is observed.
    fee_rate
        Taker fee, fraction (the recovery level and the scale-in return).

    Raises
    ------
    ValueError
        If the predictor's features are not the engine's feature columns (both lists named), or
        ``horizon_ms`` is not > 0.
    """

    def __init__(
        self,
        predictor: Predictor,
        thresholds: MlThresholds,
        *,
        run_id: str,
        symbols: Sequence[str],
        stream_timeframes: Sequence[str],
        horizon_ms: int,
        fee_rate: float,
        features: FeatureConfig | None = None,
    ) -> None:
        expected = feature_names(stream_timeframes)
        if tuple(predictor.features) != expected:
            raise ValueError(
                f"the model's features {list(predictor.features)} are not this configuration's "
                f"{list(expected)}"
            )
        if not horizon_ms > 0:
            raise ValueError(f"horizon_ms must be > 0, was {horizon_ms!r}")
        self.predictor = predictor
        self.thresholds = thresholds
        self.run_id = run_id
        self.symbols = tuple(symbols)
        self.stream_timeframes = tuple(stream_timeframes)
        self.horizon_ms = int(horizon_ms)
        self.fee_rate = float(fee_rate)
        self.trackers = {s: MarketTracker(features) for s in self.symbols}
        self.market: dict[str, MarketState | None] = dict.fromkeys(self.symbols)
        self.entry_volume: dict[str, float | None] = dict.fromkeys(self.symbols)
        self.pending: dict[str, list[_Pending]] = {s: [] for s in self.symbols}
        self.seq = 0
        self.n_predictions = 0

    # ------------------------------------------------------------------ market features
    def warm_up(self, candles: Iterable[Candle], clock: str) -> None:
        """Feed the native warm-up candles of the rebalance timeframe ``clock`` (others are ignored)."""
        native = sorted(
            (c for c in candles if str(c.timeframe) == clock and c.symbol in self.trackers),
            key=lambda c: (c.symbol, c.open_time_ms),
        )
        for c in native:
            self.on_clock_candle(c.symbol, c)

    def on_clock_candle(self, sym: str, candle: Candle) -> None:
        """A rebalance-clock candle of ``sym`` closed: update its market features and the outcomes
        being observed. A candle not after the last one is ignored (the warm-up's overlap)."""
        tracker = self.trackers[sym]
        last = self.market[sym]
        close_ms = candle.open_time_ms + candle.timeframe.ms
        if last is not None and close_ms <= last.close_ms:
            return
        self.market[sym] = tracker.update(candle)
        for p in self.pending[sym]:
            if close_ms > p.horizon_end_ms or close_ms <= p.time_ms:
                continue
            if candle.high > p.high:
                p.high = candle.high
            if p.stop is not None and not p.stopped and candle.low <= p.stop:
                p.stopped = True
            if p.recover_level is not None and p.recovered is None:
                if p.stopped:
                    p.recovered = False
                elif candle.high >= p.recover_level:
                    p.recovered = True
            p.last_close = candle.close
            p.observed_until_ms = close_ms

    def on_open(self, sym: str) -> None:
        """A position of ``sym`` opened: remember the volume of the last clock candle known."""
        m = self.market[sym]
        self.entry_volume[sym] = m.volume if m is not None else None

    # ------------------------------------------------------------------ the clock
    def step(
        self,
        snap: EquitySnapshot,
        ledger: Ledger,
        book: SignalBook,
        managers: Mapping[str, PositionManager],
        candles: Mapping[str, Candle],
        on_actions: Callable[[str, Sequence[Action]], list[Any]],
    ) -> list[Any]:
        """Predict for every open managed position at ``snap.time_ms`` and act on the decisions.

        Parameters
        ----------
        snap
            The clock's equity snapshot (positions, marks, equity).
        ledger, book, managers
            The engine's parts, read only (the managers are changed through ``ml_apply``).
        candles
            The clock candle of each symbol that closed at ``snap.time_ms``.
        on_actions
            The engine's recorder of overlay actions (returns the position events it made).

        Returns
        -------
        list
            Position events of the actions and one :class:`MlPositionPrediction` per prediction.
        """
        t = snap.time_ms
        equity = float(snap.equity)
        held = {s: q for s, q in snap.positions.items() if q > 0}
        if not held:
            return []
        exposure = float(sum(q * snap.marks[s] for s, q in held.items()))
        readings: dict[str, dict[str, StreamReading]] = {}
        rows: list[dict[str, Any]] = []
        todo: list[tuple[str, str, PositionState]] = []
        for sym in self.symbols:
            qty = held.get(sym)
            mgr = managers[sym]
            trade = ledger.open_trade(sym) if qty is not None else None
            if qty is None or trade is None or sym not in candles or not mgr.is_open or mgr.multiplier <= 0:
                continue
            if not readings:
                for view in book.states():
                    readings.setdefault(view.symbol, {})[str(view.timeframe)] = StreamReading(
                        view.state is StreamState.IN, view.confidence
                    )
            mark = float(snap.marks[sym])
            risk = trade.initial_risk_per_unit
            state = PositionState(
                time_ms=t,
                opened_ms=trade.opened_ms,
                mark=mark,
                avg_entry=float(trade.entry_avg_price),
                initial_risk=float(risk) if risk else None,
                stop=mgr.stop,
                mae_fraction=trade.mae_pct / 100,
                mfe_fraction=trade.mfe_pct / 100,
                trailing=mgr.trailing,
                position_fraction=float(qty) * mark / equity if equity > 0 else None,
                exposure_fraction=exposure / equity if equity > 0 else None,
                entry_volume=self.entry_volume[sym],
            )
            market = self.market[sym]
            if market is not None and market.known_ms > t:
                market = None
            rows.append(position_features(state, market, readings.get(sym, {}), self.stream_timeframes))
            todo.append((sym, trade.position_id, state))
        if not rows:
            return []
        predictions = self.predictor.predict(rows)
        if len(predictions) != len(rows):
            raise ValueError(f"the predictor returned {len(predictions)} predictions for {len(rows)} rows")
        out: list[Any] = []
        for (sym, trade_id, state), row, pred in zip(todo, rows, predictions, strict=True):
            out.extend(self._decide(sym, trade_id, state, row, pred, managers[sym], candles[sym], on_actions))
        return out

    def _decide(
        self,
        sym: str,
        trade_id: str,
        state: PositionState,
        row: dict[str, Any],
        pred: PositionPrediction,
        mgr: PositionManager,
        candle: Candle,
        on_actions: Callable[[str, Sequence[Action]], list[Any]],
    ) -> list[Any]:
        level = recovery_level(state.avg_entry, self.fee_rate)
        losing = state.mark < level
        can_scale_in, can_trail, can_take = mgr.ml_options(state.mark)
        decision = decide(
            pred,
            losing=losing,
            can_scale_in=can_scale_in,
            can_trail=can_trail,
            can_take_profit=can_take,
            thresholds=self.thresholds,
        )
        self.seq += 1
        self.n_predictions += 1
        pid = ml_prediction_id(self.run_id, self.seq)
        values = pred.to_dict()
        summary: dict[str, Any] = {
            "prediction_id": str(pid),
            "model": self.predictor.name,
            "version": self.predictor.version,
            **values,
            "recommended_action": decision.action,
            "confidence": decision.confidence,
            "reason": decision.reason,
        }
        actions = mgr.ml_apply(
            decision.action,
            candle,
            reason=decision.reason,
            take_fraction=self.thresholds.take_profit_fraction,
            prediction=summary,
        )
        out: list[Any] = on_actions(sym, actions) if actions else []
        # ml_apply attaches the prediction to all its actions, or to none (the rule's deferred add)
        event_id = next((r.event_id for r in out if getattr(r, "ml_prediction", None) is not None), None)
        if not actions:
            taken = "none"
        elif actions[0].ml_prediction is not None:
            taken = actions[0].event_type.value
        else:
            taken = f"rule {actions[0].event_type.value}"
        record = MlPositionPrediction(
            prediction_id=pid,
            model_name=self.predictor.name,
            model_version=self.predictor.version,
            prediction=values,
            position_event_id=event_id,
            trade_id=trade_id,
            confidence=decision.confidence,
            features=row,
            symbol=sym,
            time_ms=state.time_ms,
            recommended_action=decision.action,
            action_taken=taken,
        )
        self.pending[sym].append(
            _Pending(
                prediction_id=str(pid),
                trade_id=trade_id,
                time_ms=state.time_ms,
                horizon_end_ms=state.time_ms + self.horizon_ms,
                mark=state.mark,
                stop=state.stop,
                recover_level=level if losing else None,
                prediction=values,
                high=state.mark,
                last_close=state.mark,
                observed_until_ms=state.time_ms,
            )
        )
        return [*out, record]

    # ------------------------------------------------------------------ outcomes
    def on_close(self, sym: str, time_ms: int, exit_price: float) -> list[MlPredictionOutcome]:
        """The trade of ``sym`` closed at ``time_ms`` (ms UTC) at ``exit_price`` (quote currency):
        return one outcome per prediction made about it (module docstring)."""
        pending, self.pending[sym] = self.pending[sym], []
        self.entry_volume[sym] = None
        fee = self.fee_rate
        out: list[MlPredictionOutcome] = []
        for p in pending:
            censored = time_ms < p.horizon_end_ms
            if p.stopped and p.stop is not None:
                end = p.stop
            elif censored:
                end = exit_price
                p.high = max(p.high, exit_price)
            else:
                end = p.last_close
            if p.recover_level is not None and p.recovered is None and censored and not p.stopped:
                p.recovered = exit_price >= p.recover_level
            recovered = None if p.recover_level is None else bool(p.recovered)
            scale_ret = end * (1 - fee) / (p.mark * (1 + fee)) - 1
            outcome: dict[str, Any] = {
                "recovered": recovered,
                "additional_return": p.high / p.mark - 1,
                "scale_in_return": scale_ret,
                "scale_in_success": scale_ret > 0,
                "exit_price": exit_price,
                "trade_closed_ms": time_ms,
                "observed_until_ms": min(time_ms, p.horizon_end_ms),
                "censored": censored,
            }
            calls: list[bool] = []
            rec_p = p.prediction.get("recovered")
            if recovered is not None and rec_p is not None:
                calls.append((rec_p >= 0.5) == recovered)
            sc_p = p.prediction.get("scale_in_success")
            if sc_p is not None:
                calls.append((sc_p >= 0.5) == outcome["scale_in_success"])
            ar = p.prediction.get("additional_return")
            if ar is not None:
                outcome["additional_return_error"] = ar - outcome["additional_return"]
            out.append(
                MlPredictionOutcome(
                    prediction_id=uuid.UUID(p.prediction_id),
                    trade_id=p.trade_id,
                    outcome_time_ms=time_ms,
                    outcome=outcome,
                    prediction_accuracy=sum(calls) / len(calls) if calls else None,
                )
            )
        return out

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Return the JSON-able state (trackers, entry volumes, outcomes being observed, counter)."""
        return {
            "seq": self.seq,
            "trackers": {s: _slots_state(t) for s, t in self.trackers.items()},
            "market": {s: asdict(m) if m is not None else None for s, m in self.market.items()},
            "entry_volume": dict(self.entry_volume),
            "pending": {s: [asdict(p) for p in ps] for s, ps in self.pending.items()},
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a :meth:`state` (same symbols and feature periods).

        Raises
        ------
        ValueError
            If a field is missing (named).
        """
        try:
            self.seq = int(data["seq"])
            for s, st in data["trackers"].items():
                _slots_restore(self.trackers[s], st)
            self.market = {s: MarketState(**m) if m is not None else None for s, m in data["market"].items()}
            self.entry_volume = dict(data["entry_volume"])
            self.pending = {s: [_Pending(**p) for p in ps] for s, ps in data["pending"].items()}
        except KeyError as e:
            raise ValueError(f"ml state misses field {e.args[0]!r}") from None


def _slots(obj: object) -> list[str]:
    names: list[str] = []
    for cls in type(obj).__mro__:
        slots = getattr(cls, "__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return [n for n in names if n not in _STATE_SKIP]


def _slots_state(obj: object) -> dict[str, Any]:
    # The state of an indicator object made of slots: numbers, None, deques and nested indicators.
    out: dict[str, Any] = {}
    for name in _slots(obj):
        value = getattr(obj, name, None)
        if isinstance(value, deque):
            out[name] = {"deque": list(value)}
        elif value is None or isinstance(value, bool | int | float):
            out[name] = value
        else:
            out[name] = {"slots": _slots_state(value)}
    return out


def _slots_restore(obj: object, data: Mapping[str, Any]) -> None:
    for name in _slots(obj):
        value = data[name]
        if isinstance(value, dict) and "deque" in value:
            current = getattr(obj, name)
            current.clear()
            current.extend(value["deque"])
        elif isinstance(value, dict) and "slots" in value:
            _slots_restore(getattr(obj, name), value["slots"])
        else:
            setattr(obj, name, value)
