"""Linear CKA between unit outputs: do a model's stages act like separate small models?

Park & Kim (2022), Fig 10 (right) and methods.md §10: mini-batch CKA between the outputs of
all units shows one block per stage. CKA (Kornblith et al. 2019) compares two representations
of the same N examples through their Gram matrices, ``K = X Xᵀ`` and ``L = Y Yᵀ`` for linear
kernels:

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)).

It is 1 for a representation against itself and unchanged by orthogonal transforms and
isotropic scaling of either side, but not by a non-isotropic scaling of the features.

Mini-batch CKA (Nguyen, Raghu & Kornblith 2021) never forms an N × N Gram matrix: it averages
the *unbiased* HSIC estimator of Song et al. (2012) over mini-batches of n examples,

    HSIC₁(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3)),

with ``K̃``, ``L̃`` the Gram matrices with zeroed diagonals, and takes the ratio of the averages.
Because each batch's estimate is unbiased, the result does not drift with the batch size as
the biased estimator would. With linear kernels HSIC₁ is unchanged when a constant vector is
added to every row, so features are centred per batch before the Gram product: it changes
nothing in exact arithmetic and avoids cancellation in float32 (post-ReLU features have a large
mean).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from lib.models import feature_maps, units

MIN_BATCH = 4  # HSIC₁ divides by n(n − 3) and (n − 1)(n − 2): it needs n ≥ 4 examples


def _as_matrix(x: torch.Tensor, what: str) -> torch.Tensor:
    """``[N, ...]`` → ``[N, D]`` float64 (features flattened per example)."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError(f"{what} must be a tensor [N, D] (or [N, ...], flattened per example), got {getattr(x, 'shape', x)!r}")
    return x.reshape(x.shape[0], -1).to(torch.float64)


def _centred_gram(x: torch.Tensor) -> torch.Tensor:
    """``[n, D]`` → the linear Gram matrix ``[n, n]`` (float64) of the batch-centred rows.

    The product runs in the features' own dtype (float32 for feature maps) and is then cast:
    centring first keeps the entries O(variance) rather than O(mean²).
    """
    x = x.reshape(x.shape[0], -1)
    x = x - x.mean(dim=0, keepdim=True)
    return (x @ x.T).to(torch.float64)


def unbiased_hsic(grams: torch.Tensor) -> torch.Tensor:
    """HSIC₁ between every pair of a stack of Gram matrices (Song et al. 2012).

    Args:
        grams: ``[U, n, n]`` symmetric Gram matrices of the same n examples, n ≥ 4.

    Returns:
        ``[U, U]`` float64, symmetric: entry ``[i, j]`` is HSIC₁(grams[i], grams[j]).
    """
    if grams.ndim != 3 or grams.shape[1] != grams.shape[2]:
        raise ValueError(f"grams must be [U, n, n], got {tuple(grams.shape)}")
    n = grams.shape[1]
    if n < MIN_BATCH:
        raise ValueError(f"the unbiased HSIC needs at least {MIN_BATCH} examples, got {n}")
    g = grams.to(torch.float64).clone()
    g.diagonal(dim1=1, dim2=2).zero_()
    flat = g.reshape(g.shape[0], -1)
    trace = flat @ flat.T  # tr(K̃ L̃) = Σ K̃ ⊙ L̃ for symmetric matrices
    total = flat.sum(dim=1)  # 1ᵀ K̃ 1
    rows = g.sum(dim=2)  # K̃ 1
    hsic = (trace + torch.outer(total, total) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (rows @ rows.T)) / (n * (n - 3))
    return (hsic + hsic.T) / 2  # exactly symmetric, whatever order BLAS summed in


