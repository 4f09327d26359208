"""Top Hessian eigenvalues: our Lanczos against a reference power iteration written the way PyHessian does it.

The reference builds the gradient graph once (``create_graph=True``), then repeats
Hessian-vector products by ``autograd.grad`` on it. For each eigenvalue it starts from a random
vector, keeps the iterate orthogonal to the eigenvectors already found (deflation), normalises it,
and stops when the Rayleigh quotient changes by less than 1e-3 relatively or after 100 products
(PyHessian's defaults). Ours is :func:`lib.analysis.hessian.top_eigenpairs` with its defaults
(Lanczos, full reorthogonalisation, every Ritz residual ≤ 1e-3·|θ|).

Both run on the same 128 training images of the cast's trained ResNet and ViT, loss = mean
cross-entropy, eval mode, fp32, for k = 1 (the issue's comparison) and k = 5 (what the chapters
compute per batch). Products (HVPs) are counted as well as seconds: the counts do not depend on
what else the machine is doing.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from lib import data, runs
from lib.analysis import hessian


def _dot(a, b) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _unit(v):
    norm = torch.sqrt(_dot(v, v))
    return [x / (norm + 1e-6) for x in v]


def _deflate(v, found):
    for e in found:
        c = _dot(v, e)
        v = [x - c * y for x, y in zip(v, e)]
    return _unit(v)


def reference_power_iteration(model, images, labels, *, k: int = 1, max_iter: int = 100, tol: float = 1e-3,
                              seed: int = 0) -> tuple[list[float], int]:
    """Top-k eigenvalues by power iteration with deflation on a kept double-backward graph; (values, products)."""
    params = [p for p in model.parameters() if p.requires_grad]
    values, found, products = [], [], 0
    g = torch.Generator().manual_seed(seed)
    with hessian._analysis_mode(model):
        loss = F.cross_entropy(model(images), labels)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        for _ in range(k):
            v = _unit([torch.randn(p.shape, generator=g) for p in params])
            value = None
            for _ in range(max_iter):
                v = _deflate(v, found)
                hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
                products += 1
                new = _dot(hv, v).item()
                v = _unit(hv)
                if value is not None and abs(new - value) / (abs(value) + 1e-6) < tol:
                    value = new
                    break
                value = new
            values.append(value)
            found.append(_deflate(v, found))
    return values, products


def run(roles=("resnet", "vit"), images: int = 128, ks=(1, 5)) -> None:
    print(f"\ntop-k Hessian eigenvalues, {images} training images, {torch.get_num_threads()} threads")
    print(f"{'role':8s} {'k':>2s} {'power ref s':>11s} {'HVPs':>5s} {'Lanczos s':>10s} {'HVPs':>5s} "
          f"{'speed-up':>9s} {'HVP ratio':>9s} {'max rel. diff':>14s}")
    for role in roles:
        model = runs.trained(role, "cpu")
        x, y = runs.training_batches(model, batches=1, batch_size=images, seed=0)
        for k in ks:
            tic = time.perf_counter()
            ref, ref_products = reference_power_iteration(model, data.normalize(x, model.book_dataset), y, k=k)
            ref_seconds = time.perf_counter() - tic
            tic = time.perf_counter()
            result = hessian.top_eigenpairs(model, x, y, k=k, method="lanczos", seed=0)
            ours_seconds = time.perf_counter() - tic
            ref_sorted = sorted(ref, key=abs, reverse=True)
            diff = max(abs(a - b) / abs(b) for a, b in zip(result.eigenvalues.tolist(), ref_sorted))
            print(f"{role:8s} {k:2d} {ref_seconds:11.1f} {ref_products:5d} {ours_seconds:10.1f} {result.matvecs:5d} "
                  f"{ref_seconds / ours_seconds:8.2f}x {ref_products / result.matvecs:8.2f}x {diff:14.2e}", flush=True)
