"""The all-steps probe against the naive torch.func method a user would write, in the same run.

For a 64-block residual MLP (batch 1) at widths 256 and 1024, at torch's default thread count and
at one thread, it times:
  naive  : per block jacrev + svdvals (local Frobenius, sigma_max), jacfwd of the truncated chain
           for every k (cumulative Frobenius), one backward pass with retained grads (ratios);
  probe  : depthscope.probe in three configurations, interleaved over rounds (medians):
           "defaults"       ds.probe(model, x): sigma_min and ||J - I||_2, 8 Lyapunov exponents;
           "sigma_min=False" the defaults without sigma_min and the gap;
           "naive's set"    sigma_min=False, lyapunov=0: the naive method's quantities;
  exact  : (--best-exact) the best exact method: one jacfwd of a function returning every block
           output (all J(0 -> k) at once) plus per-block jacrev + svdvals;
and prints medians, the speed-up against the naive method (targets: 10x at width 256, 30x at width
1024, in every configuration), the routes the probe chose
(``settings["local_routes"]``) and the probe's relative errors against the naive results. Wall
time (several threads make CPU time a sum over threads): on a shared machine rerun on a quiet one.

The naive method is timed at every thread count, and each speed-up is against the naive time of
the same thread count. At width 1024 it takes about three minutes per thread count (64 jacfwd's of
prefixes of the chain; the whole run about eight minutes on a quiet 2-core machine, one with
``--widths 256``); ``--naive-threads N`` times it once, at N threads, for all configurations.

Whether the routes chosen are the fastest: ``python benchmarks/route_calibration.py`` prints the
cost model's calibration table and, with ``--whole``, auto against both forced routes on these
cases and resnet56.

Usage: python benchmarks/probe_vs_exact.py [--widths 256 1024] [--threads 0 1] [--rounds 3] [--best-exact]
       [--naive-threads N]
       (thread count 0 means torch's default)
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

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


# The probe configurations: name -> keyword arguments of ds.probe.
CONFIGS = {
    "defaults": {},
    "sigma_min=False": dict(sigma_min=False),
    "naive's set": dict(sigma_min=False, lyapunov=0),
}
NAIVE_SET = "naive's set"
TARGETS = {256: 10.0, 1024: 30.0}


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


def interleaved(fns: dict, rounds: int) -> tuple[dict, dict]:
    """Median wall seconds of each of ``fns`` over ``rounds`` rounds, one call of each per round
    (after a warm-up round), so a slow spell of a shared machine slows all alike."""
    out = {name: fn() for name, fn in fns.items()}
    times: dict = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return out, {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--threads", type=int, nargs="+", default=[0, 1], help="0: torch's default")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--best-exact", action="store_true")
    ap.add_argument("--naive-threads", type=int, default=None, help="time the naive method once, at this many threads")
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    print(
        f"depthscope {ds.__version__}, torch {torch.__version__}, depth {DEPTH}, batch 1, wall time, "
        f"medians of {args.rounds} interleaved rounds (torch's default: {default_threads} threads)"
    )
    short = []
    models, naive_runs = {}, {}

    def run_naive(width: int, threads: int) -> None:
        model, x = models[width]
        with warnings.catch_warnings():  # torch.func's own notices, not the benchmark's concern
            warnings.simplefilter("ignore")
            naive_runs[width] = (*timed(lambda: naive(model, x), 1), threads)

    for width in args.widths:
        torch.manual_seed(0)
        model = ds.create_model("resnet_mlp", depth=DEPTH, width=width).eval()
        models[width] = (model, model.example_input(1, torch.Generator().manual_seed(0)))
        if args.naive_threads:
            torch.set_num_threads(args.naive_threads)
            run_naive(width, args.naive_threads)
    for threads in [t or default_threads for t in args.threads]:
        torch.set_num_threads(threads)
        for width in args.widths:
            model, x = models[width]
            if not args.naive_threads:
                run_naive(width, threads)
            ref, t_naive, naive_threads = naive_runs[width]
            fns = {name: (lambda kw=kw: ds.probe(model, x, **kw)) for name, kw in CONFIGS.items()}
            reps, t = interleaved(fns, args.rounds)
            print(f"{threads} thread(s), width {width}: naive {t_naive:.2f} s (at {naive_threads} threads)")
            for name in CONFIGS:
                speedup = t_naive / t[name]
                target = TARGETS.get(width)
                mark = (
                    ""
                    if target is None
                    else (" (target met)" if speedup >= target else f" (BELOW the {target:.0f}x target)")
                )
                if target is not None and speedup < target:
                    short.append(f"{threads} thread(s), width {width}, {name}")
                print(
                    f"    {name:16s} {t[name]:7.3f} s  {speedup:6.1f}x vs naive{mark}  "
                    f"routes {reps[name].settings['local_routes']}"
                )
            if args.best_exact:
                (cum_ex, _), t_exact = timed(lambda: best_exact(model, x), 1)
                print(f"    best exact       {t_exact:7.3f} s  ({t_exact / t[NAIVE_SET]:.1f}x the probe's naive set)")
            # Accuracy of the naive method's quantities, from a probe with its loss (sum of outputs).
            rep = ds.probe(model, x, loss=lambda out: out.sum(), sigma_min=False, lyapunov=0)
            fro_err = rel_err(rep.column("local_rms"), ref["fro"])
            smax_err = rel_err(rep.column("local_sigma_max"), ref["smax"])
            cum_err = max(
                abs(torch.expm1(torch.tensor(a - b)).item()) for a, b in zip(rep.column("cum_log_rms"), ref["cum"])
            )
            ratio_err = rel_err(rep.column("grad_ratio"), ref["ratio"])
            print(
                f"    max relative error: local Frobenius {fro_err:.2%}, sigma_max {smax_err:.2%}, "
                f"cumulative Frobenius {cum_err:.2%}, gradient ratio {ratio_err:.2%}"
            )
    print("all configurations meet their targets" if not short else "below target: " + "; ".join(short))
    print("route choice: see python benchmarks/route_calibration.py (calibration table; --whole for these cases)")


if __name__ == "__main__":
    main()
