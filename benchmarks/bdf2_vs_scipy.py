"""depthscope's BDF-2 against SciPy's BDF on the stiff test set, a batched Gray-Scott sweep, and
global errors on problems with closed-form solutions.

Run: ``python benchmarks/bdf2_vs_scipy.py`` (a few minutes on 2 cores); ``--part 1``, ``2`` or ``3``
runs one part, ``--repeats N`` repeats Part 2's comparison N times and reports medians (on a busy
machine the ratio of a single run is noisy). Set OMP_NUM_THREADS=1 for timings comparable with the
single-threaded SciPy loop.

Part 1. For each problem (ROBER, VDPOL, HIRES, OREGO) and each accuracy row of the project's table
(rtol 1e-6 with the problem's atol; rtol 1e-8 with atol / 100) it runs, in this process:
  * SciPy's BDF capped at order 2 with pure BDF coefficients (kappa = 0) and the analytic Jacobian:
    the table's reference ("scipy-bdf2");
  * SciPy's stock BDF, orders 1-5 (rtol 1e-6 row only, "scipy-bdf1-5");
  * depthscope's BDF-2 at the loosest tolerance on a grid (rtol and atol scaled together by
    10^(j/8), from 10^3 down to 10^-3: our rtol asks for global accuracy, so each step's test is up
    to 100x tighter than the rtol given and the match lies above 1) whose max relative error at
    t_end is at most SciPy order-2's error ("ours").
It prints nfev, njev, nlu, wall time (median of repeats) and scd side by side, with the ratio of
our evaluations to the table's. Target: ratio <= 1.5.

Part 2. 1024 Gray-Scott reactors (k = 0.05) over dilutions D in [0.02, 0.06] (across the Hopf
point D_H = 0.02548) from a common start, integrated to t = 2000: one batched call against a
Python loop of SciPy's BDF (analytic Jacobians, the same per-step error test: our rtol asks for global
accuracy, so ours gets `tolerances_for_local` of SciPy's; a line at our rtol = SciPy's follows).
Target: >= 20x faster in wall
time (the batched time is a median of 3 runs; the ratio of CPU times is printed beside it, since
other processes on a shared machine inflate wall times unevenly).

Part 3. Global errors against the exact solution (max over the output times of the relative
error) on the closed-form problems of `depthscope.dynamics.CLOSED_FORM_PROBLEMS` at rtol
1e-3 and 1e-6 (atol 1e-12, analytic Jacobians): ours, SciPy's stock BDF (orders 1-5) and SciPy's
BDF capped at order 2, side by side, with each error per rtol and per unit of the problem's
condition (the bound tests/dynamics/test_ivp_accuracy.py asserts) and the evaluations it cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.integrate
import scipy.integrate._ivp.bdf as scipy_bdf

from depthscope.dynamics import (
    CLOSED_FORM_PROBLEMS,
    STIFF_PROBLEMS,
    global_relative_error,
    gray_scott_batch,
    max_relative_error,
    solve_ivp,
    tolerances_for_local,
)

# The project's table: SciPy BDF capped at order 2, (nfev, max relative error) per row.
TABLE = {
    "ROBER": {1e-6: (7516, 1.2e-2), 1e-8: (38050, 7.0e-4)},
    "VDPOL": {1e-6: (8962, 4.6e-4), 1e-8: (41625, 2.0e-5)},
    "HIRES": {1e-6: (4120, 1.4e-4), 1e-8: (19198, 6.3e-6)},
    "OREGO": {1e-6: (17701, 2.3e-3), 1e-8: (80756, 1.0e-4)},
}
# Row rtol -> atol multiplier of the problem's base atol (the table's rtol 1e-8 row used atol / 100).
ATOL_SCALE = {1e-6: 1.0, 1e-8: 1e-2}
# Tolerance grid for matching accuracy: factors 10^((GRID_LOOSEST - j)/8), j = 0..GRID_STEPS (10^3 down
# to 10^-3): loose enough for a global rtol whose per-step test is up to 100x tighter.
GRID_LOOSEST, GRID_STEPS = 24, 48
# Wall-time repeats (median) for runs cheaper than REPEAT_BELOW_S seconds.
REPEATS, REPEAT_BELOW_S = 3, 1.0
# Gray-Scott sweep: systems, decay rate k, dilution range, horizon, common start and tolerances.
SWEEP_M, SWEEP_K, SWEEP_D, SWEEP_T = 1024, 0.05, (0.02, 0.06), 2000.0
SWEEP_X0 = np.array([0.35, 0.25])
SWEEP_TOLS = ((1e-6, 1e-9), (1e-4, 1e-8))
# Part 3: the tolerances compared, and an atol far below every solution value checked.
CLOSED_FORM_RTOLS, CLOSED_FORM_ATOL = (1e-3, 1e-6), 1e-12


class ScipyBDF2(scipy_bdf.BDF):
    """SciPy's BDF with orders capped at 2 and NDF coefficients off (kappa = 0): plain BDF-1/2."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = self.gamma.copy()  # (1 - kappa) gamma with kappa = 0
        self.error_const = 1.0 / np.arange(1, len(self.gamma) + 1)  # kappa gamma + 1/(k+1)

    def _step_impl(self):
        saved, scipy_bdf.MAX_ORDER = scipy_bdf.MAX_ORDER, 2
        try:
            return super()._step_impl()
        finally:
            scipy_bdf.MAX_ORDER = saved


