"""The physical system of claim R2 (seed 000): silver clusters, Gupta and pairwise energies, kernel ridge.

The expensive target E_hi is the many-body energy of the second-moment tight-binding (Gupta)
potential, with the parameters of Cleri & Rosato 1993:

    E_hi = sum_i [ sum_j A exp(-p (r_ij / r0 - 1)) - xi sqrt(rho_i) ],
    rho_i = sum_j exp(-2 q (r_ij / r0 - 1)).

The cheap baseline E_lo is its pairwise approximation: sqrt(rho) replaced by its tangent at a
reference density rho_ref, which leaves a pair potential plus a constant per atom. The residual
E_hi - E_lo = xi sum_i [tangent(rho_i) - sqrt(rho_i)] >= 0 is the many-body part the pair potential
misses. Both energies are computed here, in float64, for any geometry.

Geometries are fcc fragments with random displacements. The regressor's pieces: per-atom radial
descriptors (rotation, translation and permutation invariant), a sum-over-atoms Gaussian kernel
(additive over atoms) and kernel ridge regression.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch
from scipy.linalg import cho_factor, cho_solve

# Gupta / second-moment tight-binding parameters of silver (Cleri & Rosato 1993, Table I).
GUPTA_A = 0.1028  # eV, pair repulsion
GUPTA_XI = 1.178  # eV, many-body attraction
GUPTA_P = 10.928
GUPTA_Q = 3.139
GUPTA_R0 = 2.889  # Angstrom, nearest-neighbour distance of the fcc crystal

FCC_SHELLS = 4  # unit cells on each side of the origin in the lattice clusters are carved from
FCC_BASIS = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))

# Per-atom radial descriptor: Gaussians of width DESCRIPTOR_WIDTH centred on a grid (units of r0).
DESCRIPTOR_CENTRES = np.linspace(0.4, 1.8, 15)
DESCRIPTOR_WIDTH = 0.1

MEDIAN_SAMPLE = 400  # atoms used for the median-distance heuristic
RIDGE_GRID = (1e-8, 1e-5, 1e-2)  # ridge, relative to the mean diagonal of the training kernel
KERNEL_CHUNK = 64  # clusters per block when summing atom kernels
SEPARATION = 1000.0  # r0 between the two halves of a cluster in the additivity check
BASELINES = ("pairwise", "negated")


# --- the physical system --------------------------------------------------------------------


@lru_cache(maxsize=1)
def _fcc_sites() -> np.ndarray:
    """Sites of the fcc crystal with nearest-neighbour distance r0, (n_sites, 3) in Angstrom."""
    span = range(-FCC_SHELLS, FCC_SHELLS + 1)
    cells = np.array(list(itertools.product(span, span, span)), dtype=float)
    sites = (cells[:, None, :] + np.asarray(FCC_BASIS)[None]).reshape(-1, 3)
    return sites * GUPTA_R0 * math.sqrt(2.0)


def random_clusters(n_clusters: int, n_atoms: int, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Compact clusters: the ``n_atoms`` fcc sites nearest a random point, each displaced by
    N(0, (jitter r0)^2) per coordinate. Returns (n_clusters, n_atoms, 3) in Angstrom."""
    sites = _fcc_sites()
    cell = GUPTA_R0 * math.sqrt(2.0)
    out = np.empty((n_clusters, n_atoms, 3))
    for m in range(n_clusters):
        centre = rng.uniform(0.0, cell, 3)
        dist = np.linalg.norm(sites - centre, axis=1)
        nearest = np.argsort(dist, kind="stable")[:n_atoms]
        out[m] = sites[nearest] - centre + jitter * GUPTA_R0 * rng.standard_normal((n_atoms, 3))
    return out


