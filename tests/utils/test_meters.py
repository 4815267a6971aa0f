import math
import re

import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.utils import meters, video_meter
from ego_fsar.utils.episode_meter import EpisodeMeter
from ego_fsar.utils.meters import TrainMeter, ValMeter

ETA = re.compile(r"^\d+:\d{2}:\d{2}$")
RAM = re.compile(r"^\d+\.\d{2}/\d+\.\d{2}G$")


@pytest.fixture
def logged(monkeypatch):
    """The stats dicts the meters log, with CUDA forbidden (NUM_GPUS 0)."""
    out = []
    for module in (meters, video_meter):
        monkeypatch.setattr(module, "log_json_stats", out.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: pytest.fail("CUDA queried with NUM_GPUS 0"))
    return out


def _cfg(log_period=2, max_epoch=3):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.LOG_PERIOD = log_period
    cfg.SOLVER.MAX_EPOCH = max_epoch
    return cfg


def _iterate(meter, cur_iter, cur_epoch, **stats):
    meter.iter_tic()
    meter.data_toc()
    meter.update_stats(**stats)
    meter.iter_toc()
    return meter.log_iter_stats(cur_epoch, cur_iter)


def test_train_meter_iter_and_epoch_stats(logged):
    meter = TrainMeter(epoch_iters=4, cfg=_cfg())
    batches = [(10.0, 20.0, 1.0, 2), (30.0, 40.0, 3.0, 2), (50.0, 60.0, 5.0, 4), (70.0, 80.0, 9.0, 8)]
    results = [_iterate(meter, i, 1, top1_err=t1, top5_err=t5, loss=loss, lr=0.1 * (i + 1), mb_size=mb)
               for i, (t1, t5, loss, mb) in enumerate(batches)]
    assert results[0] is None and results[2] is None
    it = results[3]
    assert it is logged[-1]
    assert it["_type"] == "train_iter" and it["epoch"] == "2/3" and it["iter"] == "4/4"
    assert it["loss"] == pytest.approx(7.0) and it["top1_err"] == pytest.approx(60.0)
    assert it["lr"] == pytest.approx(0.4)
    assert ETA.match(it["eta"]) and RAM.match(it["RAM"]) and it["gpu_mem"] == "0.00G"
    assert {"dt", "dt_data", "dt_net", "top5_err"} <= set(it)
    epoch = meter.log_epoch_stats(1)
    assert epoch is logged[-1] and epoch["_type"] == "train_epoch" and epoch["epoch"] == "2/3"
    assert epoch["loss"] == pytest.approx((2 + 6 + 20 + 72) / 16)
    assert epoch["top1_err"] == pytest.approx((20 + 60 + 200 + 560) / 16)
    assert epoch["top5_err"] == pytest.approx((40 + 80 + 240 + 640) / 16)
    assert ETA.match(epoch["eta"]) and RAM.match(epoch["RAM"])
    meter.reset()
    with pytest.raises(RuntimeError, match="before any update_stats"):
        meter.log_epoch_stats(2)


def test_train_meter_none_errors_and_task_errors(logged):
    meter = TrainMeter(epoch_iters=2, cfg=_cfg(log_period=1))
    it = _iterate(meter, 0, 0, top1_err=None, top5_err=None, loss=2.0, lr=0.1, mb_size=2,
                  extra_stats={"verb_top1_err": 50.0, "action_top1_err": torch.tensor(75.0), "grad_norm": None})
    assert "top1_err" not in it and "grad_norm" not in it
    assert it["verb_top1_err"] == 50.0 and it["action_top1_err"] == 75.0
    assert meter.log_epoch_stats(0)["verb_top1_err"] == 50.0


