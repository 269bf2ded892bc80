"""The experiments, one module per claim or per topic; `EXPERIMENTS` lists all of them.

Each claim module defines one `Experiment` named ``EXPERIMENT`` and registers nothing; the tuple
`EXPERIMENTS` at the bottom of this file is the one list of the built-in claims, and
`depthscope.ledger._registry` registers exactly that list (a new claim is one module plus one line
here). Helpers shared by several claims live in the ``_*_common`` modules; the seeds of independent
runs in `_seeds`.

Residual learning (seed 000); helpers shared by R4-R12 in `_residual_common`, by the trained networks of R1, R3
and R10 in `_training_common`:

* `r01_alignment`: R1, after training, a residual block's F(x) aligns with the error t - x (denoising digits);
* `r02_delta`: R2, Delta-learning on a physical system depthscope computes itself (system in `_clusters`);
* `r03_degradation`: R3, deeper plain MLPs train worse than shallower ones, residual ones do not (and ReZero's speed);
* `r04_telescoping`: R4, x_L = x_0 + sum_i F_i(x_i), and F_i -> 0 makes every block the identity;
* `r05_dead_zone`: R5, a soft-thresholding block is exactly the identity in its dead zone;
* `r06_eigenvalues`: R6, eig(I + W) = 1 + eig(W), clustered near 1 for small W;
* `r07_weyl`: R7, Weyl's interval [1 - eps, 1 + eps] for the singular values of I + W;
* `r08_product_bound`: R8, L blocks amplify by at most (1 + eps)^L;
* `r09_alpha_jacobian`: R9, the Jacobian I + alpha J_F of y = x + alpha F(x) and its eigenvalues;
* `r10_fighting`: R10, large alpha makes the backward signals of consecutive blocks anti-aligned (they fight);
* `r11_alpha_gradient`: R11, dL/dalpha = (grad_y L)^T F(x);
* `r12_lockstep`: R12, a deep linear residual stack near zero: equal block gradients, update ~ L.

The Jacobian as an engineering tool (seed 001); the digits input size in `_engineering_common`, the
transformers by LayerNorm placement, their backward signal and its decay fit shared by J3 and J4 in `_transformer_common`:

* `j1_densenet`: J1, per-layer ||d out_k / d in_0||_F is more stable across depth for ResNet than DenseNet;
* `j2_growth`: J2, identity-initialised new blocks keep a trained net's function; (1 + eps)^m bounds how many fit;
* `j3_postln`: J3, Post-LN: the LayerNorm Jacobians make gradients vanish exponentially toward the input;
* `j4_preln`: J4, Pre-LN: g_l = g_{l+1} + ... is an identity gradient highway with no exponential decay;
* `j5_nas`: J5, NAS: with skips present with probability s, E ||g_0||^2 / ||g_L||^2 = (sigma^2 + s)^L;
* `j6_lesion`: J6, pruning residual branches changes the effective depth and the number of gradient paths;
* `j7_bdf2`: J7, BDF-2's Newton matrix is I - h beta0 J_f, stable with large steps where explicit methods need tiny ones;
* `j8_cstr`: J8, CSTR: J_CSTR = J_closed - D I, dilution shifts every eigenvalue by -D (Gray-Scott's Hopf point).

Fibonacci and norm preservation (seed 002); constants shared by N1-N4 in `_norm_common`:

* `n1_fibonacci`: N1, the Fibonacci recurrence grows like phi^n and aligns with phi's eigenvector;
* `n2_near_identity`: N2, I + DF has singular values within ||DF||_2 of 1;
* `n3_depth_law`: N3, the per-block gradient norm ratio approaches 1 as depth grows;
* `n4_procrustes`: N4, transitions break norm preservation, Procrustes projection repairs it.

Vanishing and exploding gradients (seed 003), from the scalar tower (V1-V3) through matrix products
(V4-V8) to recurrences and Lyapunov exponents (V9, V10). Every V experiment builds its system from
the model zoo or from `depthscope.dynamics` in float64, measures with autograd, `depthscope.probe` or
`depthscope.lyapunov`, and judges against a refutation condition fixed in advance; helpers and the
vanishing / exploding / marginal convention in `_vanishing_common`:

* `v01_scalar_tower`: V1, d f_L / d w_1 = x prod_k sigma'(z_k);
* `v02_sigmoid_bound`: V2, sigmoid' <= 0.25 and tanh' <= 1 bound a tower's gradient factor;
* `v03_linear_slope`: V3, slope 1.5 gives 1.5^10 ~ 57 and 1.5^20 ~ 3325;
* `v04_deep_linear`: V4, dE/dW_k of a deep linear network is a product of the other weights;
* `v05_jacobian_bound`: V5, J_k = D_k W_k and the gradient bound prod_k ||J_k||_2;
* `v06_saturation`: V6, expansive W with saturated activations can still vanish;
* `v07_ill_conditioned`: V7, an ill-conditioned Jacobian vanishes and explodes at once;
* `v08_isometry`: V8, orthogonal W with slope-1 activations is an isometry (dynamical isometry);
* `v09_linear_rnn`: V9, a linear RNN vanishes for spectral radius < 1 and explodes for > 1;
* `v10_lyapunov`: V10, the sign of the top Lyapunov exponent predicts vanishing, exploding or marginal.
"""

