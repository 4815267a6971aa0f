"""Heads declaring EPISODE_BATCH score a batch of episodes in one call exactly as one call per episode."""
import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.models import BackboneOutput, build_head
from ego_fsar.models.heads.fewshot_utils import check_support_labels


def _output(frames: torch.Tensor) -> BackboneOutput:
    return BackboneOutput(pooled=frames.mean(-2), frames=frames)


@pytest.mark.parametrize("name,metric", [("ProtoNet", "cosine"), ("ProtoNet", "euclidean"), ("OTAM", "cosine")])
def test_batched_episodes_equal_one_call_per_episode(episode, name, metric):
    cfg = get_cfg()
    cfg.HEAD.NAME, cfg.HEAD.METRIC = name, metric
    head = build_head(cfg, in_dim=8)
    assert head.EPISODE_BATCH
    episodes = [episode(3, 2, 2, 4, 8, seed=seed) for seed in range(5)]
    single = torch.stack([head(_output(s), sl, _output(q), 3)["logits"] for s, sl, q, _ in episodes])
    support, labels, query, _ = (torch.stack(parts) for parts in zip(*episodes))
    batched = head(_output(support), labels, _output(query), 3)["logits"]
    assert batched.shape == (5, 6, 3)
    torch.testing.assert_close(batched, single)


def test_support_labels_are_checked_per_episode():
    check_support_labels(torch.tensor([[0, 1, 1], [1, 0, 0]]), 2)
    with pytest.raises(ValueError, match=r"every class 0\.\.1 at least once .*got \[1\]"):
        check_support_labels(torch.tensor([[0, 1, 1], [1, 1, 1]]), 2)
    with pytest.raises(ValueError, match=r"got \[0, 2\]"):
        check_support_labels(torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="integer tensor"):
        check_support_labels(torch.tensor([0.0, 1.0]), 2)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_reduced_clips_give_the_same_logits(episode, metric):
    cfg = get_cfg()
    cfg.HEAD.NAME, cfg.HEAD.METRIC = "ProtoNet", metric
    head = build_head(cfg, in_dim=8)
    support, labels, query, _ = episode(3, 2, 2, 4, 8)
    full = head(_output(support), labels, _output(query), 3)["logits"]
    reduced = head(head.reduce_clips(_output(support)), labels, head.reduce_clips(_output(query)), 3)["logits"]
    assert head.reduce_clips(_output(support)).frames.shape == (6, 1, 8)
    assert torch.equal(reduced, full)