def _cka_from_hsic(hsic: torch.Tensor) -> torch.Tensor:
    """``[U, U]`` HSIC → CKA; a constant representation (HSIC(K, K) ≤ 0) gives NaN."""
    diag = hsic.diagonal()
    scale = torch.where(diag > 0, diag, torch.full_like(diag, float("nan"))).sqrt()
    cka = hsic / torch.outer(scale, scale)
    cka = (cka + cka.T) / 2
    cka.diagonal().copy_(torch.where(diag > 0, 1.0, float("nan")))  # h/√h² is 1 up to rounding
    return cka


def linear_cka(x: torch.Tensor, y: torch.Tensor, *, unbiased: bool = False) -> float:
    """Linear CKA between two representations of the same N examples.

    Args:
        x: ``[N, D1]`` (or ``[N, ...]``, flattened per example).
        y: ``[N, D2]``, the same examples in the same order.
        unbiased: False: the plug-in (biased) HSIC of Kornblith et al. (2019),
            ``‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F)`` with column-centred ``Xᶜ``, ``Yᶜ``.
            True: the unbiased HSIC₁ that :func:`cka_matrix` averages over batches (forms
            ``N × N`` Gram matrices; needs N ≥ 4).

    Returns:
        CKA in [0, 1] (the unbiased form can leave it slightly for small N), computed in
        float64; NaN when a representation is constant over the examples.

    Raises:
        ValueError: For non-matrices, different N, or too few examples.
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must describe the same examples, got N={x.shape[0]} and N={y.shape[0]}")
    n = x.shape[0]
    if unbiased:
        if n < MIN_BATCH:
            raise ValueError(f"the unbiased linear CKA needs at least {MIN_BATCH} examples, got {n}")
        hsic = unbiased_hsic(torch.stack([_centred_gram(x), _centred_gram(y)]))
        return _cka_from_hsic(hsic)[0, 1].item()
    if n < 2:
        raise ValueError(f"linear CKA needs at least 2 examples, got {n}")
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    if max(x.shape[1], y.shape[1]) <= n:  # feature space: D × D products are the smaller ones
        num = (y.T @ x).square().sum()
        den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    else:  # example space: ⟨K, L⟩ / (‖K‖ ‖L‖) with the centred Gram matrices
        k, l = x @ x.T, y @ y.T
        num = (k * l).sum()
        den = torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(l)
    return (num / den).item() if den > 0 else float("nan")


def _batches(n: int, batch_size: int) -> list[slice]:
    """Splits ``range(n)`` into ⌈n / batch_size⌉ contiguous batches of near-equal size.

    Near-equal sizes keep every batch at ≥ 4 examples whenever n ≥ 4 (a ragged last batch of
    1–3 images would have no unbiased HSIC), and every batch is weighted equally.
    """
    k = math.ceil(n / batch_size)
    edges = [i * n // k for i in range(k + 1)]  # sizes differ by at most one
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def minibatch_cka(batches: Iterable[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Mini-batch linear CKA between U representations (Nguyen, Raghu & Kornblith 2021).

    HSIC₁ of every pair is averaged over the batches, each batch weighted equally, then
    ``CKA = mean HSIC(K, L) / sqrt(mean HSIC(K, K) · mean HSIC(L, L))``.

    Args:
        batches: For each batch, the U representations of the same n ≥ 4 examples, each
            ``[n, ...]`` (flattened per example); U must not change between batches.

    Returns:
        ``[U, U]`` float64 CPU tensor, symmetric with ones on the diagonal; NaN for a
        representation that is constant over the examples.
    """
    hsic, count = None, 0
    for features in batches:
        grams = torch.stack([_centred_gram(f).cpu() for f in features])
        if hsic is not None and grams.shape[0] != hsic.shape[0]:
            raise ValueError(f"batch {count} has {grams.shape[0]} representations, the first had {hsic.shape[0]}")
        hsic = unbiased_hsic(grams) if hsic is None else hsic + unbiased_hsic(grams)
        count += 1
    if hsic is None:
        raise ValueError("minibatch_cka needs at least one batch")
    return _cka_from_hsic(hsic / count)


