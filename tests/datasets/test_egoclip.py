"""EgoClip / EgoMCQ readers: chunked clips (a clip spanning two chunks reads both), malformed rows name
file and line, missing chunks are replaced and counted, scene-aware negatives come from the same video
window; and the EgoToy EgoClip/EgoMCQ writer."""
import csv
import json
import os

import numpy as np
import pytest

from ego_fsar.config import get_cfg
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.egoclip import EGOCLIP_COLUMNS, read_egoclip
from ego_fsar.datasets.egotoy_writer import write_video
from ego_fsar.datasets.egomcq import read_egomcq
from ego_fsar.datasets.utils import AnnotationError, SkippedItem, collate_skipping
from tests.egotoy_egoclip import egotoy_egoclip_root  # noqa: F401 (fixture)

FPS = 10


def egoclip_cfg(root: str):
    cfg = get_cfg()
    cfg.DATA.PATH_PREFIX = os.path.join(root, "videos")
    cfg.DATA.PATH_TO_DATA_DIR = os.path.join(root, "annotations")
    cfg.DATA.DECODING_BACKEND = "pyav"
    cfg.DATA.NUM_FRAMES, cfg.DATA.INPUT_CHANNEL_NUM, cfg.MODEL.ARCH = 4, [3], "vit"
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 32], 32, 32
    cfg.DATA.MEAN, cfg.DATA.STD = [0.0] * 3, [1.0] * 3
    cfg.EGOVLP.CHUNK_SEC, cfg.EGOVLP.NUM_VERBS, cfg.EGOVLP.NUM_NOUNS = 1.0, 4, 4
    cfg.DATA_LOADER.NUM_WORKERS, cfg.DATA_LOADER.MAX_RETRIES = 0, 2
    return cfg


def _row(i, video, start, end, verbs="[0]", nouns="[1]"):
    return [i, video, 10.0, "narration_pass_1", i, (start + end) / 2, start, end, f"#C C does thing {i}", verbs, nouns]


def write_egoclip(root, rows):
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", "egoclip.csv"), "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(EGOCLIP_COLUMNS)
        writer.writerows(rows)


def write_chunks(root, video, levels):
    """Chunks 0.mp4, 1.mp4, ... of 1 s at 10 fps, chunk k a flat grey `levels[k]`."""
    os.makedirs(os.path.join(root, "videos", video), exist_ok=True)
    for k, level in enumerate(levels):
        write_video(os.path.join(root, "videos", video, f"{k}.mp4"), np.full((FPS, 32, 32, 3), level, np.uint8), FPS)


def test_clip_spanning_two_chunks_reads_both(tmp_path):
    write_chunks(tmp_path, "vid", [40, 210])
    write_egoclip(tmp_path, [_row(0, "vid", 0.6, 1.4)])
    cfg = egoclip_cfg(str(tmp_path))
    item = build_dataset("egoclip", cfg, "val")[0]  # centre times 0.7, 0.9 | 1.1, 1.3
    means = item["inputs"][0].mean((0, 2, 3)) * 255
    assert np.allclose(means.numpy(), [40, 40, 210, 210], atol=6)
    assert item["text"] == "#C C does thing 0" and item["verb_multi_hot"].tolist() == [1, 0, 0, 0]
    assert item["noun_multi_hot"].tolist() == [0, 1, 0, 0] and "label" not in item


def test_malformed_rows_name_file_and_line(tmp_path):
    path = os.path.join(tmp_path, "annotations", "egoclip.csv")
    write_egoclip(tmp_path, [_row(0, "vid", 0.0, 1.0), _row(1, "vid", 0.0, 1.0, verbs="[9]")])
    with pytest.raises(AnnotationError, match=f"{path}, line 3: tag_verb must be a list of ids in 0..3"):
        read_egoclip(path, 4, 4)
    write_egoclip(tmp_path, [_row(0, "vid", 0.0, 1.0)[:5]])
    with pytest.raises(AnnotationError, match=f"{path}, line 2: 5 fields, expected 11"):
        read_egoclip(path, 4, 4)


def test_missing_chunk_is_replaced_at_training_and_skipped_otherwise(tmp_path):
    write_chunks(tmp_path, "vid", [100])
    write_egoclip(tmp_path, [_row(0, "vid", 0.1, 0.5), _row(1, "gone", 0.1, 0.5)])
    cfg = egoclip_cfg(str(tmp_path))
    train = build_dataset("egoclip", cfg, "train")
    np.random.seed(0)
    item = train[1]
    assert item["index"] == 0 and item["meta"]["skipped"] >= 1
    assert any(p.endswith(os.path.join("gone", "0.mp4")) for p in train.failures.paths)
    val = build_dataset("egoclip", cfg, "val")
    batch = collate_skipping([val[0], val[1]])
    assert isinstance(val[1], SkippedItem) and batch["skipped"] == 1 and len(batch["text"]) == 1


def test_scene_aware_negatives_come_from_the_same_video_window(tmp_path):
    write_chunks(tmp_path, "a", [60] * 10)
    write_chunks(tmp_path, "b", [180])
    rows = [_row(i, "a", s, s + 0.4) for i, s in enumerate([0.0, 1.0, 2.0, 6.0, 9.0])] + [_row(5, "b", 0.0, 0.4)]
    write_egoclip(tmp_path, rows)
    cfg = egoclip_cfg(str(tmp_path))
    cfg.EGOVLP.NEG_WINDOW = 1.5
    dataset = build_dataset("egoclip", cfg, "train")
    rng = np.random.RandomState(0)
    assert {dataset.negative_index(1, rng) for _ in range(50)} == {0, 2}  # within 1.5 s, same video, not itself
    assert {dataset.negative_index(4, rng) for _ in range(50)} == {0, 1, 2, 3}  # none in the window: same video
    item = dataset[0]
    assert item["negative"]["inputs"][0].shape == item["inputs"][0].shape
    assert item["negative"]["text"] in {"#C C does thing 1"}


def test_egomcq_reader_checks_questions(tmp_path):
    clip = {"video_uid": "v", "clip_start": 0.0, "clip_end": 0.5, "clip_text": "x"}
    good = {"query": clip, "choices": {str(k): clip for k in range(5)}, "answer": 2, "types": 2}
    path = tmp_path / "mcq.json"
    path.write_text(json.dumps({"0": good, "1": dict(good, answer=7)}))
    with pytest.raises(AnnotationError, match=f"{path}, question '1': .*answer 7"):
        read_egomcq(str(path))
    path.write_text(json.dumps({"0": good}))
    (question,) = read_egomcq(str(path))
    assert question.answer == 2 and question.type == 2 and len(question.choices) == 5


def test_egotoy_egoclip_files_read_back(egotoy_egoclip_root):
    cfg = egoclip_cfg(egotoy_egoclip_root)
    cfg.EGOVLP.CHUNK_SEC, cfg.EGOVLP.NUM_VERBS, cfg.EGOVLP.NUM_NOUNS = 1.0, 8, 10
    clips = build_dataset("egoclip", cfg, "train")
    assert len(clips) == 16 and clips[0]["verb_multi_hot"].sum() == 2 and clips[0]["noun_multi_hot"].sum() == 1
    mcq = build_dataset("egomcq", cfg, "test")
    item = mcq[0]
    assert item["inputs"][0].shape == (5, 3, 4, 32, 32)
    types = {q.type for q in mcq.questions}
    assert types == {1, 2}
    for q in mcq.questions:
        videos = {c[0] for c in q.choices}
        assert len(videos) == (5 if q.type == 1 else 1)
