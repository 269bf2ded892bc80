"""Verdicts that say what drives them: the body apart from stem and head, the dominant step, zero steps."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console
from tests.oracles import cumulative, step_jacobians
from torch import nn

import depthscope as ds
from depthscope.probing._verdict import StepFacts, body_span, step_log_gains, verdict
from depthscope.render._terminal import LINE_WIDTH, drivers_line, render_report

WIDTH = 16
BATCH = 3
# Float64 chains with exact cumulative norms (n0 <= EXACT_CUMULATIVE_MAX_DIM): only rounding separates
# the probe's log gains from the oracle's.
EXACT_TOL = 1e-9
# The residual branches' scale: every block's Jacobian is within ~0.1 of the identity.
BRANCH_SCALE = 0.05
# Input scale far below LayerNorm's unit output: its Jacobian's RMS singular value is ~1/scale.
SMALL_INPUT = 1e-3
NEW_FIELDS = (
    "body_span",
    "body_log_gain",
    "body_verdict",
    "body_depth_scale",
    "dominant_step",
    "dominant_share",
    "zero_steps",
    "notes",
)


class Residual(nn.Module):
    """x + BRANCH_SCALE * tanh(W x): near the identity, so a stable block."""

    def __init__(self, width: int):
        super().__init__()
        self.lin = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + BRANCH_SCALE * torch.tanh(self.lin(x))


def _residual_then_norm(final: str) -> ds.Chain:
    torch.manual_seed(0)
    blocks = [(f"blocks.{i}", Residual(WIDTH).double()) for i in range(6)]
    norm = nn.LayerNorm(WIDTH).double()
    # Unnamed (the rule sees a lone normalisation layer) or named "head" as the zoo names it.
    return ds.Chain([*blocks, norm if final == "bare" else ("head", norm)])


def _exact_log_rms(J: torch.Tensor) -> float:
    """Mean over examples of the log RMS singular value of ``J: (B, n_out, n_in)``."""
    return float((J.norm(dim=(1, 2)) / math.sqrt(J.shape[-1])).log().mean())


def _facts(report: ds.Report) -> list[StepFacts]:
    return [StepFacts(b.name, b.index, b.in_shape, b.out_shape, False, b.local_rms) for b in report.blocks]


def _floats(obj) -> list[float]:
    if isinstance(obj, float):
        return [obj]
    if isinstance(obj, dict):
        return [f for v in obj.values() for f in _floats(v)]
    if isinstance(obj, (list, tuple)):
        return [f for v in obj for f in _floats(v)]
    return []


@pytest.mark.parametrize("final", ["bare", "head"])
def test_a_final_norm_on_small_inputs_drives_the_verdict_and_the_body_is_stable(final: str) -> None:
    chain = _residual_then_norm(final)
    x = SMALL_INPUT * torch.randn(BATCH, WIDTH, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rep = ds.probe(chain, x, lyapunov=0)
    last = chain.steps[-1].name

    assert rep.verdict == "exploding" and rep.log_gain > math.log(10)
    assert rep.body_span == [0, 5] and rep.body_verdict == "stable"
    assert rep.dominant_step == last and rep.dominant_share > 0.9

    # Oracle: the body's gain is log ||J(0 -> 6)||_F / sqrt(n0) (its input is x_0), from jacrev.
    Js, _ = step_jacobians(chain, x)
    body = _exact_log_rms(cumulative(Js)[5])
    assert rep.body_log_gain == pytest.approx(body, abs=EXACT_TOL)
    assert abs(body) < math.log(10)
    assert rep.body_depth_scale == pytest.approx(6 / abs(body), rel=EXACT_TOL)
    # The steps' parts of the log gain add up to the end-to-end gain; the norm's is the largest.
    jumps = step_log_gains(rep.column("cum_log_rms"), _facts(rep), WIDTH)
    assert sum(jumps) == pytest.approx(rep.log_gain, abs=EXACT_TOL)
    assert rep.dominant_share == pytest.approx(abs(jumps[-1]) / sum(abs(d) for d in jumps), rel=EXACT_TOL)

    line = drivers_line(rep)
    assert line is not None and len(line) <= LINE_WIDTH
    assert "stable" in line and repr(last) in line


def test_gpt2_final_norm_drives_the_verdict_and_its_layers_are_stable() -> None:
    import transformers

    config = transformers.GPT2Config(
        vocab_size=50,
        n_embd=64,
        n_layer=4,
        n_head=2,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
        use_cache=False,
    )
    torch.manual_seed(0)
    model = transformers.GPT2Model(config).eval()  # random weights from the config, no download
    ids = torch.randint(1, 50, (2, 8), generator=torch.Generator().manual_seed(1))
    rep = ds.probe(ds.Chain.from_hf(model, ids), ids, lyapunov=0)

    # The embeddings (stem) take integer ids and are not differentiated: the steps are h.0-h.3 and ln_f.
    assert [b.name for b in rep.blocks] == [*(f"base.h.{i}" for i in range(4)), "head"]
    assert rep.verdict == "exploding"
    assert rep.body_span == [1, 4] and rep.body_verdict == "stable"
    assert abs(rep.body_log_gain) < math.log(10) and rep.body_depth_scale > 4
    assert rep.dominant_step == "head" and rep.dominant_share > 0.5
    # The final norm alone carries the explosion: its cumulative jump exceeds the threshold.
    cum = rep.column("cum_log_rms")
    assert cum[-1] - cum[-2] > math.log(10)
    assert all(0.8 < b.local_rms < 1.3 for b in rep.blocks[:-1])


def _scaled_orthogonal_chain(width: int, scales: list[float], head: nn.Module | None) -> ds.Chain:
    """Linear steps c_j Q_j (Q_j orthogonal), then ``head``: every gradient ratio is exactly c_j."""
    gen = torch.Generator().manual_seed(3)
    steps = []
    for j, c in enumerate(scales):
        lin = nn.Linear(width, width, bias=False).double()
        q, _ = torch.linalg.qr(torch.randn(width, width, generator=gen, dtype=torch.float64))
        with torch.no_grad():
            lin.weight.copy_(c * q)
        steps.append((f"blocks.{j}", lin))
    if head is not None:
        steps.append(("head", head))
    return ds.Chain(steps)


SCALES = [1.1, 0.9, 1.05, 0.95]


@pytest.mark.parametrize(("width", "method"), [(WIDTH, "explicit"), (WIDTH, "matrix-free"), (300, "matrix-free")])
def test_a_zero_head_is_reported_as_such_without_nan(width: int, method: str) -> None:
    head = nn.Linear(width, 5).double()
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    chain = _scaled_orthogonal_chain(width, SCALES, head)
    x = torch.randn(BATCH, width, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rep = ds.probe(chain, x, method=method, lyapunov=2)

    assert not any(math.isnan(v) for v in _floats(dataclasses.asdict(rep)))
    assert rep.zero_steps == ["head"]
    assert rep.dominant_step == "head" and rep.dominant_share == 1.0
    assert any("'head' is zero" in n and "no gradient" in n for n in rep.notes)
    # The end-to-end gain is truly 0 and no gradient reaches the body: both stay as measured.
    assert rep.verdict == "vanishing" and rep.log_gain == -math.inf
    assert rep.input_grad_log_norm == -math.inf
    # The body's quantities are finite and exact for these linear steps: gain prod c_j, ratios c_j.
    body = sum(math.log(c) for c in SCALES)
    assert rep.body_span == [0, 3] and rep.body_verdict == "stable"
    assert rep.body_log_gain == pytest.approx(body, abs=EXACT_TOL)
    assert rep.body_depth_scale == pytest.approx(len(SCALES) / abs(body), rel=EXACT_TOL)
    assert rep.column("grad_ratio")[:-1] == pytest.approx(SCALES, rel=EXACT_TOL)
    assert rep.blocks[-1].grad_ratio == 0.0
    line = drivers_line(rep)
    assert line is not None and "'head' is zero" in line and len(line) <= LINE_WIDTH


def test_a_head_that_stops_the_gradient_of_one_example_leaves_no_nan() -> None:
    # ReLU head; example 1's input to it is all negative, so its J = 0 while example 0's is not.
    chain = _scaled_orthogonal_chain(WIDTH, SCALES, None)
    chain = ds.Chain([*chain.steps, ds.Step("head", torch.relu)])
    x = torch.randn(2, WIDTH, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        # The body is W = W_3 W_2 W_1 W_0 with W_j = c_j Q_j, so W^-1 = W^T / prod c_j^2.
        total = torch.eye(WIDTH, dtype=torch.float64)
        for step in chain.steps[:-1]:
            total = step.module.weight @ total
        x[1] = total.T @ -torch.ones(WIDTH, dtype=torch.float64) / math.prod(c * c for c in SCALES)
    assert (chain.states(x)[-2][1] < 0).all()
    rep = ds.probe(chain, x, lyapunov=0)

    assert not any(math.isnan(v) for v in _floats(dataclasses.asdict(rep)))
    assert rep.zero_steps == []  # example 0 still passes a gradient
    assert rep.column("grad_ratio")[:-1] == pytest.approx(SCALES, rel=EXACT_TOL)
    assert any("no gradient of the loss crosses 'head'" in n for n in rep.notes)


def test_new_fields_round_trip_as_strict_json(tmp_path: Path) -> None:
    head = nn.Linear(WIDTH, 5).double()
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    zero = ds.probe(_scaled_orthogonal_chain(WIDTH, SCALES, head), torch.ones(2, WIDTH, dtype=torch.float64))
    # An identity body: log gain exactly 0, so its depth scale is inf (a special float in JSON).
    flat = ds.probe(ds.Chain([("blocks.0", lambda h: h), ("blocks.1", lambda h: h)]), torch.ones(1, 4))
    assert flat.body_depth_scale == math.inf
    for rep in (zero, flat):
        path = rep.save(tmp_path / "r.json")

        def refuse(token: str) -> None:
            raise AssertionError(f"bare {token} in the JSON")

        json.loads(path.read_text(), parse_constant=refuse)
        back = ds.Report.load(path)
        assert back == rep
        assert all(getattr(back, f) == getattr(rep, f) for f in NEW_FIELDS)


def test_reports_written_before_the_new_fields_still_load() -> None:
    rep = ds.probe(ds.Chain([("blocks.0", lambda h: 2 * h)]), torch.ones(1, 4))
    old = {k: v for k, v in rep.to_dict().items() if k not in NEW_FIELDS}
    back = ds.Report.from_dict(old)
    assert back.body_verdict is None and back.zero_steps == [] and back.notes == []
    assert drivers_line(back) is None  # the terminal shows no body line for such a report


def _facts_for(names: list[str], shapes: list[tuple[tuple[int, ...], tuple[int, ...]]], norms=None) -> list[StepFacts]:
    norms = norms or [False] * len(names)
    return [StepFacts(n, k, i, o, z, 1.0) for k, (n, (i, o), z) in enumerate(zip(names, shapes, norms))]


def test_body_rule() -> None:
    sq = ((8,), (8,))
    # Named stem and head.
    assert body_span(_facts_for(["stem", "b0", "b1", "head"], [sq] * 4)) == (1, 2)
    assert body_span(_facts_for(["b0", "b1", "readout"], [sq] * 3)) == (0, 1)
    # Unnamed, but changing the shape (a plain Sequential's embedding and classifier).
    assert body_span(_facts_for(["0", "1", "2", "3"], [((3,), (8,)), sq, sq, ((8,), (2,))])) == (1, 2)
    # A lone normalisation layer at the end.
    assert body_span(_facts_for(["0", "1", "2"], [sq] * 3, [False, False, True])) == (0, 1)
    # Shape changes inside the body (downsampling blocks) stay in it; at most one step per end.
    shapes = [((3,), (8,)), ((8,), (4,)), ((4,), (4,)), ((4,), (2,)), ((2,), (1,))]
    assert body_span(_facts_for(["0", "1", "2", "3", "4"], shapes)) == (1, 3)
    # Nothing left, or nothing to strip.
    assert body_span(_facts_for(["stem", "head"], [sq] * 2)) is None
    assert body_span(_facts_for(["b0"], [sq])) == (0, 0)


def test_a_narrow_head_gets_the_rank_correction_in_its_share() -> None:
    # A classifier 16 -> 2 after isometric steps: the gain over its nonzero singular values counts.
    torch.manual_seed(0)
    head = nn.Linear(WIDTH, 2, bias=False).double()
    rep = ds.probe(_scaled_orthogonal_chain(WIDTH, [1.0, 1.0], head), torch.ones(2, WIDTH, dtype=torch.float64))
    jumps = step_log_gains(rep.column("cum_log_rms"), _facts(rep), WIDTH)
    assert sum(jumps) == pytest.approx(rep.log_gain, abs=EXACT_TOL)
    assert jumps[:2] == pytest.approx([0.0, 0.0], abs=EXACT_TOL)
    sv = torch.linalg.svdvals(head.weight.detach())
    assert jumps[2] == pytest.approx(float(sv.square().mean().sqrt().log()), abs=EXACT_TOL)


def test_the_terminal_line_fits_80_columns_with_long_names() -> None:
    chain = _residual_then_norm("head")
    x = SMALL_INPUT * torch.randn(BATCH, WIDTH, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rep = ds.probe(chain, x, lyapunov=0)
    long = "model.encoder.layers.11.final_layer_norm.with.a.very.long.path.indeed.yes"
    renamed = dataclasses.replace(rep, dominant_step=long)
    line = drivers_line(renamed)
    assert len(line) <= LINE_WIDTH and "…" in line and "stable" in line
    console = Console(record=True, width=LINE_WIDTH + 4)
    render_report(rep, console)
    assert drivers_line(rep) in console.export_text()


def test_an_rnn_body_is_measured_from_its_own_input_when_the_stem_is_constant() -> None:
    # The RNN's stem is its learned initial state h_0: the same for every input, so J_stem = 0 and
    # the cumulative gain is -inf from the first step. The body's gain is pushed from h_0 instead.
    torch.manual_seed(0)
    model = ds.create_model("rnn_linear", hidden=12, seq_len=5).double().eval()
    x = model.example_input(2, torch.Generator().manual_seed(0)).double()
    chain = ds.Chain.from_module(model, example=x)
    rep = ds.probe(chain, x, lyapunov=0)

    assert rep.zero_steps == ["stem"] and rep.log_gain == -math.inf
    assert rep.body_span == [1, 5]
    # A linear cell h -> W h + U x_t: every time step's Jacobian is W, the body's is W^5.
    product = torch.linalg.matrix_power(model.cell.W.weight.detach(), 5)
    assert rep.body_log_gain == pytest.approx(_exact_log_rms(product.unsqueeze(0)), abs=EXACT_TOL)
    assert (rep.body_verdict, rep.body_depth_scale) == verdict(rep.body_log_gain, 5)
    assert any("pushed from the body's own input" in n for n in rep.notes)
    assert not any(math.isnan(v) for v in _floats(dataclasses.asdict(rep)))
