"""The Gram operators J^T J (and (J - I)^T (J - I)) of many matrix-free steps as one Lanczos
problem stack, and the Ritz starts that Lanczos begins from.

Every operator application is one J v and one J^T u per step through `LinearizedChain`, all steps
of the stack together.
"""

from __future__ import annotations

import torch

from depthscope.estimators._layout import as_native, flatten_native
from depthscope.estimators._linearized import LinearizedChain
from depthscope.estimators._propagate import tangent_norms

# Matrix-free steps in float32 whose ||J||_F lies outside [1/UNSCALED_MAX, UNSCALED_MAX] run Lanczos
# on a rescaled operator: within it, J^T J (at most 1e16) is far from float32's limits.
UNSCALED_MAX = 1e8


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


class StackedGram:
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
