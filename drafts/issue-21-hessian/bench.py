"""Top Hessian eigenvalues: the current lib.analysis.hessian against the proposed hessian_fast, and both
against a tightly converged reference.

    python /tmp/hessian_work/bench.py resnet --ks 1 5     # one role per process (allocator state)
    python /tmp/hessian_work/bench.py vit --ks 1

Same setting as tests/bench/hessian.py: the cast's trained cpu-profile model, one batch of 128 training
images (runs.training_batches seed 0), mean cross-entropy, eval mode, fp32, seed 0, default
tolerances (Lanczos, residual ≤ 1e-3·|θ|). Order: the current code first (the proposed one changes
glibc's malloc settings for the rest of the process), then the proposed one, then the reference:
proposed operator, Lanczos with full reorthogonalisation, k = max(ks), residual ≤ --ref-tol·|θ|,
another start vector (seed 1). Errors are |λ − λ_ref| / |λ_ref|, the largest over the k values.
``--power`` adds the bench's PyHessian-style power iteration (slow: ~90 products for k = 5).
"""
from __future__ import annotations

import argparse, json, os, sys, time

os.environ.setdefault("BOOK_TRAINING", "off")
sys.path[:0] = ["/work/main", os.path.dirname(os.path.abspath(__file__))]
import torch

from lib import runs
from lib.analysis import hessian as old
import hessian_fast as new


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("role")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--ref-tol", type=float, default=1e-6)
    ap.add_argument("--ref-steps", type=int, default=60)
    ap.add_argument("--power", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    model = runs.trained(a.role, "cpu")
    x, y = runs.training_batches(model, batches=1, batch_size=a.images, seed=0)
    rows = []

    def record(name, k, fn):
        tic = time.perf_counter()
        r = fn()
        wall = time.perf_counter() - tic
        row = dict(role=a.role, k=k, method=name, seconds=wall, matvecs=r.matvecs, per_product=wall / r.matvecs,
                   eigenvalues=r.eigenvalues.tolist(), residuals=r.residuals.tolist(), converged=r.converged.tolist())
        rows.append(row)
        print(f"{a.role:7s} k={k} {name:9s} {wall:7.1f} s {r.matvecs:4d} HVPs {wall / r.matvecs:5.2f} s/HVP  "
              f"λ = {[f'{v:.6g}' for v in row['eigenvalues']]}", flush=True)

    for k in a.ks:
        record("current", k, lambda: old.top_eigenpairs(model, x, y, k=k, method="lanczos", seed=0))
    if a.power:
        for k in a.ks:
            record("power", k, lambda: old.top_eigenpairs(model, x, y, k=k, method="power", seed=0))
    for k in a.ks:
        record("proposed", k, lambda: new.top_eigenpairs(model, x, y, k=k, method="lanczos", seed=0))
    kmax = max(a.ks)
    keep = {}

    def reference():
        keep["r"] = new.top_eigenpairs(model, x, y, k=kmax, method="lanczos", tol=a.ref_tol, max_iter=a.ref_steps,
                                       seed=1, vectors=True)
        return keep["r"]

    record("reference", kmax, reference)
    ref = rows[-1]
    # the true residuals ‖Hv − θv‖/|θ| of the reference's Ritz vectors (one more product each, fp32 operator)
    op = new.HessianOperator(model, (x, y))
    r = keep.pop("r")
    ref["true_residuals"] = [float((op.matvec(v) - t * v).norm() / (abs(t) * v.norm()))
                             for t, v in zip(r.eigenvalues.tolist(), r.eigenvectors)]
    print(f"reference true residual ‖Hv − θv‖/|θ| = {[f'{t:.1e}' for t in ref['true_residuals']]}")
    del op, r
    print(f"reference residual/|λ| = {[f'{r / abs(v):.1e}' for r, v in zip(ref['residuals'], ref['eigenvalues'])]}, "
          f"converged {ref['converged']}")
    print(f"\n{'role':7s} {'k':>2s} {'method':9s} {'s':>7s} {'HVPs':>5s} {'s/HVP':>6s} {'max rel. err vs ref':>20s}")
    for row in rows[:-1]:
        k = row["k"]
        err = max(abs(v - r) / abs(r) for v, r in zip(row["eigenvalues"], ref["eigenvalues"][:k]))
        row["max_rel_err_vs_reference"] = err
        print(f"{a.role:7s} {k:2d} {row['method']:9s} {row['seconds']:7.1f} {row['matvecs']:5d} "
              f"{row['per_product']:6.2f} {err:20.2e}")
    for k in a.ks:
        cur = next(r for r in rows if r["method"] == "current" and r["k"] == k)
        pro = next(r for r in rows if r["method"] == "proposed" and r["k"] == k)
        diff = max(abs(p - c) / abs(c) for p, c in zip(pro["eigenvalues"], cur["eigenvalues"]))
        print(f"{a.role} k={k}: speed-up {cur['seconds'] / pro['seconds']:.2f}x, proposed vs current max rel. diff {diff:.2e}")
    if a.out:
        json.dump(rows, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
