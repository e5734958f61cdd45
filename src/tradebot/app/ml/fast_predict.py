"""Row-by-row predictions of a LightGBM booster through LightGBM's own single-row C API.

The engine predicts 1 to 3 feature rows per rebalance close; ``Booster.predict`` spends most of its
~25 µs per call preparing a batch (parameter strings, a predictor object, checks). LightGBM's C API
has a path made for this: ``LGBM_BoosterPredictForMatSingleRowFastInit`` prepares the prediction
once (predict type, iterations, column count, parameters) and
``LGBM_BoosterPredictForMatSingleRowFast`` then predicts one dense float64 row in about 2 µs
(``c_api.h`` of LightGBM; the same entry points its SWIG/Java users call). The library is the one the
``lightgbm`` package loaded (``lightgbm.basic._LIB``), so the trees and their arithmetic are the same.

:class:`RowPredictor` uses that path only after checking, on probe rows, that it gives exactly what
``Booster.predict`` gives; otherwise (an other LightGBM build, a missing symbol) it falls back to
``Booster.predict`` — slower, never different.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

__all__ = ["RowPredictor"]

_PREDICT_NORMAL = 0  # C_API_PREDICT_NORMAL
_PREDICT_RAW_SCORE = 1  # C_API_PREDICT_RAW_SCORE
_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_PARAMS = b"num_threads=1"


def _library() -> Any:
    from lightgbm.basic import _LIB  # type: ignore[attr-defined]  # the package's handle to lib_lightgbm

    return _LIB


class RowPredictor:
    """Predict rows of one booster, one row at a time, through the C single-row path when it agrees
    with ``Booster.predict`` on probe rows.

    Parameters
    ----------
    booster
        The model (kept alive as long as this object).
    raw_score
        ``True``: the raw score (log-odds of a binary classifier, before the sigmoid); ``False``: the
        booster's normal output.

    Attributes
    ----------
    fast
        Whether the C single-row path is used (``False``: ``Booster.predict`` on each call).
    """

    def __init__(self, booster: lgb.Booster, *, raw_score: bool) -> None:
        self.booster = booster
        self.raw_score = raw_score
        self.n_features = int(booster.num_feature())
        self.fast = False
        self._handle = ctypes.c_void_p()
        self._out = np.empty(1, dtype=np.float64)
        self._out_len = ctypes.c_int64(0)
        self._po = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len_ref = ctypes.byref(self._out_len)
        try:
            lib = _library()
            kind = _PREDICT_RAW_SCORE if raw_score else _PREDICT_NORMAL
            code = lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,  # the package's handle of this booster's C object
                ctypes.c_int(kind),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(self.n_features),
                ctypes.c_char_p(_PARAMS),
                ctypes.byref(self._handle),
            )
            if code != 0 or not self._handle.value:
                return
            self._lib = lib
            weakref.finalize(self, lib.LGBM_FastConfigFree, ctypes.c_void_p(self._handle.value))
            self._predict_fast = lib.LGBM_BoosterPredictForMatSingleRowFast
            self.fast = self._agrees()
        except (AttributeError, OSError, TypeError, ValueError):
            self.fast = False

    def _batch(self, x: npt.NDArray[np.float64]) -> list[float]:
        out = self.booster.predict(x, raw_score=self.raw_score, num_threads=1)
        return list(np.asarray(out, dtype=np.float64).tolist())

    def _row(self, address: int) -> float:
        # One row of float64 at ``address`` (numpy's ``.ctypes`` is slow: callers pass the address).
        code = self._predict_fast(self._handle, ctypes.c_void_p(address), self._out_len_ref, self._po)
        if code != 0 or self._out_len.value != 1:
            raise RuntimeError("LightGBM single-row prediction failed")
        return float(self._out[0])

    def _agrees(self) -> bool:
        # Probe rows: zeros, all missing, and spread values (deterministic).
        f = self.n_features
        rng = np.random.default_rng(0)
        probe = np.vstack(
            [np.zeros(f), np.full(f, np.nan), rng.normal(0.0, 1.0, (6, f)), rng.normal(0.0, 1e4, (2, f))]
        )
        expected = self._batch(probe)
        probe = np.ascontiguousarray(probe, dtype=np.float64)
        got = [self._row(probe.ctypes.data + i * probe.strides[0]) for i in range(probe.shape[0])]
        return got == expected

    def __call__(self, x: npt.NDArray[np.float64]) -> list[float]:
        """Return one prediction per row of ``x`` (shape ``(rows, features)``, float64; NaN = missing).

        Raises
        ------
        ValueError
            If ``x`` does not have the booster's number of columns.
        """
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"feature matrix must have {self.n_features} columns, was shape {x.shape}")
        if x.shape[0] == 0:
            return []
        if not self.fast:
            return self._batch(x)
        x = np.ascontiguousarray(x, dtype=np.float64)
        base, stride = x.ctypes.data, x.strides[0]
        return [self._row(base + i * stride) for i in range(x.shape[0])]
