"""tools/benchmark.py fewshot with MM-CDFSL's masked inference: masked and unmasked rows side by side,
timed on the same episodes, their accuracies over the same frozen episodes (speeds are never checked)."""
import numpy as np

from ego_fsar.engine.episode_runner import run_episodes
from ego_fsar.engine.head_selection import fewshot_parts
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import episodes_for_cfg
from ego_fsar.models import build_model
from ego_fsar.utils.env import seed_everything
from tests.tools.test_benchmark import benchmark, parse_table
from tests.tools.tiny import tiny_cfg, write_cfg


def vit_cfg(root, out_dir):
    cfg = tiny_cfg(root, out_dir)
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH, cfg.MODEL.BACKBONE = "FewShot", "vit", "VideoViT"
    cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = 32
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = 16, 1, 2, 8
    cfg.HEAD.NAME, cfg.TEST.NUM_MASKED_VIEWS, cfg.MASK.RATIO = "LogReg", 2, 0.75
    cfg.TEST.ALLOW_UNTRAINED_HEAD = True
    return cfg


def test_masked_and_unmasked_inference_side_by_side(egotoy_root, tmp_path):
    cfg = vit_cfg(egotoy_root, str(tmp_path / "out"))
    text = benchmark.main(["fewshot", "--cfg", write_cfg(cfg, tmp_path / "vit.yaml"), "--uncached-episodes", "2"])
    section = text[text.index("masked vs unmasked"):]
    rows = {r["inference"]: r for r in parse_table(section)}
    assert list(rows) == ["masked 0.75, 2 query views", "unmasked"]
    assert all(r["episodes (acc)"] == "6" and float(r["s/episode"]) >= 0 for r in rows.values())
    # resident memory of each mode's own process: the whole process at its peak, and the run's share
    assert all(int(r["peak MiB"]) >= int(r["peak above start MiB"]) >= 0 for r in rows.values())
    assert all(int(r["peak MiB"]) > 50 for r in rows.values())  # a process that imported torch
    # the unmasked accuracy is the plain episodic test's on the same episodes
    plain = cfg.clone()
    plain.TEST.NUM_MASKED_VIEWS = 0
    seed_everything(plain.RNG_SEED)  # as the benchmark, so that the model has its random weights
    dataset = build_dataset("EgoToy", plain, "test")
    torch_model = build_model(plain)
    accs = np.asarray(run_episodes(*fewshot_parts(torch_model, plain), dataset,
                                   episodes_for_cfg(plain, dataset.labels), plain)) * 100
    assert rows["unmasked"]["acc %"].startswith(f"{accs.mean():.2f} ±")
    assert section.splitlines()[-1].startswith("unmasked / masked seconds per episode:")
