"""Chapter 1, "MSAs flatten the loss landscape": its runs, thresholds, methods beside the paper's, and checks.

Everything the chapter fixes before computing lives here; the notebook reads it, and so do the
ledger and the differences table. Adding a check means adding one entry to :func:`checks`
under a new id.
"""

from __future__ import annotations

import re

import pandas as pd

from lib import profiles
from lib.analysis import spectra
from lib.chapters.base import Request
from lib.verdict import Check, Part, budget

CHAPTER = "01_flat_losses"
TITLE = "1 · flat losses"

RUNS = (
    Request("ResNet, warm-up", "resnet", at="warmup"),
    Request("ViT, warm-up", "vit", at="warmup"),
    Request("ResNet", "resnet"),
    Request("ViT", "vit"),
    # measured on seed 0 only (fixed before computing): their replicate weights would add ≈ 43 MB to the repository
    # and ≈ 3 h of training here; the checks they feed say "seed 0 only" (lib.claims.with_replicates)
    Request("ViT, 2 % data", "vit", fraction=0.02, replicated=False),
    Request("ViT, 10 % data", "vit", fraction=0.1, replicated=False),
    Request("ViT, local 3×3", "vit", local=3, replicated=False),
    Request("ViT, local 5×5", "vit", local=5, replicated=False),
)

K = 5  # top eigenvalues per Hessian batch
ACCURACY_DROP = 1.0  # largest test-accuracy drop (points) that still counts as "trains as well"
LOSS_RISE = 0.02  # largest rise of the last-epoch training loss that still counts as "trains as well"

CLAIM = ("MSAs flatten the loss landscape, through data specificity rather than long-range dependency, while "
         "ViTs suffer non-convex losses on small data.")
SCOPE = ("Our models train for 12 epochs on CIFAR-10 at a quarter of the paper's width, one seed each; a Hessian "
         "spectrum pools the top-5 eigenvalues of 8 batches, so negative mass moves in steps of 1/40, and the "
         "small-data and local-attention spectra exist only at the end of training.")
# the paper's claim in parts; each is decided by the checks measured as the paper measured it (its Hessian
# spectra at the end of warm-up), with our end-of-training variants beside them
PARTS = (
    Part("ViT's loss is flatter than ResNet's: smaller Hessian eigenvalues", "Figs 1, 4",
         decide=("flatter_warmup",), ours=("flatter_final",)),
    Part("ViT's loss is non-convex: more negative Hessian eigenvalues than ResNet's", "Fig 4",
         decide=("negative_warmup",), ours=("negative_final",)),
    Part("Less data, more non-convexity for ViT", "Fig 4", decide=("small_data_2", "small_data_10")),
    Part("ViT with local attention trains as well as with global attention", "poster Fig 3",
         decide=("local5_accuracy", "local5_loss", "local3_accuracy", "local3_loss")),
    Part("Local attention reduces ViT's negative eigenvalues", "poster Fig 3", decide=("local5_negative", "local3_negative")),
)


def methods(profile: str = "cpu") -> list[tuple[str, str, str]]:
    """``(what, paper, ours)`` rows of the chapter's methods under ``profile``."""
    a, recipe = profiles.get(profile).analysis, profiles.get(profile).recipe
    loss = f"CE, label smoothing {recipe.label_smoothing} + (wd/2)‖w‖², wd {recipe.weight_decay}"
    return [
        ("Hessian spectra", "PyHessian power iteration with deflation, top-5 per batch; batch size and count not "
                            "stated", f"Lanczos, top-{K} per batch, {a.hessian_batches} batches of {a.hessian_batch_size}"),
        ("Hessian loss and data", "NLL + L2 on Mixup/CutMix/RandAugment training batches",
         f"{loss}, on crop + flip batches of each model's own training set"),
        ("checkpoints", "end of warm-up (epoch 5)", f"end of warm-up (epoch {recipe.warmup_epochs}) and end of training"),
        ("small data", "ViT on 6 % of CIFAR-100", "ViT on 2 % and 10 % of CIFAR-10, same epochs"),
        ("locality", "3×3, 5×5 and 8×8 (global) windows, CIFAR-100", "3×3 and 5×5 windows vs global (8×8 token grid)"),
        ("landscape grid", "21 × 21 on [−1, 1], every point over the augmented training set",
         f"{a.landscape_steps} × {a.landscape_steps} on [−1, 1], {a.landscape_images} augmented training images"),
        ("landscape directions", "normalised along dim 0", "normalised per filter (Li et al. 2018)"),
        ("L2 term of the landscape", "wd · Σ‖p‖ (not squared), all parameters", "(wd/2) · ‖w‖²"),
    ]


