"""Cached analyses: compute once, commit the result, re-check a slice live.

Hessian spectra, landscapes, lesions and noise sweeps cost more than a chapter's four minutes on
a 2-core CPU, so a chapter asks a :class:`Cache` for them. Each result is stored as one JSON
file, ``data/results/<profile>/cache/<chapter>/<name>.json``, keyed by a hash of three things:
the analysed weights (the tensors themselves, so a retrained or edited model never hits), the
analysis arguments, and the source code of the module that defines the analysing function (so a
change in an analysis misses on every machine, not only in the live re-check slice). The weights
must be a committed snapshot (``lib.runs.trained``), never a model built afresh: fresh bytes
differ from one CPU to another, and so would the key; each entry records which snapshot it read,
and :func:`audit` re-derives every committed key from the snapshots on disk. On a miss the result is computed by the same function the chapter would
call, except under ``BOOK_TRAINING=off`` (tests, CI), where a miss is a :class:`StaleCacheError`
naming the command that rebuilds it. ``smoke`` results live in the smoke runs' temporary folder,
are never committed, and are built even under ``BOOK_TRAINING=off``.

So that a stale cache cannot hide a regression, each chapter recomputes a small slice live and
compares it with :func:`assert_close`.

Values that round-trip: numbers, strings, None, lists, dicts, pandas DataFrames (with their
``attrs``), torch tensors and dataclasses of those (e.g. ``lib.analysis.hessian.Spectrum``).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
import importlib.util
import io
import json
import time
import tokenize
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from lib import paths, runs, storage

__all__ = ["VERSION", "Cache", "MissingReplicateError", "StaleCacheError", "assert_close", "audit", "cache_root",
           "code_digest", "fingerprint", "rebuild_command", "slug"]

VERSION = 1  # bump when the stored format changes: every entry then misses


class StaleCacheError(FileNotFoundError):
    """A cached analysis is missing or was made from other weights or parameters, and may not be rebuilt here."""


class MissingReplicateError(StaleCacheError):
    """Another training seed lacks an entry a page draws (:meth:`Cache.replicates`); the message says how to make it."""


def cache_root(profile: str, seed: int = 0, at: str = "final") -> Path:
    """Where cached analyses of ``profile`` live (a temporary folder for ``smoke``); a replicate seed's in ``seed<N>/``,
    those of an earlier snapshot in ``at-<snapshot>/`` (:func:`lib.paths.results_root`)."""
    return paths.results_root(profile, seed, at) / "cache"


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


def fingerprint(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 of a model's state dict (names, dtypes, shapes and bytes), in a fixed order."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(_bytes(tensor))
    return digest.hexdigest()


def code_digest(*modules: str) -> dict[str, str]:
    """``{module: sha256 of its code}`` for the named modules (:func:`code_text`: prose left out).

    Part of every cache key: an edit to an analysis module's code misses every entry it
    computed; an edit to its docstrings or comments does not.
    """
    out = {}
    for name in sorted(set(modules)):
        module = importlib.import_module(name)
        if not getattr(module, "__file__", None):
            raise ValueError(f"cannot key a cache on the code of {name!r}, which has no source file (a notebook or "
                             "`python -c`); cache a function defined in a module")
        text = code_text(importlib.util.decode_source(Path(module.__file__).read_bytes()))
        out[name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


ANALYSIS_PACKAGE = "lib.analysis"


def module_file(name: str) -> Path:
    """Where a module of this checkout keeps its source (it need not exist: ``lib.analysis.fourier.helper`` names none)."""
    folder = paths.REPO.joinpath(*name.split("."))
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def imports_of(name: str) -> set[str]:
    """The modules of this checkout that module ``name`` imports anywhere in its source (relative imports resolved)."""
    path = module_file(name)
    if not path.is_file():
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(importlib.util.decode_source(path.read_bytes()))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .fourier import x
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= {base, *(f"{base}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m != name and module_file(m).is_file()}


def analysis_modules(module: str) -> list[str]:
    """``module`` and every module of ``lib.analysis`` it imports, directly or through another.

    An analysis that calls a helper of another analysis module (a bootstrap, a Hessian-vector
    product) depends on that module's code too; the cache key covers them all.
    """
    found, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        todo += [m for m in imports_of(name) if m.startswith(ANALYSIS_PACKAGE + ".")]
    return sorted(found)


def code_text(source: str) -> str:
    """Python source without its docstrings, comments, blank lines and trailing spaces.

    Works on the text itself (the spans come from ``ast`` and ``tokenize``), not on a dump of
    the syntax tree, whose form changes between Python versions: the same file gives the same
    text under any Python that parses it.
    """
    source = source.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = source.split("\n")
    spans = []  # (row, col, end_row, end_col), rows from 1, columns in characters

    def char_col(row: int, byte_col: int) -> int:  # ast counts columns in UTF-8 bytes
        return len(lines[row - 1].encode("utf-8")[:byte_col].decode("utf-8"))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                spans.append((first.lineno, char_col(first.lineno, first.col_offset),
                              first.end_lineno, char_col(first.end_lineno, first.end_col_offset)))
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            spans.append((*token.start, *token.end))
    for row, col, end_row, end_col in sorted(spans, reverse=True):  # from the end, so earlier spans stay valid
        head, tail = lines[row - 1][:col], lines[end_row - 1][end_col:]
        lines[row - 1:end_row] = [head + tail]
    return "\n".join(line.rstrip() for line in lines if line.strip())


def source_of(model: nn.Module) -> str | None:
    """The committed snapshot a model was loaded from, ``"<run folder>/<at>"``; None for a model built afresh."""
    run = getattr(model, "book_run", None)
    if not run or "dir" not in run or "at" not in run:
        return None
    return f"{Path(run['dir']).name}/{run['at']}"


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


def _key(name: str, params: Mapping, fingerprints: list[str], code: Mapping[str, str]) -> str:
    text = json.dumps({"version": VERSION, "name": name, "params": _encode(dict(params)), "models": fingerprints,
                       "code": dict(code)}, sort_keys=True, separators=(",", ":"))
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

    def __init__(self, chapter: str, profile: str, *, recompute: bool = False, seed: int = 0, at: str = "final"):
        self.chapter = chapter
        self.profile = profile
        self.recompute = bool(recompute)
        self.seed, self.at = seed, at
        self.folder = cache_root(profile, seed, at) / chapter  # another seed's or snapshot's entries apart, same names
        self.timings: dict[str, float] = {}  # name → seconds spent computing (0 on a hit)

    def path(self, name: str) -> Path:
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"invalid cache entry name {name!r}: use letters, digits, '-' and '_'")
        return self.folder / f"{name}.json"

    def __call__(self, name: str, compute: Callable[[], object], *, models: Iterable[nn.Module] = (),
                 params: Mapping | None = None, code: Iterable[str] = ()):
        """The cached value of ``name`` for these models and parameters, computing it on a miss.

        Args:
            name: Entry name, unique within the chapter (e.g. ``"fourier-resnet"``).
            compute: Called with no arguments on a miss; its result is stored and returned.
            models: The models the result depends on; their weights are part of the key.
            params: Everything else the result depends on (JSON-able): image counts, seeds,
                frequencies, batch counts.
            code: The modules whose source the result depends on (``"lib.analysis.fourier"``).

        Raises:
            StaleCacheError: On a miss under ``BOOK_TRAINING=off`` (``cpu``/``paper``) without
                ``recompute``; the message says why it missed and how to rebuild.
        """
        path = self.path(name)
        params = dict(params or {})
        models = list(models)
        prints = [fingerprint(m) for m in models]
        digests = code_digest(*code)
        key = _key(name, params, prints, digests)
        reason = "it was never built"
        if path.exists() and not self.recompute:
            entry = storage.load_json(path, rebuild_hint=f"Delete it and rebuild with: {rebuild_command(self.chapter, self.profile)}")
            if entry.get("key") == key:
                self.timings[name] = 0.0
                return _decode(entry["value"])
            reason = _why_stale(entry, params, prints, digests)
        if not self.recompute and self.profile != "smoke" and not paths.training_enabled():
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
            "sources": [source_of(m) for m in models],
            "code": digests,
            "value": _encode(value),
            "provenance": runs.provenance(_dataset(models), wall_seconds=wall),
        }
        with storage.atomic_path(path) as tmp:  # compact: these files are data, not prose
            tmp.write_text(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        return _decode(entry["value"])  # the same value a later hit returns (dtypes included)

    def apply(self, name: str, function: Callable, model: nn.Module, *args, **kwargs):
        """``function(model, *args, **kwargs)``, cached under ``name``.

        The key covers the function's qualified name and the code of its module (with the
        analysis modules that one imports: :func:`analysis_modules`), the model's weights
        and every argument; tensors enter as a digest of their bytes, so other images miss.
        ``progress`` is passed through but is not part of the key.
        """
        params = {
            "function": f"{function.__module__}.{function.__qualname__}",
            "args": [_digest(a) for a in args],
            "kwargs": {k: _digest(v) for k, v in sorted(kwargs.items()) if k != "progress"},
        }
        return self(name, lambda: function(model, *args, **kwargs), models=[model], params=params,
                    code=analysis_modules(function.__module__))

    def provenance(self, name: str) -> dict:
        """The stored provenance of an entry (git SHA, machine, wall time of the computation)."""
        return storage.load_json(self.path(name))["provenance"]

    def replicates(self, name: str, seeds: Iterable[int]) -> dict:
        """``{seed: value}`` of entry ``name`` as each training seed's run of this chapter recorded it (same profile and
        snapshot), computing nothing, so a page can draw the other seeds beside its own.

        Raises:
            MissingReplicateError: A seed has no such entry; the message names the command that makes it.
            StaleCacheError: A seed's entry was made by other analysis code than this checkout's (or in an older format).
        """
        return {seed: self._replicate(name, seed) for seed in seeds}

    def replicates_by_label(self, names: Mapping[str, str], seeds: Iterable[int], read: Callable | None = None) -> dict:
        """``{seed: {label: value}}`` of the entries ``names`` (label → entry name) for each of ``seeds``, each value
        passed through ``read`` if given: the shape the figures take as their ``replicates``."""
        seeds = tuple(seeds)
        by_label = {label: self.replicates(name, seeds) for label, name in names.items()}
        return {seed: {label: (read(values[seed]) if read else values[seed]) for label, values in by_label.items()}
                for seed in seeds}

    def replicate_command(self, seed: int) -> str:
        """The command that runs this chapter on training seed ``seed`` (this snapshot) and records its entries."""
        return (f"python -m lib.book run --profile {self.profile} --chapters {self.chapter} --seed {seed}"
                + (f" --at {self.at}" if self.at != "final" else "") + " --no-build")

    def _replicate(self, name: str, seed: int):
        """The value seed ``seed`` recorded under ``name``, refused unless the current code would key it the same way."""
        path = Cache(self.chapter, self.profile, seed=seed, at=self.at).path(name)
        command = self.replicate_command(seed)
        if not path.exists():
            raise MissingReplicateError(f"training seed {seed} has no cached analysis {name!r} of {self.chapter} under "
                                        f"{self.profile} ({path}); make it with:\n  {command}")
        entry = storage.load_json(path, rebuild_hint=f"Delete it and rebuild with: {command}")
        problem = self._made_elsewhere(entry)
        if problem:
            raise StaleCacheError(f"cached analysis {path} of training seed {seed} is not usable: {problem}; "
                                  f"rebuild it with:\n  {command}")
        return _decode(entry["value"])

    @staticmethod
    def _made_elsewhere(entry: dict) -> str | None:
        """Why an entry's key does not follow from its stored parts and the analysis code as it is now (None if it does)."""
        recorded = entry.get("code") or {}
        if not recorded:
            return "it records no analysis code (made before cache keys covered the code)"
        try:
            now = code_digest(*recorded)
        except ImportError as err:
            return f"its analysis module is gone ({err})"
        if now != recorded:
            changed = sorted(m for m in now if now[m] != recorded.get(m))
            return f"it was made by other analysis code ({', '.join(changed)} changed)"
        if _key(entry.get("name"), entry.get("params") or {}, entry.get("models") or [], now) != entry.get("key"):
            return "its key does not follow from its stored parts (edited by hand, or an older format)"
        return None


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


