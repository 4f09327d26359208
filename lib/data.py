"""CIFAR-10/100 for the book: where the images come from, a decoded cache, subsets, augmentation.

Serves methods.md §2, the training recipe of Park & Kim, "How Do Vision Transformers Work?"
(ICLR 2022): the datasets and their normalisation constants, the class-balanced subsets of the
small-data regime (``ops.datasets.subsample`` in the authors' code), random crop + flip,
RandAugment ``rand-m9-n2-mstd1.0`` and batch-mode Mixup/CutMix with label smoothing.

Where CIFAR-10 comes from, first found wins (see :func:`source`):

1. the archive named by the environment variable ``BOOK_CIFAR10_ARCHIVE`` (trusted; its sha256
   is recorded);
2. the offline archive ``../shared/data/cifar10-jpeg-q75.tar.gz`` beside the checkout, checked
   against its known sha256 (the real 60,000 images, JPEG quality 75: see the caveat in
   :func:`source`);
3. torchvision's CIFAR files already under the data folder;
4. torchvision's download, for machines that are online.

CIFAR-100 comes from (3) or (4) only. Whatever the source, the images are decoded once to
``uint8 [N, 3, 32, 32]`` tensors and cached under ``<data>/cache/``; the data folder is the
repository's ``data/`` unless ``BOOK_DATA_DIR`` names another.

Two augmentation paths: :func:`random_crop_flip` and :func:`mix_batch` work on whole batches of
tensors (the ``cpu`` recipe, and the batch half of the ``paper`` recipe), while
:class:`AugmentedCIFAR` / :func:`paper_loader` apply the per-image crop, flip and RandAugment of
the ``paper`` recipe in DataLoader workers. All randomness comes from explicit seeds.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import random
import shutil
import socket
import sys
import tarfile
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lib import paths, storage

SHARED_ARCHIVE = paths.SHARED / "data" / "cifar10-jpeg-q75.tar.gz"
SHARED_ARCHIVE_SHA256 = "0493b9c94c62a5e8a6b98a28016b4eebed4fa9aac8154143eead5d26fc94fabb"

DATASETS = ("cifar10", "cifar100")
SPLITS = ("train", "test")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
DISPLAY_NAME = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}  # as prose and captions write them
IMAGE_SHAPE = (3, 32, 32)

# methods.md §2, as in the authors' configs. The std values are the widely copied CIFAR constants
# (close to the mean of per-image stds), so normalised pixels have a std of about 1.2, not 1.
MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4867, 0.4408)}
STD = {"cifar10": (0.2023, 0.1994, 0.2010), "cifar100": (0.2675, 0.2565, 0.2761)}

# methods.md §2: timm RandAugment, magnitude 9, two ops per image, magnitude noise std 1.
PAPER_RANDAUGMENT = "rand-m9-n2-mstd1.0"

DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation: long enough for a slow link, short when offline
CACHE_FORMAT = 1  # bump when the cache layout changes; older files are then reported, not read
_DECODE_CHUNK = 1024  # JPEGs per decode_jpeg call: batched decoding, a smooth progress bar
_TORCHVISION_CLASS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}

SourceKind = Literal["env-archive", "shared-archive", "torchvision-local", "torchvision-download"]

last_source: dict | None = None
"""The :func:`source` dict of the most recent :func:`load` (for printing provenance)."""


# ----------------------------------------------------------------------------------- checks


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def _check_fraction(fraction: float) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")


def _check_seed(seed: int, name: str = "seed") -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed!r}")


def _check_batch(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")


# ---------------------------------------------------------------------------------- sources


data_dir = paths.data_dir  # ``$BOOK_DATA_DIR`` if set, else the repository's ``data/``


def _torchvision_class(dataset: str):
    import torchvision.datasets  # imported late: looked up at call time, so tests can stand in for it

    return getattr(torchvision.datasets, _TORCHVISION_CLASS[dataset])


_JPEG_CAVEAT = (
    "the real CIFAR-10 images stored as JPEG quality 75 with 4:2:0 chroma subsampling, so the "
    "finest input frequencies are partly lost; comparisons between models hold, absolute "
    "accuracies can differ slightly from published CIFAR-10 figures, and frequency analyses "
    "should say they used this data"
)


def _display(path: Path) -> str:
    """A path as the book prints it: relative to the checkout's folder when it lies near it (no machine's home on a page)."""
    try:
        relative = os.path.relpath(Path(path).resolve(), paths.REPO)
    except ValueError:  # another drive (Windows)
        return Path(path).name
    return Path(path).name if relative.startswith(os.path.join(os.pardir, os.pardir)) else relative


def _archive_source(kind: SourceKind, path: Path, sha256: str) -> dict:
    if kind == "env-archive":
        how = "the archive named by BOOK_CIFAR10_ARCHIVE"
        check = "trusted as given, sha256 recorded"
    else:
        how = "the offline archive beside the checkout"
        check = "verified"
    if sha256 == SHARED_ARCHIVE_SHA256:
        check += ", identical to the shared JPEG-q75 archive" if kind == "env-archive" else ""
        what = _JPEG_CAVEAT
    else:
        what = "an archive in the shared layout (train|test/<class>/*.jpg) whose content this book has not checked"
    return {
        "kind": kind,
        "dataset": "cifar10",
        "path": str(path),
        "sha256": sha256,
        "id": f"archive-{sha256[:12]}",
        "description": f"CIFAR-10 from {how}, {_display(path)} (sha256 {sha256[:12]}…, {check}): {what}.",
    }


def _torchvision_source(dataset: str, kind: SourceKind, root: Path) -> dict:
    cls = _torchvision_class(dataset)
    tarball = root / cls.filename  # torchvision keeps the downloaded tarball beside the files
    name = DISPLAY_NAME[dataset]
    if kind == "torchvision-local":
        text = f"{name} from torchvision's files in {_display(root / cls.base_folder)}"
    else:
        text = f"{name} from torchvision's download into {_display(root)}"
    sha256 = storage.sha256(tarball) if tarball.is_file() else None
    return {
        "kind": kind,
        "dataset": dataset,
        "path": str(root / cls.base_folder),
        "sha256": sha256,
        "id": "torchvision",
        "description": f"{text} (checked by torchvision's md5): the original, uncompressed pixels.",
    }


def _resolve(dataset: str) -> tuple[dict, list[str]]:
    """The first available source, and a line for each source passed over on the way."""
    tried: list[str] = []
    if dataset == "cifar10":
        named = os.environ.get("BOOK_CIFAR10_ARCHIVE")
        if named:
            path = Path(named).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"BOOK_CIFAR10_ARCHIVE names {path}, which is not a file; fix the path or unset the variable"
                )
            return _archive_source("env-archive", path, storage.sha256(path)), tried
        tried.append("BOOK_CIFAR10_ARCHIVE: not set")
        shared = Path(SHARED_ARCHIVE)
        if shared.is_file():
            sha256 = storage.sha256(shared)
            if sha256 != SHARED_ARCHIVE_SHA256:
                raise RuntimeError(
                    f"sha256 mismatch for the offline CIFAR-10 archive {shared}: expected "
                    f"{SHARED_ARCHIVE_SHA256}, got {sha256}. The file is damaged or a different "
                    "version: restore it from the project's shared data, point BOOK_CIFAR10_ARCHIVE "
                    "at a good copy, or remove it to fall back to torchvision's CIFAR-10"
                )
            return _archive_source("shared-archive", shared, sha256), tried
        tried.append(f"offline archive {shared}: not found")
    root = data_dir()
    cls = _torchvision_class(dataset)
    if (root / cls.base_folder).is_dir():
        return _torchvision_source(dataset, "torchvision-local", root), tried
    tried.append(f"torchvision files {root / cls.base_folder}: not found")
    return _torchvision_source(dataset, "torchvision-download", root), tried


def source(dataset: str = "cifar10") -> dict:
    """Describe where :func:`load` takes ``dataset`` from, without decoding or downloading.

    Args:
        dataset: ``"cifar10"`` or ``"cifar100"``.

    Returns:
        A dict with ``kind`` (``"env-archive"``, ``"shared-archive"``, ``"torchvision-local"`` or
        ``"torchvision-download"``), ``dataset``, ``path``, ``sha256`` (``None`` where there is no
        single file to hash), ``id`` (the cache key) and ``description``, a sentence for the book
        that includes the JPEG-q75 caveat where it applies.

    Raises:
        ValueError: unknown dataset.
        RuntimeError: the offline archive fails its sha256 check.
    """
    _check_dataset(dataset)
    return _resolve(dataset)[0]


# ------------------------------------------------------------------------------- decoding


def _archive_members(path: Path, split: str) -> tuple[list[str], list[tuple[str, str, bytes]]]:
    """All class names in the archive, and (class, file name, JPEG bytes) of ``split``."""
    classes: set[str] = set()
    members = []
    size = path.stat().st_size
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {path.name}", file=sys.stderr)
        with bar:
            for member in tar:
                bar.update(raw.tell() - bar.n)
                parts = member.name.removeprefix("./").split("/")
                if not member.isfile() or len(parts) != 3 or parts[0] not in SPLITS:
                    continue
                if not parts[2].lower().endswith((".jpg", ".jpeg")):
                    continue
                classes.add(parts[1])
                if parts[0] == split:
                    members.append((parts[1], parts[2], tar.extractfile(member).read()))
    if not members:
        raise RuntimeError(f"archive {path} holds no {split}/<class>/*.jpg files; is it in the shared layout?")
    return sorted(classes), sorted(members, key=lambda m: (m[0], m[1]))


def _decode_jpegs(members: list[tuple[str, str, bytes]], split: str) -> torch.Tensor:
    with warnings.catch_warnings():
        # torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; they are
        # still the fastest decoder here (about 30,000 CIFAR JPEGs a second, PIL about 12,000).
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_jpegs_batched(members, split)


def _decode_jpegs_batched(members: list[tuple[str, str, bytes]], split: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    images = torch.empty((len(members), *IMAGE_SHAPE), dtype=torch.uint8)
    with tqdm(total=len(members), unit="img", desc=f"decoding {split}", file=sys.stderr) as bar:
        for start in range(0, len(members), _DECODE_CHUNK):
            chunk = members[start : start + _DECODE_CHUNK]
            encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for _, _, data in chunk]
            for offset, image in enumerate(decode_jpeg(encoded, mode=ImageReadMode.RGB)):
                if tuple(image.shape) != IMAGE_SHAPE:
                    cls, name, _ = chunk[offset]
                    raise RuntimeError(f"{split}/{cls}/{name} is {tuple(image.shape)}, expected {IMAGE_SHAPE}")
                images[start + offset] = image
            bar.update(len(chunk))
    return images


def _decode_archive(path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images ordered by (class, file name); labels index the sorted class names."""
    try:
        classes, members = _archive_members(path, split)
    except (EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile) as err:  # truncated or damaged gzip/tar
        try:
            actual = storage.sha256(path)
        except OSError as read_error:
            actual = f"unreadable ({read_error})"
        raise storage.CorruptFileError(
            f"the CIFAR-10 archive {path} is truncated or damaged ({type(err).__name__}: {err}). Its sha256 is "
            f"{actual}; the archive this book expects (cifar10-jpeg-q75.tar.gz) has sha256 "
            f"{SHARED_ARCHIVE_SHA256}. Copy it again from the project's shared data (shared/data/), point "
            "BOOK_CIFAR10_ARCHIVE at a good copy, or unset BOOK_CIFAR10_ARCHIVE to fall back to torchvision's CIFAR-10."
        ) from err
    label_of = {name: label for label, name in enumerate(classes)}
    labels = torch.tensor([label_of[cls] for cls, _, _ in members], dtype=torch.int64)
    return _decode_jpegs(members, split), labels, classes


