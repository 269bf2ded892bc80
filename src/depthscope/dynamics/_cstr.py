"""Continuous stirred-tank reactors (claim J8): ``dx/dt = N v(x) - D (x - x_in)``.

A closed reactor evolves by its reactions alone, ``dx/dt = N v(x)`` (N: (n, r) stoichiometry, v:
(r,) rates). Feeding fresh x_in and drawing off the mixture at dilution rate D adds ``-D (x - x_in)``,
so the Jacobian is ``J_CSTR = J_closed - D I``: every eigenvalue moves left by D, and a mode with
``Re lambda > 0`` in the closed system is stabilised once ``D > Re lambda`` (evaluated at the
CSTR's own steady state, which itself moves with D). Jacobians here come from torch autograd.

Two reactors ship: Gray-Scott (cubic autocatalysis, a Hopf bifurcation in D) and a first-order
exothermic reaction with cooling (Uppal, Ray & Poore 1974: up to three steady states).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

from depthscope import _linalg
from depthscope._errors import InputError

# A root of the steady-state equations is accepted when max |dx/dt| is below this (float64 Newton
# reaches ~1e-15 on O(1) states; 1e-10 leaves room for badly scaled ones).
STEADY_RESIDUAL_TOL = 1e-10
# Two roots closer than this (max-norm, relative to 1 + |x|) are the same steady state.
STEADY_DEDUP_TOL = 1e-7
# Damped Newton for steady states: iteration cap (quadratic convergence needs ~6 once close; the
# rest is for starts far away), step halvings per iteration, and the stop criterion as a fraction
# of the acceptance residual.
STEADY_MAX_ITER = 60
STEADY_MAX_HALVINGS = 30
STEADY_SAFETY = 1e-3
# Bisection (brentq) tolerance on the Hopf dilution; far below the 1e-6 the claim needs.
HOPF_XTOL = 1e-12
# Starts per axis of the default grid of Newton starts in the search box.
GRID_STARTS_PER_AXIS = 7
# Gray-Scott feed: pure A, no B.
GRAY_SCOTT_FEED = (1.0, 0.0)
# Exothermic CSTR defaults (Uppal, Ray & Poore 1974, time in residence times): Damkohler number,
# adiabatic temperature rise B, cooling beta, activation energy gamma; this set has three
# steady states at D = 1.
EXO_DAMKOHLER, EXO_B, EXO_BETA, EXO_GAMMA = 0.072, 8.0, 0.3, 20.0

RateLaw = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CSTR:
    """A continuous stirred-tank reactor ``dx/dt = N v(x) - D (x - x_in)``.

    Attributes:
        stoich: (n, r) stoichiometric matrix N (column j: change of each species per unit of rate j).
        rates: torch-differentiable rate law v: (..., n) -> (..., r), broadcasting over leading dims.
        feed: (n,) inflow composition x_in.
        dilution: D, inflow rate / volume (1 / residence time).
        names: species names, for reports.
    """

    stoich: torch.Tensor
    rates: RateLaw
    feed: torch.Tensor
    dilution: float
    names: tuple[str, ...] = ()

    def __post_init__(self):
        n, r = self.stoich.shape
        if self.feed.shape != (n,):
            raise InputError(f"feed has shape {tuple(self.feed.shape)}; expected ({n},) to match N {(n, r)}")
        if self.dilution < 0:
            raise InputError(f"dilution must be >= 0; got {self.dilution}")

    @property
    def n(self) -> int:
        return self.stoich.shape[0]

    def with_dilution(self, dilution: float) -> CSTR:
        return dataclasses.replace(self, dilution=float(dilution))

    def closed_rhs(self, x: torch.Tensor) -> torch.Tensor:
        """``N v(x)``: (..., n) -> (..., n)."""
        return self.rates(x) @ self.stoich.T

    def rhs(self, x: torch.Tensor) -> torch.Tensor:
        """``N v(x) - D (x - x_in)``: (..., n) -> (..., n)."""
        return self.closed_rhs(x) - self.dilution * (x - self.feed)

    def ode(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The right-hand side in ``solve_ivp``'s convention (torch, so Jacobians come by autograd)."""
        return self.rhs(y)

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """``J_CSTR = d rhs / dx`` at x (n,) by forward-mode autograd: (n, n)."""
        return torch.func.jacfwd(self.rhs)(x)

    def closed_jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """``J_closed = N dv/dx`` at x (n,): (n, n)."""
        return torch.func.jacfwd(self.closed_rhs)(x)


