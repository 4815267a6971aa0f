"""tools/compare_heads.py on the tiny EgoToy: frozen episodes shared by the heads, a trained head
selected on validation episodes, one table row per head."""
import json
import os

import pytest

from tests.tools.tiny import load_tool, tiny_cfg, write_cfg

compare = load_tool("compare_heads")


def test_table_of_heads_on_shared_episodes(egotoy_root, tmp_path):
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "out"))
    cfg.MODEL.MODEL_NAME, cfg.MODEL.BACKBONE = "FewShot", "ResNet"
    cfg.TRAIN.PROTOCOL, cfg.TEST.PROTOCOL = "episodic", "episodic"
    cfg.DATA.VAL_SPLIT, cfg.TEST.SPLIT = "fewshot_val", "test"
    cfg.HEAD.TRX_DIM = 16
    cfg.FEW_SHOT.TRAIN_EPISODES, cfg.FEW_SHOT.VAL_EPISODES, cfg.SOLVER.MAX_EPOCH = 2, 2, 1
    table = compare.main(["--heads", "ProtoNet", "TRX", "--train-heads", "TRX", "--shots", "1",
                          "--cfg", write_cfg(cfg, tmp_path / "tiny.yaml")])
    rows = table.splitlines()
    assert rows[0] == "| head | 2-way 1-shot |" and [r.split(" |")[0] for r in rows[2:]] == ["| ProtoNet", "| TRX"]
    out = tmp_path / "out"
    assert os.path.isfile(out / "TRX_1shot" / "checkpoints" / "checkpoint_best.pyth")
    runs = [json.load(open(out / f"{h}_1shot" / "episodes.json"))["episodes"] for h in ("ProtoNet", "TRX")]
    assert [e["class_ids"] for e in runs[0]] == [e["class_ids"] for e in runs[1]]
    results = json.load(open(out / "compare_heads.json"))
    assert set(results) == {"ProtoNet", "TRX"} and results["TRX"]["1"]["episodes"] == 6


def test_heads_on_a_feature_store_equal_the_heads_on_the_backbone(egotoy_root, tmp_path, monkeypatch):
    """FEW_SHOT.FEATURE_STORE: the same table without building a backbone."""
    from ego_fsar.models.build import BACKBONE_REGISTRY

    cfg = tiny_cfg(egotoy_root, str(tmp_path / "out"))
    cfg.TEST.PROTOCOL = "episodic"
    yaml = write_cfg(cfg, tmp_path / "tiny.yaml")
    args = ["--heads", "ProtoNet", "OTAM", "--train-heads", "--shots", "1", "--cfg", yaml]
    table = compare.main(args)
    store = load_tool("extract_features").main(["--out", str(tmp_path / "store"), "--cfg", yaml])
    monkeypatch.setattr(BACKBONE_REGISTRY, "get", lambda name: pytest.fail(f"built backbone {name}"))
    assert compare.main(args + ["OUTPUT_DIR", str(tmp_path / "stored"), "FEW_SHOT.FEATURE_STORE", store]) == table
    for head in ("ProtoNet", "OTAM"):
        runs = [json.load(open(tmp_path / d / f"{head}_1shot" / "episodes.json"))["episodes"] for d in ("out", "stored")]
        assert runs[0] == runs[1]
