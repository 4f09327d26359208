"""Every figure of lib.plots is readable on the page: text ≥ 9 pt as displayed, no empty panel, legends off the data.

Each figure function is drawn from small synthetic frames shaped like the analyses' outputs
(three models, four stages, MSAs at stage ends), then measured the way the page shows it: scaled
to the content column (``lib.plots.style.displayed_points``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lib import differences, plots  # noqa: E402
from lib.plots import style  # noqa: E402

ROLES = ("resnet", "vit", "alternet")


def _units(role: str) -> pd.DataFrame:
    """A unit table: a stem, then four stages of 3–6 units (the ViT: one stage of MSA/MLP pairs), MSAs at stage ends."""
    if role == "vit":
        kinds = ["stem"] + ["msa", "mlp"] * 6
        stages = [0] + [1] * 12
    else:
        sizes = (3, 4, 6, 3)
        kinds, stages = ["stem"], [0]
        for s, n in enumerate(sizes, start=1):
            kinds += ["conv"] * (n - 1) + ["msa" if role == "alternet" else "conv"]
            stages += [s] * n
    index = np.arange(len(kinds))
    first = np.r_[True, np.diff(stages) != 0]
    return pd.DataFrame({"name": [f"u{i}" for i in index], "kind": kinds, "stage": stages, "index": index,
                         "depth": index / index[-1], "downsample": first})


def _by_depth(role: str, seed: int = 0) -> pd.DataFrame:
    frame = _units(role)
    rng = np.random.default_rng(seed)
    value = np.exp(np.cumsum(rng.normal(0.1, 0.2, len(frame))))
    return frame.assign(value=value, lo=value * 0.95, hi=value * 1.05)


def _lesion(role: str) -> pd.DataFrame:
    frame = _by_depth(role).iloc[1:]
    delta = -np.linspace(0.2, 0.01, len(frame))
    return frame.assign(delta_accuracy=delta, delta_accuracy_low=delta - 0.01, delta_accuracy_high=delta + 0.01)


def _curves(role: str) -> pd.DataFrame:
    rows = []
    for _, unit in _units(role).iterrows():
        for f in np.linspace(0, 1, 6):
            rows.append({"index": unit["index"], "depth": unit["depth"], "kind": unit["kind"], "frequency": f,
                         "value": -f * (1 + unit["depth"])})
    return pd.DataFrame(rows)


def _noise(role: str) -> pd.DataFrame:
    rows = []
    for eps in (0.05, 0.1, 0.2, 0.7):
        for f in np.linspace(0.1, 0.9, 9):
            delta = -20 * eps * np.sin(np.pi * f)
            rows.append({"eps": eps, "eps_pixels": eps * 51.0, "frequency": f, "delta": delta, "lo": delta - 1, "hi": delta + 1})
    return pd.DataFrame(rows)


def _seeds(make) -> dict:
    """Two fake replicate seeds (1, 2) of a figure's data, as ``Cache.replicates`` gives them to a chapter."""
    return {seed: make(seed) for seed in (1, 2)}


def _landscape(scale: float) -> pd.DataFrame:
    x = np.linspace(-1, 1, 5)
    xx, yy = np.meshgrid(x, x)
    nll = 0.5 + scale * (np.exp(4 * (xx**2 + yy**2)) - 1)
    return pd.DataFrame({"x": xx.ravel(), "y": yy.ravel(), "nll": nll.ravel(), "nll_plus_l2": nll.ravel() + 100})


class _Density:
    def on_grid(self, points: int):
        grid = torch.linspace(-5, 500, points)
        return grid, torch.exp(-grid.abs() / 50)


