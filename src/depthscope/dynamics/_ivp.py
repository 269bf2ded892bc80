"""`solve_ivp`: the front end of the BDF-2 solver (input checks, Jacobian source, results).

The solver (`BDF2Solver`, a subclass of `_ode_base.BatchOdeSolver`) sees one calling convention,
``fun(t, Y)`` on a batch ``Y: (M, n)``; this module turns a user's function into it. ``fun`` may be written with numpy
(called with float64 arrays) or with torch (called with float64 tensors when numpy input fails or
it returns a tensor). The Jacobian comes from the user's ``jac``, else from torch forward-mode
autograd when ``fun`` is torch-traceable, else from forward finite differences.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from depthscope._errors import InputError
from depthscope.dynamics._bdf2 import BDF2Solver
from depthscope.dynamics._ode_base import EPS

# Methods this front end knows; BDF-2 is the only one (variants would be siblings here).
METHODS = ("BDF2",)
# Forward-difference step relative to |y_j|: sqrt(eps) balances truncation and cancellation.
FD_REL_STEP = float(np.sqrt(EPS))
# Floor on |y_j| in the difference step, so components that are zero still get perturbed.
FD_ABS_FLOOR = 1e-6
# Below this rtol the error test asks for more than float64 can deliver (as SciPy's 100 eps).
MIN_RTOL = 100 * EPS

JAC_USER, JAC_AUTOGRAD, JAC_FD = "user", "autograd", "finite-difference"
# numpy's float64 dtype (a singleton): an identity test is the cheap check on fun's output.
_FLOAT64 = np.dtype(np.float64)


@dataclass(frozen=True)
class OdeResult:
    """Solution of one system, laid out like SciPy's ``OdeResult``.

    Attributes:
        t: (T,) times: every accepted step, or the ``t_eval`` points reached.
        y: (n, T) the solution at ``t``.
        status: 0 when the end of the interval was reached, -1 when the solver failed.
        message: why it stopped.
        nfev: calls of ``fun`` (finite-difference Jacobians included).
        njev: Jacobian evaluations; nlu: Newton-matrix factorisations.
        nsteps: accepted steps; nrejected: rejected attempts (error test or Newton failure).
        jac_source: ``"user"``, ``"autograd"`` or ``"finite-difference"`` (also when autograd
            failed mid-run; the message then says where).
    """

    t: np.ndarray
    y: np.ndarray
    status: int
    message: str
    nfev: int
    njev: int
    nlu: int
    nsteps: int
    nrejected: int
    jac_source: str

    @property
    def success(self) -> bool:
        return self.status == 0


@dataclass(frozen=True)
class BatchOdeResult:
    """Solutions of M independent systems solved together (``solve_ivp(..., batched=True)``).

    Attributes:
        t: (T,) the ``t_eval`` points (default ``[t0, t_end]``).
        y: (M, n, T) each system's solution at ``t``; NaN after a system failed.
        status: (M,) 0 = reached the end, -1 = failed.
        messages: (M,) why each system stopped; message: one summary line.
        nfev, njev: calls of ``fun`` / ``jac`` on the whole batch.
        nlu: Newton matrices factorised, summed over systems.
        nsteps, nrejected: (M,) accepted steps and rejected attempts of each system.
        jac_source: where the Jacobians came from.
    """

    t: np.ndarray
    y: np.ndarray
    status: np.ndarray
    messages: tuple[str, ...]
    message: str
    nfev: int
    njev: int
    nlu: int
    nsteps: np.ndarray
    nrejected: np.ndarray
    jac_source: str

    @property
    def success(self) -> bool:
        return bool(np.all(self.status == 0))


# -- adapters: user callables -> the core's batch convention -----------------------------------
class _BatchFun:
    """``fun`` as ``(t: (M,), Y: (M, n)) -> (M, n)`` float64, with its shape checked on every call."""

    def __init__(self, fun: Callable, args: tuple, batched: bool, shape: tuple[int, int], use_torch: bool):
        self.fun, self.args, self.batched, self.shape, self.use_torch = fun, args, batched, shape, use_torch
        self.numpy_batch = batched and not use_torch  # the solver's hot path (see __call__)
        self.extra_calls = 0  # calls made for finite-difference Jacobians

    def user_call(self, t: np.ndarray, Y: np.ndarray) -> Any:
        tt, yy = (t, Y) if self.batched else (float(t[0]), Y[0])
        if self.use_torch:
            with torch.no_grad():
                return self.fun(torch.as_tensor(tt, dtype=torch.float64), torch.from_numpy(np.array(yy)), *self.args)
        return self.fun(tt, yy, *self.args)

    def __call__(self, t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        if self.numpy_batch:  # the solver's hot path: skip what is a no-op here
            out = self.fun(t, Y, *self.args)
            if type(out) is np.ndarray and out.dtype is _FLOAT64 and out.shape == self.shape:
                return out
        else:
            out = self.user_call(t, Y)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        out = np.asarray(out, dtype=np.float64)
        want = self.shape if self.batched else self.shape[1:]
        if out.shape != want:
            raise InputError(f"fun returned shape {out.shape}; expected {want} (the shape of y)")
        return out.reshape(self.shape)


def _user_jac(jac: Callable, args: tuple, batched: bool, shape: tuple[int, int]):
    M, n = shape
    want = (M, n, n) if batched else (n, n)

    def call(t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        out = jac(t, Y, *args) if batched else jac(float(t[0]), Y[0], *args)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        out = np.asarray(out, dtype=np.float64)
        if out.shape != want:
            raise InputError(f"jac returned shape {out.shape}; expected {want}")
        return out.reshape(M, n, n)

    return call


def _autograd_jac(fun: Callable, args: tuple, batched: bool, shape: tuple[int, int]):
    """Jacobians by ``torch.func.jacfwd``; a batch shares one forward pass per direction.

    Systems are independent, so perturbing column j of every row at once gives column j of every
    system's Jacobian: differentiate ``u -> fun(t, Y + u)`` with u (n,) broadcast over the rows.
    """
    M, n = shape

    def call(t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        Yt = torch.from_numpy(np.array(Y))
        if batched:
            tt = torch.from_numpy(np.array(t))
            J = torch.func.jacfwd(lambda u: fun(tt, Yt + u, *args))(torch.zeros(n, dtype=torch.float64))
        else:
            tt = torch.tensor(float(t[0]), dtype=torch.float64)
            J = torch.func.jacfwd(lambda v: fun(tt, v, *args))(Yt[0])
        J = J.detach().numpy()
        if J.shape != ((M, n, n) if batched else (n, n)):
            raise InputError(f"autograd Jacobian of fun has shape {J.shape}; fun must map y to y' of its shape")
        return J.reshape(M, n, n)

    return call


def _fd_jac(fun: _BatchFun):
    """Forward-difference Jacobians, one batched evaluation per column: (M,), (M, n) -> (M, n, n)."""

    def call(t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        M, n = Y.shape
        f0 = fun(t, Y)
        J = np.empty((M, n, n))
        for j in range(n):
            Yp = Y.copy()
            Yp[:, j] += FD_REL_STEP * np.maximum(np.abs(Y[:, j]), FD_ABS_FLOOR)
            step = Yp[:, j] - Y[:, j]  # the increment actually represented
            J[:, :, j] = (fun(t, Yp) - f0) / step[:, None]
        fun.extra_calls += n + 1
        return J

    return call


class _AutogradThenFD:
    """Autograd Jacobians that switch to finite differences for the rest of the run when autograd
    fails mid-run (a numpy branch of ``fun`` reached only later, say), instead of raising torch's
    error. ``fell_back`` says when and why, for the result's message."""

    def __init__(self, autograd: Callable, fd: Callable):
        self.autograd, self.fd, self.fell_back = autograd, fd, None

    def __call__(self, t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        if self.fell_back is None:
            try:
                with warnings.catch_warnings():  # a numpy branch may warn on tensors before it fails
                    warnings.simplefilter("ignore")
                    return self.autograd(t, Y)
            except InputError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure of torch tracing: differences instead
                self.fell_back = (
                    f"autograd failed on fun at t = {float(np.min(t)):.6g} ({type(err).__name__}: {err}); "
                    "Jacobians by finite differences from there"
                )
        return self.fd(t, Y)


def _choose_fun_mode(fun: Callable, args: tuple, batched: bool, t0: float, y0: np.ndarray) -> bool:
    """True when ``fun`` must be called with torch tensors (numpy input fails or returns a tensor)."""
    t_arg = np.full(len(y0), t0) if batched else t0
    try:
        out = fun(t_arg, (y0 if batched else y0[0]).copy(), *args)
    except Exception as numpy_err:  # noqa: BLE001 - any failure on numpy input means: try torch
        try:
            with torch.no_grad():
                out = fun(torch.as_tensor(t_arg), torch.from_numpy(y0 if batched else y0[0].copy()), *args)
        except Exception as torch_err:  # noqa: BLE001
            raise InputError(
                f"fun(t, y) failed with numpy input ({numpy_err!r}) and with torch input ({torch_err!r})"
            ) from torch_err
        if not isinstance(out, torch.Tensor):
            raise InputError(f"fun returned a {type(out).__name__} for torch input; expected a tensor") from numpy_err
        return True
    return isinstance(out, torch.Tensor)


def _try_autograd(fun: Callable, args: tuple, batched: bool, shape, t0: float, y0: np.ndarray):
    """The autograd Jacobian when ``fun`` is torch-traceable, else None."""
    call = _autograd_jac(fun, args, batched, shape)
    try:
        with warnings.catch_warnings():  # a numpy-only fun may warn on tensors before it fails
            warnings.simplefilter("ignore")
            J = call(np.full(shape[0], t0), y0)
    except Exception:  # noqa: BLE001 - not traceable by torch: fall back to finite differences
        return None
    return call if np.isfinite(J).all() else None


# -- validation ------------------------------------------------------------------------------
def _real_array(name: str, value: Any, expected: str) -> np.ndarray:
    """``value`` as a float64 array, or an InputError naming ``name`` and the ``expected`` form
    (complex, text and other non-real input included)."""
    try:
        arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be {expected}; got {value!r} ({err})") from err
    if arr.dtype.kind == "c":
        raise InputError(
            f"{name} is complex; expected {expected} (write a complex system as 2n real states: "
            "real and imaginary parts)"
        )
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name} must be {expected}; got {value!r} (dtype {arr.dtype})")
    return arr.astype(np.float64)


