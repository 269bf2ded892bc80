"""The per-step quantities' declarations (`depthscope.probing._quantities`): every declared quantity
is a field of `BlockStats`, survives the JSON round trip and has its place in the terminal; the
condition number against exact SVDs of jacrev Jacobians."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from rich.console import Console
from tests.oracles import step_jacobians
from torch import nn

import depthscope as ds
from depthscope.estimators import LocalStats
from depthscope.probing import QUANTITIES, BlockStats, Report, condition_number
from depthscope.render._terminal import report_table, table_columns

NAMES = [q.name for q in QUANTITIES]


def _chain(gen: torch.Generator) -> ds.Chain:
    """Float64: two square steps (one near-identity residual, one plain), then a narrowing head."""
    torch.manual_seed(int(torch.randint(0, 1000, (1,), generator=gen)))
    res = ds.create_model("resnet_mlp", depth=1, width=6, activation="tanh").double().blocks[0]
    return ds.Chain([res, nn.Sequential(nn.Linear(6, 6), nn.Tanh()).double(), nn.Linear(6, 3).double()])


@pytest.fixture
def report(gen: torch.Generator) -> Report:
    return ds.probe(_chain(gen), torch.randn(2, 6, dtype=torch.float64, generator=gen), lyapunov=2)


def test_block_stats_has_exactly_the_declared_fields() -> None:
    assert [f.name for f in dataclasses.fields(BlockStats)] == NAMES
    assert len(set(NAMES)) == len(NAMES)
    for q, f in zip(QUANTITIES, dataclasses.fields(BlockStats)):
        assert f.type == q.type and q.doc in BlockStats.__doc__
        assert f.kw_only == (not q.required)


@pytest.mark.parametrize("name", NAMES)
def test_every_quantity_is_measured_and_survives_json(name: str, report: Report, tmp_path) -> None:
    q = next(q for q in QUANTITIES if q.name == name)
    values = report.column(name)
    assert len(values) == len(report) == 3
    if "None" not in q.type:
        assert all(v is not None for v in values)
    # Infinities and NaN travel as strings and come back as floats.
    if q.is_float:
        report.blocks[0] = dataclasses.replace(report.blocks[0], **{name: math.inf})
        report.blocks[1] = dataclasses.replace(report.blocks[1], **{name: math.nan})
    back = Report.load(report.save(tmp_path / "r.json"))
    for a, b in zip(back.column(name), report.column(name)):
        assert a == b or (a != a and b != b)
        assert type(a) is type(b)


@pytest.mark.parametrize("name", [q.name for q in QUANTITIES if q.column is not None])
def test_every_shown_quantity_has_a_column_in_the_terminal(name: str, report: Report) -> None:
    q = next(q for q in QUANTITIES if q.name == name)
    assert name in [c[0].name for c in table_columns()]
    console = Console(width=400, record=True)
    console.print(report_table(report))
    assert q.column.header in console.export_text()


def test_every_float_quantity_not_shown_is_meant_to_be_so() -> None:
    # The standard errors and the gradient's log norm are in the JSON only (the summary shows the
    # gradient's sparkline); a new quantity chooses its column or joins this list.
    hidden = {q.name for q in QUANTITIES if q.column is None}
    assert hidden == {"out_shape", "local_rms_se", "cum_log_rms_se", "grad_log_norm", "method", "sigma_min_kind"}


def test_condition_number_against_svdvals_of_jacrev(gen: torch.Generator) -> None:
    chain = _chain(gen)
    x = torch.randn(1, 6, dtype=torch.float64, generator=gen)
    Js, _ = step_jacobians(chain, x)
    for exact in (True, False):
        rep = ds.probe(chain, x, exact=exact, lyapunov=0)
        for b, J in zip(rep.blocks[:2], Js):
            s = torch.linalg.svdvals(J)[0]
            assert b.sigma_min_kind in ("exact", "inverse-lanczos")
            # Exact SVD: rounding; Lanczos stops at 1% of lambda on each of sigma_max and sigma_min.
            assert b.local_cond == pytest.approx(float(s[0] / s[-1]), rel=1e-10 if exact else 0.02)
        assert rep.blocks[2].local_cond is None  # 6 -> 3: no sigma_min


def test_condition_number_of_a_batch_is_the_ratio_of_the_batch_means(gen: torch.Generator) -> None:
    chain = _chain(gen)
    x = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    Js, _ = step_jacobians(chain, x)
    rep = ds.probe(chain, x, exact=True, lyapunov=0)
    for b, J in zip(rep.blocks[:2], Js):
        s = torch.linalg.svdvals(J)  # (B, 6)
        assert b.local_cond == pytest.approx(float(s[:, 0].mean() / s[:, -1].mean()), rel=1e-10)


def test_condition_number_is_none_where_sigma_min_is_not_known(gen: torch.Generator) -> None:
    chain = _chain(gen)
    x = torch.randn(1, 6, dtype=torch.float64, generator=gen)
    free = ds.probe(chain, x, method="matrix-free", lyapunov=0)
    assert free.blocks[0].sigma_min_kind == "weyl-lower-bound" and free.blocks[0].local_cond is None
    assert all(b.local_cond is None for b in ds.probe(chain, x, sigma_min=False, lyapunov=0).blocks)


def test_condition_number_rules() -> None:
    def st(smax, smin, kind):
        return LocalStats(1.0, smax, smin, 0.0 if smin is not None else None, kind, "exact")

    assert condition_number(st(2.0, 0.5, "exact")) == 4.0
    assert condition_number(st(2.0, 0.5, "inverse-lanczos")) == 4.0
    assert condition_number(st(2.0, 0.0, "exact")) == math.inf  # singular
    assert condition_number(st(0.0, 0.0, "exact")) == math.inf  # a zero step, as numpy.linalg.cond
    assert condition_number(st(2.0, 0.0, "weyl-lower-bound")) is None  # a bound, not a value
    assert condition_number(st(2.0, None, None)) is None  # not square
