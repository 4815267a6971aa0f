"""Shared maths of the few-shot heads: class averaging, the reference cosine, OTAM alignment.

Support sets are never assumed sorted by class: everything here is indexed by `support_labels`.
Leading dimensions are episodes: support [E, S, ...] with labels [E, S] score E episodes at once.
"""
import torch
import torch.nn.functional as F

# Epsilon added to the product of norms in the OTAM/TRX/CLIP-FSAR `cos_sim`.
REFERENCE_COS_EPS = 0.01


def check_support_labels(labels: torch.Tensor, n_way: int) -> None:
    """Raise unless `labels` [..., S] is an integer tensor in which every episode (row) covers every
    class 0..n_way-1."""
    if labels.dim() < 1 or labels.dtype.is_floating_point:
        raise ValueError(f"support_labels: expected an integer tensor [..., S], got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    rows = labels.reshape(-1, labels.shape[-1]).long()
    counts = F.one_hot(rows.clamp(0, n_way - 1), n_way).sum(1)
    bad = ((rows < 0) | (rows >= n_way)).any(1) | (counts == 0).any(1)
    if bad.any():
        got = torch.unique(rows[bad.nonzero()[0, 0]]).tolist()
        raise ValueError(f"support_labels: expected every class 0..{n_way - 1} at least once (and no other), "
                         f"got {got}")


def class_weights(labels: torch.Tensor, n_way: int, dtype: torch.dtype) -> torch.Tensor:
    """[..., S, n_way] matrix whose column c averages the supports labelled c (labels [..., S])."""
    check_support_labels(labels, n_way)
    onehot = F.one_hot(labels.long(), n_way).to(dtype)
    return onehot / onehot.sum(-2, keepdim=True)


def class_average(values: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Mean over each class's supports of per-support scores: [..., Q, S] -> [..., Q, n_way] (labels
    [S], or [E, S] for values [E, Q, S] of E episodes)."""
    return values @ class_weights(labels, n_way, values.dtype)


def class_prototypes(x: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Mean support feature per class: x [..., S, *F] with labels [..., S] -> [..., n_way, *F]."""
    lead = labels.dim()
    protos = class_weights(labels, n_way, x.dtype).transpose(-1, -2) @ x.flatten(lead)
    return protos.view(*labels.shape[:-1], n_way, *x.shape[lead:])


def reference_cosine(x: torch.Tensor, y: torch.Tensor, eps: float = REFERENCE_COS_EPS) -> torch.Tensor:
    """x·y / (‖x‖‖y‖ + eps) between the rows of x [..., A, D] and y [..., B, D] -> [..., A, B]."""
    num = x @ y.transpose(-1, -2)
    den = x.norm(dim=-1).unsqueeze(-1) * y.norm(dim=-1).unsqueeze(-2) + eps
    return num / den


def mean_cosine_to_classes(query: torch.Tensor, support: torch.Tensor, labels: torch.Tensor,
                           n_way: int) -> torch.Tensor:
    """Cosine of each query [..., Q, D] to each support [..., S, D], averaged per class -> [..., Q, n_way]."""
    return class_average(reference_cosine(query, support), labels, n_way)


def neg_sq_euclidean_to_prototypes(query: torch.Tensor, support: torch.Tensor, labels: torch.Tensor,
                                   n_way: int) -> torch.Tensor:
    """−‖q − p_c‖² of queries [..., Q, D] to the class means p_c of support [..., S, D] -> [..., Q, n_way]."""
    protos = class_prototypes(support, labels, n_way)
    return -(query.unsqueeze(-2) - protos.unsqueeze(-3)).pow(2).sum(-1)


def _softmin(terms, lam: float) -> torch.Tensor:
    """−λ log Σ exp(−x/λ) over a list of equally shaped tensors (computed stably)."""
    return -lam * torch.logsumexp(-torch.stack(terms) / lam, dim=0)


def otam_cumulative_distance(dists: torch.Tensor, lam: float) -> torch.Tensor:
    """OTAM's one-directional alignment cost of frame distances [..., L, M] -> [...].

    As in the OTAM/TRX code: one zero column is padded on each side; the first row is a hard
    cumulative sum; later rows take a soft-min (temperature λ) over the diagonal and left
    neighbours, plus the cell above in the first real column and in the last (padded) column;
    the cost is the bottom-right cell. The soft-min is a log-sum-exp: equal to the reference's
    log(Σ exp) where that is finite, and finite where the reference's underflows.
    """
    d = F.pad(dists, (1, 1))
    width = d.shape[-1]
    prev = torch.cumsum(d[..., 0, :], dim=-1)
    for l in range(1, d.shape[-2]):
        row = [torch.zeros_like(prev[..., 0])]
        row.append(d[..., l, 1] + _softmin([prev[..., 0], prev[..., 1], row[0]], lam))
        for m in range(2, width - 1):
            row.append(d[..., l, m] + _softmin([prev[..., m - 1], row[m - 1]], lam))
        row.append(d[..., l, -1] + _softmin([prev[..., -2], prev[..., -1], row[-1]], lam))
        prev = torch.stack(row, dim=-1)
    return prev[..., -1]


def otam_distance(query: torch.Tensor, support: torch.Tensor, lam: float,
                  eps: float = REFERENCE_COS_EPS) -> torch.Tensor:
    """Symmetric OTAM distance of every query [..., Q, L, D] to every support [..., S, M, D] -> [..., Q, S].

    Frame distance 1 − reference cosine; OTAM(D) + OTAM(Dᵀ).
    """
    dists = 1 - reference_cosine(query.unsqueeze(-3), support.unsqueeze(-4), eps)
    return otam_cumulative_distance(dists, lam) + otam_cumulative_distance(dists.transpose(-1, -2), lam)
