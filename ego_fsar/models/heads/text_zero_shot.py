"""Video-text towers' shared space and the zero-shot few-shot head built on it (EgoVLP).

`TextTower`: the MiniLM sentence encoder (TEXT.ENCODER), trainable (a module of its own, saved in
checkpoints) or frozen (EGOVLP.TEXT_TRAINABLE False: the shared, cached `TextEncoder` it is given, kept
out of checkpoints and optimisers). `TextZeroShot` (HEAD.NAME): the projections of video features
(`vid_proj`, backbone width -> EGOVLP.PROJ_DIM) and of text (`txt_proj`) into the shared space, and a
classifier whose class prototypes are the embeddings of the class names under TEXT.TEMPLATES.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from ...config.configurable import configurable
from ..build import HEAD_REGISTRY
from ..outputs import ClipFeatures, as_backbone_output
from ..text_encoder import TextEncoder, cfg_templates, load_encoder


class TextTower(nn.Module):
    """`forward(texts: list of n str) -> [n, dim]` sentence embeddings (L2-normalised, mean-pooled MiniLM)."""

    def __init__(self, encoder: TextEncoder, trainable: bool):
        super().__init__()
        self.frozen = encoder
        self.dim = encoder.dim
        self.model = None
        if trainable:
            with torch.device("cpu"):  # pre-trained weights load on the CPU (also under a meta-device build)
                self.model = load_encoder(encoder.name)

    def forward(self, texts: Sequence[str], device: torch.device) -> torch.Tensor:
        if self.model is None:
            return self.frozen.encode(list(texts), "{}").to(device)
        features = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.model.preprocess(list(texts)).items()}
        return self.model(features)["sentence_embedding"]


@HEAD_REGISTRY.register()
class TextZeroShot(nn.Module):
    """Zero-shot N-way classifier: cosine of each query clip's projected `pooled` feature to each class's
    text prototype (mean over TEXT.TEMPLATES of the projected, normalised embeddings of
    `template.format(name)`), divided by EGOVLP.TEMPERATURE. The support set is not used, so episodes may
    have FEW_SHOT.SHOT 0. Output: {"logits": [N*Q, n_way]}. Its projections are trained by VideoText,
    so it is not parameter-free: it must come from a VideoText checkpoint. Built from a config or from its
    arguments (`@configurable`)."""

    PARAMETER_FREE = False

    @configurable
    def __init__(self, in_dim: int, text_encoder: TextEncoder, text_trainable: bool = True,
                 templates: Sequence[str] = ("a video of {}",), proj_dim: int = 256, temperature: float = 0.05):
        super().__init__()
        self.templates: List[str] = list(templates)
        bad = [t for t in self.templates if "{}" not in t]
        if not self.templates or bad:
            raise ValueError(f"TextZeroShot templates (TEXT.TEMPLATES): every template needs a '{{}}' for the class "
                             f"name, got {self.templates}")
        self.temperature = temperature
        self.vid_proj = nn.Linear(in_dim, proj_dim)
        self.text = TextTower(text_encoder, text_trainable)
        # A trainable MiniLM's pooler gets no gradient (sentence embeddings are mean-pooled tokens).
        self.FIND_UNUSED_PARAMETERS = self.text.model is not None
        self.txt_proj = nn.Linear(self.text.dim, proj_dim)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int) -> Dict:
        return {"in_dim": in_dim, "text_encoder": TextEncoder.from_cfg(cfg),
                "text_trainable": cfg.EGOVLP.TEXT_TRAINABLE,
                "templates": cfg_templates(cfg),
                "proj_dim": cfg.EGOVLP.PROJ_DIM, "temperature": cfg.EGOVLP.TEMPERATURE}

    def encode_video(self, pooled: torch.Tensor) -> torch.Tensor:
        """Backbone features [B, D] -> normalised joint-space embeddings [B, PROJ_DIM]."""
        return F.normalize(self.vid_proj(pooled), dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Sentences (n) -> normalised joint-space embeddings [n, PROJ_DIM]."""
        return F.normalize(self.txt_proj(self.text(texts, self.txt_proj.weight.device)), dim=-1)

    def class_prototypes(self, names: Sequence[str]) -> torch.Tensor:
        """[len(names), PROJ_DIM]: normalised mean over templates of the names' text embeddings."""
        per_template = torch.stack([self.encode_text([t.format(n) for n in names]) for t in self.templates])
        return F.normalize(per_template.mean(0), dim=-1)

    def forward(self, support: ClipFeatures, support_labels: torch.Tensor,
                query: ClipFeatures, n_way: int,
                class_text: Optional[List[str]] = None,
                query_labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        if class_text is None or len(class_text) != n_way:
            raise ValueError(f"HEAD.NAME TextZeroShot needs the {n_way} class names of the episode (a dataset with "
                             f"class_names), got {class_text!r}")
        video = self.encode_video(as_backbone_output(query).pooled)
        return {"logits": video @ self.class_prototypes(class_text).t() / self.temperature}
