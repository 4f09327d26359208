"""Frequency-band noise (METHODS §8): the band, the noise's spectrum, and the accuracy sweep."""

import math

import numpy as np
import pytest
import torch

from lib import data, models
from lib.analysis import robustness
from lib.metrics import predict


def _images(seed: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return images, torch.randint(0, 10, (n,), generator=g)


def _noise(f_pi: float, *, eps: float = 0.7, seed: int = 0, n: int = 4) -> torch.Tensor:
    images, _ = _images(0, n)
    g = torch.Generator().manual_seed(seed)
    return robustness.band_noise(images, f_pi, eps=eps, generator=g) - data.normalize(images)


def test_mask_is_a_symmetric_square_ring_without_dc():
    for f_pi in (0.1, 0.5, 0.9, 1.0):
        mask = robustness.band_mask((32, 32), f_pi)
        assert not mask[0, 0]
        mirrored = torch.roll(mask.flip(0, 1), shifts=(1, 1), dims=(0, 1))  # bin k → bin −k mod H
        assert torch.equal(mask, mirrored)
    # f = 0.5π ± 0.2 rad covers 1.37…1.77 rad: bins 7, 8 and 9 (of 2π/32 = 0.196 rad) on each side
    mask = robustness.band_mask((32, 32), 0.5)
    assert mask[0].nonzero().flatten().tolist() == [7, 8, 9, 23, 24, 25]
    assert torch.equal(mask[:, 0], mask[0])
    assert mask[8, 8] and mask[-9, 3] and not mask[6, 6] and not mask[10, 2]


@pytest.mark.parametrize("f_pi", [0.1, 0.3, 0.5, 0.9])
def test_band_noise_keeps_its_energy_in_the_band(f_pi):
    noise = _noise(f_pi)
    assert noise.dtype == torch.float32
    power = torch.fft.fft2(noise.double()).abs() ** 2
    mask = robustness.band_mask((32, 32), f_pi)
    assert (power[..., mask].sum() / power.sum()).item() >= 0.99
    # Parseval: white ±eps noise keeps about eps² × (share of bins in the band) of its power
    expected = 0.7**2 * mask.double().mean().item()
    assert noise.pow(2).mean().item() == pytest.approx(expected, rel=0.1)


def test_band_noise_is_deterministic_for_a_seed():
    assert torch.equal(_noise(0.4, seed=3), _noise(0.4, seed=3))
    assert not torch.equal(_noise(0.4, seed=3), _noise(0.4, seed=4))


def test_band_pass_of_real_noise_is_real():
    signs = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64).sign()
    spectrum = torch.fft.fft2(signs) * robustness.band_mask((32, 32), 0.7)
    assert torch.fft.ifft2(spectrum).imag.abs().max().item() < 1e-12


def test_zero_eps_returns_the_normalised_images():
    images, _ = _images(6, 2)
    out = robustness.band_noise(images, 0.5, eps=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, data.normalize(images))


def test_eps_in_pixels_scales_by_std_and_255():
    got = robustness.eps_in_pixels(0.7, "cifar10")
    assert got == pytest.approx(tuple(0.7 * s * 255 for s in data.STD["cifar10"]))
    assert robustness.eps_in_pixels(1.0, "cifar100")[0] == pytest.approx(0.2675 * 255)


@pytest.mark.parametrize("f_pi", [0, -0.1, 1.5, math.nan])
def test_bad_frequency_raises_naming_it(f_pi):
    images, labels = _images(0, 2)
    with pytest.raises(ValueError, match=f"got {f_pi!r}".replace("(", r"\(").replace(".", r"\.")):
        robustness.band_noise(images, f_pi, eps=0.1)
    with pytest.raises(ValueError, match="f_pi"):
        robustness.noise_robustness(models.create("vit_smoke"), images, labels, [0.5, f_pi], 0.1, progress=False)


def test_negative_eps_and_empty_band_raise():
    images, labels = _images(0, 2)
    with pytest.raises(ValueError, match=r"eps .* got -0\.1"):
        robustness.band_noise(images, 0.5, eps=-0.1)
    with pytest.raises(ValueError, match=r"got -0\.1"):
        robustness.noise_robustness(models.create("vit_smoke"), images, labels, [0.5], [0.1, -0.1], progress=False)
    with pytest.raises(ValueError, match="holds no frequency bin"):
        robustness.band_mask((32, 32), 0.45, width=0.01)  # 1.414 rad: bins at 1.374, 1.571


def test_zero_eps_leaves_accuracy_unchanged_and_restores_mode():
    model = models.create("resnet50_smoke")  # BatchNorm: eval mode matters
    images, _ = _images(1)
    labels = predict(model, images).argmax(1)
    labels[::2] = (labels[::2] + 1) % 10  # half right, half wrong
    model.train()
    frame = robustness.noise_robustness(
        model, images, labels, [0.2, 0.8], 0.0, batch_size=4, bootstrap=50, progress=False
    )
    assert model.training
    assert (frame["clean_accuracy"] == 0.5).all()
    assert (frame["delta"] == 0).all() and (frame["lo"] == 0).all() and (frame["hi"] == 0).all()
    assert (frame["noisy_accuracy"] == frame["clean_accuracy"]).all()
    assert list(frame.columns) == [
        "frequency", "eps", "eps_pixels", "band_fraction", "clean_accuracy",
        "noisy_accuracy", "delta", "lo", "hi", "n_images",
    ]  # fmt: skip


