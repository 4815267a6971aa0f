"""tools/compare_heads.py on the tiny EgoToy: frozen episodes shared by the heads, a trained head
selected on validation episodes, one table row per head."""
import json
import os

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
