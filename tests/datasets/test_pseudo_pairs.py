"""SUM-L's pseudo-pair buckets on a hand-made taxonomy, their JSON cache and the sampling order."""
import json

import numpy as np
import pytest

from ego_fsar.datasets.pseudo_pairs import (Taxonomy, annotation_digest, build_buckets, cached_buckets,
                                            sample_pair)

# Exo taxonomy: verbs 0 "cut", 1 "wash", 2 "dance" (unmapped); nouns 0 "knife", 1 "plate".
# Ego (EPIC) ids: cut -> 7, wash -> 3; knife -> 11, plate -> 4.
TAXONOMY = {"verb": {"0": 7, "1": 3}, "noun": {"0": 11, "1": 4}}
EXO_TAGS = [
    ((0,), (0,)),      # 0: cut knife            -> same for (7, 11)
    ((0, 1), (0, 1)),  # 1: cut+wash knife+plate -> sub for (7, 11), (3, 4)
    ((0,), (1,)),      # 2: cut plate            -> sub_verb for (7, 11)
    ((1,), (0,)),      # 3: wash knife           -> sub_noun for (7, 11)
    ((2,), (0,)),      # 4: dance knife          -> sub_noun for (7, 11) (dance is unmapped)
    ((0,), (0,)),      # 5: cut knife            -> same
    ((0,), (0,)),      # 6: cut knife            -> same
    ((0,), (0,)),      # 7: cut knife            -> same (4 candidates: 3 kept)
]


@pytest.fixture
def taxonomy(tmp_path):
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps(TAXONOMY))
    return Taxonomy(str(path))


def test_taxonomy_maps_exo_ids_and_marks_unmapped(taxonomy):
    assert taxonomy.map(((0, 2), (1,))) == ((7, -1), (4,))
    assert Taxonomy().map(((0, 2), (1,))) == ((0, 2), (1,))


def test_buckets_on_a_hand_made_taxonomy(taxonomy):
    tags = [taxonomy.map(t) for t in EXO_TAGS]
    cut_knife, wash_plate, unknown = build_buckets([(7, 11), (3, 4), (50, 60)], tags, per_bucket=3, seed=0)
    assert len(cut_knife["same"]) == 3 and set(cut_knife["same"]) <= {0, 5, 6, 7}
    assert cut_knife["sub"] == [1] and cut_knife["sub_verb"] == [2] and cut_knife["sub_noun"] == [3, 4]
    assert wash_plate == {"same": [], "sub": [1], "sub_verb": [3], "sub_noun": [2]}
    assert unknown == {"same": [], "sub": [], "sub_verb": [], "sub_noun": []}


def test_sampling_prefers_buckets_in_order_and_falls_back_to_a_random_clip():
    rng = np.random.default_rng(0)
    picks = {sample_pair({"same": [], "sub": [4, 5], "sub_verb": [1], "sub_noun": [2]}, 9, rng) for _ in range(20)}
    assert picks == {(4, "sub"), (5, "sub")}
    assert sample_pair({"same": [], "sub": [], "sub_verb": [], "sub_noun": [2]}, 9, rng) == (2, "sub_noun")
    index, bucket = sample_pair({"same": [], "sub": [], "sub_verb": [], "sub_noun": []}, 9, rng)
    assert bucket == "random" and 0 <= index < 9


def test_cache_is_reused_and_rebuilt_when_an_annotation_digest_changes(tmp_path, monkeypatch):
    import ego_fsar.datasets.pseudo_pairs as pp

    path = str(tmp_path / "pairs.json")
    ego, tags = [(7, 11), (3, 4)], [Taxonomy().map(t) for t in EXO_TAGS]
    ego_digest, exo_digest = annotation_digest([("a", 7, 11), ("b", 3, 4)]), annotation_digest(EXO_TAGS)
    first = cached_buckets(path, ego, tags, ego_digest, exo_digest)
    calls, rebuilt = [], {"same": [0], "sub": [], "sub_verb": [], "sub_noun": []}
    monkeypatch.setattr(pp, "build_buckets", lambda *a, **k: calls.append(1) or [rebuilt] * len(a[0]))
    assert cached_buckets(path, ego, tags, ego_digest, exo_digest) == first and not calls
    changed_exo = annotation_digest(EXO_TAGS[:-1])
    assert cached_buckets(path, ego, tags, ego_digest, changed_exo) == [rebuilt] * 2 and len(calls) == 1
    with open(path) as f:
        assert json.load(f)["key"]["exo_digest"] == changed_exo
    cached_buckets(path, ego, tags, annotation_digest([("a", 7, 11)]), changed_exo)
    assert len(calls) == 2
