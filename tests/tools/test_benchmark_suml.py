"""`tools/benchmark.py train` on SUM-L: the exo entries are synthesised and --compare prints the ratio."""
import re

from tests.models.test_suml import suml_cfg
from tests.tools.tiny import load_tool, write_cfg

benchmark = load_tool("benchmark")


def test_suml_train_step_against_slowfast(tmp_path):
    cfg = suml_cfg()
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE = 8, 32
    path = write_cfg(cfg, tmp_path / "suml.yaml")
    text = benchmark.main(["train", "--cfg", path, "--batch-size", "2", "--steps", "1", "--warmup", "0", "--amp", "no",
                           "--compare", "SlowFast"])
    assert "train step: SUML (slowfast)" in text
    match = re.search(r"SlowFast step \(default layout, fp32\): ([0-9.]+) s; SUML / SlowFast = ([0-9.]+)x", text)
    assert match and float(match.group(1)) > 0 and float(match.group(2)) > 0
