"""Every figure of the book: one function per kind, tidy data in, a matplotlib Figure out.

The theme is set once on import, and each model family keeps one colour in every chapter
(ResNet blue, ViT orange, AlterNet green, pre-activation ResNet grey).
"""

from __future__ import annotations

import matplotlib

if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
    try:  # headless by default; notebooks keep their inline backend
        import IPython  # noqa: F401

        if IPython.get_ipython() is None:
            matplotlib.use("Agg")
    except ImportError:
        matplotlib.use("Agg")

import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd
import seaborn as sns
import torch

sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)

COLORS = {"resnet": "#1f77b4", "vit": "#ff7f0e", "alternet": "#2ca02c", "preresnet": "#7f7f7f"}
LABELS = {"resnet": "ResNet", "vit": "ViT", "alternet": "AlterNet", "preresnet": "Pre-act ResNet"}


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
        axes[r, 0].set_ylabel(classes[r], rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return fig


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Test accuracy and training loss against epoch, one line per role (tidy: role, epoch, …)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for role, df in history.groupby("role", sort=False):
        kw = dict(color=COLORS.get(role), label=LABELS.get(role, role), marker="o", markersize=3)
        axes[0].plot(df["epoch"], 100 * df["test_accuracy"], **kw)
        axes[1].plot(df["epoch"], df["train_loss"], **kw)
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)")
    axes[1].set(xlabel="epoch", ylabel="training loss (label-smoothed CE)")
    axes[0].legend(frameon=False)
    fig.tight_layout()
    return fig


def glue_figure(name: str, fig: plt.Figure) -> None:
    """Hand ``fig`` to myst-nb's ``glue`` as a PNG (for a numbered, captioned ``{glue:figure}``), then close it.

    Rendering the PNG here makes the output independent of the kernel's matplotlib backend.
    """
    import io

    from IPython.display import Image
    from myst_nb import glue

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    glue(name, Image(buffer.getvalue()), display=False)
