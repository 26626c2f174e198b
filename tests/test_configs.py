"""The example configs in configs/ stay valid and plan the runs they describe."""

from pathlib import Path

import pytest

from landslide.config import load_config
from landslide.experiments.plan import plan

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if "sweeps" not in p.parts)
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_is_valid(path):
    cfg = load_config(str(path))
    assert cfg.train.lr == 0.001 and cfg.train.batch_size == 32
    variants = plan(cfg)
    assert variants and len({v.cfg.output_dir for v in variants}) == len(variants)


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_example_sweep_config_is_valid(path):
    from landslide.config import SweepConfig

    cfg = load_config(str(path), schema=SweepConfig)
    assert cfg.model and cfg.tiles.source and cfg.output


def test_serve_config_args_are_valid():
    import yaml

    from landslide.config import ServeAppConfig, parse_config

    config = yaml.safe_load((ROOT.parent / "serve" / "config.yaml").read_text())
    (app,) = config["applications"]
    assert app["import_path"] == "serve.app:build_app"
    cfg = parse_config(app["args"], "serve/config.yaml", schema=ServeAppConfig)
    budget = cfg.classifier.num_cpus + cfg.explainer.num_cpus
    assert budget <= 2, "the sample config must fit a 2-core laptop"


def test_one_spelling_of_cam_methods_and_tile_formats():
    from typing import get_args

    from landslide.cli import build_parser
    from landslide.config import CamMethod, ServeAppConfig, TileFormat
    from landslide.explain.gradcam import CAM_METHODS

    assert set(CAM_METHODS) == set(get_args(CamMethod)) == set(ServeAppConfig.model_fields["cam_methods"].default_factory())
    parser = build_parser()
    sub = {a.dest: a for a in parser._subparsers._group_actions}["command"].choices
    tiles_index = {a.dest: a for a in sub["tiles"]._subparsers._group_actions}["tiles_command"].choices["index"]
    assert tuple({a.dest: a for a in tiles_index._actions}["format"].choices) == get_args(TileFormat)


def test_every_tile_format_has_a_source():
    from typing import get_args

    from landslide.config import TileFormat
    from landslide.inventory.tiles import TILE_SOURCES

    assert set(TILE_SOURCES) == set(get_args(TileFormat)) - {"auto"}
