"""The analysis cache: hits, misses keyed by weights and parameters, BOOK_TRAINING=off, round trips."""


import importlib
import json

import pandas as pd
import pytest
import torch

from lib import against, cache


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("BOOK_TRAINING", "on")
    return tmp_path


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def test_computes_once_then_hits(results):
    calls = []
    c = cache.Cache("99_test", "cpu")
    compute = lambda: calls.append(1) or {"x": 1.5}  # noqa: E731
    assert c("a", compute, models=[_model()], params={"n": 3}) == {"x": 1.5}
    assert c("a", compute, models=[_model()], params={"n": 3}) == {"x": 1.5}
    assert len(calls) == 1 and c.timings["a"] == 0.0
    assert (results / "cpu" / "cache" / "99_test" / "a.json").exists()


def test_other_weights_or_params_miss_and_recompute_forces(results):
    calls = []
    c = cache.Cache("99_test", "cpu")
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    c("a", compute, models=[_model(0)], params={"n": 3})
    c("a", compute, models=[_model(1)], params={"n": 3})  # retrained model
    c("a", compute, models=[_model(1)], params={"n": 4})  # other parameters
    cache.Cache("99_test", "cpu", recompute=True)("a", compute, models=[_model(1)], params={"n": 4})
    assert len(calls) == 4


def test_miss_under_training_off_names_the_reason_and_the_rebuild_command(results, monkeypatch):
    c = cache.Cache("99_test", "cpu")
    c("a", lambda: 1, models=[_model(0)], params={"n": 3})
    monkeypatch.setenv("BOOK_TRAINING", "off")
    assert c("a", lambda: 2, models=[_model(0)], params={"n": 3}) == 1
    with pytest.raises(cache.StaleCacheError, match=r"other model weights.*--chapters 99_test --recompute"):
        c("a", lambda: 2, models=[_model(1)], params={"n": 3})
    with pytest.raises(cache.StaleCacheError, match=r"parameters differ \(n\)"):
        c("a", lambda: 2, models=[_model(0)], params={"n": 5})
    with pytest.raises(cache.StaleCacheError, match="never built"):
        c("b", lambda: 2)


def test_a_change_in_the_analysis_code_misses_and_the_error_says_so(results, monkeypatch):
    def analyse(model, scale=1.0):
        return scale

    c = cache.Cache("99_test", "cpu")
    assert c.apply("a", analyse, _model(0), scale=2.0) == 2.0
    entry = json.loads(c.path("a").read_text())
    assert entry["code"] == cache.code_digest(__name__) and entry["sources"] == [None]
    monkeypatch.setenv("BOOK_TRAINING", "off")
    assert c.apply("a", analyse, _model(0), scale=2.0) == 2.0
    monkeypatch.setattr(cache, "code_digest", lambda *modules: {m: "edited" for m in modules})
    with pytest.raises(cache.StaleCacheError, match=rf"analysis code changed \({__name__}\).*--chapters 99_test --recompute"):
        c.apply("a", analyse, _model(0), scale=2.0)
    with pytest.raises(cache.StaleCacheError, match=r"other model weights.*; the analysis code changed"):
        c.apply("a", analyse, _model(1), scale=2.0)


def test_code_digest_follows_the_code_not_its_prose_or_line_endings(tmp_path, monkeypatch):
    module = tmp_path / "book_probe_module.py"
    monkeypatch.syspath_prepend(str(tmp_path))

    def digest(text):
        module.write_bytes(text.encode())
        importlib.invalidate_caches()
        return cache.code_digest("book_probe_module")["book_probe_module"]

    base = digest('"""A module."""\n\ndef f(x):\n    """Twice x."""\n    return 2 * x  # doubled\n')
    assert digest('"""A module, reworded (§2, ×)."""\n\ndef f(x):\n    """Twice x: see\n    the appendix."""\n\n'
                  '    return 2 * x\n') == base  # docstrings, comments and blank lines are prose
    assert digest('"""A module."""\r\n\r\ndef f(x):\r\n    """Twice x."""\r\n    return 2 * x  # doubled\r\n') == base
    assert digest('"""A module."""\n\ndef f(x):\n    """Twice x."""\n    return 3 * x  # doubled\n') != base
    assert digest('"""A module."""\n\ndef f(x):\n    """Twice x."""\n    return "2 * x  # not a comment"\n') != base


