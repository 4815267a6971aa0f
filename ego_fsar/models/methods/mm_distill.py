"""MM-CDFSL stage 2 (Hatano et al., ECCV 2024): multimodal distillation into an RGB student.

On unlabelled target clips (batches without labels, `modalities` {name: pathways} of DATA.MODALITIES),
one tube mask of MASK.RATIO (0.75) per clip is shared by all modalities. Each encoder's feature is the
LayerNorm (`fc_norm`) of the mean of its visible tokens. Frozen teachers, one per DISTILL.TEACHERS entry
[modality, stage-1 checkpoint] (MM-CDFSL: the RGB model as it was at the start, flow and pose), give the
targets; the cross-modal translation module `cmt` maps the student's feature through one MLP per
teacher (D -> D, ReLU, D), and `loss_distill_<modality>` is the MSE to that teacher's feature (their sum
is the loss). Only the student and the translators have gradients: the teachers' parameters have
`requires_grad` False (no optimizer state) and they stay in eval mode.

Every encoder is built from the config, so `build_model` reads no file: a teacher's input channels are
its modality's (RGB DATA.INPUT_CHANNEL_NUM[0], flow 2, pose DATA.POSE_KEYPOINTS) and its patch size gives
the student's token grid (rgb, flow: VIT.PATCH_SIZE at DATA.TRAIN_CROP_SIZE; pose: DATA.POSE_SIZE / the
grid side, 56 / 14 = 4). `load_pretrained()` reads the teachers' stage-1 checkpoints, strictly, and
starts the student `student_rgb` from the "rgb" one (`teacher_rgb` is its frozen copy); training calls it
on a fresh start, before any step (utils/checkpoint.py `load_train_checkpoint`; a resumed run's checkpoint
holds the teachers). A checkpoint that is missing or does not fit its encoder stops the run, naming the
modality, the file and the keys.

Names are those of MM-CDFSL's Lightning module (`student_rgb.encoder.*`, `teacher_flow.encoder.*`,
`cmt.mlp_to_flow.0.weight`; `fc_norm` inside `encoder`): its checkpoints load with
TRAIN.CHECKPOINT_PREFIX_MAP [["_forward_module.student_rgb.fc_norm.", "student_rgb.encoder.fc_norm."],
..., ["_forward_module.", ""]]. `backbone` is the student's encoder (few-shot tests use it).
"""
import copy
import os
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ego_fsar.utils import checkpoint as cu

from ..backbones.masking import TubeMaskGenerator
from ..build import MODEL_REGISTRY, build_backbone


class MaskedEncoder(nn.Module):
    """A VideoViT as `encoder` (stage-1 names): `forward(inputs, mask) -> fc_norm(mean of visible tokens)` [B, D]."""

    def __init__(self, cfg):
        super().__init__()
        self.encoder = build_backbone(cfg, "VideoViT")

    def forward(self, inputs: List[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs, mask).pooled


class CrossModalTranslation(nn.Module):
    """`mlp_to_<modality>`: Linear(D, D), ReLU, Linear(D, D) per teacher modality."""

    def __init__(self, dim: int, modalities: Sequence[str]):
        super().__init__()
        self.modalities = list(modalities)
        for name in self.modalities:
            setattr(self, f"mlp_to_{name}", nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim)))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, f"mlp_to_{name}")(x) for name in self.modalities}


def _teacher_entries(cfg) -> List[Tuple[str, str]]:
    entries = [tuple(e) for e in cfg.DISTILL.TEACHERS]
    bad = [e for e in entries if len(e) != 2 or e[0] not in cfg.DATA.MODALITIES]
    names = [e[0] for e in entries]
    if bad or not entries or len(set(names)) != len(names) or "rgb" not in names:
        raise ValueError(f"DISTILL.TEACHERS must be distinct [modality, checkpoint] pairs with modalities of "
                         f"DATA.MODALITIES {list(cfg.DATA.MODALITIES)}, one of them 'rgb' (it also initialises the "
                         f"student), got {cfg.DISTILL.TEACHERS}")
    return entries


