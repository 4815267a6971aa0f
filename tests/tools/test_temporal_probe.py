"""tools/temporal_probe.py on the tiny EgoToy: its accuracies are the episodic test's (also for a head
that reads class names), reversed queries really are the clips played backwards."""
import numpy as np
import pytest
import torch

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import episodes_for_cfg
from ego_fsar.engine.episode_runner import run_episodes
from ego_fsar.engine.head_selection import fewshot_parts
from ego_fsar.models import build_model
from ego_fsar.utils.env import seed_everything
from tests.engine.test_fewshot import vit_fewshot_cfg
from tests.tools.tiny import load_tool, tiny_cfg, write_cfg

probe_tool = load_tool("temporal_probe")


def test_probe_matches_the_episodic_test(egotoy_root, tmp_path, capsys):
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "run"))
    cfg.TEST.SPLIT = "test"
    seed_everything(0)
    result = probe_tool.main(["--cfg", write_cfg(cfg, tmp_path / "tiny.yaml")])
    assert "queries played backwards" in capsys.readouterr().out
    seed_everything(0)
    model = build_model(cfg)
    backbone, head = fewshot_parts(model, cfg)
    dataset = build_dataset("egotoy", cfg, "test")
    expected = run_episodes(backbone, head, dataset, episodes_for_cfg(cfg, dataset.labels), cfg)
    assert result["recorded"] == pytest.approx(expected)
    assert len(result["reversed"]) == len(expected) and -1.0 <= result["first_last_cosine"] <= 1.0


def test_time_reversed_backbone_flips_every_pathway():
    seen = []

    class Recorder(torch.nn.Module):
        out_dim = 1

        def forward(self, inputs):
            seen.extend(inputs)
            return None

    clip = [torch.arange(4.0).view(1, 1, 4, 1, 1), torch.arange(8.0).view(1, 1, 8, 1, 1)]
    probe_tool.TimeReversed(Recorder())(clip)
    assert [x.flatten().tolist() for x in seen] == [[3, 2, 1, 0], list(np.arange(7.0, -1, -1))]
    assert clip[0].flatten().tolist() == [0, 1, 2, 3]


def test_probe_of_a_head_that_reads_class_names(cfg, tmp_path):
    """EMP-Net scores queries against the episode classes' names: the probe passes them as the test does."""
    cfg = vit_fewshot_cfg(cfg, tmp_path / "run", "EMPNet")
    seed_everything(0)
    result = probe_tool.main(["--cfg", write_cfg(cfg, tmp_path / "emp.yaml")])
    seed_everything(0)
    model = build_model(cfg)
    backbone, head = fewshot_parts(model, cfg)
    dataset = build_dataset("egotoy", cfg, "test")
    expected = run_episodes(backbone, head, dataset, episodes_for_cfg(cfg, dataset.labels), cfg)
    assert result["recorded"] == pytest.approx(expected) and len(result["reversed"]) == len(expected)
