"""Cost of `depthscope.Monitor` per training step, against a plain step and against Cockpit.

Models: the zoo's resnet56 (width 1, batch 32, 32x32 inputs, cross-entropy) and a 12-layer Pre-LN
transformer (the zoo's transformer_preln at its defaults: d_model 64, 4 heads, sequence 32,
vocabulary 64; batch 32; next-token cross-entropy). Configurations, each on its own copy of the
same initial model with its own SGD optimiser, fed the same batches:

    plain           no monitor
    every 1/4/16    depthscope.Monitor(every=k), forward statistics and update ratios on
    + probe/100     every-1 (and every-16) step time plus the time of one scheduled probe (the
                    monitor's probe: ds.probe of a 2-example batch in eval mode) divided by 100
    cockpit         Cockpit's "economy" configuration (BackPACK-extended model and loss), when
                    cockpit-for-pytorch and backpack-for-pytorch can be imported (installed for
                    the benchmark only, e.g. pip install --no-deps --target DIR ..., then
                    --cockpit-path DIR); otherwise the reason is printed and the published cost
                    is quoted

Timing: rounds interleave the configurations (order rotated every round); in each round each
configuration runs STEPS_PER_ROUND training steps (a multiple of 16, so every-16 monitoring is
amortised inside a round) and the round's time per step is recorded. Printed: the median over
rounds, its range (min-max over rounds), and the ratio of medians to plain. The clock is this
process's CPU time with one thread: other processes on a shared machine change wall time, hardly
this process's CPU time.

Usage: python benchmarks/monitor_overhead.py [--rounds 5] [--model resnet56|transformer|both]
       [--cockpit-path /tmp/cockpit_pkgs] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import traceback

import torch
from torch import nn

import depthscope as ds

# Steps of each configuration in one round: a multiple of 16 so that every-16 monitoring measures
# exactly one step per round per 16.
STEPS_PER_ROUND = 16
# Examples in the probe batch of the scheduled probes.
PROBE_BATCH = 2
PROBE_EVERY = 100
BATCH = 32
# Cockpit's paper (Schneider et al. 2021, Fig. 6): the economy configuration costs about 1.5x a
# plain step measured every step and about 1.2x at its default schedule, on its test problems.
COCKPIT_PUBLISHED = "Cockpit economy: ~1.5x per step when run every step, ~1.2x at its default schedule (paper, Fig. 6)"


def _resnet56():
    torch.manual_seed(0)
    model = ds.create_model("resnet56", width=1.0)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(BATCH, 3, 32, 32, generator=g), torch.randint(0, 10, (BATCH,), generator=g)) for _ in range(4)]

    def loss_fn(out, target):
        return nn.functional.cross_entropy(out, target)

    return model, data, loss_fn


def _transformer():
    torch.manual_seed(0)
    model = ds.create_model("transformer_preln", depth=12)
    g = torch.Generator().manual_seed(1)
    tokens = [torch.randint(0, 64, (BATCH, 33), generator=g) for _ in range(4)]
    data = [(t[:, :-1], t[:, 1:]) for t in tokens]

    def loss_fn(out, target):
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))

    return model, data, loss_fn


class Runner:
    """One configuration: a model copy, its optimiser, and what runs around the backward."""

    def __init__(self, name, model, data, loss_fn, every=None):
        self.name, self.model, self.data, self.loss_fn = name, model, data, loss_fn
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01)
        self.mon = None
        if every is not None:
            self.mon = ds.Monitor(model, every=every, example=data[0][0][:PROBE_BATCH], console=False)
        self.i = 0

    def step(self):
        x, y = self.data[self.i % len(self.data)]
        self.i += 1
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        if self.mon is not None:
            self.mon.step(loss)
        self.opt.step()
        self.opt.zero_grad()


class CockpitRunner(Runner):
    """Cockpit's economy configuration around the same step (BackPACK extensions in the backward)."""

    def __init__(self, name, model, data, loss_fn):
        from backpack import extend
        from cockpit import Cockpit
        from cockpit.utils.configuration import configuration

        super().__init__(name, extend(model, use_converter=True), data, loss_fn)
        self.bp_loss = extend(nn.CrossEntropyLoss())
        self.per_example = nn.CrossEntropyLoss(reduction="none")
        self.cockpit = Cockpit(self.model.parameters(), quantities=configuration("economy"))

    def step(self):
        x, y = self.data[self.i % len(self.data)]
        out = self.model(x)
        if out.dim() == 3:
            out, y = out.reshape(-1, out.shape[-1]), y.reshape(-1)
        loss = self.bp_loss(out, y)
        losses = self.per_example(out, y)
        info = {"batch_size": out.shape[0], "individual_losses": losses, "loss": loss, "optimizer": self.opt}
        with self.cockpit(self.i, info=info):
            loss.backward(create_graph=self.cockpit.create_graph(self.i))
        self.i += 1
        self.opt.step()
        self.opt.zero_grad()