def timed(run):
    t = time.perf_counter()
    out = run()
    first = time.perf_counter() - t
    if first >= REPEAT_BELOW_S:
        return out, first
    times = [first]
    for _ in range(REPEATS - 1):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def timed_part2(run, repeats=REPEATS):
    """(result, median wall time, median CPU time of this process) over ``repeats`` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = run()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return out, statistics.median(walls), statistics.median(cpus)


def line(label, rtol, nfev, njev, nlu, wall, err):
    scd = -np.log10(err)
    print(
        f"  {label:14s} rtol={rtol:8.2e}  nfev={nfev:6d}  njev={njev:4d}  nlu={nlu:5d}  "
        f"wall={wall * 1e3:8.1f} ms  scd={scd:5.2f}  err={err:.2e}"
    )


def part1():
    print("== Part 1: stiff test set, matched accuracy (Jacobians analytic) ==")
    ratios = []
    for name, p in STIFF_PROBLEMS.items():
        for rtol, (table_nfev, table_err) in TABLE[name].items():
            atol = np.asarray(p.atol) * ATOL_SCALE[rtol]
            print(f"{name}  row rtol={rtol:g}  (table: nfev {table_nfev}, err {table_err:.1e})")
            ref, wall = timed(
                lambda: scipy.integrate.solve_ivp(
                    p.fun, p.t_span, p.y0, method=ScipyBDF2, rtol=rtol, atol=atol, jac=p.jac
                )
            )
            ref_err = max_relative_error(ref.y[:, -1], p.y_ref)
            line("scipy-bdf2", rtol, ref.nfev, ref.njev, ref.nlu, wall, ref_err)
            if rtol == 1e-6:
                st, wall = timed(
                    lambda: scipy.integrate.solve_ivp(
                        p.fun, p.t_span, p.y0, method="BDF", rtol=rtol, atol=atol, jac=p.jac
                    )
                )
                line("scipy-bdf1-5", rtol, st.nfev, st.njev, st.nlu, wall, max_relative_error(st.y[:, -1], p.y_ref))
            target = min(ref_err, table_err)
            chosen = None
            for j in range(GRID_STEPS + 1):
                f = 10.0 ** ((GRID_LOOSEST - j) / 8)
                res = solve_ivp(p.fun, p.t_span, p.y0, rtol=rtol * f, atol=atol * f, jac=p.jac)
                if res.success and max_relative_error(res.y[:, -1], p.y_ref) <= target:
                    chosen = f
                    break
            if chosen is None:
                print("  ours: no tolerance on the grid reached the target error")
                continue
            res, wall = timed(
                lambda: solve_ivp(p.fun, p.t_span, p.y0, rtol=rtol * chosen, atol=atol * chosen, jac=p.jac)
            )
            err = max_relative_error(res.y[:, -1], p.y_ref)
            line("ours (BDF-2)", rtol * chosen, res.nfev, res.njev, res.nlu, wall, err)
            ratio = res.nfev / table_nfev
            ratios.append(ratio)
            print(
                f"  -> evaluations vs table {ratio:.2f}x (target <= 1.5), vs scipy-bdf2 this run "
                f"{res.nfev / ref.nfev:.2f}x; nlu {res.nlu} vs {ref.nlu}"
            )
    print(f"worst evaluations ratio vs table: {max(ratios):.2f}x over {len(ratios)} rows")


def scipy_loop(D, rtol, atol):
    """SciPy's BDF on each reactor in turn (analytic Jacobians): final states, evaluations."""
    finals = np.empty((len(D), 2))
    nfev = 0
    for m in range(len(D)):
        f1, j1 = gray_scott_batch(SWEEP_K, D[m : m + 1])
        sol = scipy.integrate.solve_ivp(
            lambda t, y: f1(t, y[None])[0],
            (0.0, SWEEP_T),
            SWEEP_X0,
            method="BDF",
            rtol=rtol,
            atol=atol,
            jac=lambda t, y: j1(t, y[None])[0],
        )
        finals[m] = sol.y[:, -1]
        nfev += sol.nfev
    return finals, nfev


