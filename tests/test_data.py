"""Tests of lib.data: sources, cache, subsets, normalisation and augmentation (METHODS §2).

The tests marked "real data" read CIFAR-10 from whatever offline source is available (the
shared JPEG archive here); the first run decodes it into the data folder's cache, later runs
reuse that cache. Every other test builds a tiny archive of generated JPEGs in a temporary data
folder and blocks the network by standing in for torchvision's CIFAR classes.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import socket
import tarfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from lib import data

# ----------------------------------------------------------------------------- helpers

# Solid colours survive JPEG almost exactly (no edges, no chroma detail to subsample).
COLOURS = {"cat": (200, 40, 40), "ant": (40, 200, 40), "bee": (40, 40, 200)}
JPEG_TOLERANCE = 4  # max |decoded − written| for a solid colour at quality 95


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _make_archive(path: Path, per_class: dict[str, int]) -> Path:
    """A tar.gz in the shared layout: ``<split>/<class>/NNNN.jpg``, solid colours from COLOURS."""
    with tarfile.open(path, "w:gz") as tar:
        for split, count in per_class.items():
            for cls, colour in COLOURS.items():  # written in unsorted class order on purpose
                for i in reversed(range(count)):  # and files in reverse order
                    payload = _jpeg(colour)
                    info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return path


class _OfflineCIFAR10:
    """Stands in for torchvision's CIFAR10 on a machine without a network or local files."""

    base_folder = "cifar-10-batches-py"
    filename = "cifar-10-python.tar.gz"

    def __init__(self, root, train=True, download=False):
        if download:
            Path(root, self.filename).write_bytes(b"half a download")  # what a dropped link leaves
            raise urllib.error.URLError("network is unreachable")
        raise RuntimeError("Dataset not found or corrupted.")


