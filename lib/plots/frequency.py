"""Figures of Chapter 2: ΔlogA curves (Fig 2a), statistics against depth (Figs 8, 9), band noise (Fig 2b)."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd

from .style import COLORS, KIND_LABELS, KIND_MARKERS, LABELS, MSA_SHADE


def _panels(n: int, *, width: float = 3.6, height: float = 3.0, sharey: bool = False):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), sharey=sharey, squeeze=False)
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
    axes[-1].plot([], [], color="grey", ls="--", label="MSA unit")
    axes[-1].plot([], [], color="grey", ls="-", label="other unit")
    axes[-1].legend(frameon=False, fontsize=8, loc="lower left")
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


def by_depth(frames: dict[str, pd.DataFrame], ylabel: str, *, logy: bool = False, sharey: bool = False) -> plt.Figure:
    """One panel per model: a per-unit statistic against normalised depth (Figs 8, 9).

    MSA units are shaded, downsampling units marked by dotted lines, markers tell unit kinds
    apart, and error bars are the 95 % intervals (``lo``, ``hi``) over images.

    Args:
        frames: role → frame with ``depth``, ``kind``, ``downsample``, ``index``, ``value``,
            ``lo``, ``hi`` (e.g. ``high_frequency_by_depth`` or ``variance_by_depth``).
        ylabel: The statistic's name.
        logy: Logarithmic y axis (variances span decades).
    """
    fig, axes = _panels(len(frames), sharey=sharey)
    for ax, (role, frame) in zip(axes, frames.items()):
        _shade_msa_and_mark_downsampling(ax, frame)
        color = COLORS.get(role, "black")
        ax.plot(frame["depth"], frame["value"], color=color, lw=1, zorder=2)
        for kind, group in frame.groupby("kind", sort=False):
            ax.errorbar(group["depth"], group["value"],
                        yerr=[group["value"] - group["lo"], group["hi"] - group["value"]],
                        fmt=KIND_MARKERS.get(kind, "o"), color=color, ms=4.5, mfc="white" if kind == "msa" else color,
                        elinewidth=0.8, capsize=0, zorder=3, label=KIND_LABELS.get(kind, kind))
        ax.set(title=LABELS.get(role, role), xlabel="normalised depth", xlim=(-0.03, 1.03))
        if logy:
            ax.set_yscale("log")
        ax.legend(frameon=False, fontsize=8)
    axes[0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def noise_sweep(frames: dict[str, pd.DataFrame]) -> plt.Figure:
    """One panel per noise amplitude: accuracy change against the band's frequency, one line per model (Fig 2b).

    Args:
        frames: role → frame of ``lib.analysis.robustness.noise_robustness``.
    """
    eps_values = sorted(next(iter(frames.values()))["eps"].unique())
    fig, axes = _panels(len(eps_values), sharey=True)
    for ax, eps in zip(axes, eps_values):
        for role, frame in frames.items():
            part = frame[frame["eps"] == eps]
            color = COLORS.get(role, "black")
            ax.plot(part["frequency"], part["delta"], marker="o", ms=3.5, color=color, label=LABELS.get(role, role))
            ax.fill_between(part["frequency"], part["lo"], part["hi"], color=color, alpha=0.2, lw=0)
        pixels = part["eps_pixels"].iloc[0]
        ax.set(title=f"ε = {eps:g} (≈ {pixels:.1f}/255)", xlabel="noise frequency (π)")
        ax.axhline(0, color="black", lw=0.6)
    axes[0].set_ylabel("Δ accuracy (points)")
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
