"""Tables of trained runs for the chapters: what each model is, how well and how fast it trained."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    import pandas as pd

def table(trained_models: dict[str, nn.Module]) -> "pd.DataFrame":
    """One row per trained model: role, model, parameters, test accuracy/NLL/ECE, epochs, training time."""
    import pandas as pd

    rows = []
    for role, model in trained_models.items():
        run = model.book_run
        final = run["test"]["final"]
        rows.append({
            "role": role,
            "model": run["spec"]["model"],
            "parameters (M)": run["parameters"] / 1e6,
            "accuracy (%)": 100 * final["accuracy"],
            "NLL": final["nll"],
            "ECE (%)": 100 * final["ece"],
            "epochs": run["spec"]["recipe"]["epochs"],
            "train images": run["train_images"],
            "training time (min)": run["provenance"]["wall_seconds"] / 60,
        })
    return pd.DataFrame(rows)


def compare_training(trained_models: dict[str, nn.Module]) -> "pd.DataFrame":
    """How well each model trained, against the first one: test accuracy and NLL, last-epoch training loss.

    The training loss is the recipe's (label-smoothed, on augmented batches), averaged over the
    last epoch, as the paper's "NLL_train" (methods.md §11).

    Returns:
        One row per model: ``model``, ``accuracy (%)``, ``test NLL``, ``train loss``,
        ``Δaccuracy (points)`` and ``Δtrain loss`` relative to the first row.
    """
    import pandas as pd

    rows = []
    for name, model in trained_models.items():
        run = model.book_run
        rows.append({"model": name, "accuracy (%)": 100 * run["test"]["final"]["accuracy"],
                     "test NLL": run["test"]["final"]["nll"], "train loss": run["history"][-1]["train_loss"]})
    frame = pd.DataFrame(rows)
    frame["Δaccuracy (points)"] = frame["accuracy (%)"] - frame["accuracy (%)"].iloc[0]
    frame["Δtrain loss"] = frame["train loss"] - frame["train loss"].iloc[0]
    return frame


def curves(trained_models: dict[str, nn.Module]) -> "pd.DataFrame":
    """The per-epoch training history of each model, tidy (role, epoch, lr, train_loss, test_accuracy, …)."""
    import pandas as pd

    return pd.DataFrame([{"role": role, **h} for role, m in trained_models.items() for h in m.book_run["history"]])
