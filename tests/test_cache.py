"""The analysis cache: hits, misses keyed by weights and parameters, BOOK_TRAINING=off, round trips."""


import importlib
import json

import pandas as pd
import pytest
import torch

from lib import cache


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
