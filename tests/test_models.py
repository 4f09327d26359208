"""Tests of lib.models: the registry, the paper's model sizes, AlterNet's windowed attention,
local ViT attention and the unit view (METHODS.md §1, §7, §10, §11)."""

from __future__ import annotations

import sys
import types

import pytest
import timm
import torch

from lib import models
from lib.models.alternet import (
    MSABlock,
    WindowAttention,
    msa_slots,
    relative_position_bias,
    relative_position_index,
    window_merge,
    window_partition,
)
from lib.models.vit import LocalAttention, local_attention_mask

SMALL = [n for n in models.names() if n.endswith(("_smoke", "_cpu"))]
SMOKE = [n for n in models.names() if n.endswith("_smoke")]


def _images(batch: int = 2, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, generator=gen, dtype=dtype)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _compose(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    for unit in models.units(model):
        x = unit.module(x)
    return models.head(model)(x)


@pytest.fixture(scope="module")
def paper_models() -> dict[str, torch.nn.Module]:
    """The paper-size models at 100 classes, built once (only for counting)."""
    torch.manual_seed(0)
    return {n: models.create(n, num_classes=100) for n in ("resnet50", "preresnet50", "alternet50", "vit_ti")}


# --- registry and sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, millions", [("resnet50", 23.7), ("preresnet50", 28.2), ("alternet50", 33.0), ("vit_ti", 5.4)]
)
def test_paper_models_have_the_paper_parameter_counts(paper_models, name, millions):
    # METHODS.md §1 and §7 give the counts at 100 classes, rounded to 0.1 M: 3 % covers rounding.
    assert _n_params(paper_models[name]) / 1e6 == pytest.approx(millions, rel=0.03)


def test_resnet50_cpu_has_about_1_5_million_parameters():
    assert _n_params(models.create("resnet50_cpu")) / 1e6 == pytest.approx(1.5, rel=0.03)


def test_create_sets_book_name_and_merges_overrides():
    model = models.create("resnet50_cpu", drop_path_rate=0.1)
    assert model.book_name == "resnet50_cpu"
    assert model.book_config["drop_path_rate"] == 0.1
    assert any(isinstance(m, timm.layers.DropPath) for m in model.modules())
    local = models.create("vit_cpu", local=3)
    assert all(isinstance(b.attn, LocalAttention) and b.attn.local == 3 for b in local.blocks)


def test_unknown_name_raises_value_error_listing_valid_names():
    with pytest.raises(ValueError, match=r"'resnet51'.*resnet50"):
        models.create("resnet51")


def test_unknown_override_raises_type_error():
    with pytest.raises(TypeError, match="widht"):
        models.create("resnet50_smoke", widht=(8, 8, 8, 8))


# --- every small member: shape, gradients, round trip ----------------------------------------


@pytest.mark.parametrize("name", SMALL)
def test_model_gives_finite_logits_and_a_gradient_for_every_parameter(name):
    torch.manual_seed(0)
    model = models.create(name, num_classes=7)
    logits = model(_images())
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", SMALL)
def test_state_dict_round_trip_gives_identical_logits(name):
    torch.manual_seed(0)
    model = models.create(name).eval()
    torch.manual_seed(1)
    fresh = models.create(name).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(_images()), fresh(_images()))


# --- the unit view ----------------------------------------------------------------------------


def test_resnet50_units_are_stem_and_16_bottlenecks(paper_models):
    us = models.units(paper_models["resnet50"])
    assert len(us) == 17
    assert [u.kind for u in us] == ["stem"] + ["conv"] * 16
    assert [u.stage for u in us] == [0] + [1] * 3 + [2] * 4 + [3] * 6 + [4] * 3
    # stem, the first block (64 → 256 channels) and the three strided blocks (METHODS.md §1)
    assert [i for i, u in enumerate(us) if u.downsample] == [0, 1, 4, 8, 14]
    assert us[4].name == "layer2.0"


