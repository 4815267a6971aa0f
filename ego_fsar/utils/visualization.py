"""Drawing helpers (matplotlib, no display needed): clips as strips of frames, and a few-shot episode
as a grid of its support and query clips with the predicted classes marked right or wrong (or, for
queries without a known class, shown in the row of their predicted class)."""
from typing import List, Optional, Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode
from matplotlib.figure import Figure
from torch.utils.data import Dataset

CORRECT_COLOUR = "#1a9641"
WRONG_COLOUR = "#d7191c"
SUPPORT_COLOUR = "#9e9e9e"
UNLABELLED_COLOUR = "#2c7bb6"


def denormalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the input normalisation: float [C,T,H,W] -> uint8 RGB frames [T,H,W,C] of `clip * std + mean`
    (DATA.MEAN / DATA.STD, one value per channel), clipped to [0, 1] and scaled to 0..255."""
    if clip.dim() != 4 or clip.shape[0] != len(mean) or len(mean) != len(std):
        raise ValueError(f"expected a clip [C,T,H,W] with C = len(DATA.MEAN) = len(DATA.STD), got shape "
                         f"{tuple(clip.shape)}, {len(mean)} means and {len(std)} stds")
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
    frames = (clip.detach().float().cpu() * std_t + mean_t).clamp(0.0, 1.0)
    return (frames.permute(1, 2, 3, 0).numpy() * 255.0).round().astype(np.uint8)


def frame_strip(frames: np.ndarray, num: int, gap: int = 2) -> np.ndarray:
    """`num` evenly spaced frames of uint8 [T,H,W,C] side by side, `gap` white pixels apart:
    [H, num * W + (num - 1) * gap, C] (all T frames when T < num)."""
    if frames.ndim != 4 or num < 1:
        raise ValueError(f"expected frames [T,H,W,C] and num >= 1, got shape {frames.shape} and num {num}")
    picks = np.linspace(0, len(frames) - 1, min(num, len(frames))).round().astype(int)
    height, width, channels = frames.shape[1:]
    strip = np.full((height, len(picks) * (width + gap) - gap, channels), 255, np.uint8)
    for i, t in enumerate(picks):
        strip[:, i * (width + gap):i * (width + gap) + width] = frames[t]
    return strip


def clip_strip(cfg: CfgNode, dataset: Dataset, clip: int, num_frames: int) -> np.ndarray:
    """`num_frames` frames of the densest pathway of `dataset[clip]` (SlowFast's fast one), back in RGB
    order and denormalised with DATA.MEAN / DATA.STD, side by side (`frame_strip`)."""
    pathway = dataset[clip]["inputs"][-1]
    if cfg.DATA.REVERSE_INPUT_CHANNEL:
        pathway = pathway[[2, 1, 0]]
    return frame_strip(denormalize(pathway, cfg.DATA.MEAN, cfg.DATA.STD), num_frames)


def _frame_axes(ax, image: np.ndarray, colour: str, linewidth: float) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(linewidth)


def draw_episode(support: List[np.ndarray], support_labels: Sequence[int], query: List[np.ndarray],
                 query_labels: Optional[Sequence[int]], predictions: Sequence[int], class_names: Sequence[str],
                 title: str, cell_width: float = 2.0, query_titles: Optional[Sequence[str]] = None) -> Figure:
    """One row per class (labelled with its name): its support strips, then its query strips, each
    titled (default: the predicted class) and framed green (right) or red (wrong). Queries of unknown
    class (`query_labels` None) go in the row of their predicted class, framed blue.

    Strips are uint8 [H,W,3] images (e.g. `frame_strip`); labels and predictions are positions
    0..N-1 in `class_names`; `cell_width` is the width of one strip in inches."""
    n_way = len(class_names)
    labelled = query_labels is not None
    rows_of = query_labels if labelled else predictions
    titles = query_titles or [f"pred: {class_names[int(p)]}" for p in predictions]
    rows_support = [[s for s, y in zip(support, support_labels) if y == c] for c in range(n_way)]
    rows_query = [[(q, int(p), t) for q, y, p, t in zip(query, rows_of, predictions, titles) if y == c]
                  for c in range(n_way)]
    shots = max(len(r) for r in rows_support)
    queries = max(len(r) for r in rows_query)
    height, width = support[0].shape[:2]
    cell_height = cell_width * height / width
    if labelled:
        correct = sum(p == y for p, y in zip(predictions, query_labels))
        title = f"{title}\n{correct}/{len(query_labels)} queries right"
    left, right, bottom, row_gap, group_gap = 2.0, 0.2, 0.15, 0.4, 0.35
    top = 0.5 + 0.2 * (title.count("\n") + 1)
    fig_width = left + (shots + queries) * (cell_width + 0.1) + group_gap + right
    fig_height = top + n_way * (cell_height + row_gap) + bottom
    fig = Figure(figsize=(fig_width, fig_height))
    fig.suptitle(title, fontsize=10, y=1 - 0.1 / fig_height, va="top")
    grid = fig.add_gridspec(n_way, shots + queries + 1,
                            width_ratios=[cell_width] * shots + [group_gap] + [cell_width] * queries,
                            left=left / fig_width, right=1 - right / fig_width, top=1 - top / fig_height,
                            bottom=bottom / fig_height, wspace=0.1 / cell_width, hspace=row_gap / cell_height)
    for c, name in enumerate(class_names):
        for k, strip in enumerate(rows_support[c]):
            ax = fig.add_subplot(grid[c, k])
            _frame_axes(ax, strip, SUPPORT_COLOUR, 1.0)
            if k == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9, labelpad=8)
        for j, (strip, predicted, query_title) in enumerate(rows_query[c]):
            ax = fig.add_subplot(grid[c, shots + 1 + j])
            colour = UNLABELLED_COLOUR if not labelled else CORRECT_COLOUR if predicted == c else WRONG_COLOUR
            _frame_axes(ax, strip, colour, 2.5)
            ax.set_title(query_title, fontsize=7, color=colour, pad=2)
    header_y = 1 - (top - 0.22) / fig_height
    query_header = ("query: predicted class, green right / red wrong" if labelled
                    else "query (row = predicted class)")
    headers = ((0, "support (true class = row)"), (shots + 1, query_header))
    for column, text in headers:
        fig.text(grid[0, column].get_position(fig).x0, header_y, text, fontsize=9, va="bottom", weight="bold")
    return fig
