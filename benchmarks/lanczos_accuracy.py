"""Accuracy of the matrix-free sigma_max on the convolutional steps of CIFAR nets.

The probe's Lanczos stops at a 1% relative residual (LANCZOS_RTOL). This script compares its
sigma_max per step with a run converged to a 1e-6 residual from the same start, and prints the
mean and largest relative errors and the mean number of iterations.

Usage: python benchmarks/lanczos_accuracy.py [--models resnet56 plain56 preact_resnet56]
"""

from __future__ import annotations

import argparse

import torch

import depthscope as ds
import depthscope.estimators._matrix_free as local  # its Lanczos is swapped for a counting one
from depthscope.estimators import LinearizedChain, lanczos_top_eigenvalue
from depthscope.probing import _routes

REFERENCE_RTOL = 1e-6
REFERENCE_MAX_ITER = 200


def sigma_max(lin, ks, seed=0, **lanczos_kw):
    """Matrix-free sigma_max of steps ``ks`` with the probe's starts and the given Lanczos settings."""
    iterations = []

    def run(matvec, v0, **kw):
        kw.update(lanczos_kw)
        result = lanczos_top_eigenvalue(matvec, v0, **kw)
        iterations.append(result.iterations.double().mean().item())
        return result

    local.lanczos_top_eigenvalue = run
    try:
        stats = local.matrix_free_stats(lin, ks, 16, torch.Generator().manual_seed(seed), with_min=False)
    finally:
        local.lanczos_top_eigenvalue = lanczos_top_eigenvalue
    return torch.tensor([stats[k].sigma_max for k in ks], dtype=torch.float64), iterations[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet56", "plain56", "preact_resnet56"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="the probe's seeds (start vectors)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        torch.manual_seed(0)
        model = ds.create_model(name).eval()
        x = model.example_input(1, torch.Generator().manual_seed(0))
        lin = LinearizedChain(ds.Chain.from_module(model, example=x), x)
        # the steps the probe's route model sends to the matrix-free route at its defaults
        routes = _routes.plan(lin, "auto", 16, True)
        ks = [k for k, (route, _) in routes.items() if route == _routes.ROUTE_MATRIX_FREE]
        for seed in args.seeds:
            probe_value, probe_iters = sigma_max(lin, ks, seed)
            ref, ref_iters = sigma_max(lin, ks, seed, rtol=REFERENCE_RTOL, max_iter=REFERENCE_MAX_ITER)
            err = (probe_value / ref - 1).abs()
            print(
                f"{name} seed {seed}: {len(ks)} matrix-free steps, sigma_max relative error mean {err.mean():.2e}, "
                f"largest {err.max():.2e} (step {ks[int(err.argmax())]}); iterations {probe_iters:.1f} "
                f"(reference {ref_iters:.1f})"
            )


if __name__ == "__main__":
    main()
