"""One Hessian-vector product of the cpu-profile model's loss, several ways: time (median) and agreement.

    python /tmp/hessian_work/hvp_variants.py resnet dbl,dbl_affine,dbl_cl,dbl_affine_cl,fwdrev,vmap4,dblbatch4
"""
import os, sys, time, statistics, resource, torch
import torch.nn.functional as F
sys.path.insert(0, "/tmp/hessian_work")
os.environ.setdefault("BOOK_TRAINING", "off")
torch.set_num_threads(2)
from lib import runs, data
from lib.analysis import hessian
import hessian_fast as HF

role = sys.argv[1]
which = sys.argv[2].split(",")
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
model = runs.trained(role, "cpu")
x, y = runs.training_batches(model, batches=1, batch_size=int(os.environ.get("HVP_BATCH", 128)), seed=0)
xn = data.normalize(x, model.book_dataset)
params = [p for p in model.parameters() if p.requires_grad]
names = [n for n, p in model.named_parameters() if p.requires_grad]
g = torch.Generator().manual_seed(0)
V = [[torch.randn(p.shape, generator=g) for p in params] for _ in range(4)]
flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])

def ru():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime, r.ru_stime, r.ru_minflt

cpu = []
def timed(fn):
    c0, s0, f0 = ru(); t = time.perf_counter(); out = fn(); dt = time.perf_counter() - t; c1, s1, f1 = ru()
    cpu.append(c1 - c0)
    return out, dt, (s1 - s0), f1 - f0

import copy
results, baseline = {}, None
import contextlib
outer = HF.steady_heap() if os.environ.get("STEADY") else contextlib.nullcontext()
outer.__enter__()
model32, params32 = model, params
for w in which:
    bn_affine = "affine" in w
    cl = "_cl" in w
    xin = xn.contiguous(memory_format=torch.channels_last) if cl else xn
    if w.startswith("f64"):  # the same product in float64: the reference for agreement
        model = copy.deepcopy(model32).double()
        params = [p for p in model.parameters() if p.requires_grad]
        xin = xin.double()
        w = w[4:]
    else:
        model, params = model32, params32
    V0 = V
    if params[0].dtype == torch.float64:
        V = [[t.double() for t in vs] for vs in V0]
    with hessian._analysis_mode(model), HF.affine_batchnorm(enabled=bn_affine):
        if w.startswith("dbl"):
            def build():
                loss = F.cross_entropy(model(xin), y)
                return torch.autograd.grad(loss, params, create_graph=True)
            grads, tb, _, _ = timed(build)
            if "batch" in w:
                B = int(w.rsplit("batch", 1)[1])
                VB = [torch.stack([V[i][j] for i in range(B)]) for j in range(len(params))]
                prod = lambda: torch.autograd.grad(grads, params, grad_outputs=VB, retain_graph=True, is_grads_batched=True)
                per, n_vec = B, B
            else:
                prod = lambda: torch.autograd.grad(grads, params, grad_outputs=V[0], retain_graph=True)
                n_vec = 1
        else:
            from torch.func import functional_call, grad, jvp, vmap
            pdict = {n: p.detach() for n, p in zip(names, params)}
            def loss_p(p):
                return F.cross_entropy(functional_call(model, p, (xin,)), y)
            gfn = grad(loss_p)
            tb = 0.0
            if w.startswith("vmap"):
                B = int(w[4:])
                VB = {n: torch.stack([V[i][j] for i in range(B)]) for j, n in enumerate(names)}
                one = lambda v: jvp(gfn, (pdict,), (v,))[1]
                prod = lambda: [t for t in vmap(one)(VB).values()]
                n_vec = B
            else:
                vd = {n: V[0][j] for j, n in enumerate(names)}
                prod = lambda: list(jvp(gfn, (pdict,), (vd,))[1].values())
                n_vec = 1
        times, sys_t, faults = [], [], []
        cpu.clear()
        try:
            for r in range(reps):
                out, dt, st, fl = timed(prod)
                times.append(dt); sys_t.append(st); faults.append(fl)
        except Exception as e:  # noqa
            print(f"{w:16s} FAILED: {type(e).__name__}: {str(e)[:200]}", flush=True)
            continue
        if n_vec > 1:
            outs = [flat([t[i] for t in out]) for i in range(n_vec)]
        else:
            outs = [flat(out)]
        V = V0
        if baseline is None:
            baseline = outs[0].double()
            label = ("f64_" if params[0].dtype == torch.float64 else "") + w
        ref = baseline
        err = float((outs[0].double() - ref).norm() / ref.norm())
        if params[0].dtype == torch.float64:
            w = "f64_" + w
        med = statistics.median(times)
        print(f"{w:16s} build {tb:6.2f} s  product med {med:6.2f} s (all {[round(t,2) for t in times]})  "
              f"per vector {med / n_vec:6.2f} s  cpu {[round(c,1) for c in cpu[-reps:]]} sys {statistics.median(sys_t):5.2f} s  minflt {int(statistics.median(faults))}  "
              f"rel.err vs {label} {err:.1e}", flush=True)
        del out, outs
        if w.startswith("dbl"):
            del grads
