"""Claim J8 (seed 001): CSTR, J_CSTR = J_closed - D I; dilution shifts every eigenvalue by -D and stabilises a mode once D > lambda."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from depthscope._errors import InputError
from depthscope.dynamics import (
    CSTR,
    exothermic_cstr,
    find_hopf,
    gray_scott,
    gray_scott_starts,
    gray_scott_upper,
    steady_states,
)
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted

J8_JACOBIAN_TOL = 1e-12  # max |J_CSTR - (J_closed - D I)| (autograd, float64)
J8_EIGEN_TOL = 1e-10  # max |eig(J_CSTR) - (eig(J_closed) - D)| at a fixed state
J8_HOPF_TOL = 1e-6  # |D_H numeric - D_H analytic|, the claim's precision
J8_SHIFT_TOL = 0.1  # relative deviation of d Re(lambda)/dD along the branch from the pure shift's -1
J8_HOPF_REFERENCE = 0.0254763  # Gray-Scott k = 0.05: smaller root of (D + k)^2 = D sqrt(k), to 7 digits
J8_DERIVATIVE_STEP = 1e-5  # central difference in D along the branch
GRAY_SCOTT_SPECIES = ("a", "b")


@dataclass(frozen=True)
class _PartlyDilutedCSTR(CSTR):
    """A reactor whose outflow carries only some species: dx/dt = N v(x) - D m (x - x_in), m a 0/1
    mask (n,) (1: diluted, 0: retained, as behind a membrane); its Jacobian is J_closed - D diag(m)."""

    diluted: tuple[float, ...] = ()

    def rhs(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.tensor(self.diluted, dtype=x.dtype)
        return self.closed_rhs(x) - self.dilution * mask * (x - self.feed)


def _gray_scott_reactor(k: float, dilution: float, retained: list[str]) -> CSTR:
    """The library's Gray-Scott CSTR, or (``retained`` species names) its partly diluted version."""
    base = gray_scott(k, dilution)
    if not retained:
        return base
    mask = tuple(0.0 if name in retained else 1.0 for name in GRAY_SCOTT_SPECIES)
    return _PartlyDilutedCSTR(base.stoich, base.rates, base.feed, base.dilution, base.names, diluted=mask)


def gray_scott_hopf_analytic(k: float) -> float:
    """Smaller root of (D + k)^2 = D sqrt(k): D^2 + (2k - sqrt(k)) D + k^2 = 0 (where b^2 = k on the upper branch)."""
    b = 2 * k - math.sqrt(k)
    return (-b - math.sqrt(b * b - 4 * k * k)) / 2


def _sorted_eigenvalues(J: np.ndarray) -> np.ndarray:
    lam = np.linalg.eigvals(J)
    return lam[np.lexsort((lam.imag, lam.real))]


def _fixed_state_checks(
    reactors: Mapping[str, Callable[[float], CSTR]], setting: Mapping[str, Any], g: torch.Generator
) -> dict:
    """At random states x (fixed), for each reactor and dilution: autograd J_CSTR against
    J_closed - D I, and the eigenvalues of J_CSTR against those of J_closed shifted by -D."""
    jac_err, eig_err = {}, {}
    for name, at in reactors.items():
        jmax, emax = 0.0, 0.0
        for D in setting["dilutions"]:
            reactor = at(D)
            for _ in range(setting["n_states"]):
                x = torch.rand(reactor.n, generator=g, dtype=torch.float64)
                J, Jc = reactor.jacobian(x).numpy(), reactor.closed_jacobian(x).numpy()
                jmax = max(jmax, float(np.max(np.abs(J - (Jc - D * np.eye(reactor.n))))))
                emax = max(emax, float(np.max(np.abs(_sorted_eigenvalues(J) - (_sorted_eigenvalues(Jc) - D)))))
        jac_err[name], eig_err[name] = jmax, emax
    return {"jacobian_error": jac_err, "eigenvalue_shift_error": eig_err}


def _upper_leading(k: float, D: float, retained: list[str]) -> tuple[float, float, np.ndarray] | None:
    """(Re of the leading eigenvalue of J_CSTR, of J_closed) at the upper steady state for dilution D,
    and the state (2,); None where the reactor has no steady state with b > 0."""
    states = [s for s in steady_states(_gray_scott_reactor(k, D, retained), gray_scott_starts()) if s.x[1] > 0]
    if not states:
        return None
    up = gray_scott_upper(states)
    return float(up.eigenvalues[0].real), float(up.closed_eigenvalues[0].real), up.x


