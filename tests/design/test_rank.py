"""rank: the probe-based trainability score, NASWOT against its definition, Kendall's tau well-formed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.design.design_models import snapshot, tiny, unchanged
from torch import nn

import depthscope as ds
from depthscope.design import RandomSkipNet, naswot, rank
from depthscope.ledger import digits, train_classifier

TRAIN_STEPS = 40  # "trained briefly": enough to separate accuracies on digits, fast


def _candidates() -> dict[str, nn.Module]:
    out = {}
    for name, depth, act in [
        ("plain_mlp", 4, "relu"),
        ("resnet_mlp", 4, "relu"),
        ("plain_mlp", 16, "relu"),
        ("plain_mlp", 16, "tanh"),
        ("resnet_mlp", 16, "relu"),
    ]:
        torch.manual_seed(0)
        out[f"{name}-{depth}-{act}"] = ds.create_model(name, depth=depth, width=16, in_dim=64, activation=act).eval()
    return out


def test_ranking_and_kendall_tau_on_a_tiny_candidate_set():
    data = digits()
    cands = _candidates()
    snaps = {k: snapshot(m) for k, m in cands.items()}
    x = data.x_train[:32]
    ranking = rank(cands, x)
    assert all(unchanged(cands[k], snaps[k]) for k in cands)
    scores = [c.score for c in ranking.candidates]
    assert scores == sorted(scores, reverse=True)
    for c in ranking.candidates:
        assert c.score == pytest.approx(sum(c.parts.values()))
        assert c.parts["gain"] == pytest.approx(-abs(c.log_gain))
        assert all(v <= 0 for v in c.parts.values())
    tanh = ranking["plain_mlp-16-tanh"]
    assert tanh.naswot is None and "no nn.ReLU" in tanh.naswot_reason
    accuracy = {}
    for name, model in cands.items():
        accuracy[name] = train_classifier(
            model, data, steps=TRAIN_STEPS, lr=2e-3, optimizer="adam", seed=0
        ).test_accuracy
    taus = ranking.kendall(accuracy)
    assert taus["probe"]["n"] == 5 and taus["naswot"]["n"] == 4
    for t in taus.values():
        assert math.isfinite(t["tau"]) and -1 <= t["tau"] <= 1


def test_kendall_needs_every_accuracy():
    ranking = rank({"a": ds.create_model("resnet_mlp", depth=2, width=4)}, torch.randn(3, 4))
    with pytest.raises(ds.InputError, match="no accuracy given for a"):
        ranking.kendall({})


def test_naswot_is_the_log_determinant_of_the_hamming_kernel():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(6, 5)
    with torch.no_grad():
        h1 = net[0](x)
        h2 = net[2](torch.relu(h1))
    codes = torch.cat([h1 > 0, h2 > 0], dim=1)
    n_units = codes.shape[1]
    K = torch.tensor(
        [[n_units - int((codes[i] != codes[j]).sum()) for j in range(6)] for i in range(6)], dtype=torch.float64
    )
    result = naswot(net, x)
    assert result.units == n_units == 13
    assert result.score == pytest.approx(float(torch.logdet(K)), rel=1e-10)


def test_naswot_identical_codes_give_minus_infinity():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    x = torch.randn(1, 3).repeat(3, 1)
    assert naswot(net, x).score == float("-inf")


def test_random_skip_candidates_use_the_j5_prediction():
    nets = {"dense": RandomSkipNet(8, 8, 0.5, sigma2=0.5), "sparse": RandomSkipNet(8, 8, 0.0, sigma2=0.5)}
    ranking = rank(nets, torch.randn(4, 8))
    dense = ranking["dense"]
    assert dense.gain_source == "J5 prediction" and dense.parts["gain"] == pytest.approx(0.0)
    # s = 0: E||g_0||^2 = 0.5^8, so the predicted log gain is 8 ln(0.5) / 2
    assert ranking["sparse"].parts["gain"] == pytest.approx(-4 * math.log(2))
    assert ranking.names[0] == "dense"


def test_bad_input():
    with pytest.raises(ds.InputError, match="at least one candidate"):
        rank({}, torch.randn(3, 4))
    with pytest.raises(ds.InputError, match="at least 2 examples"):
        rank([ds.create_model("resnet_mlp", depth=2, width=4)], torch.randn(1, 4))
    with pytest.raises(ds.InputError, match=r"not modules: 'b' \(int\)"):
        rank({"a": ds.create_model("resnet_mlp", depth=2, width=4), "b": 3}, torch.randn(3, 4))


def test_token_input_model_spread_is_over_its_body():
    # regression: body_span holds chain indices, and a token-input model's report has no row for
    # its embedding; slicing the rows by position took the head into the body
    model = tiny("transformer_preln")
    x = model.example_input(4, torch.Generator().manual_seed(0))
    report = ds.probe(model, x, lyapunov=0, sigma_min=False)
    first, last = report.body_span
    logs = [math.log(b.grad_ratio) for b in report.blocks if first <= b.index <= last]
    spread = float(np.std(logs)) if len(logs) > 1 else 0.0
    assert rank({"lm": model}, x, naswot_proxy=False)["lm"].parts["spread"] == pytest.approx(-spread)