def test_code_text_reads_a_byte_order_mark_and_old_mac_line_endings():
    assert cache.code_text('\ufeff"""doc"""\rx = 1  # c\r') == "x = 1"


def test_the_code_of_an_analysis_covers_the_analysis_modules_it_imports():
    assert cache.analysis_modules("lib.analysis.variance") == ["lib.analysis.fourier", "lib.analysis.variance"]
    assert cache.analysis_modules("lib.analysis.stages") == ["lib.analysis.lesion", "lib.analysis.similarity",
                                                             "lib.analysis.stages"]
    assert cache.analysis_modules(__name__) == [__name__]  # outside lib: the module alone


def test_a_function_without_a_source_file_is_a_clear_error(results):
    import types

    scratch = types.ModuleType("scratch")  # like a function defined in a notebook
    exec("def analyse(model):\n    return 1", scratch.__dict__)
    import sys

    sys.modules["scratch"] = scratch
    try:
        with pytest.raises(ValueError, match="no source file"):
            cache.Cache("99_test", "cpu").apply("a", scratch.analyse, _model(0))
    finally:
        del sys.modules["scratch"]


def test_code_text_keeps_strings_that_are_not_docstrings():
    text = cache.code_text('x = "# kept"  # dropped\ndef g():\n    """doc"""\n    return f"{x} é"  # dropped too\n')
    assert text == 'x = "# kept"\ndef g():\n    return f"{x} é"'


def _committed_snapshot(checkpoints, model, name="net-000000000000", at="final"):
    from lib import storage

    storage.save_weights(model.state_dict(), checkpoints / "cpu" / name / f"{at}.safetensors")
    loaded = _model(99)
    loaded.load_state_dict(storage.load_weights(checkpoints / "cpu" / name / f"{at}.safetensors"))
    loaded.book_run = {"dir": str(checkpoints / "cpu" / name), "at": at}
    return loaded


def test_audit_rederives_keys_from_snapshots_and_flags_fresh_models(results, tmp_path, monkeypatch):
    def analyse(model, scale=1.0):
        return scale

    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setenv("BOOK_CHECKPOINT_DIR", str(checkpoints))
    snapshot = _committed_snapshot(checkpoints, _model(0))
    c = cache.Cache("99_test", "cpu")
    c.apply("from-snapshot", analyse, snapshot, scale=2.0)
    c.apply("from-fresh", analyse, _model(0), scale=2.0)  # built afresh: bytes a CPU computed
    found = {f.name: f for f in cache.audit("cpu")}
    assert found["from-snapshot"].ok and found["from-snapshot"].reason == "ok"
    assert not found["from-fresh"].ok and "built afresh" in found["from-fresh"].reason
    # the snapshot changes on disk: the entry no longer follows from it
    _committed_snapshot(checkpoints, _model(1))
    assert "other weights now" in {f.name: f for f in cache.audit("cpu")}["from-snapshot"].reason
    monkeypatch.setattr(cache, "code_digest", lambda *modules: {m: "edited" for m in modules})
    assert "analysis code changed" in {f.name: f for f in cache.audit("cpu")}["from-snapshot"].reason
    assert cache.main(["audit", "--profile", "cpu"]) == 1


def test_smoke_always_computes_outside_the_repository(results, monkeypatch):
    monkeypatch.setenv("BOOK_TRAINING", "off")
    c = cache.Cache("99_test", "smoke")
    assert c("a", lambda: 7) == 7
    assert not (results / "smoke").exists()


def test_frames_and_tensors_round_trip_exactly(results):
    frame = pd.DataFrame({"name": ["a", "b"], "value": [0.1, float("nan")], "n": [1, 2], "ok": [True, False]})
    frame.attrs.update(images=10)
    tensor = torch.arange(6, dtype=torch.float64).reshape(2, 3) / 7
    c = cache.Cache("99_test", "cpu")
    first = c("a", lambda: {"frame": frame, "tensor": tensor, "list": [1, 2.5]})
    again = c("a", lambda: None)
    for got in (first, again):
        pd.testing.assert_frame_equal(got["frame"], frame)
        assert got["frame"].attrs == {"images": 10}
        assert torch.equal(got["tensor"], tensor)
        assert got["list"] == [1, 2.5]


