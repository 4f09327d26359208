"""Cached analyses: compute once, commit the result, re-check a slice live.

Hessian spectra, landscapes, lesions and noise sweeps cost more than a chapter's four minutes on
a 2-core CPU, so a chapter asks a :class:`Cache` for them. Each result is stored as one JSON
file, ``data/results/<profile>/cache/<chapter>/<name>.json``, keyed by a hash of the analysed
weights (the tensors themselves, so a retrained or edited model never hits) and of the
analysis parameters. On a miss the result is computed by the same function the chapter would
call, except under ``BOOK_TRAINING=off`` (tests, CI), where a miss is a :class:`StaleCacheError`
naming the command that rebuilds it. ``smoke`` results live in the smoke runs' temporary folder,
are never committed, and are built even under ``BOOK_TRAINING=off``.

So that a stale cache cannot hide a regression, each chapter recomputes a small slice live and
compares it with :func:`assert_close`.

Values that round-trip: numbers, strings, None, lists, dicts, pandas DataFrames (with their
``attrs``), torch tensors and dataclasses of those (e.g. ``lib.analysis.hessian.Spectrum``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from lib import runs, storage

__all__ = ["VERSION", "Cache", "StaleCacheError", "assert_close", "cache_root", "fingerprint", "rebuild_command", "slug"]

VERSION = 1  # bump when the stored format changes: every entry then misses


class StaleCacheError(FileNotFoundError):
    """A cached analysis is missing or was made from other weights or parameters, and may not be rebuilt here."""


def cache_root(profile: str) -> Path:
    """Where cached analyses of ``profile`` live (a temporary folder for ``smoke``)."""
    if profile == "smoke":
        return runs.smoke_root() / "results" / "cache"
    return Path(os.environ.get("BOOK_RESULTS_DIR", runs.REPO / "data" / "results")) / profile / "cache"


def rebuild_command(chapter: str, profile: str) -> str:
    """The command that re-executes ``chapter`` and rebuilds its caches."""
    return f"python -m lib.book run --profile {profile} --chapters {chapter} --recompute"


def _bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def slug(text: str) -> str:
    """An entry name from a label: ``"ViT, 2 % data"`` → ``"vit-2-data"``."""
    import re

    out = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("×", "x")).strip("-")
    if not out:
        raise ValueError(f"cannot make an entry name from {text!r}")
    return out


def fingerprint(model: nn.Module) -> str:
    """sha256 of a model's state dict (names, dtypes, shapes and bytes), in a fixed order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(_bytes(tensor))
    return digest.hexdigest()


# ------------------------------------------------------------------------------ encoding


def _encode(value):
    if isinstance(value, pd.DataFrame):
        return {
            "__type__": "DataFrame",
            "columns": [str(c) for c in value.columns],
            "dtypes": [str(t) for t in value.dtypes],
            "data": [[_encode(v) for v in row] for row in value.itertuples(index=False, name=None)],
            "attrs": _encode(dict(value.attrs)),
        }
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        return {"__type__": "Tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "data": t.reshape(-1).tolist()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"__type__": "dataclass", "class": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot cache a value of type {type(value).__name__}; use numbers, strings, lists, dicts, "
                    "DataFrames, tensors or dataclasses of those")


