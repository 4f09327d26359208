"""Run keys, the committed-checkpoint lookup, BOOK_TRAINING=off, and smoke training end to end."""

import time

import pytest
import torch

from lib import data, profiles, runs, storage


def test_key_is_stable_and_changes_only_with_what_changes_results():
    base = runs.key(runs.spec("vit", "cpu"))
    assert base == runs.key(runs.spec("vit", "cpu", seed=0, fraction=1.0))
    assert len(base) == 12
    for other in (dict(seed=1), dict(fraction=0.1), dict(epochs=3), dict(local=3)):
        assert runs.key(runs.spec("vit", "cpu", **other)) != base, other
    # speed-only fields stay out of the key
    assert runs.key(runs.spec("vit", "cpu", save_every=7, num_workers=4, compile=True)) == base
    assert runs.key(runs.spec("resnet", "cpu")) != base


def test_equal_values_name_the_same_run_and_typos_are_errors():
    base = runs.key(runs.spec("alternet", "cpu"))
    assert runs.key(runs.spec("alternet", "cpu", epochs=12.0, clip_grad=5)) == base
    assert runs.key(runs.spec("alternet", "cpu", msa_per_stage=[0, 1, 1, 2], window=4.0)) == base  # the defaults
    with pytest.raises(TypeError, match="does not take epoch"):
        runs.spec("alternet", "cpu", epoch=3)
    with pytest.raises(ValueError, match="epochs=12.5 must be an integer"):
        runs.spec("alternet", "cpu", epochs=12.5)


def test_training_command_survives_a_shell():
    cmd = runs.train_command("alternet", "cpu", 0, 1.0, {"msa_per_stage": [0, 1, 1, 3]})
    assert "--set 'msa_per_stage=[0,1,1,3]'" in cmd


def test_none_fields_are_absent_from_the_key():
    recipe = profiles.get("cpu").recipe
    assert "randaugment" not in recipe.key_dict() and "save_every" not in recipe.key_dict()


@pytest.mark.parametrize("bad, match", [
    (dict(role="bert"), "unknown role 'bert'"),
    (dict(profile="gpu"), "unknown profile 'gpu'"),
    (dict(at="best"), "at='best'"),
    (dict(fraction=0.0), "fraction=0.0"),
])
def test_bad_arguments_are_named(bad, match, monkeypatch):
    monkeypatch.setenv("BOOK_TRAINING", "off")
    kwargs = dict(role="vit", profile="cpu") | bad
    with pytest.raises(ValueError, match=match):
        runs.trained(kwargs.pop("role"), kwargs.pop("profile"), **kwargs)


def test_missing_cpu_checkpoint_with_training_off_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOK_TRAINING", "off")
    monkeypatch.setenv("BOOK_CHECKPOINT_DIR", str(tmp_path))
    with pytest.raises(runs.TrainingDisabledError, match="python -m lib.runs train vit --profile cpu --seed 3"):
        runs.trained("vit", "cpu", seed=3)


@pytest.mark.slow
def test_smoke_run_trains_once_then_loads(smoke_cache):
    model = runs.trained("resnet", "smoke", progress=False)
    assert not model.training and model.book_dataset == "cifar10"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    meta = model.book_run
    assert set(meta["test"]["final"]) == {"accuracy", "nll", "ece"}
    assert len(meta["history"]) == profiles.get("smoke").recipe.epochs
    assert meta["provenance"]["data_source"]["kind"]
    # the recorded accuracy is that of the committed (half-precision) weights
    images, labels = data.load("cifar10", "test", fraction=profiles.get("smoke").test_fraction)
    assert runs.evaluate(model, images, labels) == meta["test"]["final"]
    tic = time.perf_counter()
    again = runs.trained("resnet", "smoke", progress=False)
    assert time.perf_counter() - tic < 10
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    warm = runs.trained("resnet", "smoke", at="warmup", progress=False)
    assert not torch.equal(warm.fc.weight, model.fc.weight)
    # the init snapshot is the very model training started from, stored in half precision
    init = runs.trained("resnet", "smoke", at="init", progress=False)
    fresh = runs.build("resnet", "smoke", seed=0)
    for name, tensor in fresh.state_dict().items():
        expected = tensor.half().float() if tensor.is_floating_point() else tensor
        assert torch.equal(init.state_dict()[name], expected), name
    assert meta["init"]["how"] == "saved as training started"
    # a run committed before init snapshots were kept says how to add one
    (runs.run_dir("resnet", "smoke") / "init.safetensors").unlink()
    with pytest.raises(runs.TrainingDisabledError, match="python -m lib.runs add-init resnet --profile smoke --seed 0"):
        runs.trained("resnet", "smoke", at="init", progress=False)


