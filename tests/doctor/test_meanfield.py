"""Mean-field numbers: closed forms, Monte-Carlo, and the theory beside a finite probed network."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import depthscope as ds
from depthscope import zoo
from depthscope._errors import InputError
from depthscope.doctor import critical_sigma_w, meanfield

# Monte-Carlo samples for the expectations (standard error ~ 1e-3 relative).
MC_SAMPLES = 1_000_000
# Agreement with Monte-Carlo within this many standard errors.
MC_SIGMAS = 5.0


@pytest.mark.parametrize("sigma_w", [0.5, 1.0, 1.3, 2.0])
@pytest.mark.parametrize("sigma_b", [0.0, 0.3])
def test_relu_closed_form(sigma_w, sigma_b):
    mf = meanfield("relu", sigma_w, sigma_b)
    # E[relu'(h)^2] = 1/2 at every variance, so chi_1 = sigma_w^2 / 2 whatever q* is.
    assert mf.chi_1 == pytest.approx(sigma_w**2 / 2, rel=1e-12)
    if sigma_w**2 / 2 < 1:  # q = sigma_w^2 q / 2 + sigma_b^2
        assert mf.q_star == pytest.approx(sigma_b**2 / (1 - sigma_w**2 / 2), rel=1e-9, abs=1e-12)
    else:
        assert mf.q_star == math.inf or (sigma_b == 0 and math.isnan(mf.q_star))
    assert mf.depth_scale == pytest.approx(1 / abs(math.log(mf.chi_1)), rel=1e-9) or mf.depth_scale == math.inf


def test_relu_critical_and_no_isometry():
    assert critical_sigma_w("relu") == pytest.approx(math.sqrt(2), rel=1e-9)
    assert critical_sigma_w("relu", sigma_b=0.5) == pytest.approx(math.sqrt(2), rel=1e-9)
    mf = meanfield("relu", math.sqrt(2))
    assert mf.phase == "critical" and mf.depth_scale == math.inf
    assert not mf.isometry_achievable and "ReLU" in mf.isometry_reason


@pytest.mark.parametrize(("sigma_w", "sigma_b"), [(0.5, 0.0), (0.9, 0.2), (1.2, 0.0)])
def test_linear_closed_form(sigma_w, sigma_b):
    mf = meanfield("linear", sigma_w, sigma_b)
    assert mf.chi_1 == pytest.approx(sigma_w**2, rel=1e-12)
    if sigma_w < 1:
        assert mf.q_star == pytest.approx(sigma_b**2 / (1 - sigma_w**2), rel=1e-9, abs=1e-12)
    assert mf.isometry_achievable
    # The zoo's linear activation of slope a: chi_1 = (a sigma_w)^2, through autograd on the module.
    slope = zoo.make_activation("linear", 1.5)
    assert meanfield(slope, sigma_w, sigma_b).chi_1 == pytest.approx((1.5 * sigma_w) ** 2, rel=1e-12)


def test_tanh_small_q():
    # At sigma_b = 0 and sigma_w <= 1 the variance collapses (q* = 0) and chi_1 = sigma_w^2 tanh'(0)^2.
    mf = meanfield("tanh", 0.8)
    assert mf.q_star == 0.0 and mf.chi_1 == pytest.approx(0.64, rel=1e-9)
    assert mf.phase == "ordered"
    # Just above 1: tanh(h)^2 = h^2 - 2h^4/3 + ... gives q* = (1 - 1/sigma_w^2) / 2 + O(q*^2), and
    # chi_1 = sigma_w^2 (1 - 2 q*) + O(q*^2) = 1 + O(q*^2).
    sw = 1.01
    mf = meanfield("tanh", sw)
    q_lead = (1 - 1 / sw**2) / 2
    assert mf.q_star == pytest.approx(q_lead, rel=0.05)
    assert mf.chi_1 == pytest.approx(1.0, abs=20 * q_lead**2)
    assert critical_sigma_w("tanh") == pytest.approx(1.0, abs=1e-6)
    assert mf.isometry_achievable and "Pennington" in mf.isometry_reason
    # sigma_b > 0 pushes the critical line up (Schoenholz et al. 2017, Fig. 1).
    assert critical_sigma_w("tanh", 0.3) > 1.2


def _mc(phi, q, n=MC_SAMPLES):
    """Monte-Carlo E[phi(sqrt(q) z)^2], E[phi'(...)^2] and their standard errors."""
    z = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h = (math.sqrt(q) * z).requires_grad_(True)
    (d,) = torch.autograd.grad(phi(h).sum(), h)
    y2, d2 = phi(h).detach() ** 2, d**2
    return y2.mean().item(), y2.std().item() / math.sqrt(n), d2.mean().item(), d2.std().item() / math.sqrt(n)


@pytest.mark.parametrize(
    ("name", "phi", "sigma_w", "sigma_b"),
    [
        ("tanh", torch.tanh, 1.5, 0.1),
        ("tanh", torch.tanh, 4.0, 0.0),
        ("sigmoid", torch.sigmoid, 4.0, 0.5),
        ("silu", nn.functional.silu, 1.2, 0.3),
    ],
)
def test_monte_carlo(name, phi, sigma_w, sigma_b):
    mf = meanfield(name, sigma_w, sigma_b)
    e_y2, se_y2, e_d2, se_d2 = _mc(phi, mf.q_star)
    # q* is a fixed point of the Monte-Carlo map, and chi_1 its Monte-Carlo slope moment.
    assert abs(sigma_w**2 * e_y2 + sigma_b**2 - mf.q_star) <= MC_SIGMAS * sigma_w**2 * se_y2
    assert abs(sigma_w**2 * e_d2 - mf.chi_1) <= MC_SIGMAS * sigma_w**2 * se_d2


def test_quadrature_against_trapezoid_at_large_q():
    # q* = 12.5 at tanh sigma_w = 4: tanh'(sqrt(q) z)^2 is a peak of width ~0.3 in z, the sharpest the
    # quadrature must resolve in these tests; a fine trapezoid rule in h is the reference.
    mf = meanfield("tanh", 4.0)
    h = np.linspace(-12 * math.sqrt(mf.q_star), 12 * math.sqrt(mf.q_star), 400_001)
    density = np.exp(-(h**2) / (2 * mf.q_star)) / math.sqrt(2 * math.pi * mf.q_star)
    slope2 = (1 - np.tanh(h) ** 2) ** 2
    assert mf.chi_1 == pytest.approx(16 * np.trapezoid(slope2 * density, h), rel=1e-8)
    assert mf.q_star == pytest.approx(16 * np.trapezoid(np.tanh(h) ** 2 * density, h), rel=1e-8)


def test_activation_forms_agree():
    by_name = meanfield("tanh", 1.3, 0.2)
    for form in (nn.Tanh, nn.Tanh(), torch.tanh, lambda h: torch.tanh(h)):
        mf = meanfield(form, 1.3, 0.2)
        assert mf.chi_1 == pytest.approx(by_name.chi_1, rel=1e-12)
        assert mf.q_star == pytest.approx(by_name.q_star, rel=1e-12)
    assert meanfield(nn.Tanh(), 1.0).activation == "tanh"
    assert meanfield(nn.GELU, 1.0).activation == "gelu"


def test_sigmoid_and_critical_values():
    mf = meanfield("sigmoid", 1.0)
    assert mf.chi_1 < 0.1 and mf.phase == "ordered"  # the zoo's sigmoid default vanishes fast
    assert not mf.isometry_achievable and "sigmoid(0) = 0.5" in mf.isometry_reason
    for name in ("tanh", "sigmoid"):
        sw = critical_sigma_w(name, 0.1)
        assert meanfield(name, sw, 0.1).chi_1 == pytest.approx(1.0, abs=1e-8)
    # GELU from unit-variance inputs: the variance either collapses (chi_1 ~ 0.6) or diverges (chi_1
    # ~ 1.2 -> sigma_w^2 / 2); chi_1 jumps over 1 and no sigma_w is critical.
    with pytest.raises(InputError, match=r"gelu .* jumps from 0\.\d+ to 1\.\d+"):
        critical_sigma_w("gelu")
    assert meanfield("gelu", 1.5).q_star < 0.1 and meanfield("gelu", 1.6).q_star == math.inf


def test_bad_input():
    with pytest.raises(InputError, match="unknown activation 'swish'.*tanh"):
        meanfield("swish", 1.0)
    with pytest.raises(InputError, match="not elementwise"):
        meanfield(nn.Softmax(dim=-1), 1.0)
    with pytest.raises(InputError, match="sigma_w must be a finite number"):
        meanfield("tanh", -1.0)
    with pytest.raises(InputError, match="sigma_b"):
        meanfield("tanh", 1.0, math.nan)
    with pytest.raises(InputError, match="no sigma_w .* makes chi_1 = 1"):
        critical_sigma_w(lambda h: 1e-3 * torch.tanh(h))


# Theory beside the finite net. One layer of x -> phi(W x + b) has E||J^T g||^2 / ||g||^2 = chi_1
# for a gradient g independent of W, so the probe's per-step gradient ratio and RMS singular value
# are both sqrt(chi_1) (not chi_1, which would be the ratio of squared norms). At width n the RMS
# value of one layer averages n^2 entries (spread ~1/n); the gradient ratio of one example through
# one layer spreads ~ 1/sqrt(2n) = 3% at n = 512, ~0.6% over the 4 x 7 (example, layer) pairs
# averaged here. Layers 3..9 are compared: by then the variance has settled at q* (starting near 1).
WIDTH = 512
BODY = slice(4, 11)  # chain steps blocks.3 .. blocks.9 (step 0 is the stem)
RMS_RTOL = 0.02
GRAD_RTOL = 0.04


@pytest.mark.parametrize(
    ("activation", "sigma_w", "sigma_b"), [("tanh", 1.5, 0.1), ("tanh", 0.8, 0.2), ("relu", 1.2, 0.1)]
)
def test_theory_beside_finite_net(activation, sigma_w, sigma_b):
    torch.manual_seed(0)
    model = ds.create_model("plain_mlp", depth=10, width=WIDTH, activation=activation, sigma_w=sigma_w, sigma_b=sigma_b)
    x = torch.randn(4, WIDTH, generator=torch.Generator().manual_seed(1))
    report = ds.probe(model, x, lyapunov=0, sigma_min=False)
    gain = meanfield(activation, sigma_w, sigma_b).layer_gain
    names = report.column("name")[BODY]
    assert names[0] == "blocks.3" and names[-1] == "blocks.9"
    rms = np.exp(np.mean(np.log(report.column("local_rms")[BODY])))
    grad = np.exp(np.mean(np.log(report.column("grad_ratio")[BODY])))
    assert rms == pytest.approx(gain, rel=RMS_RTOL)
    assert grad == pytest.approx(gain, rel=GRAD_RTOL)
