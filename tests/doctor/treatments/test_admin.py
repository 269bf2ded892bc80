"""Admin: omega_i from one profiling pass, sqrt(Var[x_0] + sum_{j<i} Var[f_j]), and the omega blocks."""

from __future__ import annotations

import math

import torch
from tests.doctor.treatment_cases import case_for, state, tiny_bert, unchanged, zoo

from depthscope.doctor import get_treatment
from depthscope.doctor._blocks import DeepNormSum, OmegaPostLN
from depthscope.doctor._structure import body_blocks
from depthscope.doctor.treatments.admin import profile_omegas

ADMIN = get_treatment("admin")


def test_omegas_are_the_accumulated_branch_variances() -> None:
    model, x = zoo("transformer_postln", depth=2, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11)
    model.train()  # the profile runs in eval mode and restores the mode
    case = case_for(model, x, ("postln-contraction",))
    saved = state(model)
    omegas = profile_omegas(case, body_blocks(case))
    assert model.training and all(m.training for m in model.modules()) and unchanged(model, saved)
    with torch.no_grad():  # the same sums by hand
        h = model.embed(x)
        total, expected = float(h.var()), []
        for block in model.blocks:
            for branch, norm in ((block.attn, block.ln1), (block.ffn, block.ln2)):
                f = branch(h)
                expected.append(math.sqrt(total))
                total += float(f.var())
                h = norm(h + f)
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(omegas, expected))
    assert len(omegas) == 4 and omegas == sorted(omegas)


def test_zoo_blocks_get_their_two_omegas() -> None:
    model, x = zoo("transformer_postln", depth=2, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11)
    case = case_for(model, x, ("postln-contraction",))
    omegas = profile_omegas(case, body_blocks(case))
    treated = ADMIN.apply(model, case)
    block = treated.blocks[1]
    assert isinstance(block, OmegaPostLN)
    assert math.isclose(float(block.omega_attn), omegas[2], rel_tol=1e-6)
    assert math.isclose(float(block.omega_ffn), omegas[3], rel_tol=1e-6)
    h = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h1 = block.ln1(block.omega_attn * h + block.attn(h))
        torch.testing.assert_close(block(h), block.ln2(block.omega_ffn * h1 + block.ffn(h1)))
    assert ADMIN.constants(case)["sublayers"] == 4.0


def test_bert_layers_get_omega_sums() -> None:
    model, ids = tiny_bert(2)
    case = case_for(model, ids, ("postln-contraction",))
    treated = ADMIN.apply(model, case)
    layer = treated.encoder.layer[1]
    assert isinstance(layer.attention.output, DeepNormSum) and isinstance(layer.output, DeepNormSum)
    omegas = profile_omegas(case, body_blocks(case))
    assert math.isclose(float(layer.output.alpha), omegas[3], rel_tol=1e-6)
    assert treated(ids).last_hidden_state.shape == (2, 8, 16)
