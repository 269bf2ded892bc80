"""Matrix-free Lanczos in lockstep groups against all steps in lockstep and one step at a time.

The probe runs the Lanczos iterations of its matrix-free steps in consecutive groups whose working
sets (`LinearizedChain.working_set`: the tape's constants and a tangent per recorded state) add
up to at most ``LOCKSTEP_BYTES``. This script times `matrix_free_stats` on the steps the probe
sends to the matrix-free route, at its default budget, with every step in one group (the budget
unbounded) and with every step alone (budget 0), interleaved in each round, and prints the
medians (range) and the ratios to the default.

Usage: python benchmarks/lanczos_groups.py [--rounds 5] [--only NAME ...] [--also MIB ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import depthscope.estimators._matrix_free as mf
from _matrix_free_cases import linearized_cases, matrix_free_steps  # benchmarks/_matrix_free_cases.py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None, help="case names containing any of these words")
    ap.add_argument("--also", nargs="*", type=float, default=[], help="other budgets to time, in MiB")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    default = mf.LOCKSTEP_BYTES
    budgets = {"grouped": default, "all in lockstep": 2**62, "one at a time": 0}
    budgets.update({f"{mib:g} MiB": int(mib * 2**20) for mib in args.also})
    print(f"one thread, CPU clock, medians of {args.rounds} interleaved rounds (range); budget {default / 2**20:g} MiB")
    for name, lin in linearized_cases(args.only, batch8=True, mlp=True):
        for with_min in (False, True):
            ks = matrix_free_steps(lin, with_min)
            times: dict[str, list[float]] = {b: [] for b in budgets}
            groups = {}
            try:
                for r in range(args.rounds + 1):  # round 0 warms up
                    for label, budget in budgets.items():
                        mf.LOCKSTEP_BYTES = budget
                        groups[label] = len(mf.lockstep_groups(lin, ks, 2 if with_min else 1))
                        t0 = time.process_time()
                        with torch.no_grad():
                            mf.matrix_free_stats(lin, ks, 16, torch.Generator().manual_seed(0), with_min=with_min)
                        if r:
                            times[label].append(time.process_time() - t0)
            finally:
                mf.LOCKSTEP_BYTES = default
            med = {k: statistics.median(v) for k, v in times.items()}
            cells = [
                f"{label} [{groups[label]}] {1e3 * med[label]:.0f} ms ({1e3 * min(v):.0f}-{1e3 * max(v):.0f})"
                + ("" if label == "grouped" else f" = {med[label] / med['grouped']:.2f}x")
                for label, v in times.items()
            ]
            print(f"{name}, sigma_min={with_min}, {len(ks)} steps: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
