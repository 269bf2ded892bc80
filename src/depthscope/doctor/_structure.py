"""What the treatments know of a model's structure: its body blocks, which of them carry a skip
connection, their branches' layers and norms, their LayerNorm placement, the body's activation; and
how a block is found and replaced inside a copy of the model.

The blocks are the probe's body (`Report.body_span`: the chain's steps without stem and head); each
step's ``module`` is the block. A block's layout comes, in this order, from

1. the table of known classes, `LAYOUTS` (the zoo's blocks, the doctor's own wrappers) and
   `LIBRARY_LAYOUTS` (torchvision's and timm's ResNet blocks, Hugging Face BERT and GPT-2 layers,
   keyed by ``"module:Class"`` so that no optional library is imported): whether the block has a
   skip, the attribute paths of its branch's weight layers and norms in order, and the placement
   of its LayerNorm;
2. for any other block, a measurement of whether it has a skip (`measured_skip`): a copy of the
   block with every Linear and Conv weight and bias set to zero is run on a random non-negative
   input of the block's shape. A block x + F(x) (or relu(x + F(x)), whose inputs are
   non-negative) then returns its input exactly; a plain block phi(W x + b) returns the constant
   phi(0). No branch layout is known for such a block, so Fixup and zero-gamma skip it.

Functions here never modify a model; `treated_copy` deep-copies one first.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from depthscope._errors import InputError
from depthscope.doctor._blocks import ScaledResidual
from depthscope.doctor._treatment import Case
from depthscope.zoo import make_activation
from depthscope.zoo import mlp as zoo_mlp
from depthscope.zoo import transformer as zoo_transformer
from depthscope.zoo.cifar_resnet import BasicBlock, PlainBlock, PreActBlock
from depthscope.zoo.procresnet import Transition

# LayerNorm placements in a transformer block.
POST_LN = "post"  # x <- LN(x + F(x))                     (Vaswani et al. 2017, BERT)
PRE_LN = "pre"  # x <- x + F(LN(x))                      (GPT-2)
DEEPNORM = "deepnorm"  # x <- LN(alpha x + F(x))        (Wang et al. 2022)

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# The zoo's linear activation a * x (its class is private to the zoo; its face builds one).
ZOO_LINEAR = type(make_activation("linear"))
# Elementwise activations recognised in a plain stack, by the name the mean-field theory uses.
ACTIVATION_NAMES: dict[type, str] = {
    nn.ReLU: "relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    ZOO_LINEAR: "linear",
}
# Seed of the random input `measured_skip` feeds a block.
SKIP_PROBE_SEED = 0
# A block whose zero-weight copy returns its input to this tolerance has a skip connection; the
# copy computes x + 0 (or relu(x + 0) on x >= 0), which float arithmetic returns exactly.
SKIP_ATOL = 1e-6


@dataclass(frozen=True)
class Layout:
    """How a known block is built.

    Attributes:
        skip: the block adds its input (or a shortcut of it) to its branch.
        branch: attribute paths of the branch's weight layers, input to output (Fixup's layers).
        norms: attribute paths of the branch's normalisation layers, input to output.
        ends_with_norm: the branch's last operation is ``norms[-1]`` (zeroing its scale zeroes the
            branch: Goyal et al.'s zero-gamma).
        placement: `POST_LN`, `PRE_LN` or `DEEPNORM` for transformer blocks, else None.
    """

    skip: bool
    branch: tuple[str, ...] = ()
    norms: tuple[str, ...] = ()
    ends_with_norm: bool = False
    placement: str | None = None


_CONV_BASIC = Layout(True, ("conv1", "conv2"), ("bn1", "bn2"), ends_with_norm=True)
_CONV_BOTTLENECK = Layout(True, ("conv1", "conv2", "conv3"), ("bn1", "bn2", "bn3"), ends_with_norm=True)

LAYOUTS: dict[type, Layout] = {
    zoo_mlp.PlainBlock: Layout(False, ("linear",)),
    zoo_mlp.ResidualBlock: Layout(True, ("fc1", "fc2")),
    zoo_mlp.FixupBlock: Layout(True, ("fc1", "fc2")),
    BasicBlock: _CONV_BASIC,
    # The pre-activation branch ends with a convolution: zero-gamma has no last BN to zero.
    PreActBlock: Layout(True, ("conv1", "conv2"), ("bn1", "bn2")),
    PlainBlock: Layout(False, ("conv1", "conv2"), ("bn1", "bn2"), ends_with_norm=True),
    Transition: Layout(False, ("conv",)),
    zoo_transformer.PostLNBlock: Layout(True, placement=POST_LN),
    zoo_transformer.PreLNBlock: Layout(True, placement=PRE_LN),
    zoo_transformer.DeepNormBlock: Layout(True, placement=DEEPNORM),
    zoo_transformer.ReZeroBlock: Layout(True),
    ScaledResidual: Layout(True),
}
LIBRARY_LAYOUTS: dict[str, Layout] = {
    "torchvision.models.resnet:BasicBlock": _CONV_BASIC,
    "torchvision.models.resnet:Bottleneck": _CONV_BOTTLENECK,
    "timm.models.resnet:BasicBlock": _CONV_BASIC,
    "timm.models.resnet:Bottleneck": _CONV_BOTTLENECK,
    "transformers.models.bert.modeling_bert:BertLayer": Layout(True, placement=POST_LN),
    "transformers.models.gpt2.modeling_gpt2:GPT2Block": Layout(True, placement=PRE_LN),
}


def class_key(module: nn.Module) -> str:
    """``"module:Class"`` of a module's type, the key of `LIBRARY_LAYOUTS`."""
    return f"{type(module).__module__}:{type(module).__qualname__}"


