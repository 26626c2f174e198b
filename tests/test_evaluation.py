"""Metrics, intervals, thresholds, attention statistics and Grad-CAM."""

import json
import os

import numpy as np
import pytest
import torch
from sklearn.metrics import (average_precision_score, f1_score, matthews_corrcoef, precision_score, recall_score,
                             roc_auc_score)

from landslide.evaluation.metrics import (binary_metrics, bootstrap_intervals, choose_threshold, cluster_bootstrap,
                                         resample_counts, resample_metrics)
from landslide.explain.attention_stats import aggregate, dominant_region, region_shares
from landslide.explain.gradcam import CamExplainer
from landslide.models.checkpoint import load_checkpoint


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    m = binary_metrics(y, p, 0.5)
    pred = p >= 0.5
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["specificity"] == pytest.approx(recall_score(1 - y, ~pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    c = m["confusion"]
    assert c["tp"] + c["fp"] + c["fn"] + c["tn"] == 300


def test_vectorised_resample_metrics_equal_sklearn_on_each_resampled_set():
    """Every bootstrap resample scored at once equals scikit-learn (and binary_metrics) on the resampled rows:
    tied scores, group resampling, resamples with one class (AUCs undefined) and chunked scoring included."""
    rng = np.random.default_rng(3)
    n = 90
    y = rng.integers(0, 2, n)
    y[:6], y[6:16] = 1, 0  # a group of positives and one of negatives: some group resamples hold one class
    p = np.round(np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1), 1)  # rounded: many ties
    pred = (p >= 0.5).astype(int)
    groups = np.r_[np.zeros(6, int), np.ones(10, int), np.full(n - 16, 2)]
    for g in (None, groups):
        counts = resample_counts(g, n, 60, seed=5)
        got = resample_metrics(y, pred, p, counts, chunk_cells=7 * n)  # 7 resamples per chunk
        one_class = 0
        for b, idx in enumerate(cluster_bootstrap(g, n, 60, seed=5)):
            assert np.array_equal(np.bincount(idx, minlength=n), counts[b])
            ref = binary_metrics(y[idx], p[idx], 0.5)
            for key in ("accuracy", "precision", "recall", "specificity", "f1", "mcc", "balanced_accuracy"):
                assert got[key][b] == pytest.approx(ref[key], abs=1e-12, nan_ok=True), key
            if len(np.unique(y[idx])) < 2:
                one_class += 1
                assert np.isnan(got["roc_auc"][b]) and np.isnan(got["pr_auc"][b])
            else:
                assert got["roc_auc"][b] == pytest.approx(roc_auc_score(y[idx], p[idx]), abs=1e-12)
                assert got["pr_auc"][b] == pytest.approx(average_precision_score(y[idx], p[idx]), abs=1e-12)
        assert (one_class > 0) == (g is not None)


def test_bootstrap_intervals_bracket_the_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.4 + rng.random(200) * 0.6, 0, 1)
    m = binary_metrics(y, p, 0.5)
    ci = bootstrap_intervals(y, p, 0.5, n_boot=300, seed=0)
    for key in ("accuracy", "f1", "mcc", "roc_auc"):
        lo, hi = ci[key]
        assert lo <= m[key] <= hi and hi - lo < 0.3
    small = bootstrap_intervals(y[:20], p[:20], 0.5, n_boot=300, seed=0)
    assert small["accuracy"][1] - small["accuracy"][0] > ci["accuracy"][1] - ci["accuracy"][0]


def test_threshold_choice():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.8, 0.9])
    t = choose_threshold(y, p, "f1")
    assert 0.3 < t <= 0.35
    assert binary_metrics(y, p, t)["f1"] == 1.0
    assert 0.3 < choose_threshold(y, p, "youden") <= 0.35
    assert choose_threshold(y, p, "fixed", 0.42) == 0.42


def test_region_shares():
    cam = np.zeros((90, 90))
    cam[:30, 60:] = 1.0
    s = region_shares(cam)
    assert s["top_right"] == pytest.approx(1.0) and s["top"] == pytest.approx(1.0) and s["right"] == pytest.approx(1.0)
    assert s["centre"] == 0 and dominant_region(s) == "top_right"
    even = region_shares(np.ones((90, 90)))
    assert even["centre"] == pytest.approx(1 / 9) and even["left"] == pytest.approx(1 / 3)
    agg = aggregate([s, even], ["FP", "TP"])
    assert agg["FP"]["top_right"]["enrichment"] == pytest.approx(9.0)
    assert agg["errors"]["n"] == 1 and agg["correct"]["n"] == 1


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam"])
def test_cam_methods_produce_maps(trained_run, method):
    model, card = load_checkpoint(trained_run["model_dir"])
    explainer = CamExplainer(model, method)
    cams = explainer(torch.randn(3, 3, 32, 32))
    explainer.close()
    assert cams.shape == (3, 32, 32) and np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1.0 + 1e-6


