"""Hessian of the loss: an HVP operator, top-k eigenvalues, per-batch spectra, SLQ density, trace.

Park & Kim (2022), Fig 1c and Fig 4 (Appendix C.5–C.7): the density of the top-5 eigenvalues of
mini-batch Hessians, pooled over batches, where a negative value means a negative eigenvalue of
largest magnitude (methods.md §4, §15.3). The authors used PyHessian's power iteration with
deflation in eval mode; we rewrite it from the algorithms, not from their code.

One small operator interface carries everything (STYLE.md, "hessian-eigenthings"): an operator
has ``size``, ``dtype``, ``device`` and ``matvec(v)``. :class:`HessianOperator` wraps a model,
its batch(es) and a loss; :class:`MatrixOperator` wraps a symmetric matrix for tests. The
algorithms (:func:`power_iteration`, :func:`lanczos`, :func:`density`, :func:`trace`) take an
operator first and ``seed=``/``generator=`` as keywords, never see a model, and return frozen
dataclasses with their diagnostics::

    op = HessianOperator(model, (images, labels), label_smoothing=0.1, weight_decay=0.05)
    top = lanczos(op, k=5, seed=0)            # EigenResult: eigenvalues, residuals, converged
    spec = max_eigenvalue_spectrum(model, images, labels, k=5, batch_size=128, batches=10)

The default loss is mean cross-entropy on the given (clean) batch in eval mode, with no label
smoothing and no L2. The paper's loss (methods.md §15.1) is the training recipe's: pass an
augmented batch (soft labels allowed), ``label_smoothing=`` and ``weight_decay=`` (the L2 term
(wd/2)·‖w‖², whose Hessian is wd·I), or any ``loss_fn``. Each result says which loss it used.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lib.data import normalize
from lib.models import explicit_attention

__all__ = [
    "Operator",
    "MatrixOperator",
    "HessianOperator",
    "EigenResult",
    "SpectralDensity",
    "TraceEstimate",
    "Spectrum",
    "power_iteration",
    "lanczos",
    "density",
    "trace",
    "dense",
    "top_eigenpairs",
    "top_eigenvalues",
    "max_eigenvalue_spectrum",
]

Method = Literal["lanczos", "power"]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ParamFilter = Callable[[str, nn.Parameter], bool]
Batch = tuple[torch.Tensor, torch.Tensor]

# PyHessian's defaults, which the paper's spectra used (methods.md §4): at most 100 matvecs per
# eigenvalue, stop when successive estimates differ by less than 1e-3 relative.
POWER_MAX_ITER = 100
POWER_TOL = 1e-3
# A Ritz pair counts as converged when its residual ‖Av − θv‖ = |β·s_last| ≤ tol·|θ|; the
# eigenvalue error is then about residual²/gap, far below what POWER_TOL leaves.
LANCZOS_TOL = 1e-3
# Full reorthogonalisation stores every Lanczos vector; 100 bounds that memory at 100 copies of
# the parameters, and the top 5 of a network Hessian converge in a few dozen steps.
LANCZOS_MAX_STEPS = 100
# SLQ: each probe costs `steps` matvecs; Gauss quadrature with m nodes is exact for polynomials
# of degree 2m − 1, and in high dimension one probe already averages n directions (Ubaru, Chen
# & Saad 2017), so a few probes of 50 steps resolve the bulk and the outliers.
SLQ_STEPS = 50
SLQ_PROBES = 4
# Hutchinson: the standard error falls as 1/√probes and is reported; 100 is PyHessian's count.
TRACE_PROBES = 100
# The smoothed SLQ density uses a Gaussian kernel a hundredth of the spectral range wide, so
# the isolated top eigenvalues stay separate bumps; the grid reaches 5σ past the extreme nodes
# so the density integrates to 1 within ~1e-6 (the Gaussian tail beyond 5σ).
SLQ_SIGMA_FRACTION = 0.01
SLQ_GRID_POINTS = 1001
_GRID_REACH = 5.0


# ----------------------------------------------------------------------------- operators


@runtime_checkable
class Operator(Protocol):
    """A symmetric linear map ``v ↦ Av`` on flat vectors of length ``size``."""

    size: int
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - protocol
        """``A @ v`` for a 1-D ``v`` of length ``size``."""
        ...


def _check_vector(op: Operator, v: torch.Tensor) -> torch.Tensor:
    if not isinstance(v, torch.Tensor) or v.ndim != 1 or v.numel() != op.size:
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"matvec expects a 1-D vector of length {op.size}, got {shape}")
    return v.to(device=op.device, dtype=op.dtype)


class MatrixOperator:
    """A dense symmetric matrix as an operator: for tests and small problems.

    Args:
        matrix: ``[n, n]``, symmetric up to √eps of its norm.

    Raises:
        ValueError: If the matrix is not square or not symmetric.
    """

    loss: str | None = None
    batch_size: int | None = None

    def __init__(self, matrix: torch.Tensor):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"MatrixOperator needs a square matrix, got shape {tuple(matrix.shape)}")
        if not matrix.is_floating_point():
            raise ValueError(f"MatrixOperator needs a floating matrix, got {matrix.dtype}")
        # the algorithms assume symmetry (a Hessian is); √eps allows for rounding in its assembly
        tolerance = torch.finfo(matrix.dtype).eps ** 0.5 * max(matrix.norm().item(), 1e-300)
        if (matrix - matrix.T).norm().item() > tolerance:
            raise ValueError("MatrixOperator needs a symmetric matrix (‖A − Aᵀ‖ > √eps·‖A‖)")
        self.matrix = matrix
        self.size = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A @ v``."""
        return self.matrix @ _check_vector(self, v)

    def __repr__(self) -> str:
        return f"MatrixOperator(size={self.size}, dtype={self.dtype})"


