"""SUM-L against its released model: checkpoint names and shapes, and initialising from one SlowFast.

The released model is `SlowFast_LEMMA3S_PHRASE_EP_HOI_2S` in github.com/wqtwjt1996/SUM-L
(slowfast/models/multi_models_builder_ep_lemma_hoi_2s.py, trained with
configs/epic-kitchen-100/Ego_Exo_SLOWFAST_8x8_R101_TPV.yaml). That repository has no licence file, so
none of its files is shipped here; its state-dict layout is restated from its module structure:

- the ego SlowFast R101 of PySlowFast (`s1`, `s1_fuse`, ..., `s4_fuse`, `s5`): taken from the
  PySlowFast SlowFast R50 key fixture (Apache-2.0) with stage 4 extended to R101's 23 blocks and the
  fusion kernel of the config (FUSION_KERNEL_SZ 5);
- the exo SlowFast: the same stages and shapes with a `_t` suffix (`s1_t`, `s1_fuse_t`, ..., `s5_t`);
  the pathway max-pools are shared and hold no weights;
- `headepic100` (Ego-Exo's `head{cfg.TASK}`, TASK epic100): `MultiTaskHead` with
  `projections.0` [97, 2304] and `projections.1` [300, 2304]; no PySlowFast `head.projection`;
- `head_lemma`: `MultiTaskHead` over LEMMA's [25 verbs, 64 nouns];
- `global_con_head` (`SlowFastPhraseGlobalConHead_DCL`): `fpv_global_proj` and `tpv_global_proj`,
  each Linear(2304, CON_LAST_DIM 384); its pools and DCL loss objects hold no weights.
"""
import json
import logging
import re
from pathlib import Path

import pytest
import torch

from ego_fsar.config import get_cfg, merge_file
from ego_fsar.models import build_model
from ego_fsar.utils import checkpoint as cu
from tests.models.test_suml import _clips, suml_cfg
from tests.paths import FIXTURES, REPO_ROOT

R101_STAGE4_BLOCKS = 23
STAGES = re.compile(r"^(s[1-5]|s[1-4]_fuse)\.")


def released_suml_keys(fusion_kernel: int = 5, text_dim: int = 384):
    """{name: shape} of the released SUM-L EPIC-100 R101 state dict (see the module docstring)."""
    ref = json.loads((Path(FIXTURES) / "pyslowfast_slowfast_r50_keys.json").read_text())
    backbone = {}
    for key, shape in ref["state_dict"]:
        if key.startswith("head."):
            continue
        if key.endswith("_fuse.conv_f2s.weight"):
            shape = [shape[0], shape[1], fusion_kernel, 1, 1]
        backbone[key] = shape
        last_r50 = re.match(r"^s4\.pathway(\d)_res5\.(.*)", key)
        if last_r50:  # R101: stage 4 continues with blocks 6..22 shaped like block 5
            for block in range(6, R101_STAGE4_BLOCKS):
                backbone[f"s4.pathway{last_r50[1]}_res{block}.{last_r50[2]}"] = shape
    keys = dict(backbone)
    keys.update({STAGES.sub(lambda m: f"{m[1]}_t.", k): s for k, s in backbone.items() if STAGES.match(k)})
    dim = 2048 + 256
    for name, counts in (("headepic100", (97, 300)), ("head_lemma", (25, 64))):
        for i, count in enumerate(counts):
            keys[f"{name}.projections.{i}.weight"], keys[f"{name}.projections.{i}.bias"] = [count, dim], [count]
    for view in ("fpv", "tpv"):
        keys[f"global_con_head.{view}_global_proj.weight"] = [text_dim, dim]
        keys[f"global_con_head.{view}_global_proj.bias"] = [text_dim]
    return keys


def _release_cfg(train: bool = True):
    cfg = get_cfg()
    merge_file(cfg, str(Path(REPO_ROOT) / "configs/EPIC-KITCHENS/SUML_SLOWFAST_8x8_R101.yaml"))
    cfg.NUM_GPUS = 0
    cfg.TRAIN.ENABLE = train
    cfg.SUML.EXO_NUM_CLASSES = [25, 64]  # the release's exo data, LEMMA
    return cfg


