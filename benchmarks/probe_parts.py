"""The small choices inside the probe's hot loops, each against the plain alternative in the same run.

* Rademacher probes: eight signs per random byte through a sign table, against one random integer
  per sign.
* Lanczos inner products <q, w> of a stack of vectors: ``torch.linalg.vecdot`` against a batched
  ``bmm``.
* Tangent norms of float32 tangents: summed in float32 against summed in float64.
* J^T u of a stride-1 convolution: the convolution with the flipped kernel against
  ``convolution_backward`` (what the tape uses), and the time to build the flipped kernel.
* Tape replay of 16 tangents through resnet56: overwriting the intermediates the replay owns
  (masks, scales, sums in place) against allocating every result.

Usage: python benchmarks/probe_parts.py [--repeats 50]   (one thread, medians, CPU clock)
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

import depthscope as ds
from _timing import median_time  # benchmarks/_timing.py
from depthscope.estimators import LinearizedChain, as_native, rademacher
from depthscope.estimators._tape.linearization import Op  # the tapes are rebuilt without in-place variants

# resnet56 sizes: 16 probes of a 16 x 32 x 32 state; 29 Lanczos problems of 16384 entries.
PROBES, STATE = 16, (16, 32, 32)
PROBLEMS, LENGTH = 29, 16384


def median_ms(fn, repeats: int) -> float:
    return median_time(fn, repeats) * 1e3


def line(what: str, ours: str, t_ours: float, theirs: str, t_theirs: float) -> None:
    print(f"{what}: {ours} {t_ours:.3f} ms, {theirs} {t_theirs:.3f} ms -> {t_theirs / t_ours:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    n = PROBES * torch.Size(STATE).numel()
    print(f"depthscope {ds.__version__}, torch {torch.__version__}, 1 thread, CPU clock, medians of {args.repeats}")

    line(
        f"{n} Rademacher signs",
        "sign table",
        median_ms(lambda: rademacher((n,), gen, torch.float32), args.repeats),
        "one integer per sign",
        median_ms(lambda: torch.randint(0, 2, (n,), generator=gen).float().mul_(2).sub_(1), args.repeats),
    )

    q, w = torch.randn(PROBLEMS, LENGTH, generator=gen), torch.randn(PROBLEMS, LENGTH, generator=gen)
    line(
        f"<q, w> for {PROBLEMS} vectors of {LENGTH}",
        "vecdot",
        median_ms(lambda: torch.linalg.vecdot(q, w), args.repeats),
        "bmm",
        median_ms(lambda: torch.bmm(q.unsqueeze(1), w.unsqueeze(2)), args.repeats),
    )

    t = as_native(torch.randn(PROBES, 1, n // PROBES, generator=gen), STATE)
    dims = tuple(range(2, t.ndim))
    line(
        f"norms of {PROBES} float32 tangents {STATE}",
        "float32 sums",
        median_ms(lambda: torch.linalg.vector_norm(t, dim=dims), args.repeats),
        "float64 sums",
        median_ms(lambda: torch.linalg.vector_norm(t, dim=dims, dtype=torch.float64), args.repeats),
    )

    # resnet56's three stages, then resnet18's last two at 112 px; one tangent
    for c, hw in ((16, 32), (32, 16), (64, 8), (256, 7), (512, 4)):
        w = torch.randn(c, c, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
        u = torch.randn(1, c, hw, hw, generator=gen).contiguous(memory_format=torch.channels_last)
        like = torch.empty_like(u)
        flipped = w.flip(2, 3).transpose(0, 1).contiguous(memory_format=torch.channels_last)
        line(
            f"J^T u of a 3x3 convolution, {c} channels {hw}x{hw}",
            "flipped-kernel convolution",
            median_ms(lambda: torch.conv2d(u, flipped, None, 1, 1), args.repeats * 10),
            "convolution_backward",
            median_ms(
                lambda: torch.ops.aten.convolution_backward(
                    u, like, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
                ),
                args.repeats * 10,
            ),
        )
        print(
            f"  building its flipped kernel: "
            f"{median_ms(lambda: w.flip(2, 3).transpose(0, 1).contiguous(memory_format=torch.channels_last), args.repeats):.3f} ms"
        )

    torch.manual_seed(0)
    model = ds.create_model("resnet56").eval()
    x = model.example_input(1, torch.Generator().manual_seed(0))
    lin = LinearizedChain(ds.Chain.from_module(model, example=x), x)
    ks = [k for k in lin.steps if lin.route(k) == "tape"]
    vs = [as_native(torch.randn(PROBES, 1, lin.n_in[k], generator=gen), tuple(lin.states[k].shape[1:])) for k in ks]

    def sweep():
        for k, v in zip(ks, vs):
            lin.jvp(k, v)

    t_in_place = median_ms(sweep, max(3, args.repeats // 10))
    for k in ks:  # the same tapes with every in-place variant taken away
        tape = lin._tape[k]
        tape.ops = [Op(op.ins, op.out, replace(op.linear, jvp_inplace=None, vjp_inplace=None)) for op in tape.ops]
    line(
        f"J v for {PROBES} tangents through resnet56's {len(ks)} tape steps",
        "in place",
        t_in_place,
        "allocating",
        median_ms(sweep, max(3, args.repeats // 10)),
    )


if __name__ == "__main__":
    main()