def part2(repeats=1):
    print("\n== Part 2: 1024 Gray-Scott reactors, batched BDF-2 vs a SciPy BDF loop ==")
    D = np.linspace(*SWEEP_D, SWEEP_M)
    fun, jac = gray_scott_batch(SWEEP_K, D)
    Y0 = np.tile(SWEEP_X0, (SWEEP_M, 1))
    for rtol, atol in SWEEP_TOLS:
        # Our rtol asks for global accuracy, SciPy's bounds each step: the speed-up is measured with the
        # same per-step error test in both, and reported beside it with our rtol = SciPy's.
        ours_rtol, ours_atol = tolerances_for_local(rtol, atol)
        walls, cpus = [], []  # (batched, loop) per repeat
        for _ in range(repeats):  # alternate the two so that both see the same machine load
            batch, t_batch, c_batch = timed_part2(
                lambda: solve_ivp(fun, (0.0, SWEEP_T), Y0, rtol=ours_rtol, atol=ours_atol, jac=jac, batched=True)
            )
            (finals, nfev_loop), t_loop, c_loop = timed_part2(lambda: scipy_loop(D, rtol, atol), repeats=1)
            walls.append((t_batch, t_loop))
            cpus.append((c_batch, c_loop))
        t_batch, t_loop = (statistics.median(w[i] for w in walls) for i in (0, 1))
        ratio = statistics.median(tl / tb for tb, tl in walls)
        cpu_ratio = statistics.median(tl / tb for tb, tl in cpus)
        diff = np.max(np.abs(batch.y[:, :, -1] - finals), axis=1)
        print(
            f"rtol={rtol:g} atol={atol:g} per step (ours: rtol={ours_rtol:.3g}): batched {t_batch:.2f} s (success "
            f"{batch.success}, rounds = max steps {batch.nsteps.max()}, median steps {int(np.median(batch.nsteps))}, "
            f"fun calls {batch.nfev})"
        )
        print(
            f"  scipy BDF loop {t_loop:.2f} s ({nfev_loop} evaluations)  -> speed-up {ratio:.1f}x "
            f"(target >= 20x); in CPU time {cpu_ratio:.1f}x"
        )
        if repeats > 1:
            print(
                f"  {repeats} repeats: batched "
                + ", ".join(f"{tb:.2f}" for tb, _ in walls)
                + " s; loop "
                + ", ".join(f"{tl:.2f}" for _, tl in walls)
                + " s; speed-ups "
                + ", ".join(f"{tl / tb:.1f}" for tb, tl in walls)
                + " (medians above)"
            )
        print(
            f"  final states: max |ours - scipy| median {np.median(diff):.1e}, 90th pct "
            f"{np.percentile(diff, 90):.1e}, max {diff.max():.1e} (largest near D_H, where decay is slow)"
        )
        same, t_same, _ = timed_part2(
            lambda: solve_ivp(fun, (0.0, SWEEP_T), Y0, rtol=rtol, atol=atol, jac=jac, batched=True), repeats=1
        )
        print(
            f"  ours at rtol={rtol:g} atol={atol:g} (global): batched {t_same:.2f} s (median steps "
            f"{int(np.median(same.nsteps))}) -> speed-up {t_loop / t_same:.1f}x over the loop"
        )


def closed_form_errors(problem, rtol):
    """(global relative error, nfev) of ours, SciPy's BDF and SciPy's BDF capped at order 2."""
    out = {}
    res = solve_ivp(problem.fun, problem.t_span, problem.y0, rtol=rtol, atol=CLOSED_FORM_ATOL, jac=problem.jac)
    out["ours"] = (global_relative_error(problem, res.t, res.y) if res.success else np.inf, res.nfev)
    for label, method in (("scipy-bdf1-5", "BDF"), ("scipy-bdf2", ScipyBDF2)):
        ref = scipy.integrate.solve_ivp(
            problem.fun, problem.t_span, problem.y0, method=method, rtol=rtol, atol=CLOSED_FORM_ATOL, jac=problem.jac
        )
        out[label] = (global_relative_error(problem, ref.t, ref.y) if ref.success else np.inf, ref.nfev)
    return out


def part3():
    print("\n== Part 3: global error against closed-form solutions (atol 1e-12, Jacobians analytic) ==")
    print("   error = max over output times of ||y - exact|| / ||exact||; per unit = error / (rtol x condition)")
    labels = ("ours", "scipy-bdf1-5", "scipy-bdf2")
    print(
        f"  {'problem':18s} {'rtol':>6s} {'cond':>5s}  " + "  ".join(f"{lab:>27s}" for lab in labels) + "  ours/scipy"
    )
    worst_unit, worst_ratio = 0.0, 0.0
    for rtol in CLOSED_FORM_RTOLS:
        for p in CLOSED_FORM_PROBLEMS.values():
            errs = closed_form_errors(p, rtol)
            cells = [
                f"{errs[lab][0]:8.2e} ({errs[lab][0] / (rtol * p.condition):5.2f}/u, {errs[lab][1]:5d} f)"
                for lab in labels
            ]
            ratio = errs["ours"][0] / errs["scipy-bdf1-5"][0]
            worst_unit = max(worst_unit, errs["ours"][0] / (rtol * p.condition))
            worst_ratio = max(worst_ratio, ratio)
            print(f"  {p.name:18s} {rtol:6.0e} {p.condition:5.0f}  " + "  ".join(cells) + f"  {ratio:6.2f}")
    print(f"worst: ours {worst_unit:.2f} rtol per unit of condition; ours / scipy-bdf1-5 error {worst_ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("1", "2", "3", "all"), default="all", help="which part to run")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of Part 2's comparison (medians)")
    cli = parser.parse_args()
    if cli.part in ("1", "all"):
        part1()
    if cli.part in ("2", "all"):
        part2(cli.repeats)
    if cli.part in ("3", "all"):
        part3()
