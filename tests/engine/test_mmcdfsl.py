"""MM-CDFSL end to end on a tiny EgoToy with an unlabelled target pool: stage 1 per modality, stage 2
distillation on unlabelled clips, and the masked-ensemble few-shot test."""
import numpy as np
import pytest
import torch

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.egotoy_writer import make_egotoy
from ego_fsar.datasets.egotoy_unlabelled import write_unlabelled_pool
from ego_fsar.engine import trainer
from ego_fsar.engine.episode_runner import run_episodes
from ego_fsar.engine.episodic_validation import pool_labels
from ego_fsar.features.extract import backbone_views
from ego_fsar.engine.tester import test as run_test
from ego_fsar.datasets.episodes import Episode, episodes_for_cfg
from ego_fsar.models import BackboneOutput, build_head
from ego_fsar.utils import checkpoint as cu
from tests.egotoy import TINY, egotoy_cfg

# modality: (channels, ViT patch) at 32 px (pose: 8 px heatmaps of EgoToy's 5 keypoints).
MODALITIES = {"rgb": (3, 8), "flow": (2, 8), "pose": (5, 2)}


@pytest.fixture(scope="module")
def pool_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("egotoy_pool") / "egotoy")
    make_egotoy(root, seed=0, **TINY)
    tiny = {k: v for k, v in TINY.items() if k not in ("clips_per_video",)}
    assert write_unlabelled_pool(root, seed=0, clips_per_class=2, **tiny) == 2 * 6
    return root


def vit_cfg(root, out_dir, modality="rgb"):
    cfg = egotoy_cfg(root)
    cfg.OUTPUT_DIR = str(out_dir)
    cfg.NUM_GPUS = 0
    cfg.LOG_MODEL_INFO = False
    cfg.DATA.MODALITIES = [modality]
    cfg.DATA.INPUT_CHANNEL_NUM = [MODALITIES[modality][0]]
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 32], 32, 32
    cfg.DATA.POSE_SIZE, cfg.DATA.FLOW_MEAN, cfg.DATA.FLOW_STD = 8, [0.0, 0.0], [1.5, 1.5]
    cfg.DATA.POSE_KEYPOINTS = MODALITIES["pose"][0]
    cfg.MODEL.ARCH = "vit"
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = 32, 1, 2, MODALITIES[modality][1]
    cfg.VIT.ENCODER_NORM = True
    cfg.MASK.DECODER_DIM, cfg.MASK.DECODER_DEPTH, cfg.MASK.DECODER_NUM_HEADS = 16, 1, 2
    cfg.SOLVER.MAX_EPOCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.OPTIMIZING_METHOD = 1, 1e-3, "adamw"
    cfg.SOLVER.WARMUP_EPOCHS = 0.0
    cfg.TRAIN.CHECKPOINT_PERIOD, cfg.LOG_PERIOD = 1, 1
    cfg.TEST.PROTOCOL, cfg.TEST.SPLIT, cfg.HEAD.NAME = "episodic", "test", "LogReg"
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY, cfg.FEW_SHOT.TEST_EPISODES = 2, 1, 2, 4
    return cfg


def stage1(root, out_dir, modality):
    cfg = vit_cfg(root, out_dir, modality)
    cfg.MODEL.MODEL_NAME = "MaskedVideoPretrain"
    cfg.TRAIN.DATASET = "EgoToyWithTarget"
    cfg.DATA.UNLABELLED_SPLIT = "unlabelled"
    cfg.MASK.RATIO = 0.75
    cfg.LOSS.WEIGHTS = [["cls", 0.05]]
    trainer.train(cfg)
    return cfg, cu.get_last_checkpoint(str(out_dir))


def test_unlabelled_pool_datasets(pool_root, tmp_path):
    cfg = vit_cfg(pool_root, tmp_path)
    cfg.DATA.UNLABELLED_SPLIT = "unlabelled"
    unlabelled = build_dataset("EgoToyUnlabelled", cfg, "unlabelled")
    assert len(unlabelled) == 12 and "label" not in unlabelled[0]
    paired = build_dataset("EgoToyWithTarget", cfg, "val")
    item = paired[1]
    assert item["label"] == paired.labels[1] and item["target_inputs"][0].shape == (3, 4, 32, 32)
    assert torch.equal(item["target_inputs"][0], unlabelled[1]["inputs"][0])


def distill_cfg(root, out_dir, teachers):
    cfg = vit_cfg(root, out_dir)
    cfg.MODEL.MODEL_NAME = "MultimodalDistill"
    cfg.TRAIN.DATASET, cfg.DATA.TRAIN_SPLIT, cfg.TRAIN.EVAL_PERIOD = "EgoToyUnlabelled", "unlabelled", 0
    cfg.DATA.MODALITIES = list(MODALITIES)
    cfg.DISTILL.TEACHERS = [[m, teachers[m]] for m in MODALITIES]
    cfg.TEST.NUM_MASKED_VIEWS = 2
    return cfg