def _why_stale(entry: dict, params: dict, prints: list[str], code: dict[str, str]) -> str:
    """Which of the key's parts moved: the weights, the arguments or the analysis code (all that apply)."""
    reasons = []
    if entry.get("models") != prints:
        sources = [s for s in entry.get("sources") or [] if s]
        reasons.append("it was computed from other model weights"
                       + (f" (the entry read {', '.join(sources)}; a different checkpoint is loaded now)" if sources else
                          " (a model whose bytes differ here: retrained, edited, or built afresh on another CPU)"))
    stored = entry.get("params")
    if stored != _encode(params):
        changed = sorted(k for k in set(stored or {}) | set(params) if (stored or {}).get(k) != _encode(params).get(k))
        reasons.append(f"its parameters differ ({', '.join(changed)})")
    if entry.get("code") != code:
        changed = sorted(m for m in set(entry.get("code") or {}) | set(code) if (entry.get("code") or {}).get(m) != code.get(m))
        reasons.append(f"the analysis code changed ({', '.join(changed)})")
    return "; ".join(reasons) or "its format version changed"


# --------------------------------------------------------------------------------- audit


@dataclasses.dataclass(frozen=True)
class Finding:
    """One committed cache entry, checked without the chapter: ``ok`` or why a chapter would miss it."""

    chapter: str
    name: str
    ok: bool
    reason: str
    seconds: float  # what computing it took when it was built (0 if unknown)


