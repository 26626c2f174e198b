"""Footprint models (issue 21), first slice: smp models on registry encoders with offline weights, masks in the
data, joint augmentation, losses and footprint metrics."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score, jaccard_score

from landslide.data.transforms import build_transform
from landslide.errors import ConfigError


def test_segmenter_on_a_registry_encoder_with_the_classifier_s_offline_weights():
    from landslide.models.classifier import build_model
    from landslide.models.segmentation import build_segmenter, check_input_size

    seg = build_segmenter("mobilenetv2_100", "unet", pretrained="offline")
    clf = build_model("mobilenetv2_100", pretrained="offline")
    assert seg.weights_info["source"].startswith("offline:") and seg.weights_info["into"] == "encoder"
    assert seg.weights_info["tensors_loaded"] == seg.weights_info["tensors_total"] == len(seg.encoder.state_dict())
    for key in ("conv_stem.weight", "blocks.6.0.conv_pwl.weight", "bn1.running_mean"):
        assert torch.equal(seg.encoder.state_dict()[key], clf.backbone.state_dict()[key])
    seg.eval()
    with torch.no_grad():
        assert seg(torch.zeros(2, 3, 96, 96)).shape == (2, 1, 96, 96)
    with pytest.raises(ValueError, match="multiples of 32"):
        seg(torch.zeros(1, 3, 100, 100))
    assert check_input_size(128) == 128
    with pytest.raises(ConfigError, match="use 96 or 128"):
        check_input_size(100)
    with pytest.raises(ConfigError, match="no timm model"):
        build_segmenter("baseline_cnn")
    with pytest.raises(ConfigError, match="unknown segmentation architecture"):
        build_segmenter("mobilenetv2_100", "segformer")
    fpn = build_segmenter("tf_efficientnet_lite0", "fpn")
    assert fpn.weights_info == {"source": "none"} and fpn(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_freezing_a_footprint_model_s_encoder():
    """Feature extraction trains the decoder only; last_blocks counts the encoder's blocks (paths as timm's
    features_only encoder names them, e.g. densenet's flattened ones); the decoder always trains."""
    from landslide.models.freezing import apply_freezing
    from landslide.models.segmentation import build_segmenter

    seg = build_segmenter("mobilenetv2_100", "unet")
    head = apply_freezing(seg, "head")
    assert not any(p.requires_grad for p in seg.encoder.parameters())
    assert all(p.requires_grad for p in seg.net.decoder.parameters())
    two = apply_freezing(seg, "last_blocks", 2)
    assert two["unfrozen"] == ["blocks.5", "blocks.6"] and head["trainable_params"] < two["trainable_params"]
    dense = build_segmenter("densenet121", "unet")
    assert apply_freezing(dense, "last_blocks", 2)["unfrozen"] == ["features_denseblock4", "features_norm5"]
    with pytest.raises(ConfigError, match="blocks in its encoder"):
        apply_freezing(seg, "last_blocks", 99)


def _blobs(shape, boxes):
    mask = np.zeros(shape, bool)
    for r0, r1, c0, c1 in boxes:
        mask[r0:r1, c0:c1] = True
    return mask


