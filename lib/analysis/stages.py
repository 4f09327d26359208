"""Statistics of stage structure: does a multi-stage net behave like a series of small models?

Park & Kim (2022), Fig 10 and Fig 9, methods.md §6 and §10. The paper reads three pictures by
eye; each reading becomes a number here, computed from what :mod:`lib.analysis.lesion`,
:mod:`lib.analysis.similarity` and :mod:`lib.analysis.variance` measure:

- **Lesions** (:func:`lesion_contrasts`, :func:`costliest_by_stage`): a *contrast* is a
  weighted sum of the units' accuracy changes, weights +1/|A| on one group of units and −1/|B|
  on another, so it is "mean Δaccuracy of group A minus that of group B". Every image gives one
  value of the contrast (its change of correctness under each lesion, weighted), so the 95 %
  interval comes from resampling images, paired across units.
- **CKA** (:func:`block_contrast`, :func:`block_contrast_bootstrap`): mean CKA between units
  of the same stage minus mean CKA between units of different stages (the stem left out). Since
  CKA between residual-stream outputs decays with the distance between units anyway, the
  ``matched`` form compares within- and between-stage pairs at the same distance only. The
  interval resamples the mini-batches the CKA was averaged over.
- **Variance** (:func:`variance_resets`): whether the feature-map variance at the start of a
  stage (the downsampling block, as the paper reads it, or the first shape-preserving unit)
  lies below that at the previous stage's last unit (the reset; the build-up within a stage is
  :func:`lib.analysis.variance.stage_growth`).

For lesions, "start of a stage" is its first shape-preserving unit: the first block of a CNN
stage changes the resolution or width and can be neither removed nor compared like for like.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch

from lib.analysis.lesion import _paired_bootstrap, delta_correct
from lib.analysis.similarity import cka_from_batches

__all__ = [
    "LESION_CONTRASTS",
    "block_contrast",
    "block_contrast_bootstrap",
    "block_contrasts",
    "contrast_weights",
    "costliest_by_stage",
    "lesion_contrasts",
    "middle_third",
    "stage_layout",
    "unit_table",
    "RESET_AT",
    "variance_resets",
]

ALPHA = 0.05  # two-sided: 95 % percentile intervals

# name → what it compares (group A − group B), as the chapter states it.
LESION_CONTRASTS = {
    "end_msa_vs_other_msa": "stage-end MSAs − other MSAs",
    "end_msa_vs_middle": "stage-end MSAs − mid-stage units",
    "start_vs_rest": "start of stage − rest of the same stage (mean over stages)",
    "middle_msa_vs_other_msa": "MSAs in the middle third − other MSAs",
}


# ------------------------------------------------------------------------------------ lesions


def middle_third(count: int) -> list[bool]:
    """Which of ``count`` items in order lie in the middle third: item i when 1/3 ≤ (i + ½)/count < 2/3.

    Twelve ViT MSAs give items 4–7; four AlterNet MSAs give items 1 and 2; two give none.
    """
    return [1 / 3 <= (i + 0.5) / count < 2 / 3 for i in range(count)]


def _group(a: Sequence[bool], b: Sequence[bool]) -> torch.Tensor:
    """+1/|A| on A, −1/|B| on B; all NaN when either group is empty (the contrast is undefined)."""
    a, b = torch.as_tensor(list(a), dtype=torch.bool), torch.as_tensor(list(b), dtype=torch.bool)
    if (a & b).any():
        raise ValueError("a unit cannot be in both groups of a contrast")
    if not a.any() or not b.any():
        return torch.full(a.shape, math.nan, dtype=torch.float64)
    return a.double() / a.sum() - b.double() / b.sum()


def contrast_weights(frame: pd.DataFrame, name: str) -> torch.Tensor:
    """Weights ``[U]`` over the rows of a lesion frame for one of :data:`LESION_CONTRASTS`.

    - ``end_msa_vs_other_msa``: A = MSA units that are the last shape-preserving unit of their
      stage; B = the other MSA units (like with like: the paper reads its lesions MSA against MSA).
    - ``end_msa_vs_middle``: A as above; B = mid-stage units (neither first nor last of their
      stage), of any kind.
    - ``start_vs_rest``: for each stage with at least two shape-preserving units, +1 on its
      first and −1/(k − 1) on its k − 1 others; averaged over those stages.
    - ``middle_msa_vs_other_msa``: A = MSAs in the :func:`middle_third` of the model's MSAs
      (in forward order); B = the other MSAs.

    Weights of A sum to +1 and of B to −1; NaN everywhere when a group is empty.
    """
    msa = (frame["kind"] == "msa").to_numpy(bool)
    first, last = frame["first_in_stage"].to_numpy(bool), frame["last_in_stage"].to_numpy(bool)
    if name == "end_msa_vs_other_msa":
        return _group(msa & last, msa & ~last)
    if name == "end_msa_vs_middle":
        return _group(msa & last, ~first & ~last)
    if name == "start_vs_rest":
        weights = torch.zeros(len(frame), dtype=torch.float64)
        stages = [s for s, members in frame.groupby("stage", sort=True) if len(members) >= 2]
        if not stages:
            return torch.full((len(frame),), math.nan, dtype=torch.float64)
        for s in stages:
            in_stage = (frame["stage"] == s).to_numpy()
            weights += _group(in_stage & first, in_stage & ~first) / len(stages)
        return weights
    if name == "middle_msa_vs_other_msa":
        middle = msa.copy()
        middle[msa] = middle_third(int(msa.sum()))
        return _group(middle, msa & ~middle)
    raise ValueError(f"unknown contrast {name!r}; valid: {sorted(LESION_CONTRASTS)}")


def lesion_contrasts(frame: pd.DataFrame, *, bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every contrast of :data:`LESION_CONTRASTS` on one model's lesion sweep, with 95 % intervals.

    Args:
        frame: ``lib.analysis.lesion.lesion(..., flips=True)`` of one model (all its
            shape-preserving units, so that stage positions are complete).
        bootstrap: Resamples of the images (paired: each resample scores every lesion on the
            same images); 0 gives NaN bounds.
        seed: Seed of the resampling.

    Returns:
        One row per contrast: ``contrast``, ``compares``, ``value`` (in accuracy fractions;
        negative: group A costs more), ``lo``, ``hi``, ``units_a``, ``units_b`` (group sizes;
        0 when the contrast is undefined for this model, value NaN).
    """
    delta = delta_correct(frame)  # [U, N]
    names = list(LESION_CONTRASTS)
    weights = torch.stack([contrast_weights(frame, n) for n in names])  # [K, U]
    defined = ~weights.isnan().any(dim=1)
    per_image = weights.nan_to_num() @ delta  # [K, N]: each image's value of each contrast
    value = per_image.mean(dim=1)
    lo = hi = torch.full((len(names),), math.nan, dtype=torch.float64)
    if bootstrap and defined.any():
        lo, hi = lo.clone(), hi.clone()
        bounds = _paired_bootstrap(per_image[defined], bootstrap=bootstrap, seed=seed)
        lo[defined], hi[defined] = bounds[0], bounds[1]
    rows = []
    for k, name in enumerate(names):
        ok = bool(defined[k])
        rows.append(dict(contrast=name, compares=LESION_CONTRASTS[name],
                         value=value[k].item() if ok else math.nan, lo=lo[k].item(), hi=hi[k].item(),
                         units_a=int((weights[k] > 0).sum()) if ok else 0,
                         units_b=int((weights[k] < 0).sum()) if ok else 0))
    return pd.DataFrame(rows)


