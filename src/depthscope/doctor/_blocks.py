"""The modules the treatments put into a model: a scaled residual wrapper and the pieces that move a
Post-LN layer's LayerNorm (to the branch input, or around a DeepNorm sum).

ScaledResidual:  x -> x + alpha F(x)                      (ReZero: alpha = 0, learnable; stable ResNet: 1/sqrt(L))
PreNormInput:    (h, *args) -> inner(LN(h), *args)         (a sublayer that reads a normalised input)
ResidualSum:     (h, x) -> dropout(dense(h)) + x           (a Post-LN output sublayer without its LN)
DeepNormSum:     (h, x) -> LN(dropout(dense(h)) + alpha x) (Wang et al. 2022; Admin's omega, Liu et al. 2020)
OmegaPostLN:     x <- LN1(w1 x + Attn(x)); x <- LN2(w2 x + FFN(x))  (a zoo Post-LN block with Admin's omegas)

The last three have the call signature of a Hugging Face BERT sublayer (``BertSelfOutput``,
``BertOutput``: ``forward(hidden_states, input_tensor)``), so they replace those in place while the
layer's own ``forward`` stays as the library wrote it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ScaledResidual(nn.Module):
    """x -> x + alpha * branch(x); x: (B, *S) -> (B, *S), ``branch`` shape-preserving.

    Args:
        branch: the wrapped block F.
        alpha: the branch scale at initialisation.
        learnable: alpha is an ``nn.Parameter`` (ReZero / SkipInit, trained with the model);
            otherwise a buffer (stable ResNet's fixed 1/sqrt(L)). Either way ``forward`` is the same
            expression, and at alpha = 0 the Jacobian is exactly I.
    """

    def __init__(self, branch: nn.Module, alpha: float, learnable: bool):
        super().__init__()
        self.branch = branch
        alpha_t = torch.tensor(float(alpha))
        if learnable:
            self.alpha = nn.Parameter(alpha_t)
        else:
            self.register_buffer("alpha", alpha_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha.to(x.dtype) * self.branch(x)

    def extra_repr(self) -> str:
        kind = "learnable" if isinstance(self.alpha, nn.Parameter) else "fixed"
        return f"alpha={float(self.alpha.detach()):.4g} ({kind})"


class PreNormInput(nn.Module):
    """``inner`` called on a normalised first argument: (h, *args, **kwargs) -> inner(norm(h), *args, **kwargs).

    h: (..., d). Puts a Post-LN layer's LayerNorm at the input of its branch (Pre-LN).
    """

    def __init__(self, norm: nn.Module, inner: nn.Module):
        super().__init__()
        self.norm = norm
        self.inner = inner

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.inner(self.norm(hidden_states), *args, **kwargs)


class ResidualSum(nn.Module):
    """(h, x) -> dropout(dense(h)) + x: a Post-LN output sublayer with its LayerNorm taken out.

    h: (..., d_in), x: (..., d) -> (..., d).
    """

    def __init__(self, dense: nn.Module, dropout: nn.Module):
        super().__init__()
        self.dense = dense
        self.dropout = dropout

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(hidden_states)) + input_tensor


class DeepNormSum(nn.Module):
    """(h, x) -> LN(dropout(dense(h)) + alpha x): DeepNorm's up-weighted residual (Wang et al. 2022),
    and Admin's (Liu et al. 2020) with alpha = omega.

    h: (..., d_in), x: (..., d) -> (..., d); ``alpha`` is a fixed buffer.
    """

    def __init__(self, dense: nn.Module, dropout: nn.Module, norm: nn.Module, alpha: float):
        super().__init__()
        self.dense = dense
        self.dropout = dropout
        self.LayerNorm = norm  # the attribute name of the sublayer it replaces, so state keys carry over
        self.register_buffer("alpha", torch.tensor(float(alpha)))

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(
            self.dropout(self.dense(hidden_states)) + self.alpha.to(input_tensor.dtype) * input_tensor
        )

    def extra_repr(self) -> str:
        return f"alpha={float(self.alpha.detach()):.4g}"


class OmegaPostLN(nn.Module):
    """x <- LN1(omega_attn x + Attn(x)); x <- LN2(omega_ffn x + FFN(x)). x: (B, T, d_model).

    A zoo Post-LN block's sublayers (``attn``, ``ffn``, ``ln1``, ``ln2``, moved in, not copied)
    with one fixed skip weight per sublayer (Admin, Liu et al. 2020; DeepNorm is the case of one
    alpha for all).
    """

    def __init__(self, attn: nn.Module, ffn: nn.Module, ln1: nn.Module, ln2: nn.Module, omegas: tuple[float, float]):
        super().__init__()
        self.attn, self.ffn, self.ln1, self.ln2 = attn, ffn, ln1, ln2
        self.register_buffer("omega_attn", torch.tensor(float(omegas[0])))
        self.register_buffer("omega_ffn", torch.tensor(float(omegas[1])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(self.omega_attn.to(x.dtype) * x + self.attn(x))
        return self.ln2(self.omega_ffn.to(x.dtype) * x + self.ffn(x))

    def extra_repr(self) -> str:
        return f"omega_attn={float(self.omega_attn.detach()):.4g}, omega_ffn={float(self.omega_ffn.detach()):.4g}"
