"""Analysis of a linear recurrence x_{n+1} = A x_n: growth rate and alignment with the top mode.

Writing x_0 = sum_i c_i v_i in the eigenvectors of A, x_n = sum_i c_i lambda_i^n v_i: the norm grows
like |lambda_1|^n and the state turns toward the dominant eigenvector v_1, the other components
shrinking relative to it like (|lambda_2| / |lambda_1|)^n (claim N1: for Fibonacci, A symmetric,
tan angle_n = tan angle_0 (|psi| / phi)^n exactly, with (|psi| / phi) = 0.382).

The state itself overflows (Fibonacci: after 1475 steps in float64), so the trajectory is iterated
renormalised: x is divided by its norm after every step and the logarithms of the norms are summed.
The angle does not depend on the scale, and log ||x_n|| is the running sum (log domain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from depthscope.dynamics._maps import _matrix, linear_map

# Two eigenvalue moduli closer than this (relative) count as tied: the dominant mode is then not
# unique and the state need not align with any one eigenvector.
TIE_RTOL = 1e-9
# Imaginary parts below this (relative to |lambda|) count as zero: eig returns real eigenvalues of a
# real matrix with a rounding-level imaginary part.
REAL_RTOL = 1e-12


@dataclass(frozen=True)
class LinearRecurrenceAnalysis:
    """What x_{n+1} = A x_n does to one initial condition.

    Attributes:
        eigenvalues: ``(n,)`` complex, by descending modulus.
        dominant_eigenvalue: lambda_1 (complex; real part only when it is real).
        dominant_eigenvector: ``(n,)`` unit eigenvector of lambda_1 (complex dtype; real-valued when
            lambda_1 is real).
        growth_rate: ln |lambda_1|, the per-step Lyapunov exponent of the recurrence (natural log).
        alignment_rate: ln(|lambda_2| / |lambda_1|) <= 0, the predicted per-step log decay of the
            tangent of the angle to the dominant mode (-inf for n = 1).
        log_norms: ``(n_steps + 1,)`` ln ||x_k||, k = 0..n_steps, finite even where x_k overflows.
        angles: ``(n_steps + 1,)`` radians in [0, pi/2]: the angle between x_k and the dominant
            invariant subspace (the line of v_1, or the plane of Re v_1, Im v_1 for a complex pair).
        unit_states: ``(n_steps + 1, n)`` x_k / ||x_k||.
    """

    eigenvalues: torch.Tensor
    dominant_eigenvalue: complex
    dominant_eigenvector: torch.Tensor
    growth_rate: float
    alignment_rate: float
    log_norms: torch.Tensor
    angles: torch.Tensor
    unit_states: torch.Tensor


def _unit_eigenvector(v: torch.Tensor) -> torch.Tensor:
    """``v: (n,)`` scaled to unit norm with its largest entry real and positive (eig attaches an
    arbitrary complex phase; this makes the eigenvector of a real eigenvalue real-valued)."""
    j = int(v.abs().argmax())
    v = v * (v[j].abs() / v[j])
    return v / v.norm()


def _dominant_basis(v: torch.Tensor, is_real: bool) -> torch.Tensor:
    """An orthonormal basis ``(n, d)`` of the real invariant subspace of the dominant mode (d = 1 or 2)."""
    if is_real:
        return (v.real / v.real.norm()).unsqueeze(1)
    q, _ = torch.linalg.qr(torch.stack((v.real, v.imag), dim=1))
    return q


def analyze_linear_recurrence(A, x0, n_steps: int) -> LinearRecurrenceAnalysis:
    """Eigen-structure of ``A: (n, n)`` and the renormalised trajectory of ``x0: (n,)`` over ``n_steps``.

    Raises:
        ValueError: A is not square, x0 is not ``(n,)`` or zero, or the top modulus is tied between
            two distinct modes (no single dominant direction; a complex-conjugate pair is fine).
    """
    A = _matrix(A, "A")
    n = A.shape[0]
    x = torch.as_tensor(x0, dtype=torch.float64)
    if x.shape != (n,):
        raise ValueError(f"x0 must have shape ({n},); got {tuple(x.shape)}")
    norm0 = x.norm()
    if norm0 == 0:
        raise ValueError("x0 is zero: its trajectory has no direction")

    evals, evecs = torch.linalg.eig(A)
    order = torch.argsort(evals.abs(), descending=True)
    evals, evecs = evals[order], evecs[:, order]
    mods = evals.abs()
    if mods[0] == 0:
        raise ValueError("A is nilpotent (every eigenvalue is 0): no growth rate, no dominant mode")
    lam1 = complex(evals[0])
    is_real = abs(lam1.imag) <= REAL_RTOL * max(abs(lam1), 1e-300)
    pair = 0 if is_real else 1  # a conjugate partner shares the modulus and the real subspace
    if n > 1 + pair and mods[1 + pair] >= mods[0] * (1 - TIE_RTOL):
        raise ValueError(
            f"the top eigenvalue modulus {mods[0].item():.6g} is shared by distinct modes; no single dominant direction"
        )
    v1 = _unit_eigenvector(evecs[:, 0])
    basis = _dominant_basis(v1, is_real)  # (n, d)
    alignment = math.log(mods[1 + pair] / mods[0]) if n > 1 + pair else -math.inf

    log_norms = torch.empty(n_steps + 1, dtype=torch.float64)
    angles = torch.empty(n_steps + 1, dtype=torch.float64)
    units = torch.empty(n_steps + 1, n, dtype=torch.float64)
    u = (x / norm0).unsqueeze(0)  # (1, n): a batch of one for the chain
    acc = math.log(norm0)
    chain = linear_map(A, n_steps) if n_steps > 0 else None
    for k in range(n_steps + 1):
        if k > 0:
            u = chain.steps[k - 1](u)
            s = u.norm()
            if s == 0:
                raise ValueError(f"A^{k} x0 = 0 (A is singular on this trajectory): no direction left")
            u = u / s
            acc += math.log(s)
        proj = basis @ (basis.T @ u[0])
        # atan2 of the two legs keeps small angles accurate (acos of a cosine near 1 would not)
        angles[k] = torch.atan2((u[0] - proj).norm(), proj.norm())
        log_norms[k] = acc
        units[k] = u[0]
    return LinearRecurrenceAnalysis(
        eigenvalues=evals,
        dominant_eigenvalue=lam1,
        dominant_eigenvector=v1,
        growth_rate=math.log(mods[0]),
        alignment_rate=alignment,
        log_norms=log_norms,
        angles=angles,
        unit_states=units,
    )