def audit(profile: str = "cpu", chapters: Iterable[str] | None = None) -> list[Finding]:
    """Re-derive the key of every committed cache entry from what is on disk, on this machine.

    For each entry: its models are re-read from the committed snapshots it names and
    fingerprinted here, its analysis modules are hashed as they are now, and the key is rebuilt
    from those and the stored arguments. An entry passes when that key is the stored one, so a
    chapter that asks for the same analysis of the same snapshots hits. An entry whose model
    was built afresh (no snapshot named) fails: its key would depend on the CPU.
    """
    # replicate seeds' and earlier snapshots' caches too
    roots = [cache_root(profile), *sorted(p for p in paths.results_root(profile).glob("*/**/cache") if p.is_dir())]
    wanted = set(chapters) if chapters is not None else None
    checkpoints = paths.checkpoint_root(profile)
    prints: dict[str, str] = {}
    out = []
    for path in [p for root in roots for p in sorted(root.glob("*/*.json"))]:
        chapter = path.parent.name
        if wanted is not None and chapter not in wanted:
            continue
        entry = storage.load_json(path, rebuild_hint=f"Rebuild it with: {rebuild_command(chapter, profile)}")
        seconds = float((entry.get("provenance") or {}).get("wall_seconds") or 0.0)
        sources = entry.get("sources")
        problems = []
        if sources is None or len(sources) != len(entry.get("models", [])) or not all(sources):
            problems.append("it does not name the committed snapshot of every model it analysed (a model built afresh "
                            "has CPU-dependent bytes)")
        else:
            for source in sources:
                if source not in prints:
                    snapshot = checkpoints / f"{source}.safetensors"
                    prints[source] = fingerprint(storage.load_weights(snapshot)) if snapshot.exists() else "missing"
            now = [prints[s] for s in sources]
            if "missing" in now:
                problems.append(f"a snapshot it read is not committed ({', '.join(s for s in sources if prints[s] == 'missing')})")
            elif now != entry.get("models"):
                problems.append(f"the committed snapshots it read ({', '.join(sources)}) have other weights now")
        try:
            code = code_digest(*(entry.get("code") or {}))
        except ImportError as err:
            code, problems = {}, problems + [f"its analysis module is gone ({err})"]
        if not entry.get("code"):
            problems.append("it records no analysis code (made before cache keys covered the code)")
        elif code != entry.get("code"):
            changed = sorted(m for m in code if code[m] != entry["code"].get(m))
            problems.append(f"the analysis code changed ({', '.join(changed)})")
        # the arguments are stored encoded, and encoding them again changes nothing
        if not problems and _key(entry["name"], entry["params"], entry["models"], code) != entry.get("key"):
            problems.append("its key does not follow from its stored parts (edited by hand, or an older format)")
        out.append(Finding(chapter, path.stem, not problems, "; ".join(problems) or "ok", seconds))
    return out


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


