"""Regional sweeps: a trained model over every tile of a region -> an inventory.

The pieces are shared by the local sweep (:func:`run_sweep`, threads + one model) and the Ray Data job
(``ray_jobs/sweep.py``, read tasks + an actor pool), so both write byte-compatible outputs:

1. :func:`plan_sweep` - tile index (built once, cached), pruned to the region, cut into shards of
   ``shard_size`` tiles in the index's raster order (stable between runs); ``sweep.json`` records
   what the output folder holds and refuses to mix sweeps.
2. :func:`read_tiles` - bytes -> decoded RGB -> resized uint8 with a :class:`TileReader`, one status per tile
   (``ok``, ``nodata`` above ``tiles.max_nodata``, ``error``) and its reason; never raises for a bad tile.
3. :func:`infer_tiles` - probabilities through the shared :class:`~landslide.inference.predictor.Predictor`,
   Grad-CAM overlays of positives written next to the inventory.
4. :meth:`SweepPlan.write_shard` - one Parquet file per finished shard, written whole (the unit of
   resumption: a re-run skips finished shards, so an interrupted sweep completes with no gaps and no
   duplicates).
5. :func:`finalize` - streams the shards into ``inventory.parquet`` (GeoParquet), writes the map outputs
   (:mod:`~landslide.inventory.maps`: per-scene probability rasters and areas, ``preview.png``),
   ``inventory.geojson`` (positive tiles), ``landslide_areas.geojson`` (adjacent positives dissolved) and
   ``summary.json`` (tiles in = ok + nodata + failed; swept and positive areas as geodesic areas of the
   unions of the windows, overlaps counted once; positives; throughput).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import hashlib
import io
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from landslide import CLASSES, lonlat, storage
from landslide.config import SweepConfig, dump_config
from landslide.errors import ConfigError, DataError, ImageError, NoDataError, StorageError
from landslide.data.gsd import raster_gsd_m, same_scale, xyz_gsd_m
from landslide.data.images import encode_png
from landslide.inventory import geo, maps
from landslide.inventory.adapt import ADAPTED_MODEL, adapted_model, apply_rule, decision_rule
from landslide.inference.predictor import Predictor, prepare_image
from landslide.models.checkpoint import read_card
from landslide.inventory.region import Region, load_region
from landslide.inventory.tiles import (IndexRecord, build_index, flip_rows, index_record, load_tile, read_index,
                                      same_source, write_index)

log = logging.getLogger(__name__)

SWEEP_FORMAT = 2
RESULT_SCHEMA = pa.schema([
    ("tile_id", pa.string()), ("uri", pa.string()), ("window", pa.string()),
    ("west", pa.float64()), ("south", pa.float64()), ("east", pa.float64()), ("north", pa.float64()),
    ("probability", pa.float64()), ("label", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("nodata_fraction", pa.float64()), ("cam", pa.string()), ("model_name", pa.string()),
    ("model_version", pa.string()),
])
"""One row per tile. ``status`` is ``ok``, ``nodata`` or ``error`` (:data:`STATUSES`) with the detail in
``reason``; ``probability``/``label`` are null unless ``ok``; ``nodata_fraction`` is the tile's share of nodata
pixels (null when unreadable); ``cam`` is the path of the Grad-CAM overlay relative to the output folder
(positives only). ``west > east`` marks a footprint across 180°."""


# ----------------------------------------------------------------------------------------------- planning
@dataclass
class SweepPlan:
    cfg: SweepConfig
    region: Region
    tiles: pd.DataFrame
    """The region's tiles with a ``shard`` column."""
    model: dict
    index_uri: str
    done: set[int] = field(default_factory=set)
    gsd: dict = field(default_factory=dict)
    """How the tiles' GSD relates to the model's: ``window_m`` (GeoTIFF windows sized in metres) and ``note``."""

    @property
    def n_shards(self) -> int:
        return int(self.tiles["shard"].max()) + 1 if len(self.tiles) else 0

    def pending(self) -> list[int]:
        return [s for s in range(self.n_shards) if s not in self.done]

    @functools.cached_property
    def _shard_positions(self) -> dict[int, np.ndarray]:
        # grouped once: filtering the whole table per shard would cost tiles x shards on large regions
        return {int(k): v for k, v in self.tiles.groupby("shard").indices.items()}

    def shard_rows(self, shard: int) -> pd.DataFrame:
        return self.tiles.iloc[self._shard_positions[shard]]

    def shard_uri(self, shard: int) -> str:
        return storage.join(self.cfg.output, "shards", f"shard-{shard:06d}.parquet")

    def holds_exactly(self, shard: int, tile_ids: pd.Series) -> bool:
        """True if ``tile_ids`` are the shard's tiles, each once."""
        expected = self.shard_rows(shard)["tile_id"]
        return len(tile_ids) == len(expected) and set(tile_ids) == set(expected)

    def write_shard(self, shard: int, results: pd.DataFrame) -> None:
        """Write one finished shard (whole, in one object) after checking it holds exactly its tiles."""
        if not self.holds_exactly(shard, results["tile_id"]):
            raise DataError(f"shard {shard}: results do not match its tiles ({len(results)} rows for "
                            f"{len(self.shard_rows(shard))} tiles)")
        order = results.set_index("tile_id").index.get_indexer(self.shard_rows(shard)["tile_id"])
        table = pa.Table.from_pandas(results.iloc[order][RESULT_SCHEMA.names], RESULT_SCHEMA,
                                     preserve_index=False)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        storage.write_bytes(self.shard_uri(shard), buf.getvalue())
        self.done.add(shard)


