"""The example configs in configs/ stay valid."""

from pathlib import Path

import pytest

from landslide.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_is_valid(path):
    cfg = load_config(str(path))
    assert cfg.train.lr == 0.001 and cfg.train.batch_size == 32
