"""SUM-L's pseudo-pairs: for each ego segment (verb, noun), exo clips that show the same action.

The exo clips' tags (lists of exo verb and noun ids) are mapped to the ego taxonomy by a
`Taxonomy` (SUML.TAXONOMY_FILE; unmapped ids become -1 and match nothing). An exo clip falls in the
first bucket it fits, in this order of preference:

    same      its only verb is the segment's verb and its only noun the segment's noun
    sub       its verbs include the segment's verb and its nouns the segment's noun
    sub_verb  its verbs include the segment's verb (not its noun)
    sub_noun  its nouns include the segment's noun (not its verb)

Each bucket keeps up to `per_bucket` clips (a seeded random choice). Training samples from the first
non-empty bucket; when every bucket is empty the fallback is a uniformly random exo clip (its
narration then rarely passes SUML.CROSS_VIEW_THRESHOLD, so the cross-view term mostly ignores it).
Buckets are cached in a JSON file keyed by digests of both datasets' annotations (and the taxonomy,
bucket size and seed); a change of either rebuilds it.
"""
import hashlib
import json
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ego_fsar.utils.atomic_file import atomic_write
from ego_fsar.utils.logging import get_logger

logger = get_logger(__name__)

BUCKETS = ("same", "sub", "sub_verb", "sub_noun")
Tags = Tuple[Tuple[int, ...], Tuple[int, ...]]  # (verb ids, noun ids) of one exo clip
Buckets = Dict[str, List[int]]  # bucket name -> exo clip indices


class Taxonomy:
    """Exo verb/noun ids -> ego ids, from a JSON file {"verb": {"3": 12, ...}, "noun": {...}};
    ids the file does not list map to -1. No file: the identity."""

    def __init__(self, path: str = ""):
        self.path = path
        self.maps: Optional[Dict[str, Dict[int, int]]] = None
        if path:
            with open(path) as f:
                raw = json.load(f)
            if not isinstance(raw, dict) or set(raw) - {"verb", "noun"}:
                got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
                raise ValueError(f"SUML.TAXONOMY_FILE {path}: expected {{'verb': {{exo_id: ego_id}}, "
                                 f"'noun': {{...}}}}, got keys {got}")
            self.maps = {kind: {int(k): int(v) for k, v in raw.get(kind, {}).items()} for kind in ("verb", "noun")}

    def map(self, tags: Tags) -> Tags:
        """Exo tags in ego ids (-1: unmapped)."""
        if self.maps is None:
            return tuple(tags[0]), tuple(tags[1])
        return (tuple(self.maps["verb"].get(v, -1) for v in tags[0]),
                tuple(self.maps["noun"].get(n, -1) for n in tags[1]))

    def digest(self) -> str:
        return _digest(self.maps if self.maps is None else {k: sorted(v.items()) for k, v in self.maps.items()})


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def annotation_digest(records: Sequence) -> str:
    """SHA-256 of a dataset's annotation records (JSON-serialisable, e.g. (id, verb, noun) tuples)."""
    return _digest([list(r) if isinstance(r, tuple) else r for r in records])


def build_buckets(ego_pairs: Sequence[Tuple[int, int]], exo_tags: Sequence[Tags], per_bucket: int = 3,
                  seed: int = 0) -> List[Buckets]:
    """Buckets (module doc) of each ego (verb, noun) against exo tags already in ego ids."""
    by_verb, by_noun = defaultdict(set), defaultdict(set)
    for i, (verbs, nouns) in enumerate(exo_tags):
        for v in verbs:
            by_verb[v].add(i)
        for n in nouns:
            by_noun[n].add(i)
    memo: Dict[Tuple[int, int], Buckets] = {}
    for verb, noun in dict.fromkeys(ego_pairs):
        verb_clips, noun_clips = by_verb.get(verb, set()), by_noun.get(noun, set())
        both = verb_clips & noun_clips
        same = {i for i in both if set(exo_tags[i][0]) == {verb} and set(exo_tags[i][1]) == {noun}}
        found = {"same": same, "sub": both - same, "sub_verb": verb_clips - both, "sub_noun": noun_clips - both}
        rng = np.random.default_rng([seed, verb + 1, noun + 1])
        memo[(verb, noun)] = {name: _choose(sorted(found[name]), per_bucket, rng) for name in BUCKETS}
    return [memo[pair] for pair in ego_pairs]


def _choose(candidates: List[int], k: int, rng: np.random.Generator) -> List[int]:
    if len(candidates) <= k:
        return candidates
    return sorted(int(i) for i in rng.choice(candidates, size=k, replace=False))


def cached_buckets(path: str, ego_pairs: Sequence[Tuple[int, int]], exo_tags: Sequence[Tags], ego_digest: str,
                   exo_digest: str, per_bucket: int = 3, seed: int = 0, taxonomy_digest: str = "") -> List[Buckets]:
    """`build_buckets`, read from the JSON file `path` when its key (the digests, bucket size and seed)
    matches, else built and written there (atomically)."""
    key = {"ego_digest": ego_digest, "exo_digest": exo_digest, "taxonomy_digest": taxonomy_digest,
           "per_bucket": per_bucket, "seed": seed}
    if os.path.isfile(path):
        try:
            with open(path) as f:
                cached = json.load(f)
            if cached.get("key") == key and len(cached.get("buckets", ())) == len(ego_pairs):
                return cached["buckets"]
            logger.info("Pseudo-pair cache %s is stale (annotations or settings changed): rebuilding it", path)
        except (OSError, ValueError) as e:
            logger.warning("Pseudo-pair cache %s is unreadable (%r): rebuilding it", path, e)
    buckets = build_buckets(ego_pairs, exo_tags, per_bucket, seed)
    atomic_write(path, lambda f: json.dump({"key": key, "buckets": buckets}, f), "w")
    counts = {name: sum(bool(b[name]) for b in buckets) for name in BUCKETS}
    empty = sum(not any(b.values()) for b in buckets)
    logger.info("Pseudo-pairs of %d ego segments written to %s: segments with a clip per bucket %s; "
                "%d with none (random exo clip)", len(buckets), path, counts, empty)
    return buckets


def sample_pair(buckets: Buckets, num_exo: int, rng: np.random.Generator) -> Tuple[int, str]:
    """(exo clip index, bucket name): a random clip of the first non-empty bucket, else ("random")
    a uniformly random exo clip."""
    for name in BUCKETS:
        if buckets.get(name):
            return int(buckets[name][rng.integers(len(buckets[name]))]), name
    return int(rng.integers(num_exo)), "random"
