"""State dicts of other code bases, converted to this project's parameter names and shapes.

`convert_state_dict` is called by `ego_fsar.utils.checkpoint` once it has read a file and taken the
state dict out of its container; it neither reads files nor touches models. Formats:

- "pytorch": names already ours (PySlowFast `.pyth`, VideoMAE `.pth`, our own checkpoints).
- "caffe2": PySlowFast's `.pkl` blobs (`{"blobs": {...}}` or the blobs themselves), numpy arrays
  renamed by PySlowFast's caffe2 -> PyTorch rules (`res4_5_branch2c_bn_s` ->
  `s4.pathway0_res5.branch2.c_bn.weight`); optimizer blobs (momentum, lr, iteration) are dropped.
- "clip": OpenAI CLIP's visual tower (`visual.conv1.weight`,
  `visual.transformer.resblocks.i.attn.in_proj_weight`, ...) renamed to the CLIPViT backbone's
  names; the text tower is dropped. Detected from `class_embedding` keys.
- "torchvision": an ImageNet ResNet (`layer1.0.conv1.weight`, ...) renamed to PySlowFast's ResNet
  names, to be inflated to 3D. Detected from `layer1.0.conv1.weight`.
- "egovlp": the EgoVLP authors' checkpoint (`module.video_model.*`, `module.vid_proj.0.*`,
  `module.txt_proj.1.*`, `module.text_model.*`) renamed to VideoText's names (flat backbone,
  `head.vid_proj.*`, `head.txt_proj.*`, `head.text.model.0.auto_model.*`). With MODEL.BACKBONE
  SpaceTimeViT (the release's video tower) the video keys load 1:1 (`temporal_embed` fitted to the
  model's frames); other towers, and the text tower (DistilBERT against MiniLM), do not agree in keys
  or shapes and are reported by the loader. Detected from `video_model.` keys.

Then the names are fitted to the model: a prefix the model adds (e.g. `backbone.`) is found and
added, BN statistics go to sub-batch-norm layers, 2D conv kernels are inflated (repeated over time
and divided by T, as PySlowFast) when `inflate` is set, shapes that differ only by singleton
dimensions are reshaped, and position tables are interpolated to the model's token grid. Keys the
model lacks and shapes that still differ are returned as they are, for the caller's report.
"""
import logging
import re
from collections import Counter
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .position_tables import Grid, resize_pos_embed, resize_temporal_embed

logger = logging.getLogger(__name__)

CHECKPOINT_TYPES = ("pytorch", "caffe2", "clip", "torchvision", "egovlp")

Rule = Tuple[str, Union[str, Callable[[re.Match], str]]]

# Caffe2 blobs that hold optimizer state, not weights (PySlowFast skips them too).
_C2_OPTIMIZER_BLOBS = ("momentum", "lr", "model_iter")


def _c2_pathway_rules(c2_prefix: str, pathway: int) -> List[Rule]:
    """Stem and residual-block names of one pathway (`t_` marks SlowFast's fast pathway in caffe2)."""
    p = f"pathway{pathway}"
    rules: List[Rule] = [
        (rf"^{c2_prefix}res(\d+)_(\d+)_branch(\d+)([a-z])_(.*)", rf"s\1.{p}_res\2.branch\3.\4_\5"),
        (rf"^{c2_prefix}res_conv1_bn_(.*)", rf"s1.{p}_stem.bn.\1"),
    ]
    if pathway == 0:
        rules.append((r"^conv1_xy(.*)", rf"s1.{p}_stem.conv_xy\1"))
    return rules + [
        (rf"^{c2_prefix}conv1_(.*)", rf"s1.{p}_stem.conv.\1"),
        (rf"^{c2_prefix}res(\d+)_(\d+)_branch(\d+)_(.*)", rf"s\1.{p}_res\2.branch\3_\4"),
        (rf"^{c2_prefix}res_conv1_(.*)", rf"s1.{p}_stem.conv.\1"),
    ]