def _fingerprint(tile_ids: pd.Series) -> str:
    digest = hashlib.sha256()
    for tile_id in tile_ids:
        digest.update(tile_id.encode() + b"\n")
    return digest.hexdigest()[:16]


def _index_mismatches(record: IndexRecord, cfg: SweepConfig, input_size: int, cached: bool,
                      region: Region, window_m: float | None = None) -> list[str]:
    """How an index's build record differs from what the sweep's config asks ("chip_size 128 (asked 64)").
    A prebuilt index is held only to what the config states (an unset overlap or chip size asks nothing); the
    sweep's own cached index to what it would build now, so a changed config rebuilds it."""
    t, stated = cfg.tiles, cfg.tiles.model_fields_set
    out = []
    if not same_source(record.source, t.source):
        out.append(f"source {record.source} (asked {t.source})")
    if t.format != "auto" and record.format != t.format:
        out.append(f"format {record.format} (asked {t.format})")
    if record.format == "xyz":
        if t.scheme != "auto" and record.scheme != t.scheme:
            out.append(f"scheme {record.scheme} (asked {t.scheme})")
        if t.zoom is not None and record.zoom != t.zoom:
            out.append(f"zoom {record.zoom} (asked {t.zoom})")
        if record.bbox is not None:
            listed = lonlat.footprint(*record.bbox).buffer(1e-9)
            if region.geometry is None or not listed.covers(region.geometry):
                out.append(f"tiles listed only within {_show_box(record.bbox)} (the region reaches beyond)")
            elif cached and tuple(record.bbox) != tuple(_region_box(region)):
                out.append("listed for another region")
    if record.format == "geotiff":
        if window_m is not None or record.window_m is not None:
            if window_m is not None and (record.window_m is None or not np.isclose(record.window_m, window_m)):
                had = "none" if record.window_m is None else f"{record.window_m:g}"
                out.append(f"window_m {had} (asked {window_m:g})")
            elif window_m is None and (cached or t.chip_size is not None):
                out.append(f"window_m {record.window_m:g} (asked chip_size {t.chip_size or input_size})")
        else:
            chip = t.chip_size if t.chip_size is not None else (input_size if cached else None)
            if chip is not None and record.chip_size != chip:
                out.append(f"chip_size {record.chip_size} (asked {chip})")
        if (cached or "overlap" in stated) and not np.isclose(record.overlap or 0.0, t.overlap):
            out.append(f"overlap {record.overlap:g} (asked {t.overlap:g})")
    return out


def _show_box(box) -> str:
    return "[" + ", ".join(f"{v:.6f}".rstrip("0").rstrip(".") for v in box) + "]"


def _region_box(region: Region):
    boxes = region.boxes
    return tuple(float(v) for v in lonlat.bounds(pd.DataFrame(boxes, columns=["west", "south", "east", "north"])))


def window_metres(cfg: SweepConfig, model: dict) -> float | None:
    """The GeoTIFF window side in metres the sweep asks for: ``tiles.window_m``, or with ``tiles.match_gsd`` the
    model's input size x its input GSD (ConfigError when the model does not record one); None: in pixels."""
    if cfg.tiles.window_m:
        return float(cfg.tiles.window_m)
    if not cfg.tiles.match_gsd:
        return None
    if not model.get("input_gsd_m"):
        raise ConfigError(f"tiles.match_gsd: model {model['name']!r} does not record the GSD it was trained at "
                          "(its training chips had no gsd_m); set tiles.window_m or tiles.chip_size instead")
    return float(model["input_size"]) * float(model["input_gsd_m"])


