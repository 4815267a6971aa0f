"""tools/extract_features.py on the tiny EgoToy: a split extracted by 2 processes (gloo) equals the
one-process store; --videos on a folder of frame folders and a corrupt video."""
import json
import os
import shutil

import numpy as np

from ego_fsar.features.store import FeatureStore, shard_name
from tests.tools.tiny import load_tool, tiny_cfg, write_cfg

tool = load_tool("extract_features")


def _arrays(store_dir):
    """{shard/file: array} of every .npy of a store."""
    return {f"{shard}/{name}": np.load(os.path.join(store_dir, shard, name))
            for shard in sorted(os.listdir(store_dir)) if shard.startswith("shard_")
            for name in os.listdir(os.path.join(store_dir, shard)) if name.endswith(".npy")}


def test_two_processes_write_the_one_process_store(egotoy_root, tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # spawned processes compute with one thread, as this one does
    yaml = write_cfg(tiny_cfg(egotoy_root, str(tmp_path / "out")), tmp_path / "tiny.yaml")
    single = tool.main(["--out", str(tmp_path / "single"), "--cfg", yaml, "FEATURES.SHARD_SIZE", "8",
                        "TEST.BATCH_SIZE", "2"])
    double = tool.main(["--cfg", yaml, "FEATURES.SHARD_SIZE", "8", "TEST.BATCH_SIZE", "4", "NUM_CPU_PROCS", "2",
                        "DIST.TIMEOUT_S", "120",
                        "FEW_SHOT.FEATURE_STORE", str(tmp_path / "double")])
    assert double == str(tmp_path / "double")
    assert sorted(os.listdir(double)) == [shard_name(s) for s in range(3)] + ["store.json"]
    a, b = _arrays(single), _arrays(double)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert FeatureStore(single).index_rows == FeatureStore(double).index_rows


def test_videos_of_a_folder_with_a_corrupt_one(egotoy_root, tmp_path):
    folder = tmp_path / "my_clips"
    frames = os.path.join(egotoy_root, "P05", "rgb_frames")
    for video, dest in (("P05_01", "a"), ("P05_02", os.path.join("nested", "b"))):
        shutil.copytree(os.path.join(frames, video), folder / dest)
    (folder / "broken.mp4").write_bytes(b"not a video")
    yaml = write_cfg(tiny_cfg(egotoy_root, str(tmp_path / "out")), tmp_path / "tiny.yaml")
    out = tool.main(["--videos", str(folder), "--out", str(tmp_path / "store"), "--cfg", yaml])
    store = FeatureStore(out)
    names = [os.path.join(str(folder), v) for v in ("a", "broken.mp4", os.path.join("nested", "b"))]
    assert store.identity["source"] == {"videos": names, "items": 3}
    assert [(r["item"], r["name"], r["label"]) for r in store.index_rows] == [(0, names[0], -1), (2, names[2], -1)]
    [failed] = store.failed
    assert failed["item"] == 1 and failed["path"] == names[1] and failed["reason"].startswith(names[1])
    assert store.views[0].index([0, 1]).frames.shape[:2] == (2, 4)  # 4 frames of the slow ResNet
    with open(os.path.join(out, "shard_00000", "index.json")) as f:
        assert json.load(f)["rows"][1]["path"] == names[2]
