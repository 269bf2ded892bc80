"""DistributedDataParallel with the gloo backend, two processes on the CPU: the logged per-block
numbers equal one process's on the concatenated batch."""

from __future__ import annotations

import socket

import numpy as np
import torch.multiprocessing as mp
from tests.monitor import ddp_worker
from tests.monitor.models import residual_mlp
from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (imported once, before the fork)

import depthscope as ds
from depthscope.monitor import BLOCK_QUANTITIES, HISTORY_JSON, History

WORLD = 2
# Sums over ranks against sums over one batch: float32 rounding in a different order.
RTOL = 1e-5


def test_ddp_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    # The single-process run first: the forked children then inherit the loaded data set's
    # modules (scikit-learn) instead of each importing them.
    model = residual_mlp(depth=3)
    data = ddp_worker.batches(WORLD)
    mon = ds.Monitor(model, example=data[0][0][:2], console=False)
    assert not mon.distributed
    ddp_worker.train(model, mon, data, rank=0, world=1)
    single = mon.history

    log_dir = tmp_path / "run"
    # A TCP store: gloo's connection through a file store polled slowly (3 s against 1 s here).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    init = f"tcp://127.0.0.1:{port}"
    # fork, not spawn: the children inherit the imported torch and depthscope (spawned children
    # import them again, 4 s each on a loaded two-core machine). Single-threaded torch forks safely.
    mp.start_processes(
        ddp_worker.worker, args=(WORLD, init, str(log_dir)), nprocs=WORLD, join=True, start_method="fork"
    )
    ranked = History.load(log_dir / HISTORY_JSON)
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 1  # rank 0 only logs

    assert ranked.blocks == single.blocks and len(ranked.records) == ddp_worker.STEPS
    for q in (*BLOCK_QUANTITIES, "loss", "end_to_end"):
        np.testing.assert_allclose(ranked.array(q), single.array(q), rtol=RTOL, atol=1e-12, err_msg=q)
    assert np.isfinite(single.array("branch_var")).all() and np.isfinite(single.array("update_ratio")).all()
