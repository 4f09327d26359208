"""Relative log amplitude of Fourier-transformed feature maps (Park & Kim 2022, Figs 2a, 8, D.2).

methods.md §5 and §15.4: for each unit's output ``[B, C, H, W]`` take the 2-D FFT per sample and
channel, ``log(|F| + 1e-6)``, shift DC to ``(⌊H/2⌋, ⌊W/2⌋)``, average over samples and channels,
read the main diagonal from DC to the corner (the "half-diagonal", ⌈H/2⌉ points) and subtract
its DC value. Fig 2a plots that curve per unit against frequency stretched to [0, π]; Fig 8
plots its last point ("high frequency", nominally 1.0π) against normalised depth. MSAs lower it
(low-pass), Convs and MLPs raise it (high-pass).

Every step after the FFT and log is linear, so the mean over images of per-image curves (log
amplitudes already averaged over channels) equals the recipe's statistic exactly. We keep those
per-image curves: the whole test set runs in batches (the result does not depend on the batch
size) and a 95 % interval comes from resampling images, without a second forward pass.

The two helpers shared with :mod:`lib.analysis.variance` and :mod:`lib.analysis.robustness`
also live here: :func:`per_image_statistics` (unit outputs → one statistic per image, batch by
batch, in eval mode) and :func:`bootstrap_interval` (percentile interval of a mean over images).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from lib.models import Unit, feature_maps

__all__ = [
    "LOG_FLOOR",
    "MIN_SIZE",
    "relative_log_amplitude",
    "per_image_relative_log_amplitude",
    "relative_log_amplitude_curves",
    "high_frequency",
    "high_frequency_by_depth",
    "UnitValues",
    "per_image_statistics",
    "bootstrap_interval",
    "unit_changes",
    "comparable_units",
    "direction_counts",
]

LOG_FLOOR = 1e-6  # added to |F| before the log, as in the authors' notebook (methods.md §5 step 2)
# A 2×2 or 3×3 map has a half-diagonal of 1-2 points (DC and at most one bin): no curve to
# speak of, and its "high frequency" is the first bin. Such maps are skipped with a warning.
MIN_SIZE = 4

_BOOTSTRAP_CHUNK = 64  # resamples drawn at a time: bounds memory at 64 × N counts
_DEPTH_COLUMNS = ["name", "kind", "stage", "downsample", "index", "depth", "size", "value", "lo", "hi",
                  "change", "change_lo", "change_hi"]
_CURVE_COLUMNS = _DEPTH_COLUMNS[:7] + ["frequency", "axis_frequency"] + _DEPTH_COLUMNS[7:]
CHANGE_COLUMNS = ["change", "change_lo", "change_hi"]


# ----------------------------------------------------------------------------- one tensor


def _check_map(feature_map: torch.Tensor) -> None:
    if feature_map.ndim != 4:
        raise ValueError(f"expected a feature map [B, C, H, W], got shape {tuple(feature_map.shape)}")
    if feature_map.is_complex() or not feature_map.is_floating_point():
        raise ValueError(f"expected a real floating feature map, got {feature_map.dtype}")


def per_image_relative_log_amplitude(feature_map: torch.Tensor) -> torch.Tensor:
    """Each image's ΔlogA half-diagonal: methods.md §5 steps 1-6 with the mean over channels only.

    Their mean over images is :func:`relative_log_amplitude` (steps 4-6 are linear).

    Args:
        feature_map: Real ``[B, C, H, W]``.

    Returns:
        ``[B, K]`` in the map's dtype, ``K = min(⌈H/2⌉, ⌈W/2⌉)`` (``⌈H/2⌉`` for square maps);
        column 0 (DC) is exactly 0.
    """
    _check_map(feature_map)
    h, w = feature_map.shape[-2:]
    log_amp = torch.log(torch.fft.fft2(feature_map).abs() + LOG_FLOOR)  # steps 1-2
    log_amp = torch.fft.fftshift(log_amp, dim=(-2, -1))  # step 3: DC at (⌊H/2⌋, ⌊W/2⌋)
    log_amp = log_amp.mean(dim=1)  # step 4, channels (images are averaged by the caller)
    k = min(h - h // 2, w - w // 2)
    steps = torch.arange(k, device=feature_map.device)
    diagonal = log_amp[:, h // 2 + steps, w // 2 + steps]  # step 5: DC towards the corner
    return diagonal - diagonal[:, :1]  # step 6


def relative_log_amplitude(feature_map: torch.Tensor) -> torch.Tensor:
    """ΔlogA along the half-diagonal of a feature map (methods.md §5 steps 1-6, in that order).

    FFT2 per sample and channel, ``log(|F| + 1e-6)``, fftshift, mean over samples and channels,
    main diagonal from index ``⌊H/2⌋`` to the end, minus its DC value.

    Args:
        feature_map: Real ``[B, C, H, W]``.

    Returns:
        1-D tensor of length ``⌈H/2⌉`` (``min(⌈H/2⌉, ⌈W/2⌉)`` for a non-square map), in the
        map's dtype, going from DC (exactly 0) towards the corner. Entry ``i`` is at per-axis
        frequency ``2πi/H``, so with even ``H`` the last one stops a bin short of π.
    """
    return per_image_relative_log_amplitude(feature_map).mean(dim=0)


# ------------------------------------------------------------------- shared by the analyses


@dataclass(frozen=True)
class UnitValues:
    """Per-image values of one unit, from :func:`per_image_statistics`.

    Attributes:
        unit: The unit (name, kind, stage, module, downsample).
        index: Its position among all units of ``feature_maps``.
        depth: ``index / (number of units − 1)``, counting every unit, skipped ones included
            (methods.md §15.4).
        shape: ``(C, H, W)`` of its output.
        values: float64 CPU ``[N, ...]``, one row per image.
    """

    unit: Unit
    index: int
    depth: float
    shape: tuple[int, int, int]
    values: torch.Tensor


def per_image_statistics(
    model: nn.Module,
    images: torch.Tensor,
    statistic: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 128,
    min_size: int = 1,
    progress: bool = True,
    desc: str = "feature maps",
) -> list[UnitValues]:
    """One statistic per image and unit, from ``lib.models.feature_maps`` over batches.

    The model is put in eval mode for the measurement (methods.md §15.5) and its mode restored.

    Args:
        model: A model ``lib.models.units`` supports.
        images: ``[N, 3, H, W]``, uint8 (normalised for ``model.book_dataset``) or already
            normalised floats.
        statistic: Maps a unit's output ``[B, C, H, W]`` to ``[B, ...]`` (one row per image).
        batch_size: Images per forward pass; results do not depend on it.
        min_size: Units whose maps are smaller than ``min_size`` on either side are skipped,
            with one warning naming them.
        progress: Show a tqdm bar on stderr.
        desc: The bar's label.

    Returns:
        One :class:`UnitValues` per unit that was not skipped, in forward order.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images [N, 3, H, W], got shape {tuple(images.shape)}")
    if len(images) == 0:
        raise ValueError("need at least one image")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    was_training = model.training
    model.eval()
    first: list[tuple[Unit, tuple[int, int, int]]] = []
    parts: dict[int, list[torch.Tensor]] = {}
    try:
        starts = range(0, len(images), batch_size)
        for start in tqdm(starts, desc=desc, unit="batch", file=sys.stderr, disable=not progress, leave=False):
            maps = feature_maps(model, images[start : start + batch_size])
            if not first:
                first = [(unit, tuple(fmap.shape[1:])) for unit, fmap in maps]
            for index, (_, fmap) in enumerate(maps):
                if min(fmap.shape[-2:]) >= min_size:
                    parts.setdefault(index, []).append(statistic(fmap).to("cpu", torch.float64))
    finally:
        model.train(was_training)
    skipped = [f"{u.name} ({s[1]}×{s[2]})" for u, s in first if min(s[1:]) < min_size]
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unit(s) whose maps are smaller than {min_size}×{min_size}: " + ", ".join(skipped),
            stacklevel=3,
        )
    last = max(len(first) - 1, 1)
    return [
        UnitValues(unit, index, index / last, shape, torch.cat(parts[index]))
        for index, (unit, shape) in enumerate(first)
        if index in parts
    ]


