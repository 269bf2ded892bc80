"""`LinearizedChain`: one forward pass that keeps, for every step, what is needed to apply its
Jacobian J_k and its transpose J_k^T to many tangents cheaply.

Two routes per step. The tape route (`depthscope.estimators._tape`) records the linear operations
of the step's forward pass (convolutions without bias, BatchNorm as a scale, ReLU as its mask, ...)
and replays them on batches of tangents: J v costs about one forward pass of the step's layers.
Each tape is checked against autograd on one random pair (u, v) before it is used: J^T u from the
tape must equal autograd's, and <u, J v> must equal <J^T u, v> (the adjoint test), to
`TAPE_RTOL`. Tapes with the signature of one that passed (the same calls on the same shapes, see
`LinearTape.signature`, such as the blocks of one ResNet stage) replay through the same code and are
not checked again. A step the tape cannot record, or whose tape fails the check, takes the autograd
route.

Why the autograd route is a double vjp and not ``torch.func.jvp``: on a CPU, functorch's forward mode is dominated by
per-call overhead (measured here: 34 ms for J v through 64 width-256 blocks, against 2.8 ms for
the double-vjp below). We record each step's graph once, y_k = f_k(x_k), and the graph of
g_k(u) = J_k^T u built with ``create_graph``; then

    J_k^T u = grad(y_k, x_k, u)        and        J_k v = grad(g_k, u, v)

are plain autograd calls on retained graphs, and many tangents go through at once with
``is_grads_batched``. Tangent batches have shape ``(P, B, *S_k)``: P tangents per example.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

from depthscope._errors import InputError, NonFiniteError
from depthscope.chain._chain import Chain, run_step
from depthscope.estimators._tape import LinearTape, record

# Explicit Jacobians are built from this many basis tangents at a time (bounds peak memory).
EXPLICIT_CHUNK = 512
# A tape must agree with autograd to this relative tolerance (rounding differences only: the tape
# calls the same kernels in another order).
TAPE_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
TAPE_RTOL_DEFAULT = 1e-2  # half precision
TAPE_CHECK_SEED = 12345
ROUTE_TAPE = "tape"
ROUTE_AUTOGRAD = "autograd"


@contextmanager
def _quiet_batching() -> Iterator[None]:
    # is_grads_batched falls back to a loop for ops with no batching rule and says so; the
    # result is still exact, so the performance notice is not the user's concern.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*performance drop.*")
        warnings.filterwarnings("ignore", message=".*batching rule.*")
        yield


def _raise_if_non_finite(y: torch.Tensor, k: int, name: str, x: torch.Tensor) -> None:
    if not torch.isfinite(y).all():
        raise NonFiniteError(
            f"NaN/Inf first appears in the output of step {k} ({name!r}); its input was "
            f"finite with max |x| = {x.abs().max().item():.3g}",
            step=k,
            step_name=name,
        )


class LinearizedChain:
    """A chain evaluated at one input, ready to apply each step's Jacobian to tangents.

    Args:
        chain: the chain.
        x: input batch ``(B, *S_0)``. States before the first floating-point state (token ids
            entering an embedding) are evaluated but not differentiated.

    Attributes:
        states: ``[x_0, ..., x_L]`` (detached).
        start: index of the first differentiated step (the first step with a float input).
        steps: indices ``start, ..., L-1`` of the differentiated steps.
        n_in, n_out: per-example flattened sizes of each step's input and output.
    """

    def __init__(self, chain: Chain, x: torch.Tensor):
        if not isinstance(x, torch.Tensor):
            raise InputError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0:
            raise InputError("x must have a batch dimension: shape (B, ...), got a scalar")
        self.chain = chain
        self.batch = x.shape[0]
        self.routes: dict[int, str] = {}
        self.route_reasons: dict[int, str] = {}
        self._tape: dict[int, LinearTape] = {}
        states = [x.detach()]
        start = None
        verified: set[tuple] = set()  # signatures of tapes that passed the check
        self._x: dict[int, torch.Tensor] = {}
        self._y: dict[int, torch.Tensor] = {}
        self._u: dict[int, torch.Tensor] = {}
        self._g: dict[int, torch.Tensor] = {}
        if not x.is_floating_point() and x.dtype in (torch.complex64, torch.complex128):
            raise InputError("complex inputs are not supported")
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise NonFiniteError("the input x_0 contains NaN or Inf", step=-1, step_name="input")
        for k, step in enumerate(chain.steps):
            xk = states[-1]
            if start is None and xk.is_floating_point():
                start = k
            if start is None:
                with torch.no_grad():
                    y = run_step(step, k, xk)
            else:
                xin = xk.detach().requires_grad_(True)
                with torch.enable_grad():
                    y, tape, reason = record(lambda t, step=step, k=k: run_step(step, k, t), xin)
                if not y.is_floating_point():
                    raise InputError(
                        f"step {k} ({step.name!r}) returns {y.dtype} from a floating-point input: "
                        "the chain is not differentiable there"
                    )
                if not y.requires_grad:
                    raise InputError(
                        f"step {k} ({step.name!r}) output does not depend differentiably on its input "
                        "(detached, or computed by a non-differentiable operation)"
                    )
                _raise_if_non_finite(y, k, step.name, xk)
                self._x[k], self._y[k] = xin, y
                if tape is not None and tape.signature not in verified:
                    reason = self._check_tape(k, tape)
                    if reason is None:
                        verified.add(tape.signature)
                if reason is None:
                    self._tape[k] = tape
                    del self._x[k], self._y[k]  # the tape replaces the autograd graph
                self.routes[k] = ROUTE_TAPE if reason is None else ROUTE_AUTOGRAD
                if reason is not None:
                    self.route_reasons[k] = reason
            if start is None and y.is_floating_point():  # a float output of the undifferentiated prefix
                _raise_if_non_finite(y, k, step.name, xk)
            states.append(y.detach())
        if start is None:
            raise InputError(
                "no floating-point state in the chain: nothing to differentiate (integer inputs must "
                "enter a step, such as an embedding, that returns floats)"
            )
        self.states = states
        self.start = start
        self.steps = list(range(start, len(chain)))
        self.n_in = {k: states[k][0].numel() for k in self.steps}
        self.n_out = {k: states[k + 1][0].numel() for k in self.steps}

    def _check_tape(self, k: int, tape: LinearTape) -> str | None:
        """None if the tape agrees with autograd at step k on a random pair (u, v), else why not."""
        x, y = self._x[k], self._y[k]
        gen = torch.Generator().manual_seed(TAPE_CHECK_SEED + k)
        v = torch.randn((1, *x.shape), generator=gen, dtype=x.dtype)
        u = torch.randn((1, *y.shape), generator=gen, dtype=y.dtype)
        try:
            jv, jtu_tape = tape.jvp(v), tape.vjp(u)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            return f"the tape failed to replay: {err}"
        if jv.shape != u.shape or jtu_tape.shape != v.shape:
            return "the tape's shapes differ from the step's"
        with torch.enable_grad():
            (jtu,) = torch.autograd.grad(y, x, u[0], retain_graph=True, allow_unused=True)
        jtu = torch.zeros_like(x) if jtu is None else jtu
        rtol = TAPE_RTOL.get(x.dtype, TAPE_RTOL_DEFAULT)
        tiny = torch.finfo(x.dtype).tiny

        def norm(t: torch.Tensor) -> torch.Tensor:  # per example
            return t.reshape(t.shape[0], -1).norm(dim=1).double()

        jv, jtu_tape, u, v = jv[0], jtu_tape[0], u[0], v[0]
        lhs = (u * jv).reshape(self.batch, -1).double().sum(1)
        rhs = (jtu * v).reshape(self.batch, -1).double().sum(1)
        adjoint_ok = (lhs - rhs).abs() <= rtol * (norm(u) * norm(jv) + norm(jtu) * norm(v)) + tiny
        vjp_ok = norm(jtu_tape - jtu) <= rtol * norm(jtu) + tiny
        if not bool(vjp_ok.all()):
            return "the tape's J^T u differs from autograd's"
        if not bool(adjoint_ok.all()):
            return "the tape's J v fails the adjoint test against autograd's J^T u"
        return None

    def route(self, k: int) -> str:
        """How step k's Jacobian is applied: "tape" or "autograd" (see the module docstring)."""
        return self.routes[k]

    # -- single steps -----------------------------------------------------------------------
    def _ensure_double(self, k: int) -> None:
        if k in self._g:
            return
        y = self._y[k]
        u = torch.zeros_like(y, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(y, self._x[k], u, create_graph=True, allow_unused=True)
        if g is None or not g.requires_grad:
            # J^T u does not depend on u: J is zero at this input (the output is differentiable, as
            # checked when the step ran, but does not move with it here: a dead ReLU layer, a
            # recurrence's initial state).
            self._u[k], self._g[k] = u, None
            return
        self._u[k], self._g[k] = u, g

    def _zero_jvp(self, k: int, v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(v.shape[0], *self._y[k].shape, dtype=v.dtype)

    def jvp(self, k: int, v: torch.Tensor) -> torch.Tensor:
        """J_k v for tangents ``v: (P, B, *S_k)``; returns ``(P, B, *S_{k+1})``."""
        if k in self._tape:
            return self._tape[k].jvp(v)
        self._ensure_double(k)
        if self._g[k] is None:
            return self._zero_jvp(k, v)
        with _quiet_batching():
            (out,) = torch.autograd.grad(self._g[k], self._u[k], v, retain_graph=True, is_grads_batched=True)
        return out

    def vjp(self, k: int, u: torch.Tensor) -> torch.Tensor:
        """J_k^T u for cotangents ``u: (P, B, *S_{k+1})``; returns ``(P, B, *S_k)``."""
        if k in self._tape:
            return self._tape[k].vjp(u)
        with _quiet_batching():
            (out,) = torch.autograd.grad(
                self._y[k], self._x[k], u, retain_graph=True, is_grads_batched=True, allow_unused=True
            )
        if out is None:
            return torch.zeros(u.shape[0], *self._x[k].shape, dtype=u.dtype)
        return out

    def explicit(self, k: int) -> torch.Tensor:
        """The exact Jacobian of step k per example, ``(B, n_out, n_in)``.

        Built from whichever side is narrower: n_in basis tangents through J (columns), or n_out
        basis cotangents through J^T (rows).
        """
        if self.n_out[k] < self.n_in[k]:
            rows = self._basis_apply(self.vjp, k, self.states[k + 1])  # (B, n_in, n_out) = J^T
            return rows.mT
        return self._basis_apply(self.jvp, k, self.states[k])

    def _basis_apply(self, op, k: int, like: torch.Tensor) -> torch.Tensor:
        n, B = like[0].numel(), self.batch
        cols = []
        for lo in range(0, n, EXPLICIT_CHUNK):
            hi = min(n, lo + EXPLICIT_CHUNK)
            basis = torch.zeros(hi - lo, B, n, dtype=like.dtype)
            basis[torch.arange(hi - lo), :, torch.arange(lo, hi)] = 1.0
            out = op(k, basis.reshape(hi - lo, *like.shape))
            cols.append(out.reshape(hi - lo, B, -1))
        return torch.cat(cols, 0).permute(1, 2, 0)  # (B, n_result, n)

    # -- every step at once (for Lanczos in lockstep) ---------------------------------------
    def jvp_all(self, ks: Sequence[int], vs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[J_k v_k for k in ks], each ``v_k: (P, B, *S_k)``; autograd steps in one call."""
        out = {k: self._tape[k].jvp(v) for k, v in zip(ks, vs) if k in self._tape}
        rest = [(k, v) for k, v in zip(ks, vs) if k not in self._tape]
        for k, v in rest:
            self._ensure_double(k)
            if self._g[k] is None:
                out[k] = self._zero_jvp(k, v)
        rest = [(k, v) for k, v in rest if self._g[k] is not None]
        if rest:
            with _quiet_batching():
                grads = torch.autograd.grad(
                    [self._g[k] for k, _ in rest], [self._u[k] for k, _ in rest], [v for _, v in rest],
                    retain_graph=True, is_grads_batched=True,
                )
            out.update({k: g for (k, _), g in zip(rest, grads)})
        return [out[k] for k in ks]

    def vjp_all(self, ks: Sequence[int], us: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[J_k^T u_k for k in ks], each ``u_k: (P, B, *S_{k+1})``; autograd steps in one call."""
        out = {k: self._tape[k].vjp(u) for k, u in zip(ks, us) if k in self._tape}
        rest = [(k, u) for k, u in zip(ks, us) if k not in self._tape]
        if rest:
            with _quiet_batching():
                grads = torch.autograd.grad(
                    [self._y[k] for k, _ in rest], [self._x[k] for k, _ in rest], [u for _, u in rest],
                    retain_graph=True, is_grads_batched=True, allow_unused=True,
                )
            for (k, u), g in zip(rest, grads):
                out[k] = g if g is not None else torch.zeros(u.shape[0], *self._x[k].shape, dtype=u.dtype)
        return [out[k] for k in ks]
