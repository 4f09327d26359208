"""Architecture tables: a model as its units, and models side by side stage by stage (Chapter 4).

Park & Kim (2022) draw AlterNet beside its CNN (Fig 11; methods.md §7): the same pre-activation
ResNet with some blocks at the ends of stages replaced by MSA blocks. :func:`blocks_table` lists a
model's units (``lib.models.units``) with their kind, position in the stage, widths, output
resolution and parameters, plus one row for the head, so the parameters add up to the model's.
:func:`stage_table` condenses that to one row per stage for several models, e.g. "Conv ×5 → MSA".
"""

from __future__ import annotations

import itertools

import pandas as pd
import torch
from torch import nn

from .units import KIND_LABELS, Unit, units

__all__ = ["blocks_table", "stage_pattern", "stage_table"]



def _parameters(module: nn.Module, seen: set[int]) -> int:
    """Parameters of ``module`` not counted yet (a tensor shared by two units counts once)."""
    total = 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


@torch.no_grad()
def _shapes(model: nn.Module, listed: list[Unit], image_size: int) -> list[tuple[int, int, str]]:
    """``(channels in, channels out, output resolution)`` of each unit, from one blank image in eval mode."""
    from .units import _as_map

    param = next(model.parameters())
    x = torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()  # BatchNorm must not update its running statistics
    try:
        out = []
        for unit in listed:
            before = _as_map(model, x).shape[1]
            x = unit.module(x)
            fmap = _as_map(model, x)
            out.append((int(before), int(fmap.shape[1]), f"{fmap.shape[2]}×{fmap.shape[3]}"))
        return out
    finally:
        model.train(was_training)


def blocks_table(model: nn.Module, *, image_size: int = 32) -> pd.DataFrame:
    """One row per unit of ``model`` in forward order, then one for the head.

    Args:
        model: A model :func:`lib.models.units` supports.
        image_size: Side of the square input whose feature-map sizes are reported.

    Returns:
        Columns ``unit`` (dotted name; ``"head"`` for the rest), ``stage`` (0 = stem; the head
        gets the last stage + 1), ``position`` (0-based within the stage), ``kind`` (``stem``,
        ``conv``, ``msa``, ``mlp``, ``head``), ``downsample``, ``channels in``,
        ``channels out``, ``resolution`` (output map, ``"H×W"``) and ``parameters``. The head row
        holds every parameter no unit holds (final norm, classifier), so ``parameters`` sums
        to the model's parameter count.
    """
    listed = units(model)
    shapes = _shapes(model, listed, image_size)
    seen: set[int] = set()
    rows, position = [], {}
    for unit, (c_in, c_out, resolution) in zip(listed, shapes):
        pos = position.get(unit.stage, 0)
        position[unit.stage] = pos + 1
        rows.append({"unit": unit.name, "stage": unit.stage, "position": pos, "kind": unit.kind,
                     "downsample": unit.downsample, "channels in": c_in, "channels out": c_out,
                     "resolution": resolution, "parameters": _parameters(unit.module, seen)})
    last = rows[-1]
    rows.append({"unit": "head", "stage": last["stage"] + 1, "position": 0, "kind": "head", "downsample": False,
                 "channels in": last["channels out"], "channels out": int(getattr(model, "num_classes", 0)), "resolution": "",
                 "parameters": _parameters(model, seen)})
    return pd.DataFrame(rows)


def stage_pattern(kinds: list[str]) -> str:
    """The blocks of a stage in order, runs of one kind merged: ``["conv"] * 5 + ["msa"]`` → ``"Conv ×5 → MSA"``."""
    runs = [(kind, len(list(group))) for kind, group in itertools.groupby(kinds)]
    return " → ".join(KIND_LABELS.get(k, k) + (f" ×{n}" if n > 1 else "") for k, n in runs)


def stage_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Models side by side, one row per stage: its blocks in order, output width and resolution, parameters.

    Args:
        tables: label → :func:`blocks_table` of one model (e.g. ``{"AlterNet": ..., "Pre-act ResNet": ...}``).

    Returns:
        Rows ``stem``, ``stage 1`` … ``stage n``, ``head``, ``total``; columns a two-level index
        (label, field) with fields ``blocks`` (e.g. ``"Conv ×5 → MSA"``), ``MSAs``, ``width``
        (channels out), ``resolution`` and ``parameters``.
    """
    columns = {}
    for label, table in tables.items():
        rows = {}
        for stage, group in table.groupby("stage", sort=True):
            kind = group["kind"].iloc[0]
            name = "stem" if kind == "stem" else "head" if kind == "head" else f"stage {stage}"
            rows[name] = {"blocks": stage_pattern(list(group["kind"])) if name.startswith("stage") else "",
                          "MSAs": int((group["kind"] == "msa").sum()), "width": int(group["channels out"].iloc[-1]),
                          "resolution": group["resolution"].iloc[-1], "parameters": int(group["parameters"].sum())}
        rows["total"] = {"blocks": f"{int(table['kind'].isin(['conv', 'msa', 'mlp']).sum())} blocks",
                         "MSAs": int((table["kind"] == "msa").sum()), "width": "", "resolution": "",
                         "parameters": int(table["parameters"].sum())}
        columns[label] = pd.DataFrame(rows).T
    out = pd.concat(columns, axis=1)
    out.index.name = ""
    return out
