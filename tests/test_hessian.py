"""lib.analysis.hessian against independent answers (STYLE.md, "In our tests").

Autograd checked against autograd proves little, so the HVP operator is compared with closed-form
Hessians (linear regression, softmax cross-entropy), with central differences of first-order
gradients, and with a dense Hessian built by ``torch.func.hessian``; the algorithms are compared
with ``eigvalsh`` on matrices of known spectrum. Everything numeric runs in float64 at tiny sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lib.models
from lib.analysis import hessian as H
from lib.data import normalize

torch.set_num_threads(1)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _symmetric(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    """Q diag(λ) Qᵀ with a seeded random orthogonal Q."""
    lam = torch.tensor(eigenvalues, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=_gen(seed), dtype=torch.float64))
    a = q @ torch.diag(lam) @ q.T
    return (a + a.T) / 2


def _by_magnitude(values: torch.Tensor, k: int) -> torch.Tensor:
    return values[torch.argsort(values.abs(), descending=True)][:k]


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out.squeeze(1) - target).pow(2).mean()


def _tanh_mlp(seed: int = 0, widths=(3, 6, 3)) -> nn.Module:
    torch.manual_seed(seed)  # module init only; every test draws its data from its own generator
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).double()


def _dense_hessian_torch_func(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The full Hessian of mean CE by torch.func.hessian: a path independent of the HVPs."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params = {n: t.reshape(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    return torch.func.hessian(loss)(flat0)


# ------------------------------------------------------------------- the HVP operator


def test_linear_regression_hessian_is_2_over_n_xtx():
    g = _gen(1)
    x = torch.randn(20, 5, generator=g, dtype=torch.float64)
    y = torch.randn(20, generator=g, dtype=torch.float64)
    model = nn.Linear(5, 1, bias=False).double()
    expected = 2 / len(x) * x.T @ x
    op = H.HessianOperator(model, (x, y), loss_fn=_mse)
    assert torch.allclose(H.dense(op), expected, rtol=0, atol=1e-12)
    # chunking and splitting into batches leave the Hessian of the mean loss unchanged
    chunked = H.HessianOperator(model, (x, y), loss_fn=_mse, chunk_size=7)
    split = H.HessianOperator(model, [(x[:8], y[:8]), (x[8:], y[8:])], loss_fn=_mse)
    assert torch.allclose(H.dense(chunked), expected, rtol=0, atol=1e-12)
    assert torch.allclose(H.dense(split), expected, rtol=0, atol=1e-12)
    assert op.loss.startswith("custom loss _mse") and op.batch_size == 20


def test_softmax_cross_entropy_hessian_matches_kronecker_form():
    # mean CE of logits W x: H = (1/N) Σᵢ (diag pᵢ − pᵢpᵢᵀ) ⊗ xᵢxᵢᵀ for W flattened row-major
    g = _gen(2)
    n, d, c = 12, 4, 3
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    model = nn.Linear(d, c, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(c, d, generator=g, dtype=torch.float64))
    p = (x @ model.weight.detach().T).softmax(dim=1)
    curvature = [torch.diag(p[i]) - torch.outer(p[i], p[i]) for i in range(n)]
    expected = sum(torch.kron(curvature[i], torch.outer(x[i], x[i])) for i in range(n)) / n
    op = H.HessianOperator(model, (x, y))
    assert torch.allclose(H.dense(op), expected, rtol=0, atol=1e-13)
    assert op.loss == "mean cross-entropy"
    # the CE Hessian in the logits does not depend on (soft) targets, so smoothing leaves it
    # unchanged, and (wd/2)‖w‖² adds wd·I
    smoothed = H.HessianOperator(model, (x, y), label_smoothing=0.1, weight_decay=0.05)
    assert torch.allclose(H.dense(smoothed), expected + 0.05 * torch.eye(c * d, dtype=torch.float64), atol=1e-13)
    assert smoothed.loss == "mean cross-entropy (label smoothing 0.1) + (wd/2)·‖w‖², wd = 0.05"


def test_hvp_matches_central_differences_to_second_order():
    g = _gen(3)
    model = _tanh_mlp()
    x = torch.randn(10, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    op = H.HessianOperator(model, (x, y))
    v = torch.randn(op.size, generator=g, dtype=torch.float64)
    hv = op.matvec(v)
    params = list(model.parameters())
    w0 = torch.cat([p.detach().reshape(-1) for p in params])

    def grad_at(w: torch.Tensor) -> torch.Tensor:  # first-order autograd only
        torch.nn.utils.vector_to_parameters(w, params)
        loss = F.cross_entropy(model(x), y)
        return torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])

    def error(eps: float) -> float:
        fd = (grad_at(w0 + eps * v) - grad_at(w0 - eps * v)) / (2 * eps)
        return float((fd - hv).norm() / hv.norm())

    coarse, fine = error(1e-3), error(1e-4)
    torch.nn.utils.vector_to_parameters(w0, params)
    assert fine < 1e-7
    # the gap is O(ε²): ten times smaller ε, about a hundred times smaller error
    assert 30 < coarse / fine < 300


# torch.func's forward-mode AD loads torch.jit decompositions once, which warns in torch 2.14
_JIT_WARNING = "ignore:`torch.jit.script` is deprecated:FutureWarning"


@pytest.mark.filterwarnings(_JIT_WARNING)
def test_dense_hessian_of_small_net_matches_torch_func():
    g = _gen(4)
    model = _tanh_mlp(widths=(4, 8, 3))
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=g)
    op = H.HessianOperator(model, (x, y))
    assert torch.allclose(H.dense(op), _dense_hessian_torch_func(model, x, y), rtol=0, atol=1e-12)


def test_params_filter_gives_the_diagonal_block():
    g = _gen(5)
    model = _tanh_mlp()
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=g)
    full = H.dense(H.HessianOperator(model, (x, y)))
    block_op = H.HessianOperator(model, (x, y), params=lambda name, p: name.startswith("2."))
    first = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("2."))
    assert block_op.names == ("2.weight", "2.bias")
    assert torch.allclose(H.dense(block_op), full[first:, first:], rtol=0, atol=1e-13)
    assert set(block_op.unflatten(torch.zeros(block_op.size, dtype=torch.float64))) == {"2.weight", "2.bias"}


def test_uint8_images_are_normalised_and_eval_mode_is_used_and_restored():
    # resnet50_smoke has BatchNorm: in train mode the batch statistics would enter the Hessian
    model = lib.models.create("resnet50_smoke").double()
    g = _gen(6)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (2,), generator=g)
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=g, dtype=torch.float64)
    from_uint8 = H.HessianOperator(model, (images, labels)).matvec(v)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(stats[k], t) for k, t in model.state_dict().items())  # running stats untouched
    model.eval()
    from_float = H.HessianOperator(model, (normalize(images).double(), labels)).matvec(v)
    assert torch.allclose(from_uint8, from_float, rtol=1e-10, atol=1e-12)


def test_fused_attn_restored_after_hvp_on_vit_smoke():
    model = lib.models.create("vit_smoke")
    attention = [m for m in model.modules() if hasattr(m, "fused_attn")]
    assert attention
    for m in attention:
        m.fused_attn = True
    g = _gen(7)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    op = H.HessianOperator(model, (images, torch.tensor([1, 2])))
    hv = op.matvec(torch.randn(op.size, generator=g))
    assert torch.isfinite(hv).all() and hv.norm() > 0
    assert all(m.fused_attn for m in attention)
    assert model.training


@pytest.mark.parametrize("name", ["vit_smoke", "alternet50_smoke"])
def test_hvp_double_backward_through_attention_is_symmetric(name):
    # uᵀ(Hv) = vᵀ(Hu) holds only if the double backward through attention is right
    model = lib.models.create(name).double()
    g = _gen(8)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    op = H.HessianOperator(model, (images, torch.tensor([3, 4])))
    u = torch.randn(op.size, generator=g, dtype=torch.float64)
    v = torch.randn(op.size, generator=g, dtype=torch.float64)
    uhv, vhu = float(u @ op.matvec(v)), float(v @ op.matvec(u))
    assert uhv == pytest.approx(vhu, rel=1e-9)
    assert abs(uhv) > 0


def test_operator_rejects_bad_inputs():
    model = nn.Linear(3, 2).double()
    x, y = torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    op = H.HessianOperator(model, (x, y))
    with pytest.raises(ValueError, match="1-D vector of length 8"):
        op.matvec(torch.zeros(7, dtype=torch.float64))
    with pytest.raises(ValueError, match="differ in length"):
        H.HessianOperator(model, (x, y[:3]))
    with pytest.raises(ValueError, match="label_smoothing"):
        H.HessianOperator(model, (x, y), loss_fn=F.cross_entropy, label_smoothing=0.1)
    with pytest.raises(ValueError, match="no parameters selected"):
        H.HessianOperator(model, (x, y), params=lambda name, p: False)
    with pytest.raises(ValueError, match="symmetric"):
        H.MatrixOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="square"):
        H.MatrixOperator(torch.zeros(2, 3, dtype=torch.float64))


# ------------------------------------------------------------------- the algorithms


def test_power_iteration_returns_largest_magnitude_first_signed():
    op = H.MatrixOperator(_symmetric([-9.0, 7.0, 5.0, -3.0, 1.0, 0.5]))
    result = H.power_iteration(op, k=4, tol=1e-12, max_iter=2000, seed=0, vectors=True)
    assert torch.allclose(result.eigenvalues, torch.tensor([-9.0, 7.0, 5.0, -3.0], dtype=torch.float64), atol=1e-9)
    assert result.all_converged and result.method == "power"
    assert result.matvecs == sum(result.iterations)
    # eigenvectors satisfy Av = λv to the reported residuals
    for lam, vec, res in zip(result.eigenvalues, result.eigenvectors, result.residuals):
        assert float((op.matvec(vec) - lam * vec).norm()) <= res + 1e-6


def test_power_iteration_stops_at_relative_tolerance_and_flags_non_convergence():
    op = H.MatrixOperator(_symmetric([10.0, 9.9, 1.0, 0.5, 0.2, 0.1]))  # a slow ratio of 0.99
    loose = H.power_iteration(op, k=1, tol=1e-3, seed=0)
    assert loose.converged.all() and abs(float(loose.eigenvalues[0]) - 10.0) < 0.2
    capped = H.power_iteration(op, k=1, tol=1e-14, max_iter=5, seed=0)
    assert not capped.converged.any() and capped.iterations == (5,)


@pytest.mark.parametrize("kind", ["wishart", "indefinite"])
def test_lanczos_top_eigs_match_eigvalsh(kind):
    g = _gen(9)
    z = torch.randn(60, 40, generator=g, dtype=torch.float64)
    a = z.T @ z / 60 if kind == "wishart" else (z[:40] + z[:40].T) / 2
    expected = _by_magnitude(torch.linalg.eigvalsh(a), 5)
    result = H.lanczos(H.MatrixOperator(a), k=5, tol=1e-10, max_steps=40, seed=1)
    assert torch.allclose(result.eigenvalues, expected, rtol=1e-9, atol=1e-10)
    assert result.all_converged and result.matvecs == result.iterations[0] <= 40
    if kind == "indefinite":
        assert (expected < 0).any()  # the test covers negative eigenvalues of largest |λ|


def test_lanczos_and_power_iteration_agree_on_separated_top_eigenvalues():
    bulk = torch.linspace(-1, 1, 44, dtype=torch.float64).tolist()
    op = H.MatrixOperator(_symmetric([40.0, -20.0, 10.0, 5.0, 3.0, 2.5] + bulk, seed=3))
    power = H.power_iteration(op, k=3, seed=0)  # the paper's settings: tol 1e-3, ≤ 100 iterations
    fast = H.lanczos(op, k=3, seed=0)
    assert torch.allclose(power.eigenvalues, torch.tensor([40.0, -20.0, 10.0], dtype=torch.float64), rtol=1e-2)
    assert torch.allclose(fast.eigenvalues, power.eigenvalues, rtol=1e-2)
    assert fast.matvecs < power.matvecs


@pytest.mark.filterwarnings(_JIT_WARNING)
def test_top5_of_small_net_match_dense_eigendecomposition():
    g = _gen(10)
    model = _tanh_mlp(widths=(4, 10, 10, 3))  # 193 parameters
    x = torch.randn(24, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=g)
    expected = _by_magnitude(torch.linalg.eigvalsh(_dense_hessian_torch_func(model, x, y)), 5)
    top = H.top_eigenpairs(model, x, y, k=5, method="lanczos", tol=1e-10, max_iter=193, seed=0)
    assert torch.allclose(top.eigenvalues, expected, rtol=1e-8, atol=1e-10)
    assert top.loss == "mean cross-entropy" and top.batch_size == 24
    first = H.top_eigenvalues(model, x, y, k=1, method="power", seed=0)
    assert float(first[0]) == pytest.approx(float(expected[0]), rel=1e-2)


def test_hutchinson_trace_within_three_standard_errors_and_seeded():
    a = _symmetric(torch.linspace(-2, 5, 30).tolist(), seed=4)
    op = H.MatrixOperator(a)
    est = H.trace(op, probes=200, seed=0)
    assert abs(est.value - float(a.trace())) <= 3 * est.stderr
    assert est.stderr > 0 and est.probes == est.matvecs == len(est.samples) == 200
    assert H.trace(op, probes=10, seed=5).value == H.trace(op, probes=10, seed=5).value
    assert H.trace(op, probes=10, seed=5).value != H.trace(op, probes=10, seed=6).value
    with pytest.raises(ValueError, match="seed= or generator="):
        H.trace(op, seed=1, generator=_gen(1))


def test_slq_density_integrates_to_one_and_its_mean_is_trace_over_n():
    n = 40
    a = _symmetric(torch.linspace(-3, 8, n).tolist(), seed=5)
    d = H.density(H.MatrixOperator(a), probes=8, steps=20, seed=0)
    assert float(d.weights.sum()) == pytest.approx(1.0, abs=1e-12)
    grid, rho = d.on_grid()
    assert float(torch.trapezoid(rho, grid)) == pytest.approx(1.0, abs=1e-4)
    # the quadrature mean of each probe is exactly its Hutchinson sample qᵀAq: within 3 s.e.
    per_probe = torch.stack([(d.weights * d.nodes)[d.probe == p].sum() * d.probes for p in range(d.probes)])
    assert float(per_probe.mean()) == pytest.approx(d.mean, rel=1e-12)
    stderr = float(per_probe.std() / d.probes**0.5)
    assert abs(d.mean - float(a.trace()) / n) <= 3 * stderr


def test_slq_with_a_full_krylov_space_recovers_the_spectrum():
    eigenvalues = [-4.0, -1.0, 0.5, 2.0, 3.0, 6.0]
    d = H.density(H.MatrixOperator(_symmetric(eigenvalues)), probes=2, steps=6, seed=0)
    nodes = d.nodes[d.probe == 0]
    assert torch.allclose(nodes, torch.tensor(eigenvalues, dtype=torch.float64), atol=1e-10)


def test_algorithms_reject_bad_arguments():
    op = H.MatrixOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="k must be between 1"):
        H.lanczos(op, k=4)
    with pytest.raises(ValueError, match="probes"):
        H.trace(op, probes=1)


def test_same_seed_same_result_other_seed_differs():
    op = H.MatrixOperator(_symmetric(torch.linspace(1, 10, 12).tolist(), seed=6))
    a = H.power_iteration(op, k=2, max_iter=3, seed=0).eigenvalues
    b = H.power_iteration(op, k=2, max_iter=3, seed=0).eigenvalues
    c = H.power_iteration(op, k=2, max_iter=3, seed=1).eigenvalues
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------- the spectrum


def _tiny_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3)).double()


def test_max_eigenvalue_spectrum_pools_per_batch_top_k(capsys):
    model = _tiny_convnet()
    g = _gen(11)
    images = torch.randint(0, 256, (26, 3, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 3, (26,), generator=g)
    spectrum = H.max_eigenvalue_spectrum(
        model, images, labels, k=2, batch_size=8, method="lanczos", tol=1e-10, max_iter=65, progress=False
    )
    assert spectrum.batches == 3 and spectrum.values.shape == (6,)  # the last 2 images are left out
    assert capsys.readouterr().err == ""
    for b in range(3):
        alone = H.top_eigenvalues(
            model, images[8 * b : 8 * b + 8], labels[8 * b : 8 * b + 8], k=2, tol=1e-10, max_iter=65, seed=3
        )
        assert torch.allclose(spectrum.per_batch[b], alone, rtol=1e-8)
    assert torch.equal(spectrum.values, spectrum.per_batch.reshape(-1))
    frame = spectrum.frame()
    assert list(frame.columns) == ["batch", "rank", "eigenvalue", "residual", "converged"] and len(frame) == 6
    H.max_eigenvalue_spectrum(model, images, labels, k=1, batch_size=8, batches=1, progress=True)
    assert "Hessian top-k" in capsys.readouterr().err
    with pytest.raises(ValueError, match="full batches"):
        H.max_eigenvalue_spectrum(model, images, labels, batch_size=8, batches=4, progress=False)
    with pytest.raises(ValueError, match="method"):
        H.max_eigenvalue_spectrum(model, images, labels, batch_size=8, method="arnoldi", progress=False)