def gsd_note(index: pd.DataFrame, record: IndexRecord | None, model: dict) -> str | None:
    """One line when the model will see the tiles at a GSD unknown or more than 25 % off its own: GeoTIFF
    windows of a fixed pixel size (suggesting ``tiles.match_gsd``) or XYZ tiles at their zoom and the region's
    latitude (suggesting a zoom). None when they match, or for other sources."""
    target = model.get("input_gsd_m")
    fmt = record.format if record else None
    if fmt not in ("geotiff", "xyz"):
        return None
    if not target:
        return (f"model {model['name']!r} does not record the GSD it was trained at: the tiles are not matched to "
                "its scale")
    size = int(model["input_size"])
    match = "tiles.match_gsd: true sizes windows to match"
    if fmt == "xyz":
        lat = float((index["south"].median() + index["north"].median()) / 2)
        seen = xyz_gsd_m(int(record.zoom), lat) * 256 / size  # a 256-px tile resized to the input size
        what = f"XYZ tiles at zoom {record.zoom} (latitude {lat:.2f})"
        remedy = f"zoom {record.zoom + round(math.log2(seen / target))} is closer"
    elif record.window_m:
        seen, what, remedy = record.window_m / size, f"windows of {record.window_m:g} m", match
    else:
        from landslide.inventory.tiles import open_raster

        first = index["uri"].iloc[0]
        with open_raster(first) as ds:
            gsd = raster_gsd_m(ds.crs, ds.transform, ds.width, ds.height)
        if gsd is None:
            return f"{first}: GSD unknown (no pixel size); the windows are not matched to the model's scale"
        chip = int(str(index["window"].iloc[0]).split(",")[2])
        seen, what, remedy = gsd * chip / size, f"{first}: windows of {chip} px at {gsd:.3g} m/px", match
    if same_scale(seen, target):
        return None
    return (f"{what} reach the model at {seen:.3g} m/px, {seen / target:.2f} x the {target:.3g} m/px it was "
            f"trained at; {remedy}")


def _load_index(cfg: SweepConfig, region: Region, input_size: int,
                window_m: float | None = None) -> tuple[pd.DataFrame, str]:
    """The sweep's tile index: ``tiles.index`` if given (checked against the config: :func:`_index_mismatches`
    -> ConfigError), else the one cached in the output folder (rebuilt if the config changed), else built.
    ``window_m``: GeoTIFF windows in metres (:func:`window_metres`)."""
    if cfg.tiles.index:
        index = read_index(cfg.tiles.index)
        record = index_record(index)
        if record is None:
            log.warning("%s records no build settings (written by an older version); cannot check that it "
                        "matches tiles.source/chip_size/overlap. Rebuild it with `landslide tiles index` to "
                        "have it checked", cfg.tiles.index)
        elif problems := _index_mismatches(record, cfg, input_size, False, region, window_m):
            raise ConfigError(f"tiles.index {cfg.tiles.index} was built otherwise than this sweep asks: "
                              f"{'; '.join(problems)}. Rebuild it with `landslide tiles index` and the settings "
                              "you want, set the config to match it, or drop tiles.index to let the sweep index "
                              "the source")
        return index, cfg.tiles.index
    cached = storage.join(cfg.output, "tiles_index.parquet")
    if storage.exists(cached):
        index = read_index(cached)
        record = index_record(index)
        problems = (["no build record"] if record is None
                    else _index_mismatches(record, cfg, input_size, True, region, window_m))
        if not problems:
            return index, cached
        log.warning("%s was built otherwise than this sweep asks (%s); rebuilding it", cached, "; ".join(problems))
    started = time.perf_counter()
    index = build_index(cfg.tiles.source, cfg.tiles.format, cfg.tiles.zoom, cfg.tiles.chip_size or input_size,
                        cfg.tiles.overlap, bbox=region.boxes,
                        scheme=cfg.tiles.scheme, bands=cfg.tiles.bands, window_m=window_m)
    write_index(index, cached)
    log.info("indexed %d tiles of %s in %.1f s (cached in %s)", len(index), cfg.tiles.source,
             time.perf_counter() - started, cached)
    return index, cached


