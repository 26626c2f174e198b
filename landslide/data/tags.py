"""Tags for the multi-modal classifier: manifest columns (e.g. NASA GLC tags from ``landslide catalog join``)
encoded as one float vector per chip.

Missing tags are the normal case (most chips match no catalog event), so every column has an explicit
"unknown": categorical index 0, numeric "missing" flag 1. A :class:`TagSchema` is fitted on the training split
only (vocabularies, numeric scaling) and stored in the model card, so training, evaluation, sweeps and the
HTTP endpoint encode tags identically; values the training split never showed become "unknown".

Encoded layout, ``C`` categorical and ``K`` numeric columns, width ``C + 2K``::

    [cat_0 .. cat_C-1 (vocabulary index as float, 0 = unknown) | num_0 .. num_K-1 (standardised, 0 when
     missing) | missing_0 .. missing_K-1 (1 when missing)]
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from landslide.errors import ConfigError, DataError

UNKNOWN_VALUES = frozenset({"", "nan", "none", "null", "unknown", "n/a", "na", "<na>", "nat"})
NUMERIC_CLIP = 5.0  # standardised values beyond +-5 sd are clipped (fatality counts, far joins)


def category(value: Any) -> str | None:
    """A categorical cell as a normalised string (``Very Large`` -> ``very_large``), None when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = "_".join(str(value).strip().lower().replace("-", " ").split())
    if text.endswith(".0") and text[:-2].lstrip("-").isdigit():  # integer codes read back as floats
        text = text[:-2]
    return None if text in UNKNOWN_VALUES else text


def _numbers(values: Iterable[Any]) -> np.ndarray:
    out = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)
    out[~np.isfinite(out)] = np.nan
    return out


@dataclass(frozen=True)
class TagSchema:
    """Which columns feed the tag encoder and how they are encoded (fitted on training data)."""

    categorical: dict[str, tuple[str, ...]]
    """column -> vocabulary; value ``vocabulary[i]`` is encoded as ``i + 1`` (0 = unknown)."""
    numeric: dict[str, tuple[float, float]]
    """column -> (mean, standard deviation) of the known training values."""

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    @property
    def width(self) -> int:
        return len(self.categorical) + 2 * len(self.numeric)

    @classmethod
    def fit(cls, frame: pd.DataFrame, categorical: list[str], numeric: list[str], min_count: int = 2) -> "TagSchema":
        """Vocabularies (values seen at least ``min_count`` times, most frequent first) and numeric scaling
        from ``frame`` (the training split). Columns absent from ``frame`` are an error naming them."""
        absent = [c for c in (*categorical, *numeric) if c not in frame.columns]
        if absent:
            raise DataError(f"tag column(s) {absent} not in the training data; columns: {list(frame.columns)}")
        vocab = {}
        for col in categorical:
            counts = Counter(v for v in map(category, frame[col]) if v is not None)
            vocab[col] = tuple(v for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                               if n >= min_count)
        scale = {}
        for col in numeric:
            values = _numbers(frame[col])
            known = values[~np.isnan(values)]
            mean = float(known.mean()) if len(known) else 0.0
            std = float(known.std()) if len(known) > 1 else 0.0
            scale[col] = (mean, std if std > 1e-12 else 1.0)
        return cls(vocab, scale)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """``(len(frame), width)`` float32; absent columns and unseen values encode as unknown."""
        n, c = len(frame), len(self.categorical)
        out = np.zeros((n, self.width), np.float32)
        for j, (col, vocab) in enumerate(self.categorical.items()):
            if col in frame.columns:
                index = {v: i + 1 for i, v in enumerate(vocab)}
                out[:, j] = [index.get(category(v), 0) for v in frame[col]]
        k = len(self.numeric)
        for j, (col, (mean, std)) in enumerate(self.numeric.items()):
            values = _numbers(frame[col]) if col in frame.columns else np.full(n, np.nan)
            missing = np.isnan(values)
            out[:, c + j] = np.where(missing, 0.0, np.clip((values - mean) / std, -NUMERIC_CLIP, NUMERIC_CLIP))
            out[:, c + k + j] = missing
        return out

    def unknown(self, n: int) -> np.ndarray:
        """Encoded rows with every tag unknown (inference without tags)."""
        return self.encode(pd.DataFrame(index=range(n)))

    def encode_records(self, records: list[Mapping[str, Any] | None]) -> np.ndarray:
        """Encode one tag mapping per image (None or ``{}``: no tags). Unknown keys and non-numeric values of
        numeric tags are errors naming the tag (these come from users, e.g. the HTTP endpoint)."""
        known = set(self.columns)
        for record in records:
            for key, value in (record or {}).items():
                if key not in known:
                    raise ConfigError(f"unknown tag {key!r}; this model takes: {', '.join(self.columns) or 'none'}")
                if key in self.numeric and value is not None and not isinstance(value, (int, float)):
                    raise ConfigError(f"tag {key!r} must be a number, got {value!r}")
                if key in self.categorical and value is not None and not isinstance(value, (str, int, float)):
                    raise ConfigError(f"tag {key!r} must be a string, got {type(value).__name__}")
        return self.encode(pd.DataFrame([dict(r or {}) for r in records], columns=self.columns,
                                         index=range(len(records))))

    def known(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per column, a boolean mask of the rows whose tag is known (to the schema)."""
        enc = self.encode(frame)
        c, k = len(self.categorical), len(self.numeric)
        out = {col: enc[:, j] > 0 for j, col in enumerate(self.categorical)}
        out.update({col: enc[:, c + k + j] == 0 for j, col in enumerate(self.numeric)})
        return out

    def coverage(self, frame: pd.DataFrame) -> dict[str, float]:
        """Fraction of rows of ``frame`` whose tag is known, per column."""
        return fraction_known(self.known(frame))

    def to_json(self) -> dict:
        """JSON form for the model card; columns are lists because their order is the encoding's order (JSON
        objects are written with sorted keys)."""
        return {"categorical": [{"column": k, "values": list(v)} for k, v in self.categorical.items()],
                "numeric": [{"column": k, "mean": m, "std": s} for k, (m, s) in self.numeric.items()],
                "unknown": "categorical index 0; numeric value 0 with its missing flag 1",
                "layout": "categorical indices, standardised numerics, numeric missing flags"}

    @classmethod
    def from_json(cls, raw: dict) -> "TagSchema":
        return cls({e["column"]: tuple(e["values"]) for e in raw.get("categorical", [])},
                   {e["column"]: (float(e["mean"]), float(e["std"])) for e in raw.get("numeric", [])})


def fraction_known(known: dict[str, np.ndarray]) -> dict[str, float]:
    """Per column, the fraction of rows whose tag is known, from :meth:`TagSchema.known` masks."""
    return {col: float(mask.mean()) if len(mask) else 0.0 for col, mask in known.items()}


def size_targets(frame: pd.DataFrame, column: str, classes: list[str] | tuple[str, ...]) -> np.ndarray:
    """Size-class index per row for the optional size head; -1 (ignored by the loss and the metrics) for
    non-landslide rows and rows whose size is unknown or not one of ``classes``."""
    if column not in frame.columns:
        raise DataError(f"size head column {column!r} not in the data; columns: {list(frame.columns)}")
    index = {c: i for i, c in enumerate(classes)}
    sizes = np.array([index.get(category(v), -1) for v in frame[column]], dtype=np.int64)
    return np.where(frame["target"].to_numpy() == 1, sizes, -1)
