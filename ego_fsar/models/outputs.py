"""The tensor contract between backbones and heads."""
from dataclasses import dataclass
from typing import List, Optional, Union

import torch


@dataclass
class BackboneOutput:
    """What every backbone returns.

    pooled: [B, D] clip embedding (classification, ProtoNet, logistic regression).
    frames: [B, T', D] per-frame (or per-tubelet) embeddings (OTAM, TRX, TAMT).
    hidden: optional list of token maps [B, T', S, D_l] from configured layers (EMP-Net).
    """

    pooled: torch.Tensor
    frames: torch.Tensor
    hidden: Optional[List[torch.Tensor]] = None

    def index(self, idx: torch.Tensor) -> "BackboneOutput":
        """Rows `idx` of every field (used to cut support/query sets out of a feature cache)."""
        hidden = None if self.hidden is None else [h[idx] for h in self.hidden]
        return BackboneOutput(self.pooled[idx], self.frames[idx], hidden)

    def to(self, device: Union[torch.device, str]) -> "BackboneOutput":
        hidden = None if self.hidden is None else [h.to(device) for h in self.hidden]
        return BackboneOutput(self.pooled.to(device), self.frames.to(device), hidden)

    @staticmethod
    def cat(outputs: List["BackboneOutput"]) -> "BackboneOutput":
        """Concatenate along the batch dimension."""
        hidden = None
        if outputs[0].hidden is not None:
            hidden = [torch.cat(hs) for hs in zip(*(o.hidden for o in outputs))]
        return BackboneOutput(
            torch.cat([o.pooled for o in outputs]), torch.cat([o.frames for o in outputs]), hidden
        )


# What a few-shot head takes as support or query: a BackboneOutput, or frame features [N, T, D].
ClipFeatures = Union[BackboneOutput, torch.Tensor]


def as_backbone_output(x: ClipFeatures) -> BackboneOutput:
    """Accept a BackboneOutput or a plain frame-feature tensor [N, T, D]."""
    if isinstance(x, BackboneOutput):
        return x
    if torch.is_tensor(x) and x.dim() == 3:
        return BackboneOutput(pooled=x.mean(1), frames=x)
    raise TypeError(f"expected a BackboneOutput or a tensor [N, T, D], got {type(x).__name__} "
                    f"{tuple(x.shape) if torch.is_tensor(x) else ''}")
