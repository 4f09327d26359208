"""Spectrum statistics against hand-computed values, and the bootstrap over batches."""

import math

import pytest
import torch

from lib.analysis import hessian, spectra


def test_negative_mass_and_positive_median_by_hand():
    values = torch.tensor([[-3.0, 10.0, 1.0], [2.0, -1.0, 4.0]], dtype=torch.float64)
    assert spectra.negative_mass(values) == pytest.approx(2 / 6)
    assert spectra.positive_median(values) == pytest.approx(2.0)  # lower median of 1, 2, 4, 10
    assert math.isnan(spectra.positive_median(torch.tensor([-1.0])))
    assert math.isnan(spectra.negative_mass(torch.tensor([])))


def test_compare_finds_a_clear_difference_and_none_between_equals():
    g = torch.Generator().manual_seed(0)
    sharp = 100 + 10 * torch.rand(8, 5, generator=g, dtype=torch.float64)
    flat = 20 + 10 * torch.rand(8, 5, generator=g, dtype=torch.float64)
    value, lo, hi = spectra.compare(sharp, flat, "median positive eigenvalue", reps=500)
    assert value < 0 and lo <= value <= hi < 0
    assert -90 < lo <= hi < -70
    same = spectra.compare(sharp, sharp, "median positive eigenvalue", reps=500)
    assert same[0] == 0 and same[1] < 0 < same[2]


def test_compare_negative_mass_interval_brackets_the_difference():
    a = torch.tensor([[5.0, 4.0]] * 8, dtype=torch.float64)
    b = torch.tensor([[5.0, -4.0]] * 4 + [[5.0, 4.0]] * 4, dtype=torch.float64)
    value, lo, hi = spectra.compare(a, b, "negative mass", reps=500)
    assert value == pytest.approx(0.25)
    assert 0 < lo <= value <= hi <= 0.5
    with pytest.raises(ValueError, match="valid:"):
        spectra.compare(a, b, "mean")


def test_density_and_trace_of_a_linear_model_match_the_dense_hessian():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,))
    dense = hessian.dense(hessian.HessianOperator(model, (x, y)))
    exact = torch.linalg.eigvalsh(dense)
    d = spectra.spectral_density(model, x, y, probes=4, steps=dense.shape[0], seed=0)
    assert d.mean == pytest.approx(exact.mean().item(), rel=0.5)
    assert d.nodes.max().item() == pytest.approx(exact.max().item(), rel=1e-6)
    t = spectra.hessian_trace(model, x, y, probes=200, seed=0)
    assert abs(t.value - exact.sum().item()) < 4 * t.stderr + 1e-9
