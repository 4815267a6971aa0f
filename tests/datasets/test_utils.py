"""pack_pathway_output, named registries and the retry-on-bad-sample logic."""
import logging

import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.datasets.utils import (DecodeError, FailureTracker, NamedRegistry, SkippedItem, TooManyFailuresError,
                                     collate_skipping, load_with_retries, pack_pathway_output)


def test_pack_pathway_output_slowfast_and_single():
    cfg = get_cfg()
    frames = torch.arange(32).float().view(1, 32, 1, 1).expand(3, 32, 2, 2)
    cfg.MODEL.ARCH, cfg.SLOWFAST.ALPHA = "slowfast", 4
    slow, fast = pack_pathway_output(cfg, frames)
    assert fast is frames and slow.shape == (3, 8, 2, 2)
    # PySlowFast: linspace(0, T - 1, T // alpha).long()
    assert slow[0, :, 0, 0].tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    cfg.MODEL.ARCH = "slow"
    (only,) = pack_pathway_output(cfg, frames)
    assert only is frames


def test_pack_pathway_output_errors():
    cfg = get_cfg()
    cfg.MODEL.ARCH = "transformer"
    with pytest.raises(ValueError, match="SINGLE_PATHWAY_ARCH"):
        pack_pathway_output(cfg, torch.zeros(3, 8, 2, 2))
    cfg.MODEL.ARCH, cfg.SLOWFAST.ALPHA = "slowfast", 8
    with pytest.raises(ValueError, match="ALPHA"):
        pack_pathway_output(cfg, torch.zeros(3, 4, 2, 2))


def test_named_registry():
    reg = NamedRegistry("DATA.THING")
    reg.register("a")(len)
    assert reg.get("a") is len and reg.names() == ["a"]
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a")(max)
    with pytest.raises(KeyError, match=r"DATA.THING must be one of \['a'\], got 'b'"):
        reg.get("b")


def _loader(bad):
    """load(i): an item for i, or DecodeError for i in `bad` (path clip<i>.mp4)."""
    def load(i):
        if i in bad:
            raise DecodeError(f"clip{i}.mp4", "corrupt")
        return {"index": i, "label": 10 * i, "meta": {}}
    return load


def test_retry_with_substitute_logs_counts_and_keeps_labels(caplog):
    failures = FailureTracker(max_failures=10)
    subs = iter([3, 5])
    with caplog.at_level(logging.WARNING):
        item = load_with_retries(_loader({1, 3}), 1, failures, max_retries=3, substitute=lambda: next(subs))
    assert item == {"index": 5, "label": 50, "meta": {"skipped": 2}}
    assert failures.paths == ["clip1.mp4", "clip3.mp4"]
    assert "clip1.mp4" in caplog.text and "clip3.mp4" in caplog.text
    assert load_with_retries(_loader(set()), 2, failures, 3)["meta"]["skipped"] == 0


def test_retry_with_substitute_gives_up_after_max_retries_naming_the_paths():
    failures = FailureTracker(max_failures=100)
    subs = iter([2, 3])
    with pytest.raises(DecodeError, match="after 3 attempts; failed: clip1.mp4, clip2.mp4, clip3.mp4$"):
        load_with_retries(_loader({1, 2, 3}), 1, failures, max_retries=2, substitute=lambda: next(subs))
    assert len(failures) == 3


def test_evaluation_retries_the_same_sample_then_skips_it_as_one_failure(caplog):
    failures = FailureTracker(max_failures=100)
    attempts = []

    def load(i):
        attempts.append(i)
        return _loader({4} if len(attempts) < 4 else set())(i)

    with caplog.at_level(logging.WARNING):
        assert load_with_retries(load, 4, failures, max_retries=2) == SkippedItem(4, "clip4.mp4")
    assert attempts == [4, 4, 4] and failures.paths == ["clip4.mp4"] and "clip4.mp4" in caplog.text
    # A sample that reads on a retry is used as is: nothing replaced, nothing recorded.
    assert load_with_retries(load, 4, failures, max_retries=2) == {"index": 4, "label": 40, "meta": {"skipped": 0}}
    assert failures.paths == ["clip4.mp4"]


def test_collate_skipping_drops_markers_and_counts_them():
    items = [{"index": i, "label": 10 * i, "meta": {"skipped": s}} for i, s in ((0, 0), (2, 1))]
    batch = collate_skipping([items[0], SkippedItem(1, "clip1.mp4"), items[1]])
    assert batch["index"].tolist() == [0, 2] and batch["label"].tolist() == [0, 20]
    assert batch["skipped"] == 2  # one dropped here, one replaced while loading item 2
    assert collate_skipping([SkippedItem(1, "a"), SkippedItem(3, "b")]) == {"skipped": 2}


def test_too_many_failures_raise_with_all_paths():
    failures = FailureTracker(max_failures=2)
    subs = iter([2, 3, 4])
    with pytest.raises(TooManyFailuresError, match="clip1.mp4, clip2.mp4, clip3.mp4"):
        load_with_retries(_loader({1, 2, 3}), 1, failures, max_retries=10, substitute=lambda: next(subs))
    failures.reset()
    assert len(failures) == 0
