"""AlterNet: a pre-activation ResNet whose stage-final blocks are windowed MSA blocks.

Park & Kim (2022), §4 and Fig 11 ("Alter-ResNet-50 for CIFAR-100"); methods.md §7. Build-up
rule: replace conv blocks by MSA blocks alternately, starting from the end of each stage, so
that a stage with ``n`` blocks and ``m`` MSAs follows ``[conv] * (n - 2m) + [conv, MSA] * m``.

The MSA block is BN → GELU → 1×1 conv (dim → dim/4, no bias) → BN → windowed multi-head
self-attention (non-overlapping w×w windows, q/k/v 1×1 convs without bias, one learned
relative-position bias table shared by all heads) → 1×1 conv to dim (with bias) → DropPath,
plus the identity. There is no MLP inside: the neighbouring bottlenecks play that role.

Windowing and the relative-position bias are tensor functions; ``RelativePositionBias``,
``WindowAttention`` and ``MSABlock`` only own parameters and call them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, DropPath, trunc_normal_, use_fused_attn
from timm.models.resnetv2 import ResNetV2

from .resnet import preresnet

# --- tensor functions -----------------------------------------------------------------------


def _check_windows(height: int, width: int, window: int) -> None:
    if window < 1 or height % window or width % window:
        raise ValueError(f"a {height}×{width} map does not split into {window}×{window} windows")


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Cuts a feature map into non-overlapping windows of tokens.

    Args:
        x: Feature map ``[B, C, H, W]``; H and W must be multiples of ``window``.
        window: Side of the square window.

    Returns:
        Tokens ``[B * (H / window) * (W / window), window * window, C]``; windows are ordered
        row-major over the map, tokens row-major inside each window.
    """
    b, c, h, w = x.shape
    _check_windows(h, w, window)
    x = x.permute(0, 2, 3, 1)  # [B, H, W, C]: a free view of a channels_last map
    x = x.reshape(b, h // window, window, w // window, window, c)
    x = x.permute(0, 1, 3, 2, 4, 5)  # [B, nH, nW, wy, wx, C]
    return x.reshape(-1, window * window, c)


def window_merge(tokens: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`.

    Args:
        tokens: ``[B * nH * nW, window * window, C]``.
        window: Side of the square window.
        height: H of the map the tokens came from.
        width: W of the map the tokens came from.

    Returns:
        Feature map ``[B, C, H, W]``.
    """
    _check_windows(height, width, window)
    n_h, n_w = height // window, width // window
    c = tokens.shape[-1]
    x = tokens.reshape(-1, n_h, n_w, window, window, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)  # [B, H, W, C]
    return x.permute(0, 3, 1, 2)  # channels_last strides, which the following 1×1 conv prefers


def relative_position_index(window: int, device: torch.device | None = None) -> torch.Tensor:
    """Row and column offsets between the tokens of one window, shifted to be ≥ 0.

    Args:
        window: Side of the square window.
        device: Where to build the index.

    Returns:
        Long tensor ``[T, T, 2]`` with ``T = window**2``: entry ``[i, j]`` is
        ``(row_i - row_j + window - 1, col_i - col_j + window - 1)``, an index into a
        ``(2·window − 1) × (2·window − 1)`` table.
    """
    r = torch.arange(window, device=device)
    coords = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).reshape(-1, 2)  # [T, 2]
    return coords[:, None, :] - coords[None, :, :] + (window - 1)


def relative_position_bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Looks up the attention-logit bias of every (query, key) pair in a window.

    Args:
        table: ``[2w − 1, 2w − 1]``, one learned value per (row offset, column offset); one
            table serves every head.
        index: ``[T, T, 2]`` from :func:`relative_position_index`.

    Returns:
        Bias ``[T, T]``: ``table[row_i - row_j + w - 1, col_i - col_j + w - 1]``.
    """
    return table[index[..., 0], index[..., 1]]


def window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    scale: float,
) -> torch.Tensor:
    """Explicit softmax attention (safe for double backward, e.g. Hessian-vector products).

    Args:
        q: Queries ``[N, heads, T, d]`` (N = batch × windows).
        k: Keys, same shape.
        v: Values, same shape.
        bias: Additive logit bias broadcastable to ``[N, heads, T, T]``, or None.
        scale: Logit scale, usually ``d ** -0.5``.

    Returns:
        ``[N, heads, T, d]``.
    """
    logits = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits + bias
    return logits.softmax(dim=-1) @ v


# --- modules owning the parameters ----------------------------------------------------------


class RelativePositionBias(nn.Module):
    """One learned ``(2w − 1) × (2w − 1)`` bias table shared by all heads (methods.md §7).

    Args:
        window: Side of the square attention window.
    """

    def __init__(self, window: int):
        super().__init__()
        self.window = window
        self.table = nn.Parameter(torch.zeros(2 * window - 1, 2 * window - 1))
        trunc_normal_(self.table, std=0.02)
        self.register_buffer("index", relative_position_index(window), persistent=False)

    def forward(self) -> torch.Tensor:
        """Returns the bias ``[T, T]`` for one window."""
        return relative_position_bias(self.table, self.index)

    def extra_repr(self) -> str:
        return f"window={self.window}"


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows of a feature map.

    ``fused_attn`` (per instance, as in timm's ``Attention``) selects
    ``F.scaled_dot_product_attention``; set it to False for double backward.

    Args:
        dim_in: Channels of the input map.
        dim_out: Channels of the output map.
        num_heads: Attention heads.
        head_dim: Width of each head.
        window: Side of the square window; H and W must be multiples of it.
    """

    def __init__(self, dim_in: int, dim_out: int, num_heads: int, head_dim: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.window = window
        self.scale = head_dim**-0.5
        self.fused_attn = use_fused_attn()
        inner = num_heads * head_dim
        self.qkv = nn.Conv2d(dim_in, 3 * inner, 1, bias=False)
        self.rel_pos = RelativePositionBias(window)
        self.proj = nn.Conv2d(inner, dim_out, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, dim_in, H, W]`` → ``[B, dim_out, H, W]``."""
        _, _, h, w = x.shape
        tokens = window_partition(self.qkv(x), self.window)  # [N, T, 3 * inner]
        n, t, _ = tokens.shape
        q, k, v = tokens.reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.rel_pos()
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        else:
            out = window_attention(q, k, v, bias, scale=self.scale)
        out = out.transpose(1, 2).reshape(n, t, self.num_heads * self.head_dim)
        return self.proj(window_merge(out, self.window, h, w))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, fused_attn={self.fused_attn}"


class MSABlock(nn.Module):
    """AlterNet's MSA block: ``x + DropPath(Attn(BN(Conv1x1(GELU(BN(x))))))``, no MLP.

    Args:
        dim: Channels in and out (the residual stream width).
        num_heads: Attention heads.
        head_dim: Width of each head (64 in the paper).
        window: Attention window side (4 for CIFAR).
        reduction: The 1×1 conv maps ``dim`` to ``dim // reduction`` before attention.
        drop_path_rate: Stochastic depth rate of this block.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int = 64,
        window: int = 4,
        reduction: int = 4,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if dim % reduction:
            raise ValueError(f"dim={dim} is not divisible by reduction={reduction}")
        width = dim // reduction
        self.norm1 = BatchNormAct2d(dim, act_layer=nn.GELU)
        self.conv1 = nn.Conv2d(dim, width, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.attn = WindowAttention(width, dim, num_heads, head_dim, window)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, dim, H, W]`` → ``[B, dim, H, W]``."""
        return x + self.drop_path(self.attn(self.norm2(self.conv1(self.norm1(x)))))


# --- building AlterNet from its baseline ----------------------------------------------------


def msa_slots(num_blocks: int, num_msa: int) -> list[int]:
    """Block positions an MSA takes in a stage: ``[conv] * (n - 2m) + [conv, MSA] * m``.

    Args:
        num_blocks: Blocks in the stage (n).
        num_msa: MSA blocks wanted (m).

    Returns:
        The 0-based positions of the MSA blocks, ascending.
    """
    if num_msa < 0 or 2 * num_msa > num_blocks:
        raise ValueError(f"cannot place {num_msa} MSA blocks among {num_blocks} (need 2·m ≤ n)")
    first_conv = num_blocks - 2 * num_msa
    return [first_conv + 2 * i + 1 for i in range(num_msa)]


def _drop_rate(block: nn.Module) -> float:
    drop_path = getattr(block, "drop_path", None)
    return float(drop_path.drop_prob) if isinstance(drop_path, DropPath) else 0.0


def alternet_from(
    baseline: ResNetV2,
    msa_per_stage: Sequence[int],
    *,
    heads: Sequence[int] = (3, 6, 12, 24),
    head_dim: int = 64,
    window: int = 4,
    reduction: int = 4,
) -> ResNetV2:
    """Turns a pre-activation ResNet into an AlterNet by replacing blocks with MSA blocks.

    The replaced blocks must keep shape (no projection shortcut); each MSA block inherits the
    stochastic-depth rate of the block it replaces. The baseline is modified in place.

    Args:
        baseline: A pre-activation ``ResNetV2`` (from :func:`lib.models.resnet.preresnet`).
        msa_per_stage: MSA blocks per stage, e.g. (0, 1, 1, 2) for AlterNet-50 on CIFAR.
        heads: Attention heads per stage.
        head_dim: Width of each head.
        window: Attention window side.
        reduction: Channel reduction of the 1×1 conv in front of the attention.

    Returns:
        The same module, now an AlterNet.
    """
    if not isinstance(baseline, ResNetV2):
        raise TypeError(f"alternet_from needs a timm ResNetV2, got {type(baseline).__name__}")
    stages = list(baseline.stages)
    if len(msa_per_stage) != len(stages) or len(heads) != len(stages):
        raise ValueError(
            f"msa_per_stage={tuple(msa_per_stage)!r} and heads={tuple(heads)!r} need one entry per "
            f"stage ({len(stages)})"
        )
    param = next(baseline.parameters())
    for stage_idx, (stage, num_msa) in enumerate(zip(stages, msa_per_stage)):
        for pos in msa_slots(len(stage.blocks), num_msa):
            old = stage.blocks[pos]
            if getattr(old, "downsample", None) is not None:
                raise ValueError(f"block {pos} of stage {stage_idx + 1} changes shape; it cannot become an MSA")
            block = MSABlock(
                old.conv3.out_channels,
                heads[stage_idx],
                head_dim=head_dim,
                window=window,
                reduction=reduction,
                drop_path_rate=_drop_rate(old),
            )
            stage.blocks[pos] = block.to(device=param.device, dtype=param.dtype)
    return baseline


def alternet(
    num_classes: int = 10,
    *,
    depth: Sequence[int] = (3, 4, 6, 4),
    width: Sequence[int] = (64, 128, 256, 512),
    stem_width: int = 64,
    msa_per_stage: Sequence[int] = (0, 1, 1, 2),
    heads: Sequence[int] = (3, 6, 12, 24),
    head_dim: int = 64,
    window: int = 4,
    reduction: int = 4,
    drop_path_rate: float = 0.0,
    zero_init_last: bool = False,
) -> ResNetV2:
    """AlterNet for 32×32 inputs (methods.md §7): ``alternet_from(preresnet(...), msa_per_stage)``.

    Args:
        num_classes: Output logits.
        depth: Blocks per stage of the pre-activation baseline.
        width: Inner width per stage; stages output ``4 * width`` channels.
        stem_width: Output channels of the conv-only 3×3 stem.
        msa_per_stage: MSA blocks per stage, placed by :func:`msa_slots`.
        heads: Attention heads per stage.
        head_dim: Width of each head.
        window: Attention window side.
        reduction: Channel reduction in front of the attention.
        drop_path_rate: Stochastic depth, linear in the global block index up to this rate.
        zero_init_last: Zero the last conv of each bottleneck.

    Returns:
        A timm ``ResNetV2`` with MSA blocks in place of some bottlenecks.
    """
    baseline = preresnet(
        num_classes,
        depth=depth,
        width=width,
        stem_width=stem_width,
        drop_path_rate=drop_path_rate,
        zero_init_last=zero_init_last,
    )
    return alternet_from(baseline, msa_per_stage, heads=heads, head_dim=head_dim, window=window, reduction=reduction)
