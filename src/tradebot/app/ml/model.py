"""The model adapter (issue 16, item 3): ``tradebot ml train``'s folder loaded as a
:class:`~tradebot.core.ml.predictor.Predictor` for the engine.

A model folder holds one sub-folder per model (:data:`MODEL_KINDS`), each with ``model.txt``
(LightGBM's text format) and ``card.json`` (:data:`CARD_FORMAT`, written by
:func:`tradebot.app.ml.train.write_models`). :func:`load_predictor` reads the models present (at
least one) and refuses, with a :class:`ModelError` naming the file and the mismatch, anything it
cannot trust: a card of another format or model, a model file whose SHA-256 is not the card's, a file
LightGBM cannot parse, features other than the ones the engine will compute
(:func:`~tradebot.core.ml.feature_names` of the configured stream timeframes), another LightGBM major
version, another kind of model than the name says, or models of different training runs.

:class:`LightGbmPredictor` then predicts with LightGBM's own ``Booster.predict`` (one call per model
for all the rows, one thread): a classifier's raw score through the card's Platt scaling, a
regressor's prediction as it is, and for ``additional_return`` the probabilities, read from the
card's conditional table (:func:`tradebot.app.ml.train.conditional_table`), that the realized
further return falls below the take-profit threshold or above the trail threshold.

Cost (``benchmarks/ml_inference.py``, LightGBM 4.7, 100 trees of 15 leaves, 1 to 3 rows, on a shared
2-core machine): 40–48 µs per ``Booster.predict`` call, about 0.23 ms per
:meth:`LightGbmPredictor.predict` with the four models — once per rebalance-clock close. Most of a
``Booster.predict`` call is LightGBM's Python wrapper and the C API's per-call set-up (a predictor
built per call); the C "fast" single-row API, set up once, takes about 2.6 µs, which is not worth
going around the supported wrapper for at one call an hour.
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from lightgbm.basic import LightGBMError

from tradebot.app.ml.fast_predict import RowPredictor
from tradebot.core.ml import Platt, feature_names
from tradebot.core.ml.predictor import MlThresholds, PositionPrediction
from tradebot.errors import ConfigError

__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "CONDITIONAL_BINS",
    "CONDITIONAL_LEVELS",
    "MODEL_FILE",
    "MODEL_KINDS",
    "MODEL_OUTPUTS",
    "LightGbmPredictor",
    "ModelError",
    "load_predictor",
]

#: ``format`` of a model card; a card of any other format is refused.
CARD_FORMAT = "tradebot-ml-model/1"
CARD_FILE = "card.json"
MODEL_FILE = "model.txt"
#: The models a folder may hold, by name (the sub-folder), with their kind. The engine's decisions
#: use ``recovered``, ``additional_return`` and ``scale_in_success``; ``time_to_best`` is recorded.
MODEL_KINDS: dict[str, str] = {
    "recovered": "classifier",
    "additional_return": "regressor",
    "scale_in_success": "classifier",
    "time_to_best": "regressor",
}
#: The :meth:`~tradebot.core.ml.predictor.PositionPrediction.to_dict` output of each model.
MODEL_OUTPUTS: dict[str, str] = {
    "recovered": "recovered",
    "additional_return": "additional_return",
    "scale_in_success": "scale_in_success",
    "time_to_best": "time_to_best_ms",
}
#: Bins of a conditional table (cut at the deciles of the predictions) and its quantile levels.
CONDITIONAL_BINS = 10
CONDITIONAL_LEVELS: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21))

FloatArray = npt.NDArray[np.float64]


class ModelError(ConfigError):
    """A model folder the engine must not use (missing, damaged, or made for other features or
    another LightGBM). A :class:`~tradebot.errors.ConfigError`: the process refuses to start (the
    CLI exits with code 2). The message names the file and the mismatch."""


@dataclass(frozen=True, slots=True)
class _Conditional:
    """A regressor's conditional table: ``actual[b]`` are the quantiles (at ``levels``) of the
    realized label of the out-of-fold rows whose prediction fell in bin ``b`` (plain floats: it is
    read a few values at a time, where numpy's per-call overhead would dominate)."""

    edges: tuple[float, ...]  # (9,), non-decreasing
    levels: tuple[float, ...]  # (21,), 0 … 1
    actual: tuple[tuple[float, ...], ...]  # (10, 21), each row non-decreasing

    def row(self, prediction: float) -> tuple[float, ...]:
        """The quantiles of the prediction's bin (``bisect_right``: an edge belongs to the upper bin,
        as ``numpy.searchsorted(edges, p, side="right")`` in the training)."""
        return self.actual[bisect_right(self.edges, prediction)]

    def below(self, prediction: float, x: float) -> float:
        """P(actual < x | the prediction's bin), linear between the bin's quantiles."""
        q = self.row(prediction)
        if x <= q[0]:
            return 0.0
        if x > q[-1]:
            return 1.0
        return self._between(q, bisect_left(q, x), x)  # q[i-1] < x <= q[i]

    def above(self, prediction: float, x: float) -> float:
        """P(actual > x | the prediction's bin) = 1 − P(actual <= x), linear likewise."""
        q = self.row(prediction)
        if x < q[0]:
            return 1.0
        if x >= q[-1]:
            return 0.0
        return 1.0 - self._between(q, bisect_right(q, x), x)  # q[j-1] <= x < q[j]

    def _between(self, q: tuple[float, ...], i: int, x: float) -> float:
        lo, hi = q[i - 1], q[i]
        a, b = self.levels[i - 1], self.levels[i]
        return a + (b - a) * (x - lo) / (hi - lo)


@dataclass(frozen=True, slots=True)
class _Model:
    name: str
    kind: str
    booster: lgb.Booster
    platt: Platt | None  # classifiers
    conditional: _Conditional | None  # additional_return, when its card has the table
    rows: RowPredictor  # raw scores (classifiers) or values, row by row


class LightGbmPredictor:
    """The engine's :class:`~tradebot.core.ml.predictor.Predictor` over LightGBM text models; built by
    :func:`load_predictor`.

    Attributes
    ----------
    name
        Model name for the records (``"position-ml"`` by default).
    version
        The first 16 hex digits of :attr:`card_sha256`.
    features
        The feature names, in the order of :func:`~tradebot.core.ml.feature_names`.
    horizon_ms
        The label horizon the models were trained on, ms (the cards' ``horizon.ms``).
    models
        The outputs it gives, as named by
        :meth:`~tradebot.core.ml.predictor.PositionPrediction.to_dict` (:data:`MODEL_OUTPUTS` of the
        models present).
    card_sha256
        SHA-256 (hex) identifying the folder's models: over each model in name order, its name
        (UTF-8), a NUL byte, the length of its ``card.json`` in bytes (decimal ASCII), a NUL byte and
        the ``card.json`` bytes. A card holds its model file's SHA-256, so this covers the trees too.
    cards
        The cards read, by model name.
    thresholds
        The take-profit and trail thresholds the conditional confidences are computed at.
    """

    def __init__(
        self,
        models: Sequence[_Model],
        *,
        features: Sequence[str],
        cards: Mapping[str, dict[str, Any]],
        card_sha256: str,
        horizon_ms: int,
        thresholds: MlThresholds,
        name: str,
    ) -> None:
        self.name = name
        self.features: tuple[str, ...] = tuple(features)
        self.horizon_ms = horizon_ms
        self.models: frozenset[str] = frozenset(MODEL_OUTPUTS[m.name] for m in models)
        self.cards: dict[str, dict[str, Any]] = dict(cards)
        self.card_sha256 = card_sha256
        self.version = card_sha256[:16]
        self.thresholds = thresholds
        self._models = tuple(models)

    def __repr__(self) -> str:
        return f"LightGbmPredictor(name={self.name!r}, version={self.version!r}, models={sorted(self.cards)})"

    def _matrix(self, rows: Sequence[Mapping[str, float | None]]) -> FloatArray:
        out = np.empty((len(rows), len(self.features)), dtype=np.float64)
        for i, row in enumerate(rows):
            try:
                out[i] = [math.nan if (v := row[f]) is None else v for f in self.features]
            except KeyError:
                missing = [f for f in self.features if f not in row]
                raise ValueError(f"feature row {i} lacks {', '.join(missing)}") from None
        return out

    def predict(self, rows: Sequence[Mapping[str, float | None]]) -> list[PositionPrediction]:
        """Return one :class:`~tradebot.core.ml.predictor.PositionPrediction` per feature row, in order.

        Parameters
        ----------
        rows
            Feature rows, each with every name of :attr:`features` (``None`` or NaN = missing, which
            LightGBM sends down each split's default branch); extra keys are ignored.

        Returns
        -------
        list[PositionPrediction]
            ``recovered`` and ``scale_in_success``: calibrated probabilities in [0, 1] (Platt on the
            raw log-odds: ``1 / (1 + exp(−(a·raw + b)))``); ``additional_return``: the predicted median
            further return (fraction) with ``below_confidence`` = P(realized <
            ``take_profit_return_below``) and ``above_confidence`` = P(realized >
            ``trail_return_above``) given the prediction's bin (``None`` without a conditional
            table); ``time_to_best_ms``: ms, at least 0. ``None`` for a model the folder lacks.
            Deterministic: the same rows give the same floats.

        Raises
        ------
        ValueError
            If a row lacks a feature (the message names them).
        """
        if not rows:
            return []
        x = self._matrix(rows)
        values: dict[str, list[float]] = {}
        below: list[float | None] = [None] * len(rows)
        above: list[float | None] = [None] * len(rows)
        for m in self._models:
            pred = model_values(m, x)
            values[m.name] = pred
            if m.conditional is not None:
                t = self.thresholds
                below = [m.conditional.below(p, t.take_profit_return_below) for p in pred]
                above = [m.conditional.above(p, t.trail_return_above) for p in pred]

        def col(name: str, i: int) -> float | None:
            v = values.get(name)
            return None if v is None else v[i]

        return [
            PositionPrediction(
                recovered=col("recovered", i),
                additional_return=col("additional_return", i),
                time_to_best_ms=col("time_to_best", i),
                scale_in_success=col("scale_in_success", i),
                below_confidence=below[i],
                above_confidence=above[i],
            )
            for i in range(len(rows))
        ]


def model_values(m: _Model, x: FloatArray) -> list[float]:
    """One model's outputs for the rows ``x`` (shape ``(n, features)``, NaN = missing): a classifier's
    calibrated probability (its raw score through the card's Platt scaling), a regressor's prediction
    (``time_to_best`` at least 0), in the label's unit."""
    if m.platt is not None:
        platt = m.platt
        return [_platt(platt, r) for r in m.rows(x)]
    pred = m.rows(x)
    return [max(v, 0.0) for v in pred] if m.name == "time_to_best" else pred


def _platt(platt: Platt, raw: float) -> float:
    # Platt.__call__ on one float: math instead of numpy, whose per-call overhead is most of the cost
    # for 1 to 3 rows. The same formula and clip; math.exp and numpy's exp may differ in the last bit.
    z = min(500.0, max(-500.0, platt.a * raw + platt.b))
    return 1.0 / (1.0 + math.exp(-z))


def _major(version: object) -> int | None:
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return None


def _feature_mismatch(got: Sequence[str], expected: Sequence[str]) -> str | None:
    if list(got) == list(expected):
        return None
    missing = [f for f in expected if f not in got]
    unexpected = [f for f in got if f not in expected]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected)}")
    if not parts:
        if len(got) != len(expected):
            return f"same names, repeated ({len(got)} columns for {len(expected)} names)"
        i = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
        return f"same names, other order (column {i} is {got[i]!r}, expected {expected[i]!r})"
    return "; ".join(parts)


