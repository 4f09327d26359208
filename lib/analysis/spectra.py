"""Statistics of Hessian spectra, and the whole-spectrum views of one batch (Chapter 1).

The paper compares pooled per-batch top-5 eigenvalues (Fig 1c, 4) by eye. Chapter 1 turns the
two readings into numbers fixed in advance: **negative mass**, the share of pooled values below
0 (non-convexity), and the **median of the positive values** (sharpness: lower is flatter). A
difference between two models gets a 95 % bootstrap interval that resamples each model's
*batches* (the independent units; the k values of one batch are not independent).

:func:`spectral_density` and :func:`hessian_trace` run stochastic Lanczos quadrature and
Hutchinson's estimator on one batch of a model, for the whole-spectrum view the paper lacks.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from lib.analysis import hessian

__all__ = [
    "negative_mass",
    "positive_median",
    "STATISTICS",
    "compare",
    "summary",
    "spectral_density",
    "hessian_trace",
    "whole_spectrum_table",
]


def negative_mass(values: torch.Tensor) -> float:
    """Share of the values below 0 (NaN for no values)."""
    values = values.reshape(-1)
    return float((values < 0).double().mean()) if values.numel() else float("nan")


def positive_median(values: torch.Tensor) -> float:
    """Median of the positive values (NaN when there are none); the lower median for an even count."""
    positive = values.reshape(-1)
    positive = positive[positive > 0]
    return float(positive.double().median()) if positive.numel() else float("nan")


STATISTICS: dict[str, Callable[[torch.Tensor], float]] = {
    "negative mass": negative_mass,
    "median positive eigenvalue": positive_median,
}


def compare(
    a: torch.Tensor, b: torch.Tensor, statistic: str, *, reps: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """statistic(b) − statistic(a) for two per-batch spectra, with a bootstrap interval over batches.

    Args:
        a, b: ``[batches, k]`` per-batch eigenvalues (``Spectrum.per_batch``) of two models.
        statistic: A key of :data:`STATISTICS`.
        reps: Bootstrap resamples; each draws the batches of ``a`` and of ``b`` with
            replacement, independently, and pools their values.
        seed: Seed of the resampling.
        level: Coverage of the percentile interval.

    Returns:
        ``(difference, lo, hi)``; resamples where the statistic is undefined (no positive
        value) are dropped.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; valid: {sorted(STATISTICS)}")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"need per-batch spectra [batches, k], got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    f = STATISTICS[statistic]
    value = f(b) - f(a)
    generator = torch.Generator().manual_seed(seed)
    draws = []
    for _ in range(reps):
        ia = torch.randint(len(a), (len(a),), generator=generator)
        ib = torch.randint(len(b), (len(b),), generator=generator)
        draws.append(f(b[ib]) - f(a[ia]))
    draws = torch.tensor(draws, dtype=torch.float64)
    draws = draws[~draws.isnan()]
    if not draws.numel():
        return value, float("nan"), float("nan")
    tail = (1 - level) / 2
    lo, hi = torch.quantile(draws, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return value, lo, hi


def summary(spectra: dict[str, hessian.Spectrum]) -> pd.DataFrame:
    """One row per model: pooled values, negative mass, median positive, extremes, and how many converged."""
    rows = []
    for name, s in spectra.items():
        v = s.values
        rows.append({"model": name, "values": int(v.numel()), "negative mass": negative_mass(v),
                     "median positive": positive_median(v), "min": float(v.min()), "max": float(v.max()),
                     "converged": float(s.converged.double().mean())})
    return pd.DataFrame(rows)


def spectral_density(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    probes: int = hessian.SLQ_PROBES,
    steps: int = hessian.SLQ_STEPS,
    label_smoothing: float = 0.0,
    weight_decay: float = 0.0,
    seed: int | None = None,
) -> hessian.SpectralDensity:
    """The Hessian's spectral density on one batch, by stochastic Lanczos quadrature (:func:`hessian.density`)."""
    op = hessian.HessianOperator(model, (images, labels), label_smoothing=label_smoothing, weight_decay=weight_decay)
    return hessian.density(op, probes=probes, steps=steps, seed=seed)


def hessian_trace(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    probes: int = hessian.TRACE_PROBES,
    label_smoothing: float = 0.0,
    weight_decay: float = 0.0,
    seed: int | None = None,
) -> hessian.TraceEstimate:
    """The Hessian's trace on one batch, by Hutchinson's estimator (:func:`hessian.trace`)."""
    op = hessian.HessianOperator(model, (images, labels), label_smoothing=label_smoothing, weight_decay=weight_decay)
    return hessian.trace(op, probes=probes, seed=seed)


def whole_spectrum_table(densities: dict[str, hessian.SpectralDensity], traces: dict[str, hessian.TraceEstimate]) -> pd.DataFrame:
    """One row per model: Hutchinson trace ± s.e., SLQ estimate of the trace, negative share and extremes of the SLQ density."""
    rows = []
    for name, d in densities.items():
        t = traces[name]
        rows.append({"model": name, "parameters": d.size, "trace (Hutchinson)": t.value, "± s.e.": t.stderr,
                     "trace (SLQ)": d.mean * d.size, "negative share (SLQ)": float(d.weights[d.nodes < 0].sum()),
                     "smallest node": float(d.nodes.min()), "largest node": float(d.nodes.max())})
    return pd.DataFrame(rows)
