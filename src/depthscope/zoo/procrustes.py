"""Equalising the singular values of a convolution operator without an SVD (claim N4).

A transition (projection) block breaks norm preservation unless its operator maps every direction
it keeps by the same factor. ``procrustes_`` moves a convolution's kernel to (the kernel-support
projection of) the nearest operator whose nonzero singular values all equal sqrt(c_out / c_in),
the orthogonal-Procrustes answer (Zaeemzadeh et al., TPAMI 2020), using matrix products only:

1. FFT of the kernel zero-padded to the feature-map size n x n: a circular convolution is
   block-diagonal in the Fourier basis, one c_out x c_in matrix P(f) per frequency f
   (Sedghi, Gupta & Long 2019);
2. the polar factor of every P(f) by coupled Newton-Schulz iterations;
3. scale by sqrt(c_out / c_in), inverse FFT, crop to the kernel support.

For a 1x1 kernel every P(f) is the weight matrix itself and nothing is cropped: the result is
exact, also with a stride (subsampling only selects coordinates, an isometry on what it keeps).
For a 3x3 kernel the crop is a projection and the spread only shrinks; measure it with
`conv_operator_singular_values`.

Circular padding is the model throughout; a zero-padded convolution differs at the border only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Newton-Schulz maps a singular value s (relative to ||P||_F <= 1 after scaling) to
# s (3 - s^2) / 2: small values grow by 3/2 per step, then converge quadratically. 40 steps bring
# every s >= 1e-6 to 1 (1.5^34 ~ 1e6, then ~5 quadratic steps) while a round-off zero of 1e-16
# only grows to ~1e-9 (float64), so numerically rank-deficient frequencies stay rank-deficient.
NEWTON_SCHULZ_ITERATIONS = 40
# Frequencies with ||P(f)||_F below this are zero matrices; their polar factor is taken as zero.
ZERO_NORM = 1e-30


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _frequency_matrices(weight: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """weight (c_out, c_in, k_h, k_w) -> P (n_h, n_w, c_out, c_in), complex128."""
    c_out, c_in, kh, kw = weight.shape
    nh, nw = input_size
    if kh > nh or kw > nw:
        raise ValueError(f"kernel {kh}x{kw} is larger than the feature map {nh}x{nw}")
    padded = weight.detach().to(torch.float64).new_zeros(c_out, c_in, nh, nw)
    padded[:, :, :kh, :kw] = weight.detach()
    return torch.fft.fft2(padded).permute(2, 3, 0, 1)


def conv_operator_singular_values(weight: torch.Tensor, input_size: int | tuple[int, int]) -> torch.Tensor:
    """All singular values of the circular (stride-1) convolution operator, largest first.

    Args:
        weight: (c_out, c_in, k_h, k_w), a ``Conv2d`` kernel.
        input_size: n or (n_h, n_w), the feature-map size the operator acts on.

    Returns:
        (n_h * n_w * min(c_out, c_in),) float64: the singular values of the (c_out n_h n_w) x
        (c_in n_h n_w) operator, the union over frequencies of those of P(f) (Sedghi et al. 2019).
        Cross-correlation (PyTorch's convention) has frequency matrices conj(P(f)), with the same
        singular values.
    """
    p = _frequency_matrices(weight, _pair(input_size))
    return torch.linalg.svdvals(p).flatten().sort(descending=True).values


def polar_newton_schulz(a: torch.Tensor, iterations: int = NEWTON_SCHULZ_ITERATIONS) -> torch.Tensor:
    """The polar factor U V^H of every matrix in ``a`` (A = U S V^H), by matrix products only.

    Coupled Newton-Schulz on the smaller Gram matrix G (Higham, "Functions of Matrices", 2008): with Y_0 = G / c,
    Z_0 = I and T_k = (3 I - Z_k Y_k) / 2, Y_{k+1} = Y_k T_k -> (G / c)^(1/2) and
    Z_{k+1} = T_k Z_k -> (G / c)^(-1/2); then U V^H = A Z / sqrt(c). c = ||A||_F^2 puts every
    eigenvalue of G / c in (0, 1], inside the region of convergence.

    Args:
        a: (..., m, n), real or complex.

    Returns:
        (..., m, n), same dtype: singular values above ~1e-6 ||A||_F become 1, zeros stay 0.
    """
    m, n = a.shape[-2:]
    tall = m >= n
    gram = a.mH @ a if tall else a @ a.mH
    c = (a.abs() ** 2).sum(dim=(-2, -1), keepdim=True).clamp_min(ZERO_NORM)
    eye = torch.eye(gram.shape[-1], dtype=a.dtype, device=a.device).expand_as(gram)
    y, z = gram / c, eye.clone()
    for _ in range(iterations):
        t = 0.5 * (3.0 * eye - z @ y)
        y, z = y @ t, t @ z
    inv_sqrt = z / c.sqrt()
    return a @ inv_sqrt if tall else inv_sqrt @ a


@torch.no_grad()
def procrustes_weight(
    weight: torch.Tensor, input_size: int | tuple[int, int] | None = None, iterations: int = NEWTON_SCHULZ_ITERATIONS
) -> torch.Tensor:
    """The projected kernel: every nonzero singular value of the operator set to sqrt(c_out / c_in).

    Args:
        weight: (c_out, c_in, k_h, k_w).
        input_size: the feature-map size n (or (n_h, n_w)) the operator is made uniform on;
            ``None`` uses the kernel size (the smallest circular grid holding the kernel). It does
            not matter for a 1x1 kernel.

    Returns:
        a kernel of the same shape and dtype as ``weight``.
    """
    c_out, c_in, kh, kw = weight.shape
    size = (kh, kw) if input_size is None else _pair(input_size)
    p = _frequency_matrices(weight, size)
    q = polar_newton_schulz(p, iterations) * math.sqrt(c_out / c_in)
    kernel = torch.fft.ifft2(q.permute(2, 3, 0, 1)).real
    return kernel[:, :, :kh, :kw].to(weight.dtype).contiguous()


@torch.no_grad()
def procrustes_(
    conv: nn.Conv2d, input_size: int | tuple[int, int] | None = None, iterations: int = NEWTON_SCHULZ_ITERATIONS
) -> nn.Conv2d:
    """Project ``conv.weight`` in place with `procrustes_weight`; returns ``conv``.

    Exact for 1x1 kernels (with or without stride). The bias is left alone (it shifts, it does not
    scale). Grouped and dilated convolutions are not supported.
    """
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1):
        raise ValueError("procrustes_ supports ungrouped, undilated convolutions only")
    conv.weight.copy_(procrustes_weight(conv.weight, input_size, iterations))
    return conv