def _real_scalar(name: str, value: Any) -> float:
    arr = _real_array(name, value, "a real number")
    if arr.ndim != 0:
        raise InputError(f"{name} must be a real number (a scalar); got shape {arr.shape}")
    return float(arr)


def _check_inputs(t_span, y0, batched, rtol, atol, max_step, first_step, t_eval, method):
    if method not in METHODS:
        raise InputError(f"method {method!r} is not known; choose one of {METHODS}")
    span = _real_array("t_span", t_span, "a pair (t0, t_end) of real numbers")
    if span.shape != (2,):
        raise InputError(f"t_span must be a pair (t0, t_end), shape (2,); got {t_span!r} (shape {span.shape})")
    t0, t_end = float(span[0]), float(span[1])
    if not (np.isfinite(t0) and np.isfinite(t_end)):
        raise InputError(f"t_span must be finite; got {t_span!r}")
    if not t_end > t0:
        raise InputError(f"t_span must run forward with t_end > t0; got ({t0}, {t_end})")
    layout = "(M, n): M systems of n states" if batched else "(n,); pass batched=True for (M, n)"
    y0 = _real_array("y0", y0, f"real numbers of shape {layout}")
    if y0.ndim != (2 if batched else 1) or y0.size == 0:
        raise InputError(f"y0 has shape {y0.shape}; expected {layout}")
    if not np.isfinite(y0).all():
        raise InputError("y0 contains NaN or Inf")
    y0 = y0 if batched else y0[None, :]
    n = y0.shape[1]
    rtol = _real_scalar("rtol", rtol)
    if not (np.isfinite(rtol) and rtol >= MIN_RTOL):
        raise InputError(f"rtol must be a finite number >= {MIN_RTOL:.3g}; got {rtol}")
    atol = _real_array("atol", atol, f"a positive scalar or a positive array of shape ({n},)")
    if atol.ndim > 1 or (atol.ndim == 1 and atol.shape != (n,)):
        raise InputError(f"atol has shape {atol.shape}; expected a scalar or shape ({n},), one per component of y")
    atol = np.broadcast_to(atol, (n,)).copy()
    if not (np.isfinite(atol).all() and (atol > 0).all()):
        raise InputError(f"atol must be a positive scalar or a positive array of shape ({n},); got {atol}")
    max_step = _real_scalar("max_step", max_step)
    if not max_step > 0:
        raise InputError(f"max_step must be positive; got {max_step}")
    if first_step is not None:
        first_step = _real_scalar("first_step", first_step)
        if not 0 < first_step <= t_end - t0:
            raise InputError(f"first_step must lie in (0, t_end - t0]; got {first_step}")
    if t_eval is not None:
        t_eval = _real_array("t_eval", t_eval, "a sorted 1-D array of times")
        if t_eval.ndim != 1 or np.any(np.diff(t_eval) < 0):
            raise InputError("t_eval must be a sorted 1-D array")
        if t_eval.size and (t_eval[0] < t0 or t_eval[-1] > t_end):
            raise InputError(f"t_eval must lie within t_span [{t0}, {t_end}]")
    return t0, t_end, y0, rtol, atol, max_step, first_step, t_eval