def test_cam_follows_the_evidence():
    """A model whose logit is the brightness of the top-right quadrant gets its heat map there."""
    from landslide.models.classifier import build_model

    model = build_model("baseline_cnn").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        conv = model.backbone.features[0][0]
        conv.weight[:, :, 1, 1] = 1.0
        for block in model.backbone.features:
            bn = block[1]
            bn.weight.fill_(1.0)
            bn.running_var.fill_(1.0)
            bn.running_mean.zero_()
        for block in list(model.backbone.features)[1:]:
            block[0].weight[:, :, 1, 1] = torch.eye(block[0].weight.shape[0], block[0].weight.shape[1])
        fc = model.backbone.fc[1]
        fc.weight[:] = 0
        fc.weight[0, 0] = 1.0
        model.head.weight[0, 0] = 1.0
    x = torch.zeros(1, 3, 96, 96)
    x[:, :, 8:32, 64:88] = 3.0
    cams = CamExplainer(model, "gradcam")(x, classes=[1])
    assert dominant_region(region_shares(cams[0])) == "top_right"


def test_evaluation_report_contents(trained_run):
    ev = os.path.join(trained_run["output_dir"], "eval")
    metrics = json.load(open(os.path.join(ev, "metrics.json")))
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "mcc", "roc_auc", "pr_auc", "confusion",
                "intervals", "attention", "threshold"):
        assert key in metrics
    report = open(os.path.join(ev, "report.md")).read()
    assert "95% bootstrap interval" in report and "top_right" in report and "Confusion matrix" in report
    # every threshold rule's validation choice, scored on the test images; the model's own rule among them
    rules = metrics["threshold_rules"]
    assert set(rules) == {"fixed", "f1", "youden"} and rules["fixed"]["threshold"] == 0.5
    assert rules["f1"]["threshold"] == pytest.approx(metrics["threshold"])
    assert rules["f1"]["f1"] == pytest.approx(metrics["f1"]) and "## Threshold rules" in report
    assert os.path.exists(os.path.join(ev, "validation_predictions.csv"))
    # temperature scaling fitted on validation, reported raw and calibrated
    card = json.load(open(os.path.join(trained_run["model_dir"], "model_card.json")))
    t = card["calibration"]["temperature"]
    assert 0.05 <= t <= 20 and card["calibration"]["fitted_on"] == "validation"
    assert metrics["calibration"]["temperature"] == t and 0 <= metrics["calibration"]["calibrated"]["ece"] <= 1
    assert "## Calibration" in report
    shift = metrics["prior_shift"]
    assert 0 < shift["estimated_prior"] < 1 and 0 < shift["threshold"] < 1 and "## Prior shift" in report
    assert os.path.exists(os.path.join(ev, "attention_per_image.csv"))
    sheets = [f for f in os.listdir(os.path.join(ev, "gallery")) if f.endswith("_sheet.png")]
    assert sheets


def test_temperature_scaling_recovers_an_overconfident_model():
    from landslide.evaluation.metrics import apply_temperature, calibration_metrics, fit_temperature

    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(int)
    overconfident = 1 / (1 + np.exp(-3 * z))
    t = fit_temperature(y, overconfident)
    assert t == pytest.approx(3.0, rel=0.1)
    before, after = calibration_metrics(y, overconfident), calibration_metrics(y, apply_temperature(overconfident, t))
    assert after["ece"] < before["ece"] / 4 and after["brier"] < before["brier"]
    # the order of probabilities is kept: a threshold maps to the same decisions
    assert ((overconfident >= 0.7) == (apply_temperature(overconfident, t) >= apply_temperature(0.7, t))).all()
    assert fit_temperature(np.ones(5), overconfident[:5]) == 1.0


def test_prior_shift_is_estimated_without_labels():
    from landslide.evaluation.metrics import estimate_prior, prior_adjusted_threshold

    rng = np.random.default_rng(0)
    y = (rng.random(20000) < 0.2).astype(int)
    score = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0)
    posterior_at_half = 1 / (1 + np.exp(-2 * score))  # calibrated for a training share of 0.5
    assert estimate_prior(posterior_at_half, 0.5) == pytest.approx(0.2, abs=0.01)
    assert prior_adjusted_threshold(0.5, 0.5, 0.2) == pytest.approx(0.8)  # odds 1 -> 4
    assert prior_adjusted_threshold(0.3, 0.4, 0.4) == pytest.approx(0.3)