def main(argv=None) -> int:
    """``python -m lib.cache audit [--profile cpu] [--chapters 02 …]``: exit 1 if any committed entry would miss;
    ``python -m lib.cache compare --against REF [--profile cpu]``: each entry at git ref REF beside the working tree's."""
    import argparse

    from lib import against

    parser = argparse.ArgumentParser(prog="python -m lib.cache", description="Check committed cached analyses.")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("audit", help="re-derive every committed key from the snapshots and code on disk")
    a.add_argument("--profile", default="cpu")
    a.add_argument("--chapters", nargs="*", help="chapter stems (default: all)")
    c = sub.add_parser("compare", help="each committed entry at a git ref beside the working tree's: same, changed, new or gone")
    c.add_argument("--against", required=True, metavar="REF", help="the git ref to compare with (a branch, a tag, a SHA, HEAD~1)")
    c.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    if args.command == "compare":
        try:
            moves = against.compare_cache(args.against, args.profile)
        except ValueError as err:
            parser.error(str(err))
        print(against.cache_markdown(moves, args.against, args.profile), end="")
        return 0
    built = sorted(d.name for d in cache_root(args.profile).glob("*") if d.is_dir())
    chapters = None
    if args.chapters:
        chapters = [c for c in built if any(c == name or c.startswith(name) for name in args.chapters)]
        if not chapters:
            parser.error(f"no cached chapter matches {args.chapters}; chapters with caches: {built}")
    findings = audit(args.profile, chapters)
    if not findings:
        print(f"no cached analyses found under {cache_root(args.profile)}")
        return 1
    for f in findings:
        if not f.ok:
            print(f"✗ {f.chapter}/{f.name}: {f.reason}. Rebuild with: {rebuild_command(f.chapter, args.profile)}")
    bad = sum(not f.ok for f in findings)
    print(f"{len(findings) - bad} of {len(findings)} cached analyses of profile {args.profile!r} load on this machine "
          f"(ATen CPU capability {torch.backends.cpu.get_cpu_capability()})")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