def solve_ivp(
    fun: Callable,
    t_span: Sequence[float],
    y0: Any,
    method: str = "BDF2",
    *,
    rtol: float = 1e-3,
    atol: float | Sequence[float] = 1e-6,
    jac: Callable | None = None,
    first_step: float | None = None,
    max_step: float = np.inf,
    t_eval: Sequence[float] | None = None,
    args: tuple = (),
    batched: bool = False,
    max_steps: int | None = None,
) -> OdeResult | BatchOdeResult:
    """Solve a stiff initial value problem ``y' = fun(t, y)`` with variable-step BDF-2.

    Args:
        fun: ``fun(t, y, *args)``. Unbatched: t float, y (n,) -> (n,). Batched: t (M,) (each
            system has its own time), Y (M, n) -> (M, n), rows independent systems.
        t_span: ``(t0, t_end)`` with ``t_end > t0``.
        y0: (n,) or, batched, (M, n) initial states; finite.
        method: ``"BDF2"``.
        rtol, atol: error tolerances for the solution, not for one step: each step keeps
            ``rms(err / (atol + rtol |y|)) <= local_tolerance_factor(rtol)`` (sqrt(rtol), at least
            0.01), which holds the global relative error to a few rtol per time constant of the
            solution (SciPy's rtol bounds one step's error). atol is a scalar or (n,).
        jac: ``jac(t, y, *args)`` -> (n, n) (batched: (M, n, n)). Default: autograd
            (``torch.func.jacfwd``) if ``fun`` works on torch tensors, else finite differences; autograd
            that fails later in the run (a numpy branch of ``fun``) hands over to finite differences.
        first_step, max_step: initial step (default: chosen from f) and step cap.
        t_eval: sorted times for the output (dense output of the BDF interpolant). Default: every
            accepted step (unbatched) or ``[t0, t_end]`` (batched).
        batched: solve M systems at once, each with its own step size and order.
        max_steps: accepted steps (per system) before giving up; default unlimited.

    Returns:
        `OdeResult` (unbatched) or `BatchOdeResult`. A failure (``fun`` NaN or Inf on every step
        tried, a Jacobian that is not finite, step size below what floating point resolves,
        max_steps) gives ``success == False`` and a message naming t (and the components or
        Jacobian entries at fault), never a silent answer or a raw exception from the solver.

    Raises:
        InputError (a ValueError): malformed input (naming the argument and the shape or type
        expected: a t_span that is not a pair, complex y0, atol of the wrong length, ...), or
        ``fun``/``jac`` returning the wrong shape.
    """
    t0, t_end, y0, rtol, atol, max_step, first_step, t_eval_arr = _check_inputs(
        t_span, y0, batched, rtol, atol, max_step, first_step, t_eval, method
    )
    shape = y0.shape
    args = tuple(args)
    use_torch = _choose_fun_mode(fun, args, batched, t0, y0)
    fun_b = _BatchFun(fun, args, batched, shape, use_torch)
    fun_b(np.full(shape[0], t0), y0)  # checks the output shape before anything else runs

    if jac is not None:
        jac_b, source = _user_jac(jac, args, batched, shape), JAC_USER
    else:
        jac_b, source = _try_autograd(fun, args, batched, shape, t0, y0), JAC_AUTOGRAD
        if jac_b is None:
            jac_b, source = _fd_jac(fun_b), JAC_FD
        else:
            jac_b = _AutogradThenFD(jac_b, _fd_jac(fun_b))

    if batched and t_eval_arr is None:
        t_eval_arr = np.array([t0, t_end])
    first = None if first_step is None else np.full(shape[0], float(first_step))
    core = BDF2Solver(
        fun_b,
        jac_b,
        t0,
        t_end,
        y0,
        rtol,
        atol,
        first,
        float(max_step),
        t_eval_arr,
        record_steps=not batched,
        max_steps=max_steps,
    )
    out = core.run()
    nfev = out.nfev + fun_b.extra_calls
    messages = list(out.messages)
    if isinstance(jac_b, _AutogradThenFD) and jac_b.fell_back is not None:
        source = JAC_FD
        messages = [f"{m} ({jac_b.fell_back})" for m in messages]
    if source == JAC_FD:  # a non-finite difference quotient means fun failed near y
        messages = [m + " (finite differences of fun)" if "Jacobian is not finite" in m else m for m in messages]

    if batched:
        n_ok = int(np.sum(out.status == 0))
        summary = f"{n_ok} of {shape[0]} systems reached t = {t_end:g}"
        failed = np.flatnonzero(out.status != 0)
        if len(failed):
            summary += f"; first failure (system {failed[0]}): {messages[failed[0]]}"
        return BatchOdeResult(
            t=t_eval_arr,
            y=out.y_eval,
            status=out.status,
            messages=tuple(messages),
            message=summary,
            nfev=nfev,
            njev=out.njev,
            nlu=out.nlu,
            nsteps=out.nsteps,
            nrejected=out.nrejected,
            jac_source=source,
        )
    if t_eval_arr is None:
        t_out, y_out = np.array(out.steps_t), np.stack(out.steps_y, axis=1)
    else:
        reached = int(np.sum(t_eval_arr <= out.t_final[0]))
        t_out, y_out = t_eval_arr[:reached], out.y_eval[0][:, :reached]
    return OdeResult(
        t=t_out,
        y=y_out,
        status=int(out.status[0]),
        message=messages[0],
        nfev=nfev,
        njev=out.njev,
        nlu=out.nlu,
        nsteps=int(out.nsteps[0]),
        nrejected=int(out.nrejected[0]),
        jac_source=source,
    )