def bootstrap_interval(
    values: torch.Tensor, *, reps: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile bootstrap interval of the mean over the first axis (images).

    Every column is resampled with the same draws of images, so intervals of different units
    (or frequencies) come from one set of resamples; the draws depend only on ``seed``, ``N``
    and ``reps``.

    Args:
        values: ``[N, ...]`` per-image values.
        reps: Number of resamples; 0 gives NaN bounds.
        seed: Seed of the resampling generator.
        level: Coverage of the two-sided interval.

    Returns:
        ``(lo, hi)``, float64 tensors shaped ``values.shape[1:]``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if reps < 0:
        raise ValueError(f"reps must be non-negative, got {reps}")
    n = values.shape[0]
    flat = values.to("cpu", torch.float64).reshape(n, -1)
    if reps == 0 or n == 0:
        nan = torch.full(values.shape[1:], math.nan, dtype=torch.float64)
        return nan, nan.clone()
    generator = torch.Generator().manual_seed(seed)
    means = []
    for start in range(0, reps, _BOOTSTRAP_CHUNK):
        r = min(_BOOTSTRAP_CHUNK, reps - start)
        draws = torch.randint(n, (r, n), generator=generator)
        counts = torch.zeros(r, n, dtype=torch.float64).scatter_add_(1, draws, torch.ones(r, n, dtype=torch.float64))
        means.append(counts @ flat / n)
    means = torch.cat(means)
    tail = (1 - level) / 2
    bounds = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64), dim=0)
    return bounds[0].reshape(values.shape[1:]), bounds[1].reshape(values.shape[1:])