def _local_id(name: str) -> str:
    """``"ViT, local 5×5"`` → ``"local5"``."""
    match = re.search(r"local (\d+)", name)
    if not match:
        raise ValueError(f"{name!r} is not a local-attention run's label (expected 'ViT, local N×N')")
    return f"local{match.group(1)}"


def checks(
    spectrum: dict,
    locality: pd.DataFrame,
    states: dict,
    *,
    seed: int = 0,
    accuracy_drop: float = ACCURACY_DROP,
    loss_rise: float = LOSS_RISE,
) -> dict[str, Check]:
    """The chapter's checks by id: flatter, non-convex, more so on small data, and locality does not hurt.

    A replicate seed loads the cast only (:class:`~lib.chapters.base.Request` ``replicated``): then only the
    checks of the runs in ``spectrum`` are made, and ``locality`` may be None.

    Args:
        spectrum: label → ``Spectrum`` for every label of :data:`RUNS` that was loaded.
        locality: ``lib.runs.compare_training`` of the global ViT (first row) and the local ones, or None.
        states: label → model, as ``spectrum``.
        seed: Seed of the batch bootstrap.
        accuracy_drop: Largest test-accuracy drop (points) that still counts as "as well".
        loss_rise: Largest rise of the last-epoch training loss that still counts as "as well".
    """
    def contrast(claim, a, b, statistic, op, words):
        value, lo, hi = spectra.compare(spectrum[a].per_batch, spectrum[b].per_batch, statistic, seed=seed)
        images = spectrum[b].batch_size * spectrum[b].batches
        return Check(claim=claim, statistic=f"{statistic}: {words}", value=value, op=op, threshold=0.0, interval=(lo, hi),
                     budget=budget(states[a], states[b], images=images, batches=spectrum[b].batches, k=spectrum[b].k))

    out = {}
    for when, suffix, tag in (("end of warm-up", ", warm-up", "warmup"), ("end of training", "", "final")):
        out[f"flatter_{tag}"] = contrast(f"ViT is flatter than ResNet ({when})", "ResNet" + suffix, "ViT" + suffix,
                                         "median positive eigenvalue", "<", "ViT − ResNet")
    for when, suffix, tag in (("end of warm-up", ", warm-up", "warmup"), ("end of training", "", "final")):
        out[f"negative_{tag}"] = contrast(f"ViT has more negative eigenvalues than ResNet ({when})", "ResNet" + suffix,
                                          "ViT" + suffix, "negative mass", ">", "ViT − ResNet")
    for share, tag in (("2 %", "2"), ("10 %", "10")):
        if f"ViT, {share} data" not in spectrum:
            continue
        out[f"small_data_{tag}"] = contrast(f"Less data, more non-convexity: ViT on {share} vs 100 %", "ViT",
                                            f"ViT, {share} data", "negative mass", ">", f"ViT({share}) − ViT(100 %)")
    if locality is None:
        return out
    rows = locality.set_index("model")
    for name in locality["model"].iloc[1:]:
        local, tag = name.removeprefix("ViT, "), _local_id(name)
        pair = budget(states["ViT"], states[name])
        out[f"{tag}_accuracy"] = Check(
            claim=f"ViT with {local} attention trains as well: test accuracy",
            statistic=f"accuracy({local}) − accuracy(global), points", value=float(rows.loc[name, "Δaccuracy (points)"]),
            op=">=", threshold=-accuracy_drop, budget=pair)
        out[f"{tag}_loss"] = Check(
            claim=f"ViT with {local} attention trains as well: training loss",
            statistic=f"last-epoch training loss({local}) − (global)", value=float(rows.loc[name, "Δtrain loss"]),
            op="<=", threshold=loss_rise, budget=pair)
        out[f"{tag}_negative"] = contrast(f"ViT with {local} attention has less negative mass", "ViT", name,
                                          "negative mass", "<", f"{local} − global")
    return out


def findings(checks: dict[str, Check]) -> dict[str, str]:
    """The words the prose quotes from the checks: whether small data shows more non-convexity, and local attention trains."""
    local = [c for key, c in checks.items() if key.startswith("local") and key.endswith(("_accuracy", "_loss"))]
    return {"small_data": "shows" if checks["small_data_2"].holds and checks["small_data_10"].holds else "does not show",
            "local_trains": "trains" if local and all(c.holds for c in local) else "does not train"}
