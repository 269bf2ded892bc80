"""The two routes for applying a step's Jacobian, on every step of a CIFAR ResNet.

Times J v and J^T u for P tangents through all steps by the tape route (recorded linear operations,
`depthscope.estimators._tape`) and by the autograd route (double vjp), both built from the same
forward pass, and prints the ratio. Also times building each route (recording plus the check of
every tape against autograd) and, for the tape's channels-last convolutions, the kernel alone in
both layouts.

With ``--block gpt2`` or ``--block convnext`` it times instead a chain of attention or ConvNeXt
blocks built from library configs with random weights (a Hugging Face GPT2Block, torchvision's
ConvNeXt CNBlock), whose steps take the tape route through the softmax / attention / LayerNorm /
depthwise-convolution rules; the two routes are timed in interleaved rounds (median).

Usage: python benchmarks/tape_vs_autograd.py [--model resnet56 | --block gpt2|convnext] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch
import torch.nn.functional as F

import depthscope as ds
from _timing import median_time  # benchmarks/_timing.py
from depthscope.estimators import LinearizedChain


def build(chain, x, tape: bool) -> LinearizedChain:
    if tape:
        return LinearizedChain(chain, x)
    with mock.patch("depthscope.estimators._linearized.record", lambda fn, x: (fn(x), None, "disabled")):
        return LinearizedChain(chain, x)


# Block chains at a small realistic size: (steps, sequence or image size, width).
GPT2_SIZE = (4, 64, 256)  # 4 blocks, 64 tokens, 256 wide, 4 heads
CONVNEXT_SIZE = (3, 28, 96)  # torchvision convnext_tiny's first stage: 3 blocks, 96 channels at 28x28


def block_chain(kind: str):
    """A chain of ``kind`` blocks and its input, random weights, eval mode."""
    torch.manual_seed(0)
    if kind == "gpt2":
        from transformers import GPT2Config
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block

        n, seq, width = GPT2_SIZE
        config = GPT2Config(n_embd=width, n_head=4, n_layer=n, attn_implementation="sdpa")
        blocks = [GPT2Block(config, layer_idx=i).eval() for i in range(n)]

        def step(b):
            return lambda h: (lambda o: o[0] if isinstance(o, tuple) else o)(b(h, use_cache=False))

        return ds.Chain([step(b) for b in blocks]), torch.randn(1, seq, width)
    from torchvision.models.convnext import CNBlock

    n, size, width = CONVNEXT_SIZE
    blocks = [CNBlock(width, layer_scale=1e-6, stochastic_depth_prob=0.0).eval() for _ in range(n)]
    return ds.Chain(blocks), torch.randn(1, width, size, size)


def interleaved(fns: dict, rounds: int) -> dict:
    """Median CPU seconds of each function, timed in interleaved rounds after one warm-up each."""
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.process_time()
            f()
            times[k].append(time.process_time() - t0)
    return {k: statistics.median(t) for k, t in times.items()}


def blocks_main(kind: str, repeats: int) -> None:
    chain, x = block_chain(kind)
    gen = torch.Generator().manual_seed(0)
    lins = {r: build(chain, x, r) for r in (True, False)}
    print(f"{kind} blocks, input {tuple(x.shape)}: routes {sorted(set(lins[True].routes.values()))}")
    for P in (1, 16):
        vs = {k: torch.randn(P, *lins[True].states[k].shape, generator=gen) for k in lins[True].steps}
        us = {k: torch.randn(P, *lins[True].states[k + 1].shape, generator=gen) for k in lins[True].steps}
        for name, op, data in (("J v", "jvp", vs), ("J^T u", "vjp", us)):
            fns = {r: (lambda r=r: [getattr(lins[r], op)(k, data[k]) for k in data]) for r in (True, False)}
            t = interleaved(fns, repeats)
            print(
                f"    {name:5s} P={P:2d} through all {len(data)} steps: tape {t[True] * 1e3:7.1f} ms, "
                f"autograd {t[False] * 1e3:7.1f} ms  -> tape {t[False] / t[True]:.1f}x faster"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--block", choices=("gpt2", "convnext"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.block:
        print(f"depthscope {ds.__version__}, torch {torch.__version__}, {args.threads} thread(s), CPU clock")
        blocks_main(args.block, args.repeats)
        return
    torch.manual_seed(0)
    model = ds.create_model(args.model).eval()
    x = model.example_input(1, torch.Generator().manual_seed(0))
    chain = ds.Chain.from_module(model, example=x)
    gen = torch.Generator().manual_seed(0)
    print(
        f"depthscope {ds.__version__}, torch {torch.__version__}, {args.threads} thread(s), CPU clock, medians of {args.repeats}"
    )
    t_build = {r: median_time(lambda r=r: build(chain, x, r), args.repeats) for r in (True, False)}
    print(
        f"{args.model}: build (forward + graphs, and for tapes the check against autograd): "
        f"tape {t_build[True] * 1e3:.1f} ms, autograd {t_build[False] * 1e3:.1f} ms"
    )
    lins = {r: build(chain, x, r) for r in (True, False)}
    for P in (1, 16):
        vs = {k: torch.randn(P, *lins[True].states[k].shape, generator=gen) for k in lins[True].steps}
        us = {k: torch.randn(P, *lins[True].states[k + 1].shape, generator=gen) for k in lins[True].steps}
        for name, op, data in (("J v", "jvp", vs), ("J^T u", "vjp", us)):
            t = {
                r: median_time(lambda r=r: [getattr(lins[r], op)(k, data[k]) for k in data], args.repeats)
                for r in (True, False)
            }
            print(
                f"    {name:5s} P={P:2d} through all {len(data)} steps: tape {t[True] * 1e3:7.1f} ms, "
                f"autograd {t[False] * 1e3:7.1f} ms  -> tape {t[False] / t[True]:.1f}x faster"
            )
    print("conv2d 3x3 alone, 16 tangents (NCHW vs the tape's channels-last):")
    for c, h in ((16, 32), (32, 16), (64, 8)):
        w, v = torch.randn(c, c, 3, 3), torch.randn(16, c, h, h)
        w_cl, v_cl = (t.contiguous(memory_format=torch.channels_last) for t in (w, v))
        a = median_time(lambda: F.conv2d(v, w, padding=1), 5 * args.repeats)
        b = median_time(lambda: F.conv2d(v_cl, w_cl, padding=1), 5 * args.repeats)
        print(f"    {c} channels, {h}x{h}: NCHW {a * 1e3:.3f} ms, channels-last {b * 1e3:.3f} ms -> {a / b:.1f}x")


if __name__ == "__main__":
    main()