class _OfflineCIFAR100(_OfflineCIFAR10):
    base_folder = "cifar-100-python"
    filename = "cifar-100-python.tar.gz"


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A temporary data folder, no archive anywhere, and no network: returns the data folder."""
    folder = tmp_path / "data"
    monkeypatch.setenv("BOOK_DATA_DIR", str(folder))
    monkeypatch.delenv("BOOK_CIFAR10_ARCHIVE", raising=False)
    monkeypatch.setattr(data, "SHARED_ARCHIVE", tmp_path / "missing" / "cifar10-jpeg-q75.tar.gz")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _OfflineCIFAR10)
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", _OfflineCIFAR100)
    return folder


@pytest.fixture
def tiny_archive(tmp_path, isolated, monkeypatch) -> Path:
    """Two train and one test image per class, named by BOOK_CIFAR10_ARCHIVE."""
    path = _make_archive(tmp_path / "tiny.tar.gz", {"train": 2, "test": 1})
    monkeypatch.setenv("BOOK_CIFAR10_ARCHIVE", str(path))
    return path


@pytest.fixture(scope="module")
def cifar10_test():
    """The real CIFAR-10 test split, skipped where no offline source exists."""
    if data.source("cifar10")["kind"] == "torchvision-download":
        pytest.skip("no offline CIFAR-10 here (no archive, no torchvision files)")
    return data.load("cifar10", "test")


# ------------------------------------------------------------------------ real data


def test_cifar10_test_split_is_10000_uint8_images_1000_per_class(cifar10_test):
    images, labels = cifar10_test
    assert images.shape == (10000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.int64
    assert labels.bincount().tolist() == [1000] * 10
    assert data.last_source["kind"] in ("env-archive", "shared-archive", "torchvision-local")


def test_cifar10_train_split_is_50000_images_5000_per_class_and_reloads_within_5s(cifar10_test):
    images, labels = data.load("cifar10", "train")  # decodes on the very first run, then cached
    assert images.shape == (50000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [5000] * 10
    start = time.perf_counter()
    again, _ = data.load("cifar10", "train")
    seconds = time.perf_counter() - start
    assert seconds <= 5, f"second load took {seconds:.1f} s"
    assert torch.equal(again, images)


def test_shared_archive_source_states_the_jpeg_caveat(monkeypatch):
    monkeypatch.delenv("BOOK_CIFAR10_ARCHIVE", raising=False)
    if not Path(data.SHARED_ARCHIVE).is_file():
        pytest.skip("the shared archive is not beside this checkout")
    described = data.source("cifar10")
    assert described["kind"] == "shared-archive"
    assert described["sha256"] == data.SHARED_ARCHIVE_SHA256
    assert "JPEG quality 75" in described["description"]


def test_normalized_test_set_is_centred_with_std_near_1_2(cifar10_test):
    images, _ = cifar10_test
    x = data.normalize(images, "cifar10")
    assert x.dtype == torch.float32 and x.shape == images.shape
    # The constants are the train set's (METHODS §2); test-set means sit within 0.05 of them.
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.05
    # The std constants are the mean per-image std, smaller than the pixel std, so ≈ 1.2-1.3.
    std = x.std(dim=(0, 2, 3))
    assert ((std > 1.1) & (std < 1.4)).all(), std


def test_load_fraction_of_real_test_split_keeps_100_per_class(cifar10_test):
    images, labels = data.load("cifar10", "test", fraction=0.1, seed=3)
    assert labels.bincount().tolist() == [100] * 10
    keep = data.subset_indices(cifar10_test[1], 0.1, 3)
    assert torch.equal(images, cifar10_test[0][keep])


# --------------------------------------------------------------------------- subsets


def _labels(per_class: int = 50, classes: int = 10) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.arange(classes).repeat_interleave(per_class)[torch.randperm(per_class * classes, generator=g)]


def test_subset_is_class_balanced_sorted_and_rounded():
    labels = _labels(per_class=50)
    keep = data.subset_indices(labels, 0.3, 0)
    assert labels[keep].bincount().tolist() == [15] * 10
    assert torch.equal(keep, keep.sort().values) and keep.dtype == torch.int64
    assert labels[data.subset_indices(labels, 0.01, 0)].bincount().tolist() == [1] * 10  # round(0.5) → 1
    assert len(data.subset_indices(labels, 1.0, 0)) == len(labels)


def test_subsets_of_one_seed_are_nested():
    labels = _labels(per_class=50)
    small, medium, whole = (data.subset_indices(labels, f, 7) for f in (0.1, 0.3, 1.0))
    assert torch.isin(small, medium).all() and torch.isin(medium, whole).all()


def test_subset_same_seed_same_other_seed_differs():
    labels = _labels(per_class=50)
    assert torch.equal(data.subset_indices(labels, 0.1, 1), data.subset_indices(labels, 0.1, 1))
    assert not torch.equal(data.subset_indices(labels, 0.1, 1), data.subset_indices(labels, 0.1, 2))


# ---------------------------------------------------------------------------- errors


def test_unknown_dataset_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="'imagenet'.*cifar10, cifar100"):
        data.load("imagenet", "train")
    with pytest.raises(ValueError, match="'svhn'"):
        data.source("svhn")


def test_unknown_split_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="'val'.*train, test"):
        data.load("cifar10", "val")


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, float("nan"), True])
def test_fraction_outside_0_1_is_a_value_error(fraction):
    with pytest.raises(ValueError, match=f"fraction.*{fraction!r}"):
        data.load("cifar10", "train", fraction=fraction)


def test_no_source_lists_every_place_tried_and_leaves_no_partial_download(isolated):
    with pytest.raises(FileNotFoundError) as caught:
        data.load("cifar10", "test")
    message = str(caught.value)
    assert "BOOK_CIFAR10_ARCHIVE" in message
    assert f"{data.SHARED_ARCHIVE}: not found" in message
    assert f"{isolated / 'cifar-10-batches-py'}: not found" in message
    assert "network is unreachable" in message
    assert "online" in message
    assert _files_under(isolated) == []  # the half download went to a staging folder, now gone


def test_no_source_for_cifar100_names_torchvision_files(isolated):
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        data.load("cifar100", "train")


def test_shared_archive_with_wrong_sha256_is_an_error_giving_both_hashes(isolated, tmp_path, monkeypatch):
    fake = _make_archive(tmp_path / "cifar10-jpeg-q75.tar.gz", {"train": 1, "test": 1})
    monkeypatch.setattr(data, "SHARED_ARCHIVE", fake)
    actual = hashlib.sha256(fake.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match="sha256 mismatch") as caught:
        data.load("cifar10", "test")
    assert data.SHARED_ARCHIVE_SHA256 in str(caught.value) and actual in str(caught.value)


def test_truncated_archive_is_an_error_naming_the_file_the_expected_sha256_and_what_to_do(isolated, tmp_path, monkeypatch):
    whole = _make_archive(tmp_path / "whole.tar.gz", {"train": 3, "test": 2})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    monkeypatch.setenv("BOOK_CIFAR10_ARCHIVE", str(cut))
    with pytest.raises(RuntimeError, match="truncated or damaged") as caught:
        data.load("cifar10", "test")
    message = str(caught.value)
    assert str(cut) in message and data.SHARED_ARCHIVE_SHA256 in message and "BOOK_CIFAR10_ARCHIVE" in message


def test_named_archive_that_does_not_exist_is_an_error(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CIFAR10_ARCHIVE", str(tmp_path / "nowhere.tar.gz"))
    with pytest.raises(FileNotFoundError, match="nowhere.tar.gz"):
        data.load("cifar10", "test")


class _OnlineCIFAR10(_OfflineCIFAR10):
    """Stands in for torchvision's CIFAR10 online: 'downloads' a tiny set, channel c holds c + 1."""

    timeouts: list = []

    def __init__(self, root, train=True, download=False):
        folder = Path(root, self.base_folder)
        if download:
            self.timeouts.append(socket.getdefaulttimeout())
            folder.mkdir()
            Path(root, self.filename).write_bytes(b"the tarball")
        if not folder.is_dir():
            raise RuntimeError("Dataset not found or corrupted.")
        n = 4 if train else 2
        self.data = np.broadcast_to(np.arange(1, 4, dtype=np.uint8), (n, 32, 32, 3)).copy()  # [N, H, W, C]
        self.targets = [i % 2 for i in range(n)]
        self.classes = ["a", "b"]


