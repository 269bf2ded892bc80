"""Calibrate the probe's route cost model (`depthscope.probing._routes`) on this machine.

For residual-MLP blocks at widths 16-512 and batches 1-64 (float32 on the tape route, plus
autograd-route and float64 cases), with and without sigma_min/gap, it times the two routes of the
local statistics on the same linearised chain in interleaved rounds (medians of CPU time, one
thread):

  explicit    : build every step's Jacobian (`LinearizedChain.explicit`) + `explicit_stats`;
  matrix-free : `matrix_free_stats` (Hutchinson + lockstep Lanczos);

then fits the model's constants (non-negative least squares on relative errors) and prints them,
followed by the calibration table: per case, the predicted (stored constants) and measured seconds
per step of both routes, the route the model chooses, the faster one measured, and the ratio
chosen / best.

With ``--whole`` it then times whole probes, ``method="auto"`` against both forced routes, on the
cases of benchmarks/probe_vs_exact.py (64-block residual MLPs of widths 256 and 1024, batch 1) and
on resnet56, with and without sigma_min, and prints auto / best (the requirement: at most 1.10).
A forced explicit route whose working set would pass `EXPLICIT_MEMORY_BUDGET` on some step is not
run (resnet56: 16384-wide steps, GBs per Jacobian); the best is then the matrix-free time. Where the
first measured round finds the forced explicit route over `SLOW_ONCE` times the matrix-free one
(width 1024: tens of seconds), it is not repeated.

Usage: python benchmarks/route_calibration.py [--rounds 3] [--quick] [--whole] [--whole-only]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from unittest import mock

import numpy as np
import torch
from scipy.optimize import nnls

import depthscope as ds
from depthscope.estimators import LinearizedChain, _linearized, explicit_stats, matrix_free_stats
from depthscope.probing import _routes

PROBES = 16
# Cases whose explicit Jacobians hold more entries than this are skipped (minutes of dense work
# on a 2-core machine, and far past the crossover).
MAX_ENTRIES = 2**22
# Enough steps that a case takes tens of milliseconds per round, few enough to stay quick.
STEPS_SMALL, STEPS_LARGE = 8, 4
LARGE_ENTRIES = 2**19


@dataclass
class Case:
    width: int
    batch: int
    with_min: bool
    route: str  # Jacobian route: "tape" or "autograd"
    dtype: torch.dtype

    def label(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        return f"w{self.width:<4d} B{self.batch:<3d} {'min ' if self.with_min else 'max '} {self.route:8s} {dt}"


def cases(quick: bool) -> list[Case]:
    widths = [16, 64, 256] if quick else [16, 32, 64, 128, 256, 512]
    batches = [1, 8] if quick else [1, 8, 64]
    out = [
        Case(w, b, m, "tape", torch.float32)
        for w in widths
        for b in batches
        for m in (False, True)
        if b * w * w <= MAX_ENTRIES
    ]
    out += [Case(w, b, False, "autograd", torch.float32) for w in (32, 128, 256) for b in (1, 8)]
    out += [Case(w, b, True, "tape", torch.float64) for w in (64, 256) for b in (1, 8)]
    return out


def linearize(case: Case) -> tuple[LinearizedChain, list[int]]:
    n_steps = STEPS_LARGE if case.batch * case.width**2 > LARGE_ENTRIES else STEPS_SMALL
    torch.manual_seed(0)
    model = ds.create_model("resnet_mlp", depth=n_steps, width=case.width).to(case.dtype).eval()
    x = model.example_input(case.batch, torch.Generator().manual_seed(0)).to(case.dtype)
    chain = ds.Chain.from_module(model)
    with torch.no_grad():
        if case.route == "autograd":  # no tape: every step takes the double-backward route
            with mock.patch.object(_linearized, "record", lambda fn, t: (fn(t), None, "calibration")):
                lin = LinearizedChain(chain, x)
        else:
            lin = LinearizedChain(chain, x)
    return lin, lin.steps[1:-1]  # the residual blocks (stem and head differ in shape)


def measure(case: Case, rounds: int) -> tuple[float, float]:
    """Median CPU seconds per step of (explicit, matrix-free), interleaved over ``rounds``."""
    lin, ks = linearize(case)
    gen = torch.Generator().manual_seed(0)

    def explicit():
        explicit_stats({k: lin.explicit(k) for k in ks}, False, gen, case.with_min)

    def matrix_free():
        matrix_free_stats(lin, ks, PROBES, gen, case.with_min)

    times: dict[str, list[float]] = {"e": [], "m": []}
    with torch.no_grad():
        explicit(), matrix_free()  # warm-up
        for _ in range(rounds):
            for key, fn in (("e", explicit), ("m", matrix_free)):
                t0 = time.process_time()
                fn()
                times[key].append(time.process_time() - t0)
    return statistics.median(times["e"]) / len(ks), statistics.median(times["m"]) / len(ks)


def features(case: Case, a: float = 1.0, g: float = 0.0) -> tuple[list[float], list[float]]:
    """The model's terms (explicit, matrix-free) without their constants (`_routes.step_cost`)."""
    n, B = float(case.width), float(case.batch)
    W, m = n * n, n
    s = case.dtype.itemsize / 4
    sq = 1.0 if case.with_min else 0.0
    fe = [1.0, a * s * B * m * W, B * W, sq * B * W, sq * B * m**3]
    fm = [
        1 + g,
        sq * (1 + g),
        a * s * W,
        a * s * W * sq,
        a * s * B * W * (PROBES + _routes.MF_LANCZOS_PASSES * (1 + sq)),
    ]
    return fe, fm


