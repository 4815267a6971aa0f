"""EgoVLP's video-text dual encoder (MODEL_NAME VideoText), pre-trained with EgoNCE.

Video: any registered backbone (MODEL.BACKBONE; the video ViT by default) -> `head.vid_proj` to
EGOVLP.PROJ_DIM; text: MiniLM (trainable or frozen, EGOVLP.TEXT_TRAINABLE) -> `head.txt_proj`; both
L2-normalised (see heads/text_zero_shot.py, whose TextZeroShot head holds them). Backbone keys are
flat as in every ego_fsar model, so a FewShot model (any few-shot head) initialises its backbone from
a VideoText checkpoint, and a FewShot model with HEAD.NAME TextZeroShot takes the whole trained head.

In distributed training the embeddings of every process are gathered (gradients flow back to each
process's own rows, see `du.all_gather_with_grad`), so EgoNCE sees the global batch and the gradient
equals that of one process holding it.
"""
from typing import Dict, List, Optional, Sequence

import torch

from ego_fsar.utils import distributed as du

from ..build import MODEL_REGISTRY, build_backbone
from ..heads.text_zero_shot import TextZeroShot
from ..losses import egonce_loss
from .base import FlatBackboneModel


@MODEL_REGISTRY.register()
class VideoText(FlatBackboneModel):
    """`forward(inputs, text, verb_multi_hot, noun_multi_hot[, negative]) -> {"loss_egonce": scalar}`.

    inputs: pathway list [B,C,T,H,W]; text: B narrations; tags [B, V] / [B, M] multi-hot; negative (with
    EGOVLP.NEG_WINDOW > 0): the same entries of one scene-aware negative clip per sample, appended to the
    batch. EgoNCE (EGOVLP.TEMPERATURE, VERB_POSITIVES, NOUN_POSITIVES) is computed on the similarity
    [W*B', W*B'] (text rows, video columns) of the batch gathered from the W processes."""

    BACKBONE = "VideoViT"
    HEAD_KEY_PREFIXES = ("fc_norm.", "head.")

    def __init__(self, cfg):
        backbone = build_backbone(cfg)
        super().__init__(backbone)
        self.head = TextZeroShot(cfg, backbone.out_dim)
        self.FIND_UNUSED_PARAMETERS = self.head.FIND_UNUSED_PARAMETERS
        self.temperature = cfg.EGOVLP.TEMPERATURE
        self.verb, self.noun = cfg.EGOVLP.VERB_POSITIVES, cfg.EGOVLP.NOUN_POSITIVES
        self.zero_shot = cfg.HEAD.NAME == "TextZeroShot"
        negatives = ("negative",) if cfg.EGOVLP.NEG_WINDOW > 0 else ()
        self.BATCH_INPUTS = ("text", "verb_multi_hot", "noun_multi_hot") + negatives

    @property
    def fewshot_head(self) -> Optional[torch.nn.Module]:
        """The trained TextZeroShot head with HEAD.NAME TextZeroShot; None otherwise (the episodic test
        then builds HEAD.NAME on this model's video backbone)."""
        return self.head if self.zero_shot else None

    def encode_video(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        """Pathway list [B,C,T,H,W] -> normalised embeddings [B, PROJ_DIM]."""
        return self.head.encode_video(self.backbone(inputs).pooled)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """B sentences -> normalised embeddings [B, PROJ_DIM]."""
        return self.head.encode_text(texts)

    def similarity(self, inputs: List[torch.Tensor], text: Sequence[str]) -> torch.Tensor:
        """Cosine similarities [W*B, W*B] of the global batch: text rows, video columns."""
        video = du.all_gather_with_grad(self.encode_video(inputs))
        return du.all_gather_with_grad(self.encode_text(text)) @ video.t()

    def forward(self, inputs: List[torch.Tensor], text: Sequence[str], verb_multi_hot: torch.Tensor,
                noun_multi_hot: torch.Tensor, negative: Optional[Dict] = None) -> Dict[str, torch.Tensor]:
        if negative is not None:
            inputs = [torch.cat(pair) for pair in zip(inputs, negative["inputs"])]
            text = list(text) + list(negative["text"])
            verb_multi_hot = torch.cat([verb_multi_hot, negative["verb_multi_hot"]])
            noun_multi_hot = torch.cat([noun_multi_hot, negative["noun_multi_hot"]])
        sim = self.similarity(inputs, text)
        loss = egonce_loss(sim, du.all_gather_cat(verb_multi_hot), du.all_gather_cat(noun_multi_hot),
                           self.temperature, verb=self.verb, noun=self.noun)
        return {"loss_egonce": loss}