def layout_of(module: nn.Module) -> Layout | None:
    """The layout of a known block class, or None."""
    return LAYOUTS.get(type(module)) or LIBRARY_LAYOUTS.get(class_key(module))


# Measured answers by block and input shape: every treatment's predicates ask for the body's blocks,
# and a skip does not depend on the weights' values (the measurement zeroes them).
_MEASURED: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], bool | None]] = weakref.WeakKeyDictionary()


def measured_skip(module: nn.Module, in_shape: tuple[int, ...]) -> bool | None:
    """Whether ``module`` has a skip connection, measured (see the module docstring); None when the
    zero-weight copy cannot be run on a float input of per-example shape ``in_shape``."""
    known = _MEASURED.setdefault(module, {})
    if in_shape not in known:
        known[in_shape] = _measure_skip(module, in_shape)
    return known[in_shape]


@torch.no_grad()
def _measure_skip(module: nn.Module, in_shape: tuple[int, ...]) -> bool | None:
    if not weight_layers(module):
        # No branch to zero: a bare activation (ReLU passes the non-negative probe input) would read
        # as a skip connection. A block without weight layers is not called residual.
        return False
    probe = copy.deepcopy(module).eval()
    for layer in weight_layers(probe):
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()
    params = list(probe.parameters())
    dtype = params[0].dtype if params and params[0].is_floating_point() else torch.get_default_dtype()
    gen = torch.Generator().manual_seed(SKIP_PROBE_SEED)
    x = torch.randn(2, *in_shape, generator=gen).abs().to(dtype)
    try:
        y = probe(x)
    except (RuntimeError, TypeError, ValueError, IndexError):
        return None
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return False
    return bool(torch.allclose(y, x, rtol=0.0, atol=SKIP_ATOL))


def skip_of(module: nn.Module, in_shape: tuple[int, ...]) -> bool | None:
    """Whether the block ``module`` (per-example input shape ``in_shape``) has a skip connection:
    from the table of known layouts, else measured (`measured_skip`); None if it cannot be told."""
    layout = layout_of(module)
    return layout.skip if layout is not None else measured_skip(module, in_shape)


@dataclass(frozen=True)
class BlockInfo:
    """One body block of a case.

    Attributes:
        name: the chain step's name (a report row's ``name``).
        index: its position in the chain.
        module: the block (the step's ``module``).
        in_shape, out_shape: per-example state shapes S_k and S_{k+1}.
        layout: its `Layout` when its class is known, else None.
        skip: whether it has a skip connection (from the layout, else measured); None if unknown.
    """

    name: str
    index: int
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    layout: Layout | None
    skip: bool | None

    @property
    def shape_preserving(self) -> bool:
        return self.in_shape == self.out_shape

    @property
    def placement(self) -> str | None:
        return None if self.layout is None else self.layout.placement


