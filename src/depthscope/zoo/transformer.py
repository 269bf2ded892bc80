"""Transformers: four ways to place the LayerNorm and the residual, as sibling block classes.

PreLNBlock:    x <- x + F(LN(x))               (GPT-2; identity gradient highway, claim J4)
PostLNBlock:   x <- LN(x + F(x))               (Vaswani et al. 2017, BERT; claim J3)
DeepNormBlock: x <- LN(alpha x + F(x))         (Wang et al. 2022, "DeepNet"), alpha = (2N)^(1/4)
ReZeroBlock:   x <- x + alpha F(x), alpha = 0  (Bachlechner et al. 2021); no LayerNorm at all

Each block applies the rule twice, F = self-attention then F = feed-forward. A block is one chain
step. The model is a tiny character-level language model:

    stem: token ids (B, T) long -> token + position embedding (B, T, d_model)
    blocks: (B, T, d_model) -> (B, T, d_model)
    head: [final LN, Pre-LN only] + unembedding -> logits (B, T, vocab)

Attention mixes positions within one example, never across the batch; ``causal=True`` masks the
future (a decoder), ``causal=False`` does not (an encoder). Attention is written out with einsum
and softmax so that torch.func (jvp, vjp, vmap, jacrev) works through every block.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from depthscope.chain import ChainModule
from depthscope.zoo._registry import register_model

# Additive attention mask for masked (future) positions. A finite large negative number rather
# than -inf: exp underflows to exactly 0 in float32 and float64 alike, and forward-mode AD never
# meets inf - inf.
MASKED_SCORE = -1e9
# Token and position embeddings are each N(0, 1/2), so x_0 has unit variance per coordinate, the
# same scale a LayerNorm produces: no variant starts with a stream much smaller than its branches.
EMBED_STD = math.sqrt(0.5)


def deepnorm_alpha(n_layers: int) -> float:
    """DeepNorm residual scale alpha = (2N)^(1/4) for an N-layer encoder (or decoder-only) model.

    Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers", Table 1 / Figure 2.
    """
    return (2.0 * n_layers) ** 0.25


def deepnorm_beta(n_layers: int) -> float:
    """DeepNorm branch init gain beta = (8N)^(-1/4) for an N-layer encoder (or decoder-only) model.

    Applied as the Xavier-normal gain of the FFN, value and output projections (Wang et al. 2022).
    """
    return (8.0 * n_layers) ** -0.25


@torch.no_grad()
def _xavier(layer: nn.Linear, gain: float = 1.0) -> nn.Linear:
    # Xavier/Glorot normal (Glorot & Bengio 2010), the init of Vaswani et al. and of DeepNet.
    nn.init.xavier_normal_(layer.weight, gain=gain)
    if layer.bias is not None:
        layer.bias.zero_()
    return layer


class SelfAttention(nn.Module):
    """Multi-head self-attention over the sequence of one example.

    x: (..., T, d_model) -> (..., T, d_model); leading dimensions (the batch) are never mixed.
    The mask is a buffer fixed at construction (zeros for an encoder, MASKED_SCORE above the
    diagonal for a causal decoder), so ``forward`` has no branch on the variant.
    """

    def __init__(self, d_model: int, n_heads: int, seq_len: int, causal: bool):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q = _xavier(nn.Linear(d_model, d_model))
        self.k = _xavier(nn.Linear(d_model, d_model))
        self.v = _xavier(nn.Linear(d_model, d_model))
        self.out = _xavier(nn.Linear(d_model, d_model))
        future = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)
        mask = torch.where(future & causal, MASKED_SCORE, 0.0)
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-2]

        def heads(z: torch.Tensor) -> torch.Tensor:  # (..., T, D) -> (..., H, T, D/H)
            return z.unflatten(-1, (self.n_heads, -1)).transpose(-3, -2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
        weights = torch.softmax(scores + self.mask[:t, :t].to(scores.dtype), dim=-1)
        mixed = torch.einsum("...qk,...kd->...qd", weights, v)
        return self.out(mixed.transpose(-3, -2).flatten(-2))


class FeedForward(nn.Module):
    """x -> W2 GELU(W1 x + b1) + b2, position-wise; x: (..., d_model)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc1 = _xavier(nn.Linear(d_model, d_ff))
        self.act = nn.GELU()
        self.fc2 = _xavier(nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Sublayers(nn.Module):
    """The two branches every block shares: ``attn`` then ``ffn``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, seq_len: int, causal: bool):
        super().__init__()
        self.attn = SelfAttention(d_model, n_heads, seq_len, causal)
        self.ffn = FeedForward(d_model, d_ff)


class PreLNBlock(_Sublayers):
    """x <- x + Attn(LN(x)); x <- x + FFN(LN(x)). x: (B, T, d_model)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, seq_len: int, causal: bool):
        super().__init__(d_model, n_heads, d_ff, seq_len, causal)
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class PostLNBlock(_Sublayers):
    """x <- LN(x + Attn(x)); x <- LN(x + FFN(x)). x: (B, T, d_model)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, seq_len: int, causal: bool):
        super().__init__(d_model, n_heads, d_ff, seq_len, causal)
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.ffn(x))


class DeepNormBlock(_Sublayers):
    """x <- LN(alpha x + Attn(x)); x <- LN(alpha x + FFN(x)). x: (B, T, d_model).

    ``alpha`` is a fixed buffer; the matching branch init (gain beta) is applied by the builder,
    which knows the depth N.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, seq_len: int, causal: bool, alpha: float):
        super().__init__(d_model, n_heads, d_ff, seq_len, causal)
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.register_buffer("alpha", torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(self.alpha * x + self.attn(x))
        return self.ln2(self.alpha * x + self.ffn(x))


class ReZeroBlock(_Sublayers):
    """x <- x + a1 Attn(x); x <- x + a2 FFN(x); no LayerNorm. x: (B, T, d_model).

    a1, a2 are trainable scalars initialised to 0 (Bachlechner et al. 2021, "ReZero is all you
    need"), so at init every block is exactly the identity (claims R4, J2).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, seq_len: int, causal: bool):
        super().__init__(d_model, n_heads, d_ff, seq_len, causal)
        self.alpha_attn = nn.Parameter(torch.zeros(()))
        self.alpha_ffn = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.alpha_attn * self.attn(x)
        return x + self.alpha_ffn * self.ffn(x)


class Embedding(nn.Module):
    """Token ids (B, T) long -> token + learned position embedding (B, T, d_model)."""

    def __init__(self, vocab: int, seq_len: int, d_model: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.empty(seq_len, d_model))
        with torch.no_grad():
            self.tok.weight.normal_(0.0, EMBED_STD)
            self.pos.normal_(0.0, EMBED_STD)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tok(ids) + self.pos[: ids.shape[-1]]


class Transformer(ChainModule):
    """A character-level LM: ids (B, seq_len) long -> logits (B, seq_len, vocab).

    Chain: ``stem`` (embedding), ``blocks.i`` (one per block, attention and FFN together),
    ``head`` (``final_norm`` if given, then the unembedding).
    """

    def __init__(self, blocks: list[nn.Module], vocab: int, seq_len: int, d_model: int, final_norm: nn.Module | None):
        super().__init__()
        self.vocab = vocab
        self.seq_len = seq_len
        self.embed = Embedding(vocab, seq_len, d_model)
        self.blocks = nn.ModuleList(blocks)
        norm = [final_norm] if final_norm is not None else []
        self.head = nn.Sequential(*norm, nn.Linear(d_model, vocab, bias=False))
        # Unembedding N(0, 1/d_model): unit-variance logits from a unit-variance stream.
        with torch.no_grad():
            self.head[-1].weight.normal_(0.0, 1.0 / math.sqrt(d_model))

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [("stem", self.embed), *[(f"blocks.{i}", b) for i, b in enumerate(self.blocks)], ("head", self.head)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random token ids, (batch, seq_len) long."""
        return torch.randint(0, self.vocab, (batch, self.seq_len), generator=generator)


def _check(depth: int, d_model: int, n_heads: int, d_ff: int, seq_len: int, vocab: int) -> None:
    sizes = dict(depth=depth, d_model=d_model, n_heads=n_heads, d_ff=d_ff, seq_len=seq_len, vocab=vocab)
    bad = {k: v for k, v in sizes.items() if v < 1}
    if bad:
        raise ValueError(f"transformer sizes must be positive, got {bad}")


_TINY = dict(depth=2, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11)


@register_model(
    "transformer_preln",
    family="transformer",
    description="Pre-LN transformer LM, x + F(LN(x)), final LN before the unembedding (GPT-2)",
    tiny=_TINY,
)
def transformer_preln(
    depth: int = 12,
    d_model: int = 64,
    n_heads: int = 4,
    d_ff: int = 256,
    seq_len: int = 32,
    vocab: int = 64,
    causal: bool = True,
) -> Transformer:
    """A Pre-LN transformer; Xavier-normal weights, zero biases, LN at (1, 0)."""
    _check(depth, d_model, n_heads, d_ff, seq_len, vocab)
    blocks = [PreLNBlock(d_model, n_heads, d_ff, seq_len, causal) for _ in range(depth)]
    return Transformer(blocks, vocab, seq_len, d_model, nn.LayerNorm(d_model))


@register_model(
    "transformer_postln",
    family="transformer",
    description="Post-LN transformer LM, LN(x + F(x)) (Vaswani et al. 2017, BERT)",
    tiny=_TINY,
)
def transformer_postln(
    depth: int = 12,
    d_model: int = 64,
    n_heads: int = 4,
    d_ff: int = 256,
    seq_len: int = 32,
    vocab: int = 64,
    causal: bool = True,
) -> Transformer:
    """A Post-LN transformer; Xavier-normal weights, zero biases. Its stream is already normalised,
    so the head is the unembedding alone."""
    _check(depth, d_model, n_heads, d_ff, seq_len, vocab)
    blocks = [PostLNBlock(d_model, n_heads, d_ff, seq_len, causal) for _ in range(depth)]
    return Transformer(blocks, vocab, seq_len, d_model, None)


@register_model(
    "transformer_deepnorm",
    family="transformer",
    description="DeepNorm transformer LM, LN(alpha x + F(x)), alpha=(2N)^(1/4), beta=(8N)^(-1/4) init",
    tiny=_TINY,
)
def transformer_deepnorm(
    depth: int = 12,
    d_model: int = 64,
    n_heads: int = 4,
    d_ff: int = 256,
    seq_len: int = 32,
    vocab: int = 64,
    causal: bool = True,
) -> Transformer:
    """A DeepNorm transformer of N = ``depth`` layers (Wang et al. 2022).

    Init as in the paper (encoder-only / decoder-only case): Xavier normal everywhere, with gain
    beta = (8N)^(-1/4) on the FFN (fc1, fc2), value and output projections, gain 1 on query and key.
    """
    _check(depth, d_model, n_heads, d_ff, seq_len, vocab)
    alpha, beta = deepnorm_alpha(depth), deepnorm_beta(depth)
    blocks = [DeepNormBlock(d_model, n_heads, d_ff, seq_len, causal, alpha) for _ in range(depth)]
    for block in blocks:
        for layer in (block.ffn.fc1, block.ffn.fc2, block.attn.v, block.attn.out):
            _xavier(layer, gain=beta)
    return Transformer(blocks, vocab, seq_len, d_model, None)


@register_model(
    "transformer_rezero",
    family="transformer",
    description="ReZero transformer LM, x + alpha F(x) with alpha = 0 at init, no LayerNorm",
    tiny=_TINY,
)
def transformer_rezero(
    depth: int = 12,
    d_model: int = 64,
    n_heads: int = 4,
    d_ff: int = 256,
    seq_len: int = 32,
    vocab: int = 64,
    causal: bool = True,
) -> Transformer:
    """A ReZero transformer (Bachlechner et al. 2021): every block is the identity at init."""
    _check(depth, d_model, n_heads, d_ff, seq_len, vocab)
    blocks = [ReZeroBlock(d_model, n_heads, d_ff, seq_len, causal) for _ in range(depth)]
    return Transformer(blocks, vocab, seq_len, d_model, None)
