"""Small models, data and the autograd oracle shared by the monitor's tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import depthscope as ds

# Digits examples per training batch: enough for stable norms, small enough for milliseconds.
BATCH = 32


def digits_batches(n: int, batch: int = BATCH) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` consecutive training batches of scikit-learn's digits: x (batch, 64), y (batch,)."""
    data = ds.ledger.digits()
    return [(data.x_train[i * batch : (i + 1) * batch], data.y_train[i * batch : (i + 1) * batch]) for i in range(n)]


def sigmoid_mlp(depth: int = 30, width: int = 32, seed: int = 0) -> nn.Module:
    """The zoo's plain MLP with sigmoid activations: its gradient vanishes towards the input."""
    torch.manual_seed(seed)
    return ds.create_model("plain_mlp", depth=depth, width=width, in_dim=64, out_dim=10, activation="sigmoid")


def residual_mlp(depth: int = 4, width: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ds.create_model("resnet_mlp", depth=depth, width=width, in_dim=64, out_dim=10)


def oracle_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """One forward/backward of a zoo MLP, run block by block with ``retain_grad`` on each block
    output: autograd's own dL/dx_k, independent of any hook. Returns per-block arrays: grad_norm,
    param_grad_norm, act_mean_sq, act_var, branch_var (float64)."""
    h = model.stem(x)
    outs, ins = [], []
    for block in model.blocks:
        ins.append(h)
        h = block(h)
        h.retain_grad()
        outs.append(h)
    loss = nn.functional.cross_entropy(model.head(h), y)
    loss.backward()
    res: dict[str, list[float]] = {
        k: [] for k in ("grad_norm", "param_grad_norm", "act_mean_sq", "act_var", "branch_var")
    }
    for block, inp, out in zip(model.blocks, ins, outs):
        res["grad_norm"].append(out.grad.double().norm().item())
        res["param_grad_norm"].append(
            torch.cat([p.grad.double().reshape(-1) for p in block.parameters()]).norm().item()
        )
        o = out.detach().double()
        res["act_mean_sq"].append(o.mean(0).pow(2).mean().item())
        res["act_var"].append(o.var(0, unbiased=False).mean().item())
        res["branch_var"].append((o - inp.detach().double()).var(0, unbiased=False).mean().item())
    return {k: np.array(v) for k, v in res.items()}


def train(model: nn.Module, mon, batches, lr: float = 0.1) -> list[float]:
    """Plain SGD over ``batches`` with ``mon.step(loss)`` between backward and the optimiser step."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        mon.step(loss)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses
