"""The matrix-free route: local statistics without forming J_k.

||J||_F by Hutchinson (`_hutchinson`); sigma_max and ||J - I||_2 by Lanczos on J^T J and
(J - I)^T (J - I) through J v and J^T u, the steps in lockstep groups (`lockstep_groups`, `_gram`);
sigma_min is reported as the Weyl lower bound max(0, 1 - ||J - I||_2).
"""

from __future__ import annotations

import torch

from depthscope.estimators._gram import StackedGram, combine, ritz_coefficients
from depthscope.estimators._hutchinson import add_probes_until_precise, fro_standard_error, rademacher
from depthscope.estimators._lanczos import lanczos_top_eigenvalue
from depthscope.estimators._layout import as_native, flatten_native
from depthscope.estimators._linearized import LinearizedChain
from depthscope.estimators._local import SIGMA_MIN_WEYL, LocalStats
from depthscope.estimators._propagate import tangent_norms

# Matrix-free Lanczos starts from the top Ritz vector in the span of the Hutchinson probes on steps
# up to this width, and from one probe beyond. Where 16 probes span a good share of the space the
# Ritz start is what keeps the stopping test from settling below the top (a 48-wide MLP step was
# 2.7% low from one probe); on 1024-wide MLP steps and CIFAR ResNet steps it saved no iteration
# (16.2 vs 16.2 and 17.1 vs 17.4 per step) for the cost of two P x P Gram matrices per step.
RITZ_START_MAX_DIM = 1024


# Steps run Lanczos in lockstep (one operator call per iteration for all of them, the bookkeeping
# vectorised across them) in consecutive groups whose working sets (`LinearizedChain.working_set`)
# add up to at most this many bytes; a step over it, or on the autograd route, runs alone. Lockstep
# saves the per-iteration overhead of light steps, but a group whose weights and tangents pass the
# processor's caches reloads them from memory at every iteration. Measured on eight CIFAR,
# torchvision, timm and Hugging Face models with and without sigma_min (benchmarks/lanczos_groups.py;
# budgets of 4 and 16 MiB took 0.96-1.13x): all steps in one group took 0.99-1.32x the time of these
# groups, one step at a time 0.97-2.12x (1.3-2.1x on resnet56 at batch 1 and a 64-block MLP,
# 1.1-1.2x on MobileNet, ViT and BERT without sigma_min).
LOCKSTEP_BYTES = 8 * 2**20


def lockstep_groups(lin: LinearizedChain, ks: list[int], tangents: int) -> list[list[int]]:
    """``ks`` cut into consecutive groups of at most `LOCKSTEP_BYTES` of working set, each
    product carrying ``tangents`` tangents per example."""
    groups: list[list[int]] = []
    size = 0
    for k in ks:
        b = lin.working_set(k, tangents)
        b = LOCKSTEP_BYTES if b is None else b
        if not groups or size + b > LOCKSTEP_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(k)
        size += b
    return groups


def _mean(t: torch.Tensor) -> float:
    """The batch mean of a per-example statistic ``t: (B,)``."""
    return float(t.mean())


def matrix_free_stats(
    lin: LinearizedChain, ks: list[int], probes: int, generator: torch.Generator, with_min: bool = True
) -> dict[int, LocalStats]:
    """Local statistics for steps ``ks`` without forming their Jacobians; the Hutchinson probes of
    every step in one call, then Lanczos in lockstep groups (`lockstep_groups`)."""
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
    add_probes_until_precise(lin, ks, samples, generator, dtype)
    sq_fro = {k: sq.mean(0) for k, sq in samples.items()}  # (B,) ~ ||J||_F^2
    fro = {k: (sq / lin.n_in[k]).sqrt() for k, sq in sq_fro.items()}
    fro_se = {k: float(fro_standard_error(sq, lin.n_in[k])[0]) for k, sq in samples.items()}

    square = {k: lin.n_in[k] == lin.n_out[k] and with_min for k in ks}
    probed = {k: (v, o) for k, v, o in zip(ks, flat_vs, outs)}
    top: dict[int, torch.Tensor] = {}
    channels = 2 if any(square.values()) else 1
    for group in lockstep_groups(lin, ks, channels):
        top.update(_top_singular_values(lin, group, square, sq_fro, probed))
    result = {}
    for k in ks:
        smax = top[k][0]
        if square[k]:
            gap = top[k][1]
            smin = (1.0 - gap).clamp_min(0.0)
            result[k] = LocalStats(
                _mean(fro[k]), _mean(smax), _mean(smin), _mean(gap), SIGMA_MIN_WEYL, "matrix-free", fro_se[k]
            )
        else:
            result[k] = LocalStats(_mean(fro[k]), _mean(smax), None, None, None, "matrix-free", fro_se[k])
    return result


def _top_singular_values(
    lin: LinearizedChain,
    group: list[int],
    square: dict[int, bool],
    sq_fro: dict[int, torch.Tensor],
    probed: dict[int, tuple[torch.Tensor, torch.Tensor]],
) -> dict[int, torch.Tensor]:
    """``{k: (C, B)}`` float64: sigma_max of J_k (channel 0) and ||J_k - I||_2 (channel 1, for
    square steps) by Lanczos on their Gram operators, the steps of ``group`` in lockstep.
    ``probed[k]``: step k's Hutchinson probes ``(P, B, n_in)`` and their images ``(P, B, *S_{k+1})``."""
    op = StackedGram(lin, group, {k: square[k] for k in group}, sq_fro)
    B, C, dtype, shape = op.B, op.C, op.dtype, op.shape
    # Lanczos starts from a direction in the span of the Hutchinson probes whose image J v0 is a
    # combination of the probes' images, so the first iteration costs one J^T u: on steps up to
    # RITZ_START_MAX_DIM wide the best such direction (Rayleigh-Ritz on the products already
    # computed), beyond it the first probe. The vectors are kept in the model's precision and run
    # the three-term recurrence without reorthogonalisation: at the residual where the tests stop
    # (LANCZOS_RTOL), orthogonality is still near rounding level, and reorthogonalising against
    # 16k-long bases cost more than the products.
    starts, images = [], []
    for k in group:
        v, o = probed[k]
        if lin.n_in[k] > RITZ_START_MAX_DIM:  # the first probe, whose image is known too
            starts.append(as_native(v[:1].expand(C, B, lin.n_in[k]), shape[k]))
            images.append(o[:1].expand(C, *o.shape[1:]))
            continue
        V = v.to(op.work)
        JV = flatten_native(o, len(lin.states[k + 1].shape) - 1).to(op.work)
        cs = [ritz_coefficients(V, JV)]
        if C == 2:
            cs.append(ritz_coefficients(V, JV - V) if square[k] else cs[0])
        starts.append(as_native(torch.stack([combine(c, V) for c in cs]).to(dtype), shape[k]))
        images.append(
            as_native(torch.stack([combine(c, JV) for c in cs]).to(dtype), tuple(lin.states[k + 1].shape[1:]))
        )
    v0, av0 = op.pack(starts), op.pack(op.apply(group, starts, images)[0])
    top = lanczos_top_eigenvalue(op.matvec, v0, av0=av0, drop_converged=True, reorthogonalize=False).value
    top = top.double().reshape(op.S, C, B).sqrt() * op.scale
    return {k: top[i] for i, k in enumerate(group)}
