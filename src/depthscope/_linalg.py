"""LU-family linear algebra in one guarded place: factorisations, solves, inverses, log-determinants.

Why this module exists: torch's batched LU on CPU (2.13 and 2.14) runs the LAPACK factorisations of
a batch concurrently on torch's intra-op threads, and those concurrent calls are not thread safe for
matrices past a few dozen rows (upstream pytorch/pytorch PR 181570). Measured at 2 threads on
``(2, 256, 256)`` float64: ``lu_factor_ex``, ``solve``, ``inv`` and ``slogdet`` return wrong results
without any error; ``(2, 150, 150)`` hangs forever; ``(32, 256, 256)`` returns garbage pivots. One
thread is correct, and so is a single (unbatched) matrix at any thread count. ``qr``, ``svdvals``,
``eigh`` and ``cholesky`` are unaffected.

Every LU factorisation, solve, inverse and log-determinant of a torch tensor in depthscope goes
through these functions, whatever the caller's thread count. On a CPU batch with more than one
thread they take one of two safe paths, whichever is faster for the size (measured at 2 threads,
float64, median of 7; benchmarks/linalg_guard.py):

* per-matrix calls (each matrix's LAPACK call may still use threaded BLAS inside): ``(32, 256, 256)``
  ``lu_factor_ex`` 9.8 ms against 15.6 ms single-threaded;
* one batched call inside a single-thread section: ``(4000, 3, 3)`` 0.17 ms against 9.8 ms per
  matrix, ``(256, 32, 32)`` 1.5 ms against 2.3 ms.

NumPy's and SciPy's LU (used by the BDF-2 solver and some claims) loop over a batch serially with
their own LAPACK and are not affected.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

# Matrices at least this wide are factorised one call per matrix on a multi-threaded CPU batch
# (threaded BLAS inside each call beats one thread over the batch: 9.8 vs 15.6 ms at 256); narrower
# ones in one batched call on a single thread (per-matrix Python overhead dominates below it).
PER_MATRIX_MIN_DIM = 64

_single_thread_lock = threading.RLock()
_single_thread_depth = 0
_saved_threads = 1


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the enclosed torch calls on one intra-op thread; restores the caller's count after.

    Reentrant and safe across Python threads: the first entry saves the count and the last exit
    restores it, so two threads entering at once cannot leave the process at one thread.
    """
    global _single_thread_depth, _saved_threads
    with _single_thread_lock:
        if _single_thread_depth == 0:
            _saved_threads = torch.get_num_threads()
            if _saved_threads != 1:
                torch.set_num_threads(1)
        _single_thread_depth += 1
    try:
        yield
    finally:
        with _single_thread_lock:
            _single_thread_depth -= 1
            if _single_thread_depth == 0 and torch.get_num_threads() != _saved_threads:
                torch.set_num_threads(_saved_threads)


def _at_risk(A: torch.Tensor) -> bool:
    """Whether a batched call on ``A: (..., n, n)`` could run concurrent LAPACK factorisations."""
    return A.device.type == "cpu" and A.ndim > 2 and A.shape[:-2].numel() > 1 and torch.get_num_threads() > 1


def _guarded(A: torch.Tensor, op: Callable, *args, per_matrix_args: tuple = ()):
    """``op(A, *per_matrix_args, *args)`` with the upstream hazard routed around.

    ``per_matrix_args`` are tensors batched like ``A`` (sliced with it on the per-matrix path);
    ``op`` returns a tensor or a tuple of tensors batched like ``A``.
    """
    if not _at_risk(A):
        return op(A, *per_matrix_args, *args)
    if A.shape[-1] < PER_MATRIX_MIN_DIM:
        with single_threaded():
            return op(A, *per_matrix_args, *args)
    batch = A.shape[:-2]
    flat = A.reshape(-1, *A.shape[-2:])
    others = [
        t.expand(*batch, *t.shape[len(batch) :]).reshape(flat.shape[0], *t.shape[len(batch) :]) for t in per_matrix_args
    ]
    outs = [op(flat[i], *(t[i] for t in others), *args) for i in range(flat.shape[0])]
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(parts).reshape(*batch, *parts[0].shape) for parts in zip(*outs))
    return torch.stack(outs).reshape(*batch, *outs[0].shape)


def lu_factor_ex(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`torch.linalg.lu_factor_ex` of ``A: (*B, n, n)``: ``(LU, pivots, info)``, ``info != 0`` where singular."""
    return _guarded(A, lambda a: tuple(torch.linalg.lu_factor_ex(a)))


def lu_solve(LU: torch.Tensor, pivots: torch.Tensor, B: torch.Tensor, adjoint: bool = False) -> torch.Tensor:
    """`torch.linalg.lu_solve`: X with A X = B (or A^H X = B), ``LU: (*b, n, n)``, ``B: (*b, n, k)``."""
    return _guarded(LU, lambda lu, p, b: torch.linalg.lu_solve(lu, p, b, adjoint=adjoint), per_matrix_args=(pivots, B))


def solve_ex(A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.linalg.solve_ex`, never raising: ``(X, info)`` for ``A: (*b, n, n)``, ``B: (*b, n, k)``."""
    return _guarded(A, lambda a, b: tuple(torch.linalg.solve_ex(a, b, check_errors=False)), per_matrix_args=(B,))


def solve(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """`torch.linalg.solve` for ``A: (*b, n, n)``, ``B: (*b, n, k)``; raises on a singular matrix."""
    return _guarded(A, torch.linalg.solve, per_matrix_args=(B,))


def inv(A: torch.Tensor) -> torch.Tensor:
    """`torch.linalg.inv` of ``A: (*b, n, n)``; raises on a singular matrix."""
    return _guarded(A, torch.linalg.inv)


def slogdet(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.linalg.slogdet` of ``A: (*b, n, n)``: ``(sign, logabsdet)``, each ``(*b,)``."""
    return _guarded(A, lambda a: tuple(torch.linalg.slogdet(a)))