def body_blocks(case: Case) -> list[BlockInfo]:
    """The body's blocks in chain order (steps without a module are left out)."""
    span = case.report.body_span
    if span is None:
        return []
    rows = {b.index: b for b in case.report.blocks}
    out = []
    for k in range(span[0], span[1] + 1):
        step, row = case.chain.steps[k], rows.get(k)
        if step.module is None or row is None:
            continue
        in_shape, out_shape = tuple(row.in_shape), tuple(row.out_shape)
        layout = layout_of(step.module)
        out.append(BlockInfo(step.name, k, step.module, in_shape, out_shape, layout, skip_of(step.module, in_shape)))
    return out


def plain_blocks(blocks: Iterable[BlockInfo]) -> list[BlockInfo]:
    """The shape-preserving blocks without a skip connection: where a residual wrapper fits."""
    return [b for b in blocks if b.shape_preserving and b.skip is False]


def is_plain_stack(blocks: list[BlockInfo]) -> bool:
    """Every block is known to have no skip connection (a block whose skip could not be measured,
    such as a transformer layer that needs its position embeddings, does not count as plain)."""
    return bool(blocks) and all(b.skip is False for b in blocks)


def residual_blocks(blocks: Iterable[BlockInfo]) -> list[BlockInfo]:
    """The blocks with a skip connection."""
    return [b for b in blocks if b.skip]


def weight_layers(module: nn.Module) -> list[nn.Module]:
    """The Linear and Conv layers inside ``module`` (itself included), in registration order."""
    return [m for m in module.modules() if isinstance(m, WEIGHT_LAYERS)]


def branch_layers(block: BlockInfo, module: nn.Module | None = None) -> list[nn.Module]:
    """The branch's weight layers (input to output) of ``module`` (default: the block's own), by its layout."""
    if block.layout is None:
        return []
    root = block.module if module is None else module
    return [root.get_submodule(p) for p in block.layout.branch]


def branch_norms(block: BlockInfo, module: nn.Module | None = None) -> list[nn.Module]:
    """The branch's normalisation layers (input to output), by its layout."""
    if block.layout is None:
        return []
    root = block.module if module is None else module
    return [root.get_submodule(p) for p in block.layout.norms]


def activation_of(blocks: Iterable[BlockInfo]) -> nn.Module | None:
    """The one elementwise activation of the body (an instance), or None when there is none, one
    not in `ACTIVATION_NAMES`, or several kinds (or the zoo's linear with several slopes)."""
    found: list[nn.Module] = []
    for b in blocks:
        found += [m for m in b.module.modules() if type(m) in ACTIVATION_NAMES]
    if not found:
        return None
    first = found[0]
    same = all(type(m) is type(first) and getattr(m, "slope", None) == getattr(first, "slope", None) for m in found)
    return first if same else None


def activation_name(activation: nn.Module) -> str:
    """ "relu", "tanh", ..., "linear (slope 1.5)" for the zoo's linear activation."""
    name = ACTIVATION_NAMES[type(activation)]
    if isinstance(activation, ZOO_LINEAR):
        return f"{name} (slope {activation.slope:g})"
    return name


def module_path(model: nn.Module, module: nn.Module) -> str:
    """The dotted path of ``module`` inside ``model`` (found by identity; "" for the model itself).

    Raises:
        InputError: ``module`` is not part of ``model``.
    """
    for name, m in model.named_modules(remove_duplicate=False):
        if m is module:
            return name
    raise InputError(
        f"{type(module).__name__} is not a submodule of the {type(model).__name__} given: "
        "apply a treatment to the model the case was diagnosed on"
    )


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` at the dotted ``path`` of ``model`` (in place; call it on a copy).

    Raises:
        InputError: the path is empty (a block that is the whole model cannot be replaced in it).
    """
    if not path:
        raise InputError(
            f"cannot replace the whole {type(model).__name__} inside itself; its blocks must be submodules"
        )
    model.set_submodule(path, new)


def treated_copy(model: nn.Module, blocks: Iterable[BlockInfo]) -> tuple[nn.Module, list[tuple[str, nn.Module]]]:
    """A deep copy of ``model`` and, for each block, its path and its module inside the copy.

    Raises:
        InputError: a block is not a submodule of ``model``.
    """
    paths = [module_path(model, b.module) for b in blocks]
    new = copy.deepcopy(model)
    return new, [(p, new.get_submodule(p)) for p in paths]
