"""Design tools: grow a network safely, prune it by measurement, rank candidate architectures before training.

    import depthscope as ds
    bigger = ds.grow(model, n=8, after="blocks.11", init="identity")  # same function, 8 more blocks
    plan = ds.growth_bound(model, x, tol=0.05, eps=0.01)              # how many eps-blocks fit, tested
    smaller, info = ds.prune(model, x, data=(X_val, y_val), keep=0.75)
    profile = ds.paths(model, x)                                      # gradient share by path length
    ranking = ds.rank({"a": net_a, "b": net_b}, x)                    # best first, with NASWOT beside
    ds.skip_density(s=0.5, depth=16, sigma2=0.5)                      # (sigma^2 + s)^L  (claim J5)

The face of the package. Inside (lowest first): `_sites` (a model's blocks, their paths and
skip connections, editing a copy), `_skip` (skip density, `RandomSkipNet`), `_naswot` (the
zero-cost proxy); `_grow` (new blocks, through the doctor's `ScaledResidual`), `_paths` (gradient
paths, effective depth); `_bound` (the growth bound, tested), `_prune` (lesion-ranked removal),
`_rank` (trainability scores and Kendall's tau).
"""

from depthscope.design._bound import GrowthCurve, GrowthPlan, blocks_within, bound_for, growth_bound
from depthscope.design._grow import DesignWarning, grow
from depthscope.design._naswot import NaswotScore, naswot
from depthscope.design._paths import PathProfile, effective_range, paths
from depthscope.design._prune import Lesion, PruneInfo, prune
from depthscope.design._rank import Candidate, Ranking, rank
from depthscope.design._sites import Layout, Site, layout
from depthscope.design._skip import RandomSkipNet, SkipLinear, balanced_skip_density, skip_density

__all__ = [
    "Candidate",
    "DesignWarning",
    "GrowthCurve",
    "GrowthPlan",
    "Layout",
    "Lesion",
    "NaswotScore",
    "PathProfile",
    "PruneInfo",
    "RandomSkipNet",
    "Ranking",
    "Site",
    "SkipLinear",
    "balanced_skip_density",
    "blocks_within",
    "bound_for",
    "effective_range",
    "grow",
    "growth_bound",
    "layout",
    "naswot",
    "paths",
    "prune",
    "rank",
    "skip_density",
]
