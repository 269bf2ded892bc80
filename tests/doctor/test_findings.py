"""Each finding fires on a model built to have that problem, with numbers checked against an
independent computation, and nothing fires on healthy models (the negative control)."""

import functools
import math

import pytest
import torch
from tests.doctor.treatment_cases import zoo
from torch import nn

import depthscope as ds
from depthscope.chain import Chain
from depthscope.doctor import KINDS
from depthscope.doctor._findings import (
    DEAD_RELU_MIN_BATCH,
    ILL_CONDITIONED_COND,
    SIGMOID_SATURATED,
    TANH_SATURATED,
    activity,
    find,
)
from depthscope.probing import VERDICT_LOG_GAIN

BATCH = 8


def _findings(model: nn.Module, x: torch.Tensor):
    chain = Chain.from_module(model, example=x)
    report = ds.probe(chain, x)
    return report, {f.kind: f for f in find(report, chain, x)}


_zoo = functools.partial(zoo, batch=BATCH)


def test_thresholds_are_what_their_comments_say():
    # slope below 2% of the peak: tanh' = 1 - y^2, sigmoid' = y (1 - y) with peak 1/4
    assert 1 - TANH_SATURATED**2 == pytest.approx(0.02)
    assert SIGMOID_SATURATED * (1 - SIGMOID_SATURATED) == pytest.approx(0.02 / 4)


def test_vanishing_names_where_the_gain_leaves_the_band():
    model, x = _zoo("plain_mlp", depth=20, width=16, activation="sigmoid")
    report, found = _findings(model, x)
    f = found["vanishing"]
    cum = report.column("cum_log_rms")
    names = report.column("name")
    first = next(j for j, c in enumerate(cum) if c < -VERDICT_LOG_GAIN)
    assert f.evidence["first_step"] == names[first]
    assert f.steps[0] == names[first] and set(f.steps) <= set(names)
    assert f.evidence["judged"] == "across the body"  # the body's gain: what the treatments change
    assert f.evidence["log_gain"] == report.body_log_gain and f.severity == pytest.approx(
        -report.body_log_gain / VERDICT_LOG_GAIN
    )
    assert "exploding" not in found


def test_exploding_linear_stack():
    model, x = _zoo("plain_mlp", depth=12, width=16, activation="linear", slope=1.5, sigma_w=1.0)
    report, found = _findings(model, x)
    assert report.verdict == "exploding" and "exploding" in found
    assert all(
        c > VERDICT_LOG_GAIN for c in (b.cum_log_rms for b in report.blocks if b.name in found["exploding"].steps)
    )


def test_saturation_fraction_matches_a_direct_count():
    model, x = _zoo("plain_mlp", depth=10, width=64, activation="tanh", sigma_w=4.0)
    _, found = _findings(model, x)
    f = found["saturation"]
    # Oracle: run the blocks by hand and count |tanh| above the level.
    with torch.no_grad():
        h = model.stem(x)
        flat = total = 0
        for block in model.blocks:
            h = block(h)
            flat += int((h.abs() > TANH_SATURATED).sum())
            total += h.numel()
    assert f.evidence["fraction"] == pytest.approx(flat / total, abs=1e-12)
    assert 0.3 < f.evidence["fraction"] < 0.7  # mean-field: P(|h| > 2.65) at q* = 12.5 is 0.45
    assert len(f.steps) == 10


def test_functional_and_module_activations_are_both_seen():
    class Both(nn.Module):
        def forward(self, x):
            return torch.sigmoid(nn.Tanh()(x) * 20)

    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    (act,) = activity(Chain([("both", Both())]), x)
    assert act.squashed == 2 * x.numel()
    y = torch.tanh(x)
    expected = int((y.abs() > TANH_SATURATED).sum()) + int(
        ((torch.sigmoid(20 * y) < SIGMOID_SATURATED) | (torch.sigmoid(20 * y) > 1 - SIGMOID_SATURATED)).sum()
    )
    assert act.saturated == expected


class _ReluBlock(nn.Module):
    def __init__(self, width: int, dead: int):
        super().__init__()
        self.fc = nn.Linear(width, width)
        with torch.no_grad():
            self.fc.bias[:dead] = -100.0  # these units never switch on

    def forward(self, x):
        return torch.relu(self.fc(x)) + x  # residual, so the dead units do not starve the next block


def test_dead_relu_fraction_and_batch_rule():
    torch.manual_seed(0)
    model = nn.Sequential(_ReluBlock(16, 0), _ReluBlock(16, 8), _ReluBlock(16, 0))
    x = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))
    _, found = _findings(model, x)
    f = found["dead-relu"]
    assert f.steps == ("1",)
    assert f.evidence["max_fraction"] == pytest.approx(0.5, abs=1 / 16)  # 8 forced dead (+ rarely a chance one)
    # Too few examples to tell dead from unlucky: not judged.
    _, found = _findings(model, x[: DEAD_RELU_MIN_BATCH - 1])
    assert "dead-relu" not in found


class _PostLN(nn.Module):
    """LN(x + F(x)) with a large fixed offset in F: LN divides by the offset's scale on the way back."""

    def __init__(self, width: int, offset: float):
        super().__init__()
        self.f = nn.Linear(width, width)
        self.ln = nn.LayerNorm(width)
        with torch.no_grad():
            self.f.bias.normal_(0.0, offset)

    def forward(self, x):
        return self.ln(x + self.f(x))


