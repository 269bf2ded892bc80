"""Accuracy and cost of the matrix-free sigma_max at the probe's Lanczos residual and others.

The probe's matrix-free Lanczos stops at a relative residual of LANCZOS_RTOL on sigma^2. For the
steps the probe sends to the matrix-free route, this script computes sigma_max with the probe's
own starts (its Hutchinson probes, ``seed``) at each residual asked for, and compares it with a
reference: the larger of two runs converged to a 1e-7 residual, one from the same start and one
from another (a start that barely touches the top singular vector can settle below it; the second
run catches that). It prints, per model, the Lanczos iterations summed over steps and seeds and the
median and largest relative error.

Usage: python benchmarks/lanczos_accuracy.py [--rtols 0.01 0.015 0.02] [--seeds 0 1 2] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch

import depthscope.estimators._matrix_free as local  # its Lanczos is swapped for a counting one
from _matrix_free_cases import linearized_cases, matrix_free_steps  # benchmarks/_matrix_free_cases.py
from depthscope.estimators import LANCZOS_RTOL, lanczos_top_eigenvalue

REFERENCE_RTOL = 1e-7
REFERENCE_MAX_ITER = 300
OTHER_START = 100  # the reference's second run starts from the probes of seed + this


def sigma_max(lin, ks, seed, **lanczos_kw):
    """Matrix-free sigma_max of steps ``ks`` with the probe's starts of ``seed`` and the given
    Lanczos settings, and the iterations spent (summed over the steps' problems)."""
    iterations = []

    def run(matvec, v0, **kw):
        kw.update(lanczos_kw)
        result = lanczos_top_eigenvalue(matvec, v0, **kw)
        iterations.extend(result.iterations.tolist())
        return result

    local.lanczos_top_eigenvalue = run
    try:
        stats = local.matrix_free_stats(lin, ks, 16, torch.Generator().manual_seed(seed), with_min=False)
    finally:
        local.lanczos_top_eigenvalue = lanczos_top_eigenvalue
    return torch.tensor([stats[k].sigma_max for k in ks], dtype=torch.float64), sum(iterations)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtols", nargs="+", type=float, default=sorted({0.01, LANCZOS_RTOL, 0.02}))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="the probe's seeds (start vectors)")
    ap.add_argument("--only", nargs="*", default=None, help="case names containing any of these words")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print(f"the probe's residual: {LANCZOS_RTOL:g}; errors relative to the reference, iterations summed")
    for name, lin in linearized_cases(args.only):
        ks = matrix_free_steps(lin, with_min=False)
        errors: dict[float, list[float]] = {r: [] for r in args.rtols}
        spent = dict.fromkeys(args.rtols, 0)
        for seed in args.seeds:
            reference = torch.maximum(
                sigma_max(lin, ks, seed, rtol=REFERENCE_RTOL, max_iter=REFERENCE_MAX_ITER)[0],
                sigma_max(lin, ks, seed + OTHER_START, rtol=REFERENCE_RTOL, max_iter=REFERENCE_MAX_ITER)[0],
            )
            for rtol in args.rtols:
                value, its = sigma_max(lin, ks, seed, rtol=rtol)
                errors[rtol] += (1 - value / reference).abs().tolist()
                spent[rtol] += its
        cells = [
            f"{rtol:g}: {spent[rtol]} its, median {statistics.median(errors[rtol]):.1e}, "
            f"largest {max(errors[rtol]):.1e}"
            for rtol in args.rtols
        ]
        print(f"{name} ({len(ks)} steps x {len(args.seeds)} seeds)\n  " + "\n  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
