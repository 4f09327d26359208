"""ΔlogA(π) over depth and its parts: the parts add up, and a block that only pools is all resolution."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib import models
from lib.analysis import trend
from lib.analysis.fourier import per_image_relative_log_amplitude
from lib.models import Unit


def _unit(name, kind="conv", stage=1, downsample=False):
    return Unit(name, kind, stage, nn.Identity(), downsample)


def _maps(seed=0):
    """A stem map (8×8), a block that only average-pools it (4×4, opens stage 2), a block that changes nothing,
    and a block that adds a ripple at the half-diagonal's last frequency (which raises ΔlogA there)."""
    gen = torch.Generator().manual_seed(seed)
    stem = torch.randn(6, 3, 8, 8, generator=gen)
    pooled = F.avg_pool2d(stem, 2)
    x = torch.arange(4, dtype=torch.float32)
    ripple = torch.cos(2 * torch.pi * (x[:, None] + x[None, :]) / 4)  # the (1, 1) bin of a 4×4 map
    noisy = pooled + 5.0 * ripple
    return [(_unit("stem", "stem", 0, True), stem), (_unit("s2.0", stage=2, downsample=True), pooled),
            (_unit("s2.1", stage=2), pooled.clone()), (_unit("s2.2", stage=2), noisy)]


def _high(fmap):
    return per_image_relative_log_amplitude(fmap)[:, -1].double()


def test_a_block_that_only_pools_is_all_resolution_and_the_parts_add_up():
    maps = _maps()
    parts, names = trend._batch_parts(maps)
    total, within, down, control, beyond = parts.unbind(1)
    assert names == ["stem", "s2.0", "s2.1", "s2.2"]
    assert torch.allclose(total, within + down, atol=1e-12)  # the rise is the sum of the units' changes
    assert torch.allclose(control, down, atol=1e-12) and beyond.abs().max() < 1e-12  # pooling alone, nothing more
    assert torch.allclose(within, _high(maps[3][1]) - _high(maps[2][1]), atol=1e-12)  # the identity block adds 0
    assert (within > 0).all()  # the ripple raises the high-frequency amplitude


def test_units_smaller_than_four_pixels_are_left_out_and_too_few_units_are_an_error():
    maps = _maps() + [(_unit("s3.0", stage=3, downsample=True), torch.randn(6, 3, 2, 2))]
    assert trend._batch_parts(maps)[1][-1] == "s2.2"
    with pytest.raises(ValueError, match="at least two units"):
        trend._batch_parts(maps[:1])


def test_the_trend_of_a_model_is_a_frame_of_the_five_parts_with_intervals():
    torch.manual_seed(0)
    model = models.create("resnet50_smoke")
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    frame = trend.high_frequency_trend(model, images, batch_size=5, bootstrap=50, progress=False)
    assert frame["part"].tolist() == list(trend.PARTS) and model.training  # mode restored
    row = frame.set_index("part")
    assert row.loc["total", "value"] == pytest.approx(row.loc["within stages", "value"] + row.loc["downsampling", "value"])
    assert (frame["lo"] <= frame["value"] + 1e-12).all() and (frame["value"] <= frame["hi"] + 1e-12).all()
    again = trend.high_frequency_trend(model, images, batch_size=12, bootstrap=50, progress=False)
    assert torch.allclose(torch.tensor(frame["value"].to_numpy()), torch.tensor(again["value"].to_numpy()), atol=1e-9)
    assert frame.attrs["images"] == 12 and frame.attrs["units"][0] == "stem"


def test_chapter_two_names_every_part_of_the_trend_apart():
    from lib.chapters import low_pass

    assert set(low_pass.TREND_SLUGS) == set(trend.PARTS)
    assert len(set(low_pass.TREND_SLUGS.values())) == len(trend.PARTS)  # one glue key per part
