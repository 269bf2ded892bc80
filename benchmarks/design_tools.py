"""The design tools on the issue's questions: growth bound vs measured, pruning, ranking before training.

1. Growth: identity growth's output change on an MLP, a CNN (resnet20) and a transformer; then
   `ds.growth_bound` on a residual MLP trained on digits and on resnet20: the closed-form bound
   m_eps, the bound from the measured norms of the new blocks, and the measured gain of the
   inserted stack at the bound and one block past it, for aligned (J_F = eps I) and noise blocks.
2. Pruning: a residual and a plain MLP of the same depth and width trained alike on digits;
   `ds.prune` at several ``keep`` (the plain net's layers named explicitly): test accuracy before
   and after, and the effective depth (gradient-weighted path length) of the residual net.
3. Ranking: zoo candidates (plain / residual / ReZero MLPs, depths 4-64, ReLU and tanh) scored
   untrained by `ds.rank` (probe score, NASWOT beside), then each trained briefly on digits with
   the same optimiser, steps and seed; Kendall's tau between each score and the test accuracy.
   NASWOT needs ReLU codes, so its tau is over the ReLU candidates; the probe score's tau is given
   over all candidates, over the same ReLU subset, and among the candidates that trained
   (test accuracy > ``TRAINED``).

CPU, one thread; nothing is downloaded. Usage: python benchmarks/design_tools.py [--steps 200] [--seeds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import depthscope as ds
from depthscope.ledger import digits, train_classifier

LR = 2e-3  # Adam, the ledger's digits MLPs
WIDTH = 32
RANK_BATCH = 128  # NASWOT's mini-batch in Mellor et al. 2021
PRUNE_DEPTH = 12
KEEPS = (1.0, 0.75, 0.5)
# Test accuracy above which a candidate "trained" (chance is 0.1): the tau among these asks whether a
# score orders the nets that train, not only whether it spots the ones that do not.
TRAINED = 0.85


def _zoo(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return ds.create_model(name, **kw).eval()


def growth() -> None:
    print("== 1. growth ==")
    print("identity growth (3 blocks, init='identity'): largest |output change|")
    for name, kw in [
        ("resnet_mlp", dict(depth=8, width=WIDTH, in_dim=64)),
        ("resnet20", dict(width=0.5, input_size=16)),
        ("transformer_preln", dict(depth=4, d_model=32, n_heads=4, d_ff=64, seq_len=16, vocab=50)),
    ]:
        model = _zoo(name, **kw)
        x = model.example_input(8, torch.Generator().manual_seed(0))
        grown = ds.grow(model, 3, "blocks.1", x=x)
        with torch.no_grad():
            change = float((grown(x) - model(x)).abs().max())
        print(f"  {name:18s} {change:.2e}")
    data = digits()
    mlp = _zoo("resnet_mlp", depth=8, width=WIDTH, in_dim=64)
    train_classifier(mlp, data, steps=400, lr=LR, optimizer="adam", seed=0)
    cnn = _zoo("resnet20", width=0.5, input_size=16)
    cases = [("resnet_mlp (trained)", mlp.eval(), data.x_test[:64]), ("resnet20", cnn, cnn.example_input(8))]
    print("growth bound, tol = 0.05: m_eps = floor(log(1+tol)/log(1+eps)); gains measured by the probe")
    header = f"  {'model':22s} {'eps':>6s} {'m_eps':>5s} {'kind':>8s} {'bound(meas)':>11s} {'gain@m':>8s} {'gain@m+1':>9s} {'1st out':>7s}"
    print(header)
    for label, model, x in cases:
        for eps in (0.005, 0.01, 0.02):
            plan = ds.growth_bound(model, x, tol=0.05, eps=eps, after="blocks.2")
            m = plan.bound
            for c in plan.curves:
                print(
                    f"  {label:22s} {eps:6g} {m:5d} {c.kind:>8s} {c.bound:11d} {c.gain[m - 1]:8.5f} "
                    f"{c.gain[m]:9.5f} {str(c.first_outside):>7s}"
                )


def pruning(steps: int, seeds: int) -> None:
    print(f"\n== 2. pruning (depth {PRUNE_DEPTH}, width {WIDTH}, {steps * 2} Adam steps on digits) ==")
    data = digits()
    val = (data.x_test, data.y_test)
    print(
        f"  {'seed':>4s} {'net':7s} {'keep':>5s} {'removed':>7s} {'acc before':>10s} {'acc after':>9s} {'eff. depth':>14s}"
    )
    for seed in range(seeds):
        nets = {n: _zoo(n, seed, depth=PRUNE_DEPTH, width=WIDTH, in_dim=64) for n in ("resnet_mlp", "plain_mlp")}
        for net in nets.values():
            train_classifier(net, data, steps=steps * 2, lr=LR, optimizer="adam", seed=seed)
            net.eval()
        for keep in KEEPS:
            for name, net in nets.items():
                blocks = None if name == "resnet_mlp" else [f"blocks.{i}" for i in range(PRUNE_DEPTH)]
                _, info = ds.prune(net, data.x_test[:64], val, keep=keep, blocks=blocks)
                eff = (
                    f"{info.effective_depth_before:.2f}->{info.effective_depth_after:.2f}"
                    if info.effective_depth_before is not None
                    else "-"
                )
                print(
                    f"  {seed:4d} {name.split('_')[0]:7s} {keep:5.2f} {len(info.removed):7d} "
                    f"{info.accuracy_before:10.4f} {info.accuracy_after:9.4f} {eff:>14s}"
                )


def _candidates(seed: int) -> dict[str, torch.nn.Module]:
    out = {}
    for family in ("plain_mlp", "resnet_mlp", "rezero_mlp"):
        for depth in (4, 16, 64):
            for act in ("relu", "tanh"):
                out[f"{family}-{depth}-{act}"] = _zoo(family, seed, depth=depth, width=WIDTH, in_dim=64, activation=act)
    return out


def ranking(steps: int, seeds: int) -> None:
    print(f"\n== 3. ranking before training ({steps} Adam steps on digits, lr {LR}, batch 128) ==")
    data = digits()
    x = data.x_train[:RANK_BATCH]
    taus: dict[str, list[float]] = {}
    for seed in range(seeds):
        cands = _candidates(seed)
        t0 = time.process_time()
        ranked = ds.rank(cands, x, seed=seed)
        t_rank = time.process_time() - t0
        acc = {
            n: train_classifier(m.train(), data, steps=steps, lr=LR, optimizer="adam", seed=seed).test_accuracy
            for n, m in cands.items()
        }
        print(f"  seed {seed}: {len(cands)} candidates scored in {t_rank:.1f} s CPU")
        print(f"  {'candidate':22s} {'probe score':>11s} {'log gain':>9s} {'NASWOT':>9s} {'test acc':>9s}")
        for c in ranked.candidates:
            nw = f"{c.naswot:9.2f}" if c.naswot is not None else f"{'n/a':>9s}"
            print(f"  {c.name:22s} {c.score:11.3f} {c.log_gain:9.3f} {nw} {acc[c.name]:9.4f}")
        k = ranked.kendall(acc)
        relu = ds.design.Ranking([c for c in ranked.candidates if c.name.endswith("relu")])
        k_relu = relu.kendall({n: a for n, a in acc.items() if n.endswith("relu")})
        trained = ds.design.Ranking([c for c in ranked.candidates if acc[c.name] > TRAINED])
        k_trained = trained.kendall({n: a for n, a in acc.items() if a > TRAINED})
        for label, t in (
            ("probe (all)", k["probe"]),
            ("probe (ReLU)", k_relu["probe"]),
            ("NASWOT (ReLU)", k["naswot"]),
            (f"probe (acc > {TRAINED})", k_trained["probe"]),
            (f"NASWOT (acc > {TRAINED})", k_trained["naswot"]),
        ):
            taus.setdefault(label, []).append(t["tau"])
            print(f"  Kendall tau, {label:22s}: {t['tau']:+.3f}  (p = {t['p']:.3f}, n = {t['n']})")
    if seeds > 1:
        print("  mean over seeds: " + ", ".join(f"{k} {statistics.mean(v):+.3f}" for k, v in taus.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps of each ranked candidate")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t = time.time()
    growth()
    pruning(args.steps, args.seeds)
    ranking(args.steps, args.seeds)
    print(f"\n(total {time.time() - t:.0f} s wall)")


if __name__ == "__main__":
    main()
