"""Post-LN -> Admin: each sublayer's skip weighted by omega_i from one profiling pass.

Liu, Liu, Gao, Chen & Han 2020 ("Understanding the Difficulty of Training Transformers", Sec. 4)
keep the Post-LN layout, x_i = LN(omega_i x_{i-1} + f_i(x_{i-1})), and choose omega_i so that the
block depends on its residual branch as lightly as a Pre-LN block does:

    omega_i = sqrt(sum_{j<i} Var[f_j(x_{j-1})])

with the variances measured in one profiling pass of the Post-LN model (omega = 1) on a batch, the
sublayers i counted in order (attention, feed-forward, attention, ... : 2N for N blocks). The sum
here starts with Var[x_0], the variance of the stream entering the first block (the embedding),
the first term of the Pre-LN stream Var[x_i] = Var[x_0] + sum_{j<i} Var[f_j] that Admin mimics,
so omega_1 is not zero. The profiling pass runs the case's chain on its input in eval mode. Weights
are kept; only the skip weights are new. The function changes (``preserves_function`` is False).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from depthscope.doctor._blocks import OmegaPostLN
from depthscope.doctor._structure import BlockInfo, replace_module, treated_copy
from depthscope.doctor._treatment import Case
from depthscope.doctor.treatments._transformers import (
    PostLNTreatment,
    bert_sublayers,
    bert_weighted_skips,
    is_zoo_block,
    postln_blocks,
)


def _branch_outputs(block: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The modules whose outputs are f(x) of the block's attention and feed-forward sublayers."""
    if is_zoo_block(block):
        return block.attn, block.ffn
    _, attn_out, _, out = bert_sublayers(block)
    return attn_out.dense, out.dense


@torch.no_grad()
def profile_omegas(case: Case, blocks: list[BlockInfo]) -> list[float]:
    """omega_i for the 2N sublayers of ``blocks``, from one pass of the case's chain at ``case.x``.

    Forward hooks on each sublayer's branch output and on the first block's input record the
    variances (over every entry) and are removed afterwards; the chain's modules run in eval mode
    (their modes restored afterwards), as the probe measured them; no parameter is touched.
    Returns sqrt(Var[x_0] + sum_{j<i} Var[f_j]) in sublayer order.
    """
    variances: dict[int, float] = {}
    order = [m for b in blocks for m in _branch_outputs(b.module)]
    first_input: list[float] = []

    def record_input(_module: nn.Module, args: tuple) -> None:
        first_input.append(float(args[0].var()))

    def record_output(i: int):
        def hook(_module: nn.Module, _args: tuple, out: torch.Tensor) -> None:  # None: the output is kept
            variances.setdefault(i, float(out.var()))

        return hook

    hooks = [blocks[0].module.register_forward_pre_hook(record_input)]
    for i, m in enumerate(order):
        hooks.append(m.register_forward_hook(record_output(i)))
    modes = [(m, m.training) for root in case.chain.modules() for m in root.modules()]
    try:
        for m, _ in modes:
            m.training = False
        case.chain(case.x)
    finally:
        for m, training in modes:
            m.training = training
        for h in hooks:
            h.remove()
    if len(variances) != len(order) or not first_input:
        raise RuntimeError("the profiling pass did not reach every Post-LN sublayer")
    omegas, total = [], first_input[0]
    for i in range(len(order)):
        omegas.append(math.sqrt(total))
        total += variances[i]
    return omegas


class Admin(PostLNTreatment):
    """Weight every Post-LN sublayer's skip by omega_i = sqrt of the variance accumulated before it."""

    name = "admin"
    title = "Admin: Post-LN with skip weights omega_i from one profiling pass"
    source = "Liu, Liu, Gao, Chen & Han 2020, Understanding the Difficulty of Training Transformers (EMNLP)"
    preserves_function = False

    def remedy(self, case: Case, targets: list[BlockInfo]) -> str:
        return "Admin keeps the layout and weights each skip by omega_i, profiled once"

    def treat(self, model: nn.Module, case: Case, blocks: list[BlockInfo]) -> nn.Module:
        omegas = profile_omegas(case, blocks)
        new, copies = treated_copy(model, blocks)
        for k, (path, block) in enumerate(copies):
            w_attn, w_ffn = omegas[2 * k], omegas[2 * k + 1]
            if is_zoo_block(block):
                replace_module(new, path, OmegaPostLN(block.attn, block.ffn, block.ln1, block.ln2, (w_attn, w_ffn)))
            else:
                bert_weighted_skips(block, w_attn, w_ffn)
        return new

    def constants(self, case: Case) -> dict[str, float]:
        blocks = postln_blocks(case)
        if not blocks:
            return {}
        omegas = profile_omegas(case, blocks)
        return {"sublayers": float(len(omegas)), "omega_first": omegas[0], "omega_last": omegas[-1]}
