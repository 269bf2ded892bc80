"""The chain: an ordered list of steps x_{k+1} = f_k(x_k).

A network's blocks, an RNN's time steps, a map's iterations and a solver's steps are all chains.
Everything in depthscope that measures works on a `Chain`; adapters turn models into chains.

The adapters (`_find` for any ``nn.Module``, through the registry of `_adapters`, and `_hf` for
Hugging Face models) build lists of `Step` and know nothing of `Chain`; `Chain.from_module` and
`Chain.from_hf` wrap their steps. So
this module sits above the adapters and nothing below it imports it back.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from depthscope._errors import ChainError, NonFiniteError
from depthscope.chain._find import steps_from_module
from depthscope.chain._hf import steps_from_hf
from depthscope.chain._step import Step, StepFn, as_step, run_step


class Chain:
    """An ordered sequence of steps ``x_0 -> x_1 -> ... -> x_L``.

    Args:
        steps: callables ``x -> x`` (shapes may change between steps), ``(name, callable)`` pairs,
            or `Step` objects. Each takes a batch ``(B, *S_k)`` and returns ``(B, *S_{k+1})``.

    A chain built by `Chain.from_module` from a model that needs its input to define the steps
    (captured attention masks, the inputs of an RNN) is bound to that input.
    """

    def __init__(self, steps: Iterable[object]):
        self.steps: list[Step] = [as_step(s, i) for i, s in enumerate(steps)]
        if not self.steps:
            raise ChainError("a chain needs at least one step; got an empty list")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        blocks: Sequence[str | nn.Module] | None = None,
        *,
        example: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> Chain:
        """Find the block sequence of ``module`` and return it as a chain (stem and head included).

        Looks, in order, for: an explicit ``blocks=`` list (submodule names, glob patterns such as
        ``"layer1.*"``, or the modules themselves); a `ChainModule` (depthscope's zoo, which
        states its steps); a registered adapter that recognises the model (Hugging Face
        transformers; torchvision's and timm's ResNets, MobileNets, EfficientNets, ConvNeXts,
        Swin, DenseNet, ViTs, MLP-Mixer, RegNets: `depthscope.chain.register_adapter` adds one);
        an ``nn.Sequential`` (its children); the Sequentials and ModuleLists inside the model,
        nested stages opened, the one with most blocks that composes to the model. Except for a
        Sequential, ``example`` is required: one forward pass records each block's extra arguments
        (attention masks, ...) and the order the blocks run in (the steps' order), and checks that
        block k+1 consumes exactly what block k produced, so the chain composes to the model, and
        that each step gives the same output twice without changing what it was recorded with.
        The steps are ``stem`` (the model up to the first block), the blocks by path, ``head``.
        Wrappers that compute the module's own function (``torch.compile``, ``nn.DataParallel``,
        ``DistributedDataParallel``) are looked through; a TorchScript module raises `ChainError`.

        ``attention_mask`` is passed to the model on every call, like ``example`` bound to the
        chain: for a Hugging Face model a ``(B, T)`` mask of ``example``'s shape (1 for real
        tokens, 0 for padding; each layer gets it as the model itself passes it, as in
        `Chain.from_hf`); for another module whose ``forward`` takes an ``attention_mask``
        argument, whatever that forward expects. Other fixed arguments: wrap the model in a module
        whose ``forward(x)`` passes them. Raises `InputError` for a mask of the wrong shape, and
        for a model that takes none (a torchvision or timm CNN, an ``nn.Sequential``, a
        `ChainModule`, a forward without an ``attention_mask`` argument).
        """
        return cls(steps_from_module(module, blocks, example, attention_mask))

    @classmethod
    def from_hf(cls, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Chain:
        """A Hugging Face ``transformers`` model (BERT, GPT-2, ...) as a chain: embeddings output is
        x_0, each encoder/decoder layer a step (the attention mask passed through), then the head.
        ``input_ids: (B, T)`` long, ``attention_mask: (B, T)`` (1 real, 0 padding) or None. The
        same chain as ``Chain.from_module(model, example=input_ids, attention_mask=...)``, for
        token ids only. Needs the optional extra ``depthscope[hf]``; weights are never downloaded."""
        return cls(steps_from_hf(model, input_ids, attention_mask))

    @classmethod
    def repeat(cls, fn: StepFn, n: int, name: str = "step", jvp=None) -> Chain:
        """The chain ``fn`` applied ``n`` times (an iterated map, a weight-tied network);
        ``jvp`` is an optional analytic tangent map (see `Step`)."""
        if n < 1:
            raise ChainError(f"repeat needs n >= 1, got {n}")
        module = fn if isinstance(fn, nn.Module) else None
        return cls(Step(f"{name}{k}", fn, module, jvp) for k in range(n))

    # -- container protocol -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __getitem__(self, index: int | slice) -> Step | Chain:
        if isinstance(index, slice):
            return Chain(self.steps[index])
        return self.steps[index]

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.steps[:4])
        more = f", ... ({len(self.steps)} steps)" if len(self.steps) > 4 else ""
        return f"Chain([{names}{more}])"

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def modules(self) -> list[nn.Module]:
        """The distinct modules behind the steps (for mode checks), in first-use order."""
        seen: dict[int, nn.Module] = {}
        for s in self.steps:
            if s.module is not None:
                seen.setdefault(id(s.module), s.module)
        return list(seen.values())

    def select(self, pattern: str) -> list[int]:
        """Indices of the steps whose name matches a glob pattern."""
        return [k for k, s in enumerate(self.steps) if fnmatch.fnmatchcase(s.name, pattern)]

    # -- evaluation -----------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for k, step in enumerate(self.steps):
            x = run_step(step, k, x)
        return x

    def states(self, x: torch.Tensor, check_finite: bool = True) -> list[torch.Tensor]:
        """All states ``[x_0, x_1, ..., x_L]`` of one forward pass.

        Raises:
            InputError: a step rejected its input (wrong shape or dtype); names the step.
            NonFiniteError: a NaN or Inf first appeared in the output of some step; names it.
        """
        out = [x]
        if check_finite and x.is_floating_point() and not torch.isfinite(x).all():
            raise NonFiniteError("the input x_0 contains NaN or Inf", step=-1, step_name="input")
        for k, step in enumerate(self.steps):
            x = run_step(step, k, x)
            if check_finite and x.is_floating_point() and not torch.isfinite(x).all():
                raise NonFiniteError(
                    f"NaN/Inf first appears in the output of step {k} ({step.name!r}); "
                    f"its input was finite with max |x| = {out[-1].abs().max().item():.3g}",
                    step=k,
                    step_name=step.name,
                )
            out.append(x)
        return out
