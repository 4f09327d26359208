"""Lesion study: remove one residual unit at a time, no retraining, and re-test.

Park & Kim (2022), Fig 10 (left) and methods.md §10: a residual unit computes ``x + f(x)``;
removing it replaces that by ``x`` (drop the branch f, keep the shortcut). Only units that keep
the shape of the residual stream can be removed: not the stem (patch embedding) and not the
strided or widening first block of a stage. The change in test accuracy, plotted against
normalised depth, shows which units a model relies on: the paper reads "Convs at the start of a
stage matter, MSAs at its end".

What "removing the branch" computes, per kind of unit:

- Pre-activation units (timm ``PreActBottleneck`` / ``PreActBasic``, AlterNet's ``MSABlock``,
  either half of a ViT block): ``x + f(x)`` → ``x``, the identity.
- Post-activation bottlenecks (timm ``Bottleneck`` / ``BasicBlock``, the paper's ResNet-50)
  compute ``relu(f(x) + x)``; with f removed this is ``relu(x)``, which *is* ``x``: the unit's
  input is the output of the previous block's (or the stem's) final ReLU, so it is already
  ≥ 0. The code applies the block's own activation all the same, so a zero branch and a removed
  branch give bit-identical outputs.

:func:`lesion` never touches the model: it runs the unit view (``units(model)``, then
``head(model)``), which reproduces ``model(x)``, and swaps the lesioned unit for its bypass. Per
batch it walks the intact chain once and, at each unit to lesion, runs the rest of the network
from that unit's input, so a sweep costs about half of one full forward pass per unit.
:func:`lesioned` is the same lesion on ``model.forward`` itself, as a context manager, for
anything that needs the lesioned model as a model.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from timm.models import resnet as timm_resnet
from timm.models import resnetv2 as timm_resnetv2
from torch import nn
from tqdm import tqdm

from lib.models import MSABlock, Unit, head, units
from lib.models.units import PreNormResidual

# Post-activation blocks, ``act(f(x) + x)``: the name of the activation applied after the sum.
_POST_ACTIVATION: dict[type, str] = {
    timm_resnet.Bottleneck: "act3",
    timm_resnet.BasicBlock: "act2",
    timm_resnetv2.Bottleneck: "act3",
}
# Pre-activation units, ``x + f(x)``.
_PRE_ACTIVATION: tuple[type, ...] = (
    timm_resnetv2.PreActBottleneck,
    timm_resnetv2.PreActBasic,
    MSABlock,
    PreNormResidual,
)

ALPHA = 0.05  # two-sided: a 95 % percentile bootstrap interval
_BOOTSTRAP_CHUNK = 4_000_000  # resample counts held at once (float64: 32 MB)
_MISSING = object()  # marks "no instance attribute `forward` before the lesion"


def lesionable(model: nn.Module) -> list[Unit]:
    """The units that can be removed: every unit of ``units(model)`` but the stem and those
    that change the stream's shape (``downsample``), in forward order."""
    return [u for u in units(model) if u.kind != "stem" and not u.downsample]


def _bypass(unit: Unit) -> Callable[[torch.Tensor], torch.Tensor]:
    """What ``unit.module`` computes with its residual branch removed."""
    module = unit.module
    for cls, act_name in _POST_ACTIVATION.items():
        if isinstance(module, cls):
            act = getattr(module, act_name)
            # act(0 + x) on a fresh tensor: timm's activations run in place.
            return lambda x: act(x.clone())
    if isinstance(module, _PRE_ACTIVATION):
        return lambda x: x
    raise TypeError(
        f"cannot lesion unit {unit.name!r}: {type(module).__name__} is neither a known "
        "pre-activation (x + f(x)) nor post-activation (act(f(x) + x)) residual unit"
    )