def test_val_meter_tracks_minimum_errors(logged):
    meter = ValMeter(max_iter=2, cfg=_cfg())
    for epoch, (errs, sizes) in enumerate([((40.0, 20.0), (1, 3)), ((100.0, 50.0), (2, 2)), ((10.0, 10.0), (1, 1))]):
        meter.reset()
        for i, (err, mb) in enumerate(zip(errs, sizes)):
            _iterate(meter, i, epoch, top1_err=err, top5_err=err / 2, mb_size=mb)
        stats = meter.log_epoch_stats(epoch)
        assert stats is logged[-1] and stats["_type"] == "val_epoch"
        if epoch == 0:
            assert logged[-2]["_type"] == "val_iter"
            assert stats["top1_err"] == pytest.approx(25.0) and stats["min_top1_err"] == pytest.approx(25.0)
        if epoch == 1:
            assert stats["top1_err"] == pytest.approx(75.0) and stats["min_top1_err"] == pytest.approx(25.0)
    assert stats["min_top1_err"] == pytest.approx(10.0) and stats["min_top5_err"] == pytest.approx(5.0)
    assert stats["gpu_mem"] == "0.00G" and RAM.match(stats["RAM"])


def test_val_meter_multi_label_map(logged):
    cfg = _cfg()
    cfg.DATA.MULTI_LABEL = True
    meter = ValMeter(max_iter=1, cfg=cfg)
    meter.update_stats(None, None, mb_size=2)
    meter.update_predictions(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[1, 0], [0, 1]]))
    assert meter.log_epoch_stats(0)["map"] == pytest.approx(100.0)


# Two videos, two clips each; clip ids 0, 1 -> video 0 (label 1) and 2, 3 -> video 1 (label 0).
CLIP_IDS = torch.tensor([0, 1, 2, 3])
CLIP_PREDS = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.6, 0.4], [0.8, 0.1, 0.1], [0.2, 0.1, 0.7]])
CLIP_LABELS = torch.tensor([1, 1, 0, 0])


@pytest.mark.parametrize("method,video_preds,top1", [
    ("sum", [[0.7, 0.9, 0.4], [1.0, 0.2, 0.8]], 100.0),
    ("max", [[0.7, 0.6, 0.4], [0.8, 0.1, 0.7]], 50.0),
])
def test_test_meter_sum_vs_max(method, video_preds, top1, logged):
    meter = video_meter.TestMeter(num_videos=2, num_clips=2, num_cls=3, ensemble_method=method)
    order = torch.tensor([3, 0, 2, 1])
    meter.update_stats(CLIP_PREDS[order[:3]], CLIP_LABELS[order[:3]], CLIP_IDS[order[:3]])
    meter.update_stats(CLIP_PREDS[order[3:]], CLIP_LABELS[order[3:]], CLIP_IDS[order[3:]])
    ensemble = meter.tasks["logits"]
    assert torch.allclose(ensemble.video_preds, torch.tensor(video_preds))
    assert ensemble.clip_count.tolist() == [2, 2] and ensemble.video_labels.tolist() == [1, 0]
    stats = meter.finalize_metrics(ks=(1, 2))
    assert stats is logged[-1]
    assert stats == {"_type": "test_final", "top1_acc": pytest.approx(top1), "top2_acc": pytest.approx(100.0),
                     "videos_evaluated": 2, "videos_skipped": 0, "clips_skipped": 0}


def test_test_meter_max_handles_negative_logits(logged):
    meter = video_meter.TestMeter(num_videos=1, num_clips=2, num_cls=2, ensemble_method="max")
    meter.update_stats({"logits": torch.tensor([[-3.0, -1.0], [-2.0, -4.0]])}, torch.tensor([1, 1]), CLIP_IDS[:2])
    assert torch.equal(meter.tasks["logits"].video_preds, torch.tensor([[-2.0, -1.0]]))
    assert meter.finalize_metrics(ks=(1,))["top1_acc"] == 100.0


