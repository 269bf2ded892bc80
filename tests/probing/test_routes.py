"""The route choice of `depthscope.probe` (`depthscope.probing._routes`): the cost model's decisions,
the memory budget, streaming of explicit Jacobians, and agreement of auto with the forced routes."""

from __future__ import annotations

import weakref

import pytest
import torch
from tests.oracles import step_jacobians

import depthscope as ds
from depthscope.estimators import LinearizedChain
from depthscope.probing import _routes

# Lanczos stops at a residual bound of 1% of lambda, i.e. <= 0.5% on sigma (as tests/probing/test_oracle.py).
SIGMA_RTOL = 0.01
# Hutchinson with 16 probes on near-isometric residual steps (as tests/probing/test_oracle.py).
HUTCHINSON_RTOL = 0.05


@pytest.mark.parametrize("with_min", [False, True])
def test_cost_model_prefers_matrix_free_for_the_wide_residual_mlp(with_min: bool) -> None:
    # The case: width-256 residual blocks at batch 1, float32, tape route.
    cost = _routes.step_cost(256, 256, 1, torch.float32, with_min, "tape", 16)
    assert cost.matrix_free_s < cost.explicit_s
    assert _routes.choose(cost) == (_routes.ROUTE_MATRIX_FREE, "predicted faster")
    # Wider or larger batches only widen the gap.
    for n, b in [(512, 1), (1024, 1), (256, 8)]:
        assert _routes.choose(_routes.step_cost(n, n, b, torch.float32, with_min, "tape", 16))[0] == "matrix-free"


@pytest.mark.parametrize("route", ["tape", "autograd"])
@pytest.mark.parametrize("with_min", [False, True])
def test_cost_model_prefers_explicit_for_narrow_steps(route: str, with_min: bool) -> None:
    for n in (4, 16, 64):
        cost = _routes.step_cost(n, n, 1, torch.float32, with_min, route, 16)
        assert _routes.choose(cost) == (_routes.ROUTE_EXPLICIT, "predicted faster"), n
    # A classifier head: narrow on one side, built from its 10 rows.
    assert _routes.choose(_routes.step_cost(256, 10, 1, torch.float32, with_min, route, 16))[0] == "explicit"


def test_probe_routes_and_reasons_are_reported() -> None:
    torch.manual_seed(0)
    wide = ds.create_model("resnet_mlp", depth=3, width=256).eval()
    rep = ds.probe(wide, wide.example_input(1, torch.Generator().manual_seed(0)), lyapunov=0)
    # stem and blocks 256 wide: matrix-free; the 10-class head: explicit.
    assert rep.settings["local_routes"] == {"explicit": 1, "matrix-free": 4}
    assert rep.settings["local_route_reasons"] == {"explicit: predicted faster": 1, "matrix-free: predicted faster": 4}
    assert [b.method == "matrix-free" for b in rep.blocks] == [True] * 4 + [False]
    assert "explicit_max_dim" not in rep.settings and "_routes" in rep.settings["local_route_model"]
    narrow = ds.create_model("resnet_mlp", depth=3, width=16).eval()
    rep = ds.probe(narrow, narrow.example_input(2, torch.Generator().manual_seed(0)), lyapunov=0)
    assert rep.settings["local_routes"] == {"explicit": 5}
    forced = ds.probe(
        narrow, narrow.example_input(2, torch.Generator().manual_seed(0)), lyapunov=0, method="matrix-free"
    )
    assert forced.settings["local_route_reasons"] == {"matrix-free: method='matrix-free'": 5}


def test_route_choice_respects_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    cost = _routes.step_cost(16, 16, 4, torch.float32, True, "tape", 16)
    assert _routes.choose(cost)[0] == "explicit"
    assert _routes.choose(cost, budget=cost.explicit_bytes - 1) == ("matrix-free", "explicit over the memory budget")
    # The bytes grow with batch x width^2 (not with depth: steps are streamed).
    assert _routes.explicit_bytes(16, 16, 8, torch.float32, True) == 16 * _routes.explicit_bytes(
        8, 8, 2, torch.float32, True
    )
    torch.manual_seed(0)
    model = ds.create_model("resnet_mlp", depth=3, width=16).eval()
    x = model.example_input(4, torch.Generator().manual_seed(0))
    monkeypatch.setattr(_routes, "EXPLICIT_MEMORY_BUDGET", cost.explicit_bytes - 1)
    rep = ds.probe(model, x, lyapunov=0)
    # The 16-wide steps no longer fit; the 10-row head still does.
    assert rep.settings["local_route_reasons"] == {
        "explicit: predicted faster": 1,
        "matrix-free: explicit over the memory budget": 4,
    }
    assert rep.settings["explicit_memory_budget"] == cost.explicit_bytes - 1


