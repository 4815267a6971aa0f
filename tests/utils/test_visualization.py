"""ego_fsar.utils.visualization: denormalising clips, frame strips and the episode figure."""
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from ego_fsar.utils.visualization import (CORRECT_COLOUR, UNLABELLED_COLOUR, WRONG_COLOUR, denormalize,
                                          draw_episode, frame_strip)


def test_denormalize_inverts_the_input_normalisation():
    frames = torch.randint(0, 256, (5, 6, 7, 3), dtype=torch.uint8)  # [T,H,W,C]
    mean, std = [0.45, 0.4, 0.35], [0.225, 0.25, 0.2]
    clip = ((frames.float() / 255 - torch.tensor(mean)) / torch.tensor(std)).permute(3, 0, 1, 2)  # [C,T,H,W]
    np.testing.assert_array_equal(denormalize(clip, mean, std), frames.numpy())


def test_denormalize_needs_one_mean_per_channel():
    with pytest.raises(ValueError, match="DATA.MEAN"):
        denormalize(torch.zeros(2, 4, 8, 8), [0.45] * 3, [0.225] * 3)


def test_frame_strip_picks_evenly_spaced_frames():
    frames = np.stack([np.full((4, 5, 3), t, np.uint8) for t in range(8)])
    strip = frame_strip(frames, 3, gap=2)
    assert strip.shape == (4, 3 * 5 + 2 * 2, 3)
    assert [strip[0, x, 0] for x in (0, 7, 14)] == [0, 4, 7]  # frames 0, 3.5 -> 4, 7
    assert (strip[:, 5:7] == 255).all()
    assert frame_strip(frames[:2], 4).shape == (4, 2 * 5 + 2, 3)


def test_episode_figure_marks_right_and_wrong_queries():
    strip = np.zeros((8, 20, 3), np.uint8)
    fig = draw_episode([strip] * 4, [0, 0, 1, 1], [strip] * 2, [0, 1], predictions=[0, 0],
                       class_names=["left-then-up", "up-then-left"], title="test")
    axes = fig.axes
    assert len(axes) == 6
    query_titles = [(ax.get_title(), ax.title.get_color()) for ax in axes if ax.get_title()]
    assert query_titles == [("pred: left-then-up", CORRECT_COLOUR), ("pred: left-then-up", WRONG_COLOUR)]
    assert [ax.get_ylabel() for ax in axes if ax.get_ylabel()] == ["left-then-up", "up-then-left"]
    assert to_rgba(axes[-1].spines["top"].get_edgecolor()) == to_rgba(WRONG_COLOUR)
    assert "1/2 queries right" in fig._suptitle.get_text()


def test_unlabelled_queries_go_in_the_row_of_their_prediction():
    support, query = np.zeros((8, 20, 3), np.uint8), np.full((8, 20, 3), 255, np.uint8)
    fig = draw_episode([support] * 2, [0, 1], [query] * 3, None, predictions=[1, 1, 0], class_names=["a", "b"],
                       title="demo", query_titles=["q0: b 60%", "q1: b 90%", "q2: a 51%"])
    rows = {}
    for ax in fig.axes:
        if ax.get_title():
            assert ax.title.get_color() == UNLABELLED_COLOUR
            rows.setdefault(ax.get_subplotspec().rowspan.start, []).append(ax.get_title())
    assert rows == {0: ["q2: a 51%"], 1: ["q0: b 60%", "q1: b 90%"]}
    assert "queries right" not in fig._suptitle.get_text()