def test_corrupt_entry_is_an_error_naming_the_rebuild(results):
    c = cache.Cache("99_test", "cpu")
    c("a", lambda: 1)
    c.path("a").write_text("{not json")
    with pytest.raises(Exception, match="rebuild with: python -m lib.book run"):
        c("a", lambda: 1)


def test_bad_names_and_values_are_rejected(results):
    c = cache.Cache("99_test", "cpu")
    with pytest.raises(ValueError, match="invalid cache entry name"):
        c("../x", lambda: 1)
    with pytest.raises(TypeError, match="cannot cache a value of type object"):
        c("x", lambda: object())


def test_fingerprint_depends_on_every_weight():
    a, b = _model(0), _model(0)
    assert cache.fingerprint(a) == cache.fingerprint(b)
    with torch.no_grad():
        b.bias[1] += 1e-7
    assert cache.fingerprint(a) != cache.fingerprint(b)


def test_assert_close_passes_within_tolerance_and_raises_outside():
    assert cache.assert_close("x", [1.0, 2.0], torch.tensor([1.0, 2.001]), atol=0.01) == pytest.approx(0.001, rel=1e-3)
    assert cache.assert_close("nan", [float("nan")], [float("nan")]) == 0.0
    with pytest.raises(cache.StaleCacheError, match="differs from the cache by up to 0.5"):
        cache.assert_close("x", pd.Series([1.0, 2.5]), [1.0, 2.0], rtol=0.1)
    with pytest.raises(cache.StaleCacheError, match="shape"):
        cache.assert_close("x", [1.0], [1.0, 2.0])


def test_apply_keys_on_function_model_and_argument_bytes(results):
    calls = []

    def analyse(model, images, *, scale=1.0, progress=True):
        calls.append(1)
        return float(model(images).sum() * scale)

    c = cache.Cache("99_test", "cpu")
    x = torch.ones(4, 3)
    first = c.apply("a", analyse, _model(0), x, scale=2.0, progress=False)
    assert c.apply("a", analyse, _model(0), x.clone(), scale=2.0, progress=True) == first  # progress is not a key
    c.apply("a", analyse, _model(0), x + 1e-6, scale=2.0)  # other images
    c.apply("a", analyse, _model(0), x, scale=3.0)  # other argument
    assert len(calls) == 3


def test_fingerprint_covers_integer_and_scalar_buffers():
    bn = torch.nn.BatchNorm2d(2)  # num_batches_tracked is a 0-d int64 buffer
    before = cache.fingerprint(bn)
    bn.num_batches_tracked += 1
    assert cache.fingerprint(bn) != before


def test_dataclasses_of_the_analyses_round_trip(results):
    from lib.analysis import hessian

    spectrum = hessian.max_eigenvalue_spectrum(
        torch.nn.Linear(4, 3).double(), torch.randn(8, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]),
        k=2, batch_size=4, method="lanczos", progress=False)
    c = cache.Cache("99_test", "cpu")
    c("s", lambda: spectrum)
    again = c("s", lambda: None)
    assert isinstance(again, hessian.Spectrum)
    assert torch.equal(again.values, spectrum.values) and again.method == "lanczos" and again.k == 2
    pd.testing.assert_frame_equal(again.frame(), spectrum.frame())


def _analyse_for_replicates(model, scale=1.0):
    return {"scale": scale, "weights": float(model.weight.detach().sum())}


def test_replicates_read_each_seeds_entry_of_the_same_chapter_and_snapshot_without_computing(results, monkeypatch):
    for seed in (1, 2):
        cache.Cache("99_test", "cpu", seed=seed).apply("a", _analyse_for_replicates, _model(seed), scale=float(seed))
    cache.Cache("99_test", "cpu", seed=1, at="warmup").apply("a", _analyse_for_replicates, _model(5), scale=5.0)
    monkeypatch.setenv("BOOK_TRAINING", "off")
    page = cache.Cache("99_test", "cpu")  # seed 0's page, which has no entry "a" itself
    got = page.replicates("a", [2, 1])
    assert list(got) == [2, 1] and got[1] == _analyse_for_replicates(_model(1), 1.0) and got[2]["scale"] == 2.0
    assert cache.Cache("99_test", "cpu", at="warmup").replicates("a", (1,)) == {1: _analyse_for_replicates(_model(5), 5.0)}
    assert page.replicates("a", []) == {} and page.replicates("never-built", ()) == {}
    assert not page.path("a").exists()  # nothing was computed or written for seed 0