def plan_sweep(cfg: SweepConfig, model: dict) -> SweepPlan:
    """Index, prune and shard the sweep; record it in ``sweep.json`` (or check that a previous, interrupted run
    of the same sweep is what the output folder holds, and find its finished shards)."""
    storage.check_writable(cfg.output)
    region = load_region(cfg.region)
    window_m = window_metres(cfg, model)
    index, index_uri = _load_index(cfg, region, int(model["input_size"]), window_m)
    tiles = region.select(index).reset_index(drop=True)
    tiles.attrs = {}  # the index's build record is in sweep.json; result tables must not carry it
    if tiles.empty:
        hint = ""
        flipped = flip_rows(index)
        if flipped is not None and not region.select(flipped).empty:
            hint = ("; read with its rows counted the other way (tiles.scheme: "
                    f"{'xyz' if cfg.tiles.scheme == 'tms' else 'tms'}) the tree does cover it")
        raise DataError(f"no tiles of {cfg.tiles.source} intersect the region ({region.description}); "
                        f"the index covers {_extent(index)}{hint}")
    tiles["shard"] = np.arange(len(tiles)) // cfg.shard_size
    record_of_index = index_record(index)
    if window_m and record_of_index is not None and record_of_index.format != "geotiff":
        raise ConfigError(f"tiles.{'window_m' if cfg.tiles.window_m else 'match_gsd'} sizes GeoTIFF windows; "
                          f"{cfg.tiles.source} is a {record_of_index.format} source, whose tiles have their own size"
                          + (" (choose the zoom instead)" if record_of_index.format == "xyz" else ""))
    note = gsd_note(tiles, record_of_index, model)
    if note:  # said once per sweep: in the log, sweep.json and summary.json
        log.warning("GSD: %s", note)
    plan = SweepPlan(cfg, region, tiles, model, index_uri, gsd={"window_m": window_m, "note": note})
    record = {"format": SWEEP_FORMAT, "name": cfg.name, "model": model, "model_uri": cfg.model,
              "tiles": {"source": cfg.tiles.source, "index": index_uri, "count": len(tiles),
                        "index_record": json.loads(record_of_index.to_json()) if record_of_index else None,
                        "fingerprint": _fingerprint(tiles["tile_id"])},
              "region": {"description": region.description, "geometry": region.to_geojson()},
              "threshold": model["threshold"], "shard_size": cfg.shard_size, "shards": plan.n_shards,
              "adapt": cfg.adapt.model_dump(), "gsd": plan.gsd}
    record_uri = storage.join(cfg.output, "sweep.json")
    shards_dir = storage.join(cfg.output, "shards")
    names = storage.list_files(shards_dir, (".parquet",)) if storage.exists(shards_dir) else []
    if storage.exists(record_uri) and names:  # finished shards of an earlier run: only the same sweep continues
        previous = _identity(storage.read_json(record_uri))
        for label, new in _identity(record).items():
            old = previous[label]
            if old != new:
                raise ConfigError(f"{cfg.output} holds another sweep (its {label} differs: {old} vs {new}); "
                                  "choose a new output or delete the old one")
        plan.done = {int(m.group(1)) for n in names if (m := re.search(r"shard-(\d+)\.parquet$", n))}
        plan.done &= set(range(plan.n_shards))
    else:  # new, or an earlier run that finished no shard: nothing to mix, (re)start it
        storage.write_json(record_uri, record)
        storage.write_text(storage.join(cfg.output, "sweep_config.yaml"), dump_config(cfg))
    return plan


def _identity(record: dict) -> dict:
    """What must match for a run to continue the sweep recorded in ``sweep.json``."""
    adapt = record.get("adapt") or {}
    return {"format": record.get("format"), "model": record.get("model", {}).get("version"),
            "tiles/region": record.get("tiles", {}).get("fingerprint"),
            "shard_size": record.get("shard_size"), "threshold": record.get("threshold"),
            # AdaBN changes every score; the prior and calibration only how the inventory is written
            "adapt.batchnorm": (f"on ({adapt.get('batchnorm_tiles')} tiles, seed {adapt.get('seed')})"
                                if adapt.get("batchnorm") else "off")}


def _extent(index: pd.DataFrame) -> str:
    if index.empty:
        return "nothing"
    w, s, e, n = lonlat.bounds(index)
    return f"lon {w:.5f}..{e:.5f}{' (across 180)' if w > e else ''}, lat {s:.5f}..{n:.5f}"


# ----------------------------------------------------------------------------------------------- tile work
@dataclass(frozen=True)
class TileReader:
    """How a sweep reads its tiles: the model's input size, the size limits, the bands and the nodata limit.
    Small and picklable, so Ray read tasks get the same rules as the local sweep."""

    size: int
    max_pixels: int = 64_000_000
    max_bytes: int = 64 * 1024 * 1024
    bands: tuple[int, ...] | None = None
    max_nodata: float = 0.5

    @classmethod
    def for_sweep(cls, cfg: SweepConfig, size: int) -> "TileReader":
        return cls(size, cfg.max_image_pixels, cfg.max_tile_bytes,
                   tuple(cfg.tiles.bands) if cfg.tiles.bands else None, cfg.tiles.max_nodata)

    def read_one(self, uri: str, window: str) -> tuple[np.ndarray | None, str, str, float]:
        """(prepared uint8 image or None, status, reason, nodata share) for one tile; every failure becomes a
        status (:data:`STATUSES`) with its reason, never an exception."""
        try:
            tile = load_tile(uri, window, self.max_pixels, self.max_bytes, self.bands)
        except NoDataError as exc:
            return None, "nodata", exc.reason, 1.0
        except ImageError as exc:
            return None, "error", exc.reason, float("nan")
        except StorageError as exc:
            return None, "error", str(exc).removeprefix(uri + ": "), float("nan")
        except Exception as exc:  # a tile must never stop the sweep; keep the reason
            return None, "error", f"{type(exc).__name__}: {exc}", float("nan")
        share = tile.nodata_fraction
        if share > self.max_nodata:
            return None, "nodata", f"{share:.1%} of the pixels are nodata (tiles.max_nodata {self.max_nodata:g})", share
        return prepare_image(tile.rgb, self.size), "ok", "", share


STATUSES = ("ok", "nodata", "error")
"""A tile's ``status``: scored, not scored for lack of data, or unreadable (the detail is in ``reason``)."""


