"""The training engine: AdamW, linear warm-up then cosine, label smoothing, resumable (methods.md §2).

``fit`` trains a model on uint8 tensors in memory. It is deterministic given ``seed``: the
epoch's shuffle, each step's augmentation and each step's dropout are drawn from generators
seeded by ``(seed, epoch, step)``, and the learning rate is a pure function of the step. So a
resume state needs only the weights, the optimiser, the position and the running totals, and a
run killed at any moment (SIGKILL included) resumes from its last save to a bit-identical end —
on a CPU with the same number of threads (recorded in the state; a resume warns if it differs).
On CUDA, non-deterministic kernels make a resumed run close to, not identical with, an
uninterrupted one. Mixed precision: bf16 autocast (channels_last on CPU) on CUDA and on CPUs with
native bf16; fp32 elsewhere (:func:`mixed_precision`).

Started by ``torchrun`` as one of several processes, ``fit`` trains data-parallel
(:mod:`lib.distributed`): every process draws the same global batch order and augmentation, keeps
its equal share of each global batch (Mixup/CutMix pairs across the whole batch, as in one
process), gradients are averaged over processes, and only rank 0 evaluates, saves and calls
back. Outside torchrun none of this runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lib import data, distributed, metrics, models, storage
from lib.profiles import Recipe


@dataclass(frozen=True)
class Position:
    """Where a run stands: ``step`` optimiser steps done within ``epoch`` (0-based)."""

    epoch: int
    step: int


def step_seed(seed: int, epoch: int, step: int = -1) -> int:
    """A 63-bit seed for one (run, epoch, step), so every random draw is reproducible after a resume."""
    return (seed * 1_000_003 + epoch) * 1_000_033 + step + 1 & (2**63 - 1)


def learning_rate(recipe: Recipe, global_step: int, steps_per_epoch: int) -> float:
    """Linear warm-up from 0 over ``warmup_epochs``, then cosine to 0 at the end (per iteration)."""
    warmup = recipe.warmup_epochs * steps_per_epoch
    total = recipe.epochs * steps_per_epoch
    if global_step < warmup:
        return recipe.lr * (global_step + 1) / warmup
    progress = (global_step - warmup) / max(1, total - warmup)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * progress))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if present, else CPU; anything else as given (checked)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available here; valid: 'auto', 'cpu'")
    return device


def mixed_precision(device: torch.device) -> bool:
    """Whether training and the per-epoch monitor run under bf16 autocast on ``device``.

    On CUDA GPUs with native bf16 (Ampere and later) and on CPUs with native bf16 (AVX-512 BF16
    or AMX), bf16 is about 2x faster than fp32. Elsewhere it is emulated and about 7x slower
    (ResNet-50/4 on an AVX2-only AMD EPYC: 12 s against 1.6 s a step of 128), so there the
    engine trains in fp32. ``BOOK_PRECISION=bf16`` or
    ``fp32`` overrides the choice. Precision is recorded in each epoch's history, not in the run
    key: like the CPU model, it moves a run's result only by rounding.
    """
    choice = os.environ.get("BOOK_PRECISION", "auto").lower()
    if choice not in ("auto", "bf16", "fp32"):
        raise ValueError(f"BOOK_PRECISION={choice!r}; valid: 'auto', 'bf16', 'fp32'")
    if choice != "auto":
        return choice == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class _Batches:
    """The batches of one epoch, from position ``start`` on: (normalised images, targets).

    Under torchrun each process gets its share of every global batch, augmented and mixed as
    the whole batch would be in one process.
    """

    def __init__(self, recipe, images, labels, num_classes, dataset, seed, epoch, device):
        self.recipe, self.images, self.labels = recipe, images, labels
        self.num_classes, self.dataset, self.seed, self.epoch, self.device = num_classes, dataset, seed, epoch, device
        self.steps = len(images) // recipe.batch_size
        self.rank, self.world = distributed.rank(), distributed.world_size()

    def __call__(self, start: int):
        r = self.recipe
        if r.augment == "paper":
            # RandAugment runs in this process's workers on its share only; the shares are gathered below
            shard = {"shard": (self.rank, self.world)} if self.world > 1 else {}
            source = data.paper_loader(
                self.images, self.labels, r.batch_size, seed=self.seed, epoch=self.epoch, dataset=self.dataset,
                num_workers=r.num_workers, randaugment=r.randaugment, drop_last=True, start_batch=start, **shard,
            )
        else:
            order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(step_seed(self.seed, self.epoch)))
            source = (
                (self.images[idx], self.labels[idx])
                for idx in (order[s * r.batch_size : (s + 1) * r.batch_size] for s in range(start, self.steps))
            )
        for step, (x, y) in enumerate(source, start=start):
            if self.world > 1 and r.augment == "paper":
                x, y = distributed.gather(x), distributed.gather(y)  # the whole global batch, in one-process order
            g = torch.Generator().manual_seed(step_seed(self.seed, self.epoch, step))
            if r.augment == "crop_flip":
                x = data.random_crop_flip(x, padding=4, generator=g)
            x = data.normalize(x, self.dataset)
            if r.augment == "paper":
                x, target = data.mix_batch(
                    x, y, self.num_classes, mixup_alpha=r.mixup_alpha or 0.0, cutmix_alpha=r.cutmix_alpha or 0.0,
                    label_smoothing=r.label_smoothing, generator=g,
                )
            else:
                target = y
            if self.world > 1:  # this process's share of the global batch
                share = slice(self.rank * len(x) // self.world, (self.rank + 1) * len(x) // self.world)
                x, target, y = x[share], target[share], y[share]
            yield step, x.to(self.device), target.to(self.device), y


def _loss(recipe: Recipe, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.dtype == torch.long:
        return F.cross_entropy(logits.float(), target, label_smoothing=recipe.label_smoothing)
    return _soft_cross_entropy(logits, target)


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The optimiser every run uses: AdamW at the recipe's learning rate and weight decay."""
    return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def training_step(step_fn: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, recipe: Recipe,
                  x: torch.Tensor, target: torch.Tensor, *, autocast, where: tuple[str, int, int] = ("model", 0, 0)
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step as every run takes it: forward under ``autocast``, the recipe's loss, backward, clipping, step.

    ``fit`` calls it for each batch and ``lib.cost`` times it, so the measured step is the trained one.
    ``where`` (model name, epoch, step, counted from 0) names the step if the loss is not finite.
    Returns the logits and the loss.
    """
    with autocast:
        logits = step_fn(x)
    loss = _loss(recipe, logits, target)
    if not torch.isfinite(loss):
        name, epoch, step = where
        raise FloatingPointError(
            f"training loss of {name} is {loss.item()} at epoch {epoch + 1}, step {step + 1} "
            f"(lr {optimizer.param_groups[0]['lr']:.3g}). Runs are deterministic, so resuming repeats this: train with "
            "a lower lr or stronger gradient clipping (a new run), or check the data."
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.clip_grad:
        nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], recipe.clip_grad)
    optimizer.step()
    return logits, loss


@dataclass
class _Totals:
    """Running sums of the epoch in progress (saved with the state, so a resumed epoch reports them whole)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


def _summed(totals: _Totals) -> _Totals:
    """The epoch's running sums over every process (under torchrun); the time is this process's own."""
    if distributed.world_size() == 1:
        return totals
    loss_sum, correct, seen = distributed.all_sum([totals.loss_sum, totals.correct, totals.seen])
    return _Totals(loss_sum, int(correct), int(seen), totals.seconds)


def _save_state(path: Path, model, optimizer, position: Position, history: list, totals: _Totals) -> None:
    storage.save_torch(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "position": (position.epoch, position.step),
            "history": history,
            "totals": dataclasses.asdict(totals),
            "threads": torch.get_num_threads(),
            **({"processes": distributed.world_size()} if distributed.world_size() > 1 else {}),
        },
        path,
    )