@contextlib.contextmanager
def _analysis_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode, explicit (double-backward safe) attention and grad enabled; all restored."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with explicit_attention(model), torch.enable_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def _as_batches(batches: Batch | Sequence[Batch]) -> list[Batch]:
    if isinstance(batches, tuple) and len(batches) == 2 and all(isinstance(t, torch.Tensor) for t in batches):
        batches = [batches]
    out = list(batches)
    if not out:
        raise ValueError("HessianOperator needs at least one (images, labels) batch")
    for i, pair in enumerate(out):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"batch {i} is not an (images, labels) pair")
        images, labels = pair
        if len(images) != len(labels):
            raise ValueError(f"batch {i}: images ({len(images)}) and labels ({len(labels)}) differ in length")
        if len(images) == 0:
            raise ValueError(f"batch {i} is empty")
    return [(images, labels) for images, labels in out]


def _describe_loss(loss_fn: LossFn | None, label_smoothing: float, weight_decay: float) -> str:
    if loss_fn is None:
        text = "mean cross-entropy"
        if label_smoothing:
            text += f" (label smoothing {label_smoothing:g})"
    else:
        text = f"custom loss {getattr(loss_fn, '__name__', type(loss_fn).__name__)}"
    if weight_decay:
        text += f" + (wd/2)·‖w‖², wd = {weight_decay:g}"
    return text