# PySlowFast's caffe2 -> PyTorch name rules, applied in order (slowfast/utils/c2_model_loading.py).
C2_RULES: List[Rule] = [
    # Non-local blocks: nonlocal_conv3_1_theta_w -> s3.pathway0_nonlocal1.conv_theta.weight.
    (r"^nonlocal_conv(\d+)_(\d+)_(.*)", r"s\1.pathway0_nonlocal\2_\3"),
    (r"^(.*)_nonlocal(\d+)_(theta|g|phi|out)(.*)", r"\1_nonlocal\2.conv_\3\4"),
    (r"^(.*)_nonlocal(\d+)_(bn)_(.*)", r"\1_nonlocal\2.\3.\4"),
    # Fast -> slow fusions: t_pool1_subsample_w -> s1_fuse.conv_f2s.weight.
    (r"^t_pool1_subsample_bn_(.*)", r"s1_fuse.bn.\1"),
    (r"^t_pool1_subsample_(.*)", r"s1_fuse.conv_f2s.\1"),
    (r"^t_res(\d+)_(\d+)_branch2c_bn_subsample_bn_(.*)", r"s\1_fuse.bn.\3"),
    (r"^t_res(\d+)_(\d+)_branch2c_bn_subsample_(.*)", r"s\1_fuse.conv_f2s.\3"),
    *_c2_pathway_rules("", 0),
    *_c2_pathway_rules("t_", 1),
    # Heads and squeeze-excitation.
    (r"pred_(.*)", r"head.projection.\1"),
    (r"(.*)b_bn_fc(.*)", r"\1se.fc\2"),
    (r"conv_5(.*)", r"head.conv_5\1"),
    (r"lin_5(.*)", r"head.lin_5\1"),
    # Parameter suffixes.
    (r"(.*)bn.b\Z", r"\1bn.bias"),
    (r"(.*)bn.s\Z", r"\1bn.weight"),
    (r"(.*)bn.rm\Z", r"\1bn.running_mean"),
    (r"(.*)bn.riv\Z", r"\1bn.running_var"),
    (r"(.*)[\._]b\Z", r"\1.bias"),
    (r"(.*)[\._]w\Z", r"\1.weight"),
]

# OpenAI CLIP visual tower (clip/model.py VisionTransformer) -> CLIPViT backbone.
CLIP_RULES: List[Rule] = [
    (r"^conv1\.", "patch_embed.proj."),
    (r"^class_embedding$", "cls_token"),
    (r"^positional_embedding$", "pos_embed"),
    (r"^ln_pre\.", "norm_pre."),
    (r"^ln_post\.", "norm."),
    (r"^transformer\.resblocks\.(\d+)\.", r"blocks.\1."),
    (r"\.attn\.in_proj_weight$", ".attn.qkv.weight"),
    (r"\.attn\.in_proj_bias$", ".attn.qkv.bias"),
    (r"\.attn\.out_proj\.", ".attn.proj."),
    (r"\.ln_1\.", ".norm1."),
    (r"\.ln_2\.", ".norm2."),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."),
    (r"\.mlp\.c_proj\.", ".mlp.fc2."),
]


def _tv_res(m: re.Match) -> str:
    """torchvision `layer{L}.{i}.` -> PySlowFast `s{L+1}.pathway0_res{i}.`."""
    return f"s{int(m[1]) + 1}.pathway0_res{m[2]}."


# torchvision ImageNet ResNet -> PySlowFast ResNet (conv{1,2,3} -> branch2.{a,b,c}).
TORCHVISION_RULES: List[Rule] = [
    (r"^conv1\.", "s1.pathway0_stem.conv."),
    (r"^bn1\.", "s1.pathway0_stem.bn."),
    (r"^layer(\d+)\.(\d+)\.conv(\d)\.", lambda m: f"{_tv_res(m)}branch2.{'abc'[int(m[3]) - 1]}."),
    (r"^layer(\d+)\.(\d+)\.bn(\d)\.", lambda m: f"{_tv_res(m)}branch2.{'abc'[int(m[3]) - 1]}_bn."),
    (r"^layer(\d+)\.(\d+)\.downsample\.0\.", lambda m: f"{_tv_res(m)}branch1."),
    (r"^layer(\d+)\.(\d+)\.downsample\.1\.", lambda m: f"{_tv_res(m)}branch1_bn."),
    (r"^fc\.", "head.projection."),
]