def read_tiles(rows: pd.DataFrame, reader: TileReader, executor: cf.Executor | None = None) -> dict[str, np.ndarray]:
    """Read a batch of index rows -> ``{"image": (B, S, S, 3) uint8 (zeros where not ok), "status": (B,),
    "reason": (B,), "nodata_fraction": (B,)}``."""
    args = list(zip(rows["uri"], rows["window"]))
    results = (list(executor.map(lambda a: reader.read_one(*a), args)) if executor
               else [reader.read_one(*a) for a in args])
    images = np.zeros((len(rows), reader.size, reader.size, 3), np.uint8)
    for i, (img, *_) in enumerate(results):
        if img is not None:
            images[i] = img
    return {"image": images, "status": np.array([r[1] for r in results], dtype=object),
            "reason": np.array([r[2] for r in results], dtype=object),
            "nodata_fraction": np.array([r[3] for r in results], dtype=float)}


def cam_path(tile_id: str) -> str:
    """Overlay path (relative to the output folder) for a tile id."""
    return "cams/" + re.sub(r"[^A-Za-z0-9._-]+", "_", tile_id) + ".png"


def infer_tiles(predictor: Predictor, rows: pd.DataFrame, batch: dict, output: str | None,
                explain: bool) -> pd.DataFrame:
    """Result rows (:data:`RESULT_SCHEMA`) for a batch from :func:`read_tiles`; overlays of positives go to
    ``output/cams/``."""
    images, status = batch["image"], batch["status"]
    ok = np.array([s == "ok" for s in status], bool)
    probs = np.full(len(rows), np.nan)
    cams = [""] * len(rows)
    if ok.any():
        probs[ok] = predictor.predict(images[ok])
        positive = np.flatnonzero(ok & (probs >= predictor.threshold))
        if explain and output and len(positive):
            _, heat = predictor.explain(images[positive])
            for i, cam in zip(positive, heat):
                cams[i] = cam_path(rows["tile_id"].iloc[i])
                blended = predictor.overlay_image(images[i], cam)
                storage.write_bytes(storage.join(output, cams[i]), encode_png(blended))
                # the same overlay georeferenced, to drape in QGIS (cams/ID.tif beside cams/ID.png)
                storage.write_bytes(storage.join(output, cams[i][:-4] + ".tif"),
                                    maps.cam_geotiff(blended, rows.iloc[i]))
    labels = [CLASSES[int(p >= predictor.threshold)] if k else None for p, k in zip(probs, ok)]
    info = predictor.info
    out = rows[["tile_id", "uri", "window", "west", "south", "east", "north"]].reset_index(drop=True).copy()
    out["probability"] = np.where(ok, probs, np.nan)
    out["label"] = labels
    out["status"] = [str(v) for v in status]
    out["reason"] = [str(v) for v in batch["reason"]]
    out["nodata_fraction"] = np.asarray(batch["nodata_fraction"], float)
    out["cam"] = cams
    out["model_name"] = info["name"]
    out["model_version"] = info["version"]
    return out


# ----------------------------------------------------------------------------------------------- outputs
def iter_shards(plan: SweepPlan) -> Iterator[pd.DataFrame]:
    for shard in range(plan.n_shards):
        yield pq.read_table(io.BytesIO(storage.read_bytes(plan.shard_uri(shard)))).to_pandas()


