"""Base of meta-architectures that own a backbone whose checkpoint names sit at the top level.

PySlowFast (`s1.pathway0_stem.conv.weight`, `head.projection.weight`) and VideoMAE
(`patch_embed.proj.weight`, `head.weight`) store backbone parameters without a prefix. Models here
keep the backbone as `self.backbone` (so heads and engines can reach it) but read and write state
dicts without the `backbone.` prefix, so those checkpoints load with zero missing/unexpected keys.
"""
from typing import Dict, Tuple

import torch
from torch import nn

_PREFIX = "backbone."


class FlatBackboneModel(nn.Module):
    """`nn.Module` with a `backbone` child whose state-dict keys carry no `backbone.` prefix.

    `HEAD_KEY_PREFIXES`: state-dict key prefixes of the task head (classification or few-shot), the
    part that initialising training from another task's checkpoint may re-initialise.
    `FIND_UNUSED_PARAMETERS`: True for a model some of whose trainable parameters get no gradient in a
    training step (DDP then searches the autograd graph for them every step; False: every trainable
    parameter is used, and DDP's bucketed all-reduce needs no search)."""

    HEAD_KEY_PREFIXES: Tuple[str, ...] = ("head.",)
    FIND_UNUSED_PARAMETERS: bool = False

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self._register_state_dict_hook(_strip_backbone_prefix)
        self.register_load_state_dict_pre_hook(_add_backbone_prefix)

    def own_names(self) -> set:
        """Top-level state-dict names that belong to the model itself, not its backbone."""
        names = set(self._parameters) | set(self._buffers) | set(self._modules)
        return names - {"backbone"}

    def flat_name(self, name: str) -> str:
        """Map a `named_parameters()` name to its state-dict (checkpoint) name."""
        return name[len(_PREFIX):] if name.startswith(_PREFIX) else name


def _strip_backbone_prefix(module: FlatBackboneModel, state_dict: Dict[str, torch.Tensor], prefix: str, _meta) -> None:
    """Drop the `backbone.` prefix and put backbone keys first (PySlowFast's key order)."""
    full = prefix + _PREFIX
    ours = [k for k in state_dict if k.startswith(prefix)]
    entries = [(k, state_dict.pop(k)) for k in ours]
    for key, value in entries:
        if key.startswith(full):
            state_dict[prefix + key[len(full):]] = value
    for key, value in entries:
        if not key.startswith(full):
            state_dict[key] = value


def _add_backbone_prefix(module: FlatBackboneModel, state_dict, prefix, *_args) -> None:
    own = module.own_names()
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        if rest.split(".", 1)[0] not in own and not rest.startswith(_PREFIX):
            state_dict[prefix + _PREFIX + rest] = state_dict.pop(key)