def fit(
    model: nn.Module,
    recipe: Recipe,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    seed: int,
    num_classes: int,
    dataset: str = "cifar10",
    state_path: str | Path | None = None,
    on_epoch_end: Callable[[int, nn.Module, list], None] | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    stop_after: Position | None = None,
) -> list[dict]:
    """Train ``model`` in place with ``recipe`` and return the per-epoch history.

    Args:
        model: the network, freshly built (its init must be seeded by the caller).
        recipe: the training recipe (``lib.profiles.Recipe``).
        train, test: (uint8 images [N,3,H,W], int64 labels [N]); test is scored every epoch.
        seed: drives shuffling, augmentation and dropout; same seed, same run.
        num_classes: width of the targets for Mixup/CutMix.
        state_path: resume state (fp32 weights, optimiser, position, history). If it exists,
            training resumes from it; it is rewritten every ``recipe.save_every`` steps and at
            every epoch end.
        on_epoch_end: called as ``f(epoch, model, history)`` after each epoch (snapshots); under
            torchrun on rank 0 only, which alone writes files.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: show a text progress bar on stderr.
        stop_after: stop (after saving) once this position is reached (tests of resumption).

    Under torchrun (``WORLD_SIZE`` > 1) the processes train one model data-parallel on the same
    global ``recipe.batch_size``, each on its share; rank 0 alone evaluates, writes ``state_path``
    and calls ``on_epoch_end``; every process returns the same history.

    Raises:
        FloatingPointError: the loss became NaN or infinite (names the epoch and step).
        ValueError: the batch does not split evenly over the torchrun processes.
    """
    device = distributed.setup(resolve_device(device))  # unchanged outside torchrun
    rank, world = distributed.rank(), distributed.world_size()
    if recipe.batch_size % world:
        raise ValueError(f"batch_size={recipe.batch_size} does not split evenly over {world} processes: "
                         f"use a batch size divisible by {world}, or another --nproc_per_node")
    progress = progress and rank == 0
    images, labels = train
    steps_per_epoch = len(images) // recipe.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{len(images)} training images are fewer than one batch of {recipe.batch_size}; "
                         "use more data (a larger fraction) or a smaller batch_size")
    if stop_after and not 0 <= stop_after.step < steps_per_epoch:
        raise ValueError(f"stop_after.step={stop_after.step} must lie in [0, {steps_per_epoch}); "
                         f"the end of epoch e is Position(e + 1, 0)")
    model.book_dataset = dataset  # the per-epoch evaluation normalises as training does
    model.to(device)
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe)
    position, history, totals = Position(0, 0), [], _Totals()
    state_path = Path(state_path) if state_path else None
    if state_path and state_path.exists():
        state = storage.load_torch(state_path, rebuild_hint="Delete it to restart this run from scratch.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        position, history, totals = Position(*state["position"]), state["history"], _Totals(**state["totals"])
        if rank > 0:  # the saved sums are every process's: rank 0 carries them, the epoch's end adds the others'
            totals = _Totals(seconds=totals.seconds)
        if state["threads"] != torch.get_num_threads():
            warnings.warn(f"resuming with {torch.get_num_threads()} threads, saved with {state['threads']}: "
                          "the run will not be bit-identical to an uninterrupted one", stacklevel=2)
        if state.get("processes", 1) != world:
            warnings.warn(f"resuming with {world} process(es), saved with {state.get('processes', 1)}: the run will not "
                          "be bit-identical to an uninterrupted one (batch statistics are per process)", stacklevel=2)
    step_fn = model
    if world > 1:  # averages gradients over the processes; its constructor copies rank 0's weights to all
        step_fn = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step_fn = torch.compile(step_fn) if recipe.compile else step_fn
    bf16 = mixed_precision(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    with contextlib.ExitStack() as stack:
        if device.type == "cpu":
            # fused (SDPA) attention under bf16 is slow on CPU for some models (see SLOW_FUSED_ON_CPU)
            stack.enter_context(models.explicit_attention(model, kinds=models.SLOW_FUSED_ON_CPU))
        for epoch in range(position.epoch, recipe.epochs):
            start = position.step if epoch == position.epoch else 0
            batches = _Batches(recipe, images, labels, num_classes, dataset, seed, epoch, device)
            bar = tqdm(total=steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{recipe.epochs}",
                       disable=not progress, file=sys.stderr, leave=False, dynamic_ncols=False, ascii=True)
            model.train()
            if epoch != position.epoch or position.step == 0:
                totals = _Totals()
            tic = time.perf_counter() - totals.seconds
            for step, x, target, y in batches(start):
                global_step = epoch * steps_per_epoch + step
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(recipe, global_step, steps_per_epoch)
                torch.manual_seed(step_seed(seed, epoch, step) + rank & (2**63 - 1))  # dropout / drop-path, per process
                if device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                logits, loss = training_step(step_fn, optimizer, recipe, x, target, autocast=autocast,
                                             where=(type(model).__name__, epoch, step))
                totals.loss_sum += loss.item() * len(x)
                totals.correct += (logits.argmax(1).cpu() == y).sum().item()
                totals.seen += len(x)
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                done = Position(epoch, step + 1)
                if state_path and ((step + 1) % recipe.save_every == 0 or done == stop_after) and step + 1 < steps_per_epoch:
                    totals.seconds = time.perf_counter() - tic
                    summed = _summed(totals)  # every process takes part; rank 0 writes
                    if rank == 0:
                        _save_state(state_path, model, optimizer, done, history, summed)
                if stop_after and done == stop_after:
                    bar.close()
                    return history
            bar.close()
            train_time = time.perf_counter() - tic
            summed = _summed(totals)
            loss_sum, correct, seen = summed.loss_sum, summed.correct, summed.seen
            entry = None
            if rank == 0:
                with autocast:  # a curve, not a result: where bf16 is native it scores 2× faster; committed metrics are fp32
                    scores = metrics.evaluate(model, *test)
                entry = {
                    "epoch": epoch + 1,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": loss_sum / max(seen, 1),
                    "train_accuracy": correct / max(seen, 1),
                    **{f"test_{k}": v for k, v in scores.items()},
                    "seconds": train_time,
                    "images_per_second": seen / train_time if train_time else float("nan"),
                    "precision": "bf16" if bf16 else "fp32",
                    **({"processes": world} if world > 1 else {}),
                }
            history.append(distributed.broadcast(entry))
            if progress:
                h = history[-1]
                print(f"epoch {epoch + 1}/{recipe.epochs}: loss {h['train_loss']:.3f}, test acc {h['test_accuracy']:.4f}, "
                      f"nll {h['test_nll']:.3f}, {h['images_per_second']:.0f} img/s", file=sys.stderr, flush=True)
            if on_epoch_end and rank == 0:
                on_epoch_end(epoch + 1, model, history)
            position = Position(epoch + 1, 0)
            if state_path and rank == 0:
                _save_state(state_path, model, optimizer, position, history, _Totals())
            if stop_after and position == stop_after:
                return history
    model.to(memory_format=torch.contiguous_format)
    return history