def unit_changes(
    per_image: list[torch.Tensor], comparable: list[bool], *, reps: int = 1000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What each unit does to a per-image statistic: its value minus the previous unit's.

    The paper reads Figs 8 and 9 unit by unit ("MSAs lower it, Convs raise it"); this makes
    that reading a number with an interval. Differences are paired per image, so their
    bootstrap interval is much tighter than the two units' intervals suggest.

    Args:
        per_image: One ``[N]`` tensor per measured unit, in forward order.
        comparable: Per unit, whether it may be compared with the one before: False for the
            first unit and for units that change resolution or width (a projection shortcut
            is not a residual filter, and values at two resolutions are not comparable).
        reps, seed: Bootstrap resamples and their seed.

    Returns:
        ``(change, lo, hi)``, float64 ``[U]`` tensors (NaN where not comparable).
    """
    u = len(per_image)
    if len(comparable) != u:
        raise ValueError(f"need one comparable flag per unit, got {len(comparable)} for {u} units")
    change = torch.full((u,), math.nan, dtype=torch.float64)
    lo, hi = change.clone(), change.clone()
    pairs = [j for j in range(1, u) if comparable[j]]
    if pairs:
        diffs = torch.stack([per_image[j] - per_image[j - 1] for j in pairs], dim=1).double()
        d_lo, d_hi = bootstrap_interval(diffs, reps=reps, seed=seed)
        index = torch.tensor(pairs)
        change[index], lo[index], hi[index] = diffs.mean(dim=0), d_lo, d_hi
    return change, lo, hi


def comparable_units(measured: list[UnitValues]) -> list[bool]:
    """Which measured units follow their predecessor directly and keep its shape (see :func:`unit_changes`)."""
    return [j > 0 and not m.unit.downsample and measured[j - 1].index == m.index - 1 and measured[j - 1].shape == m.shape
            for j, m in enumerate(measured)]


def direction_counts(frame: pd.DataFrame | dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per kind of unit: how many lower and how many raise the statistic, with 95 % confidence.

    Args:
        frame: One row per unit with ``kind``, ``change``, ``change_lo``, ``change_hi``
            (from :func:`high_frequency_by_depth` or ``variance_by_depth``), or a dict
            model → such frame (the result then starts with a ``model`` column).

    Returns:
        One row per kind among the comparable units (``change`` not NaN): ``kind``, ``units``,
        ``lower`` (interval below 0), ``raise`` (interval above 0), ``unclear`` (interval
        contains 0), ``lower_share``, ``raise_share``.
    """
    if isinstance(frame, dict):
        parts = [direction_counts(f).assign(model=name) for name, f in frame.items()]
        out = pd.concat(parts, ignore_index=True)
        return out[["model", *[c for c in out.columns if c != "model"]]]
    comparable = frame.dropna(subset=["change"])
    rows = []
    for kind, group in comparable.groupby("kind", sort=False):
        lower = int((group["change_hi"] < 0).sum())
        higher = int((group["change_lo"] > 0).sum())
        n = len(group)
        rows.append(dict(kind=kind, units=n, lower=lower, raise_=higher, unclear=n - lower - higher,
                         lower_share=lower / n, raise_share=higher / n))
    return pd.DataFrame(rows, columns=["kind", "units", "lower", "raise_", "unclear", "lower_share", "raise_share"]).rename(
        columns={"raise_": "raise"})


# ------------------------------------------------------------------------------- by depth


def relative_log_amplitude_curves(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 128,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """ΔlogA curves of every unit's output over ``images`` (Fig 2a), with bootstrap intervals.

    Args:
        model: A model ``lib.models.units`` supports; measured in eval mode, mode restored.
        images: ``[N, 3, H, W]`` uint8 (normalised for ``model.book_dataset``) or normalised
            floats; typically the whole test set.
        batch_size: Images per forward pass; results do not depend on it.
        bootstrap: Resamples of images for the 95 % intervals (0: NaN intervals).
        seed: Seed of the resampling.
        progress: Show a tqdm bar on stderr.

    Returns:
        Tidy frame, one row per unit and half-diagonal point: ``name``, ``kind``, ``stage``,
        ``downsample``, ``index`` (position in ``units(model)``), ``depth`` (index / (number
        of units − 1), counting every unit of ``feature_maps``), ``size`` (H), ``frequency``
        (``linspace(0, 1, K)``, in units of π, as the paper's x-axis), ``axis_frequency`` (the
        bin's true per-axis frequency 2i/H, in units of π), ``value`` (ΔlogA), ``lo``, ``hi``
        (95 % bootstrap interval over images), ``change``, ``change_lo``, ``change_hi`` (the
        unit's effect on the last point, from :func:`unit_changes`, repeated on each row of the
        unit). ``attrs`` holds ``images`` (their number),
        ``bootstrap`` and ``seed``. Units with maps smaller than 4×4 are skipped with a
        warning; the depth of the others is unchanged.
    """
    measured = per_image_statistics(
        model,
        images,
        per_image_relative_log_amplitude,
        batch_size=batch_size,
        min_size=MIN_SIZE,
        progress=progress,
        desc="Fourier",
    )
    if measured:  # one set of resamples for every unit and frequency
        lo, hi = bootstrap_interval(torch.cat([m.values for m in measured], dim=1), reps=bootstrap, seed=seed)
        sizes = [m.values.shape[1] for m in measured]
        lo, hi = lo.split(sizes), hi.split(sizes)
        change, c_lo, c_hi = unit_changes([m.values[:, -1] for m in measured], comparable_units(measured),
                                          reps=bootstrap, seed=seed)
    rows = []
    for j, m in enumerate(measured):
        k, size = m.values.shape[1], m.shape[1]
        mean = m.values.mean(dim=0)
        for i, f in enumerate(torch.linspace(0, 1, k, dtype=torch.float64).tolist()):
            rows.append(
                dict(
                    name=m.unit.name,
                    kind=m.unit.kind,
                    stage=m.unit.stage,
                    downsample=m.unit.downsample,
                    index=m.index,
                    depth=m.depth,
                    size=size,
                    frequency=f,
                    axis_frequency=2 * i / size,
                    value=mean[i].item(),
                    lo=lo[j][i].item(),
                    hi=hi[j][i].item(),
                    change=change[j].item(),
                    change_lo=c_lo[j].item(),
                    change_hi=c_hi[j].item(),
                )
            )
    frame = pd.DataFrame(rows, columns=_CURVE_COLUMNS)
    frame.attrs.update(images=len(images), bootstrap=bootstrap, seed=seed)
    return frame


def high_frequency(curves: pd.DataFrame) -> pd.DataFrame:
    """The last half-diagonal point of each unit (Fig 8) from :func:`relative_log_amplitude_curves`.

    Use it to get both figures from one pass over the images.

    Returns:
        One row per unit: ``name``, ``kind``, ``stage``, ``downsample``, ``depth``, ``size``,
        ``value`` (ΔlogA at the last bin, nominally 1.0π), ``lo``, ``hi``, ``change``,
        ``change_lo``, ``change_hi`` (see :func:`unit_changes`); ``attrs`` kept.
    """
    last = curves.groupby("name", sort=False).tail(1)
    frame = last[_DEPTH_COLUMNS].reset_index(drop=True)
    frame.attrs.update(curves.attrs)
    return frame


def high_frequency_by_depth(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 128,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """ΔlogA at the highest diagonal frequency after every unit, against depth (Fig 8).

    Same arguments as :func:`relative_log_amplitude_curves`.

    Returns:
        One row per unit of ``feature_maps`` (maps smaller than 4×4 skipped with a warning):
        ``name``, ``kind``, ``stage``, ``downsample``, ``index`` (position in ``units(model)``),
        ``depth`` (index / (n − 1)), ``size`` (H), ``value`` (last element of the
        half-diagonal), ``lo``, ``hi`` (95 % bootstrap interval over images), ``change``,
        ``change_lo``, ``change_hi`` (value minus the previous unit's, paired over images; NaN
        for the first unit and across a change of map size).
    """
    curves = relative_log_amplitude_curves(
        model, images, batch_size=batch_size, bootstrap=bootstrap, seed=seed, progress=progress
    )
    return high_frequency(curves)
