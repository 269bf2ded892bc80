"""Cost of a full probe of resnet56 in units of one forward+backward pass of the same model.

Full probe: batch 1, local Frobenius and top singular value of every block (sigma_min and
||J - I||_2 too), cumulative Frobenius for every k, gradient ratios, 16 Lyapunov exponents.
Also prints every registered model's probe time at its tiny size.

Usage: python benchmarks/probe_zoo.py [--model resnet56] [--width 1] [--repeats 3] [--clock cpu|wall]

With one thread (the default) the CPU-time clock is the fair one on a shared machine: other
processes change wall time but hardly this process's CPU time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import depthscope as ds


def median_time(fn, repeats: int, clock=time.perf_counter) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--width", type=float, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ds.create_model(args.model, width=args.width).eval()
    x = model.example_input(1, torch.Generator().manual_seed(0))

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        model(x.clone().requires_grad_(True)).sum().backward()

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    t_fb = median_time(fwd_bwd, 5 * args.repeats, clock)
    reports = {}

    def full(sigma_min=True):
        reports[sigma_min] = ds.probe(model, x, lyapunov=16, probes=16, sigma_min=sigma_min)

    t_full = median_time(full, args.repeats, clock)
    t_max = median_time(lambda: full(False), args.repeats, clock)
    rep = reports[True]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"depthscope {ds.__version__}, torch {torch.__version__}, {args.threads} threads, {args.clock} clock")
    print(
        f"{args.model} (width {args.width}, {n_params / 1e6:.2f}M params, {len(rep)} chain steps, batch 1): "
        f"forward+backward {t_fb * 1e3:.1f} ms | full probe {t_full:.2f} s = {t_full / t_fb:.0f} fwd+bwd | "
        f"without sigma_min/gap {t_max:.2f} s = {t_max / t_fb:.0f} fwd+bwd"
    )
    if x.ndim == 4:  # the same model run channels-last, the faster CPU layout the tapes use
        m_cl = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def fwd_bwd_cl():
            m_cl.zero_grad(set_to_none=True)
            m_cl(x_cl.clone().requires_grad_(True)).sum().backward()

        t_cl = median_time(fwd_bwd_cl, 5 * args.repeats, clock)
        model.to(memory_format=torch.contiguous_format)
        print(
            f"    against a channels-last forward+backward ({t_cl * 1e3:.1f} ms): full probe "
            f"{t_full / t_cl:.0f} fwd+bwd | without sigma_min/gap {t_max / t_cl:.0f} fwd+bwd"
        )
    print(f"    verdict {rep.verdict}, log gain {rep.log_gain:+.3f}, top Lyapunov {rep.lyapunov[0]:+.4f}, "
          f"methods {sorted(set(rep.column('method')))}")
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
