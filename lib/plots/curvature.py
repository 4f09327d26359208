"""Figures of Chapter 1: pooled max-eigenvalue spectra (Figs 1c, 4), loss landscapes (Fig 1a), SLQ densities."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import matplotlib.colors as mcolors
import numpy as np
from matplotlib import ticker
import pandas as pd
import torch

from .style import COLORS, COLUMN, LABELS, REPLICATE_LINE, legend_above, legend_entries, plain_log_axis, replicate_data

__all__ = ["eigenvalue_spectra", "loss_landscapes", "spectral_densities"]

_PALETTE = ["#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _color(name: str, i: int) -> str:
    return COLORS.get(name, _PALETTE[i % len(_PALETTE)])


def eigenvalue_spectra(spectra: dict[str, torch.Tensor], *, bins: int = 24, title: str | None = None,
                       replicates: Mapping[int, Mapping[str, torch.Tensor]] | None = None) -> plt.Figure:
    """The pooled top-k eigenvalues of each model, negative and positive values in two panels (Fig 1c).

    Heights are shares of each model's pooled values, so the left panel's area is its negative
    mass; the positive panel has a logarithmic axis (sharp and flat models differ by decades).
    When no model has a negative value the figure is the positive panel alone, and says so.

    Args:
        spectra: label → pooled values (``Spectrum.values``); labels that are roles get the
            role's colour.
        bins: Bins per panel.
        title: Figure title.
        replicates: seed → label → pooled values of the other training seeds, drawn as thin
            outlines behind seed 0's and named in the legend (a seed may lack labels).
    """
    others = replicate_data(replicates, spectra)
    pooled = torch.cat([v.reshape(-1) for v in spectra.values()]
                       + [v.reshape(-1) for by_label in others.values() for v in by_label.values()]).double()
    negative, positive = pooled[pooled < 0], pooled[pooled > 0]
    if negative.numel():
        fig, (neg_ax, pos_ax) = plt.subplots(1, 2, figsize=(COLUMN, 3.0), gridspec_kw={"width_ratios": [1, 1.6]})
        neg_edges = np.linspace(float(negative.min()), 0.0, bins + 1)
    else:  # a panel with nothing in it reads as a plotting error: leave it out and say why
        fig, pos_ax = plt.subplots(figsize=(COLUMN, 3.0))
        neg_ax, neg_edges = None, None
    pos_edges = np.geomspace(float(positive.min()) if positive.numel() else 1e-3,
                             float(positive.max()) * 1.01 if positive.numel() else 1.0, bins + 1)
    for i, (name, values) in enumerate(spectra.items()):
        for by_label in others.values():
            if name in by_label:
                _share_steps(neg_ax, pos_ax, by_label[name], (neg_edges, pos_edges), color=_color(name, i),
                             lw=REPLICATE_LINE["lw"], alpha=REPLICATE_LINE["alpha"], zorder=0.9)
        _share_steps(neg_ax, pos_ax, values, (neg_edges, pos_edges), lw=1.6, color=_color(name, i),
                     label=LABELS.get(name, name))
    pos_ax.set_xscale("log")
    plain_log_axis(pos_ax.xaxis, (pos_edges[0], pos_edges[-1]))
    if neg_ax is not None:
        neg_ax.set(xlabel="eigenvalue (< 0)", ylabel="share of pooled values")
        pos_ax.set(xlabel="eigenvalue (> 0, log scale)")
    else:
        pos_ax.set(xlabel="eigenvalue (log scale)", ylabel="share of pooled values")
        pos_ax.text(0.98, 0.95, "no negative eigenvalues\namong the pooled ones", ha="right", va="top",
                    transform=pos_ax.transAxes, color="0.3")
    legend_above(pos_ax, *legend_entries(pos_ax, list(others)))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _share_steps(neg_ax, pos_ax, values: torch.Tensor, edges, **style) -> None:
    """One model's values as step outlines of their shares, the negative ones left (if that panel exists), positive right."""
    values = values.reshape(-1).double().numpy()
    weights = np.full(len(values), 1 / len(values))
    style = dict(histtype="step", **style)
    if neg_ax is not None:
        neg_ax.hist(values[values < 0], bins=edges[0], weights=weights[values < 0], **style)
    pos_ax.hist(values[values > 0], bins=edges[1], weights=weights[values > 0], **style)


