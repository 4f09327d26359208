"""The paper profile, honestly sized: one training step of each paper-size model runs here, and the
runner estimates the full profile's time instead of starting it on a CPU."""

import math

import pytest
import torch

from lib import book, profiles


@pytest.mark.slow
def test_one_paper_size_step_of_each_model_runs_and_is_estimated():
    roles = tuple(profiles.get("paper").roles)
    est = book.estimate_training_seconds("paper", roles, batch=2, steps=1)
    assert set(est) == set(roles)
    assert all(math.isfinite(s) and s > 0 for s in est.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the paper profile really runs")
def test_paper_runner_on_cpu_prints_an_estimate_and_stops(capsys, monkeypatch):
    monkeypatch.setattr(book, "estimate_training_seconds", lambda profile: {"resnet": 8.6e6, "vit": 3.0e7})
    assert book.run("paper") == 0
    out = capsys.readouterr().out
    assert "needs a GPU" in out and "--yes" in out and "days" in out
