"""The unit view: a model as a stem followed by residual units, the one view every analysis uses.

Park & Kim (2022) analyse models block by block: Fourier spectra and feature-map variance after
every unit (Figs 2a, 8, 9; methods.md §5-6), lesions of single units and similarity between
unit outputs (Fig 10; §10). methods.md §1 fixes the lists: ResNet-50 is the stem plus 16
bottlenecks, ViT-Ti the embedding plus 12 × (MSA half, MLP half).

``units(model)`` returns those units in forward order; running them one after another and then
``head(model)`` reproduces ``model(x)``. ``feature_maps(model, images)`` returns the residual
stream after each unit as ``[B, C, H, W]``. Supported: timm ``ResNet`` (ours and timm's own),
timm ``ResNetV2`` (our pre-activation ResNet and AlterNet) and timm ``VisionTransformer``.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from timm.models.resnet import ResNet
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer

from .alternet import MSABlock

# How each kind of unit is named in tables and figures (one set for the whole book).
KIND_LABELS = {"stem": "Stem", "conv": "Conv", "msa": "MSA", "mlp": "MLP"}

UnitKind = Literal["stem", "conv", "msa", "mlp"]


@dataclass(frozen=True)
class Unit:
    """One residual unit of a model.

    Attributes:
        name: Dotted path in the model (``"stem"`` for the stem, ``"blocks.3.attn"`` for the
            attention half of ViT block 3).
        kind: ``"stem"``, ``"conv"``, ``"msa"`` or ``"mlp"``.
        stage: 0 for the stem, then the 1-based stage (1 for every ViT block).
        module: Maps the unit's input residual stream to its output.
        downsample: True when the unit changes spatial size or width, so it cannot be lesioned.
    """

    name: str
    kind: UnitKind
    stage: int
    module: nn.Module
    downsample: bool


class PreNormResidual(nn.Module):
    """One half of a timm ViT block: ``x + drop_path(ls(fn(norm(x))))``.

    Holds references to the block's own submodules; it is built by :func:`units` and never
    attached to the model, so the model's ``state_dict`` is unchanged.

    Args:
        norm: ``norm1`` or ``norm2`` of the block.
        fn: ``attn`` or ``mlp`` of the block.
        ls: ``ls1`` or ``ls2`` (layer scale or Identity).
        drop_path: ``drop_path1`` or ``drop_path2`` (DropPath or Identity).
    """

    def __init__(self, norm: nn.Module, fn: nn.Module, ls: nn.Module, drop_path: nn.Module):
        super().__init__()
        self.norm, self.fn, self.ls, self.drop_path = norm, fn, ls, drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` → ``[B, N, C]``."""
        return x + self.drop_path(self.ls(self.fn(self.norm(x))))