class _LiveJacobians:
    """Counts the explicit Jacobians `LinearizedChain.explicit` returned that are still alive."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.live = self.peak = self.built = 0
        original = LinearizedChain.explicit

        def explicit(lin, k):
            J = original(lin, k)
            self.live += 1
            self.built += 1
            self.peak = max(self.peak, self.live)
            weakref.finalize(J, self._died)
            return J

        monkeypatch.setattr(LinearizedChain, "explicit", explicit)

    def _died(self) -> None:
        self.live -= 1


def _residual_chain(depth: int, width: int) -> ds.Chain:
    torch.manual_seed(0)
    model = ds.create_model("resnet_mlp", depth=depth, width=width, activation="tanh").double().eval()
    return ds.Chain(list(model.blocks))


def test_explicit_jacobians_are_streamed_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = _residual_chain(6, 8)
    x = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    loss = lambda out: out.square().sum()  # noqa: E731  (drawn from no generator: equal on both runs)
    before = ds.probe(chain, x, method="explicit", lyapunov=2, seed=3, loss=loss)  # every Jacobian fits
    per_step = _routes.explicit_bytes(8, 8, 3, torch.float64, True)
    counter = _LiveJacobians(monkeypatch)
    monkeypatch.setattr(_routes, "EXPLICIT_MEMORY_BUDGET", 2 * per_step)
    monkeypatch.setattr(_routes, "EXPLICIT_KEEP_BUDGET", 0)
    after = ds.probe(chain, x, method="explicit", lyapunov=2, seed=3, loss=loss)
    assert counter.built == 6 and counter.peak == 2  # built two at a time, never all six
    assert counter.live == 0
    Js, _ = step_jacobians(chain, x)
    for b0, b1, J in zip(before.blocks, after.blocks, Js):
        assert b1.method != "matrix-free"
        assert b1.local_rms == pytest.approx(b0.local_rms, rel=1e-12)  # exact on either run
        s = torch.linalg.svdvals(J)
        # Lanczos starts differ where the group is split: both within Lanczos's accuracy.
        assert b1.local_sigma_max == pytest.approx(float(s[:, 0].mean()), rel=SIGMA_RTOL)
        assert b1.local_sigma_min == pytest.approx(float(s[:, -1].mean()), rel=SIGMA_RTOL)
        # The sweeps use kept Jacobians (before) or J v / J^T u (after): equal within rounding.
        assert b1.cum_log_rms == pytest.approx(b0.cum_log_rms, abs=1e-12)
        assert b1.grad_log_norm == pytest.approx(b0.grad_log_norm, abs=1e-12)
        assert b1.grad_ratio == pytest.approx(b0.grad_ratio, rel=1e-12)
    assert after.lyapunov == pytest.approx(before.lyapunov, abs=1e-12)


def test_kept_jacobians_stay_within_their_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = _residual_chain(5, 8)
    x = torch.randn(2, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        lin = LinearizedChain(chain, x)
    routes = _routes.plan(lin, "explicit", 16, True)
    one = 8 * 2 * 8 * 8  # bytes of one float64 Jacobian (B, 8, 8)
    monkeypatch.setattr(_routes, "EXPLICIT_KEEP_BUDGET", 2 * one + one // 2)
    stats, kept = _routes.local_stats(lin, routes, 16, torch.Generator().manual_seed(0), False, True)
    assert sorted(stats) == lin.steps and len(kept) == 2
    Js, _ = step_jacobians(chain, x)
    for k, J in kept.items():
        assert J.dtype == torch.float64 and torch.allclose(J, Js[k], rtol=1e-12, atol=1e-14)


def test_numbers_are_unchanged_where_the_budget_is_not_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    # Routes coincide (all explicit) and one group fits: the same draws and the same numbers as
    # before streaming, bit for bit; the Jacobians die once measured.
    chain = _residual_chain(4, 6)
    x = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    counter = _LiveJacobians(monkeypatch)
    auto = ds.probe(chain, x, lyapunov=2, seed=5)
    assert counter.peak == 4 and counter.live == 0
    forced = ds.probe(chain, x, method="explicit", lyapunov=2, seed=5)
    assert auto.blocks == forced.blocks and auto.lyapunov == forced.lyapunov


def test_auto_agrees_with_the_forced_routes_within_their_accuracy() -> None:
    torch.manual_seed(0)
    model = ds.create_model("resnet_mlp", depth=3, width=256).double().eval()
    chain = ds.Chain.from_module(model)
    x = model.example_input(1, torch.Generator().manual_seed(0)).double()
    Js, _ = step_jacobians(chain, x)
    loss = lambda out: out.sum()  # noqa: E731  (the default loss draws from the generator after the routes)
    reps = {m: ds.probe(model, x, method=m, lyapunov=0, seed=0, loss=loss) for m in ("auto", "explicit", "matrix-free")}
    for j, J in enumerate(Js):
        s = torch.linalg.svdvals(J)
        fro = float((J.flatten(1).norm(dim=1) / J.shape[2] ** 0.5).mean())
        for m, rep in reps.items():
            b = rep.blocks[j]
            exact_fro = b.method != "matrix-free"
            assert b.local_rms == pytest.approx(fro, rel=1e-10 if exact_fro else HUTCHINSON_RTOL), (m, j)
            assert b.local_sigma_max == pytest.approx(float(s[:, 0].mean()), rel=SIGMA_RTOL), (m, j)
            assert b.cum_log_rms == pytest.approx(reps["explicit"].blocks[j].cum_log_rms, abs=1e-9)
            assert b.grad_ratio == pytest.approx(reps["explicit"].blocks[j].grad_ratio, rel=1e-9)
    assert [b.method == "matrix-free" for b in reps["auto"].blocks] == [True] * 4 + [False]
