"""Loss-landscape slices along normalised random directions (Park & Kim 2022, Fig 1a, C.4a).

The authors evaluate NLL + L2 on a 21×21 grid w₀ + x·d₁ + y·d₂, x, y ∈ [−1, 1], with random
directions rescaled to the weights (methods.md §3). Two choices of theirs are exposed here as
arguments, with the sounder one as default (methods.md §15.2):

- ``norm="filter"`` (default, Li et al. 2018): each output filter of a weight — its dim-0
  slice — gets d_o ← d_o·‖w_o‖/‖d_o‖. ``norm="dim0"`` is the authors' code: norms taken along
  dim 0 with keepdim, i.e. per (input channel, kh, kw) across the output filters.
- ``l2="squared"`` (default): the L2 term is (wd/2)·Σ‖p‖², the penalty AdamW's decay
  corresponds to. ``l2="norm"``: the authors' wd·Σ‖p‖ (Frobenius norms, not squared).
  Both sum over *all* parameters, biases and norm weights included, as the recipe decays all.

Tensors with fewer than 2 dimensions (biases, norm weights) and position embeddings
(``pos_embed``, ``relative_position``, and our AlterNet's ``rel_pos`` tables) get a zero
direction; buffers (BN running statistics) are never moved. NLL and NLL + L2 are reported
separately because the L2 term dominates the authors' surface (methods.md §3, issue #10).
The model is evaluated in eval mode over the given images, batch by batch, and its weights
and train/eval flags are restored exactly afterwards.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lib.analysis.hessian import resolve_generator
from lib.data import normalize

__all__ = [
    "FROZEN_NAMES",
    "is_frozen",
    "scale_direction",
    "random_direction",
    "l2_penalty",
    "slice_1d",
    "slice_2d",
]

Norm = Literal["filter", "dim0"]
L2Form = Literal["squared", "norm"]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Direction = dict[str, torch.Tensor]

# Name fragments of position embeddings, which the authors keep fixed (methods.md §3);
# "rel_pos" is where our AlterNet keeps its relative-position bias table.
FROZEN_NAMES = ("pos_embed", "relative_position", "rel_pos")
# The authors' grid: linspace(−1, 1, 21) on each axis (methods.md §3).
STEPS = 21
SPAN = 1.0
# The recipe's AdamW weight decay (methods.md §2).
WEIGHT_DECAY = 0.05
# Guards 0/0 for an all-zero filter (its direction becomes 0); the authors add 1e-7.
EPS = 1e-10
# Images per forward pass when evaluating a grid point (memory only).
BATCH_SIZE = 500


def is_frozen(name: str, tensor: torch.Tensor) -> bool:
    """True for tensors that get a zero direction: fewer than 2 dims, or a position embedding."""
    return tensor.ndim < 2 or any(part in name for part in FROZEN_NAMES)


def scale_direction(direction: torch.Tensor, weight: torch.Tensor, *, norm: Norm = "filter") -> torch.Tensor:
    """Rescales a random direction to the scale of a weight tensor.

    Args:
        direction: Same shape as ``weight``.
        weight: A weight with at least 1 dim; dim 0 indexes output filters.
        norm: ``"filter"``: each dim-0 slice d[o] is rescaled to ‖w[o]‖ (Li et al. 2018).
            ``"dim0"``: norms are taken along dim 0 with keepdim (the authors' code), so each
            (input channel, kh, kw) column across filters is rescaled to that column of w.

    Returns:
        The rescaled direction (a new tensor).
    """
    if direction.shape != weight.shape:
        raise ValueError(f"direction {tuple(direction.shape)} and weight {tuple(weight.shape)} differ in shape")
    if weight.ndim == 0:
        raise ValueError("cannot normalise a direction for a 0-dim tensor")
    if norm == "filter":
        flat_d = direction.reshape(len(direction), -1)
        flat_w = weight.reshape(len(weight), -1)
        ratio = flat_w.norm(dim=1, keepdim=True) / (flat_d.norm(dim=1, keepdim=True) + EPS)
        return (flat_d * ratio).reshape(direction.shape)
    if norm == "dim0":
        return direction * weight.norm(dim=0, keepdim=True) / (direction.norm(dim=0, keepdim=True) + EPS)
    raise ValueError(f"norm must be 'filter' or 'dim0', got {norm!r}")


@torch.no_grad()
def random_direction(
    model: nn.Module,
    *,
    norm: Norm = "filter",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> Direction:
    """A random N(0, 1) direction in parameter space, normalised to the weights.

    One tensor per named parameter, in ``named_parameters`` order. Frozen tensors
    (:func:`is_frozen`) get zeros, but a draw is still made for them, so that the direction of
    every other tensor does not depend on which are frozen.

    Args:
        model: The model whose parameters set the scale.
        norm: ``"filter"`` or ``"dim0"``, see :func:`scale_direction`.
        seed, generator: Randomness (seed 0 if neither); draws are made on the generator's
            device in the parameter's dtype, then moved, so a seed means the same direction on
            any device.
    """
    if norm not in ("filter", "dim0"):
        raise ValueError(f"norm must be 'filter' or 'dim0', got {norm!r}")
    generator = resolve_generator(seed, generator)
    out: Direction = {}
    for name, p in model.named_parameters():
        raw = torch.randn(p.shape, generator=generator, device=generator.device, dtype=p.dtype).to(p.device)
        out[name] = torch.zeros_like(p) if is_frozen(name, p) else scale_direction(raw, p.detach(), norm=norm)
    return out


def l2_penalty(params: Sequence[torch.Tensor] | Iterator[torch.Tensor], *, weight_decay: float, form: L2Form) -> float:
    """The L2 term over all given tensors, in float64.

    ``form="squared"``: (wd/2)·Σ‖p‖²; ``form="norm"``: wd·Σ‖p‖ (the authors' plotted term,
    methods.md §3).
    """
    if form == "squared":
        return weight_decay / 2 * sum(float(p.detach().double().pow(2).sum()) for p in params)
    if form == "norm":
        return weight_decay * sum(float(p.detach().double().norm()) for p in params)
    raise ValueError(f"l2 must be 'squared' or 'norm', got {form!r}")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def _restored_weights(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Yields a copy of the parameters and copies it back, bit for bit, on exit."""
    params = dict(model.named_parameters())
    origin = {name: p.detach().clone() for name, p in params.items()}
    try:
        yield origin
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(origin[name])


def _check_direction(model: nn.Module, direction: Mapping[str, torch.Tensor]) -> Direction:
    params = dict(model.named_parameters())
    unknown = sorted(set(direction) - set(params))
    if unknown:
        raise ValueError(f"direction names parameters the model lacks: {', '.join(unknown[:5])}")
    out: Direction = {}
    for name, d in direction.items():
        p = params[name]
        if d.shape != p.shape:
            raise ValueError(f"direction for {name} has shape {tuple(d.shape)}, parameter {tuple(p.shape)}")
        out[name] = d.to(device=p.device, dtype=p.dtype)
    return out


def _accuracy_count(logits: torch.Tensor, labels: torch.Tensor) -> float:
    if not labels.is_floating_point():
        return float((logits.argmax(dim=1) == labels).sum())
    if labels.ndim == 2 and labels.shape == logits.shape:  # soft targets: against their argmax (methods.md §3)
        return float((logits.argmax(dim=1) == labels.argmax(dim=1)).sum())
    return math.nan  # regression targets: accuracy is undefined


@torch.no_grad()
def _evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    loss_fn: LossFn | None,
    label_smoothing: float,
    batch_size: int,
) -> tuple[float, float]:
    """Mean loss and accuracy over all images (weighted by chunk size)."""
    reference = next(model.parameters())
    dataset = getattr(model, "book_dataset", "cifar10")
    loss_sum, correct = 0.0, 0.0
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size], dataset).to(device=reference.device, dtype=reference.dtype)
        y = labels[start : start + batch_size].to(reference.device)
        logits = model(x)
        if loss_fn is None:  # float64 log-softmax: finite however confident (methods.md §15.1)
            target = y.double() if y.is_floating_point() else y
            loss = F.cross_entropy(logits.double(), target, label_smoothing=label_smoothing)
        else:
            loss = loss_fn(logits, y.to(reference.dtype) if y.is_floating_point() else y)
        loss_sum += float(loss) * len(x)
        correct += _accuracy_count(logits, y)
    return loss_sum / len(images), correct / len(images)


