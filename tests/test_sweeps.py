"""Chapter 4's sweep: the declared runs, what is still to run, pruning to metrics only, mean ± std."""

import math
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest

from lib import runs, storage, sweeps


def test_cpu_plan_has_every_fraction_seed_and_build_up_step():
    plan = sweeps.plan("04_alternet", "cpu")
    data = [r for r in plan if r.group == "data"]
    for fraction, seeds in ((0.02, 3), (0.1, 3), (1.0, 2)):
        for role in ("alternet", "preresnet", "vit"):
            assert sorted(r.seed for r in data if r.fraction == fraction and r.role == role) == list(range(seeds))
    build_up = [r for r in plan if r.group == "build-up"]
    assert [r.label for r in build_up][0].startswith("no MSA") and len(build_up) >= 4
    assert all(set(dict(r.overrides)) == {"msa_per_stage"} for r in build_up[1:])  # the cast's recipe and epochs
    for group in ("data", "build-up"):  # within a group, every run is a distinct checkpoint
        runs_of = [r for r in plan if r.group == group]
        assert len({r.folder("cpu") for r in runs_of}) == len(runs_of)


def test_cast_models_are_seed_0_of_the_full_data_and_kept():
    plan = sweeps.plan("04_alternet", "cpu")
    cast = {(r.role, r.seed, r.fraction): r for r in plan if r.group == "data"}
    for role in ("alternet", "vit"):
        run = cast[(role, 0, 1.0)]
        assert run.keep and run.folder("cpu") == runs.run_dir(role, "cpu")
    assert not cast[("alternet", 1, 1.0)].keep


def test_ends_of_the_cpu_build_up_are_the_kept_full_data_runs_and_pending_lists_each_once():
    plan = sweeps.plan("04_alternet", "cpu")
    build_up = [r for r in plan if r.group == "build-up"]
    first, last = build_up[0], build_up[-1]
    assert dict(last.overrides)["msa_per_stage"] == (0, 1, 1, 2)
    assert last.folder("cpu") == runs.run_dir("alternet", "cpu")  # the cast's AlterNet
    assert first.folder("cpu") == runs.run_dir("preresnet", "cpu")
    assert first.keep and last.keep  # pruning the build-up must never move the cast's weights
    assert all(not r.keep for r in build_up[1:-1])
    folders = [r.folder("cpu") for r in sweeps.pending("04_alternet", "cpu")]
    assert len(folders) == len(set(folders))
    assert sweeps.size("04_alternet", "cpu", group="build-up") == len(build_up) - 2  # only the middle ones are extra
    data_runs = {r.folder("cpu") for r in plan if r.group == "data"}
    assert sweeps.size("04_alternet", "cpu") == len(data_runs) + len(build_up) - 2


def test_smoke_build_up_runs_are_their_own_checkpoints():
    build_up = [r for r in sweeps.plan("04_alternet", "smoke") if r.group == "build-up"]
    assert all(dict(r.overrides)["epochs"] == 1 for r in build_up)
    assert build_up[-1].folder("smoke") != runs.run_dir("alternet", "smoke")


def test_unknown_chapter_or_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="chapters with a spec"):
        sweeps.plan("05_nope", "cpu")
    with pytest.raises(ValueError, match="chapters with one: \\['04_alternet'\\]"):
        sweeps.plan("01_flat_losses", "cpu")
    with pytest.raises(ValueError, match="valid profiles"):
        sweeps.plan("04_alternet", "gpu")


