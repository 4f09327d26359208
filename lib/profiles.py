"""The three compute budgets of the book — ``smoke``, ``cpu`` and ``paper`` (DESIGN.md, "Profiles").

One code path, three budgets: a profile names the dataset, which model plays each *role*
(``resnet``, ``vit``, ``alternet``, ``preresnet``), and the training recipe. Recipes follow
methods.md §2 (``paper``) or its CPU-sized cousin (``cpu``: crop + flip, label smoothing, linear
warm-up then cosine), and are frozen dataclasses so a run's key can be computed from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

Augment = Literal["crop_flip", "paper"]

ROLE_LABELS = {"resnet": "ResNet", "vit": "ViT", "alternet": "AlterNet", "preresnet": "Pre-act ResNet"}  # how tables and figures name each role


def _not_in_key(default):
    """A recipe field that changes how fast a run goes, not what it computes (excluded from run keys)."""
    return field(default=default, metadata={"key": False})


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. Fields left at ``None`` are absent from the run key.

    Args:
        epochs: total epochs, warm-up included (the paper: 5 warm-up + 300 cosine = 305).
        warmup_epochs: linear warm-up from lr 0, stepped every iteration; the ``warmup``
            snapshot is taken at its end (methods.md §4 uses it for the Hessian spectra).
        batch_size: images per optimiser step.
        lr: peak learning rate of AdamW; cosine decay to 0 after warm-up.
        weight_decay: AdamW's decoupled decay, applied to all parameters as in the paper.
        label_smoothing: smoothing of the one-hot targets.
        clip_grad: global gradient-norm clip, or ``None``.
        augment: ``"crop_flip"`` (random 4-pixel-padded crop + flip on tensors) or ``"paper"``
            (crop + flip + RandAugment m9-n2 in DataLoader workers, then Mixup/CutMix).
        randaugment: timm RandAugment spec for ``augment="paper"``.
        mixup_alpha, cutmix_alpha: Mixup/CutMix strengths for ``augment="paper"``.
        drop_path_rate: stochastic depth of the model, or ``None`` for the model's default.
        save_every: steps between resume checkpoints (speed only).
        num_workers: DataLoader workers for RandAugment (speed only).
        compile: wrap the model in ``torch.compile`` for training (speed only).
    """

    epochs: int
    warmup_epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    clip_grad: float | None = None
    augment: Augment = "crop_flip"
    randaugment: str | None = None
    mixup_alpha: float | None = None
    cutmix_alpha: float | None = None
    drop_path_rate: float | None = None
    save_every: int = _not_in_key(100)
    num_workers: int = _not_in_key(0)
    compile: bool = _not_in_key(False)

    def __post_init__(self):
        # one value, one key: 12 and 12.0, 5 and 5.0 must name the same run
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), f.type
            if value is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                if kind.startswith("int"):
                    if value != int(value):
                        raise ValueError(f"{f.name}={value!r} must be an integer")
                    object.__setattr__(self, f.name, int(value))
                elif kind.startswith("float"):
                    object.__setattr__(self, f.name, float(value))
        if self.augment not in ("crop_flip", "paper"):
            raise ValueError(f"augment={self.augment!r}; valid: 'crop_flip', 'paper'")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} must lie in [0, epochs={self.epochs}]")
        if self.batch_size < 1 or self.epochs < 1 or self.lr <= 0 or self.save_every < 1:
            raise ValueError(f"epochs, batch_size, lr and save_every must be positive, got "
                             f"{self.epochs}, {self.batch_size}, {self.lr}, {self.save_every}")
        if self.augment == "paper" and not self.randaugment:
            raise ValueError("augment='paper' needs a randaugment spec, e.g. randaugment='rand-m9-n2-mstd1.0'")

    def key_dict(self) -> dict:
        """The fields that change the result, ``None`` ones dropped (so a new optional field orphans nothing)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("key", True) and getattr(self, f.name) is not None
        }


@dataclass(frozen=True)
class Analysis:
    """How much data each cached analysis of the chapters looks at, under one profile.

    The chapters read these rather than hard-coding sizes, so ``smoke`` stays a one-minute run
    and ``paper`` can afford more; the chapters quote them next to every result.

    Args:
        hessian_batches, hessian_batch_size: Per-batch top-k spectra (Chapter 1, 4).
        landscape_steps, landscape_images: Grid side and training images of 2-D loss landscapes.
        slq_probes, slq_steps: Stochastic Lanczos quadrature of one batch Hessian.
        trace_probes: Hutchinson probes of one batch Hessian's trace.
        sweep_images: Test images of the band-noise sweep, the initialisation control and CKA.
        recheck_images: Images of the live re-check of a cached Hessian.
    """

    hessian_batches: int = 8
    hessian_batch_size: int = 128
    landscape_steps: int = 11
    landscape_images: int = 512
    slq_probes: int = 2
    slq_steps: int = 40
    trace_probes: int = 30
    sweep_images: int = 2000
    recheck_images: int = 64


@dataclass(frozen=True)
class Profile:
    """A budget: dataset, the model playing each role, the recipe, and how much data to use.

    Args:
        name: ``smoke``, ``cpu`` or ``paper``.
        dataset: ``cifar10`` or ``cifar100``.
        roles: role → registered model name (``lib.models.names()``).
        recipe: the training recipe shared by every role (the paper uses one for CNNs and ViTs).
        train_fraction: share of the training set a run uses when the caller does not say.
        test_fraction: share of the test set used for the per-epoch and final evaluation.
        device: where this profile is meant to run (``cpu`` or ``cuda``), for the runner's estimate.
        analysis: how much data the cached analyses look at (:class:`Analysis`).
    """

    name: str
    dataset: str
    roles: dict
    recipe: Recipe
    train_fraction: float = 1.0
    test_fraction: float = 1.0
    device: str = "cpu"
    analysis: Analysis = Analysis()

    def model_name(self, role: str) -> str:
        if role not in self.roles:
            raise ValueError(f"unknown role {role!r} in profile {self.name!r}; valid roles: {sorted(self.roles)}")
        return self.roles[role]


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        dataset="cifar10",
        roles={"resnet": "resnet50_smoke", "vit": "vit_smoke", "alternet": "alternet50_smoke", "preresnet": "preresnet50_smoke"},
        recipe=Recipe(epochs=2, warmup_epochs=1, batch_size=50, lr=2e-3, save_every=5),
        train_fraction=0.01,  # 500 images, class-balanced
        test_fraction=0.05,  # 500 images
        analysis=Analysis(hessian_batches=2, hessian_batch_size=8, landscape_steps=3, landscape_images=16, slq_probes=1,
                          slq_steps=5, trace_probes=3, sweep_images=100, recheck_images=8),
    ),
    "cpu": Profile(
        name="cpu",
        dataset="cifar10",
        roles={"resnet": "resnet50_cpu", "vit": "vit_cpu", "alternet": "alternet50_cpu", "preresnet": "preresnet50_cpu"},
        # 12 epochs: the slowest of the cast (AlterNet, ~190 s an epoch here) trains in ≤ 45 min
        recipe=Recipe(epochs=12, warmup_epochs=2, batch_size=128, lr=2e-3, clip_grad=5.0),
    ),
    "paper": Profile(
        name="paper",
        dataset="cifar100",
        roles={"resnet": "resnet50", "vit": "vit_ti", "alternet": "alternet50", "preresnet": "preresnet50"},
        recipe=Recipe(
            epochs=305, warmup_epochs=5, batch_size=96, lr=1.25e-4, weight_decay=0.05, label_smoothing=0.1,
            clip_grad=5.0, augment="paper", randaugment="rand-m9-n2-mstd1.0", mixup_alpha=1.0, cutmix_alpha=0.8,
            num_workers=8,
        ),
        device="cuda",
        analysis=Analysis(hessian_batches=32, hessian_batch_size=128, landscape_steps=21, landscape_images=4096,
                          slq_probes=8, slq_steps=80, trace_probes=100, sweep_images=10000, recheck_images=64),
    ),
}


def get(profile: str | Profile) -> Profile:
    """The named profile; a ``Profile`` passes through."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {sorted(PROFILES)}")
    return PROFILES[profile]