def test_postln_contraction_is_structural_and_measured():
    torch.manual_seed(0)
    model = nn.Sequential(*[_PostLN(16, 3.0) for _ in range(8)])
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    report, found = _findings(model, x)
    f = found["postln-contraction"]
    assert len(f.steps) == 8
    shrink = sum(math.log(b.grad_ratio) for b in report.blocks)
    assert f.evidence["log_shrink"] == pytest.approx(shrink, rel=1e-9) and shrink < -1
    # The same structure without the offset keeps the gradient: no finding (measured, not assumed).
    torch.manual_seed(0)
    calm = nn.Sequential(*[_PostLN(16, 0.0) for _ in range(8)])
    _, found = _findings(calm, x)
    assert "postln-contraction" not in found


def test_batchnorm_branches_on_a_small_resnet56():
    model, x = _zoo("resnet56", width=0.25, input_size=8)
    report, found = _findings(model, x)
    f = found["batchnorm-branches"]
    assert report.verdict == "exploding" and "exploding" in found
    assert f.evidence["branch_steps"] == 27 and f.evidence["body_steps"] == 27
    assert f.severity >= found["exploding"].severity  # the specific cause outranks the symptom
    # The pre-activation ResNet adds a conv output, not a BatchNorm output: no such finding.
    model, x = _zoo("preact_resnet20", width=0.25, input_size=8)
    _, found = _findings(model, x)
    assert "batchnorm-branches" not in found


def test_bottleneck_names_the_one_step():
    torch.manual_seed(0)
    layers = [nn.Linear(8, 8, bias=False) for _ in range(6)]
    for i, layer in enumerate(layers):
        nn.init.orthogonal_(layer.weight, gain=1e-3 if i == 3 else 1.0)
    model = nn.Sequential(*layers)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    _, found = _findings(model, x)
    f = found["bottleneck"]
    assert f.steps == ("3",)
    assert f.evidence["log_jump"] == pytest.approx(math.log(1e-3), rel=1e-4)


def test_ill_conditioned_against_the_weights_singular_values():
    torch.manual_seed(0)
    spread = torch.logspace(0, -5, 8)  # cond 1e5: above the threshold, far from float32 rounding
    q1, _ = torch.linalg.qr(torch.randn(8, 8))
    q2, _ = torch.linalg.qr(torch.randn(8, 8))
    bad = nn.Linear(8, 8, bias=False)
    with torch.no_grad():
        bad.weight.copy_(q1 @ torch.diag(spread) @ q2)
    good = nn.Linear(8, 8, bias=False)
    nn.init.orthogonal_(good.weight)
    model = nn.Sequential(good, bad)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    _, found = _findings(model, x)
    f = found["ill-conditioned"]
    s = torch.linalg.svdvals(bad.weight.detach().double())
    assert f.steps == ("1",)
    assert f.evidence["max_cond"] == pytest.approx(float(s[0] / s[-1]), rel=1e-2)
    assert f.evidence["max_cond"] > ILL_CONDITIONED_COND


@pytest.mark.parametrize("name", ["rezero_mlp", "resnet_mlp"])
def test_healthy_models_get_no_finding(name):
    model, x = _zoo(name)
    _, found = _findings(model, x)
    assert found == {}


def test_every_kind_is_exercised_here():
    # A new kind in _finding.KINDS needs a test above.
    assert set(KINDS) == {
        "vanishing",
        "exploding",
        "bottleneck",
        "saturation",
        "postln-contraction",
        "batchnorm-branches",
        "ill-conditioned",
        "dead-relu",
    }


@pytest.mark.parametrize(
    ("name", "post"), [("transformer_postln", True), ("transformer_deepnorm", True), ("transformer_preln", False)]
)
def test_postln_structure_is_detected_in_the_zoo_transformers(name, post):
    model, x = _zoo(name, batch=2, depth=3, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11)
    chain = Chain.from_module(model, example=x)
    acts = activity(chain, x)
    marked = [s.name for s, a in zip(chain.steps, acts) if a.postln]
    assert marked == (["blocks.0", "blocks.1", "blocks.2"] if post else [])


def test_a_head_alone_is_a_bottleneck_not_a_depth_problem():
    # A Llama at initialisation: its four layers are stable (body log gain +0.65), its final RMSNorm
    # rescales their small output by e^+3.1, so the end-to-end verdict reads "exploding". The
    # doctor reports the head as a bottleneck and prescribes nothing for the depth.
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=200,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
    )
    model = transformers.LlamaModel(cfg).eval()
    ids = torch.randint(0, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    dx = ds.diagnose(model, ids)
    assert dx.report.verdict == "exploding" and dx.report.body_verdict == "stable"
    kinds = {f.kind for f in dx.findings}
    assert "exploding" not in kinds and "bottleneck" in kinds
    assert [f for f in dx.findings if f.kind == "bottleneck"][0].steps == ("head",)
    assert not [p for p in dx.prescriptions if p.blocked is None]
    # Even told the model explodes, the plain-stack treatments refuse its layers: their skip
    # connections could not be measured (the layers need their position embeddings), so they are
    # not known to be plain.
    case = ds.doctor.Case(
        dx.report, (ds.doctor.Finding("exploding", ()),), ds.Chain.from_module(model, None, example=ids), ids
    )
    for name in ("spectral-rescale", "criticality"):
        treatment = ds.doctor.get_treatment(name)
        assert treatment.applies(case) is None and treatment.blocked(case) is not None
