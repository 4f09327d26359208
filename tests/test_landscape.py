"""lib.analysis.landscape against known answers (STYLE.md, "In our tests").

Filter-normalised directions match each filter's norm; per-filter and dim-0 normalisation are
told apart by rescaling one filter; a slice of a quadratic is a parabola of known curvature
(checked against the Hessian too); weights, buffers and modes come back bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lib.models
from lib import metrics
from lib.analysis import hessian, landscape

torch.set_num_threads(1)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _conv_bn_net(seed: int = 0) -> nn.Module:
    """conv (no bias) → BN → ReLU → GAP → linear, float64, eval mode, with nontrivial BN stats."""
    torch.manual_seed(seed)  # module init only
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4, eps=0.0),  # eps = 0 makes eval-mode BN exactly scale-equivariant per channel
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).double()
    g = _gen(seed + 100)
    with torch.no_grad():
        model[1].running_mean.copy_(torch.randn(4, generator=g, dtype=torch.float64) * 0.1)
        model[1].running_var.copy_(torch.rand(4, generator=g, dtype=torch.float64) + 0.5)
    return model.eval()


def test_filter_directions_match_each_filter_norm_and_dim0_each_column():
    model = _conv_bn_net()
    w = model[0].weight.detach()
    d = landscape.random_direction(model, norm="filter", seed=0)["0.weight"]
    assert torch.allclose(d.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-12)
    d0 = landscape.random_direction(model, norm="dim0", seed=0)["0.weight"]
    assert torch.allclose(d0.norm(dim=0), w.norm(dim=0), rtol=1e-12)
    # the two are different normalisations of the same draw
    assert not torch.allclose(d.flatten(1).norm(dim=1), d0.flatten(1).norm(dim=1), rtol=1e-3)


def test_per_filter_direction_scales_with_its_filter_and_dim0_does_not():
    model = _conv_bn_net()
    before = {n: landscape.random_direction(model, norm=n, seed=1)["0.weight"] for n in ("filter", "dim0")}
    with torch.no_grad():
        model[0].weight[0] *= 10
    after = {n: landscape.random_direction(model, norm=n, seed=1)["0.weight"] for n in ("filter", "dim0")}
    # per filter: filter 0's direction grows with it, the others stay put
    assert torch.allclose(after["filter"][0], 10 * before["filter"][0], rtol=1e-12)
    assert torch.allclose(after["filter"][1:], before["filter"][1:], rtol=1e-12)
    # along dim 0: every filter's direction moves, and filter 0's does not grow tenfold
    assert not torch.allclose(after["dim0"][1:], before["dim0"][1:], rtol=1e-3)
    assert not torch.allclose(after["dim0"][0], 10 * before["dim0"][0], rtol=1e-3)


def test_per_filter_slice_is_unchanged_by_rescaling_a_filter_ahead_of_batchnorm():
    # Scaling filter 0 by c and BN's running mean/std of channel 0 by c leaves the eval-mode
    # network the same function; a per-filter direction scales with the filter, so the whole
    # slice is unchanged. A dim-0 direction does not scale that way, so its slice changes.
    g = _gen(2)
    images = torch.randn(16, 3, 6, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (16,), generator=g)
    model, scaled = _conv_bn_net(), _conv_bn_net()
    c = 7.0
    with torch.no_grad():
        scaled[0].weight[0] *= c
        scaled[1].running_mean[0] *= c
        scaled[1].running_var[0] *= c**2
    assert torch.allclose(model(images), scaled(images), rtol=1e-12)
    curves = {}
    for norm in ("filter", "dim0"):
        for tag, net in (("base", model), ("scaled", scaled)):
            frame = landscape.slice_1d(
                net, images, labels, steps=5, span=1.0, norm=norm, seed=3, weight_decay=0.0, progress=False
            )
            curves[norm, tag] = frame["nll"].to_numpy()
    np.testing.assert_allclose(curves["filter", "scaled"], curves["filter", "base"], rtol=1e-10)
    assert np.abs(curves["dim0", "scaled"] - curves["dim0", "base"]).max() > 1e-3
    # the origin is the same point either way
    assert curves["dim0", "scaled"][2] == pytest.approx(curves["dim0", "base"][2], rel=1e-12)


def test_frozen_tensors_get_zero_direction():
    vit = lib.models.create("vit_smoke")
    d = landscape.random_direction(vit, seed=0)
    assert not d["pos_embed"].any() and d["cls_token"].any()
    assert all(not t.any() for n, t in d.items() if t.ndim < 2)
    assert all(t.any() for n, t in d.items() if t.ndim >= 2 and "pos_embed" not in n)
    alter = landscape.random_direction(lib.models.create("alternet50_smoke"), seed=0)
    tables = [n for n in alter if "rel_pos" in n]
    assert tables and all(not alter[n].any() for n in tables)
    assert landscape.is_frozen("blocks.0.attn.relative_position_bias_table", torch.zeros(3, 3))


def test_slice_of_quadratic_is_parabola_of_known_curvature():
    # MSE of a linear model: loss(w + x·d) = (1/N)‖X(w + x·d) − y‖², curvature a = ‖Xd‖²/N;
    # the L2 term (wd/2)‖w + x·d‖² has a = (wd/2)‖d‖²; and 2a = dᵀHd from the HVP operator
    g = _gen(4)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randn(30, generator=g, dtype=torch.float64)
    model = nn.Linear(5, 1, bias=False).double()

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (out.squeeze(1) - target).pow(2).mean()

    d = {"weight": torch.randn(1, 5, generator=g, dtype=torch.float64)}
    frame = landscape.slice_1d(
        model, x, y, steps=7, span=2.0, direction=d, loss_fn=mse, weight_decay=0.1, progress=False
    )
    a_loss = np.polyfit(frame["x"], frame["nll"], 2)[0]
    a_l2 = np.polyfit(frame["x"], frame["l2"], 2)[0]
    assert a_loss == pytest.approx(float((x @ d["weight"].T).pow(2).sum()) / 30, rel=1e-10)
    assert a_l2 == pytest.approx(0.1 / 2 * float(d["weight"].pow(2).sum()), rel=1e-10)
    op = hessian.HessianOperator(model, (x, y), loss_fn=mse)
    flat = d["weight"].reshape(-1)
    assert 2 * a_loss == pytest.approx(float(flat @ op.matvec(flat)), rel=1e-10)
    assert frame["accuracy"].isna().all()  # regression targets: accuracy undefined
    np.testing.assert_allclose(frame["nll_plus_l2"], frame["nll"] + frame["l2"], rtol=1e-14)


def test_weights_buffers_and_modes_restored_exactly_after_slices():
    model = lib.models.create("resnet50_smoke")
    model.train()
    model.layer1.eval()  # a mixed state must come back as it was
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    g = _gen(5)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (4,), generator=g)
    frame = landscape.slice_2d(model, images, labels, steps=2, span=0.5, seed=0, batch_size=3, progress=False)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == modes
    assert list(frame.columns) == ["x", "y", "nll", "l2", "nll_plus_l2", "accuracy"]
    assert frame[["x", "y"]].values.tolist() == [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]
    assert frame["nll"].nunique() == 4  # each point moved the weights differently


def test_slice_origin_matches_evaluate_and_l2_forms(capsys):
    model = lib.models.create("vit_smoke")
    g = _gen(6)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (6,), generator=g)
    squared = landscape.slice_1d(model, images, labels, steps=3, batch_size=4, seed=0, progress=True)
    assert "loss landscape" in capsys.readouterr().err
    reference = metrics.evaluate(model, images, labels)
    origin = squared.iloc[1]
    assert origin["x"] == 0.0
    assert origin["nll"] == pytest.approx(reference["nll"], rel=1e-5)
    assert origin["accuracy"] == pytest.approx(reference["accuracy"])
    params = [p.detach().double() for p in model.parameters()]
    assert origin["l2"] == pytest.approx(0.05 / 2 * sum(float(p.pow(2).sum()) for p in params), rel=1e-12)
    plain = landscape.slice_1d(model, images, labels, steps=3, l2="norm", weight_decay=0.05, seed=0, progress=False)
    assert plain.iloc[1]["l2"] == pytest.approx(0.05 * sum(float(p.norm()) for p in params), rel=1e-12)
    np.testing.assert_allclose(plain["nll"], squared["nll"], rtol=1e-12)  # same seed, same direction
    assert squared.attrs["norm"] == "filter" and squared.attrs["l2"] == "squared"


def test_soft_labels_score_against_their_argmax():
    model = _conv_bn_net()
    g = _gen(7)
    images = torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64)
    hard = torch.randint(0, 3, (8,), generator=g)
    soft = torch.nn.functional.one_hot(hard, 3).double() * 0.8 + 0.2 / 3
    a = landscape.slice_1d(model, images, hard, steps=3, seed=0, progress=False, label_smoothing=0.2)
    b = landscape.slice_1d(model, images, soft, steps=3, seed=0, progress=False)
    np.testing.assert_allclose(a["accuracy"], b["accuracy"])
    np.testing.assert_allclose(a["nll"], b["nll"], rtol=1e-12)  # smoothing 0.2 = these soft targets


def test_same_seed_same_direction_other_seed_differs():
    model = _conv_bn_net()
    a = landscape.random_direction(model, seed=0)
    b = landscape.random_direction(model, seed=0)
    c = landscape.random_direction(model, seed=1)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_bad_arguments_raise():
    model = _conv_bn_net()
    images, labels = torch.zeros(2, 3, 6, 6, dtype=torch.float64), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="norm must be"):
        landscape.random_direction(model, norm="layer")
    with pytest.raises(ValueError, match="has shape"):
        landscape.slice_1d(model, images, labels, direction={"0.weight": torch.zeros(3)}, progress=False)
    with pytest.raises(ValueError, match="lacks"):
        landscape.slice_1d(model, images, labels, direction={"nope": torch.zeros(3)}, progress=False)
    with pytest.raises(ValueError, match="drop them"):
        landscape.slice_1d(model, images, labels, direction={}, seed=1, progress=False)
    with pytest.raises(ValueError, match="l2 must be"):
        landscape.slice_1d(model, images, labels, l2="abs", progress=False)
    with pytest.raises(ValueError, match="differ in length"):
        landscape.slice_2d(model, images, labels[:1], progress=False)
