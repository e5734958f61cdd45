"""``tradebot.app.ml.model``: a ``tradebot ml train`` folder loaded as the engine's predictor, its
predictions, and the refusals of a folder it cannot trust.

The models are trained once per module on a small synthetic dataset with the engine's own feature
names (streams on 1h and 4h): ``profit_fraction`` carries the signal (the classifiers' labels and
``additional_return`` rise with it), the other features are noise.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradebot.app.ml.files import manifest_path
from tradebot.app.ml.manifest import DATASET_FORMAT
from tradebot.app.ml.model import (
    CARD_FORMAT,
    MODEL_KINDS,
    LightGbmPredictor,
    ModelError,
    load_predictor,
)
from tradebot.app.ml.train import TrainOptions, load_dataset, train_models, write_models
from tradebot.core.ml import Platt, feature_names
from tradebot.core.ml.predictor import MlThresholds, PositionPrediction, Predictor
from tradebot.errors import ConfigError

HOUR = 3_600_000
STREAMS = ("1h", "4h")
FEATURES = feature_names(STREAMS)
THRESHOLDS = MlThresholds()


def _dataset(out: Path, *, positions: int = 120, rows_per: int = 6) -> Path:
    rng = np.random.default_rng(11)
    n = positions * rows_per
    pos = np.repeat(np.arange(positions), rows_per)
    t = (pos * 3 + np.tile(np.arange(rows_per), positions)) * HOUR
    x = np.repeat(rng.normal(size=positions), rows_per) + rng.normal(scale=0.3, size=n)
    losing = rng.random(n) < 0.6
    recovered = x + rng.normal(scale=0.7, size=n) > 0
    columns: dict[str, Any] = {
        "position_id": [f"p{p:04d}" for p in pos],
        "time_ms": pa.array(t, pa.int64()),
        "horizon_end_ms": pa.array(t + 24 * HOUR, pa.int64()),
        "horizon_complete": pa.array(np.ones(n, dtype=bool)),
    }
    for f in FEATURES:
        values = x if f == "profit_fraction" else rng.normal(size=n)
        if f == "rsi":  # a feature with missing values, as warming-up indicators have
            values = pa.array([None if i % 7 == 0 else float(v) for i, v in enumerate(values)])
        columns[f] = values
    columns["recovered"] = pa.array(
        [bool(r) if lo else None for r, lo in zip(recovered, losing, strict=True)]
    )
    columns["additional_return"] = 0.01 * np.maximum(x, 0) + 0.005 * rng.random(n)
    columns["scale_in_success"] = pa.array(x + rng.normal(scale=0.7, size=n) > 0.3)
    columns["time_to_best_ms"] = pa.array((rng.random(n) * 24 * HOUR).astype(np.int64), pa.int64())
    pq.write_table(pa.table(columns), out)
    manifest = {
        "format": DATASET_FORMAT,
        "config_hash": "synthetic",
        "features": list(FEATURES),
        "labels": ["recovered", "additional_return", "scale_in_success", "time_to_best_ms"],
        "label_definitions": {},
        "horizon": {"periods": 24, "timeframe": "1h", "ms": 24 * HOUR},
        "candle_range": {"start_ms": 0, "end_ms": int(t.max() + 25 * HOUR), "start": "-", "end": "-"},
        "parquet_file": out.name,
        "parquet_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }
    manifest_path(out).write_text(json.dumps(manifest), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four models of ``tradebot ml train`` on the synthetic dataset (folder, read-only)."""
    root = tmp_path_factory.mktemp("ml_model")
    data = load_dataset(_dataset(root / "ds.parquet"))
    options = TrainOptions(folds=3, seed=2, rounds=40)
    write_models(data, options, train_models(data, options), root / "models")
    assert sorted(p.name for p in (root / "models").iterdir() if p.is_dir()) == sorted(MODEL_KINDS)
    return root / "models"


