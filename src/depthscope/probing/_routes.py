"""Which route computes a step's local statistics: a cost model in seconds and bytes.

`depthscope.probe` computes each step's local statistics (Frobenius norm, sigma_max, and for square
steps with ``sigma_min=True`` also sigma_min and ||J - I||_2) by one of two routes
(`depthscope.estimators._local`):

* explicit: build J_k ``(B, n_out, n_in)`` from m = min(n_in, n_out) basis tangents, then dense
  Lanczos on the matrix (plus one LU factorisation and inverse Lanczos for sigma_min);
* matrix-free: Hutchinson probes (``probes``, more where their spread asks), then Lanczos through
  J v and J^T u, such steps in lockstep (in groups that fit a cache-sized budget, `lockstep_groups`).

With ``method="auto"`` each step takes the route this model predicts to be faster, unless its
explicit working set, B * n_in * n_out entries times the bytes of their copies (`explicit_bytes`),
would not fit in `EXPLICIT_MEMORY_BUDGET`. Explicit steps are streamed (`local_stats`): memory
grows with batch x width^2 but not with depth. The time model, per step, with
W = n_in * n_out (the entries of one example's Jacobian, also the proxy for the cost of one
tangent pass: exact for dense layers, an overestimate for convolutions and pointwise steps, which
only pushes those towards the matrix-free route they take anyway), m = min(n_in, n_out), B the
batch, s the dtype's size in units of float32, sq = 1 for a square step whose sigma_min and gap are
wanted (0 otherwise), and on the autograd Jacobian route a = `AUTOGRAD_PASS_FACTOR`,
g = `AUTOGRAD_CALL_FACTOR` (a = 1, g = 0 on a tape):

    explicit    = EXPLICIT_STEP_S + EXPLICIT_BUILD_S a s B m W
                  + EXPLICIT_DENSE_S B W (1 + sq EXPLICIT_SQUARE_EXTRA) + EXPLICIT_LU_S sq B m^3
    matrix-free = (MF_STEP_S + sq MF_SQUARE_STEP_S) (1 + g) + MF_READ_S a s W (1 + sq MF_READ_SQUARE_EXTRA)
                  + MF_TANGENT_S a s B W (probes + MF_LANCZOS_PASSES (1 + sq))

The explicit build pushes m basis tangents through the step; the dense terms read the float64
matrix on every Lanczos iteration (two more Lanczos runs for sigma_min and the gap) and factorise
it. The matrix-free terms are the per-step overhead of the lockstep Lanczos iterations, the
weights read once per iteration (the few tangents of one iteration are memory bound), and the
tangent passes: the probes, then about MF_LANCZOS_PASSES products per Lanczos channel.

The constants were fitted by ``benchmarks/route_calibration.py`` (non-negative least squares on
relative errors; one thread, CPU time, residual-MLP blocks of widths 16-512 at batches 1-64, float32
and float64, tape and autograd routes), which prints the fit and the table of predicted against
measured times. In two runs (43 and 44 cases) the chosen route was never more than 8% (2%) slower
than the faster one measured. The model holds at other thread counts as far as both routes speed
up alike; it predicts times within a factor ~1.5 (mostly within 20%), enough for a choice that
matters only where the routes differ by more.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from depthscope.estimators import LinearizedChain, LocalStats, explicit_stats, matrix_free_stats

ROUTE_EXPLICIT = "explicit"
ROUTE_MATRIX_FREE = "matrix-free"

# Fitted by benchmarks/route_calibration.py (2-core x86 CPU, torch 2.14.1, one thread, CPU time;
# seconds per step, per entry of W, per example and per tangent as the formula above says).
EXPLICIT_STEP_S = 6.9e-5
EXPLICIT_BUILD_S = 1.4e-10
EXPLICIT_DENSE_S = 4.8e-8
EXPLICIT_SQUARE_EXTRA = 0.40
EXPLICIT_LU_S = 1.7e-10
MF_STEP_S = 9.6e-4
MF_SQUARE_STEP_S = 1.8e-4
MF_READ_S = 7.1e-9
MF_READ_SQUARE_EXTRA = 0.82
MF_TANGENT_S = 9.7e-11
# Products per Lanczos channel: ~20 iterations of J v and J^T u each to the 1% residual the
# estimators stopped at when the model was fitted (resnet_mlp and CIFAR ResNet steps). At today's
# 1.5% residual they take 15-17 (benchmarks/lanczos_accuracy.py): the model then overestimates the
# matrix-free route by up to a sixth where Lanczos dominates, which only keeps borderline steps on
# the exact explicit route.
MF_LANCZOS_PASSES = 40
# The autograd route (double backward, `LinearizedChain`): each tangent pass costs this many tape
# passes, and each lockstep call carries this much more overhead (fitted on the calibration's
# autograd cases).
AUTOGRAD_PASS_FACTOR = 1.3
AUTOGRAD_CALL_FACTOR = 1.5

# At most this many bytes of explicit Jacobians and their working copies are alive while their
# statistics are computed (one part of a group of equal-shaped steps at a time; a single step over
# it, with method="explicit", runs alone). A quarter of a GiB is small beside a laptop's memory and
# far beyond where the explicit route stops paying (slower from width ~128 at batch 1, from ~48 at
# batch 8); it is reached by batches of tens at widths of hundreds: resnet_mlp width 512 at batch
# 64 needs 0.4-0.7 GB per step, which the choice then sends to the matrix-free route.
EXPLICIT_MEMORY_BUDGET = 256 * 2**20
# Of the Jacobians built, float64 copies up to this many bytes are kept for the cumulative and
# gradient sweeps (dense products); the rest are applied by J v and J^T u again, which costs about
# as much per column on a tape, so the cache only saves the narrow steps' recomputation.
EXPLICIT_KEEP_BUDGET = 128 * 2**20
# Bytes per Jacobian entry while a group's statistics are computed: the stack in the model's dtype,
# its float64 copy, the scaled Lanczos operator (float64, then the model's dtype); with sigma_min
# and the gap also J - I and its LU factors (float64).
EXPLICIT_ENTRY_COPIES_F64 = 2
EXPLICIT_ENTRY_COPIES_F64_SQUARE = 4
EXPLICIT_ENTRY_COPIES_NATIVE = 2

MODEL_DESCRIPTION = (
    "per step, the faster of explicit and matrix-free by the cost model of depthscope.probing._routes "
    "(calibrated by benchmarks/route_calibration.py), explicit only within the memory budget"
)


@dataclass(frozen=True)
class StepCost:
    """Predicted cost of one step's local statistics: seconds on each route (one thread) and the
    bytes the explicit route holds while computing them."""

    explicit_s: float
    matrix_free_s: float
    explicit_bytes: int


def explicit_bytes(n_in: int, n_out: int, batch: int, dtype: torch.dtype, with_min: bool) -> int:
    """Bytes alive while the explicit route computes one step's statistics (its Jacobian's copies)."""
    square = with_min and n_in == n_out
    f64 = EXPLICIT_ENTRY_COPIES_F64_SQUARE if square else EXPLICIT_ENTRY_COPIES_F64
    per_entry = 8 * f64 + dtype.itemsize * EXPLICIT_ENTRY_COPIES_NATIVE
    return batch * n_in * n_out * per_entry


def step_cost(
    n_in: int, n_out: int, batch: int, dtype: torch.dtype, with_min: bool, jacobian_route: str, probes: int
) -> StepCost:
    """The model's prediction for one step (sizes per example, ``jacobian_route`` "tape" or "autograd")."""
    W, m, B = float(n_in) * n_out, float(min(n_in, n_out)), float(batch)
    s = dtype.itemsize / 4
    a, g = (1.0, 0.0) if jacobian_route == "tape" else (AUTOGRAD_PASS_FACTOR, AUTOGRAD_CALL_FACTOR)
    sq = 1.0 if with_min and n_in == n_out else 0.0
    explicit = (
        EXPLICIT_STEP_S
        + EXPLICIT_BUILD_S * a * s * B * m * W
        + EXPLICIT_DENSE_S * B * W * (1 + sq * EXPLICIT_SQUARE_EXTRA)
        + EXPLICIT_LU_S * sq * B * m**3
    )
    matrix_free = (
        (MF_STEP_S + sq * MF_SQUARE_STEP_S) * (1 + g)
        + MF_READ_S * a * s * W * (1 + sq * MF_READ_SQUARE_EXTRA)
        + MF_TANGENT_S * a * s * B * W * (probes + MF_LANCZOS_PASSES * (1 + sq))
    )
    return StepCost(explicit, matrix_free, explicit_bytes(n_in, n_out, batch, dtype, with_min))


