"""Balanced sampling of training chips (train.sampling)."""

import collections
import json
import os

import pandas as pd
import pytest

from conftest import tiny_config
from landslide.config import parse_config
from landslide.data import manifest as manifest_lib
from landslide.training.run import prepare_run, run_training
from landslide.training.sampling import BalancedSampler, sampling_cells


def _cells(n_big=90, n_small=10):
    return [("a", "landslide")] * n_big + [("b", "landslide")] * n_small + [("b", "non_landslide")] * n_small


def test_every_cell_is_drawn_equally_often():
    cells = _cells()
    sampler = BalancedSampler(cells, seed=0)
    assert len(sampler) == len(cells)
    drawn = collections.Counter(cells[i] for i in sampler)
    assert set(drawn) == set(cells)
    for count in drawn.values():  # 110 draws over 3 cells: ~36.7 each
        assert abs(count - len(cells) / 3) < 15


def test_draws_are_seeded_per_epoch_and_ranks_split_one_draw():
    cells = _cells()
    a, b = BalancedSampler(cells, seed=1), BalancedSampler(cells, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    ranks = [BalancedSampler(cells, seed=1, num_replicas=3, rank=r) for r in range(3)]
    for r in ranks:
        r.set_epoch(1)
    assert len({len(r) for r in ranks}) == 1 and sum(len(r) for r in ranks) >= len(cells)
    merged = [i for triple in zip(*(list(r) for r in ranks)) for i in triple]
    full = BalancedSampler(cells, seed=1, num_replicas=3, rank=0)
    full.num_replicas = 1
    full.set_epoch(1)
    assert merged == list(full)[:len(merged)]
    with pytest.raises(ValueError, match="rank 3 outside"):
        BalancedSampler(cells, num_replicas=3, rank=3)


def test_cells_without_a_region_column_are_one_region(synth_manifest):
    m = manifest_lib.load(synth_manifest)
    cells = sampling_cells(m, "region_class")
    assert {c[0] for c in cells} == {"all"} and {c[1] for c in cells} == {"landslide", "non_landslide"}


def test_region_class_sampling_trains_and_drops_the_loss_weight(synth_manifest, tmp_path):
    frame = pd.read_csv(synth_manifest)
    # one big region and one small one
    frame["region"] = ["big" if i % 4 else "small" for i in range(len(frame))]
    data = os.path.join(os.path.dirname(synth_manifest), "sampling_regions.csv")
    frame.to_csv(data, index=False)
    cfg = parse_config(tiny_config(data, str(tmp_path / "s"), data={"train": data},
                                   train={"sampling": "region_class", "augment": {"sensor_shift": {}}}))
    run = prepare_run(cfg, write_files=False)
    assert run.pos_weight is None  # classes are balanced by sampling, not by the loss
    sampler = run.train_sampler()
    drawn = collections.Counter(sampling_cells(run.train, "region_class")[i] for i in sampler)
    assert len(drawn) == 4
    summary = run_training(cfg)
    assert summary["epochs_run"] == 2
    card = json.load(open(tmp_path / "s" / "model" / "model_card.json"))
    assert card["training"]["sampling"] == "region_class" and card["training"]["augment"]["sensor_shift"]["p"] == 0.5

    # region sampling without regions, and a blur wider than the images, are refused before training
    from landslide.errors import LandslideError

    with pytest.raises(LandslideError, match="train.sampling=region balances regions, but the data has no 'region'"):
        prepare_run(parse_config(tiny_config(synth_manifest, str(tmp_path / "n"), train={"sampling": "region"})),
                    write_files=False)
    with pytest.raises(LandslideError, match=r"blur_sigma \[0.3, 20.0\]: a blur kernel of 121 px cannot filter 32-px"):
        prepare_run(parse_config(tiny_config(data, str(tmp_path / "b"), data={"train": data},
                                             train={"augment": {"sensor_shift": {"blur_sigma": [0.3, 20]}}})),
                    write_files=False)
    assert "f1" in json.load(open(tmp_path / "s" / "summary.json"))["test_metrics"]
