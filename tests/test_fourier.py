"""Relative log amplitude (METHODS §5) against known spectra, and the by-depth driver."""

import math

import numpy as np
import pytest
import torch

from lib import models
from lib.analysis import fourier


def _random_maps(seed: int, shape=(4, 6, 16, 16)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _images(seed: int, n: int = 8, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))  # circular, so the DFT diagonalises it


def _box_blur(x: torch.Tensor) -> torch.Tensor:
    return sum(_shift(x, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9


def _laplacian(x: torch.Tensor) -> torch.Tensor:
    return _shift(x, 1, 0) + _shift(x, -1, 0) + _shift(x, 0, 1) + _shift(x, 0, -1) - 4 * x


def test_matches_the_recipe_step_by_step():
    # METHODS §5 steps 1-6 written literally in numpy (mean over batch AND channels before the
    # diagonal); the library averages per image first, which must not matter.
    for size in (8, 7):
        x = _random_maps(0, (3, 5, size, size))
        log_amp = np.log(np.abs(np.fft.fft2(x.numpy())) + 1e-6)
        log_amp = np.fft.fftshift(log_amp, axes=(-2, -1)).mean(axis=(0, 1))
        diagonal = np.diagonal(log_amp)[size // 2 :]
        expected = diagonal - diagonal[0]
        got = fourier.relative_log_amplitude(x)
        assert got.shape == (math.ceil(size / 2),)
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_dc_is_zero_and_constant_map_is_very_negative_at_high_frequency():
    x = torch.full((2, 3, 8, 8), 2.5, dtype=torch.float64)
    curve = fourier.relative_log_amplitude(x)
    assert curve[0] == 0
    # |F| = 0 off DC: log(1e-6) − log(64 · 2.5) ≈ −18.9
    assert curve[-1].item() < -15
    assert curve[-1].item() == pytest.approx(math.log(1e-6) - math.log(64 * 2.5), abs=1e-6)


def test_sinusoid_along_the_diagonal_peaks_at_its_frequency():
    size, k = 16, 3  # 1 + cos(2π k (h + w) / H): |F| = H² at DC, H²/2 at ±(k, k), 0 elsewhere
    h = torch.arange(size, dtype=torch.float64)
    phase = torch.rand(2, 4, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 * math.pi
    x = 1 + torch.cos(2 * math.pi * k * (h[:, None] + h[None, :]) / size + phase)
    curve = fourier.relative_log_amplitude(x)
    assert int(curve[1:].argmax()) + 1 == k
    assert curve[k].item() == pytest.approx(math.log(0.5), abs=1e-6)
    assert (curve[1:k] < -15).all() and (curve[k + 1 :] < -15).all()


def test_box_blur_lowers_high_frequencies_by_its_transfer_function():
    x = _random_maps(2)
    before = fourier.relative_log_amplitude(x)
    after = fourier.relative_log_amplitude(_box_blur(x))
    assert after[-1] < before[-1] - 1
    assert (after[1:] < before[1:]).all()
    # circular convolution multiplies each bin by T(ω, ω) = ((1 + 2 cos ω) / 3)², T(0, 0) = 1
    omega = 2 * math.pi * torch.arange(len(before), dtype=torch.float64) / x.shape[-1]
    gain = torch.log(((1 + 2 * torch.cos(omega)) / 3) ** 2)
    torch.testing.assert_close(after - before, gain, rtol=0, atol=1e-3)


def test_laplacian_raises_high_frequencies():
    x = _random_maps(3)
    before = fourier.relative_log_amplitude(x)
    assert fourier.relative_log_amplitude(_laplacian(x))[-1] > before[-1] + 1
    # sharpening x − Δx keeps DC and multiplies bin (ω, ω) by 1 + 8 sin²(ω/2)
    after = fourier.relative_log_amplitude(x - _laplacian(x))
    omega = 2 * math.pi * torch.arange(len(before), dtype=torch.float64) / x.shape[-1]
    torch.testing.assert_close(after - before, torch.log(1 + 8 * torch.sin(omega / 2) ** 2), rtol=0, atol=1e-6)


def test_rejects_a_map_that_is_not_b_c_h_w():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        fourier.relative_log_amplitude(torch.zeros(3, 8, 8))


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = torch.randn(400, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    lo, hi = fourier.bootstrap_interval(values, reps=400, seed=0)
    mean = values.mean(0)
    assert (lo < mean).all() and (mean < hi).all()
    # a percentile interval of a mean of 400 draws ≈ ± 1.96 s / √n
    expected = 2 * 1.96 * values.std(0) / 20
    torch.testing.assert_close(hi - lo, expected, rtol=0.2, atol=0)
    again = fourier.bootstrap_interval(values, reps=400, seed=0)
    other = fourier.bootstrap_interval(values, reps=400, seed=1)
    assert torch.equal(lo, again[0]) and torch.equal(hi, again[1])
    assert not torch.equal(lo, other[0])
    assert fourier.bootstrap_interval(values, reps=0)[0].isnan().all()


@pytest.mark.parametrize("name", ["vit_smoke", "resnet50_smoke"])
def test_high_frequency_by_depth_does_not_depend_on_batch_size(name):
    model = models.create(name)
    images = _images(5)
    a = fourier.high_frequency_by_depth(model, images, batch_size=3, bootstrap=50, progress=False)
    b = fourier.high_frequency_by_depth(model, images, batch_size=8, bootstrap=50, progress=False)
    names = [u.name for u in models.units(model)]
    assert list(a["name"]) == names
    assert list(a["depth"]) == pytest.approx([i / (len(names) - 1) for i in range(len(names))])
    assert list(a.columns) == ["name", "kind", "stage", "downsample", "index", "depth", "size", "value", "lo", "hi",
                               "change", "change_lo", "change_hi"]
    for column in ("value", "lo", "hi"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-5)
    assert (a["lo"] <= a["value"]).all() and (a["value"] <= a["hi"]).all()


def test_curves_are_tidy_and_end_at_the_high_frequency_value():
    model = models.create("vit_smoke")
    images = _images(6, n=4)
    curves = fourier.relative_log_amplitude_curves(model, images, bootstrap=20, progress=False)
    first = curves[curves["name"] == "stem"]
    assert list(first["frequency"]) == pytest.approx(np.linspace(0, 1, 4).tolist())  # 8×8 tokens
    assert list(first["axis_frequency"]) == pytest.approx([0, 0.25, 0.5, 0.75])
    assert (curves.loc[curves["frequency"] == 0, "value"] == 0).all()
    top = fourier.high_frequency(curves)
    direct = fourier.high_frequency_by_depth(model, images, bootstrap=20, progress=False)
    np.testing.assert_allclose(top["value"], direct["value"], rtol=0, atol=1e-12)
    # the mean over images of the per-unit curve is relative_log_amplitude of that unit's maps
    model.eval()
    maps = dict((u.name, m) for u, m in models.feature_maps(model, images))
    expected = fourier.relative_log_amplitude(maps["blocks.0.mlp"].double())
    got = curves.loc[curves["name"] == "blocks.0.mlp", "value"].to_numpy()
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-5)


def test_measures_in_eval_mode_and_restores_train_mode():
    model = models.create("resnet50_smoke")  # BatchNorm: train and eval mode differ
    images = _images(7, n=4)
    model.train()
    in_train = fourier.high_frequency_by_depth(model, images, bootstrap=0, progress=False)
    assert model.training
    model.eval()
    in_eval = fourier.high_frequency_by_depth(model, images, bootstrap=0, progress=False)
    assert not model.training
    np.testing.assert_allclose(in_train["value"], in_eval["value"], rtol=0, atol=1e-6)
    assert in_train["lo"].isna().all()


def test_maps_smaller_than_4x4_warn_and_are_skipped():
    model = models.create("resnet50_smoke")
    images = _images(8, n=2, size=16)  # stage 4 maps are 2×2
    with pytest.warns(UserWarning, match=r"smaller than 4×4: layer4\.0 \(2×2\), layer4\.1"):
        frame = fourier.high_frequency_by_depth(model, images, bootstrap=0, progress=False)
    assert not frame["name"].str.startswith("layer4").any()
    assert frame["depth"].iloc[-1] == pytest.approx(6 / 8)  # depth still counts every unit


def test_unit_changes_see_a_blur_lower_and_a_laplacian_raise_high_frequencies():
    x = _random_maps(7, shape=(40, 4, 16, 16))
    small = torch.nn.functional.avg_pool2d(x, 2)  # a downsampling unit: not comparable
    steps = [x, _box_blur(x), _box_blur(x) - _laplacian(_box_blur(x)), small]
    last = [fourier.per_image_relative_log_amplitude(s)[:, -1] for s in steps]
    change, lo, hi = fourier.unit_changes(last, [False, True, True, False], reps=200, seed=0)
    assert math.isnan(change[0]) and math.isnan(change[3])  # first unit; size changed
    assert hi[1] < 0 < lo[2]  # the blur lowers, the sharpening raises, with 95 % confidence
    torch.testing.assert_close(change[1], (last[1] - last[0]).mean())


def test_unit_changes_of_an_exact_shift_have_a_point_interval():
    base = torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    change, lo, hi = fourier.unit_changes([base, base - 1.0, base - 1.0], [False, True, True], reps=100)
    assert change[1:].tolist() == pytest.approx([-1.0, 0.0])
    assert lo[1].item() == pytest.approx(-1.0) and hi[1].item() == pytest.approx(-1.0)


def test_direction_counts_count_only_confident_changes_per_kind():
    import pandas as pd

    frame = pd.DataFrame(
        dict(
            kind=["stem", "msa", "mlp", "msa", "mlp", "msa"],
            change=[float("nan"), -1.0, 2.0, -0.1, 0.5, 0.3],
            change_lo=[float("nan"), -1.5, 1.0, -0.3, -0.1, 0.1],
            change_hi=[float("nan"), -0.5, 3.0, 0.1, 1.0, 0.5],
        )
    )
    counts = fourier.direction_counts(frame).set_index("kind")
    assert counts.loc["msa", ["units", "lower", "raise", "unclear"]].tolist() == [3, 1, 1, 1]
    assert counts.loc["mlp", ["units", "lower", "raise", "unclear"]].tolist() == [2, 0, 1, 1]
    assert "stem" not in counts.index
    assert counts.loc["msa", "lower_share"] == pytest.approx(1 / 3)


def test_by_depth_changes_skip_the_stem_and_projection_units():
    model = models.create("resnet50_smoke")
    frame = fourier.high_frequency_by_depth(model, _images(8, n=6), bootstrap=20, progress=False)
    assert frame["change"][frame["downsample"]].isna().all()
    assert frame["change"][~frame["downsample"]].notna().all()
    prev = frame["value"].shift(1)
    kept = ~frame["downsample"]
    np.testing.assert_allclose(frame["change"][kept], (frame["value"] - prev)[kept], atol=1e-9)
