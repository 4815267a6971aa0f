"""`SUMLPairs`: ego clips, each with a pseudo-paired exo clip and both narrations' embeddings (SUM-L).

TRAIN.DATASET SUMLPairs wraps SUML.EGO_DATASET (an EPIC-layout dataset: `segments` with verb_class,
noun_class and narration) and, on the training split only, SUML.EXO_DATASET read on SUML.EXO_SPLIT
with SUML.EXO_PATH_TO_DATA_DIR / EXO_PATH_PREFIX (an exo dataset: `exo_tags(clip)`, `narration(clip)`,
`tag_counts`, `annotation_records()`: EgoToyExo, CharadesExo). A training item is the ego item plus

    exo_inputs          the exo clip's pathway list, sampled from the segment's pseudo-pair buckets
                        (pseudo_pairs.py; cached in SUML.PAIRS_CACHE)
    exo_label           multi-hot float [V + N] (SUML.EXO_NUM_CLASSES [V, N]): exo verbs, then exo nouns
    text_embedding      the ego narration's embedding [384]
    exo_text_embedding  the exo narration's embedding [384]

Narrations are embedded once, at construction, by TEXT.ENCODER with the template "{}" (the
encoder's on-disk cache in TEXT.CACHE_DIR is keyed by text), so no text model runs in the
training step. Other splits are the ego dataset's items unchanged.
"""
import os
from typing import Dict, List, Union

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from ego_fsar.models.text_encoder import TextEncoder

from .build import DATASET_REGISTRY, build_dataset
from .pseudo_pairs import Taxonomy, annotation_digest, cached_buckets, sample_pair
from .utils import SkippedItem


def embed_texts(cfg: CfgNode, texts: List[str]) -> torch.Tensor:
    """Embeddings [len(texts), dim] of `texts`, each unique text encoded once (no gradients)."""
    unique = list(dict.fromkeys(texts))
    table = TextEncoder.from_cfg(cfg).encode(unique, "{}")
    position = {t: i for i, t in enumerate(unique)}
    return table[torch.tensor([position[t] for t in texts], dtype=torch.long)]


def exo_cfg(cfg: CfgNode) -> CfgNode:
    """The config the exo dataset is read with: SUML.EXO_PATH_TO_DATA_DIR / SUML.EXO_PATH_PREFIX when set,
    and MODEL.NUM_CLASSES the exo dataset class's `NUM_CLASSES` when it declares one (Charades: 157)."""
    exo = cfg.clone()
    exo.defrost()
    exo.DATA.PATH_TO_DATA_DIR = cfg.SUML.EXO_PATH_TO_DATA_DIR or cfg.DATA.PATH_TO_DATA_DIR
    exo.DATA.PATH_PREFIX = cfg.SUML.EXO_PATH_PREFIX or cfg.DATA.PATH_PREFIX
    classes = {name.lower(): c for name, c in DATASET_REGISTRY}
    num_classes = getattr(classes.get(cfg.SUML.EXO_DATASET.lower()), "NUM_CLASSES", None)
    if num_classes is not None:
        exo.MODEL.NUM_CLASSES = num_classes
    return exo


@DATASET_REGISTRY.register()
class SUMLPairs(Dataset):
    """See the module doc."""

    def __init__(self, cfg: CfgNode, split: str):
        self.ego = build_dataset(cfg.SUML.EGO_DATASET, cfg, split)
        self.labels, self.class_names = self.ego.labels, self.ego.class_names
        self.failures = self.ego.failures
        self.training = split == cfg.DATA.TRAIN_SPLIT
        if not self.training:
            return
        self.exo = build_dataset(cfg.SUML.EXO_DATASET, exo_cfg(cfg), cfg.SUML.EXO_SPLIT)
        self.exo.failures = self.failures  # one count per epoch (the loader resets it) for both views
        self.exo_labels = self._exo_multi_hot(cfg)
        taxonomy = Taxonomy(cfg.SUML.TAXONOMY_FILE)
        segments = self.ego.segments
        ego_pairs = [(s.verb_class, s.noun_class) for s in segments]
        exo_tags = [taxonomy.map(self.exo.exo_tags(i)) for i in range(self.exo.num_clips)]
        path = cfg.SUML.PAIRS_CACHE or os.path.join(cfg.OUTPUT_DIR, f"suml_pairs_{split}.json")
        self.buckets = cached_buckets(
            path, ego_pairs, exo_tags,
            ego_digest=annotation_digest([(s.narration_id, s.verb_class, s.noun_class) for s in segments]),
            exo_digest=annotation_digest(self.exo.annotation_records()), per_bucket=cfg.SUML.PAIRS_PER_BUCKET,
            seed=cfg.RNG_SEED, taxonomy_digest=taxonomy.digest())
        self.text = embed_texts(cfg, [s.narration for s in segments])
        self.exo_text = embed_texts(cfg, [self.exo.narration(i) for i in range(self.exo.num_clips)])

    def _exo_multi_hot(self, cfg: CfgNode) -> torch.Tensor:
        verbs, nouns = self.exo.tag_counts
        counts = cfg.SUML.EXO_NUM_CLASSES
        if not isinstance(counts, (list, tuple)) or list(counts) != [verbs, nouns]:
            raise ValueError(f"SUML.EXO_NUM_CLASSES is {counts}, but {cfg.SUML.EXO_DATASET} "
                             f"has {verbs} verb + {nouns} noun classes ([{verbs}, {nouns}])")
        labels = torch.zeros(self.exo.num_clips, verbs + nouns)
        for i in range(self.exo.num_clips):
            clip_verbs, clip_nouns = self.exo.exo_tags(i)
            labels[i, list(clip_verbs)] = 1.0
            labels[i, [verbs + n for n in clip_nouns]] = 1.0
        return labels

    def __len__(self) -> int:
        return len(self.ego)

    def __getitem__(self, index: int) -> Union[Dict, SkippedItem]:
        item = self.ego[index]
        if not self.training:
            return item
        clip = item["index"]
        rng = np.random.default_rng(np.random.randint(2**31))  # seeded per worker and epoch by the loader
        exo_index, _ = sample_pair(self.buckets[clip], self.exo.num_clips, rng)
        exo_item = self.exo[exo_index]
        exo_clip = exo_item["index"]  # a retried read may have replaced the clip
        item.update(exo_inputs=exo_item["inputs"], exo_label=self.exo_labels[exo_clip],
                    text_embedding=self.text[clip], exo_text_embedding=self.exo_text[exo_clip])
        item["meta"]["skipped"] += exo_item["meta"]["skipped"]
        return item