@pytest.mark.parametrize("num_cls", [{"verb": 2, "noun": 3}, [2, 3]])
def test_test_meter_epic_verb_noun_action(num_cls, logged):
    # video 0: verb and noun right; video 1: verb right, noun second; video 2: verb second, noun right.
    meter = video_meter.TestMeter(num_videos=3, num_clips=2, num_cls=num_cls)
    verb = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]).repeat_interleave(2, 0)
    noun = torch.tensor([[0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.0, 0.0, 1.0]]).repeat_interleave(2, 0)
    labels = {"verb": torch.tensor([0, 0, 1]), "noun": torch.tensor([1, 1, 2])}
    labels = {k: v.repeat_interleave(2) for k, v in labels.items()}
    meter.update_stats({"verb": verb, "noun": noun, "embeddings": torch.zeros(6, 5)}, labels, torch.arange(6))
    stats = meter.finalize_metrics(ks=(1, 2))
    assert stats["verb_top1_acc"] == pytest.approx(200 / 3) and stats["noun_top1_acc"] == pytest.approx(200 / 3)
    assert stats["action_top1_acc"] == pytest.approx(100 / 3) and stats["action_top2_acc"] == 100.0
    # Per class: verb 0 (videos 0, 1) both right, verb 1 (video 2) wrong; noun 1 (videos 0, 1) one right.
    assert meter.per_class_results() == {"verb": {0: {"videos": 2, "top1": 100.0}, 1: {"videos": 1, "top1": 0.0}},
                                         "noun": {1: {"videos": 2, "top1": 50.0}, 2: {"videos": 1, "top1": 100.0}}}


def test_test_meter_multi_label_map(logged):
    meter = video_meter.TestMeter(num_videos=2, num_clips=1, num_cls=2, ensemble_method="max", multi_label=True)
    meter.update_stats(torch.tensor([[0.9, 0.2], [0.3, 0.7]]), torch.tensor([[1, 0], [0, 1]]), torch.tensor([0, 1]))
    assert meter.finalize_metrics()["map"] == pytest.approx(100.0)
    assert meter.per_class_results() == {0: {"videos": 1, "ap": 100.0}, 1: {"videos": 1, "ap": 100.0}}


@pytest.mark.parametrize("method,top1", [("sum", 50.0), ("max", 0.0)])
def test_test_meter_scores_videos_on_the_clips_they_got(method, top1, logged):
    """Video 0 gets both clips, video 1 one (its other clip unreadable), video 2 none (both unreadable)."""
    meter = video_meter.TestMeter(num_videos=3, num_clips=2, num_cls=3, ensemble_method=method)
    meter.update_stats(CLIP_PREDS[:3], torch.tensor([1, 1, 2]), torch.tensor([0, 1, 2]))
    meter.add_skipped(3)
    stats = meter.finalize_metrics(ks=(1,))
    # video 0 (label 1): [0.7, 0.9, 0.4] (sum: right) or [0.7, 0.6, 0.4] (max: wrong); video 1 (label 2):
    # [0.8, 0.1, 0.1], wrong. Video 2 is left out (scored, its empty scores would "predict" its unset label 0).
    assert stats == {"_type": "test_final", "top1_acc": pytest.approx(top1), "videos_evaluated": 2,
                     "videos_skipped": 1, "clips_skipped": 3} and stats is logged[-1]
    scores, labels = meter.video_results()
    expected = {"sum": [[0.7, 0.9, 0.4], [1.6, 0.2, 0.2]], "max": [[0.7, 0.6, 0.4], [0.8, 0.1, 0.1]]}[method]
    assert torch.allclose(scores[:2], torch.tensor(expected)) and scores[2].isnan().all()
    assert labels.tolist() == [1, 2, -1]


def test_test_meter_video_results_of_verb_noun_labels():
    meter = video_meter.TestMeter(num_videos=2, num_clips=1, num_cls=[2, 3])
    meter.update_stats({"verb": torch.ones(1, 2), "noun": torch.ones(1, 3)},
                       {"verb": torch.tensor([1]), "noun": torch.tensor([2])}, torch.tensor([1]))
    scores, labels = meter.video_results()
    assert {k: tuple(v.shape) for k, v in scores.items()} == {"verb": (2, 2), "noun": (2, 3)}
    assert {k: v.tolist() for k, v in labels.items()} == {"verb": [-1, 1], "noun": [-1, 2]}


