"""Metrics against hand-computed answers."""

import math

import pytest
import torch

from lib import metrics


def test_accuracy_and_nll_known_values():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    assert metrics.accuracy(logits, labels) == pytest.approx(2 / 3)
    p_right = math.exp(2) / (math.exp(2) + 1)
    expected = -(2 * math.log(p_right) + math.log(1 - p_right)) / 3
    assert metrics.nll(logits, labels) == pytest.approx(expected, rel=1e-12)


def test_ece_is_zero_when_confidence_matches_accuracy():
    # four predictions at confidence 0.75, three of them right: perfectly calibrated
    p = 0.75
    logits = torch.log(torch.tensor([[p, 1 - p]] * 4))
    labels = torch.tensor([0, 0, 0, 1])
    assert metrics.ece(logits, labels) == pytest.approx(0.0, abs=1e-7)  # float32 logits


def test_ece_known_gap():
    # all confident at 0.9 and all wrong: ECE = 0.9
    logits = torch.log(torch.tensor([[0.9, 0.1]] * 5))
    labels = torch.ones(5, dtype=torch.long)
    assert metrics.ece(logits, labels) == pytest.approx(0.9, rel=1e-6)


def test_evaluate_rejects_mismatched_lengths():
    model = torch.nn.Flatten()
    with pytest.raises(ValueError, match="differ in length"):
        metrics.evaluate(model, torch.zeros(3, 1, 1, 2), torch.zeros(2, dtype=torch.long))
