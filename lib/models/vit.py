"""CIFAR ViTs: timm's VisionTransformer at 32×32, with an optional local (P×P) attention.

Park & Kim (2022) use ViT-Ti with 2×2 patches on CIFAR (Figs 1-4, 8-10; methods.md §1) and a
"convolutional" ViT whose attention only sees a P×P neighbourhood of tokens for the locality
experiment (poster Fig 3; methods.md §11). The model is timm's ``VisionTransformer`` as is;
locality is a ``LocalAttention`` (a timm ``Attention`` holding a boolean mask) swapped in for
every block's ``attn``.

Locality rule: a patch token at grid position (r, c) attends to the patch tokens (r', c') with
``|r − r'| ≤ P // 2`` and ``|c − c'| ≤ P // 2`` (the centred P×P window, cut at the grid border:
out-of-grid positions are simply absent, not zero-padded keys), plus every prefix (class)
token; prefix tokens attend to all tokens. P must be odd, except that P equal to the grid side
means global attention, as the paper calls the 8×8 kernel on an 8×8 grid "global".
"""

from __future__ import annotations

import torch
from timm.layers import Attention
from timm.models.vision_transformer import VisionTransformer


def check_local(local: int | None, grid_size: tuple[int, int]) -> None:
    """Raises ValueError unless ``local`` is None, an odd P ≤ the grid, or the grid side itself.

    Args:
        local: Neighbourhood side P, or None for global attention.
        grid_size: Token grid (rows, columns).
    """
    if local is None:
        return
    rows, cols = grid_size
    if isinstance(local, bool) or not isinstance(local, int):
        raise ValueError(f"local must be an int or None, got {local!r}")
    if local == rows == cols:
        return
    if local < 1 or local % 2 == 0 or local > min(rows, cols):
        raise ValueError(
            f"local={local!r} is invalid for a {rows}×{cols} token grid: use an odd P with "
            f"1 ≤ P ≤ {min(rows, cols)}, the grid side {rows} (global) or None"
        )