def _select(model: nn.Module, names: Sequence[str]) -> list[Unit]:
    """The lesionable units called ``names`` (in forward order), or a ValueError that lists them."""
    candidates = lesionable(model)
    by_name = {u.name: u for u in candidates}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        valid = ", ".join(by_name) or "none"
        raise ValueError(f"cannot lesion {', '.join(map(repr, unknown))}: the shape-preserving units are {valid}")
    if len(set(names)) != len(names):
        raise ValueError(f"unit names repeat: {list(names)!r}")
    return [u for u in candidates if u.name in set(names)]


def _module_counts(model: nn.Module) -> dict[nn.Module, int]:
    """How often each module object occurs in the model's module tree (shared modules > 1)."""
    counts: dict[nn.Module, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        counts[m] = counts.get(m, 0) + 1
    return counts


@contextlib.contextmanager
def lesioned(model: nn.Module, *names: str) -> Iterator[nn.Module]:
    """Inside the block, ``model(x)`` runs with the residual branch of each named unit removed.

    Only instance attributes are set, never parameters or buffers, and they are removed on exit
    (also on an exception), so the model is exactly as before. Blocks that are modules of the
    model (bottlenecks, MSA blocks) get their ``forward`` replaced by the bypass; a ViT half,
    whose unit module is a wrapper outside the model, gets the last module of its branch
    (``drop_path1``/``drop_path2``) replaced by zeros, so the block computes ``x + 0``.

    Args:
        model: A model :func:`lib.models.units` supports.
        *names: Unit names from :func:`lesionable` (e.g. ``"layer2.1"``, ``"blocks.3.attn"``).

    Yields:
        The same model.
    """
    selected = _select(model, names)
    counts = _module_counts(model)
    patches: list[tuple[nn.Module, Callable]] = []
    for unit in selected:
        if unit.module in counts:
            target, fn = unit.module, _bypass(unit)
        elif isinstance(unit.module, PreNormResidual):
            target, fn = unit.module.drop_path, torch.zeros_like
        else:
            raise TypeError(f"cannot lesion {unit.name!r}: its module is not part of the model")
        if counts.get(target, 0) != 1:
            raise TypeError(f"cannot lesion {unit.name!r}: {type(target).__name__} is shared or outside the model")
        patches.append((target, fn))
    saved = [(target, target.__dict__.get("forward", _MISSING)) for target, _ in patches]
    try:
        for target, fn in patches:
            target.forward = fn
        yield model
    finally:
        for target, old in saved:
            if old is _MISSING:
                target.__dict__.pop("forward", None)
            else:
                target.forward = old


def _positions(model: nn.Module) -> dict[str, dict]:
    """Index, normalised depth and place in its stage of every lesionable unit."""
    all_units = units(model)
    last = max(len(all_units) - 1, 1)
    index = {u.name: i for i, u in enumerate(all_units)}
    stage_of = {}
    for u in lesionable(model):
        stage_of.setdefault(u.stage, []).append(u.name)
    out = {}
    for members in stage_of.values():
        for j, name in enumerate(members):
            first, final = j == 0, j == len(members) - 1
            position = "only" if first and final else "start" if first else "end" if final else "middle"
            out[name] = dict(
                index=index[name],
                depth=index[name] / last,
                position=position,
                first_in_stage=first,
                last_in_stage=final,
            )
    return out


def _paired_bootstrap(diffs: torch.Tensor, *, bootstrap: int, seed: int) -> torch.Tensor:
    """Percentile interval of the mean of each row of ``diffs`` over resampled images.

    Every row uses the same resamples (drawn once from ``seed``, in chunks), so an interval
    does not depend on which other units were lesioned in the same call.

    Args:
        diffs: ``[R, N]`` float64 per-image differences (lesioned − intact).

    Returns:
        ``[2, R]``: the 2.5 % and 97.5 % quantiles of the resampled means.
    """
    n = diffs.shape[1]
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK // n)
    means = []
    for start in range(0, bootstrap, chunk):
        rows = min(chunk, bootstrap - start)
        idx = torch.randint(n, (rows, n), generator=gen)
        counts = torch.zeros(rows, n, dtype=torch.float64).scatter_add_(1, idx, torch.ones(rows, n, dtype=torch.float64))
        means.append(counts @ diffs.T / n)  # [rows, R]: resampled mean of every row
    q = torch.tensor([ALPHA / 2, 1 - ALPHA / 2], dtype=torch.float64)
    return torch.quantile(torch.cat(means), q, dim=0)


def _per_image(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct (0/1) and NLL per image, float64, as ``lib.metrics.accuracy``/``nll`` average them."""
    correct = (logits.argmax(dim=1) == labels).to(torch.float64)
    return correct, F.cross_entropy(logits.double(), labels, reduction="none")


@torch.no_grad()
def lesion(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    names: Sequence[str] | None = None,
    batch_size: int = 500,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    flips: bool = False,
) -> pd.DataFrame:
    """Accuracy and NLL with each shape-preserving unit's residual branch removed (methods.md §10).

    The model runs in eval mode (restored afterwards) and is never modified. Intact and
    lesioned logits both come from the unit view, so a unit whose branch outputs exactly zero
    has Δ = 0 exactly.

    Args:
        model: A model :func:`lib.models.units` supports.
        images: ``[N, 3, H, W]``; uint8 images are normalised for ``model.book_dataset``
            (CIFAR-10 by default), float images are taken as normalised.
        labels: ``[N]`` class indices.
        names: Lesion only these units (names from :func:`lesionable`); all by default. Depth,
            position and intervals are the same as in a full sweep.
        batch_size: Images per forward pass.
        bootstrap: Resamples of the images for the intervals (0: no intervals, NaN).
        seed: Seed of the resampling.
        progress: Show a tqdm bar (images done) on stderr.
        flips: Also keep, per unit, which images the lesion turned wrong or right (columns
            ``lost`` and ``gained``), so that statistics over several units can be resampled
            over images later (:func:`delta_correct`). Two short lists of indices per unit
            are far smaller to cache than a correctness matrix.

    Returns:
        One row per lesioned unit, in forward order, with columns ``name``, ``kind``,
        ``stage``, ``index`` (position in ``units(model)``), ``depth`` (index / (U − 1)),
        ``position`` (``"start"``/``"middle"``/``"end"`` among the stage's shape-preserving
        units; ``"only"`` when the stage has just one), ``first_in_stage``,
        ``last_in_stage``, ``accuracy``, ``nll`` (lesioned), ``intact_accuracy``,
        ``intact_nll``, ``delta_accuracy``, ``delta_nll`` (lesioned − intact),
        ``delta_accuracy_low``/``_high`` and ``delta_nll_low``/``_high`` (paired 95 %
        percentile bootstrap over images: each resample scores intact and lesioned model on
        the same images). Accuracies are fractions. With ``flips``, ``lost`` and ``gained``:
        sorted indices (into ``images``) of the images the intact model got right and the
        lesioned one wrong, and the reverse. ``df.attrs`` holds ``images``, ``bootstrap`` and
        ``seed``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must be [N] with N = {len(images)} images, got {tuple(labels.shape)}")
    if len(images) == 0:
        raise ValueError("lesion() needs at least one image")
    if batch_size < 1 or bootstrap < 0:
        raise ValueError(f"need batch_size ≥ 1 and bootstrap ≥ 0, got {batch_size} and {bootstrap}")
    from lib.data import normalize

    all_units = units(model)
    targets = _select(model, list(names)) if names is not None else lesionable(model)
    bypass = {u.name: _bypass(u) for u in targets}
    to_logits = head(model)
    param = next(model.parameters())
    labels = labels.cpu().long()

    intact_logits, lesion_logits = [], {u.name: [] for u in targets}
    was_training = model.training
    model.eval()
    try:
        bar = tqdm(total=len(images), desc=f"lesion ({len(targets)} units)", unit="img",
                   disable=not progress, file=sys.stderr, leave=False, ascii=True)
        with bar:
            for start in range(0, len(images), batch_size):
                batch = normalize(images[start : start + batch_size], getattr(model, "book_dataset", "cifar10"))
                x = batch.to(device=param.device, dtype=param.dtype)
                for i, unit in enumerate(all_units):
                    if unit.name in bypass:  # the rest of the network from this unit's input
                        y = bypass[unit.name](x)
                        for later in all_units[i + 1 :]:
                            y = later.module(y)
                        lesion_logits[unit.name].append(to_logits(y).float().cpu())
                    x = unit.module(x)
                intact_logits.append(to_logits(x).float().cpu())
                bar.update(len(batch))
    finally:
        model.train(was_training)

    correct0, nll0 = _per_image(torch.cat(intact_logits), labels)
    rows, diffs = [], []
    positions = _positions(model)
    for unit in targets:
        correct, nll_ = _per_image(torch.cat(lesion_logits[unit.name]), labels)
        diffs += [correct - correct0, nll_ - nll0]
        changed = {}
        if flips:
            changed = dict(lost=torch.nonzero(correct < correct0).flatten().tolist(),
                           gained=torch.nonzero(correct > correct0).flatten().tolist())
        rows.append(
            dict(
                name=unit.name,
                kind=unit.kind,
                stage=unit.stage,
                **positions[unit.name],
                accuracy=correct.mean().item(),
                nll=nll_.mean().item(),
                intact_accuracy=correct0.mean().item(),
                intact_nll=nll0.mean().item(),
                delta_accuracy=(correct - correct0).mean().item(),
                delta_nll=(nll_ - nll0).mean().item(),
                **changed,
            )
        )
    if bootstrap and rows:
        low, high = _paired_bootstrap(torch.stack(diffs), bootstrap=bootstrap, seed=seed).tolist()
    else:
        low = high = [float("nan")] * (2 * len(rows))
    for j, row in enumerate(rows):
        row["delta_accuracy_low"], row["delta_accuracy_high"] = low[2 * j], high[2 * j]
        row["delta_nll_low"], row["delta_nll_high"] = low[2 * j + 1], high[2 * j + 1]
    frame = pd.DataFrame(rows, columns=_COLUMNS + (["lost", "gained"] if flips else []))
    frame.attrs.update(images=len(images), bootstrap=bootstrap, seed=seed)
    return frame


def delta_correct(frame: pd.DataFrame) -> torch.Tensor:
    """Per-image change of correctness, lesioned − intact, from a ``lesion(..., flips=True)`` frame.

    Returns:
        ``[U, N]`` float64 in {−1, 0, +1}, rows in the frame's order, N = ``frame.attrs["images"]``;
        the mean of row u is ``frame.delta_accuracy[u]``.
    """
    if not {"lost", "gained"} <= set(frame.columns) or "images" not in frame.attrs:
        raise ValueError("delta_correct needs a frame from lesion(..., flips=True): columns 'lost', 'gained' "
                         "and attrs['images']")
    delta = torch.zeros(len(frame), int(frame.attrs["images"]), dtype=torch.float64)
    for u, (lost, gained) in enumerate(zip(frame["lost"], frame["gained"])):
        delta[u, torch.as_tensor(list(lost), dtype=torch.long)] = -1.0
        delta[u, torch.as_tensor(list(gained), dtype=torch.long)] = 1.0
    return delta


_COLUMNS = [
    "name", "kind", "stage", "index", "depth", "position", "first_in_stage", "last_in_stage",
    "accuracy", "nll", "intact_accuracy", "intact_nll", "delta_accuracy", "delta_nll",
    "delta_accuracy_low", "delta_accuracy_high", "delta_nll_low", "delta_nll_high",
]  # fmt: skip
