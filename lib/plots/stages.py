"""Figures of Chapter 3: lesions against depth, CKA heat maps (Park & Kim 2022, Fig 10), variance by stage."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .style import (COLORS, COLUMN, KIND_MARKERS, LABELS, MSA_SHADE, REPLICATE_LINE, kind_legend, legend_above,
                    plain_log_axis, replicate_data, seeds_caption)

__all__ = ["cka_heatmaps", "lesion_by_depth", "variance_by_stage"]

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
            ax.text((left + right) / 2, 1.0, f"S{stage}", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", color="dimgrey")
        previous_end = last


def lesion_by_depth(frames: dict[str, pd.DataFrame], *, sharey: bool = False,
                    replicates: Mapping[int, Mapping[str, pd.DataFrame]] | None = None) -> plt.Figure:
    """One panel per model: the accuracy change from removing each unit, against normalised depth (Fig 10, left).

    MSA units are shaded grey and drawn as open markers, every other stage has a light band,
    dotted lines mark the downsampling block that opens a stage, and error bars are the paired
    95 % bootstrap intervals over test images.

    Args:
        frames: role → ``lib.analysis.lesion.lesion`` frame (``depth``, ``index``, ``stage``,
            ``kind``, ``delta_accuracy`` and its ``_low``/``_high`` bounds).
        sharey: Share the accuracy axis between panels.
        replicates: seed → role → lesion frame of the other training seeds, each drawn as a thin
            line behind seed 0's and named in the legend (a seed may lack roles).
    """
    others = replicate_data(replicates, frames)
    fig, axes = plt.subplots(1, len(frames), figsize=(COLUMN, 3.2), sharey=sharey, squeeze=False)
    for ax, (role, frame) in zip(axes[0], frames.items()):
        step = _step(frame)
        _mark_stages(ax, frame)
        for _, row in frame[frame["kind"] == "msa"].iterrows():
            ax.axvspan(row["depth"] - step / 2, row["depth"] + step / 2, color=MSA_SHADE, lw=0, zorder=0.5)
        color = COLORS.get(role, "black")
        for by_role in others.values():
            if role in by_role:
                ax.plot(by_role[role]["depth"], 100 * by_role[role]["delta_accuracy"], color=color, **REPLICATE_LINE)
        value = 100 * frame["delta_accuracy"]
        ax.plot(frame["depth"], value, color=color, lw=0.8, zorder=2)
        for kind, group in frame.groupby("kind", sort=False):
            y = 100 * group["delta_accuracy"]
            yerr = [y - 100 * group["delta_accuracy_low"], 100 * group["delta_accuracy_high"] - y]
            ax.errorbar(group["depth"], y, yerr=yerr, fmt=KIND_MARKERS.get(kind, "o"), color=color, ms=4.5,
                        mfc="white" if kind == "msa" else color, elinewidth=0.8, capsize=0, zorder=3)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(LABELS.get(role, role), pad=14)
        ax.set(xlabel="normalised depth", xlim=(-0.03, 1.03))
    axes[0, 0].set_ylabel("Δ accuracy when removed (points)")
    fig.tight_layout()
    kind_legend(fig, list(dict.fromkeys(k for frame in frames.values() for k in frame["kind"])), list(others))
    return fig


def cka_heatmaps(matrices: dict[str, torch.Tensor], units: dict[str, pd.DataFrame]) -> plt.Figure:
    """One panel per model: linear CKA between every pair of unit outputs, stages outlined (Fig 10, right).

    Units run in forward order from the top left (the stem first); white lines separate stages,
    ticks label each stage's block (S1, S2, …) and grey triangles above the panel mark MSA units.

    Args:
        matrices: role → ``[U, U]`` CKA in ``units(model)`` order.
        units: role → ``lib.analysis.stages.unit_table`` of the same model (``stage``, ``kind``).
    """
    fig, axes = plt.subplots(1, len(matrices), figsize=(COLUMN, 2.9), squeeze=False)
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
        ax.set_xticks(blocks.to_numpy(), [f"S{s}" for s in blocks.index])
        ax.set_yticks(blocks.to_numpy(), [f"S{s}" for s in blocks.index])
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        ax.grid(False)
        ax.set_title(LABELS.get(role, role), pad=12)
        ax.set_xlabel("unit")
    axes[0, 0].set_ylabel("unit")
    fig.colorbar(image, ax=list(axes[0]), label="linear CKA (mini-batch)", shrink=0.85, pad=0.02)
    return fig


def variance_by_stage(frames: dict[str, pd.DataFrame], *,
                      replicates: Mapping[int, Mapping[str, pd.DataFrame]] | None = None) -> plt.Figure:
    """One panel per model: each stage's feature-map variance against the unit's place in its stage (Fig 9, by stage).

    Place 0 is the block that opens the stage (it downsamples or widens the maps); a dotted step
    joins the previous stage's last unit to it, so the build-up is each line's rise and the reset
    its step down. Log scale; error bars are 95 % intervals over images.

    Args:
        frames: role → ``lib.analysis.variance.variance_by_depth`` frame (``stage``, ``kind``,
            ``value``, ``lo``, ``hi``); the stem (stage 0) is left out.
        replicates: seed → role → such a frame of the other training seeds, each stage drawn as a
            thin line behind seed 0's and named in a caption line (a seed may lack roles).
    """
    others = replicate_data(replicates, frames)
    fig, axes = plt.subplots(1, len(frames), figsize=(COLUMN, 3.0), sharey=True, squeeze=False)
    for ax, (role, frame) in zip(axes[0], frames.items()):
        frame = frame[frame["stage"] > 0]
        stages = sorted(frame["stage"].unique())
        palette = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(stages)))
        previous = None
        for color, stage in zip(palette, stages):
            part = frame[frame["stage"] == stage]
            for by_role in others.values():
                if role in by_role:
                    _replicate_stage_line(ax, by_role[role], stage, color)
            place = np.arange(len(part))
            ax.plot(place, part["value"], color=color, lw=1.4, label=f"S{stage}", zorder=2)
            for kind, mask in part.groupby("kind", sort=False).groups.items():
                rows = part.loc[mask]
                at = place[part.index.get_indexer(mask)]
                ax.errorbar(at, rows["value"], yerr=[rows["value"] - rows["lo"], rows["hi"] - rows["value"]],
                            fmt=KIND_MARKERS.get(kind, "o"), color=color, ms=4.5, mfc="white" if kind == "msa" else color,
                            elinewidth=0.8, capsize=0, zorder=3)
            if previous is not None:
                ax.plot([-1, 0], [previous, part["value"].iloc[0]], color=color, lw=1.0, ls=":", zorder=1)
            previous = part["value"].iloc[-1]
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        ax.set_title(LABELS.get(role, role), loc="right")
        ax.set(xlabel="place in its stage (0 = opening block)")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        legend_above(ax, handlelength=1.2, columnspacing=0.8)
    axes[0, 0].set_ylabel("feature-map variance")
    fig.tight_layout()
    seeds_caption(fig, list(others))
    return fig


def _replicate_stage_line(ax, frame: pd.DataFrame, stage: int, color) -> None:
    """Another training seed's variance through one stage, against the unit's place in it: a thin line."""
    part = frame[frame["stage"] == stage]
    ax.plot(np.arange(len(part)), part["value"], color=color, **REPLICATE_LINE)