@torch.no_grad()
def cka_matrix(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """Mini-batch linear CKA between the outputs of all units (methods.md §10).

    Every unit's output (the residual stream after it, from :func:`lib.models.feature_maps`,
    flattened per image; for a ViT the patch tokens without the class token) gives one Gram
    matrix per batch, and :func:`minibatch_cka` combines them.

    Memory: one batch's feature maps of every unit at once, plus ``U`` Gram matrices of
    ``batch_size²`` doubles.

    Args:
        model: A model :func:`lib.models.units` supports; run in eval mode (its mode is
            restored afterwards).
        images: ``[N, 3, H, W]``, N ≥ 4; uint8 images are normalised for
            ``model.book_dataset`` (CIFAR-10 by default), float images taken as normalised.
        batch_size: Examples per mini-batch (≥ 4). The images are split into
            ⌈N / batch_size⌉ contiguous batches of near-equal size, in the given order.
        progress: Show a tqdm bar on stderr.

    Returns:
        ``[U, U]`` float64 CPU tensor, symmetric with ones on the diagonal, rows and columns in
        the order of ``units(model)`` (the stem first). NaN for a unit whose output is
        constant over the images.
    """
    return cka_from_batches(batch_hsic(model, images, batch_size=batch_size, progress=progress))


@torch.no_grad()
def batch_hsic(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """The unbiased HSIC₁ between all unit outputs, one matrix per mini-batch.

    The same mini-batches and features as :func:`cka_matrix`, but the per-batch HSIC matrices
    are kept instead of averaged, so a statistic of the CKA matrix can be resampled over
    mini-batches (:func:`cka_from_batches` with a bootstrap draw of batches). They are also
    small enough to cache: ``B × U × U`` numbers.

    Args:
        model, images, batch_size, progress: As for :func:`cka_matrix`.

    Returns:
        ``[B, U, U]`` float64 CPU tensor, B = ⌈N / batch_size⌉ batches in image order.
    """
    if batch_size < MIN_BATCH:
        raise ValueError(f"batch_size must be at least {MIN_BATCH} for the unbiased HSIC, got {batch_size}")
    if images.ndim != 4:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if len(images) < MIN_BATCH:
        raise ValueError(f"CKA needs at least {MIN_BATCH} images, got {len(images)}")
    units(model)
    batches = _batches(len(images), batch_size)
    bar = tqdm(batches, desc="HSIC", unit="batch", disable=not progress, file=sys.stderr, leave=False, ascii=True)
    was_training = model.training
    model.eval()
    try:
        out = []
        for idx in bar:
            grams = torch.stack([_centred_gram(fmap).cpu() for _, fmap in feature_maps(model, images[idx])])
            out.append(unbiased_hsic(grams))
        return torch.stack(out)
    finally:
        bar.close()
        model.train(was_training)


def cka_from_batches(hsic: torch.Tensor, *, counts: torch.Tensor | None = None) -> torch.Tensor:
    """Mini-batch CKA from per-batch HSIC matrices (:func:`batch_hsic`), optionally reweighted.

    Args:
        hsic: ``[B, U, U]`` per-batch HSIC₁.
        counts: ``[B]`` how often each batch is drawn (a bootstrap resample); all ones by
            default, which gives :func:`cka_matrix`'s result.

    Returns:
        ``[U, U]`` float64: CKA of the (weighted) mean HSIC.
    """
    if hsic.ndim != 3 or hsic.shape[1] != hsic.shape[2]:
        raise ValueError(f"hsic must be [B, U, U], got {tuple(hsic.shape)}")
    hsic = hsic.to(torch.float64)
    if counts is None:
        return _cka_from_hsic(hsic.mean(dim=0))
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.shape != (hsic.shape[0],) or counts.sum() <= 0 or (counts < 0).any():
        raise ValueError(f"counts must be [B={hsic.shape[0]}] non-negative with a positive sum, got {tuple(counts.shape)}")
    return _cka_from_hsic(torch.einsum("b,bij->ij", counts, hsic) / counts.sum())
