"""The two safe paths of depthscope._linalg at 2 threads: per-matrix calls against one batched call
in a single-thread section, for the sizes its docstring quotes (PER_MATRIX_MIN_DIM picks between
them). Prints the median of each and their ratio, measured in the same run.

Usage: python benchmarks/linalg_guard.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import time

import torch

from _timing import median_time  # benchmarks/_timing.py
from depthscope import _linalg

CASES = [(32, 256), (64, 150), (256, 32), (4000, 3)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, 2 threads, float64, lu_factor_ex, wall-clock medians of {args.repeats}")
    for batch, n in CASES:
        A = torch.randn(batch, n, n, generator=g, dtype=torch.float64)

        def per_matrix():
            return [torch.linalg.lu_factor_ex(a) for a in A]

        def single_thread():
            with _linalg.single_threaded():
                return torch.linalg.lu_factor_ex(A)

        t_loop = median_time(per_matrix, args.repeats, time.perf_counter)
        t_one = median_time(single_thread, args.repeats, time.perf_counter)
        chosen = "per-matrix" if n >= _linalg.PER_MATRIX_MIN_DIM else "single-thread"
        faster = "per-matrix" if t_loop < t_one else "single-thread"
        print(
            f"({batch}, {n}, {n}): per-matrix {t_loop * 1e3:7.2f} ms, single-thread batch {t_one * 1e3:7.2f} ms, "
            f"single-thread / per-matrix {t_one / t_loop:5.2f}; guard takes {chosen}, faster {faster}"
        )


if __name__ == "__main__":
    main()
