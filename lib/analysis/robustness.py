"""Robustness to noise in one frequency band (Park & Kim 2022, Fig 2b; poster Fig 5).

methods.md §8 and §15.11: Rademacher noise ``eps · sign(N(0, 1))`` per pixel and channel, in
normalised input space, is kept only in a square (L∞) frequency ring centred on ``f·π`` rad per
pixel with half-width ``s = 0.2`` rad, the same ring for the three channels, and added to the
normalised images. Sweeping ``f = 0.1 … 0.9`` and recording accuracy(noisy) − accuracy(clean)
shows ResNet losing most to high-frequency noise and ViT to low-frequency noise. The paper's
eps is unknown (the authors' helper defaults to 0.007, their issue-#44 pseudo-code to 0.7), so
every result states eps, in normalised units and in pixel units (:func:`eps_in_pixels`).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from lib.analysis.fourier import bootstrap_interval
from lib.data import STD, normalize
from lib.metrics import predict

__all__ = [
    "HALF_WIDTH",
    "band_mask",
    "band_pass",
    "band_noise",
    "eps_in_pixels",
    "noise_outcomes",
    "summarize",
    "noise_robustness",
    "band_delta",
    "band_contrast",
]

HALF_WIDTH = 0.2  # rad per pixel, the band's half-width s in the authors' helper (methods.md §8)

_COLUMNS = [
    "frequency",
    "eps",
    "eps_pixels",
    "band_fraction",
    "clean_accuracy",
    "noisy_accuracy",
    "delta",
    "lo",
    "hi",
    "n_images",
]


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_band(f_pi: float, width: float) -> None:
    if not (_is_number(f_pi) and 0 < f_pi <= 1):
        raise ValueError(f"f_pi (band centre in units of π) must be in (0, 1], got {f_pi!r}")
    if not (_is_number(width) and 0 < width < math.inf):
        raise ValueError(f"width (half-width in rad per pixel) must be positive and finite, got {width!r}")


def _check_eps(eps: float) -> None:
    if not (_is_number(eps) and 0 <= eps < math.inf):
        raise ValueError(f"eps must be a finite number ≥ 0, got {eps!r}")


def band_mask(size: tuple[int, int], f_pi: float, *, width: float = HALF_WIDTH) -> torch.Tensor:
    """Boolean square-ring mask in ``torch.fft.fft2`` layout (DC at ``[0, 0]``, not shifted).

    A bin ``(ky, kx)`` (radians per pixel, ``2π·fftfreq``) is kept when
    ``|max(|ky|, |kx|) − f_pi·π| ≤ width``; DC is never kept. The mask depends on ``|ky|`` and
    ``|kx|`` only, so it is Hermitian-symmetric and band-passed real noise stays real.

    Args:
        size: ``(H, W)``.
        f_pi: Band centre in units of π, in ``(0, 1]``.
        width: Half-width in rad per pixel.

    Raises:
        ValueError: For ``f_pi`` outside ``(0, 1]``, a non-positive width, or a band holding no
            frequency bin of an ``H × W`` image.
    """
    _check_band(f_pi, width)
    h, w = size
    ky = (2 * math.pi * torch.fft.fftfreq(h, dtype=torch.float64)).abs()
    kx = (2 * math.pi * torch.fft.fftfreq(w, dtype=torch.float64)).abs()
    radius = torch.maximum(ky[:, None], kx[None, :])  # L∞ "radius" of every bin
    mask = ((radius - f_pi * math.pi).abs() <= width) & (radius > 0)
    if not mask.any():
        raise ValueError(f"the band f_pi={f_pi} ± {width} rad holds no frequency bin of a {h}×{w} image")
    return mask


def band_pass(noise: torch.Tensor, f_pi: float, *, width: float = HALF_WIDTH) -> torch.Tensor:
    """Keeps only the square-ring band of ``noise`` ``[..., H, W]`` (same mask for every channel).

    Args:
        noise: Real ``[..., H, W]``.
        f_pi: Band centre in units of π, in ``(0, 1]``.
        width: Half-width in rad per pixel.

    Returns:
        Real tensor like ``noise``: ``ifft2(fft2(noise) · mask)``, whose imaginary part is zero
        up to rounding because the mask is Hermitian-symmetric.
    """
    mask = band_mask(tuple(noise.shape[-2:]), f_pi, width=width).to(noise.device)
    return torch.fft.ifft2(torch.fft.fft2(noise) * mask).real.to(noise.dtype)


def band_noise(
    images: torch.Tensor,
    f_pi: float,
    *,
    eps: float,
    width: float = HALF_WIDTH,
    generator: torch.Generator | None = None,
    dataset: str = "cifar10",
) -> torch.Tensor:
    """Normalised images plus Rademacher noise kept in one square frequency band (methods.md §8).

    The noise is ``eps · sign(N(0, 1))`` per pixel and channel in normalised units, band-passed
    by :func:`band_mask` (the same mask for the three channels), and nothing is clipped.

    How this differs from the authors' centred-square mask: they fftshift the spectrum and keep
    the difference of two centred squares of side ``2⌊(f ± s)·H/(2π)⌋`` (clamped to [0, H]),
    then take the real part after the inverse FFT. A square of even side around the shifted DC
    index spans one more bin on the negative side than on the positive one, so their mask is
    not Hermitian-symmetric (at ``f = 0.5π``, ``H = 32`` the ring holds L∞ offsets 6-8 on one
    side and 7-9 on the other); taking the real part then halves the unpaired bins and spreads
    part of their energy onto mirror bins outside the ring. The floors also move the band's
    edges by up to a bin, and when ``f − s < 2π/H`` the inner square vanishes, so on a 32×32
    image their ``f = 0.1π`` band includes DC (a constant offset per channel). Here a bin is
    kept when ``|max(|kx|, |ky|) − f·π| ≤ s`` on the exact bin frequencies (offsets 7-9 on both
    sides in that example): symmetric, DC excluded, and the noise is real without discarding
    anything.

    Args:
        images: ``[B, 3, H, W]`` uint8 (normalised for ``dataset``) or normalised floats.
        f_pi: Band centre in units of π, in ``(0, 1]``.
        eps: Amplitude of the sign noise before band-passing, normalised units, ≥ 0.
        width: Half-width of the band in rad per pixel (0.2 as the authors).
        generator: Source of the signs; ``None`` uses torch's global generator.
        dataset: Normalisation statistics for uint8 images.

    Returns:
        Float32 ``[B, 3, H, W]``: the normalised images plus the band noise.

    Raises:
        ValueError: For ``f_pi`` outside ``(0, 1]``, ``eps < 0`` or a non-positive width.
    """
    _check_band(f_pi, width)
    _check_eps(eps)
    x = normalize(images, dataset).float()
    device = generator.device if generator is not None else x.device
    signs = torch.randn(x.shape, generator=generator, device=device).sign()
    return x + eps * band_pass(signs.to(x.device), f_pi, width=width)


def eps_in_pixels(eps: float, dataset: str = "cifar10") -> tuple[float, float, float]:
    """``eps`` in normalised units as 0-255 pixel levels per channel: ``eps · std_c · 255``.

    This is the sign noise's amplitude before band-passing; the band keeps about
    ``sqrt(band_fraction)`` of its RMS.
    """
    _check_eps(eps)
    if dataset not in STD:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(STD)}")
    return tuple(eps * s * 255 for s in STD[dataset])


def _image_signs(seed: int, indices: range, shape: tuple[int, ...]) -> torch.Tensor:
    # One independent stream per (seed, image index): the noise an image gets does not depend
    # on the batch size, the number of images or the model, so every model sees the same draws.
    signs = [np.sign(np.random.default_rng([seed, i]).standard_normal(shape)) for i in indices]
    return torch.from_numpy(np.stack(signs)).float()


def noise_outcomes(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    frequencies: Sequence[float],
    eps: float | Sequence[float],
    *,
    width: float = HALF_WIDTH,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = True,
) -> dict:
    """Per-image correctness, clean and under band noise at every (frequency, eps) (Fig 2b's raw data).

    Each image gets one sign pattern, drawn from ``(seed, image index)``, reused for every band
    and eps; so every model, batch size and sweep sees the same noise for a given seed, and two
    models' outcomes can be compared image by image (:func:`band_contrast`).

    Args:
        model: Any classifier; measured in eval mode (``lib.metrics.predict``), mode restored.
        images: ``[N, 3, H, W]`` uint8 (normalised for ``model.book_dataset``) or normalised
            floats.
        labels: ``[N]`` class indices.
        frequencies: Band centres in units of π, each in ``(0, 1]`` (the paper: 0.1 … 0.9).
        eps: One amplitude or several, normalised units, each ≥ 0.
        width: Half-width of the band in rad per pixel.
        seed: Seed of the noise.
        batch_size: Images per forward pass; results do not depend on it.
        progress: Show a tqdm bar on stderr.

    Returns:
        A dict (JSON-able through ``lib.cache``): ``conditions`` (list of ``[frequency, eps]``),
        ``clean`` (uint8 ``[N]``, 1 where correct), ``noisy`` (uint8 ``[N, len(conditions)]``),
        ``width``, ``seed``, ``dataset``.

    Raises:
        ValueError: For a frequency outside ``(0, 1]``, a negative eps, mismatched lengths.
    """
    frequencies = [frequencies] if _is_number(frequencies) else list(frequencies)
    epsilons = [eps] if _is_number(eps) else list(eps)
    if not frequencies or not epsilons:
        raise ValueError("need at least one frequency and one eps")
    for f in frequencies:
        _check_band(f, width)
    for e in epsilons:
        _check_eps(e)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got shape {tuple(images.shape)}")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images (≥ 1), got {len(images)} images, {len(labels)} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    dataset = getattr(model, "book_dataset", "cifar10")
    size = tuple(images.shape[-2:])
    for f in frequencies:
        band_mask(size, f, width=width)  # checks each band is non-empty
    conditions = [(f, e) for f in frequencies for e in epsilons]
    labels = labels.cpu()
    clean = torch.zeros(len(images), dtype=torch.uint8)
    noisy = torch.zeros(len(images), len(conditions), dtype=torch.uint8)
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="band noise", unit="batch", file=sys.stderr, disable=not progress, leave=False):
        stop = min(start + batch_size, len(images))
        x = normalize(images[start:stop], dataset).float()
        y = labels[start:stop]
        clean[start:stop] = (predict(model, x, batch_size=len(x)).argmax(1) == y).to(torch.uint8)
        signs = _image_signs(seed, range(start, stop), tuple(x.shape[1:])).to(x.device)
        column = 0
        for f in frequencies:
            banded = band_pass(signs, f, width=width)
            for e in epsilons:
                logits = predict(model, x + e * banded, batch_size=len(x))
                noisy[start:stop, column] = (logits.argmax(1) == y).to(torch.uint8)
                column += 1
    return {"conditions": [[float(f), float(e)] for f, e in conditions], "clean": clean, "noisy": noisy,
            "width": float(width), "seed": int(seed), "dataset": dataset, "image_size": list(size)}


def summarize(outcomes: dict, *, bootstrap: int = 1000, seed: int | None = None) -> pd.DataFrame:
    """Accuracy drop per (frequency, eps) from :func:`noise_outcomes`, with paired intervals.

    Returns:
        One row per (frequency, eps): ``frequency`` (π), ``eps``, ``eps_pixels`` (eps in 0-255
        levels, mean over channels; see :func:`eps_in_pixels`), ``band_fraction`` (share of
        frequency bins in the band), ``clean_accuracy`` and ``noisy_accuracy`` (fractions, on
        the same images), ``delta`` (noisy − clean, in percentage points), ``lo``, ``hi``
        (95 % bootstrap interval of ``delta`` over images, paired), ``n_images``.
    """
    clean = outcomes["clean"].double()
    noisy = outcomes["noisy"].double()
    seed = outcomes["seed"] if seed is None else seed
    difference = 100 * (noisy - clean[:, None])  # paired, per image, in points
    lo, hi = bootstrap_interval(difference, reps=bootstrap, seed=seed)
    size = tuple(outcomes.get("image_size", (32, 32)))
    rows = [
        dict(
            frequency=f,
            eps=e,
            eps_pixels=float(np.mean(eps_in_pixels(e, outcomes["dataset"]))),
            band_fraction=band_mask(size, f, width=outcomes["width"]).double().mean().item(),
            clean_accuracy=clean.mean().item(),
            noisy_accuracy=noisy[:, j].mean().item(),
            delta=difference[:, j].mean().item(),
            lo=lo[j].item(),
            hi=hi[j].item(),
            n_images=len(clean),
        )
        for j, (f, e) in enumerate(outcomes["conditions"])
    ]
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    frame.attrs.update(width=outcomes["width"], seed=outcomes["seed"], bootstrap=bootstrap, dataset=outcomes["dataset"])
    return frame


def noise_robustness(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    frequencies: Sequence[float],
    eps: float | Sequence[float],
    *,
    width: float = HALF_WIDTH,
    seed: int = 0,
    batch_size: int = 256,
    bootstrap: int = 1000,
    progress: bool = True,
) -> pd.DataFrame:
    """Accuracy drop under band noise, per band centre and eps (Fig 2b).

    :func:`noise_outcomes` followed by :func:`summarize`; same arguments (``seed`` also seeds
    the bootstrap, ``bootstrap`` resamples of images for the paired interval, 0: NaN).
    """
    outcomes = noise_outcomes(model, images, labels, frequencies, eps, width=width, seed=seed,
                              batch_size=batch_size, progress=progress)
    return summarize(outcomes, bootstrap=bootstrap)


def _band_columns(o: dict, frequencies: Sequence[float], eps: float) -> list[int]:
    index = {(round(f, 9), round(e, 9)): j for j, (f, e) in enumerate(o["conditions"])}
    wanted = [(round(float(f), 9), round(float(eps), 9)) for f in frequencies]
    missing = [f for f, w in zip(frequencies, wanted) if w not in index]
    if missing or not wanted:
        measured = sorted({f for f, _ in o["conditions"]})
        raise ValueError(f"frequencies {missing or list(frequencies)} at eps={eps} were not measured; measured: {measured}")
    return [index[w] for w in wanted]


def _band_per_image(o: dict, frequencies: Sequence[float], eps: float) -> torch.Tensor:
    """Each image's accuracy change (0, ±100 points) averaged over the chosen bands."""
    columns = _band_columns(o, frequencies, eps)
    return 100 * (o["noisy"][:, columns].double() - o["clean"].double()[:, None]).mean(dim=1)


def band_delta(outcomes: dict, frequencies: Sequence[float], eps: float, *, bootstrap: int = 1000,
               seed: int = 0) -> tuple[float, float, float]:
    """One model's accuracy change (points) averaged over some bands, with a 95 % interval over images.

    Returns:
        ``(value, lo, hi)``.

    Raises:
        ValueError: If a requested (frequency, eps) was not measured.
    """
    per_image = _band_per_image(outcomes, frequencies, eps)
    lo, hi = bootstrap_interval(per_image[:, None], reps=bootstrap, seed=seed)
    return per_image.mean().item(), lo.item(), hi.item()


def band_contrast(
    a: dict, b: dict, frequencies: Sequence[float], eps: float, *, bootstrap: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """How much less model ``a`` loses than model ``b`` to noise in some bands, image by image.

    The statistic is mean over the chosen bands of Δaccuracy(a) − Δaccuracy(b), in points:
    positive when ``a`` is the more robust. Both outcomes must come from the same images and
    noise (same seed); the interval resamples images, keeping each image's outcomes paired
    across bands and models.

    Returns:
        ``(value, lo, hi)`` with the 95 % bootstrap interval.

    Raises:
        ValueError: If the outcomes do not share images, seed and conditions, or a requested
            (frequency, eps) was not measured.
    """
    if a["conditions"] != b["conditions"] or a["seed"] != b["seed"] or len(a["clean"]) != len(b["clean"]):
        raise ValueError("band_contrast needs outcomes of the same images, noise seed and conditions")
    difference = _band_per_image(a, frequencies, eps) - _band_per_image(b, frequencies, eps)
    lo, hi = bootstrap_interval(difference[:, None], reps=bootstrap, seed=seed)
    return difference.mean().item(), lo.item(), hi.item()
