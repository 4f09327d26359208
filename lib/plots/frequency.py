"""Figures of Chapter 2: ΔlogA curves (Fig 2a), statistics against depth (Figs 8, 9), band noise (Fig 2b)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd

from .style import (COLORS, COLUMN, KIND_MARKERS, LABELS, MSA_SHADE, REPLICATE_LINE, kind_legend, legend_above,
                    legend_entries, plain_log_axis, replicate_data)


def _panels(n: int, *, height: float = 3.0, sharey: bool = False):
    """``n`` panels side by side across the content column."""
    fig, axes = plt.subplots(1, n, figsize=(COLUMN, height), sharey=sharey, squeeze=False)
    return fig, axes[0]


def relative_log_amplitude_curves(curves: dict[str, pd.DataFrame], *, cmap: str = "viridis") -> plt.Figure:
    """One panel per model: each unit's ΔlogA against frequency, coloured from shallow to deep (Fig 2a).

    Args:
        curves: role → frame of ``lib.analysis.fourier.relative_log_amplitude_curves``.
        cmap: Colormap of normalised depth.
    """
    fig, axes = _panels(len(curves), sharey=True)
    colormap = mpl.colormaps[cmap]
    for ax, (role, frame) in zip(axes, curves.items()):
        for _, unit in frame.groupby("index", sort=True):
            ax.plot(unit["frequency"], unit["value"], color=colormap(unit["depth"].iloc[0]), lw=1.2,
                    ls="--" if unit["kind"].iloc[0] == "msa" else "-")
        ax.set(title=LABELS.get(role, role), xlabel="frequency (π)", xlim=(0, 1))
        ax.axhline(0, color="black", lw=0.6)
    axes[0].set_ylabel("Δ log amplitude")
    fig.colorbar(mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=colormap), ax=list(axes),
                 label="normalised depth", shrink=0.9, pad=0.02)
    axes[0].plot([], [], color="grey", ls="--", label="MSA unit")
    axes[0].plot([], [], color="grey", ls="-", label="other unit")
    legend_above(fig)
    return fig


def _shade_msa_and_mark_downsampling(ax, frame: pd.DataFrame) -> None:
    """Grey bands behind MSA units, dotted lines at units that change resolution or width."""
    n = max(int(frame["index"].max()), 1)
    half = 0.5 / n
    for _, row in frame.iterrows():
        if row["kind"] == "msa":
            ax.axvspan(row["depth"] - half, row["depth"] + half, color=MSA_SHADE, lw=0, zorder=0)
        elif row["downsample"] and row["kind"] != "stem":
            ax.axvline(row["depth"], color="black", ls=":", lw=0.8, zorder=0)


def by_depth(frames: dict[str, pd.DataFrame], ylabel: str, *, logy: bool = False, sharey: bool = False,
             replicates: Mapping[int, Mapping[str, pd.DataFrame]] | None = None) -> plt.Figure:
    """One panel per model: a per-unit statistic against normalised depth (Figs 8, 9).

    MSA units are shaded, downsampling units marked by dotted lines, markers tell unit kinds
    apart, and error bars are the 95 % intervals (``lo``, ``hi``) over images.

    Args:
        frames: role → frame with ``depth``, ``kind``, ``downsample``, ``index``, ``value``,
            ``lo``, ``hi`` (e.g. ``high_frequency_by_depth`` or ``variance_by_depth``).
        ylabel: The statistic's name.
        logy: Logarithmic y axis (variances span decades).
        replicates: seed → role → frame of the other training seeds, each drawn as a thin line
            behind seed 0's and named in the legend (a seed may lack roles).
    """
    others = replicate_data(replicates, frames)
    fig, axes = _panels(len(frames), sharey=sharey)
    for ax, (role, frame) in zip(axes, frames.items()):
        _shade_msa_and_mark_downsampling(ax, frame)
        color = COLORS.get(role, "black")
        for by_role in others.values():
            if role in by_role:
                ax.plot(by_role[role]["depth"], by_role[role]["value"], color=color, **REPLICATE_LINE)
        ax.plot(frame["depth"], frame["value"], color=color, lw=1, zorder=2)
        for kind, group in frame.groupby("kind", sort=False):
            ax.errorbar(group["depth"], group["value"],
                        yerr=[group["value"] - group["lo"], group["hi"] - group["value"]],
                        fmt=KIND_MARKERS.get(kind, "o"), color=color, ms=4.5, mfc="white" if kind == "msa" else color,
                        elinewidth=0.8, capsize=0, zorder=3)
        ax.set(title=LABELS.get(role, role), xlabel="normalised depth", xlim=(-0.03, 1.03))
        if logy:
            ax.set_yscale("log")
            plain_log_axis(ax.yaxis)
    axes[0].set_ylabel(ylabel)
    fig.tight_layout()
    kinds = list(dict.fromkeys(k for frame in frames.values() for k in frame["kind"]))
    kind_legend(fig, kinds, list(others))
    return fig


def _noise_lines(ax, frames: dict[str, pd.DataFrame], eps: float) -> None:
    """Accuracy change against band frequency at one amplitude, a line and 95 % band per model."""
    for role, frame in frames.items():
        part = frame[frame["eps"] == eps]
        if part.empty:
            raise ValueError(f"{role}: no band-noise results at eps={eps}; it has {sorted(frame['eps'].unique())}")
        color = COLORS.get(role, "black")
        ax.plot(part["frequency"], part["delta"], marker="o", ms=3.5, color=color, label=LABELS.get(role, role))
        ax.fill_between(part["frequency"], part["lo"], part["hi"], color=color, alpha=0.2, lw=0)
    ax.axhline(0, color="black", lw=0.6, zorder=1)
    pixels = part["eps_pixels"].iloc[0]
    ax.set_title(f"ε = {eps:g} (≈ {pixels:.1f}/255)", loc="right")


def _replicate_noise_lines(ax, frames: Mapping[str, pd.DataFrame], eps: float) -> None:
    """Another training seed's accuracy change at one amplitude: a thin line per model, in its colour."""
    for role, frame in frames.items():
        part = frame[frame["eps"] == eps]
        if part.empty:
            raise ValueError(f"{role}: no band-noise results at eps={eps}; it has {sorted(frame['eps'].unique())}")
        ax.plot(part["frequency"], part["delta"], color=COLORS.get(role, "black"), **REPLICATE_LINE)


