"""The treatments, one module per published fix; `TREATMENTS` lists all of them, in the order the
registry (`depthscope.doctor._registry`) registers them. A new treatment is one module plus one line
here; every one is exercised by tests/doctor/treatments/test_conformance.py.

* `criticality`: `Criticality`, weights redrawn at the edge of chaos (orthogonal where isometry is achievable);
* `residual`: `ReZero` (x + alpha F(x), alpha = 0 learnable) and `StableResNet` (alpha = 1/sqrt(L));
* `zero_gamma`: `ZeroGamma`, the last BatchNorm of each residual branch at scale 0;
* `fixup`: `Fixup`, each branch's last layer zero, the others times L^(-1/(2m-2)), no normalisation;
* `deepnorm`: `DeepNorm`, Post-LN -> LN(alpha x + G(x)) with the branch init gain beta;
* `preln`: `PreLN`, Post-LN -> Pre-LN (with GPT-2's 1/sqrt(2N) on the branches' output projections);
* `admin`: `Admin`, Post-LN kept, each skip weighted by omega_i from one profiling pass;
* `procrustes`: `Procrustes`, transitions' projections to their nearest scaled isometry;
* `spectral`: `SpectralRescale` (linear / ReLU weights to the critical RMS singular value) and
  `Desaturate` (tanh / sigmoid weights and biases shrunk onto chi_1 = 1).
"""

from depthscope.doctor.treatments.admin import Admin
from depthscope.doctor.treatments.criticality import Criticality
from depthscope.doctor.treatments.deepnorm import DeepNorm
from depthscope.doctor.treatments.fixup import Fixup
from depthscope.doctor.treatments.preln import PreLN
from depthscope.doctor.treatments.procrustes import Procrustes
from depthscope.doctor.treatments.residual import ReZero, StableResNet
from depthscope.doctor.treatments.spectral import Desaturate, SpectralRescale
from depthscope.doctor.treatments.zero_gamma import ZeroGamma

TREATMENTS = (
    Criticality,
    ReZero,
    StableResNet,
    ZeroGamma,
    Fixup,
    DeepNorm,
    PreLN,
    Admin,
    Procrustes,
    SpectralRescale,
    Desaturate,
)

__all__ = [
    "TREATMENTS",
    "Admin",
    "Criticality",
    "DeepNorm",
    "Desaturate",
    "Fixup",
    "PreLN",
    "Procrustes",
    "ReZero",
    "SpectralRescale",
    "StableResNet",
    "ZeroGamma",
]
