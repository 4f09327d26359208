"""Runs tests/bench/hessian.py's ResNet rows with every autograd.grad call timed (wall, CPU, sys, page faults)."""
import os, sys, time, resource, torch
sys.path.insert(0, "/work/main")
os.environ.setdefault("BOOK_TRAINING", "off")
torch.set_num_threads(2)
from tests.bench import hessian as bench
from lib.analysis import hessian

log = []
_grad = torch.autograd.grad
def ru():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime, r.ru_stime, r.ru_minflt
def grad(*a, **k):
    c0, s0, f0 = ru(); t = time.perf_counter()
    out = _grad(*a, **k)
    c1, s1, f1 = ru()
    log.append(("build" if k.get("create_graph") else "hvp", time.perf_counter() - t, c1 - c0, s1 - s0, f1 - f0))
    return out
torch.autograd.grad = grad
ks = tuple(int(k) for k in sys.argv[1].split(",")) if len(sys.argv) > 1 else (1,)
orig_ref, orig_top = bench.reference_power_iteration, hessian.top_eigenpairs
def tag(name, fn):
    def wrapped(*a, **k):
        log.append((f"--- {name} k={k.get('k')}",)); t = time.perf_counter(); c0 = ru()
        out = fn(*a, **k)
        log.append((f"--- end {name}", time.perf_counter() - t, ru()[0] - c0[0]))
        return out
    return wrapped
bench.reference_power_iteration = tag("ref power", orig_ref)
bench.hessian.top_eigenpairs = tag("lanczos", orig_top)
bench.run(roles=("resnet",), ks=ks)
hv = {}
cur = None
for row in log:
    if len(row) == 1 or row[0].startswith("--- end"):
        print(*[round(x, 2) if isinstance(x, float) else x for x in row]); cur = row[0]
        continue
    print(f"   {row[0]:5s} wall {row[1]:5.2f} cpu {row[2]:5.2f} sys {row[3]:5.2f} minflt {row[4]}")
