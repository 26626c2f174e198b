"""The multi-modal classifier: tag encoding with explicit unknowns, the tag encoder, the leakage check, a tiny
multi-modal training run with a size head (with and without tags), the modality experiment, and clean errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from landslide.config import parse_config
from landslide.data.tags import TagSchema, category, size_targets
from landslide.errors import CheckpointError, ConfigError, DataError
from landslide.evaluation.leakage import tag_leakage
from tests.conftest import MULTIMODAL, tiny_config, write_tagged
from tests.test_cli import _assert_clean_error, run_cli


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"target": [1, 1, 1, 0, 0, 0],
                         "setting": ["Natural Slope", "natural_slope", "urban", "unknown", None, "above-road"],
                         "dist": [1.0, "2", None, 3.0, float("inf"), 1000.0],
                         "size": ["Large", "small", None, "large", "small", "medium"]})


def test_schema_fits_on_training_rows_and_encodes_unknowns():
    schema = TagSchema.fit(_frame(), ["setting"], ["dist"], min_count=1)
    # normalised values, most frequent first; "unknown"/None are not values
    assert schema.categorical == {"setting": ("natural_slope", "above_road", "urban")}
    mean, std = schema.numeric["dist"]
    assert mean == pytest.approx(np.mean([1, 2, 3, 1000]))
    enc = schema.encode(_frame())
    assert enc.shape == (6, schema.width) == (6, 3)
    assert enc[:, 0].tolist() == [1, 1, 3, 0, 0, 2]
    assert enc[:, 2].tolist() == [0, 0, 1, 0, 1, 0]  # missing flags: None and inf are missing
    assert enc[2, 1] == 0 and enc[5, 1] > 0
    # values the training split never showed, and absent columns, are unknown
    other = schema.encode(pd.DataFrame({"setting": ["mine"]}))
    assert other.tolist() == [[0, 0, 1]] == schema.unknown(1).tolist()
    assert TagSchema.fit(_frame(), ["setting"], [], min_count=2).categorical["setting"] == ("natural_slope",)
    # the JSON form (model card) rebuilds the same encoder
    again = TagSchema.from_json(json.loads(json.dumps(schema.to_json())))
    assert again == schema and np.array_equal(again.encode(_frame()), enc)
    assert schema.coverage(_frame()) == {"setting": pytest.approx(4 / 6), "dist": pytest.approx(4 / 6)}
    with pytest.raises(DataError, match=r"tag column\(s\) \['nope'\] not in the training data"):
        TagSchema.fit(_frame(), ["nope"], [])


def test_records_from_users_are_checked():
    schema = TagSchema.fit(_frame(), ["setting"], ["dist"], min_count=1)
    enc = schema.encode_records([{"setting": "Natural Slope", "dist": 2}, None, {}])
    assert enc[0, 0] == 1 and enc[0, 2] == 0 and enc[1:].tolist() == schema.unknown(2).tolist()
    with pytest.raises(ConfigError, match="unknown tag 'slope'; this model takes: setting, dist"):
        schema.encode_records([{"slope": 3}])
    with pytest.raises(ConfigError, match="tag 'dist' must be a number"):
        schema.encode_records([{"dist": "far"}])
    with pytest.raises(ConfigError, match="tag 'setting' must be a string"):
        schema.encode_records([{"setting": ["a"]}])


def test_size_targets_only_for_landslides_with_a_known_class():
    assert category(" Very-Large ") == "very_large" and category("N/A") is None and category(3.0) == "3"
    sizes = size_targets(_frame(), "size", ["small", "medium", "large"])
    assert sizes.tolist() == [2, 0, -1, -1, -1, -1]
    with pytest.raises(DataError, match="size head column 'missing'"):
        size_targets(_frame(), "missing", ["a", "b"])


def test_tag_encoder_hides_tags_while_training_only():
    from landslide.models.multimodal import TagEncoder

    schema = TagSchema.fit(_frame(), ["setting"], ["dist"], min_count=1)
    torch.manual_seed(0)
    enc = TagEncoder(schema, embedding_dim=3, hidden=8, drop_all=1.0, drop_each=0.0)
    tags = torch.from_numpy(schema.encode(_frame()))
    unknown = enc.unknown(6)
    enc.train()
    assert torch.allclose(enc(tags), enc(unknown))  # drop_all=1: every chip's tags hidden
    enc.eval()
    assert not torch.allclose(enc(tags), enc(unknown))
    with pytest.raises(ValueError, match="width 2, the model expects 3"):
        enc(tags[:, :2])


def test_leakage_flags_tags_known_for_one_class_only():
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({"target": y, "group": [f"g{i // 4}" for i in range(n)],
                          "glc_size": np.where(y == 1, rng.choice(["small", "large"], n), None),
                          "glc_setting": rng.choice(["urban", "natural_slope", None], n),
                          "glc_distance_km": np.where(rng.random(n) < 0.5, rng.random(n) * 10, np.nan)})
    leaky = tag_leakage(frame, ["glc_size", "glc_setting"], ["glc_distance_km"])
    assert {(x["column"], x["kind"]) for x in leaky["leaks"]} == {("glc_size", "presence"), ("glc_size", "value")}
    assert leaky["columns"]["glc_size"]["known_landslide"] == 1.0
    assert leaky["columns"]["glc_size"]["known_non_landslide"] == 0.0
    assert "glc_size is known for 100% of landslide and 0% of non-landslide rows" in leaky["verdict"]
    clean = tag_leakage(frame, ["glc_setting"], ["glc_distance_km"])
    assert clean["leaks"] == [] and clean["verdict"].startswith("no leak") and clean["combined_auc"] < 0.75
    # a tag known only for non-landslides leaks just as much
    inverse = tag_leakage(frame.assign(mark=np.where(y == 0, "x", None)), ["mark"], [])
    assert inverse["columns"]["mark"]["presence_auc"] == 1.0 and inverse["leaks"]
    assert tag_leakage(frame.head(3), ["glc_setting"], [])["verdict"].startswith("not checked")


def test_config_errors_name_the_problem(synth_manifest):
    def bad(model: dict, match: str, **extra):
        with pytest.raises(ConfigError, match=match):
            parse_config(tiny_config(synth_manifest, "x", model=model, **extra))

    bad({"tags": {}}, "at least one categorical or numeric column")
    bad({"tags": {"categorical": ["label"]}}, r"column\(s\) \['label'\] cannot be tags")
    bad({"tags": {"categorical": ["a"], "numeric": ["a"]}}, "listed more than once")
    bad({"tags": {"categorical": ["glc_size"]}, "size_head": {}}, "is also a tag input")
    bad({"size_head": {"classes": ["small"]}}, "at least two distinct")
    bad({}, "compares image-only with multi-modal: set model.tags", experiment={"kind": "modality"})


def test_multimodal_run_with_size_head(multimodal_run, tagged_manifest):
    from landslide.models.checkpoint import load_checkpoint

    s = multimodal_run
    assert s["inputs"] == "image + tags"
    assert s["tag_leakage"]["leaks"] == []
    for key in ("test_metrics", "test_metrics_without_tags", "tags_with_minus_without", "test_size_metrics"):
        assert s[key], key
    assert set(s["tags_with_minus_without"]) == {"accuracy", "f1", "mcc", "roc_auc"}
    out = s["output_dir"]
    metrics = json.load(open(os.path.join(out, "eval", "metrics.json")))
    assert metrics["tags"]["coverage"].keys() == {"glc_setting", "glc_category", "glc_distance_km"}
    assert metrics["size"]["classes"] == ["small", "medium", "large"]
    assert sum(map(sum, metrics["size"]["confusion"])) == metrics["size"]["n"]
    bare = pd.read_csv(os.path.join(out, "eval", "predictions_without_tags.csv"))
    with_tags = pd.read_csv(os.path.join(out, "eval", "predictions.csv"))
    assert list(bare["uri"]) == list(with_tags["uri"])
    report = open(os.path.join(out, "eval", "report.md")).read()
    for needle in ("## Tags (multi-modal)", "### Tag leakage (training split)", "## Size head (glc_size)"):
        assert needle in report
    assert os.path.exists(os.path.join(out, "tag_leakage.json"))

    model, card = load_checkpoint(s["model_dir"])
    assert card.inputs == "image + tags" and card.size_head.column == "glc_size"
    assert [e["column"] for e in card.tags.tag_schema["categorical"]] == ["glc_setting", "glc_category"]
    assert model.tag_schema.columns == ["glc_setting", "glc_category", "glc_distance_km"] and model.size_classes
    # a reloaded model reproduces the evaluation's probabilities with tags and without
    from landslide.data.manifest import load
    from landslide.evaluation.evaluate import predict_manifest

    test = load(tagged_manifest).subset(
        load(tagged_manifest).frame["uri"].isin(with_tags["uri"]))
    for without, expected in ((False, with_tags), (True, bare)):
        preds, _ = predict_manifest(model, card, test, without_tags=without)
        got = preds.set_index("uri")["probability"]
        assert np.allclose(got.loc[expected["uri"]].to_numpy(), expected["probability"].to_numpy(), atol=1e-5)


def test_predictor_takes_tags_and_works_without(multimodal_run, trained_run, tagged_manifest):
    from landslide.data.images import read_image
    from landslide.inference.predictor import Predictor

    frame = pd.read_csv(tagged_manifest).head(4)
    images = []
    pred = Predictor(multimodal_run["model_dir"], device="cpu")
    for path in frame["path"]:
        images.append(pred.prepare(read_image(os.path.join(os.path.dirname(tagged_manifest), path))))
    batch = np.stack(images)
    assert pred.tag_columns == ["glc_setting", "glc_category", "glc_distance_km"]
    assert pred.info["inputs"] == "image + tags"
    without = pred.predict(batch)
    assert np.allclose(without, pred.predict(batch, [None] * 4))  # no tags == every tag unknown
    tags = [{"glc_setting": "natural_slope", "glc_distance_km": 0.5}] * 4
    with_tags = pred.predict(batch, tags)
    assert with_tags.shape == (4,) and not np.allclose(with_tags, without)
    probs, cams = pred.explain(batch[:2], tags=tags[:2])
    assert np.allclose(probs, with_tags[:2], atol=1e-5) and cams.shape == (2, *batch.shape[1:3])
    with pytest.raises(ConfigError, match="unknown tag 'slope'"):
        pred.predict(batch, [{"slope": 1}] * 4)
    with pytest.raises(ConfigError, match="3 tag sets for 4 images"):
        pred.predict(batch, tags[:3])
    with pytest.raises(ConfigError, match="takes no tags"):
        Predictor(trained_run["model_dir"], device="cpu").predict(batch, tags)


def test_leaky_tags_stop_training_unless_allowed(synth_manifest, tmp_path):
    leaky = write_tagged(synth_manifest, "leaky.csv", leaky=True)
    model = {"tags": {"categorical": ["glc_trigger", "glc_setting"], "min_count": 1}}
    cfg = tiny_config(leaky, str(tmp_path / "leak"), model=model)
    (tmp_path / "leak.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("train", "--config", str(tmp_path / "leak.yaml"))
    _assert_clean_error(proc, "tags leak the label", "glc_trigger is known for 100% of landslide and 0% of "
                        "non-landslide rows", "model.tags.leakage: warn")
    assert not (tmp_path / "leak" / "model").exists()

    from landslide.training.run import run_training

    warned = parse_config(tiny_config(leaky, str(tmp_path / "warn"), model={"tags": {**model["tags"],
                                                                                     "leakage": "warn"}}))
    summary = run_training(warned)
    assert summary["tag_leakage"]["leaks"] and "glc_trigger" in summary["tag_leakage"]["verdict"]


def test_stages_must_agree_on_tags(trained_run, tagged_manifest, tmp_path):
    from landslide.training.run import run_training

    cfg = tiny_config(tagged_manifest, str(tmp_path / "s2"), model=MULTIMODAL,
                      train={"init_from": trained_run["model_dir"]})
    with pytest.raises(ConfigError, match="holds an image-only model but model.tags is set"):
        run_training(parse_config(cfg))


def test_modality_experiment_compares_on_the_same_test_images(tagged_manifest, tmp_path):
    from landslide.experiments.runner import run_experiment
    from landslide.training.run import run_training

    cfg = parse_config(tiny_config(tagged_manifest, str(tmp_path / "mod"), name="mod", experiment={"kind": "modality"},
                                   model={"tags": MULTIMODAL["tags"]}, eval={"cam_max_images": 0, "bootstrap": 50}))
    summary = run_experiment(cfg, run_training, report=lambda line: None)
    assert summary["failed"] == []
    assert [r["variant"] for r in summary["rows"]] == ["image-only", "multimodal", "multimodal (no tags)"]
    modality = json.load(open(tmp_path / "mod" / "modality.json"))
    assert modality["test_images"] > 0 and modality["leakage"]["leaks"] == []
    for key in ("with_tags_minus_image_only", "without_tags_minus_image_only"):
        assert set(modality[key]) == {"accuracy", "f1", "mcc", "roc_auc"}
    text = open(tmp_path / "mod" / "modality.md").read()
    assert "multi-modal with tags − image-only" in text and modality["verdict"] in text
    image_only = yaml.safe_load(open(tmp_path / "mod" / "variants" / "image-only" / "config.yaml"))
    assert image_only["model"]["tags"] is None


def test_catalog_leakage_cli(synth_manifest, tmp_path):
    leaky = write_tagged(synth_manifest, "leaky-cli.csv", leaky=True)
    proc = run_cli("catalog", "leakage", leaky, "--categorical", "glc_trigger,glc_setting",
                   "--numeric", "glc_distance_km", "--out", str(tmp_path / "leak.json"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "glc_trigger is known for 100% of landslide" in proc.stdout
    report = json.load(open(tmp_path / "leak.json"))
    assert report["leaks"] and report["columns"]["glc_setting"]["presence_auc"] < 0.9
    ok = run_cli("catalog", "leakage", leaky, "--categorical", "glc_setting")
    assert ok.returncode == 0 and "no leak" in ok.stdout
    _assert_clean_error(run_cli("catalog", "leakage", leaky, "--categorical", "nope"), "nope", "not in")


def test_broken_tag_section_in_a_card_is_a_checkpoint_error(multimodal_run, tmp_path):
    import shutil

    from landslide.models.checkpoint import load_checkpoint

    shutil.copytree(multimodal_run["model_dir"], tmp_path / "m")
    card = json.load(open(tmp_path / "m" / "model_card.json"))
    broken = json.loads(json.dumps(card))
    del broken["tags"]["schema"]
    (tmp_path / "m" / "model_card.json").write_text(json.dumps(broken))
    with pytest.raises(CheckpointError, match=r"invalid model card \(tags.schema: Field required"):
        load_checkpoint(str(tmp_path / "m"))
    # a card whose tag columns are in another order than the weights' embeddings
    card["tags"]["schema"]["categorical"].reverse()
    (tmp_path / "m" / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="weights do not match the model its card describes"):
        load_checkpoint(str(tmp_path / "m"))


def test_evaluate_command_on_data_without_tag_columns(multimodal_run, synth_manifest, tmp_path):
    """A manifest with no tag (or size) columns: evaluated with every tag unknown, no size metrics."""
    proc = run_cli("evaluate", "--model", multimodal_run["model_dir"], "--data", synth_manifest, "--out",
                   str(tmp_path / "ev"), "--bootstrap", "20", "--cam-max-images", "2")
    assert proc.returncode == 0, proc.stderr
    metrics = json.load(open(tmp_path / "ev" / "metrics.json"))
    assert set(metrics["tags"]["coverage"].values()) == {0.0}
    assert metrics["tags"]["with_minus_without"]["accuracy"]["difference"] == 0.0  # nothing to add
    assert "size" not in metrics
