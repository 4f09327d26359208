"""Figures of a per-seed statistic draw the other training seeds thin and name them; without them they are unchanged."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from lib import chapters, plots  # noqa: E402
from lib.chapters import base  # noqa: E402
from lib.plots import style  # noqa: E402

ROLES = ("resnet", "vit", "alternet")


def _units(role: str, seed: int = 0) -> pd.DataFrame:
    """A stem and two stages of three units, MSAs last in a stage (AlterNet) or throughout (ViT), with noisy values."""
    kinds = ["stem"] + {"resnet": ["conv"] * 6, "vit": ["msa", "mlp"] * 3,
                        "alternet": ["conv", "conv", "msa"] * 2}[role]
    stages = [0, 1, 1, 1, 2, 2, 2]
    index = np.arange(len(kinds))
    value = np.exp(np.cumsum(np.random.default_rng(seed).normal(0.1, 0.2, len(kinds))))
    return pd.DataFrame({"kind": kinds, "stage": stages, "index": index, "depth": index / index[-1],
                         "downsample": [True, True, False, False, True, False, False],
                         "value": value, "lo": value * 0.9, "hi": value * 1.1})


def _lesion(role: str, seed: int = 0) -> pd.DataFrame:
    frame = _units(role, seed).iloc[1:]
    delta = -0.01 * frame["value"]
    return frame.assign(delta_accuracy=delta, delta_accuracy_low=delta - 0.005, delta_accuracy_high=delta + 0.005)


def _noise(role: str, seed: int = 0) -> pd.DataFrame:
    f = np.linspace(0.1, 0.9, 5)
    delta = -(10 + seed) * np.sin(np.pi * f)
    return pd.DataFrame({"eps": 0.1, "eps_pixels": 5.1, "frequency": f, "delta": delta, "lo": delta - 1, "hi": delta + 1})


def _spectra(seed: int = 0) -> dict[str, torch.Tensor]:
    return {"resnet": torch.tensor([-3.0, 5.0, 500.0]) * (1 + seed), "vit": torch.tensor([-30.0, 2.0, 9.0]) * (1 + seed)}


# figure → (draw it from seed 0's data and these replicates, what one replicate seed adds to each panel)
CASES = {
    "eigenvalue_spectra": (lambda reps: plots.eigenvalue_spectra(_spectra(), replicates=reps),
                           lambda seed: _spectra(seed), {"patches": [2, 2]}),  # a step outline per model and panel
    "by_depth": (lambda reps: plots.by_depth({r: _units(r) for r in ROLES}, "variance", logy=True, replicates=reps),
                 lambda seed: {r: _units(r, seed) for r in ROLES}, {"lines": [1, 1, 1]}),
    "noise_at": (lambda reps: plots.noise_at({r: _noise(r) for r in ROLES}, 0.1, replicates=reps),
                 lambda seed: {r: _noise(r, seed) for r in ROLES}, {"lines": [3]}),  # one panel, a line per model
    "lesion_by_depth": (lambda reps: plots.lesion_by_depth({r: _lesion(r) for r in ROLES}, replicates=reps),
                        lambda seed: {r: _lesion(r, seed) for r in ROLES}, {"lines": [1, 1, 1]}),
    "variance_by_stage": (lambda reps: plots.variance_by_stage({r: _units(r) for r in ("resnet", "alternet")},
                                                               replicates=reps),
                          lambda seed: {r: _units(r, seed) for r in ("resnet", "alternet")},
                          {"lines": [2, 2]}),  # a line per stage
}


def _counts(fig: plt.Figure) -> list[dict[str, int]]:
    return [{"lines": len(ax.lines), "patches": len(ax.patches), "collections": len(ax.collections)} for ax in fig.axes]


def _texts(fig: plt.Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _signature(fig: plt.Figure) -> tuple:
    """What a figure draws: each panel's artists with every line's data, and all its words."""
    lines = [[(tuple(map(tuple, line.get_xydata())), matplotlib.colors.to_rgba(line.get_color()), line.get_linewidth())
              for line in ax.lines] for ax in fig.axes]
    return _counts(fig), lines, _texts(fig)


@pytest.mark.parametrize("name", CASES)
def test_without_replicates_a_figure_is_unchanged(name):
    draw, _, _ = CASES[name]
    plain = {"eigenvalue_spectra": lambda: plots.eigenvalue_spectra(_spectra()),
             "by_depth": lambda: plots.by_depth({r: _units(r) for r in ROLES}, "variance", logy=True),
             "noise_at": lambda: plots.noise_at({r: _noise(r) for r in ROLES}, 0.1),
             "lesion_by_depth": lambda: plots.lesion_by_depth({r: _lesion(r) for r in ROLES}),
             "variance_by_stage": lambda: plots.variance_by_stage({r: _units(r) for r in ("resnet", "alternet")})}[name]
    figures = [plain(), draw(None), draw({})]
    try:
        first = _signature(figures[0])
        assert all(_signature(fig) == first for fig in figures[1:])
        assert not any("seed" in text for text in first[2])
    finally:
        for fig in figures:
            plt.close(fig)


@pytest.mark.parametrize("name", CASES)
def test_two_replicate_seeds_add_thin_artists_and_are_named(name):
    draw, data, extra = CASES[name]
    plain, both = draw(None), draw({2: data(2), 1: data(1)})  # in any order
    try:
        before, after = _counts(plain), _counts(both)
        for kind in ("lines", "patches", "collections"):
            added = [a[kind] - b[kind] for a, b in zip(after, before)]
            assert added == [2 * n for n in extra.get(kind, [0] * len(added))], f"{name}: {kind} added {added}"
        assert "thin lines: seeds 1, 2" in _texts(both)
        thin = [line for ax in both.axes for line in ax.lines if line.get_linewidth() == style.REPLICATE_LINE["lw"]]
        thin += [p for ax in both.axes for p in ax.patches if p.get_linewidth() == style.REPLICATE_LINE["lw"]]
        assert thin and all(a.get_alpha() == style.REPLICATE_LINE["alpha"] for a in thin)
    finally:
        plt.close(plain)
        plt.close(both)


def test_a_seed_may_lack_a_label_but_may_not_name_one_the_figure_does_not_draw():
    fig = plots.by_depth({r: _units(r) for r in ROLES}, "variance", replicates={1: {"vit": _units("vit", 1)}})
    plain = plots.by_depth({r: _units(r) for r in ROLES}, "variance")
    try:
        assert [a["lines"] - b["lines"] for a, b in zip(_counts(fig), _counts(plain))] == [0, 1, 0]
        assert "thin lines: seed 1" in _texts(fig)
    finally:
        plt.close(fig)
        plt.close(plain)
    with pytest.raises(ValueError, match=r"replicate seed 1 has \['preresnet'\]"):
        plots.noise_at({"vit": _noise("vit")}, 0.1, replicates={1: {"preresnet": _noise("vit")}})


def test_a_seed_with_nothing_to_draw_is_left_out_of_the_note():
    assert style.replicate_data({2: {"vit": 1}, 1: {}}, {"vit": 0}) == {2: {"vit": 1}}
    assert style.replicate_data(None, {"vit": 0}) == {}
    assert style.seeds_note([2, 1]) == "thin lines: seeds 1, 2" and style.seeds_note([3]) == "thin lines: seed 3"


def test_seed_zeros_final_page_draws_the_profiles_other_seeds_and_no_other_page_draws_any(monkeypatch):
    assert chapters.drawn_seeds("cpu") == ()  # today: seed 0 alone
    monkeypatch.setitem(base.REPLICATES, "cpu", (0, 1, 2))
    assert chapters.drawn_seeds("cpu") == (1, 2) == chapters.drawn_seeds("cpu", 0, "final")
    assert chapters.drawn_seeds("cpu", seed=1) == ()
    assert chapters.drawn_seeds("cpu", at="warmup") == () == chapters.drawn_seeds("cpu", seed=2, at="init")
    with pytest.raises(ValueError, match="no replicate seeds"):
        chapters.drawn_seeds("nope")