def test_alternet50_units_place_four_msas_at_stage_ends(paper_models):
    us = models.units(paper_models["alternet50"])
    assert len(us) == 18
    assert [i for i, u in enumerate(us) if u.kind == "msa"] == [7, 13, 15, 17]
    assert [u.stage for u in us] == [0] + [1] * 3 + [2] * 4 + [3] * 6 + [4] * 4
    assert [i for i, u in enumerate(us) if u.downsample] == [0, 1, 4, 8, 14]
    heads = [u.module.attn.num_heads for u in us if u.kind == "msa"]
    assert heads == [6, 12, 24, 24]


def test_vit_ti_units_alternate_msa_and_mlp(paper_models):
    us = models.units(paper_models["vit_ti"])
    assert len(us) == 25
    assert [u.kind for u in us] == ["stem"] + ["msa", "mlp"] * 12
    assert all(u.stage == 1 and not u.downsample for u in us[1:])
    assert us[23].name == "blocks.11.attn"


def test_alternet50_is_alternet_from_preresnet50(paper_models):
    rebuilt = models.alternet_from(models.create("preresnet50", num_classes=100), (0, 1, 1, 2))
    shapes = {k: v.shape for k, v in paper_models["alternet50"].state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}


def test_units_do_not_change_the_state_dict():
    model = models.create("vit_smoke")
    keys = list(model.state_dict())
    us = models.units(model)
    assert list(model.state_dict()) == keys
    assert us[1].module.fn is model.blocks[0].attn


@pytest.mark.parametrize("name", SMALL)
def test_units_cover_every_block_in_order(name):
    model = models.create(name)
    us = models.units(model)
    depth = model.book_config["depth"]
    n_blocks = 2 * depth if name.startswith("vit") else sum(depth)
    assert len(us) == 1 + n_blocks and us[0].kind == "stem"
    if not name.startswith("vit"):  # CNN units are the model's own blocks, in module order
        order = {m: i for i, (_, m) in enumerate(model.named_modules())}
        positions = [order[u.module] for u in us[1:]]
        assert positions == sorted(positions)
        assert [u.module for u in us[1:]] == [model.get_submodule(u.name) for u in us[1:]]
    assert [u.stage for u in us] == sorted(u.stage for u in us)


COMPOSE_CASES = {
    **{n: (lambda n=n: models.create(n)) for n in SMOKE + ["alternet50_cpu"]},
    "vit_smoke_local3": lambda: models.create("vit_smoke", local=3),
    "timm_resnet18": lambda: timm.create_model("resnet18", pretrained=False, num_classes=10),
    "timm_resnet50": lambda: timm.create_model("resnet50", pretrained=False, num_classes=10),
    "timm_vit": lambda: timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, num_classes=10
    ),
}


@pytest.mark.parametrize("name", COMPOSE_CASES)
def test_units_and_head_reproduce_the_model(name):
    torch.manual_seed(0)
    model = COMPOSE_CASES[name]().eval()
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(_compose(model, x), model(x), rtol=0, atol=1e-6)


def test_plain_timm_resnet18_units_cover_every_block():
    us = models.units(COMPOSE_CASES["timm_resnet18"]())
    assert len(us) == 1 + 8
    assert [i for i, u in enumerate(us) if u.downsample] == [0, 3, 5, 7]  # layer1.0 keeps 64 channels


def test_units_reject_an_unsupported_model_by_class_name():
    with pytest.raises(TypeError, match="Linear"):
        models.units(torch.nn.Linear(2, 2))


def test_resnet_feature_maps_are_32_16_8_4():
    model = models.create("resnet50_smoke").eval()
    maps = models.feature_maps(model, _images())
    sides = [m.shape[-1] for _, m in maps]
    assert sides == [32] + [32] * 2 + [16] * 2 + [8] * 2 + [4] * 2
    assert [m.shape[1] for _, m in maps][:2] == [8, 32]
    assert all(m.dtype == torch.float32 and not m.requires_grad for _, m in maps)