@dataclass(frozen=True)
class SteadyState:
    """A steady state of a CSTR and its linear stability.

    Attributes:
        x: (n,) the state; dilution: the D it belongs to; residual: max |dx/dt| there.
        eigenvalues: (n,) complex eigenvalues of J_CSTR, sorted by decreasing real part.
        closed_eigenvalues: (n,) eigenvalues of J_closed at the same x (= eigenvalues + D).
    """

    x: np.ndarray
    dilution: float
    residual: float
    eigenvalues: np.ndarray
    closed_eigenvalues: np.ndarray

    @property
    def stable(self) -> bool:
        """Linearly stable: every eigenvalue of J_CSTR has negative real part."""
        return bool(np.max(self.eigenvalues.real) < 0)

    @property
    def stabilised_by_dilution(self) -> bool:
        """Unstable in the closed reactor's linearisation but stable once diluted."""
        return self.stable and bool(np.max(self.closed_eigenvalues.real) > 0)


@dataclass(frozen=True)
class HopfResult:
    """Where a branch of steady states changes stability through a complex pair (Hopf point).

    Attributes:
        dilution: D_H, the root of max Re lambda(J_CSTR) along the branch.
        frequency: |Im lambda| of the critical pair at D_H (angular frequency of the born cycle).
        state: the steady state at D_H.
        bracket: (lo, hi) the search interval; evaluations: steady-state solves used.
    """

    dilution: float
    frequency: float
    state: SteadyState
    bracket: tuple[float, float]
    evaluations: int


def _sorted_eigs(J: np.ndarray) -> np.ndarray:
    lam = np.linalg.eigvals(J)
    return lam[np.argsort(-lam.real, kind="stable")]


def steady_state_at(reactor: CSTR, x: np.ndarray) -> SteadyState:
    """Stability data of ``reactor`` at a (converged) steady state x (n,)."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    with torch.no_grad():
        residual = float(reactor.rhs(xt).abs().max())
    return SteadyState(
        x=np.asarray(x, dtype=np.float64).copy(),
        dilution=reactor.dilution,
        residual=residual,
        eigenvalues=_sorted_eigs(reactor.jacobian(xt).numpy()),
        closed_eigenvalues=_sorted_eigs(reactor.closed_jacobian(xt).numpy()),
    )


def grid_starts(lower: np.ndarray, upper: np.ndarray, per_axis: int = GRID_STARTS_PER_AXIS) -> np.ndarray:
    """A tensor grid of Newton starts in the box [lower, upper] (n,) -> (per_axis^n, n)."""
    axes = [np.linspace(lo, hi, per_axis) for lo, hi in zip(lower, upper)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))


def _batch_jacobian(fun: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Per-row Jacobians of a row-wise map at x (S, n) -> (S, n, n).

    Rows are independent, so one forward-mode derivative along u (n,), broadcast to every row,
    gives column j of every row's Jacobian.
    """
    return torch.func.jacfwd(lambda u: fun(x + u))(torch.zeros(x.shape[-1], dtype=x.dtype))