def _figures() -> dict[str, plt.Figure]:
    gen = torch.Generator().manual_seed(0)
    spectra_mixed = {"resnet": torch.tensor([-3.0, 5.0, 500.0]), "vit": torch.tensor([-30.0, 2.0, 9.0])}
    summary = pd.DataFrame({"role": ["alternet", "preresnet", "vit"] * 2, "fraction": [0.1] * 3 + [1.0] * 3,
                            "mean": [60, 58, 40, 85, 80, 80.0], "std": [1, 1, 2, 0.5, 0.5, 0.4], "seeds": [3] * 6})
    gaps = pd.DataFrame({"fraction": [0.1, 1.0], "mean": [2.0, 5.0], "lo": [0.5, 3.0], "hi": [3.5, 7.0]})
    ours = pd.DataFrame({"label": ["no MSA (pre-activation ResNet)", "MSAs (0, 0, 0, 1)", "MSAs (0, 1, 1, 2)"],
                         "role": ["preresnet", "alternet", "alternet"], "accuracy (%)": [70.0, 71.0, 73.0]})
    history = pd.DataFrame([{"role": r, "epoch": e, "test_accuracy": 0.1 * e, "train_loss": 2 / e}
                            for r in ROLES for e in range(1, 5)])
    return {
        "image_grid": lambda: plots.image_grid(torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=gen),
                                               torch.arange(40) % 10, [f"class {i}" for i in range(10)], per_class=4),
        "training_curves": lambda: plots.training_curves(history),
        "eigenvalue_spectra": lambda: plots.eigenvalue_spectra(spectra_mixed),
        "eigenvalue_spectra, none negative": lambda: plots.eigenvalue_spectra(
            {"alternet": torch.tensor([60.0, 90.0, 250.0]), "preresnet": torch.tensor([70.0, 800.0])}),
        "eigenvalue_spectra, replicates": lambda: plots.eigenvalue_spectra(spectra_mixed, replicates=_seeds(
            lambda s: {k: v * (1 + 0.3 * s) for k, v in spectra_mixed.items()})),
        "eigenvalue_spectra, replicates of one label of three": lambda: plots.eigenvalue_spectra(
            {"2 %": torch.tensor([-9.0, 3.0, 40.0]), "10 %": torch.tensor([-4.0, 6.0]), "100 %": torch.tensor([-1.0, 80.0])},
            replicates=_seeds(lambda s: {"100 %": torch.tensor([-1.0 - s, 60.0 * s])})),
        "loss_landscapes": lambda: plots.loss_landscapes({"resnet": _landscape(100.0), "vit": _landscape(0.1)}),
        "spectral_densities": lambda: plots.spectral_densities({"resnet": _Density(), "vit": _Density()}),
        "relative_log_amplitude_curves": lambda: plots.relative_log_amplitude_curves({r: _curves(r) for r in ROLES}),
        "by_depth": lambda: plots.by_depth({r: _by_depth(r) for r in ROLES}, "feature-map variance", logy=True),
        "by_depth, replicates": lambda: plots.by_depth({r: _by_depth(r) for r in ROLES}, "feature-map variance", logy=True,
                                                       replicates=_seeds(lambda s: {r: _by_depth(r, s) for r in ROLES})),
        "noise_at": lambda: plots.noise_at({r: _noise(r) for r in ROLES}, 0.7),
        "noise_at, replicates": lambda: plots.noise_at({r: _noise(r) for r in ROLES}, 0.7, replicates=_seeds(
            lambda s: {r: _noise(r).assign(delta=lambda f: f["delta"] * (1 + 0.1 * s)) for r in ROLES})),
        "noise_sweep": lambda: plots.noise_sweep({r: _noise(r) for r in ROLES}),
        "lesion_by_depth": lambda: plots.lesion_by_depth({r: _lesion(r) for r in ROLES}),
        "lesion_by_depth, replicates": lambda: plots.lesion_by_depth({r: _lesion(r) for r in ROLES}, replicates=_seeds(
            lambda s: {r: _lesion(r).assign(delta_accuracy=lambda f: f["delta_accuracy"] * (1 + 0.2 * s)) for r in ROLES})),
        "cka_heatmaps": lambda: plots.cka_heatmaps({r: torch.eye(len(_units(r))) for r in ROLES}, {r: _units(r) for r in ROLES}),
        "variance_by_stage": lambda: plots.variance_by_stage({r: _by_depth(r) for r in ("resnet", "alternet")}),
        "variance_by_stage, replicates": lambda: plots.variance_by_stage(
            {r: _by_depth(r) for r in ("resnet", "alternet")},
            replicates=_seeds(lambda s: {r: _by_depth(r, s) for r in ("resnet", "alternet")})),
        "build_up": lambda: plots.build_up(ours, differences.paper_build_up()),
        "accuracy_by_fraction": lambda: plots.accuracy_by_fraction(summary, gaps),
        "travel": lambda: plots.travel(pd.DataFrame(
            [{"id": f"check_{k}", "seed": seed, "init": 0.1 * k, "warmup": 0.2 * k + seed, "final": 0.3 * k,
              "threshold": 0.0, "direction": "towards"} for k in range(5) for seed in (0, 1, 2)])),
    }


FIGURES = _figures()


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_is_readable_at_the_column_width(name):
    fig = FIGURES[name]()
    try:
        assert style.displayed_points(fig) >= style.SMALLEST_POINTS - 1e-9, f"{name}: text smaller than 9 pt on the page"
        empty = [i for i, ax in enumerate(fig.axes) if ax.get_visible() and ax.get_label() != "<colorbar>"
                 and not (ax.lines or ax.patches or ax.collections or ax.images)]
        assert not empty, f"{name}: panels {empty} draw nothing"
        for ax in fig.axes:  # a legend inside a panel may hide data or the zero line: legends sit above the panels
            legend = ax.get_legend()
            if legend is not None:
                fig.canvas.draw()
                assert legend.get_window_extent().y0 >= ax.get_window_extent().y1 - 1, f"{name}: a legend inside a panel"
    finally:
        plt.close(fig)


def test_every_public_figure_function_is_measured_here():
    """A new figure function must join FIGURES, so that its readability is checked too."""
    public = {n for n in plots.__dict__ if callable(plots.__dict__[n]) and n[0].islower()} - {
        "glue_figure", "show_figure", "displayed_points", "legend_above", "plain_log_axis", "kind_legend"}
    assert public <= {n.split(",")[0] for n in FIGURES}, public - {n.split(",")[0] for n in FIGURES}


def test_displayed_points_scales_text_to_the_column():
    """A figure twice the column's width shows its text at half the size it was drawn."""
    fig, ax = plt.subplots(figsize=(2 * style.COLUMN, 2))
    ax.set_axis_off()
    fig.text(0.0, 0.0, "x", fontsize=12)
    fig.text(0.999, 0.999, "y", fontsize=20)  # spans the full width, so the tight box is the figure
    assert style.displayed_points(fig) == pytest.approx(6.0, rel=0.05)
    plt.close(fig)


def test_tables_drop_row_numbers_but_keep_a_meaningful_index():
    numbered = pd.DataFrame({"claim": ["a", "b", "c"], "value": [1.0, 2.0, 3.0]})
    assert "<th>0</th>" not in style.frame_html(numbered)
    assert "<th>2</th>" not in style.frame_html(numbered[numbered["value"] > 1])  # what is left of a range after a filter
    assert "<th>x</th>" in style.frame_html(numbered.set_index(pd.Index(["x", "y", "z"])))
    assert "<th>0.1</th>" in style.frame_html(numbered.set_index(pd.Index([0.1, 0.2, 0.3], name="fraction")))
