"""Every shipped experiment config loads (with `_BASE_`) and builds its model on the CPU."""
import glob
import os

import pytest
import torch

from ego_fsar.models import build_model
from ego_fsar.utils.parser import load_config, parse_args
from tests.paths import REPO_ROOT

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True))


def test_configs_found():
    assert len(CONFIGS) > 20


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, os.path.join(REPO_ROOT, "configs")))
def test_config_loads_and_builds(path):
    cfg = load_config(parse_args(["--cfg", path, "NUM_GPUS", "0"]), path)
    with torch.device("meta"):
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
