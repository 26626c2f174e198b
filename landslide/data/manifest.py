"""Labelled image collections: a folder per class, or a manifest table (CSV/Parquet) of paths and labels.

Labels: ``landslide`` / ``non_landslide`` (also ``non-landslide``), or the study's digits where
``0`` = landslide and ``1`` = non-landslide. Internally the target is 1 for landslide, 0 otherwise.
Rows with any other label (``ambiguous``, blanks) are skipped and counted, never guessed. Footprint models
may keep ``ambiguous`` chips (``ambiguous=True``: a sliver of landslide under the chip rule's threshold, whose
mask is the truth): they then count as landslide chips (target 1) and carry ``ambiguous`` = True.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from landslide import storage
from landslide.errors import DataError, StorageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}
RESERVED_COLUMNS = ("uri", "path", "label", "target", "split", "group", "lat", "lon", "region", "sensor", "gsd_m")
REGION_COLUMNS = ("region", "sensor", "gsd_m")
"""Where a chip comes from: ``region`` (a name, e.g. ``baige``), ``sensor`` (e.g. ``uav``, ``tripleSat``) and
``gsd_m`` (ground sampling distance, metres per pixel). Optional; blank cells are unknown. Evaluation breaks
metrics down by ``region``; :func:`merge` fills them per source manifest."""

_LABELS = {"landslide": 1, "non_landslide": 0, "non-landslide": 0, "nonlandslide": 0,
           "0": 1, "1": 0}  # digits follow the study: 0 = landslide, 1 = non-landslide
_FOLDER_LABELS = {"landslide": 1, "non_landslide": 0, "non-landslide": 0, "0": 1, "1": 0}


def parse_label(value: object) -> int | None:
    """Map a label cell to 1 (landslide), 0 (non-landslide) or None (skip)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip().lower()
    if text.endswith(".0"):  # numeric columns read back as floats
        text = text[:-2]
    return _LABELS.get(text)


@dataclass
class Manifest:
    """A table of samples with resolved ``uri``, integer ``target`` and optional columns; plus what was skipped."""

    frame: pd.DataFrame
    source: str
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def tag_columns(self) -> list[str]:
        """Columns other than the reserved ones (catalog tags etc.)."""
        return [c for c in self.frame.columns if c not in RESERVED_COLUMNS]

    def class_counts(self) -> dict[str, int]:
        """Sample counts per class name."""
        counts = self.frame["target"].value_counts()
        return {"landslide": int(counts.get(1, 0)), "non_landslide": int(counts.get(0, 0))}

    def subset(self, mask_or_index) -> "Manifest":
        """A new manifest with the selected rows (skip statistics are kept)."""
        frame = self.frame.loc[mask_or_index].reset_index(drop=True)
        return Manifest(frame, self.source, Counter(self.skipped), list(self.skipped_examples))

    def median_gsd(self) -> float | None:
        """Median ``gsd_m`` of the chips (m/px); None when no chip has one."""
        if "gsd_m" not in self.frame.columns or self.frame["gsd_m"].isna().all():
            return None
        return float(self.frame["gsd_m"].median())

    def regions(self) -> list[str]:
        """The regions named in the ``region`` column, sorted (empty without one)."""
        if "region" not in self.frame:
            return []
        return sorted(str(r) for r in self.frame["region"].dropna().unique())

    def summary(self) -> dict:
        """A JSON-able description for model cards and reports."""
        out = {"source": self.source, "samples": len(self), "classes": self.class_counts(),
               "skipped": dict(self.skipped)}
        if "group" in self.frame:
            out["groups"] = int(self.frame["group"].nunique())
        if self.regions():
            by = self.frame.groupby(self.frame["region"].fillna("unknown"))["target"]
            out["regions"] = {str(r): {"samples": int(len(t)), "landslide": int(t.sum())} for r, t in by}
        for column in ("sensor", "gsd_m"):
            if column in self.frame and self.frame[column].notna().any():
                out[f"{column}_values"] = sorted({str(v) if column == "sensor" else float(v)
                                                  for v in self.frame[column].dropna()})
        return out


def _read_table(uri: str) -> pd.DataFrame:
    lower = uri.lower()
    data = storage.read_bytes(uri)
    try:
        if lower.endswith((".parquet", ".pq")):
            return pd.read_parquet(io.BytesIO(data))
        if lower.endswith((".csv", ".txt")):
            return pd.read_csv(io.BytesIO(data), dtype={"label": str, "path": str, "group": str, "split": str})
    except Exception as exc:  # pandas/pyarrow parse errors
        raise DataError(f"{uri}: cannot parse manifest ({type(exc).__name__}: {exc})") from exc
    raise DataError(f"{uri}: unsupported manifest format (use .csv or .parquet)")


