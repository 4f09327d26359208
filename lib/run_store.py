"""What identifies a trained run and where it is kept: its spec and key, its folder, its provenance.

A run is named by a hash of a canonical, versioned dict of what changes its result (model,
overrides, recipe, dataset, data fraction, seed); fields that are ``None`` or only affect speed
stay out of it, so adding one orphans nothing. :mod:`lib.runs` trains and loads runs by these
names; this module only names, finds and lists them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

import torch

from lib import data, models, profiles, storage
from lib.paths import REPO, checkpoint_root

KEY_VERSION = 1
AT = ("final", "warmup", "init")  # the snapshots a run keeps: end of training, end of warm-up, its starting point
SCORED = ("final", "warmup")  # the snapshots whose test metrics meta.json records


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """``overrides`` split into recipe fields and model arguments."""
    recipe_keys = profiles.recipe_fields()
    return ({k: v for k, v in overrides.items() if k in recipe_keys},
            {k: v for k, v in overrides.items() if k not in recipe_keys})


def _canonical_model_overrides(model_name: str, model_over: dict) -> dict:
    """Model overrides checked against the builder (a typo is an error), typed like its defaults,
    and those equal to a default dropped: ``window=4`` and ``window=4.0`` and no override at all
    name the same run."""
    defaults = models.config(model_name)
    models.config(model_name, **model_over)  # raises on an unknown argument, listing the valid ones
    out = {}
    for name, value in model_over.items():
        default = defaults.get(name)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and value.is_integer():
            value = int(value)
        if value != default:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def spec(role: str, profile: str = "cpu", *, seed: int = 0, fraction: float = 1.0, **overrides) -> dict:
    """The canonical dict that identifies a run (its key is a hash of this)."""
    prof = profiles.get(profile)
    recipe_over, model_over = split_overrides(overrides)
    recipe = recipe_with_overrides(prof, recipe_over)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must lie in (0, 1]")
    model_name = prof.model_name(role)
    out = {
        "key_version": KEY_VERSION,
        "dataset": prof.dataset,
        "model": model_name,
        "model_overrides": _canonical_model_overrides(model_name, model_over),
        "recipe": recipe.key_dict(),
        "fraction": float(fraction),
        "seed": int(seed),
    }
    if prof.train_fraction != 1.0:  # the share of the data the profile itself uses (smoke)
        out["profile_train_fraction"] = prof.train_fraction
    return out


def key(run_spec: dict) -> str:
    """12 hex digits of the SHA-256 of the canonical JSON of ``run_spec``."""
    canonical = json.dumps(run_spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def recipe_with_overrides(prof: profiles.Profile, recipe_over: dict) -> profiles.Recipe:
    """The profile's recipe with ``recipe_over`` applied."""
    return dataclasses.replace(prof.recipe, **recipe_over) if recipe_over else prof.recipe


def run_dir(role: str, profile: str = "cpu", *, seed: int = 0, fraction: float = 1.0, **overrides) -> Path:
    """Folder of a run's committed checkpoint: ``<root>/<role>-<key>``."""
    s = spec(role, profile, seed=seed, fraction=fraction, **overrides)
    return checkpoint_root(profiles.get(profile).name) / f"{role}-{key(s)}"


def train_command(role: str, profile: str, seed: int, fraction: float, overrides: dict) -> str:
    """The shell command that trains this run (quoted in errors)."""
    cmd = f"python -m lib.runs train {role} --profile {profile} --seed {seed} --fraction {fraction}"
    if overrides:
        cmd += " --set " + " ".join(shlex.quote(f"{k}={json.dumps(v, separators=(',', ':'))}") for k, v in sorted(overrides.items()))
    return cmd


def finish_supersede(folder: Path) -> None:
    """Complete a swap of a superseded record that was interrupted between its two renames."""
    old, staged = folder.with_name(folder.name + ".superseded"), folder.with_name(folder.name + ".staging")
    if old.exists() and not folder.exists() and (staged / "meta.json").exists():
        os.replace(staged, folder)
    if old.exists() and folder.exists():
        shutil.rmtree(old)


def provenance(dataset: str, **extra) -> dict:
    """Where a result came from: code version, data source, libraries, machine."""
    import timm

    sha, dirty = git_sha()
    return {
        "git_sha": sha,
        "git_dirty": dirty,
        "data_source": data.source(dataset),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__},
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        **extra,
    }


def git_sha() -> tuple[str, bool | None]:
    """The checked-out commit and whether tracked files differ from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return sha or "unknown", dirty


def cpu_name() -> str:
    """The CPU's model name, as provenance records it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def committed(profile: str = "cpu") -> list[dict]:
    """Metadata of every committed run of ``profile`` (for the cast table and the ledger)."""
    root = checkpoint_root(profile)
    for old in root.glob("*.superseded"):  # a superseding retrain interrupted between its renames
        finish_supersede(old.with_name(old.name.removesuffix(".superseded")))
    out = []
    for meta_path in sorted(root.glob("*/meta.json")):
        if meta_path.parent.name.endswith((".staging", ".superseded")):
            continue
        meta = storage.load_json(meta_path)
        out.append({"dir": str(meta_path.parent), **meta})
    return out