def test_state_dict_is_the_released_one():
    with torch.device("meta"):
        model = build_model(_release_cfg())
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    expected = released_suml_keys()
    assert sorted(set(ours) - set(expected)) == [] and sorted(set(expected) - set(ours)) == []
    assert ours == expected


def test_the_test_only_model_is_the_released_ego_path():
    """The test-only (ego) model holds exactly the released names other than the exo branch's, so a
    released checkpoint tests with nothing missing (its exo keys: unexpected, see test_suml.py)."""
    with torch.device("meta"):
        ego_only = build_model(_release_cfg(train=False))
    ego = {k: list(v.shape) for k, v in ego_only.state_dict().items()}
    released = released_suml_keys()
    assert ego == {k: s for k, s in released.items() if not k.split(".")[0].endswith("_t")
                                                 and not k.startswith(("head_lemma.", "global_con_head."))}


def _pyslowfast_state(model) -> dict:
    """A single-backbone PySlowFast checkpoint of `model`'s ego stages (no `_t`, no SUM-L heads)."""
    return {k: v.clone() for k, v in model.state_dict().items()
            if not k.split(".")[0].endswith("_t") and not k.startswith(("headepic100.", "head_lemma.", "global_con"))}


def test_single_backbone_checkpoint_initialises_both_branches(tmp_path, caplog):
    source = build_model(suml_cfg())
    state = _pyslowfast_state(source)
    state["head.projection.weight"] = torch.zeros(400, 4 * 32 + 4 * 32 // 4)  # a Kinetics head, ignored
    path = str(tmp_path / "kinetics.pyth")
    torch.save({"model_state": state, "epoch": 9}, path)
    cfg = suml_cfg()
    cfg.TRAIN.CHECKPOINT_FILE_PATH = path
    model = build_model(cfg)
    with caplog.at_level(logging.INFO):
        assert cu.load_train_checkpoint(cfg, model, optimizer=None) == 10
    assert "also initialise the exo stages" in caplog.text
    loaded = model.state_dict()
    for key, value in state.items():
        if key.startswith("head."):
            continue
        assert torch.equal(loaded[key], value), key
        stage, rest = key.split(".", 1)
        assert torch.equal(loaded[f"{stage}_t.{rest}"], value), key
    # The heads keep their initialisation and the two branches compute the same features.
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.backbone(_clips()).pooled, model.exo_backbone(_clips()).pooled)


def test_single_backbone_checkpoint_without_the_copy_fails_strictly(tmp_path):
    path = str(tmp_path / "kinetics.pyth")
    torch.save({"model_state": _pyslowfast_state(build_model(suml_cfg()))}, path)
    cfg = suml_cfg()
    cfg.SUML.EXO_INIT_FROM_EGO = False
    model = build_model(cfg)
    with pytest.raises(cu.CheckpointError, match=r"missing from it \(s1_fuse_t\."):
        cu.load_from_cfg(cfg, path, model)
    cfg.TRAIN.CHECKPOINT_STRICT = False  # the released training script: non-strict, exo stays random
    before = model.s1_t.pathway0_stem.conv.weight.clone()
    cu.load_from_cfg(cfg, path, model)
    assert torch.equal(model.s1_t.pathway0_stem.conv.weight, before)


def test_a_two_branch_checkpoint_keeps_its_exo_weights(tmp_path):
    trained = build_model(suml_cfg())
    with torch.no_grad():
        trained.s1_t.pathway0_stem.conv.weight.fill_(0.5)
    path = str(tmp_path / "suml.pyth")
    torch.save({"model_state": trained.state_dict()}, path)
    cfg = suml_cfg()
    model = build_model(cfg)
    cu.load_from_cfg(cfg, path, model)
    assert torch.equal(model.s1_t.pathway0_stem.conv.weight, trained.s1_t.pathway0_stem.conv.weight)
    assert not torch.equal(model.s1_t.pathway0_stem.conv.weight, model.backbone.s1.pathway0_stem.conv.weight)
