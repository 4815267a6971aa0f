"""tools/visualize_episode.py on the tiny EgoToy: the drawn episode and its predictions are the ones
the episodic test scores, and the PNG is written."""
import numpy as np
import pytest
import torch
from PIL import Image

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import EpisodeSampler, episodes_for_cfg, save_episodes
from ego_fsar.engine.episode_runner import run_episodes
from ego_fsar.engine.head_selection import fewshot_parts
from ego_fsar.models import build_model
from ego_fsar.utils import checkpoint as cu
from tests.tools.tiny import load_tool, tiny_cfg, write_cfg

visualize = load_tool("visualize_episode")


@pytest.fixture
def trained_cfg(egotoy_root, tmp_path):
    """The tiny config with a checkpoint in OUTPUT_DIR (found by the test checkpoint precedence)."""
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "out"))
    torch.manual_seed(3)
    cu.save_checkpoint(cfg.OUTPUT_DIR, build_model(cfg), None, 0, cfg)
    return cfg


def test_png_is_written(trained_cfg, tmp_path, capsys):
    path = visualize.main(["--cfg", write_cfg(trained_cfg, tmp_path / "tiny.yaml"), "--episode", "1",
                           "--out", str(tmp_path / "ep.png"), "--frames", "3"])
    printed = capsys.readouterr().out
    assert path == str(tmp_path / "ep.png")
    assert "episode 1:" in printed and "checkpoint_epoch_00001.pyth" in printed
    image = np.asarray(Image.open(path).convert("RGB"))
    height, width = image.shape[:2]
    # 2 rows of 1 support + 2 query strips of three 32 px frames, drawn 2 inches wide at 100 dpi.
    assert 600 <= width <= 1200 and 200 <= height <= 600
    assert image.std() > 10


def test_default_output_path_is_in_output_dir(trained_cfg, tmp_path):
    path = visualize.main(["--cfg", write_cfg(trained_cfg, tmp_path / "tiny.yaml")])
    assert path == f"{trained_cfg.OUTPUT_DIR}/episode_00000.png"
    assert Image.open(path).format == "PNG"


def test_predictions_are_the_episodic_tests(trained_cfg):
    result = visualize.predict_episode(trained_cfg, 2)
    assert result.checkpoint == cu.get_path_to_checkpoint(trained_cfg.OUTPUT_DIR, 1)
    dataset = build_dataset("egotoy", trained_cfg, "test")
    episode = episodes_for_cfg(trained_cfg, dataset.labels)[2]
    assert result.episode == episode
    model = build_model(trained_cfg)
    cu.load_test_checkpoint(trained_cfg, model)
    backbone, head = fewshot_parts(model, trained_cfg)
    (acc,) = run_episodes(backbone, head, dataset, [episode], trained_cfg)
    assert result.num_correct / len(result.predictions) == pytest.approx(acc)
    assert result.head_name == type(head).__name__
    assert result.class_names == [dataset.class_names[c] for c in episode.class_ids]


def test_frozen_episodes_file_is_used(trained_cfg, tmp_path):
    dataset = build_dataset("egotoy", trained_cfg, "test")
    sampler = EpisodeSampler(dataset.labels, 2, 1, 2, seed=11)
    save_episodes(str(tmp_path / "episodes.json"), sampler.episodes(6), sampler)
    trained_cfg.FEW_SHOT.EPISODES_FILE = str(tmp_path / "episodes.json")
    assert visualize.predict_episode(trained_cfg, 4).episode == sampler.episode(4)


def test_episode_out_of_range(trained_cfg):
    with pytest.raises(SystemExit, match=r"episodes 0\.\.5"):
        visualize.predict_episode(trained_cfg, 6)


def test_strips_show_rgb_frames_for_bgr_inputs(trained_cfg):
    rgb_dataset = build_dataset("egotoy", trained_cfg, "test")
    bgr_cfg = trained_cfg.clone()
    bgr_cfg.DATA.REVERSE_INPUT_CHANNEL = True
    bgr_dataset = build_dataset("egotoy", bgr_cfg, "test")
    assert torch.equal(bgr_dataset[0]["inputs"][0][0], rgb_dataset[0]["inputs"][0][2])
    np.testing.assert_array_equal(visualize.clip_strip(bgr_cfg, bgr_dataset, 0, 3),
                                  visualize.clip_strip(trained_cfg, rgb_dataset, 0, 3))
