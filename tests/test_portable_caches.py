"""Every committed cached analysis loads on any x86 CPU: checked under ATen's portable and best kernels.

The nbval stage reads the chapters' caches; a key that depended on bytes a CPU computes afresh
(a model initialised here, say) would miss on another machine. Each case runs, in a fresh
process with ``ATEN_CPU_CAPABILITY`` set before torch loads, the audit that re-derives every
committed key from the snapshots and code on disk (``python -m lib.cache audit``), and digests
the data the chapters feed their analyses, which must not depend on the kernels either (the
portable process also turns off libjpeg-turbo's SIMD decoder, ``JSIMD_FORCENONE=1``).
"""

import json
import os
import re
import subprocess
import sys

import pytest

from lib import runs

CAPABILITIES = ["default", None]  # None: the machine's best (no override)

_DATA_DIGESTS = r"""
import hashlib, json, torch
from lib import data, profiles, runs
def digest(*tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
out = {"capability": torch.backends.cpu.get_cpu_capability()}
src = data.source("cifar10")
if src["kind"].endswith("archive"):  # decode JPEGs afresh here, not from the decoded cache
    _, members = data._archive_members(__import__("pathlib").Path(src["path"]), "test")
    out["jpeg decode"] = digest(data._decode_jpegs(members[:300], "test"))
out["test set"] = digest(*runs.test_set("cpu"))
out["sweep subset"] = digest(*runs.test_set("cpu", limit=profiles.get("cpu").analysis.sweep_images))
model = runs.trained("resnet", "cpu")
out["training batches"] = digest(*runs.training_batches(model, batches=2, batch_size=64, seed=0))
print(json.dumps(out))
"""


def _run(args, capability):
    env = {**os.environ, "BOOK_TRAINING": "off"}
    env.pop("ATEN_CPU_CAPABILITY", None)
    env.pop("JSIMD_FORCENONE", None)
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
        env["JSIMD_FORCENONE"] = "1"
    return subprocess.run([sys.executable, *args], cwd=runs.REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("capability", CAPABILITIES, ids=["portable-kernels", "best-kernels"])
def test_every_committed_cache_entry_loads_under(capability):
    done = _run(["-m", "lib.cache", "audit", "--profile", "cpu"], capability)
    assert done.returncode == 0, f"cached analyses would miss under ATEN_CPU_CAPABILITY={capability}:\n{done.stdout}{done.stderr}"
    loaded, total = re.search(r"(\d+) of (\d+) cached analyses", done.stdout).groups()
    assert int(total) > 0 and loaded == total


@pytest.mark.slow
def test_the_data_the_chapters_analyse_does_not_depend_on_the_kernels():
    digests = []
    for capability in CAPABILITIES:
        done = _run(["-c", _DATA_DIGESTS], capability)
        assert done.returncode == 0, done.stderr[-3000:]
        digests.append(json.loads(done.stdout.strip().splitlines()[-1]))
    portable, best = digests
    assert portable.pop("capability") == "DEFAULT"
    best.pop("capability")
    assert portable == best