def _pair_distances(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances r_ij (M, N, N) of positions x (M, N, 3) and the off-diagonal mask (N, N).

    The diagonal is set to 1 before the square root so that gradients stay finite there; every
    pair sum multiplies by the mask.
    """
    n = x.shape[1]
    eye = torch.eye(n, dtype=x.dtype)
    diff = x[:, :, None, :] - x[:, None, :, :]
    return torch.sqrt((diff**2).sum(-1) + eye), 1.0 - eye


def _repulsion_and_density(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-atom pair repulsion sum_j A exp(-p (r/r0 - 1)) and density rho_i, both (M, N)."""
    r, mask = _pair_distances(x)
    s = r / GUPTA_R0 - 1
    repulsion = (GUPTA_A * torch.exp(-GUPTA_P * s) * mask).sum(-1)
    density = (torch.exp(-2 * GUPTA_Q * s) * mask).sum(-1)
    return repulsion, density


def energy_hi(x: torch.Tensor) -> torch.Tensor:
    """Gupta many-body energy of each cluster, (M, N, 3) -> (M,) in eV."""
    repulsion, density = _repulsion_and_density(x)
    return (repulsion - GUPTA_XI * torch.sqrt(density)).sum(-1)


def mean_density(x: torch.Tensor) -> float:
    """Mean of rho_i over every atom of the clusters x (M, N, 3)."""
    return float(_repulsion_and_density(x)[1].mean())


def energy_lo(x: torch.Tensor, rho_ref: float, baseline: str = "pairwise") -> torch.Tensor:
    """The cheap baseline, (M, N, 3) -> (M,) in eV.

    ``"pairwise"``: sqrt(rho) replaced by its tangent at rho_ref,
    sqrt(rho_ref) / 2 + rho / (2 sqrt(rho_ref)): a pair potential plus a constant per atom.
    ``"negated"``: minus that, a baseline anti-correlated with E_hi.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    repulsion, density = _repulsion_and_density(x)
    root = math.sqrt(rho_ref)
    pairwise = (repulsion - GUPTA_XI * (root / 2 + density / (2 * root))).sum(-1)
    return pairwise if baseline == "pairwise" else -pairwise


def energy_delta(x: torch.Tensor, rho_ref: float, baseline: str = "pairwise") -> torch.Tensor:
    """The residual E_hi - E_lo of each cluster, (M, N, 3) -> (M,)."""
    return energy_hi(x) - energy_lo(x, rho_ref, baseline)


def mean_gradient_norm(energy, x: np.ndarray) -> float:
    """Mean over clusters of ||d energy / d positions||_F (eV / Angstrom); x: (M, N, 3)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(energy(xt).sum(), xt)
    return float(grad.flatten(1).norm(dim=1).mean())


def additivity_gap(energy, x: np.ndarray) -> float:
    """Largest relative gap |f(A u B) - f(A) - f(B)| / (|f(A)| + |f(B)|) over clusters, where the
    second half B of each cluster x (M, N, 3) is moved SEPARATION r0 away from the first half A."""
    half = x.shape[1] // 2
    far = x.copy()
    far[:, half:, 0] += SEPARATION * GUPTA_R0
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    whole = energy(t(far)).numpy()
    part_a, part_b = energy(t(far[:, :half])).numpy(), energy(t(far[:, half:])).numpy()
    scale = np.abs(part_a) + np.abs(part_b)
    return float(np.max(np.abs(whole - part_a - part_b) / np.maximum(scale, np.finfo(float).tiny)))


def extensive_slope(sizes: list[int], totals: list[float]) -> float:
    """Least-squares slope of log |total| against log N: 1 for an extensive quantity."""
    return float(np.polyfit(np.log(sizes), np.log(np.abs(totals)), 1)[0])


# --- the regressor --------------------------------------------------------------------------


def atom_descriptors(x: np.ndarray) -> np.ndarray:
    """Per-atom radial descriptors G_i(mu) = sum_{j != i} exp(-((r_ij / r0 - mu) / w)^2).

    x: (M, N, 3) -> (M, N, len(DESCRIPTOR_CENTRES)). Invariant to rotations and translations;
    permuting atoms permutes the rows.
    """
    r, mask = _pair_distances(torch.tensor(x, dtype=torch.float64))
    s = (r / GUPTA_R0)[..., None] - torch.tensor(DESCRIPTOR_CENTRES)
    g = torch.exp(-((s / DESCRIPTOR_WIDTH) ** 2)) * mask[..., None]
    return g.sum(2).numpy()


def median_length(desc: np.ndarray, rng: np.random.Generator) -> float:
    """Median Euclidean distance between MEDIAN_SAMPLE random atom descriptors of desc (M, N, K)."""
    flat = desc.reshape(-1, desc.shape[-1])
    pick = flat[rng.choice(len(flat), size=min(MEDIAN_SAMPLE, len(flat)), replace=False)]
    d = np.linalg.norm(pick[:, None] - pick[None], axis=-1)
    return float(np.median(d[np.triu_indices(len(pick), 1)]))


def sum_kernels(a: np.ndarray, b: np.ndarray, lengths: list[float]) -> np.ndarray:
    """K_l(A, B) = sum_{i in A, j in B} exp(-||G_i - G_j||^2 / (2 l^2)) for every length l.

    a: (Ma, N, K), b: (Mb, Nb, K) -> (len(lengths), Ma, Mb).
    """
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    n_a, n_b = a.shape[1], b.shape[1]
    flat_b = tb.reshape(-1, b.shape[-1])
    out = torch.empty(len(lengths), len(a), len(b), dtype=torch.float64)
    for start in range(0, len(a), KERNEL_CHUNK):
        block = ta[start : start + KERNEL_CHUNK]
        sq = torch.cdist(block.reshape(-1, a.shape[-1]), flat_b).pow(2)
        for k, ell in enumerate(lengths):
            out[k, start : start + len(block)] = (
                torch.exp(-sq / (2 * ell**2)).reshape(len(block), n_a, len(b), n_b).sum((1, 3))
            )
    return out.numpy()


def kernel_ridge(k_train: np.ndarray, y: np.ndarray, ridge: float = RIDGE_GRID[0]) -> tuple[np.ndarray, float]:
    """Weights c of f(.) = mean(y) + K(., train) c for K (n, n) and targets y (n,); and the mean.

    ``ridge`` is relative to the mean of diag(K).
    """
    mean = float(y.mean())
    scale = ridge * float(np.mean(np.diag(k_train)))
    c = cho_solve(cho_factor(k_train + scale * np.eye(len(y))), y - mean)
    return c, mean


def rkhs_norm(k_train: np.ndarray, c: np.ndarray) -> float:
    """sqrt(c^T K c), the kernel norm of the fitted function (without its constant)."""
    return float(math.sqrt(max(c @ k_train @ c, 0.0)))