def newton_roots(reactor: CSTR, starts: np.ndarray) -> np.ndarray:
    """Damped Newton on ``rhs(x) = 0`` from every start at once: (S, n) -> (S, n), NaN where it failed.

    Each iteration takes the Newton step and halves it (per start) until |rhs| decreases.
    """
    x = torch.as_tensor(np.asarray(starts, dtype=np.float64)).clone()
    nan = torch.tensor(float("nan"), dtype=x.dtype)
    with torch.no_grad():
        for _ in range(STEADY_MAX_ITER):
            f = reactor.rhs(x)
            f_norm = torch.linalg.vector_norm(f, dim=-1)
            if bool(((f_norm < STEADY_RESIDUAL_TOL * STEADY_SAFETY) | torch.isnan(f_norm)).all()):
                break
            J = _batch_jacobian(reactor.rhs, x)
            dx, info = _linalg.solve_ex(J, -f.unsqueeze(-1))
            dx = torch.where((info != 0).unsqueeze(-1), nan, dx.squeeze(-1))
            alpha = torch.ones(len(x), dtype=x.dtype)
            for _ in range(STEADY_MAX_HALVINGS):
                trial_norm = torch.linalg.vector_norm(reactor.rhs(x + alpha.unsqueeze(-1) * dx), dim=-1)
                worse = ~(trial_norm < f_norm) & (f_norm > 0)
                if not bool(worse.any()):
                    break
                alpha = torch.where(worse, alpha / 2, alpha)
            x = x + alpha.unsqueeze(-1) * dx
            x = torch.where(torch.isfinite(x).all(-1, keepdim=True), x, nan)
    return x.numpy()


def steady_states(reactor: CSTR, starts: np.ndarray) -> list[SteadyState]:
    """All distinct steady states reached by damped Newton from ``starts`` (S, n).

    Returns states sorted by their coordinates; runs that did not reach a residual below
    STEADY_RESIDUAL_TOL are dropped.
    """
    roots: list[np.ndarray] = []
    candidates = newton_roots(reactor, starts)
    with torch.no_grad():
        residual = reactor.rhs(torch.from_numpy(candidates)).abs().amax(-1).numpy()
    for x, res in zip(candidates, residual):
        if not res < STEADY_RESIDUAL_TOL:  # also drops NaN
            continue
        if any(np.max(np.abs(x - r) / (1.0 + np.abs(r))) < STEADY_DEDUP_TOL for r in roots):
            continue
        roots.append(x)
    roots.sort(key=lambda r: tuple(r))
    return [steady_state_at(reactor, r) for r in roots]


def find_hopf(
    reactor_at: Callable[[float], CSTR],
    branch: Callable[[list[SteadyState]], SteadyState],
    bracket: tuple[float, float],
    starts: np.ndarray,
) -> HopfResult:
    """Find the dilution where ``max Re lambda(J_CSTR)`` on a branch of steady states crosses zero.

    Args:
        reactor_at: D -> the reactor at dilution D.
        branch: picks the branch's state among the steady states found at one D.
        bracket: (lo, hi) dilutions with opposite signs of the leading real part.
        starts: (S, n) Newton starts used at every D.

    Raises:
        InputError: the bracket does not change sign, or the branch vanishes inside it.
    """
    count = 0

    def leading(D: float) -> float:
        nonlocal count
        count += 1
        states = steady_states(reactor_at(D), starts)
        if not states:
            raise InputError(f"no steady state found at D = {D}")
        return float(branch(states).eigenvalues[0].real)

    lo, hi = bracket
    g_lo, g_hi = leading(lo), leading(hi)
    if np.sign(g_lo) == np.sign(g_hi):
        raise InputError(
            f"max Re lambda has the same sign at both ends of {bracket} ({g_lo:.3g}, {g_hi:.3g}); "
            "widen or move the bracket"
        )
    D_H = scipy.optimize.brentq(leading, lo, hi, xtol=HOPF_XTOL)
    state = branch(steady_states(reactor_at(D_H), starts))
    return HopfResult(
        dilution=float(D_H),
        frequency=float(abs(state.eigenvalues[0].imag)),
        state=state,
        bracket=(float(lo), float(hi)),
        evaluations=count + 1,
    )


