"""Post-LN -> DeepNorm: x_{l+1} = LN(alpha x_l + G(x_l)), with the branch weights initialised at gain beta.

Wang, Ma, Dong, Huang, Zhang & Wei 2022 ("DeepNet: Scaling Transformers to 1,000 Layers", Sec. 3 and
Figure 2 / Table 1) up-weight the skip by alpha before the Post-LN LayerNorm and shrink the
initialisation of the branches that carry the signal, so that each update's effect on the output
is bounded independently of depth. Their constants, for N encoder and M decoder layers:

    architecture        alpha                       beta (Xavier-normal gain)
    encoder-only        (2N)^(1/4)                  (8N)^(-1/4)
    decoder-only        (2M)^(1/4)                  (8M)^(-1/4)
    encoder-decoder     encoder 0.81 (N^4 M)^(1/16)  encoder 0.87 (N^4 M)^(-1/16)
                        decoder (3M)^(1/4)          decoder (12M)^(-1/4)

The doctor converts single-stack models (a BERT encoder, a causal zoo transformer), so
`deepnorm_constants` gives the first two rows (the same formula); `encoder_decoder_constants` gives
the third. Initialisation as in the paper's pseudo-code: Xavier normal with gain beta on the
feed-forward layers, the value and the output projections, gain 1 on the query and key
projections; biases are kept. The LayerNorms keep their weights. The function changes
(``preserves_function`` is False).
"""

from __future__ import annotations

from torch import nn

from depthscope._errors import InputError
from depthscope.doctor._structure import BlockInfo, replace_module, treated_copy
from depthscope.doctor._treatment import Case
from depthscope.doctor.treatments._common import generator
from depthscope.doctor.treatments._transformers import (
    PostLNTreatment,
    bert_sublayers,
    bert_weighted_skips,
    is_zoo_block,
    postln_blocks,
    zoo_sibling,
)
from depthscope.zoo import transformer as zoo_transformer

# Wang et al. 2022, Table 1, encoder-decoder row: alpha_enc = 0.81 (N^4 M)^(1/16),
# beta_enc = 0.87 (N^4 M)^(-1/16), alpha_dec = (3M)^(1/4), beta_dec = (12M)^(-1/4).
ENC_DEC_ALPHA = 0.81
ENC_DEC_BETA = 0.87


def deepnorm_constants(n_layers: int) -> tuple[float, float]:
    """(alpha, beta) = ((2N)^(1/4), (8N)^(-1/4)) for an encoder-only or decoder-only stack of N layers."""
    if n_layers < 1:
        raise InputError(f"DeepNorm needs N >= 1 layers, got {n_layers}")
    return (2.0 * n_layers) ** 0.25, (8.0 * n_layers) ** -0.25


def encoder_decoder_constants(n_encoder: int, m_decoder: int) -> dict[str, float]:
    """DeepNorm's constants for an encoder-decoder of N encoder and M decoder layers."""
    if n_encoder < 1 or m_decoder < 1:
        raise InputError(f"DeepNorm needs N, M >= 1, got N={n_encoder}, M={m_decoder}")
    nm = float(n_encoder) ** 4 * m_decoder
    return {
        "alpha_encoder": ENC_DEC_ALPHA * nm ** (1 / 16),
        "beta_encoder": ENC_DEC_BETA * nm ** (-1 / 16),
        "alpha_decoder": (3.0 * m_decoder) ** 0.25,
        "beta_decoder": (12.0 * m_decoder) ** -0.25,
    }


class DeepNorm(PostLNTreatment):
    """Up-weight every Post-LN block's skip by alpha and initialise its branches at gain beta."""

    name = "deepnorm"
    title = "DeepNorm: LN(alpha x + G(x)) with alpha = (2N)^(1/4), branch init gain beta = (8N)^(-1/4)"
    source = "Wang, Ma, Dong, Huang, Zhang & Wei 2022, DeepNet: Scaling Transformers to 1,000 Layers"
    preserves_function = False

    def remedy(self, case: Case, targets: list[BlockInfo]) -> str:
        alpha, beta = deepnorm_constants(len(targets))
        return f"LN(alpha x + G(x)) with alpha = {alpha:.3g}, branch init gain beta = {beta:.3g} (N = {len(targets)})"

    def treat(self, model: nn.Module, case: Case, blocks: list[BlockInfo]) -> nn.Module:
        alpha, beta = deepnorm_constants(len(blocks))
        new, copies = treated_copy(model, blocks)
        gen = generator()
        for path, block in copies:
            if is_zoo_block(block):
                block = zoo_sibling(block, zoo_transformer.DeepNormBlock, alpha=alpha)
                replace_module(new, path, block)
                unit, scaled = (
                    (block.attn.q, block.attn.k),
                    (block.attn.v, block.attn.out, block.ffn.fc1, block.ffn.fc2),
                )
            else:
                attn, attn_out, inter, out = bert_sublayers(block)
                bert_weighted_skips(block, alpha, alpha)
                unit, scaled = (attn.query, attn.key), (attn.value, attn_out.dense, inter.dense, out.dense)
            for layer in unit:
                nn.init.xavier_normal_(layer.weight, gain=1.0, generator=gen)
            for layer in scaled:
                nn.init.xavier_normal_(layer.weight, gain=beta, generator=gen)
        return new

    def constants(self, case: Case) -> dict[str, float]:
        n = len(postln_blocks(case))
        if n == 0:
            return {}
        alpha, beta = deepnorm_constants(n)
        return {"N": float(n), "alpha": alpha, "beta": beta}
