"""The tape's attention, softmax, normalisation, activation, grouped-convolution and max-pooling
rules against exact Jacobians (torch.func.jacrev, float64): J v and J^T u on random tangents."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.estimators.tape_layers import assert_tape_matches_jacrev
from torch import nn

from depthscope.estimators._tape import record

D = torch.float64
# float64 rounding on Jacobians of order one: the rules and autograd differ only in summation order.
ATOL, RTOL = 1e-12, 1e-10


def _seeded(module: nn.Module) -> nn.Module:
    """``module`` in float64 and eval mode with its parameters drawn from a fixed seed (non-trivial
    LayerNorm / RMSNorm scales included)."""
    torch.manual_seed(5)
    module = module.double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


H, L, E = 2, 5, 4  # heads, sequence length, head width
ln, ln_plain, rms = _seeded(nn.LayerNorm(8)), nn.LayerNorm(8, elementwise_affine=False).double(), _seeded(nn.RMSNorm(8))
ln2d = _seeded(nn.LayerNorm((3, 4)))
dw, grp = _seeded(nn.Conv2d(4, 4, 3, padding=1, groups=4)), _seeded(nn.Conv2d(4, 6, 3, stride=2, groups=2))
mha = _seeded(nn.MultiheadAttention(8, 2, batch_first=True))
mha_seq_first = _seeded(nn.MultiheadAttention(8, 2))
w_rms = torch.randn(8, dtype=D, generator=torch.Generator().manual_seed(6))
bool_mask = torch.rand(L, L, generator=torch.Generator().manual_seed(7)) > 0.3
bool_mask |= torch.eye(L, dtype=torch.bool)  # no fully masked row
float_mask = torch.randn(L, L, dtype=D, generator=torch.Generator().manual_seed(8))
W = torch.randn(12, 12, dtype=D, generator=torch.Generator().manual_seed(9))


def _qkv(x):
    """(B, L, 3 H E) -> three (B, H, L, E) tensors, as attention layers split their projection."""
    return [x.unflatten(-1, (3, H, E))[..., i, :, :].transpose(1, 2) for i in range(3)]


def _sdpa(x, **kw):
    q, k, v = _qkv(x)
    return F.scaled_dot_product_attention(q, k, v, **kw).transpose(1, 2).flatten(2)


def _gqa(x):
    q = x[..., : 2 * H * E].unflatten(-1, (2 * H, E)).transpose(1, 2)
    k = x[..., 2 * H * E : 3 * H * E].unflatten(-1, (H, E)).transpose(1, 2)
    v = x[..., 3 * H * E :].unflatten(-1, (H, E)).transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, enable_gqa=True).flatten(1)


def _hf_rms(x, eps=1e-6):
    """The Hugging Face Llama / T5 RMSNorm, written out of pow, mean, rsqrt and products."""
    h = x.to(D)  # the cast of mixed precision (here float64 to float64)
    variance = h.pow(2).mean(-1, keepdim=True)
    return w_rms * (h * torch.rsqrt(variance + eps)).to(x.dtype)


# (name, input shape without batch, function)
CASES = [
    ("softmax", (3, 6), lambda x: torch.softmax(x, -1) + F.softmax(x, dim=1) * x.softmax(-2)),
    ("log-softmax", (3, 6), lambda x: F.log_softmax(x, -1) + torch.log_softmax(x, 1)),
    ("softmax-dtype", (6,), lambda x: F.softmax(x, -1, dtype=D).to(D)),
    ("layer-norm-affine", (3, 8), lambda x: ln(x)),
    ("layer-norm-plain", (3, 8), lambda x: ln_plain(x)),
    ("layer-norm-2d", (2, 3, 4), lambda x: ln2d(x)),
    ("layer-norm-functional", (8,), lambda x: F.layer_norm(x, (8,), eps=1e-3)),
    ("rms-norm", (3, 8), lambda x: rms(x)),
    ("rms-norm-default-eps", (8,), lambda x: F.rms_norm(x, (8,))),
    ("rms-norm-hugging-face", (3, 8), _hf_rms),
    ("gelu-exact-tanh-silu", (12,), lambda x: F.gelu(x) + F.gelu(x, approximate="tanh") * F.silu(x)),
    ("sigmoid-tanh", (12,), lambda x: torch.sigmoid(x) * torch.tanh(x)),
    ("depthwise-conv", (4, 5, 5), lambda x: dw(x)),
    ("grouped-conv-strided", (4, 7, 7), lambda x: grp(x)),
    ("max-pool2d", (3, 6, 6), lambda x: F.max_pool2d(x, 2)),
    ("max-pool2d-overlap-pad", (3, 7, 7), lambda x: nn.MaxPool2d(3, 2, 1)(x)),
    ("max-pool1d-ceil", (3, 7), lambda x: F.max_pool1d(x, 2, ceil_mode=True)),
    ("sdpa", (L, 3 * H * E), lambda x: _sdpa(x)),
    ("sdpa-causal", (L, 3 * H * E), lambda x: _sdpa(x, is_causal=True)),
    ("sdpa-bool-mask", (L, 3 * H * E), lambda x: _sdpa(x, attn_mask=bool_mask)),
    ("sdpa-float-mask-scale", (L, 3 * H * E), lambda x: _sdpa(x, attn_mask=float_mask, scale=0.3)),
    ("sdpa-same-tensor", (H, L, E), lambda x: F.scaled_dot_product_attention(x, x, x).flatten(1)),
    ("sdpa-constant-key", (H, L, E), lambda x: F.scaled_dot_product_attention(x, float_mask[:, :E], x).flatten(1)),
    ("sdpa-grouped-query", (L, 4 * H * E), _gqa),
    (
        "matmul-both-tracked-broadcast",
        (3, 4),
        lambda x: (x @ x.transpose(-2, -1)) @ float_mask[:3, :3] @ x + float_mask[:3, :3].T @ x,
    ),
    ("bmm", (3, 4), lambda x: torch.bmm(x, x.transpose(1, 2))),
    (
        "addmm-conv1d",
        (12,),
        lambda x: torch.addmm(W[0], x, W, beta=0.5, alpha=2.0) + torch.addmm(x, x[:, :1] * 1.0, W[:1]),
    ),
    ("baddbmm", (3, 4), lambda x: torch.baddbmm(x @ x.transpose(1, 2), x, x.transpose(1, 2), alpha=0.5)),
    ("einsum-attention", (L, 2, 4), lambda x: torch.einsum("bqhd,bkhd->bhqk", x, x * 2.0).flatten(1)),
    ("einsum-ellipsis", (2, L, 4), lambda x: torch.einsum("...qd,...kd->...qk", x, x).flatten(1)),
    (
        "einsum-ellipsis-broadcast-generic",
        (2, 3, 4),
        lambda x: torch.einsum("...ij,...jk->...ik", x, float_mask[None, :4, :2]).flatten(1),
    ),
    ("einsum-list-constant", (3, 4), lambda x: torch.einsum("bij,jk->bik", [x, float_mask[:4, :2]]).flatten(1)),
    ("einsum-summed-index-generic", (3, 4), lambda x: torch.einsum("bij->bi", x)),
    (
        "split-chunk-unbind",
        (6, 4),
        lambda x: torch.cat([p.flatten(1) for p in (*x.split(2, 1), *x.chunk(3, -1), *x.unbind(1))], 1),
    ),
    (
        "qkv-unbind",
        (L, 3 * H * E),
        lambda x: F.scaled_dot_product_attention(*x.unflatten(-1, (3, H, E)).permute(2, 0, 3, 1, 4).unbind(0)).flatten(
            1
        ),
    ),
    ("multihead-attention", (L, 8), lambda x: mha(x, x, x, need_weights=False)[0]),
    ("multihead-attention-weights", (L, 8), lambda x: mha(x, x, x)[0]),
    (
        "multihead-attention-seq-first",
        (L, 8),
        lambda x: mha_seq_first(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1))[0].transpose(0, 1),
    ),
]


@pytest.mark.parametrize("name,shape,fn", CASES, ids=[c[0] for c in CASES])
def test_rule_matches_jacrev(name, shape, fn, gen):
    x = torch.randn(2, *shape, dtype=D, generator=gen)
    assert_tape_matches_jacrev(fn, x, gen, probes=4, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(
    "fn,why",
    [
        (lambda x: _sdpa(x, dropout_p=0.5), "attention dropout"),
        (lambda x: F.scaled_dot_product_attention(*_qkv(x), x[0, :, :L]), "mask that depends on the input"),
        (lambda x: F.softmax(x, None), "explicit dim"),
        (lambda x: F.layer_norm(x, (24,), x[0, 0], None), "by keyword"),  # F.layer_norm passes its weight on by keyword
    ],
)
def test_unsupported_attention_and_norm_calls_record_no_tape(fn, why):
    with pytest.warns(UserWarning) if "explicit dim" in why else _nothing():
        y, tape, reason = record(fn, torch.randn(2, L, 3 * H * E, dtype=D, requires_grad=True))
    assert tape is None and why in reason
    assert y.requires_grad


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
