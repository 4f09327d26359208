"""Chapter 1's (and 4's) spectrum figure reads right when a model has no negative eigenvalues."""

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from lib import plots  # noqa: E402


def test_spectra_without_negative_values_say_so_instead_of_drawing_an_empty_panel():
    fig = plots.eigenvalue_spectra({"alternet": torch.tensor([60.0, 90.0, 250.0]), "preresnet": torch.tensor([70.0, 800.0])})
    (pos_ax,) = fig.axes  # the positive panel alone, across the column
    assert "no negative eigenvalues" in pos_ax.texts[0].get_text()
    assert len(pos_ax.patches) == 2  # one step outline per model
    labels = [t.get_text() for t in pos_ax.get_xticklabels() if t.get_text()]
    assert labels and all("10^" not in label and "$" not in label for label in labels)  # plain 1-2-5 numbers


def test_spectra_with_negative_values_draw_both_panels():
    fig = plots.eigenvalue_spectra({"resnet": torch.tensor([-3.0, 5.0, 500.0]), "vit": torch.tensor([-30.0, 2.0, 9.0])})
    neg_ax, _ = fig.axes
    assert len(neg_ax.patches) == 2 and not neg_ax.texts


def test_spectra_over_a_narrow_positive_range_still_label_the_axis():
    fig = plots.eigenvalue_spectra({"alternet": torch.tensor([55.0, 70.0]), "preresnet": torch.tensor([60.0, 95.0])})
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels() if t.get_text()]