def test_vit_feature_maps_drop_the_class_token_row_major():
    model = models.create("vit_smoke").eval()
    x = _images()
    maps = models.feature_maps(model, x)
    assert len(maps) == 1 + 4
    assert all(m.shape == (2, 32, 8, 8) for _, m in maps)
    with torch.no_grad():
        tokens = model.blocks[0](models.units(model)[0].module(x))  # after block 0 = after unit 2
    torch.testing.assert_close(maps[2][1][:, :, 0, 1], tokens[:, 2])  # token 1 + (row 0, col 1)
    torch.testing.assert_close(maps[2][1][:, :, 1, 0], tokens[:, 1 + 8])


def test_feature_maps_keep_the_train_mode():
    model = models.create("preresnet50_smoke").train()
    models.feature_maps(model, _images())
    assert model.training


def test_feature_maps_normalise_uint8_images_for_the_models_dataset(monkeypatch):
    seen = {}

    def normalize(images, dataset="cifar10"):
        seen["dataset"] = dataset
        return images.float() / 255.0

    monkeypatch.setitem(sys.modules, "lib.data", types.SimpleNamespace(normalize=normalize))
    model = models.create("resnet50_smoke").eval()
    model.book_dataset = "cifar100"
    raw = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    maps = models.feature_maps(model, raw)
    assert seen["dataset"] == "cifar100"
    expected = models.feature_maps(model, raw.float() / 255.0)
    torch.testing.assert_close(maps[-1][1], expected[-1][1])


# --- AlterNet's windowed attention ------------------------------------------------------------


def test_window_partition_and_merge_are_inverse():
    x = torch.randn(2, 5, 8, 12, generator=torch.Generator().manual_seed(0))
    tokens = window_partition(x, 4)
    assert tokens.shape == (2 * 2 * 3, 16, 5)
    torch.testing.assert_close(tokens[1, 0], x[0, :, 0, 4])  # window (0, 1), its top-left token
    assert torch.equal(window_merge(tokens, 4, 8, 12), x)


def test_window_partition_rejects_a_map_that_does_not_split():
    with pytest.raises(ValueError, match="6×6"):
        window_partition(torch.zeros(1, 1, 6, 6), 4)


def test_relative_position_bias_indexes_a_hand_built_table():
    w = 3
    table = torch.arange((2 * w - 1) ** 2, dtype=torch.float64).reshape(2 * w - 1, 2 * w - 1)  # table[a, b] = 5a + b
    bias = relative_position_bias(table, relative_position_index(w))
    assert bias.shape == (9, 9)
    assert bias[0, 8] == table[0, 0]  # query (0, 0), key (2, 2): offsets (-2, -2)
    assert bias[8, 0] == table[4, 4]  # offsets (+2, +2)
    assert bias[1, 3] == table[1, 3]  # query (0, 1), key (1, 0): offsets (-1, +1)
    assert torch.all(bias.diagonal() == table[2, 2])
    for i in range(9):
        for j in range(9):
            (ri, ci), (rj, cj) = divmod(i, w), divmod(j, w)
            assert bias[i, j] == table[ri - rj + w - 1, ci - cj + w - 1]