def test_replicates_by_label_give_each_seed_the_figures_shape(results, monkeypatch):
    for seed in (1, 2):
        cache.Cache("99_test", "cpu", seed=seed).apply("a", _analyse_for_replicates, _model(seed), scale=float(seed))
        cache.Cache("99_test", "cpu", seed=seed).apply("b", _analyse_for_replicates, _model(seed), scale=10.0 * seed)
    monkeypatch.setenv("BOOK_TRAINING", "off")
    got = cache.Cache("99_test", "cpu").replicates_by_label({"x": "a", "y": "b"}, (1, 2), read=lambda v: v["scale"])
    assert got == {1: {"x": 1.0, "y": 10.0}, 2: {"x": 2.0, "y": 20.0}}
    assert cache.Cache("99_test", "cpu").replicates_by_label({"x": "a"}, ()) == {}


def test_a_seed_without_the_entry_is_an_error_naming_the_command_that_makes_it(results):
    cache.Cache("99_test", "cpu", seed=1).apply("a", _analyse_for_replicates, _model(1))
    with pytest.raises(cache.MissingReplicateError,
                       match=r"seed 2 .*\n  python -m lib\.book run --profile cpu --chapters 99_test --seed 2 --no-build$"):
        cache.Cache("99_test", "cpu").replicates("a", [1, 2])
    assert issubclass(cache.MissingReplicateError, cache.StaleCacheError)
    with pytest.raises(cache.StaleCacheError, match=r"--chapters 99_test --seed 1 --at init --no-build"):
        cache.Cache("99_test", "cpu", at="init").replicates("a", [1])  # seed 1 was measured at the final snapshot only


def test_a_seeds_entry_made_by_other_analysis_code_is_refused(results, monkeypatch):
    replicate = cache.Cache("99_test", "cpu", seed=1)
    replicate.apply("a", _analyse_for_replicates, _model(1))
    replicate("no-code", lambda: 3, models=[_model(1)])  # cached without naming the code it depends on
    page = cache.Cache("99_test", "cpu")
    assert page.replicates("a", [1])[1]["scale"] == 1.0
    with pytest.raises(cache.StaleCacheError, match="records no analysis code"):
        page.replicates("no-code", [1])
    with monkeypatch.context() as edited:
        edited.setattr(cache, "code_digest", lambda *modules: {m: "edited" for m in modules})
        with pytest.raises(cache.StaleCacheError, match=rf"other analysis code \({__name__} changed\).*"
                                                         r"\n  python -m lib\.book run --profile cpu --chapters 99_test --seed 1"):
            page.replicates("a", [1])
    entry = json.loads(replicate.path("a").read_text())
    replicate.path("a").write_text(json.dumps({**entry, "params": {**entry["params"], "kwargs": {"scale": 9.0}}}))
    with pytest.raises(cache.StaleCacheError, match="key does not follow from its stored parts"):
        page.replicates("a", [1])  # edited by hand: the stored parts no longer give the stored key


# ------------------------------------------------------------ compare --against a git ref


def _entry(folder, path, key, value, **extra):
    target = folder / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"key": key, "name": target.stem, "value": cache._encode(value), **extra}))


@pytest.fixture
def two_cache_commits(tmp_path, monkeypatch, git):
    """A git repository with hand-made cache entries whose second commit moves them in each way."""
    repo = tmp_path / "repo"
    folder = repo / "data" / "results" / "cpu"
    folder.mkdir(parents=True)
    git(repo, "init", "-q")
    frame = pd.DataFrame({"name": ["a", "b"], "x": [1.0, 2.0]})
    _entry(folder, "cache/01_a/same.json", "k1", [1, 2])
    _entry(folder, "cache/01_a/rebuilt.json", "k2", 1.0, provenance={"wall_seconds": 1.0})
    _entry(folder, "cache/01_a/rekeyed.json", "k3", 1.0)
    _entry(folder, "cache/01_a/result.json", "k4", frame)
    _entry(folder, "cache/01_a/reshaped.json", "k5", [1.0, 2.0])
    _entry(folder, "cache/01_a/gone.json", "k6", 1.0)
    _entry(folder, "seed1/at-warmup/cache/01_a/deep.json", "k7", {"v": torch.tensor([1.0, 2.0])})
    (folder / "runs").mkdir()
    (folder / "runs" / "01_a.json").write_text("{}")  # not a cache entry, nor is a verdict file
    (folder / "01_a.json").write_text("{}")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    _entry(folder, "cache/01_a/rebuilt.json", "k2", 1.0, provenance={"wall_seconds": 2.0})  # same key and value
    _entry(folder, "cache/01_a/rekeyed.json", "k3b", 1.0)
    _entry(folder, "cache/01_a/result.json", "k4b", frame.assign(x=[1.0, 2.5]))
    _entry(folder, "cache/01_a/reshaped.json", "k5", [1.0, 2.0, 3.0])
    (folder / "cache" / "01_a" / "gone.json").unlink()
    _entry(folder, "seed1/at-warmup/cache/01_a/deep.json", "k7", {"v": torch.tensor([1.25, 2.0])})
    _entry(folder, "cache/01_a/new.json", "k8", 1.0)
    (folder / "runs" / "01_a.json").write_text('{"moved": 1}')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(repo / "data" / "results"))
    return repo