from depthscope.ledger.claims import (
    j1_densenet,
    j2_growth,
    j3_postln,
    j4_preln,
    j5_nas,
    j6_lesion,
    j7_bdf2,
    j8_cstr,
    n1_fibonacci,
    n2_near_identity,
    n3_depth_law,
    n4_procrustes,
    r01_alignment,
    r02_delta,
    r03_degradation,
    r04_telescoping,
    r05_dead_zone,
    r06_eigenvalues,
    r07_weyl,
    r08_product_bound,
    r09_alpha_jacobian,
    r10_fighting,
    r11_alpha_gradient,
    r12_lockstep,
    v01_scalar_tower,
    v02_sigmoid_bound,
    v03_linear_slope,
    v04_deep_linear,
    v05_jacobian_bound,
    v06_saturation,
    v07_ill_conditioned,
    v08_isometry,
    v09_linear_rnn,
    v10_lyapunov,
)

# In CLAIMS.md order (R, J, N, V; numeric within each), the order `list_experiments` reports.
EXPERIMENTS = (
    r01_alignment.EXPERIMENT,
    r02_delta.EXPERIMENT,
    r03_degradation.EXPERIMENT,
    r04_telescoping.EXPERIMENT,
    r05_dead_zone.EXPERIMENT,
    r06_eigenvalues.EXPERIMENT,
    r07_weyl.EXPERIMENT,
    r08_product_bound.EXPERIMENT,
    r09_alpha_jacobian.EXPERIMENT,
    r10_fighting.EXPERIMENT,
    r11_alpha_gradient.EXPERIMENT,
    r12_lockstep.EXPERIMENT,
    j1_densenet.EXPERIMENT,
    j2_growth.EXPERIMENT,
    j3_postln.EXPERIMENT,
    j4_preln.EXPERIMENT,
    j5_nas.EXPERIMENT,
    j6_lesion.EXPERIMENT,
    j7_bdf2.EXPERIMENT,
    j8_cstr.EXPERIMENT,
    n1_fibonacci.EXPERIMENT,
    n2_near_identity.EXPERIMENT,
    n3_depth_law.EXPERIMENT,
    n4_procrustes.EXPERIMENT,
    v01_scalar_tower.EXPERIMENT,
    v02_sigmoid_bound.EXPERIMENT,
    v03_linear_slope.EXPERIMENT,
    v04_deep_linear.EXPERIMENT,
    v05_jacobian_bound.EXPERIMENT,
    v06_saturation.EXPERIMENT,
    v07_ill_conditioned.EXPERIMENT,
    v08_isometry.EXPERIMENT,
    v09_linear_rnn.EXPERIMENT,
    v10_lyapunov.EXPERIMENT,
)

__all__ = ["EXPERIMENTS"]