def _global_attention_reference(attn: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Attention over the whole map, written independently of window_partition and the index."""
    b, _, h, w = x.shape
    heads, d = attn.num_heads, attn.head_dim
    qkv = attn.qkv(x).flatten(2).transpose(1, 2)  # [B, HW, 3·heads·d]
    q, k, v = qkv.reshape(b, h * w, 3, heads, d).permute(2, 0, 3, 1, 4)
    table = attn.rel_pos.table
    bias = torch.empty(h * w, h * w, dtype=x.dtype)
    for i in range(h * w):
        for j in range(h * w):
            bias[i, j] = table[i // w - j // w + h - 1, i % w - j % w + w - 1]
    weights = torch.softmax(q @ k.transpose(-2, -1) * d**-0.5 + bias, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, h * w, heads * d)
    return attn.proj(out.transpose(1, 2).reshape(b, heads * d, h, w))


@pytest.mark.parametrize("fused", [False, True])
def test_window_attention_with_the_whole_map_as_window_is_global_attention(fused):
    torch.manual_seed(0)
    attn = WindowAttention(6, 10, num_heads=2, head_dim=4, window=4).double()
    attn.fused_attn = fused
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _global_attention_reference(attn, x), rtol=1e-10, atol=1e-10)


def test_window_attention_does_not_mix_windows():
    torch.manual_seed(0)
    attn = WindowAttention(6, 6, num_heads=2, head_dim=4, window=4)
    x = torch.randn(1, 6, 8, 8)
    x2 = x.clone()
    x2[:, :, 1, 2] += 5.0  # a token of window (0, 0)
    with torch.no_grad():
        y, y2 = attn(x), attn(x2)
    assert torch.equal(y[..., 4:], y2[..., 4:]) and torch.equal(y[..., 4:, :], y2[..., 4:, :])
    assert not torch.allclose(y[..., :4, :4], y2[..., :4, :4])


def test_window_attention_fused_and_explicit_paths_agree():
    torch.manual_seed(0)
    attn = WindowAttention(8, 8, num_heads=3, head_dim=4, window=4)
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        attn.fused_attn = True
        fused = attn(x)
        attn.fused_attn = False
        explicit = attn(x)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


def test_each_msa_block_has_one_bias_table_shared_by_heads():
    model = models.create("alternet50_cpu")
    blocks = [m for m in model.modules() if isinstance(m, MSABlock)]
    assert len(blocks) == 4
    for block in blocks:
        tables = [n for n, _ in block.named_parameters() if n.endswith("table")]
        assert tables == ["attn.rel_pos.table"]
        assert block.attn.rel_pos.table.shape == (7, 7)  # (2w - 1)², no head axis
        assert block.attn.head_dim == 16


def test_msa_slots_alternate_from_the_end_of_the_stage():
    assert msa_slots(4, 2) == [1, 3]
    assert msa_slots(6, 1) == [5]
    assert msa_slots(3, 0) == []
    with pytest.raises(ValueError, match="3 MSA"):
        msa_slots(4, 3)


def test_alternet_from_rejects_more_msas_than_a_stage_can_hold():
    with pytest.raises(ValueError, match="2 MSA blocks among 2"):
        models.alternet_from(models.create("preresnet50_smoke"), (0, 2, 0, 0))
    with pytest.raises(ValueError, match="one entry per stage"):
        models.alternet_from(models.create("preresnet50_smoke"), (0, 1, 1))


# --- local ViT attention ------------------------------------------------------------------------


def _first_attention_unit(model):
    us = models.units(model)
    return us[0].module, us[1].module


@pytest.mark.parametrize("fused", [False, True])
def test_local_attention_ignores_tokens_outside_the_neighbourhood(fused):
    torch.manual_seed(0)
    model = models.create("vit_smoke", local=3).eval()
    for block in model.blocks:
        block.attn.fused_attn = fused
    stem, attn = _first_attention_unit(model)
    with torch.no_grad():
        tokens = stem(_images())
        moved = tokens.clone()
        noise = torch.randn(tokens.shape[-1], generator=torch.Generator().manual_seed(1))
        moved[:, 1 + 5 * 8 + 5] += noise  # patch token at (5, 5); not a constant: LN removes those
        y, y2 = attn(tokens), attn(moved)
    unchanged = y[:, 1 + 2 * 8 + 2]  # (2, 2): 3 rows away, outside its 3×3 neighbourhood
    assert torch.equal(unchanged, y2[:, 1 + 2 * 8 + 2])
    assert not torch.allclose(y[:, 1 + 4 * 8 + 4], y2[:, 1 + 4 * 8 + 4])  # (4, 4): a neighbour
    assert not torch.allclose(y[:, 0], y2[:, 0])  # the class token sees every token


def test_local_attention_mask_lets_the_class_token_see_everything():
    mask = local_attention_mask((4, 4), 3, num_prefix_tokens=1)
    assert mask.shape == (17, 17)
    assert mask[0].all() and mask[:, 0].all()
    assert mask[1 + 0].sum() == 1 + 4  # corner token: itself, two neighbours, the diagonal, CLS
    assert mask[1 + 5].sum() == 1 + 9  # interior token (1, 1)


def test_local_attention_with_the_grid_side_is_global():
    torch.manual_seed(0)
    glob = models.create("vit_smoke").eval()
    local = models.create("vit_smoke", local=8).eval()
    local.load_state_dict(glob.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(local(_images()), glob(_images()), rtol=0, atol=1e-6)


def test_local_attention_fused_and_explicit_paths_agree():
    torch.manual_seed(0)
    model = models.create("vit_smoke", local=3).eval()
    with torch.no_grad():
        fused = model(_images())
        with models.explicit_attention(model):
            explicit = model(_images())
    assert all(b.attn.fused_attn == timm.layers.use_fused_attn() for b in model.blocks)  # restored
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


def _hvp_and_central_difference(module, loss_fn, eps):
    """H·v by double backward and by central differences of the gradient, flattened."""
    params = list(module.parameters())
    gen = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]

    def grad(create_graph=False):
        return torch.autograd.grad(loss_fn(), params, create_graph=create_graph)

    with models.explicit_attention(module):
        g = grad(create_graph=True)
        hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), params)
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.add_(eps * vi)
        g_plus = grad()
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.sub_(2 * eps * vi)
        g_minus = grad()
    fd = torch.cat([(a - b).flatten() / (2 * eps) for a, b in zip(g_plus, g_minus)])
    return torch.cat([h.flatten() for h in hv]), fd


def test_local_vit_hessian_vector_product_matches_finite_differences():
    # float64, eval mode and GELU make the gradient smooth in θ; the ReLU CNNs are not (a
    # central difference straddling a ReLU kink is arbitrarily wrong), hence the MSA block below.
    # eps = 1e-6: truncation O(eps²) and rounding O(1e-16 / eps) both stay below 1e-6 relative.
    torch.manual_seed(0)
    model = models.create("vit_smoke", local=3).double().eval()
    x, y = _images(dtype=torch.float64), torch.tensor([1, 3])
    hv, fd = _hvp_and_central_difference(model, lambda: torch.nn.functional.cross_entropy(model(x), y), 1e-6)
    torch.testing.assert_close(hv, fd, rtol=1e-5, atol=1e-5 * hv.abs().max().item())


def test_msa_block_hessian_vector_product_matches_finite_differences():
    torch.manual_seed(0)
    block = MSABlock(16, num_heads=2, head_dim=4, window=4).double().eval()
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    target = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    hv, fd = _hvp_and_central_difference(block, lambda: ((block(x) - target) ** 2).mean(), 1e-6)
    torch.testing.assert_close(hv, fd, rtol=1e-5, atol=1e-5 * hv.abs().max().item())


@pytest.mark.parametrize("local", [0, 2, 4, 9, -3])
def test_bad_local_raises_value_error_naming_the_value(local):
    with pytest.raises(ValueError, match=f"local={local}"):
        models.create("vit_smoke", local=local)


def test_explicit_attention_switches_every_attention_module():
    model = models.create("alternet50_smoke")
    with models.explicit_attention(model):
        assert not any(getattr(m, "fused_attn", False) for m in model.modules())


def test_explicit_attention_switches_only_the_kinds_asked_and_restores_them():
    vit, alternet = models.create("vit_smoke"), models.create("alternet50_smoke")
    for model in (vit, alternet):
        for m in model.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = True
        with models.explicit_attention(model, kinds=models.SLOW_FUSED_ON_CPU):
            switched = {type(m).__name__: m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")}
        assert all(getattr(m, "fused_attn", True) for m in model.modules())  # restored
        if model is vit:
            assert switched == {"Attention": False}
        else:
            assert switched == {"WindowAttention": True}


def test_cast_alternet_is_alternet_from_its_preresnet_baseline():
    """The cpu cast's AlterNet is its pre-activation baseline with MSAs swapped in at stage ends."""
    cast = models.create("alternet50_cpu")
    head_dim = cast.book_config["head_dim"]
    rebuilt = models.alternet_from(models.create("preresnet50_cpu"), (0, 1, 1, 2), head_dim=head_dim)
    assert {k: v.shape for k, v in cast.state_dict().items()} == {k: v.shape for k, v in rebuilt.state_dict().items()}