class HighFrequencyDetector(torch.nn.Module):
    """Says class 1 when neighbouring pixels differ by more than ``threshold`` (mean square).

    A horizontal difference has gain 4 sin²(ω/2): about 3.9 at 0.9π and 0.1 at 0.1π, so only
    high-frequency noise can push a flat image over the threshold.
    """

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = (x[..., 1:] - x[..., :-1]).pow(2).mean(dim=(1, 2, 3))
        return torch.stack([self.threshold - energy, energy - self.threshold], dim=1)


def _flat_images(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    colours = torch.randint(0, 256, (n, 3, 1, 1), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return colours.expand(n, 3, 32, 32).contiguous(), torch.zeros(n, dtype=torch.long)


def test_only_high_frequency_noise_fools_a_high_frequency_detector():
    images, labels = _flat_images()
    frame = robustness.noise_robustness(
        HighFrequencyDetector(0.5), images, labels, [0.1, 0.9], [0.9, 3.0], bootstrap=100, progress=False
    )
    assert (frame["clean_accuracy"] == 1).all()
    assert list(frame["delta"][:2]) == [0, 0]  # 0.1π: far below the threshold
    assert frame["delta"][3] == -100  # 0.9π at eps 3: every image flips
    # 0.9π at eps 0.9 sits at the threshold: some images flip, and the interval is not a point
    assert -100 < frame["delta"][2] < 0
    assert frame["lo"][2] < frame["delta"][2] < frame["hi"][2]


def test_noise_robustness_does_not_depend_on_batch_size_and_is_seeded():
    images, labels = _flat_images()
    args = (HighFrequencyDetector(0.5), images, labels, [0.1, 0.9], [0.9, 3.0])
    a = robustness.noise_robustness(*args, batch_size=3, seed=0, bootstrap=50, progress=False)
    b = robustness.noise_robustness(*args, batch_size=8, seed=0, bootstrap=50, progress=False)
    assert a.equals(b)
    other = robustness.noise_robustness(*args, batch_size=8, seed=1, bootstrap=50, progress=False)
    assert not a.equals(other)
    assert list(zip(a["frequency"], a["eps"])) == [(0.1, 0.9), (0.1, 3.0), (0.9, 0.9), (0.9, 3.0)]
    np.testing.assert_allclose(a["delta"], 100 * (a["noisy_accuracy"] - a["clean_accuracy"]), atol=1e-9)
    assert (a["lo"] <= a["delta"]).all() and (a["delta"] <= a["hi"]).all()


class LowFrequencyDetector(torch.nn.Module):
    """Says class 1 when the image's 4×4 block means vary a lot: only low-frequency noise survives the pooling."""

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = torch.nn.functional.avg_pool2d(x, 4).var(dim=(2, 3)).mean(dim=1)
        return torch.stack([self.threshold - energy, energy - self.threshold], dim=1)


def test_band_contrast_says_which_model_is_robust_in_which_band():
    images, labels = _flat_images(40)
    bands = [0.1, 0.9]
    high = robustness.noise_outcomes(HighFrequencyDetector(0.5), images, labels, bands, 3.0, progress=False)
    low = robustness.noise_outcomes(LowFrequencyDetector(0.05), images, labels, bands, 3.0, progress=False)
    # high-frequency noise fools the high-frequency detector only: the low detector is more robust there
    value, lo, hi = robustness.band_contrast(low, high, [0.9], 3.0, bootstrap=200)
    assert value == pytest.approx(100) and lo == pytest.approx(100)
    value, lo, hi = robustness.band_contrast(high, low, [0.1], 3.0, bootstrap=200)
    assert value > 0 and lo > 0  # and low-frequency noise fools the low-frequency detector
    assert robustness.band_contrast(high, high, bands, 3.0)[0] == 0


def test_band_contrast_rejects_unmeasured_bands_and_unpaired_outcomes():
    images, labels = _flat_images(8)
    a = robustness.noise_outcomes(HighFrequencyDetector(0.5), images, labels, [0.1], 1.0, progress=False)
    b = robustness.noise_outcomes(HighFrequencyDetector(0.5), images, labels, [0.1], 1.0, seed=1, progress=False)
    with pytest.raises(ValueError, match=r"measured: \[0.1\]"):
        robustness.band_contrast(a, a, [0.5], 1.0)
    with pytest.raises(ValueError, match="same images"):
        robustness.band_contrast(a, b, [0.1], 1.0)


def test_summarize_of_outcomes_equals_noise_robustness():
    images, labels = _flat_images()
    args = (HighFrequencyDetector(0.5), images, labels, [0.1, 0.9], [0.9, 3.0])
    outcomes = robustness.noise_outcomes(*args, progress=False)
    assert robustness.summarize(outcomes, bootstrap=50).equals(robustness.noise_robustness(*args, bootstrap=50, progress=False))


def test_band_delta_averages_the_chosen_bands():
    images, labels = _flat_images(20)
    o = robustness.noise_outcomes(HighFrequencyDetector(0.5), images, labels, [0.1, 0.9], 3.0, progress=False)
    assert robustness.band_delta(o, [0.9], 3.0)[0] == -100
    assert robustness.band_delta(o, [0.1, 0.9], 3.0)[0] == -50
    assert robustness.band_delta(o, [0.1], 3.0) == (0.0, 0.0, 0.0)
