"""Cost of a full probe of resnet56 in units of one forward+backward pass of the same model.

The issue's full probe: batch 1, local Frobenius norm and top singular value of every block,
cumulative Frobenius norms for every k, gradient ratios, 16 Lyapunov exponents
(``sigma_min=False``); also timed with sigma_min and ||J - I||_2 of every block. Also prints every
registered model's probe time at its tiny size.

Usage: python benchmarks/probe_zoo.py [--model resnet56] [--width 1] [--rounds 9] [--clock cpu|wall] [--skip-tiny]

With one thread (the default) the CPU-time clock is the fair one on a shared machine: other
processes change wall time but hardly this process's CPU time.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import depthscope as ds
from _timing import median_time  # benchmarks/_timing.py

# Forward+backward passes timed per round: their median is the round's unit.
FB_PER_ROUND = 5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--width", type=float, default=None, help="the model's width option, where it has one")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ds.create_model(args.model, **({} if args.width is None else {"width": args.width})).eval()
    x = model.example_input(1, torch.Generator().manual_seed(0))
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    images = x.ndim == 4
    m_cl = copy.deepcopy(model).to(memory_format=torch.channels_last) if images else None
    x_cl = x.contiguous(memory_format=torch.channels_last) if images else None

    def fwd_bwd(m, inp):
        m.zero_grad(set_to_none=True)
        inp = inp.clone().requires_grad_(True) if inp.is_floating_point() else inp  # token ids stay ints
        m(inp).sum().backward()

    reports = {}

    def probe(sigma_min):
        reports[sigma_min] = ds.probe(model, x, lyapunov=16, probes=16, sigma_min=sigma_min)

    # Rounds interleave the unit and the probes, so a slow spell of a shared machine slows both:
    # each round gives its own ratios, and the median over rounds is reported with their range.
    rows = {"fb": [], "cl": [], True: [], False: []}
    for r in range(args.rounds + 1):  # round 0 warms up
        fb = median_time(lambda: fwd_bwd(model, x), FB_PER_ROUND, clock)
        cl = median_time(lambda: fwd_bwd(m_cl, x_cl), FB_PER_ROUND, clock) if images else float("nan")
        times = {}
        for sigma_min in (True, False):
            t0 = clock()
            probe(sigma_min)
            times[sigma_min] = clock() - t0
        if r:
            rows["fb"].append(fb)
            rows["cl"].append(cl)
            for k in (True, False):
                rows[k].append(times[k])
    med = statistics.median

    def ratio(probe_times, unit):
        rs = [p / u for p, u in zip(probe_times, unit)]
        return f"{med(rs):.1f} fwd+bwd (rounds {min(rs):.1f}-{max(rs):.1f})"

    rep = reports[True]
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"depthscope {ds.__version__}, torch {torch.__version__}, {args.threads} threads, {args.clock} clock, "
        f"{args.rounds} rounds, medians"
    )
    print(
        f"{args.model} (width {args.width}, {n_params / 1e6:.2f}M params, {len(rep)} chain steps, batch 1): "
        f"forward+backward {med(rows['fb']) * 1e3:.1f} ms | without sigma_min/gap (the issue's full probe) "
        f"{med(rows[False]):.3f} s = {ratio(rows[False], rows['fb'])} | with sigma_min and gap "
        f"{med(rows[True]):.3f} s = {ratio(rows[True], rows['fb'])}"
    )
    if images:  # the same model run channels-last, the faster CPU layout the tapes use
        print(
            f"    against a channels-last forward+backward ({med(rows['cl']) * 1e3:.1f} ms): without sigma_min/gap "
            f"{ratio(rows[False], rows['cl'])} | with {ratio(rows[True], rows['cl'])}"
        )
    print(
        f"    verdict {rep.verdict}, log gain {rep.log_gain:+.3f}, top Lyapunov {rep.lyapunov[0]:+.4f}, "
        f"routes {rep.settings['jacobian_routes']}, methods {sorted(set(rep.column('method')))}"
    )
    if args.skip_tiny:
        return
    print("tiny-size probe of every registered model (batch 2, lyapunov 4):")
    for name in ds.list_models():
        spec = ds.model_spec(name)
        torch.manual_seed(0)
        m = spec.factory(**spec.tiny).eval()
        xi = m.example_input(2, torch.Generator().manual_seed(0))
        t = median_time(lambda: ds.probe(m, xi, lyapunov=4), 1)
        print(f"    {name:24s} {t:6.2f} s")


if __name__ == "__main__":
    main()
