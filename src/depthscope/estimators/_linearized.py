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

Why the autograd route is a double vjp and not ``torch.func.jvp``: on a CPU, functorch's forward
mode is dominated by per-call overhead (measured here: 34 ms for J v through 64 width-256 blocks,
against 2.8 ms for the double-vjp below). We record each step's graph once, y_k = f_k(x_k), and the graph of
g_k(u) = J_k^T u built with ``create_graph``; then

    J_k^T u = grad(y_k, x_k, u)        and        J_k v = grad(g_k, u, v)

are plain autograd calls on retained graphs, and many tangents go through at once with
``is_grads_batched``. Tangent batches have shape ``(P, B, *S_k)``: P tangents per example.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from depthscope._errors import InputError, NonFiniteError
from depthscope.chain import Chain, check_batch, check_examples_independent, run_step
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


@contextmanager
def _autograd_errors(k: int, name: str) -> Iterator[None]:
    """Turn autograd's refusal of a step into an error that names the step (and, for the common
    in-place case, says what to change)."""
    try:
        yield
    except RuntimeError as err:
        if "modified by an inplace operation" in str(err):
            raise InputError(
                f"step {k} ({name!r}) cannot be differentiated by autograd: an in-place operation in it "
                "overwrote a tensor that its backward pass needs (for example o = torch.tanh(h); o.mul_(2)); "
                f"use the out-of-place form (o = o * 2). Autograd said: {err}"
            ) from err
        # A kernel without the (batched, double) backward the autograd route needs: a sparse
        # product, a custom function's backward that cannot be differentiated again.
        raise InputError(
            f"step {k} ({name!r}) cannot be differentiated by autograd's batched products, which its "
            f"calls without a linearisation rule need: {err}"
        ) from err


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

    Checks on the way, each naming the step at fault: finite outputs; no mixing of the examples of
    a batch (`check_examples_independent`: one extra forward of a step, skipped for a step whose
    tape has the signature of one already checked, so a ResNet's 56 blocks cost about 6 step
    forwards, and for B = 1; measured at 0.3% of a resnet56 probe at batch 8 and 2.2% of a 6-layer
    GPT-2's at batch 4, whose stem and head each rerun the model); finite Jacobians (`_finite_once`,
    on each side's first product: 0.2-0.8%); steps that autograd cannot differentiate (in-place
    overwrites). The shares are measured by benchmarks/input_checks.py.

    Raises:
        InputError: ``x`` is not a batch (`check_batch`), a step fails or is not differentiable.
        NonFiniteError: a step's output or Jacobian has NaN/Inf entries.
        ChainError: a step mixes the examples of the batch.

    Attributes:
        states: ``[x_0, ..., x_L]`` (detached).
        start: index of the first differentiated step (the first step with a float input).
        steps: indices ``start, ..., L-1`` of the differentiated steps.
        n_in, n_out: per-example flattened sizes of each step's input and output.
    """

    def __init__(self, chain: Chain, x: torch.Tensor):
        check_batch(x)
        self.chain = chain
        self.batch = x.shape[0]
        self.routes: dict[int, str] = {}
        self.route_reasons: dict[int, str] = {}
        self._tape: dict[int, LinearTape] = {}
        states = [x.detach()]
        start = None
        verified: set[tuple] = set()  # signatures of tapes that passed the check
        # Signatures of tapes whose step was checked not to mix the batch: a tape's signature fixes
        # which entries of the input each recorded call reads, so one check covers them all.
        independent: set[tuple] = set()
        # (step, "jvp" | "vjp") whose products were seen finite once (see `_finite_once`).
        self._finite: set[tuple[int, str]] = set()
        self._x: dict[int, torch.Tensor] = {}
        self._y: dict[int, torch.Tensor] = {}
        self._u: dict[int, torch.Tensor] = {}
        self._g: dict[int, torch.Tensor] = {}
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
                # Attention runs on SDPA's math kernel while a step is recorded. The tape's attention
                # rule needs no kernel's backward, but a step that falls back to the autograd route
                # does: the fused CPU and GPU kernels (the default of Hugging Face models) have no
                # double backward, which that route's J v needs ("derivative for
                # aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented").
                with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
                    # The step runs on a copy: an in-place operation on its input (nn.ReLU(inplace=True)
                    # as a step, x.mul_() in a block) is then legal for autograd (the input is no
                    # longer a leaf) and cannot overwrite the recorded state x_k.
                    y, tape, reason = record(lambda t, step=step, k=k: run_step(step, k, t), xin.clone())
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
                if tape is None or tape.signature not in independent:
                    check_examples_independent(step, k, xk, y)
                    if tape is not None:
                        independent.add(tape.signature)
                self._x[k], self._y[k] = xin, y
                if tape is not None and tape.signature not in verified:
                    with _autograd_errors(k, step.name):
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

    def working_set(self, k: int, tangents: int) -> int | None:
        """Bytes one product of step k on ``tangents`` tangents per example touches, roughly
        (`LinearTape.working_set`); None on the autograd route, whose graph is not measured."""
        tape = self._tape.get(k)
        return None if tape is None else tape.working_set(tangents)

    # -- single steps -----------------------------------------------------------------------
    def _name(self, k: int) -> str:
        return self.chain.steps[k].name

    def _finite_once(self, k: int, side: str, tangent: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
        """``out``, after checking step k's first product on this side (J or J^T) for NaN/Inf.

        The forward pass saw a finite output, but a derivative can still be infinite or undefined
        there (sqrt(|x|) at 0, a NaN in a custom backward). ``out: (P, B, ...)`` is checked through
        its first tangent only, ``out[0]``: the first tangent a step meets in a probe is dense
        (a Rademacher probe, a random frame, the loss gradient), so a bad entry of J anywhere
        shows in it, at 1/P of the cost of checking all P (measured in a resnet56 probe at batch 8:
        10 ms against 70 ms of a 3.2 s probe). ``tangent=None`` marks a whole explicit Jacobian,
        checked in full. Later products are not checked.
        """
        if (k, side) in self._finite:
            return out
        seen = out if tangent is None else out[0]
        if bool(torch.isfinite(seen).all()):
            self._finite.add((k, side))
        elif tangent is None or bool(torch.isfinite(tangent[0]).all()):  # a finite tangent: J is at fault
            name = self._name(k)
            raise NonFiniteError(
                f"the Jacobian of step {k} ({name!r}) has NaN/Inf entries at this input although its "
                "output is finite: a derivative that is infinite or undefined there (such as "
                "sqrt(|x|) at 0)",
                step=k,
                step_name=name,
            )
        return out

    def _ensure_double(self, k: int) -> None:
        if k in self._g:
            return
        y = self._y[k]
        u = torch.zeros_like(y, requires_grad=True)
        with torch.enable_grad(), _autograd_errors(k, self._name(k)):
            (g,) = torch.autograd.grad(y, self._x[k], u, create_graph=True, allow_unused=True)
        # No graph from u to g means J^T u does not depend on u: J is zero at this input (the output
        # is differentiable, as checked when the step ran, but does not move with it here: a dead
        # ReLU layer, a recurrence's initial state). _g[k] is then None.
        self._u[k], self._g[k] = u, g if g is not None and g.requires_grad else None

    def _zero_jvp(self, k: int, v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(v.shape[0], *self._y[k].shape, dtype=v.dtype)

    def _zero_vjp(self, k: int, u: torch.Tensor) -> torch.Tensor:
        return torch.zeros(u.shape[0], *self._x[k].shape, dtype=u.dtype)

    def jvp(self, k: int, v: torch.Tensor) -> torch.Tensor:
        """J_k v for tangents ``v: (P, B, *S_k)``; returns ``(P, B, *S_{k+1})``.

        Raises:
            NonFiniteError: J_k has NaN/Inf entries (found on the step's first product).
        """
        return self._finite_once(k, "jvp", v, self._jvp(k, v))

    def _jvp(self, k: int, v: torch.Tensor) -> torch.Tensor:
        if k in self._tape:
            return self._tape[k].jvp(v)
        self._ensure_double(k)
        if self._g[k] is None:
            return self._zero_jvp(k, v)
        with _quiet_batching(), _autograd_errors(k, self._name(k)):
            (out,) = torch.autograd.grad(self._g[k], self._u[k], v, retain_graph=True, is_grads_batched=True)
        return out

    def vjp(self, k: int, u: torch.Tensor) -> torch.Tensor:
        """J_k^T u for cotangents ``u: (P, B, *S_{k+1})``; returns ``(P, B, *S_k)``.

        Raises:
            NonFiniteError: J_k has NaN/Inf entries (found on the step's first product).
            InputError: autograd cannot differentiate the step (an in-place operation; named).
        """
        return self._finite_once(k, "vjp", u, self._vjp(k, u))

    def _vjp(self, k: int, u: torch.Tensor) -> torch.Tensor:
        if k in self._tape:
            return self._tape[k].vjp(u)
        with _quiet_batching(), _autograd_errors(k, self._name(k)):
            (out,) = torch.autograd.grad(
                self._y[k], self._x[k], u, retain_graph=True, is_grads_batched=True, allow_unused=True
            )
        return self._zero_vjp(k, u) if out is None else out

    def explicit(self, k: int) -> torch.Tensor:
        """The exact Jacobian of step k per example, ``(B, n_out, n_in)``.

        Built from whichever side is narrower: n_in basis tangents through J (columns), or n_out
        basis cotangents through J^T (rows).

        Raises:
            NonFiniteError: J_k has NaN/Inf entries although the step's output is finite.
        """
        if self.n_out[k] < self.n_in[k]:
            rows = self._basis_apply(self._vjp, k, self.states[k + 1])  # (B, n_in, n_out) = J^T
            return self._finite_once(k, "vjp", None, rows.mT)
        return self._finite_once(k, "jvp", None, self._basis_apply(self._jvp, k, self.states[k]))

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
            try:
                with _quiet_batching():
                    grads = torch.autograd.grad(
                        [self._g[k] for k, _ in rest],
                        [self._u[k] for k, _ in rest],
                        [v for _, v in rest],
                        retain_graph=True,
                        is_grads_batched=True,
                    )
            except RuntimeError:
                for k, v in rest:  # one step at a time, so that the error names the step at fault
                    self._jvp(k, v)
                raise
            out.update({k: g for (k, _), g in zip(rest, grads)})
        return [self._finite_once(k, "jvp", v, out[k]) for k, v in zip(ks, vs)]

    def vjp_all(self, ks: Sequence[int], us: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[J_k^T u_k for k in ks], each ``u_k: (P, B, *S_{k+1})``; autograd steps in one call."""
        out = {k: self._tape[k].vjp(u) for k, u in zip(ks, us) if k in self._tape}
        rest = [(k, u) for k, u in zip(ks, us) if k not in self._tape]
        if rest:
            try:
                with _quiet_batching():
                    grads = torch.autograd.grad(
                        [self._y[k] for k, _ in rest],
                        [self._x[k] for k, _ in rest],
                        [u for _, u in rest],
                        retain_graph=True,
                        is_grads_batched=True,
                        allow_unused=True,
                    )
            except RuntimeError:
                for k, u in rest:  # one step at a time, so that the error names the step at fault
                    self._vjp(k, u)
                raise
            for (k, u), g in zip(rest, grads):
                out[k] = self._zero_vjp(k, u) if g is None else g
        return [self._finite_once(k, "vjp", u, out[k]) for k, u in zip(ks, us)]