# EgoVLP (DistributedDataParallel's `module.` prefix removed) -> VideoText.
EGOVLP_RULES: List[Rule] = [
    (r"^module\.", ""),
    (r"^video_model\.", ""),
    (r"^vid_proj\.0\.", "head.vid_proj."),
    (r"^txt_proj\.1\.", "head.txt_proj."),
    (r"^text_model\.", "head.text.model.0.auto_model."),
]

_RULES: Dict[str, List[Rule]] = {"caffe2": C2_RULES, "clip": CLIP_RULES, "torchvision": TORCHVISION_RULES,
                                 "egovlp": EGOVLP_RULES}


def rename(name: str, rules: Sequence[Rule]) -> str:
    """Apply every `(pattern, replacement)` rule to `name`, in order."""
    for pattern, replacement in rules:
        name = re.sub(pattern, replacement, name)
    return name


def detect_format(state_dict: Mapping[str, Any], checkpoint_type: str = "pytorch") -> str:
    """The format of `state_dict`: `checkpoint_type`, or for "pytorch" the format its keys reveal."""
    if checkpoint_type not in CHECKPOINT_TYPES:
        raise ValueError(f"checkpoint type must be one of {CHECKPOINT_TYPES}, got {checkpoint_type!r}")
    if checkpoint_type != "pytorch":
        return checkpoint_type
    if "visual.class_embedding" in state_dict or {"class_embedding", "conv1.weight"} <= set(state_dict):
        return "clip"
    if {"conv1.weight", "layer1.0.conv1.weight"} <= set(state_dict):
        return "torchvision"
    if any(key.startswith(("video_model.", "module.video_model.")) for key in state_dict):
        return "egovlp"
    return "pytorch"


