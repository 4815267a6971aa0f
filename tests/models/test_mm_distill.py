"""MM-CDFSL stage 2: teachers built from the config (no file read by build_model), loaded strictly from
stage-1 checkpoints when training starts, one shared mask, gradients for the student and translators
only, Lightning-style checkpoints."""
import pytest
import torch

from ego_fsar.models import build_model
from ego_fsar.models.optimizer import construct_optimizer
from ego_fsar.utils import checkpoint as cu
from tests.models.test_masked_pretrain import tiny_vit_cfg

# modality: (channels, patch, frame size): every modality gives the same 2 x 4 x 4 token grid.
MODALITIES = {"rgb": (3, 8, 32), "flow": (2, 8, 32), "pose": (5, 2, 8)}


def write_stage1(tmp_path, name, seed):
    torch.manual_seed(seed)
    model = build_model(tiny_vit_cfg(name, *MODALITIES[name]))
    path = str(tmp_path / f"{name}.pyth")
    torch.save({"model_state": model.state_dict(), "epoch": 3}, path)
    return path


@pytest.fixture
def distill_cfg(tmp_path):
    cfg = tiny_vit_cfg()
    cfg.MODEL.MODEL_NAME = "MultimodalDistill"
    cfg.DATA.MODALITIES = ["rgb", "flow", "pose"]
    cfg.DATA.POSE_SIZE, cfg.DATA.POSE_KEYPOINTS = 8, 5
    cfg.DISTILL.TEACHERS = [[name, write_stage1(tmp_path, name, seed)] for seed, name in enumerate(MODALITIES)]
    cfg.SOLVER.BASE_LR = 0.1
    return cfg


def batch(n=2):
    return {name: [torch.randn(n, c, 4, s, s)] for name, (c, _, s) in MODALITIES.items()}


def pretrained(cfg):
    model = build_model(cfg)
    model.load_pretrained()
    return model


def test_student_and_translators_train_teachers_stay_frozen(distill_cfg):
    model = pretrained(distill_cfg)
    stage1 = torch.load(distill_cfg.DISTILL.TEACHERS[0][1])["model_state"]
    torch.testing.assert_close(model.student_rgb.state_dict()["encoder.blocks.0.attn.qkv.weight"],
                               stage1["encoder.blocks.0.attn.qkv.weight"])
    teachers = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("teacher_")}
    student = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("teacher_")}
    optimizer = construct_optimizer(model, distill_cfg)
    model.train()
    assert all(not t.training for t in model.teachers().values()) and model.student_rgb.training
    modalities = batch()
    out = model(modalities["rgb"], modalities=modalities)
    assert sorted(out) == ["loss_distill_flow", "loss_distill_pose", "loss_distill_rgb"]
    sum(out.values()).backward()
    optimizer.step()
    frozen = {id(p) for t in model.teachers().values() for p in t.parameters()}
    assert all(p.grad is None for t in model.teachers().values() for p in t.parameters())
    assert not frozen & {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not frozen & {id(p) for p in optimizer.state}
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in teachers.items())  # bit-identical
    changed = {k.split(".")[0] for k, v in student.items() if not torch.equal(after[k], v)}
    assert changed == {"student_rgb", "cmt"}


def test_one_mask_is_shared_by_every_modality(distill_cfg, monkeypatch):
    model = pretrained(distill_cfg).eval()
    seen = []
    for part in [model.student_rgb, *model.teachers().values()]:
        monkeypatch.setattr(part, "forward", lambda inputs, mask, f=part.forward: seen.append(mask) or f(inputs, mask))
    modalities = batch(3)
    model(modalities["rgb"], modalities=modalities)
    assert len(seen) == 4 and all(torch.equal(m, seen[0]) for m in seen)
    assert seen[0].view(3, 2, 16).sum(2).eq(12).all()


def test_teachers_are_built_from_the_config_without_reading_files(distill_cfg, tmp_path):
    distill_cfg.DISTILL.TEACHERS = [[m, str(tmp_path / f"absent_{m}.pyth")] for m in MODALITIES]
    model = build_model(distill_cfg)  # no file is read
    stage1 = {m: torch.load(str(tmp_path / f"{m}.pyth"))["model_state"] for m in MODALITIES}
    for name, teacher in model.teachers().items():
        shapes = {k: v.shape for k, v in teacher.state_dict().items()}
        assert shapes == {k: stage1[name][k].shape for k in shapes}  # channels and patch size of each modality
    with pytest.raises(cu.CheckpointError, match=r"DISTILL.TEACHERS 'rgb'.*no checkpoint file .*absent_rgb\.pyth"):
        model.load_pretrained()


def test_missing_or_unfit_teacher_checkpoint_names_file_and_keys(distill_cfg, tmp_path):
    distill_cfg.DISTILL.TEACHERS[1][1] = str(tmp_path / "absent.pyth")
    with pytest.raises(cu.CheckpointError, match=r"DISTILL.TEACHERS 'flow'.*absent\.pyth"):
        pretrained(distill_cfg)
    state = torch.load(str(tmp_path / "pose.pyth"))["model_state"]
    del state["encoder.blocks.1.mlp.fc2.weight"]
    torch.save({"model_state": state}, str(tmp_path / "bad.pyth"))
    distill_cfg.DISTILL.TEACHERS[1][1] = str(tmp_path / "flow.pyth")
    distill_cfg.DISTILL.TEACHERS[2][1] = str(tmp_path / "bad.pyth")
    with pytest.raises(cu.CheckpointError, match=r"DISTILL.TEACHERS 'pose'.*bad\.pyth.*blocks\.1\.mlp\.fc2\.weight"):
        pretrained(distill_cfg)


def lightning_names(key: str) -> str:
    """MM-CDFSL's Lightning name of a MultimodalDistill key (fc_norm beside, not inside, `encoder`)."""
    return "_forward_module." + key.replace(".encoder.fc_norm.", ".fc_norm.")


def test_lightning_stage2_checkpoint_round_trips(distill_cfg, tmp_path):
    torch.manual_seed(5)
    source = build_model(distill_cfg)
    for p in source.parameters():
        p.data.normal_()
    state = {lightning_names(k): v for k, v in source.state_dict().items()}
    state["_forward_module.student_rgb.head_action.weight"] = torch.zeros(4, 32)  # MM-CDFSL's unused head
    path = str(tmp_path / "lightning.ckpt")
    torch.save({"module": state}, path)
    prefix_map = [[f"_forward_module.{m}.fc_norm.", f"{m}.encoder.fc_norm."]
                  for m in ("student_rgb", "teacher_rgb", "teacher_flow", "teacher_pose")]
    distill_cfg.TRAIN.CHECKPOINT_PREFIX_MAP = prefix_map + [["_forward_module.", ""]]
    target = build_model(distill_cfg)
    cu.load_checkpoint(path, target, strict=True, prefix_map=[tuple(p) for p in distill_cfg.TRAIN.CHECKPOINT_PREFIX_MAP])
    loaded = target.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    assert any(k.startswith("student_rgb.encoder.blocks") for k in loaded)
