"""Tests of lib.analysis.lesion: removing one residual unit, no retraining (METHODS.md §10).

Known answers: a unit whose branch outputs exactly zero is the identity, so removing it
changes nothing (Δ = 0 exactly, and a paired bootstrap interval of [0, 0]); a unit with a live
branch does change the logits. The unit-view sweep is checked against the lesion applied to
``model.forward`` itself and scored by ``lib.metrics``, and the model must come out
bit-identical.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from lib import models
from lib.analysis.lesion import _paired_bootstrap, delta_correct, lesion, lesionable, lesioned
from lib.data import normalize
from lib.metrics import evaluate, predict

SMOKE = ["resnet50_smoke", "vit_smoke", "alternet50_smoke"]
# (model, unit) pairs covering every kind of residual unit: post-activation bottleneck, ViT MSA
# and MLP halves, AlterNet's MSA block and pre-activation bottleneck.
ZEROABLE = [
    ("resnet50_smoke", "layer2.1"),
    ("vit_smoke", "blocks.0.attn"),
    ("vit_smoke", "blocks.1.mlp"),
    ("alternet50_smoke", "stages.1.blocks.1"),
    ("alternet50_smoke", "stages.3.blocks.2"),
]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=_gen(0))
    labels = torch.randint(0, 10, (16,), generator=_gen(1))
    return images, labels


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create(name)


def _zero_branch(model: torch.nn.Module, name: str) -> None:
    """Zeroes the last layer of the unit's residual branch, so that f(x) = 0 exactly."""
    module = model.get_submodule(name)
    last = {
        "Bottleneck": "bn3",  # post-activation: BN after the last conv, then + x, then ReLU
        "PreActBottleneck": "conv3",
        "MSABlock": "attn.proj",
        "Attention": "proj",  # a ViT block's attention half
        "Mlp": "fc2",  # a ViT block's MLP half
    }[type(module).__name__]
    with torch.no_grad():
        for p in module.get_submodule(last).parameters():
            p.zero_()


# --- which units, and where -------------------------------------------------------------------


@pytest.mark.parametrize("name", SMOKE)
def test_only_shape_preserving_units_are_lesioned(name, data):
    model = _model(name)
    frame = lesion(model, *data, bootstrap=0, progress=False)
    every = models.units(model)
    expected = [u.name for u in every if u.kind != "stem" and not u.downsample]
    assert list(frame["name"]) == expected == [u.name for u in lesionable(model)]
    assert "stem" not in set(frame["kind"])
    index = {u.name: i for i, u in enumerate(every)}
    assert list(frame["index"]) == [index[n] for n in frame["name"]]
    assert frame["depth"].tolist() == pytest.approx([index[n] / (len(every) - 1) for n in frame["name"]])
    if name == "vit_smoke":  # both halves of every block
        assert list(frame["kind"]) == ["msa", "mlp", "msa", "mlp"]


def test_positions_mark_the_first_and_last_shape_preserving_unit_of_each_stage(data):
    # Stage 1: blocks 1, 2 lesionable; stage 2: block 1 only; stage 3: none; stage 4: blocks 1-3.
    model = models.create("resnet50_smoke", depth=(3, 2, 1, 4))
    frame = lesion(model, *data, bootstrap=0, progress=False).set_index("name")
    assert frame["position"].to_dict() == {
        "layer1.1": "start",
        "layer1.2": "end",
        "layer2.1": "only",
        "layer4.1": "start",
        "layer4.2": "middle",
        "layer4.3": "end",
    }
    assert frame["first_in_stage"].tolist() == [True, False, True, True, False, False]
    assert frame["last_in_stage"].tolist() == [False, True, True, False, False, True]
    vit = lesion(_model("vit_smoke"), *data, bootstrap=0, progress=False)
    assert vit["position"].tolist() == ["start", "middle", "middle", "end"]


