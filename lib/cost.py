"""What training costs: seconds per step measured here, FLOPs counted, per model and per chapter (the numbers of ``gpu.md``).

``python -m lib.cost --profile paper`` times one training step of each model of the profile on
this machine (a GPU if there is one), counts its FLOPs and prints the hours of one full-data run
and of each chapter's runs. ``lib.book`` asks :func:`estimate_training_seconds` before it starts
a profile this machine cannot train in reasonable time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lib import chapters

CIFAR_TRAIN_IMAGES = 50_000  # CIFAR-10 and CIFAR-100 alike


def estimate_training_seconds(profile: str, roles=("resnet", "vit", "alternet"), *, device: str = "auto",
                              batch: int = 4, steps: int = 2) -> dict[str, float]:
    """Seconds to train each role's model under ``profile`` here, from a few timed steps of a tiny batch.

    A lower bound for the whole profile: the chapters train more than the cast (data fractions,
    seeds, variants), and small batches use a device less well than real ones do.
    """
    from lib import profiles

    prof = profiles.get(profile)
    return {role: step_seconds(role, prof.name, device=device, batch=batch, steps=steps) / batch * CIFAR_TRAIN_IMAGES * prof.recipe.epochs
            for role in roles}


def step_seconds(role: str, profile: str = "paper", *, device: str = "auto", batch: int | None = None, steps: int = 2) -> float:
    """Measured seconds of one training step of ``role``'s model on ``batch`` random images (default: the recipe's batch).

    The step is the engine's own (:func:`lib.train.training_step`: bf16 autocast where native,
    channels_last and explicit attention on a CPU, the recipe's loss, clipping and AdamW), on
    hard labels and without data loading; the fastest of ``steps`` steps after one warm-up step.
    """
    import contextlib

    import torch

    from lib import models, profiles, runs, train

    prof = profiles.get(profile)
    batch = prof.recipe.batch_size if batch is None else batch
    if batch < 1 or steps < 1:
        raise ValueError(f"batch and steps must be positive, got {batch}, {steps}")
    dev = train.resolve_device(device)
    model = runs.build(role, prof.name).to(dev).train()
    if dev.type == "cpu":  # as the engine trains on a CPU
        model = model.to(memory_format=torch.channels_last)
    explicit = models.explicit_attention(model, kinds=models.SLOW_FUSED_ON_CPU) if dev.type == "cpu" else contextlib.nullcontext()
    optimizer = train.make_optimizer(model, prof.recipe)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=train.mixed_precision(dev))
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    times = []
    with explicit:
        for _ in range(steps + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            tic = time.perf_counter()
            train.training_step(model, optimizer, prof.recipe, x, y, autocast=autocast)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - tic)
    return min(times[1:])


def training_flops(role: str, profile: str = "paper") -> float:
    """Floating-point operations of one training image of ``role``'s model, forward and backward.

    Counted by torch's ``FlopCounterMode`` (matrix products and convolutions, a multiply-add
    counted as 2), on a batch of 2 in fp32 on the CPU: the count does not depend on the device.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lib import data, profiles, runs

    prof = profiles.get(profile)
    model = runs.build(role, prof.name).train()
    x = torch.randn(2, 3, 32, 32)
    y = torch.randint(0, data.NUM_CLASSES[prof.dataset], (2,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 2


def augment_seconds(profile: str = "paper", *, images: int = 200) -> float:
    """Measured seconds one process spends on the per-image augmentation of ``profile``'s recipe (RandAugment), per image.

    Divided by ``recipe.num_workers`` it is the least time per image the DataLoader can feed a
    GPU with; 0 for a recipe without per-image augmentation.
    """
    import torch

    from lib import data, profiles

    prof = profiles.get(profile)
    if prof.recipe.augment != "paper":
        return 0.0
    pixels = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    augmented = data.AugmentedCIFAR(pixels, torch.zeros(images, dtype=torch.int64), dataset=prof.dataset,
                                    randaugment=prof.recipe.randaugment)
    augmented[0]  # imports and first-call costs
    tic = time.perf_counter()
    for i in range(images):
        augmented[i]
    return (time.perf_counter() - tic) / images


def cost(profile: str = "paper", roles=("resnet", "vit", "alternet", "preresnet"), *, device: str = "auto",
         batch: int | None = None, steps: int = 2) -> "pd.DataFrame":
    """What one full-data run of each role's model costs under ``profile``, measured on this machine.

    Returns:
        One row per role: ``model``, ``parameters (M)``, ``GFLOP per image`` (training, counted),
        ``steps per run`` (the recipe's epochs × whole batches of the profile's training set),
        ``seconds per step`` (measured here at ``batch``, scaled to the recipe's batch) and
        ``hours per run`` (their product), and the ``device`` they were measured on.
    """
    import pandas as pd

    from lib import profiles, runs, train

    prof = profiles.get(profile)
    batch = prof.recipe.batch_size if batch is None else batch
    steps_per_run = round(CIFAR_TRAIN_IMAGES * prof.train_fraction) // prof.recipe.batch_size * prof.recipe.epochs
    dev = train.resolve_device(device)
    rows = []
    for role in roles:
        seconds = step_seconds(role, prof.name, device=device, batch=batch, steps=steps) * prof.recipe.batch_size / batch
        rows.append({"role": role, "model": prof.model_name(role),
                     "parameters (M)": sum(p.numel() for p in runs.build(role, prof.name).parameters()) / 1e6,
                     "GFLOP per image": training_flops(role, prof.name) / 1e9, "steps per run": steps_per_run,
                     "seconds per step": seconds, "hours per run": seconds * steps_per_run / 3600,
                     "device": _device_name(dev)})
    return pd.DataFrame(rows)


def _device_name(device) -> str:
    """A readable name of ``device``: the GPU's model, or the CPU's."""
    import torch

    from lib import run_store

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{run_store.cpu_name()} ({torch.get_num_threads()} threads)"


def book_runs(profile: str = "paper") -> dict[str, dict[Path, tuple[str, float]]]:
    """The training runs each chapter needs under ``profile``, run folder → ``(role, fraction)``, and ``"book"``: all of them once.

    A chapter's runs are seed 0's and its sweep's; a run's warm-up and init snapshots come with
    it. Model variants (a local-attention ViT, an AlterNet with fewer MSAs) keep their role.
    """
    from lib import runs, sweeps

    out = {}
    for chapter, requests in chapters.CHAPTER_RUNS.items():
        needed = {}
        for request in requests:
            kwargs = {k: v for k, v in request.items() if k not in ("role", "at")}
            needed[runs.run_dir(request["role"], profile, **kwargs)] = (request["role"], kwargs.get("fraction", 1.0))
        if sweeps.has_sweep(chapter, profile):
            needed.update({r.folder(profile): (r.role, r.fraction) for r in sweeps.plan(chapter, profile)})
        out[chapter] = needed
    out["book"] = {folder: run for needed in list(out.values()) for folder, run in needed.items()}
    return out


def chapter_cost(per_run_hours: dict[str, float], profile: str = "paper") -> "pd.DataFrame":
    """Hours of training each chapter needs under ``profile``, from the hours of one full-data run of each role.

    A run on a fraction of the data costs that fraction of a full run (the same epochs over fewer
    batches). The last row, ``book``, counts every run once, however many chapters load it.
    """
    import pandas as pd

    rows = []
    for chapter, needed in book_runs(profile).items():
        roles = {role for role, _ in needed.values()}
        if roles - set(per_run_hours):
            raise ValueError(f"no cost for role(s) {sorted(roles - set(per_run_hours))}; per_run_hours needs {sorted(roles)}")
        rows.append({"chapter": chapter, "runs": len(needed), "full-run equivalents": sum(f for _, f in needed.values()),
                     "hours": sum(f * per_run_hours[role] for role, f in needed.values())})
    return pd.DataFrame(rows)


def print_cost(profile: str, *, device: str = "auto", batch: int | None = None, steps: int = 2) -> int:
    """Print :func:`cost`, :func:`chapter_cost` and the augmentation's share (``python -m lib.cost``)."""
    import pandas as pd

    from lib import profiles

    prof = profiles.get(profile)
    models_ = cost(prof.name, device=device, batch=batch, steps=steps)
    per_run = dict(zip(models_["role"], models_["hours per run"]))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"profile {prof.name}: {prof.recipe.epochs} epochs of batches of {prof.recipe.batch_size}, "
              f"timed on {models_['device'].iloc[0]}")
        print(models_.drop(columns="device").round(3).to_string(index=False))
        print(chapter_cost(per_run, prof.name).round(2).to_string(index=False))
    per_image = augment_seconds(prof.name)
    if per_image:
        workers = prof.recipe.num_workers
        print(f"per-image augmentation ({prof.recipe.randaugment}): {1 / per_image:.0f} images/s per process here; "
              f"with {workers} DataLoader workers at most {workers / per_image:.0f} images/s, "
              f"{per_image / workers * CIFAR_TRAIN_IMAGES * prof.train_fraction * prof.recipe.epochs / 3600:.1f} h "
              "of a full-data run at the least")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=None, help="images per timed step (default: the recipe's batch)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per model, after one warm-up step")
    args = parser.parse_args(argv)
    return print_cost(args.profile, device=args.device, batch=args.batch, steps=args.steps)


if __name__ == "__main__":
    raise SystemExit(main())
