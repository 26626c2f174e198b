"""Studies (issue 9): k-fold repeats, pooled out-of-fold metrics, test-time augmentation, Grad-CAM attention
statistics, best-model export, and the real-data study config run end to end in a tiny version."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_config

from landslide.cli import main as cli_main
from landslide.config import load_config, parse_config
from landslide.errors import ConfigError
from landslide.evaluation.metrics import across_runs, paired_pooled_difference, pooled_metrics
from landslide.explain.attention_stats import summarise
from landslide.models import tta
from landslide.experiments.plan import plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY_CONFIG = os.path.join(ROOT, "configs", "experiments", "baige_study.yaml")


def test_pooled_metrics_count_decisions_and_resample_groups():
    y = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    pred = np.array([1, 0, 0, 1, 1, 0, 1, 0])
    p = np.array([0.9, 0.4, 0.2, 0.6, 0.8, 0.1, 0.7, 0.3])
    m = pooled_metrics(y, pred, p, groups=np.array(list("aabbccdd")), n_boot=200)
    assert m["confusion"] == {"tp": 3, "fp": 1, "fn": 1, "tn": 3} and m["accuracy"] == 0.75
    assert m["groups"] == 4 and m["intervals"]["accuracy"][0] <= 0.75 <= m["intervals"]["accuracy"][1]
    # groups resampled whole: an all-correct group pair can never give accuracy between the group values
    diff = paired_pooled_difference(y, y, pred, np.array(list("aabbccdd")), n_boot=200)
    assert diff["accuracy"]["difference"] == pytest.approx(0.25)


def test_across_runs_t_interval():
    out = across_runs([0.8, 0.9, 1.0])
    assert out["mean"] == pytest.approx(0.9) and out["std"] == pytest.approx(0.1)
    assert out["interval"][0] == pytest.approx(0.9 - 4.303 * 0.1 / 3 ** 0.5, abs=1e-3)
    assert across_runs([0.5])["interval"] is None and across_runs([])["mean"] is None


def test_tta_views_are_the_dihedral_group_and_average():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    d4 = tta.views(x, "d4")
    assert len(d4) == 8 and len({v.numpy().tobytes() for v in d4}) == 8
    assert {v.numpy().tobytes() for v in tta.views(torch.rot90(x, 1, (-2, -1)), "d4")} == \
        {v.numpy().tobytes() for v in d4}  # closed under rotation: a rotated chip gets the same views
    assert len(tta.views(x, "flips")) == 4 and tta.views(x, "none")[0] is x

    class Corner(torch.nn.Module):  # looks only at the top-left pixel: orientation-dependent
        def forward(self, img, tags=None):
            return img[:, :1, 0, 0].clone()

    plain = tta.probabilities(Corner(), x, mode="none")
    averaged = tta.probabilities(Corner(), x, mode="d4")
    corners = torch.stack([x[:, 0, 0, 0], x[:, 0, 0, -1], x[:, 0, -1, 0], x[:, 0, -1, -1]])
    assert torch.allclose(plain, torch.sigmoid(x[:, 0, 0, 0]))
    assert torch.allclose(averaged, torch.sigmoid(corners).mean(0))  # each corner twice in 8 views
    with pytest.raises(ValueError, match="d8"):
        tta.views(x, "d8")


def test_attention_summary_measures_the_corner_effect():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(80):
        error = i % 4 == 0
        tr = 0.4 if error else 0.1  # errors put 40% of the heat in the top-right cell
        cells = {"top_left": 0.1 + rng.normal(0, 0.01), "top_right": tr, "bottom_left": 0.1, "bottom_right": 0.1}
        centre = 1 - sum(cells.values()) - 0.2 + rng.normal(0, 0.01)
        rows.append({**cells, "centre": centre, "outcome": ("FP" if i % 8 == 0 else "FN") if error else
                     ("TP" if i % 2 else "TN"), "group": f"g{i // 4}"})
    out = summarise(pd.DataFrame(rows), n_boot=200)
    assert out["outcomes"]["errors"]["n"] == 20 and out["outcomes"]["correct"]["n"] == 60
    assert out["errors_minus_correct"]["top_right"]["difference"] == pytest.approx(0.3)
    assert out["outcomes"]["errors"]["top_right"]["enrichment"] == pytest.approx(0.4 * 9)
    assert out["errors_minus_correct"]["top_right"]["significant"]
    assert not out["errors_minus_correct"]["top_left"]["significant"]
    assert out["outcomes"]["errors"]["corners"]["mean"] == pytest.approx(0.7, abs=0.01)


def test_repeats_and_study_plans(synth_manifest, tmp_path):
    cfg = parse_config(tiny_config(synth_manifest, str(tmp_path), experiment={
        "kind": "transfer", "repeats": {"folds": 3, "seeds": [0, 5]},
        "stages": [{"name": "a", "set": {"model.freeze.strategy": "head"}}, {"name": "b"}]}))
    runs = plan(cfg)
    assert len(runs) == 12 and runs[0].name == "a/fold-0-seed-0"
    b = next(v for v in runs if v.name == "b/fold-2-seed-5")
    assert b.depends_on == "a/fold-2-seed-5" and b.base == "b"
    assert b.cfg.train.init_from == os.path.join(str(tmp_path), "variants", "a", "fold-2-seed-5", "model")
    assert (b.cfg.data.split.folds, b.cfg.data.split.fold, b.cfg.data.split.seed, b.cfg.train.seed) == (3, 2, 5, 5)

    study = parse_config(tiny_config(synth_manifest, str(tmp_path / "s"), experiment={
        "kind": "study", "repeats": {"folds": 2},
        "parts": [{"name": "bb", "kind": "compare", "backbones": ["baseline_cnn"]},
                  {"name": "one", "kind": "single", "repeats": {"seeds": [1, 2, 3]}, "set": {"train.epochs": 1}}]}))
    names = [v.name for v in plan(study)]
    assert names == ["bb/baseline_cnn/fold-0", "bb/baseline_cnn/fold-1", "one/run/seed-1", "one/run/seed-2",
                     "one/run/seed-3"]
    assert plan(study)[-1].cfg.train.epochs == 1

    for bad, match in (({"kind": "study"}, r"experiment.parts: Field required \(experiment kind 'study'\)"),
                       ({"kind": "compare", "backbones": ["baseline_cnn"], "parts": [{"name": "x"}]},
                        r"experiment.parts: Extra inputs are not permitted \(experiment kind 'compare'\)"),
                       ({"kind": "study", "parts": [{"name": "x"}, {"name": "x"}]}, "distinct names"),
                       ({"kind": "study", "parts": [{"name": "x", "kind": "study", "parts": [{"name": "y"}]}]},
                        "study parts cannot be studies"),
                       ({"kind": "study", "parts": [{"name": "x"}], "targets": {"kappa": 0.9}}, "targets")):
        with pytest.raises(ConfigError, match=match):
            parse_config(tiny_config(synth_manifest, str(tmp_path), experiment=bad))


def _chips_in_two_scenes(folder: str) -> str:
    """40 synthetic 32-px chips in 10 groups, with ``scene`` (west B / east C) and ``landslide_fraction`` (0 for
    non-landslides) columns, as the Baige chips."""
    from landslide.data.synthetic import generate_dataset

    manifest = generate_dataset(folder, n_per_class=20, size=32, seed=3, block=2)
    frame = pd.read_csv(manifest)
    frame["scene"] = np.where(frame["lon"] < frame["lon"].median(), "B", "C")
    landslide = frame["label"] == "landslide"
    frame["landslide_fraction"] = np.where(landslide, np.linspace(0.05, 0.9, len(frame)), 0.0)
    frame.to_csv(manifest, index=False)
    return manifest


def test_tiny_version_of_the_real_study_config_end_to_end(tmp_path, capsys):
    """configs/experiments/baige_study.yaml as committed, on synthetic chips with a tiny budget: every part,
    2-fold cross-validation, test-time augmentation, Grad-CAM statistics and the exported best model."""
    data = _chips_in_two_scenes(str(tmp_path / "chips"))
    out = tmp_path / "study"
    overrides = {"data.train": data, "output_dir": str(out), "experiment.repeats.folds": 2,
                 "model.image_size": 32, "model.pretrained": "none", "train.epochs": 1, "train.batch_size": 8,
                 "train.progress": False, "eval.bootstrap": 50, "eval.tta": "flips", "eval.cam_max_images": 12,
                 "eval.gallery_size": 2, "data.split.val_fraction": 0.25}
    cfg = load_config(STUDY_CONFIG, overrides)
    assert cfg.experiment.kind == "study" and len(plan(cfg)) == 26
    argv = ["experiment", STUDY_CONFIG] + [f"--set={k}={v}" for k, v in overrides.items()]
    assert cli_main(argv + ["--report-only"]) == 0  # nothing trained yet: a report of unfinished runs, no crash
    assert "FAILED: not finished yet (report only)" in capsys.readouterr().out
    assert (out / "study.md").exists() and not (out / "best_model").exists()
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "experiment baige-study (study): 26 variants, 0 failed" in printed
    assert "backbones/tf_efficientnet_lite0" in printed

    # cross-validation: every chip tested exactly once per variant, decisions as the runs made them
    oof = pd.read_csv(out / "backbones" / "variants" / "baseline_cnn" / "predictions_out_of_fold.csv")
    assert len(oof) == oof["uri"].nunique() == len(pd.read_csv(data)) and oof["run"].nunique() == 2
    assert {"probability_without_tta", "prediction_without_tta", "group"} <= set(oof.columns)
    table = pd.read_csv(out / "backbones" / "comparison.csv").set_index("variant")
    row = table.loc["baseline_cnn"]
    assert row["runs"] == 2 and row["estimate"] == "out-of-fold" and row["test_images"] == len(oof)
    assert row["test_accuracy"] == pytest.approx((oof["prediction"] == oof["target"]).mean())
    assert row["test_accuracy_low"] <= row["test_accuracy"] <= row["test_accuracy_high"]
    assert len(pd.read_csv(out / "backbones" / "runs.csv")) == 6
    # threshold rules: each chosen on validation only, per fold or once on the pooled validation predictions;
    # the per-fold F1 rule reproduces the runs' own decisions
    rules = pd.read_csv(out / "backbones" / "threshold_rules.csv")
    assert set(rules["rule"]) == {"fixed", "f1", "youden"} and set(rules["scheme"]) == {"per fold", "pooled"}
    mine = rules[(rules["variant"] == "baseline_cnn") & (rules["rule"] == "f1") & (rules["scheme"] == "per fold")]
    assert mine["accuracy"].iloc[0] == pytest.approx(row["test_accuracy"]) and (rules["n"] == len(oof)).all()
    fixed = rules[(rules["rule"] == "fixed")]
    assert (fixed["threshold_min"] == 0.5).all() and (fixed["threshold_max"] == 0.5).all()
    assert "| baseline_cnn | youden | pooled |" in (out / "backbones" / "threshold_rules.md").read_text()
    # weight transfer chains fold by fold
    card = json.load(open(out / "transfer" / "variants" / "scene-C-blocks-3" / "fold-1" / "model" / "model_card.json"))
    assert card["init_from"].endswith(os.path.join("scene-B-head", "fold-1", "model"))
    assert card["tta"] == "flips" and set(card["thresholds_by_tta"]) == {"flips", "none"}

    study = json.load(open(out / "study.json"))
    assert study["best"]["selected_by"].startswith("mean validation mcc")
    assert set(study["targets"]) == {"f1", "mcc"} and study["baseline"][0]["backbone"] == "baseline_cnn"
    assert "backbones/baseline_cnn" in study["tta_effect"]
    # nested estimate of the selection procedure: per fold, the full-data variant with the best validation MCC
    nested = study["selection_estimate"]
    assert set(nested["chosen"]) == {"fold-0", "fold-1"} and nested["n"] == len(oof)
    runs = pd.concat([pd.read_csv(out / part / "runs.csv").assign(part=part)
                      for part in ("backbones", "mobilenetv2-lr-3e-4", "mobilenetv2-15-epochs", "mobilenetv2-224px",
                                   "finetune")])  # data_size and transfer train on subsets: not candidates
    for fold, chosen in nested["chosen"].items():
        rows = runs[runs["fold"] == int(fold.split("-")[1])]
        assert nested["validation"][fold] == pytest.approx(rows["val_mcc"].max())
        assert chosen.split("/", 1)[0] in rows.loc[rows["val_mcc"] == rows["val_mcc"].max(), "part"].tolist()
    assert "the selection procedure (nested)" in (out / "study.md").read_text()
    # where the selected model errs, by the manifest's columns: every test chip counted once per column
    breakdown = study["error_breakdown"]
    best_oof = pd.read_csv(os.path.join(study["best"]["source"], "..", "..", "predictions_out_of_fold.csv"))
    for column in ("scene", "landslide_fraction"):
        rows = breakdown[column]["rows"]
        assert sum(r["n"] for r in rows) == len(oof)
        assert sum(r["errors"] for r in rows) == int((best_oof["prediction"] != best_oof["target"]).sum())
    assert [r["value"] for r in breakdown["scene"]["rows"]] == ["B", "C"]
    fractions = breakdown["landslide_fraction"]
    assert fractions["binned"] and fractions["rows"][0]["value"] == "= 0"
    assert fractions["rows"][0]["non_landslide"] == fractions["rows"][0]["n"] == 20  # every non-landslide
    assert study["attention"]["images"] > 0 and set(study["attention"]["outcomes"]) & {"correct", "errors"}
    md = (out / "study.md").read_text()
    for section in ("## Selected model", "## Part `backbones` (compare)", "## Part `data_size` (data_size)",
                    "## Part `finetune` (finetune)", "## Part `transfer` (transfer)", "## Test-time augmentation",
                    "## Where the selected model looks", "| target | goal |", "## Where the selected model errs"):
        assert section in md, section
    assert (out / "attention_by_outcome.png").stat().st_size > 1000

    # the exported model serves sweeps and the endpoint through the one Predictor, with its TTA mode
    from landslide.inference.predictor import Predictor

    best = out / "best_model"
    card = json.load(open(best / "model_card.json"))
    assert card["selection"]["variant"] == study["best"]["variant"]
    predictor = Predictor(str(best))
    assert predictor.tta == "flips" and predictor.threshold == pytest.approx(card["thresholds_by_tta"]["flips"])
    plain = Predictor(str(best), tta="none")
    assert plain.threshold == pytest.approx(card["thresholds_by_tta"]["none"])
    batch = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    assert predictor.predict(batch).shape == (3,)
    with pytest.raises(ConfigError, match="test-time augmentation"):
        Predictor(str(best), tta="all")


def test_mask_label_rule(tmp_path):
    from landslide.data.images import encode_png
    from landslide.data.masks import label_for, label_table

    assert [label_for(f) for f in (0.0, 0.01, 0.05, 0.5)] == ["non_landslide", "ambiguous", "landslide",
                                                              "landslide"]
    rows = []
    for name, marked in (("none", 0), ("sliver", 40), ("slide", 400)):
        mask = np.zeros((40, 40, 3), np.uint8)
        mask.reshape(-1, 3)[:marked] = 255
        (tmp_path / f"{name}.png").write_bytes(encode_png(mask))
        rows.append({"path": f"{name}.jpg", "mask_path": f"{name}.png"})
    rows.append({"path": "x.jpg", "mask_path": "missing.png"})
    pd.DataFrame(rows).to_csv(tmp_path / "chips.csv", index=False)
    frame, report = label_table(str(tmp_path / "chips.csv"))
    assert list(frame["label"][:3]) == ["non_landslide", "ambiguous", "landslide"]
    assert frame["landslide_fraction"][2] == 0.25 and pd.isna(frame["label"][3])
    assert report["counts"] == {"landslide": 1, "non_landslide": 1, "ambiguous": 1}
    assert "missing.png" in report["unreadable"][0]["mask"]
    with pytest.raises(ConfigError, match="clean_max"):
        label_table(str(tmp_path / "chips.csv"), landslide_min=0.0)
    assert cli_main(["labels", str(tmp_path / "chips.csv"), "--out", str(tmp_path / "out.csv")]) == 1  # unreadable


def test_error_breakdown_bins_and_missing_columns():
    from landslide.evaluation.breakdown import bins, error_breakdown

    fraction = pd.Series([0.0] * 6 + [0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 0.9, 1.0])
    labels = bins(fraction)
    assert (labels[:6] == "= 0").all() and labels[6:].nunique() == 4  # the frequent 0: its own bin, rest quartiles
    predictions = pd.DataFrame({"uri": list("abcd"), "target": [1, 1, 0, 0], "prediction": [1, 0, 1, 0]})
    manifest = pd.DataFrame({"uri": list("abcd"), "scene": ["B", "B", "C", None]})
    out = error_breakdown(predictions, manifest, ["scene", "sensor"])
    assert out["sensor"] == {"error": "the manifest has no column 'sensor'"}
    rows = {r["value"]: r for r in out["scene"]["rows"]}
    assert list(rows) == ["B", "C", "missing"]
    assert (rows["B"]["FN"], rows["B"]["recall"], rows["B"]["specificity"]) == (1, 0.5, None)
    assert (rows["C"]["FP"], rows["C"]["error_rate"]) == (1, 1.0)
