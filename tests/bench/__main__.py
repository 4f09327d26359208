"""``make bench``: speed of the book's engine against plain references measured in the same run.

Training throughput: for each model of the ``cpu`` cast, images/s of ``lib.train.fit`` (bf16
autocast, channels_last, tensor augmentation) against a plain fp32 PyTorch loop (AdamW,
cross-entropy, no augmentation) on the same model and batch size. Ratios > 1 mean we are faster.

Top-k Hessian eigenvalues (``tests/bench/hessian.py``): our Lanczos against a PyHessian-style
power iteration with deflation on 128 training images of the cast's trained ResNet and ViT, for
k = 1 and k = 5: speed-up, ratio of Hessian-vector products, and largest relative difference.

    python -m tests.bench [--roles resnet vit alternet] [--steps 12] [--compile] [--skip training|hessian]
                          [--hessian-k 1 5] [--hessian-roles resnet vit]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from unittest import mock

import torch
import torch.nn.functional as F

from lib import profiles, runs, train


def plain_fp32_images_per_second(model, batch_size: int, steps: int, warmup: int = 2) -> float:
    """A textbook fp32 training loop on random normalised images: the reference."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch_size,), generator=g)
    for i in range(warmup + steps):
        if i == warmup:
            tic = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - tic)


def engine_images_per_second(role: str, recipe: profiles.Recipe, steps: int, warmup: int = 2) -> float:
    """``lib.train.fit`` for one epoch of ``warmup + steps`` batches; the warm-up batches are timed out.

    The clock wraps :func:`lib.train.training_step` from outside, so a compiled model is timed as
    it trains: nothing in its forward pass changes between steps (a clock inside the forward
    made dynamo guard on it and recompile at every step).
    """
    g = torch.Generator().manual_seed(0)
    n = recipe.batch_size * (warmup + steps)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    test = (images[:8], labels[:8])
    times = []

    def timed_step(*args, **kwargs):  # the wall time at the start of every optimiser step
        times.append(time.perf_counter())
        return training_step(*args, **kwargs)

    one_epoch = dataclasses.replace(recipe, epochs=1, warmup_epochs=0, save_every=10**9)
    training_step = train.training_step
    with mock.patch.object(train, "training_step", timed_step):
        train.fit(runs.build(role, "cpu"), one_epoch, (images, labels), test, seed=0, num_classes=10, progress=False,
                  device="cpu")
    # steps between the first timed step's start and the last one's, plus one step at the mean pace
    span = times[-1] - times[warmup]
    per_step = span / (len(times) - 1 - warmup)
    return recipe.batch_size / per_step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--roles", nargs="*", default=["resnet", "vit", "alternet"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--compile", action="store_true", help="also time the engine with torch.compile")
    parser.add_argument("--skip", nargs="*", default=[], choices=["training", "hessian"])
    parser.add_argument("--hessian-k", nargs="*", type=int, default=[1, 5], help="top-k sizes of the Hessian bench")
    parser.add_argument("--hessian-roles", nargs="*", default=["resnet", "vit"])
    args = parser.parse_args(argv)
    if "training" not in args.skip:
        training(args)
    if "hessian" not in args.skip:
        from tests.bench import hessian

        hessian.run(roles=args.hessian_roles, ks=args.hessian_k)


def training(args) -> None:
    recipe = profiles.get("cpu").recipe
    print(f"training throughput, batch {recipe.batch_size}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'role':10s} {'model':16s} {'fp32 ref img/s':>15s} {'engine img/s':>13s} {'ratio':>6s}")
    for role in args.roles:
        ref = plain_fp32_images_per_second(runs.build(role, "cpu"), recipe.batch_size, args.steps)
        variants = [("", recipe)] + ([(" +compile", dataclasses.replace(recipe, compile=True))] if args.compile else [])
        for tag, r in variants:
            ours = engine_images_per_second(role, r, args.steps)
            name = profiles.get("cpu").model_name(role) + tag
            print(f"{role:10s} {name:16s} {ref:15.0f} {ours:13.0f} {ours / ref:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