def costliest_by_stage(frame: pd.DataFrame) -> pd.DataFrame:
    """Per stage, which shape-preserving unit's removal costs most accuracy, ties reported as ties.

    Accuracy changes on a finite test set are multiples of 1/N, so two units can cost exactly the
    same; such a stage is neither won nor lost by its start, and says so.

    Returns:
        One row per stage: ``stage``, ``units`` (shape-preserving units in it), ``start`` (its
        first unit), ``start_delta``, ``costliest`` (unit with the most negative Δaccuracy; the
        first of tied ones), ``costliest_position``, ``costliest_kind``, ``costliest_delta``,
        ``tie`` (another unit costs exactly as much as the start, and none costs more) and
        ``start_costliest``: 1.0 when the start costs strictly more than every other unit of the
        stage, 0.0 when another costs strictly more, NaN for a tie or a stage with a single unit
        (nothing to compare).
    """
    rows = []
    for stage, members in frame.groupby("stage", sort=True):
        members = members.sort_values("index")
        worst = members.loc[members["delta_accuracy"].idxmin()]
        start, others = members.iloc[0], members.iloc[1:]["delta_accuracy"]
        tie = bool(len(others)) and others.min() == start["delta_accuracy"]
        if not len(others) or tie:
            start_costliest = math.nan
        else:
            start_costliest = float(start["delta_accuracy"] < others.min())
        rows.append(dict(
            stage=int(stage), units=len(members), start=start["name"], start_delta=start["delta_accuracy"],
            costliest=worst["name"], costliest_position=worst["position"], costliest_kind=worst["kind"],
            costliest_delta=worst["delta_accuracy"], tie=tie, start_costliest=start_costliest,
        ))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- CKA


