"""The all-steps probe against the naive torch.func method a user would write, in the same run.

For a 64-block residual MLP (batch 1) at widths 256 and 1024 it times:
  naive  : per block jacrev + svdvals (local Frobenius, sigma_max), jacfwd of the truncated chain
           for every k (cumulative Frobenius), one backward pass with retained grads (ratios);
  exact  : the best exact method: one jacfwd of a function returning every block output (all
           J(0 -> k) at once) plus per-block jacrev + svdvals;
  probe  : depthscope.probe (lyapunov=0, sigma_min=False: the same quantities), and the full
           report with sigma_min and ||J - I||_2 for reference;
and prints medians, speed ratios and the probe's relative errors against the naive results.

Usage: python benchmarks/probe_vs_exact.py [--widths 256 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.func import jacfwd, jacrev

import depthscope as ds

DEPTH = 64


def timed(fn, repeats: int):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def naive(model, x):
    chain = ds.Chain.from_module(model)
    fns = [s.fn for s in chain]
    with torch.no_grad():
        states = [x]
        for f in fns:
            states.append(f(states[-1]))
    fro, smax = [], []
    for f, xk in zip(fns, states):
        J = jacrev(lambda z, f=f: f(z.unsqueeze(0)).squeeze(0))(xk[0])
        J = J.detach().reshape(J.shape[0], -1)
        fro.append(float(J.norm() / J.shape[1] ** 0.5))
        smax.append(float(torch.linalg.svdvals(J)[0]))
    cum = []
    for k in range(1, len(fns) + 1):
        def upto(z, k=k):
            h = z.unsqueeze(0)
            for f in fns[:k]:
                h = f(h)
            return h.squeeze(0)

        M = jacfwd(upto)(x[0])
        cum.append(float(torch.log(M.norm() / M.shape[1] ** 0.5)))
    hs = [x.clone().requires_grad_(True)]
    for f in fns:
        hs.append(f(hs[-1]))
        hs[-1].retain_grad()
    hs[-1].sum().backward()
    norms = [float(h.grad.norm()) for h in hs]
    ratios = [a / b for a, b in zip(norms[:-1], norms[1:])]
    return dict(fro=fro, smax=smax, cum=cum, ratio=ratios)


def best_exact(model, x):
    chain = ds.Chain.from_module(model)
    fns = [s.fn for s in chain]

    def all_outputs(z):
        h, outs = z.unsqueeze(0), []
        for f in fns:
            h = f(h)
            outs.append(h.squeeze(0))
        return tuple(outs)

    Ms = jacfwd(all_outputs)(x[0])
    cum = [float(torch.log(M.norm() / M.shape[1] ** 0.5)) for M in Ms]
    with torch.no_grad():
        states = [x]
        for f in fns:
            states.append(f(states[-1]))
    smax = []
    for f, xk in zip(fns, states):
        J = jacrev(lambda z, f=f: f(z.unsqueeze(0)).squeeze(0))(xk[0])
        smax.append(float(torch.linalg.svdvals(J.reshape(J.shape[0], -1))[0]))
    return cum, smax


def rel_err(a, b):
    return max(abs(x / y - 1) for x, y in zip(a, b))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"depthscope {ds.__version__}, torch {torch.__version__}, {args.threads} threads, depth {DEPTH}, batch 1")
    for width in args.widths:
        torch.manual_seed(0)
        model = ds.create_model("resnet_mlp", depth=DEPTH, width=width).eval()
        x = model.example_input(1, torch.Generator().manual_seed(0))
        ref, t_naive = timed(lambda: naive(model, x), 1)
        (cum_ex, _), t_exact = timed(lambda: best_exact(model, x), max(1, args.repeats - 1))
        # Same quantities as the naive method (sigma_max only), then the full report for reference.
        rep, t_probe = timed(
            lambda: ds.probe(model, x, loss=lambda out: out.sum(), lyapunov=0, probes=16, sigma_min=False), args.repeats
        )
        _, t_full = timed(lambda: ds.probe(model, x, loss=lambda out: out.sum(), lyapunov=0, probes=16), args.repeats)
        fro_err = rel_err(rep.column("local_fro"), ref["fro"])
        smax_err = rel_err(rep.column("local_sigma_max"), ref["smax"])
        cum_err = max(abs(torch.expm1(torch.tensor(a - b)).item()) for a, b in zip(rep.column("cum_log_fro"), ref["cum"]))
        ratio_err = rel_err(rep.column("grad_ratio"), ref["ratio"])
        print(
            f"width {width:5d}: naive {t_naive:7.2f} s | best exact {t_exact:6.2f} s | probe {t_probe:6.3f} s "
            f"({rep.blocks[1].method}, cumulative {rep.settings['cumulative']}) | "
            f"speed-up vs naive {t_naive / t_probe:6.1f}x, vs best exact {t_exact / t_probe:5.1f}x"
        )
        print(f"             full report (+ sigma_min, ||J - I||_2 of every block): {t_full:6.3f} s")
        print(
            f"             max relative error: local Frobenius {fro_err:.2%}, sigma_max {smax_err:.2%}, "
            f"cumulative Frobenius {cum_err:.2%}, gradient ratio {ratio_err:.2%}"
        )


if __name__ == "__main__":
    main()