def _download_torchvision(dataset: str, root: Path) -> None:
    """Download with torchvision into a temporary folder, then move the result into ``root``.

    A failed or interrupted download leaves nothing in ``root``.
    """
    cls = _torchvision_class(dataset)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        cls(root=str(staging), train=True, download=True)
        for name in (cls.filename, cls.base_folder):
            if (staging / name).exists():
                os.replace(staging / name, root / name)
    finally:
        socket.setdefaulttimeout(previous_timeout)
        shutil.rmtree(staging, ignore_errors=True)


def _read_torchvision(dataset: str, split: str, root: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    cls = _torchvision_class(dataset)
    try:
        ds = cls(root=str(root), train=split == "train", download=False)
    except RuntimeError as err:
        raise RuntimeError(
            f"torchvision's {dataset} files in {root / cls.base_folder} are incomplete or damaged ({err}); "
            "delete that folder to download them again"
        ) from err
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return images, torch.tensor(ds.targets, dtype=torch.int64), list(ds.classes)


def _no_source_error(dataset: str, tried: list[str], err: BaseException) -> FileNotFoundError:
    tried = [*tried, f"torchvision download into {data_dir()}: failed ({type(err).__name__}: {err})"]
    ways = []
    if dataset == "cifar10":
        ways += ["set BOOK_CIFAR10_ARCHIVE to a copy of cifar10-jpeg-q75.tar.gz", f"put that archive at {SHARED_ARCHIVE}"]
    ways.append(f"run once on a machine that is online (torchvision downloads into {data_dir()})")
    return FileNotFoundError(
        f"no source of {dataset} found. Tried:\n  - " + "\n  - ".join(tried)
        + "\nTo provide the data: " + "; or ".join(ways) + "."
    )


def _decode(dataset: str, split: str, src: dict, tried: list[str]):
    if src["kind"] in ("env-archive", "shared-archive"):
        return _decode_archive(Path(src["path"]), split)
    root = data_dir()
    if src["kind"] == "torchvision-download":
        try:
            _download_torchvision(dataset, root)
        except Exception as err:  # network errors come in many types (URLError, timeout, OSError…)
            raise _no_source_error(dataset, tried, err) from err
    return _read_torchvision(dataset, split, root)


# ---------------------------------------------------------------------------------- cache


def _cache_path(dataset: str, source_id: str, split: str) -> Path:
    return data_dir() / "cache" / f"{dataset}-{source_id}-{split}.pt"


def _content_sha256(images: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in (images, labels):
        digest.update(memoryview(t.contiguous().numpy()).cast("B"))
    return digest.hexdigest()


def _serialize(obj, file) -> None:
    """Write ``obj`` to an open binary file (kept separate so tests can fail a write midway)."""
    torch.save(obj, file)


def _save_atomic(obj, path: Path) -> None:
    """Write to a temporary file beside ``path``, then ``os.replace``: never half-written."""
    with storage.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            _serialize(obj, f)
            f.flush()
            os.fsync(f.fileno())


def _write_cache(path: Path, images, labels, classes: list[str], dataset: str, split: str, src: dict) -> None:
    provenance = {
        "format": CACHE_FORMAT,
        "dataset": dataset,
        "split": split,
        "classes": classes,
        "source": dict(src),
        "content_sha256": _content_sha256(images, labels),
        "torch": str(torch.__version__),
    }
    _save_atomic({"images": images, "labels": labels, "provenance": provenance}, path)


def _read_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Load and check a cache file; any damage is an error that names the file."""

    def damaged(reason: str) -> storage.CorruptFileError:
        return storage.CorruptFileError(
            f"the data cache {path} is damaged or out of date ({reason}); delete it and load again to rebuild it"
        )

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip, pickle and EOF errors all mean a damaged file here
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise damaged(f"{type(err).__name__}: {first_line}") from err
    if not isinstance(blob, dict) or set(blob) != {"images", "labels", "provenance"}:
        raise damaged("unexpected contents")
    images, labels, provenance = blob["images"], blob["labels"], blob["provenance"]
    if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor) and isinstance(provenance, dict)):
        raise damaged("unexpected contents")
    if provenance.get("format") != CACHE_FORMAT:
        raise damaged(f"format {provenance.get('format')!r}, expected {CACHE_FORMAT}")
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise damaged(f"images are {images.dtype} {tuple(images.shape)}")
    if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        raise damaged(f"labels are {labels.dtype} {tuple(labels.shape)}")
    if _content_sha256(images, labels) != provenance.get("content_sha256"):
        raise damaged("content does not match its recorded sha256")
    return images, labels, provenance


# ------------------------------------------------------------------------------ public load


def load(
    dataset: str = "cifar10", split: str = "train", *, fraction: float = 1.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels of one split, decoded once and cached.

    The first call for a (dataset, source, split) decodes the source and writes
    ``<data>/cache/<dataset>-<source id>-<split>.pt`` atomically; later calls read that file.
    The source used is described by :func:`source` and stored in :data:`last_source`.

    Args:
        dataset: ``"cifar10"`` or ``"cifar100"``.
        split: ``"train"`` or ``"test"``.
        fraction: keep this share of every class, in (0, 1]; see :func:`subset_indices`.
        seed: seed of the subset (only used when ``fraction < 1``).

    Returns:
        ``images`` uint8 [N, 3, 32, 32] and ``labels`` int64 [N], ordered by (class, file) for
        the archives and as torchvision stores them otherwise.

    Raises:
        ValueError: unknown dataset or split, or a fraction outside (0, 1].
        FileNotFoundError: no source could be found; the message lists what was tried.
        RuntimeError: the offline archive fails its sha256 check, or the cache file is damaged.
    """
    global last_source
    _check_dataset(dataset)
    _check_split(split)
    _check_fraction(fraction)
    src, tried = _resolve(dataset)
    path = _cache_path(dataset, src["id"], split)
    if path.is_file():
        images, labels, _ = _read_cache(path)
    else:
        images, labels, classes = _decode(dataset, split, src, tried)
        if src["kind"] == "torchvision-download":  # now there is a tarball to hash
            src = _torchvision_source(dataset, "torchvision-download", data_dir())
        _write_cache(path, images, labels, classes, dataset, split, src)
    last_source = src
    if fraction < 1:
        keep = subset_indices(labels, fraction, seed)
        images, labels = images[keep], labels[keep]
    return images, labels


def classes(dataset: str = "cifar10") -> list[str]:
    """Class names in label order, as recorded in the decoded test split."""
    _check_dataset(dataset)
    src, _ = _resolve(dataset)
    path = _cache_path(dataset, src["id"], "test")
    if not path.is_file():
        load(dataset, "test")
    return list(_read_cache(path)[2]["classes"])


def subset_indices(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Seeded, class-balanced, nested subset: the small-data regime of methods.md §2 and §15.13.

    One generator seeded with ``seed`` shuffles each class in turn (in label order), and the
    first ``round(fraction * n_class)`` (at least 1) indices of each class are kept. The
    shuffles do not depend on ``fraction``, so for one seed and one set of labels the
    10 % subset lies inside the 30 % subset, which lies inside the whole set.

    Args:
        labels: int64 [N] class labels.
        fraction: share of each class to keep, in (0, 1].
        seed: seed of the per-class permutations.

    Returns:
        int64 [M] indices into ``labels``, sorted ascending.
    """
    _check_fraction(fraction)
    _check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for cls in torch.unique(labels).tolist():  # sorted, so the draws per class do not depend on fraction
        members = torch.nonzero(labels == cls).flatten()
        order = torch.randperm(len(members), generator=generator)
        count = max(1, math.floor(fraction * len(members) + 0.5))  # round half up, not to even
        kept.append(members[order[:count]])
    return torch.sort(torch.cat(kept)).values


# --------------------------------------------------------------------------- normalisation


def _channel_constants(dataset: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    _check_dataset(dataset)
    mean = torch.tensor(MEAN[dataset], dtype=torch.float32, device=device).view(3, 1, 1)
    std = torch.tensor(STD[dataset], dtype=torch.float32, device=device).view(3, 1, 1)
    return mean, std


def normalize(images: torch.Tensor, dataset: str = "cifar10") -> torch.Tensor:
    """uint8 images [..., 3, H, W] → float32 ``(x / 255 − mean) / std`` (methods.md §2).

    A floating-point tensor is taken as already normalised and returned unchanged.

    Args:
        images: uint8 [..., 3, H, W], or a floating tensor.
        dataset: whose mean and std to use.
    """
    if images.is_floating_point():
        return images
    if images.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 or floating images, got {images.dtype}")
    if images.ndim < 3 or images.shape[-3] != 3:
        raise ValueError(f"expected images of shape [..., 3, H, W], got {tuple(images.shape)}")
    mean, std = _channel_constants(dataset, images.device)
    return (images.float() / 255 - mean) / std


def denormalize(images: torch.Tensor, dataset: str = "cifar10") -> torch.Tensor:
    """The inverse of :func:`normalize` for plotting: float32 in [0, 1], clipped."""
    mean, std = _channel_constants(dataset, images.device)
    return (images.float() * std + mean).clamp(0, 1)


# ---------------------------------------------------------------------- batch augmentation


def random_crop_flip(
    images: torch.Tensor, *, padding: int = 4, flip: bool = True, generator: torch.Generator
) -> torch.Tensor:
    """Random crop with zero padding, then a horizontal flip with probability ½, per image.

    Vectorised: every image gets its own offset and flip, and all crops are read in one
    ``gather`` from the padded batch. Works for uint8 and floating tensors on any device; the
    random draws come from ``generator`` (on its own device) and never touch the global RNG.

    Args:
        images: [B, 3, H, W].
        padding: zero border added on every side before cropping back to H × W.
        flip: whether to flip half of the images horizontally.
        generator: source of all randomness.

    Returns:
        A new tensor of the same shape and dtype.
    """
    _check_batch(images)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    b, c, h, w = images.shape
    device = images.device
    draw = {"generator": generator, "device": generator.device}
    dy = torch.randint(0, 2 * padding + 1, (b,), **draw).to(device)
    dx = torch.randint(0, 2 * padding + 1, (b,), **draw).to(device)
    rows = dy[:, None] + torch.arange(h, device=device)  # [B, H] rows of the padded image
    cols = dx[:, None] + torch.arange(w, device=device)  # [B, W] columns of the padded image
    if flip:
        flipped = (torch.rand(b, **draw) < 0.5).to(device)
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    padded = F.pad(images, (padding,) * 4) if padding else images
    flat = rows[:, :, None] * (w + 2 * padding) + cols[:, None, :]  # [B, H, W] into the padded plane
    index = flat.view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


def augmented_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batches: int,
    batch_size: int,
    seed: int = 0,
    crop_flip: bool = True,
    dataset: str = "cifar10",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed, reproducible training batches as the training loop would see them (for Hessians and landscapes).

    Batch ``b`` holds ``batch_size`` distinct images drawn by a generator seeded from
    ``(seed, b)``, then randomly cropped and flipped with the same generator, so a small
    training set (2 % of CIFAR-10 is 1,000 images) still yields as many different batches as
    asked, and every model analysed on the same set sees the same batches.

    Args:
        images: uint8 ``[N, 3, H, W]`` (the model's own training set).
        labels: ``[N]``.
        batches, batch_size: How many batches of how many images (``batch_size`` ≤ N).
        seed: Seed of the draws.
        crop_flip: Apply the training recipe's random crop (padding 4) and flip.
        dataset: Normalisation statistics.

    Returns:
        Normalised float32 images ``[batches·batch_size, 3, H, W]`` and their labels, batch
        after batch.
    """
    _check_batch(images)
    if len(images) != len(labels):
        raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
    if batches < 1 or not 1 <= batch_size <= len(images):
        raise ValueError(f"need batches ≥ 1 and 1 ≤ batch_size ≤ {len(images)} images, got {batches}, {batch_size}")
    out_images, out_labels = [], []
    for b in range(batches):
        generator = torch.Generator().manual_seed((seed * 1_000_003 + b) & (2**63 - 1))
        pick = torch.randperm(len(images), generator=generator)[:batch_size]
        batch = images[pick]
        if crop_flip:
            batch = random_crop_flip(batch, generator=generator)
        out_images.append(normalize(batch, dataset).float())
        out_labels.append(labels[pick])
    return torch.cat(out_images), torch.cat(out_labels)


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator seeded from ``generator`` (numpy has the Beta sampler torch lacks)."""
    seed = torch.randint(0, 2**63 - 1, (1,), generator=generator, device=generator.device).item()
    return np.random.default_rng(seed)


def _cutmix_box(rng: np.random.Generator, h: int, w: int, lam: float) -> tuple[int, int, int, int]:
    """A box covering about 1 − lam of the image, centred uniformly, clipped to the image."""
    side = math.sqrt(1 - lam)
    cut_h, cut_w = int(h * side), int(w * side)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, w)
    return top, bottom, left, right


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot float32 targets with label smoothing: 1 − s + s/K on the class, s/K elsewhere."""
    off = smoothing / num_classes
    targets = torch.full((len(labels), num_classes), off, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.long().view(-1, 1), 1 - smoothing + off)


def mix_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    mixup_alpha: float = 1.0,
    cutmix_alpha: float = 0.8,
    switch_prob: float = 0.5,
    prob: float = 1.0,
    label_smoothing: float = 0.1,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a whole batch with its reverse, with smoothed soft targets.

    Follows timm's ``Mixup`` in mode ``"batch"`` with lambda correction (methods.md §2): with
    probability ``prob`` the batch is mixed; if both alphas are positive CutMix is chosen with
    probability ``switch_prob``; lam ~ Beta(alpha, alpha); image i is mixed with image B−1−i.
    For CutMix, lam is corrected to the share of the image left uncovered by the clipped box.
    Unlike timm it draws from ``generator`` instead of numpy's global RNG, and never changes
    ``images`` in place.

    Args:
        images: floating [B, 3, H, W], normally already normalised.
        labels: int64 [B] class labels.
        num_classes: number of classes K.
        mixup_alpha: Beta parameter of Mixup; 0 turns Mixup off.
        cutmix_alpha: Beta parameter of CutMix; 0 turns CutMix off.
        switch_prob: probability of CutMix when both are on.
        prob: probability of mixing this batch at all.
        label_smoothing: s in the smoothed one-hot targets.
        generator: source of all randomness.

    Returns:
        ``(images, targets)``: the mixed images (the input itself when nothing was mixed) and
        float32 [B, K] targets whose rows sum to 1.
    """
    _check_batch(images)
    if not images.is_floating_point():
        raise ValueError(f"mix_batch expects floating images (call normalize first), got {images.dtype}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match the batch of {images.shape[0]} images")
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"alphas must be >= 0, got mixup {mixup_alpha}, cutmix {cutmix_alpha}")
    if not (0 <= switch_prob <= 1 and 0 <= prob <= 1 and 0 <= label_smoothing < 1):
        raise ValueError(f"switch_prob and prob must be in [0, 1] and label_smoothing in [0, 1), got "
                         f"{switch_prob}, {prob}, {label_smoothing}")
    rng = _numpy_rng(generator)
    targets = smooth_one_hot(labels, num_classes, label_smoothing)
    if rng.random() >= prob or (mixup_alpha == 0 and cutmix_alpha == 0):
        return images, targets
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or rng.random() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    partner = images.flip(0)
    if use_cutmix:
        h, w = images.shape[-2:]
        top, bottom, left, right = _cutmix_box(rng, h, w, lam)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (h * w)
    else:
        mixed = partner.lerp(images, lam)  # lam · images + (1 − lam) · partner
    return mixed, targets * lam + targets.flip(0) * (1 - lam)


# ------------------------------------------------------------ per-image paper augmentation


def _seed_words(*entropy: int, count: int = 2) -> list[int]:
    """``count`` independent 32-bit seeds from a tuple of non-negative ints."""
    return [int(x) for x in np.random.SeedSequence(list(entropy)).generate_state(count)]


@contextlib.contextmanager
def _seeded_global_rngs(py_seed: int, np_seed: int):
    """Seed Python's and numpy's global RNGs (which timm's RandAugment uses), then restore them."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(py_seed)
    np.random.seed(np_seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _randaugment(config: str, dataset: str):
    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform

    hparams = {
        "translate_const": int(IMAGE_SHAPE[-1] * 0.45),  # timm's choice for its training transforms
        "img_mean": tuple(round(255 * m) for m in MEAN[dataset]),  # fill colour of shears and shifts
        "interpolation": Image.BILINEAR,  # timm's training default
    }
    return rand_augment_transform(config, hparams)


_ORDER, _ITEM = 1, 2  # tags that keep the sampler's seeds apart from the per-image seeds


class AugmentedCIFAR(torch.utils.data.Dataset):
    """Per-image augmentation of the ``paper`` recipe: crop + flip, then RandAugment (methods.md §2).

    Image ``i`` of epoch ``e`` is augmented with seeds derived from (seed, e, i) alone, so the
    result does not depend on the number of workers or on the order of access, and the global
    RNGs of the caller are left as they were.

    Args:
        images: uint8 [N, 3, 32, 32].
        labels: int64 [N].
        seed: the run's seed.
        epoch: the epoch, so that each epoch sees new augmentations.
        dataset: whose mean is the fill colour of geometric ops.
        randaugment: timm RandAugment config string.
        padding: zero padding of the random crop.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        seed: int = 0,
        epoch: int = 0,
        dataset: str = "cifar10",
        randaugment: str = PAPER_RANDAUGMENT,
        padding: int = 4,
    ):
        _check_batch(images)
        if images.dtype != torch.uint8:
            raise ValueError(f"AugmentedCIFAR expects uint8 images, got {images.dtype}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels {tuple(labels.shape)} do not match {images.shape[0]} images")
        _check_seed(seed)
        _check_seed(epoch, "epoch")
        _check_dataset(dataset)
        self.images, self.labels = images, labels
        self.seed, self.epoch, self.padding = seed, epoch, padding
        self.randaugment = _randaugment(randaugment, dataset)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        crop_seed, py_seed, np_seed = _seed_words(_ITEM, self.seed, self.epoch, int(index), count=3)
        crop = torch.Generator().manual_seed(crop_seed)
        image = random_crop_flip(self.images[index : index + 1], padding=self.padding, generator=crop)[0]
        with _seeded_global_rngs(py_seed, np_seed):
            image = _pil_round_trip(image, self.randaugment)
        return image, self.labels[index]


def _pil_round_trip(image: torch.Tensor, transform) -> torch.Tensor:
    from PIL import Image

    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    return torch.from_numpy(np.array(transform(pil), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def paper_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    num_workers: int = 0,
    dataset: str = "cifar10",
    randaugment: str = PAPER_RANDAUGMENT,
    drop_last: bool = False,
    pin_memory: bool = False,
    start_batch: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> torch.utils.data.DataLoader:
    """One epoch of :class:`AugmentedCIFAR` batches in a seeded random order.

    The order depends only on (seed, epoch); the augmentations only on (seed, epoch, image), so
    the batches are the same for any ``num_workers``. Mixup/CutMix and normalisation happen
    afterwards on the batch (:func:`normalize`, :func:`mix_batch`).

    Args:
        images: uint8 [N, 3, 32, 32].
        labels: int64 [N].
        batch_size: images per batch.
        seed: the run's seed.
        epoch: the epoch (new order and new augmentations each epoch).
        num_workers: DataLoader worker processes (0: in this process).
        dataset: whose mean is the fill colour of RandAugment's geometric ops.
        randaugment: timm RandAugment config string.
        drop_last: drop the last incomplete batch.
        pin_memory: pin batches for faster copies to a GPU.
        start_batch: skip the first batches of the epoch without augmenting them (resuming).
        shard: ``(rank, processes)``: yield only this process's equal share of each batch (rank
            ``r`` gets images ``r·B/P … (r+1)·B/P − 1`` of it), for data-parallel training; the
            shares of all processes, concatenated in rank order, are the batches of ``(0, 1)``.

    Returns:
        A DataLoader yielding (uint8 [B, 3, 32, 32], int64 [B]), B = ``batch_size / processes``.
    """
    augmented = AugmentedCIFAR(images, labels, seed=seed, epoch=epoch, dataset=dataset, randaugment=randaugment)
    order_seed, worker_seed = _seed_words(_ORDER, seed, epoch)
    order = torch.randperm(len(augmented), generator=torch.Generator().manual_seed(order_seed))
    if tuple(shard) == (0, 1):
        sampler, per_batch = order[start_batch * batch_size :].tolist(), batch_size
    else:
        sampler, per_batch = _shard_order(order, batch_size, shard, drop_last=drop_last, start_batch=start_batch)
    return torch.utils.data.DataLoader(
        augmented,
        batch_size=per_batch,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(worker_seed),  # worker seeds, without touching the global RNG
    )


def _shard_order(order: torch.Tensor, batch_size: int, shard: tuple[int, int], *, drop_last: bool,
                 start_batch: int) -> tuple[list[int], int]:
    """The indices of one process's share of each whole batch of ``order``, and the share's size."""
    rank, processes = shard
    if not (isinstance(processes, int) and isinstance(rank, int) and processes >= 1 and 0 <= rank < processes):
        raise ValueError(f"shard={tuple(shard)!r}: need (rank, processes) with 0 ≤ rank < processes")
    if batch_size % processes:
        raise ValueError(f"batch_size={batch_size} does not split evenly over {processes} processes; "
                         f"use a multiple of {processes}")
    if not drop_last:
        raise ValueError("shard needs drop_last=True: an incomplete last batch cannot be split evenly")
    batches, per_batch = len(order) // batch_size, batch_size // processes
    mine = order[: batches * batch_size].view(batches, processes, per_batch)[start_batch:, rank]
    return mine.flatten().tolist(), per_batch