class HessianOperator:
    """Hessian-vector products of a model's loss by double backward.

    The Hessian is that of the mean loss over every image given (batches weighted by their
    size), with respect to the selected parameters flattened in ``named_parameters`` order. The
    model runs in eval mode with ``fused_attn`` off on every attention module (timm's fused
    attention has no double backward); both are restored after each call.

    With a single chunk (the default for one batch) the gradient graph is built once, at the
    first ``matvec``, and kept: each product is then one backward pass. The operator is a
    snapshot of the weights at that moment: changing the weights in place afterwards makes
    autograd raise, by design. Drop the operator to free the graph.

    Args:
        model: Maps normalised images ``[B, 3, H, W]`` (or any input) to logits ``[B, C]``.
        batches: ``(images, labels)`` or a sequence of such pairs. uint8 images are normalised
            with ``model.book_dataset`` (CIFAR-10 by default); floating images are taken as
            normalised and cast to the parameters' dtype. Labels are class indices ``[B]`` or
            soft targets ``[B, C]`` (Mixup/CutMix).
        loss_fn: ``(logits, labels) → scalar`` batch *mean*; default mean cross-entropy.
        label_smoothing: Passed to the default cross-entropy (not allowed with ``loss_fn``).
        weight_decay: Adds (wd/2)·‖w‖² over the selected parameters, i.e. wd·v to every
            product (exact, so computed analytically).
        params: ``(name, parameter) → bool`` choosing the parameters; default all that require
            grad.
        chunk_size: Images per forward pass (memory); the Hessian is unchanged by it because
            eval-mode losses are per-image means.
        reuse_graph: Keep the gradient graph between products; default True for one chunk.

    Attributes:
        size, dtype, device: Of the flat parameter vector.
        names, shapes: The selected parameters, in order (see :meth:`unflatten`).
        loss: Which loss, in words (results copy it).
        batch_size: Images in all batches together.
        matvecs: Products computed so far.
    """

    def __init__(
        self,
        model: nn.Module,
        batches: Batch | Sequence[Batch],
        *,
        loss_fn: LossFn | None = None,
        label_smoothing: float = 0.0,
        weight_decay: float = 0.0,
        params: ParamFilter | None = None,
        chunk_size: int | None = None,
        reuse_graph: bool | None = None,
    ):
        if loss_fn is not None and label_smoothing:
            raise ValueError("label_smoothing applies to the default cross-entropy; put it in loss_fn instead")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be ≥ 0, got {weight_decay}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
        selected = [
            (name, p) for name, p in model.named_parameters() if p.requires_grad and (params is None or params(name, p))
        ]
        if not selected:
            raise ValueError("no parameters selected (none require grad, or the params filter rejects all)")
        dtypes = {p.dtype for _, p in selected}
        devices = {p.device for _, p in selected}
        if len(dtypes) > 1 or len(devices) > 1:
            raise ValueError(f"selected parameters mix dtypes {dtypes} or devices {devices}")
        self.model = model
        self.names = tuple(name for name, _ in selected)
        self.shapes = tuple(tuple(p.shape) for _, p in selected)
        self._params = [p for _, p in selected]
        self.size = sum(p.numel() for p in self._params)
        self.dtype = self._params[0].dtype
        self.device = self._params[0].device
        self.weight_decay = float(weight_decay)
        self.label_smoothing = float(label_smoothing)
        self.loss = _describe_loss(loss_fn, label_smoothing, weight_decay)
        if loss_fn is None:
            smoothing = self.label_smoothing

            def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
                return F.cross_entropy(logits, labels, label_smoothing=smoothing)

        self._loss_fn = loss_fn
        self._dataset = getattr(model, "book_dataset", "cifar10")
        pairs = _as_batches(batches)
        self.batch_size = sum(len(images) for images, _ in pairs)
        self._chunks: list[Batch] = []
        for images, labels in pairs:
            step = chunk_size or len(images)
            for start in range(0, len(images), step):
                self._chunks.append((images[start : start + step], labels[start : start + step]))
        self.reuse_graph = len(self._chunks) == 1 if reuse_graph is None else bool(reuse_graph)
        self._graphs: list[list[torch.Tensor | None]] | None = None
        self.loss_value: float | None = None  # mean loss (without L2) at the first forward pass
        self.matvecs = 0

    # -- helpers

    def _inputs(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        x = normalize(images, self._dataset).to(device=self.device, dtype=self.dtype)
        y = labels.to(self.device)
        if y.is_floating_point():
            y = y.to(self.dtype)
        return x, y

    def _gradients(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[list[torch.Tensor | None], float]:
        """First derivatives with their graph (create_graph), and the chunk's mean loss."""
        x, y = self._inputs(images, labels)
        loss = self._loss_fn(self.model(x), y)
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar (the batch mean), got shape {tuple(loss.shape)}")
        grads = torch.autograd.grad(loss, self._params, create_graph=True, allow_unused=True)
        # a gradient that does not depend on any parameter has a zero Hessian row: mark it None
        return [g if g is not None and g.requires_grad else None for g in grads], loss.item()

    def _graph_pairs(self) -> Iterator[tuple[float, list[torch.Tensor | None]]]:
        """(weight, first derivatives) per chunk, building or reusing the graph.

        Call inside ``_analysis_mode``.
        """
        if self.reuse_graph and self._graphs is None:
            built, total = [], 0.0
            for images, labels in self._chunks:
                grads, value = self._gradients(images, labels)
                built.append(grads)
                total += value * len(images)
            self._graphs = built
            self.loss_value = total / self.batch_size
        total = 0.0
        for i, (images, labels) in enumerate(self._chunks):
            if self._graphs is not None:
                grads = self._graphs[i]
            else:
                grads, value = self._gradients(images, labels)
                total += value * len(images)
            yield len(images) / self.batch_size, grads
        if self.loss_value is None:
            self.loss_value = total / self.batch_size

    # -- the interface

    def split(self, v: torch.Tensor) -> list[torch.Tensor]:
        """A flat vector as one tensor per selected parameter (views)."""
        v = _check_vector(self, v)
        return [part.view(shape) for part, shape in zip(v.split([math.prod(s) for s in self.shapes]), self.shapes)]

    def unflatten(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector as ``{parameter name: tensor}``, e.g. to inspect an eigenvector."""
        return dict(zip(self.names, self.split(v)))

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H @ v`` for a flat ``v`` of length ``size``."""
        parts = self.split(v)
        v = _check_vector(self, v)
        out = torch.zeros_like(v)
        with _analysis_mode(self.model):
            for weight, grads in self._graph_pairs():
                live = [i for i, g in enumerate(grads) if g is not None]
                if not live:
                    continue
                products = torch.autograd.grad(
                    [grads[i] for i in live],
                    self._params,
                    grad_outputs=[parts[i] for i in live],
                    retain_graph=self.reuse_graph,
                    allow_unused=True,
                )
                flat = torch.cat(
                    [(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(products, self._params)]
                )
                out.add_(flat.detach(), alpha=weight)
        if self.weight_decay:
            out.add_(v, alpha=self.weight_decay)
        self.matvecs += 1
        return out

    def __repr__(self) -> str:
        return (
            f"HessianOperator(size={self.size}, batch_size={self.batch_size}, chunks={len(self._chunks)}, "
            f"loss={self.loss!r})"
        )


def dense(op: Operator) -> torch.Tensor:
    """The operator as a dense ``[n, n]`` matrix, by products with basis vectors (small n only)."""
    eye = torch.eye(op.size, dtype=op.dtype, device=op.device)
    return torch.stack([op.matvec(eye[i]) for i in range(op.size)], dim=1)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EigenResult:
    """Eigenvalues of largest magnitude, with how far each is from converged.

    Attributes:
        eigenvalues: ``[k]`` float64, signed, sorted by |λ| descending.
        residuals: ``[k]`` ‖Av − λv‖ of each pair (‖v‖ = 1).
        converged: ``[k]`` bool, by the method's stopping rule at ``tol``.
        iterations: Power iteration: matvecs spent on each eigenvalue (in the order found);
            Lanczos: ``(steps,)``.
        matvecs: Operator products in all.
        method: ``"power"`` or ``"lanczos"``.
        tol: The tolerance used.
        eigenvectors: ``[k, n]`` in the operator's dtype, or None unless asked for.
        loss: The operator's loss, in words (None for a plain matrix).
        batch_size: Images behind the operator (None for a plain matrix).
    """

    eigenvalues: torch.Tensor
    residuals: torch.Tensor
    converged: torch.Tensor
    iterations: tuple[int, ...]
    matvecs: int
    method: str
    tol: float
    eigenvectors: torch.Tensor | None = None
    loss: str | None = None
    batch_size: int | None = None

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())


@dataclass(frozen=True)
class SpectralDensity:
    """A spectral density by stochastic Lanczos quadrature: Σᵢ wᵢ·δ(λ − θᵢ), Σᵢ wᵢ = 1.

    Attributes:
        nodes: ``[m]`` float64 Ritz values of all probes, concatenated.
        weights: ``[m]`` float64 Gauss weights divided by the number of probes (sum to 1).
        probe: ``[m]`` which probe each node came from.
        probes, steps: Probe count and Lanczos steps asked per probe.
        matvecs: Operator products in all.
        size: Dimension of the operator (the density is that of its n eigenvalues / n).
        loss, batch_size: As in :class:`EigenResult`.
    """

    nodes: torch.Tensor
    weights: torch.Tensor
    probe: torch.Tensor
    probes: int
    steps: int
    matvecs: int
    size: int
    loss: str | None = None
    batch_size: int | None = None

    @property
    def mean(self) -> float:
        """∫ λ ρ(λ) dλ, an estimate of trace / n (Hutchinson's estimate with the same probes)."""
        return float((self.weights * self.nodes).sum())

    def on_grid(
        self,
        grid: torch.Tensor | None = None,
        *,
        sigma: float | None = None,
        points: int = SLQ_GRID_POINTS,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The density smoothed by a Gaussian kernel, on a grid.

        Args:
            grid: 1-D float grid; default ``points`` points from the smallest node − 5σ to the
                largest + 5σ, so that the density integrates to 1.
            sigma: Kernel width; default a hundredth of the node range (1 if that is 0).
            points: Grid points when ``grid`` is None.

        Returns:
            ``(grid, density)``, both float64 ``[G]``.
        """
        lo, hi = float(self.nodes.min()), float(self.nodes.max())
        if sigma is None:
            sigma = SLQ_SIGMA_FRACTION * (hi - lo) or 1.0
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if grid is None:
            grid = torch.linspace(lo - _GRID_REACH * sigma, hi + _GRID_REACH * sigma, points, dtype=torch.float64)
        grid = grid.to(torch.float64)
        z = (grid[:, None] - self.nodes[None, :]) / sigma
        values = (torch.exp(-0.5 * z**2) * self.weights[None, :]).sum(dim=1) / (sigma * math.sqrt(2 * math.pi))
        return grid, values


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's trace estimate with Rademacher probes.

    Attributes:
        value: Mean of zᵀAz over probes.
        stderr: Standard error of that mean (sample std / √probes).
        samples: ``[probes]`` float64 zᵀAz.
        probes, matvecs: Counts.
        loss, batch_size: As in :class:`EigenResult`.
    """

    value: float
    stderr: float
    samples: torch.Tensor
    probes: int
    matvecs: int
    loss: str | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class Spectrum:
    """Top-k eigenvalues of many mini-batch Hessians, pooled (paper Fig 1c, 4).

    Attributes:
        values: ``[batches·k]`` float64, all per-batch values pooled, negatives included.
        per_batch: ``[batches, k]`` each batch's values, sorted by |λ| descending.
        residuals, converged: ``[batches, k]`` diagnostics of each value.
        matvecs: Operator products in all.
        k, batch_size, batches, method, tol, loss: What was computed.
    """

    values: torch.Tensor
    per_batch: torch.Tensor
    residuals: torch.Tensor
    converged: torch.Tensor
    matvecs: int
    k: int
    batch_size: int
    batches: int
    method: str
    tol: float
    loss: str

    def frame(self) -> pd.DataFrame:
        """Tidy rows ``batch, rank, eigenvalue, residual, converged`` (rank 0 = largest |λ|)."""
        b, k = self.per_batch.shape
        frame = pd.DataFrame(
            {
                "batch": torch.arange(b).repeat_interleave(k).numpy(),
                "rank": torch.arange(k).repeat(b).numpy(),
                "eigenvalue": self.per_batch.reshape(-1).numpy(),
                "residual": self.residuals.reshape(-1).numpy(),
                "converged": self.converged.reshape(-1).numpy(),
            }
        )
        frame.attrs.update(
            k=self.k, batch_size=self.batch_size, batches=self.batches, method=self.method, tol=self.tol, loss=self.loss
        )
        return frame


# ----------------------------------------------------------------------------- algorithms


def resolve_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """The generator to draw from: ``generator``, or a new one seeded by ``seed`` (0 by default)."""
    if seed is not None and generator is not None:
        raise ValueError("pass seed= or generator=, not both")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    return generator


def _random(op: Operator, generator: torch.Generator, *, rademacher: bool = False) -> torch.Tensor:
    """A random vector drawn on the generator's device in float64 (same seed, same vector)."""
    if rademacher:
        v = torch.randint(0, 2, (op.size,), generator=generator, device=generator.device).double() * 2 - 1
    else:
        v = torch.randn(op.size, generator=generator, device=generator.device, dtype=torch.float64)
    return v.to(device=op.device, dtype=op.dtype)


def _orthogonalize(w: torch.Tensor, basis: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Removes from ``w`` its components along orthonormal ``basis`` (Gram–Schmidt, twice)."""
    if len(basis) == 0:
        return w
    q = basis if isinstance(basis, torch.Tensor) else torch.stack(list(basis))
    for _ in range(2):  # "twice is enough" (Parlett): one pass loses orthogonality to rounding
        w = w - q.T @ (q @ w)
    return w


def _provenance(op: Operator) -> dict:
    return {"loss": getattr(op, "loss", None), "batch_size": getattr(op, "batch_size", None)}


def _check_k(op: Operator, k: int) -> None:
    if not 1 <= k <= op.size:
        raise ValueError(f"k must be between 1 and the operator size {op.size}, got {k}")


def power_iteration(
    op: Operator,
    *,
    k: int = 5,
    max_iter: int = POWER_MAX_ITER,
    tol: float = POWER_TOL,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    vectors: bool = False,
) -> EigenResult:
    """Top-k eigenvalues by magnitude by power iteration with deflation (the paper's method).

    Each eigenvalue starts from a random vector kept orthogonal (Gram–Schmidt) to the
    eigenvectors already found, and stops when the Rayleigh quotient changes by less than
    ``tol`` relative, or after ``max_iter`` products. Power iteration converges to the
    eigenvalue of largest |λ|, so negative values appear with their sign (methods.md §4).

    Args:
        op: The operator.
        k: How many eigenvalues.
        max_iter: Products per eigenvalue at most.
        tol: Relative change of successive estimates that stops an eigenvalue.
        seed, generator: Randomness of the start vectors (seed 0 if neither).
        vectors: Keep the eigenvectors in the result.
    """
    _check_k(op, k)
    if max_iter < 1:
        raise ValueError(f"max_iter must be ≥ 1, got {max_iter}")
    generator = resolve_generator(seed, generator)
    found: list[torch.Tensor] = []
    values, residuals, converged, iterations = [], [], [], []
    for _ in range(k):
        v = _orthogonalize(_random(op, generator), found)
        v = v / v.norm()
        estimate, residual, done, steps = None, float("nan"), False, 0
        for steps in range(1, max_iter + 1):
            av = op.matvec(v)
            rayleigh = float(v @ av)
            residual = float((av - rayleigh * v).norm())
            w = _orthogonalize(av, found)
            norm = float(w.norm())
            if estimate is not None and abs(rayleigh - estimate) <= tol * abs(estimate):
                estimate, done = rayleigh, True
                break
            estimate = rayleigh
            if norm == 0.0:  # v lies in the null space of the deflated operator: λ = 0 exactly
                done = True
                break
            v = w / norm
        found.append(v)
        values.append(estimate)
        residuals.append(residual)
        converged.append(done)
        iterations.append(steps)
    eig = torch.tensor(values, dtype=torch.float64)
    order = torch.argsort(eig.abs(), descending=True, stable=True)
    return EigenResult(
        eigenvalues=eig[order],
        residuals=torch.tensor(residuals, dtype=torch.float64)[order],
        converged=torch.tensor(converged)[order],
        iterations=tuple(iterations),
        matvecs=sum(iterations),
        method="power",
        tol=tol,
        eigenvectors=torch.stack(found)[order] if vectors else None,
        **_provenance(op),
    )


def _tridiagonal(alphas: list[float], betas: list[float]) -> torch.Tensor:
    m = len(alphas)
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if m > 1:
        off = torch.tensor(betas[: m - 1], dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    return t


def _lanczos_steps(
    op: Operator,
    start: torch.Tensor,
    max_steps: int,
    *,
    generator: torch.Generator | None,
    stop: Callable[[list[float], list[float], float], bool],
) -> tuple[list[float], list[float], torch.Tensor, float]:
    """Lanczos with full reorthogonalisation.

    Runs until ``stop(alphas, betas, beta)`` (``beta`` = the norm of the new residual, which
    couples the Krylov space to the rest) is true, ``max_steps`` is reached, or the space is
    exhausted. On breakdown (an invariant subspace) it restarts from a random vector orthogonal
    to the basis when ``generator`` is given (so that a top-k search goes on), and stops
    otherwise (so that a quadrature stays that of its start vector).

    Returns:
        alphas, betas (``betas[j]`` couples ``q_j`` and ``q_{j+1}``; 0 at a restart), the basis
        ``[steps, n]`` and the last ``beta``.
    """
    max_steps = min(max_steps, op.size)
    basis = torch.empty(max_steps, op.size, dtype=op.dtype, device=op.device)  # one allocation
    basis[0] = start / start.norm()
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    # below this the residual is rounding noise (full reorthogonalisation leaves ~eps·‖A‖)
    breakdown = 100 * torch.finfo(op.dtype).eps
    for j in range(max_steps):
        w = op.matvec(basis[j])
        alpha = float(basis[j] @ w)
        w = w - alpha * basis[j]
        if j > 0 and betas[j - 1]:
            w = w - betas[j - 1] * basis[j - 1]
        w = _orthogonalize(w, basis[: j + 1])
        beta = float(w.norm())
        alphas.append(alpha)
        if stop(alphas, betas, beta) or j + 1 == max_steps:
            break
        scale = max(abs(a) for a in alphas) + max(betas, default=0.0)
        if beta <= breakdown * scale:
            if generator is None:
                break
            w = _orthogonalize(_random(op, generator), basis[: j + 1])
            betas.append(0.0)
            basis[j + 1] = w / w.norm()
        else:
            betas.append(beta)
            basis[j + 1] = w / beta
    return alphas, betas, basis[: len(alphas)], beta


def _top_ritz(alphas: list[float], betas: list[float], beta: float, k: int):
    """Ritz values of largest magnitude, their residuals |β·s_last| and eigenvectors of T."""
    theta, s = torch.linalg.eigh(_tridiagonal(alphas, betas))
    order = torch.argsort(theta.abs(), descending=True, stable=True)[:k]
    return theta[order], (beta * s[-1, order]).abs(), s[:, order]


def lanczos(
    op: Operator,
    *,
    k: int = 5,
    max_steps: int = LANCZOS_MAX_STEPS,
    tol: float = LANCZOS_TOL,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    vectors: bool = False,
) -> EigenResult:
    """Top-k eigenvalues by magnitude by Lanczos with full reorthogonalisation.

    Steps until each of the k Ritz values of largest |θ| has residual ≤ ``tol``·|θ| (checked
    every step, at the cost of a small tridiagonal eigenproblem), or ``max_steps``. Like any
    single-vector Krylov method it finds one copy of a repeated eigenvalue (exact multiplicity,
    which a network Hessian's top eigenvalues do not have generically); power iteration with
    deflation finds every copy.

    Args:
        op: The operator.
        k: How many eigenvalues.
        max_steps: Lanczos steps at most (each one product and one stored vector).
        tol: Relative residual that counts as converged.
        seed, generator: Randomness of the start vector (seed 0 if neither).
        vectors: Keep the Ritz vectors in the result.
    """
    _check_k(op, k)
    if max_steps < k:
        raise ValueError(f"max_steps ({max_steps}) must be at least k ({k})")
    generator = resolve_generator(seed, generator)

    def stop(alphas: list[float], betas: list[float], beta: float) -> bool:
        if len(alphas) < k:
            return False
        theta, res, _ = _top_ritz(alphas, betas, beta, k)
        return bool((res <= tol * theta.abs()).all())

    alphas, betas, basis, beta = _lanczos_steps(op, _random(op, generator), max_steps, generator=generator, stop=stop)
    steps = len(alphas)  # ≥ k: the search restarts on breakdown and k ≤ max_steps, k ≤ size
    theta, res, s = _top_ritz(alphas, betas, beta, k)
    exhausted = steps == op.size  # the Krylov space is the whole space: Ritz values are exact
    eigenvectors = (s.to(basis.dtype).T @ basis).contiguous() if vectors else None
    return EigenResult(
        eigenvalues=theta,
        residuals=res,
        converged=(res <= tol * theta.abs()) | exhausted,
        iterations=(steps,),
        matvecs=steps,
        method="lanczos",
        tol=tol,
        eigenvectors=eigenvectors,
        **_provenance(op),
    )


def density(
    op: Operator,
    *,
    probes: int = SLQ_PROBES,
    steps: int = SLQ_STEPS,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    """Spectral density by stochastic Lanczos quadrature (Rademacher probes).

    For each probe q (‖q‖ = 1), ``steps`` Lanczos steps give T = S diag(θ) Sᵀ; the density
    of q is Σᵢ S₀ᵢ²·δ(λ − θᵢ). Probes are averaged, so the weights sum to 1. Use
    :meth:`SpectralDensity.on_grid` for a smoothed curve.

    Args:
        op: The operator.
        probes: Random start vectors.
        steps: Lanczos steps (quadrature nodes) per probe, at most ``op.size``.
        seed, generator: Randomness of the probes (seed 0 if neither).
    """
    if probes < 1 or steps < 1:
        raise ValueError(f"probes and steps must be ≥ 1, got {probes} and {steps}")
    generator = resolve_generator(seed, generator)
    nodes, weights, which, matvecs = [], [], [], 0
    for p in range(probes):
        alphas, betas, _, _ = _lanczos_steps(
            op, _random(op, generator, rademacher=True), steps, generator=None, stop=lambda *_: False
        )
        theta, s = torch.linalg.eigh(_tridiagonal(alphas, betas))
        nodes.append(theta)
        weights.append(s[0] ** 2 / probes)
        which.append(torch.full_like(theta, p, dtype=torch.long))
        matvecs += len(alphas)
    return SpectralDensity(
        nodes=torch.cat(nodes),
        weights=torch.cat(weights),
        probe=torch.cat(which),
        probes=probes,
        steps=min(steps, op.size),
        matvecs=matvecs,
        size=op.size,
        **_provenance(op),
    )


def trace(
    op: Operator,
    *,
    probes: int = TRACE_PROBES,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> TraceEstimate:
    """Trace by Hutchinson's estimator: the mean of zᵀAz over Rademacher z, with its s.e.

    Args:
        op: The operator.
        probes: Random vectors (≥ 2, for a standard error).
        seed, generator: Randomness of the probes (seed 0 if neither).
    """
    if probes < 2:
        raise ValueError(f"trace needs at least 2 probes for a standard error, got {probes}")
    generator = resolve_generator(seed, generator)
    samples = []
    for _ in range(probes):
        z = _random(op, generator, rademacher=True)
        samples.append(float(z @ op.matvec(z)))
    values = torch.tensor(samples, dtype=torch.float64)
    return TraceEstimate(
        value=float(values.mean()),
        stderr=float(values.std(unbiased=True) / math.sqrt(probes)),
        samples=values,
        probes=probes,
        matvecs=probes,
        **_provenance(op),
    )


# ----------------------------------------------------------------------------- model level


def _eigen(op: Operator, *, k: int, method: Method, tol: float | None, max_iter: int | None, generator, vectors):
    if method == "power":
        return power_iteration(
            op,
            k=k,
            max_iter=POWER_MAX_ITER if max_iter is None else max_iter,
            tol=POWER_TOL if tol is None else tol,
            generator=generator,
            vectors=vectors,
        )
    if method == "lanczos":
        return lanczos(
            op,
            k=k,
            max_steps=LANCZOS_MAX_STEPS if max_iter is None else max_iter,
            tol=LANCZOS_TOL if tol is None else tol,
            generator=generator,
            vectors=vectors,
        )
    raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")


def top_eigenpairs(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    k: int = 5,
    method: Method = "lanczos",
    loss_fn: LossFn | None = None,
    label_smoothing: float = 0.0,
    weight_decay: float = 0.0,
    params: ParamFilter | None = None,
    chunk_size: int | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    vectors: bool = False,
) -> EigenResult:
    """Top-k Hessian eigenvalues (by |λ|) of the loss on one batch, with diagnostics.

    Args:
        model, images, labels: As for :class:`HessianOperator` (one batch).
        k: How many eigenvalues.
        method: ``"lanczos"`` (fast) or ``"power"`` (the paper's power iteration).
        loss_fn, label_smoothing, weight_decay, params, chunk_size: See :class:`HessianOperator`.
        tol: Default :data:`LANCZOS_TOL` or :data:`POWER_TOL`.
        max_iter: Lanczos steps, or products per eigenvalue for power iteration (default
            :data:`LANCZOS_MAX_STEPS` or :data:`POWER_MAX_ITER`).
        seed, generator: Randomness of the start vectors.
        vectors: Keep the eigenvectors (flat; ``HessianOperator.unflatten`` splits them).
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    op = HessianOperator(
        model,
        (images, labels),
        loss_fn=loss_fn,
        label_smoothing=label_smoothing,
        weight_decay=weight_decay,
        params=params,
        chunk_size=chunk_size,
    )
    return _eigen(
        op, k=k, method=method, tol=tol, max_iter=max_iter, generator=resolve_generator(seed, generator), vectors=vectors
    )


def top_eigenvalues(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    k: int = 5,
    method: Method = "lanczos",
    loss_fn: LossFn | None = None,
    label_smoothing: float = 0.0,
    weight_decay: float = 0.0,
    params: ParamFilter | None = None,
    chunk_size: int | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The k Hessian eigenvalues of largest magnitude, signed, sorted by |λ| descending.

    ``[k]`` float64. The same as ``top_eigenpairs(...).eigenvalues``; use that for residuals,
    convergence flags and which loss was used.
    """
    return top_eigenpairs(
        model,
        images,
        labels,
        k=k,
        method=method,
        loss_fn=loss_fn,
        label_smoothing=label_smoothing,
        weight_decay=weight_decay,
        params=params,
        chunk_size=chunk_size,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
        generator=generator,
    ).eigenvalues


def max_eigenvalue_spectrum(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    k: int = 5,
    batch_size: int = 128,
    batches: int | None = None,
    method: Method = "power",
    loss_fn: LossFn | None = None,
    label_smoothing: float = 0.0,
    weight_decay: float = 0.0,
    params: ParamFilter | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> Spectrum:
    """Top-k eigenvalues of each mini-batch Hessian, pooled: the paper's Fig 1c/4 spectra.

    Batch b is ``images[b·batch_size : (b+1)·batch_size]`` (shuffle or augment beforehand;
    soft labels allowed), so the batches are disjoint and deterministic; a last partial batch
    is not used. Report ``batch_size``, ``batches`` and ``tol`` with the figure (methods.md
    §15.3).

    Args:
        model, images, labels: As for :class:`HessianOperator`.
        k: Eigenvalues per batch (the paper: 5).
        batch_size: Images per Hessian.
        batches: How many batches; default as many full ones as ``images`` holds.
        method: ``"power"`` (the paper's, default) or ``"lanczos"``.
        loss_fn, label_smoothing, weight_decay, params: See :class:`HessianOperator`.
        tol, max_iter: See :func:`top_eigenpairs`.
        seed, generator: One generator serves all batches in order.
        progress: A tqdm bar (text, stderr), one tick per batch.
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    if len(images) != len(labels):
        raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    available = len(images) // batch_size
    if batches is None:
        batches = available
    if batches < 1 or batches > available:
        raise ValueError(
            f"need {batches} batches of {batch_size} but {len(images)} images hold {available} full batches"
        )
    generator = resolve_generator(seed, generator)
    results: list[EigenResult] = []
    loss = ""
    for b in tqdm(range(batches), desc="Hessian top-k", unit="batch", file=sys.stderr, disable=not progress):
        window = slice(b * batch_size, (b + 1) * batch_size)
        op = HessianOperator(
            model,
            (images[window], labels[window]),
            loss_fn=loss_fn,
            label_smoothing=label_smoothing,
            weight_decay=weight_decay,
            params=params,
        )
        loss = op.loss
        results.append(_eigen(op, k=k, method=method, tol=tol, max_iter=max_iter, generator=generator, vectors=False))
        del op  # frees the gradient graph before the next batch
    per_batch = torch.stack([r.eigenvalues for r in results])
    return Spectrum(
        values=per_batch.reshape(-1),
        per_batch=per_batch,
        residuals=torch.stack([r.residuals for r in results]),
        converged=torch.stack([r.converged for r in results]),
        matvecs=sum(r.matvecs for r in results),
        k=k,
        batch_size=batch_size,
        batches=batches,
        method=method,
        tol=results[0].tol,
        loss=loss,
    )