def fit(rows: list[tuple[Case, float, float]]) -> dict[str, float]:
    """Constants by NNLS on relative errors over the tape cases, then the two autograd factors by
    a grid scan over the autograd cases (log errors)."""
    tape = [(c, te, tm) for c, te, tm in rows if c.route == "tape"]
    ce, _ = nnls(np.array([np.array(features(c)[0]) / te for c, te, _ in tape]), np.ones(len(tape)))
    cm, _ = nnls(np.array([np.array(features(c)[1]) / tm for c, _, tm in tape]), np.ones(len(tape)))
    out = dict(
        EXPLICIT_STEP_S=ce[0],
        EXPLICIT_BUILD_S=ce[1],
        EXPLICIT_DENSE_S=ce[2],
        EXPLICIT_SQUARE_EXTRA=ce[3] / ce[2] if ce[2] > 0 else 0.0,
        EXPLICIT_LU_S=ce[4],
        MF_STEP_S=cm[0],
        MF_SQUARE_STEP_S=cm[1],
        MF_READ_S=cm[2],
        MF_READ_SQUARE_EXTRA=cm[3] / cm[2] if cm[2] > 0 else 0.0,
        MF_TANGENT_S=cm[4],
    )
    auto = [(c, te, tm) for c, te, tm in rows if c.route == "autograd"]
    if auto:

        def err(a: float, g: float) -> float:
            total = 0.0
            for c, te, tm in auto:
                fe, fm = features(c, a, g)
                total += np.log(np.dot(ce, fe) / te) ** 2 + np.log(np.dot(cm, fm) / tm) ** 2
            return total

        grid = [(a, g) for a in np.linspace(1.0, 6.0, 51) for g in np.linspace(0.0, 4.0, 41)]
        a, g = min(grid, key=lambda ag: err(*ag))
        out["AUTOGRAD_PASS_FACTOR"], out["AUTOGRAD_CALL_FACTOR"] = float(a), float(g)
    return out


# A forced route measured this many times slower than the other in the first round is not rerun.
SLOW_ONCE = 5.0
WHOLE_CASES = [("resnet_mlp", dict(depth=64, width=256)), ("resnet_mlp", dict(depth=64, width=1024)), ("resnet56", {})]


