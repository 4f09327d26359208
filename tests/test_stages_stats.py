"""Tests of lib.analysis.stages: the statistics of Chapter 3 (METHODS.md §6, §10).

Known answers on hand-built inputs: group contrasts of lesion outcomes whose per-unit accuracy
changes are set by construction (and an interval that collapses when every image agrees); a
block-diagonal CKA matrix with known within- and between-stage values; a matrix that depends
only on the distance between units, whose depth-matched contrast is exactly 0 while the plain
one is not; variance profiles with known build-ups and resets.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from lib import models
from lib.analysis.similarity import cka_from_batches
from lib.analysis.stages import (
    block_contrast,
    block_contrast_bootstrap,
    contrast_weights,
    costliest_by_stage,
    lesion_contrasts,
    middle_third,
    stage_layout,
    unit_table,
    variance_resets,
)

N = 20  # images of the synthetic lesion frames


def _lesion_frame(units: list[tuple[str, str, int, int]], losses: dict[str, list[int]]) -> pd.DataFrame:
    """A lesion(..., flips=True)-shaped frame: (name, kind, stage, index) per unit, lost images per unit."""
    rows = []
    stages = {}
    for name, _, stage, _ in units:
        stages.setdefault(stage, []).append(name)
    for name, kind, stage, index in units:
        members = stages[stage]
        first, last = name == members[0], name == members[-1]
        lost = sorted(losses.get(name, []))
        rows.append(dict(name=name, kind=kind, stage=stage, index=index, depth=index / 20,
                         position="only" if first and last else "start" if first else "end" if last else "middle",
                         first_in_stage=first, last_in_stage=last, delta_accuracy=-len(lost) / N,
                         delta_accuracy_low=math.nan, delta_accuracy_high=math.nan, lost=lost, gained=[]))
    frame = pd.DataFrame(rows)
    frame.attrs.update(images=N)
    return frame


# An AlterNet-like layout: stage 1 convs; stage 2 convs then an MSA; stage 3 conv, MSA, conv, MSA.
LAYOUT = [
    ("s1.1", "conv", 1, 2), ("s1.2", "conv", 1, 3),
    ("s2.1", "conv", 2, 5), ("s2.2", "conv", 2, 6), ("s2.3", "msa", 2, 7),
    ("s3.1", "conv", 3, 9), ("s3.2", "msa", 3, 10), ("s3.3", "conv", 3, 11), ("s3.4", "msa", 3, 12),
]


# --- lesion contrasts -------------------------------------------------------------------------


def test_middle_third_picks_the_central_items():
    assert [i for i, m in enumerate(middle_third(12)) if m] == [4, 5, 6, 7]
    assert middle_third(4) == [False, True, True, False]
    assert middle_third(3) == [False, True, False]
    assert middle_third(2) == [False, False] and middle_third(0) == []


def test_contrast_weights_select_the_stated_groups():
    frame = _lesion_frame(LAYOUT, {})
    end_msa = contrast_weights(frame, "end_msa_vs_middle")
    # A = stage-end MSAs s2.3, s3.4; B = mid-stage units s2.2, s3.2, s3.3
    expected = {"s2.3": 0.5, "s3.4": 0.5, "s2.2": -1 / 3, "s3.2": -1 / 3, "s3.3": -1 / 3}
    assert end_msa.tolist() == pytest.approx([expected.get(n, 0.0) for n in frame["name"]])
    like = contrast_weights(frame, "end_msa_vs_other_msa")  # MSAs s2.3 and s3.4 end their stages, s3.2 does not
    assert like.tolist() == pytest.approx([{"s2.3": 0.5, "s3.4": 0.5, "s3.2": -1.0}.get(n, 0.0) for n in frame["name"]])
    start = contrast_weights(frame, "start_vs_rest")
    # three stages: +1/3 on each start, −1/3 spread over the rest of its stage
    expected = {"s1.1": 1 / 3, "s1.2": -1 / 3, "s2.1": 1 / 3, "s2.2": -1 / 6, "s2.3": -1 / 6,
                "s3.1": 1 / 3, "s3.2": -1 / 9, "s3.3": -1 / 9, "s3.4": -1 / 9}
    assert start.tolist() == pytest.approx([expected[n] for n in frame["name"]])
    middle = contrast_weights(frame, "middle_msa_vs_other_msa")  # MSAs s2.3, s3.2, s3.4: middle third is s3.2
    assert middle.tolist() == pytest.approx([{"s3.2": 1.0, "s2.3": -0.5, "s3.4": -0.5}.get(n, 0.0) for n in frame["name"]])
    for name in ("end_msa_vs_other_msa", "end_msa_vs_middle", "start_vs_rest", "middle_msa_vs_other_msa"):
        w = contrast_weights(frame, name)
        assert w[w > 0].sum().item() == pytest.approx(1.0) and w[w < 0].sum().item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="unknown contrast"):
        contrast_weights(frame, "nope")


def test_lesion_contrasts_equal_differences_of_group_means():
    # Δaccuracy by construction: each listed unit loses that many of the 20 images.
    losses = {"s2.3": range(0, 8), "s3.4": range(4, 10), "s2.2": range(0, 2), "s3.2": range(10, 13),
              "s3.3": [], "s1.1": range(0, 5), "s2.1": range(5, 15), "s3.1": range(0, 1)}
    frame = _lesion_frame(LAYOUT, {k: list(v) for k, v in losses.items()})
    out = lesion_contrasts(frame, bootstrap=500, seed=0).set_index("contrast")
    d = dict(zip(frame["name"], frame["delta_accuracy"]))
    end_vs_middle = (d["s2.3"] + d["s3.4"]) / 2 - (d["s2.2"] + d["s3.2"] + d["s3.3"]) / 3
    start_vs_rest = ((d["s1.1"] - d["s1.2"]) + (d["s2.1"] - (d["s2.2"] + d["s2.3"]) / 2)
                     + (d["s3.1"] - (d["s3.2"] + d["s3.3"] + d["s3.4"]) / 3)) / 3
    middle_msa = d["s3.2"] - (d["s2.3"] + d["s3.4"]) / 2
    assert out.loc["end_msa_vs_other_msa", "value"] == pytest.approx(-middle_msa, abs=1e-12)  # the same three MSAs
    assert out.loc["end_msa_vs_middle", "value"] == pytest.approx(end_vs_middle, abs=1e-12)
    assert out.loc["start_vs_rest", "value"] == pytest.approx(start_vs_rest, abs=1e-12)
    assert out.loc["middle_msa_vs_other_msa", "value"] == pytest.approx(middle_msa, abs=1e-12)
    assert (out["lo"] <= out["value"]).all() and (out["value"] <= out["hi"]).all()
    assert out.loc["end_msa_vs_middle", ["units_a", "units_b"]].tolist() == [2, 3]


def test_a_contrast_on_which_every_image_agrees_has_a_zero_width_interval():
    # every image is lost by the end MSA and by nothing else: the contrast is −1 on every image
    layout = [("a", "conv", 1, 1), ("b", "conv", 1, 2), ("c", "msa", 1, 3)]
    frame = _lesion_frame(layout, {"c": list(range(N))})
    row = lesion_contrasts(frame, bootstrap=200).set_index("contrast").loc["end_msa_vs_middle"]
    assert row["value"] == row["lo"] == row["hi"] == -1.0


def test_undefined_contrasts_are_nan_with_empty_groups():
    # a CNN: no MSAs, so neither MSA contrast exists; one unit per stage: no start contrast
    frame = _lesion_frame([("a", "conv", 1, 1), ("b", "conv", 2, 3)], {"a": [0, 1]})
    out = lesion_contrasts(frame, bootstrap=50).set_index("contrast")
    assert out[["value", "lo", "hi"]].isna().all().all()
    assert (out[["units_a", "units_b"]] == 0).all().all()


def test_lesion_contrasts_are_seeded():
    frame = _lesion_frame(LAYOUT, {"s2.3": [0, 3, 5], "s3.2": [1, 2], "s2.1": [7, 8, 9, 11]})
    first, again = lesion_contrasts(frame, seed=1), lesion_contrasts(frame, seed=1)
    other = lesion_contrasts(frame, seed=2)
    pd.testing.assert_frame_equal(first, again)
    assert not first[["lo", "hi"]].equals(other[["lo", "hi"]])


def test_costliest_by_stage_names_the_unit_whose_removal_costs_most():
    frame = _lesion_frame(LAYOUT, {"s1.1": [0, 1, 2], "s1.2": [0], "s2.3": [0, 1, 2, 3], "s2.1": [4],
                                   "s3.1": [0, 1], "s3.4": [2, 3]})  # stage 3: a tie, neither a win nor a loss
    table = costliest_by_stage(frame).set_index("stage")
    assert table["costliest"].tolist() == ["s1.1", "s2.3", "s3.1"]
    assert table["start_costliest"].tolist()[:2] == [1.0, 0.0] and math.isnan(table.loc[3, "start_costliest"])
    assert table["tie"].tolist() == [False, False, True]
    assert table.loc[2, "costliest_position"] == "end" and table.loc[2, "costliest_kind"] == "msa"
    assert table.loc[2, "costliest_delta"] == pytest.approx(-4 / N)
    single = costliest_by_stage(_lesion_frame([("a", "conv", 1, 1)], {}))
    assert math.isnan(single["start_costliest"].iloc[0])


# --- CKA block structure ----------------------------------------------------------------------


STAGES = [0, 1, 1, 1, 2, 2, 3, 3, 3]  # stem, then stages of 3, 2 and 3 units


def test_block_contrast_of_a_block_diagonal_matrix():
    stages = torch.tensor(STAGES)
    cka = torch.full((len(STAGES), len(STAGES)), 0.2, dtype=torch.float64)
    cka[stages[:, None] == stages[None, :]] = 0.9
    cka[0, :] = cka[:, 0] = 0.05  # the stem is left out: its value must not matter
    cka.fill_diagonal_(1.0)
    assert block_contrast(cka, STAGES) == pytest.approx(0.7, abs=1e-12)
    assert block_contrast(cka, STAGES, matched=True) == pytest.approx(0.7, abs=1e-12)


def test_matched_contrast_is_zero_when_cka_depends_only_on_distance():
    # CKA decays with the distance between units and ignores stages: no block structure. The
    # plain contrast is still positive (within-stage pairs are closer); the matched one is 0.
    i = torch.arange(len(STAGES), dtype=torch.float64)
    cka = torch.exp(-(i[:, None] - i[None, :]).abs() / 3)
    assert block_contrast(cka, STAGES) > 0.2
    assert block_contrast(cka, STAGES, matched=True) == pytest.approx(0.0, abs=1e-12)


def test_block_contrast_of_a_single_stage_is_nan_and_bad_shapes_are_rejected():
    assert math.isnan(block_contrast(torch.eye(4, dtype=torch.float64), [0, 1, 1, 1]))
    with pytest.raises(ValueError, match="cka must be"):
        block_contrast(torch.eye(3, dtype=torch.float64), STAGES)


def test_block_contrast_bootstrap_over_identical_batches_has_zero_width():
    x = torch.randn(9, 12, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grams = torch.stack([f @ f.T for f in x])
    from lib.analysis.similarity import unbiased_hsic

    hsic = unbiased_hsic(grams).expand(6, 9, 9).clone()  # six identical mini-batches
    value, lo, hi = block_contrast_bootstrap(hsic, STAGES, bootstrap=100, seed=0)
    assert value == pytest.approx(block_contrast(cka_from_batches(hsic[:1]), STAGES), abs=1e-12)
    assert lo == pytest.approx(value, abs=1e-12) and hi == pytest.approx(value, abs=1e-12)


def test_block_contrast_bootstrap_is_seeded_and_brackets_the_value():
    gen = torch.Generator().manual_seed(1)
    from lib.analysis.similarity import unbiased_hsic

    hsic = torch.stack([unbiased_hsic(torch.stack([f @ f.T for f in torch.randn(9, 12, 5, generator=gen, dtype=torch.float64)]))
                        for _ in range(8)])
    first = block_contrast_bootstrap(hsic, STAGES, bootstrap=200, seed=3)
    assert first == block_contrast_bootstrap(hsic, STAGES, bootstrap=200, seed=3)
    assert first != block_contrast_bootstrap(hsic, STAGES, bootstrap=200, seed=4)
    assert first[1] <= first[0] <= first[2]
    assert math.isnan(block_contrast_bootstrap(hsic, STAGES, bootstrap=0)[1])


def test_unit_table_lists_every_unit_with_its_stage():
    model = models.create("alternet50_smoke")
    table = unit_table(model)
    assert table["name"].tolist() == [u.name for u in models.units(model)]
    assert table["stage"].tolist() == [u.stage for u in models.units(model)]
    assert table["depth"].iloc[-1] == 1.0 and table["index"].tolist() == list(range(len(table)))
    layout = stage_layout({"alternet": table}).set_index("stage")
    # alternet50_smoke: stages of 2, 2, 2, 4 units; MSAs end stages 2-4, stage 4 alternates
    assert layout["units"].tolist() == [2, 2, 2, 4] and layout["removable"].tolist() == [1, 1, 1, 3]
    assert layout["msa"].tolist() == [0, 1, 1, 2] and layout["last"].tolist() == ["conv", "msa", "msa", "msa"]


# --- variance within stages -------------------------------------------------------------------


def test_variance_resets_compare_each_stage_start_with_the_previous_stage_end():
    # stem; stage 1: down, 0.5, 0.8; stage 2: down, 0.3 (below 0.8: reset), 0.2; stage 3: down,
    # 0.21 (above 0.2: no reset); stage 4: down, 0.15 whose interval overlaps 0.21's (no reset).
    rows = [("stem", 0, True, 2.0), ("a0", 1, True, 1.0), ("a1", 1, False, 0.5), ("a2", 1, False, 0.8),
            ("b0", 2, True, 0.6), ("b1", 2, False, 0.3), ("b2", 2, False, 0.2), ("c0", 3, True, 0.1),
            ("c1", 3, False, 0.21), ("d0", 4, True, 0.1), ("d1", 4, False, 0.15)]
    frame = pd.DataFrame([dict(name=n, stage=s, downsample=d, index=i, value=v, lo=v - 0.02, hi=v + 0.02)
                          for i, (n, s, d, v) in enumerate(rows)])
    frame.loc[frame["name"] == "d1", "hi"] = 0.2  # reaches into c1's interval [0.19, 0.23]
    table = variance_resets(frame, at="preserving").set_index("stage")
    assert table.index.tolist() == [2, 3, 4]  # stage 1 follows only the stem
    assert table["previous_end"].tolist() == ["a2", "b2", "c1"] and table["start"].tolist() == ["b1", "c1", "d1"]
    assert table["resets"].tolist() == [True, False, False]
    assert table.loc[2, "ratio"] == pytest.approx(0.3 / 0.8)
    assert variance_resets(frame[frame["stage"] <= 1]).empty
    # where the paper reads the drop: the downsampling block that opens each stage (0.6 < 0.8, 0.1 < 0.2, 0.1 < 0.21)
    down = variance_resets(frame).set_index("stage")
    assert down["start"].tolist() == ["b0", "c0", "d0"] and down["resets"].tolist() == [True, True, True]
    with pytest.raises(ValueError, match=r"at='end' .*valid: \['downsampling', 'preserving'\]"):
        variance_resets(frame, at="end")