def test_compare_says_for_each_entry_whether_it_moved_and_by_how_much(two_cache_commits):
    moves = {m.entry: m for m in against.compare_cache("HEAD~1", "cpu", root=two_cache_commits)}
    assert {e: (m.status, m.what) for e, m in moves.items()} == {
        "cache/01_a/same": ("same", ""), "cache/01_a/rebuilt": ("same", ""), "cache/01_a/rekeyed": ("changed", "key"),
        "cache/01_a/result": ("changed", "key, result"), "cache/01_a/reshaped": ("changed", "result"),
        "cache/01_a/gone": ("gone", ""), "cache/01_a/new": ("new", ""), "seed1/at-warmup/cache/01_a/deep": ("changed", "result")}
    assert moves["cache/01_a/result"].largest == 0.5 and moves["seed1/at-warmup/cache/01_a/deep"].largest == 0.25
    assert moves["cache/01_a/reshaped"].largest is None and moves["cache/01_a/rekeyed"].largest is None
    text = against.cache_markdown(list(moves.values()), "HEAD~1", "cpu")
    assert "| cache/01_a/result | changed | key, result | 0.5 |" in text
    assert "| cache/01_a/reshaped | changed | result | not comparable |" in text
    assert text.rstrip("\n").splitlines()[-1] == "8 cache entries: 2 same, 4 changed (2 key, 3 result), 1 new, 1 gone"
    again = against.compare_cache("HEAD", "cpu", root=two_cache_commits)  # the checked-out commit: nothing moved
    assert against.cache_tally(again) == "7 cache entries: 7 same, 0 changed (0 key, 0 result), 0 new, 0 gone"


def test_the_largest_difference_is_over_numbers_of_the_same_shape():
    assert against.largest_difference(cache._encode(torch.tensor([1.0, float("nan")])),
                                    cache._encode(torch.tensor([1.5, float("nan")]))) == 0.5  # NaN matches NaN
    assert against.largest_difference([1.0, float("nan")], [1.0, 2.0]) == float("inf")  # a number became undefined
    assert against.largest_difference({"a": 1, "b": "x"}, {"a": 3, "b": "x"}) == 2.0
    assert against.largest_difference({"a": 1, "b": "x"}, {"a": 1, "b": "y"}) is None  # another label: not comparable
    assert against.largest_difference({"a": 1}, {"b": 1}) is None and against.largest_difference(True, 1) is None


def test_compare_against_a_mistyped_ref_is_an_error_naming_it(two_cache_commits, capsys):
    with pytest.raises(ValueError, match=r"git ref 'HEAD~3' names no commit"):
        against.compare_cache("HEAD~3", "cpu", root=two_cache_commits)
    with pytest.raises(SystemExit) as stop:
        cache.main(["compare", "--against", "no-such-ref-xyz"])
    assert stop.value.code == 2 and "'no-such-ref-xyz' names no commit" in capsys.readouterr().err


def test_the_compare_command_against_head_ends_with_a_tally(monkeypatch, capsys):
    import re

    monkeypatch.delenv("BOOK_RESULTS_DIR", raising=False)
    assert cache.main(["compare", "--against", "HEAD"]) == 0
    last = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"\d+ cache entries: \d+ same, \d+ changed \(\d+ key, \d+ result\), \d+ new, \d+ gone", last)
