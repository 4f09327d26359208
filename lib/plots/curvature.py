"""Figures of Chapter 1: pooled max-eigenvalue spectra (Figs 1c, 4), loss landscapes (Fig 1a), SLQ densities."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker
import pandas as pd
import torch

from .style import COLORS, LABELS

__all__ = ["eigenvalue_spectra", "loss_landscapes", "spectral_densities"]

_PALETTE = ["#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _color(name: str, i: int) -> str:
    return COLORS.get(name, _PALETTE[i % len(_PALETTE)])


def eigenvalue_spectra(spectra: dict[str, torch.Tensor], *, bins: int = 24, title: str | None = None) -> plt.Figure:
    """The pooled top-k eigenvalues of each model, negative and positive values in two panels (Fig 1c).

    Heights are shares of each model's pooled values, so the left panel's area is its negative
    mass; the positive panel has a logarithmic axis (sharp and flat models differ by decades).

    Args:
        spectra: label → pooled values (``Spectrum.values``); labels that are roles get the
            role's colour.
        bins: Bins per panel.
        title: Figure title.
    """
    fig, (neg_ax, pos_ax) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 1.6]})
    pooled = torch.cat([v.reshape(-1) for v in spectra.values()]).double()
    negative, positive = pooled[pooled < 0], pooled[pooled > 0]
    neg_edges = np.linspace(float(negative.min()) if negative.numel() else -1.0, 0.0, bins + 1)
    pos_edges = np.geomspace(float(positive.min()) if positive.numel() else 1e-3,
                             float(positive.max()) * 1.01 if positive.numel() else 1.0, bins + 1)
    for i, (name, values) in enumerate(spectra.items()):
        values = values.reshape(-1).double().numpy()
        weights = np.full(len(values), 1 / len(values))
        style = dict(histtype="step", lw=1.6, color=_color(name, i), weights=weights)
        label = LABELS.get(name, name)
        if negative.numel():
            neg_ax.hist(values[values < 0], bins=neg_edges, **{**style, "weights": weights[values < 0]}, label=label)
        pos_ax.hist(values[values > 0], bins=pos_edges, **{**style, "weights": weights[values > 0]}, label=label)
    pos_ax.set_xscale("log")
    # 1-2-5 ticks (1-10-100 over wide ranges, 1…9 over narrow ones) written plainly: the default labels
    # minor ticks over a narrow range, overlapping
    decades = np.log10(pos_edges[-1] / pos_edges[0])
    subs = (1.0,) if decades >= 2.5 else (1.0, 2.0, 5.0) if decades >= 0.5 else tuple(range(1, 10))
    pos_ax.xaxis.set_major_locator(ticker.LogLocator(subs=subs))
    pos_ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    pos_ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    if not negative.numel():  # an empty panel with a flat line at 0 reads as a plotting error
        neg_ax.text(0.5, 0.5, "no negative values\namong the pooled ones", ha="center", va="center",
                    transform=neg_ax.transAxes, fontsize=9, color="0.35")
        neg_ax.set_xticks([])
        neg_ax.set_yticks([])
    neg_ax.set(xlabel="eigenvalue (< 0)", ylabel="share of pooled values")
    pos_ax.set(xlabel="eigenvalue (> 0, log scale)")
    pos_ax.legend(frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_landscapes(frames: dict[str, pd.DataFrame], *, levels: int = 20) -> plt.Figure:
    """2-D loss landscapes, one column per model, rows NLL and NLL + L2, one colour scale per row (Fig 1a).

    Each surface is shown relative to its own minimum, so the colours compare how fast the loss
    rises around each model's weights.

    Args:
        frames: label → ``lib.analysis.landscape.slice_2d`` frame (x, y, nll, nll_plus_l2).
        levels: Contour levels.
    """
    rows = [("nll", "NLL"), ("nll_plus_l2", "NLL + L2")]
    fig, axes = plt.subplots(len(rows), len(frames), figsize=(3.6 * len(frames) + 0.8, 3.2 * len(rows)), squeeze=False)
    for r, (column, name) in enumerate(rows):
        grids = {}
        for label, frame in frames.items():
            table = frame.pivot(index="y", columns="x", values=column)
            grids[label] = (table.columns.to_numpy(), table.index.to_numpy(), table.to_numpy() - np.nanmin(table.to_numpy()))
        top = max(np.nanmax(z) for _, _, z in grids.values())
        contour_levels = np.linspace(0, top, levels + 1)
        for c, (label, (x, y, z)) in enumerate(grids.items()):
            ax = axes[r, c]
            filled = ax.contourf(x, y, z, levels=contour_levels, cmap="plasma")
            ax.contour(x, y, z, levels=contour_levels, colors="white", linewidths=0.3, alpha=0.6)
            ax.plot([0], [0], marker="+", color="white", ms=8)
            ax.set(title=f"{LABELS.get(label, label)}: {name}", xlabel="direction 1", ylabel="direction 2" if c == 0 else None)
            ax.set_aspect("equal")
        fig.colorbar(filled, ax=list(axes[r]), label=f"{name} − its minimum", shrink=0.9)
    return fig


def spectral_densities(densities: dict[str, object], *, points: int = 1001) -> plt.Figure:
    """Whole-spectrum densities by stochastic Lanczos quadrature (``SpectralDensity``), log density, one line per model."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for i, (name, d) in enumerate(densities.items()):
        grid, values = d.on_grid(points=points)
        ax.plot(grid.numpy(), np.maximum(values.numpy(), 1e-12), color=_color(name, i), label=LABELS.get(name, name))
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set(xlabel="eigenvalue (symmetric log scale)", ylabel="density")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
