"""Each chapter's checks: measured frames in, :class:`lib.verdict.Check` rows out.

The statistics and thresholds are the ones each chapter states in its prose before computing
them; they are arguments with those values as defaults, so a reader can see (and vary) them,
and the verdict is never typed by hand.
"""

from __future__ import annotations

import pandas as pd

from lib.analysis import robustness
from lib.verdict import Check

__all__ = ["low_pass"]

KIND_NAMES = {"stem": "stem", "conv": "Conv", "msa": "MSA", "mlp": "MLP"}
# Which kinds of unit the paper says lower (−) or raise (+) a statistic, per model of the cast.
LOW_PASS_DIRECTIONS = [("ViT", "msa", "lower"), ("AlterNet", "msa", "lower"), ("ResNet", "conv", "raise"),
                       ("AlterNet", "conv", "raise"), ("ViT", "mlp", "raise")]


def _share(counts: pd.DataFrame, model: str, kind: str, direction: str) -> tuple[float, int, int]:
    row = counts[(counts["model"] == model) & (counts["kind"] == kind)]
    if row.empty:
        raise ValueError(f"no {kind} units of {model} in the counts; models: {sorted(counts['model'].unique())}")
    row = row.iloc[0]
    return float(row[f"{direction}_share"]), int(row[direction]), int(row["units"])


def low_pass(
    high_counts: pd.DataFrame,
    variance_counts: pd.DataFrame,
    growth: pd.DataFrame,
    outcomes: dict[str, dict],
    *,
    budget: dict,
    share: float = 0.5,
    eps: float = 0.7,
    high_bands=(0.7, 0.8, 0.9),
    low_bands=(0.1, 0.2, 0.3),
    seed: int = 0,
) -> list[Check]:
    """Chapter 2's checks: MSAs are low-pass, Convs and MLPs high-pass, and what that means for noise.

    Args:
        high_counts, variance_counts: ``lib.analysis.fourier.direction_counts`` of ΔlogA(π)
            and of feature-map variance, keyed by model label (``ResNet``, ``ViT``, ``AlterNet``).
        growth: ``lib.analysis.variance.stage_growth`` of the ResNet.
        outcomes: role → ``lib.analysis.robustness.noise_outcomes`` (``resnet``, ``vit``).
        budget: ``lib.verdict.budget`` of the measurement.
        share: Least share of a kind's units that must move in the claimed direction.
        eps: The noise amplitude the robustness checks use.
        high_bands, low_bands: Band centres (π) averaged for "high" and "low" frequency noise.
    """
    checks = []
    for statistic, counts in (("ΔlogA(π)", high_counts), ("feature-map variance", variance_counts)):
        for model, kind, direction in LOW_PASS_DIRECTIONS:
            value, n, units = _share(counts, model, kind, direction)
            verb = "lower" if direction == "lower" else "raise"
            checks.append(Check(
                claim=f"{model}: {KIND_NAMES[kind]} units {verb} {statistic}",
                statistic=f"share of {kind} units whose change in {statistic} is {'< 0' if verb == 'lower' else '> 0'} "
                          f"(95 % CI) — {n} of {units}",
                value=value, op=">=", threshold=share, budget=budget,
            ))
    grows = growth["grows"].astype(bool)
    checks.append(Check(
        claim="ResNet: variance builds up within every stage",
        statistic=f"share of stages whose last unit's variance exceeds the first shape-preserving unit's (95 % CIs apart) "
                  f"— {int(grows.sum())} of {len(grows)}",
        value=float(grows.mean()) if len(grows) else float("nan"), op=">=", threshold=1.0, budget=budget,
    ))
    noise_budget = {**budget, "images": len(outcomes["resnet"]["clean"]), "eps": eps}
    value, lo, hi = robustness.band_contrast(outcomes["vit"], outcomes["resnet"], list(high_bands), eps, seed=seed)
    checks.append(Check(
        claim="ViT is more robust than ResNet to high-frequency noise",
        statistic=f"Δacc(ViT) − Δacc(ResNet), points, mean over f ∈ {list(high_bands)}π, ε = {eps:g}",
        value=value, op=">", threshold=0.0, interval=(lo, hi), budget=noise_budget,
    ))
    value, lo, hi = robustness.band_delta(outcomes["resnet"], list(high_bands), eps, seed=seed)
    checks.append(Check(
        claim="ResNet is hurt by high-frequency noise",
        statistic=f"Δacc(ResNet), points, mean over f ∈ {list(high_bands)}π, ε = {eps:g}",
        value=value, op="<", threshold=0.0, interval=(lo, hi), budget=noise_budget,
    ))
    value, lo, hi = robustness.band_contrast(outcomes["resnet"], outcomes["vit"], list(low_bands), eps, seed=seed)
    checks.append(Check(
        claim="Low-frequency noise hurts ViT more than ResNet",
        statistic=f"Δacc(ResNet) − Δacc(ViT), points, mean over f ∈ {list(low_bands)}π, ε = {eps:g}",
        value=value, op=">", threshold=0.0, interval=(lo, hi), budget=noise_budget,
    ))
    return checks
