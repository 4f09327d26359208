"""Tests of lib.analysis.similarity: linear CKA and mini-batch CKA (METHODS.md §10).

Known answers: CKA(X, X) = 1; invariance to orthogonal transforms and isotropic scaling, but
not to scaling columns unequally; the plug-in CKA against the textbook tr(KHLH) formula; the
unbiased HSIC against its definition as a U-statistic over ordered 4-tuples of distinct
examples; and the reason for the unbiased estimator: on independent representations, averaging
it over small batches stays near 0 where the plug-in estimator does not.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from lib import models
from lib.analysis.similarity import (
    _batches,
    batch_hsic,
    cka_from_batches,
    cka_matrix,
    linear_cka,
    minibatch_cka,
    unbiased_hsic,
)

SMOKE = ["resnet50_smoke", "vit_smoke", "alternet50_smoke"]
TIGHT = dict(rel=1e-10, abs=1e-12)  # float64 on small matrices: only rounding differs


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64)


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(_randn(d, d, seed=seed))
    return q


def _textbook_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Kornblith et al. (2019): tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)) with H = I − 11ᵀ/n."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return ((k * l).sum() / torch.sqrt((k * k).sum() * (l * l).sum())).item()


def _u_statistic_hsic(k: torch.Tensor, l: torch.Tensor) -> float:
    """HSIC₁ by its definition: mean over ordered distinct (i, j, q, r) of k_ij l_ij + k_ij l_qr − 2 k_ij l_iq."""
    n = k.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += (k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]).item()
        count += 1
    return total / count


# --- linear CKA -------------------------------------------------------------------------------


# (N, D) = (50, 6) takes the feature-space path, (8, 30) the example-space (Gram) path.
@pytest.mark.parametrize("n, d", [(50, 6), (8, 30)])
@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_of_a_representation_with_itself_is_one(n, d, unbiased):
    x = _randn(n, d)
    assert linear_cka(x, x, unbiased=unbiased) == pytest.approx(1.0, **TIGHT)


@pytest.mark.parametrize("n, d", [(50, 6), (8, 30)])
@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling(n, d, unbiased):
    x, y = _randn(n, d, seed=1), _randn(n, 5, seed=2) + 0.5 * _randn(n, d, seed=1)[:, :5]
    reference = linear_cka(x, y, unbiased=unbiased)
    assert linear_cka(x @ _orthogonal(d, seed=3), y, unbiased=unbiased) == pytest.approx(reference, **TIGHT)
    assert linear_cka(x, 3.7 * y @ _orthogonal(5, seed=4), unbiased=unbiased) == pytest.approx(reference, **TIGHT)
    assert linear_cka(0.01 * x, y, unbiased=unbiased) == pytest.approx(reference, **TIGHT)


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_is_not_invariant_to_scaling_columns_unequally(unbiased):
    x = _randn(40, 6, seed=5)
    y = x[:, :4] + 0.3 * _randn(40, 4, seed=6)
    stretch = torch.tensor([10.0, 1.0, 1.0, 0.1], dtype=torch.float64)
    reference = linear_cka(x, y, unbiased=unbiased)
    assert abs(linear_cka(x, y * stretch, unbiased=unbiased) - reference) > 1e-2
    assert linear_cka(x, x * torch.linspace(0.1, 5, 6, dtype=torch.float64), unbiased=unbiased) < 1 - 1e-2


@pytest.mark.parametrize("n, d", [(50, 6), (8, 30)])
def test_linear_cka_matches_the_textbook_formula(n, d):
    x, y = _randn(n, d, seed=7) + 2.0, _randn(n, d + 3, seed=8) - 1.0  # non-zero means: centring matters
    assert linear_cka(x, y) == pytest.approx(_textbook_cka(x, y), **TIGHT)
    assert linear_cka(x.reshape(n, d, 1), y) == pytest.approx(_textbook_cka(x, y), **TIGHT)  # [N, ...] is flattened


def test_linear_cka_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(_randn(5, 3), _randn(6, 3))
    with pytest.raises(ValueError, match="must be a tensor"):
        linear_cka(_randn(5), _randn(5, 3))
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(_randn(3, 2), _randn(3, 2), unbiased=True)


def test_cka_of_a_constant_representation_is_nan():
    assert torch.isnan(torch.tensor(linear_cka(torch.ones(10, 3, dtype=torch.float64), _randn(10, 3))))


# --- the unbiased HSIC ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [4, 6, 7])
def test_unbiased_hsic_matches_its_u_statistic_definition(n):
    x, y = _randn(n, 3, seed=n), _randn(n, 2, seed=n + 10) + 0.5 * _randn(n, 3, seed=n)[:, :2]
    k, l = x @ x.T, y @ y.T
    hsic = unbiased_hsic(torch.stack([k, l]))
    assert hsic[0, 1].item() == pytest.approx(_u_statistic_hsic(k, l), **TIGHT)
    assert hsic[1, 1].item() == pytest.approx(_u_statistic_hsic(l, l), **TIGHT)
    assert torch.equal(hsic, hsic.T)


def test_unbiased_hsic_ignores_a_constant_shift_of_the_features():
    # Why cka_matrix may centre each batch before its (float32) Gram product.
    x, y = _randn(12, 5, seed=11), _randn(12, 4, seed=12)
    shifted_x, shifted_y = x + 3.0 * _randn(1, 5, seed=13), y - 2.0
    plain = unbiased_hsic(torch.stack([x @ x.T, y @ y.T]))
    shifted = unbiased_hsic(torch.stack([shifted_x @ shifted_x.T, shifted_y @ shifted_y.T]))
    torch.testing.assert_close(shifted, plain, rtol=1e-9, atol=1e-12)


def test_unbiased_hsic_needs_four_examples():
    with pytest.raises(ValueError, match="at least 4"):
        unbiased_hsic(torch.ones(2, 3, 3, dtype=torch.float64))


# --- mini-batch CKA ---------------------------------------------------------------------------


def test_minibatch_cka_with_one_batch_is_the_unbiased_linear_cka():
    x, y, z = _randn(30, 4, seed=14), _randn(30, 7, seed=15), _randn(30, 2, 3, seed=16)
    cka = minibatch_cka([[x, y, z]])
    assert cka[0, 1].item() == pytest.approx(linear_cka(x, y, unbiased=True), **TIGHT)
    assert cka[1, 2].item() == pytest.approx(linear_cka(y, z, unbiased=True), **TIGHT)


def test_minibatch_cka_of_independent_representations_stays_near_zero_where_plug_in_does_not():
    # 64 batches of 16: the plug-in CKA of independent 8-d features sits far above 0 at n = 16;
    # the average of unbiased HSICs estimates the population value, 0, as the full data do.
    x, y = _randn(1024, 8, seed=17), _randn(1024, 8, seed=18)
    batches = [[x[i : i + 16], y[i : i + 16]] for i in range(0, 1024, 16)]
    minibatch = minibatch_cka(batches)[0, 1].item()
    plug_in_per_batch = sum(linear_cka(a, b) for a, b in batches) / len(batches)
    full = linear_cka(x, y)
    assert abs(minibatch - full) < 0.03
    assert plug_in_per_batch > full + 0.2


def test_minibatch_cka_rejects_a_changing_number_of_representations():
    with pytest.raises(ValueError, match="representations"):
        minibatch_cka([[_randn(5, 2), _randn(5, 2)], [_randn(5, 2)]])


def test_batches_are_contiguous_near_equal_and_cover_every_image():
    spans = _batches(9, 8)
    assert [(s.start, s.stop) for s in spans] == [(0, 4), (4, 9)]
    sizes = [s.stop - s.start for s in _batches(1001, 256)]
    assert sum(sizes) == 1001 and max(sizes) - min(sizes) <= 1 and len(sizes) == 4


# --- on models --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=_gen(19))


@pytest.mark.parametrize("name", SMOKE)
def test_cka_matrix_is_symmetric_with_a_unit_diagonal(name, images):
    torch.manual_seed(0)
    model = models.create(name)
    cka = cka_matrix(model, images, batch_size=8, progress=False)
    size = len(models.units(model))
    assert cka.shape == (size, size) and cka.dtype == torch.float64
    assert torch.isfinite(cka).all()
    assert torch.equal(cka, cka.T)
    assert torch.equal(cka.diagonal(), torch.ones(size, dtype=torch.float64))
    assert model.training  # the mode create() left is restored


@pytest.mark.parametrize("name", SMOKE)
def test_cka_matrix_with_one_batch_matches_a_direct_computation(name, images):
    torch.manual_seed(0)
    model = models.create(name).eval()
    cka = cka_matrix(model, images, batch_size=len(images), progress=False)
    maps = [fmap for _, fmap in models.feature_maps(model, images)]
    last = len(maps) - 1
    # float32 Gram products in cka_matrix against float64 ones here
    for i, j in [(0, last), (1, 2), (last - 1, last)]:
        assert cka[i, j].item() == pytest.approx(linear_cka(maps[i], maps[j], unbiased=True), abs=1e-5)


def test_cka_matrix_leaves_the_model_unchanged(images):
    torch.manual_seed(0)
    model = models.create("alternet50_smoke")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cka_matrix(model, images, batch_size=8, progress=False)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics too: eval mode


def test_cka_matrix_rejects_bad_inputs(images):
    model = models.create("vit_smoke")
    with pytest.raises(ValueError, match="batch_size"):
        cka_matrix(model, images, batch_size=3, progress=False)
    with pytest.raises(ValueError, match="at least 4 images"):
        cka_matrix(model, images[:3], progress=False)


@pytest.mark.parametrize("name", ["resnet50_smoke", "alternet50_smoke"])
def test_batch_hsic_averaged_is_the_cka_matrix(name, images):
    torch.manual_seed(0)
    model = models.create(name)
    images = torch.cat([images, images.flip(0)[:8]])  # 24 images: three batches of 8
    hsic = batch_hsic(model, images, batch_size=8, progress=False)
    size = len(models.units(model))
    assert hsic.shape == (3, size, size) and hsic.dtype == torch.float64
    torch.testing.assert_close(cka_from_batches(hsic), cka_matrix(model, images, batch_size=8, progress=False),
                               rtol=1e-12, atol=1e-12)
    assert model.training  # mode restored
    # a batch drawn alone gives that batch's CKA; counts need one entry per batch
    torch.testing.assert_close(cka_from_batches(hsic, counts=torch.tensor([0, 1, 0])), cka_from_batches(hsic[1:2]))
    twice = cka_from_batches(torch.cat([hsic, hsic[:1]]))  # batch 0 counted twice
    torch.testing.assert_close(cka_from_batches(hsic, counts=torch.tensor([2, 1, 1])), twice)
    with pytest.raises(ValueError, match="counts"):
        cka_from_batches(hsic, counts=torch.ones(2))
    with pytest.raises(ValueError, match="batch_size"):
        batch_hsic(model, images, batch_size=3, progress=False)
