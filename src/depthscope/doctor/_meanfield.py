"""Mean-field theory of a wide random network: q*, chi_1, the depth scale, criticality.

For x_{l+1} = phi(W_l x_l + b_l) with W_ij ~ N(0, sigma_w^2 / n) and b_i ~ N(0, sigma_b^2), at
infinite width the pre-activation variance follows (Poole et al. 2016; Schoenholz et al. 2017)

    q_{l+1} = sigma_w^2 E_z[phi(sqrt(q_l) z)^2] + sigma_b^2,          z ~ N(0, 1),

whose stable fixed point is q*, and one layer's Jacobian J = W diag(phi'(h)) has the mean squared
singular value

    chi_1 = sigma_w^2 E_z[phi'(sqrt(q*) z)^2]:

the squared gradient norm changes by chi_1 per layer, so a layer's RMS singular value and its
gradient-norm ratio are both sqrt(chi_1). Over depth the gradient changes by a factor e every
xi = 1 / |ln chi_1| layers (xi_c = -1/ln chi_1 of Schoenholz et al. in the ordered phase chi_1 < 1),
infinite at criticality chi_1 = 1. The expectations are Gauss-Hermite sums (composite Gauss-Legendre
in h at large q, see ``HERMITE_MAX_Q``); phi' comes from torch autograd at the quadrature nodes, so
any elementwise activation works the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss
from scipy.optimize import brentq
from torch import nn

from depthscope._errors import InputError

# Gauss-Hermite order. Even, so no node sits at z = 0 where ReLU's derivative jumps (the nodes are
# symmetric, so E[relu'(h)^2] = 1/2 exactly). Used for q <= HERMITE_MAX_Q, where 200 nodes integrate
# tanh, sigmoid and their slopes squared to 1e-14 (against a fine trapezoid rule).
HERMITE_ORDER = 200
# Above it the Gaussian is wider than the activation's features (tanh saturates within |h| ~ 3):
# in z they shrink like 1/sqrt(q) and Gauss-Hermite misses them (200 nodes: 0.3% error in
# E[tanh'^2] at q = 12.5, 60% at q = 100). There the expectation is a composite Gauss-Legendre
# rule in h: PANELS panels of LEGENDRE_ORDER nodes, their edges geometric in |h| (fine near the
# features at h ~ 0, a breakpoint at 0 for ReLU's kink), out to Z_CUT standard deviations (a
# Gaussian tail of 1e-32); it matches the trapezoid reference to 1e-15 for q up to 1e8.
HERMITE_MAX_Q = 1.0
PANELS = 64
LEGENDRE_ORDER = 20
Z_CUT = 12.0
# Range of q searched for the fixed point: below Q_TINY a variance counts as collapsed (q* = 0),
# above Q_MAX as diverging (q* = inf: an unbounded activation in its growing phase).
Q_TINY = 1e-12
Q_MAX = 1e8
# The iteration starts from unit-variance pre-activations (standardised inputs through a
# variance-preserving stem); where two fixed points attract (GELU at sigma_w in (sqrt 2, 2)) this
# picks the one a network fed such inputs approaches.
Q_START = 1.0
# Log-spaced grid over [Q_TINY, Q_MAX] on which q -> f(q) - q is scanned for its sign changes
# (six points a decade, Q_START among them; brentq then refines the bracket).
Q_GRID = 121
# A map with |f(q) - q| below this fraction of q everywhere has every q as a fixed point (a
# positively homogeneous activation exactly at criticality with sigma_b = 0): q* is undefined.
DEGENERATE_RTOL = 1e-9
# brentq's tolerances, for q* and for the critical sigma_w.
ROOT_XTOL = 1e-14
ROOT_RTOL = 1e-12
# sigma_w range searched for chi_1 = 1 (log-spaced, SIGMA_W_GRID points): far wider than any
# initialisation in use (1/|phi'(0)| is 4 for the sigmoid).
SIGMA_W_RANGE = (1e-2, 1e2)
SIGMA_W_GRID = 41
# A root of chi_1 - 1 found by brentq must have |chi_1 - 1| below ROOT_CHI_TOL; otherwise chi_1 jumps
# over 1 there (GELU, SiLU: the variance's fixed point jumps from small to unbounded), shown by
# evaluating JUMP_STEP (relative) to either side.
ROOT_CHI_TOL = 1e-6
JUMP_STEP = 1e-3
# |chi_1 - 1| below this counts as critical (the depth scale is then reported as infinite).
CRITICAL_TOL = 1e-9
# Dynamical isometry (Pennington et al. 2017) needs q* -> 0 to be reachable at criticality (phi(0)
# = 0, phi'(0) != 0) and every unit's slope to become the same there: the relative spread of
# phi'(sqrt(q) z)^2 at q = ISOMETRY_Q must be below ISOMETRY_SPREAD (tanh: ~1e-6; ReLU: 1 at any q).
ISOMETRY_Q = 1e-6
ISOMETRY_SPREAD = 0.05
# |phi(0)| and phi'(0)^2 below this count as zero.
ZERO_TOL = 1e-9

ORDERED = "ordered"
CRITICAL = "critical"
CHAOTIC = "chaotic"

_NAMED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "silu": F.silu,
    "linear": lambda h: h,
}
_MODULE_NAMES: dict[type, str] = {
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
    nn.Sigmoid: "sigmoid",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Identity: "linear",
}
Activation = str | nn.Module | type | Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MeanField:
    """The mean-field numbers of one activation at one (sigma_w, sigma_b).

    Attributes:
        activation: the activation's name ("tanh", or the module's class name in lower case).
        sigma_w, sigma_b: weight scale (Var W_ij = sigma_w^2 / fan_in) and bias standard deviation.
        q_star: the fixed point of the pre-activation variance reached from ``Q_START``; 0 where it
            collapses, inf where it grows without bound, nan where every q is a fixed point (see ``DEGENERATE_RTOL``).
        chi_1: sigma_w^2 E[phi'(sqrt(q*) z)^2], the per-layer factor of the squared gradient norm.
        depth_scale: 1 / |ln chi_1| layers per factor e of the gradient norm squared (Schoenholz et
            al.'s xi_c = -1/ln chi_1 for chi_1 < 1); inf at criticality.
        isometry_achievable: whether orthogonal weights at criticality can give dynamical isometry
            for this activation (Pennington et al. 2017).
        isometry_reason: why, in one sentence with the numbers.
    """

    activation: str
    sigma_w: float
    sigma_b: float
    q_star: float
    chi_1: float
    depth_scale: float
    isometry_achievable: bool
    isometry_reason: str

    @property
    def layer_gain(self) -> float:
        """sqrt(chi_1): the expected RMS singular value of one layer's Jacobian, and the ratio of
        gradient norms across it (what the probe reports as ``local_rms`` and ``grad_ratio``)."""
        return math.sqrt(self.chi_1)

    @property
    def phase(self) -> str:
        """ "ordered" (chi_1 < 1, gradients vanish), "critical" or "chaotic" (chi_1 > 1)."""
        if abs(self.chi_1 - 1.0) <= CRITICAL_TOL:
            return CRITICAL
        return ORDERED if self.chi_1 < 1.0 else CHAOTIC


@functools.cache
def _nodes() -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Hermite nodes z (N,) and weights (N,) normalised so sum_i w_i g(z_i) ~ E[g(z)]."""
    z, w = hermegauss(HERMITE_ORDER)
    return torch.from_numpy(z), torch.from_numpy(w / w.sum())


def _panel_rule(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes h (G, N) and weights (G, N) for E[g(h)], h ~ N(0, q_g);
    see ``PANELS``. q: (G,)."""
    x, w = leggauss(LEGENDRE_ORDER)
    reach = np.log1p(Z_CUT * np.sqrt(q))  # (G,)
    u = np.linspace(-1.0, 1.0, PANELS + 1)[None, :] * reach[:, None]
    edges = np.sign(u) * np.expm1(np.abs(u))  # (G, PANELS + 1), 0 among them (PANELS even)
    mid, half = (edges[:, 1:] + edges[:, :-1]) / 2, (edges[:, 1:] - edges[:, :-1]) / 2
    h = (mid[:, :, None] + half[:, :, None] * x).reshape(len(q), -1)
    density = np.exp(-(h**2) / (2 * q[:, None])) / np.sqrt(2 * np.pi * q[:, None])
    return h, (half[:, :, None] * w).reshape(len(q), -1) * density


def _rule(q: np.ndarray) -> list[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Quadrature for E[g(h)], h ~ N(0, q), per group of variances: (indices into q, nodes h
    (G_i, N_i), weights (G_i, N_i)); Gauss-Hermite up to HERMITE_MAX_Q, panels above."""
    z, w = _nodes()
    small = np.nonzero(q <= HERMITE_MAX_Q)[0]
    large = np.nonzero(q > HERMITE_MAX_Q)[0]
    out = []
    if small.size:
        scale = torch.from_numpy(np.sqrt(q[small]))
        out.append((small, scale[:, None] * z[None, :], w.expand(small.size, -1)))
    if large.size:
        h, weights = _panel_rule(q[large])
        out.append((large, torch.from_numpy(h), torch.from_numpy(weights)))
    return out


def _resolve(activation: Activation) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """(name, elementwise function) of a name, an ``nn.Module`` class or instance, or a callable."""
    if isinstance(activation, str):
        key = activation.lower()
        if key not in _NAMED:
            raise InputError(f"unknown activation {activation!r}; named ones: {', '.join(_NAMED)}")
        return key, _NAMED[key]
    if isinstance(activation, type):
        if not issubclass(activation, nn.Module):
            raise InputError(f"activation class {activation.__name__} is not an nn.Module")
        try:
            activation = activation()
        except TypeError as e:
            raise InputError(f"activation class {activation.__name__} cannot be built without arguments: {e}") from e
    if isinstance(activation, nn.Module):
        name = _MODULE_NAMES.get(type(activation), type(activation).__name__.lower())
        return name, activation
    if callable(activation):
        return getattr(activation, "__name__", type(activation).__name__), activation
    raise InputError(f"activation must be a name, an nn.Module or a callable, got {type(activation).__name__}")


def _check_elementwise(name: str, phi: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Refuse an activation that mixes entries (softmax): mean-field theory needs phi elementwise."""
    z, _ = _nodes()
    together = phi(z)
    alone = phi(z[:, None])
    if together.shape != z.shape or alone.shape != (z.numel(), 1):
        raise InputError(f"activation {name} changes the shape of its input; it must act elementwise")
    if not torch.allclose(together, alone[:, 0], rtol=1e-12, atol=1e-12):
        raise InputError(f"activation {name} is not elementwise (its output depends on other entries)")


def _moments(
    phi: Callable[[torch.Tensor], torch.Tensor], q: np.ndarray, slopes: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """E[phi(sqrt(q) z)^2] and (with ``slopes``) E[phi'(sqrt(q) z)^2] for each variance;
    q: (G,) -> (G,) arrays (the second None without ``slopes``)."""
    q = np.asarray(q, dtype=np.float64)
    second = np.empty_like(q)
    slope2 = np.empty_like(q) if slopes else None
    for index, h, w in _rule(q):
        with torch.enable_grad():
            h = h.clone().requires_grad_(slopes)
            y = phi(h)
            if slopes:
                (dy,) = torch.autograd.grad(y.sum(), h, allow_unused=True)
                # phi not depending on its input has no graph: its slope is zero
                dy = torch.zeros_like(h) if dy is None else dy
                slope2[index] = (dy**2 * w).sum(-1).numpy()
        second[index] = (y.detach() ** 2 * w).sum(-1).numpy()
    if not (np.isfinite(second).all() and (slope2 is None or np.isfinite(slope2).all())):
        raise InputError("the activation or its derivative is not finite on the quadrature nodes")
    return second, slope2


def _fixed_point(phi: Callable[[torch.Tensor], torch.Tensor], sigma_w: float, sigma_b: float) -> float:
    """The fixed point q* of q -> f(q) = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2 reached from Q_START.

    f increases with q, so the iteration moves monotonically from Q_START to the nearest fixed
    point in the direction of f(q) - q: upward to the first q where f(q) - q turns negative (inf if
    none below Q_MAX), downward to the last q below where it is positive (0 if none).
    """
    grid = np.logspace(math.log10(Q_TINY), math.log10(Q_MAX), Q_GRID)
    second, _ = _moments(phi, grid, slopes=False)
    gap = sigma_w**2 * second + sigma_b**2 - grid
    if np.all(np.abs(gap) <= DEGENERATE_RTOL * grid):
        return math.nan
    start = int(np.argmin(np.abs(np.log(grid / Q_START))))
    if abs(gap[start]) <= DEGENERATE_RTOL * grid[start]:
        return float(grid[start])
    if gap[start] > 0:
        turns = [i for i in range(start, Q_GRID - 1) if gap[i] > 0 >= gap[i + 1]]
        if not turns:
            return math.inf
        i = turns[0]
    else:
        turns = [i for i in range(start) if gap[i] > 0 >= gap[i + 1]]
        if not turns:
            return 0.0
        i = turns[-1]

    def g(q: float) -> float:
        return float(sigma_w**2 * _moments(phi, np.array([q]), slopes=False)[0][0] + sigma_b**2 - q)

    return float(brentq(g, grid[i], grid[i + 1], xtol=ROOT_XTOL, rtol=ROOT_RTOL))


def _chi_1(phi: Callable[[torch.Tensor], torch.Tensor], sigma_w: float, q_star: float) -> float:
    """sigma_w^2 E[phi'(sqrt(q*) z)^2], q* clipped into [Q_TINY, Q_MAX] (the limit from inside);
    at an undefined q* (nan) the activation is homogeneous and chi_1 is the same at every q."""
    q = 1.0 if math.isnan(q_star) else min(max(q_star, Q_TINY), Q_MAX)
    return float(sigma_w**2 * _moments(phi, np.array([q]))[1][0])


def _isometry(name: str, phi: Callable[[torch.Tensor], torch.Tensor]) -> tuple[bool, str]:
    """Whether dynamical isometry is reachable for ``phi`` (Pennington et al. 2017), and why."""
    z, w = _nodes()
    at_zero = float(phi(torch.zeros(1, dtype=torch.float64))[0])
    h = (math.sqrt(ISOMETRY_Q) * z).requires_grad_(True)
    with torch.enable_grad():
        (dy,) = torch.autograd.grad(phi(h).sum(), h, allow_unused=True)
    slope2 = (dy.detach() ** 2) if dy is not None else torch.zeros_like(z)
    mean = float(slope2 @ w)
    spread = math.sqrt(max(float(((slope2 - mean) ** 2) @ w), 0.0)) / mean if mean > ZERO_TOL else math.inf
    source = "Pennington et al. 2017"
    if mean <= ZERO_TOL:
        return False, f"{name} has phi'(0) = 0: no sigma_w makes chi_1 = 1 as q* -> 0 ({source})"
    if spread > ISOMETRY_SPREAD:
        return False, (
            f"the slopes phi'(h)^2 of {name} keep a relative spread of {spread:.2g} however small q* is, "
            f"so the Jacobian's singular values spread with depth whatever the weights ({source}: "
            "ReLU networks cannot reach dynamical isometry)"
        )
    if abs(at_zero) > ZERO_TOL:
        return False, (
            f"{name}(0) = {at_zero:.3g} != 0 keeps q* >= sigma_w^2 {name}(0)^2 > 0, away from the "
            f"q* -> 0 limit where every unit has the same slope ({source})"
        )
    sw = 1.0 / math.sqrt(mean)
    return True, (
        f"{name}(0) = 0 and phi'(0)^2 = {mean:.3g}: with orthogonal weights at sigma_w = {sw:.3g}, "
        f"sigma_b -> 0 the fixed point q* -> 0 and every unit has the same slope, so the singular "
        f"values concentrate at 1 ({source})"
    )


def _check_scales(sigma_w: float, sigma_b: float) -> tuple[float, float]:
    for label, value in (("sigma_w", sigma_w), ("sigma_b", sigma_b)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(f"{label} must be a finite number >= 0, got {value!r}")
    return float(sigma_w), float(sigma_b)


def meanfield(activation: Activation, sigma_w: float, sigma_b: float = 0.0) -> MeanField:
    """The mean-field numbers of ``activation`` at weight scale ``sigma_w`` and bias scale ``sigma_b``.

    Args:
        activation: "tanh" | "relu" | "sigmoid" | "gelu" | "silu" | "linear", an elementwise
            ``nn.Module`` (class or instance, e.g. ``nn.Tanh`` or the zoo's linear of slope a), or an
            elementwise callable on tensors.
        sigma_w: weights N(0, sigma_w^2 / fan_in); sigma_b: biases N(0, sigma_b^2).

    Raises:
        InputError: an unknown name, a non-elementwise activation, negative or non-finite scales.
    """
    sigma_w, sigma_b = _check_scales(sigma_w, sigma_b)
    name, phi = _resolve(activation)
    _check_elementwise(name, phi)
    q_star = _fixed_point(phi, sigma_w, sigma_b)
    chi = _chi_1(phi, sigma_w, q_star)
    log_chi = abs(math.log(chi)) if chi > 0 else math.inf
    depth_scale = math.inf if abs(chi - 1.0) <= CRITICAL_TOL else 1.0 / log_chi
    ok, reason = _isometry(name, phi)
    return MeanField(name, sigma_w, sigma_b, q_star, chi, depth_scale, ok, reason)


def critical_sigma_w(activation: Activation, sigma_b: float = 0.0) -> float:
    """The sigma_w at which chi_1 = 1 (the edge of chaos) for ``activation`` at ``sigma_b``.

    chi_1 is scanned upward over ``SIGMA_W_RANGE`` and its first crossing of 1 from below is refined
    by brentq (ReLU: sqrt(2) at any sigma_b; tanh: 1 at sigma_b = 0, more as sigma_b grows).

    Raises:
        InputError: as `meanfield`; when chi_1 never reaches 1 in the searched range, or jumps over
            1 (GELU and SiLU from unit-variance inputs: the message gives the jump).
    """
    _, sigma_b = _check_scales(1.0, sigma_b)
    name, phi = _resolve(activation)
    _check_elementwise(name, phi)

    def excess(sw: float) -> float:
        return _chi_1(phi, sw, _fixed_point(phi, sw, sigma_b)) - 1.0

    grid = np.logspace(math.log10(SIGMA_W_RANGE[0]), math.log10(SIGMA_W_RANGE[1]), SIGMA_W_GRID)
    seen = []
    below = excess(float(grid[0]))
    for lo, hi in zip(grid[:-1], grid[1:], strict=True):
        above = excess(float(hi))
        seen += [below, above]
        if below < 0 <= above:
            root = float(hi) if above == 0.0 else float(brentq(excess, float(lo), float(hi), xtol=ROOT_XTOL))
            if abs(excess(root)) > ROOT_CHI_TOL:
                left, right = (
                    meanfield(phi, root * (1 - JUMP_STEP), sigma_b),
                    meanfield(phi, root * (1 + JUMP_STEP), sigma_b),
                )
                raise InputError(
                    f"no sigma_w makes chi_1 = 1 for {name} at sigma_b = {sigma_b}: at sigma_w = {root:.4g} chi_1 "
                    f"jumps from {left.chi_1:.3g} to {right.chi_1:.3g}, as the variance fixed point reached from "
                    f"q = {Q_START} jumps from {left.q_star:.3g} to {right.q_star:.3g}"
                )
            return root
        below = above
    raise InputError(
        f"no sigma_w in [{SIGMA_W_RANGE[0]}, {SIGMA_W_RANGE[1]}] makes chi_1 = 1 for {name} at "
        f"sigma_b = {sigma_b} (chi_1 ranges over [{min(seen) + 1:.3g}, {max(seen) + 1:.3g}])"
    )
