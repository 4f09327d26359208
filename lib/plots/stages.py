"""Figures of Chapter 3: lesions against depth and CKA heat maps (Park & Kim 2022, Fig 10).

The variance figure of that chapter is :func:`lib.plots.by_depth` on ``variance_by_depth``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .style import COLORS, KIND_LABELS, KIND_MARKERS, LABELS, MSA_SHADE

__all__ = ["cka_heatmaps", "lesion_by_depth"]

STAGE_SHADE = "#eef3fa"  # background of every other stage


def _step(frame: pd.DataFrame) -> float:
    """Normalised depth of one unit: depth = index · step."""
    rows = frame[frame["index"] > 0]
    return float((rows["depth"] / rows["index"]).iloc[0]) if len(rows) else 1.0


def _mark_stages(ax, frame: pd.DataFrame) -> None:
    """Every other stage shaded, a dotted line at each stage's (downsampling) first block, stage numbers on top."""
    step = _step(frame)
    bounds = frame.groupby("stage")["index"].agg(["min", "max"]).sort_index()
    previous_end = None
    for j, (stage, (first, last)) in enumerate(bounds.iterrows()):
        left = (first - 1.5 if previous_end is None else previous_end + 0.5) * step
        right = (last + 0.5) * step
        if j % 2 == 1:
            ax.axvspan(left, right, color=STAGE_SHADE, lw=0, zorder=0)
        if previous_end is not None:
            ax.axvline((first - 1) * step, color="black", ls=":", lw=0.8, zorder=1)
        if len(bounds) > 1:
            ax.text((left + right) / 2, 1.0, f"stage {stage}", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=7, color="dimgrey")
        previous_end = last


def lesion_by_depth(frames: dict[str, pd.DataFrame], *, sharey: bool = False) -> plt.Figure:
    """One panel per model: the accuracy change from removing each unit, against normalised depth (Fig 10, left).

    MSA units are shaded grey and drawn as open markers, every other stage has a light band,
    dotted lines mark the downsampling block that opens a stage, and error bars are the paired
    95 % bootstrap intervals over test images.

    Args:
        frames: role → ``lib.analysis.lesion.lesion`` frame (``depth``, ``index``, ``stage``,
            ``kind``, ``delta_accuracy`` and its ``_low``/``_high`` bounds).
        sharey: Share the accuracy axis between panels.
    """
    fig, axes = plt.subplots(1, len(frames), figsize=(3.8 * len(frames), 3.2), sharey=sharey, squeeze=False)
    for ax, (role, frame) in zip(axes[0], frames.items()):
        step = _step(frame)
        _mark_stages(ax, frame)
        for _, row in frame[frame["kind"] == "msa"].iterrows():
            ax.axvspan(row["depth"] - step / 2, row["depth"] + step / 2, color=MSA_SHADE, lw=0, zorder=0.5)
        color = COLORS.get(role, "black")
        value = 100 * frame["delta_accuracy"]
        ax.plot(frame["depth"], value, color=color, lw=0.8, zorder=2)
        for kind, group in frame.groupby("kind", sort=False):
            y = 100 * group["delta_accuracy"]
            yerr = [y - 100 * group["delta_accuracy_low"], 100 * group["delta_accuracy_high"] - y]
            ax.errorbar(group["depth"], y, yerr=yerr, fmt=KIND_MARKERS.get(kind, "o"), color=color, ms=4.5,
                        mfc="white" if kind == "msa" else color, elinewidth=0.8, capsize=0, zorder=3,
                        label=KIND_LABELS.get(kind, kind))
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(LABELS.get(role, role), pad=12)
        ax.set(xlabel="normalised depth", xlim=(-0.03, 1.03))
        ax.legend(frameon=False, fontsize=8, loc="best")
    axes[0, 0].set_ylabel("Δ accuracy when removed (points)")
    fig.tight_layout()
    return fig


def cka_heatmaps(matrices: dict[str, torch.Tensor], units: dict[str, pd.DataFrame]) -> plt.Figure:
    """One panel per model: linear CKA between every pair of unit outputs, stages outlined (Fig 10, right).

    Units run in forward order from the top left (the stem first); white lines separate stages,
    ticks label each stage's block (S1, S2, …) and grey triangles above the panel mark MSA units.

    Args:
        matrices: role → ``[U, U]`` CKA in ``units(model)`` order.
        units: role → ``lib.analysis.stages.unit_table`` of the same model (``stage``, ``kind``).
    """
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.4 * len(matrices) + 0.8, 3.3), squeeze=False)
    image = None
    for ax, (role, cka) in zip(axes[0], matrices.items()):
        table = units[role]
        size = len(table)
        if tuple(cka.shape) != (size, size):
            raise ValueError(f"{role}: CKA is {tuple(cka.shape)} but the unit table has {size} units")
        image = ax.imshow(np.asarray(cka, dtype=float), vmin=0, vmax=1, cmap="viridis", origin="upper",
                          interpolation="nearest")
        stages = table["stage"].to_numpy()
        for k in np.nonzero(stages[1:] != stages[:-1])[0]:  # a new stage begins at unit k + 1
            ax.axhline(k + 0.5, color="white", lw=0.9)
            ax.axvline(k + 0.5, color="white", lw=0.9)
        msa = np.nonzero(table["kind"].to_numpy() == "msa")[0]
        ax.plot(msa, np.full(len(msa), 1.02), "v", color=MSA_SHADE, mec="dimgrey", ms=3.5, clip_on=False,
                transform=ax.get_xaxis_transform())
        blocks = pd.Series(np.arange(size)).groupby(stages).mean()  # centre of each stage's block
        blocks = blocks[blocks.index > 0]
        ax.set_xticks(blocks.to_numpy(), [f"S{s}" for s in blocks.index], fontsize=8)
        ax.set_yticks(blocks.to_numpy(), [f"S{s}" for s in blocks.index], fontsize=8)
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        ax.grid(False)
        ax.set_title(LABELS.get(role, role), pad=12)
        ax.set_xlabel("unit")
    axes[0, 0].set_ylabel("unit")
    fig.colorbar(image, ax=list(axes[0]), label="linear CKA (mini-batch)", shrink=0.85, pad=0.02)
    return fig
