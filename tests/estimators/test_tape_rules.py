"""The linear tape against exact Jacobians (torch.func.jacrev, float64), rule by rule, and the calls
that record no tape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.estimators.tape_layers import assert_tape_matches_jacrev, conv3x3, eval_batchnorm
from torch import nn

from depthscope.estimators._tape import record

D = torch.float64


_conv, _bn = conv3x3, eval_batchnorm


conv_s2, conv_same, conv_grp, bn3 = (
    _conv(3, 6, stride=2, padding=1),
    _conv(3, 3, padding="same"),
    _conv(4, 4, padding=2, dilation=2, groups=2),
    _bn(3),
)
conv1 = nn.Conv1d(3, 5, 3, padding=1).double()
lin = nn.Linear(12, 7).double()
W = torch.randn(12, 12, dtype=D, generator=torch.Generator().manual_seed(3))
c = torch.randn(3, 1, 1, dtype=D, generator=torch.Generator().manual_seed(4))

# (name, input shape without batch, function): every rule of the tape, alone and combined.
CASES = [
    ("conv-stride2", (3, 6, 6), lambda x: conv_s2(x)),
    ("conv-same", (3, 5, 5), lambda x: conv_same(x)),
    ("conv-groups-dilation", (4, 7, 7), lambda x: conv_grp(x)),
    ("conv1d", (3, 8), lambda x: conv1(x)),
    ("conv-bn-relu (fused)", (3, 5, 5), lambda x: torch.relu(bn3(conv_same(x)))),
    ("bn-shared-input (not fused)", (3, 5, 5), lambda x: (lambda y: bn3(y) + y)(conv_same(x))),
    ("linear", (12,), lambda x: lin(x)),
    ("pointwise", (12,), lambda x: torch.tanh(x) + torch.sigmoid(x) * F.gelu(x) - F.softplus(x).exp()),
    ("relu-inplace", (12,), lambda x: F.relu(x * 1.0, inplace=True) + x),
    ("add-sub-alpha-rsub", (3, 4, 4), lambda x: torch.add(x, c, alpha=2.0) - 0.5 * x + (1.0 - x) - x.sub(c)),
    ("broadcast-add", (4,), lambda x: (x.unsqueeze(1) + x.unsqueeze(2)).flatten(1)),
    ("product-and-quotient", (12,), lambda x: x * torch.tanh(x) / 3.0 + x.mul(x) / (W[0] ** 2 + 1)),
    ("inplace-add-mul", (12,), lambda x: (lambda y: y.add_(x).mul_(x))(x * 2.0)),
    ("neg", (12,), lambda x: -x),
    ("reshape-permute-transpose", (3, 4, 5), lambda x: x.permute(0, 2, 3, 1).transpose(1, 2).reshape(x.shape[0], -1)),
    ("getitem-basic", (3, 6, 6), lambda x: x[:, 1:, ::2, None, 3]),
    ("getitem-advanced", (12,), lambda x: x[:, torch.tensor([0, 3, 3, 7])]),
    ("pad-constant", (3, 4, 4), lambda x: F.pad(x, (1, 2, 0, 1, 0, 3), value=5.0)),
    ("pad-negative-reflect", (3, 4, 4), lambda x: F.pad(F.pad(x, (-1, 0, 0, -1)), (1, 1, 1, 1), mode="reflect")),
    (
        "pool-mean-sum",
        (3, 4, 4),
        lambda x: torch.cat([F.adaptive_avg_pool2d(x, 1).flatten(1), x.mean((2, 3)), x.sum(1).flatten(1)], 1),
    ),
    (
        "mean-sum-forms",
        (3, 4, 5),
        lambda x: torch.cat(
            [
                x.mean(-1, True).flatten(1),
                torch.mean(x, dim=[1, -1]),
                x.sum((2,), dtype=D).flatten(1),
                x.pow(2).mean(-1, keepdim=True).rsqrt().flatten(1),
            ],
            1,
        ),
    ),
    (
        "adaptive-pool-1-and-2",
        (3, 4, 4),
        lambda x: F.adaptive_avg_pool2d(x, (1, 1)).flatten(1) + F.adaptive_avg_pool2d(x, 2).sum((2, 3)),
    ),
    (
        "rotate-half-stack-same-piece-twice",
        (2, 6),
        lambda x: torch.cat(
            [
                torch.cat((-x[..., 3:], x[..., :3]), dim=-1).flatten(1),
                torch.stack([x, torch.ones_like(x), x], dim=-2).flatten(1),
                torch.concat([x, x], 1).flatten(1),
            ],
            1,
        ),
    ),
    ("cat-with-constant", (12,), lambda x: torch.cat([x, torch.ones(x.shape[0], 2, dtype=D), torch.relu(x)], 1)),
    ("matmul-einsum", (3, 4), lambda x: torch.einsum("bij,bkj->bik", x, x).flatten(1) + (x @ W[:4, :3]).flatten(1)),
    ("dropout-eval", (12,), lambda x: F.dropout(torch.tanh(x), 0.3, training=False)),
    ("sign-is-constant", (12,), lambda x: torch.sign(x) * x + x.detach()),
    # The replay overwrites intermediates it owns and reads once; these reuse them in every way.
    ("residual-block", (3, 5, 5), lambda x: torch.relu(bn3(conv_same(torch.relu(bn3(conv_same(x))))) + x)),
    (
        "intermediate-read-thrice",
        (3, 5, 5),
        lambda x: (lambda y: torch.relu(y) * 2.0 + y + torch.tanh(y))(conv_same(x)),
    ),
    ("sum-of-an-intermediate-with-itself", (12,), lambda x: (lambda y: torch.relu(y + y) * torch.sigmoid(y))(lin(x))),
    ("one-cotangent-to-two-branches", (3, 5, 5), lambda x: torch.relu(conv_same(x) + x) + torch.relu(x)),
    ("mask-on-the-input-itself", (12,), lambda x: torch.relu(x) + torch.relu(torch.relu(x))),
]


@pytest.mark.parametrize("name,shape,fn", CASES, ids=[c[0] for c in CASES])
def test_tape_matches_jacrev(name, shape, fn, gen):
    x = torch.randn(2, *shape, dtype=D, generator=gen)
    assert_tape_matches_jacrev(fn, x, gen, probes=5, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize(
    "fn,why",
    [
        (lambda x: torch.cumsum(x, 1), "no linearisation rule"),
        (lambda x: torch.cumprod(x, 1), "no linearisation rule"),
        (lambda x: F.dropout(x, 0.5, training=True), "dropout in training mode"),
        (lambda x: torch.sort(x, 1)[0], "several tensors"),
        (lambda x: 1.0 / x, "no linearisation rule"),
        (lambda x: x / torch.tanh(x), "division by a tensor"),
    ],
)
def test_unsupported_calls_record_no_tape(fn, why):
    y, tape, reason = record(fn, torch.randn(2, 12, dtype=D, requires_grad=True))
    assert tape is None and why in reason
    assert y.requires_grad  # the autograd graph is intact for the fallback


def test_batch_norm_from_batch_statistics_records_no_tape():
    bn = nn.BatchNorm2d(3).double().train()
    _, tape, reason = record(bn, torch.randn(4, 3, 2, 2, dtype=D, requires_grad=True))
    assert tape is None and "batch statistics" in reason
