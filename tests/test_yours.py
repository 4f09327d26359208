"""Tests of lib.yours: building, loading and sizing a reader's own timm model for the appendix.

Known answers: the same seed gives the same initialisation and leaves the global generator as it
was; a CIFAR stem keeps 32×32 maps in the first stage (32/16/8/4 over the stages); a checkpoint
written from one model and loaded into a differently initialised one gives identical weights,
in both formats timm reads; a sample is fixed, exact in size and nested.
"""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from lib import yours
from lib.models import feature_maps, units


def _vit() -> torch.nn.Module:
    return timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=8, embed_dim=16,
                             depth=2, num_heads=2)


def _resnet() -> torch.nn.Module:
    return timm.create_model("resnet18", num_classes=10, channels=(8, 8, 16, 16))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_seeded_gives_the_same_init_and_restores_the_global_generator():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with yours.seeded(0):
        a = _vit()
    assert torch.equal(torch.random.get_rng_state(), before)
    with yours.seeded(0):
        b = _vit()
    with yours.seeded(1):
        c = _vit()
    assert _same_weights(a, b)
    assert not _same_weights(a, c)


def test_cifar_stem_keeps_full_resolution_in_the_first_stage():
    with yours.seeded(0):
        model = yours.cifar_stem(_resnet())
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sizes = {u.stage: fmap.shape[-1] for u, fmap in feature_maps(model.eval(), images)}
    assert sizes == {0: 32, 1: 32, 2: 16, 3: 8, 4: 4}
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_cifar_stem_rejects_a_non_resnet():
    with pytest.raises(TypeError, match="timm ResNet"):
        yours.cifar_stem(_vit())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_prepare_loads_a_checkpoint_exactly(tmp_path, suffix):
    with yours.seeded(0):
        source = _vit()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)  # the layout the paper's checkpoints use
    with yours.seeded(1):
        target = _vit()
    assert not _same_weights(source, target)
    prepared = yours.prepare(target, checkpoint=path, device="cpu", dataset="cifar100")
    assert prepared is target and not prepared.training and prepared.book_dataset == "cifar100"
    assert _same_weights(source, prepared)


def test_prepare_without_checkpoint_keeps_the_initialisation():
    with yours.seeded(0):
        a = _vit()
    with yours.seeded(0):
        b = _vit()
    assert _same_weights(yours.prepare(a, device="cpu"), b)
    assert len(units(a)) == 1 + 2 * 2  # stem, then an MSA and an MLP unit per block


def test_prepare_rejects_a_missing_checkpoint_and_an_unsupported_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        yours.prepare(_vit(), checkpoint=tmp_path / "absent.pth", device="cpu")
    with pytest.raises(TypeError, match="does not support"):
        yours.prepare(torch.nn.Linear(3, 3), device="cpu")


def test_sample_is_fixed_exact_and_nested(monkeypatch):
    images = torch.arange(1000, dtype=torch.int64).reshape(1000, 1, 1, 1).expand(1000, 3, 2, 2).to(torch.uint8)
    labels = torch.arange(1000) % 10
    monkeypatch.setattr(yours.data, "load", lambda dataset, split: (images, labels))
    small, small_labels = yours.sample("test", 30)
    large, _ = yours.sample("test", 300)
    again, _ = yours.sample("test", 30)
    assert small.shape == (30, 3, 2, 2) and len(small_labels) == 30
    assert torch.equal(small, again)
    assert torch.equal(large[:30], small)
    assert not torch.equal(yours.sample("test", 30, seed=1)[0], small)
    assert torch.equal(yours.sample("test", None)[0], images)
    assert torch.equal(yours.sample("test", 5000)[0], images)
    with pytest.raises(ValueError, match="positive number"):
        yours.sample("test", 0)


def test_budget_knows_every_profile_and_rejects_others():
    assert set(yours.BUDGETS) == {"smoke", "cpu", "paper"}
    smoke, cpu = yours.budget("smoke"), yours.budget("cpu")
    assert smoke.images < cpu.images and yours.budget("paper").images is None
    with pytest.raises(ValueError, match="unknown profile"):
        yours.budget("laptop")
