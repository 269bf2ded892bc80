"""The per-rank training loop of the DDP test (a module of its own, so that spawned processes can
import it by name)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from tests.monitor.models import residual_mlp
from torch import nn

import depthscope as ds

STEPS = 2


def batches(world: int, batch: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The global batches: STEPS of (batch * world, 64) inputs and labels, the same on every rank."""
    data = ds.ledger.digits()
    n = batch * world
    return [(data.x_train[s * n : (s + 1) * n], data.y_train[s * n : (s + 1) * n]) for s in range(STEPS)]


def train(model: nn.Module, mon: ds.Monitor, data, rank: int, world: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in data:
        local = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        loss = nn.functional.cross_entropy(model(x[local]), y[local])
        loss.backward()
        mon.step(loss)
        opt.step()
        opt.zero_grad()
    mon.close()


def worker(rank: int, world: int, init_method: str, log_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback: no host-name lookups
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(residual_mlp(depth=3))
        data = batches(world)
        mon = ds.Monitor(model, example=data[0][0][:2], log_dir=log_dir, console=False)
        assert mon.distributed and mon.wrapped == "ddp"
        train(model, mon, data, rank, world)
    finally:
        dist.destroy_process_group()
