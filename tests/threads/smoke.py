"""The smoke subset, run in a fresh interpreter at a given torch thread count (not a test module).

``python smoke.py THREADS OUT.json`` with THREADS an integer or ``default`` (torch's own choice,
as a user who never calls ``torch.set_num_threads`` gets). Probes every registered model at its
tiny size, the README's Python example, and the stiff solver on one problem of the stiff set, and
writes the numbers as JSON so that runs at different thread counts can be compared.
"""

from __future__ import annotations

import json
import sys

import torch

import depthscope as ds

SEED = 0
BATCH = 2
# The README's example: a 64-block width-256 residual MLP at batch 32.
README_DEPTH, README_WIDTH, README_BATCH = 64, 256, 32
# One problem of the stiff set, at the tolerance the ledger's solver claims use.
STIFF_PROBLEM, STIFF_RTOL = "ROBER", 1e-6


def _numbers(report: ds.Report) -> dict:
    return {
        "log_gain": report.log_gain,
        "lyapunov": list(report.lyapunov),
        "blocks": [
            [b.local_rms, b.local_sigma_max, b.local_sigma_min, b.identity_gap, b.cum_log_rms, b.grad_log_norm]
            for b in report.blocks
        ],
    }


def main(threads: str, out: str) -> None:
    if threads != "default":
        torch.set_num_threads(int(threads))
    result: dict = {"threads": torch.get_num_threads(), "models": {}}
    for name in ds.list_models():
        torch.manual_seed(SEED)
        spec = ds.model_spec(name)
        model = spec.factory(**spec.tiny)
        x = model.example_input(BATCH, torch.Generator().manual_seed(SEED))
        result["models"][name] = _numbers(ds.probe(model, x, seed=SEED))
    torch.manual_seed(SEED)
    model = ds.create_model("resnet_mlp", depth=README_DEPTH, width=README_WIDTH)
    x = torch.randn(README_BATCH, README_WIDTH, generator=torch.Generator().manual_seed(SEED))
    result["readme"] = _numbers(ds.probe(model, x, seed=SEED))
    problem = getattr(ds.dynamics, STIFF_PROBLEM)
    sol = ds.dynamics.solve_ivp(
        problem.fun, problem.t_span, problem.y0, rtol=STIFF_RTOL, atol=problem.atol, jac=problem.jac
    )
    result["solver"] = {"y_end": sol.y[:, -1].tolist(), "steps": int(sol.t.shape[0])}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