class ViTStem(nn.Module):
    """What timm's ``forward_features`` does before ``blocks``: patches, prefix tokens, positions.

    Args:
        vit: The timm ``VisionTransformer``; its embedding modules and parameters are
            referenced, not copied.
    """

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        self.__dict__["_vit"] = vit  # plain reference: not a submodule, no cycle in the model
        self.patch_embed, self.pos_drop = vit.patch_embed, vit.pos_drop
        self.patch_drop, self.norm_pre = vit.patch_drop, vit.norm_pre
        for name in ("cls_token", "reg_token", "pos_embed"):
            if getattr(vit, name, None) is not None:
                setattr(self, name, getattr(vit, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` → tokens ``[B, prefix + patches, C]``."""
        x = self._vit._pos_embed(self.patch_embed(x))
        return self.norm_pre(self.patch_drop(x))


def _resnet_units(model: ResNet) -> list[Unit]:
    stem = nn.Sequential(OrderedDict(conv1=model.conv1, bn1=model.bn1, act1=model.act1, maxpool=model.maxpool))
    out = [Unit("stem", "stem", 0, stem, True)]
    for stage in range(1, 5):
        for idx, block in enumerate(getattr(model, f"layer{stage}")):
            out.append(Unit(f"layer{stage}.{idx}", "conv", stage, block, block.downsample is not None))
    return out


def _resnetv2_units(model: ResNetV2) -> list[Unit]:
    out = [Unit("stem", "stem", 0, model.stem, True)]
    for stage_idx, stage in enumerate(model.stages):
        for idx, block in enumerate(stage.blocks):
            kind = "msa" if isinstance(block, MSABlock) else "conv"
            downsample = getattr(block, "downsample", None) is not None
            out.append(Unit(f"stages.{stage_idx}.blocks.{idx}", kind, stage_idx + 1, block, downsample))
    return out


_VIT_BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")


def _vit_units(model: VisionTransformer) -> list[Unit]:
    out = [Unit("stem", "stem", 0, ViTStem(model), True)]
    for idx, b in enumerate(model.blocks):
        if not all(hasattr(b, part) for part in _VIT_BLOCK_PARTS):
            raise TypeError(f"units() cannot split a {type(b).__name__} into attention and MLP halves")
        out.append(Unit(f"blocks.{idx}.attn", "msa", 1, PreNormResidual(b.norm1, b.attn, b.ls1, b.drop_path1), False))
        out.append(Unit(f"blocks.{idx}.mlp", "mlp", 1, PreNormResidual(b.norm2, b.mlp, b.ls2, b.drop_path2), False))
    return out


def units(model: nn.Module) -> list[Unit]:
    """The model's residual units in forward order: the stem first, then every residual unit.

    Args:
        model: A timm ``ResNet``, ``ResNetV2`` (incl. AlterNet) or ``VisionTransformer``.

    Returns:
        One :class:`Unit` per residual unit; ViT blocks give an ``"msa"`` and an ``"mlp"`` unit.

    Raises:
        TypeError: For any other kind of model.
    """
    if isinstance(model, VisionTransformer):
        return _vit_units(model)
    if isinstance(model, ResNetV2):
        return _resnetv2_units(model)
    if isinstance(model, ResNet):
        return _resnet_units(model)
    raise TypeError(
        f"units() does not support {type(model).__name__}; it knows timm ResNet, ResNetV2 "
        "(pre-activation ResNet, AlterNet) and VisionTransformer"
    )


def forward_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Maps the last unit's output to logits (final norm where the model has one, then head).

    Args:
        model: A model :func:`units` supports.
        x: Output of the last unit.

    Returns:
        Logits ``[B, num_classes]``.
    """
    if isinstance(model, (VisionTransformer, ResNetV2)):
        return model.forward_head(model.norm(x))
    if isinstance(model, ResNet):
        return model.forward_head(x)
    raise TypeError(f"forward_head() does not support {type(model).__name__}")


def head(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward_head`` bound to ``model``: last unit's output → logits."""
    units(model)  # fail early, with the same message, on an unsupported model
    return functools.partial(forward_head, model)


def _as_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A fp32 ``[B, C, H, W]`` copy of a unit output (ViT: prefix tokens dropped, row-major grid)."""
    if x.ndim == 3:
        tokens = x[:, model.num_prefix_tokens :]
        b, n, c = tokens.shape
        rows, cols = model.patch_embed.grid_size
        if rows * cols != n:  # dynamic image size: assume a square grid
            rows = cols = int(round(n**0.5))
        x = tokens.reshape(b, rows, cols, c).permute(0, 3, 1, 2)
    return x.detach().to(torch.float32, memory_format=torch.contiguous_format, copy=True)


@torch.no_grad()
def feature_maps(model: nn.Module, images: torch.Tensor) -> list[tuple[Unit, torch.Tensor]]:
    """The residual stream after every unit, as feature maps.

    Runs under ``torch.no_grad()`` in whatever train/eval mode the model is in (call
    ``model.eval()`` first for analyses; methods.md §15.5).

    Args:
        model: A model :func:`units` supports.
        images: ``[B, 3, H, W]``; uint8 images are normalised with ``lib.data.normalize`` for
            ``model.book_dataset`` (default ``"cifar10"``), float images are taken as already
            normalised.

    Returns:
        ``(unit, map)`` pairs in forward order, each map fp32 ``[B, C, H, W]`` on the model's
        device.
    """
    if images.dtype == torch.uint8:
        from lib.data import normalize

        images = normalize(images, dataset=getattr(model, "book_dataset", "cifar10"))
    param = next(model.parameters())
    x = images.to(device=param.device, dtype=param.dtype)
    out = []
    for unit in units(model):
        x = unit.module(x)
        out.append((unit, _as_map(model, x)))
    return out