def test_torchvision_download_is_moved_into_place_then_used_locally(isolated, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _OnlineCIFAR10)
    _OnlineCIFAR10.timeouts.clear()
    images, labels = data.load("cifar10", "train")
    assert _OnlineCIFAR10.timeouts == [data.DOWNLOAD_TIMEOUT_S] and socket.getdefaulttimeout() is None
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert [images[:, c].unique().tolist() for c in range(3)] == [[1], [2], [3]]  # HWC → CHW
    assert labels.tolist() == [0, 1, 0, 1] and labels.dtype == torch.int64
    assert data.last_source["kind"] == "torchvision-download"
    assert sorted(p.name for p in isolated.iterdir()) == ["cache", "cifar-10-batches-py", "cifar-10-python.tar.gz"]
    local = data.source("cifar10")
    assert local["kind"] == "torchvision-local"
    assert local["sha256"] == hashlib.sha256(b"the tarball").hexdigest()
    assert data.load("cifar10", "test")[0].shape == (2, 3, 32, 32)
    assert _OnlineCIFAR10.timeouts == [data.DOWNLOAD_TIMEOUT_S]  # downloaded once only


# ------------------------------------------------------------- named archive and cache


def test_named_archive_loads_its_images_with_sorted_class_labels(tiny_archive):
    images, labels = data.load("cifar10", "train")
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]  # ant, bee, cat
    for image, label in zip(images, labels):
        colour = COLOURS[sorted(COLOURS)[label]]
        expected = torch.tensor(colour, dtype=torch.int16).view(3, 1, 1)
        assert (image.short() - expected).abs().max() <= JPEG_TOLERANCE
    used = data.last_source
    assert used["kind"] == "env-archive"
    assert used["sha256"] == hashlib.sha256(tiny_archive.read_bytes()).hexdigest()
    assert used == data.source("cifar10")


def test_second_load_reads_the_cache_not_the_archive(tiny_archive, isolated, monkeypatch):
    first = data.load("cifar10", "test")
    [cached] = _files_under(isolated / "cache")
    assert cached.name == f"cifar10-{data.last_source['id']}-test.pt"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(data, "_decode_archive", no_decoding)
    second = data.load("cifar10", "test")
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_failed_cache_write_leaves_nothing_behind(tiny_archive, isolated, monkeypatch):
    def write_half_then_fail(obj, file):
        file.write(b"half a cache file")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(data, "_serialize", write_half_then_fail)
        with pytest.raises(OSError, match="disk full"):
            data.load("cifar10", "test")
    assert _files_under(isolated) == []
    assert data.load("cifar10", "test")[0].shape == (3, 3, 32, 32)  # and the next load writes it whole


def test_unreadable_cache_is_an_error_naming_it(tiny_archive, isolated):
    data.load("cifar10", "test")
    [cached] = _files_under(isolated / "cache")
    cached.write_bytes(b"not a torch file")
    with pytest.raises(RuntimeError, match=f"{cached}.*delete it"):
        data.load("cifar10", "test")


def test_cache_with_altered_pixels_is_an_error(tiny_archive, isolated):
    data.load("cifar10", "test")
    [cached] = _files_under(isolated / "cache")
    blob = torch.load(cached, weights_only=True)
    blob["images"][0, 0, 0, 0] ^= 1
    torch.save(blob, cached)
    with pytest.raises(RuntimeError, match="does not match its recorded sha256"):
        data.load("cifar10", "test")


