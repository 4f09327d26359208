"""lib.models.summary: a model's units as a table, and models side by side stage by stage."""

import pytest
import torch

from lib import models
from lib.models.alternet import msa_slots
from lib.models.summary import stage_pattern


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["alternet50_smoke", "preresnet50_smoke", "resnet50_smoke", "vit_smoke"])
def test_parameters_add_up_to_the_models(name):
    model = models.create(name)
    table = models.blocks_table(model)
    assert table["parameters"].sum() == _count(model)
    assert table["kind"].iloc[-1] == "head" and table["parameters"].iloc[-1] > 0
    assert list(table["unit"].iloc[:-1]) == [u.name for u in models.units(model)]


def test_alternet_has_msa_blocks_exactly_where_msa_slots_puts_them():
    model = models.create("alternet50_smoke")
    cfg = model.book_config
    table = models.blocks_table(model)
    for stage, (depth, msa) in enumerate(zip(cfg["depth"], cfg["msa_per_stage"]), start=1):
        blocks = table[table["stage"] == stage]
        assert list(blocks["position"]) == list(range(depth))
        assert list(blocks.loc[blocks["kind"] == "msa", "position"]) == msa_slots(depth, msa)


def test_widths_and_resolutions_follow_the_stages():
    model = models.create("alternet50_smoke")
    table = models.blocks_table(model).set_index("unit")
    widths = [4 * w for w in model.book_config["width"]]
    for stage, (width, side) in enumerate(zip(widths, (32, 16, 8, 4))):
        row = table.loc[f"stages.{stage}.blocks.0"]
        assert row["channels out"] == width and row["resolution"] == f"{side}×{side}" and row["downsample"]
    assert table.loc["head", "channels out"] == 10


def test_table_leaves_the_model_untouched():
    model = models.create("preresnet50_smoke").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    models.blocks_table(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics included


def test_stage_table_puts_alternet_beside_its_baseline():
    tables = {"AlterNet": models.blocks_table(models.create("alternet50_smoke")),
              "Pre-act ResNet": models.blocks_table(models.create("preresnet50_smoke"))}
    side = models.stage_table(tables)
    assert list(side.index) == ["stem", "stage 1", "stage 2", "stage 3", "stage 4", "head", "total"]
    assert side.loc["stage 4", ("AlterNet", "blocks")] == "Conv → MSA → Conv → MSA"
    assert side.loc["stage 4", ("Pre-act ResNet", "blocks")] == "Conv ×4"
    assert side.loc["total", ("AlterNet", "MSAs")] == 4 and side.loc["total", ("Pre-act ResNet", "MSAs")] == 0
    for label, table in tables.items():
        assert side.loc["total", (label, "parameters")] == table["parameters"].sum()
        assert side[(label, "parameters")].iloc[:-1].sum() == table["parameters"].sum()


def test_stage_pattern_merges_runs_of_one_kind():
    assert stage_pattern(["conv"] * 5 + ["msa"]) == "Conv ×5 → MSA"
    assert stage_pattern(["conv", "msa", "conv", "msa"]) == "Conv → MSA → Conv → MSA"
    assert stage_pattern([]) == ""