def local_attention_mask(grid_size: tuple[int, int], local: int | None, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Which token may attend to which under P×P locality.

    Args:
        grid_size: Token grid (rows, columns); patch tokens are ordered row-major.
        local: Neighbourhood side P, or None for global attention.
        num_prefix_tokens: Class/register tokens in front of the patch tokens.

    Returns:
        Bool ``[N, N]`` with ``N = num_prefix_tokens + rows * cols``; ``mask[i, j]`` is True
        when query i may attend to key j.
    """
    check_local(local, grid_size)
    rows, cols = grid_size
    n = num_prefix_tokens + rows * cols
    mask = torch.ones(n, n, dtype=torch.bool)
    if local is None or local == rows == cols:
        return mask
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    r, c = r.reshape(-1), c.reshape(-1)
    reach = local // 2
    near = ((r[:, None] - r[None, :]).abs() <= reach) & ((c[:, None] - c[None, :]).abs() <= reach)
    mask[num_prefix_tokens:, num_prefix_tokens:] = near
    return mask


class LocalAttention(Attention):
    """timm ``Attention`` restricted to P×P token neighbourhoods by a fixed boolean mask.

    It honours ``fused_attn`` like its parent: the mask goes to
    ``F.scaled_dot_product_attention`` when True, and to the explicit (double-backward safe)
    path as ``-inf`` logits when False.

    Args:
        dim: Token width.
        num_heads: Attention heads.
        grid_size: Token grid (rows, columns).
        local: Neighbourhood side P (see :func:`check_local`), or None for global.
        num_prefix_tokens: Class/register tokens in front of the patch tokens.
        **attn_kwargs: Passed to timm's ``Attention`` (``qkv_bias``, ``proj_bias``, ...).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        grid_size: tuple[int, int],
        local: int | None,
        num_prefix_tokens: int = 1,
        **attn_kwargs,
    ):
        super().__init__(dim, num_heads=num_heads, **attn_kwargs)
        self.local = local
        self.register_buffer("mask", local_attention_mask(grid_size, local, num_prefix_tokens), persistent=False)

    @classmethod
    def from_attention(
        cls,
        attn: Attention,
        *,
        grid_size: tuple[int, int],
        local: int | None,
        num_prefix_tokens: int = 1,
    ) -> LocalAttention:
        """A ``LocalAttention`` with the weights, dropout and ``fused_attn`` of a plain one.

        Args:
            attn: A timm ``Attention`` without q/k norm, scale norm or gate.
            grid_size: Token grid (rows, columns).
            local: Neighbourhood side P, or None.
            num_prefix_tokens: Class/register tokens in front of the patch tokens.
        """
        if type(attn) is not Attention or getattr(attn, "gate", None) is not None:
            raise TypeError(f"cannot make a {type(attn).__name__} local; need a plain timm Attention")
        new = cls(
            attn.qkv.in_features,
            attn.num_heads,
            grid_size=grid_size,
            local=local,
            num_prefix_tokens=num_prefix_tokens,
            qkv_bias=attn.qkv.bias is not None,
            proj_bias=attn.proj.bias is not None,
            attn_drop=attn.attn_drop.p,
            proj_drop=attn.proj_drop.p,
        )
        new.load_state_dict(attn.state_dict())  # strict: fails loudly on q/k norms etc.
        new.fused_attn = attn.fused_attn
        weight = attn.qkv.weight
        return new.to(device=weight.device, dtype=weight.dtype)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """``[B, N, C]`` → ``[B, N, C]``; an extra ``attn_mask`` is combined with the locality mask."""
        if x.shape[1] != self.mask.shape[0]:
            raise ValueError(f"LocalAttention built for {self.mask.shape[0]} tokens got {x.shape[1]}")
        if is_causal:
            raise ValueError("LocalAttention does not support is_causal")
        mask = self.mask
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                mask = mask & attn_mask
            else:
                mask = attn_mask.masked_fill(~mask, float("-inf"))
        return super().forward(x, attn_mask=mask)

    def extra_repr(self) -> str:
        return f"local={self.local}, fused_attn={self.fused_attn}"


def make_local(model: VisionTransformer, local: int | None) -> VisionTransformer:
    """Swaps every block's attention for a :class:`LocalAttention` (in place, same weights).

    Args:
        model: A timm ``VisionTransformer`` with plain ``Attention`` blocks.
        local: Neighbourhood side P, or None for global attention.

    Returns:
        The same model.
    """
    grid_size = tuple(model.patch_embed.grid_size)
    check_local(local, grid_size)
    for block in model.blocks:
        block.attn = LocalAttention.from_attention(
            block.attn, grid_size=grid_size, local=local, num_prefix_tokens=model.num_prefix_tokens
        )
    return model


def vit(
    num_classes: int = 10,
    *,
    img_size: int = 32,
    patch_size: int = 2,
    embed_dim: int = 192,
    depth: int = 12,
    num_heads: int = 3,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = False,
    local: int | None = None,
    drop_path_rate: float = 0.0,
) -> VisionTransformer:
    """ViT with a class token and CLS-token head (methods.md §1, "ViT-Ti").

    Args:
        num_classes: Output logits.
        img_size: Input side in pixels.
        patch_size: Patch side; the token grid is ``img_size / patch_size`` on each side.
        embed_dim: Token width.
        depth: Transformer blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width / token width.
        qkv_bias: Bias on the q/k/v projection (off in the paper).
        local: Neighbourhood side P of local attention, or None for global (§11).
        drop_path_rate: Stochastic depth, linear in the block index up to this rate.

    Returns:
        A timm ``VisionTransformer`` (learned absolute positions, final LayerNorm, CLS head).
    """
    if img_size % patch_size:
        raise ValueError(f"img_size={img_size} is not a multiple of patch_size={patch_size}")
    check_local(local, (img_size // patch_size, img_size // patch_size))
    model = VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=qkv_bias,
        class_token=True,
        global_pool="token",
        drop_path_rate=drop_path_rate,
    )
    if local is not None:
        make_local(model, local)
    return model