def test_cam_on_frozen_backbone(trained_run):
    """Feature-extraction models (frozen backbone) still get heat maps."""
    from landslide.models.freezing import apply_freezing

    model, _ = load_checkpoint(trained_run["model_dir"])
    apply_freezing(model, "head")
    cams = CamExplainer(model, "gradcam")(torch.randn(2, 3, 128, 128))  # 4x4 feature map
    assert cams.shape == (2, 128, 128) and cams.max() > 0


def test_evaluation_breaks_every_metric_down_by_region(trained_run, synth_manifest, tmp_path, capsys):
    import pandas as pd

    from landslide.cli import main

    frame = pd.read_csv(synth_manifest)
    # two regions, and a third that holds only non-landslide chips (its recall cannot be measured)
    frame["region"] = np.where(frame.index % 2 == 0, "north", "south")
    frame.loc[(frame["label"] != "landslide") & (frame.index < 4), "region"] = "east"
    path = os.path.join(os.path.dirname(synth_manifest), "regions.csv")
    frame.to_csv(path, index=False)
    out = str(tmp_path / "ev")
    assert main(["evaluate", "--model", trained_run["model_dir"], "--data", path, "--out", out,
                 "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    assert "region north:" in printed and "region south:" in printed
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    by = metrics["by_region"]
    assert set(by) == {"east", "north", "south"} and sum(r["n"] for r in by.values()) == metrics["n"]
    for region, r in by.items():
        part = frame[frame["region"] == region]
        assert r["n"] == len(part) and r["positives"] == int((part["label"] == "landslide").sum())
        assert r["threshold"] == metrics["threshold"]
        if r["positives"] and r["negatives"]:
            low, high = r["intervals"]["accuracy"]
            assert low <= r["accuracy"] <= high
    assert by["east"]["positives"] == 0
    assert by["east"]["recall"] is None or np.isnan(by["east"]["recall"])
    predictions = pd.read_csv(os.path.join(out, "predictions.csv"))
    assert predictions.groupby("region").size().to_dict() == {k: v["n"] for k, v in by.items()}
    report = open(os.path.join(out, "report.md")).read()
    assert "## By region" in report and "| north |" in report and "| east |" in report


def _sized_by_class(folder) -> str:
    """Chips whose size gives the class away (landslide 40 px, others 64 px), as in the Bijie set."""
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        label = "landslide" if i % 2 else "non_landslide"
        side = 40 if label == "landslide" else 64
        pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"c{i}.png")
        rows.append({"path": f"c{i}.png", "label": label, "group": f"g{i // 4}"})
    pd.DataFrame(rows).to_csv(folder / "sized.csv", index=False)
    return str(folder / "sized.csv")


def test_confound_check_finds_a_size_difference(tmp_path, synth_manifest, capsys):
    from conftest import tiny_config

    from landslide.cli import main
    from landslide.config import parse_config
    from landslide.data.manifest import load
    from landslide.errors import DataError
    from landslide.evaluation.confounds import confound_check
    from landslide.training.run import run_training

    sized = _sized_by_class(tmp_path)
    report = confound_check(load(sized).frame)
    assert report["properties"]["width"]["auc"] >= 0.9 and report["properties"]["width"]["kind"] == "acquisition"
    assert {c["property"] for c in report["confounds"]} >= {"width", "height", "megapixels"}
    assert "width (median 40 for landslide vs 64" in report["verdict"]
    assert report["properties"]["format"]["auc"] < 0.7  # every chip is a PNG
    clean = confound_check(load(synth_manifest).frame)
    assert not clean["confounds"] and clean["verdict"].startswith("no acquisition confound")

    assert main(["data", "confounds", sized, "--out", str(tmp_path / "c.json")]) == 1
    assert "| width | acquisition |" in capsys.readouterr().out
    assert json.load(open(tmp_path / "c.json"))["confounds"]
    assert main(["data", "confounds", synth_manifest]) == 0

    with pytest.raises(DataError, match="the label is predictable from how chips were made: width"):
        run_training(parse_config(tiny_config(sized, str(tmp_path / "stop"), data={"confounds": "error"})))
    summary = run_training(parse_config(tiny_config(sized, str(tmp_path / "warn"), train={"epochs": 1})))
    assert summary["confounds"]["confounds"] and os.path.exists(tmp_path / "warn" / "confounds.json")
    card = json.load(open(tmp_path / "warn" / "model" / "model_card.json"))
    assert "width" in card["training"]["confounds"]["verdict"]
    assert "acquisition confounds (training split)**: the label is predictable" in open(
        tmp_path / "warn" / "eval" / "report.md").read()


def test_adabn_re_estimates_batchnorm_statistics_without_labels(trained_run, synth_manifest, tmp_path, capsys):
    from torch.utils.data import DataLoader

    from landslide.cli import main
    from landslide.data.dataset import ChipDataset, collate_skip_bad
    from landslide.data.manifest import load
    from landslide.errors import DataError
    from landslide.inference.adapt import adapt_batchnorm, batchnorm_layers

    model, card = load_checkpoint(trained_run["model_dir"])
    data = load(synth_manifest)
    first = batchnorm_layers(model)[0]
    trained_mean = first.running_mean.clone()
    # the first BatchNorm's input over the target images, by hand: what AdaBN must find
    inputs = []
    hook = first.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
    images = torch.stack([ChipDataset(data, card.transform())[i]["image"] for i in range(len(data))])
    model.eval()
    with torch.no_grad():
        model(images * 0.5 + 0.4)  # a "new sensor": dimmer, lower contrast
    hook.remove()
    expected = inputs[0].mean(dim=(0, 2, 3))

    class Shifted(ChipDataset):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            item["image"] = item["image"] * 0.5 + 0.4
            item["target"] = -1  # labels are never read
            return item

    loader = DataLoader(Shifted(data, card.transform()), batch_size=6, collate_fn=collate_skip_bad)  # 4 equal batches
    info = adapt_batchnorm(model, loader)
    assert info == {"method": "adabn", "layers": len(batchnorm_layers(model)), "images": len(data)}
    assert torch.allclose(first.running_mean, expected, atol=1e-4)
    assert not torch.allclose(first.running_mean, trained_mean) and not first.training
    kept = first.running_mean.clone()
    with pytest.raises(DataError, match="no readable images"):
        adapt_batchnorm(model, DataLoader([], collate_fn=collate_skip_bad))
    assert torch.equal(first.running_mean, kept)

    out = str(tmp_path / "adapted")
    assert main(["evaluate", "--model", trained_run["model_dir"], "--data", synth_manifest, "--out", out,
                 "--bootstrap", "20", "--adapt-bn"]) == 0
    assert "AdaBN: BatchNorm statistics of" in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "metrics.json")))["adaptation"]["images"] == len(data)
    assert "AdaBN" in open(os.path.join(out, "report.md")).read()


