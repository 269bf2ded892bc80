"""What the LayerNorm treatments (DeepNorm, Pre-LN, Admin) share: the Post-LN blocks they convert
(`PostLNTreatment`) and how a zoo block becomes its sibling class with the same weights.

Two kinds of Post-LN block are known (`depthscope.doctor._structure`): the zoo's `PostLNBlock`
(attributes ``attn``, ``ffn``, ``ln1``, ``ln2``; its siblings `PreLNBlock` and `DeepNormBlock` have
the same ones) and Hugging Face's ``BertLayer`` (``attention.self``, ``attention.output``,
``intermediate``, ``output``; the LayerNorms sit in the two output sublayers).
"""

from __future__ import annotations

import torch
from torch import nn

from depthscope.doctor._blocks import DeepNormSum
from depthscope.doctor._finding import EXPLODING, POSTLN_CONTRACTION, VANISHING
from depthscope.doctor._structure import POST_LN, BlockInfo, body_blocks
from depthscope.doctor._treatment import Case
from depthscope.doctor.treatments._common import gradient_within_e
from depthscope.doctor.treatments._targeted import TargetedTreatment
from depthscope.probing import Report
from depthscope.zoo import transformer as zoo_transformer

# The findings a LayerNorm-placement treatment answers.
LN_KINDS = (POSTLN_CONTRACTION, VANISHING, EXPLODING)


def postln_blocks(case: Case) -> list[BlockInfo]:
    """The body's Post-LN transformer blocks."""
    return [b for b in body_blocks(case) if b.placement == POST_LN]


class PostLNTreatment(TargetedTreatment):
    """A treatment of the body's Post-LN blocks; its promise: the gradient within e through the body."""

    treats = LN_KINDS
    fits = "Post-LN blocks"
    promise = "the gradient at the body's input within a factor e of the gradient at its top"

    def targets(self, case: Case) -> list[BlockInfo]:
        return postln_blocks(case)

    def unfit(self, case: Case) -> str:
        return (
            "no Post-LN transformer block is known in the body (known: the zoo's PostLNBlock, Hugging Face BertLayer)"
        )

    def kept(self, before: Report, after: Report) -> bool:
        return gradient_within_e(after)


def is_zoo_block(block: nn.Module) -> bool:
    return isinstance(block, zoo_transformer.PostLNBlock)


def zoo_sibling(block: nn.Module, cls: type[nn.Module], **extra: float) -> nn.Module:
    """A zoo `PostLNBlock`'s weights in a block of class ``cls`` (`PreLNBlock`, `DeepNormBlock`).

    The sibling is built under a forked random state (its own init draws leave the global
    generator where it was) and then given the Post-LN block's parameters and buffers, so only the
    placement of the LayerNorm (and ``extra``, DeepNorm's alpha) differs.
    """
    attn, ffn, ln = block.attn, block.ffn, block.ln1
    seq_len = attn.mask.shape[0]
    causal = bool((attn.mask != 0).any())
    ref = ln.weight
    with torch.random.fork_rng(devices=[]):
        new = cls(ln.normalized_shape[0], attn.n_heads, ffn.fc1.out_features, seq_len, causal, **extra)
    new = new.to(device=ref.device, dtype=ref.dtype)
    missing, unexpected = new.load_state_dict(block.state_dict(), strict=False)
    if unexpected or set(missing) - {"alpha"}:
        raise RuntimeError(f"cannot move {type(block).__name__} to {cls.__name__}: {missing} {unexpected}")
    return new


def bert_sublayers(layer: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """(attention.self, attention.output, intermediate, output) of a BERT layer."""
    return layer.attention.self, layer.attention.output, layer.intermediate, layer.output


def bert_weighted_skips(layer: nn.Module, alpha_attn: float, alpha_ffn: float) -> None:
    """Replace a BERT layer's two output sublayers, in place, by `DeepNormSum`s that weight their
    skips by ``alpha_attn`` and ``alpha_ffn`` (their dense, dropout and LayerNorm moved in)."""
    _, attn_out, _, out = bert_sublayers(layer)
    layer.attention.output = DeepNormSum(attn_out.dense, attn_out.dropout, attn_out.LayerNorm, alpha_attn)
    layer.output = DeepNormSum(out.dense, out.dropout, out.LayerNorm, alpha_ffn)
