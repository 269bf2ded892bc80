"""`LinearTape`: a step's Jacobian as the list of linear operations its forward pass performed.

While a step runs, a ``TorchFunctionMode`` sees every torch call. Calls on tensors that depend on
the step's input are recorded with their linearisation at this input:

* convolutions (grouped and depthwise included) and linear layers become the same layer without
  its bias;
* eval-mode BatchNorm becomes a per-channel scale, weight / sqrt(running_var + eps);
* ReLU, GELU, SiLU, tanh and the other pointwise functions become a multiplication by their derivative;
* LayerNorm and RMSNorm become their closed-form Jacobians along the normalised dimensions;
* softmax, log-softmax and scaled-dot-product attention (every kernel, masked or causal) become
  maps built from the primal probabilities;
* sums, differences, products, quotients, matmul, addmm and einsum follow the sum and product rules;
* reshapes, indexing, splits, padding, transposes and casts apply to the tangent unchanged;
* max-pooling becomes a gather of each window's argmax;
* a few more linear or bilinear functions (average pooling, means, concatenation) go through
  ``torch.func`` one operation at a time; composites such as ``F.multi_head_attention_forward``
  are recorded through the calls they make.

Applying J or J^T to P tangents then costs about P forward passes of the step's layers, batched,
where autograd's double backward costs several (``_convolution_double_backward`` takes a slow path
on a CPU) and forward-mode AD is slower still through BatchNorm. A step whose forward calls
anything not listed records no tape and keeps the autograd route; `LinearizedChain` checks every
tape against autograd before using it.

Tangents have a leading dimension: ``(P, *shape)`` for a node of shape ``shape``.

The modules, in the order a call meets them:

* `linearization`: `Linearization`, the declared result of every rule, and `Op`, one recorded call;
* `rules`: which rule linearises which torch function (the rules themselves live in `layers`,
  `norms`, `attention`, `pooling`, `arithmetic`, `contractions`, `shapes` and `generic`, with their
  helpers in `calls` and `broadcast`);
* `recorder`: the ``TorchFunctionMode`` that applies the rules while a step runs, and `record`;
* `fusion`: folds a BatchNorm scale into the convolution before it;
* `replay`: `LinearTape`, which applies the recorded operations to tangents and cotangents.
"""

from depthscope.estimators._tape.linearization import Linearization, Unsupported
from depthscope.estimators._tape.recorder import record
from depthscope.estimators._tape.replay import LinearTape

__all__ = ["LinearTape", "Linearization", "Unsupported", "record"]
