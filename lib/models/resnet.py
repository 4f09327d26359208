"""CIFAR ResNets: the post-activation ResNet-50 and the pre-activation baseline of AlterNet.

Park & Kim (2022) compare ViTs against ResNet-50 throughout (Figs 1, 2, 4, 8-10; methods.md §1)
and build AlterNet (Fig 11, §7) from a pre-activation ResNet with blocks (3, 4, 6, 4). Both are
timm classes with a CIFAR stem swapped in, so that every timm tool (feature_info, forward_head,
checkpoint helpers) keeps working:

- ``resnet``: timm ``ResNet`` with post-activation ``Bottleneck`` blocks (torchvision "v1.5",
  stride on the 3×3 convolution) and a 3×3 stride-1 stem conv → BN → ReLU with no max-pool.
- ``preresnet``: timm ``ResNetV2`` with ``PreActBottleneck`` blocks, BatchNorm instead of
  GroupNorm, plain convolutions instead of weight-standardised ones, a conv-only 3×3 stem and
  the BN-ReLU-GAP-Linear classifier that ResNetV2's final norm and head already form.

Widths are the bottleneck (inner) widths; each stage outputs 4× its width.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch.nn as nn
from timm.layers import BatchNormAct2d, create_conv2d
from timm.models.resnet import Bottleneck, ResNet
from timm.models.resnetv2 import ResNetV2

EXPANSION = 4  # bottleneck output width / inner width, as in ResNet-50


def _check_stages(depth: Sequence[int], width: Sequence[int]) -> None:
    """Rejects stage lists that do not describe a four-stage CIFAR network."""
    if len(depth) != 4 or len(width) != 4:
        raise ValueError(f"depth and width need 4 stages, got depth={depth!r}, width={width!r}")
    if min(depth) < 1:
        raise ValueError(f"every stage needs at least one block, got depth={depth!r}")


def _kaiming(conv: nn.Conv2d) -> nn.Conv2d:
    """Initialises a replacement conv the way timm initialises the rest of the network."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def resnet(
    num_classes: int = 10,
    *,
    depth: Sequence[int] = (3, 4, 6, 3),
    width: Sequence[int] = (64, 128, 256, 512),
    stem_width: int = 64,
    drop_path_rate: float = 0.0,
    zero_init_last: bool = False,
) -> ResNet:
    """Post-activation bottleneck ResNet for 32×32 inputs (methods.md §1, "ResNet-50").

    Args:
        num_classes: Output logits.
        depth: Bottlenecks per stage; ResNet-50 is (3, 4, 6, 3).
        width: Inner width per stage; stages output ``4 * width`` channels.
        stem_width: Output channels of the 3×3 stem conv (even).
        drop_path_rate: Stochastic depth, linear in the global block index up to this rate.
        zero_init_last: Zero the last BN of each residual branch (timm's default, not the
            paper's; off by default).

    Returns:
        A timm ``ResNet`` with a CIFAR stem: feature maps 32/16/8/4 on 32×32 inputs.
    """
    _check_stages(depth, width)
    if stem_width < 2 or stem_width % 2:
        raise ValueError(f"stem_width must be even and ≥ 2, got {stem_width!r}")
    # timm hard-codes 64 stem channels for its single-conv stem; its "deep" stem instead feeds
    # 2 * stem_width channels to layer1. Build that, then replace the deep stem by one 3×3 conv.
    model = ResNet(
        Bottleneck,
        tuple(depth),
        num_classes=num_classes,
        channels=tuple(width),
        stem_type="deep",
        stem_width=stem_width // 2,
        drop_path_rate=drop_path_rate,
        zero_init_last=zero_init_last,
    )
    model.conv1 = _kaiming(nn.Conv2d(3, stem_width, 3, stride=1, padding=1, bias=False))
    model.maxpool = nn.Identity()
    model.feature_info = _cifar_feature_info(stem_width, width, ["act1"] + [f"layer{i}" for i in range(1, 5)])
    return model


def preresnet(
    num_classes: int = 10,
    *,
    depth: Sequence[int] = (3, 4, 6, 4),
    width: Sequence[int] = (64, 128, 256, 512),
    stem_width: int = 64,
    drop_path_rate: float = 0.0,
    zero_init_last: bool = False,
) -> ResNetV2:
    """Pre-activation bottleneck ResNet for 32×32 inputs (methods.md §7, AlterNet's baseline).

    Blocks are BN-ReLU-1×1, BN-ReLU-3×3 (stride here), BN-ReLU-1×1, with a 1×1 projection of
    the pre-activated input where the shape changes, then DropPath and the addition.

    Args:
        num_classes: Output logits.
        depth: Bottlenecks per stage; AlterNet's baseline is (3, 4, 6, 4).
        width: Inner width per stage (multiples of 8); stages output ``4 * width`` channels.
        stem_width: Output channels of the conv-only 3×3 stem (multiple of 8).
        drop_path_rate: Stochastic depth, linear in the global block index up to this rate.
        zero_init_last: Zero the last conv of each residual branch.

    Returns:
        A timm ``ResNetV2`` whose ``norm`` + ``head`` form the BN-ReLU-GAP-Linear classifier.
    """
    _check_stages(depth, width)
    # ResNetV2 rounds widths to multiples of 8; refuse sizes it would silently change.
    bad = [w for w in (stem_width, *width) if w < 8 or w % 8]
    if bad:
        raise ValueError(f"preresnet widths must be multiples of 8, got {bad!r}")
    model = ResNetV2(
        layers=list(depth),
        channels=tuple(EXPANSION * w for w in width),
        num_classes=num_classes,
        stem_chs=stem_width,
        preact=True,
        act_layer=nn.ReLU,
        norm_layer=BatchNormAct2d,
        conv_layer=create_conv2d,
        drop_path_rate=drop_path_rate,
        zero_init_last=zero_init_last,
    )
    stem_conv = _kaiming(create_conv2d(3, stem_width, 3, stride=1))
    model.stem = nn.Sequential(OrderedDict(conv=stem_conv))
    model.stem_feat_idx = 0
    model.feature_info = _cifar_feature_info(stem_width, width, ["stem.conv"] + [f"stages.{i}" for i in range(4)])
    return model


def _cifar_feature_info(stem_width: int, width: Sequence[int], modules: list[str]) -> list[dict]:
    """timm's ``feature_info`` for a CIFAR network: stride 1 stem, then strides 1/2/4/8."""
    chans = [stem_width] + [EXPANSION * w for w in width]
    reductions = [1, 1, 2, 4, 8]
    return [dict(num_chs=c, reduction=r, module=m) for c, r, m in zip(chans, reductions, modules)]