def _probe_seconds(model, data, repeats=3) -> float:
    """Median CPU seconds of the monitor's scheduled probe (eval mode, modes restored)."""
    mon = ds.Monitor(model, probe_every=1, probe_input=data[0][0][:PROBE_BATCH], console=False, track_updates=False)
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        mon._probe(0)  # the exact call Monitor.step makes on a probe step
        times.append(time.process_time() - t0)
    mon.close()
    return statistics.median(times)


def bench(label, make, rounds, cockpit_ok):
    model, data, loss_fn = make()
    runners = [Runner("plain", copy.deepcopy(model), data, loss_fn)]
    runners += [Runner(f"every {k}", copy.deepcopy(model), data, loss_fn, every=k) for k in (1, 4, 16)]
    cockpit_note = None
    if cockpit_ok:
        try:
            cp = CockpitRunner("cockpit economy", copy.deepcopy(model), data, loss_fn)
            cp.step()  # fails early if BackPACK cannot handle the model
            runners.append(cp)
        except Exception as err:  # noqa: BLE001  (any failure is the answer: print it)
            cockpit_note = f"cockpit cannot run on {label}: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
    for r in runners:  # warm-up
        r.step()
    per: dict[str, list[float]] = {r.name: [] for r in runners}
    for rnd in range(rounds):
        order = runners[rnd % len(runners) :] + runners[: rnd % len(runners)]
        for r in order:
            t0 = time.process_time()
            for _ in range(STEPS_PER_ROUND):
                r.step()
            per[r.name].append((time.process_time() - t0) / STEPS_PER_ROUND)
    probe_s = _probe_seconds(copy.deepcopy(model), data)
    base = statistics.median(per["plain"])
    print(f"\n{label}: {rounds} rounds x {STEPS_PER_ROUND} steps per configuration, CPU time per step, 1 thread")
    print(f"{'configuration':<24}{'median ms':>11}{'range ms':>20}{'x plain':>9}")
    for name, ts in per.items():
        med = statistics.median(ts)
        print(f"{name:<24}{med * 1e3:>11.1f}{f'{min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f}':>20}{med / base:>9.3f}")
    for k in (1, 16):
        med = statistics.median(per[f"every {k}"]) + probe_s / PROBE_EVERY
        print(f"{f'every {k} + probe/{PROBE_EVERY}':<24}{med * 1e3:>11.1f}{'':>20}{med / base:>9.3f}")
    print(f"one scheduled probe ({PROBE_BATCH} examples): {probe_s * 1e3:.0f} ms = {probe_s / base:.1f} plain steps")
    if cockpit_note:
        print(cockpit_note)
        print(f"quoted instead: {COCKPIT_PUBLISHED}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", choices=("resnet56", "transformer", "both"), default="both")
    ap.add_argument("--cockpit-path", default=None, help="a folder holding cockpit and backpack (pip --target)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.cockpit_path:
        sys.path.append(args.cockpit_path)  # appended: never shadows the environment's torch
    try:
        import backpack  # noqa: F401
        import cockpit  # noqa: F401

        cockpit_ok = True
    except Exception as err:  # noqa: BLE001
        cockpit_ok = False
        print(f"cockpit/backpack not importable with torch {torch.__version__}: {type(err).__name__}: {err}")
        traceback.print_exc(limit=1)
        print(f"quoted instead: {COCKPIT_PUBLISHED}")
    print(f"torch {torch.__version__}, depthscope {ds.__version__}, threads {torch.get_num_threads()}")
    if args.model in ("resnet56", "both"):
        bench("resnet56 (width 1, batch 32)", _resnet56, args.rounds, cockpit_ok)
    if args.model in ("transformer", "both"):
        bench("Pre-LN transformer (12 layers, d 64, seq 32, batch 32)", _transformer, args.rounds, cockpit_ok)


if __name__ == "__main__":
    main()