def noise_at(frames: dict[str, pd.DataFrame], eps: float, *,
             replicates: Mapping[int, Mapping[str, pd.DataFrame]] | None = None) -> plt.Figure:
    """The accuracy change under band-limited noise of one amplitude, against the band's frequency (Fig 2b).

    One large panel, one line per model with its 95 % interval; the legend sits above the panel.

    Args:
        frames: role → frame of ``lib.analysis.robustness.noise_robustness``/``summarize``.
        eps: The amplitude to draw (the chapter's verdict amplitude).
        replicates: seed → role → such a frame of the other training seeds, each drawn as a thin
            line (no interval) behind seed 0's and named in the legend (a seed may lack roles).
    """
    others = replicate_data(replicates, frames)
    fig, ax = plt.subplots(figsize=(COLUMN, 3.4))
    for by_role in others.values():
        _replicate_noise_lines(ax, by_role, eps)
    _noise_lines(ax, frames, eps)
    ax.set(xlabel="noise frequency (π)", ylabel="Δ accuracy (points)")
    legend_above(ax, *legend_entries(ax, list(others)))
    fig.tight_layout()
    return fig


def noise_sweep(frames: dict[str, pd.DataFrame]) -> plt.Figure:
    """Small multiples of :func:`noise_at`: every amplitude of the sweep, two panels a row, one y axis.

    Args:
        frames: role → frame of ``lib.analysis.robustness.noise_robustness``/``summarize``.
    """
    eps_values = sorted(next(iter(frames.values()))["eps"].unique())
    cols = min(2, len(eps_values))
    rows = -(-len(eps_values) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(COLUMN, 2.5 * rows + 0.3), sharey=True, sharex=True, squeeze=False)
    for ax, eps in zip(axes.flat, eps_values):
        _noise_lines(ax, frames, eps)
    for ax in axes.flat[len(eps_values):]:
        ax.remove()
    for ax in axes[-1]:
        ax.set_xlabel("noise frequency (π)")
    for ax in axes[:, 0]:
        ax.set_ylabel("Δ accuracy (points)")
    fig.tight_layout()
    legend_above(fig)
    return fig