def _teacher_cfg(cfg, modality: str):
    """The config of `modality`'s encoder: its channels, and the patch size that gives the student's
    token grid on its frames."""
    side = cfg.DATA.TRAIN_CROP_SIZE
    if side % cfg.VIT.PATCH_SIZE:
        raise ValueError(f"DATA.TRAIN_CROP_SIZE {side} must be a multiple of VIT.PATCH_SIZE {cfg.VIT.PATCH_SIZE}")
    grid_side = side // cfg.VIT.PATCH_SIZE
    channels = {"rgb": cfg.DATA.INPUT_CHANNEL_NUM[0], "flow": 2, "pose": cfg.DATA.POSE_KEYPOINTS}
    frames = cfg.DATA.POSE_SIZE if modality == "pose" else side
    if modality not in channels or frames % grid_side:
        raise ValueError(f"DISTILL.TEACHERS {modality!r}: a teacher is one of {sorted(channels)} whose frames "
                         f"({frames} px) split into the student's {grid_side} x {grid_side} patches "
                         f"(DATA.TRAIN_CROP_SIZE / VIT.PATCH_SIZE; pose: DATA.POSE_SIZE)")
    teacher_cfg = cfg.clone()
    teacher_cfg.DATA.INPUT_CHANNEL_NUM = [channels[modality]]
    teacher_cfg.VIT.PATCH_SIZE = frames // grid_side
    teacher_cfg.DATA.TRAIN_CROP_SIZE = frames
    return teacher_cfg


def _load_teacher(teacher: "MaskedEncoder", modality: str, path: str, prefix_map) -> None:
    """Load `path` into `teacher` strictly: every encoder weight must be in it, with its shape."""
    if not os.path.isfile(path):
        raise cu.CheckpointError(f"DISTILL.TEACHERS {modality!r}: no checkpoint file {path} (a stage-1 "
                                 f"MaskedVideoPretrain checkpoint of this modality)")
    try:
        cu.load_checkpoint(path, teacher, strict=True, prefix_map=prefix_map)
    except (cu.CheckpointError, OSError) as err:
        raise cu.CheckpointError(f"DISTILL.TEACHERS {modality!r}: {path}: {err}") from err


@MODEL_REGISTRY.register()
class MultimodalDistill(nn.Module):
    """`forward(inputs, modalities)` -> {"loss_distill_<modality>": MSE} per teacher; see the module docstring."""

    BATCH_INPUTS = ("modalities",)

    def __init__(self, cfg):
        super().__init__()
        entries = _teacher_entries(cfg)
        self.student_rgb = MaskedEncoder(cfg)
        for name, _ in entries:
            teacher = copy.deepcopy(self.student_rgb) if name == "rgb" else MaskedEncoder(_teacher_cfg(cfg, name))
            setattr(self, f"teacher_{name}", teacher.requires_grad_(False).eval())
        self.teacher_files = dict(entries)
        self.prefix_map = [tuple(p) for p in cfg.TRAIN.CHECKPOINT_PREFIX_MAP]
        self.teacher_names = [name for name, _ in entries]
        self.cmt = CrossModalTranslation(self.student_rgb.encoder.out_dim, self.teacher_names)
        self.masks = TubeMaskGenerator.from_cfg(cfg)

    @property
    def backbone(self) -> nn.Module:
        return self.student_rgb.encoder

    @torch.no_grad()
    def load_pretrained(self) -> None:
        """Load every teacher from its DISTILL.TEACHERS checkpoint (strict) and start the student from
        the "rgb" one; raises CheckpointError naming the modality, the file and the keys."""
        for name, teacher in self.teachers().items():
            _load_teacher(teacher, name, self.teacher_files[name], self.prefix_map)
        self.student_rgb.load_state_dict(self.teacher_rgb.state_dict())

    def teachers(self) -> Dict[str, MaskedEncoder]:
        return {name: getattr(self, f"teacher_{name}") for name in self.teacher_names}

    def train(self, mode: bool = True) -> "MultimodalDistill":
        """Train the student and translators; the teachers stay in eval mode."""
        super().train(mode)
        for teacher in self.teachers().values():
            teacher.eval()
        return self

    def forward(self, inputs: List[torch.Tensor], modalities: Dict[str, List[torch.Tensor]]) -> Dict[str, torch.Tensor]:
        missing = [name for name in ["rgb", *self.teacher_names] if name not in modalities]
        if missing:
            raise KeyError(f"MultimodalDistill needs modalities {missing} in the batch (DATA.MODALITIES)")
        rgb = modalities["rgb"]
        grid = self.backbone.token_grid(rgb)
        mask = self.masks(rgb[0].shape[0], grid).to(rgb[0].device)
        translated = self.cmt(self.student_rgb(rgb, mask))
        out = {}
        for name, teacher in self.teachers().items():
            if teacher.encoder.token_grid(modalities[name]) != grid:
                raise ValueError(f"modality {name!r} gives a token grid {teacher.encoder.token_grid(modalities[name])}, "
                                 f"the student's is {grid}: one tube mask must fit every modality (pose: "
                                 f"DATA.POSE_SIZE / patch = DATA.TRAIN_CROP_SIZE / VIT.PATCH_SIZE)")
            with torch.no_grad():
                target = teacher(modalities[name], mask)
            out[f"loss_distill_{name}"] = F.mse_loss(translated[name].float(), target.float())
        return out