def test_test_meter_rejects_inconsistent_inputs():
    meter = video_meter.TestMeter(num_videos=2, num_clips=2, num_cls=3)
    meter.update_stats(CLIP_PREDS[:1], torch.tensor([1]), CLIP_IDS[:1])
    with pytest.raises(ValueError, match="different labels"):
        meter.update_stats(CLIP_PREDS[1:2], torch.tensor([2]), CLIP_IDS[1:2])
    with pytest.raises(ValueError, match="different labels"):
        meter.update_stats(CLIP_PREDS[2:], torch.tensor([0, 1]), CLIP_IDS[2:])
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        meter.update_stats(CLIP_PREDS[2:, :2], torch.tensor([0, 0]), CLIP_IDS[2:])
    with pytest.raises(KeyError, match="tasks"):
        meter.update_stats({"verb": CLIP_PREDS}, {"verb": torch.zeros(4, dtype=torch.long)}, CLIP_IDS)
    with pytest.raises(KeyError, match="num_cls"):
        video_meter.TestMeter(num_videos=2, num_clips=2, num_cls=[3, 4]).update_stats(CLIP_PREDS, CLIP_LABELS, CLIP_IDS)
    with pytest.raises(RuntimeError, match="before any update_stats"):
        video_meter.TestMeter(num_videos=2, num_clips=2, num_cls=3).finalize_metrics()
    with pytest.raises(ValueError, match="DATA.ENSEMBLE_METHOD"):
        video_meter.TestMeter(num_videos=1, num_clips=1, num_cls=2, ensemble_method="mean")


def test_episode_meter_mean_and_ci95():
    meter = EpisodeMeter(way=5, shot=1, query=1)
    meter.update(1.0)
    meter.update([0.5, torch.tensor(0.75)])
    meter.update(torch.tensor([0.75]))
    summary = meter.summary()
    std = math.sqrt((25.0**2 + 25.0**2) / 4)  # population std of 100, 50, 75, 75
    assert summary == {"_type": "fewshot_test", "acc": pytest.approx(75.0), "ci95": pytest.approx(1.96 * std / 2),
                       "episodes": 4, "way": 5, "shot": 1, "query": 1}
    assert meter.accuracies == [1.0, 0.5, 0.75, 0.75]


def test_episode_meter_rejects_percentages_and_empty_summary():
    meter = EpisodeMeter(way=5, shot=5, query=1)
    with pytest.raises(RuntimeError, match="before any update"):
        meter.summary()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        meter.update(80.0)


class _Clock:
    """A fake `perf_counter` that the test advances by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("meter_cls", [TrainMeter, ValMeter])
def test_epoch_record_holds_true_iteration_times_and_eta(logged, monkeypatch, meter_cls):
    """dt / dt_data / dt_net are seconds per iteration (epoch means), eta the epoch mean dt times the
    iterations left: 4 iterations of 0.5 s loading + 1.5 s network, in epoch 1 of 3."""
    clock = _Clock()
    monkeypatch.setattr("fvcore.common.timer.perf_counter", clock)
    meter = meter_cls(4, _cfg(log_period=2, max_epoch=3))
    stats = dict(top1_err=10.0, top5_err=0.0, mb_size=2)
    if meter_cls is TrainMeter:
        stats.update(loss=1.0, lr=0.1)
    meter.iter_tic()  # as the train and val loops call them
    for cur_iter in range(4):
        clock.now += 0.5
        meter.data_toc()
        clock.now += 1.5
        meter.iter_toc()
        meter.update_stats(**stats)
        meter.log_iter_stats(0, cur_iter)
        meter.iter_tic()
    it = logged[-1]
    assert (it["dt"], it["dt_data"], it["dt_net"]) == pytest.approx((2.0, 0.5, 1.5))
    clock.now += 60.0  # between epochs: not an iteration
    epoch = meter.log_epoch_stats(0)
    assert (epoch["dt"], epoch["dt_data"], epoch["dt_net"]) == pytest.approx((2.0, 0.5, 1.5))
    if meter_cls is TrainMeter:
        assert it["eta"] == "0:00:16" and epoch["eta"] == "0:00:16"  # 8 iterations left x 2 s
    else:
        assert it["eta"] == "0:00:00"
