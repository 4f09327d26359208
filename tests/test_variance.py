"""Feature-map variance (METHODS §6): spatial variance per sample and channel, then the mean."""

import numpy as np
import pytest
import torch

from lib import models
from lib.analysis import variance


def _images(seed: int, n: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("value", [0.0, 0.1, -3.7, 1e4])
def test_constant_map_has_exactly_zero_variance(value):
    x = torch.full((2, 3, 7, 5), value, dtype=torch.float32)  # 35 positions: not a power of two
    assert variance.feature_map_variance(x) == 0.0


def test_checkerboard_known_value():
    # ±1 checkerboard on 4×4: mean 0, Σ(x − x̄)² = 16, unbiased variance 16/15; channel c is
    # scaled by c + 1, so the channel mean is (1 + 4 + 9)/3 · 16/15
    h = torch.arange(4)
    board = (-1.0) ** (h[:, None] + h[None, :]).double()
    x = torch.stack([board * (c + 1) for c in range(3)])[None].repeat(2, 1, 1, 1)
    assert variance.feature_map_variance(x) == pytest.approx(14 / 3 * 16 / 15, rel=1e-12)


def test_is_spatial_not_across_samples():
    # each map is constant in space but differs between samples and channels
    levels = torch.randn(5, 4, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = levels.expand(5, 4, 6, 6)
    assert levels.var(dim=0).mean() > 0.1
    assert variance.feature_map_variance(x) == 0.0


def test_matches_numpy_unbiased_spatial_variance():
    x = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3 + 10
    expected = np.var(x.numpy().reshape(3, 4, -1), axis=-1, ddof=1).mean()
    assert variance.feature_map_variance(x) == pytest.approx(expected, rel=1e-12)


def test_rejects_bad_maps():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        variance.feature_map_variance(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="at least 2 positions"):
        variance.feature_map_variance(torch.zeros(2, 3, 1, 1))


@pytest.mark.parametrize("name", ["vit_smoke", "resnet50_smoke", "alternet50_smoke"])
def test_variance_by_depth_does_not_depend_on_batch_size(name):
    model = models.create(name)
    images = _images(2)
    a = variance.variance_by_depth(model, images, batch_size=3, bootstrap=50, progress=False)
    b = variance.variance_by_depth(model, images, batch_size=8, bootstrap=50, progress=False)
    names = [u.name for u in models.units(model)]
    assert list(a["name"]) == names
    assert list(a.columns) == ["name", "kind", "stage", "downsample", "index", "depth", "size", "value", "lo", "hi",
                               "change", "change_lo", "change_hi"]
    for column in ("value", "lo", "hi"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-5)
    assert (a["lo"] <= a["value"]).all() and (a["value"] <= a["hi"]).all()


def test_variance_by_depth_is_the_eval_mode_variance_and_restores_mode():
    model = models.create("resnet50_smoke")  # BatchNorm: train and eval mode differ
    images = _images(3, n=4)
    model.train()
    frame = variance.variance_by_depth(model, images, bootstrap=0, progress=False)
    assert model.training
    model.eval()
    expected = [variance.feature_map_variance(m) for _, m in models.feature_maps(model, images)]
    np.testing.assert_allclose(frame["value"], expected, rtol=1e-6, atol=0)
    assert frame["lo"].isna().all()


def test_stage_growth_compares_first_and_last_shape_preserving_units():
    import pandas as pd

    frame = pd.DataFrame(dict(
        name=["stem", "a0", "a1", "a2", "b0", "b1", "b2"],
        stage=[0, 1, 1, 1, 2, 2, 2],
        downsample=[True, True, False, False, True, False, False],
        value=[1.0, 5.0, 2.0, 4.0, 9.0, 3.0, 3.1],
        lo=[0.9, 4.9, 1.9, 3.9, 8.9, 2.9, 3.0],
        hi=[1.1, 5.1, 2.1, 4.1, 9.1, 3.1, 3.2],
    ))
    growth = variance.stage_growth(frame)
    assert growth["stage"].tolist() == [1, 2]
    assert growth["first"].tolist() == ["a1", "b1"] and growth["last"].tolist() == ["a2", "b2"]
    assert growth["grows"].tolist() == [True, False]  # b2's interval overlaps b1's
    assert growth["ratio"].tolist() == pytest.approx([2.0, 3.1 / 3.0])
