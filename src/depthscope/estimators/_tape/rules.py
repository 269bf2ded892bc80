"""Which rule linearises which torch function.

A rule is called as ``rule(func, args, kwargs, out, tracked, ids)`` where ``func(*args,
**kwargs)`` is the call, ``out`` its output (or, for the rules in `BEFORE_CALL`, a stand-in with
only ``shape`` and ``ndim``), ``tracked`` the positions of ``args`` that hold tracked tensors and
``ids`` the recorder's map from ``id(tensor)`` to node. It returns the call's `Linearization` with
respect to the tracked tensors, in the order they appear in the arguments, or raises
`Unsupported` (the step then keeps the autograd route).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from depthscope.estimators._tape.arithmetic import ADD, DIV, MUL, RSUB, SUB, neg_rule, product_rule, sum_rule
from depthscope.estimators._tape.attention import log_softmax_rule, sdpa_rule, softmax_rule
from depthscope.estimators._tape.contractions import (
    ADD_MATMULS,
    EINSUMS,
    MATMULS,
    add_matmul_rule,
    einsum_rule,
    matmul_rule,
)
from depthscope.estimators._tape.generic import GENERIC, generic_rule
from depthscope.estimators._tape.layers import (
    POINTWISE_AUTOGRAD,
    POINTWISE_FAST,
    batch_norm_rule,
    conv_rule,
    linear_rule,
    pointwise_rule,
)
from depthscope.estimators._tape.linearization import Linearization
from depthscope.estimators._tape.norms import layer_norm_rule, rms_norm_rule
from depthscope.estimators._tape.pooling import MAX_POOLS, max_pool_rule
from depthscope.estimators._tape.reductions import (
    ADAPTIVE_AVG_POOLS,
    CATS,
    MEANS,
    STACKS,
    SUMS,
    adaptive_avg_pool_rule,
    cat_rule,
    reduction_rule,
)
from depthscope.estimators._tape.shapes import (
    CASTS,
    RESHAPES,
    SPLITS,
    cast_rule,
    getitem_rule,
    pad_rule,
    permute_rule,
    reshape_rule,
    split_rule,
)

T = torch.Tensor  # the method table: T.neg is Tensor.neg

Rule = Callable[..., Linearization]

RULES: dict[Any, Rule] = {}
for _f in (torch.conv1d, torch.conv2d, torch.conv3d):
    RULES[_f] = conv_rule
RULES[F.linear] = linear_rule
RULES[F.batch_norm] = batch_norm_rule
for _f in set(POINTWISE_FAST) | POINTWISE_AUTOGRAD:
    RULES[_f] = pointwise_rule
for _f in ADD | SUB | RSUB:
    RULES[_f] = sum_rule
for _f in MUL | DIV:
    RULES[_f] = product_rule
for _f in (torch.neg, T.neg, T.__neg__):
    RULES[_f] = neg_rule
for _f in GENERIC:
    RULES[_f] = generic_rule
# Dedicated rules for the common linear calls that GENERIC also lists (they fall back to it).
for _f in MEANS | SUMS:
    RULES[_f] = reduction_rule
for _f in ADAPTIVE_AVG_POOLS:
    RULES[_f] = adaptive_avg_pool_rule
for _f in CATS | STACKS:
    RULES[_f] = cat_rule
for _f in RESHAPES:
    RULES[_f] = reshape_rule
for _f in CASTS:
    RULES[_f] = cast_rule
for _f in (F.softmax, torch.softmax, T.softmax):
    RULES[_f] = softmax_rule
for _f in (F.log_softmax, torch.log_softmax, T.log_softmax):
    RULES[_f] = log_softmax_rule
RULES[F.scaled_dot_product_attention] = sdpa_rule
RULES[F.layer_norm] = layer_norm_rule
RULES[F.rms_norm] = rms_norm_rule
for _f in MAX_POOLS:
    RULES[_f] = max_pool_rule
for _f in MATMULS:
    RULES[_f] = matmul_rule
for _f in ADD_MATMULS:
    RULES[_f] = add_matmul_rule
for _f in EINSUMS:
    RULES[_f] = einsum_rule
RULES[T.__getitem__] = getitem_rule
RULES[F.pad] = pad_rule
for _f in (T.permute, torch.permute, T.transpose, torch.transpose):
    RULES[_f] = permute_rule
# Functions whose output does not move with the input (derivative zero almost everywhere).
CONSTANT = {torch.sign, T.sign, T.detach, torch.detach, torch.round, T.round, torch.floor, T.floor, torch.ceil, T.ceil}
# ... and those that take only the input's shape, dtype and device.
CONSTANT |= {torch.zeros_like, torch.ones_like, torch.full_like, T.new_zeros, T.new_ones, T.new_full}
# Inference-time no-ops: dropout outside training.
DROPOUT = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
# Calls that return several pieces of one tracked tensor: `split_rule` linearises every piece.
SPLIT_RULES = dict.fromkeys(SPLITS, split_rule)
# Composite functions recorded through the calls they make (their parts have rules; the whole
# returns a tuple): nn.MultiheadAttention's forward, projections around scaled-dot-product attention.
DECOMPOSE = {F.multi_head_attention_forward}
# Rules that must see the input before the call runs (an in-place call overwrites it).
BEFORE_CALL = {pointwise_rule, product_rule}
# Rules that find tracked tensors anywhere in the arguments (lists, keywords), not only top level.
ANY_POSITION = {generic_rule, getitem_rule, pad_rule, einsum_rule, cat_rule}
