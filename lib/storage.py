"""Atomic files: resume states, half-precision weights and JSON, never half-written.

Every write goes to a temporary file in the target folder and is moved into place with
``os.replace``, so a crash (even SIGKILL) leaves either the old file or the new one. Every read
of a damaged file raises ``CorruptFileError`` naming the path and how to rebuild it; nothing is
silently replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CorruptFileError(RuntimeError):
    """A stored file could not be read; the message names it and says how to rebuild it."""


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success move it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_torch(obj, path) -> None:
    """``torch.save`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path, *, rebuild_hint: str = ""):
    """``torch.load`` (weights only) with a clear error for a damaged file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # pickle, zip and EOF errors all mean the same thing here
        raise CorruptFileError(f"{path} is damaged ({type(err).__name__}: {err}). {rebuild_hint}".strip()) from err


def save_json(obj, path) -> None:
    """Write JSON atomically, keys sorted, for readable diffs of committed files."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def load_json(path, *, rebuild_hint: str = ""):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path} is damaged ({err}). {rebuild_hint}".strip()) from err


def half_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors to float16 (committed weights); integer buffers unchanged."""
    return {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu() for k, v in state.items()}


def save_weights(state: dict[str, torch.Tensor], path) -> None:
    """Save a state dict in half precision as safetensors, atomically."""
    with atomic_path(path) as tmp:
        save_file(half_state_dict(state), str(tmp))


def load_weights(path, *, rebuild_hint: str = "") -> dict[str, torch.Tensor]:
    """Load safetensors weights as float32 (integer buffers unchanged)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist. {rebuild_hint}".strip())
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptFileError(f"{path} is damaged ({err}). {rebuild_hint}".strip()) from err
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def sha256(path) -> str:
    """The SHA-256 of a file's bytes, read in blocks: whether a retrained run reproduced its weights, or an archive is the expected one."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