def finalize(plan: SweepPlan, seconds: float, processed: int) -> dict:
    """Merge the shards into the inventory files and the summary; memory grows with positives, not tiles."""
    cfg, out = plan.cfg, plan.cfg.output
    missing = plan.pending()
    if missing:
        raise DataError(f"{out}: shards {missing[:5]} are not finished; run the sweep again to complete it")
    rule = decision_rule(_ok_probabilities(plan) if cfg.adapt.prior else np.zeros(0), plan.model["threshold"],
                         read_card(cfg.model), cfg.adapt) if cfg.adapt.prior or cfg.adapt.calibrated else None
    threshold = rule["reported_threshold"] if rule else plan.model["threshold"]
    bbox = [float(v) for v in lonlat.bounds(plan.tiles)]
    schema = geo.geoparquet_schema(RESULT_SCHEMA, bbox)
    counts: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    positives, swept, seen = [], geo.GrowingUnion(), 0
    scene_maps, thin = maps.SceneMaps(), []
    every = max(1, -(-len(plan.tiles) // maps.PREVIEW_MAX_BOXES))  # the preview keeps at most that many tiles
    buf = io.BytesIO()
    with pq.ParquetWriter(buf, schema) as writer:
        for shard, frame in enumerate(iter_shards(plan)):
            if not plan.holds_exactly(shard, frame["tile_id"]):
                raise DataError(f"{plan.shard_uri(shard)}: does not hold exactly shard {shard}'s tiles; delete it "
                                "and run the sweep again")
            seen += len(frame)
            if rule is not None:
                frame = apply_rule(frame, rule, CLASSES)
            ok = frame["status"] == "ok"
            failed = frame["status"] == "error"
            counts.update(frame["status"])
            reasons.update(_reason(r) for r in frame.loc[failed, "reason"])
            swept.add(frame[ok])  # n log n in shards, log2(shards) geometries held
            positives.append(frame[ok & (frame["label"] == CLASSES[1])])
            scene_maps.add(frame)
            thin.append(frame[["west", "south", "east", "north", "probability", "status"]].iloc[::every])
            table = pa.Table.from_pandas(frame[RESULT_SCHEMA.names], RESULT_SCHEMA, preserve_index=False)
            writer.write_table(geo.with_geometry(table, frame).cast(schema))
    storage.write_bytes(storage.join(out, "inventory.parquet"), buf.getvalue())
    pos = pd.concat(positives, ignore_index=True) if positives else pd.DataFrame(columns=RESULT_SCHEMA.names)
    props = ["tile_id", "uri", "window", "probability", "label", "model_name", "model_version", "cam"]
    name = f"{cfg.name} ({plan.model['name']} {plan.model['version']})"
    members = {"bbox": [float(v) for v in lonlat.bounds(pos)]} if len(pos) else {}
    storage.write_json(storage.join(out, "inventory.geojson"),
                       geo.feature_collection(geo.tile_features(pos, props), name=name, **members))
    files = {"inventory": "inventory.parquet", "positives": "inventory.geojson", "summary": "summary.json",
             "shards": "shards/", "index": plan.index_uri}
    areas = geo.dissolve(pos)
    if cfg.merge_polygons:
        storage.write_json(storage.join(out, "landslide_areas.geojson"),
                           geo.feature_collection(areas, name=f"{name} areas", **members))
        files["areas"] = "landslide_areas.geojson"
    if cfg.explain.enabled:
        files["cams"] = "cams/ (PNG, and GeoTIFF to drape)"
    scenes = _scene_outputs(scene_maps, out, threshold)
    if scenes:
        files["scenes"] = "scenes/"
    try:
        storage.write_bytes(storage.join(out, "preview.png"), maps.preview_png(
            pd.concat(thin, ignore_index=True), [shapely.geometry.shape(f["geometry"]) for f in areas],
            plan.region.geometry, name, threshold, every))
        files["preview"] = "preview.png"
    except StorageError:
        raise
    except Exception as exc:  # a map that cannot be drawn must not cost the finished inventory
        log.warning("preview.png not written (%s: %s)", type(exc).__name__, exc)
    summary = {
        "name": cfg.name, "model": plan.model, "region": plan.region.description,
        "tiles_in": len(plan.tiles), "tiles_ok": counts["ok"], "tiles_nodata": counts["nodata"],
        "tiles_failed": counts["error"],
        "positives": len(pos), "area_km2_swept": round(geo.area_km2(swept.result()), 6),
        "area_km2_positive": round(geo.union_area_km2(pos), 6), "failure_reasons": dict(reasons.most_common()),
        "shards": plan.n_shards, "tiles_this_run": processed, "seconds_this_run": round(seconds, 3),
        "tiles_per_s_this_run": round(processed / seconds, 3) if seconds > 0 and processed else None,
        "files": files, "threshold": threshold, "scenes": scenes, "gsd": plan.gsd,
    }
    if rule is not None or cfg.adapt.batchnorm:
        adabn = read_card(storage.join(out, ADAPTED_MODEL)) if cfg.adapt.batchnorm else None
        summary["adaptation"] = {
            "batchnorm": adabn and {**(adabn.adaptation or {}), "model": ADAPTED_MODEL, "version": adabn.version},
            "prior": rule and rule["prior"], "temperature": rule and rule["temperature"],
            "card_threshold": plan.model["threshold"]}
        if rule and rule["prior"] and "skipped" not in rule["prior"] and cfg.explain.enabled:
            summary["adaptation"]["note"] = ("Grad-CAM overlays were made for tiles at or above the card's "
                                             "threshold while scoring; the moved threshold decides the labels")
    if seen != summary["tiles_ok"] + summary["tiles_nodata"] + summary["tiles_failed"] or seen != len(plan.tiles):
        raise DataError(f"{out}: shards hold {seen} rows for {len(plan.tiles)} tiles")
    storage.write_json(storage.join(out, "summary.json"), summary)
    return summary


def _ok_probabilities(plan: SweepPlan) -> np.ndarray:
    """The raw probabilities of every ``ok`` tile of the finished shards (one float each)."""
    parts = []
    for shard in range(plan.n_shards):
        t = pq.read_table(io.BytesIO(storage.read_bytes(plan.shard_uri(shard))), columns=["probability", "status"])
        f = t.to_pandas()
        parts.append(f.loc[f["status"] == "ok", "probability"].to_numpy(dtype=float))
    return np.concatenate(parts) if parts else np.zeros(0)


def _scene_outputs(scene_maps: "maps.SceneMaps", out: str, threshold: float) -> dict[str, dict]:
    """Each GeoTIFF scene's probability raster and areas in its CRS (:mod:`~landslide.inventory.maps`),
    keyed by scene name; a scene that cannot be written is reported with its reason, never fatal."""
    result = {}
    for uri, scene in scene_maps.scenes.items():
        key = uri.rstrip("/").rsplit("/", 1)[-1]
        try:
            result[key] = {"uri": uri, **maps.write_scene(out, uri, scene, threshold)}
        except StorageError as exc:
            if storage.exists(uri):
                raise  # the output is unwritable: the user must know
            result[key] = {"uri": uri, "error": str(exc)}
        except Exception as exc:
            result[key] = {"uri": uri, "error": f"{type(exc).__name__}: {exc}"}
        if "error" in result[key]:
            log.warning("%s: probability raster and areas not written (%s)", uri, result[key]["error"])
    return result


def summary_lines(s: dict, output: str) -> str:
    if s.get("kind") == "footprints" or s.get("interrupted") and "scenes" in s:
        return footprint_summary_lines(s, output)
    return _tile_summary_lines(s, output)


def footprint_summary_lines(s: dict, output: str) -> str:
    """What a footprint sweep did, for the command line."""
    if s.get("interrupted"):
        return f"interrupted: {s['scenes_done']} of {s['scenes']} scenes done; run again to resume"
    lines = [f"{s['scenes']} scenes ({s['scenes_swept_this_run']} swept this run) with {s['model']['name']} "
             f"{s['model']['version']}: {s['footprints']} footprints, {s['area_m2']:.0f} m² in all",
             f"  footprints: {output}/footprints.parquet, {output}/footprints.geojson; per scene: "
             f"{output}/scenes/ (probability COG and footprints in the scene's CRS)"]
    if s.get("tiles_unreadable"):
        lines.append(f"  {s['tiles_unreadable']} of {s['tiles']} tiles unreadable (left as nodata; reasons per "
                     f"scene in {output}/summary.json)")
    for bad in s.get("scenes_failed", [])[:5]:
        lines.append(f"  FAILED scene {bad['scene']}: {bad['error']} (run again to retry)")
    if len(s.get("scenes_failed", [])) > 5:
        lines.append(f"  ... {len(s['scenes_failed']) - 5} more failed scenes in {output}/summary.json")
    return "\n".join(lines)


def _tile_summary_lines(s: dict, output: str) -> str:
    """The end-of-sweep summary as printed by ``landslide sweep`` and the Ray job (plain text, log friendly)."""
    if s.get("interrupted"):
        return f"Sweep stopped after {s['shards_done']}/{s['shards']} shards; run it again to finish."
    rate = f", {s['tiles_per_s_this_run']:.1f} tiles/s" if s.get("tiles_per_s_this_run") else ""
    nodata = f", {s['tiles_nodata']} without data" if s.get("tiles_nodata") else ""
    lines = [f"{s['tiles_in']} tiles in ({s['region']}): {s['tiles_ok']} ok{nodata}, {s['tiles_failed']} failed; "
             f"{s['positives']} positive ({s['area_km2_positive']:.4f} of {s['area_km2_swept']:.4f} km2); "
             f"{s['tiles_this_run']} tiles this run in {s['seconds_this_run']:.1f} s{rate}"]
    if s["failure_reasons"]:
        lines.append("  failures: " + ", ".join(f"{k} x{v}" for k, v in s["failure_reasons"].items()))
    lines.append(f"  inventory: {output}/inventory.parquet, positives: {output}/inventory.geojson"
                 + (f", areas: {output}/{s['files']['areas']}" if "areas" in s["files"] else "")
                 + (f", map: {output}/{s['files']['preview']}" if "preview" in s["files"] else ""))
    if (s.get("gsd") or {}).get("note"):
        lines.append(f"  GSD: {s['gsd']['note']}")
    a = s.get("adaptation") or {}
    if a.get("batchnorm"):
        lines.append(f"  AdaBN: {a['batchnorm']['layers']} BatchNorm layers re-estimated on {a['batchnorm']['images']} "
                     f"tiles; scored with {output}/{a['batchnorm']['model']} (version {a['batchnorm']['version']})")
    if (a.get("prior") or {}).get("skipped"):
        lines.append(f"  prior shift not applied: {a['prior']['skipped']}")
    elif a.get("prior"):
        lines.append(f"  prior shift: landslide share estimated {a['prior']['estimated_prior']:.3f} (training "
                     f"{a['prior']['train_prior']:.3f}); threshold {a['card_threshold']:.3f} -> {s['threshold']:.3f}"
                     + (" (calibrated scale)" if a.get("temperature") else ""))
    elif a.get("temperature"):
        lines.append(f"  probabilities temperature-scaled (T = {a['temperature']:.3f}); threshold "
                     f"{s['threshold']:.3f} on that scale")
    scenes = s.get("scenes") or {}
    if len(scenes) > 5:  # a folder of scenes: one line, the details are in summary.json
        failed = sum("error" in info for info in scenes.values())
        lines.append(f"  {len(scenes)} scenes: probability rasters and areas in {output}/scenes/"
                     + (f" ({failed} not written, see summary.json)" if failed else ""))
        scenes = {}
    for scene, info in scenes.items():
        if "error" in info:
            lines.append(f"  {scene}: probability raster not written ({info['error']})")
        else:
            lines.append(f"  {scene}: {output}/{info['probability_raster']} ({info['crs']}, cells of "
                         f"{info['cell_px']} px); positive {info['area_m2_positive'] / 1e6:.4f} of "
                         f"{info['area_m2_swept'] / 1e6:.4f} km2 in the scene's CRS")
    return "\n".join(lines)


def _reason(reason: str) -> str:
    """A failure reason without its details, for counting (``corrupt image: ...`` -> ``corrupt image``)."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip() or reason


def scored_batches(predictor: Predictor, batches: Iterable[tuple[Any, pd.DataFrame]], reader: TileReader,
                   tile_pool: cf.Executor, output: str | None, explain: bool, prefetch: int = 2
                   ) -> Iterator[tuple[Any, pd.DataFrame]]:
    """``(key, result rows)`` for each ``(key, index rows)`` batch, in order, reading and decoding the next
    ``prefetch`` batches (:func:`read_tiles`, in ``tile_pool``'s threads) while the model scores this one: the
    loop of the local sweep and of a Ray actor that reads its own tiles."""
    batches = iter(batches)
    ahead: collections.deque = collections.deque()
    with cf.ThreadPoolExecutor(prefetch) as batch_pool:

        def submit() -> None:
            nxt = next(batches, None)
            if nxt is not None:
                ahead.append((nxt[0], nxt[1], batch_pool.submit(read_tiles, nxt[1], reader, tile_pool)))

        for _ in range(prefetch):
            submit()
        while ahead:
            key, rows, future = ahead.popleft()
            submit()
            yield key, infer_tiles(predictor, rows, future.result(), output, explain)


# ----------------------------------------------------------------------------------------------- local runner
def shard_batches(shards: Iterable[tuple[int, pd.DataFrame]], size: int
                  ) -> Iterator[tuple[tuple[int, bool], pd.DataFrame]]:
    """``((shard, last batch of the shard), rows)`` in order, ``size`` rows at most, for each ``(shard, its
    index rows)``."""
    for shard, rows in shards:
        starts = list(range(0, len(rows), size))
        for i, start in enumerate(starts):
            yield (shard, i == len(starts) - 1), rows.iloc[start:start + size]


def run_sweep(cfg: SweepConfig, progress: Callable[[str], None] | None = None,
              stop_after_shards: int | None = None) -> dict:
    """Sweep in this process: ``read_threads`` threads read and decode ahead while the model runs. Re-running
    resumes; ``stop_after_shards`` (tests) stops early as an interruption would."""
    from landslide.models.checkpoint import read_card

    if read_card(cfg.model).task == "segmentation":  # a footprint model: polygons, scene by scene
        from landslide.inventory.footprint_sweep import run_footprint_sweep

        return run_footprint_sweep(cfg, progress, stop_after_shards)
    started = time.perf_counter()
    predictor = Predictor(cfg.model, cfg.device, cfg.threshold, cfg.explain.method, tta=cfg.tta)
    try:
        plan = plan_sweep(cfg, predictor.info)
        pending = plan.pending()
        if len(pending) < plan.n_shards and progress:
            progress(f"resuming: {plan.n_shards - len(pending)} of {plan.n_shards} shards already written")
        if stop_after_shards is not None:
            pending = pending[:stop_after_shards]
        processed, parts = 0, []
        reader = TileReader.for_sweep(cfg, predictor.input_size)
        prefetch = 2  # batches read ahead of the model
        with cf.ThreadPoolExecutor(cfg.read_threads) as tile_pool:
            if pending:
                uri = adapted_model(cfg.output, predictor, plan.tiles, cfg.adapt, cfg.batch_size,
                                    lambda rows: read_tiles(rows, reader, tile_pool))
                if uri != predictor.model_uri:
                    predictor.close()
                    predictor = Predictor(uri, cfg.device, cfg.threshold, cfg.explain.method, tta=cfg.tta)
            batches = shard_batches(((shard, plan.shard_rows(shard)) for shard in pending), cfg.batch_size)
            for (shard, last), results in scored_batches(predictor, batches, reader, tile_pool, cfg.output,
                                                         cfg.explain.enabled, prefetch):
                parts.append(results)
                processed += len(results)
                if last:
                    plan.write_shard(shard, pd.concat(parts, ignore_index=True))
                    parts = []
                    if progress:
                        progress(f"shard {shard + 1}/{plan.n_shards} written ({processed} tiles this run)")
        if plan.pending():
            return {"interrupted": True, "shards_done": len(plan.done), "shards": plan.n_shards}
        return finalize(plan, time.perf_counter() - started, processed)
    finally:
        predictor.close()