def test_both_stages_and_the_masked_test(pool_root, tmp_path):
    checkpoints = {m: stage1(pool_root, tmp_path / m, m)[1] for m in MODALITIES}
    cfg = distill_cfg(pool_root, tmp_path / "distill", checkpoints)
    # model selection: masked LogReg episodes on half of each test class, the test on the other half
    cfg.TRAIN.VAL_PROTOCOL, cfg.TRAIN.EVAL_PERIOD, cfg.DATA.VAL_SPLIT = "episodic", 1, "test"
    cfg.FEW_SHOT.VAL_POOL_FRACTION, cfg.FEW_SHOT.VAL_EPISODES = 0.5, 3
    model = trainer.train(cfg)
    before = torch.load(checkpoints["flow"], weights_only=False)["model_state"]
    assert all(torch.equal(model.teacher_flow.state_dict()[k], v) for k, v in before.items()
               if k in model.teacher_flow.state_dict())
    best = cu.read_best_metric(cu.get_best_checkpoint_path(cfg.OUTPUT_DIR))
    assert best["name"] == "top1_err" and 0.0 <= best["value"] <= 100.0
    summary = run_test(cfg)  # the stage-2 checkpoint holds the teachers: no teacher file is read
    assert summary["episodes"] == 4 and 0.0 <= summary["acc"] <= 100.0


def test_a_missing_teacher_stops_training_before_the_first_step(pool_root, tmp_path, monkeypatch):
    teachers = {m: str(tmp_path / f"{m}.pyth") for m in MODALITIES}
    cfg = distill_cfg(pool_root, tmp_path / "distill", teachers)
    monkeypatch.setattr(trainer, "train_epoch", lambda *a, **k: pytest.fail("a training step ran"))
    with pytest.raises(cu.CheckpointError, match=r"DISTILL.TEACHERS 'rgb': no checkpoint file .*rgb\.pyth"):
        trainer.train(cfg)
    assert cu.get_last_checkpoint(cfg.OUTPUT_DIR) is None


def test_validation_pool_is_disjoint_from_the_test_episodes(pool_root, tmp_path):
    cfg = vit_cfg(pool_root, tmp_path)
    cfg.DATA.VAL_SPLIT = cfg.TEST.SPLIT = "test"
    labels = build_dataset("EgoToy", cfg, "test").labels
    cfg.FEW_SHOT.VAL_POOL_FRACTION = 0.5
    val, test = pool_labels(cfg, labels, "val"), pool_labels(cfg, labels, "test")
    assert np.array_equal(np.where(val >= 0, val, test), labels) and not ((val >= 0) & (test >= 0)).any()
    assert all((val == c).sum() == (test == c).sum() == 3 for c in set(labels))  # half of each class's 6 clips
    val_clips = {i for ep in episodes_for_cfg(cfg, val, 20) for i in (*ep.support, *ep.query)}
    test_clips = {i for ep in episodes_for_cfg(cfg, test, 20) for i in (*ep.support, *ep.query)}
    assert val_clips and test_clips and not val_clips & test_clips
    cfg.FEW_SHOT.VAL_POOL_FRACTION = 0.0  # the reference's selection: validation episodes are the test episodes
    assert np.array_equal(pool_labels(cfg, labels, "val"), labels)
    assert episodes_for_cfg(cfg, pool_labels(cfg, labels, "val"), 4) == episodes_for_cfg(cfg, labels, 4)


class Features(torch.nn.Module):
    """A stand-in backbone: pooled = mean over the visible tokens' values (one token per position)."""

    def token_grid(self, inputs):
        return (1, 2, 4)

    def forward(self, inputs, mask=None):
        x = inputs[0].flatten(1)
        if mask is not None:
            x = x.masked_fill(mask, 0.0)
        return BackboneOutput(x, x[:, None])


def test_logreg_separable_features_and_masked_ensemble(cfg):
    cfg.HEAD.NAME = "LogReg"
    head = build_head(cfg, in_dim=8)
    g = torch.Generator().manual_seed(0)
    centres = 5 * torch.randn(3, 8, generator=g)
    labels = torch.arange(3).repeat(4)
    feats = centres[labels] + 0.1 * torch.randn(12, 8, generator=g)
    out = head(BackboneOutput(feats[:3], feats[:3, None]), labels[:3], BackboneOutput(feats[3:], feats[3:, None]), 3)
    assert out["logits"].argmax(1).eq(labels[3:]).all()  # 100% on separable features

    cfg.TEST.NUM_MASKED_VIEWS, cfg.MASK.RATIO = 2, 0.5
    inputs = [feats.view(12, 1, 1, 2, 4)]
    views = backbone_views(Features(), inputs, list(range(12)), cfg)
    assert len(views) == 2 and not torch.equal(views[0].pooled, views[1].pooled)  # distinct masks
    again = backbone_views(Features(), [inputs[0][5:7]], [5, 6], cfg)
    assert torch.equal(again[1].pooled, views[1].pooled[5:7])  # a clip's masks do not depend on its batch
    support, query = views[0].index(torch.arange(3)), [v.index(torch.arange(3, 12)) for v in views]
    ensemble = head(support, labels[:3], query, 3)["logits"].exp()
    singles = [head(support, labels[:3], q, 3)["logits"].exp() for q in query]
    torch.testing.assert_close(ensemble, (singles[0] + singles[1]) / 2)


def test_masked_views_need_a_head_that_averages_them(cfg):
    cfg.NUM_GPUS, cfg.TEST.NUM_MASKED_VIEWS = 0, 2
    cfg.HEAD.NAME = "ProtoNet"
    head = build_head(cfg, in_dim=8)
    episode = Episode(index=0, class_ids=[0, 1], support=[0, 1], query=[2, 3])
    with pytest.raises(ValueError, match="TEST.NUM_MASKED_VIEWS"):
        run_episodes(Features(), head, [], [episode], cfg)
