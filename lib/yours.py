"""Bring your own model: the book's analyses on a network the reader builds with timm.

Serves the appendix page ``chapters/99_your_own_model``: Park & Kim's (2022) per-unit Fourier
and variance readings (Figs 8, 9), top-k Hessian eigenvalues (Figs 1c, 4) and lesions (Fig 10)
on any model that :func:`lib.models.units` supports: timm ``ResNet``, ``ResNetV2`` and
``VisionTransformer``, built by ``timm.create_model`` without a download::

    with seeded(0):
        model = timm.create_model("resnet18", num_classes=10)
        model = cifar_stem(model)                      # 32×32 maps in the first stage
    model = prepare(model, checkpoint="my_weights.pth")  # or None: the random-init control

The analyses themselves are the chapters' own functions in :mod:`lib.analysis`; this module
only builds, loads and sizes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.models.resnet import ResNet
from torch import nn

from lib import data
from lib.models import units

__all__ = ["BUDGETS", "Budget", "budget", "cifar_stem", "prepare", "sample", "seeded"]


@dataclass(frozen=True)
class Budget:
    """How much data the appendix looks at under one profile.

    Attributes:
        images: Test images for the Fourier, variance and lesion analyses (a fixed random
            sample, see :func:`sample`); ``None`` for the whole test set.
        hessian_batches: Mini-batches of training images whose Hessians are measured.
        hessian_batch_size: Images per mini-batch Hessian.
        k: Eigenvalues of largest magnitude per batch (the paper: 5).
    """

    images: int | None
    hessian_batches: int
    hessian_batch_size: int
    k: int = 5


# smoke: a few seconds of analysis; cpu: the page executes in well under a minute on one core
# (a Hessian-vector product is the costly step: ~70 of them for 2 batches of 16); paper: the
# whole test set and the chapters' `paper` Hessian budget, for a GPU.
BUDGETS: dict[str, Budget] = {
    "smoke": Budget(images=100, hessian_batches=1, hessian_batch_size=8, k=3),
    "cpu": Budget(images=500, hessian_batches=2, hessian_batch_size=16),
    "paper": Budget(images=None, hessian_batches=32, hessian_batch_size=128),
}


def budget(profile: str) -> Budget:
    """The :class:`Budget` of ``profile`` (``"smoke"``, ``"cpu"`` or ``"paper"``)."""
    if profile not in BUDGETS:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(BUDGETS)}")
    return BUDGETS[profile]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside the block, torch's global CPU generator starts from ``seed``; it is restored on exit.

    ``timm.create_model`` takes no seed, so this makes a random initialisation reproducible
    without changing the random state of the code around it.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def cifar_stem(model: ResNet) -> ResNet:
    """Swaps a timm ``ResNet``'s ImageNet stem for a CIFAR one: one 3×3 stride-1 conv, no max-pool.

    timm's stem divides the side by 4, so a 32×32 image leaves 8×8 maps after the stem and
    1×1 maps in the last stage, too small for a Fourier reading. The usual CIFAR ResNet keeps
    32/16/8/4, as the book's own ResNet does. The new conv keeps the stem's output width and
    is initialised as timm initialises convolutions; ``bn1`` is kept. Call it inside
    :func:`seeded` for a reproducible initialisation, and before loading CIFAR weights.

    Args:
        model: A timm ``ResNet`` (any stem type), modified in place.

    Returns:
        The same model.
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"cifar_stem() needs a timm ResNet, got {type(model).__name__}")
    width = model.bn1.num_features
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def prepare(model: nn.Module, *, checkpoint: str | Path | None = None, device: str = "auto",
            dataset: str = "cifar10") -> nn.Module:
    """Loads a local checkpoint (if any) into ``model`` and readies it for the analyses.

    Args:
        model: A model :func:`lib.models.units` supports (checked first, with a message that
            says which are).
        checkpoint: A local state dict: ``.safetensors``, or a ``torch.save`` file holding the
            state dict or a dict with ``state_dict``/``model`` in it (timm's
            ``load_checkpoint``; keys must match exactly). ``None`` keeps the weights as they
            are: the random initialisation.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        dataset: How uint8 images are normalised for this model (``"cifar10"``,
            ``"cifar100"``): the per-channel statistics it was trained with.

    Returns:
        The same model, on ``device``, in eval mode, with ``book_dataset`` set.
    """
    from timm.models import load_checkpoint

    from lib.train import resolve_device

    units(model)  # an unsupported model fails here, before any work
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path.resolve()} (relative paths start in {Path.cwd()})")
        load_checkpoint(model, str(path), strict=True)
    model.book_dataset = dataset
    return model.to(resolve_device(device)).eval()


def sample(split: str, count: int | None, dataset: str = "cifar10", *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random sample of a split: uint8 images ``[count, 3, H, W]`` and their labels.

    The first ``count`` images of a seeded permutation of the split, so the sample is the same
    on every run and a smaller one is the start of a larger one (smoke ⊂ cpu ⊂ paper).

    Args:
        split: ``"train"`` or ``"test"``.
        count: How many images; ``None`` (or more than the split holds) for all of them, in
            the split's order.
        dataset: ``"cifar10"`` or ``"cifar100"`` (loaded by :func:`lib.data.load`).
        seed: Seed of the permutation.
    """
    images, labels = data.load(dataset, split)
    if count is not None:
        if count < 1:
            raise ValueError(f"count must be a positive number of images or None, got {count!r}")
        if count < len(images):
            keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
            images, labels = images[keep], labels[keep]
    return images, labels
