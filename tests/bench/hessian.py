"""Top Hessian eigenvalue: our Lanczos against a reference power iteration written the way PyHessian does it.

The reference builds the gradient graph once (``create_graph=True``), then repeats
Hessian-vector products by ``autograd.grad`` on it, normalising the iterate each time and
stopping when the Rayleigh quotient changes by less than 1e-3 relatively, or after 100
iterations (PyHessian's defaults). Both run on the same 128 training images of the cast's
trained ResNet and ViT, loss = mean cross-entropy, eval mode, fp32.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from lib import runs
from lib.analysis import hessian


def reference_power_iteration(model, images, labels, *, max_iter: int = 100, tol: float = 1e-3, seed: int = 0) -> tuple[float, int]:
    """Largest-magnitude eigenvalue by plain power iteration on a kept double-backward graph; (value, products)."""
    params = [p for p in model.parameters() if p.requires_grad]
    with hessian._analysis_mode(model):
        loss = F.cross_entropy(model(images), labels)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        g = torch.Generator().manual_seed(seed)
        v = [torch.randn(p.shape, generator=g) for p in params]
        norm = torch.sqrt(sum((x * x).sum() for x in v))
        v = [x / norm for x in v]
        value, products = None, 0
        for _ in range(max_iter):
            hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
            products += 1
            new = sum((a * b).sum() for a, b in zip(hv, v)).item()
            norm = torch.sqrt(sum((x * x).sum() for x in hv))
            v = [x / (norm + 1e-6) for x in hv]
            if value is not None and abs(new - value) / (abs(value) + 1e-6) < tol:
                value = new
                break
            value = new
    return value, products


def run(roles=("resnet", "vit"), images: int = 128) -> None:
    print(f"\ntop Hessian eigenvalue, {images} training images, {torch.get_num_threads()} threads")
    print(f"{'role':8s} {'power ref s':>11s} {'HVPs':>5s} {'Lanczos s':>10s} {'HVPs':>5s} {'speed-up':>9s} {'rel. diff':>10s}")
    for role in roles:
        model = runs.trained(role, "cpu")
        x, y = runs.training_batches(model, batches=1, batch_size=images, seed=0)
        tic = time.perf_counter()
        ref, ref_products = reference_power_iteration(model, x, y)
        ref_seconds = time.perf_counter() - tic
        tic = time.perf_counter()
        result = hessian.top_eigenpairs(model, x, y, k=1, method="lanczos", seed=0)
        ours_seconds = time.perf_counter() - tic
        ours = result.eigenvalues[0].item()
        print(f"{role:8s} {ref_seconds:11.1f} {ref_products:5d} {ours_seconds:10.1f} {result.matvecs:5d} "
              f"{ref_seconds / ours_seconds:8.2f}x {abs(ours - ref) / abs(ref):10.2e}", flush=True)