def apply_prefix_map(state_dict: Dict[str, Any], prefix_map: Sequence[Sequence[str]]) -> Dict[str, Any]:
    """Replace the first matching `old` prefix of each key by `new` (`[[old, new], ...]`); keys
    that match no prefix keep their names."""
    pairs = []
    for pair in prefix_map:
        if len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            raise ValueError(f"TRAIN.CHECKPOINT_PREFIX_MAP entries must be [old_prefix, new_prefix] pairs, got {pair!r}")
        pairs.append(tuple(pair))
    out = {}
    for key, value in state_dict.items():
        for old, new in pairs:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def _caffe2_tensors(blobs: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    blobs = blobs.get("blobs", blobs)
    return {
        key: torch.as_tensor(np.asarray(value))
        for key, value in blobs.items()
        if not any(word in key for word in _C2_OPTIMIZER_BLOBS)
    }


def _clip_visual(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """The visual tower of a full CLIP state dict (`visual.` stripped); visual-only dicts as they are."""
    if not any(key.startswith("visual.") for key in state_dict):
        return state_dict
    visual = {key[len("visual."):]: value for key, value in state_dict.items() if key.startswith("visual.")}
    logger.info("CLIP checkpoint: %d visual-tower tensors kept, %d text-tower tensors not used",
                len(visual), len(state_dict) - len(visual))
    return visual


def _align_prefix(state_dict: Dict[str, Any], model_keys: Sequence[str]) -> Dict[str, Any]:
    """Add the prefix under which the model holds most of the checkpoint's keys (e.g. `backbone.`),
    when that matches more keys than the names as they are."""
    model_keys = set(model_keys)
    prefixes_of: Dict[str, List[str]] = {}
    for key in model_keys:
        for i, char in enumerate(key):
            if char == ".":
                prefixes_of.setdefault(key[i + 1:], []).append(key[: i + 1])
    votes = Counter(p for key in state_dict if key not in model_keys for p in prefixes_of.get(key, ()))
    if not votes:
        return state_dict
    ranked = votes.most_common(2)
    prefix, count = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == count:
        logger.warning("checkpoint keys fit the model under several prefixes (%s, %s, ...): none added; "
                       "choose one with TRAIN.CHECKPOINT_PREFIX_MAP", prefix, ranked[1][0])
        return state_dict
    if count <= sum(key in model_keys for key in state_dict):
        return state_dict
    return {prefix + k if prefix + k in model_keys and k not in model_keys else k: v for k, v in state_dict.items()}


def _to_sub_bn(state_dict: Dict[str, Any], model_state: Mapping[str, torch.Tensor]) -> None:
    """Plain BN statistics `x_bn.running_mean` -> sub-BN `x_bn.split_bn.*` (tiled over the splits)
    and `x_bn.bn.*`, in place (PySlowFast's `c2_normal_to_sub_bn` / `normal_to_sub_bn`)."""
    for key, target in model_state.items():
        if ".split_bn." not in key or key in state_dict:
            continue
        plain = key.replace(".split_bn.", ".")
        if plain not in state_dict:
            continue
        value = state_dict.pop(plain)
        state_dict[key.replace(".split_bn.", ".bn.")] = value
        reps = target.numel() // max(value.numel(), 1)
        state_dict[key] = value.repeat(reps) if value.dim() == 1 and reps > 1 else value


def inflate_conv(weight: torch.Tensor, time: int) -> torch.Tensor:
    """2D kernel `[O, I, h, w]` -> 3D `[O, I, time, h, w]`, repeated over time and divided by `time`."""
    return weight.unsqueeze(2).repeat(1, 1, time, 1, 1) / time


def _only_singletons_differ(a: Sequence[int], b: Sequence[int]) -> bool:
    return [d for d in a if d != 1] == [d for d in b if d != 1]


def _fit(key: str, value: torch.Tensor, target: torch.Tensor, inflate: bool, grid: Optional[Grid]) -> torch.Tensor:
    """`value` reshaped, inflated or interpolated to `target`'s shape where a rule applies."""
    if value.shape != target.shape:
        if (inflate and value.dim() == 4 and target.dim() == 5
                and value.shape[:2] == target.shape[:2] and value.shape[2:] == target.shape[3:]):
            value = inflate_conv(value, target.shape[2])
        elif _only_singletons_differ(value.shape, target.shape):
            value = value.reshape(target.shape)
        elif key.rsplit(".", 1)[-1] == "pos_embed":
            value = resize_pos_embed(value, target.shape, grid)
        elif key.rsplit(".", 1)[-1] == "temporal_embed" and value.dim() == target.dim() == 3:
            value = resize_temporal_embed(value, target.shape[1])
    if value.is_floating_point() and target.is_floating_point():
        value = value.to(target.dtype)
    return value


def convert_state_dict(
    state_dict: Dict[str, Any],
    model_state: Mapping[str, torch.Tensor],
    checkpoint_type: str = "pytorch",
    inflate: bool = False,
    prefix_map: Sequence[Sequence[str]] = (),
    grids: Optional[Mapping[str, Grid]] = None,
) -> Dict[str, torch.Tensor]:
    """Convert a checkpoint's state dict to the names and shapes of `model_state`.

    Args:
        state_dict: tensors (numpy arrays for caffe2) by the checkpoint's names.
        model_state: the model's `state_dict()` (flat checkpoint names).
        checkpoint_type: one of CHECKPOINT_TYPES; "pytorch" also detects CLIP and torchvision.
        inflate: inflate 2D conv kernels where the model has 3D ones (TRAIN.CHECKPOINT_INFLATE).
        prefix_map: `[[old, new], ...]` key-prefix substitutions, applied first.
        grids: token grid (T', H', W') of the model's position tables by key (`position_grids`);
            needed to interpolate video tables `[1, N, D]`.
    Returns:
        tensors keyed like `model_state` where the checkpoint has them; other keys unchanged.
    """
    state = _caffe2_tensors(state_dict) if checkpoint_type == "caffe2" else dict(state_dict)
    state = apply_prefix_map(state, prefix_map)
    source = detect_format(state, checkpoint_type)
    if source == "clip":
        state = _clip_visual(state)
    if source in _RULES:
        state = {rename(key, _RULES[source]): value for key, value in state.items()}
    state = _align_prefix(state, list(model_state))
    _to_sub_bn(state, model_state)
    grids = grids or {}
    return {
        key: _fit(key, value, model_state[key], inflate, grids.get(key)) if key in model_state else value
        for key, value in state.items()
    }
