"""Post-LN -> Pre-LN: move each LayerNorm from after the residual sum to the input of its branch.

    Post-LN:  x <- LN(x + F(x))        Pre-LN:  x <- x + F(LN(x))

Backward through a Post-LN block the gradient crosses every LayerNorm's Jacobian on the skip path,
and the product of those changes its norm exponentially with depth (seed 001; claim J3); Pre-LN
leaves the skip path an identity highway, g_l = g_{l+1} + ... (claim J4; Xiong et al. 2020). Each
LayerNorm keeps its weights and moves: ``ln1`` normalises the attention's input, ``ln2`` the
feed-forward's. Each branch adds to an unnormalised stream now, which would grow like sqrt(2N) over
N blocks (and the gradient at the input with it, relative to the top); so, as in GPT-2 (Radford et
al. 2019, "the weights of residual layers at initialization scaled by 1/sqrt(N)" for N residual
layers), the output projection of every branch (attention output, second feed-forward layer) is
multiplied by `residual_scale` = 1/sqrt(2N), two branches per block. A Pre-LN stream is not normalised at the top, so a final LayerNorm (scale 1, shift
0) is put in front of the head where the head is an ``nn.Sequential`` of the model (the zoo's
transformers, GPT-2's ``ln_f``); a Hugging Face BERT's chain has no head module to hold one, and its
last hidden state is left unnormalised. The function changes (``preserves_function`` is False).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from depthscope._errors import InputError
from depthscope.doctor._blocks import PreNormInput, ResidualSum
from depthscope.doctor._structure import BlockInfo, module_path, replace_module, treated_copy
from depthscope.doctor._treatment import Case
from depthscope.doctor.treatments._transformers import (
    PostLNTreatment,
    bert_sublayers,
    is_zoo_block,
    postln_blocks,
    zoo_sibling,
)
from depthscope.zoo import transformer as zoo_transformer

# Residual branches per transformer block: attention and feed-forward.
BRANCHES_PER_BLOCK = 2


def residual_scale(n_blocks: int) -> float:
    """1/sqrt(2N): GPT-2's factor on the output projections of the 2N residual branches of N blocks."""
    if n_blocks < 1:
        raise InputError(f"need N >= 1 blocks, got {n_blocks}")
    return 1.0 / math.sqrt(BRANCHES_PER_BLOCK * n_blocks)


class PreLN(PostLNTreatment):
    """Move every Post-LN block's LayerNorms to the inputs of its branches."""

    name = "pre-ln"
    title = "Post-LN -> Pre-LN: the LayerNorm moves from after the sum to the branch input"
    source = (
        "Xiong, Yang, He, Zheng, Zheng, Xing, Zhang, Lan, Wang & Liu 2020, On Layer Normalization in the "
        "Transformer Architecture (ICML); Radford, Wu, Child, Luan, Amodei & Sutskever 2019, Language "
        "Models are Unsupervised Multitask Learners (GPT-2: residual projections scaled by 1/sqrt(N))"
    )
    preserves_function = False

    def remedy(self, case: Case, targets: list[BlockInfo]) -> str:
        return "moving each LayerNorm to its branch input leaves the skip path an identity"

    def treat(self, model: nn.Module, case: Case, blocks: list[BlockInfo]) -> nn.Module:
        scale = residual_scale(len(blocks))
        new, copies = treated_copy(model, blocks)
        final_norm = None
        for path, block in copies:
            if is_zoo_block(block):
                block = zoo_sibling(block, zoo_transformer.PreLNBlock)
                replace_module(new, path, block)
                final_norm = block.ln2
                projections = (block.attn.out, block.ffn.fc2)
            else:
                attn, attn_out, inter, out = bert_sublayers(block)
                block.attention.self = PreNormInput(attn_out.LayerNorm, attn)
                block.attention.output = ResidualSum(attn_out.dense, attn_out.dropout)
                block.intermediate = PreNormInput(out.LayerNorm, inter)
                block.output = ResidualSum(out.dense, out.dropout)
                projections = (attn_out.dense, out.dense)
            with torch.no_grad():
                for layer in projections:
                    layer.weight.mul_(scale)
        if final_norm is not None:
            _add_final_norm(model, new, case, final_norm)
        return new

    def constants(self, case: Case) -> dict[str, float]:
        n = len(postln_blocks(case))
        return {"N": float(n), "residual_scale": residual_scale(n)} if n else {}


def _add_final_norm(model: nn.Module, new: nn.Module, case: Case, like: nn.LayerNorm) -> None:
    """Put a fresh LayerNorm shaped like ``like`` in front of the head step's Sequential, if there is one."""
    last = case.report.body_span[1] if case.report.body_span else None
    if last is None or last + 1 >= len(case.chain.steps):
        return
    head = case.chain.steps[last + 1].module
    if not isinstance(head, nn.Sequential) or (len(head) and isinstance(head[0], nn.LayerNorm)):
        return
    try:
        path = module_path(model, head)
    except InputError:
        return
    ref = like.weight
    norm = nn.LayerNorm(like.normalized_shape, eps=like.eps).to(device=ref.device, dtype=ref.dtype)
    replace_module(new, path, nn.Sequential(norm, *new.get_submodule(path)))
