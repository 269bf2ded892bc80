"""What the probe's guards against bad models cost, as a share of the probe they run in.

Two checks run on every probe (`depthscope.estimators._linearized`): the batch-coupling check
(one extra forward of a step, skipped for steps whose tape has an already checked signature and
for B = 1) and the check that each step's Jacobian is finite (on the first product of each side).
Both are wrapped here with a CPU-time clock, so the shares below are measured in the same run as
the probe itself (the wrapper's own clock reads are counted against the checks: an upper bound).

Usage: python benchmarks/input_checks.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import depthscope as ds
import depthscope.estimators._linearized as linearized

SPENT = {"coupling": 0.0, "finite": 0.0}


def _timed(key: str, fn):
    def wrapper(*args):
        t0 = time.process_time()
        try:
            return fn(*args)
        finally:
            SPENT[key] += time.process_time() - t0

    return wrapper


def _readme():
    torch.manual_seed(0)
    model = ds.create_model("resnet_mlp", depth=64, width=256).eval()
    x = torch.randn(32, 256, generator=torch.Generator().manual_seed(0))
    return lambda: ds.probe(model, x)


def _resnet56(batch: int, **kwargs):
    def make():
        torch.manual_seed(0)
        model = ds.create_model("resnet56").eval()
        x = model.example_input(batch, torch.Generator().manual_seed(0))
        return lambda: ds.probe(model, x, **kwargs)

    return make


def _gpt2(attn: str):
    def make():
        from transformers import GPT2Config, GPT2Model

        torch.manual_seed(0)
        config = GPT2Config(
            n_layer=6,
            n_embd=128,
            n_head=4,
            n_positions=64,
            vocab_size=500,
            bos_token_id=0,
            eos_token_id=0,
            attn_implementation=attn,
        )
        model = GPT2Model(config).eval()
        ids = torch.randint(0, 500, (4, 16), generator=torch.Generator().manual_seed(0))
        return lambda: ds.probe(ds.Chain.from_hf(model, ids), ids)

    return make


CASES = {
    "README resnet_mlp depth 64 width 256, B 32": _readme,
    "resnet56, B 1 (probe_zoo settings)": _resnet56(1, lyapunov=16, sigma_min=False),
    "resnet56, B 8": _resnet56(8),
    "GPT-2 6 x 128, B 4, T 16 (eager attention)": _gpt2("eager"),
    "GPT-2 6 x 128, B 4, T 16 (fused attention)": _gpt2("sdpa"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    linearized.check_examples_independent = _timed("coupling", linearized.check_examples_independent)
    linearized.LinearizedChain._finite_once = _timed("finite", linearized.LinearizedChain._finite_once)
    print(f"{'case':46s} {'probe s':>8s} {'coupling':>9s} {'finite':>8s}")
    for name, make in CASES.items():
        run = make()
        run()
        totals, coupling, finite = [], [], []
        for _ in range(args.repeats):
            SPENT.update(coupling=0.0, finite=0.0)
            t0 = time.process_time()
            run()
            totals.append(time.process_time() - t0)
            coupling.append(SPENT["coupling"])
            finite.append(SPENT["finite"])
        total = statistics.median(totals)
        print(
            f"{name:46s} {total:8.3f} {100 * statistics.median(coupling) / total:8.2f}% "
            f"{100 * statistics.median(finite) / total:7.2f}%"
        )


if __name__ == "__main__":
    main()