def _branch_checks(setting: Mapping[str, Any]) -> dict:
    """Along the Gray-Scott upper branch: the Hopf point (``find_hopf``) against the closed form, the
    stability of the branch on either side, and how fast its leading eigenvalue moves with D."""
    k, retained = setting["k"], setting["retained"]
    analytic = gray_scott_hopf_analytic(k)
    try:
        hopf = find_hopf(
            lambda D: _gray_scott_reactor(k, D, retained),
            gray_scott_upper,
            tuple(setting["hopf_bracket"]),
            gray_scott_starts(),
        )
    except InputError as err:
        return {"hopf": None, "hopf_error": str(err), "analytic": analytic}
    D_H = hopf.dilution
    side = {}
    for label, D in (("below", D_H - setting["margin"]), ("above", D_H + setting["margin"])):
        lead = _upper_leading(k, D, retained)
        side[label] = None if lead is None else {"D": D, "re_cstr": lead[0], "re_closed": lead[1]}
    h = J8_DERIVATIVE_STEP
    plus, minus = _upper_leading(k, D_H + h, retained), _upper_leading(k, D_H - h, retained)
    slope = (plus[0] - minus[0]) / (2 * h)
    ref = _upper_leading(k, setting["d_ref"], retained)
    return {
        "hopf": D_H,
        "analytic": analytic,
        "frequency": hopf.frequency,
        "closed_re_at_hopf": float(hopf.state.closed_eigenvalues[0].real),
        "sides": side,
        "slope_along_branch": slope,
        "reference": None
        if ref is None
        else {
            "D": setting["d_ref"],
            "re_cstr": ref[0],
            "fixed_state_prediction": setting["d_ref"] + ref[0],
            "state": ref[2].tolist(),
        },
    }


def _measure_j8(setting: Mapping[str, Any], seed: int) -> dict:
    """Fixed-state Jacobian and eigenvalue checks (Gray-Scott and the exothermic CSTR), then the
    Gray-Scott upper branch: Hopf point, stabilisation, and the motion of its leading eigenvalue."""
    g = torch.Generator().manual_seed(seed)
    k, retained = setting["k"], setting["retained"]
    reactors = {"gray_scott": lambda D: _gray_scott_reactor(k, D, retained)}
    if not retained:
        reactors["exothermic"] = lambda D: exothermic_cstr(dilution=D)
    return {**_fixed_state_checks(reactors, setting, g), "branch": _branch_checks(setting)}


