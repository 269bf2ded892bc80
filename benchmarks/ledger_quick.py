"""The claim ledger's quick preset end to end: all claims, their verdicts and the wall time.

Run: ``python benchmarks/ledger_quick.py [--out DIR] [--threads 1]``. The target is all claims
within 10 minutes on 2 CPU cores. Prints one line per claim and the verdict counts.
"""

from __future__ import annotations

import argparse
import collections
import time

import torch

import depthscope as ds

QUICK_BUDGET_S = 600.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="depthscope-ledger")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="quick")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"depthscope {ds.__version__}, torch {torch.__version__}, {args.threads} thread(s), preset {args.preset}")
    t0 = time.perf_counter()

    def done(r: ds.ledger.ClaimResult) -> None:
        print(f"{r.id:>4} {r.verdict:<9} {r.runtime_s:6.1f} s  {r.reason[:110]}", flush=True)

    results = ds.ledger.run_many(preset=args.preset, out=args.out, on_done=done)
    wall = time.perf_counter() - t0
    counts = collections.Counter(r.verdict for r in results)
    print(
        f"{len(results)} claims: {counts['confirmed']} confirmed, {counts['qualified']} qualified, "
        f"{counts['refuted']} refuted; wall {wall:.0f} s (budget {QUICK_BUDGET_S:.0f} s, "
        f"{'within' if wall <= QUICK_BUDGET_S else 'OVER'}); atlas at {args.out}/atlas.html"
    )


if __name__ == "__main__":
    main()