def test_gsd_is_recorded_in_the_card_and_checked_in_evaluation(synth_manifest, tmp_path):
    import pandas as pd
    from conftest import tiny_config

    from landslide.config import parse_config
    from landslide.training.run import run_training

    frame = pd.read_csv(synth_manifest)
    folder = os.path.dirname(synth_manifest)
    frame.assign(gsd_m=0.5).to_csv(os.path.join(folder, "gsd_half.csv"), index=False)
    frame.assign(gsd_m=2.0).to_csv(os.path.join(folder, "gsd_two.csv"), index=False)
    summary = run_training(parse_config(tiny_config(os.path.join(folder, "gsd_half.csv"), str(tmp_path / "r"),
                                                    train={"epochs": 1})))
    card = json.load(open(os.path.join(summary["model_dir"], "model_card.json")))
    assert card["gsd_m"] == 0.5
    # 64-px chips at 0.5 m shown to the model at 32 px: 1 m per input pixel
    n_train = json.load(open(tmp_path / "r" / "summary.json"))["splits"]["train"]["samples"]
    assert card["input_gsd"] == {"median_m": 1.0, "p10_m": 1.0, "p90_m": 1.0, "chips": n_train, "input_size": 32}
    metrics = json.load(open(tmp_path / "r" / "eval" / "metrics.json"))
    assert metrics["gsd"] == {"data_m": 0.5, "model_m": 0.5, "model_input": card["input_gsd"], "note": None}
    assert "- **GSD**: 0.5 m/px (model trained at 0.5)" in open(tmp_path / "r" / "eval" / "report.md").read()

    from landslide.cli import main

    for data, expected in (("gsd_two.csv", "differs from the training chips' (0.5 m/px) by a factor 4.00"),
                           ("manifest.csv", "GSD unknown for the evaluated chips")):
        out = str(tmp_path / data)
        assert main(["evaluate", "--model", summary["model_dir"], "--data", os.path.join(folder, data), "--out", out,
                     "--bootstrap", "20", "--cam-max-images", "2"]) == 0
        assert expected in json.load(open(os.path.join(out, "metrics.json")))["gsd"]["note"]
        assert expected in open(os.path.join(out, "report.md")).read()

    # --match-gsd: chips at 2 m resampled to the card's 1 m input GSD (twice the size, centre cropped)
    plain = pd.read_csv(os.path.join(tmp_path, "gsd_two.csv", "predictions.csv"))
    out = str(tmp_path / "matched")
    assert main(["evaluate", "--model", summary["model_dir"], "--data", os.path.join(folder, "gsd_two.csv"),
                 "--out", out, "--bootstrap", "20", "--cam-max-images", "2", "--match-gsd"]) == 0
    gsd = json.load(open(os.path.join(out, "metrics.json")))["gsd"]
    assert gsd["matched"] == {"input_gsd_m": 1.0, "resampled": len(frame), "as_is": 0}
    assert "chips resampled to the model's input GSD 1 m/px" in open(os.path.join(out, "report.md")).read()
    matched = pd.read_csv(os.path.join(out, "predictions.csv"))
    assert not np.allclose(matched["probability"], plain["probability"])
    # an explicit GSD; nothing to resample; a model that does not know its GSD
    assert main(["evaluate", "--model", summary["model_dir"], "--data", os.path.join(folder, "gsd_two.csv"),
                 "--out", str(tmp_path / "m2"), "--bootstrap", "0", "--cam-max-images", "0",
                 "--match-gsd", "2"]) == 0
    explicit = json.load(open(tmp_path / "m2" / "metrics.json"))["gsd"]
    assert explicit["matched"]["input_gsd_m"] == 2.0
    assert "resampled to 2 m/px as asked (the model's input GSD: 1 m/px)" in explicit["note"]
    assert main(["evaluate", "--model", summary["model_dir"], "--data", os.path.join(folder, "gsd_two.csv"),
                 "--out", str(tmp_path / "m5"), "--match-gsd", "1e-300"]) == 2  # a factor far beyond 64
    assert main(["evaluate", "--model", summary["model_dir"], "--data", os.path.join(folder, "manifest.csv"),
                 "--out", str(tmp_path / "m3"), "--match-gsd"]) == 2
    plain_model = str(tmp_path / "plain_model")
    run_training(parse_config(tiny_config(os.path.join(folder, "manifest.csv"), plain_model, train={"epochs": 1})))
    assert main(["evaluate", "--model", os.path.join(plain_model, "model"), "--data",
                 os.path.join(folder, "gsd_two.csv"), "--out", str(tmp_path / "m4"), "--match-gsd"]) == 2