def recipe_fields() -> set[str]:
    """Names of ``Recipe`` fields, so ``trained(..., epochs=8)`` can tell recipe from model overrides."""
    return {f.name for f in dataclasses.fields(Recipe)}


def _shape(name: str) -> str:
    """A one-line description of a registered model's sizes."""
    from lib import models

    c = models.config(name)
    if "patch_size" in c:
        return f"patch {c['patch_size']}, dim {c['embed_dim']}, depth {c['depth']}, {c['num_heads']} heads"
    text = f"blocks {tuple(c['depth'])}, widths {tuple(c['width'])}"
    if "msa_per_stage" in c:
        text += f", MSAs {tuple(c['msa_per_stage'])}, head dim {c['head_dim']}, window {c['window']}"
    return text


def differences(profile: str = "cpu", reference: str = "paper", roles=("resnet", "vit", "alternet")) -> "pd.DataFrame":
    """What ``profile`` changes against ``reference``: data, recipe and each role's model, side by side."""
    import pandas as pd

    from lib import models

    ours, ref = get(profile), get(reference)
    rows = [("data", ref.dataset, f"{ours.dataset} ({ours.train_fraction:.0%} of the training set)")]
    for role in roles:
        n_ref, n_our = (sum(p.numel() for p in models.create(x.model_name(role), num_classes=100 if x.dataset == "cifar100" else 10).parameters())
                        for x in (ref, ours))
        rows.append((f"{role}", f"{ref.model_name(role)}: {_shape(ref.model_name(role))}, {n_ref / 1e6:.1f} M",
                     f"{ours.model_name(role)}: {_shape(ours.model_name(role))}, {n_our / 1e6:.2f} M"))
    r, o = ref.recipe, ours.recipe

    def recipe_line(x: Recipe) -> str:
        aug = "crop + flip" if x.augment == "crop_flip" else f"crop + flip, RandAugment {x.randaugment}, Mixup {x.mixup_alpha} / CutMix {x.cutmix_alpha}"
        return aug + f", label smoothing {x.label_smoothing}"

    rows += [
        ("epochs", f"{r.epochs} ({r.warmup_epochs} warm-up)", f"{o.epochs} ({o.warmup_epochs} warm-up)"),
        ("optimiser", f"AdamW lr {r.lr:g}, wd {r.weight_decay}, batch {r.batch_size}", f"AdamW lr {o.lr:g}, wd {o.weight_decay}, batch {o.batch_size}"),
        ("augmentation and loss", recipe_line(r), recipe_line(o)),
        ("gradient clipping", str(r.clip_grad), str(o.clip_grad)),
    ]
    return pd.DataFrame(rows, columns=["", reference, profile]).set_index("")
