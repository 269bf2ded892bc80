"""Seeded symmetric PSD test operators shared by the Lanczos and Ritz-start tests (not a test module)."""

from __future__ import annotations

import torch


def gram_problems(
    gen: torch.Generator, M: int = 12, N: int = 40, spread: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``M`` float64 matrices ``A = I + spread * G / sqrt(N)`` (G Gaussian) and their Gram
    matrices ``A^T A``, both ``(M, N, N)``."""
    A = torch.randn(M, N, N, generator=gen, dtype=torch.float64) * spread / N**0.5 + torch.eye(N, dtype=torch.float64)
    return A, A.mT @ A