def test_size_neutral_view_shows_every_chip_at_one_size():
    from landslide.data.dataset import ChipView
    from landslide.data.gsd import centre_window

    rng = np.random.default_rng(0)
    wide, tall = (rng.integers(0, 256, (60, 100, 3), dtype=np.uint8),
                  rng.integers(0, 256, (130, 40, 3), dtype=np.uint8))
    view = ChipView(32, square_px=48)
    assert view.apply(wide, float("nan")).shape == view.apply(tall, float("nan")).shape == (48, 48, 3)
    assert np.array_equal(view.apply(wide, float("nan")), wide[6:54, 26:74])  # the centre, same resolution
    assert np.array_equal(view.apply(tall, float("nan")), centre_window(tall, 48))  # mirrored where narrower
    assert np.array_equal(view.apply(tall, float("nan"))[:, 4:44], tall[41:89, :])
    # after GSD matching: a 2 m chip at 1 m fills the 32-px window, then becomes a 48-px square
    assert ChipView(32, gsd_m=1.0, square_px=48).apply(wide, 2.0).shape == (48, 48, 3)
    assert ChipView(32).plain and not view.plain
    with pytest.raises(ValueError, match="square_px"):
        ChipView(32, square_px=0)
    with pytest.raises(ValueError, match="gsd_m"):
        ChipView(32, gsd_m=-1.0)