@pytest.mark.slow
def test_corrupt_checkpoint_is_an_error_with_its_path(smoke_cache):
    runs.trained("vit", "smoke", progress=False)
    folder = runs.run_dir("vit", "smoke")
    weights = folder / "final.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(storage.CorruptFileError, match="final.safetensors"):
        runs.trained("vit", "smoke", progress=False)
    assert weights.stat().st_size == 100, "a damaged checkpoint is never silently replaced"
    (folder / "meta.json").unlink()
    with pytest.raises(storage.CorruptFileError, match="no meta.json"):
        runs.trained("vit", "smoke", progress=False)


def test_test_set_limit_keeps_a_class_balanced_nested_subset():
    images, labels = runs.test_set("smoke")
    small, small_labels = runs.test_set("smoke", limit=100)
    assert len(small) == 100 and torch.equal(small_labels.bincount(), torch.full((10,), 10))
    assert len(runs.test_set("smoke", limit=10**6)[0]) == len(images)
    with pytest.raises(ValueError, match="limit"):
        runs.test_set("smoke", limit=0)


@pytest.mark.slow
def test_a_small_data_run_records_its_recipe_batches_and_monitor(smoke_cache):
    model = runs.trained("vit", "smoke", fraction=0.1, progress=False)  # 50 images: one smoke batch
    tiny = runs.trained("vit", "smoke", fraction=0.02, progress=False)  # 10 images: smoke shrinks its batch to fit
    assert tiny.book_run["train_images"] == 10
    assert runs.recipe_of(model).label_smoothing == profiles.get("smoke").recipe.label_smoothing
    assert runs.training_loss(model) == {"label_smoothing": 0.1, "weight_decay": 0.05}
    x, y = runs.training_batches(tiny, batches=3, batch_size=8, seed=0)
    assert x.shape == (24, 3, 32, 32) and x.dtype == torch.float32
    train_images, train_labels = data.load("cifar10", "train", fraction=0.02 * profiles.get("smoke").train_fraction, seed=0)
    assert set(y.tolist()) <= set(train_labels.tolist())
    again = runs.training_batches(tiny, batches=3, batch_size=8, seed=0)
    assert torch.equal(x, again[0])
    table = runs.compare_training({"a": model, "b": tiny})
    assert table["Δaccuracy (points)"].iloc[0] == 0
    assert table["Δtrain loss"].iloc[1] == pytest.approx(table["train loss"].iloc[1] - table["train loss"].iloc[0])
    with pytest.raises(ValueError, match="no training record"):
        runs.training_loss(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_a_retrained_metrics_only_run_supersedes_its_record_and_keeps_the_old_metrics(smoke_cache):
    first = runs.trained("vit", "smoke", seed=3, progress=False).book_run
    folder = runs.run_dir("vit", "smoke", seed=3)
    for weights in folder.glob("*.safetensors"):  # as a sweep leaves a run no chapter analyses
        weights.unlink()
    earlier = storage.load_json(folder / "meta.json")
    earlier["test"]["final"]["accuracy"] = 0.123  # stands in for the same run trained on another machine
    storage.save_json(earlier, folder / "meta.json")
    again = runs.trained("vit", "smoke", seed=3, progress=False).book_run
    assert again["superseded"][0]["test"]["final"]["accuracy"] == 0.123
    assert again["test"] == first["test"]  # same machine, same seed: the same run
    assert (folder / "final.safetensors").exists() and (folder / "init.safetensors").exists()
    assert not folder.with_name(folder.name + ".superseded").exists()
    assert [r["dir"] for r in runs.committed("smoke")].count(str(folder)) == 1


@pytest.mark.slow
def test_a_retrained_run_with_weights_says_whether_it_reproduced_them(smoke_cache):
    runs.trained("vit", "smoke", seed=5, progress=False)
    folder = runs.run_dir("vit", "smoke", seed=5)
    (folder / "warmup.safetensors").unlink()  # as a run trained before warm-up snapshots were kept
    old_hash = storage.sha256(folder / "final.safetensors")
    again = runs.trained("vit", "smoke", seed=5, progress=False, retrain=True).book_run
    assert again["superseded"][0]["final_sha256"] == old_hash
    assert again["final_reproduced"] is True  # same machine, same seed: the same bytes
    assert (folder / "warmup.safetensors").exists()
    assert again["provenance"]["compiled"] is False


def test_a_retrain_under_training_off_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("BOOK_TRAINING", "off")
    with pytest.raises(runs.TrainingDisabledError, match=r"python -m lib.runs train vit --profile cpu --seed 7 .*--retrain"):
        runs.trained("vit", "cpu", seed=7, retrain=True)


def test_a_metrics_only_record_under_training_off_names_the_retrain_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("BOOK_TRAINING", "off")
    storage.save_json({"test": {}}, runs.run_dir("vit", "cpu", seed=7) / "meta.json")
    with pytest.raises(runs.TrainingDisabledError, match=r"(?s)keeps only the metrics.*python -m lib.runs train vit --profile cpu --seed 7"):
        runs.trained("vit", "cpu", seed=7)