# ----------------------------------------------------------------------- normalisation


def test_normalize_maps_mean_pixel_to_zero_and_passes_floats_through():
    mean = torch.tensor(data.MEAN["cifar100"])
    pixel = (mean * 255).round().to(torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert data.normalize(pixel, "cifar100").abs().max() < 0.5 / 255 / min(data.STD["cifar100"]) + 1e-6
    already = torch.randn(2, 3, 4, 4)
    assert data.normalize(already) is already
    with pytest.raises(ValueError, match="int32"):
        data.normalize(torch.zeros(1, 3, 4, 4, dtype=torch.int32))


def test_denormalize_inverts_normalize():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    back = data.denormalize(data.normalize(images, "cifar10"), "cifar10")
    torch.testing.assert_close(back, images.float() / 255, rtol=0, atol=1e-6)


# ------------------------------------------------------------------- random crop + flip


def _noise(b: int = 8, seed: int = 0) -> torch.Tensor:
    """uint8 images without zeros, so zero padding is always visible."""
    return torch.randint(1, 256, (b, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_crop_flip_keeps_shape_and_dtype():
    for images in (_noise(), _noise().float()):
        out = data.random_crop_flip(images, generator=_gen(0))
        assert out.shape == images.shape and out.dtype == images.dtype


def test_crop_flip_same_seed_same_result_other_seed_differs():
    images = _noise(16)
    first = data.random_crop_flip(images, generator=_gen(1))
    assert torch.equal(first, data.random_crop_flip(images, generator=_gen(1)))
    assert not torch.equal(first, data.random_crop_flip(images, generator=_gen(2)))


def test_crop_flip_without_padding_or_flip_is_identity():
    images = _noise()
    assert torch.equal(data.random_crop_flip(images, padding=0, flip=False, generator=_gen(0)), images)


def test_flip_only_mirrors_some_images_and_leaves_the_rest():
    images = _noise(64)
    out = data.random_crop_flip(images, padding=0, generator=_gen(0))
    flipped = torch.tensor([torch.equal(o, torch.flip(x, dims=[-1])) for o, x in zip(out, images)])
    kept = torch.tensor([torch.equal(o, x) for o, x in zip(out, images)])
    assert (flipped ^ kept).all()  # each image is exactly one of the two
    assert 0 < flipped.sum() < 64


def _crop_offsets(original: torch.Tensor, crop: torch.Tensor, padding: int) -> list[tuple[int, int]]:
    """Every (dy, dx) at which ``crop`` is a window of the zero-padded ``original``."""
    padded = torch.nn.functional.pad(original, (padding,) * 4)
    h, w = original.shape[-2:]
    return [
        (dy, dx)
        for dy in range(2 * padding + 1)
        for dx in range(2 * padding + 1)
        if torch.equal(padded[:, dy : dy + h, dx : dx + w], crop)
    ]


def test_crop_is_a_shifted_copy_and_uses_every_offset():
    images = _noise(256)
    out = data.random_crop_flip(images, padding=4, flip=False, generator=_gen(0))
    offsets = [_crop_offsets(x, o, 4) for x, o in zip(images, out)]
    assert all(len(found) == 1 for found in offsets)  # exactly one window matches
    dys = {found[0][0] for found in offsets}
    dxs = {found[0][1] for found in offsets}
    assert dys == set(range(9)) and dxs == set(range(9))  # P(missing one) < 1e-11


def test_crop_and_flip_together_give_a_window_of_the_image_or_its_mirror():
    images = _noise(32)
    out = data.random_crop_flip(images, padding=4, generator=_gen(5))
    for x, o in zip(images, out):
        assert len(_crop_offsets(x, o, 4)) + len(_crop_offsets(x.flip(-1), o, 4)) == 1


# --------------------------------------------------------------------------- mixing


def _indexed_batch(b: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is the constant i and has label i, so pixels and targets reveal the mixing."""
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, 32, 32).contiguous()
    return images, torch.arange(b)


def test_mixed_targets_are_distributions():
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for seed in range(20):
        mixed, targets = data.mix_batch(images, labels, 10, generator=_gen(seed))
        assert mixed.shape == images.shape and targets.shape == (16, 10)
        assert (targets >= 0).all()
        torch.testing.assert_close(targets.sum(1), torch.ones(16))


def test_mixing_disabled_returns_images_and_smoothed_one_hot():
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 9, 3])
    expected = torch.full((4, 10), 0.01)
    expected[torch.arange(4), labels] = 0.91  # 1 − 0.1 + 0.1 / 10
    for options in ({"mixup_alpha": 0.0, "cutmix_alpha": 0.0}, {"prob": 0.0}):
        mixed, targets = data.mix_batch(images, labels, 10, label_smoothing=0.1, generator=_gen(0), **options)
        assert torch.equal(mixed, images)
        torch.testing.assert_close(targets, expected)


def test_cutmix_target_weight_equals_the_share_of_own_pixels():
    images, labels = _indexed_batch(8)
    for seed in range(20):
        mixed, targets = data.mix_batch(
            images, labels, 8, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, generator=_gen(seed)
        )
        for i in range(8):
            partner = 7 - i
            own = (mixed[i] == i).float().mean().item()
            assert ((mixed[i] == i) | (mixed[i] == partner)).all()
            assert math.isclose(targets[i, i].item(), own, abs_tol=1e-6)
            assert math.isclose(targets[i, partner].item(), 1 - own, abs_tol=1e-6)


def test_mixup_images_and_targets_share_one_lambda():
    images, labels = _indexed_batch(8)
    for seed in range(10):
        mixed, targets = data.mix_batch(
            images, labels, 8, mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0, generator=_gen(seed)
        )
        lam = targets[0, 0]
        expected = lam * images + (1 - lam) * images.flip(0)
        torch.testing.assert_close(mixed, expected)
        torch.testing.assert_close(torch.diagonal(targets), lam.expand(8))


def test_mix_batch_same_seed_same_result_and_uses_both_modes():
    images, labels = _indexed_batch(8)
    first = data.mix_batch(images, labels, 8, generator=_gen(3))
    again = data.mix_batch(images, labels, 8, generator=_gen(3))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # Over many seeds, switch_prob 0.5 must pick CutMix (pixels are whole numbers) and Mixup.
    cutmix = [bool((data.mix_batch(images, labels, 8, generator=_gen(s))[0] % 1 == 0).all()) for s in range(40)]
    assert 5 < sum(cutmix) < 35


def test_mix_batch_rejects_uint8_images():
    with pytest.raises(ValueError, match="normalize"):
        data.mix_batch(_noise(2), torch.tensor([0, 1]), 10, generator=_gen(0))


# ------------------------------------------------------------- paper augmentation


def test_augmented_cifar_yields_uint8_images_reproducibly_and_keeps_global_rngs():
    images, labels = _noise(6), torch.arange(6)
    augmented = data.AugmentedCIFAR(images, labels, seed=0, epoch=0)
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    image, label = augmented[2]
    assert (random.random(), np.random.random()) == before  # timm's global RNG use is undone
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and label.item() == 2
    assert torch.equal(image, augmented[2][0])
    assert not torch.equal(image, data.AugmentedCIFAR(images, labels, seed=0, epoch=1)[2][0])


def test_paper_loader_batches_do_not_depend_on_worker_count():
    images, labels = _noise(10), torch.arange(10)

    def batches(workers: int):
        loader = data.paper_loader(images, labels, 4, seed=1, epoch=2, num_workers=workers)
        return list(loader)

    single, pooled = batches(0), batches(2)
    assert [x.shape for x, _ in single] == [(4, 3, 32, 32), (4, 3, 32, 32), (2, 3, 32, 32)]
    assert single[0][0].dtype == torch.uint8
    assert sorted(torch.cat([y for _, y in single]).tolist()) == list(range(10))
    for (x0, y0), (x2, y2) in zip(single, pooled):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    other_epoch = list(data.paper_loader(images, labels, 4, seed=1, epoch=3))
    assert not torch.equal(torch.cat([x for x, _ in single]), torch.cat([x for x, _ in other_epoch]))


def test_augmented_batches_are_distinct_within_a_batch_reproducible_and_augmented():
    from lib import data as d

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(20)
    x, y = d.augmented_batches(images, labels, batches=3, batch_size=16, seed=1)
    assert x.shape == (48, 3, 8, 8) and x.dtype == torch.float32
    for b in range(3):
        assert len(set(y[16 * b : 16 * (b + 1)].tolist())) == 16  # no image twice in a batch
    again = d.augmented_batches(images, labels, batches=3, batch_size=16, seed=1)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    plain, plain_y = d.augmented_batches(images, labels, batches=1, batch_size=16, seed=1, crop_flip=False)
    assert torch.equal(plain, d.normalize(images[plain_y]).float())
    assert not torch.equal(x[:16], plain)  # cropped and flipped
    with pytest.raises(ValueError, match="batch_size"):
        d.augmented_batches(images, labels, batches=1, batch_size=21)