def _conditional(card: dict[str, Any], where: str) -> _Conditional | None:
    table = card.get("conditional")
    if table is None:
        return None
    try:
        edges = np.asarray(table["edges"], dtype=np.float64)
        levels = np.asarray(table["quantiles"], dtype=np.float64)
        actual = np.asarray(table["actual"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: conditional table is malformed ({exc!r})") from None
    ok = (
        edges.ndim == 1
        and levels.ndim == 1
        and actual.shape == (len(edges) + 1, len(levels))
        and len(levels) >= 2
        and levels[0] == 0.0
        and levels[-1] == 1.0
        and bool(np.all(np.diff(levels) > 0))
        and bool(np.all(np.diff(edges) >= 0))
        and bool(np.all(np.diff(actual, axis=1) >= 0))
        and bool(np.all(np.isfinite(actual)))
    )
    if not ok:
        raise ModelError(
            f"{where}: conditional table is malformed (edges {edges.shape}, quantiles {levels.shape}, "
            f"actual {actual.shape}; expected non-decreasing edges, levels 0 … 1 and a non-decreasing "
            "row of quantiles per bin)"
        )
    return _Conditional(
        edges=tuple(float(v) for v in edges),
        levels=tuple(float(v) for v in levels),
        actual=tuple(tuple(float(v) for v in row) for row in actual),
    )


def _objective(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("objective="):
            return line.removeprefix("objective=").strip()
        if line.startswith("Tree="):
            return None
    return None


def _load_one(sub: Path, name: str, expected: tuple[str, ...]) -> tuple[_Model, dict[str, Any], bytes]:
    card_path, model_path = sub / CARD_FILE, sub / MODEL_FILE
    for p in (card_path, model_path):
        if not p.is_file():
            raise ModelError(f"model {name!r}: {str(p)!r} does not exist (need {CARD_FILE} and {MODEL_FILE})")
    where = repr(str(card_path))
    card_bytes = card_path.read_bytes()
    try:
        card = json.loads(card_bytes.decode("utf-8"))
    except ValueError as exc:
        raise ModelError(f"{where} is not readable JSON: {exc}") from None
    if not isinstance(card, dict):
        raise ModelError(f"{where}: expected a JSON object, was {type(card).__name__}")
    if card.get("format") != CARD_FORMAT:
        raise ModelError(f"{where}: card format {card.get('format')!r}, expected {CARD_FORMAT!r}")
    if card.get("model") != name:
        raise ModelError(f"{where}: the card is of model {card.get('model')!r}, expected {name!r}")
    kind = MODEL_KINDS[name]
    if card.get("kind") != kind:
        raise ModelError(f"{where}: kind {card.get('kind')!r}, expected {kind!r} for model {name!r}")
    model_bytes = model_path.read_bytes()
    digest = hashlib.sha256(model_bytes).hexdigest()
    if card.get("model_sha256") != digest:
        raise ModelError(
            f"{str(model_path)!r}: SHA-256 is {digest[:16]}…, its card says "
            f"{str(card.get('model_sha256'))[:16]}… (the model file changed or is damaged)"
        )
    versions = card.get("versions")
    trained = versions.get("lightgbm") if isinstance(versions, dict) else None
    if _major(trained) is None or _major(trained) != _major(lgb.__version__):
        raise ModelError(
            f"{where}: trained with LightGBM {trained!r}, this is LightGBM {lgb.__version__} "
            "(another major version: retrain the models)"
        )
    features = card.get("features")
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ModelError(f"{where}: 'features' must be a list of names, was {features!r}")
    mismatch = _feature_mismatch(features, expected)
    if mismatch:
        raise ModelError(
            f"{where}: the model's features are not the engine's ({len(features)} in the card, "
            f"{len(expected)} expected): {mismatch}"
        )
    try:
        text = model_bytes.decode("utf-8")
        booster = lgb.Booster(model_str=text)
    except (UnicodeDecodeError, LightGBMError) as exc:
        raise ModelError(f"{str(model_path)!r}: LightGBM cannot read it: {exc}") from None
    mismatch = _feature_mismatch(booster.feature_name(), features)
    if mismatch:
        raise ModelError(f"{str(model_path)!r}: the booster's features are not its card's: {mismatch}")
    objective = _objective(text) or ""
    if (kind == "classifier") != objective.startswith("binary"):
        raise ModelError(f"{str(model_path)!r}: objective {objective!r} does not fit a {kind}")
    platt = None
    if kind == "classifier":
        cal = card.get("calibration")
        try:
            if not isinstance(cal, dict) or cal.get("method") != "platt":
                raise TypeError
            platt = Platt(float(cal["a"]), float(cal["b"]))
        except (KeyError, TypeError, ValueError):
            raise ModelError(
                f"{where}: a classifier needs a Platt calibration {{a, b}}, was {cal!r}"
            ) from None
        if not (math.isfinite(platt.a) and math.isfinite(platt.b)):
            raise ModelError(f"{where}: Platt calibration a={platt.a}, b={platt.b} is not finite")
    conditional = _conditional(card, where) if name == "additional_return" else None
    rows = RowPredictor(booster, raw_score=platt is not None)
    return _Model(name, kind, booster, platt, conditional, rows), card, card_bytes


def _one_run(folder: Path, cards: Mapping[str, dict[str, Any]]) -> int:
    """Return the cards' common horizon (ms); refuse cards of different datasets or horizons (models
    left over from an earlier ``tradebot ml train`` into the same folder)."""
    horizons: dict[str, int] = {}
    for name, card in cards.items():
        h = card.get("horizon")
        ms = h.get("ms") if isinstance(h, dict) else None
        if isinstance(ms, bool) or not isinstance(ms, int) or ms <= 0:
            raise ModelError(
                f"{str(folder / name / CARD_FILE)!r}: 'horizon.ms' must be an int > 0, was {ms!r}"
            )
        horizons[name] = ms
    datasets = {n: str(c.get("dataset_sha256")) for n, c in cards.items()}
    for key, values in (
        ("dataset_sha256", datasets),
        ("horizon.ms", {n: str(v) for n, v in horizons.items()}),
    ):
        if len(set(values.values())) > 1:
            listed = ", ".join(f"{n}: {str(v)[:16]}" for n, v in sorted(values.items()))
            raise ModelError(
                f"model folder {str(folder)!r} mixes models of different training runs ({key}: {listed}); "
                "train them again into an empty folder"
            )
    return next(iter(horizons.values()))


def load_folder(
    folder: Path, expected: tuple[str, ...]
) -> tuple[list[_Model], dict[str, dict[str, Any]], dict[str, bytes], int]:
    """Load and check every model of a ``tradebot ml train`` folder (:func:`load_predictor`'s checks)
    against the feature names ``expected``; return ``(models, cards, card bytes, horizon ms)``, the
    models in :data:`MODEL_KINDS` order, cards and bytes by model name.

    Raises
    ------
    ModelError
        As :func:`load_predictor`.
    """
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ModelError(f"model folder {str(folder)!r} {what}")
    models: list[_Model] = []
    cards: dict[str, dict[str, Any]] = {}
    card_bytes: dict[str, bytes] = {}
    for model_name in MODEL_KINDS:
        sub = folder / model_name
        if not sub.exists():
            continue
        model, card, raw = _load_one(sub, model_name, expected)
        models.append(model)
        cards[model_name] = card
        card_bytes[model_name] = raw
    if not models:
        raise ModelError(
            f"model folder {str(folder)!r} has no model (expected one of {', '.join(MODEL_KINDS)}, "
            f"each a folder with {CARD_FILE} and {MODEL_FILE})"
        )
    return models, cards, card_bytes, _one_run(folder, cards)


def load_predictor(
    folder: Path,
    *,
    stream_timeframes: Sequence[str],
    thresholds: MlThresholds,
    name: str = "position-ml",
) -> LightGbmPredictor:
    """Load the models of a ``tradebot ml train`` folder as the engine's predictor.

    Parameters
    ----------
    folder
        The ``--out`` folder of ``tradebot ml train``: ``<model>/card.json`` and ``<model>/model.txt``
        for each model of :data:`MODEL_KINDS` it has (at least one).
    stream_timeframes
        The stream timeframes the engine computes features for, in order; the cards' features must be
        exactly :func:`~tradebot.core.ml.feature_names` of them.
    thresholds
        The decision thresholds; ``take_profit_return_below`` and ``trail_return_above`` are the
        points of ``additional_return``'s conditional confidences.
    name
        :attr:`LightGbmPredictor.name`.

    Returns
    -------
    LightGbmPredictor

    Raises
    ------
    ModelError
        Naming the folder or file and the mismatch, when the folder does not exist or holds no model;
        a model sub-folder lacks ``card.json`` or ``model.txt``; a card is not JSON or not of
        :data:`CARD_FORMAT`, names another model or kind; a model file's SHA-256 is not its card's;
        LightGBM cannot parse it; the card's features are not the expected ones (missing and
        unexpected names, or the same names in another order) or not the booster's; the card was
        written by another LightGBM major version; a classifier's objective is not binary or its Platt
        calibration is missing; the conditional table is malformed; the cards' ``horizon.ms`` is not
        an int > 0, or the cards are of different datasets or horizons (a folder mixing training
        runs).
    """
    expected = feature_names(stream_timeframes)
    models, cards, card_bytes, horizon_ms = load_folder(folder, expected)
    h = hashlib.sha256()
    for model_name in sorted(card_bytes):
        raw = card_bytes[model_name]
        h.update(model_name.encode("utf-8") + b"\0" + str(len(raw)).encode("ascii") + b"\0" + raw)
    return LightGbmPredictor(
        models,
        features=expected,
        cards=cards,
        card_sha256=h.hexdigest(),
        horizon_ms=horizon_ms,
        thresholds=thresholds,
        name=name,
    )
