"""The authors' protocol: BatchNorm on each image's own statistics, one image at a time, and nothing else changed."""

import pandas as pd
import pytest
import torch
from torch import nn

from lib import runs
from lib.analysis import fourier, protocol, trend


def _images(n=4, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _trained_batchnorm(model):
    """Give every BatchNorm layer running statistics far from any one image's, as training leaves them."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 3 + 0.5)
    return model.eval()


def test_a_batchnorm_layer_of_the_copy_normalises_one_image_by_its_own_mean_and_variance_even_in_eval_mode():
    layer = nn.Sequential(nn.BatchNorm2d(3))
    bn = layer[0]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    bn.running_mean.fill_(10.0)
    layer.eval()
    x = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    copy = protocol.own_statistics(layer).eval()  # an analysis switching to eval mode does not undo it
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, 3, 1, 1) + bn.bias.view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(copy(x), expected, atol=1e-5)
    assert not layer.training and not bn.training and torch.equal(bn.running_mean, torch.full((3,), 10.0))  # untouched


def test_a_model_without_batchnorm_gives_exactly_the_books_values():
    vit = runs.build("vit", "smoke").eval()
    images = _images()
    ours = fourier.high_frequency_by_depth(vit, images, bootstrap=0, progress=False)
    theirs = protocol.high_frequency_by_depth(vit, images, bootstrap=0, progress=False)
    pd.testing.assert_series_equal(theirs["value"], ours["value"], rtol=1e-6, atol=1e-9)


def test_each_image_is_normalised_alone_so_a_set_gives_the_mean_of_its_images():
    resnet = _trained_batchnorm(runs.build("resnet", "smoke"))
    images = _images(3)
    together = protocol.high_frequency_trend(resnet, images, bootstrap=0, progress=False).set_index("part")["value"]
    alone = pd.concat([protocol.high_frequency_trend(resnet, images[i : i + 1], bootstrap=0, progress=False)
                       .set_index("part")["value"] for i in range(3)], axis=1).mean(axis=1)
    pd.testing.assert_series_equal(together, alone, check_names=False, rtol=1e-6, atol=1e-9)
    ours = trend.high_frequency_trend(resnet, images, bootstrap=0, progress=False).set_index("part")["value"]
    assert not ours.round(6).equals(together.round(6))  # running statistics and the image's own differ
    assert not resnet.training  # the caller's model keeps its mode


@pytest.mark.parametrize("function", [protocol.high_frequency_by_depth, protocol.high_frequency_trend])
def test_the_callers_model_and_its_running_statistics_are_left_as_they_were(function):
    resnet = _trained_batchnorm(runs.build("resnet", "smoke"))
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    function(resnet, _images(2), bootstrap=0, progress=False)
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())
