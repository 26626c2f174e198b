"""The ``landslide`` command. Errors a user can fix print one line and exit with code 2 (``--debug`` shows
the traceback); Ctrl-C exits with 130 and finished work stays on disk (re-run to resume)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import get_args

from landslide import __version__
from landslide.config import CamMethod, TileFormat
from landslide.errors import ConfigError, DataError, LandslideError


def cmd_demo(args) -> int:
    from landslide.demo import run_demo

    s = run_demo(args.out, seed=args.seed, quick=args.quick)
    run, ev = s["output_dir"], f"{s['output_dir']}/eval"
    m = s.get("test_metrics", {})
    print(f"\nDemo finished in {s['seconds']:.0f} s. {s['note']}")
    print(f"  data (synthetic):    {s['data']}")
    print(f"  model checkpoint:    {s['model_dir']}  (model.safetensors + model_card.json)")
    print(f"  report:              {ev}/report.md")
    print(f"  metrics:             {ev}/metrics.json")
    print(f"  Grad-CAM galleries:  {ev}/gallery/ (TP/FP/FN/TN)")
    print(f"  plots:               {ev}/*.png, training history: {run}/history.json")
    sw = s["sweep"]
    print(f"  sweep inventory:     {sw['output']}/inventory.geojson (open in QGIS; {sw['positives']} of "
          f"{sw['tiles_in']} tiles positive, {sw['agreement_with_truth']:.0%} agree with the synthetic truth)")
    if m:
        print("  test split:          " + ", ".join(f"{k}={m[k]:.3f}" for k in ("accuracy", "f1", "mcc", "roc_auc")
                                                      if m.get(k) is not None))
    fp = s["footprints"]
    print(f"  footprints:          {fp['output']}/footprints.geojson beside truth.geojson (SYNTHETIC): "
          f"{fp['predicted_footprints']} predicted, {fp['true_footprints']} true on {fp['test_chips']} test chips, "
          f"polygon IoU {fp['polygon_iou']:.3f} against the truth; report {fp['report']}")
    fs = fp["sweep"]
    print(f"  footprint sweep:     {fs['output']}/footprints.geojson (the synthetic region's GeoTIFF: "
          f"{fs['footprints']} footprints, {fs['true_footprints']} true, {fs['true_found_at_iou_0_5']} of them found "
          f"at IoU >= 0.5, polygon IoU {fs['polygon_iou']:.3f} against the truth; SYNTHETIC)")
    return 0


def cmd_preprocess(args) -> int:
    from landslide.data.preprocess import PreprocessOptions, preprocess

    opts = PreprocessOptions(max_side=args.max_side, quality=args.quality, overwrite=args.overwrite)
    r = preprocess(args.src, args.dst, opts, workers=args.workers, progress=not args.no_progress)
    print(f"{r['images']} images: {r['written']} written, {r['skipped_existing']} already done, "
          f"{r['failed']} failed ({r['seconds']} s). Report: {args.dst}/preprocess_report.csv")
    for f in r["failures"][:10]:
        print(f"  failed: {f['source']}: {f['reason']}")
    return 0


def cmd_train(args) -> int:
    from landslide.config import load_config, parse_set
    from landslide.experiments.report import format_summary
    from landslide.experiments.runner import run_experiment
    from landslide.training.run import run_training

    if not (args.config or args.config_file):
        args.parser.error("give the config file (CONFIG or --config)")
    overrides = parse_set(args.set)
    if args.init_from:
        overrides["train.init_from"] = args.init_from
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    cfg = load_config(args.config or args.config_file, overrides)
    summary = run_experiment(cfg, run_training, train=not args.report_only)
    print(format_summary(summary))
    return 1 if summary.get("failed") and not args.report_only else 0


def _one_split(data, split: str | None, source: str):
    """``data`` (a Manifest) restricted to ``--split`` when given; ConfigError when it has no split column."""
    if not split:
        return data
    if "split" not in data.frame.columns:
        raise ConfigError(f"--split {split}: {source} has no 'split' column")
    return data.subset(data.frame["split"] == split)


def _evaluation_view(args, card, data):
    """The ChipView of ``landslide evaluate`` (--match-gsd, --size-neutral), its inputs checked first."""
    from landslide.data.dataset import ChipView

    match_gsd = None
    if args.match_gsd is not None:
        match_gsd = args.match_gsd or (card.input_gsd or {}).get("median_m")
        if not match_gsd:
            raise ConfigError(f"--match-gsd: model {card.name!r} does not record the GSD it was trained at "
                              "(its chips had no gsd_m); give it: --match-gsd METRES_PER_PIXEL")
        if "gsd_m" not in data.frame.columns or not (data.frame["gsd_m"] > 0).any():
            raise ConfigError(f"--match-gsd: {args.data} has no gsd_m column (or no value in it): nothing to "
                              "resample; add it (landslide data merge --gsd-m)")
        from landslide.data.gsd import MAX_RESAMPLING

        ratios = data.frame["gsd_m"].dropna() / match_gsd
        if ((ratios > MAX_RESAMPLING) | (ratios < 1 / MAX_RESAMPLING)).any():
            raise ConfigError(f"--match-gsd {match_gsd:g}: the chips' gsd_m ({ratios.min() * match_gsd:g} to "
                              f"{ratios.max() * match_gsd:g} m/px) would be resampled by more than a factor "
                              f"{MAX_RESAMPLING}; check the units (metres per pixel)")
    return ChipView(card.input_size, gsd_m=match_gsd, square_px=args.size_neutral)


def cmd_evaluate(args) -> int:
    from landslide.config import EvalConfig
    from landslide.data import manifest as manifest_lib
    from landslide.evaluation.evaluate import evaluate_model
    from landslide.models.checkpoint import load_checkpoint, read_card
    from landslide.inference.device import resolve_device

    if read_card(args.model).task == "segmentation" or args.footprints:
        return _evaluate_footprints(args)
    if args.cam_threshold is not None:
        raise ConfigError("--cam-threshold sets the threshold of Grad-CAM footprints: add --footprints")
    model, card = load_checkpoint(args.model)
    data = _one_split(manifest_lib.load(args.data), args.split, args.data)
    if len(data) == 0:
        raise ConfigError(f"{args.data}: no labelled images to evaluate")
    cfg = EvalConfig(bootstrap=args.bootstrap, cam_method=args.cam_method, cam_max_images=args.cam_max_images,
                     gallery_size=args.gallery_size)
    device = resolve_device(args.device)
    extra = {"data": args.data}
    view = _evaluation_view(args, card, data)
    adaptation = None
    if args.adapt_bn:  # AdaBN on the evaluated images themselves, as the evaluation shows them; no label is read
        import torch
        from torch.utils.data import DataLoader

        from landslide.data.dataset import ChipDataset, collate_skip_bad
        from landslide.inference.adapt import adapt_batchnorm

        loader = DataLoader(ChipDataset(data, card.transform(), schema=model.tag_schema, view=view),
                            batch_size=args.batch_size, shuffle=True, collate_fn=collate_skip_bad,
                            generator=torch.Generator().manual_seed(0))
        adaptation = adapt_batchnorm(model, loader, device)
        extra["adaptation"] = (f"AdaBN: BatchNorm statistics of {adaptation['layers']} layers re-estimated on "
                               f"the {adaptation['images']} evaluated images (no labels)")
        print(extra["adaptation"])
    m = evaluate_model(model, card, data, args.out, cfg, history=card.history, device=device,
                       batch_size=args.batch_size, title=f"{card.name} on {args.data}",
                       extra_report=extra, adaptation=adaptation, view=view)
    print(f"{m['n']} images, threshold {m['threshold']:.3f}: " + ", ".join(
        f"{k}={m[k]:.3f}" for k in ("accuracy", "precision", "recall", "specificity", "f1", "mcc") if m[k] == m[k]))
    for region, r in m.get("by_region", {}).items():
        print(f"  region {region}: {r['n']} images, " + ", ".join(
            f"{k}={r[k]:.3f}" for k in ("accuracy", "f1", "mcc") if r[k] == r[k]))
    print(f"Report: {args.out}/report.md")
    return 0


def _evaluate_footprints(args) -> int:
    """``landslide evaluate`` on chips with masks: a footprint model (its pixel threshold from the card), or a
    chip classifier's Grad-CAM footprints (``--footprints``; the Grad-CAM threshold chosen on the validation
    rows of ``--data``, or ``--cam-threshold``)."""
    from landslide.config import EvalConfig
    from landslide.data import manifest as manifest_lib
    from landslide.evaluation.footprints import (CamScores, SegmenterScores, choose_min_object_px,
                                                 choose_pixel_threshold, evaluate_footprints)
    from landslide.inference.device import resolve_device
    from landslide.models.checkpoint import load_checkpoint, read_card

    task = read_card(args.model).task
    unused = [flag for flag, value in (("--adapt-bn", args.adapt_bn), ("--match-gsd", args.match_gsd is not None),
                                       ("--size-neutral", args.size_neutral is not None)) if value]
    if unused:
        raise ConfigError(f"{', '.join(unused)}: not available for footprint evaluations (yet)")
    if task == "segmentation" and args.cam_threshold is not None:
        raise ConfigError("--cam-threshold: a footprint model's pixel threshold is in its model card (or chosen "
                          "again with --choose-on)")
    model, card = load_checkpoint(args.model, task=task)
    everything = manifest_lib.load(args.data, ambiguous=True)  # footprints: every chip's mask is its truth
    if "mask_uri" not in everything.frame.columns:
        raise ConfigError(f"{args.data}: footprints are scored against masks; the manifest needs a mask_path "
                          "column (a run's splits.csv carries it)")
    data = _one_split(everything, args.split, args.data)
    if len(data) == 0:
        raise ConfigError(f"{args.data}: no labelled images to evaluate")
    cfg = EvalConfig(bootstrap=args.bootstrap, gallery_size=args.gallery_size)
    device = resolve_device(args.device)
    extra = {"data": args.data + (f" (split {args.split})" if args.split else "")}
    threshold = None
    if task == "segmentation":
        scores = SegmenterScores(model, device)
        title = f"{card.name}: footprints on {args.data}"
        what = "pixel threshold"
    else:
        scores = CamScores(model, card, args.cam_method, device)
        title = f"{card.name}: Grad-CAM footprints on {args.data}"
        what = "Grad-CAM threshold"
    if args.cam_threshold is not None and args.choose_on:
        raise ConfigError("--cam-threshold fixes the threshold, --choose-on chooses it: give one of them")
    if args.cam_threshold is not None:
        threshold = {"method": "fixed", "value": args.cam_threshold, "chosen_on": "command line",
                     "unit": f"{args.cam_method} value"}
    elif task != "segmentation" or args.choose_on:  # a footprint model's own: in its card unless asked
        choose_on = args.choose_on or "val"
        if args.split == choose_on:
            raise ConfigError(f"--choose-on {choose_on}: the {what} must be chosen on other chips than those "
                              "evaluated (--split)")
        if not args.split:
            raise ConfigError(f"the {what} is chosen on the '{choose_on}' rows of {args.data}: give --split (e.g. "
                              "--split test) so that other chips are scored")
        if "split" not in everything.frame.columns:
            raise ConfigError(f"{args.data}: no split column to choose the {what} on ('{choose_on}' rows); give a "
                              "run's splits.csv" + (" or --cam-threshold" if task != "segmentation" else ""))
        val = _one_split(everything, choose_on, args.data)
        if len(val) == 0:
            raise ConfigError(f"{args.data}: no '{choose_on}' rows to choose the {what} on")
        threshold = choose_pixel_threshold(scores, card, val, "f1", 0.5, args.batch_size, device)
        threshold["min_object_px"] = choose_min_object_px(scores, card, val, threshold["value"],
                                                          batch_size=args.batch_size, device=device)
        threshold["chosen_on"] = f"{choose_on} rows of {args.data} ({len(val)} chips)"
        print(f"{what} {threshold['value']:.3f} ({threshold['method']}) and minimum footprint "
              f"{threshold['min_object_px']['value']} px chosen on {len(val)} '{choose_on}' chips: pixel F1 "
              f"{threshold['validation_metrics']['f1']:.3f} there")
    try:
        m = evaluate_footprints(scores, card, data, args.out, cfg, device, args.batch_size, title=title,
                                extra_report=extra, threshold=threshold)
    finally:
        scores.close()
    print(f"{m['images']} chips, threshold {m['threshold']:.3f}: " + ", ".join(
        f"{name}={m[key] if '/' not in key else m[key.split('/')[0]][key.split('/')[1]]:.3f}"
        for name, key in (("pixel IoU", "iou"), ("pixel F1", "f1"), ("object F1@0.5", "object@0.5/f1"))))
    for region, r in m.get("by_region", {}).items():
        print(f"  region {region}: {r['images']} chips, pixel IoU={r['iou']:.3f}, pixel F1={r['f1']:.3f}, "
              f"object F1@0.5={r['object@0.5']['f1']:.3f}")
    print(f"Report: {args.out}/report.md")
    return 0


def cmd_models(args) -> int:
    from landslide.models.registry import get_spec, list_backbones

    for name in list_backbones():
        spec = get_spec(name)
        weights = "offline weights" if spec.offline_weights else ("from scratch" if spec.timm_name is None
                                                                   else "hub or weights URI")
        print(f"{name:24s} {spec.input_size:4d} px  {len(spec.blocks):2d} blocks  CAM {spec.cam_layer:16s} {weights}")
    return 0


def cmd_synth(args) -> int:
    from landslide.data.synthetic import SYNTHETIC_NOTE, generate_dataset

    uri = generate_dataset(args.out, n_per_class=args.n_per_class, size=args.size, seed=args.seed)
    print(f"{SYNTHETIC_NOTE}\nManifest: {uri}")
    return 0


def cmd_sweep(args) -> int:
    from landslide.config import SweepConfig, load_config, parse_set
    from landslide.inventory.sweep import run_sweep, summary_lines

    cfg = load_config(args.config, parse_set(args.set), schema=SweepConfig)
    summary = run_sweep(cfg, progress=None if args.quiet else lambda m: print(m, flush=True))
    print(summary_lines(summary, cfg.output))
    return 0


def default_index_uri(source: str) -> str:
    """Where ``tiles index`` writes without ``--out``: inside a folder or tree source, beside a single file
    (``scene.tif`` -> ``scene.tiles_index.parquet``)."""
    from landslide import storage

    source = source.rstrip("/")
    name = source.rsplit("/", 1)[-1]
    if "." in name and not storage.isdir(source):
        return storage.join(storage.parent(source), name.rsplit(".", 1)[0] + ".tiles_index.parquet")
    return storage.join(source, "tiles_index.parquet")


def cmd_tiles_index(args) -> int:
    from landslide import lonlat
    from landslide.config import RegionConfig, TilesConfig, parse_config
    from landslide.inventory.tiles import build_index, index_record, write_index

    out = args.out or default_index_uri(args.source)
    if args.bbox:  # the same checks as a sweep's region.bbox
        parse_config({"bbox": list(args.bbox)}, "--bbox", schema=RegionConfig)
    if args.bands:  # the same checks as tiles.bands
        parse_config({"source": args.source, "bands": args.bands}, "--bands", schema=TilesConfig)
    index = build_index(args.source, args.format, args.zoom, args.chip_size, args.overlap,
                        tuple(args.bbox) if args.bbox else None, scheme=args.scheme, bands=args.bands)
    write_index(index, out)
    w, s, e, n = lonlat.bounds(index)
    print(f"{len(index)} tiles indexed: lon {w:.6f}..{e:.6f}{' (across 180)' if w > e else ''}, "
          f"lat {s:.6f}..{n:.6f}\nBuilt with: {index_record(index).describe()}\n"
          f"Index: {out} (use it as tiles.index in sweep configs)")
    return 0


def _catalog_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"),
                   help="lon/lat box (degrees; W > E crosses 180)")
    p.add_argument("--polygon", help="GeoJSON (Multi)Polygon file/URI: events inside it")
    p.add_argument("--since", help="first date, e.g. 2010-01-01")
    p.add_argument("--until", help="last date (a date without time includes that whole day)")
    p.add_argument("--country", action="append", help="country name or ISO code (repeatable)")
    p.add_argument("--size", action="append", help="landslide size, e.g. large (repeatable)")
    p.add_argument("--trigger", action="append", help="trigger, e.g. earthquake (repeatable)")
    p.add_argument("--category", action="append", help="category, e.g. debris_flow (repeatable)")
    p.add_argument("--max-accuracy-km", type=float, help="only events located this well (exact = 0)")


def _query_catalog(args):
    from landslide.config import RegionConfig
    from landslide.data.catalog import load_catalog, query
    from landslide.inventory.region import load_region

    cat = load_catalog(args.catalog)
    polygon = load_region(RegionConfig(geojson=args.polygon)).geometry if args.polygon else None
    return cat, query(cat, bbox=tuple(args.bbox) if args.bbox else None, polygon=polygon, since=args.since,
                      until=args.until, countries=args.country, sizes=args.size, triggers=args.trigger,
                      categories=args.category, max_accuracy_km=args.max_accuracy_km)


def cmd_catalog_load(args) -> int:
    from landslide import storage
    from landslide.data.catalog import load_catalog, write

    cat = load_catalog(args.source)
    report = cat.report()
    files = {"catalog": storage.join(args.out, "catalog.parquet"),
             "geojson": storage.join(args.out, "catalog.geojson"),
             "report": storage.join(args.out, "load_report.json")}
    write(cat, files["catalog"])
    write(cat, files["geojson"])
    storage.write_json(files["report"], {**report, "invalid": cat.invalid, "warnings_all": cat.warnings})
    print(f"{report['events']} events from {report['rows_read']} rows "
          f"({report['date_range'][0] if report['date_range'] else '-'} .. "
          f"{report['date_range'][1] if report['date_range'] else '-'}); "
          f"{report['invalid_rows']} invalid row(s) excluded, {report['warnings']} warning(s)")
    for item in cat.invalid[:10]:
        print(f"  invalid: line {item['line']}: {item['reason']}")
    for item in cat.warnings[:10]:
        print(f"  warning: line {item['line']}: {item['reason']}")
    more = max(0, len(cat.invalid) - 10) + max(0, len(cat.warnings) - 10)
    if more:
        print(f"  ... {more} more in {files['report']}")
    print(f"Catalog: {files['catalog']} (GeoParquet), {files['geojson']}; report: {files['report']}")
    return 0


def cmd_catalog_query(args) -> int:
    from landslide.data.catalog import write

    cat, hits = _query_catalog(args)
    write(hits, args.out)
    print(f"{len(hits)} of {len(cat)} events match -> {args.out}")
    return 0


def cmd_catalog_join(args) -> int:
    from landslide import storage
    from landslide.data.catalog import join_chips, load_catalog

    chips = storage.read_table(args.manifest, "chip manifest")
    joined = join_chips(chips, load_catalog(args.catalog), args.radius_km, args.days, args.date_column)
    matched = int(joined["glc_event_id"].notna().sum())
    storage.write_table(joined, args.out)
    print(f"{matched} of {len(joined)} chips have a catalog event within {args.radius_km:g} km"
          + (f" and {args.days:g} days" if args.days is not None and args.date_column in chips.columns else "")
          + f" -> {args.out} (glc_* columns)")
    return 0


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def cmd_catalog_leakage(args) -> int:
    from landslide import storage
    from landslide.data import manifest as manifest_lib
    from landslide.evaluation.leakage import leakage_lines, tag_leakage

    categorical, numeric = _columns(args.categorical), _columns(args.numeric)
    if not categorical and not numeric:
        raise ConfigError("name the tag columns to check with --categorical and/or --numeric")
    data = manifest_lib.load(args.manifest, check_files=False)
    absent = [c for c in (*categorical, *numeric) if c not in data.frame.columns]
    if absent:
        raise DataError(f"{args.manifest}: tag column(s) {absent} not in the manifest; "
                        f"columns: {list(data.frame.columns)}")
    report = tag_leakage(data.frame, categorical, numeric, args.max_auc, seed=args.seed)
    if args.out:
        storage.write_json(args.out, report)
    print("\n".join(leakage_lines(report)))
    return 1 if report["leaks"] else 0


def cmd_labels(args) -> int:
    from landslide import storage
    from landslide.data.masks import label_table

    frame, report = label_table(args.source, args.mask_column, args.landslide_min, args.clean_max)
    storage.write_table(frame, args.out)
    counts = report["counts"]
    print(f"labelled {sum(counts.values())} chips -> {args.out}: {counts['landslide']} landslide (mask >= "
          f"{args.landslide_min:.0%}), {counts['non_landslide']} non_landslide (mask <= {args.clean_max:.0%}), "
          f"{counts['ambiguous']} ambiguous (skipped in training); {len(report['unreadable'])} unreadable masks")
    for item in report["unreadable"][:10]:
        print(f"  unreadable: {item['mask']}: {item['reason']}")
    return 1 if report["unreadable"] else 0


def cmd_data_merge(args) -> int:
    from landslide.data.manifest import merge

    merged = merge(args.manifests, args.out, args.region, args.sensor, args.gsd_m,
                   keep_ambiguous=args.keep_ambiguous)
    summary = merged.summary()
    kept = int(merged.frame["ambiguous"].sum()) if "ambiguous" in merged.frame else 0
    print(f"{summary['samples']} chips from {len(args.manifests)} manifests -> {args.out} "
          f"({summary['classes']['landslide']} landslide"
          + (f" of which {kept} ambiguous (kept)" if args.keep_ambiguous else "")
          + f", {summary['classes']['non_landslide']} non_landslide)")
    for region, counts in summary.get("regions", {}).items():
        print(f"  region {region}: {counts['samples']} chips, {counts['landslide']} landslide")
    if "regions" not in summary:
        print("  no region named: give --region so evaluation can break results down by region")
    return 0


def cmd_data_confounds(args) -> int:
    from landslide import storage
    from landslide.data.manifest import load
    from landslide.evaluation.confounds import confound_check, confound_lines

    data = _one_split(load(args.manifest), args.split, args.manifest)
    report = confound_check(data.frame, args.max_auc, max_images=args.max_images)
    if args.out:
        storage.write_json(args.out, report)
    print("\n".join(confound_lines(report)) if report.get("properties") else report["verdict"])
    return 1 if report["confounds"] else 0


def cmd_catalog_seed(args) -> int:
    from landslide import storage
    from landslide.data.catalog import seed_regions

    cat, hits = _query_catalog(args)
    regions = seed_regions(hits, args.size_km, args.pad_accuracy)
    storage.write_json(args.out, regions)
    area = sum(f["properties"]["area_km2"] for f in regions["features"])
    print(f"{len(regions['features'])} regions around {len(hits)} of {len(cat)} events, {area:.1f} km2 in all "
          f"(overlaps counted twice) -> {args.out}\nUse it in a sweep config as region: {{geojson: {args.out}}}")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _square_px(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of pixels: {text!r}") from None
    if not 8 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"must be 8 to 4096 pixels, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="landslide", description=" ".join(__doc__.split()))
    parser.add_argument("--version", action="version", version=f"landslide {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="synthetic data -> train -> evaluate -> Grad-CAM report")
    p.add_argument("--out", default="demo-output")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny version for smoke tests (seconds)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("preprocess", help="centre-crop, downscale and JPEG-encode a folder of images")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--max-side", type=int, default=1000, help="largest output side in px (default 1000)")
    p.add_argument("--quality", type=int, default=95, choices=range(1, 101), metavar="1-100")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_preprocess)

    for name, help_text in (("train", "train from a YAML run config (a single run or any experiment)"),
                            ("experiment", "run an experiment or study config (the same as train): all its runs, "
                                           "resuming finished ones, then the comparison / study report")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config_file", nargs="?", metavar="CONFIG", help="the YAML config (or --config)")
        p.add_argument("--config", help=argparse.SUPPRESS if name == "experiment" else "the YAML config")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
        p.add_argument("--init-from", help="stage-2 weight transfer: start from this checkpoint folder")
        p.add_argument("--output-dir")
        p.add_argument("--report-only", action="store_true",
                       help="train nothing: write the comparison / study report from the runs finished so far")
        p.set_defaults(func=cmd_train, parser=p)

    p = sub.add_parser("evaluate", help="metrics, plots, Grad-CAM galleries and report for a model")
    p.add_argument("--model", required=True, help="checkpoint folder (model.safetensors + model_card.json)")
    p.add_argument("--adapt-bn", action="store_true",
                   help="AdaBN: re-estimate BatchNorm statistics on the evaluated images first (no labels read; "
                        "evaluate one region per call to adapt to it)")
    p.add_argument("--match-gsd", nargs="?", type=_positive_float, const=0.0, metavar="M",
                   help="resample each chip with a gsd_m to the model's input GSD first (the one in its card, or "
                        "M metres per pixel)")
    p.add_argument("--size-neutral", type=_square_px, metavar="PX",
                   help="show every chip as the same PX x PX-pixel window at its own resolution (its centre, "
                        "mirrored where smaller) before the model's resize, so chip size and aspect ratio cannot "
                        "carry the label; compare with the plain evaluation to see whether a model leans on "
                        "chip size")
    p.add_argument("--data", required=True, help="manifest (CSV/Parquet) or class-folder tree")
    p.add_argument("--out", required=True)
    p.add_argument("--split", choices=["train", "val", "test"], help="only rows of this split")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--cam-method", default="gradcam", choices=get_args(CamMethod))
    p.add_argument("--cam-max-images", type=int, default=200)
    p.add_argument("--footprints", action="store_true",
                   help="score footprints against the manifest's masks (mask_path): a footprint model always does; "
                        "a chip classifier gives Grad-CAM footprints, thresholded where pixel F1 is best on the "
                        "--choose-on rows")
    p.add_argument("--choose-on", choices=["train", "val", "test"],
                   help="footprints: choose the threshold (pixel F1) and minimum footprint size (object F1) on the "
                        "rows of this split of --data (Grad-CAM footprints: default val; a footprint model: its "
                        "card's values unless given)")
    p.add_argument("--cam-threshold", type=_unit_float, metavar="T",
                   help="Grad-CAM footprints: this fixed threshold on the [0, 1] map instead of one chosen on masks")
    p.add_argument("--gallery-size", type=_count, default=12, help="images shown per outcome in the galleries")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sweep", help="run a model over every tile of a region -> inventory (GeoParquet/GeoJSON)")
    p.add_argument("--config", required=True, help="sweep config YAML (see configs/sweeps/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("tiles", help="tile archives")
    tiles_sub = p.add_subparsers(dest="tiles_command", required=True)
    p = tiles_sub.add_parser("index", help="list a tile archive once into a Parquet index (uri + EPSG:4326 bounds)")
    p.add_argument("source", help="XYZ tree, tile manifest, GeoJSON index, GeoTIFF or folder of GeoTIFFs")
    p.add_argument("--out", help="index URI (default: SOURCE/tiles_index.parquet for a folder or tree, "
                                 "NAME.tiles_index.parquet beside a single file)")
    p.add_argument("--format", default="auto", choices=get_args(TileFormat))
    p.add_argument("--zoom", type=int, help="XYZ: zoom level to index")
    p.add_argument("--chip-size", type=int, help="GeoTIFF: window side in px")
    p.add_argument("--overlap", type=float, default=0.0, help="GeoTIFF: window overlap fraction")
    p.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"),
                   help="XYZ with --zoom: only list tile columns in this lon/lat box (W > E crosses 180)")
    p.add_argument("--scheme", default="auto", choices=["auto", "xyz", "tms"],
                   help="XYZ trees: row order (tms: rows from the south, gdal2tiles' default; auto: tms when "
                        "the tree has a tilemapresource.xml, else xyz)")
    p.add_argument("--bands", type=int, nargs="+", metavar="B",
                   help="GeoTIFF: bands to read as R G B (or one as grey), 1-based, e.g. 3 2 1 (as tiles.bands)")
    p.set_defaults(func=cmd_tiles_index)

    p = sub.add_parser("catalog", help="NASA Global Landslide Catalog: load, query, join to chips, seed sweeps")
    cat_sub = p.add_subparsers(dest="catalog_command", required=True)
    p = cat_sub.add_parser("load", help="normalise a GLC export CSV -> GeoParquet + GeoJSON + report")
    p.add_argument("source", help="GLC export CSV (path or URI)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_catalog_load)
    p = cat_sub.add_parser("query", help="events matching filters -> .parquet / .geojson / .csv")
    p.add_argument("catalog", help="GLC export CSV or a catalog.parquet from `catalog load`")
    _catalog_filters(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_catalog_query)
    p = cat_sub.add_parser("join", help="tag chips (manifest with lat/lon) with the nearest catalog event")
    p.add_argument("manifest", help="chip manifest CSV/Parquet with lat, lon (and optionally a date column)")
    p.add_argument("catalog")
    p.add_argument("--radius-km", type=float, required=True)
    p.add_argument("--days", type=float, help="also require the event within this many days of the chip's date")
    p.add_argument("--date-column", default="date")
    p.add_argument("--out", required=True, help="tagged manifest (.csv or .parquet)")
    p.set_defaults(func=cmd_catalog_join)
    p = cat_sub.add_parser("leakage", help="do a manifest's tag columns give the label away? (exit 1 if so)")
    p.add_argument("manifest", help="labelled manifest with tag columns (e.g. from `catalog join`)")
    p.add_argument("--categorical", help="comma-separated categorical tag columns")
    p.add_argument("--numeric", help="comma-separated numeric tag columns")
    p.add_argument("--max-auc", type=float, default=0.9, help="AUC at which a tag leaks (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the report as JSON here")
    p.set_defaults(func=cmd_catalog_leakage)
    p = cat_sub.add_parser("seed", help="sweep regions (boxes) around catalog events -> GeoJSON")
    p.add_argument("catalog")
    _catalog_filters(p)
    p.add_argument("--size-km", type=float, required=True, help="side of the box around each event")
    p.add_argument("--pad-accuracy", action="store_true", help="grow each box by twice its location accuracy")
    p.add_argument("--out", required=True, help="regions GeoJSON (use as region.geojson in a sweep)")
    p.set_defaults(func=cmd_catalog_seed)

    p = sub.add_parser("labels", help="chip labels from landslide masks by the documented rule (landslide.data.masks)")
    p.add_argument("source", help="CSV/Parquet of chips with a mask column (paths relative to the table)")
    p.add_argument("--out", required=True, help="the labelled table (.csv or .parquet)")
    p.add_argument("--mask-column", default="mask_path")
    p.add_argument("--landslide-min", type=float, default=0.05, help="landslide if mask fraction >= this")
    p.add_argument("--clean-max", type=float, default=0.0, help="non_landslide if mask fraction <= this")
    p.set_defaults(func=cmd_labels)

    p = sub.add_parser("data", help="labelled data sets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("merge", help="combine manifests of several regions/sensors into one, with region, "
                                          "sensor and GSD columns")
    p.add_argument("manifests", nargs="+", help="manifests (CSV/Parquet) or class folders, local or URIs")
    p.add_argument("--out", required=True, help="the merged manifest (.csv or .parquet)")
    p.add_argument("--region", nargs="+", help="region name(s): one for all or one per manifest, in order; fills "
                                               "blank or missing 'region' cells")
    p.add_argument("--sensor", nargs="+", help="sensor name(s), as --region")
    p.add_argument("--gsd-m", nargs="+", type=float, help="ground sampling distance(s) in metres per pixel, "
                                                          "as --region")
    p.add_argument("--keep-ambiguous", action="store_true",
                   help="keep chips labelled ambiguous (small landslides under the mask rule's threshold), for "
                        "footprint models trained with data.ambiguous: keep; classifiers skip them at load")
    p.set_defaults(func=cmd_data_merge)
    p = data_sub.add_parser("confounds", help="do file properties (size, aspect, format) give the label away? "
                                              "(exit 1 if so)")
    p.add_argument("manifest", help="manifest (CSV/Parquet) or class folder")
    p.add_argument("--split", choices=["train", "val", "test"], help="check one split only")
    p.add_argument("--max-auc", type=float, default=0.7, help="out-of-fold ROC AUC that counts as a confound")
    p.add_argument("--max-images", type=int, default=2000, help="read at most this many chips (stratified sample)")
    p.add_argument("--out", help="write the full report as JSON")
    p.set_defaults(func=cmd_data_confounds)

    p = sub.add_parser("models", help="list the backbone registry")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("synth", help="generate a synthetic labelled data set")
    p.add_argument("--out", required=True)
    p.add_argument("--n-per-class", type=int, default=160)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except LandslideError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished epochs and files are kept; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
