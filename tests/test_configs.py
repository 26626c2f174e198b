"""The example configs in configs/ stay valid and plan the runs they describe."""

from pathlib import Path

import pytest

from landslide.config import load_config
from landslide.training.experiment import plan

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
    budget = cfg.classifier.num_cpus + cfg.explainer.num_cpus + cfg.ingress.num_cpus
    assert budget <= 2, "the sample config must fit a 2-core laptop"
