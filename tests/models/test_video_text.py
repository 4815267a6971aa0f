"""VideoText (EgoVLP dual encoder): EgoNCE output, frozen/trainable text tower, the zero-shot head, and the
global-batch similarity of a 2-process gloo run against one process holding the whole batch (with the
VideoMAE-style ViT and with EgoVLP's SpaceTimeViT as video tower)."""
import os

import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.models import build_model
from ego_fsar.models.losses import egonce_loss
from ego_fsar.utils import distributed as du
from ego_fsar.utils.launch import launch_job

B = 4  # global batch
TEXTS = ["#C C moves the one left then up", "#C C moves the two up then left", "#C C moves the one grow then up",
         "#C C moves the four right then down"]


def tiny_video_text_cfg(cache_dir: str = "", trainable: bool = False):
    """A 1-block 16-wide video ViT on 4x16x16 clips, frozen MiniLM, 8-d joint space."""
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH = "VideoText", "vit"
    cfg.DATA.INPUT_CHANNEL_NUM = [3]
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = 4, 16, 16
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = 16, 1, 2, 8
    cfg.EGOVLP.PROJ_DIM, cfg.EGOVLP.TEXT_TRAINABLE = 8, trainable
    cfg.EGOVLP.NUM_VERBS, cfg.EGOVLP.NUM_NOUNS = 5, 6
    cfg.TEXT.CACHE_DIR = cache_dir
    return cfg


def _batch():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(B, 3, 4, 16, 16, generator=g)
    verbs = torch.tensor([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 1, 0]]).float()
    nouns = torch.tensor([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]]).float()
    return video, verbs, nouns


def _model(cfg):
    torch.manual_seed(0)
    return build_model(cfg)


def _run(model, rows):
    """(loss, similarity, gradients by parameter name) of the model on batch rows `rows`."""
    video, verbs, nouns = _batch()
    model.zero_grad()
    out = model([video[rows]], [TEXTS[i] for i in rows], verbs[rows], nouns[rows])
    out["loss_egonce"].backward()
    sim = model.similarity([video[rows]], [TEXTS[i] for i in rows]).detach()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out["loss_egonce"].detach(), sim, grads


def two_process_half_batches(cfg):
    """Each rank runs its half of the batch; gradients are averaged over ranks as DDP does."""
    rank = du.get_rank()
    loss, sim, grads = _run(_model(cfg), list(range(rank * B // 2, (rank + 1) * B // 2)))
    names = sorted(grads)
    du.all_reduce([grads[n] for n in names])
    torch.save({"loss": loss, "sim": sim, "grads": grads}, os.path.join(cfg.OUTPUT_DIR, f"rank{rank}.pt"))


def test_loss_is_egonce_of_the_similarity(tmp_path):
    cfg = tiny_video_text_cfg(str(tmp_path))
    model = _model(cfg)
    video, verbs, nouns = _batch()
    out = model([video], TEXTS, verbs, nouns)
    sim = model.similarity([video], TEXTS)
    assert sim.shape == (B, B) and sim.abs().max() <= 1 + 1e-5
    assert out["loss_egonce"].item() == pytest.approx(egonce_loss(sim, verbs, nouns, 0.05).item(), rel=1e-5)
    assert not any(k.startswith("head.text.") for k in model.state_dict())  # frozen MiniLM stays out
    assert model.BATCH_INPUTS == ("text", "verb_multi_hot", "noun_multi_hot")


def test_negatives_join_the_batch(tmp_path):
    cfg = tiny_video_text_cfg(str(tmp_path))
    cfg.EGOVLP.NEG_WINDOW = 10.0
    model = _model(cfg)
    assert model.BATCH_INPUTS[-1] == "negative"
    video, verbs, nouns = _batch()
    negative = {"inputs": [video[2:]], "text": TEXTS[2:], "verb_multi_hot": verbs[2:], "noun_multi_hot": nouns[2:]}
    out = model([video[:2]], TEXTS[:2], verbs[:2], nouns[:2], negative=negative)
    whole = model([video], TEXTS, verbs, nouns)
    assert out["loss_egonce"].item() == pytest.approx(whole["loss_egonce"].item(), rel=1e-5)


def test_trainable_text_tower_gets_gradients(tmp_path):
    model = _model(tiny_video_text_cfg(str(tmp_path), trainable=True))
    _, _, grads = _run(model, list(range(B)))
    assert any(n.startswith("head.text.model.") for n in grads)
    assert any(k.startswith("head.text.model.") for k in model.state_dict())


def test_zero_shot_head_scores_class_names(tmp_path):
    cfg = tiny_video_text_cfg(str(tmp_path))
    cfg.HEAD.NAME = "TextZeroShot"
    cfg.TEXT.TEMPLATES = ["#C C moves it {}", "a glyph moving {}"]
    model = _model(cfg)
    head = model.fewshot_head
    features = model.backbone([_batch()[0]])
    names = ["left-then-up", "up-then-left", "grow-then-up"]
    logits = head(None, torch.zeros(0, dtype=torch.long), features, 3, class_text=names)["logits"]
    protos = torch.nn.functional.normalize(torch.stack(
        [model.encode_text([t.format(n) for n in names]) for t in cfg.TEXT.TEMPLATES]).mean(0), dim=-1)
    assert torch.allclose(logits, model.head.encode_video(features.pooled) @ protos.t() / 0.05, atol=1e-5)
    cfg.HEAD.NAME = "ProtoNet"
    assert _model(cfg).fewshot_head is None  # any other head is built on the video backbone


@pytest.mark.parametrize("backbone", ["VideoViT", "SpaceTimeViT"])
def test_global_batch_over_two_gloo_processes_equals_one_process(tmp_path, monkeypatch, backbone):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cfg = tiny_video_text_cfg(str(tmp_path / "text_cache"))
    cfg.MODEL.BACKBONE = backbone
    loss, sim, grads = _run(_model(cfg), list(range(B)))  # also fills the text cache the ranks read
    cfg.NUM_CPU_PROCS, cfg.OUTPUT_DIR = 2, str(tmp_path)
    launch_job(cfg, two_process_half_batches)
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
        assert torch.allclose(result["sim"], sim, atol=1e-6)
        assert sorted(result["grads"]) == sorted(grads)
        for name, grad in grads.items():
            assert torch.allclose(result["grads"][name], grad, atol=1e-6, rtol=1e-4), name