def _decode(value):
    if isinstance(value, dict):
        kind = value.get("__type__")
        if kind == "DataFrame":
            frame = pd.DataFrame([[_decode(v) for v in row] for row in value["data"]], columns=value["columns"])
            for column, dtype in zip(value["columns"], value["dtypes"]):
                if dtype in ("int64", "float64", "bool"):
                    frame[column] = frame[column].astype(dtype)
            frame.attrs.update(_decode(value["attrs"]))
            return frame
        if kind == "Tensor":
            return torch.tensor(value["data"], dtype=getattr(torch, value["dtype"])).reshape(value["shape"])
        if kind == "dataclass":
            module, name = value["class"].split(":")
            cls = importlib.import_module(module)
            for part in name.split("."):
                cls = getattr(cls, part)
            fields = {k: _decode(v) for k, v in value["fields"].items()}
            for f in dataclasses.fields(cls):  # JSON has no tuples
                if isinstance(fields.get(f.name), list) and str(f.type).startswith("tuple"):
                    fields[f.name] = tuple(fields[f.name])
            return cls(**fields)
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _key(name: str, params: Mapping, fingerprints: list[str]) -> str:
    text = json.dumps({"version": VERSION, "name": name, "params": _encode(dict(params)), "models": fingerprints},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------- cache


class Cache:
    """The analysis cache of one chapter under one profile.

    Args:
        chapter: The chapter's stem, e.g. ``"02_low_pass_msa"`` (names its folder and the
            rebuild command).
        profile: ``smoke``, ``cpu`` or ``paper``.
        recompute: Recompute every entry this chapter asks for, even on a hit.

    Example::

        cache = Cache("02_low_pass_msa", "cpu")
        curves = cache("fourier-resnet", lambda: fourier.relative_log_amplitude_curves(model, images),
                       models=[model], params={"images": len(images)})
    """

    def __init__(self, chapter: str, profile: str, *, recompute: bool = False):
        self.chapter = chapter
        self.profile = profile
        self.recompute = bool(recompute)
        self.folder = cache_root(profile) / chapter
        self.timings: dict[str, float] = {}  # name → seconds spent computing (0 on a hit)

    def path(self, name: str) -> Path:
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"invalid cache entry name {name!r}: use letters, digits, '-' and '_'")
        return self.folder / f"{name}.json"

    def __call__(self, name: str, compute: Callable[[], object], *, models: Iterable[nn.Module] = (),
                 params: Mapping | None = None):
        """The cached value of ``name`` for these models and parameters, computing it on a miss.

        Args:
            name: Entry name, unique within the chapter (e.g. ``"fourier-resnet"``).
            compute: Called with no arguments on a miss; its result is stored and returned.
            models: The models the result depends on; their weights are part of the key.
            params: Everything else the result depends on (JSON-able): image counts, seeds,
                frequencies, batch counts.

        Raises:
            StaleCacheError: On a miss under ``BOOK_TRAINING=off`` (``cpu``/``paper``) without
                ``recompute``; the message says why it missed and how to rebuild.
        """
        path = self.path(name)
        params = dict(params or {})
        prints = [fingerprint(m) for m in models]
        key = _key(name, params, prints)
        reason = "it was never built"
        if path.exists() and not self.recompute:
            entry = storage.load_json(path, rebuild_hint=f"Delete it and rebuild with: {rebuild_command(self.chapter, self.profile)}")
            if entry.get("key") == key:
                self.timings[name] = 0.0
                return _decode(entry["value"])
            reason = _why_stale(entry, params, prints)
        if not self.recompute and self.profile != "smoke" and not runs.training_enabled():
            raise StaleCacheError(
                f"cached analysis {path} is not usable: {reason}. BOOK_TRAINING=off forbids rebuilding it here; "
                f"rebuild with: {rebuild_command(self.chapter, self.profile)}"
            )
        tic = time.perf_counter()
        value = compute()
        wall = time.perf_counter() - tic
        self.timings[name] = wall
        entry = {
            "key": key,
            "name": name,
            "chapter": self.chapter,
            "profile": self.profile,
            "params": _encode(params),
            "models": prints,
            "value": _encode(value),
            "provenance": runs.provenance(_dataset(models), wall_seconds=wall),
        }
        with storage.atomic_path(path) as tmp:  # compact: these files are data, not prose
            tmp.write_text(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        return _decode(entry["value"])  # the same value a later hit returns (dtypes included)

    def apply(self, name: str, function: Callable, model: nn.Module, *args, **kwargs):
        """``function(model, *args, **kwargs)``, cached under ``name``.

        The key covers the function's qualified name, the model's weights and every argument;
        tensors enter as a digest of their bytes, so other images miss. ``progress`` is passed
        through but is not part of the key.
        """
        params = {
            "function": f"{function.__module__}.{function.__qualname__}",
            "args": [_digest(a) for a in args],
            "kwargs": {k: _digest(v) for k, v in sorted(kwargs.items()) if k != "progress"},
        }
        return self(name, lambda: function(model, *args, **kwargs), models=[model], params=params)

    def provenance(self, name: str) -> dict:
        """The stored provenance of an entry (git SHA, machine, wall time of the computation)."""
        return storage.load_json(self.path(name))["provenance"]


def _digest(value):
    """A JSON-able stand-in for an argument: tensors by shape, dtype and sha256 of their bytes."""
    if isinstance(value, torch.Tensor):
        digest = hashlib.sha256(_bytes(value)).hexdigest()[:16]
        return f"tensor{list(value.shape)}:{str(value.dtype).removeprefix('torch.')}:{digest}"
    if isinstance(value, (list, tuple)):
        return [_digest(v) for v in value]
    return _encode(value)


def _dataset(models: Iterable[nn.Module]) -> str:
    for m in models:
        return getattr(m, "book_dataset", "cifar10")
    return "cifar10"


def _why_stale(entry: dict, params: dict, prints: list[str]) -> str:
    if entry.get("models") != prints:
        return "it was computed from other model weights (retrained or changed checkpoint)"
    stored = entry.get("params")
    if stored != _encode(params):
        changed = sorted(k for k in set(stored or {}) | set(params) if (stored or {}).get(k) != _encode(params).get(k))
        return f"its parameters differ ({', '.join(changed)})"
    return "its format version changed"


# ------------------------------------------------------------------------- live re-check


def assert_close(what: str, live, cached, *, rtol: float = 0.0, atol: float = 0.0) -> float:
    """Raise StaleCacheError unless ``live`` matches ``cached`` within ``atol + rtol·|cached|``.

    Both may be numbers, sequences, tensors or pandas objects of the same shape. Returns the
    largest absolute difference, for the chapter to print next to its tolerance.
    """
    a = torch.as_tensor(_numbers(live), dtype=torch.float64)
    b = torch.as_tensor(_numbers(cached), dtype=torch.float64)
    if a.shape != b.shape:
        raise StaleCacheError(f"{what}: live shape {tuple(a.shape)} differs from cached {tuple(b.shape)}")
    diff = (a - b).abs().masked_fill(a.isnan() & b.isnan(), 0.0)  # NaN matches NaN, nothing else
    worst = diff.max().item() if diff.numel() else 0.0
    if not bool((diff <= atol + rtol * b.abs().nan_to_num()).all()):
        raise StaleCacheError(
            f"{what}: the live re-computation differs from the cache by up to {worst:.3g} "
            f"(tolerance {atol:g} + {rtol:g}·|cached|). The cache is stale or the code changed; rebuild it."
        )
    return worst


def _numbers(value):
    if isinstance(value, (pd.Series, pd.DataFrame)):
        return value.to_numpy(dtype=float, copy=True)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double()
    return value
