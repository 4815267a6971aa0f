"""Synthetic few-shot episodes and a short meta-training run shared by the head tests."""
from typing import Callable, Dict, Iterator, List, Tuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

Episode = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def synthetic_episode(n_way: int, shot: int, n_query: int, t: int, d: int, generator: torch.Generator,
                      noise: float = 0.3, distractor: float = 0.0) -> Episode:
    """Classes are random frame sequences in the first d/2 channels; the other d/2 carry noise.

    Support is shuffled (not sorted by class). Returns support [N*K, T, D], support_labels,
    query [N*Q, T, D], query_labels.
    """
    half = d // 2
    protos = torch.randn(n_way, t, half, generator=generator)

    def clips(labels):
        signal = protos[labels] + noise * torch.randn(len(labels), t, half, generator=generator)
        junk = distractor * torch.randn(len(labels), t, d - half, generator=generator)
        return torch.cat([signal, junk], dim=-1)

    s_labels = torch.arange(n_way).repeat(shot)[torch.randperm(n_way * shot, generator=generator)]
    q_labels = torch.arange(n_way).repeat_interleave(n_query)
    return clips(s_labels), s_labels, clips(q_labels), q_labels


@pytest.fixture
def episode() -> Callable[..., Episode]:
    """`episode(n_way, shot, n_query, t, d, seed=0, **kw)` -> a synthetic episode."""

    def make(n_way, shot, n_query, t, d, seed=0, **kw):
        return synthetic_episode(n_way, shot, n_query, t, d, torch.Generator().manual_seed(seed), **kw)

    return make


def total_loss(out: Dict[str, torch.Tensor], q_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on logits plus every `loss_*` entry (weights 1), as the engine sums them."""
    return F.cross_entropy(out["logits"], q_labels) + sum(v for k, v in out.items() if k.startswith("loss_"))


def _meta_train(head: nn.Module, d: int, steps: int = 60, n_way: int = 3, shot: int = 2, t: int = 4,
               to_input: Callable[[torch.Tensor], object] = lambda x: x, lr: float = 1e-2,
               **call_kw) -> List[float]:
    """Train a linear embedding plus `head` on episodes whose distractor channels dominate.

    Returns the loss of every step; the embedding must learn to suppress the distractors.
    """
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    embed = nn.Linear(d, d)
    opt = torch.optim.Adam(list(embed.parameters()) + list(head.parameters()), lr=lr)
    head.train()
    losses = []
    for _ in range(steps):
        s, s_lab, q, q_lab = synthetic_episode(n_way, shot, 2, t, d, g, noise=0.3, distractor=3.0)
        out = head(to_input(embed(s)), s_lab, to_input(embed(q)), n_way, **call_kw)
        loss = total_loss(out, q_lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _mean_first_last(losses: List[float], k: int = 10) -> Tuple[float, float]:
    """Mean of the first and of the last `k` losses."""
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


@pytest.fixture
def loss_falls() -> Iterator[Callable[..., Tuple[float, float]]]:
    """`loss_falls(head, d, **kw)` -> (mean first, mean last) losses of a short meta-training."""

    def run(head, d, **kw):
        return _mean_first_last(_meta_train(head, d, **kw))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only contend for the shared cores
    yield run
    torch.set_num_threads(threads)
