"""Figures of Chapter 4: AlterNet's build-up (poster Fig 8b) and accuracy against the amount of data.

The spectra and noise figures of that chapter are :func:`lib.plots.eigenvalue_spectra` and
:func:`lib.plots.noise_at`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import COLORS, COLUMN, LABELS, legend_above

__all__ = ["build_up", "accuracy_by_fraction"]


def _tick(label: str) -> str:
    """``"MSAs (0, 0, 1, 2)"`` → ``"0,0,1,2"``; the no-MSA baseline → ``"none"``."""
    if label.startswith("MSAs "):
        return label.removeprefix("MSAs ").strip("()").replace(" ", "")
    return "none"


def build_up(ours: pd.DataFrame, paper: pd.DataFrame | None = None) -> plt.Figure:
    """Test accuracy of each build-up configuration, ours beside the paper's, one panel each.

    Args:
        ours: Rows of ``lib.sweeps.results`` of the ``"build-up"`` group (``label``, ``role``,
            ``accuracy (%)``), in build-up order.
        paper: The paper's ladder (``lib.differences.paper_build_up``: ``label``, ``accuracy (%)``);
            only the configurations we also trained are drawn, in our order. None: ours alone.
    """
    panels = [("ours", ours)] + ([("paper", paper)] if paper is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(COLUMN, 3.4), sharey=False, squeeze=False)
    order = list(ours["label"])
    for ax, (name, frame) in zip(axes[0], panels):
        frame = frame.set_index("label").reindex(order).dropna(subset=["accuracy (%)"])
        x = np.array([order.index(label) for label in frame.index])
        colors = [COLORS["preresnet"] if _tick(label) == "none" else COLORS["alternet"] for label in frame.index]
        values = frame["accuracy (%)"].to_numpy(dtype=float)
        ax.plot(x, values, color="black", lw=0.8, zorder=1)
        ax.scatter(x, values, c=colors, s=40, zorder=2)
        for xi, v in zip(x, values):
            ax.annotate(f"{v:.1f}", (xi, v), textcoords="offset points", xytext=(0, 6), ha="center")
        low, high = values.min(), values.max()
        pad = max(0.5, 0.25 * (high - low))
        ax.set_ylim(low - pad, high + 1.6 * pad)  # room for the value labels above the points
        ax.set_xticks(range(len(order)), [_tick(label) for label in order], rotation=40, ha="right",
                      rotation_mode="anchor")
        ax.set(xlabel="MSAs per stage", ylabel="test accuracy (%)" if name == "ours" else None,
               title="ours" if name == "ours" else "paper (CIFAR-100, 305 epochs)")
    fig.tight_layout()
    return fig


def _fraction_axis(ax, fractions) -> None:
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{100 * f:g} %" for f in fractions])
    ax.minorticks_off()
    ax.margins(x=0.08)
    ax.set_xlabel("share of the training set (log scale)")


def accuracy_by_fraction(summary: pd.DataFrame, gaps: pd.DataFrame | None = None) -> plt.Figure:
    """Test accuracy against the share of training data, one line per model, error bars ± 1 std over seeds.

    Args:
        summary: ``lib.sweeps.summary`` of the ``"data"`` runs (``role``, ``fraction``, ``mean``,
            ``std``, ``seeds``).
        gaps: Optional ``lib.claims.paired_gaps`` (AlterNet − baseline per fraction, t-interval),
            drawn in a second panel.
    """
    fig, axes = plt.subplots(1, 2 if gaps is not None else 1, figsize=(COLUMN, 3.2), squeeze=False)
    ax = axes[0, 0]
    fractions = sorted(summary["fraction"].unique())
    for role, part in summary.groupby("role", sort=False):
        part = part.sort_values("fraction")
        ax.errorbar(part["fraction"], part["mean"], yerr=part["std"].fillna(0), color=COLORS.get(role, "black"),
                    marker="o", ms=4.5, capsize=3, lw=1.4, label=LABELS.get(role, role))
    _fraction_axis(ax, fractions)
    ax.set(ylabel="test accuracy (%)")
    legend_above(ax)
    if gaps is not None:
        ax = axes[0, 1]
        mean = gaps["mean"].to_numpy(dtype=float)
        lo, hi = gaps["lo"].to_numpy(dtype=float), gaps["hi"].to_numpy(dtype=float)
        ax.errorbar(gaps["fraction"], mean, yerr=[np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)],
                    color=COLORS["alternet"], marker="D", ms=5, capsize=3, lw=1.4)
        ax.axhline(0, color="black", lw=0.7)
        _fraction_axis(ax, fractions)
        ax.set(ylabel="AlterNet − Pre-act ResNet (points)")
    fig.tight_layout()
    return fig
