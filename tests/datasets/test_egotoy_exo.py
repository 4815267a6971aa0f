"""EgoToy's exo twin and the SUMLPairs dataset (pseudo-paired exo clips, narration embeddings)."""
import hashlib
import os

import pytest

from ego_fsar.datasets import build_dataset
from tests.suml import make_exo_root, suml_data_cfg


def _digests(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def exo_root(egotoy_root, tmp_path_factory):
    return make_exo_root(egotoy_root, str(tmp_path_factory.mktemp("egotoy_exo") / "egotoy"))


def test_exo_twin_leaves_egotoy_unchanged(egotoy_root, exo_root):
    ego_files = {k: v for k, v in _digests(exo_root).items() if not k.startswith("exo" + os.sep)}
    assert ego_files == _digests(egotoy_root)


def test_exo_twin_has_one_clip_per_training_clip_with_narrations(cfg, exo_root):
    cfg.DATA.PATH_PREFIX = exo_root
    ego, exo = build_dataset("EgoToy", cfg, "train"), build_dataset("EgoToyExo", cfg, "train")
    assert exo.num_clips == ego.num_clips
    assert [(s.verb_class, s.noun_class) for s in exo.segments] == [(s.verb_class, s.noun_class) for s in ego.segments]
    s = exo.segments[0]
    verb, digit = s.verb.split("-then-"), s.noun
    assert exo.narration(0) == f"{digit} moves {verb[0]} then {verb[1]}"
    assert exo.exo_tags(0) == ((s.verb_class,), (s.noun_class,))
    assert exo.tag_counts == (10, 10)
    item = exo[0]
    assert item["inputs"][0].shape[1:] == ego[0]["inputs"][0].shape[1:]


def test_suml_pairs_items(cfg, exo_root, tmp_path):
    cfg = suml_data_cfg(cfg, exo_root, tmp_path)
    data = build_dataset("SUMLPairs", cfg, "train")
    assert os.path.isfile(tmp_path / "suml_pairs_train.json")
    item = data[0]
    clip = item["index"]
    assert item["exo_label"].shape == (20,) and item["exo_label"].sum() == 2
    verb, noun = data.ego.segments[clip].verb_class, data.ego.segments[clip].noun_class
    # The same (verb, noun) exists in the twin, so the pair comes from the "same" bucket.
    assert data.buckets[clip]["same"] and item["exo_label"][verb] == 1 and item["exo_label"][10 + noun] == 1
    assert item["text_embedding"].shape == (384,) and item["exo_text_embedding"].shape == (384,)
    cosine = float(item["text_embedding"] @ item["exo_text_embedding"])
    assert cosine > cfg.SUML.CROSS_VIEW_THRESHOLD
    val = build_dataset("SUMLPairs", cfg, "val")
    assert set(val[0]) == {"inputs", "label", "index", "meta"}
    assert val.labels == build_dataset("EgoToy", cfg, "val").labels


def test_suml_pairs_checks_the_exo_head_width(cfg, exo_root, tmp_path):
    cfg = suml_data_cfg(cfg, exo_root, tmp_path)
    cfg.SUML.EXO_NUM_CLASSES = [7, 13]  # the right total, the wrong split
    with pytest.raises(ValueError, match="SUML.EXO_NUM_CLASSES is \\[7, 13\\].*10 verb \\+ 10 noun"):
        build_dataset("SUMLPairs", cfg, "train")