# -- Gray-Scott ----------------------------------------------------------------------------------
def gray_scott(k: float, dilution: float) -> CSTR:
    """Gray-Scott reactor: A + 2B -> 3B at rate a b^2, B -> C at rate k b; feed a = 1, b = 0.

    State x = (a, b). Reactions are the columns of N: (-1, +1) and (0, -1).
    """

    def rates(x: torch.Tensor) -> torch.Tensor:
        a, b = x[..., 0], x[..., 1]
        return torch.stack([a * b * b, k * b], dim=-1)

    return CSTR(
        stoich=torch.tensor([[-1.0, 0.0], [1.0, -1.0]], dtype=torch.float64),
        rates=rates,
        feed=torch.tensor(GRAY_SCOTT_FEED, dtype=torch.float64),
        dilution=float(dilution),
        names=("a", "b"),
    )


def gray_scott_upper(states: list[SteadyState]) -> SteadyState:
    """The upper branch: the steady state with the most B (a "lit" reactor)."""
    return max(states, key=lambda s: s.x[1])


def gray_scott_starts() -> np.ndarray:
    """Newton starts covering 0 <= a, b <= 1 (every steady state lies there)."""
    return grid_starts(np.zeros(2), np.ones(2))


def gray_scott_hopf(k: float, bracket: tuple[float, float]) -> HopfResult:
    """The Hopf dilution of the Gray-Scott upper branch (analytic: (D + k)^2 = D sqrt(k))."""
    return find_hopf(lambda D: gray_scott(k, D), gray_scott_upper, bracket, gray_scott_starts())


def gray_scott_batch(k: float, dilutions: np.ndarray):
    """numpy ``fun``, ``jac`` for a batch of Gray-Scott reactors, one dilution each (M,).

    ``fun(t, Y)``: (M,), (M, 2) -> (M, 2); ``jac(t, Y)`` -> (M, 2, 2) (closed forms, for sweeps).
    """
    D = np.asarray(dilutions, dtype=np.float64)

    def fun(t, Y):
        a, b = Y[:, 0], Y[:, 1]
        r = a * b * b
        return np.stack([-r + D * (GRAY_SCOTT_FEED[0] - a), r - (k + D) * b], axis=1)

    def jac(t, Y):
        a, b = Y[:, 0], Y[:, 1]
        J = np.empty((len(D), 2, 2))
        J[:, 0, 0] = -b * b - D
        J[:, 0, 1] = -2.0 * a * b
        J[:, 1, 0] = b * b
        J[:, 1, 1] = 2.0 * a * b - k - D
        return J

    return fun, jac


# -- exothermic first-order reaction with cooling -------------------------------------------------
def exothermic_cstr(
    dilution: float = 1.0,
    damkohler: float = EXO_DAMKOHLER,
    heat_rise: float = EXO_B,
    cooling: float = EXO_BETA,
    activation: float = EXO_GAMMA,
) -> CSTR:
    """A -> B, first order, Arrhenius in the dimensionless temperature theta, with a cooled jacket.

    State x = (c, theta): concentration of A and temperature rise over the feed/coolant. Rates:
    ``v1 = Da c exp(theta / (1 + theta / gamma))`` (reaction) and ``v2 = theta`` (heat loss to the
    jacket); N = [[-1, 0], [B, -beta]]; feed (1, 0). At D = 1 this is the Uppal-Ray-Poore CSTR with
    conversion 1 - c.
    """

    def rates(x: torch.Tensor) -> torch.Tensor:
        c, theta = x[..., 0], x[..., 1]
        return torch.stack([damkohler * c * torch.exp(theta / (1.0 + theta / activation)), theta], dim=-1)

    return CSTR(
        stoich=torch.tensor([[-1.0, 0.0], [heat_rise, -cooling]], dtype=torch.float64),
        rates=rates,
        feed=torch.tensor([1.0, 0.0], dtype=torch.float64),
        dilution=float(dilution),
        names=("c", "theta"),
    )


def exothermic_starts(reactor_heat_rise: float = EXO_B) -> np.ndarray:
    """Newton starts over 0 <= c <= 1 and 0 <= theta <= B (theta never exceeds the adiabatic rise)."""
    return grid_starts(np.zeros(2), np.array([1.0, reactor_heat_rise]), per_axis=2 * GRID_STARTS_PER_AXIS)
