"""The probe's stages (`depthscope.probing._stages`): the records' shapes, and the stages run by
hand in their order give the numbers `depthscope.probe` reports."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import depthscope as ds
from depthscope.estimators import LinearizedChain
from depthscope.probing import ProbeOptions
from depthscope.probing._stages import judge, measure_cumulative, measure_gradients, measure_local

DEPTH, WIDTH, BATCH = 4, 300, 2  # wider than EXACT_CUMULATIVE_MAX_DIM: the frame route, narrow head


@pytest.mark.parametrize("width", [8, WIDTH])
def test_stages_by_hand_give_the_report(width: int) -> None:
    torch.manual_seed(0)
    model = ds.create_model("resnet_mlp", depth=DEPTH, width=width).eval()
    x = model.example_input(BATCH, torch.Generator().manual_seed(0))
    rep = ds.probe(model, x, lyapunov=2)

    chain = ds.Chain.from_module(model, example=x)
    lin = LinearizedChain(chain, x)
    opts = ProbeOptions(lyapunov=2)
    gen = torch.Generator().manual_seed(opts.seed)
    L = len(lin.steps)
    with torch.no_grad():
        local = measure_local(lin, opts, gen)
        assert set(local.stats) == set(local.routes) == set(lin.steps)
        cum = measure_cumulative(lin, opts, local.ops, gen)
        assert cum.log_rms.shape == cum.log_rms_se.shape == (L,) and len(cum.lyapunov) == 2
        assert cum.exact == (width <= 256) and cum.narrow_out == (width > 256)
        grads = measure_gradients(lin, opts, local.ops, cum, gen)
        assert grads.glog.shape == (L + 1, BATCH) and grads.log_ratio.shape == (L, BATCH)
        assert grads.end_to_end_exact
        judgement = judge(chain, lin, opts, local, grads, gen)
    assert [s.name for s in judgement.facts] == [b.name for b in rep.blocks]
    assert judgement.log_gain == rep.log_gain and judgement.verdict == rep.verdict
    assert grads.cumulative.log_rms.tolist() == rep.column("cum_log_rms")
    assert cum.lyapunov == rep.lyapunov
    assert [local.stats[k].fro for k in lin.steps] == rep.column("local_rms")


def test_options_are_frozen_and_resolved_once() -> None:
    opts = ProbeOptions(lyapunov=None)
    assert dataclasses.replace(opts, lyapunov=3).lyapunov == 3 and opts.lyapunov is None