# --- known answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, unit", ZEROABLE)
def test_lesioning_a_zero_branch_changes_nothing(name, unit, data):
    model = _model(name)
    _zero_branch(model, unit)
    row = lesion(model, *data, names=[unit], bootstrap=200, progress=False).iloc[0]
    assert row["accuracy"] == row["intact_accuracy"] and row["nll"] == row["intact_nll"]
    assert row["delta_accuracy"] == 0.0 and row["delta_nll"] == 0.0
    # paired resampling: intact and lesioned agree on every image, so every resample agrees
    assert row["delta_accuracy_low"] == row["delta_accuracy_high"] == 0.0
    intact = predict(model, data[0])
    with lesioned(model, unit):
        assert torch.equal(predict(model, data[0]), intact)


@pytest.mark.parametrize("name", SMOKE)
def test_lesioning_a_live_branch_changes_the_logits(name, data):
    model = _model(name)
    intact = predict(model, data[0])
    frame = lesion(model, *data, bootstrap=0, progress=False)
    assert (frame["delta_nll"] != 0).all()
    for unit in frame["name"]:
        with lesioned(model, unit):
            assert not torch.allclose(predict(model, data[0]), intact, rtol=1e-4, atol=1e-5), unit


@pytest.mark.parametrize("name", SMOKE)
def test_lesion_sweep_matches_the_lesioned_model_scored_by_lib_metrics(name, data):
    # The sweep runs the unit view; this runs model.forward with the branch removed.
    model = _model(name)
    frame = lesion(model, *data, batch_size=8, bootstrap=0, progress=False)
    intact = evaluate(model, *data)
    assert frame["intact_accuracy"].tolist() == pytest.approx([intact["accuracy"]] * len(frame), abs=1e-12)
    assert frame["intact_nll"].tolist() == pytest.approx([intact["nll"]] * len(frame), rel=1e-5)
    for row in frame.itertuples():
        with lesioned(model, row.name):
            scores = evaluate(model, *data)
        assert row.accuracy == pytest.approx(scores["accuracy"], abs=1e-12), row.name
        assert row.nll == pytest.approx(scores["nll"], rel=1e-5), row.name
        assert row.delta_accuracy == pytest.approx(row.accuracy - row.intact_accuracy, abs=1e-12)


def test_post_activation_units_receive_non_negative_inputs(data):
    # Why removing a post-activation bottleneck's branch, relu(x + 0), is the identity.
    model = _model("resnet50_smoke").eval()
    maps = models.feature_maps(model, data[0])
    names = {u.name for u in lesionable(model)}
    inputs = [maps[i - 1][1] for i, (unit, _) in enumerate(maps) if unit.name in names]
    assert inputs and all((x >= 0).all() for x in inputs)


def test_lesion_leaves_the_model_bit_identical(data):
    model = _model("alternet50_smoke")  # train mode, as create() returns it
    state = {k: v.clone() for k, v in model.state_dict().items()}
    logits = predict(model, data[0])
    lesion(model, *data, bootstrap=10, progress=False)
    with pytest.raises(RuntimeError, match="boom"), lesioned(model, *[u.name for u in lesionable(model)]):
        raise RuntimeError("boom")
    after = model.state_dict()
    assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)
    assert model.training
    assert not any("forward" in m.__dict__ for m in model.modules())
    assert torch.equal(predict(model, data[0]), logits)


def test_lesioned_restores_a_forward_that_was_already_patched(data):
    model = _model("resnet50_smoke")
    block = model.get_submodule("layer2.1")
    sentinel = block.forward  # a bound method, now also an instance attribute
    block.forward = sentinel
    with lesioned(model, "layer2.1"):
        assert block.forward is not sentinel
    assert block.__dict__["forward"] is sentinel


# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_a_different_seed_differs(data):
    model = _model("resnet50_smoke")
    first = lesion(model, *data, bootstrap=100, seed=3, progress=False)
    again = lesion(model, *data, bootstrap=100, seed=3, progress=False)
    other = lesion(model, *data, bootstrap=100, seed=4, progress=False)
    pd.testing.assert_frame_equal(first, again)
    bounds = ["delta_nll_low", "delta_nll_high"]
    assert not first[bounds].equals(other[bounds])
    assert (first["delta_nll_low"] <= first["delta_nll"]).all() and (first["delta_nll"] <= first["delta_nll_high"]).all()
    no_interval = lesion(model, *data, bootstrap=0, progress=False)
    assert no_interval["delta_accuracy_low"].isna().all()


def test_bootstrap_interval_has_the_normal_width():
    # Mean of N standard normal differences: the 95 % interval is ≈ ±1.96/√N wide. With 2,000
    # resamples the percentile ends carry a few per cent of noise; 15 % is a loose bound.
    n = 2000
    diffs = torch.randn(1, n, generator=_gen(2), dtype=torch.float64)
    low, high = _paired_bootstrap(diffs, bootstrap=2000, seed=0)[:, 0].tolist()
    mean = diffs.mean().item()
    assert low < mean < high
    assert high - low == pytest.approx(2 * 1.96 / n**0.5, rel=0.15)
    constant = _paired_bootstrap(torch.full((1, 50), 0.25, dtype=torch.float64), bootstrap=50, seed=0)
    torch.testing.assert_close(constant, torch.full((2, 1), 0.25, dtype=torch.float64))


def test_a_subset_of_units_gives_the_same_rows_as_the_full_sweep(data):
    model = _model("vit_smoke")
    full = lesion(model, *data, bootstrap=100, progress=False)
    part = lesion(model, *data, names=["blocks.1.attn"], bootstrap=100, progress=False)
    pd.testing.assert_frame_equal(part, full[full["name"] == "blocks.1.attn"].reset_index(drop=True))


def test_uint8_and_normalised_images_give_the_same_frame(data):
    model = _model("vit_smoke")
    images, labels = data
    pd.testing.assert_frame_equal(
        lesion(model, images, labels, bootstrap=50, progress=False),
        lesion(model, normalize(images, "cifar10"), labels, bootstrap=50, progress=False),
    )


# --- per-image flips -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SMOKE)
def test_flips_record_which_images_each_lesion_turned_wrong_or_right(name, data):
    model = _model(name)
    plain = lesion(model, *data, bootstrap=20, progress=False)
    frame = lesion(model, *data, bootstrap=20, progress=False, flips=True)
    pd.testing.assert_frame_equal(frame[plain.columns], plain)  # the same numbers, two more columns
    intact = predict(model, data[0]).argmax(1) == data[1]
    for row in frame.itertuples():
        with lesioned(model, row.name):
            after = predict(model, data[0]).argmax(1) == data[1]
        assert row.lost == torch.nonzero(intact & ~after).flatten().tolist()
        assert row.gained == torch.nonzero(~intact & after).flatten().tolist()
    delta = delta_correct(frame)
    assert delta.shape == (len(frame), len(data[0]))
    assert delta.mean(dim=1).tolist() == pytest.approx(frame["delta_accuracy"].tolist(), abs=1e-12)


def test_flips_survive_the_analysis_cache(data):
    from lib.cache import _decode, _encode

    frame = lesion(_model("resnet50_smoke"), *data, bootstrap=0, progress=False, flips=True)
    back = _decode(json.loads(json.dumps(_encode(frame))))
    torch.testing.assert_close(delta_correct(back), delta_correct(frame))
    with pytest.raises(ValueError, match="flips=True"):
        delta_correct(frame.drop(columns=["lost"]))


# --- bad inputs -------------------------------------------------------------------------------


def test_lesion_rejects_units_that_cannot_be_removed(data):
    model = _model("resnet50_smoke")
    for name in ("stem", "layer1.0", "layer9.9"):
        with pytest.raises(ValueError, match="cannot lesion"):
            lesion(model, *data, names=[name], progress=False)
        with pytest.raises(ValueError, match="cannot lesion"), lesioned(model, name):
            pass
    with pytest.raises(ValueError, match="labels"):
        lesion(model, data[0], data[1][:-1], progress=False)
