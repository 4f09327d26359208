"""The book's models by name: ResNet-50, ViT-Ti and AlterNet for CIFAR, plus smaller members.

Park & Kim (2022) compare a ResNet-50, a ViT-Ti and their AlterNet (methods.md §1, §7); the
``cpu`` and ``smoke`` members keep each family's shape (stages, MSA placement, patching) at a
size a 2-core CPU can train or a test can run. Each name maps to a builder and a dict of sizes;
``create(name, **overrides)`` merges the overrides on top, as timm does with its variants::

    model = create("vit_cpu", local=3)              # ViT with 3×3 local attention
    model = create("resnet50_cpu", drop_path_rate=0.1)

The unit view (``units``, ``head``, ``feature_maps``) lives in :mod:`lib.models.units`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch.nn as nn
from timm.layers import Attention

from .alternet import MSABlock, WindowAttention, alternet, alternet_from
from .resnet import preresnet, resnet
from .summary import blocks_table, stage_table
from .units import Unit, feature_maps, forward_head, head, units
from .vit import LocalAttention, make_local, vit

__all__ = [
    "create",
    "names",
    "config",
    "explicit_attention",
    "SLOW_FUSED_ON_CPU",
    "alternet_from",
    "make_local",
    "Unit",
    "units",
    "head",
    "forward_head",
    "feature_maps",
    "blocks_table",
    "stage_table",
    "MSABlock",
    "WindowAttention",
    "LocalAttention",
]

# Sizes per member. Widths are bottleneck inner widths (stages output 4×). "cpu" members are
# the paper's shapes at a quarter width (ViT: patch 4, dim 96); "smoke" members are tiny.
_SMOKE_CNN = dict(width=(8, 8, 16, 16), stem_width=8)
_CPU_CNN = dict(width=(16, 32, 64, 128), stem_width=16)

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    # post-activation ResNet-50 (methods.md §1)
    "resnet50": (resnet, dict(depth=(3, 4, 6, 3))),
    "resnet50_cpu": (resnet, dict(depth=(3, 4, 6, 3), **_CPU_CNN)),
    "resnet50_smoke": (resnet, dict(depth=(2, 2, 2, 2), **_SMOKE_CNN)),
    # pre-activation ResNet with AlterNet's block counts (methods.md §7, the build-up baseline)
    "preresnet50": (preresnet, dict(depth=(3, 4, 6, 4))),
    "preresnet50_cpu": (preresnet, dict(depth=(3, 4, 6, 4), **_CPU_CNN)),
    "preresnet50_smoke": (preresnet, dict(depth=(2, 2, 2, 4), **_SMOKE_CNN)),
    # AlterNet-50 for CIFAR: MSAs (0, 1, 1, 2) at stage ends (methods.md §7)
    "alternet50": (alternet, dict(depth=(3, 4, 6, 4), msa_per_stage=(0, 1, 1, 2), head_dim=64)),
    "alternet50_cpu": (alternet, dict(depth=(3, 4, 6, 4), msa_per_stage=(0, 1, 1, 2), head_dim=16, **_CPU_CNN)),
    "alternet50_smoke": (
        alternet,
        dict(depth=(2, 2, 2, 4), msa_per_stage=(0, 1, 1, 2), heads=(1, 1, 2, 2), head_dim=8, **_SMOKE_CNN),
    ),
    # ViT-Ti with 2×2 patches (methods.md §1)
    "vit_ti": (vit, dict(patch_size=2, embed_dim=192, depth=12, num_heads=3)),
    "vit_cpu": (vit, dict(patch_size=4, embed_dim=96, depth=12, num_heads=3)),
    "vit_smoke": (vit, dict(patch_size=4, embed_dim=32, depth=2, num_heads=2)),
}


def names() -> list[str]:
    """All registered model names, in registry order."""
    return list(_REGISTRY)


def config(name: str, **overrides: Any) -> dict[str, Any]:
    """The builder arguments ``create(name, **overrides)`` would use (defaults filled in).

    Args:
        name: A registered name (see :func:`names`).
        **overrides: Builder arguments replacing the member's defaults.

    Raises:
        ValueError: For an unknown name.
        TypeError: For an override the builder does not take.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    builder, defaults = _REGISTRY[name]
    params = inspect.signature(builder).parameters
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        valid = ", ".join(p for p in params)
        raise TypeError(f"{name} does not take {', '.join(unknown)}; its arguments are: {valid}")
    merged = {p.name: p.default for p in params.values() if p.default is not inspect.Parameter.empty}
    merged.update(defaults)
    merged.update(overrides)
    return merged


def create(name: str, num_classes: int = 10, **overrides: Any) -> nn.Module:
    """Builds a registered model.

    Args:
        name: A registered name (see :func:`names`).
        num_classes: Output logits.
        **overrides: Builder arguments replacing the member's defaults (``width``, ``depth``,
            ``patch_size``, ``embed_dim``, ``head_dim``, ``msa_per_stage``, ``window``,
            ``local``, ``drop_path_rate`` ...).

    Returns:
        The model, in train mode, with ``book_name = name`` and ``book_config`` (the builder
        arguments used) set as attributes.

    Raises:
        ValueError: For an unknown name (the message lists the valid ones).
    """
    kwargs = config(name, num_classes=num_classes, **overrides)
    builder, _ = _REGISTRY[name]
    model = builder(**kwargs)
    model.book_name = name
    model.book_config = kwargs
    return model


# Attention whose fused (SDPA) path is slower than the explicit one when training under bf16 on a
# CPU: ViT's 65-token sequences (ViT-cpu 205 img/s fused vs 452 explicit). AlterNet's 16-token
# windows are the other way round (200 vs 177 img/s), so WindowAttention is not listed.
SLOW_FUSED_ON_CPU: tuple[type[nn.Module], ...] = (Attention,)


@contextlib.contextmanager
def explicit_attention(model: nn.Module, kinds: tuple[type[nn.Module], ...] | None = None) -> Iterator[nn.Module]:
    """Switches attention modules of ``model`` to their explicit path, then restores them.

    Hessian-vector products need double backward, which fused attention lacks (DESIGN.md,
    "Things that are easy to get wrong"); the switch is per instance, never global.

    Args:
        model: Any model; modules with a ``fused_attn`` attribute are switched.
        kinds: Switch only modules of these classes (e.g. :data:`SLOW_FUSED_ON_CPU` for speed);
            ``None``, the default, switches every one, as double backward needs.

    Yields:
        The same model.
    """
    saved = [(m, m.fused_attn) for m in model.modules()
             if hasattr(m, "fused_attn") and (kinds is None or isinstance(m, kinds))]
    try:
        for m, _ in saved:
            m.fused_attn = False
        yield model
    finally:
        for m, fused in saved:
            m.fused_attn = fused