def from_table(uri: str, check_files: bool = True, ambiguous: bool = False) -> Manifest:
    """Load a CSV/Parquet manifest; relative paths are resolved against the manifest's folder."""
    frame = _read_table(uri)
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise DataError(f"{uri}: manifest lacks required column(s) {missing}; found {list(frame.columns)}")
    base = storage.parent(uri)
    frame = frame.copy()
    frame["uri"] = [storage.resolve(str(p), base) for p in frame["path"]]
    if "mask_path" in frame.columns:  # landslide masks (footprints), resolved like the images; blank = none
        frame["mask_uri"] = [storage.resolve(str(p), base) if isinstance(p, str) and p.strip() else None
                             for p in frame["mask_path"]]
    return _finish(frame, uri, check_files, ambiguous)


def from_folder(uri: str, check_files: bool = True) -> Manifest:
    """Load ``landslide/`` + ``non_landslide/`` (or the study's ``0/`` + ``1/``) sub-folders of images."""
    rows = []
    found_any = False
    for name, _target in _FOLDER_LABELS.items():
        sub = storage.join(uri, name)
        if not storage.isdir(sub):
            continue
        found_any = True
        for file_uri in storage.list_files(sub, IMAGE_SUFFIXES):
            rows.append({"path": os.path.relpath(file_uri, uri) if not storage.is_remote(uri) else file_uri,
                         "uri": file_uri, "label": name})
    if not found_any:
        raise DataError(f"{uri}: no class folders found; expected 'landslide/' and 'non_landslide/' "
                        "(or the study's '0/' = landslide and '1/' = non-landslide)")
    frame = pd.DataFrame(rows, columns=["path", "uri", "label"])
    return _finish(frame, uri, check_files=False)


AMBIGUOUS = "ambiguous"
"""The label of chips whose landslide share is between the mask rule's classes (:mod:`landslide.data.masks`)."""


def _finish(frame: pd.DataFrame, source: str, check_files: bool, ambiguous: bool = False) -> Manifest:
    skipped: Counter = Counter()
    examples: list[dict] = []
    targets = [parse_label(v) for v in frame["label"]]
    if ambiguous:  # kept as landslide chips (they hold some landslide); their masks are the truth
        flag = frame["label"].astype(str).str.strip().str.lower() == AMBIGUOUS
        targets = [1 if f else t for t, f in zip(targets, flag)]
        frame["ambiguous"] = flag.to_numpy()
    frame["target"] = pd.array(targets, dtype="Int64")
    unknown = frame["target"].isna()
    for value in frame.loc[unknown, "label"]:
        key = "label:" + (str(value).strip().lower() if not pd.isna(value) else "<blank>")
        skipped[key] += 1
    for _, row in frame.loc[unknown].head(20).iterrows():
        examples.append({"path": str(row["path"]), "reason": f"label {row['label']!r} is not a known class"})
    frame = frame.loc[~unknown].copy()
    frame["target"] = frame["target"].astype(int)
    if check_files and len(frame):
        local = [not storage.is_remote(u) for u in frame["uri"]]
        exists = [os.path.exists(u.removeprefix("file://")) if is_local else True
                  for u, is_local in zip(frame["uri"], local)]
        absent = ~pd.Series(exists, index=frame.index)
        if absent.any():
            skipped["missing_file"] += int(absent.sum())
            for u in frame.loc[absent, "uri"].head(20):
                examples.append({"path": u, "reason": "file not found"})
            frame = frame.loc[~absent]
    if "split" in frame.columns:
        raw = frame["split"].astype(str).str.strip().str.lower()
        bad = sorted(set(raw[~raw.isin(SPLIT_NAMES) & (raw != "nan")]))
        if bad:
            raise DataError(f"{source}: column 'split' has unknown value(s) {bad}; use train, val or test")
        frame["split"] = raw.map(SPLIT_NAMES)
    for col in ("lat", "lon"):
        if col in frame.columns:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if "group" in frame.columns:
        frame["group"] = frame["group"].astype(str)
    _check_region_columns(frame, source)
    return Manifest(frame.reset_index(drop=True), source, skipped, examples)


def _check_region_columns(frame: pd.DataFrame, source: str) -> None:
    """Normalise ``region``/``sensor`` (stripped text, blank = unknown) and ``gsd_m`` (positive metres per
    pixel); a value that is not one raises a DataError naming it."""
    for column in ("region", "sensor"):
        if column in frame.columns:
            text = frame[column].astype("string").str.strip()
            frame[column] = text.where(text.notna() & (text != ""), None).astype(object)
    if "gsd_m" in frame.columns:
        gsd = pd.to_numeric(frame["gsd_m"], errors="coerce")
        bad = frame.loc[(gsd.isna() & frame["gsd_m"].notna() & (frame["gsd_m"].astype(str).str.strip() != ""))
                        | (gsd <= 0) | ~np.isfinite(gsd.fillna(1.0)), "gsd_m"]
        if len(bad):
            raise DataError(f"{source}: column 'gsd_m' must hold positive ground sampling distances in metres per "
                            f"pixel (blank = unknown); found {sorted(set(map(str, bad)))[:5]}")
        frame["gsd_m"] = gsd