def _judge_j8(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    jac, eig = max(m["jacobian_error"].values()), max(m["eigenvalue_shift_error"].values())
    if jac > J8_JACOBIAN_TOL or eig > J8_EIGEN_TOL:
        return refuted(
            f"dilution is not a shift by -D I: max |J_CSTR - (J_closed - D I)| = {jac:.3g}, max eigenvalue deviation from "
            f"eig(J_closed) - D = {eig:.3g} at fixed states"
        )
    br = m["branch"]
    if br["hopf"] is None:
        return refuted(f"no Hopf point found on the upper branch in {setting['hopf_bracket']}: {br['hopf_error']}")
    below, above = br["sides"]["below"], br["sides"]["above"]
    if abs(br["hopf"] - br["analytic"]) > J8_HOPF_TOL or below is None or above is None:
        return refuted(f"Hopf point D_H = {br['hopf']:.8f} against the closed form {br['analytic']:.8f}")
    if not (below["re_cstr"] > 0 > above["re_cstr"] and below["re_closed"] > 0 and above["re_closed"] > 0):
        return refuted(
            f"dilution did not stabilise the upper branch across D_H: Re lambda = {below['re_cstr']:.3g} at D = {below['D']:.4f}, "
            f"{above['re_cstr']:.3g} at D = {above['D']:.4f} (closed: {below['re_closed']:.3g}, {above['re_closed']:.3g})"
        )
    shift = (
        f"J_CSTR = J_closed - D I to {jac:.1g} (autograd) and eig shifts by exactly -D to {eig:.1g} at fixed states; "
        f"D_H = {br['hopf']:.7f} from find_hopf vs {br['analytic']:.7f} from (D + k)^2 = D sqrt(k); the closed mode there has "
        f"Re lambda = {br['closed_re_at_hopf']:.7f} = D_H, unstable below (Re {below['re_cstr']:+.4f}) and stable above "
        f"(Re {above['re_cstr']:+.4f}) D_H"
    )
    slope = br["slope_along_branch"]
    if abs(slope + 1.0) > J8_SHIFT_TOL:
        ref = br["reference"]
        extra = ""
        if ref is not None:
            extra = (
                f"; shifting the eigenvalue at the steady state of D = {ref['D']:g} (Re {ref['re_cstr']:+.4f}) predicts stability "
                f"from D = {ref['fixed_state_prediction']:.4f}, {abs(ref['fixed_state_prediction'] / br['hopf'] - 1):.0%} off D_H"
            )
        return qualified(
            f"{shift}. But the steady state moves with D: along the upper branch d Re(lambda)/dD = {slope:.3f}, not the pure "
            f"shift's -1, so 'D > lambda' holds with lambda taken at the steady state of the same D{extra}"
        )
    return confirmed(f"{shift}; along the branch d Re(lambda)/dD = {slope:.3f}, close to the pure shift's -1")


def _plot_j8(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    br = m["branch"]
    k, retained = setting["k"], setting["retained"]
    lo, hi = setting["hopf_bracket"]
    Ds, re_cstr, re_closed = [], [], []
    for D in np.linspace(lo, hi, 12):
        lead = _upper_leading(k, float(D), retained)
        if lead is not None:
            Ds.append(D)
            re_cstr.append(lead[0])
            re_closed.append(lead[1])
    ax.plot(Ds, re_cstr, "o-", ms=3, label="Re λ(J_CSTR) at the steady state x*(D)")
    ax.plot(Ds, re_closed, "s-", ms=3, label="Re λ(J_closed) at x*(D)")
    ax.plot(Ds, Ds, "k:", lw=1, label="D")
    ax.axhline(0.0, color="grey", lw=0.8)
    if br.get("hopf") is not None:
        ax.axvline(br["hopf"], color="grey", lw=0.8, ls="--", label=f"D_H = {br['hopf']:.5f}")
        ref = br.get("reference")
        if ref is not None:
            grid = np.linspace(ref["D"], hi, 20)
            ax.plot(
                grid,
                ref["re_cstr"] - (grid - ref["D"]),
                "--",
                lw=1,
                label=f"state frozen at D = {ref['D']:g}, shifted by −D",
            )
    ax.set_xlabel("dilution D")
    ax.set_ylabel("leading Re λ (upper branch)")
    ax.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="J8",
    statement=(
        "CSTR: J_CSTR = J_closed - D I; dilution shifts every eigenvalue by -D and stabilises a mode with lambda > 0 "
        "once D > lambda."
    ),
    source="001",
    expected=(
        "autograd J_CSTR equals J_closed - D I and its eigenvalues are those of J_closed minus D at any fixed state "
        "(Gray-Scott and an exothermic CSTR); Gray-Scott (k = 0.05) loses its unstable mode at D_H = 0.0254763 (find_hopf) "
        "= the root of (D + k)^2 = D sqrt(k), where the closed mode's Re lambda equals D_H"
    ),
    refuted_if=(
        f"max |J_CSTR - (J_closed - D I)| > {J8_JACOBIAN_TOL:g} or an eigenvalue deviates from eig(J_closed) - D by more "
        f"than {J8_EIGEN_TOL:g}; or find_hopf misses the closed form by more than {J8_HOPF_TOL:g}; or the upper branch is "
        f"not unstable below and stable above D_H. Qualified if along the branch d Re(lambda)/dD differs from -1 by more "
        f"than {J8_SHIFT_TOL:.0%} (the steady state moving with D)"
    ),
    presets={
        "tiny": {
            "k": 0.05,
            "dilutions": [0.0, 0.03],
            "n_states": 3,
            "hopf_bracket": [0.02, 0.05],
            "margin": 0.003,
            "d_ref": 0.02,
            "retained": [],
        },
        "quick": {
            "k": 0.05,
            "dilutions": [0.0, 0.01, 0.03, 0.1],
            "n_states": 10,
            "hopf_bracket": [0.02, 0.05],
            "margin": 0.003,
            "d_ref": 0.02,
            "retained": [],
        },
        "full": {
            "k": 0.05,
            "dilutions": [0.0, 0.001, 0.01, 0.03, 0.1, 1.0],
            "n_states": 100,
            "hopf_bracket": [0.02, 0.05],
            "margin": 0.001,
            "d_ref": 0.02,
            "retained": [],
        },
    },
    measure=_measure_j8,
    judge=_judge_j8,
    plot=_plot_j8,
    counterexample={"retained": ["b"]},
    references=(
        "Gray & Scott 1983/1984, autocatalytic reactions in the isothermal CSTR",
        "Uppal, Ray & Poore 1974, dynamic behaviour of continuous stirred tank reactors",
    ),
)