def test_evaluate_size_neutral_removes_chip_size_from_every_score(synth_manifest, trained_run, tmp_path, capsys):
    """--size-neutral: chips of several sizes and shapes reach the model as one square size; chips already of
    that size score exactly as before; the same view is used for AdaBN and every comparison."""
    import pandas as pd
    from PIL import Image

    from landslide.cli import main

    from landslide.data import manifest as manifest_lib

    frame = manifest_lib.load(synth_manifest).frame
    folder = tmp_path / "sized"
    folder.mkdir()
    uris = []
    for i, uri in enumerate(frame["uri"]):  # every other landslide chip becomes a 96 x 64 rectangle
        image = Image.open(uri).convert("RGB")
        if frame["target"][i] == 1 and i % 2 == 0:
            image = image.resize((96, 64))
        path = folder / f"chip{i}.png"
        image.save(path)
        uris.append(str(path))
    sized = str(folder / "sized.csv")
    pd.DataFrame({"path": uris, "label": frame["target"].map({1: "landslide", 0: "non_landslide"}),
                  "group": frame["group"]}).to_csv(sized, index=False)
    model = trained_run["model_dir"]
    plain_out, neutral_out = str(tmp_path / "plain"), str(tmp_path / "neutral")
    assert main(["evaluate", "--model", model, "--data", sized, "--out", plain_out, "--bootstrap", "20",
                 "--cam-max-images", "2"]) == 0
    assert main(["evaluate", "--model", model, "--data", sized, "--out", neutral_out, "--bootstrap", "20",
                 "--cam-max-images", "2", "--size-neutral", "64"]) == 0
    metrics = json.load(open(os.path.join(neutral_out, "metrics.json")))
    assert metrics["size_neutral"]["square_px"] == 64 and metrics["size_neutral"]["images"] == len(frame)
    assert "size-neutral: every chip shown as" in open(os.path.join(neutral_out, "report.md")).read()
    assert "size_matched" not in metrics  # one size: nothing to match
    matched = json.load(open(os.path.join(plain_out, "metrics.json")))["size_matched"]["all"]
    assert matched["images"] == len(frame) and matched["bins"] >= 1 and matched["pairs"] > 0
    assert "size-matched ROC AUC" in open(os.path.join(plain_out, "report.md")).read()
    plain = pd.read_csv(os.path.join(plain_out, "predictions.csv")).set_index("uri")["probability"]
    neutral = pd.read_csv(os.path.join(neutral_out, "predictions.csv")).set_index("uri")["probability"]
    changed = [u for u, t, i in zip(uris, frame["target"], range(len(uris))) if t == 1 and i % 2 == 0]
    unchanged = [u for u in uris if u not in changed]
    assert np.allclose(plain[unchanged], neutral[unchanged], atol=1e-6)  # 64-px squares: shown as before
    assert not np.allclose(plain[changed], neutral[changed], atol=1e-4)  # rectangles: centre square now
    capsys.readouterr()
    assert main(["evaluate", "--model", model, "--data", sized, "--out", str(tmp_path / "adapted"),
                 "--bootstrap", "0", "--cam-max-images", "0", "--size-neutral", "64", "--adapt-bn"]) == 0
    assert "AdaBN" in capsys.readouterr().out
    for bad in ("3", "abc", "10000"):
        with pytest.raises(SystemExit) as exc:
            main(["evaluate", "--model", model, "--data", sized, "--out", str(tmp_path / "bad"),
                  "--size-neutral", bad])
        assert exc.value.code == 2


def test_size_matched_auc_exposes_a_model_that_ranks_by_chip_size():
    from landslide.evaluation.confounds import size_matched_auc

    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 2, n)
    side = np.where(y == 1, rng.normal(220, 40, n), rng.normal(300, 40, n))  # Bijie-like: landslides smaller
    shortcut = 1 / side  # ranks by size alone
    seeing = y + rng.normal(0, 0.5, n)  # sees the landslide, blind to size
    short, real = size_matched_auc(y, shortcut, side, n_boot=200), size_matched_auc(y, seeing, side, n_boot=200)
    assert short["model_unmatched"] > 0.85 and short["size_alone_unmatched"] > 0.85
    assert short["model"] < short["model_unmatched"] - 0.2  # the shortcut collapses inside size bins
    assert abs(short["model"] - short["size_alone"]) < 0.02
    assert abs(real["model"] - real["model_unmatched"]) < 0.05 and real["interval"][0] < real["model"] < \
        real["interval"][1]
    assert real["pairs"] < real["all_pairs"] and real["bins"] == 5
    assert size_matched_auc(y, seeing, np.full(n, 128.0)) is None  # one size: nothing to match
    assert size_matched_auc(np.ones(n), seeing, side) is None