def unit_table(model) -> pd.DataFrame:
    """The units of ``model`` as a frame: ``name``, ``kind``, ``stage``, ``downsample``, ``index``, ``depth``."""
    from lib.models import units

    every = units(model)
    last = max(len(every) - 1, 1)
    return pd.DataFrame([dict(name=u.name, kind=u.kind, stage=u.stage, downsample=u.downsample, index=i, depth=i / last)
                         for i, u in enumerate(every)])


def stage_layout(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model and stage: how many units, how many can be removed, how many are MSAs, and the kind of the last.

    Args:
        tables: role → :func:`unit_table`.
    """
    rows = []
    for role, table in tables.items():
        for stage, members in table[table["stage"] > 0].groupby("stage", sort=True):
            rows.append(dict(role=role, stage=int(stage), units=len(members),
                             removable=int((~members["downsample"].astype(bool)).sum()),
                             msa=int((members["kind"] == "msa").sum()), last=members.sort_values("index")["kind"].iloc[-1]))
    return pd.DataFrame(rows, columns=["role", "stage", "units", "removable", "msa", "last"])


def _pairs(stages: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upper-triangle pairs (i < j) of units with stage ≥ 1: (i, j, same stage?)."""
    stages = torch.as_tensor(list(stages))
    keep = (stages >= 1).nonzero().flatten()
    i, j = torch.triu_indices(len(keep), len(keep), offset=1)
    i, j = keep[i], keep[j]
    return i, j, stages[i] == stages[j]


def block_contrast(cka: torch.Tensor, stages: Sequence[int], *, matched: bool = False) -> float:
    """Mean within-stage CKA minus mean between-stage CKA: > 0 when the matrix is block-diagonal by stage.

    Pairs of distinct units are counted once; units with stage 0 (the stem) are left out.

    Args:
        cka: ``[U, U]`` CKA between unit outputs, in ``units(model)`` order.
        stages: The stage of each of the U units.
        matched: Compare only pairs at the same distance d = j − i (in units): the statistic is
            then the mean over d of (mean within-stage CKA at d − mean between-stage CKA at d),
            over every d that has both kinds of pairs. This removes the part of the plain
            contrast that comes from within-stage pairs being closer together.

    Returns:
        The contrast; NaN when there are no within- or no between-stage pairs (one stage).
    """
    if cka.ndim != 2 or cka.shape[0] != cka.shape[1] or cka.shape[0] != len(stages):
        raise ValueError(f"cka must be [U, U] with U = {len(stages)} stages given, got {tuple(cka.shape)}")
    i, j, same = _pairs(stages)
    values = cka.to(torch.float64)[i, j]
    if not matched:
        if not same.any() or same.all():
            return math.nan
        return (values[same].mean() - values[~same].mean()).item()
    distance = j - i
    gaps = [values[same & (distance == d)].mean() - values[~same & (distance == d)].mean()
            for d in distance.unique().tolist() if (same & (distance == d)).any() and (~same & (distance == d)).any()]
    return torch.stack(gaps).mean().item() if gaps else math.nan


def block_contrast_bootstrap(
    hsic: torch.Tensor, stages: Sequence[int], *, matched: bool = False, bootstrap: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """:func:`block_contrast` of the mini-batch CKA, with a 95 % interval over resampled mini-batches.

    Args:
        hsic: ``[B, U, U]`` per-batch HSIC from :func:`lib.analysis.similarity.batch_hsic`.
        stages, matched: As for :func:`block_contrast`.
        bootstrap: Resamples of the B mini-batches (drawn with replacement); 0 gives NaN bounds.
        seed: Seed of the resampling.

    Returns:
        ``(value, lo, hi)``: the contrast of the CKA over all batches and its percentile interval.
    """
    value = block_contrast(cka_from_batches(hsic), stages, matched=matched)
    if not bootstrap or math.isnan(value):
        return value, math.nan, math.nan
    gen = torch.Generator().manual_seed(seed)
    b = hsic.shape[0]
    draws = []
    for _ in range(bootstrap):
        counts = torch.bincount(torch.randint(b, (b,), generator=gen), minlength=b)
        draws.append(block_contrast(cka_from_batches(hsic, counts=counts), stages, matched=matched))
    q = torch.quantile(torch.tensor(draws, dtype=torch.float64), torch.tensor([ALPHA / 2, 1 - ALPHA / 2], dtype=torch.float64))
    return value, q[0].item(), q[1].item()


def block_contrasts(hsic: torch.Tensor, stages: Sequence[int], *, bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Both forms of :func:`block_contrast` for one model, with their 95 % intervals over mini-batches.

    Returns:
        Two rows, ``form`` = ``"plain"`` and ``"matched"``, with ``value``, ``lo``, ``hi``
        (NaN for a single-stage model).
    """
    rows = []
    for form in ("plain", "matched"):
        value, lo, hi = block_contrast_bootstrap(hsic, stages, matched=form == "matched", bootstrap=bootstrap, seed=seed)
        rows.append(dict(form=form, value=value, lo=lo, hi=hi))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------- variance


RESET_AT = ("downsampling", "preserving")


def variance_resets(frame: pd.DataFrame, *, at: str = "downsampling") -> pd.DataFrame:
    """Does the variance fall back at the start of each stage? The previous stage's last unit against this stage's start.

    The paper reads the drop where a stage begins, at the block that downsamples
    (``at="downsampling"``); ours also asks whether it is still down at the stage's first
    shape-preserving unit (``at="preserving"``), the unit the build-up
    (:func:`lib.analysis.variance.stage_growth`) starts from. A difference counts only when the
    two units' 95 % intervals do not overlap.

    Args:
        frame: ``lib.analysis.variance.variance_by_depth`` (columns ``name``, ``stage``,
            ``downsample``, ``index``, ``value``, ``lo``, ``hi``); the stem (stage 0) is left out.
        at: Which unit starts a stage: ``"downsampling"`` (its first unit) or ``"preserving"``.

    Returns:
        One row per stage that has such a unit and follows another stage ≥ 1: ``stage``,
        ``previous_end`` (the previous stage's last unit), ``start``, ``previous_end_value``,
        ``start_value``, ``ratio`` (start / previous end) and ``resets`` (True when the start's
        interval lies wholly below the previous end's).
    """
    if at not in RESET_AT:
        raise ValueError(f"at={at!r} is not a place to start a stage; valid: {list(RESET_AT)}")
    rows, previous = [], None
    for stage, members in frame[frame["stage"] > 0].groupby("stage", sort=True):
        members = members.sort_values("index")
        starts = members if at == "downsampling" else members[~members["downsample"].astype(bool)]
        if previous is not None and len(starts):
            start = starts.iloc[0]
            rows.append(dict(stage=int(stage), previous_end=previous["name"], start=start["name"],
                             previous_end_value=previous["value"], start_value=start["value"],
                             ratio=start["value"] / previous["value"], resets=bool(start["hi"] < previous["lo"])))
        previous = members.iloc[-1]
    return pd.DataFrame(rows, columns=["stage", "previous_end", "start", "previous_end_value", "start_value", "ratio",
                                       "resets"])
