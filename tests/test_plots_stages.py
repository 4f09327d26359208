"""Tests of lib.plots.stages: each figure function returns a Figure with one panel per model."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lib import models, plots  # noqa: E402
from lib.analysis.lesion import lesion  # noqa: E402
from lib.analysis.stages import unit_table  # noqa: E402

SMOKE = {"resnet": "resnet50_smoke", "vit": "vit_smoke", "alternet": "alternet50_smoke"}


@pytest.fixture(scope="module")
def cast() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {role: models.create(name) for role, name in SMOKE.items()}


def test_lesion_by_depth_has_one_panel_per_model(cast):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (8,), generator=gen)
    frames = {role: lesion(m, images, labels, bootstrap=20, progress=False) for role, m in cast.items()}
    fig = plots.lesion_by_depth(frames)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["ResNet", "ViT", "AlterNet"]
    plt.close(fig)


def test_cka_heatmaps_have_one_panel_per_model_and_a_colorbar(cast):
    units = {role: unit_table(m) for role, m in cast.items()}
    matrices = {role: torch.eye(len(t), dtype=torch.float64) for role, t in units.items()}
    fig = plots.cka_heatmaps(matrices, units)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 4  # three panels and the colour bar
    plt.close(fig)
    with pytest.raises(ValueError, match="unit table"):
        plots.cka_heatmaps({"vit": torch.eye(3)}, {"vit": units["vit"]})


def test_lesion_by_depth_accepts_a_frame_without_intervals():
    frame = pd.DataFrame(dict(name=["a", "b"], kind=["conv", "msa"], stage=[1, 2], index=[2, 4], depth=[0.5, 1.0],
                              delta_accuracy=[-0.01, -0.02], delta_accuracy_low=[float("nan")] * 2,
                              delta_accuracy_high=[float("nan")] * 2))
    fig = plots.lesion_by_depth({"alternet": frame})
    assert len(fig.axes) == 1
    plt.close(fig)
