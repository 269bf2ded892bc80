"""Iterated maps and linear recurrences as chains: x_{n+1} = f(x_n), one chain step per iteration.

Every builder returns a `depthscope.Chain` whose steps carry an analytic tangent map
``jvp(x, V) -> (f(x), J(x) V)`` (see `depthscope.Step`): these maps are iterated 10^5 times, and
the analytic form is several times cheaper than forward-mode autodiff. Lyapunov exponents of these
chains come from `depthscope.estimators.lyapunov`, the one Benettin implementation.

States are batches of initial conditions, ``x: (B, n)``; tangents are ``V: (m, B, n)``.

linear_map:   x -> A x                    J = A  (every x)
scalar_map:   x -> a x  (elementwise)     J = a I
fibonacci:    linear_map([[1, 1], [1, 0]]) (claim N1: eigenvalues phi, psi = 1 -+ sqrt 5 over 2)
logistic_map: x -> r x (1 - x)            J = r (1 - 2x)         (n = 1)
henon_map:    (x, y) -> (1 - a x^2 + y, b x)  J = [[-2 a x, 1], [b, 0]], det J = -b  (n = 2)
"""

from __future__ import annotations

import torch

from depthscope.chain import Chain

# The Fibonacci recurrence (F_{n+1}, F_n) -> (F_{n+2}, F_{n+1}) (claim N1). Symmetric, so its
# eigenvectors are orthogonal and the angle to the dominant one decays exactly like (|psi|/phi)^n.
FIBONACCI = ((1.0, 1.0), (1.0, 0.0))
# Henon's classic parameters (Henon 1976), for which the attractor is chaotic with largest
# Lyapunov exponent ~0.419 per step.
HENON_A = 1.4
HENON_B = 0.3


def _matrix(A, name: str) -> torch.Tensor:
    """``A`` as a float64 square matrix ``(n, n)``; float64 because these maps run for 10^5 steps."""
    A = torch.as_tensor(A, dtype=torch.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be a square matrix (n, n); got shape {tuple(A.shape)}")
    return A


class _LinearStep:
    """x -> x A^T on ``x: (B, n)`` (row-vector form of A x); its tangent map is V -> V A^T.

    A small class, not a closure, so that chains print and pickle.
    """

    def __init__(self, A: torch.Tensor):
        self.A = A

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.A.to(x.dtype).T

    def jvp(self, x: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        At = self.A.to(x.dtype).T
        return x @ At, V @ At


class _ScalarStep:
    """x -> a x elementwise on ``x: (B, *S)``; J = a I."""

    def __init__(self, a: float):
        self.a = float(a)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x

    def jvp(self, x: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a * x, self.a * V


class _LogisticStep:
    """x -> r x (1 - x) elementwise on ``x: (B, 1)``; J = r (1 - 2x)."""

    def __init__(self, r: float):
        self.r = float(r)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.r * x * (1.0 - x)

    def jvp(self, x: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.r * x * (1.0 - x), (self.r * (1.0 - 2.0 * x)) * V


class _HenonStep:
    """(x, y) -> (1 - a x^2 + y, b x) on ``s: (B, 2)``; J = [[-2 a x, 1], [b, 0]]."""

    def __init__(self, a: float, b: float):
        self.a = float(a)
        self.b = float(b)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        x, y = s[..., 0], s[..., 1]
        return torch.stack((1.0 - self.a * x * x + y, self.b * x), dim=-1)

    def jvp(self, s: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = s[..., 0]
        u, v = V[..., 0], V[..., 1]  # (m, B) each
        jv = torch.stack((-2.0 * self.a * x * u + v, self.b * u), dim=-1)
        return self(s), jv


def linear_map(A, n_steps: int, name: str = "n=") -> Chain:
    """The linear recurrence x_{n+1} = A x_n for ``n_steps`` steps on states ``(B, n)``.

    ``A``: ``(n, n)`` (anything ``torch.as_tensor`` takes; stored as float64). The Jacobian is A at
    every state, so the Lyapunov exponents are those of the products A^L; starting from x = 0 keeps
    the state finite however long the chain (the state itself grows like |lambda_max|^n otherwise).
    """
    step = _LinearStep(_matrix(A, "A"))
    return Chain.repeat(step, n_steps, name, jvp=step.jvp)


def fibonacci(n_steps: int) -> Chain:
    """The Fibonacci recurrence: `linear_map` with A = [[1, 1], [1, 0]] on states ``(B, 2)``.

    From x_0 = (1, 0), x_n = (F_{n+1}, F_n); the state overflows float64 at n = 1476 (F_1477 >
    1.8e308), so use `analyze_linear_recurrence` (renormalised) for long runs.
    """
    return linear_map(FIBONACCI, n_steps)


def scalar_map(a: float, n_steps: int) -> Chain:
    """x_{n+1} = a x_n elementwise on states ``(B, *S)``; every Lyapunov exponent is ln |a|."""
    step = _ScalarStep(a)
    return Chain.repeat(step, n_steps, "n=", jvp=step.jvp)


def logistic_map(r: float, n_steps: int) -> Chain:
    """The logistic map x_{n+1} = r x_n (1 - x_n) on states ``(B, 1)`` in [0, 1].

    At r = 4 the invariant density is 1 / (pi sqrt(x (1 - x))) and the Lyapunov exponent is ln 2.
    """
    step = _LogisticStep(r)
    return Chain.repeat(step, n_steps, "n=", jvp=step.jvp)


def henon_map(a: float = HENON_A, b: float = HENON_B, n_steps: int = 1000) -> Chain:
    """The Henon map (x, y) -> (1 - a x^2 + y, b x) on states ``(B, 2)``.

    det J = -b at every state, so the two Lyapunov exponents sum to ln |b| (exactly, step by step:
    the log |R_ii| of each QR sum to log |det J|).
    """
    step = _HenonStep(a, b)
    return Chain.repeat(step, n_steps, "n=", jvp=step.jvp)
