"""The training engine: schedule, determinism, bit-identical resumption (even after SIGKILL), errors."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lib import models, storage, train
from lib.profiles import Recipe

REPO = Path(__file__).resolve().parents[1]


def tiny_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 10
    return images, labels


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return models.create("resnet50_smoke", num_classes=10)


RECIPE = Recipe(epochs=3, warmup_epochs=1, batch_size=16, lr=1e-3, clip_grad=5.0, save_every=2)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def test_learning_rate_warms_up_linearly_then_decays_to_zero():
    r = Recipe(epochs=10, warmup_epochs=2, batch_size=1, lr=1.0)
    lrs = [train.learning_rate(r, s, steps_per_epoch=5) for s in range(50)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(lrs[:10], lrs[1:10]))
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] < 0.01
    assert all(b <= a for a, b in zip(lrs[10:], lrs[11:]))


def test_same_seed_same_weights_and_other_seed_differs():
    data = tiny_data()
    runs = []
    for seed in (0, 0, 1):
        m = tiny_model()
        train.fit(m, RECIPE, data, data, seed=seed, num_classes=10, progress=False)
        runs.append(weights(m))
    assert_same_weights(runs[0], runs[1])
    assert not torch.equal(runs[0]["fc.weight"], runs[2]["fc.weight"])


def test_resume_mid_epoch_is_bit_identical(tmp_path):
    data = tiny_data()
    full = tiny_model()
    h_full = train.fit(full, RECIPE, data, data, seed=0, num_classes=10, progress=False)
    state = tmp_path / "state.pt"
    part = tiny_model()
    train.fit(part, RECIPE, data, data, seed=0, num_classes=10, state_path=state, progress=False,
              stop_after=train.Position(1, 3))
    resumed = tiny_model(seed=123)  # a different init: everything must come from the state
    h_res = train.fit(resumed, RECIPE, data, data, seed=0, num_classes=10, state_path=state, progress=False)
    assert_same_weights(weights(full), weights(resumed))
    assert without_timings(h_full) == without_timings(h_res), "a resumed epoch must report its whole epoch"


def without_timings(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_second")} for h in history]


def test_resume_on_the_paper_recipe_path_is_bit_identical(tmp_path):
    data = tiny_data(64)
    recipe = Recipe(epochs=2, warmup_epochs=1, batch_size=16, lr=1e-3, augment="paper",
                    randaugment="rand-m9-n2-mstd1.0", mixup_alpha=1.0, cutmix_alpha=0.8, clip_grad=5.0, save_every=1)
    full = tiny_model()
    h_full = train.fit(full, recipe, data, data, seed=0, num_classes=10, progress=False)
    state = tmp_path / "state.pt"
    train.fit(tiny_model(), recipe, data, data, seed=0, num_classes=10, state_path=state, progress=False,
              stop_after=train.Position(1, 2))
    resumed = tiny_model(seed=5)
    h_res = train.fit(resumed, recipe, data, data, seed=0, num_classes=10, state_path=state, progress=False)
    assert_same_weights(weights(full), weights(resumed))
    assert without_timings(h_full) == without_timings(h_res)


def test_stop_after_must_lie_inside_an_epoch():
    data = tiny_data(32)
    with pytest.raises(ValueError, match="stop_after.step=2"):
        train.fit(tiny_model(), RECIPE, data, data, seed=0, num_classes=10, progress=False, stop_after=train.Position(0, 2))


CHILD = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {repo!r})
    torch.set_num_threads(1)
    from tests.test_train import tiny_data, tiny_model, RECIPE
    from lib import train
    data = tiny_data()
    train.fit(tiny_model(), RECIPE, data, data, seed=0, num_classes=10, state_path={state!r}, progress=False)
""")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_sigkill_then_resume_ends_bit_identical(tmp_path, one_thread):
    data = tiny_data()
    full = tiny_model()
    train.fit(full, RECIPE, data, data, seed=0, num_classes=10, progress=False)
    state = tmp_path / "state.pt"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(repo=str(REPO), state=str(state))], cwd=REPO)
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed; enlarge the run"
    saved = storage.load_torch(state)
    assert tuple(saved["position"]) < (RECIPE.epochs, 0), "the kill must land mid-run"
    resumed = tiny_model(seed=7)
    train.fit(resumed, RECIPE, data, data, seed=0, num_classes=10, state_path=state, progress=False)
    assert_same_weights(weights(full), weights(resumed))


class _NaNModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


def test_nan_loss_raises_a_clear_error():
    data = tiny_data(32)
    with pytest.raises(FloatingPointError, match="is nan at epoch 1, step 1"):
        train.fit(_NaNModel(), RECIPE, data, data, seed=0, num_classes=10, progress=False)


def test_corrupt_state_is_an_error_naming_the_file(tmp_path):
    state = tmp_path / "state.pt"
    state.write_bytes(b"not a checkpoint")
    data = tiny_data(32)
    with pytest.raises(storage.CorruptFileError, match=str(state)):
        train.fit(tiny_model(), RECIPE, data, data, seed=0, num_classes=10, state_path=state, progress=False)
    assert state.read_bytes() == b"not a checkpoint", "a damaged state must never be silently replaced"


def test_paper_recipe_runs_with_randaugment_and_mixing():
    data = tiny_data(32)
    recipe = Recipe(epochs=1, warmup_epochs=1, batch_size=16, lr=1e-3, augment="paper",
                    randaugment="rand-m9-n2-mstd1.0", mixup_alpha=1.0, cutmix_alpha=0.8, clip_grad=5.0)
    history = train.fit(tiny_model(), recipe, data, data, seed=0, num_classes=10, progress=False)
    assert len(history) == 1 and history[0]["train_loss"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="asking for CUDA is fine where there is one")
def test_asking_for_cuda_without_one_is_named():
    with pytest.raises(ValueError, match="CUDA is not available"):
        train.resolve_device("cuda")


def test_precision_is_bf16_where_it_is_native_and_can_be_forced(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("BOOK_PRECISION", raising=False)
    for avx512_bf16, amx, expected in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert train.mixed_precision(cpu) is expected
    monkeypatch.setenv("BOOK_PRECISION", "fp32")
    assert train.mixed_precision(torch.device("cuda")) is False
    monkeypatch.setenv("BOOK_PRECISION", "bf16")
    assert train.mixed_precision(cpu) is True
    monkeypatch.setenv("BOOK_PRECISION", "fp16")
    with pytest.raises(ValueError, match="BOOK_PRECISION='fp16'; valid: 'auto', 'bf16', 'fp32'"):
        train.mixed_precision(cpu)
