"""Figures of the cast chapter: the data and the training curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd
import torch

from .style import COLORS, COLUMN, LABELS, legend_above


def image_grid(images: torch.Tensor, labels: torch.Tensor, classes: list[str], *, per_class: int = 8) -> plt.Figure:
    """The first ``per_class`` images of each class, one row per class (uint8 [N,3,H,W])."""
    rows = []
    for c in range(len(classes)):
        idx = (labels == c).nonzero().flatten()[:per_class]
        rows.append(images[idx])
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.75, len(classes) * 0.78))
    for r, row in enumerate(rows):
        for c in range(per_class):
            ax = axes[r, c]
            ax.imshow(row[c].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
        axes[r, 0].set_ylabel(classes[r], rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return fig


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Test accuracy and training loss against epoch, one line per role (tidy: role, epoch, …)."""
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN, 3.0))
    for role, df in history.groupby("role", sort=False):
        kw = dict(color=COLORS.get(role), label=LABELS.get(role, role), marker="o", markersize=3)
        axes[0].plot(df["epoch"], 100 * df["test_accuracy"], **kw)
        axes[1].plot(df["epoch"], df["train_loss"], **kw)
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)")
    axes[1].set(xlabel="epoch", ylabel="training loss\n(label-smoothed CE)")
    legend_above(axes[0])
    fig.tight_layout()
    return fig
