"""Stateful steps: a step must give the same output twice and leave its recorded arguments alone.

A step bound to arguments recorded on a reference pass (an attention mask, position embeddings,
and, by mistake, a key/value cache) is a pure function of its input only if those arguments stay
as they were. A Hugging Face decoder called with ``use_cache=True`` appends to its cache each time
the layer runs: the chain still composes to the model on the first pass, but every later call
attends over a longer, stale cache, and the measured Jacobians were silently wrong (Llama's
per-layer RMS gain 1.016 against the true 1.184). Running each step a second time on the same
input and fingerprinting the recorded arguments catches any such step at the cost of one more
forward pass of the chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from depthscope._errors import ChainError
from depthscope.chain._step import Step, run_step

# A pure step evaluated twice on the same input returns the same values (CPU kernels are
# deterministic for fixed shapes); a difference beyond this many units in the last place of the
# output's largest entry means the step changed between calls (the slack covers reductions whose
# order may vary on accelerators; a growing key/value cache moves outputs by percents).
REPEAT_NOISE_ULPS = 16
# How deep the fingerprint looks inside recorded objects: the blocks dict, a call's (args, kwargs),
# a kwargs dict, a cache object, its list of layers, a layer, its tensors: seven levels.
FINGERPRINT_DEPTH = 8


def fingerprint(obj: Any, depth: int = FINGERPRINT_DEPTH) -> list[tuple[str, Any]]:
    """The tensors (cloned) and container sizes reachable from ``obj``, as ``(path, value)`` pairs.

    Walks tuples, lists, dicts and the attributes of plain objects (a cache object) to ``depth``
    levels. Used to see whether calling a step changed anything it was recorded with.
    """
    out: list[tuple[str, Any]] = []

    def walk(o: Any, path: str, d: int) -> None:
        if isinstance(o, torch.Tensor):
            out.append((path, o.detach().clone()))
        elif d <= 0 or o is None or isinstance(o, (bool, int, float, str, torch.dtype, torch.device)):
            return
        elif isinstance(o, (tuple, list)):
            out.append((f"{path}.len", len(o)))
            for i, v in enumerate(o):
                walk(v, f"{path}[{i}]", d - 1)
        elif isinstance(o, dict):
            out.append((f"{path}.len", len(o)))
            for key, v in o.items():
                walk(v, f"{path}[{key!r}]", d - 1)
        elif hasattr(o, "__dict__") and not isinstance(o, torch.nn.Module):
            # Modules are the model's own parameters, not call state; their buffers do not move here.
            for key, v in vars(o).items():
                walk(v, f"{path}.{key}", d - 1)

    walk(obj, "", depth)
    return out


def _same(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> str | None:
    """None if two fingerprints agree, else the path of the first difference."""
    if [p for p, _ in a] != [p for p, _ in b]:
        return next((p for (p, _), (q, _) in zip(a, b) if p != q), "a container's size")
    for (path, u), (_, v) in zip(a, b):
        if isinstance(u, torch.Tensor):
            # equal_nan: an argument that holds NaN (a NaN input) has not changed for that.
            if u.shape != v.shape or u.dtype != v.dtype or not _equal(u, v):
                return path
        elif u != v:
            return path
    return None


def _equal(u: torch.Tensor, v: torch.Tensor) -> bool:
    if u.is_floating_point() or u.is_complex():
        return bool(torch.equal(u, v) or torch.allclose(u, v, rtol=0.0, atol=0.0, equal_nan=True))
    return bool(torch.equal(u, v))


def fingerprints(recorded: dict[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    """`fingerprint` of each step's recorded arguments, by step name."""
    return {name: fingerprint(args) for name, args in recorded.items()}


def check_steps_repeatable(
    steps: Sequence[Step],
    states: Sequence[torch.Tensor],
    recorded_before: dict[str, list[tuple[str, Any]]],
    recorded: dict[str, Any],
) -> None:
    """Raise if a step is not a pure function of its input.

    ``states = [x_0, ..., x_L]`` are the states of one earlier pass (of ``steps``, or of the model
    they were cut from); each step is run once more on its input ``states[k]`` and must return
    ``states[k + 1]`` (to ``REPEAT_NOISE_ULPS``);
    ``fingerprints(recorded)``, the arguments each named step was recorded with, must still equal
    ``recorded_before``, taken before the first pass. Costs one forward pass of the chain.

    Raises:
        ChainError: names the first step whose output changed, or the recorded argument that did.
    """
    with torch.no_grad():
        for k, step in enumerate(steps):
            again = run_step(step, k, states[k])
            first = states[k + 1]
            if first.is_floating_point() and not bool(torch.isfinite(first).all()):
                # NaN != NaN: a non-finite state is for the probe's finiteness check to name, not
                # evidence of state; the steps after it see non-finite input too.
                break
            if again.shape != first.shape:
                change = float("inf")
            elif first.is_floating_point():
                change = float((again - first).abs().max())
            else:
                change = 0.0 if torch.equal(again, first) else float("inf")
            floor = (
                REPEAT_NOISE_ULPS * torch.finfo(first.dtype).eps * float(first.abs().max())
                if first.is_floating_point()
                else 0.0
            )
            if not change <= floor:
                raise ChainError(
                    f"step {k} ({step.name!r}) is stateful: called twice on the same input it returned "
                    f"outputs that differ by up to {change:.3g}. A chain's steps must be pure functions of "
                    "their input (a key/value cache, a counter or running statistics updated on each "
                    "call breaks this; for Hugging Face models pass use_cache=False)"
                )
    after = fingerprints(recorded)
    for k, step in enumerate(steps):
        where = _same(recorded_before[step.name], after[step.name]) if step.name in recorded else None
        if where is not None:
            raise ChainError(
                f"step {k} ({step.name!r}) is stateful: calling it changed an argument it was recorded "
                f"with (at {where}), such as a key/value cache that grows on each call (for Hugging Face "
                "models pass use_cache=False), so its Jacobian would change from call to call"
            )