def test_footprint_metrics_by_pixel_and_object():
    from landslide.evaluation.segmentation import image_counts, metrics_from_counts, segmentation_metrics

    true = _blobs((40, 40), [(0, 10, 0, 10), (20, 30, 20, 30)])  # two landslides of 100 px
    # one prediction covering 60 % of the first (IoU 0.6), one a shifted copy of the second (IoU 1/3), one
    # false object, and a 2-px speck
    pred = _blobs((40, 40), [(0, 10, 0, 6), (20, 30, 25, 35), (35, 39, 0, 4), (0, 1, 38, 40)])
    c = image_counts(pred, true)
    assert (c["tp"], c["fp"], c["fn"]) == (60 + 50, 50 + 16 + 2, 40 + 50)
    assert c["tp"] + c["fp"] + c["fn"] + c["tn"] == 1600
    assert (c["true_objects"], c["pred_objects"], c["matched@0.5"], c["matched@0.25"]) == (2, 4, 1, 2)
    m = metrics_from_counts(c)
    assert m["iou"] == pytest.approx(jaccard_score(true.ravel(), pred.ravel()))
    assert m["f1"] == pytest.approx(f1_score(true.ravel(), pred.ravel()))
    assert m["object@0.5"] == pytest.approx({"precision": 0.25, "recall": 0.5, "f1": 1 / 3})
    assert m["area_ratio"] == pytest.approx(178 / 200) and m["area_error"] == pytest.approx(-22 / 200)
    assert image_counts(pred, true, min_object_px=3)["pred_objects"] == 3  # the speck is not an object
    # one true object split in two predictions: one match at most
    split = image_counts(_blobs((20, 20), [(0, 10, 0, 4), (0, 10, 5, 10)]), _blobs((20, 20), [(0, 10, 0, 10)]))
    assert split["matched@0.25"] == 1 and split["pred_objects"] == 2
    # objects predicted and true, none matching: object F1 is 0, not undefined
    apart = metrics_from_counts(image_counts(_blobs((20, 20), [(0, 4, 0, 4)]), _blobs((20, 20), [(10, 14, 10, 14)])))
    assert apart["object@0.5"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # nothing true and nothing predicted: undefined, not perfect
    empty = metrics_from_counts(image_counts(np.zeros((8, 8)), np.zeros((8, 8))))
    assert np.isnan(empty["iou"]) and np.isnan(empty["object@0.5"]["recall"])
    with pytest.raises(ValueError, match="differ in shape"):
        image_counts(np.zeros((8, 8)), np.zeros((8, 9)))

    rng = np.random.default_rng(0)
    rows = []
    for _ in range(30):
        t = _blobs((32, 32), [(r := rng.integers(0, 20), r + 10, (q := rng.integers(0, 20)), q + 10)])
        p = np.roll(t, rng.integers(-3, 4), axis=1)
        rows.append(image_counts(p, t))
    counts = pd.DataFrame(rows)
    groups = np.repeat(np.arange(10), 3)
    out = segmentation_metrics(counts, groups, n_boot=200)
    lo, hi = out["intervals"]["iou"]
    assert lo <= out["iou"] <= hi and out["interval_unit"] == "group"
    assert out["intervals"]["object@0.5.f1"][0] <= out["object@0.5"]["f1"] <= out["intervals"]["object@0.5.f1"][1]
    assert out["images"] == 30 and out["true_objects"] == 30
    assert "intervals" not in segmentation_metrics(counts, n_boot=0)


def _write_chips(folder, n=6, size=48):
    rows = []
    for i in range(n):
        image = np.full((size, size, 3), 60, np.uint8)
        mask = np.zeros((size, size), np.uint8)
        landslide = i % 2 == 0
        if landslide:
            image[8:24, 8:24] = 200
            mask[8:24, 8:24] = 255
        Image.fromarray(image).save(folder / f"c{i}.png")
        mask_path = ""
        if landslide or i == 1:
            Image.fromarray(mask).save(folder / f"m{i}.png")
            mask_path = f"m{i}.png"
        rows.append({"path": f"c{i}.png", "label": "landslide" if landslide else "non_landslide",
                     "mask_path": mask_path})
    return rows


def test_masks_of_zeros_and_ones_read_as_landslide(tmp_path):
    from landslide.data.masks import read_mask

    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    Image.fromarray(mask).save(tmp_path / "ones.png")
    Image.fromarray(mask * 255).save(tmp_path / "full.png")
    Image.fromarray(np.where(mask, 255, 60).astype(np.uint8)).save(tmp_path / "grey.png")  # 60: below 127
    for name in ("ones.png", "full.png", "grey.png"):
        assert read_mask(str(tmp_path / name)).sum() == 9


def test_segmentation_dataset_reads_masks_and_names_bad_ones(tmp_path):
    from landslide.data import manifest as manifest_lib
    from landslide.data.dataset import SegmentationDataset
    from landslide.errors import DataError

    rows = _write_chips(tmp_path)
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(tmp_path / "small.png")
    rows += [{"path": "c0.png", "label": "landslide", "mask_path": ""},          # landslide without mask
             {"path": "c2.png", "label": "landslide", "mask_path": "small.png"},  # wrong size
             {"path": "c4.png", "label": "landslide", "mask_path": "gone.png"}]   # missing
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    data = manifest_lib.load(str(tmp_path / "m.csv"))
    ds = SegmentationDataset(data, build_transform(32, (0.5,) * 3, (0.5,) * 3), 32)
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert item["mask"].sum() == pytest.approx(16 * 16 * (32 / 48) ** 2, rel=0.1)
    assert ds[1]["mask"].sum() == 0 and ds[3]["mask"].sum() == 0  # clean chips, with and without a mask file
    assert "without a mask" in ds[6]["error"]["reason"]
    assert "mask is 48x40 px, its chip 48x48" in ds[7]["error"]["reason"]
    assert ds[8]["error"]["reason"].startswith("mask:")
    pd.DataFrame(rows).drop(columns="mask_path").to_csv(tmp_path / "nomask.csv", index=False)
    with pytest.raises(DataError, match="no mask_path column"):
        SegmentationDataset(manifest_lib.load(str(tmp_path / "nomask.csv")), build_transform(32, (0.5,) * 3, (0.5,) * 3), 32)


def test_batch_augment_moves_the_mask_with_the_image():
    from landslide.data.transforms import BatchAugment

    torch.manual_seed(0)
    mask = (torch.rand(16, 1, 32, 32) > 0.7).float()
    x = mask.repeat(1, 3, 1, 1)  # mean 0, std 1: the image is the mask
    aug = BatchAugment((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    torch.manual_seed(1)
    out, moved = aug(x, mask)
    assert torch.equal(out[:, :1], moved) and not torch.equal(moved, mask)
    assert torch.equal(moved.sum(dim=(1, 2, 3)), mask.sum(dim=(1, 2, 3)))  # flips and turns keep every pixel
    torch.manual_seed(1)
    plain = aug(x)  # without a mask: the same draws, the same images as before
    assert torch.equal(plain, out)
    shifted = BatchAugment((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), flips=False, rot90=False,
                           sensor_shift={"p": 1.0, "noise_std": 0.0, "jpeg_quality": (95.0, 95.0)})
    square = torch.zeros(4, 1, 32, 32)
    square[:, :, 8:24, 8:24] = 1
    img, m = shifted(square.repeat(1, 3, 1, 1) * 0.8 + 0.1, square)
    assert set(m.unique().tolist()) <= {0.0, 1.0} and img.shape == (4, 3, 32, 32)
    ratio = m.sum(dim=(1, 2, 3)) / square.sum(dim=(1, 2, 3))  # zoomed by 0.8-1.25: area x 0.64-1.56
    assert ((ratio > 0.5) & (ratio < 1.7)).all()


def test_segmentation_loss_prefers_the_right_mask():
    from landslide.training.losses import SegmentationLoss

    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 4:12, 4:12] = 1
    good, bad = (mask * 2 - 1) * 6, -(mask * 2 - 1) * 6
    for name in ("dice_bce", "focal_dice", "bce"):
        loss = SegmentationLoss(name)
        assert loss(good, mask) < loss(torch.zeros_like(mask), mask) < loss(bad, mask)
        logits = torch.zeros(2, 1, 16, 16, requires_grad=True)
        loss(logits, torch.zeros_like(mask)).backward()  # a batch without landslide: finite, with gradient
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown segmentation loss"):
        SegmentationLoss("lovasz")


def test_vectorize_gives_footprints_with_areas_holes_and_probabilities():
    from affine import Affine

    from landslide.inventory.footprints import vectorize

    prob = np.zeros((60, 80), np.float32)
    prob[5:15, 5:25] = 0.9                 # 10 x 20 px
    prob[30:50, 30:50] = 0.7               # 20 x 20 px with a 4 x 4 hole
    prob[38:42, 38:42] = 0.1
    prob[30, 30] = 1.0
    prob[55:57, 70:72] = np.nan            # no-data: never landslide
    utm = Affine(2.0, 0, 500_000, 0, -2.0, 3_300_000)  # 2-m pixels, UTM 47N
    found = vectorize(prob, utm, "EPSG:32647")
    assert len(found) == 2
    big, small = found
    assert big["pixels"] == 400 - 16 and len(big["geometry"].interiors) == 1
    assert big["area_m2"] == pytest.approx(384 * 4, rel=0.01)  # geodesic vs UTM plane: < 1 % apart
    assert big["max_probability"] == pytest.approx(1.0)
    assert big["mean_probability"] == pytest.approx((383 * 0.7 + 1.0) / 384, rel=1e-5)
    assert small["area_m2"] == pytest.approx(800, rel=0.01) and small["mean_probability"] == pytest.approx(0.9)
    assert big["geometry_wgs84"].bounds[0] == pytest.approx(99.0 + 0.00031, abs=0.01)  # lon near 99° E
    assert [f["pixels"] for f in vectorize(prob, utm, 32647, min_area_m2=1000)] == [384]
    assert vectorize(prob, utm, "EPSG:32647", threshold=0.95)[0]["pixels"] == 1
    assert vectorize(np.zeros((4, 4)), utm, "EPSG:32647") == []
    corner = np.zeros((6, 6), np.float32)
    corner[1, 1] = corner[2, 2] = 0.9  # joined only at a corner: one footprint, a valid geometry
    (touching,) = vectorize(corner, utm, "EPSG:32647")
    assert touching["geometry"].is_valid and touching["pixels"] == 2
    # a staircase simplified with a 5-m tolerance: fewer vertices, about the same area
    stairs = np.tril(np.ones((40, 40), np.float32))
    raw, simple = (vectorize(stairs, utm, "EPSG:32647", simplify_m=s)[0] for s in (0, 5))
    assert len(simple["geometry"].exterior.coords) < len(raw["geometry"].exterior.coords) / 4
    assert simple["area_m2"] == pytest.approx(raw["area_m2"], rel=0.1)
    with pytest.raises(ValueError, match="threshold"):
        vectorize(prob, utm, "EPSG:32647", threshold=0)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        vectorize(np.zeros((2, 4, 4)), utm, "EPSG:32647")


def test_traced_footprints_match_scipy_statistics_and_cover_their_pixels_exactly():
    """Noisy rasters (many groups joined only at corners, holes, holes in holes): every footprint is a valid
    polygonal geometry whose area is its pixel count, with scipy.ndimage's count, mean and max."""
    from scipy import ndimage

    from landslide.inventory.footprints import trace

    rng = np.random.default_rng(7)
    for k in range(12):
        prob = rng.random((int(rng.integers(1, 50)), int(rng.integers(1, 50)))).astype(np.float32)
        if k % 2:
            prob = ndimage.uniform_filter(prob, 3)
        mask = prob >= 0.55
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        found = trace(prob, 0.55)
        assert len(found) == n and sum(f["pixels"] for f in found) == mask.sum()
        expected = sorted(zip(ndimage.sum_labels(mask, labels, range(1, n + 1)),
                              ndimage.mean(prob, labels, range(1, n + 1)),
                              ndimage.maximum(prob, labels, range(1, n + 1))))
        got = sorted((f["pixels"], f["mean_probability"], f["max_probability"]) for f in found)
        assert np.allclose(np.array(got, float), np.array(expected, float), rtol=1e-9, atol=0)
        for f in found:
            g = f["geometry"]
            assert g.is_valid and g.geom_type in ("Polygon", "MultiPolygon")
            assert g.area == pytest.approx(f["pixels"])


def test_vectorize_in_lon_lat_and_across_the_antimeridian():
    from affine import Affine

    from landslide.inventory.footprints import vectorize
    from landslide.lonlat import footprint, geometry_area_km2

    prob = np.zeros((20, 20), np.float32)
    prob[5:15, 5:15] = 0.8
    step = 1e-4  # ~11 m
    geo = Affine(step, 0, 30.0, 0, -step, 10.0)
    (f,) = vectorize(prob, geo, "EPSG:4326")
    box = footprint(30.0 + 5 * step, 10.0 - 15 * step, 30.0 + 15 * step, 10.0 - 5 * step)
    assert f["area_m2"] == pytest.approx(geometry_area_km2(box) * 1e6, rel=1e-4)
    simple = vectorize(np.tril(np.ones((40, 40), np.float32)), geo, "EPSG:4326", simplify_m=20)[0]
    assert len(simple["geometry"].exterior.coords) < 10  # simplified in metres in a local projection
    # a raster whose columns run past 180°: the footprint is cut into two parts at 180° in lon/lat
    east = Affine(step, 0, 180.0 - 10 * step, 0, -step, -16.0)
    (g,) = vectorize(prob, east, "EPSG:4326")
    assert g["geometry_wgs84"].geom_type == "MultiPolygon"
    lons = [x for part in g["geometry_wgs84"].geoms for x, _ in part.exterior.coords]
    assert min(lons) >= -180 and max(lons) <= 180 and min(lons) < -179.99 and max(lons) > 179.99
    assert g["area_m2"] == pytest.approx(f["area_m2"] * math.cos(math.radians(16)) / math.cos(math.radians(10)),
                                         rel=0.01)


def test_footprint_model_trains_chooses_a_pixel_threshold_and_is_evaluated(footprint_run, tmp_path):
    import json
    import os

    from conftest import footprint_config

    from landslide.config import parse_config
    from landslide.errors import CheckpointError, DataError
    from landslide.models.checkpoint import load_checkpoint
    from landslide.training.run import run_training

    summary, manifest, out = footprint_run, footprint_run["manifest"], footprint_run["out"]
    cfg = footprint_config(manifest, out)
    history = json.load(open(os.path.join(out, "history.json")))
    assert {"val_iou", "val_f1", "train_loss"} <= set(history[-1])
    card = json.load(open(os.path.join(out, "model", "model_card.json")))
    assert card["task"] == "segmentation" and card["architecture"] == "unet" and card["input_size"] == 64
    assert card["threshold_selection"]["chosen_on"] == "validation" and 0 < card["threshold"] < 1
    assert card["threshold_selection"]["unit"] == "pixel probability"
    metrics = json.load(open(os.path.join(out, "eval", "metrics.json")))
    assert metrics["images"] == summary["test_images"] > 0 and set(metrics["by_region"]) <= {"north", "south"}
    assert 0 <= metrics["iou"] <= metrics["f1"] <= 1 and "object@0.5" in metrics and "iou" in metrics["intervals"]
    assert summary["test_metrics"]["pixel_iou"] == pytest.approx(metrics["iou"])
    report = open(os.path.join(out, "eval", "report.md")).read()
    assert "pixel IoU" in report and "object F1 @ IoU 0.5" in report
    model, loaded = load_checkpoint(summary["model_dir"], task="segmentation")
    assert loaded.task == "segmentation" and model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    with pytest.raises(CheckpointError, match="holds a segmentation model"):
        load_checkpoint(summary["model_dir"])  # where a chip classifier is expected (sweeps, evaluate)
    # the run's splits.csv is a manifest with masks: `landslide evaluate` scores the test chips again, galleries too
    from tests.test_cli import _assert_clean_error, run_cli

    splits = os.path.join(out, "splits.csv")
    again = run_cli("evaluate", "--model", summary["model_dir"], "--data", splits, "--split", "test",
                    "--out", str(tmp_path / "again"), "--gallery-size", "2")
    assert again.returncode == 0, again.stderr
    redone = json.load(open(tmp_path / "again" / "metrics.json"))
    assert redone["iou"] == pytest.approx(metrics["iou"]) and redone["footprints_from"] == "segmentation"
    assert sum(redone["outcomes"].values()) == redone["images"] == metrics["images"]
    for name, gallery in redone["galleries"].items():
        assert gallery["count"] == redone["outcomes"][name] and gallery["shown"] == min(2, gallery["count"])
        for rel in gallery["files"]:
            assert Image.open(tmp_path / "again" / "gallery" / rel).size == (128, 128)  # twice the input size
    assert "## Chips by outcome" in open(tmp_path / "again" / "report.md").read()
    _assert_clean_error(run_cli("evaluate", "--model", summary["model_dir"], "--data", splits, "--split", "test",
                                "--out", str(tmp_path / "x"), "--cam-threshold", "0.3"), "model card")
    _assert_clean_error(run_cli("evaluate", "--model", summary["model_dir"], "--data", splits, "--adapt-bn",
                                "--out", str(tmp_path / "x")), "--adapt-bn", "footprint")
    pytest.importorskip("ray")
    from serve.app import build_app

    with pytest.raises(ConfigError, match="needs a classification model"):
        build_app({"model": summary["model_dir"]})
    assert history[0]["train_images"] == summary["train_images"] <= 32  # chips, not pixels
    # no landslide pixel to choose a threshold on: the fixed one, said so
    from landslide.data import manifest as manifest_lib
    from landslide.evaluation.footprints import choose_pixel_threshold

    clean = manifest_lib.load(manifest).frame.query("target == 0")
    clean_manifest = manifest_lib.load(manifest).subset(clean.index)
    chosen = choose_pixel_threshold(model, loaded, clean_manifest, "f1", 0.5)
    assert chosen["method"] == "fixed" and chosen["value"] == 0.5
    # a landslide chip without a mask in any split (copies of the manifest elsewhere: paths made absolute)
    folder = os.path.dirname(manifest)
    frame = pd.read_csv(manifest, keep_default_na=False)
    frame["path"] = [os.path.join(folder, p) for p in frame["path"]]
    frame["mask_path"] = [os.path.join(folder, p) if p else "" for p in frame["mask_path"]]
    frame.loc[0, "mask_path"] = ""
    frame.to_csv(tmp_path / "holes.csv", index=False)
    with pytest.raises(DataError, match="landslide chip\\(s\\) have no mask_path"):
        run_training(parse_config({**cfg, "data": {**cfg["data"], "train": str(tmp_path / "holes.csv")},
                                   "output_dir": str(tmp_path / "y")}))
    # a mask-less manifest, a size the encoder cannot take, extras a footprint model cannot use
    frame.drop(columns="mask_path").to_csv(tmp_path / "nomask.csv", index=False)
    with pytest.raises(DataError, match="mask_path"):
        run_training(parse_config({**cfg, "data": {**cfg["data"], "train": str(tmp_path / "nomask.csv")},
                                   "output_dir": str(tmp_path / "x")}))
    for model_extra, message in (({"image_size": 100}, "multiple of 32"),
                                 ({"size_head": {"column": "s", "classes": ["a", "b"]}}, "images only")):
        with pytest.raises(ConfigError, match=message):
            parse_config({**cfg, "model": {**cfg["model"], **model_extra}})
    with pytest.raises(ConfigError, match="chip metric"):
        parse_config({**cfg, "train": {**cfg["train"], "monitor": "val_auc"}})
    with pytest.raises(ConfigError, match="pixel metric"):
        parse_config({**cfg, "model": {"backbone": "baseline_cnn"}})  # a classifier monitoring val_iou
    # experiments: footprint metrics choose footprint models; the classifiers' study and modality kinds refuse
    assert parse_config({**cfg, "experiment": {"kind": "single", "repeats": {"folds": 3}}}).experiment.select \
        == "pixel_iou"
    with pytest.raises(ConfigError, match="experiment.select mcc is a chip metric"):
        parse_config({**cfg, "experiment": {"kind": "compare", "backbones": ["mobilenetv2_100"], "select": "mcc"}})
    with pytest.raises(ConfigError, match="pixel_iou is a footprint metric"):
        parse_config({**cfg, "model": {"backbone": "baseline_cnn"}, "train": {"monitor": "val_f1"},
                      "experiment": {"kind": "compare", "backbones": ["baseline_cnn"], "select": "pixel_iou"}})
    with pytest.raises(ConfigError, match="mix model.task"):  # a comparison of chip and pixel metrics
        from landslide.experiments.plan import plan

        plan(parse_config({**cfg, "model": {"backbone": "baseline_cnn", "image_size": 32}, "train": {"monitor": "val_f1"},
                           "experiment": {"kind": "compare", "backbones": ["baseline_cnn", "mobilenetv2_100"],
                                          "model_overrides": {"mobilenetv2_100": {"task": "segmentation",
                                                                                  "image_size": 64}}}}))
    with pytest.raises(ConfigError, match="ambiguous chips have no chip class"):
        parse_config({**cfg, "model": {"backbone": "baseline_cnn"}, "train": {"monitor": "val_f1"},
                      "data": {**cfg["data"], "ambiguous": "keep"}})
    with pytest.raises(ConfigError, match="kind 'study' does not take footprint"):
        parse_config({**cfg, "experiment": {"kind": "study", "parts": [{"name": "a", "kind": "single"}]}})


def test_grad_cam_footprints_of_a_chip_classifier(tmp_path):
    """A chip classifier's Grad-CAM maps become footprints: the threshold is chosen on the validation rows of the
    run's splits.csv, chips the classifier calls landslide-free get none, and the report says where they came
    from; wrong combinations of flags are one-line errors."""
    import json

    from conftest import tiny_config, write_footprint_data

    from landslide.config import parse_config
    from landslide.training.run import run_training
    from tests.test_cli import _assert_clean_error, run_cli

    manifest = write_footprint_data(tmp_path)
    out = str(tmp_path / "cls")
    summary = run_training(parse_config(tiny_config(manifest, out, model={"backbone": "mobilenetv2_100",
                                                                          "image_size": 64},
                                                    train={"epochs": 2, "lr": 0.003})))
    splits = str(tmp_path / "cls" / "splits.csv")
    res = run_cli("evaluate", "--model", summary["model_dir"], "--data", splits, "--split", "test", "--footprints",
                  "--out", str(tmp_path / "cam"), "--gallery-size", "1")
    assert res.returncode == 0, res.stderr
    assert "Grad-CAM threshold" in res.stdout and "chosen on" in res.stdout
    m = json.load(open(tmp_path / "cam" / "metrics.json"))
    assert m["footprints_from"] == "gradcam" and m["cam_method"] == "gradcam"
    assert m["threshold_selection"]["chosen_on"].startswith("val rows of") and 0 < m["threshold"] < 1
    card = json.load(open(tmp_path / "cls" / "model" / "model_card.json"))
    assert m["classifier_threshold"] == pytest.approx(card["threshold"])
    rows = pd.read_csv(tmp_path / "cam" / "footprints.csv")
    preds = pd.read_csv(tmp_path / "cls" / "eval" / "predictions.csv").set_index("uri")["probability"]
    called_free = rows["uri"].map(preds) < card["threshold"]
    assert (rows.loc[called_free, "predicted_share"] == 0).all()  # no footprint where the classifier says none
    assert len(rows) == m["images"] == (pd.read_csv(splits)["split"] == "test").sum()
    assert "Grad-CAM maps of a chip classifier".lower() in open(tmp_path / "cam" / "report.md").read().lower()
    fixed = run_cli("evaluate", "--model", summary["model_dir"], "--data", splits, "--split", "test", "--footprints",
                    "--cam-threshold", "0.4", "--out", str(tmp_path / "fixed"), "--gallery-size", "0")
    assert fixed.returncode == 0, fixed.stderr
    assert json.load(open(tmp_path / "fixed" / "metrics.json"))["threshold"] == 0.4
    assert not (tmp_path / "fixed" / "gallery").exists()
    for args, needles in (
            (("--split", "val", "--footprints"), ("--choose-on val", "other chips")),
            (("--footprints",), ("give --split",)),  # val rows would be scored with a threshold chosen on them
            (("--footprints", "--split", "test", "--choose-on", "val", "--cam-threshold", "0.3"), ("give one",)),
            (("--cam-threshold", "0.3"), ("--footprints",)),
            (("--footprints", "--size-neutral", "64"), ("--size-neutral",))):
        res = run_cli("evaluate", "--model", summary["model_dir"], "--data", splits, "--out", str(tmp_path / "e"),
                      *args)
        if needles:
            _assert_clean_error(res, *needles)
        else:
            assert res.returncode == 0, res.stderr
    with pytest.raises(SystemExit):  # argparse: "must be in (0, 1]"
        run_cli("evaluate", "--model", summary["model_dir"], "--data", splits, "--out", str(tmp_path / "e"),
                "--footprints", "--cam-threshold", "1.5")
    pd.read_csv(manifest).drop(columns="mask_path").to_csv(tmp_path / "nomask.csv", index=False)
    _assert_clean_error(run_cli("evaluate", "--model", summary["model_dir"], "--data", str(tmp_path / "nomask.csv"),
                                "--footprints", "--out", str(tmp_path / "e")), "mask_path")
    _assert_clean_error(run_cli("evaluate", "--model", summary["model_dir"], "--data", manifest, "--footprints",
                                "--split", "test", "--out", str(tmp_path / "e")), "'split' column")


def test_footprint_predictor_gives_masks_and_polygons_at_the_upload_size(footprint_run):
    """The endpoint's library half: a chip predicted at the model's input size comes back at its own size, as
    a mask and as polygons in pixel coordinates (areas from gsd_m), or georeferenced with geodesic areas."""
    from rasterio.transform import from_bounds

    from landslide.inference.footprints import FootprintPredictor
    from landslide.inventory.footprints import trace

    predictor = FootprintPredictor(footprint_run["model_dir"], device="cpu")
    assert predictor.info["task"] == "segmentation" and predictor.threshold == pytest.approx(
        __import__("json").load(open(f"{footprint_run['model_dir']}/model_card.json"))["threshold"])
    rng = np.random.default_rng(3)
    image = rng.integers(40, 90, (80, 96, 3)).astype(np.uint8)
    image[20:60, 30:70] = 210  # a bright blob: what the tiny model learnt to call landslide
    prob = predictor.probability_at(predictor.prepare(image), 80, 96)
    card_min = predictor.min_object_px
    with_min = predictor.footprints(predictor.prepare(image), 80, 96)  # the card's minimum footprint, scaled
    assert all(f["pixels"] >= card_min * 80 * 96 / 64 ** 2 for f in with_min["footprints"])
    assert not (with_min["mask"] & (prob < predictor.threshold)).any()
    predictor.min_object_px = 1  # every footprint, to compare with tracing the raster directly
    assert prob.shape == (80, 96) and 0 <= prob.min() <= prob.max() <= 1
    out = predictor.footprints(predictor.prepare(image), 80, 96, gsd_m=0.5)
    assert out["mask"].shape == (80, 96) and (out["mask"] == (prob >= predictor.threshold)).all()
    assert out["landslide_share"] == pytest.approx(out["mask"].mean())
    expected = trace(prob, predictor.threshold)
    assert expected and len(out["footprints"]) == len(expected) and not out["truncated"]
    for got, want in zip(out["footprints"], expected):
        assert got["pixel_geometry"].equals(want["geometry"]) and got["area_m2"] == got["pixels"] * 0.25
    assert sum(f["pixels"] for f in out["footprints"]) == out["mask"].sum()
    minx, miny, maxx, maxy = out["footprints"][0]["pixel_geometry"].bounds
    assert 0 <= minx < maxx <= 96 and 0 <= miny < maxy <= 80
    # georeferenced: 1 m pixels in UTM 48N; the same footprints in pixel coordinates, areas about pixels x 1 m²
    transform = from_bounds(500000, 3000000, 500096, 3000080, 96, 80)
    geo = predictor.footprints(predictor.prepare(image), 80, 96, transform=transform, crs="EPSG:32648")
    for f in geo["footprints"]:
        assert f["area_m2"] == pytest.approx(f["pixels"], rel=0.01)
        assert 100 < f["geometry_wgs84"].centroid.x < 106  # lon/lat, zone 48
        assert any(f["pixel_geometry"].equals(e["geometry"]) for e in expected)
    capped = predictor.footprints(predictor.prepare(image), 80, 96, max_footprints=1)
    assert len(capped["footprints"]) == min(1, len(expected)) and capped["truncated"] == (len(expected) > 1)
    predictor.min_object_px = 64 * 64  # a minimum footprint of the whole input: nothing is left
    none = predictor.footprints(predictor.prepare(image), 80, 96, gsd_m=0.5)
    assert none["footprints"] == [] and not none["mask"].any() and none["landslide_share"] == 0
    png = FootprintPredictor.mask_png(out["mask"])
    assert np.array_equal(np.asarray(Image.open(__import__("io").BytesIO(png))) > 0, out["mask"])
    assert all(f["pixel_geometry"].is_valid for f in out["footprints"])


def test_minimum_footprint_size_is_chosen_on_validation_masks(footprint_run):
    """Specks around every true footprint cost object precision: the minimum footprint size that maximises object
    F1 on validation masks removes them, and evaluation applies the card's minimum."""
    from landslide.data import manifest as manifest_lib
    from landslide.evaluation.footprints import choose_min_object_px, footprint_counts
    from landslide.models.checkpoint import load_checkpoint

    _, card = load_checkpoint(footprint_run["model_dir"], task="segmentation")
    card_json = __import__("json").load(open(f"{footprint_run['model_dir']}/model_card.json"))
    assert card_json["min_object_px"] >= 1  # chosen by the run, on validation
    assert card_json["threshold_selection"]["min_object_px"]["chosen_on"] == "validation"

    class Specks:
        """The true mask, plus three 2 x 2-pixel specks far from it on every chip."""
        kind = "segmentation"

        def __call__(self, batch):
            probs = batch["mask"][:, 0].numpy().astype(np.float32)
            for r, c in ((2, 2), (2, 58), (58, 2)):
                probs[:, r:r + 2, c:c + 2] = np.where(probs[:, r:r + 2, c:c + 2] > 0, 1.0, 0.9)
            return probs

        def close(self):
            pass

    data = manifest_lib.load(footprint_run["manifest"])
    chosen = choose_min_object_px(Specks(), card, data, 0.5)
    assert chosen["value"] == 8 and chosen["object_f1"]["8"] == 1.0 > chosen["object_f1"]["1"]
    kept, _, _ = footprint_counts(Specks(), card, data, 0.5, min_object_px=1)
    dropped, _, _ = footprint_counts(Specks(), card, data, 0.5, min_object_px=chosen["value"])
    assert (kept["pred_objects"] - dropped["pred_objects"]).min() == 3 and dropped["fp"].sum() == 0


def test_footprint_experiments_compare_by_pixel_metrics_and_export_the_best(tmp_path):
    """Experiments take footprint models: a fine-tuning grid on a frozen encoder (decoder only) vs. the last
    encoder block vs. everything, compared by pixel and object metrics, the best chosen by validation pixel IoU
    and exported; a region matrix under cross-validation pools the folds' per-chip counts by region."""
    import json

    import pandas as pd
    from conftest import footprint_config, write_footprint_data

    from landslide.config import parse_config
    from landslide.experiments.runner import run_experiment
    from landslide.models.checkpoint import read_card
    from landslide.training.run import run_training

    manifest = write_footprint_data(tmp_path, n=24)
    base = footprint_config(manifest, str(tmp_path / "ft"))
    base["train"]["epochs"] = 1
    cfg = parse_config({**base, "experiment": {"kind": "finetune", "freeze": [
        {"strategy": "head"}, {"strategy": "last_blocks", "n": [1]}, {"strategy": "all"}]}})
    assert cfg.experiment.select == "pixel_iou"  # the footprint default
    summary = run_experiment(cfg, run_training, lambda _: None)
    assert not summary["failed"] and summary["variants"] == 3
    rows = {r["variant"]: r for r in summary["rows"]}
    trainable = {name: rows[name]["trainable_params"] for name in ("head", "last_blocks-1", "all")}
    assert trainable["head"] < trainable["last_blocks-1"] < trainable["all"] == rows["all"]["total_params"]
    for row in rows.values():  # footprint metrics with intervals, no chip metrics
        assert 0 <= row["test_pixel_iou"] <= 1 and row["test_pixel_iou_low"] <= row["test_pixel_iou_high"]
        assert "val_pixel_iou" in row and "test_object_f1@0.5" in row and "test_mcc" not in row
    text = open(tmp_path / "ft" / "comparison.md").read()
    assert "test pixel IoU" in text and "test object F1 @0.5" in text and "val pixel_iou†" in text
    assert (tmp_path / "ft" / "comparison.png").stat().st_size > 0
    best = max(rows.values(), key=lambda r: r["val_pixel_iou"])
    card = read_card(str(tmp_path / "ft" / "best_model"))
    assert card.task == "segmentation" and card.selection["variant"] == best["variant"]
    assert "validation pixel_iou" in card.selection["selected_by"] and "pixel_iou" in card.selection["test"]

    # the region matrix under 2-fold cross-validation: each region alone, pooled out-of-fold counts by region
    rcfg = parse_config({**base, "output_dir": str(tmp_path / "rx"), "experiment": {
        "kind": "regions", "regions": ["north", "south"], "train_sets": ["each"], "repeats": {"folds": 2}}})
    summary = run_experiment(rcfg, run_training, lambda _: None)
    assert not summary["failed"] and summary["variants"] == 4 and "region_matrix" in summary["files"]
    cells = pd.read_csv(tmp_path / "rx" / "region_matrix.csv")
    assert len(cells) == 4 and set(cells["test_region"]) == {"north", "south"} and (cells["runs"] == 2).all()
    assert cells["n"].sum() == 2 * 24  # every chip tested once per training set
    assert ((cells["pixel_iou_low"] <= cells["pixel_iou"]) & (cells["pixel_iou"] <= cells["pixel_iou_high"])).all()
    text = open(tmp_path / "rx" / "region_matrix.md").read()
    assert "## Pixel IoU" in text and "## Object F1 at IoU 0.5" in text and "## MCC" not in text
    pooled = pd.read_csv(tmp_path / "rx" / "variants" / "only-north" / "footprints_out_of_fold.csv")
    assert len(pooled) == 24 and set(pooled["run"]) == {"fold-0", "fold-1"}
    result = json.load(open(tmp_path / "rx" / "experiment_summary.json"))
    assert {r["variant"] for r in result["rows"]} == {"only-north", "only-south"}
    assert all(r["estimate"] == "out-of-fold" and r["test_images"] == 24 for r in result["rows"])


def test_footprint_models_may_keep_ambiguous_chips(tmp_path):
    """Chips labelled ambiguous (small landslides under the chip rule's threshold) are skipped by default and,
    with data.ambiguous keep, trained and scored as landslide chips with their masks."""
    import pandas as pd
    from conftest import footprint_config, write_footprint_data

    from landslide.config import parse_config
    from landslide.training.run import run_training

    manifest = write_footprint_data(tmp_path, n=24)
    frame = pd.read_csv(manifest, keep_default_na=False)
    frame.loc[[0, 2], "label"] = "ambiguous"
    frame.to_csv(manifest, index=False)
    base = footprint_config(manifest, str(tmp_path / "skip"))
    base["train"]["epochs"] = 1
    skipped = run_training(parse_config(base))
    assert skipped["splits"]["train"]["samples"] + skipped["splits"]["val"]["samples"] \
        + skipped["splits"]["test"]["samples"] == 22
    kept = run_training(parse_config({**base, "output_dir": str(tmp_path / "keep"),
                                      "data": {**base["data"], "ambiguous": "keep"}}))
    splits = pd.read_csv(tmp_path / "keep" / "splits.csv")
    assert len(splits) == 24 and splits.loc[splits["label"] == "ambiguous", "target"].tolist() == [1, 1]
    assert kept["splits"]["train"]["landslide"] + kept["splits"]["val"]["landslide"] \
        + kept["splits"]["test"]["landslide"] == 12
