"""Feature-map variance against depth (Park & Kim 2022, Fig 9, D.1; poster Fig 6).

methods.md §6 and §15.6: for each unit's output ``[B, C, H, W]``, the *spatial* variance over
``(H, W)`` per sample and channel (torch's default, unbiased), then the mean over samples and
channels. It is not a variance across samples: a map that is constant in space has variance 0
however much it changes from image to image. The paper reads the result as "MSAs aggregate
(lower the variance), Convs and MLPs diversify (raise it)".

As in :mod:`lib.analysis.fourier`, each image's channel mean is kept, so the whole test set runs
in batches (the result does not depend on the batch size) and the 95 % interval comes from
resampling images.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from lib.analysis.fourier import bootstrap_interval, comparable_units, per_image_statistics, unit_changes

__all__ = ["feature_map_variance", "per_image_variance", "variance_by_depth", "stage_growth"]

_COLUMNS = ["name", "kind", "stage", "downsample", "index", "depth", "size", "value", "lo", "hi",
            "change", "change_lo", "change_hi"]


def per_image_variance(feature_map: torch.Tensor) -> torch.Tensor:
    """Spatial variance per sample and channel (unbiased), averaged over channels: ``[B]``.

    Args:
        feature_map: Real ``[B, C, H, W]`` with ``H·W ≥ 2``.

    Returns:
        ``[B]`` in the map's dtype.
    """
    if feature_map.ndim != 4 or not feature_map.is_floating_point() or feature_map.is_complex():
        raise ValueError(
            f"expected a real floating feature map [B, C, H, W], got {feature_map.dtype} {tuple(feature_map.shape)}"
        )
    if feature_map.shape[-1] * feature_map.shape[-2] < 2:
        raise ValueError(f"the spatial variance needs at least 2 positions, got a {tuple(feature_map.shape[-2:])} map")
    # Shifting by one value of each (sample, channel) leaves the variance unchanged, keeps the
    # sums small (less cancellation) and makes a constant map's variance exactly 0.
    centred = feature_map - feature_map[..., :1, :1]
    return centred.var(dim=(-2, -1)).mean(dim=1)


def feature_map_variance(feature_map: torch.Tensor) -> float:
    """Mean over samples and channels of the spatial variance over ``(H, W)`` (methods.md §6).

    Args:
        feature_map: Real ``[B, C, H, W]`` with ``H·W ≥ 2``.

    Returns:
        The variance as a Python float (computed in float64).
    """
    return per_image_variance(feature_map).double().mean().item()


def variance_by_depth(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 128,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Feature-map variance after every unit, against normalised depth (Fig 9).

    Args:
        model: A model ``lib.models.units`` supports; measured in eval mode, mode restored.
        images: ``[N, 3, H, W]`` uint8 (normalised for ``model.book_dataset``) or normalised
            floats. The authors used one batch of 256 test images; any number works here.
        batch_size: Images per forward pass; results do not depend on it.
        bootstrap: Resamples of images for the 95 % interval (0: NaN interval).
        seed: Seed of the resampling.
        progress: Show a tqdm bar on stderr.

    Returns:
        One row per unit of ``feature_maps``: ``name``, ``kind``, ``stage``, ``downsample``,
        ``index`` (position in ``units(model)``), ``depth`` (index / (n − 1)), ``size`` (H),
        ``value`` (the variance), ``lo``, ``hi`` (95 % bootstrap interval over images),
        ``change``, ``change_lo``, ``change_hi`` (value minus the previous unit's, paired over
        images; NaN for the first unit and units that change resolution or width; see
        :func:`lib.analysis.fourier.unit_changes`).
        ``attrs`` holds ``images`` (their number), ``bootstrap`` and ``seed``. Maps narrower
        than 2 on a side (no supported CIFAR model has one) are skipped with a warning.
    """
    measured = per_image_statistics(
        model, images, per_image_variance, batch_size=batch_size, min_size=2, progress=progress, desc="variance"
    )
    lo = hi = torch.empty(0)
    if measured:  # one set of resamples for every unit
        lo, hi = bootstrap_interval(torch.stack([m.values for m in measured], dim=1), reps=bootstrap, seed=seed)
        change, c_lo, c_hi = unit_changes([m.values for m in measured], comparable_units(measured),
                                          reps=bootstrap, seed=seed)
    rows = [
        dict(
            name=m.unit.name,
            kind=m.unit.kind,
            stage=m.unit.stage,
            downsample=m.unit.downsample,
            index=m.index,
            depth=m.depth,
            size=m.shape[1],
            value=m.values.mean().item(),
            lo=lo[j].item(),
            hi=hi[j].item(),
            change=change[j].item(),
            change_lo=c_lo[j].item(),
            change_hi=c_hi[j].item(),
        )
        for j, m in enumerate(measured)
    ]
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    frame.attrs.update(images=len(images), bootstrap=bootstrap, seed=seed)
    return frame


def stage_growth(frame: pd.DataFrame) -> pd.DataFrame:
    """Does the variance build up within each stage? First shape-preserving unit against the last unit.

    Args:
        frame: From :func:`variance_by_depth`.

    Returns:
        One row per stage with at least two shape-preserving units: ``stage``,
        ``first`` and ``last`` (unit names), ``first_value``, ``last_value``, ``ratio``
        (last / first) and ``grows`` (True when the last unit's 95 % interval lies wholly above
        the first's). The stem (stage 0) is left out.
    """
    rows = []
    for stage, group in frame[frame["stage"] > 0].groupby("stage", sort=True):
        kept = group[~group["downsample"]]
        if len(kept) < 2:
            continue
        first, last = kept.iloc[0], kept.iloc[-1]
        rows.append(dict(stage=int(stage), first=first["name"], last=last["name"], first_value=first["value"],
                         last_value=last["value"], ratio=last["value"] / first["value"],
                         grows=bool(last["lo"] > first["hi"])))
    return pd.DataFrame(rows, columns=["stage", "first", "last", "first_value", "last_value", "ratio", "grows"])
