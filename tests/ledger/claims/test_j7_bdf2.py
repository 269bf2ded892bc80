"""Claim J7: the tiny verdict; BDF-2's step map against characteristic roots, the Newton matrix, the stiff spectrum, the judge."""

from __future__ import annotations

import numpy as np
import pytest
from tests.ledger.claims.helpers import SEED, run_tiny, tiny_setting

import depthscope.ledger as ledger
from depthscope.dynamics import ROBER
from depthscope.ledger.claims import j7_bdf2 as j7


@pytest.mark.parametrize("h_lambda", [0.5, 3.0, 100.0, 1e5])
def test_j7_bdf2_step_map_eigenvalues_are_the_characteristic_roots(h_lambda):
    """Scalar y' = lambda y: roots of (1 - 2/3 h lambda) z^2 - 4/3 z + 1/3 = 0."""
    lam, h = -2.0, h_lambda / 2.0
    eig = np.sort_complex(np.linalg.eigvals(j7._bdf2_step_map(np.array([[lam]]), h)))
    roots = np.sort_complex(np.roots([1 - 2.0 / 3.0 * h * lam, -4.0 / 3.0, 1.0 / 3.0]).astype(complex))
    np.testing.assert_allclose(eig, roots, atol=1e-12)
    assert np.max(np.abs(eig)) < 1.0


def test_j7_stiff_system_has_the_stated_spectrum_and_explicit_radius():
    A, lam, _ = j7._stiff_linear_system(5, 1e3, SEED)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(A)), np.sort(lam), rtol=1e-10)
    assert lam.min() == pytest.approx(-1e3) and lam.max() == pytest.approx(-1.0)
    sp = j7._step_map_spectra(A, 1e3, tiny_setting("J7"))
    for hl, rho in zip(sp["h_lambda"], sp["explicit_euler"]):
        h = hl / 1e3
        assert rho == pytest.approx(np.max(np.abs(1 + h * lam)), rel=1e-9)
    assert max(sp["bdf2"]) <= 1.0 and max(sp["backward_euler"]) <= 1.0


def test_j7_newton_matrix_is_the_residual_jacobian():
    check = j7._newton_matrix_check(ROBER, 1.0, 1e-4, 4)
    assert check["exact_error"] == 0.0
    assert check["fd_error"] < 1e-10
    assert check["gamma2_over_beta0"] == pytest.approx(1.0)  # beta0 = 1 / gamma_2 = 2/3


def test_j7_judge_refutes_an_unstable_step_map():
    s = tiny_setting("J7")
    m = j7._measure_j7(s, SEED)
    assert j7._judge_j7(m, s).verdict == "confirmed"
    unstable = {**m, "spectra": {**m["spectra"], "bdf2": [1.01]}}
    assert j7._judge_j7(unstable, s).verdict == "refuted"


@pytest.mark.parametrize("claim_id, verdict", [("J7", "confirmed")])
def test_tiny_verdicts(claim_id, verdict):
    assert run_tiny(claim_id).verdict == verdict


@pytest.mark.parametrize("claim_id", ["J7"])
def test_measurements_are_deterministic_for_a_seed(claim_id):
    exp = ledger.get_experiment(claim_id)
    s = exp.setting("tiny")
    assert exp.measure(s, 3) == exp.measure(s, 3)