def _grid(frame: pd.DataFrame, column: str):
    """x, y and the ``[y, x]`` grid of one landscape column."""
    table = frame.pivot(index="y", columns="x", values=column)
    return table.columns.to_numpy(), table.index.to_numpy(), table.to_numpy()


def loss_landscapes(frames: dict[str, pd.DataFrame], *, levels: int = 16) -> plt.Figure:
    """2-D loss landscapes on a log colour scale, one column per model, and 1-D slices beside them (Fig 1a).

    Rows are the NLL and the NLL + L2 objective. The colours are log-spaced and shared by a row,
    because the loss grows by decades towards the corners of a sharp model's landscape; the last
    column cuts every surface through the trained weights along direction 1 (solid) and
    direction 2 (dashed), on a log axis, so the models' widths can be read against each other.

    Args:
        frames: label → ``lib.analysis.landscape.slice_2d`` frame (x, y, nll, nll_plus_l2).
        levels: Colour levels per row.
    """
    rows = [("nll", "NLL"), ("nll_plus_l2", "NLL + L2")]
    n = len(frames)
    fig, axes = plt.subplots(len(rows), n + 1, figsize=(COLUMN, 2.3 * len(rows) + 0.5), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * n + [1.35]})
    for r, (column, name) in enumerate(rows):
        grids = {label: _grid(frame, column) for label, frame in frames.items()}
        low = min(np.nanmin(z) for _, _, z in grids.values())
        high = max(np.nanmax(z) for _, _, z in grids.values())
        contour_levels = np.geomspace(low, high * 1.0001, levels + 1)
        norm = mcolors.LogNorm(low, high)
        slices = axes[r, n]
        for c, (label, (x, y, z)) in enumerate(grids.items()):
            ax = axes[r, c]
            filled = ax.contourf(x, y, z, levels=contour_levels, norm=norm, cmap="plasma")
            ax.contour(x, y, z, levels=contour_levels, colors="white", linewidths=0.3, alpha=0.5)
            ax.plot([0], [0], marker="+", color="white", ms=8)
            ax.set_aspect("equal")
            ax.set_xticks([-1, 0, 1] if x.max() >= 1 else [x.min(), 0, x.max()])
            ax.set_yticks(ax.get_xticks())
            ax.set(title=LABELS.get(label, label) if r == 0 else None,
                   xlabel="direction 1" if r == len(rows) - 1 else None, ylabel=f"{name}\ndirection 2" if c == 0 else None)
            color = _color(label, c)
            i0, j0 = int(np.argmin(np.abs(y))), int(np.argmin(np.abs(x)))
            slices.plot(x, z[i0, :], color=color, lw=1.6, label=LABELS.get(label, label))
            slices.plot(y, z[:, j0], color=color, lw=1.2, ls="--")
        cbar = fig.colorbar(filled, ax=list(axes[r, :n]), shrink=0.9, pad=0.03, aspect=12)
        cbar.locator = ticker.LogLocator(subs=(1.0, 3.0))
        cbar.formatter = ticker.FuncFormatter(lambda v, _: f"{v:g}")
        cbar.update_ticks()
        slices.set_yscale("log")
        plain_log_axis(slices.yaxis)
        slices.set(xlabel="position along a direction" if r == len(rows) - 1 else None)
        slices.yaxis.tick_right()
    axes[0, n].plot([], [], color="0.4", lw=1.6, label="dir. 1")
    axes[0, n].plot([], [], color="0.4", lw=1.2, ls="--", label="dir. 2")
    axes[0, n].legend(frameon=False, loc="lower left", bbox_to_anchor=(0, 1.02), ncol=2, borderaxespad=0,
                      handlelength=1.4, columnspacing=0.8)
    return fig


def spectral_densities(densities: dict[str, object], *, points: int = 1001) -> plt.Figure:
    """Whole-spectrum densities by stochastic Lanczos quadrature (``SpectralDensity``), log density, one line per model."""
    fig, ax = plt.subplots(figsize=(COLUMN, 3.2))
    for i, (name, d) in enumerate(densities.items()):
        grid, values = d.on_grid(points=points)
        ax.plot(grid.numpy(), np.maximum(values.numpy(), 1e-12), color=_color(name, i), label=LABELS.get(name, name))
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set(xlabel="eigenvalue (symmetric log scale)", ylabel="density")
    legend_above(ax)
    fig.tight_layout()
    return fig