@pytest.fixture
def models(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained folder, free to damage."""
    return Path(shutil.copytree(trained, tmp_path / "models"))


def _load(folder: Path, **kwargs: Any) -> LightGbmPredictor:
    return load_predictor(
        folder, stream_timeframes=STREAMS, thresholds=kwargs.pop("thresholds", THRESHOLDS), **kwargs
    )


def _rows() -> list[dict[str, float | None]]:
    rng = np.random.default_rng(5)
    rows: list[dict[str, float | None]] = []
    for pf in (-1.5, 0.0, 1.5):
        row: dict[str, float | None] = {f: float(rng.normal()) for f in FEATURES}
        row["profit_fraction"] = pf
        rows.append(row)
    rows.append(dict.fromkeys(FEATURES))  # every value missing
    return rows


def test_loads_the_folder_as_a_predictor_with_calibrated_probabilities(trained: Path) -> None:
    p = _load(trained)
    assert isinstance(p, Predictor)
    assert p.name == "position-ml" and p.features == FEATURES
    assert len(p.card_sha256) == 64 and p.version == p.card_sha256[:16]
    assert set(p.cards) == set(MODEL_KINDS) and all(c["format"] == CARD_FORMAT for c in p.cards.values())
    assert p.horizon_ms == 24 * HOUR
    assert p.models == set(PositionPrediction().to_dict())  # all four outputs
    out = p.predict(_rows())
    assert len(out) == 4
    for pred in out:
        for v in (pred.recovered, pred.scale_in_success, pred.below_confidence, pred.above_confidence):
            assert v is not None and 0.0 <= v <= 1.0
        assert pred.additional_return is not None and math.isfinite(pred.additional_return)
        assert pred.time_to_best_ms is not None and pred.time_to_best_ms >= 0.0
    # the signal: a higher profit fraction, a higher recovery and scale-in probability and return
    low, _mid, high = out[:3]
    assert high.recovered > low.recovered and high.scale_in_success > low.scale_in_success  # type: ignore[operator]
    assert high.additional_return > low.additional_return  # type: ignore[operator]
    assert p.predict([]) == []


def test_predictions_are_the_boosters_with_the_cards_platt_scaling(trained: Path) -> None:
    p = _load(trained)
    rows = _rows()
    x = np.array([[math.nan if r[f] is None else r[f] for f in FEATURES] for r in rows], dtype=np.float64)
    out = p.predict(rows)
    for name in ("recovered", "scale_in_success"):
        booster = lgb.Booster(model_file=str(trained / name / "model.txt"))
        cal = p.cards[name]["calibration"]
        expected = Platt(cal["a"], cal["b"])(booster.predict(x, raw_score=True))
        assert [getattr(o, name) for o in out] == pytest.approx(expected.tolist(), rel=1e-12, abs=1e-15)
    booster = lgb.Booster(model_file=str(trained / "additional_return" / "model.txt"))
    assert [o.additional_return for o in out] == [float(v) for v in booster.predict(x)]


def test_predictions_are_deterministic_across_calls_batches_and_reloads(trained: Path) -> None:
    rows = _rows()
    p = _load(trained)
    first = p.predict(rows)
    assert p.predict(rows) == first
    assert [p.predict([r])[0] for r in rows] == first  # one row at a time: the same floats
    q = _load(trained)
    assert q.predict(rows) == first and q.card_sha256 == p.card_sha256


def test_card_sha256_is_over_the_names_and_card_bytes_in_name_order(models: Path) -> None:
    h = hashlib.sha256()
    for name in sorted(MODEL_KINDS):
        raw = (models / name / "card.json").read_bytes()
        h.update(name.encode() + b"\0" + str(len(raw)).encode() + b"\0" + raw)
    before = _load(models)
    assert before.card_sha256 == h.hexdigest()
    card = models / "recovered" / "card.json"
    card.write_bytes(card.read_bytes() + b"\n")
    assert _load(models).card_sha256 != before.card_sha256


def test_a_folder_with_some_models_predicts_none_for_the_others(models: Path) -> None:
    shutil.rmtree(models / "time_to_best")
    shutil.rmtree(models / "recovered")
    p = _load(models)
    assert set(p.cards) == {"additional_return", "scale_in_success"}
    assert p.models == {"additional_return", "scale_in_success"}
    out = p.predict(_rows())
    assert all(o.recovered is None and o.time_to_best_ms is None for o in out)
    assert all(o.scale_in_success is not None and o.additional_return is not None for o in out)


def test_no_conditional_table_gives_no_confidence(models: Path) -> None:
    _edit_card(models, "additional_return", lambda c: c.pop("conditional"))
    out = _load(models).predict(_rows())
    assert all(o.below_confidence is None and o.above_confidence is None for o in out)
    assert all(o.additional_return is not None for o in out)


def test_the_conditional_confidence_is_monotone_in_the_thresholds(trained: Path) -> None:
    rows = _rows()
    below: list[list[float]] = []
    above: list[list[float]] = []
    for level in (-0.01, 0.0, 0.002, 0.005, 0.01, 0.02, 0.05):
        t = MlThresholds(take_profit_return_below=level, trail_return_above=level)
        out = _load(trained, thresholds=t).predict(rows)
        below.append([o.below_confidence for o in out])  # type: ignore[misc]
        above.append([o.above_confidence for o in out])  # type: ignore[misc]
    for i in range(len(rows)):
        b = [row[i] for row in below]
        a = [row[i] for row in above]
        assert b == sorted(b) and b[0] == 0.0 and b[-1] == 1.0, b  # a higher take-profit: more below
        assert a == sorted(a, reverse=True) and a[0] == 1.0 and a[-1] == 0.0, a
        assert len(set(b)) > 2  # interpolated between the quantiles, not a step
        assert all(x + y <= 1.0 + 1e-12 for x, y in zip(b, a, strict=True))  # below t and above t


def test_a_row_lacking_a_feature_is_refused_naming_it(trained: Path) -> None:
    row = dict.fromkeys(FEATURES, 0.0)
    del row["rsi"]
    with pytest.raises(ValueError, match="feature row 0 lacks rsi"):
        _load(trained).predict([row])


def _edit_card(folder: Path, name: str, edit: Callable[[dict[str, Any]], object]) -> None:
    path = folder / name / "card.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    edit(card)
    path.write_text(json.dumps(card, indent=2), encoding="utf-8")


def _set_model(folder: Path, name: str, text: str) -> None:
    """Replace a model file and give its card the new file's SHA-256 (a consistent, other model)."""
    (folder / name / "model.txt").write_text(text, encoding="utf-8")
    digest = hashlib.sha256((folder / name / "model.txt").read_bytes()).hexdigest()
    _edit_card(folder, name, lambda c: c.update(model_sha256=digest))


def _flip_a_byte(folder: Path) -> None:
    path = folder / "scale_in_success" / "model.txt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _rename_feature(folder: Path) -> None:
    _edit_card(folder, "recovered", lambda c: c["features"].__setitem__(10, "rsi_14"))


def _reorder_features(folder: Path) -> None:
    def swap(c: dict[str, Any]) -> None:
        f = c["features"]
        f[0], f[1] = f[1], f[0]

    _edit_card(folder, "additional_return", swap)


def _booster_features(folder: Path) -> None:
    text = (folder / "recovered" / "model.txt").read_text(encoding="utf-8")
    _set_model(folder, "recovered", text.replace("feature_names=r_multiple ", "feature_names=r_mult ", 1))


def _unparsable(folder: Path) -> None:
    _set_model(folder, "time_to_best", "tree\nversion=v4\nnot a model\n")


def _drop_model_file(folder: Path) -> None:
    (folder / "time_to_best" / "model.txt").unlink()


def _empty(folder: Path) -> None:
    for name in MODEL_KINDS:
        shutil.rmtree(folder / name)


def _left_over_from_another_run(folder: Path) -> None:
    _edit_card(folder, "time_to_best", lambda c: c.update(dataset_sha256="0" * 64))


def _other_horizon(folder: Path) -> None:
    _edit_card(folder, "recovered", lambda c: c["horizon"].update(ms=12 * HOUR))


def _classifier_as_regressor(folder: Path) -> None:
    # a consistent card and file, but the scale-in model's folder holds the additional_return model
    shutil.rmtree(folder / "scale_in_success")
    shutil.copytree(folder / "additional_return", folder / "scale_in_success")
    card = json.loads((folder / "recovered" / "card.json").read_text(encoding="utf-8"))
    _edit_card(
        folder,
        "scale_in_success",
        lambda c: c.update(model="scale_in_success", kind="classifier", calibration=card["calibration"]),
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: shutil.rmtree(f), r"model folder '.*models' does not exist"),
        (_empty, r"model folder '.*models' has no model \(expected one of recovered, additional_return"),
        (_drop_model_file, r"model 'time_to_best': '.*time_to_best/model.txt' does not exist"),
        (
            lambda f: (f / "recovered" / "card.json").write_text("{not json", encoding="utf-8"),
            r"recovered/card.json' is not readable JSON",
        ),
        (
            lambda f: _edit_card(f, "recovered", lambda c: c.update(format="tradebot-ml-model/0")),
            r"card format 'tradebot-ml-model/0', expected 'tradebot-ml-model/1'",
        ),
        (
            lambda f: _edit_card(f, "recovered", lambda c: c.update(model="scale_in_success")),
            r"the card is of model 'scale_in_success', expected 'recovered'",
        ),
        (
            lambda f: _edit_card(f, "recovered", lambda c: c.update(kind="regressor")),
            r"kind 'regressor', expected 'classifier' for model 'recovered'",
        ),
        (
            _classifier_as_regressor,
            r"scale_in_success/model.txt': objective 'regression_l1' does not fit a classifier",
        ),
        (_flip_a_byte, r"scale_in_success/model.txt': SHA-256 is [0-9a-f]{16}…, its card says .* damaged"),
        (
            lambda f: _edit_card(f, "recovered", lambda c: c["versions"].update(lightgbm="3.3.5")),
            r"trained with LightGBM '3.3.5', this is LightGBM 4\.",
        ),
        (_rename_feature, r"features are not the engine's .*: missing rsi; unexpected rsi_14"),
        (
            _reorder_features,
            r"same names, other order \(column 0 is 'profit_fraction', expected 'r_multiple'\)",
        ),
        (
            _booster_features,
            r"the booster's features are not its card's: missing r_multiple; unexpected r_mult",
        ),
        (_unparsable, r"time_to_best/model.txt': LightGBM cannot read it"),
        (
            lambda f: _edit_card(f, "recovered", lambda c: c.pop("calibration")),
            r"a classifier needs a Platt calibration \{a, b\}, was None",
        ),
        (
            lambda f: _edit_card(f, "additional_return", lambda c: c["conditional"]["actual"].pop()),
            r"additional_return/card.json': conditional table is malformed",
        ),
        (
            _left_over_from_another_run,
            r"mixes models of different training runs \(dataset_sha256: .*time_to_best: 0000000000000000\)",
        ),
        (_other_horizon, r"mixes models of different training runs \(horizon.ms: .*recovered: 43200000"),
        (
            lambda f: _edit_card(f, "recovered", lambda c: c.pop("horizon")),
            r"recovered/card.json': 'horizon.ms' must be an int > 0, was None",
        ),
    ],
    ids=[
        "missing-folder",
        "no-model",
        "no-model-file",
        "bad-json",
        "format",
        "other-model",
        "kind",
        "objective",
        "byte-flip",
        "lightgbm-major",
        "feature-renamed",
        "features-reordered",
        "booster-features",
        "unparsable",
        "no-calibration",
        "bad-conditional",
        "mixed-runs",
        "mixed-horizons",
        "no-horizon",
    ],
)
def test_refuses_a_folder_it_cannot_trust(
    models: Path, damage: Callable[[Path], object], message: str
) -> None:
    damage(models)
    with pytest.raises(ModelError, match=message) as exc:
        _load(models)
    assert isinstance(exc.value, ConfigError)  # the CLI's exit code 2
    assert str(models) in str(exc.value)  # names the folder or the file


def test_refuses_features_of_other_stream_timeframes(trained: Path) -> None:
    with pytest.raises(
        ModelError, match=r"missing stream_1d_in, stream_1d_confidence; unexpected stream_4h_in"
    ):
        load_predictor(trained, stream_timeframes=("1h", "1d"), thresholds=THRESHOLDS)
