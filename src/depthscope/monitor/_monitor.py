"""`Monitor`: gradient flow through depth during training, read from the training step's own passes.

Cost by design (the measured numbers: benchmarks/monitor_overhead.py):

- On a measured step, per block: one norm of the output gradient the backward already produced,
  and (``forward_stats``) per-channel sums and squared sums (row reductions) of the output and of the block's
  increment. No second backward, no per-sample gradients, no extra forward.
- Everything stays on the device until `Monitor.step`, which concatenates the step's pieces into
  one vector: one all-reduce under torch.distributed, one transfer to the host.
- Parameter-gradient norms: one fused ``_foreach_norm`` over the blocks' gradients.
- Update/weight ratio: the cheapest correct way without owning the optimiser is a snapshot. After a
  measured step the blocks' weights are copied into a buffer kept for the purpose (one extra copy
  of the blocks' weights in memory, allocated once); at the next `Monitor.step`, which comes after
  the optimiser step, ||w - w_snapshot|| and ||w_snapshot|| are taken (the difference is formed in
  the buffer itself, so nothing else is allocated) and filled into the measured step's record.
- ``every=k``: on the other steps the hooks return at once (a flag test per block) and `step` only
  counts, so monitoring every 16 steps costs a sixteenth.

Conventions: norms are Frobenius norms over the whole batch. Under DDP each rank's backward sees
dL_r/dx for its own examples; the ranks' squared norms are summed and the norm divided by the world
size, DDP's own averaging of parameter gradients, so that for a mean-reduced loss the numbers equal
those of one process on the concatenated batch. With a GradScaler, norms are divided by the scale
the backward ran with; call `Monitor.step` before ``scaler.update()``; if the gradients were
unscaled already (``scaler.unscale_(opt)``), pass ``params_unscaled=True``. Overflowing gradients
that the scaler skips are recorded (as non-finite) but not alerted.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from depthscope._errors import DepthscopeError, InputError, NonFiniteError, check_count
from depthscope.monitor._alerts import NONFINITE, AlertBook, first_nonfinite
from depthscope.monitor._blocks import eval_forked, find_blocks
from depthscope.monitor._figure import plot_history
from depthscope.monitor._records import History, ProbeRecord, StepRecord, nan_tuple
from depthscope.monitor._sinks import Console, TensorBoardSink
from depthscope.monitor._taps import PRECISE_BELOW, STATS_DTYPE, BlockTaps, host_to_device, moment_stats
from depthscope.probing import probe

ON_NONFINITE = ("warn", "raise")
# Files `close` writes into log_dir.
HISTORY_JSON = "depthscope_history.json"
HISTORY_CSV = "depthscope_history.csv"


class MonitorError(DepthscopeError, RuntimeError):
    """The monitor was used out of order (step() before a backward, after close())."""


def _stacked(norms: list[torch.Tensor]) -> torch.Tensor:
    """The 0-d norms of ``_foreach_norm`` as one vector (one op; per-item casts where dtypes mix)."""
    try:
        return torch.stack(norms)
    except RuntimeError:  # parameters of several dtypes or devices
        return torch.stack([n.to(device=norms[0].device, dtype=STATS_DTYPE) for n in norms])


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Monitor:
    """Per-block gradient flow, parameter gradients, update ratios and forward statistics, per step.

    Args:
        model: the ``nn.Module`` being trained; DistributedDataParallel, DataParallel and
            ``torch.compile`` wrappers are looked through (create the monitor before the compiled
            model's first call, so that the compiled graph includes the hooks).
        every: measure every ``every``-th step (0, 1, ... counted by `step` calls).
        probe_every: run `depthscope.probe` on ``probe_input`` every so many steps (None: never).
        probe_input: a small fixed batch ``(B, *S_0)`` for the probes; also the example that finds
            the blocks when ``example`` is not given.
        example: a small input batch for finding the blocks (one forward pass, eval mode).
        blocks: passed to `Chain.from_module` (names, glob patterns or modules).
        log_dir: TensorBoard scalars under ``depthscope/...`` and, at `close`, the history as
            JSON and CSV (rank 0 only).
        scaler: a ``torch.amp.GradScaler``; norms are logged unscaled.
        on_nonfinite: "warn" (print and record) or "raise" (also raise `NonFiniteError` naming the
            block, the step and the pass).
        console: print alerts and a one-line summary at most every few seconds (rank 0).
        forward_stats: collect the forward signal-propagation statistics.
        track_updates: measure update/weight ratios (keeps one copy of the blocks' weights).
        distributed: all-reduce activation statistics across ranks; None: when torch.distributed
            is initialised with more than one process.

    Raises:
        InputError: a bad argument. NoBlocksError / ChainError: no blocks found.
        DepthscopeError: ``log_dir`` cannot be written.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int = 1,
        probe_every: int | None = None,
        probe_input: torch.Tensor | None = None,
        example: torch.Tensor | None = None,
        blocks=None,
        log_dir: str | os.PathLike | None = None,
        scaler=None,
        on_nonfinite: str = "warn",
        console: bool = True,
        forward_stats: bool = True,
        track_updates: bool = True,
        distributed: bool | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise InputError(f"Monitor needs an nn.Module, got {type(model).__name__}")
        self.every = check_count("every", every, 1)
        self.probe_every = None if probe_every is None else check_count("probe_every", probe_every, 1)
        if self.probe_every is not None and not isinstance(probe_input, torch.Tensor):
            raise InputError("probe_every needs probe_input, a small fixed input batch (B, ...)")
        if on_nonfinite not in ON_NONFINITE:
            raise InputError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.probe_input = probe_input
        self.scaler = scaler
        found = find_blocks(model, example if example is not None else probe_input, blocks)
        self.root, self.blocks, self.wrapped = found.root, found.names, found.wrapped
        self.rank, self.world = _rank_and_world()
        self.distributed = (self.world > 1) if distributed is None else bool(distributed and self.world > 1)
        self.track_updates = track_updates
        self.taps = BlockTaps(found.modules, forward_stats)
        self._init_params(found.modules)
        self.history = History(self.blocks)
        self._alerts = AlertBook(self.blocks)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._tb = TensorBoardSink(self.log_dir, self.blocks) if self.log_dir is not None and self.rank == 0 else None
        self._console = Console(self.blocks) if console and self.rank == 0 else None
        self._step = 0
        self._snap: list[torch.Tensor] | None = None
        self._snap_step: int | None = None
        self._pending = 0
        self._closed = False
        self.taps.active = True

    def _init_params(self, modules) -> None:
        """The trainable parameters of each block, each counted once (at its first block)."""
        self._params: list[nn.Parameter] = []
        owner: list[int] = []
        seen: set[int] = set()
        for k, m in enumerate(modules):
            for p in m.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    self._params.append(p)
                    owner.append(k)
        self._owner = owner
        self._has_params = np.bincount(np.asarray(owner, dtype=np.int64), minlength=len(modules)) > 0
        self._ids_cache: tuple[tuple[int, ...], torch.Tensor] | None = None

    # -- the public loop ------------------------------------------------------------------------------
    @property
    def step_count(self) -> int:
        """How many times `step` has been called."""
        return self._step

    def step(self, loss: torch.Tensor | float | None = None, *, params_unscaled: bool = False) -> StepRecord | None:
        """Read what the step's backward produced; call after ``loss.backward()``, before
        ``optimizer.step()`` (and before ``scaler.update()``). Returns the step's record when it
        was measured, else None.

        Raises:
            MonitorError: no forward or no backward went through the blocks since the last call.
            NonFiniteError: a NaN/Inf appeared and ``on_nonfinite="raise"``.
        """
        if self._closed:
            raise MonitorError("Monitor.step() called after close()")
        s = self._step
        update = self._update_norms()  # the optimiser step that followed the last measured step
        record = None
        try:
            if self.taps.active:
                self._check_passes(s)
                record = self._measure(s, loss, params_unscaled, update)
            elif update is not None:
                self._fill_update(update.cpu().numpy().astype(np.float64))
            if self.probe_every is not None and s % self.probe_every == 0 and self.rank == 0:
                self._probe(s)
        finally:
            self._step = s + 1
            self.taps.reset()
            self.taps.active = self._step % self.every == 0
        return record

    def close(self) -> History:
        """Measure the last pending update, stop the hooks, write the history files into
        ``log_dir`` (rank 0) and close TensorBoard. Returns the history."""
        if self._closed:
            return self.history
        update = self._update_norms()
        if update is not None:
            self._fill_update(update.cpu().numpy().astype(np.float64))
        self.taps.remove()
        self._closed = True
        if self.log_dir is not None and self.rank == 0:
            self.history.to_json(self.log_dir / HISTORY_JSON)
            self.history.to_csv(self.log_dir / HISTORY_CSV)
        if self._tb is not None:
            self._tb.close()
        return self.history

    def plot(self):
        """A matplotlib Figure: heat map block x step of log10 gradient norm, end-to-end gain."""
        return plot_history(self.history)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Monitor({type(self.root).__name__}, {len(self.blocks)} blocks, every={self.every}, step={self._step})"

    # -- measuring --------------------------------------------------------------------------------------
    def _check_passes(self, s: int) -> None:
        if not self.taps.forward_seen:
            hint = ""
            if self.wrapped == "compiled":
                hint = (
                    " The model is compiled: a graph compiled before the monitor's hooks existed does not"
                    " call them. Create the Monitor before torch.compile or before the compiled model's first call."
                )
            raise MonitorError(
                f"Monitor.step() at step {s}: no forward pass with gradients went through the model's blocks "
                f"since the last step (call step() after the forward pass and loss.backward()).{hint}"
            )
        if not self.taps.backward_seen:
            raise MonitorError(
                f"Monitor.step() at step {s} was called before any backward pass reached the blocks: "
                "call loss.backward() first"
            )

    def _scale_tensor(self, device: torch.device) -> torch.Tensor | None:
        scaler = self.scaler
        if scaler is None or not scaler.is_enabled():
            return None
        # The scale as a device tensor, so that it travels in the step's one transfer; get_scale()
        # would read it back to the host on its own (a second synchronisation on a GPU).
        scale = getattr(scaler, "_scale", None)
        if not isinstance(scale, torch.Tensor):
            scale = torch.tensor(scaler.get_scale())
        return scale.detach().reshape(1).to(device=device, dtype=STATS_DTYPE)

    def _measure(self, s: int, loss, params_unscaled: bool, update: torch.Tensor | None) -> StepRecord:
        flat, grad_seen = self.taps.flat()
        device = flat.device
        if isinstance(loss, torch.Tensor):
            loss_t = loss.detach().reshape(-1)[:1].to(device=device, dtype=STATS_DTYPE)
        else:
            loss_t = torch.full((1,), math.nan if loss is None else float(loss), dtype=STATS_DTYPE, device=device)
        shared = torch.cat([flat, loss_t])
        if self.distributed:
            dist.all_reduce(shared)  # sums over ranks: squared norms, per-channel sums, counts, losses
        k = len(self.blocks)
        parts = [shared, self._param_grad_sq(device)]
        if update is not None:
            parts.append(update.to(device))
        scale_t = self._scale_tensor(device)
        if scale_t is not None:
            parts.append(scale_t)
        host = torch.cat(parts).cpu().numpy()  # the step's one transfer to the host
        n_shared = shared.numel()
        g = self.taps.split(host[:n_shared], grad_seen, n_extra=1)
        rest = host[n_shared:].astype(np.float64)
        scale = float(rest[-1]) if scale_t is not None else 1.0
        world = self.world if self.distributed else 1
        loss_value = float(g.extra[0]) / world if loss is not None else math.nan
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            grad_norm = np.sqrt(g.grad_sq) / world / scale
            pg_scale = 1.0 if params_unscaled else scale
            param_norm = np.where(self._has_params, np.sqrt(rest[:k]) / pg_scale, np.nan)
            ratio = np.append(grad_norm[:-1] / grad_norm[1:], np.nan)
            end_to_end = float(grad_norm[0] / grad_norm[-1])
        fwd = [moment_stats(g.moments[j], g.counts[j]) for j in range(k)]
        branch = [moment_stats(g.branch[j], g.branch_counts[j])[1] for j in range(k)]
        record = StepRecord(
            step=s,
            loss=loss_value,
            grad_norm=tuple(map(float, grad_norm)),
            grad_ratio=tuple(map(float, ratio)),
            param_grad_norm=tuple(map(float, param_norm)),
            update_ratio=nan_tuple(k),
            act_mean_sq=tuple(f[0] for f in fwd),
            act_var=tuple(f[1] for f in fwd),
            branch_var=tuple(branch),
            end_to_end=end_to_end,
            grad_scale=scale,
        )
        self.history.records.append(record)
        self.taps.precise = [not (v >= PRECISE_BELOW) for v in grad_norm]  # nan: keep float64
        if update is not None:
            self._fill_update(rest[k : 3 * k])
        forward_bad = [m is not None and not np.all(np.isfinite(m)) for m in g.moments]
        # With a GradScaler, overflowing gradients are routine: the scaler skips that step.
        if scale_t is None:
            backward_bad = [seen and not math.isfinite(v) for seen, v in zip(grad_seen, g.grad_sq)]
        else:
            backward_bad = [False] * k
        nonfinite = first_nonfinite(forward_bad, backward_bad)
        alerts = self._alerts.check(s, grad_norm, end_to_end, nonfinite)
        if self._tb is not None:
            self._tb.record(record)
        if self._console is not None:
            self._console.record(record)
        for a in alerts:
            self.history.alerts.append(a)
            if self._tb is not None:
                self._tb.alert(a)
            if self._console is not None:
                self._console.alert(a)
        if self.track_updates and self._params:
            self._take_snapshot(s)
        bad = [a for a in alerts if a.kind == NONFINITE]
        if bad and self.on_nonfinite == "raise":
            if self._tb is not None:
                self._tb.flush()
            k_bad = self.blocks.index(bad[0].blocks[0])
            raise NonFiniteError(bad[0].message, step=k_bad, step_name=self.blocks[k_bad])
        return record

    # -- parameters ------------------------------------------------------------------------------------
    def _block_ids(self, ids: list[int], device: torch.device) -> torch.Tensor:
        key = tuple(ids)
        if self._ids_cache is None or self._ids_cache[0] != key or self._ids_cache[1].device != device:
            self._ids_cache = (key, host_to_device(ids, torch.long, device))
        return self._ids_cache[1]

    def _per_block_sq(self, tensors: list[torch.Tensor], ids: list[int], device: torch.device) -> torch.Tensor:
        """(K,) sums of squared norms of ``tensors`` by block: one fused norm over all of them
        (the kernel clip_grad_norm_ uses), in float64 for the blocks `BlockTaps.precise` marks."""
        out = torch.zeros(len(self.blocks), dtype=STATS_DTYPE, device=device)
        if not tensors:
            return out
        precise = self.taps.precise
        fast = [i for i, k in enumerate(ids) if not precise[k]]
        slow = [i for i, k in enumerate(ids) if precise[k]]
        groups = []
        if fast:
            groups.append(_stacked(torch._foreach_norm([tensors[i] for i in fast])))
        if slow:
            groups.append(_stacked(torch._foreach_norm([tensors[i] for i in slow], 2, dtype=STATS_DTYPE)))
        sq = torch.cat([g.to(device=device, dtype=STATS_DTYPE) for g in groups]).square()
        out.index_add_(0, self._block_ids([ids[i] for i in fast + slow], device), sq)
        return out

    def _param_grad_sq(self, device: torch.device) -> torch.Tensor:
        grads, ids = [], []
        for p, k in zip(self._params, self._owner):
            if p.grad is not None:
                grads.append(p.grad)
                ids.append(k)
        with torch.no_grad():
            return self._per_block_sq(grads, ids, device)

    @torch.no_grad()
    def _take_snapshot(self, s: int) -> None:
        if self._snap is None:
            self._snap = [p.detach().clone() for p in self._params]
        else:
            torch._foreach_copy_(self._snap, self._params)
        self._snap_step = s

    @torch.no_grad()
    def _update_norms(self) -> torch.Tensor | None:
        """(2K,) squared norms per block of the update since the snapshot, then of the snapshot."""
        if self._snap_step is None or self._snap is None:
            return None
        device = self._snap[0].device
        w_sq = self._per_block_sq(self._snap, self._owner, device)
        torch._foreach_sub_(self._snap, self._params)  # w_old - w_new, in place: nothing allocated
        d_sq = self._per_block_sq(self._snap, self._owner, device)
        self._pending = self._snap_step
        self._snap_step = None
        return torch.cat([d_sq, w_sq])

    def _fill_update(self, values: np.ndarray) -> None:
        k = len(self.blocks)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(self._has_params, np.sqrt(values[:k]) / np.sqrt(values[k:]), np.nan)
        ratios_t = tuple(map(float, ratios))
        self.history.set_update_ratio(self._pending, ratios_t)
        if self._tb is not None:
            self._tb.update(self._pending, ratios_t)

    # -- probes ------------------------------------------------------------------------------------------
    def _probe(self, s: int) -> None:
        """`depthscope.probe` of the probe batch in eval mode; modes, random state, gradients and the
        taps are as they were afterwards."""
        devices = [self.probe_input.device.index or 0] if self.probe_input.device.type == "cuda" else []
        self.taps.paused = True
        try:
            with eval_forked(self.root, devices):
                report = probe(self.root, self.probe_input)
        finally:
            self.taps.paused = False
        record = ProbeRecord(
            step=s,
            verdict=report.verdict,
            log_gain=float(report.log_gain),
            depth_scale=float(report.depth_scale),
            lyapunov=tuple(float(v) for v in report.lyapunov),
            steps=tuple(b.name for b in report.blocks),
            local_rms=tuple(float(b.local_rms) for b in report.blocks),
        )
        self.history.probes.append(record)
        if self._tb is not None:
            self._tb.probe(record)