def choose(cost: StepCost, budget: int | None = None) -> tuple[str, str]:
    """``(route, reason)`` for ``method="auto"``: the faster route, explicit only within ``budget``
    bytes (default `EXPLICIT_MEMORY_BUDGET`)."""
    if cost.explicit_s > cost.matrix_free_s:
        return ROUTE_MATRIX_FREE, "predicted faster"
    if cost.explicit_bytes > (EXPLICIT_MEMORY_BUDGET if budget is None else budget):
        return ROUTE_MATRIX_FREE, "explicit over the memory budget"
    return ROUTE_EXPLICIT, "predicted faster"


def plan(lin: LinearizedChain, method: str, probes: int, with_min: bool) -> dict[int, tuple[str, str]]:
    """``{k: (route, reason)}`` for every differentiated step. ``method`` is "auto", "explicit"
    (also what ``exact=True`` asks for) or "matrix-free"."""
    if method in (ROUTE_EXPLICIT, ROUTE_MATRIX_FREE):
        return {k: (method, f"method={method!r}") for k in lin.steps}
    dtype = lin.states[lin.start].dtype
    return {
        k: choose(step_cost(lin.n_in[k], lin.n_out[k], lin.batch, dtype, with_min, lin.route(k), probes))
        for k in lin.steps
    }


