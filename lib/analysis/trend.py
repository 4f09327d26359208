"""ΔlogA(π) over depth as the paper reads it (Fig 8), split into where it changes, with a resolution control.

The paper reads Fig 8 for a ResNet as a trend: the high-frequency ΔlogA of the stem's output is
the lowest and deeper units' rise towards −1, "so Convs raise the relative high-frequency
amplitude". A trend over depth is the sum of what each unit does to its input, and in a CNN two
kinds of unit do different things: the blocks that open a stage halve the resolution, the
others keep it. Halving a map's resolution alone moves ΔlogA(π), with no learned weights at
all, because π then names a coarser frequency of the image. So the rise is split, image by
image, into

- ``within stages``: the summed change at the shape-preserving blocks;
- ``downsampling``: the summed change at the blocks that open a stage;
- ``resolution alone (control)``: at each of those blocks, what average-pooling its input to
  the block's output size does to ΔlogA(π) — the change a resolution change makes by itself;
- ``downsampling beyond resolution``: downsampling minus the control.

``total`` (the last measured unit minus the first, the paper's reading) is ``within stages`` +
``downsampling`` exactly. Every part is a mean over images of a per-image value, with a 95 %
bootstrap interval from one set of resamples.
"""

from __future__ import annotations

import sys

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lib.analysis.fourier import MIN_SIZE, bootstrap_interval, per_image_relative_log_amplitude
from lib.models import feature_maps

__all__ = ["PARTS", "high_frequency_trend"]

PARTS = ("total", "within stages", "downsampling", "resolution alone (control)", "downsampling beyond resolution")


def _high(fmap: torch.Tensor) -> torch.Tensor:
    """Each image's ΔlogA at the last half-diagonal point (nominally π), float64 on the CPU."""
    return per_image_relative_log_amplitude(fmap)[:, -1].to("cpu", torch.float64)


def _batch_parts(maps: list) -> tuple[torch.Tensor, list[str]]:
    """``[B, 5]`` per-image parts of one batch's unit outputs (units smaller than MIN_SIZE left out), and the units used."""
    kept = [(unit, fmap) for unit, fmap in maps if min(fmap.shape[-2:]) >= MIN_SIZE]
    if len(kept) < 2:
        raise ValueError(f"need at least two units with maps of {MIN_SIZE}×{MIN_SIZE} or more, got {len(kept)}")
    batch = kept[0][1].shape[0]
    within, down, control = (torch.zeros(batch, dtype=torch.float64) for _ in range(3))
    previous = _high(kept[0][1])
    first = previous
    for (_, before), (unit, after) in zip(kept, kept[1:]):
        now = _high(after)
        change = now - previous
        if unit.downsample or before.shape[-2:] != after.shape[-2:]:
            down += change
            h, w = after.shape[-2:]
            if before.shape[-2:] != (h, w):  # a map halved (or more): what pooling alone does
                pooled = F.adaptive_avg_pool2d(before, (h, w))
                control += _high(pooled) - _high(before)
        else:
            within += change
        previous = now
    total = previous - first
    parts = torch.stack([total, within, down, control, down - control], dim=1)
    return parts, [u.name for u, _ in kept]


def high_frequency_trend(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 128,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """The rise of ΔlogA(π) from the first unit to the last, and its parts (see the module docstring).

    Args:
        model: A model ``lib.models.units`` supports; measured in eval mode, its mode restored.
        images: ``[N, 3, H, W]`` uint8 (normalised for the model's data set) or normalised floats.
        batch_size: Images per forward pass; results do not depend on it.
        bootstrap: Resamples of images for the 95 % intervals (0: NaN intervals).
        seed: Seed of the resampling.
        progress: Show a tqdm bar on stderr.

    Returns:
        One row per part (:data:`PARTS`): ``part``, ``value`` (mean over images), ``lo``, ``hi``;
        ``attrs`` holds ``images``, ``units`` (the units measured, first to last), ``bootstrap``
        and ``seed``.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected images [N, 3, H, W] with N ≥ 1, got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    was_training = model.training
    model.eval()
    chunks, names = [], []
    try:
        starts = range(0, len(images), batch_size)
        for start in tqdm(starts, desc="ΔlogA trend", unit="batch", file=sys.stderr, disable=not progress, leave=False):
            parts, names = _batch_parts(feature_maps(model, images[start : start + batch_size]))
            chunks.append(parts)
    finally:
        model.train(was_training)
    values = torch.cat(chunks)
    lo, hi = bootstrap_interval(values, reps=bootstrap, seed=seed)
    mean = values.mean(dim=0)
    frame = pd.DataFrame({"part": PARTS, "value": mean.tolist(), "lo": lo.tolist(), "hi": hi.tolist()})
    frame.attrs.update(images=len(images), units=names, bootstrap=bootstrap, seed=seed)
    return frame
