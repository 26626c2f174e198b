"""Sweeps adapted to the swept region without labels (sweep.adapt): AdaBN, prior shift, calibration."""

import io
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import sweep_config
from landslide import storage
from landslide.errors import ConfigError
from landslide.evaluation.metrics import apply_temperature, prior_shift_threshold
from landslide.inference.adapt import batchnorm_layers
from landslide.models.checkpoint import load_checkpoint, read_card
from landslide.inventory.sweep import run_sweep, summary_lines


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> dict:
    from landslide.data.synthetic import generate_region

    return generate_region(str(tmp_path_factory.mktemp("adapt_region")), cols=4, rows=3, tile_size=64, seed=4)


def _inventory(out) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(storage.read_bytes(os.path.join(out, "inventory.parquet")))).to_pandas()


def test_adabn_sweep_scores_with_an_adapted_saved_model_and_resumes_with_it(trained_run, region, tmp_path):
    model_dir = trained_run["model_dir"]
    before = read_card(model_dir).version
    plain = run_sweep(sweep_config(model_dir, region["xyz"], str(tmp_path / "plain")))
    out = str(tmp_path / "adabn")
    adapt = {"batchnorm": True, "batchnorm_tiles": 8, "seed": 1}
    part = run_sweep(sweep_config(model_dir, region["xyz"], out, adapt=adapt), stop_after_shards=1)
    assert part["interrupted"]
    adapted = os.path.join(out, "adapted_model")
    card = read_card(adapted)
    assert card.adaptation["method"] == "adabn" and card.adaptation["images"] == 8
    assert card.adaptation["source_version"] == before and card.version != before
    assert read_card(model_dir).version == before  # the trained model is untouched
    model, _ = load_checkpoint(adapted)
    trained, _ = load_checkpoint(model_dir)
    bn, bn0 = batchnorm_layers(model)[0], batchnorm_layers(trained)[0]
    assert not np.allclose(bn.running_mean.numpy(), bn0.running_mean.numpy())
    assert np.allclose(bn.weight.detach().numpy(), bn0.weight.detach().numpy())  # learned weights kept

    done = run_sweep(sweep_config(model_dir, region["xyz"], out, adapt=adapt))  # resumes with the saved model
    assert read_card(adapted).version == card.version and done["tiles_in"] == 12
    inv, ref = _inventory(out), _inventory(tmp_path / "plain")
    assert (inv["model_version"] == card.version).all() and (ref["model_version"] == before).all()
    assert not np.allclose(inv["probability"], ref["probability"])
    assert done["adaptation"]["batchnorm"]["images"] == 8 and done["adaptation"]["batchnorm"]["version"] == card.version
    assert "AdaBN: " in summary_lines(done, out) and plain.get("adaptation") is None
    # the same output without AdaBN would mix two models' scores: refused
    with pytest.raises(ConfigError, match=r"holds another sweep \(its adapt.batchnorm differs"):
        run_sweep(sweep_config(model_dir, region["xyz"], out))


def test_prior_shift_and_calibration_rewrite_the_inventory_without_rescoring(trained_run, region, tmp_path):
    model_dir = trained_run["model_dir"]
    card = read_card(model_dir)
    out = str(tmp_path / "s")
    first = run_sweep(sweep_config(model_dir, region["xyz"], out, threshold=None))
    raw = _inventory(out).sort_values("tile_id").reset_index(drop=True)
    ok = raw["status"] == "ok"

    shifted = run_sweep(sweep_config(model_dir, region["xyz"], out, threshold=None, adapt={"prior": True}))
    assert shifted["tiles_this_run"] == 0  # nothing scored again
    prior, expected = prior_shift_threshold(raw.loc[ok, "probability"].to_numpy(), first["threshold"],
                                            card.train_prior, card.temperature)
    info = shifted["adaptation"]["prior"]
    assert info["estimated_prior"] == pytest.approx(prior) and shifted["threshold"] == pytest.approx(expected)
    assert info["train_prior"] == pytest.approx(card.train_prior) and info["tiles"] == ok.sum()
    inv = _inventory(out).sort_values("tile_id").reset_index(drop=True)
    assert ((inv.loc[ok, "probability"] >= expected) == (inv.loc[ok, "label"] == "landslide")).all()
    assert shifted["positives"] == int((raw.loc[ok, "probability"] >= expected).sum())
    shards = pq.read_table(os.path.join(out, "shards", "shard-000000.parquet")).to_pandas()
    assert set(shards["probability"]) <= set(raw["probability"])  # shards keep the raw scores
    assert "prior shift: landslide share estimated" in summary_lines(shifted, out)

    calibrated = run_sweep(sweep_config(model_dir, region["xyz"], out, threshold=None, adapt={"calibrated": True}))
    inv = _inventory(out).sort_values("tile_id").reset_index(drop=True)
    np.testing.assert_allclose(inv.loc[ok, "probability"],
                               apply_temperature(raw.loc[ok, "probability"].to_numpy(), card.temperature), rtol=1e-9)
    assert (inv["label"] == raw["label"]).all()  # the same decisions on another scale
    assert calibrated["threshold"] == pytest.approx(float(apply_temperature(first["threshold"], card.temperature)))
    assert calibrated["adaptation"]["temperature"] == pytest.approx(card.temperature)
    assert json.load(open(os.path.join(out, "summary.json")))["adaptation"]["prior"] is None


def test_a_failed_start_does_not_claim_the_output_and_an_empty_sweep_skips_the_prior(trained_run, tmp_path):
    from conftest import write_raster

    from landslide.errors import DataError

    scene = write_raster(tmp_path / "s.tif", np.zeros((3, 64, 64), np.uint8))
    broken = tmp_path / "broken.tif"
    broken.write_bytes(open(scene, "rb").read()[:600])  # header only: every window unreadable
    out = str(tmp_path / "o")
    model_dir = trained_run["model_dir"]
    with pytest.raises(DataError, match="none of the .* sampled tiles is readable"):
        run_sweep(sweep_config(model_dir, str(broken), out, adapt={"batchnorm": True, "batchnorm_tiles": 4}))
    # nothing was scored: the same output takes the sweep without AdaBN (no "holds another sweep")
    done = run_sweep(sweep_config(model_dir, str(broken), out, threshold=None, adapt={"prior": True}))
    assert done["tiles_ok"] == 0 and done["adaptation"]["prior"]["skipped"].startswith("no tile was scored")
    assert "prior shift not applied" in summary_lines(done, out)