def local_stats(
    lin: LinearizedChain,
    routes: dict[int, tuple[str, str]],
    probes: int,
    generator: torch.Generator,
    exact: bool,
    with_min: bool,
) -> tuple[dict[int, LocalStats], dict[int, torch.Tensor]]:
    """Every step's local statistics by its route, streaming the explicit ones.

    Explicit steps are built and measured one group of equal shape at a time (the grouping and
    order of `explicit_stats`, so the random draws are those of one call over all of them), a group
    split where its working set (`explicit_bytes`) would pass `EXPLICIT_MEMORY_BUDGET`. Of the
    Jacobians built, float64 copies are kept for the later sweeps while they fit in
    `EXPLICIT_KEEP_BUDGET`; the sweeps apply the others through `LinearizedChain.jvp` / `vjp`.

    Returns ``(stats, kept)``: ``stats[k]`` for every step, ``kept[k]: (B, n_out, n_in)`` float64.
    """
    budget = EXPLICIT_MEMORY_BUDGET
    dtype = lin.states[lin.start].dtype
    groups: dict[tuple[int, int], list[int]] = {}
    for k in lin.steps:
        if routes[k][0] == ROUTE_EXPLICIT:
            groups.setdefault((lin.n_out[k], lin.n_in[k]), []).append(k)
    stats: dict[int, LocalStats] = {}
    kept: dict[int, torch.Tensor] = {}
    for (n_out, n_in), members in groups.items():
        size = max(1, budget // explicit_bytes(n_in, n_out, lin.batch, dtype, with_min))
        for lo in range(0, len(members), size):
            _explicit_part(lin, members[lo : lo + size], generator, exact, with_min, stats, kept, EXPLICIT_KEEP_BUDGET)
    rest = [k for k in lin.steps if routes[k][0] != ROUTE_EXPLICIT]
    stats.update(matrix_free_stats(lin, rest, probes, generator, with_min))
    return stats, kept


def _explicit_part(
    lin: LinearizedChain,
    part: list[int],
    generator: torch.Generator,
    exact: bool,
    with_min: bool,
    stats: dict[int, LocalStats],
    kept: dict[int, torch.Tensor],
    budget: int,
) -> None:
    """Build the Jacobians of ``part``, add their statistics to ``stats`` and float64 copies to
    ``kept`` while ``kept`` stays within ``budget`` bytes. The Jacobians die on return."""
    Js = {k: lin.explicit(k) for k in part}
    stats.update(explicit_stats(Js, exact, generator, with_min))
    held = sum(8 * J.numel() for J in kept.values())
    for k in part:
        if held + 8 * Js[k].numel() <= budget:
            kept[k] = Js[k].to(torch.float64)
            held += 8 * Js[k].numel()


def summary(routes: dict[int, tuple[str, str]]) -> tuple[dict[str, int], dict[str, int]]:
    """Counts of steps per route, and per "route: reason", for the report's settings."""
    counts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for route, why in routes.values():
        counts[route] = counts.get(route, 0) + 1
        reasons[f"{route}: {why}"] = reasons.get(f"{route}: {why}", 0) + 1
    return dict(sorted(counts.items())), dict(sorted(reasons.items()))