def _grid(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    directions: Sequence[Direction],
    points: list[tuple[float, ...]],
    *,
    weight_decay: float,
    l2: L2Form,
    loss_fn: LossFn | None,
    label_smoothing: float,
    batch_size: int,
    progress: bool,
) -> list[dict[str, float]]:
    moving = sorted({name for d in directions for name, t in d.items() if bool(t.any())})
    params = dict(model.named_parameters())
    rows = []
    with _restored_weights(model) as origin, _eval_mode(model):
        for point in tqdm(points, desc="loss landscape", unit="point", file=sys.stderr, disable=not progress):
            with torch.no_grad():
                for name in moving:
                    value = origin[name].clone()
                    for c, d in zip(point, directions):
                        if name in d:
                            value.add_(d[name], alpha=c)
                    params[name].copy_(value)
            nll, acc = _evaluate(
                model, images, labels, loss_fn=loss_fn, label_smoothing=label_smoothing, batch_size=batch_size
            )
            penalty = l2_penalty(params.values(), weight_decay=weight_decay, form=l2)
            rows.append({"nll": nll, "l2": penalty, "nll_plus_l2": nll + penalty, "accuracy": acc})
    return rows


def _check_common(images, labels, steps, span, l2, weight_decay, batch_size, loss_fn, label_smoothing) -> None:
    if len(images) != len(labels):
        raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
    if len(images) == 0:
        raise ValueError("a landscape needs at least one image")
    if steps < 2:
        raise ValueError(f"steps must be ≥ 2, got {steps}")
    if span <= 0:
        raise ValueError(f"span must be > 0, got {span}")
    if l2 not in ("squared", "norm"):
        raise ValueError(f"l2 must be 'squared' or 'norm', got {l2!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be ≥ 0, got {weight_decay}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if loss_fn is not None and label_smoothing:
        raise ValueError("label_smoothing applies to the default cross-entropy; put it in loss_fn instead")


def _attrs(random: bool, norm, weight_decay, l2, loss_fn, label_smoothing, images: int) -> dict:
    """What a slice was computed with, for ``DataFrame.attrs`` (``norm="given"`` for own directions)."""
    if loss_fn is not None:
        loss = f"custom loss {getattr(loss_fn, '__name__', type(loss_fn).__name__)}"
    else:
        loss = "mean cross-entropy" + (f" (label smoothing {label_smoothing:g})" if label_smoothing else "")
    return dict(norm=norm if random else "given", weight_decay=weight_decay, l2=l2, loss=loss, images=images)


def slice_1d(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = STEPS,
    span: float = SPAN,
    direction: Mapping[str, torch.Tensor] | None = None,
    norm: Norm = "filter",
    weight_decay: float = WEIGHT_DECAY,
    l2: L2Form = "squared",
    loss_fn: LossFn | None = None,
    label_smoothing: float = 0.0,
    batch_size: int = BATCH_SIZE,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The loss along w₀ + x·d for x in ``linspace(−span, span, steps)``.

    Args:
        model: Evaluated in eval mode; weights and modes restored exactly afterwards.
        images: uint8 ``[N, 3, H, W]`` (normalised here) or floating, already normalised.
        labels: Class indices ``[N]`` or soft targets ``[N, C]`` (accuracy against their
            argmax; NaN for regression targets).
        steps, span: The grid.
        direction: ``{parameter name: tensor}``; default :func:`random_direction`.
        norm: Normalisation of the default direction, ``"filter"`` or ``"dim0"``.
        weight_decay: wd in the L2 term.
        l2: ``"squared"``, (wd/2)·Σ‖p‖², or ``"norm"``, wd·Σ‖p‖ (the authors').
        loss_fn: ``(logits, labels) → batch mean``; default mean cross-entropy (float64).
        label_smoothing: For the default cross-entropy.
        batch_size: Images per forward pass.
        seed, generator: Randomness of the default direction (seed 0 if neither).
        progress: A tqdm bar (text, stderr), one tick per point.

    Returns:
        Columns ``x, nll, l2, nll_plus_l2, accuracy`` (``nll`` is the loss_fn's value when one
        is given; ``l2`` is the weighted penalty). ``attrs`` records the choices.
    """
    _check_common(images, labels, steps, span, l2, weight_decay, batch_size, loss_fn, label_smoothing)
    given = direction
    if direction is None:
        direction = random_direction(model, norm=norm, seed=seed, generator=generator)
    elif seed is not None or generator is not None:
        raise ValueError("seed/generator choose a random direction; drop them when passing direction=")
    direction = _check_direction(model, direction)
    xs = torch.linspace(-span, span, steps, dtype=torch.float64).tolist()
    rows = _grid(
        model,
        images,
        labels,
        [direction],
        [(x,) for x in xs],
        weight_decay=weight_decay,
        l2=l2,
        loss_fn=loss_fn,
        label_smoothing=label_smoothing,
        batch_size=batch_size,
        progress=progress,
    )
    frame = pd.DataFrame([{"x": x, **row} for x, row in zip(xs, rows)])
    frame.attrs.update(_attrs(given is None, norm, weight_decay, l2, loss_fn, label_smoothing, len(images)))
    return frame


def slice_2d(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = STEPS,
    span: float = SPAN,
    directions: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]] | None = None,
    norm: Norm = "filter",
    weight_decay: float = WEIGHT_DECAY,
    l2: L2Form = "squared",
    loss_fn: LossFn | None = None,
    label_smoothing: float = 0.0,
    batch_size: int = BATCH_SIZE,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The loss on the plane w₀ + x·d₁ + y·d₂, x and y in ``linspace(−span, span, steps)``.

    The authors' grid is ``steps=21, span=1`` (441 points). Arguments as :func:`slice_1d`;
    the two default directions are drawn one after the other from the same generator.

    Returns:
        Columns ``x, y, nll, l2, nll_plus_l2, accuracy``, x-major (y varies fastest).
    """
    _check_common(images, labels, steps, span, l2, weight_decay, batch_size, loss_fn, label_smoothing)
    given = directions
    if directions is None:
        generator = resolve_generator(seed, generator)
        directions = (
            random_direction(model, norm=norm, generator=generator),
            random_direction(model, norm=norm, generator=generator),
        )
    elif seed is not None or generator is not None:
        raise ValueError("seed/generator choose random directions; drop them when passing directions=")
    if len(directions) != 2:
        raise ValueError(f"slice_2d needs two directions, got {len(directions)}")
    checked = [_check_direction(model, d) for d in directions]
    axis = torch.linspace(-span, span, steps, dtype=torch.float64).tolist()
    points = [(x, y) for x in axis for y in axis]
    rows = _grid(
        model,
        images,
        labels,
        checked,
        points,
        weight_decay=weight_decay,
        l2=l2,
        loss_fn=loss_fn,
        label_smoothing=label_smoothing,
        batch_size=batch_size,
        progress=progress,
    )
    frame = pd.DataFrame([{"x": x, "y": y, **row} for (x, y), row in zip(points, rows)])
    frame.attrs.update(_attrs(given is None, norm, weight_decay, l2, loss_fn, label_smoothing, len(images)))
    return frame
