"""What a feature store's features depend on, so that a run never reads features of another model.

A store's identity is the backbone name, the digest of the checkpoint its weights came from (sha256 of
the file `find_test_checkpoint` picks, "random-init" when none), the digest of the config keys that
change the features (`feature_config`: the model's nodes, the test sampling and transform, masked
views; RNG_SEED when the weights or the masks are random) and the source (dataset and split, or the
videos given). `check_identity` refuses a mismatch naming every field that differs.
"""
import hashlib
import json
import os
from typing import Dict, List, Sequence

from fvcore.common.config import CfgNode

from ego_fsar.models.build import backbone_name
from ego_fsar.utils import checkpoint as cu

RANDOM_INIT = "random-init"
# Whole config groups that build the backbone.
_MODEL_GROUPS = ("MODEL", "RESNET", "NONLOCAL", "SLOWFAST", "VIT", "BN")
# MODEL keys that only the training or the classification head reads.
_NOT_FEATURES = ("MODEL.NUM_CLASSES", "MODEL.LOSS_FUNC", "MODEL.DROPOUT_RATE", "MODEL.FC_INIT_STD",
                 "MODEL.HEAD_ACT", "MODEL.DETACH_FINAL_FC", "MODEL.FP16_ALLREDUCE", "MODEL.FREEZE",
                 "MODEL.TRAINABLE", "MODEL.TEMP")
# Keys of the deterministic test view of a clip: sampling, decoding and transform.
_VIEW_KEYS = ("DATA.NUM_FRAMES", "DATA.SAMPLING_RATE", "DATA.TEMPORAL_SAMPLING", "DATA.DECODING_BACKEND",
              "DATA.MEAN", "DATA.STD", "DATA.INPUT_CHANNEL_NUM", "DATA.TEST_CROP_SIZE", "DATA.TEST_NO_CROP",
              "DATA.INV_UNIFORM_SAMPLE", "DATA.REVERSE_INPUT_CHANNEL", "DATA.MODALITIES",
              "DATA.SAME_CROP_ACROSS_MODALITIES", "DATA.FLOW_BOUND", "DATA.FLOW_MEAN", "DATA.FLOW_STD",
              "DATA.POSE_SIZE", "DATA.POSE_KEYPOINTS", "DATA.POSE_SIGMA", "DATA.POSE_MEAN", "DATA.POSE_STD",
              "DATA.TARGET_FPS", "DATA.FRAME_TEMPLATE", "DATA.USE_OFFSET_SAMPLING", "TEST.NUM_ENSEMBLE_VIEWS",
              "TEST.NUM_SPATIAL_CROPS", "TEST.NUM_MASKED_VIEWS", "MASK.RATIO")


class StoreMismatchError(ValueError):
    """A feature store that does not hold the features this run would compute."""


def _flatten(node: CfgNode, prefix: str) -> Dict[str, object]:
    flat = {}
    for key, value in node.items():
        name = f"{prefix}.{key}"
        flat.update(_flatten(value, name) if isinstance(value, CfgNode) else {name: value})
    return flat


def _lookup(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def feature_config(cfg: CfgNode, random_weights: bool) -> Dict[str, object]:
    """{"GROUP.KEY": value} of the config keys the features depend on (lists as lists, sorted by key)."""
    keys = {k: v for group in _MODEL_GROUPS for k, v in _flatten(cfg[group], group).items() if k not in _NOT_FEATURES}
    keys.update({k: _lookup(cfg, k) for k in _VIEW_KEYS})
    if random_weights or cfg.TEST.NUM_MASKED_VIEWS > 0:
        keys["RNG_SEED"] = cfg.RNG_SEED
    return json.loads(json.dumps(dict(sorted(keys.items())), default=list))


def file_digest(path: str) -> str:
    """sha256 of the file at `path` (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_identity(cfg: CfgNode, source: Dict) -> Dict:
    """The identity of the features this run computes (or reads) for `source` ({"dataset", "split",
    "items"} or {"videos", "items"}): backbone, checkpoint, config digest, the keys behind it, source."""
    path = cu.find_test_checkpoint(cfg)[0]
    keys = feature_config(cfg, random_weights=path is None)
    return {"backbone": backbone_name(cfg), "checkpoint": RANDOM_INIT if path is None else file_digest(path),
            "checkpoint_path": path or "", "config": hashlib.sha256(json.dumps(keys).encode()).hexdigest(),
            "config_keys": keys, "source": source}


def dataset_source(cfg: CfgNode, num_items: int) -> Dict:
    """Source of a store of TEST.DATASET's TEST.SPLIT with `num_items` items."""
    return {"dataset": cfg.TEST.DATASET.lower(), "split": cfg.TEST.SPLIT, "items": num_items}


def videos_source(paths: Sequence[str], num_items: int) -> Dict:
    """Source of a store of the videos `paths` (tools/extract_features.py --videos) with `num_items` items."""
    return {"videos": [os.path.abspath(p) for p in paths], "items": num_items}


def _differences(stored: Dict, run: Dict) -> List[str]:
    fields = []
    for name in ("backbone", "checkpoint"):
        if stored[name] != run[name]:
            where = f" (run's file {run['checkpoint_path']})" if name == "checkpoint" and run["checkpoint_path"] else ""
            fields.append(f"{name}: store {stored[name]!r} vs run {run[name]!r}{where}")
    if stored["config"] != run["config"]:
        keys = sorted(set(stored["config_keys"]) | set(run["config_keys"]))
        changed = [f"{k} {stored['config_keys'].get(k, '(absent)')!r} vs {run['config_keys'].get(k, '(absent)')!r}"
                   for k in keys if stored["config_keys"].get(k) != run["config_keys"].get(k)]
        fields.append(f"config: store {stored['config'][:12]} vs run {run['config'][:12]} ({'; '.join(changed)})")
    for key in sorted(set(stored["source"]) | set(run["source"])):
        if stored["source"].get(key) != run["source"].get(key):
            fields.append(f"source {key}: store {stored['source'].get(key)!r} vs run {run['source'].get(key)!r}")
    return fields


def check_identity(stored: Dict, run: Dict, store_dir: str) -> None:
    """Raise StoreMismatchError naming each field of `stored` (a store's identity) that differs from `run`."""
    fields = _differences(stored, run)
    if fields:
        raise StoreMismatchError(f"feature store {store_dir} holds other features than this run computes: "
                                 + "; ".join(fields) + ". Extract a store with this config (tools/extract_features.py)"
                                 " or point FEW_SHOT.FEATURE_STORE at one")
