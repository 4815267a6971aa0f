"""SUM-L end to end on the tiny EgoToy and its exo twin: training, alignment losses, ego-only testing."""
import json
import os
import pickle

import pytest
import torch

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.utils import collate_skipping
from ego_fsar.engine import trainer
from ego_fsar.engine.tester import test as run_test
from ego_fsar.models import build_model
from ego_fsar.models.losses import build_loss
from ego_fsar.utils.logging import LOG_FILE
from tests.engine.test_train import tiny_train_cfg
from tests.suml import make_exo_root, suml_data_cfg


@pytest.fixture(scope="module")
def exo_root(egotoy_root, tmp_path_factory):
    return make_exo_root(egotoy_root, str(tmp_path_factory.mktemp("suml_train") / "egotoy"))


def _suml_cfg(cfg, root, out_dir):
    cfg = suml_data_cfg(tiny_train_cfg(cfg, out_dir, arch="slowfast"), root, out_dir)
    cfg.MODEL.MODEL_NAME = "SUML"
    cfg.SOLVER.OPTIMIZING_METHOD, cfg.SOLVER.BASE_LR = "adamw", 0.002
    cfg.LOSS.WEIGHTS = [["exo", 0.1], ["cross_view", 0.02], ["align_ego", 0.1], ["align_exo", 0.1]]
    cfg.TEST.DATASET, cfg.TEST.SPLIT, cfg.TEST.PROTOCOL = "EgoToy", "val", "multiview"
    return cfg


def test_alignment_losses_fall_on_a_fixed_batch(cfg, exo_root, tmp_path):
    cfg = _suml_cfg(cfg, exo_root, tmp_path)
    torch.manual_seed(0)
    data = build_dataset("SUMLPairs", cfg, "train")
    batch = collate_skipping([data[i] for i in range(4)])
    model = build_model(cfg).train()
    criterion = build_loss(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.003)
    history = []
    for _ in range(8):
        outputs = model(batch["inputs"], **{k: batch[k] for k in model.BATCH_INPUTS})
        loss, parts = criterion(outputs, batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(parts)
    assert {"loss_cls", "loss_exo", "loss_align_ego", "loss_align_exo", "loss_cross_view"} <= set(history[0])
    for name in ("loss_align_ego", "loss_align_exo", "loss_cross_view"):
        assert history[-1][name] < history[0][name], (name, [h[name] for h in history])


def test_train_then_ego_only_test(cfg, exo_root, tmp_path):
    cfg = _suml_cfg(cfg, exo_root, tmp_path)
    trainer.train(cfg)
    with open(os.path.join(tmp_path, "json_stats.log")) as f:
        types = {json.loads(line)["_type"] for line in f}
    assert {"train_epoch", "val_epoch"} <= types
    cfg.TRAIN.ENABLE = False  # a test-only job: the model is the ego path alone
    stats = run_test(cfg)
    assert stats["videos_evaluated"] == build_dataset("EgoToy", cfg, "val").num_clips
    with open(os.path.join(tmp_path, LOG_FILE)) as f:
        test_log = f.read().split("Testing ")[-1]
    assert "0 missing" in test_log and "global_con_head.fpv_global_proj" in test_log
    assert test_log.count("unexpected keys") == 1


def test_verb_noun_heads_give_epic_metrics_and_saved_results(cfg, exo_root, tmp_path):
    cfg = _suml_cfg(cfg, exo_root, tmp_path)
    cfg.MODEL.NUM_CLASSES = [10, 10]  # the tiny EgoToy's verb (action) and noun (digit) classes
    cfg.SOLVER.MAX_EPOCH = 1
    cfg.TEST.SAVE_RESULTS_PATH = "results.pkl"
    trainer.train(cfg)
    stats = run_test(cfg)
    assert {"verb_top1_acc", "noun_top1_acc", "action_top1_acc", "action_top5_acc"} <= set(stats)
    with open(os.path.join(tmp_path, "results.pkl"), "rb") as f:
        scores, labels = pickle.load(f)
    assert set(scores) == {"verb", "noun"} and scores["verb"].shape == (stats["videos_evaluated"], 10)
    with open(os.path.join(tmp_path, "results_per_class.json")) as f:
        per_class = json.load(f)
    assert set(per_class) == {"verb", "noun"}
    assert sum(c["videos"] for c in per_class["verb"].values()) == stats["videos_evaluated"]
