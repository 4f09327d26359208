"""Accuracy, NLL and expected calibration error, and ``evaluate`` (methods.md §2, "Evaluation").

One function scores a model for the training engine and for every analysis alike
(``lib.runs.evaluate`` is this function), so a number in one chapter means the same in another.
All metrics are fractions (accuracy 0.912, not 91.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ECE_BINS = 10  # the paper's ECE uses 10 equal-width confidence bins


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose arg-max logit is the label."""
    return (logits.argmax(dim=1) == labels).double().mean().item()


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the labels, through ``log_softmax`` (never ``inf``)."""
    return F.cross_entropy(logits.double(), labels).item()


def ece(logits: torch.Tensor, labels: torch.Tensor, *, bins: int = ECE_BINS) -> float:
    """Expected calibration error: Σ_b (n_b/N)·|accuracy_b − confidence_b| over confidence bins."""
    probs = logits.double().softmax(dim=1)
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == labels).double()
    # bin b holds confidences in (b/bins, (b+1)/bins]; confidence is never below 1/classes > 0
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1
    gap = torch.zeros(bins, dtype=torch.float64)
    gap.index_add_(0, which, correct - confidence)
    return (gap.abs().sum() / len(labels)).item()


def scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``{"accuracy", "nll", "ece"}`` of a block of logits."""
    return {"accuracy": accuracy(logits, labels), "nll": nll(logits, labels), "ece": ece(logits, labels)}


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Logits (fp32, CPU) of ``model`` in eval mode on ``images``, batch by batch.

    uint8 images are normalised with the statistics recorded on the model
    (``model.book_dataset``, CIFAR-10 by default); float images are taken as normalised.
    The model's train/eval mode is restored afterwards.
    """
    from lib.data import normalize

    dataset = getattr(model, "book_dataset", "cifar10")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        out = []
        for start in range(0, len(images), batch_size):
            batch = normalize(images[start : start + batch_size], dataset).to(device)
            out.append(model(batch).float().cpu())
        return torch.cat(out) if out else torch.empty(0)
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500) -> dict[str, float]:
    """Accuracy, NLL and ECE of ``model`` (eval mode) on ``images``/``labels`` as fractions."""
    if len(images) != len(labels):
        raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
    if len(images) == 0:
        raise ValueError("evaluate() needs at least one image")
    return scores(predict(model, images, batch_size=batch_size), labels.cpu())