def _is_table(uri: str) -> bool:
    """A manifest file (CSV/Parquet), as opposed to a class-folder tree."""
    return uri.lower().rstrip("/").endswith((".csv", ".txt", ".parquet", ".pq"))


def load(source: str, check_files: bool = True, ambiguous: bool = False) -> Manifest:
    """Load a manifest file or a class-folder tree from a local path or URI. ``ambiguous``: keep rows labelled
    ``ambiguous`` as landslide chips with ``ambiguous`` = True (footprint models, whose truth is the mask);
    otherwise they are skipped and counted."""
    lower = source.lower().rstrip("/")
    try:
        if _is_table(lower):
            if not storage.exists(source):
                raise DataError(f"{source}: manifest not found")
            return from_table(source, check_files, ambiguous)
        if not storage.exists(source):
            raise DataError(f"{source}: data folder not found")
        return from_folder(source, check_files)
    except StorageError as exc:
        raise DataError(str(exc)) from exc


def _per_source(values: list | None, n: int, name: str) -> list:
    if not values:
        return [None] * n
    if len(values) == 1:
        return list(values) * n
    if len(values) != n:
        raise DataError(f"--{name}: give one value for all {n} manifests or one per manifest, got {len(values)}")
    return list(values)


def merge(sources: list[str], out: str, regions: list[str] | None = None, sensors: list[str] | None = None,
          gsd_m: list[float] | None = None, check_files: bool = True, keep_ambiguous: bool = False) -> Manifest:
    """Combine manifests (or class folders) of several regions/sensors into one manifest written to ``out``
    (CSV or Parquet).

    ``regions``/``sensors``/``gsd_m``: one value for every source or one per source; each fills its column
    where that source has none or a blank cell (a source's own values are kept). Paths are written relative
    to ``out``'s folder when both are local, else as URIs; labels as ``landslide``/``non_landslide`` (rows
    without a known class are left out, as loading would skip them, except ``ambiguous`` ones with
    ``keep_ambiguous``, for footprint models); ``group`` values are prefixed with the
    region (``baige:B_r2_c2``) so groups of different sources never merge, and a source without groups gets
    one group per chip. DataError: a chip in two sources (it could land in train and test), bad values."""
    if len(sources) < 1:
        raise DataError("merge: give at least one manifest")
    regions, sensors, gsd_m = (_per_source(v, len(sources), k) for v, k in
                               ((regions, "region"), (sensors, "sensor"), (gsd_m, "gsd-m")))
    if any(g is not None and not g > 0 for g in gsd_m):
        raise DataError(f"--gsd-m: ground sampling distances must be positive metres per pixel, got {gsd_m}")
    frames = []
    for i, source in enumerate(sources):
        frame = load(source, check_files, keep_ambiguous).frame.copy()
        for column, value in (("region", regions[i]), ("sensor", sensors[i]), ("gsd_m", gsd_m[i])):
            if value is None:
                continue
            if column not in frame:
                frame[column] = value
            else:
                frame[column] = frame[column].where(frame[column].notna(), value)
        prefix = (frame["region"].fillna(f"source{i}").astype(str) if "region" in frame
                  else pd.Series(f"source{i}", index=frame.index))
        group = frame["group"].astype(str) if "group" in frame else frame["uri"].astype(str)
        frame["group"] = prefix + ":" + group
        base_in = storage.parent(source) if _is_table(source) else source
        for column in [c for c in frame.columns if c.endswith("_path")]:  # e.g. mask_path: relative to its source
            frame[column] = [storage.resolve(str(v), base_in) if isinstance(v, str) and v else v
                             for v in frame[column]]
        frame["source_manifest"] = source
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True)
    twice = merged["uri"][merged["uri"].duplicated()]
    if len(twice):
        raise DataError(f"merge: {twice.nunique()} image(s) appear in more than one source (e.g. {twice.iloc[0]}); "
                        "a chip listed twice could be trained on and tested on")
    base = storage.parent(out)
    local = not storage.is_remote(out)
    def relative(u):
        return os.path.relpath(u, base) if local and isinstance(u, str) and not storage.is_remote(u) else u

    merged["path"] = [relative(u) for u in merged["uri"]]
    for column in [c for c in merged.columns if c.endswith("_path")]:
        merged[column] = [relative(v) for v in merged[column]]
    merged["label"] = merged["target"].map({1: "landslide", 0: "non_landslide"})
    if keep_ambiguous and "ambiguous" in merged:  # class folders have no ambiguous chips
        merged.loc[merged["ambiguous"].fillna(False).astype(bool), "label"] = AMBIGUOUS
    table = merged.drop(columns=[c for c in ("uri", "target", "mask_uri", "ambiguous") if c in merged.columns])
    first = ["path", "label", *[c for c in ("split", "group", *REGION_COLUMNS) if c in table]]
    table = table[first + [c for c in table.columns if c not in first]]
    if not out.lower().endswith((".parquet", ".pq", ".csv")):
        raise DataError(f"{out}: write the merged manifest as .csv or .parquet")
    storage.write_table(table, out)
    return load(out, check_files, keep_ambiguous)
