"""Per-step (local) Jacobian statistics: RMS singular value, sigma_max, sigma_min, identity gap.

Two routes, chosen per step by `depthscope.probe`:

* explicit: build J_k (B, n_out, n_in) from basis tangents, then work on the matrix in float64:
  exact Frobenius; up to EXPLICIT_SVD_MAX_DIM wide, full SVDs of J and J - I
  (``torch.linalg.svdvals``, method "exact"); wider, sigma_max and ||J - I||_2 by Lanczos on the
  explicit matrix at a tight residual (EXPLICIT_LANCZOS_RTOL), sigma_min by Lanczos on
  (J^T J)^{-1} through one LU factorisation (inverse iteration). ``exact=True`` takes full SVDs
  at every width: the oracle.
* matrix-free: never forms J. Frobenius by Hutchinson (Rademacher probes, E||J v||^2 = ||J||_F^2),
  with more probes where their spread says the estimate is not yet within HUTCHINSON_RSE_TARGET;
  sigma_max and ||J - I||_2 by Lanczos on J^T J and (J - I)^T (J - I) through J v and J^T u, all
  steps in lockstep; sigma_min is reported as the Weyl lower bound max(0, 1 - ||J - I||_2).

Every statistic is per example, then averaged (arithmetic mean) over the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from depthscope import _linalg
from depthscope.estimators._lanczos import lanczos_top_eigenvalue
from depthscope.estimators._layout import as_native, flatten_native
from depthscope.estimators._linearized import LinearizedChain
from depthscope.estimators._propagate import tangent_norms

SIGMA_MIN_EXACT = "exact"
SIGMA_MIN_INVERSE_LANCZOS = "inverse-lanczos"
SIGMA_MIN_WEYL = "weyl-lower-bound"

# Matrix-free Lanczos starts from the top Ritz vector in the span of the Hutchinson probes on steps
# up to this width, and from one probe beyond. Where 16 probes span a good share of the space the
# Ritz start is what keeps the 1% stopping test from settling below the top (a 48-wide MLP step was
# 2.7% low from one probe); on 1024-wide MLP steps and CIFAR ResNet steps it saved no iteration
# (16.2 vs 16.2 and 17.1 vs 17.4 per step) for the cost of two P x P Gram matrices per step.
RITZ_START_MAX_DIM = 1024
# Matrix-free steps in float32 whose ||J||_F lies outside [1/UNSCALED_MAX, UNSCALED_MAX] run Lanczos
# on a rescaled operator: within it, J^T J (at most 1e16) is far from float32's limits.
UNSCALED_MAX = 1e8
# Explicit steps up to this size (the larger of n_in, n_out) take full SVDs of J and J - I: exact,
# and no slower than the three Lanczos runs they replace (one thread, float64: 4.1 ms for one
# 256 x 256 svdvals against 2.3 ms for one Lanczos run at a 1% residual, 32 ms against 28 ms for
# eight; at 512, 27 ms against 3.9 ms, so wider steps keep Lanczos).
EXPLICIT_SVD_MAX_DIM = 256
# Lanczos on an explicit matrix stops at this relative residual on sigma^2. At the 1% used on the
# matrix-free route, the identity gap of a GPT-2 block (width 512, top singular values of J - I
# 1.3% apart) settled 0.9% low (at 1e-3 still 0.5%: the Ritz value was converging to the second
# value); at 1e-4 every run of ten starts on twelve matrices was within 3e-8, for 27 instead of 19
# iterations (benchmarks/accuracy_real_models.py measures it on whole models). On the dense edge of
# a random matrix's spectrum it runs to the iteration cap: the statistics of eight 512 x 512 steps
# then cost 1.9x those at 1% (0.70 s against 0.35 s, one thread; 0.65 s with sigma_min's inverse
# iteration left at 1%, so it uses this residual too).
EXPLICIT_LANCZOS_RTOL = 1e-4
# Hutchinson estimates of ||J_k||_F get more probes until their relative standard error (estimated
# from the spread of ||J v_p||^2 over the probes, delta method for the square root, averaged over
# the batch) is at most this: 2%, so that a 3-sigma deviation stays within the 6% that the probe's
# docstring states. Near-isometric steps meet it with the default 16 probes and cost nothing more;
# steps whose spectrum is dominated by a few singular values do not (the first layer of
# torchvision's ViT, sigma_max / rms 19: 16 probes were up to 17% off over five seeds, the adapted
# estimate 1.6%; benchmarks/accuracy_real_models.py).
HUTCHINSON_RSE_TARGET = 0.02
# ... but never more than this many probes per step (each is one J v per example): for a step of
# effective rank r = ||J||_F^4 / ||J^T J||_F^2 the relative standard error is at most
# 1 / sqrt(2 r P), so 2% takes up to 1250 / r probes; the cap (16x the default 16) reaches it for
# r >= 5, and a step that stops at the cap reports its larger standard error in `fro_se`.
HUTCHINSON_MAX_PROBES = 256
# Rounds of "measure the spread, add the probes it asks for": the second corrects a first spread
# measured on 16 probes; a third is rarely reached.
HUTCHINSON_MAX_ROUNDS = 3
# Extra probes go through a step at most this many at a time (a 16 x 32 x 32 conv state at batch
# 32 is 2 MB per probe in float32).
HUTCHINSON_CHUNK = 32


@dataclass
class LocalStats:
    """Per-step local statistics, averaged over the batch; ``None`` where undefined (non-square).

    ``fro_se`` is the estimated standard error of ``fro`` (same units; 0 where ``fro`` is exact).
    """

    fro: float
    sigma_max: float
    sigma_min: float | None
    identity_gap: float | None
    sigma_min_kind: str | None
    method: str
    fro_se: float = 0.0


# Random signs come eight to a random byte, looked up in a table of the 256 sign patterns: 5.6x
# faster than one random integer per sign (4.4M signs per resnet56 probe; benchmarks/probe_parts.py).
_SIGNS_PER_BYTE = 8
_SIGN_TABLE = ((torch.arange(256)[:, None] >> torch.arange(_SIGNS_PER_BYTE)) & 1).mul(2).sub(1)  # (256, 8)


def rademacher(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Random signs +-1 (Hutchinson probes with the smallest variance for a trace)."""
    n = math.prod(shape)
    data = torch.randint(0, 256, (-(-n // _SIGNS_PER_BYTE),), generator=generator, dtype=torch.uint8)
    return F.embedding(data.long(), _SIGN_TABLE.to(dtype)).reshape(-1)[:n].reshape(shape)


def _mean(t: torch.Tensor) -> float:
    return float(t.mean())


def explicit_stats(
    Js: dict[int, torch.Tensor], exact: bool, generator: torch.Generator, with_min: bool = True
) -> dict[int, LocalStats]:
    """Local statistics from explicit Jacobians ``Js[k]: (B, n_out, n_in)``.

    Steps of equal shape are stacked and go through each Lanczos run together. ``with_min=False``
    skips sigma_min and the identity gap (two of the three Lanczos runs).
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for k, J in Js.items():
        groups.setdefault(tuple(J.shape[1:]), []).append(k)
    out: dict[int, LocalStats] = {}
    for (n_out, n_in), ks in groups.items():
        stack = torch.stack([Js[k] for k in ks])  # (G, B, n_out, n_in)
        G, B = stack.shape[:2]
        flat = stack.reshape(G * B, n_out, n_in)
        fro, smax, smin, gap, kind, method = _explicit_group(flat, n_out == n_in and with_min, exact, generator)
        for i, k in enumerate(ks):

            def pick(t: torch.Tensor | None) -> float | None:
                return None if t is None else float(t.reshape(G, B)[i].mean())

            out[k] = LocalStats(pick(fro), pick(smax), pick(smin), pick(gap), kind, method)
    return out


def _explicit_group(Jm: torch.Tensor, square: bool, exact: bool, generator: torch.Generator):
    """Per-matrix statistics of ``Jm: (M, n_out, n_in)``.

    Norms, SVDs and LU run in float64; Lanczos matrix-vector products run in the model's dtype
    (half the memory traffic in float32, far below the 1% Lanczos residual tolerance).
    """
    J = Jm.to(torch.float64)
    M, n_out, n_in = J.shape
    fro = J.flatten(1).norm(dim=1) / n_in**0.5
    eye = torch.eye(n_in, dtype=J.dtype) if square else None
    if exact or max(n_out, n_in) <= EXPLICIT_SVD_MAX_DIM:
        s = torch.linalg.svdvals(J)
        gap = torch.linalg.svdvals(J - eye)[:, 0] if square else None
        return fro, s[:, 0], (s[:, -1] if square else None), gap, (SIGMA_MIN_EXACT if square else None), "exact"
    v0 = torch.randn(M, n_in, generator=generator, dtype=J.dtype)
    smax = _top_singular_value(J, Jm.dtype, v0)
    if not square:
        return fro, smax, None, None, None, "explicit"
    gap = _top_singular_value(J - eye, Jm.dtype, v0)
    return fro, smax, _inverse_sigma_min(J, v0), gap, SIGMA_MIN_INVERSE_LANCZOS, "explicit"


def _top_singular_value(A: torch.Tensor, dtype: torch.dtype, v0: torch.Tensor) -> torch.Tensor:
    """sigma_max per matrix of ``A: (M, n_out, n_in)`` (float64) by Lanczos on A^T A in ``dtype``.

    Each matrix is divided by its Frobenius norm first (sigma_max <= ||A||_F), so A^T A neither
    overflows nor underflows in float32 whatever the scale of the Jacobian (a step with entries of
    1e30 squares to 1e60).
    """
    scale = A.flatten(1).norm(dim=1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    # J^T (J v) as two matrix-vector products: O(n^2) per iteration instead of forming J^T J, O(n^3).
    top = lanczos_top_eigenvalue(
        _gram_matvec((A / scale[:, None, None]).to(dtype)), v0, rtol=EXPLICIT_LANCZOS_RTOL
    ).value
    return top.sqrt() * scale


def _gram_matvec(A: torch.Tensor):
    """``v -> A^T (A v)`` per matrix of ``A: (M, n_out, n_in)``, in A's dtype, rows selectable."""

    def matvec(v: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        a = A if rows is None else A[rows]
        return (a.mT @ (a @ v.to(A.dtype)[..., None]))[..., 0].to(v.dtype)

    return matvec


def _inverse_sigma_min(J: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """sigma_min per matrix as 1/sqrt(top eigenvalue of (J^T J)^{-1}); 0 where J is singular."""
    LU, piv, info = _linalg.lu_factor_ex(J)
    singular = info != 0
    if bool(singular.all()):
        return torch.zeros(J.shape[0], dtype=J.dtype)
    # Singular matrices would poison the shared Lanczos run; give them the identity and zero them after.
    if bool(singular.any()):
        eye = torch.eye(J.shape[-1], dtype=J.dtype).expand_as(J)
        LU, piv, _ = _linalg.lu_factor_ex(torch.where(singular[:, None, None], eye, J))

    def matvec(v: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        lu, p = (LU, piv) if rows is None else (LU[rows], piv[rows])
        w = _linalg.lu_solve(lu, p, v[..., None], adjoint=True)  # J^{-T} v
        return _linalg.lu_solve(lu, p, w)[..., 0]  # J^{-1} J^{-T} v = (J^T J)^{-1} v

    lam = lanczos_top_eigenvalue(matvec, v0, rtol=EXPLICIT_LANCZOS_RTOL).value
    out = torch.where(torch.isfinite(lam) & (lam > 0), lam.clamp_min(1e-300).rsqrt(), torch.zeros_like(lam))
    return torch.where(singular, torch.zeros_like(out), out)


def ritz_coefficients(V: torch.Tensor, AV: torch.Tensor) -> torch.Tensor:
    """The direction of span(V) that A stretches most, per example: a Lanczos start for A^T A.

    Args:
        V: ``(P, B, n)`` probe vectors; AV: ``(P, B, m)`` their images under A.

    Returns ``(B, P)`` float64 coefficients c with v = sum_p c_p V_p the top Ritz vector of A^T A in
    span(V) (generalised eigenproblem (AV)(AV)^T c = mu V V^T c); A v = sum_p c_p AV_p is then
    known too. Falls back to the first probe where the probes are dependent.
    """
    P, B, n = V.shape
    first = torch.zeros(B, P, dtype=torch.float64)
    first[:, 0] = 1.0
    if P >= n:
        return first
    # The P x P Gram matrices are formed in the vectors' precision and solved in float64.
    G = torch.bmm(AV.transpose(0, 1), AV.permute(1, 2, 0)).double()
    S = torch.bmm(V.transpose(0, 1), V.permute(1, 2, 0)).double()
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info != 0).any()):
        return first
    Li_G = torch.linalg.solve_triangular(L, G, upper=False)
    C = torch.linalg.solve_triangular(L, Li_G.mT, upper=False)  # L^-1 G L^-T
    _, vecs = torch.linalg.eigh((C + C.mT) / 2)
    return torch.linalg.solve_triangular(L.mT, vecs[:, :, -1:], upper=True)[..., 0]


def combine(c: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``sum_p c[b, p] V[p, b]``: ``(B, P)`` and ``(P, B, n)`` -> ``(B, n)``."""
    return torch.bmm(c.to(V.dtype).unsqueeze(1), V.transpose(0, 1)).squeeze(1)


class _StackedGram:
    """The Gram operators of many matrix-free steps as one Lanczos problem stack.

    Rows are (step, channel, example) triples, flattened, each a vector of length n_max (a step's
    n_in entries in native order, `_layout`, then zeros). Channel 0 is J^T J; channel 1, present
    when some step needs its identity gap, is (J - I)^T (J - I) (J^T J again for non-square steps).
    A float32 step whose ||J||_F lies outside [1/UNSCALED_MAX, UNSCALED_MAX] runs divided by s^2, s
    an upper bound on its operators' sigma_max (the Hutchinson ||J||_F, plus sqrt(n) for J - I), so
    that J^T J neither overflows nor underflows (sigma_max^2 of 1e60 or 1e-60).
    """

    def __init__(self, lin: LinearizedChain, ks: list[int], square: dict[int, bool], sq_fro: dict[int, torch.Tensor]):
        self.lin, self.ks, self.square = lin, ks, square
        self.S, self.B = len(ks), lin.batch
        self.C = 2 if any(square.values()) else 1
        self.n_max = max(lin.n_in[k] for k in ks)
        self.dtype = lin.states[ks[0]].dtype
        self.work = torch.promote_types(self.dtype, torch.float32)  # the Lanczos vectors' precision
        self.shape = {k: tuple(lin.states[k].shape[1:]) for k in ks}
        self.scale = torch.ones(self.S, self.C, self.B, dtype=torch.float64)
        self.inv_scale: dict[int, torch.Tensor] = {}  # (C, B), only for the steps that need it
        for i, k in enumerate(ks):
            s_k = sq_fro[k].sqrt()
            if self.dtype == torch.float64 or bool(((s_k > 1 / UNSCALED_MAX) & (s_k < UNSCALED_MAX)).all()):
                continue
            self.scale[i] = torch.where(s_k > 0, s_k, torch.ones_like(s_k))
            if square[k]:
                self.scale[i, 1] = s_k + lin.n_in[k] ** 0.5
            self.inv_scale[k] = (1.0 / self.scale[i]).to(self.dtype)

    def _minus_identity_in_gap_channel(self, k: int, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        if not self.square[k]:
            return after
        return torch.cat([after[:1], after[1:] - before[1:]])

    def _scaled(self, k: int, t: torch.Tensor) -> torch.Tensor:
        """``t: (C, B, ...)``, in either space of step k, divided by the step's scale."""
        if k not in self.inv_scale:
            return t
        return t * self.inv_scale[k].reshape(self.C, self.B, *[1] * (t.ndim - 2))

    def apply(self, ks: list[int], vin: list[torch.Tensor], jv: list[torch.Tensor] | None = None):
        """The channels' scaled operators on ``vin[j]: (C, B, *S_k)``, and their Rayleigh quotients
        ``(C, B)`` as squared norms before the transpose (``jv`` is J v when already known)."""
        jv = self.lin.jvp_all(ks, vin) if jv is None else jv
        w = [self._scaled(k, self._minus_identity_in_gap_channel(k, vk, wk)) for k, vk, wk in zip(ks, vin, jv)]
        wt = self.lin.vjp_all(ks, w)
        z = [self._scaled(k, self._minus_identity_in_gap_channel(k, wk, zk)) for k, wk, zk in zip(ks, w, wt)]
        # w is scaled to a safe range: its norms can be summed in its own precision.
        return z, [tangent_norms(wk, exact_range=False).square().to(self.work) for wk in w]

    def pack(self, zs: list[torch.Tensor]) -> torch.Tensor:
        """Every step's ``(C, B, *S_k)`` into the rows ``(S * C * B, n_max)``."""
        out = torch.zeros(self.S, self.C, self.B, self.n_max, dtype=self.work)
        for i, zk in enumerate(zs):
            k = self.ks[i]
            as_native(out[i, :, :, : self.lin.n_in[k]], self.shape[k]).copy_(zk)
        return out.reshape(-1, self.n_max)

    def matvec(self, flat: torch.Tensor, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """`lanczos_top_eigenvalue`'s operator: rows in increasing order; a step runs when any of
        its rows is active, reading its rows of ``flat`` in place where all are."""
        C, B, CB = self.C, self.B, self.C * self.B
        idx = list(range(self.S * CB)) if rows is None else rows.tolist()
        pos = {r: j for j, r in enumerate(idx)}
        live = sorted({r // CB for r in idx})
        targets, vin = [], []
        for i in live:
            n = self.lin.n_in[self.ks[i]]
            js = [pos.get(i * CB + c) for c in range(CB)]
            if None not in js and js[-1] - js[0] == CB - 1:
                target, block = slice(js[0], js[0] + CB), flat[js[0] : js[0] + CB, :n]
            else:  # some rows of this step have converged: they run on zeros and are discarded
                have = [c for c, j in enumerate(js) if j is not None]
                target = (have, [js[c] for c in have])
                block = flat.new_zeros(CB, n)
                block[have] = flat[target[1], :n]
            targets.append(target)
            vin.append(as_native(block.reshape(C, B, n).to(self.dtype), self.shape[self.ks[i]]))
        zs, rayleigh = self.apply([self.ks[i] for i in live], vin)
        out = flat.new_empty(len(idx), self.n_max)
        ray = flat.new_empty(len(idx))
        for i, target, zk, rk in zip(live, targets, zs, rayleigh):
            k = self.ks[i]
            n = self.lin.n_in[k]
            if isinstance(target, tuple):
                have, target = target
                out[target, :n] = flatten_native(zk, len(self.shape[k])).reshape(CB, n)[have]
                ray[target] = rk.reshape(CB)[have]
            else:  # one pass from the result's layout into the rows
                as_native(out[target, :n].reshape(C, B, n), self.shape[k]).copy_(zk)
                ray[target] = rk.reshape(CB)
            out[target, n:] = 0
        return out, ray


def matrix_free_stats(
    lin: LinearizedChain, ks: list[int], probes: int, generator: torch.Generator, with_min: bool = True
) -> dict[int, LocalStats]:
    """Local statistics for steps ``ks`` without forming their Jacobians; steps run in lockstep."""
    if not ks:
        return {}
    B = lin.batch
    dtype = lin.states[ks[0]].dtype
    # Hutchinson: ||J||_F^2 ~ mean_p ||J v_p||^2 over Rademacher v_p. Every vector lives in its
    # state's native order (`_layout`), so the flat views below copy nothing.
    shape = {k: tuple(lin.states[k].shape[1:]) for k in ks}
    flat_vs = [rademacher((probes, B, lin.n_in[k]), generator, dtype) for k in ks]  # (P, B, n_in)
    outs = lin.jvp_all(ks, [as_native(v, shape[k]) for k, v in zip(ks, flat_vs)])
    samples = {k: tangent_norms(o).square() for k, o in zip(ks, outs)}  # (P, B): ||J v_p||^2, float64
    _add_probes_until_precise(lin, ks, samples, generator, dtype)
    sq_fro = {k: sq.mean(0) for k, sq in samples.items()}  # (B,) ~ ||J||_F^2
    fro = {k: (sq / lin.n_in[k]).sqrt() for k, sq in sq_fro.items()}
    fro_se = {k: float(_fro_standard_error(sq, lin.n_in[k])[0]) for k, sq in samples.items()}

    square = {k: lin.n_in[k] == lin.n_out[k] and with_min for k in ks}
    op = _StackedGram(lin, ks, square, sq_fro)
    C, work = op.C, op.work

    # Lanczos starts from a direction in the span of the Hutchinson probes whose image J v0 is a
    # combination of the probes' images, so the first iteration costs one J^T u: on steps up to
    # RITZ_START_MAX_DIM wide the best such direction (Rayleigh-Ritz on the products already
    # computed), beyond it the first probe. The vectors are kept in the model's precision and run
    # the three-term recurrence without reorthogonalisation: at the 1% residual where the tests
    # stop, orthogonality is still near rounding level, and reorthogonalising against 16k-long
    # bases cost more than the products.
    starts, images = [], []
    for k, v, o in zip(ks, flat_vs, outs):
        if lin.n_in[k] > RITZ_START_MAX_DIM:  # the first probe, whose image is known too
            starts.append(as_native(v[:1].expand(C, B, lin.n_in[k]), shape[k]))
            images.append(o[:1].expand(C, *o.shape[1:]))
            continue
        V = v.to(work)
        JV = flatten_native(o, len(lin.states[k + 1].shape) - 1).to(work)
        cs = [ritz_coefficients(V, JV)]
        if C == 2:
            cs.append(ritz_coefficients(V, JV - V) if square[k] else cs[0])
        starts.append(as_native(torch.stack([combine(c, V) for c in cs]).to(dtype), shape[k]))
        images.append(
            as_native(torch.stack([combine(c, JV) for c in cs]).to(dtype), tuple(lin.states[k + 1].shape[1:]))
        )
    v0, av0 = op.pack(starts), op.pack(op.apply(ks, starts, images)[0])
    top = lanczos_top_eigenvalue(op.matvec, v0, av0=av0, drop_converged=True, reorthogonalize=False).value
    top = top.double().reshape(op.S, C, B).sqrt() * op.scale
    result = {}
    for i, k in enumerate(ks):
        smax = top[i, 0]
        if square[k]:
            gap = top[i, 1]
            smin = (1.0 - gap).clamp_min(0.0)
            result[k] = LocalStats(
                _mean(fro[k]), _mean(smax), _mean(smin), _mean(gap), SIGMA_MIN_WEYL, "matrix-free", fro_se[k]
            )
        else:
            result[k] = LocalStats(_mean(fro[k]), _mean(smax), None, None, None, "matrix-free", fro_se[k])
    return result


def _fro_standard_error(samples: torch.Tensor, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch mean of the Hutchinson RMS singular values and its standard error.

    ``samples: (P, B)`` are ||J v_p||^2 for Rademacher v_p. Per example, the mean m_b estimates
    ||J||_F^2 with standard error s_b / sqrt(P) (s_b the sample standard deviation); the RMS value
    sqrt(m_b / n_in) then has standard error sqrt(m_b / n_in) * s_b / (2 m_b sqrt(P)) (delta method),
    and the batch mean of B independent examples sqrt(sum_b se_b^2) / B. Returns two 0-d float64
    tensors ``(standard error, mean)``; the error is +inf for a single probe (no spread to measure).
    """
    P, B = samples.shape
    m = samples.mean(0)
    rms = (m / n_in).sqrt()
    if P < 2:
        return torch.tensor(float("inf"), dtype=torch.float64), rms.mean()
    sd = samples.std(0)
    se_b = torch.where(m > 0, rms * sd / (2 * m.clamp_min(torch.finfo(m.dtype).tiny) * P**0.5), torch.zeros_like(m))
    return se_b.square().sum().sqrt() / B, rms.mean()


def _add_probes_until_precise(
    lin: LinearizedChain,
    ks: list[int],
    samples: dict[int, torch.Tensor],
    generator: torch.Generator,
    dtype: torch.dtype,
) -> None:
    """Append Hutchinson samples ``(P', B)`` to ``samples[k]`` until each step's relative standard
    error is at most HUTCHINSON_RSE_TARGET or it has HUTCHINSON_MAX_PROBES probes.

    The error falls as 1/sqrt(P): each round asks for the count that the current spread says is
    enough (plus a quarter, since the spread is itself estimated), so one or two rounds suffice.
    The new probes of all steps that need them go through `LinearizedChain.jvp_all` together.
    """
    for _ in range(HUTCHINSON_MAX_ROUNDS):
        want: dict[int, int] = {}
        for k in ks:
            P = samples[k].shape[0]
            se, mean = _fro_standard_error(samples[k], lin.n_in[k])
            rse = float(se / mean) if float(mean) > 0 else 0.0
            if rse <= HUTCHINSON_RSE_TARGET or P >= HUTCHINSON_MAX_PROBES:
                continue
            need = 2 * P if math.isinf(rse) else math.ceil(1.25 * P * (rse / HUTCHINSON_RSE_TARGET) ** 2)
            want[k] = min(HUTCHINSON_MAX_PROBES, max(need, P + 1)) - P
        if not want:
            return
        todo = list(want)
        while todo:  # chunks of at most HUTCHINSON_CHUNK probes bound the memory of one pass
            # One pass per chunk size: batched autograd needs the same probe count on every step.
            m = min(HUTCHINSON_CHUNK, *(want[k] for k in todo))
            vs = [
                as_native(rademacher((m, lin.batch, lin.n_in[k]), generator, dtype), tuple(lin.states[k].shape[1:]))
                for k in todo
            ]
            for k, o in zip(todo, lin.jvp_all(todo, vs)):
                samples[k] = torch.cat([samples[k], tangent_norms(o).square()])
                want[k] -= m
            todo = [k for k in todo if want[k] > 0]
