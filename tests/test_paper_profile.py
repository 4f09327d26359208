"""The paper profile, honestly sized: one training step of each paper-size model runs here, and the
runner estimates the full profile's time instead of starting it on a CPU."""

import math

import pytest
import torch

from lib import book, cost, profiles


@pytest.mark.slow
def test_one_paper_size_step_of_each_model_runs_and_is_estimated():
    roles = tuple(profiles.get("paper").roles)
    est = cost.estimate_training_seconds("paper", roles, batch=2, steps=1)
    assert set(est) == set(roles)
    assert all(math.isfinite(s) and s > 0 for s in est.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the paper profile really runs")
def test_paper_runner_on_cpu_prints_an_estimate_and_stops(capsys, monkeypatch):
    monkeypatch.setattr(book, "estimate_training_seconds", lambda profile: {"resnet": 8.6e6, "vit": 3.0e7})
    assert book.run("paper") == 0
    out = capsys.readouterr().out
    assert "needs a GPU" in out and "--yes" in out and "days" in out


def test_the_chapters_training_runs_under_paper_are_counted_as_gpu_md_quotes_them():
    table = cost.chapter_cost({role: 1.0 for role in ("resnet", "vit", "alternet", "preresnet")}, "paper").set_index("chapter")
    assert table["runs"].to_dict() == {"00_cast": 3, "01_flat_losses": 6, "02_low_pass_msa": 3, "03_stages_in_series": 3,
                                       "04_alternet": 18, "book": 22}
    # 01: ResNet, ViT, ViT local 3×3 and 5×5 (1 each), ViT on 2 % and 10 %; 04: 3 roles × (3 seeds × 10 % + 2 seeds × 100 %) + 3 build-up
    assert table["full-run equivalents"].round(2).to_dict() == {"00_cast": 3.0, "01_flat_losses": 4.12, "02_low_pass_msa": 3.0,
                                                              "03_stages_in_series": 3.0, "04_alternet": 9.9, "book": 12.92}
    assert (table["hours"] == table["full-run equivalents"]).all()  # one hour a full run: hours are equivalents


def test_chapter_cost_without_a_role_names_the_roles_it_needs():
    with pytest.raises(ValueError, match=r"no cost for role\(s\) \['preresnet'\]; per_run_hours needs \['alternet', 'preresnet', 'vit'\]"):
        cost.chapter_cost({"resnet": 1.0, "vit": 1.0, "alternet": 1.0}, "paper")


def test_cost_counts_flops_and_times_steps_of_the_recipe():
    table = cost.cost("smoke", roles=("vit",), batch=2, steps=1)
    row = table.iloc[0]
    assert row["model"] == "vit_smoke" and row["steps per run"] == 500 // 50 * 2  # the smoke profile's 1 % of 50,000
    assert row["GFLOP per image"] > 0 and row["seconds per step"] > 0
    assert row["hours per run"] == pytest.approx(row["seconds per step"] * row["steps per run"] / 3600)
    with pytest.raises(ValueError, match="batch and steps must be positive"):
        cost.step_seconds("vit", "smoke", batch=0)

