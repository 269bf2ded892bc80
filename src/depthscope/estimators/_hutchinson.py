"""Hutchinson's estimate of ||J_k||_F^2 = E ||J v||^2 over Rademacher probes v, with as many
probes as the spread of the samples says are needed for HUTCHINSON_RSE_TARGET.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from depthscope.estimators._adaptive import more_samples
from depthscope.estimators._layout import as_native
from depthscope.estimators._linearized import LinearizedChain
from depthscope.estimators._propagate import tangent_norms

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


# Random signs come eight to a random byte, looked up in a table of the 256 sign patterns: 5.6x
# faster than one random integer per sign (4.4M signs per resnet56 probe; benchmarks/probe_parts.py).
_SIGNS_PER_BYTE = 8
_SIGN_TABLE = ((torch.arange(256)[:, None] >> torch.arange(_SIGNS_PER_BYTE)) & 1).mul(2).sub(1)  # (256, 8)


def rademacher(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Random signs +-1 (Hutchinson probes with the smallest variance for a trace)."""
    n = math.prod(shape)
    data = torch.randint(0, 256, (-(-n // _SIGNS_PER_BYTE),), generator=generator, dtype=torch.uint8)
    return F.embedding(data.long(), _SIGN_TABLE.to(dtype)).reshape(-1)[:n].reshape(shape)


def fro_standard_error(samples: torch.Tensor, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def add_probes_until_precise(
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
            se, mean = fro_standard_error(samples[k], lin.n_in[k])
            rse = float(se / mean) if float(mean) > 0 else 0.0
            if rse <= HUTCHINSON_RSE_TARGET or P >= HUTCHINSON_MAX_PROBES:
                continue
            want[k] = more_samples(P, rse, HUTCHINSON_RSE_TARGET, HUTCHINSON_MAX_PROBES)
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
