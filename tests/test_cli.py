"""The command line: one-line errors with exit code 2, and the main commands end to end."""

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
import types

import pytest
import yaml

from landslide.cli import main
from tests.conftest import tiny_config


def run_cli(*args):
    """Run the CLI in-process (fast); returns an object like CompletedProcess."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except Exception:
            traceback.print_exc(file=err)
            code = 1
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def run_cli_process(*args):
    """Run the installed module as a real process, for exit codes as the shell sees them."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "landslide.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def _assert_clean_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_inputs_give_one_line_errors(tmp_path, synth_manifest):
    _assert_clean_error(run_cli("train", "--config", str(tmp_path / "nope.yaml")), "nope.yaml", "not found")
    bad = tiny_config(synth_manifest, str(tmp_path / "o"), model={"backbone": "efficientnet_b9"})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    _assert_clean_error(run_cli("train", "--config", str(tmp_path / "bad.yaml")), "model.backbone",
                        "efficientnet_b9")
    ok = tiny_config(str(tmp_path / "missing.csv"), str(tmp_path / "o"))
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(ok))
    _assert_clean_error(run_cli("train", "--config", str(tmp_path / "ok.yaml")), "missing.csv", "not found")
    _assert_clean_error(run_cli("train", "--config", str(tmp_path / "ok.yaml"), "--set", "train.lr=-1"),
                        "train.lr")
    _assert_clean_error(run_cli("evaluate", "--model", str(tmp_path / "nomodel"), "--data", synth_manifest,
                                "--out", str(tmp_path / "e")), "model card")
    _assert_clean_error(run_cli("preprocess", str(tmp_path / "nothing"), str(tmp_path / "d")), "not found")
    debug = run_cli("--debug", "train", "--config", str(tmp_path / "nope.yaml"))
    assert "Traceback" in debug.stderr
    proc = run_cli_process("train", "--config", str(tmp_path / "nope.yaml"))
    _assert_clean_error(proc, "nope.yaml")


def test_train_and_evaluate_commands(tmp_path, synth_manifest):
    cfg = tiny_config(synth_manifest, str(tmp_path / "run"), train={"epochs": 1})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("train", "--config", str(tmp_path / "c.yaml"), "--set", "eval.bootstrap=20")
    assert proc.returncode == 0, proc.stderr
    assert "test:" in proc.stdout and "report.md" in proc.stdout
    model_dir = str(tmp_path / "run" / "model")
    again = run_cli("train", "--config", str(tmp_path / "c.yaml"))
    assert again.returncode == 0 and "already finished" in again.stdout
    proc = run_cli("evaluate", "--model", model_dir, "--data", synth_manifest, "--out", str(tmp_path / "ev"),
                   "--bootstrap", "20", "--cam-method", "gradcam++", "--cam-max-images", "4")
    assert proc.returncode == 0, proc.stderr
    assert "24 images" in proc.stdout
    metrics = json.load(open(tmp_path / "ev" / "metrics.json"))
    assert metrics["n"] == 24 and metrics["attention"]["method"] == "gradcam++"


def test_models_command_lists_registry():
    proc = run_cli_process("models")
    assert proc.returncode == 0
    assert "efficientnet_b3" in proc.stdout and "300 px" in proc.stdout and "offline weights" in proc.stdout


def test_demo_quick(tmp_path):
    proc = run_cli("demo", "--out", str(tmp_path / "demo"), "--quick")
    assert proc.returncode == 0, proc.stderr
    assert "SYNTHETIC DATA" in proc.stdout and "report.md" in proc.stdout
    assert os.path.exists(tmp_path / "demo" / "run" / "eval" / "report.md")
    card = json.load(open(tmp_path / "demo" / "run" / "model" / "model_card.json"))
    assert card["pretrained"]["source"].startswith("offline:")
    inventory = json.load(open(tmp_path / "demo" / "sweep" / "inventory.geojson"))
    summary = json.load(open(tmp_path / "demo" / "sweep" / "summary.json"))
    assert inventory["type"] == "FeatureCollection" and len(inventory["features"]) == summary["positives"]
    assert summary["tiles_in"] == summary["tiles_ok"] == 12 and "sweep inventory:" in proc.stdout
    # footprints: a footprint model on the same chips, its test chips' polygons beside the true ones
    fp = json.load(open(tmp_path / "demo" / "footprints" / "summary.json"))
    found = json.load(open(tmp_path / "demo" / "footprints" / "footprints.geojson"))
    truth = json.load(open(tmp_path / "demo" / "footprints" / "truth.geojson"))
    assert len(found["features"]) == fp["predicted_footprints"] and len(truth["features"]) == fp["true_footprints"] > 0
    assert 0 <= fp["polygon_iou"] <= 1 and "SYNTHETIC" in fp["note"] and "polygon IoU" in proc.stdout
    assert all(f["properties"]["synthetic"] and f["properties"]["area_m2"] > 0 for f in truth["features"])
    from shapely.geometry import shape

    centre = shape(truth["features"][0]["geometry"]).centroid
    assert 99.9 < centre.x < 100.2 and 29.8 < centre.y < 30.1  # the fictitious region
    # and a footprint sweep of the synthetic region's GeoTIFF, scored against its true footprints
    swept = json.load(open(tmp_path / "demo" / "footprints" / "sweep" / "summary.json"))
    assert swept["kind"] == "footprints" and swept["scenes"] == 1 and "footprint sweep:" in proc.stdout
    assert (tmp_path / "demo" / "region" / "truth" / "footprints_mask.png").exists()


def test_sweep_and_tiles_cli(tmp_path, trained_run):
    from landslide.data.synthetic import generate_region

    region = generate_region(str(tmp_path / "region"), cols=2, rows=2, tile_size=32, geotiff=False)
    proc = run_cli("tiles", "index", region["xyz"], "--out", str(tmp_path / "index.parquet"))
    assert proc.returncode == 0, proc.stderr
    assert "4 tiles indexed" in proc.stdout
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"model: {trained_run['model_dir']}\noutput: {tmp_path / 'out'}\n"
                   f"tiles: {{source: {region['xyz']}, index: {tmp_path / 'index.parquet'}}}\n")
    proc = run_cli("sweep", "--config", str(cfg), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "4 tiles in (all tiles): 4 ok, 0 failed" in proc.stdout
    proc = run_cli("sweep", "--config", str(cfg), "--set", "tiles.zoom=-1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "tiles.zoom: Input should be greater than or equal to 0" in proc.stderr
    proc = run_cli("sweep", "--config", str(cfg), "--set", f"tiles.index={tmp_path / 'missing.parquet'}")
    assert proc.returncode == 2 and "missing.parquet: not found" in proc.stderr


@pytest.mark.slow
def test_full_demo(tmp_path):
    """The whole demo end to end (its duration is a benchmark's business, not a test's: busy machines vary)."""
    proc = run_cli("demo", "--out", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    metrics = json.load(open(tmp_path / "demo" / "run" / "eval" / "metrics.json"))
    assert metrics["f1"] > 0.8