def test_prune_keeps_metrics_and_moves_weights_out(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_SMOKE_CACHE", str(tmp_path))
    monkeypatch.setattr(runs, "runs_root", lambda profile: tmp_path / "runs" / profile)
    kept, dropped = sweeps.Run("data", "x", "vit", 0, 1.0, keep=True), sweeps.Run("data", "x", "vit", 1, 1.0)
    for run in (kept, dropped):
        folder = run.folder("smoke")
        storage.save_json({"ok": True}, folder / "meta.json")
        (folder / "final.safetensors").write_bytes(b"w")
        sweeps.prune(run, "smoke")
    assert (kept.folder("smoke") / "final.safetensors").exists()
    assert not (dropped.folder("smoke") / "final.safetensors").exists()
    assert (dropped.folder("smoke") / "meta.json").exists()
    assert (tmp_path / "runs" / "smoke" / dropped.folder("smoke").name / "weights" / "final.safetensors").exists()
    # a run that a chapter loads keeps its weights committed, whatever the sweep says
    loaded = sweeps.Run("data", "x", "vit", 0, 0.5)
    storage.save_json({"ok": True}, loaded.folder("smoke") / "meta.json")
    (loaded.folder("smoke") / "final.safetensors").write_bytes(b"w")
    monkeypatch.setattr(sweeps.chapters, "loaded_folders", lambda profile: {loaded.folder(profile)})
    sweeps.prune(loaded, "smoke")
    assert (loaded.folder("smoke") / "final.safetensors").exists()


def test_missing_runs_name_the_command_that_trains_them(monkeypatch):
    ghost = sweeps.Run("data", "2% data", "vit", 99, 0.02)
    monkeypatch.setattr(sweeps, "plan", lambda chapter, profile: [ghost])
    with pytest.raises(runs.TrainingDisabledError, match="python -m lib.sweeps run 04_alternet"):
        sweeps.results("04_alternet", "cpu")
    assert sweeps.results("04_alternet", "cpu", allow_missing=True).empty


def test_summary_is_mean_and_sample_std_over_seeds():
    frame = pd.DataFrame({"group": "data", "label": "a", "role": ["r"] * 3 + ["s"], "fraction": 1.0,
                          "accuracy (%)": [1.0, 2.0, 3.0, 5.0]})
    out = sweeps.summary(frame).set_index("role")
    assert out.loc["r", "mean"] == 2.0 and out.loc["r", "std"] == 1.0 and out.loc["r", "seeds"] == 3
    assert math.isnan(out.loc["s", "std"]) and out.loc["s", "seeds"] == 1


def test_record_writes_beside_the_verdict_files_not_among_them(tmp_path, monkeypatch):
    from lib import verdict

    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    frame = pd.DataFrame({"group": "data", "label": "a", "role": ["r"], "fraction": 1.0, "accuracy (%)": [1.0]})
    path = sweeps.record("04_alternet", "cpu", frame)
    assert path == tmp_path / "cpu" / "runs" / "04_alternet.json"
    assert storage.load_json(path)["summary"][0]["mean"] == 1.0
    assert path not in (tmp_path / "cpu").glob("*.json")  # the ledger reads only the verdict files


def test_epochs_of_insists_on_one_number_of_epochs():
    frame = pd.DataFrame({"group": ["data", "data", "build-up"], "epochs": [12, 12, 6]})
    assert sweeps.epochs_of(frame) == 12 and sweeps.epochs_of(frame, "build-up") == 6
    with pytest.raises(ValueError, match=r"\[6, 12\]"):
        sweeps.epochs_of(frame.assign(group="data"))


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_partition_the_plan(count):
    every = {r.folder("cpu") for r in sweeps.plan("04_alternet", "cpu")}
    parts = [[r.folder("cpu") for r in sweeps.shard("04_alternet", "cpu", i, count)] for i in range(1, count + 1)]
    flat = [folder for part in parts for folder in part]
    assert len(flat) == len(set(flat)) == len(every) and set(flat) == every  # disjoint, and together the whole
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # dealt evenly


def test_a_bad_shard_is_a_clear_error():
    assert sweeps.parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "x", "1/2/3", "1-2"):
        with pytest.raises(ValueError, match="shard"):
            sweeps.parse_shard(bad)
    with pytest.raises(ValueError, match="1 ≤ I ≤ N"):
        sweeps.shard("04_alternet", "cpu", 0, 2)


def test_the_run_command_trains_its_shard_only_and_machines_merge_by_copying_run_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOK_TRAINING", "off")  # the command switches training on; monkeypatch restores this
    trained = []

    def fake_trained(role, profile, **kwargs):  # records the run and leaves the metrics file a real run leaves
        run = next(r for r in sweeps.plan("04_alternet", profile) if r.role == role and r.kwargs == kwargs)
        storage.save_json({"test": {"final": {"accuracy": 0.5}}}, run.folder(profile) / "meta.json")
        trained.append(run.folder(profile).name)
        return SimpleNamespace(book_run={"test": {"final": {"accuracy": 0.5}}})

    monkeypatch.setattr(runs, "trained", fake_trained)
    for index, machine in ((1, "a"), (2, "b")):  # two machines, each with its own folders
        monkeypatch.setenv("BOOK_SMOKE_CACHE", str(tmp_path / machine))
        trained.clear()
        sweeps.main(["run", "04_alternet", "--profile", "smoke", "--shard", f"{index}/2"])
        mine = [r.folder("smoke").name for r in sweeps.shard("04_alternet", "smoke", index, 2)]
        assert trained == mine and f"shard {index}/2: {len(mine)} runs of the sweep, {len(mine)} still to train here" in capsys.readouterr().out
        trained.clear()
        sweeps.main(["run", "04_alternet", "--profile", "smoke", "--shard", f"{index}/2"])  # again: nothing left to train
        assert trained == []
    assert len(sweeps.pending("04_alternet", "smoke")) == sweeps.size("04_alternet", "smoke") - len(mine)
    shutil.copytree(tmp_path / "b" / "checkpoints", tmp_path / "a" / "checkpoints", dirs_exist_ok=True)  # the merge
    monkeypatch.setenv("BOOK_SMOKE_CACHE", str(tmp_path / "a"))
    assert sweeps.pending("04_alternet", "smoke") == []


def test_a_bad_shard_on_the_command_line_names_it_and_the_valid_form(capsys):
    with pytest.raises(SystemExit) as exit_:
        sweeps.main(["run", "04_alternet", "--shard", "3/2"])
    assert exit_.value.code == 2 and "--shard '3/2': need 1 ≤ I ≤ N" in capsys.readouterr().err
