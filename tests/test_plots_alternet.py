"""Tests of lib.plots.alternet: Chapter 4's figures from tidy frames."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lib import differences, plots  # noqa: E402


def test_build_up_draws_ours_beside_the_papers_configurations():
    ours = pd.DataFrame({"label": ["no MSA (pre-activation ResNet)", "MSAs (0, 0, 0, 1)", "MSAs (0, 1, 1, 2)"],
                         "role": ["preresnet", "alternet", "alternet"], "accuracy (%)": [70.0, 71.0, 73.0]})
    fig = plots.build_up(ours, differences.paper_build_up())
    assert [ax.get_title() for ax in fig.axes] == ["ours", "paper (CIFAR-100, 305 epochs)"]
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["none", "0,0,0,1", "0,1,1,2"]
    assert len(fig.axes[1].collections[0].get_offsets()) == 3  # only the configurations we trained
    plt.close(fig)


def test_accuracy_by_fraction_has_one_line_per_model_and_a_gap_panel():
    summary = pd.DataFrame({"role": ["alternet", "preresnet", "vit"] * 2, "fraction": [0.1] * 3 + [1.0] * 3,
                            "mean": [60, 58, 40, 85, 80, 80.0], "std": [1, 1, 2, 0.5, 0.5, float("nan")], "seeds": [3] * 3 + [2] * 3})
    gaps = pd.DataFrame({"fraction": [0.1, 1.0], "mean": [2.0, 5.0], "lo": [0.5, float("nan")], "hi": [3.5, float("nan")]})
    fig = plots.accuracy_by_fraction(summary, gaps)
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["AlterNet", "Pre-act ResNet", "ViT"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["10 %", "100 %"]
    plt.close(fig)
    assert len(plots.accuracy_by_fraction(summary).axes) == 1
