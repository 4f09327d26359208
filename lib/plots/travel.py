"""The direction of travel of a chapter's checks: each statistic at initialisation, end of warm-up and end of training."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from .style import COLUMN

__all__ = ["travel"]

_SNAPSHOTS = ("init", "warmup", "final")
_NAMES = {"init": "init", "warmup": "warm-up", "final": "end"}


def travel(frame: pd.DataFrame, *, per_row: int = 4) -> plt.Figure:
    """One small panel per check: its value at each recorded snapshot, one thin line per seed, the threshold dashed.

    Args:
        frame: ``lib.claims.travel`` (``id``, ``seed``, ``init``, ``warmup``, ``final``,
            ``threshold``, ``direction``).
        per_row: Panels per row.
    """
    ids = list(dict.fromkeys(frame["id"]))
    if not ids:
        raise ValueError("no checks to draw: the frame is empty")
    rows = math.ceil(len(ids) / per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(COLUMN, 1.9 * rows + 0.2), squeeze=False, sharex=True)
    for ax, key in zip(axes.flat, ids):
        part = frame[frame["id"] == key]
        for _, row in part.iterrows():  # the snapshots recorded, joined (a seed not measured at warm-up skips it)
            known = [(i, row[at]) for i, at in enumerate(_SNAPSHOTS) if not math.isnan(row[at])]
            ax.plot(*zip(*known), marker="o", ms=3, lw=1, color="0.25", alpha=0.8)
        ax.axhline(part["threshold"].iloc[0], color="tab:red", ls="--", lw=0.9)
        directions = sorted({d for d in part["direction"] if d})
        ax.set_title(key.replace("_", " ") + (f"\n({', '.join(directions)})" if directions else ""), fontsize=9)
    for ax in axes.flat[len(ids):]:
        ax.remove()
    for ax in axes[-1] if len(ids) % per_row == 0 else axes.flat[max(0, len(ids) - per_row):len(ids)]:
        ax.set_xticks(range(len(_SNAPSHOTS)), [_NAMES[at] for at in _SNAPSHOTS])
        ax.tick_params(axis="x", labelbottom=True)
    fig.tight_layout()
    return fig