def whole_probes(rounds: int) -> None:
    """auto against the forced routes on whole probes (defaults otherwise), CPU time, one thread."""
    print(f"\nwhole probes, batch 1, CPU seconds, medians of {rounds} interleaved rounds:")
    print(f"{'case':34s} {'auto':>8s} {'explicit':>9s} {'matrix-free':>12s}  auto/best  auto's routes")
    worst = 1.0
    for name, kw in WHOLE_CASES:
        torch.manual_seed(0)
        model = ds.create_model(name, **kw).eval()
        x = model.example_input(1, torch.Generator().manual_seed(0))
        with torch.no_grad():
            lin = LinearizedChain(ds.Chain.from_module(model), x)
        for with_min in (False, True):
            widest = max(_routes.explicit_bytes(lin.n_in[k], lin.n_out[k], 1, x.dtype, with_min) for k in lin.steps)
            methods = ["auto", "matrix-free"] + (["explicit"] if widest <= _routes.EXPLICIT_MEMORY_BUDGET else [])
            times: dict[str, list[float]] = {m: [] for m in methods}
            reps = {}
            for r in range(rounds + 1):  # round 0 warms up
                for m in methods:
                    if r > 1 and m == "explicit" and times[m][0] > SLOW_ONCE * times["matrix-free"][0]:
                        continue
                    t0 = time.process_time()
                    reps[m] = ds.probe(model, x, method=m, sigma_min=with_min)
                    if r:
                        times[m].append(time.process_time() - t0)
            med = {m: statistics.median(ts) for m, ts in times.items()}
            best = min(v for m, v in med.items() if m != "auto")
            worst = max(worst, med["auto"] / best)
            explicit = f"{med['explicit']:9.3f}" if "explicit" in med else f"{'not run':>9s}"
            label = f"{name} {kw.get('width', '')} sigma_min={with_min}"
            print(
                f"{label:34s} {med['auto']:8.3f} {explicit} {med['matrix-free']:12.3f}  {med['auto'] / best:9.2f}  "
                f"{reps['auto'].settings['local_routes']}"
            )
    print(f"worst auto/best: {worst:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer cases (about a minute)")
    ap.add_argument("--whole", action="store_true", help="also time whole probes: auto against forced routes")
    ap.add_argument("--whole-only", action="store_true", help="only the whole probes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.whole_only:
        whole_probes(args.rounds)
        return
    print(
        f"depthscope {ds.__version__}, torch {torch.__version__}, 1 thread, CPU time, medians of "
        f"{args.rounds} interleaved rounds, seconds per step (residual-MLP blocks)"
    )
    rows = []
    for case in cases(args.quick):
        try:
            te, tm = measure(case, args.rounds)
        except (RuntimeError, ValueError) as err:  # reported, not hidden: the case is left out of the fit
            print(f"    FAILED {case.label()}: {type(err).__name__}: {str(err)[:120]}", flush=True)
            continue
        rows.append((case, te, tm))
        print(f"    measured {case.label()}: explicit {te * 1e3:.3f} ms, matrix-free {tm * 1e3:.3f} ms", flush=True)
    print("\nfitted constants (stored values in depthscope/probing/_routes.py in brackets):")
    for name, value in fit(rows).items():
        print(f"    {name:24s} = {value:.3g}   [{getattr(_routes, name):.3g}]")
    print("\ncalibration table (prediction from the stored constants):")
    print(
        f"{'case':34s} {'explicit pred/meas ms':>22s} {'matrix-free pred/meas ms':>25s}  chosen       best         chosen/best"
    )
    worst = 1.0
    for case, te, tm in rows:
        cost = _routes.step_cost(case.width, case.width, case.batch, case.dtype, case.with_min, case.route, PROBES)
        chosen, _ = _routes.choose(cost)
        best = _routes.ROUTE_EXPLICIT if te <= tm else _routes.ROUTE_MATRIX_FREE
        t_chosen = te if chosen == _routes.ROUTE_EXPLICIT else tm
        ratio = t_chosen / min(te, tm)
        worst = max(worst, ratio)
        print(
            f"{case.label():34s} {cost.explicit_s * 1e3:10.3f} /{te * 1e3:9.3f} {cost.matrix_free_s * 1e3:12.3f} /{tm * 1e3:9.3f}"
            f"  {chosen:12s} {best:12s} {ratio:6.2f}"
        )
    print(f"worst chosen/best over {len(rows)} cases: {worst:.2f}")
    if args.whole:
        whole_probes(args.rounds)


if __name__ == "__main__":
    main()
